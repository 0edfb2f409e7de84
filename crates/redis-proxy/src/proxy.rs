//! The proxy's fixed state, shared by every session: pools, servers, their connections, the
//! passwords, the metrics.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, InvalidConfig};
use crate::metrics::Metrics;
use crate::pool::{Connection, Link, Pool, Server};
use crate::secret::{self, Password, SecretError};

/// The passwords the config points at, read once at start.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// The password clients must give.
    pub client_password: Option<Password>,
    /// Per pool, the password its servers want.
    pub server_passwords: BTreeMap<String, Password>,
}

impl Secrets {
    /// Reads every password `config` refers to.
    pub fn read(config: &Config) -> Result<Secrets, SecretError> {
        let client_password = config
            .client_password
            .as_ref()
            .map(|r| secret::read("client_password", r))
            .transpose()?;
        let mut server_passwords = BTreeMap::new();
        for (name, pool) in &config.pools {
            if let Some(r) = &pool.server_password {
                let field = format!("pools.{name}.server_password");
                server_passwords.insert(name.clone(), secret::read(&field, r)?);
            }
        }
        Ok(Secrets {
            client_password,
            server_passwords,
        })
    }
}

/// Everything fixed at start. Shared by every session.
#[derive(Debug)]
pub struct Proxy {
    /// The configuration it was built from.
    pub config: Config,
    /// Every pool, in the config's (name) order.
    pub pools: Vec<Pool>,
    /// Every server of every pool; [`Pool::servers`] holds indices into it.
    pub servers: Vec<Server>,
    /// How to reach each server, same order as `servers`.
    pub links: Vec<Link>,
    /// One shared connection per server, same order as `servers`.
    pub connections: Vec<Connection>,
    /// The pool index of each server, same order as `servers`.
    server_pool: Vec<usize>,
    /// The password clients must give, if any.
    pub client_password: Option<Password>,
    /// Every metric.
    pub metrics: Metrics,
    /// The next client connection's id (for `CLIENT ID` and `HELLO`).
    pub next_client_id: AtomicU64,
}

impl Proxy {
    /// Builds the proxy's state and starts one connection task per server. Must be called
    /// within a Tokio runtime.
    pub fn new(config: Config, secrets: Secrets) -> Result<Arc<Proxy>, InvalidConfig> {
        config.validate()?;
        let metrics = Metrics::new();
        let mut pools = Vec::new();
        let mut servers = Vec::new();
        let mut links = Vec::new();
        let mut server_pool = Vec::new();
        let connect_timeout = Duration::from_millis(config.timeouts.connect_ms);
        let request_timeout = Duration::from_millis(config.timeouts.request_ms);
        for (name, pool) in &config.pools {
            let password = secrets.server_passwords.get(name).cloned();
            let ids: Vec<usize> = pool
                .servers
                .iter()
                .map(|addr| {
                    servers.push(Server::new(addr, name, metrics.server(name, addr)));
                    links.push(Link {
                        addr: addr.clone(),
                        password: password.clone(),
                        connect_timeout,
                        request_timeout,
                    });
                    server_pool.push(pools.len());
                    servers.len() - 1
                })
                .collect();
            pools.push(Pool::new(
                name,
                ids,
                &pool.servers,
                pool.hash_tag.as_deref(),
                pool.eject_down_servers,
                password,
                metrics.pool(name),
            ));
        }
        let connections = links
            .iter()
            .zip(&servers)
            .map(|(link, server)| Connection::start(link.clone(), server.metrics.clone()))
            .collect();
        Ok(Arc::new(Proxy {
            config,
            pools,
            servers,
            links,
            connections,
            server_pool,
            client_password: secrets.client_password,
            metrics,
            next_client_id: AtomicU64::new(1),
        }))
    }

    /// The pool a server belongs to.
    pub fn pool_of(&self, server: usize) -> &Pool {
        &self.pools[self.server_pool[server]]
    }
}
