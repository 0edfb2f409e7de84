//! The mcrouter container's config: Wikimedia's WAN route tree (`mcrouter::config::wan_routes`)
//! over the environment's memcached pools, one per datacenter, and its gutter.
//!
//! Keys without a routing prefix (the main cache, and the WAN cache's reads and writes) go to
//! the local datacenter's pool, failing over to the gutter on TKO. MediaWiki's purges carry the
//! broadcast prefix ([`broadcast_prefix()`]): the router sends them to the local pool before it
//! answers, and to every other datacenter's pool in the background, as mcrouter does for
//! Wikimedia (see docs/mcrouter.md).

use mcrouter::config::{wan_routes, Timeouts, Tko, WanLayout, WAN_CLUSTER};
use wikikube_model::MemcachedValues;

use super::Files;

/// The file name the mcrouter container reads.
pub const FILE: &str = "mcrouter.json";

/// The routing prefix MediaWiki's WANObjectCache writes its purges with
/// (`broadcastRoutingPrefix`): every datacenter's WAN route, as Wikimedia's `/*/mw-wan/`.
pub fn broadcast_prefix() -> String {
    format!("/*/{WAN_CLUSTER}/")
}

/// The WAN tree's layout for a pod in `datacenter`. Validation guarantees `pools` has that
/// datacenter.
pub fn layout(memcached: &MemcachedValues, datacenter: &str) -> WanLayout {
    WanLayout {
        local: datacenter.to_string(),
        pools: memcached
            .pools
            .iter()
            .map(|(name, pool)| (name.clone(), pool.servers.clone()))
            .collect(),
        gutter: memcached.gutter.clone(),
        gutter_ttl_seconds: memcached.gutter_ttl_seconds,
        tko: Tko {
            timeouts_until_tko: memcached.failures_until_down,
            ..Tko::default()
        },
        timeouts: Timeouts {
            connect_ms: u64::from(memcached.timeout_ms),
            request_ms: u64::from(memcached.timeout_ms),
            ..Timeouts::default()
        },
    }
}

/// `mcrouter.json` for a pod in `datacenter`, in mcrouter's own format.
pub fn files(memcached: &MemcachedValues, datacenter: &str) -> Files {
    let config = wan_routes(&layout(memcached, datacenter));
    let mut text = serde_json::to_string_pretty(&config).expect("the mcrouter config serializes");
    text.push('\n');
    let mut files = Files::new();
    files.insert(FILE.into(), text);
    files
}
