//! The router's configuration file: plain serde types and their validation.
//!
//! This module compiles with `default-features = false` and depends on serde alone, because the
//! `render` crate builds a [`Config`] from the site's values and writes it as JSON. Every struct
//! denies unknown fields, so a typo in a hand-written file is an error, not a silent default.
//!
//! The file format (JSON; every section but `pools` and `local_pool` may be left out):
//!
//! ```json
//! {
//!   "pools": {"eqiad":  {"servers": ["127.0.0.1:11211", "127.0.0.1:11212"]},
//!             "codfw":  {"servers": ["127.0.0.1:11311"]},
//!             "gutter": {"servers": ["127.0.0.1:11411"]}},
//!   "local_pool": "eqiad",
//!   "routes": [{"prefix": "/eqiad/mw/", "pool": "eqiad"},
//!              {"prefix": "/codfw/mw/", "pool": "codfw"}],
//!   "replicate_to": ["codfw"],
//!   "failover": {"gutter_pool": "gutter", "gutter_ttl_seconds": 10,
//!                "failures_until_down": 3, "probe_interval_ms": 1000},
//!   "timeouts": {"connect_ms": 250, "request_ms": 500, "drain_ms": 5000},
//!   "limits": {"max_key_bytes": 250, "max_value_bytes": 1048576}
//! }
//! ```

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Named pools of memcached servers. A key is placed on one server of its pool by the
    /// consistent-hash ring (see the crate docs for the exact ring).
    pub pools: BTreeMap<String, Pool>,
    /// The pool of this datacenter: the default route for keys without a routing prefix.
    pub local_pool: String,
    /// Routing prefixes of the form `/<datacenter>/<cluster>/`. A key that starts with one goes to
    /// its pool with the prefix stripped, as real mcrouter does.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Pools of other datacenters that receive deletes and touches of the local pool
    /// asynchronously (the wide-area cache's invalidations).
    #[serde(default)]
    pub replicate_to: Vec<String>,
    /// When a server counts as down, and where its keys go meanwhile.
    #[serde(default)]
    pub failover: Failover,
    /// Every timeout the router applies.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Size limits on client requests.
    #[serde(default)]
    pub limits: Limits,
}

/// A pool of memcached servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// `host:port` of each server. The string as written names the server's points on the
    /// ring, so write the same string everywhere (other clients, other routers).
    pub servers: Vec<String>,
}

/// One routing prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// `/<datacenter>/<cluster>/`, with both slashes at the ends.
    pub prefix: String,
    /// The pool that keys under the prefix go to.
    pub pool: String,
}

/// Failure detection and the gutter pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Failover {
    /// The pool that takes a down server's keys. Without one, requests for a down server's keys
    /// fail with `SERVER_ERROR`.
    pub gutter_pool: Option<String>,
    /// Sets that go to the gutter have their TTL capped at this many seconds, so stale values
    /// age out soon after the server comes back.
    pub gutter_ttl_seconds: u32,
    /// Consecutive failures (timeout, refused, broken connection) that mark a server down.
    pub failures_until_down: u32,
    /// How often a down server is probed (`version`) to bring it back.
    pub probe_interval_ms: u64,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            gutter_pool: None,
            gutter_ttl_seconds: 10,
            failures_until_down: 3,
            probe_interval_ms: 1000,
        }
    }
}

/// Timeouts, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Opening a connection to a memcached server.
    pub connect_ms: u64,
    /// One request to a memcached server, from sending it to its complete reply.
    pub request_ms: u64,
    /// On SIGTERM, how long in-flight commands may take before the router exits anyway.
    pub drain_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 250,
            request_ms: 500,
            drain_ms: 5000,
        }
    }
}

/// Request size limits. Requests over them get memcached's own errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest key, before the routing prefix is stripped. memcached's own limit is 250.
    pub max_key_bytes: usize,
    /// Largest value of a set-family command.
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 250,
            max_value_bytes: 1024 * 1024,
        }
    }
}

/// A configuration that parses but cannot work.
///
/// Written without thiserror because this module may depend on serde alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    /// Where in the file, as a dotted path (`failover.gutter_pool`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl std::error::Error for InvalidConfig {}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidConfig {
    InvalidConfig {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Config {
    /// Checks what serde cannot: that every pool named exists, prefixes have the
    /// `/<datacenter>/<cluster>/` form, servers are `host:port`, and numbers are usable.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        let known = |field: &str, name: &str| {
            if self.pools.contains_key(name) {
                Ok(())
            } else {
                Err(invalid(
                    field,
                    format!(
                        "no pool named {name:?} (pools: {})",
                        self.pools.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ))
            }
        };
        if self.pools.is_empty() {
            return Err(invalid("pools", "at least one pool is needed"));
        }
        for (name, pool) in &self.pools {
            if pool.servers.is_empty() {
                return Err(invalid(format!("pools.{name}.servers"), "empty"));
            }
            for (i, server) in pool.servers.iter().enumerate() {
                let ok = server
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !ok {
                    return Err(invalid(
                        format!("pools.{name}.servers[{i}]"),
                        format!("{server:?} is not host:port"),
                    ));
                }
            }
        }
        known("local_pool", &self.local_pool)?;
        for (i, route) in self.routes.iter().enumerate() {
            known(&format!("routes[{i}].pool"), &route.pool)?;
            if !is_routing_prefix(&route.prefix) {
                return Err(invalid(
                    format!("routes[{i}].prefix"),
                    format!(
                        "{:?} is not of the form /<datacenter>/<cluster>/",
                        route.prefix
                    ),
                ));
            }
            if self.routes[..i].iter().any(|r| r.prefix == route.prefix) {
                return Err(invalid(format!("routes[{i}].prefix"), "listed twice"));
            }
        }
        for (i, pool) in self.replicate_to.iter().enumerate() {
            known(&format!("replicate_to[{i}]"), pool)?;
            if *pool == self.local_pool {
                return Err(invalid(
                    format!("replicate_to[{i}]"),
                    "the local pool gets every operation already",
                ));
            }
        }
        if let Some(gutter) = &self.failover.gutter_pool {
            known("failover.gutter_pool", gutter)?;
        }
        if self.failover.failures_until_down == 0 {
            return Err(invalid(
                "failover.failures_until_down",
                "must be at least 1",
            ));
        }
        if self.failover.probe_interval_ms == 0 {
            return Err(invalid("failover.probe_interval_ms", "must be at least 1"));
        }
        if self.timeouts.connect_ms == 0 || self.timeouts.request_ms == 0 {
            return Err(invalid(
                "timeouts",
                "connect_ms and request_ms must be at least 1",
            ));
        }
        if self.limits.max_key_bytes == 0 || self.limits.max_key_bytes > 250 {
            return Err(invalid(
                "limits.max_key_bytes",
                "must be 1..=250 (memcached's own limit is 250)",
            ));
        }
        Ok(())
    }
}

/// `/<datacenter>/<cluster>/`: two non-empty segments without spaces or further slashes.
fn is_routing_prefix(prefix: &str) -> bool {
    let Some(inner) = prefix
        .strip_prefix('/')
        .and_then(|rest| rest.strip_suffix('/'))
    else {
        return false;
    };
    let mut parts = inner.split('/');
    let ok = |p: Option<&str>| {
        p.is_some_and(|p| !p.is_empty() && !p.bytes().any(|b| b.is_ascii_whitespace()))
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        let mut pools = BTreeMap::new();
        for (name, port) in [("eqiad", 1), ("codfw", 2), ("gutter", 3)] {
            pools.insert(
                name.to_string(),
                Pool {
                    servers: vec![format!("127.0.0.1:{port}")],
                },
            );
        }
        Config {
            pools,
            local_pool: "eqiad".into(),
            routes: vec![Route {
                prefix: "/codfw/mw/".into(),
                pool: "codfw".into(),
            }],
            replicate_to: vec!["codfw".into()],
            failover: Failover {
                gutter_pool: Some("gutter".into()),
                ..Failover::default()
            },
            timeouts: Timeouts::default(),
            limits: Limits::default(),
        }
    }

    #[test]
    fn example_is_valid() {
        example().validate().unwrap();
    }

    #[test]
    fn unknown_pool_is_named() {
        let mut c = example();
        c.routes[0].pool = "ulsfo".into();
        let err = c.validate().unwrap_err();
        assert_eq!(err.field, "routes[0].pool");
        assert!(err.reason.contains("ulsfo"));
    }

    #[test]
    fn prefixes_need_two_segments() {
        assert!(is_routing_prefix("/eqiad/mw/"));
        for bad in [
            "/eqiad/",
            "eqiad/mw/",
            "/eqiad/mw",
            "/a/b/c/",
            "//mw/",
            "/a b/c/",
        ] {
            assert!(!is_routing_prefix(bad), "{bad}");
        }
    }

    #[test]
    fn replicating_to_self_is_refused() {
        let mut c = example();
        c.replicate_to.push("eqiad".into());
        assert_eq!(c.validate().unwrap_err().field, "replicate_to[1]");
    }
}

/// Why a configuration file could not be loaded.
#[cfg(feature = "server")]
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON of this schema.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What was found and what was expected.
        message: String,
    },
    /// The file parses but cannot work.
    #[error("{path}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        source: InvalidConfig,
    },
}

/// Reads, parses and validates a configuration file.
#[cfg(feature = "server")]
pub fn load(path: &std::path::Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config: Config = serde_json::from_str(&text).map_err(|e| {
        let message = e.to_string();
        // serde_json appends " at line L column C"; the error names them apart.
        let message = match message.rsplit_once(" at line ") {
            Some((m, _)) => m.to_string(),
            None => message,
        };
        LoadError::Parse {
            path: path.to_owned(),
            line: e.line(),
            column: e.column(),
            message,
        }
    })?;
    config.validate().map_err(|source| LoadError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    Ok(config)
}
