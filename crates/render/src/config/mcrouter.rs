//! The mcrouter container's config: the local datacenter's pool as the default route, the other
//! datacenters' pools for routing prefixes and replicated purges, and the gutter for failover.

use mcrouter::config::{Config, Failover, Limits, Pool, Route, Timeouts};
use wikikube_model::MemcachedValues;

use super::Files;

/// The file name the mcrouter container reads.
pub const FILE: &str = "mcrouter.json";

/// The gutter pool's name in the router's config.
const GUTTER: &str = "gutter";

/// `mcrouter.json` for a pod in `datacenter`. Validation guarantees `pools` has that datacenter.
pub fn files(memcached: &MemcachedValues, datacenter: &str) -> Files {
    let mut pools: std::collections::BTreeMap<String, Pool> = memcached
        .pools
        .iter()
        .map(|(name, pool)| {
            let servers = pool.servers.clone();
            (name.clone(), Pool { servers })
        })
        .collect();
    let gutter_pool = (!memcached.gutter.is_empty()).then(|| {
        pools.insert(
            GUTTER.into(),
            Pool {
                servers: memcached.gutter.clone(),
            },
        );
        GUTTER.to_string()
    });
    let config = Config {
        routes: memcached
            .pools
            .keys()
            .map(|name| Route {
                prefix: format!("/{name}/mw/"),
                pool: name.clone(),
            })
            .collect(),
        replicate_to: memcached
            .pools
            .keys()
            .filter(|name| *name != datacenter)
            .cloned()
            .collect(),
        local_pool: datacenter.to_string(),
        pools,
        failover: Failover {
            gutter_pool,
            gutter_ttl_seconds: memcached.gutter_ttl_seconds,
            failures_until_down: memcached.failures_until_down,
            ..Failover::default()
        },
        timeouts: Timeouts {
            connect_ms: u64::from(memcached.timeout_ms),
            request_ms: u64::from(memcached.timeout_ms),
            ..Timeouts::default()
        },
        limits: Limits::default(),
    };
    let mut text = serde_json::to_string_pretty(&config).expect("the mcrouter config serializes");
    text.push('\n');
    let mut files = Files::new();
    files.insert(FILE.into(), text);
    files
}
