//! The router's fixed state (pools, rings, the compiled route tree, metrics), and where a
//! key of a get goes: its pool's server, or a gutter stand-in when that server is down.
//!
//! Routing prefixes and route handles are the [`tree`](crate::tree)'s. Meta commands with the
//! `b` flag carry a base64 key, which is not looked into: they take the default route.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::{server_address, Config, InvalidConfig, RoutesConfig};
use crate::metrics::Metrics;
use crate::pool::{Connection, Pool, Server};
use crate::replicate::Replicated;
use crate::tree::{Gutter, Tree};
use ketama::Ring;

/// Where a get for one key goes. Ordered so a multi-key get can sort keys by target.
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
    pub config: RoutesConfig,
    /// Every server of every pool; [`Pool::servers`] holds indices into it.
    pub servers: Vec<Server>,
    /// Every pool.
    pub pools: Vec<Pool>,
    /// The compiled routes.
    pub tree: Tree,
    /// The pool `flush_all` goes to: the first pool of the default route.
    pub local: Option<usize>,
    /// Every metric.
    pub metrics: Metrics,
    /// One background queue per pool, same order as `pools`; set by
    /// [`crate::replicate::start`].
    pub(crate) replication: OnceLock<Vec<mpsc::Sender<Replicated>>>,
    /// One shared connection per server, same order as `servers`; set by
    /// [`crate::server::serve`] (tasks need a runtime, which `new` may not have).
    pub(crate) connections: OnceLock<Vec<Connection>>,
    /// When the router started (for `stats` and probe times).
    pub started: Instant,
}

impl Router {
    /// Builds the router's state from a shorthand configuration, after validating it.
    pub fn new(config: Config) -> Result<Router, InvalidConfig> {
        config.validate()?;
        Router::from_routes(config.to_routes())
    }

    /// Builds the router's state from a route tree, after validating it.
    pub fn from_routes(config: RoutesConfig) -> Result<Router, InvalidConfig> {
        config.validate()?;
        let metrics = Metrics::new();
        let mut servers = Vec::new();
        let mut pools = Vec::new();
        let mut index = HashMap::new();
        for (name, pool) in &config.pools {
            let addrs: Vec<&str> = pool
                .servers
                .iter()
                .map(|s| server_address(s).unwrap_or(s))
                .collect();
            let ids: Vec<usize> = addrs
                .iter()
                .map(|addr| {
                    let id = servers.len();
                    servers.push(Server {
                        addr: addr.to_string(),
                        pool: name.clone(),
                        pool_index: pools.len(),
                        id,
                        failures: AtomicU32::new(0),
                        down: AtomicBool::new(false),
                        generation: AtomicU64::new(0),
                        next_probe_ms: AtomicU64::new(0),
                        probe_delay_ms: AtomicU64::new(0),
                        metrics: metrics.server(name, addr),
                    });
                    id
                })
                .collect();
            index.insert(name.clone(), pools.len());
            pools.push(Pool {
                name: name.clone(),
                servers: ids,
                ring: Ring::new(&addrs),
                metrics: metrics.route(name),
            });
        }
        let tree = Tree::compile(&config, &|name| index[name]);
        Ok(Router {
            local: tree.local_pool(),
            tree,
            servers,
            pools,
            metrics,
            replication: OnceLock::new(),
            connections: OnceLock::new(),
            started: Instant::now(),
            config,
        })
    }

    /// The server for `key` (already stripped) in `pool`, or its gutter stand-in if it is
    /// down and the route fails over on TKO.
    pub fn target(&self, pool: usize, key: &[u8], gutter: Option<Gutter>) -> Target {
        let id = self.pools[pool].server_for(key);
        if !self.servers[id].is_down() {
            return Target::Primary(id);
        }
        match gutter {
            Some(g) if g.takes(crate::config::FailoverError::Tko) => self.gutter_for(key, g),
            _ => Target::Unavailable,
        }
    }

    /// The gutter server for `key`.
    pub fn gutter_for(&self, key: &[u8], gutter: Gutter) -> Target {
        let id = self.pools[gutter.pool].server_for(key);
        if self.servers[id].is_down() {
            Target::Unavailable
        } else {
            Target::Gutter(id)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::{GetPlan, Routed};

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

    fn pool_of(r: &Router, key: &[u8]) -> (String, Vec<u8>) {
        let (routed, stripped) = r.tree.route_key(key);
        let Routed::One(node) = routed else { panic!() };
        match r
            .tree
            .plan_get(node, crate::config::Operation::Get, stripped)
        {
            GetPlan::Pool { pool, .. } => (r.pools[pool].name.clone(), stripped.to_vec()),
            GetPlan::Tree(_) => panic!("not a plain pool"),
        }
    }

    #[test]
    fn prefixes_route_and_strip() {
        let r = router();
        assert_eq!(
            pool_of(&r, b"/codfw/mw/foo"),
            ("codfw".into(), b"foo".to_vec())
        );
        assert_eq!(pool_of(&r, b"foo"), ("eqiad".into(), b"foo".to_vec()));
        assert_eq!(
            pool_of(&r, b"/ulsfo/mw/foo"),
            ("eqiad".into(), b"/ulsfo/mw/foo".to_vec())
        );
        assert_eq!(
            pool_of(&r, b"/codfw/mw/"),
            ("eqiad".into(), b"/codfw/mw/".to_vec())
        );
    }

    #[test]
    fn down_server_goes_to_gutter() {
        let r = router();
        let (routed, _) = r.tree.route_key(b"k");
        let Routed::One(node) = routed else { panic!() };
        let GetPlan::Pool { pool, gutter } =
            r.tree.plan_get(node, crate::config::Operation::Get, b"k")
        else {
            panic!()
        };
        let Target::Primary(id) = r.target(pool, b"k", gutter) else {
            panic!()
        };
        r.servers[id]
            .down
            .store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            matches!(r.target(pool, b"k", gutter), Target::Gutter(g) if r.servers[g].pool == "gutter")
        );
        assert_eq!(gutter.unwrap().exptime, 10);
    }
}
