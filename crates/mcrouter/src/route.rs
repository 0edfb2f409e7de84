//! The router's fixed state, and where a key goes: prefix routing, the ring, the gutter.
//!
//! A key that starts with a configured prefix `/<datacenter>/<cluster>/` goes to that route's
//! pool with the prefix stripped (real mcrouter strips routing prefixes too, so the same object
//! has the same key on the server whichever way it was reached). Any other key, including one
//! with an unknown prefix, goes unchanged to the local pool. Meta commands with the `b` flag
//! carry a base64 key, which is not looked into: they take the default route.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::{Config, InvalidConfig};
use crate::metrics::Metrics;
use crate::pool::{Connection, Pool, Server};
use crate::replicate::Replicated;
use crate::ring::Ring;

/// Where one request for one key goes. Ordered so a multi-key get can sort keys by target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// The server that owns the key.
    Primary(usize),
    /// A gutter server standing in for a down or failing one.
    Gutter(usize),
    /// The owner is down and there is no gutter.
    Unavailable,
}

/// Everything fixed at start: pools, rings, routes, metrics. Shared by every session.
#[derive(Debug)]
pub struct Router {
    /// The configuration it was built from.
    pub config: Config,
    /// Every server of every pool; [`Pool::servers`] holds indices into it.
    pub servers: Vec<Server>,
    /// Every pool.
    pub pools: Vec<Pool>,
    routes: Vec<(Vec<u8>, usize)>,
    /// The local pool's index: the default route.
    pub local: usize,
    /// The gutter pool's index.
    pub gutter: Option<usize>,
    /// Pools of other datacenters that get the local pool's deletes and touches.
    pub replicas: Vec<usize>,
    /// Every metric.
    pub metrics: Metrics,
    /// One queue per replica pool, same order as `replicas`; set by [`crate::replicate::start`].
    pub(crate) replication: OnceLock<Vec<mpsc::Sender<Replicated>>>,
    /// One shared connection per server, same order as `servers`; set by
    /// [`crate::server::serve`] (tasks need a runtime, which `new` may not have).
    pub(crate) connections: OnceLock<Vec<Connection>>,
    /// When the router started (for `stats`).
    pub started: Instant,
}

impl Router {
    /// Builds the router's state from a configuration, after validating it.
    pub fn new(config: Config) -> Result<Router, InvalidConfig> {
        config.validate()?;
        let metrics = Metrics::new();
        let mut servers = Vec::new();
        let mut pools = Vec::new();
        let mut index = HashMap::new();
        for (name, pool) in &config.pools {
            let ids: Vec<usize> = pool
                .servers
                .iter()
                .map(|addr| {
                    let id = servers.len();
                    servers.push(Server {
                        addr: addr.clone(),
                        pool: name.clone(),
                        id,
                        failures: AtomicU32::new(0),
                        down: AtomicBool::new(false),
                        generation: AtomicU64::new(0),
                        metrics: metrics.server(name, addr),
                    });
                    id
                })
                .collect();
            index.insert(name.clone(), pools.len());
            pools.push(Pool {
                name: name.clone(),
                servers: ids,
                ring: Ring::new(&pool.servers),
                metrics: metrics.route(name),
            });
        }
        let routes = config
            .routes
            .iter()
            .map(|r| (r.prefix.as_bytes().to_vec(), index[&r.pool]))
            .collect();
        Ok(Router {
            local: index[&config.local_pool],
            gutter: config.failover.gutter_pool.as_ref().map(|g| index[g]),
            replicas: config.replicate_to.iter().map(|p| index[p]).collect(),
            routes,
            servers,
            pools,
            metrics,
            replication: OnceLock::new(),
            connections: OnceLock::new(),
            started: Instant::now(),
            config,
        })
    }

    /// The pool a key goes to and the key to send there (its routing prefix stripped).
    pub fn route<'k>(&self, key: &'k [u8]) -> (usize, &'k [u8]) {
        if key.first() == Some(&b'/') {
            for (prefix, pool) in &self.routes {
                if let Some(rest) = key.strip_prefix(prefix.as_slice()) {
                    if !rest.is_empty() {
                        return (*pool, rest);
                    }
                }
            }
        }
        (self.local, key)
    }

    /// The server for `key` (already stripped) in `pool`, or its gutter stand-in if it is down.
    pub fn target(&self, pool: usize, key: &[u8]) -> Target {
        let id = self.pools[pool].server_for(key);
        if !self.servers[id].is_down() {
            return Target::Primary(id);
        }
        self.gutter_for(pool, key)
    }

    /// The gutter server for `key` of `pool`, if the pool has a gutter.
    pub fn gutter_for(&self, pool: usize, key: &[u8]) -> Target {
        match self.gutter {
            Some(gutter) if gutter != pool => {
                let id = self.pools[gutter].server_for(key);
                if self.servers[id].is_down() {
                    Target::Unavailable
                } else {
                    Target::Gutter(id)
                }
            }
            _ => Target::Unavailable,
        }
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeouts.connect_ms)
    }

    /// The per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeouts.request_ms)
    }

    /// The expiry to send to the gutter: `exptime` capped at the gutter TTL. Zero (never),
    /// absolute times (over 30 days) and anything longer become the cap; negative (already
    /// expired) stays.
    pub fn gutter_exptime(&self, exptime: i64) -> i64 {
        let cap = i64::from(self.config.failover.gutter_ttl_seconds);
        if exptime < 0 || (exptime > 0 && exptime <= cap) {
            exptime
        } else {
            cap
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let config: Config = serde_json::from_str(
            r#"{"pools": {"eqiad": {"servers": ["127.0.0.1:1", "127.0.0.1:2"]},
                          "codfw": {"servers": ["127.0.0.1:3"]},
                          "gutter": {"servers": ["127.0.0.1:4"]}},
                "local_pool": "eqiad",
                "routes": [{"prefix": "/codfw/mw/", "pool": "codfw"}],
                "failover": {"gutter_pool": "gutter", "gutter_ttl_seconds": 10}}"#,
        )
        .unwrap();
        Router::new(config).unwrap()
    }

    #[test]
    fn prefixes_route_and_strip() {
        let r = router();
        let codfw = r.pools.iter().position(|p| p.name == "codfw").unwrap();
        assert_eq!(r.route(b"/codfw/mw/foo"), (codfw, &b"foo"[..]));
        assert_eq!(r.route(b"foo"), (r.local, &b"foo"[..]));
        assert_eq!(r.route(b"/ulsfo/mw/foo"), (r.local, &b"/ulsfo/mw/foo"[..]));
        assert_eq!(r.route(b"/codfw/mw/"), (r.local, &b"/codfw/mw/"[..]));
    }

    #[test]
    fn gutter_caps_ttl() {
        let r = router();
        assert_eq!(r.gutter_exptime(0), 10);
        assert_eq!(r.gutter_exptime(5), 5);
        assert_eq!(r.gutter_exptime(3600), 10);
        assert_eq!(r.gutter_exptime(2_000_000_000), 10);
        assert_eq!(r.gutter_exptime(-1), -1);
    }

    #[test]
    fn down_server_goes_to_gutter() {
        let r = router();
        let Target::Primary(id) = r.target(r.local, b"k") else {
            panic!()
        };
        r.servers[id]
            .down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            matches!(r.target(r.local, b"k"), Target::Gutter(g) if r.servers[g].pool == "gutter")
        );
    }
}
