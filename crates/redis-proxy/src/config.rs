//! The proxy's configuration file: plain serde types and their validation.
//!
//! This module compiles with `default-features = false` and depends on serde alone, so `render`
//! can build a [`Config`] from the site's values and write it as JSON, as it does for mcrouter.
//! Every struct denies unknown fields: a typo in a hand-written file is an error, not a silent
//! default.
//!
//! The file format (JSON; every section but `pools` may be left out):
//!
//! ```json
//! {
//!   "pools": {
//!     "sessions": {"listen": "127.0.0.1:6379",
//!                  "servers": ["10.64.0.1:6379", "10.64.0.2:6379"],
//!                  "hash_tag": "{}",
//!                  "eject_down_servers": false,
//!                  "server_password": {"file": "/etc/wikikube/secrets/redis-server-password"}},
//!     "locks":    {"listen": "127.0.0.1:6380", "servers": ["10.64.0.3:6379"]}
//!   },
//!   "client_password": {"env": "REDIS_PROXY_PASSWORD"},
//!   "failover": {"failures_until_down": 3, "probe_interval_ms": 1000},
//!   "timeouts": {"connect_ms": 250, "request_ms": 500, "drain_ms": 5000},
//!   "limits": {"max_request_bytes": 8388608, "max_args": 65536, "max_inline_bytes": 65536}
//! }
//! ```
//!
//! Passwords never appear in the file: a [`SecretRef`] names the file or environment variable
//! that holds one, and the server reads it at start (see `Secrets` in the server build).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Named pools of Redis servers, each with its own listening address: a client picks the
    /// pool by the port it connects to, as with twemproxy.
    pub pools: BTreeMap<String, Pool>,
    /// The password clients must give (`AUTH` or `HELLO ... AUTH`) before any other command.
    /// Without one, clients need none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_password: Option<SecretRef>,
    /// When a server counts as down, and how it is probed back.
    #[serde(default)]
    pub failover: Failover,
    /// Every timeout the proxy applies.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Size limits on client requests.
    #[serde(default)]
    pub limits: Limits,
}

/// A pool of Redis servers behind one listening address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// `host:port` the pool's clients connect to.
    pub listen: String,
    /// `host:port` of each server. The string as written names the server's points on the
    /// ketama ring, so write the same string everywhere (other proxies, twemproxy).
    pub servers: Vec<String>,
    /// Two characters, such as `"{}"`: a key holding a non-empty part between them is placed
    /// by that part alone, so `{user:1}:a` and `{user:1}:b` share a server (twemproxy's
    /// `hash_tag`, Redis Cluster's hash tags). Without it the whole key is hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_tag: Option<String>,
    /// What happens to the keys of a server marked down. `false` (the default): requests for
    /// them fail at once with an error until the server is back, so no key ever lives on two
    /// servers (right for locks, and for sessions that must not fork). `true`: they go to the
    /// next server on the ring, as twemproxy's `auto_eject_hosts` does (right for a pure cache).
    #[serde(default)]
    pub eject_down_servers: bool,
    /// The password the proxy gives the pool's servers (Redis `requirepass`) on every new
    /// connection. Clients never send it themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_password: Option<SecretRef>,
}

/// Where a password is kept. The value itself is never written in the config file; one
/// written there by mistake is refused without being echoed in the error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    /// A file holding the password (one trailing newline is ignored): a mounted Secret.
    File(PathBuf),
    /// An environment variable holding the password.
    Env(String),
}

const LITERAL_PASSWORD: &str = "a password cannot be written in the config file: \
    give {\"file\": PATH} or {\"env\": NAME} of where it is kept";

// By hand rather than derived: serde's own errors quote the value they did not expect
// ("unknown variant `hunter2`"), which here would be a password written in the wrong place.
impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, MapAccess, Visitor};

        struct SecretVisitor;

        impl<'de> Visitor<'de> for SecretVisitor {
            type Value = SecretRef;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"{"file": PATH} or {"env": NAME}"#)
            }

            fn visit_str<E: Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_PASSWORD))
            }

            fn visit_i64<E: Error>(self, _: i64) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_PASSWORD))
            }

            fn visit_u64<E: Error>(self, _: u64) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_PASSWORD))
            }

            fn visit_f64<E: Error>(self, _: f64) -> Result<SecretRef, E> {
                Err(E::custom(LITERAL_PASSWORD))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(A::Error::custom(
                        r#"empty: give {"file": PATH} or {"env": NAME}"#,
                    ));
                };
                let secret = match key.as_str() {
                    "file" => SecretRef::File(map.next_value()?),
                    "env" => SecretRef::Env(map.next_value()?),
                    // Not echoed either: it may be the password, written as a key.
                    _ => {
                        return Err(A::Error::custom(
                            r#"unknown key: give {"file": PATH} or {"env": NAME}"#,
                        ))
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom(
                        "give one of \"file\" or \"env\", not both",
                    ));
                }
                Ok(secret)
            }
        }

        deserializer.deserialize_any(SecretVisitor)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::File(path) => write!(f, "file {}", path.display()),
            SecretRef::Env(name) => write!(f, "environment variable {name}"),
        }
    }
}

/// Failure detection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Failover {
    /// Consecutive failures (timeout, refused or broken connection, malformed reply) that mark
    /// a server down.
    pub failures_until_down: u32,
    /// How often a down server is probed (a fresh connection, `AUTH` if needed, `PING`).
    pub probe_interval_ms: u64,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            failures_until_down: 3,
            probe_interval_ms: 1000,
        }
    }
}

/// Timeouts, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Opening a connection to a server, including its `AUTH`.
    pub connect_ms: u64,
    /// One request to a server, from sending it to its complete reply. Below the clients' own
    /// read timeout (phpredis in MediaWiki: 1 s), so a client hears the proxy's error rather
    /// than timing out itself.
    pub request_ms: u64,
    /// On SIGTERM, how long in-flight commands may take before the proxy exits anyway.
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

/// Request size limits. A request over one gets an error and its connection is closed (the
/// rest of the stream cannot be trusted to be in step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request (all of a command's arguments with their framing). Bounds the memory
    /// one client can make the proxy hold.
    pub max_request_bytes: usize,
    /// Most arguments in one command (an `MSET` of N keys has 2N + 1).
    pub max_args: usize,
    /// Longest inline command (a line typed by hand: `PING`). Redis's own limit is 64 KiB.
    pub max_inline_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 8 * 1024 * 1024,
            max_args: 65_536,
            max_inline_bytes: 64 * 1024,
        }
    }
}

/// A configuration that parses but cannot work.
///
/// Written without thiserror because this module may depend on serde alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    /// Where in the file, as a dotted path (`pools.sessions.hash_tag`).
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

fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

impl Config {
    /// Checks what serde cannot: addresses are `host:port`, listeners distinct, hash tags two
    /// characters, numbers usable.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.pools.is_empty() {
            return Err(invalid("pools", "at least one pool is needed"));
        }
        let mut listens = BTreeMap::new();
        for (name, pool) in &self.pools {
            let field = |f: &str| format!("pools.{name}.{f}");
            if !is_host_port(&pool.listen) {
                return Err(invalid(
                    field("listen"),
                    format!("{:?} is not host:port", pool.listen),
                ));
            }
            if let Some(other) = listens.insert(pool.listen.as_str(), name) {
                return Err(invalid(
                    field("listen"),
                    format!("{} is pool {other}'s address too", pool.listen),
                ));
            }
            if pool.servers.is_empty() {
                return Err(invalid(field("servers"), "empty"));
            }
            for (i, server) in pool.servers.iter().enumerate() {
                if !is_host_port(server) {
                    return Err(invalid(
                        format!("pools.{name}.servers[{i}]"),
                        format!("{server:?} is not host:port"),
                    ));
                }
                if pool.servers[..i].contains(server) {
                    return Err(invalid(
                        format!("pools.{name}.servers[{i}]"),
                        format!("{server} is listed twice"),
                    ));
                }
            }
            if let Some(tag) = &pool.hash_tag {
                if tag.len() != 2 || !tag.is_ascii() {
                    return Err(invalid(
                        field("hash_tag"),
                        format!("{tag:?} is not two ASCII characters such as \"{{}}\""),
                    ));
                }
            }
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
        if self.limits.max_request_bytes < 1024 {
            return Err(invalid("limits.max_request_bytes", "must be at least 1024"));
        }
        if self.limits.max_args < 3 {
            return Err(invalid(
                "limits.max_args",
                "must be at least 3 (SET key value)",
            ));
        }
        if self.limits.max_inline_bytes < 16 {
            return Err(invalid("limits.max_inline_bytes", "must be at least 16"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Config {
        serde_json::from_str(
            r#"{"pools": {"sessions": {"listen": "127.0.0.1:6379",
                                       "servers": ["127.0.0.1:7001", "127.0.0.1:7002"],
                                       "hash_tag": "{}",
                                       "server_password": {"file": "/run/pw"}},
                          "locks": {"listen": "127.0.0.1:6380", "servers": ["127.0.0.1:7003"]}},
                "client_password": {"env": "PW"}}"#,
        )
        .unwrap()
    }

    #[test]
    fn example_is_valid_and_round_trips() {
        let config = example();
        config.validate().unwrap();
        assert_eq!(
            config.pools["sessions"].server_password,
            Some(SecretRef::File("/run/pw".into()))
        );
        let again: Config = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn a_literal_password_is_refused_without_being_echoed() {
        for literal in [r#""hunter2""#, "12345678", r#"{"hunter2": 1}"#] {
            let text = format!(r#"{{"pools": {{}}, "client_password": {literal}}}"#);
            let err = serde_json::from_str::<Config>(&text)
                .unwrap_err()
                .to_string();
            assert!(
                !err.contains("hunter2") && !err.contains("12345678"),
                "{err}"
            );
        }
        let err =
            serde_json::from_str::<Config>(r#"{"pools": {}, "client_password": "x"}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("a password cannot be written"),
            "{err}"
        );
        let err = serde_json::from_str::<Config>(r#"{"pools": {}, "password": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn mistakes_name_their_field() {
        let mut c = example();
        c.pools.get_mut("locks").unwrap().listen = "127.0.0.1:6379".into();
        let err = c.validate().unwrap_err();
        assert_eq!(err.field, "pools.sessions.listen");
        assert!(err.reason.contains("locks"), "{err}");

        let mut c = example();
        c.pools.get_mut("sessions").unwrap().hash_tag = Some("{".into());
        assert_eq!(c.validate().unwrap_err().field, "pools.sessions.hash_tag");

        let mut c = example();
        c.pools.get_mut("sessions").unwrap().servers[1] = "127.0.0.1:7001".into();
        assert_eq!(c.validate().unwrap_err().field, "pools.sessions.servers[1]");

        let mut c = example();
        c.pools.get_mut("locks").unwrap().servers = vec!["redis".into()];
        assert_eq!(c.validate().unwrap_err().field, "pools.locks.servers[0]");
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
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON of this schema.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
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
        path: PathBuf,
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
