//! The redis-proxy container's config: the environment's datacenter's Redis pool as the
//! proxy's `sessions` pool, and each lock server as a pool of one (`lock1`, `lock2`, ...), every
//! pool listening on loopback.
//!
//! Built from `redis_proxy::config` types (serde alone, no server code) and written as JSON, as
//! mcrouter's config is. The servers' password never appears here: the config names the file
//! the private Secret's `redis_password` key is mounted as, which only this container mounts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ::redis_proxy::config::{Config, Failover, Limits, Pool, SecretRef, Timeouts};
use wikikube_model::{CakeValues, LifecycleValues, REDIS_PASSWORD};

use super::Files;

/// The file name the redis-proxy container reads.
pub const FILE: &str = "redis-proxy.json";

/// Where the redis-proxy container reads its config file.
pub const CONFIG_DIR: &str = "/etc/wikikube/redis-proxy";

/// Where the redis-proxy container mounts the one key `redis_password` of the private Secret.
pub const SECRET_DIR: &str = "/etc/wikikube/redis-proxy-secret";

/// The name of the sessions pool in the proxy's config.
pub const SESSIONS_POOL: &str = "sessions";

/// Where MediaWiki finds the proxy: the loopback address of each of its pools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listeners {
    /// `127.0.0.1:PORT` of the sessions pool.
    pub sessions: String,
    /// `127.0.0.1:PORT` of each lock server's pool, in the site's order.
    pub locks: Vec<String>,
}

/// The proxy's listeners for a pod in `datacenter`, or `None` when the site keeps no sessions in
/// Redis there (no `redis.pools`; validation guarantees that a site with pools has this
/// datacenter's).
pub fn listeners(values: &CakeValues, datacenter: &str) -> Option<Listeners> {
    let pool = values.redis.pool(datacenter)?;
    let port = values.redis_proxy.port;
    // Only the pod's own containers may talk to the proxy: it listens on loopback, so it needs
    // no client password (which would be one more secret in the app container, guarding
    // nothing a process outside the pod could reach).
    let at = |offset: usize| {
        let offset = u16::try_from(offset).expect("validated: the ports fit");
        format!("127.0.0.1:{}", port + offset)
    };
    Some(Listeners {
        sessions: at(0),
        locks: (1..=pool.lock_servers.len()).map(at).collect(),
    })
}

/// The proxy's config for a pod in `datacenter`; `password` says whether the private values
/// have `redis_password`, which every pool's servers are then given.
pub fn config(values: &CakeValues, datacenter: &str, password: bool) -> Option<Config> {
    let pool = values.redis.pool(datacenter)?;
    let listeners = listeners(values, datacenter)?;
    let server_password =
        password.then(|| SecretRef::File(PathBuf::from(SECRET_DIR).join(REDIS_PASSWORD)));
    let mut pools = BTreeMap::new();
    pools.insert(
        SESSIONS_POOL.to_string(),
        Pool {
            listen: listeners.sessions,
            servers: pool.servers.clone(),
            hash_tag: None,
            // A session must not fork between two servers: when its server is down, MediaWiki
            // gets an error at once (and the user a new session once it is back), never a
            // stand-in that forgets the session when the server returns.
            eject_down_servers: false,
            server_password: server_password.clone(),
        },
    );
    for (index, (listen, server)) in listeners
        .locks
        .into_iter()
        .zip(&pool.lock_servers)
        .enumerate()
    {
        // One pool per lock server: RedisLockManager's scripts touch keys they do not
        // declare, which only a pool of one server runs, and it keeps its own quorum.
        pools.insert(
            format!("lock{}", index + 1),
            Pool {
                listen,
                servers: vec![server.clone()],
                hash_tag: None,
                eject_down_servers: false,
                server_password: server_password.clone(),
            },
        );
    }
    let request_ms = u64::from(values.redis.timeout_ms);
    Some(Config {
        pools,
        client_password: None,
        failover: Failover {
            failures_until_down: values.redis.failures_until_down,
            ..Failover::default()
        },
        timeouts: Timeouts {
            // A connection (with its AUTH) within the request's own bound.
            connect_ms: request_ms.min(Timeouts::default().connect_ms),
            request_ms,
            // The proxy gets SIGTERM after php-fpm has stopped, and the pod is killed one step
            // later: half a step leaves the drain time to finish before the SIGKILL.
            drain_ms: u64::from(LifecycleValues::STEP_SECONDS) * 1000 / 2,
        },
        limits: Limits::default(),
    })
}

/// `redis-proxy.json` for a pod in `datacenter`, or `None` without Redis there.
pub fn files(values: &CakeValues, datacenter: &str, password: bool) -> Option<Files> {
    let config = config(values, datacenter, password)?;
    let mut text =
        serde_json::to_string_pretty(&config).expect("the redis-proxy config serializes");
    text.push('\n');
    Some(Files::from([(FILE.to_string(), text)]))
}
