//! Edge mode's routing table: which backend gets a request, decided from its Host, path,
//! `X-Wikimedia-Debug` header and pinning cookie.
//!
//! A [`Table`] is built from the config and never changes; a config reload builds a new one and
//! swaps it in. Endpoints (one address of a backend) are shared between the old and the new
//! table when their backend, address and health check are unchanged, so that their health
//! state and running checks survive a reload.

use crate::config::{self, HealthCheck};
use crate::{debug_routing, host, weighted};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// One address of a backend, with its health state.
#[derive(Debug)]
pub struct Endpoint {
    /// The backend this endpoint belongs to.
    pub backend: String,
    /// `HOST:PORT`.
    pub address: String,
    /// The active check, if any.
    pub health: Option<HealthCheck>,
    // New endpoints start healthy: starting them unhealthy would turn every start and every
    // config reload into `rise * interval` of 503s. A dead one is taken out after `fall` checks.
    healthy: AtomicBool,
    checker_claimed: AtomicBool,
}

impl Endpoint {
    fn new(backend: &str, address: &str, health: Option<HealthCheck>) -> Self {
        Endpoint {
            backend: backend.to_owned(),
            address: address.to_owned(),
            health,
            healthy: AtomicBool::new(true),
            checker_claimed: AtomicBool::new(false),
        }
    }

    /// Whether requests may go to this endpoint.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Takes the endpoint out (`false`) or brings it back (`true`).
    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// True exactly once per endpoint: the caller must run its health check.
    pub fn claim_checker(&self) -> bool {
        !self.checker_claimed.swap(true, Ordering::AcqRel)
    }
}

/// A named group of endpoints, used round-robin.
#[derive(Debug)]
pub struct Backend {
    /// Its name in `[edge.backends]`.
    pub name: String,
    /// Its endpoints, in config order.
    pub endpoints: Vec<Arc<Endpoint>>,
    next: AtomicUsize,
}

impl Backend {
    /// Whether at least one endpoint is healthy.
    pub fn has_healthy(&self) -> bool {
        self.endpoints.iter().any(|e| e.is_healthy())
    }

    /// The next healthy endpoint in round-robin order, if any.
    pub fn pick(&self) -> Option<Arc<Endpoint>> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n)
            .map(|i| &self.endpoints[(start + i) % n])
            .find(|e| e.is_healthy())
            .cloned()
    }

    /// Every healthy endpoint but the one at address `tried`, for a retry when connecting failed.
    pub fn others<'a>(&'a self, tried: &'a str) -> impl Iterator<Item = &'a Arc<Endpoint>> {
        self.endpoints
            .iter()
            .filter(move |e| e.is_healthy() && e.address != tried)
    }
}

#[derive(Debug)]
struct Split {
    backend: Arc<Backend>,
    default_threshold: u32,
    host_threshold: HashMap<String, u32>,
    cookie: String,
}

#[derive(Debug)]
struct Route {
    hosts: Vec<String>,
    path_prefix: Option<String>,
    backend: Arc<Backend>,
    split: Option<Split>,
}

/// What a request carries that routing looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    /// Normalized host ([`host::normalize`]), if any.
    pub host: Option<&'a str>,
    /// The request path (without query).
    pub path: &'a str,
    /// The `X-Wikimedia-Debug` value, if present.
    pub debug: Option<&'a str>,
    /// All `Cookie` header values joined with `; `, if any.
    pub cookie: Option<&'a str>,
}

/// Where a request goes.
#[derive(Debug)]
pub enum Decision {
    /// Forward to this backend.
    Forward {
        /// The backend.
        backend: Arc<Backend>,
        /// Sent by `X-Wikimedia-Debug`: the response must be made uncacheable.
        debug: bool,
        /// A `Set-Cookie` value to add to the response (a new client of a split route).
        set_cookie: Option<String>,
    },
    /// No route matches the host and path (404).
    NoRoute,
    /// `X-Wikimedia-Debug` names no backend or one that is not a debug backend (400).
    BadDebugBackend {
        /// The name asked for, if any.
        asked: Option<String>,
        /// The debug backends that exist.
        known: Vec<String>,
    },
}

/// The routing table of one config.
#[derive(Debug)]
pub struct Table {
    backends: BTreeMap<String, Arc<Backend>>,
    debug: Vec<String>,
    routes: Vec<Route>,
}

impl Table {
    /// Builds the table of a validated config, reusing `previous`'s endpoints where unchanged.
    ///
    /// Names a route refers to must exist (as [`config::Config::validate`] checks); a
    /// dangling name is skipped here rather than panicking.
    pub fn build(edge: &config::Edge, previous: Option<&Table>) -> Table {
        let backends: BTreeMap<String, Arc<Backend>> = edge
            .backends
            .iter()
            .map(|(name, b)| {
                let old = previous.and_then(|p| p.backends.get(name));
                let endpoints = b
                    .addresses
                    .iter()
                    .map(|a| {
                        old.and_then(|o| {
                            o.endpoints
                                .iter()
                                .find(|e| &e.address == a && e.health == b.health)
                                .cloned()
                        })
                        .unwrap_or_else(|| Arc::new(Endpoint::new(name, a, b.health.clone())))
                    })
                    .collect();
                let backend = Backend {
                    name: name.clone(),
                    endpoints,
                    next: AtomicUsize::new(0),
                };
                (name.clone(), Arc::new(backend))
            })
            .collect();
        let routes = edge
            .routes
            .iter()
            .filter_map(|r| {
                let split = match &r.split {
                    Some(s) => Some(Split {
                        backend: backends.get(&s.backend)?.clone(),
                        default_threshold: weighted::threshold(s.default_percent),
                        host_threshold: s
                            .host_percent
                            .iter()
                            .map(|(h, p)| (h.to_ascii_lowercase(), weighted::threshold(*p)))
                            .collect(),
                        cookie: s
                            .cookie
                            .clone()
                            .unwrap_or_else(|| config::DEFAULT_SPLIT_COOKIE.to_owned()),
                    }),
                    None => None,
                };
                Some(Route {
                    hosts: r.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    path_prefix: r.path_prefix.clone(),
                    backend: backends.get(&r.backend)?.clone(),
                    split,
                })
            })
            .collect();
        let mut debug: Vec<String> = edge
            .debug
            .backends
            .iter()
            .filter(|d| backends.contains_key(*d))
            .cloned()
            .collect();
        debug.sort();
        Table {
            backends,
            debug,
            routes,
        }
    }

    /// Every endpoint of every backend.
    pub fn endpoints(&self) -> impl Iterator<Item = &Arc<Endpoint>> {
        self.backends.values().flat_map(|b| b.endpoints.iter())
    }

    /// Decides where a request goes. `random_below(n)` returns a random number in `0..n`; it
    /// is a parameter so that tests can drive the split deterministically.
    pub fn decide(
        &self,
        facts: &RequestFacts<'_>,
        random_below: impl FnMut(u32) -> u32,
    ) -> Decision {
        if let Some(value) = facts.debug {
            let asked = debug_routing::backend_name(value);
            return match asked {
                Some(name) if self.debug.iter().any(|d| d == name) => Decision::Forward {
                    backend: self.backends[name].clone(),
                    debug: true,
                    set_cookie: None,
                },
                _ => Decision::BadDebugBackend {
                    asked: asked.map(str::to_owned),
                    known: self.debug.clone(),
                },
            };
        }
        let Some(host) = facts.host else {
            return Decision::NoRoute;
        };
        let Some(route) = self.routes.iter().find(|r| {
            r.hosts.iter().any(|p| host::matches(p, host))
                && r.path_prefix
                    .as_deref()
                    .is_none_or(|p| facts.path.starts_with(p))
        }) else {
            return Decision::NoRoute;
        };
        let Some(split) = &route.split else {
            return Decision::Forward {
                backend: route.backend.clone(),
                debug: false,
                set_cookie: None,
            };
        };
        let threshold = split
            .host_threshold
            .get(host)
            .copied()
            .unwrap_or(split.default_threshold);
        let pinned = facts
            .cookie
            .and_then(|c| weighted::bucket_from_cookie_header(c, &split.cookie));
        let (bucket, set_cookie) = match pinned {
            Some(b) => (b, None),
            None => {
                let b = weighted::new_bucket(random_below);
                (b, Some(weighted::set_cookie(&split.cookie, b)))
            }
        };
        let (chosen, other) = if weighted::to_split(bucket, threshold) {
            (&split.backend, &route.backend)
        } else {
            (&route.backend, &split.backend)
        };
        // A side with nothing healthy hands its traffic to the other side rather than failing.
        let backend = if !chosen.has_healthy() && other.has_healthy() {
            other
        } else {
            chosen
        };
        Decision::Forward {
            backend: backend.clone(),
            debug: false,
            set_cookie,
        }
    }
}
