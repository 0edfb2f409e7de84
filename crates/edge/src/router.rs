//! Edge mode's routing table: which backend gets a request, decided from its Host, path,
//! `X-Wikimedia-Debug` header and pinning cookie.
//!
//! A [`Table`] is built from the config and never changes; a config reload builds a new one and
//! swaps it in. Endpoints (one address of a backend) are shared between the old and the new
//! table when their backend, address, health check and TLS settings are unchanged, so that
//! their health state and running checks survive a reload.

use crate::config::{self, HealthCheck, UpstreamTimeouts, UpstreamTls};
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
    /// TLS settings when the backend is spoken to over TLS.
    pub tls: Option<UpstreamTls>,
    /// How long it may take to answer.
    pub timeouts: UpstreamTimeouts,
    // New endpoints start healthy: starting them unhealthy would turn every start and every
    // config reload into `rise * interval` of 503s. A dead one is taken out after `fall` checks.
    healthy: AtomicBool,
    checker_claimed: AtomicBool,
}

impl Endpoint {
    /// An endpoint, healthy until its checks say otherwise.
    pub fn new(
        backend: &str,
        address: &str,
        health: Option<HealthCheck>,
        tls: Option<UpstreamTls>,
        timeouts: UpstreamTimeouts,
    ) -> Self {
        Endpoint {
            backend: backend.to_owned(),
            address: address.to_owned(),
            health,
            tls,
            timeouts,
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
    /// Below this percentage of healthy endpoints, every endpoint takes requests.
    pub panic_threshold_percent: f64,
    next: AtomicUsize,
}

impl Backend {
    /// Whether at least one endpoint is healthy.
    pub fn has_healthy(&self) -> bool {
        self.endpoints.iter().any(|e| e.is_healthy())
    }

    /// Whether too few endpoints are healthy (the panic threshold): then health is ignored.
    pub fn is_panicking(&self) -> bool {
        let healthy = self.endpoints.iter().filter(|e| e.is_healthy()).count();
        (healthy as f64) * 100.0 < self.panic_threshold_percent * self.endpoints.len() as f64
    }

    /// The next endpoint in round-robin order: healthy ones only, or any in panic.
    pub fn pick(&self) -> Option<Arc<Endpoint>> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let panic = self.is_panicking();
        (0..n)
            .map(|i| &self.endpoints[(start + i) % n])
            .find(|e| panic || e.is_healthy())
            .cloned()
    }

    /// Every endpoint that may take a request (healthy, or any in panic) but the one at
    /// address `tried`, for a retry when connecting failed.
    pub fn others<'a>(&'a self, tried: &'a str) -> impl Iterator<Item = &'a Arc<Endpoint>> {
        let panic = self.is_panicking();
        self.endpoints
            .iter()
            .filter(move |e| (panic || e.is_healthy()) && e.address != tried)
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
                                .find(|e| {
                                    &e.address == a
                                        && e.health == b.health
                                        && e.tls == b.tls
                                        && e.timeouts == b.timeouts
                                })
                                .cloned()
                        })
                        .unwrap_or_else(|| {
                            Arc::new(Endpoint::new(
                                name,
                                a,
                                b.health.clone(),
                                b.tls.clone(),
                                b.timeouts,
                            ))
                        })
                    })
                    .collect();
                let backend = Backend {
                    name: name.clone(),
                    endpoints,
                    panic_threshold_percent: b.panic_threshold_percent,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Backend as B, Edge, Route as R, Split as S};

    fn edge(percent: f64) -> Edge {
        let b = |a: &str| B {
            addresses: vec![a.into()],
            ..B::default()
        };
        Edge {
            backends: [
                ("main".to_string(), b("10.0.0.1:80")),
                ("next".to_string(), b("10.0.0.2:80")),
            ]
            .into_iter()
            .collect(),
            debug: Default::default(),
            routes: vec![R {
                hosts: vec!["*.wiki.example".into()],
                path_prefix: None,
                backend: "main".into(),
                split: Some(S {
                    backend: "next".into(),
                    default_percent: percent,
                    host_percent: [("test.wiki.example".to_string(), 90.0)]
                        .into_iter()
                        .collect(),
                    cookie: None,
                }),
            }],
        }
    }

    /// splitmix64: a fixed-seed generator keeps the test deterministic.
    fn rng(mut state: u64) -> impl FnMut(u32) -> u32 {
        move |n| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % u64::from(n)) as u32
        }
    }

    fn share_of_next(table: &Table, host: &str, n: u32, seed: u64) -> f64 {
        let mut random = rng(seed);
        let mut to_next = 0;
        for _ in 0..n {
            let facts = RequestFacts {
                host: Some(host),
                path: "/wiki/X",
                ..Default::default()
            };
            match table.decide(&facts, &mut random) {
                Decision::Forward {
                    backend,
                    set_cookie: Some(_),
                    ..
                } => to_next += u32::from(backend.name == "next"),
                other => panic!("{other:?}"),
            }
        }
        f64::from(to_next) * 100.0 / f64::from(n)
    }

    #[test]
    fn weighted_split_over_10000_requests_is_within_2_points() {
        for (percent, seed) in [(0.5, 1), (10.0, 2), (33.3, 3), (50.0, 4), (99.0, 5)] {
            let table = Table::build(&edge(percent), None);
            let share = share_of_next(&table, "en.wiki.example", 10_000, seed);
            assert!((share - percent).abs() <= 2.0, "{percent} %: got {share} %");
        }
        let table = Table::build(&edge(0.0), None);
        let share = share_of_next(&table, "test.wiki.example", 10_000, 6);
        assert!(
            (share - 90.0).abs() <= 2.0,
            "per-host weight: got {share} %"
        );
        assert_eq!(share_of_next(&table, "en.wiki.example", 10_000, 7), 0.0);
    }

    #[test]
    fn raising_the_share_only_moves_clients_towards_next() {
        let low = Table::build(&edge(20.0), None);
        let high = Table::build(&edge(60.0), Some(&low));
        for bucket in 0..weighted::BUCKETS {
            let cookie = format!("edge_bucket={bucket}");
            let facts = RequestFacts {
                host: Some("en.wiki.example"),
                path: "/",
                cookie: Some(&cookie),
                ..Default::default()
            };
            let side = |t: &Table| match t.decide(&facts, |_| unreachable!("pinned")) {
                Decision::Forward { backend, .. } => backend.name.clone(),
                other => panic!("{other:?}"),
            };
            if side(&low) == "next" {
                assert_eq!(side(&high), "next", "bucket {bucket} moved back");
            }
        }
    }

    #[test]
    fn reload_keeps_endpoint_health() {
        let old = Table::build(&edge(1.0), None);
        old.backends["next"].endpoints[0].set_healthy(false);
        let new = Table::build(&edge(2.0), Some(&old));
        assert!(!new.backends["next"].endpoints[0].is_healthy());
        assert!(Arc::ptr_eq(
            &old.backends["main"].endpoints[0],
            &new.backends["main"].endpoints[0]
        ));
    }

    #[test]
    fn below_the_panic_threshold_every_endpoint_takes_requests() {
        let backend = |threshold: f64| Backend {
            name: "web".into(),
            endpoints: (1..=4)
                .map(|i| {
                    Arc::new(Endpoint::new(
                        "web",
                        &format!("10.0.0.{i}:80"),
                        None,
                        None,
                        UpstreamTimeouts::default(),
                    ))
                })
                .collect(),
            panic_threshold_percent: threshold,
            next: AtomicUsize::new(0),
        };
        let picked = |b: &Backend| {
            let mut seen: Vec<String> = (0..8)
                .filter_map(|_| b.pick().map(|e| e.address.clone()))
                .collect();
            seen.sort();
            seen.dedup();
            seen
        };
        let b = backend(50.0);
        // 2 of 4 healthy is 50 %: not below the threshold, so only the healthy ones.
        b.endpoints[0].set_healthy(false);
        b.endpoints[1].set_healthy(false);
        assert_eq!(picked(&b), ["10.0.0.3:80", "10.0.0.4:80"]);
        // 1 of 4: panic, all four.
        b.endpoints[2].set_healthy(false);
        assert!(b.is_panicking());
        assert_eq!(picked(&b).len(), 4);
        assert_eq!(b.others("10.0.0.1:80").count(), 3);
        // None healthy: still all four rather than none.
        b.endpoints[3].set_healthy(false);
        assert_eq!(picked(&b).len(), 4);
        // Turned off: nothing healthy, nothing picked (the 503 case).
        let off = backend(0.0);
        for e in &off.endpoints {
            e.set_healthy(false);
        }
        assert!(off.pick().is_none());
    }

    #[test]
    fn unhealthy_side_hands_traffic_to_the_other() {
        let table = Table::build(&edge(100.0), None);
        table.backends["next"].endpoints[0].set_healthy(false);
        let facts = RequestFacts {
            host: Some("en.wiki.example"),
            path: "/",
            ..Default::default()
        };
        match table.decide(&facts, |_| 5) {
            Decision::Forward { backend, .. } => assert_eq!(backend.name, "main"),
            other => panic!("{other:?}"),
        }
    }
}
