//! The router's configuration: plain serde types and their validation, in two formats.
//!
//! - [`RoutesConfig`]: mcrouter's own format — pools and a tree of route handles
//!   ([`RouteHandle`]) under routing prefixes — with the settings real mcrouter takes on its
//!   command line as fields. [`wan_routes`] builds Wikimedia's WAN tree from a [`WanLayout`].
//! - [`Config`]: a shorthand (local pool, prefix routes, pools to replicate invalidations to,
//!   a gutter) that [`Config::to_routes`] compiles to the same tree.
//!
//! This module compiles with `default-features = false` and depends on serde alone, because the
//! `render` crate builds these values from the site's values and writes them as JSON. Reading a
//! file ([`load`], either format, errors naming the JSON path of a mistake) needs the `server`
//! feature. Every struct denies unknown fields, so a typo in a hand-written file is an error,
//! not a silent default.
//!
//! The shorthand (JSON; every section but `pools` and `local_pool` may be left out):
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
//!                "failures_until_down": 3, "probe_interval_ms": 1000,
//!                "unavailable": "close"},
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
    /// How a command is answered when neither its server nor the gutter can take it.
    #[serde(skip_serializing_if = "Unavailable::is_default")]
    pub unavailable: Unavailable,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            gutter_pool: None,
            gutter_ttl_seconds: 10,
            failures_until_down: 3,
            probe_interval_ms: 1000,
            unavailable: Unavailable::default(),
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

impl Timeouts {
    /// Both config formats' check of the section.
    fn check(&self) -> Result<(), InvalidConfig> {
        if self.connect_ms == 0 || self.request_ms == 0 {
            return Err(invalid(
                "timeouts",
                "connect_ms and request_ms must be at least 1",
            ));
        }
        Ok(())
    }
}

impl Limits {
    /// Both config formats' check of the section.
    fn check(&self) -> Result<(), InvalidConfig> {
        if self.max_key_bytes == 0 || self.max_key_bytes > 250 {
            return Err(invalid(
                "limits.max_key_bytes",
                "must be 1..=250 (memcached's own limit is 250)",
            ));
        }
        Ok(())
    }
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
                if server_address(server).is_none() {
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
        self.timeouts.check()?;
        self.limits.check()
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
    fn the_wan_tree_is_wikimedias() {
        let layout = WanLayout {
            local: "eqiad".into(),
            pools: [
                ("eqiad".to_string(), vec!["10.64.0.1:11211".to_string()]),
                ("codfw".to_string(), vec!["10.192.0.1:11211".to_string()]),
            ]
            .into_iter()
            .collect(),
            gutter: vec!["10.64.0.9:11211".into()],
            gutter_ttl_seconds: 10,
            tko: Tko::default(),
            timeouts: Timeouts::default(),
        };
        let tree = wan_routes(&layout);
        tree.validate().unwrap();
        let json = serde_json::to_value(&tree).unwrap();
        if std::env::var_os("PRINT_WAN_TREE").is_some() {
            println!("{}", serde_json::to_string_pretty(&json).unwrap());
        }
        assert_eq!(json["default_route"], "/eqiad/mw/");
        let route = |alias: &str| {
            json["routes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["aliases"][0] == alias)
                .unwrap()["route"]
                .clone()
        };
        let local = route("/eqiad/mw/");
        assert_eq!(local["type"], "FailoverWithExptimeRoute");
        assert_eq!(local["failover"][0], "PoolRoute|gutter");
        assert_eq!(local["failover_errors"][0], "tko");
        assert_eq!(route("/codfw/mw/"), "PoolRoute|codfw");
        let wan_local = route("/eqiad/mw-wan/");
        assert_eq!(wan_local["default_policy"], local);
        assert_eq!(
            wan_local["operation_policies"]["set"]["type"],
            "AllSyncRoute"
        );
        assert_eq!(
            wan_local["operation_policies"]["delete"]["children"][0],
            local
        );
        let wan_remote = route("/codfw/mw-wan/");
        assert_eq!(wan_remote["default_policy"], local, "reads stay local");
        assert_eq!(
            wan_remote["operation_policies"]["set"]["type"],
            "AllAsyncRoute"
        );
        assert_eq!(
            wan_remote["operation_policies"]["delete"]["children"][0],
            "PoolRoute|codfw"
        );
    }

    #[test]
    fn replicating_to_self_is_refused() {
        let mut c = example();
        c.replicate_to.push("eqiad".into());
        assert_eq!(c.validate().unwrap_err().field, "replicate_to[1]");
    }

    /// The two formats share their timeouts and limits sections, and their checks.
    #[cfg(feature = "server")]
    #[test]
    fn both_formats_refuse_a_zero_timeout_and_a_key_limit_over_memcacheds() {
        let shorthand = r#"{"pools": {"A": {"servers": ["127.0.0.1:1"]}}, "local_pool": "A""#;
        let tree = r#"{"pools": {"A": {"servers": ["127.0.0.1:1"]}}, "route": "PoolRoute|A""#;
        for start in [shorthand, tree] {
            for (section, field) in [
                (r#""timeouts": {"request_ms": 0}"#, "timeouts"),
                (
                    r#""limits": {"max_key_bytes": 251}"#,
                    "limits.max_key_bytes",
                ),
            ] {
                let text = format!("{start}, {section}}}");
                match parse(&text) {
                    Err(ParseError::Invalid(e)) => assert_eq!(e.field, field, "{text}"),
                    other => panic!("{text}: {other:?}"),
                }
            }
            parse(&format!("{start}}}")).expect("the config without the mistake is valid");
        }
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

/// Reads, parses and validates a configuration file, in either format: the shorthand
/// ([`Config`], recognised by its `local_pool`) or mcrouter's own ([`RoutesConfig`]). Both
/// come back as the route tree the router runs.
#[cfg(feature = "server")]
pub fn load(path: &std::path::Path) -> Result<RoutesConfig, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|e| e.at(path))
}

/// Why a configuration text is unusable (before a file name is attached).
#[cfg(feature = "server")]
#[derive(Debug)]
pub enum ParseError {
    /// Not JSON, or not of the schema, at a line and column.
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was found and what was expected.
        message: String,
    },
    /// Well-formed but unusable, at a JSON path.
    Invalid(InvalidConfig),
}

#[cfg(feature = "server")]
impl ParseError {
    fn at(self, path: &std::path::Path) -> LoadError {
        match self {
            ParseError::Syntax {
                line,
                column,
                message,
            } => LoadError::Parse {
                path: path.to_owned(),
                line,
                column,
                message,
            },
            ParseError::Invalid(source) => LoadError::Invalid {
                path: path.to_owned(),
                source,
            },
        }
    }
}

#[cfg(feature = "server")]
fn syntax(e: &serde_json::Error) -> ParseError {
    let message = e.to_string();
    // serde_json appends " at line L column C"; the error names them apart.
    let message = match message.rsplit_once(" at line ") {
        Some((m, _)) => m.to_string(),
        None => message,
    };
    ParseError::Syntax {
        line: e.line(),
        column: e.column(),
        message,
    }
}

/// Parses and validates a configuration text in either format (see [`load`]).
#[cfg(feature = "server")]
pub fn parse(text: &str) -> Result<RoutesConfig, ParseError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| syntax(&e))?;
    let routes = if value.get("local_pool").is_some() {
        let config: Config = serde_json::from_str(text).map_err(|e| syntax(&e))?;
        config.validate().map_err(ParseError::Invalid)?;
        config.to_routes()
    } else {
        tree::routes_config(&value).map_err(ParseError::Invalid)?
    };
    routes.validate().map_err(ParseError::Invalid)?;
    Ok(routes)
}

/// Reading mcrouter's format from JSON by hand, so that every mistake names its JSON path
/// (`routes[1].route.operation_policies.set.children[0]`) and an unknown route handle is
/// named as such.
#[cfg(feature = "server")]
mod tree {
    use super::*;
    use serde_json::Value;

    fn obj<'v>(
        v: &'v Value,
        path: &str,
    ) -> Result<&'v serde_json::Map<String, Value>, InvalidConfig> {
        v.as_object()
            .ok_or_else(|| invalid(path, format!("expected an object, found {}", kind(v))))
    }

    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }

    fn typed<T: serde::de::DeserializeOwned>(v: &Value, path: &str) -> Result<T, InvalidConfig> {
        T::deserialize(v).map_err(|e| invalid(path, e.to_string()))
    }

    fn only(
        map: &serde_json::Map<String, Value>,
        allowed: &[&str],
        path: &str,
    ) -> Result<(), InvalidConfig> {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(invalid(
                    join(path, key),
                    format!("unknown field (expected one of: {})", allowed.join(", ")),
                ));
            }
        }
        Ok(())
    }

    fn join(path: &str, key: &str) -> String {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    }

    pub(super) fn routes_config(v: &Value) -> Result<RoutesConfig, InvalidConfig> {
        let top = obj(v, "(top level)")?;
        only(
            top,
            &[
                "pools",
                "route",
                "routes",
                "default_route",
                "tko",
                "timeouts",
                "limits",
                "unavailable",
            ],
            "",
        )?;
        let pools = match top.get("pools") {
            Some(p) => {
                let mut pools = BTreeMap::new();
                for (name, pool) in obj(p, "pools")? {
                    let path = format!("pools.{name}");
                    let map = obj(pool, &path)?;
                    only(map, &["servers", "protocol"], &path)?;
                    if let Some(proto) = map.get("protocol") {
                        if proto.as_str() != Some("ascii") {
                            return Err(invalid(
                                join(&path, "protocol"),
                                "only \"ascii\" is spoken",
                            ));
                        }
                    }
                    let servers: Vec<String> = typed(
                        map.get("servers").unwrap_or(&Value::Null),
                        &join(&path, "servers"),
                    )?;
                    pools.insert(name.clone(), Pool { servers });
                }
                pools
            }
            None => return Err(invalid("pools", "missing")),
        };
        let routes = match (top.get("route"), top.get("routes")) {
            (Some(_), Some(_)) => {
                return Err(invalid("route", "give either route or routes, not both"))
            }
            (Some(r), None) => vec![PrefixRoute {
                aliases: Vec::new(),
                route: handle(r, "route")?,
            }],
            (None, Some(list)) => {
                let list = list
                    .as_array()
                    .ok_or_else(|| invalid("routes", "expected an array"))?;
                let mut routes = Vec::new();
                for (i, r) in list.iter().enumerate() {
                    let path = format!("routes[{i}]");
                    let map = obj(r, &path)?;
                    only(map, &["aliases", "route"], &path)?;
                    let aliases: Vec<String> = typed(
                        map.get("aliases").unwrap_or(&Value::Null),
                        &join(&path, "aliases"),
                    )?;
                    let route = handle(
                        map.get("route")
                            .ok_or_else(|| invalid(join(&path, "route"), "missing"))?,
                        &join(&path, "route"),
                    )?;
                    routes.push(PrefixRoute { aliases, route });
                }
                routes
            }
            (None, None) => return Err(invalid("route", "missing (route or routes)")),
        };
        let opt = |key: &str| top.get(key).filter(|v| !v.is_null());
        Ok(RoutesConfig {
            pools,
            routes,
            default_route: opt("default_route")
                .map(|v| typed(v, "default_route"))
                .transpose()?,
            tko: opt("tko")
                .map(|v| typed(v, "tko"))
                .transpose()?
                .unwrap_or_default(),
            timeouts: opt("timeouts")
                .map(|v| typed(v, "timeouts"))
                .transpose()?
                .unwrap_or_default(),
            limits: opt("limits")
                .map(|v| typed(v, "limits"))
                .transpose()?
                .unwrap_or_default(),
            unavailable: opt("unavailable")
                .map(|v| typed(v, "unavailable"))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    fn unknown(name: &str, path: &str) -> InvalidConfig {
        invalid(
            path,
            format!(
                "unknown route handle {name:?} (known: {})",
                RouteHandle::KNOWN.join(", ")
            ),
        )
    }

    fn list(v: Option<&Value>, path: &str) -> Result<Vec<RouteHandle>, InvalidConfig> {
        match v {
            None => Err(invalid(path, "missing")),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, c)| handle(c, &format!("{path}[{i}]")))
                .collect(),
            // mcrouter takes a single handle where a list is expected.
            Some(one) => Ok(vec![handle(one, path)?]),
        }
    }

    fn one(v: Option<&Value>, path: &str) -> Result<Box<RouteHandle>, InvalidConfig> {
        match v {
            None => Err(invalid(path, "missing")),
            Some(h) => Ok(Box::new(handle(h, path)?)),
        }
    }

    /// One route handle: a string (`"PoolRoute|NAME"`, `"NullRoute"`, `"ErrorRoute|TEXT"`)
    /// or an object with `type`.
    pub(super) fn handle(v: &Value, path: &str) -> Result<RouteHandle, InvalidConfig> {
        if let Some(text) = v.as_str() {
            let (name, arg) = match text.split_once('|') {
                Some((n, a)) => (n, Some(a)),
                None => (text, None),
            };
            return match (name, arg) {
                ("PoolRoute" | "Pool", Some(pool)) if !pool.contains('|') => {
                    Ok(RouteHandle::pool(pool))
                }
                ("NullRoute", None) => Ok(RouteHandle::Null),
                ("ErrorRoute", arg) => Ok(RouteHandle::Error {
                    message: arg.unwrap_or("").to_string(),
                }),
                _ if RouteHandle::KNOWN.contains(&name) => Err(invalid(
                    path,
                    format!(
                        "{text:?}: this router takes \"PoolRoute|NAME\", \"NullRoute\" and \
                         \"ErrorRoute|TEXT\" as strings; write {name} as an object"
                    ),
                )),
                _ => Err(unknown(name, path)),
            };
        }
        let map = obj(v, path)?;
        let name = map
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(join(path, "type"), "missing (the route handle's type)"))?;
        let field = |key: &str| map.get(key);
        let fpath = |key: &str| join(path, key);
        let children_of = |allowed: &[&str]| -> Result<Vec<RouteHandle>, InvalidConfig> {
            only(map, allowed, path)?;
            list(field("children"), &fpath("children"))
        };
        Ok(match name {
            "PoolRoute" => {
                only(map, &["type", "pool"], path)?;
                match field("pool") {
                    Some(Value::String(p)) => RouteHandle::pool(p),
                    Some(_) => {
                        return Err(invalid(
                            fpath("pool"),
                            "expected a pool name (pools defined inline are not supported)",
                        ))
                    }
                    None => return Err(invalid(fpath("pool"), "missing")),
                }
            }
            "HashRoute" => {
                only(map, &["type", "children", "salt", "hash_func"], path)?;
                RouteHandle::Hash {
                    children: list(field("children"), &fpath("children"))?,
                }
            }
            "AllSyncRoute" => RouteHandle::AllSync {
                children: children_of(&["type", "children"])?,
            },
            "AllAsyncRoute" => RouteHandle::AllAsync {
                children: children_of(&["type", "children"])?,
            },
            "AllInitialRoute" => RouteHandle::AllInitial {
                children: children_of(&["type", "children"])?,
            },
            "FailoverRoute" => RouteHandle::Failover {
                children: children_of(&["type", "children"])?,
            },
            "FailoverWithExptimeRoute" => {
                only(
                    map,
                    &[
                        "type",
                        "normal",
                        "failover",
                        "failover_exptime",
                        "failover_errors",
                    ],
                    path,
                )?;
                let failover_errors = match field("failover_errors") {
                    None => None,
                    Some(v) => {
                        let names: Vec<String> = typed(v, &fpath("failover_errors"))?;
                        let mut kinds = Vec::new();
                        for (i, n) in names.iter().enumerate() {
                            kinds.push(FailoverError::from_name(n).ok_or_else(|| {
                                invalid(
                                    format!("{}[{i}]", fpath("failover_errors")),
                                    format!(
                                        "unknown error {n:?} (known: {})",
                                        FailoverError::ALL.map(FailoverError::name).join(", ")
                                    ),
                                )
                            })?);
                        }
                        Some(kinds)
                    }
                };
                RouteHandle::FailoverWithExptime {
                    normal: one(field("normal"), &fpath("normal"))?,
                    failover: list(field("failover"), &fpath("failover"))?,
                    failover_exptime: field("failover_exptime")
                        .map(|v| typed(v, &fpath("failover_exptime")))
                        .transpose()?
                        .unwrap_or(60),
                    failover_errors,
                }
            }
            "OperationSelectorRoute" => {
                only(map, &["type", "default_policy", "operation_policies"], path)?;
                let mut operation_policies = BTreeMap::new();
                if let Some(ops) = field("operation_policies") {
                    let ppath = fpath("operation_policies");
                    for (op, h) in obj(ops, &ppath)? {
                        let at = join(&ppath, op);
                        let operation = Operation::from_name(op).ok_or_else(|| {
                            invalid(
                                &at,
                                format!(
                                    "unknown operation (known: {})",
                                    Operation::ALL.map(Operation::name).join(", ")
                                ),
                            )
                        })?;
                        operation_policies.insert(operation, handle(h, &at)?);
                    }
                }
                RouteHandle::OperationSelector {
                    default_policy: field("default_policy")
                        .map(|d| one(Some(d), &fpath("default_policy")))
                        .transpose()?,
                    operation_policies,
                }
            }
            "PrefixSelectorRoute" => {
                only(map, &["type", "policies", "wildcard"], path)?;
                let mut policies = BTreeMap::new();
                if let Some(p) = field("policies") {
                    let ppath = fpath("policies");
                    for (prefix, h) in obj(p, &ppath)? {
                        policies.insert(prefix.clone(), handle(h, &join(&ppath, prefix))?);
                    }
                }
                RouteHandle::PrefixSelector {
                    policies,
                    wildcard: field("wildcard")
                        .map(|w| one(Some(w), &fpath("wildcard")))
                        .transpose()?,
                }
            }
            "WarmUpRoute" => {
                only(map, &["type", "cold", "warm", "exptime"], path)?;
                RouteHandle::WarmUp {
                    cold: one(field("cold"), &fpath("cold"))?,
                    warm: one(field("warm"), &fpath("warm"))?,
                    exptime: field("exptime")
                        .map(|v| typed(v, &fpath("exptime")))
                        .transpose()?
                        .unwrap_or(0),
                }
            }
            "NullRoute" => {
                only(map, &["type"], path)?;
                RouteHandle::Null
            }
            "ErrorRoute" => {
                only(map, &["type", "value"], path)?;
                RouteHandle::Error {
                    message: field("value")
                        .map(|v| typed(v, &fpath("value")))
                        .transpose()?
                        .unwrap_or_default(),
                }
            }
            other => return Err(unknown(other, &fpath("type"))),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// mcrouter's own format: pools and a route tree of route handles.
// ---------------------------------------------------------------------------------------------

/// A configuration in mcrouter's own JSON format (pools plus a tree of route handles), with the
/// settings real mcrouter takes on its command line (`--route-prefix`, `--timeouts-until-tko`,
/// `--probe-timeout-initial`) as fields of the file.
///
/// ```json
/// {
///   "pools": {"eqiad": {"servers": ["10.0.0.1:11211:ascii:plain"]},
///             "gutter": {"servers": ["10.0.0.9:11211"]}},
///   "routes": [{"aliases": ["/eqiad/mw/"],
///               "route": {"type": "FailoverWithExptimeRoute", "normal": "PoolRoute|eqiad",
///                         "failover": "PoolRoute|gutter", "failover_exptime": 10,
///                         "failover_errors": ["tko"]}}],
///   "default_route": "/eqiad/mw/",
///   "tko": {"timeouts_until_tko": 3, "probe_delay_initial_ms": 3000}
/// }
/// ```
///
/// A key `/<region>/<cluster>/rest` goes to the route whose alias is that prefix, as `rest`.
/// A prefix with `*` in it (`/*/mw-wan/`) is a broadcast: it goes to every route whose alias
/// it matches; the client gets the answer of the route of the default route's region (or the
/// first matched) and the others complete in the background, as real mcrouter's root route
/// does. Keys without a prefix, and keys whose prefix matches no alias, go whole to the
/// default route. `route` (one handle, no prefixes) may stand instead of `routes`.
///
/// Serialize-only here (render writes it); [`load`] reads it with errors that name the JSON
/// path of the mistake.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutesConfig {
    /// Named pools of memcached servers.
    pub pools: BTreeMap<String, Pool>,
    /// Routes by routing prefix.
    pub routes: Vec<PrefixRoute>,
    /// The routing prefix (`/<region>/<cluster>/`) of keys that have none: real mcrouter's
    /// `--route-prefix`. Required with more than one route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_route: Option<String>,
    /// When a server is marked down (TKO) and probed back.
    pub tko: Tko,
    /// Every timeout the router applies.
    pub timeouts: Timeouts,
    /// Size limits on client requests.
    pub limits: Limits,
    /// How a command is answered when no server could take it.
    pub unavailable: Unavailable,
}

/// One entry of `routes`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrefixRoute {
    /// Routing prefixes `/<region>/<cluster>/` that select this route.
    pub aliases: Vec<String>,
    /// The route handle.
    pub route: RouteHandle,
}

/// TKO ("technical knock-out"): when a server is marked down and how it is probed back.
///
/// A connection refused, reset or closed marks the server down at once (real mcrouter's hard
/// TKO); timeouts count, and `timeouts_until_tko` of them in a row mark it down (soft TKO).
/// A down server is probed (a fresh connection answering `version`) after
/// `probe_delay_initial_ms`, then at doubling intervals up to `probe_delay_max_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tko {
    /// Consecutive timeouts that mark a server down. mcrouter's default is 3.
    pub timeouts_until_tko: u32,
    /// Delay before the first probe of a down server, in milliseconds (mcrouter: 3000).
    pub probe_delay_initial_ms: u64,
    /// Longest delay between probes, in milliseconds (mcrouter: 60000).
    pub probe_delay_max_ms: u64,
}

impl Default for Tko {
    fn default() -> Self {
        Tko {
            timeouts_until_tko: 3,
            probe_delay_initial_ms: 3000,
            probe_delay_max_ms: 60_000,
        }
    }
}

/// How the router answers a command that no server could take (its servers are down and
/// there is no gutter, or the gutter failed too).
///
/// Gets are always answered as misses (real mcrouter's `miss_on_get_errors`): a cache that
/// cannot answer has nothing, and MediaWiki then computes the value. For every other command
/// the choice decides how fast MediaWiki gives up on the cache (see docs/mcrouter.md):
/// MediaWiki's default memcached client (`MemcachedPhpBagOStuff`, what `CACHE_MEMCACHED`
/// selects) reads any reply line to a store, `SERVER_ERROR` included, as "not stored" and
/// records no error, so its locks (`BagOStuff::lock`, an `add` in a loop) keep retrying until
/// their timeout (6 s, 15 s for the message cache). A connection closed instead of a reply is
/// an I/O error to it: the lock gives up at once, and the client skips the cache for the rest
/// of the PHP request. The PECL client (`MemcachedPeclBagOStuff`) takes either as an error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unavailable {
    /// Answer what came before, then close the client's connection without a reply.
    #[default]
    Close,
    /// Answer `SERVER_ERROR unavailable` and keep the connection (real mcrouter's way).
    ServerError,
}

impl Unavailable {
    /// Whether this is the default (left out when written).
    pub fn is_default(&self) -> bool {
        *self == Unavailable::default()
    }
}

/// A memcached operation, as `OperationSelectorRoute` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// `get` (and `mg`).
    Get,
    /// `gets`.
    Gets,
    /// `gat`.
    Gat,
    /// `gats`.
    Gats,
    /// `set` (and `ms`).
    Set,
    /// `add`.
    Add,
    /// `replace`.
    Replace,
    /// `append`.
    Append,
    /// `prepend`.
    Prepend,
    /// `cas`.
    Cas,
    /// `delete` (and `md`).
    Delete,
    /// `incr` (and `ma`).
    Incr,
    /// `decr`.
    Decr,
    /// `touch`.
    Touch,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 14] = [
        Operation::Get,
        Operation::Gets,
        Operation::Gat,
        Operation::Gats,
        Operation::Set,
        Operation::Add,
        Operation::Replace,
        Operation::Append,
        Operation::Prepend,
        Operation::Cas,
        Operation::Delete,
        Operation::Incr,
        Operation::Decr,
        Operation::Touch,
    ];

    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Gets => "gets",
            Operation::Gat => "gat",
            Operation::Gats => "gats",
            Operation::Set => "set",
            Operation::Add => "add",
            Operation::Replace => "replace",
            Operation::Append => "append",
            Operation::Prepend => "prepend",
            Operation::Cas => "cas",
            Operation::Delete => "delete",
            Operation::Incr => "incr",
            Operation::Decr => "decr",
            Operation::Touch => "touch",
        }
    }

    /// The operation of a config name.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Which of `FailoverWithExptimeRoute`'s classes it belongs to.
    pub fn class(self) -> OpClass {
        match self {
            Operation::Get | Operation::Gets | Operation::Gat | Operation::Gats => OpClass::Gets,
            Operation::Delete => OpClass::Deletes,
            _ => OpClass::Updates,
        }
    }
}

/// Operation classes of failover settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    /// get, gets, gat, gats.
    Gets,
    /// Everything that writes but delete.
    Updates,
    /// delete.
    Deletes,
}

/// Errors of a destination after which `FailoverWithExptimeRoute` tries its failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailoverError {
    /// The server is marked down (TKO), or the failure marked it down.
    Tko,
    /// Connecting failed (refused, unreachable).
    ConnectError,
    /// Connecting timed out.
    ConnectTimeout,
    /// The reply did not come in time.
    DataTimeout,
    /// The connection broke, or the reply broke the protocol.
    RemoteError,
}

impl FailoverError {
    /// Every kind.
    pub const ALL: [FailoverError; 5] = [
        FailoverError::Tko,
        FailoverError::ConnectError,
        FailoverError::ConnectTimeout,
        FailoverError::DataTimeout,
        FailoverError::RemoteError,
    ];

    /// The name used in configs.
    pub fn name(self) -> &'static str {
        match self {
            FailoverError::Tko => "tko",
            FailoverError::ConnectError => "connect_error",
            FailoverError::ConnectTimeout => "connect_timeout",
            FailoverError::DataTimeout => "data_timeout",
            FailoverError::RemoteError => "remote_error",
        }
    }

    /// The kind of a config name.
    pub fn from_name(name: &str) -> Option<FailoverError> {
        FailoverError::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// A route handle: a node of the route tree.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteHandle {
    /// `PoolRoute|NAME`: the key's server in the pool (consistent hashing).
    Pool {
        /// The pool.
        pool: String,
    },
    /// `HashRoute`: one child, chosen by a hash of the key.
    Hash {
        /// The children.
        children: Vec<RouteHandle>,
    },
    /// `AllSyncRoute`: every child at once; the worst reply (an error if any).
    AllSync {
        /// The children.
        children: Vec<RouteHandle>,
    },
    /// `AllAsyncRoute`: every child in the background; the default (NullRoute) reply at once.
    AllAsync {
        /// The children.
        children: Vec<RouteHandle>,
    },
    /// `AllInitialRoute`: every child at once; the first child's reply, the rest in the
    /// background.
    AllInitial {
        /// The children.
        children: Vec<RouteHandle>,
    },
    /// `FailoverRoute`: the children in turn until one does not fail.
    Failover {
        /// The children.
        children: Vec<RouteHandle>,
    },
    /// `FailoverWithExptimeRoute`: `normal`, and on its failure (of a kind in `errors`) each
    /// of `failover` in turn, with the TTL of updates capped at `failover_exptime`.
    FailoverWithExptime {
        /// Where requests go first.
        normal: Box<RouteHandle>,
        /// Where they go when `normal` fails.
        failover: Vec<RouteHandle>,
        /// TTL cap, in seconds, of updates sent to `failover` (mcrouter's default: 60).
        failover_exptime: u32,
        /// The failures that fail over; `None` is every kind (mcrouter's default).
        failover_errors: Option<Vec<FailoverError>>,
    },
    /// `OperationSelectorRoute`: a child per operation, `default_policy` for the others.
    OperationSelector {
        /// For operations not listed (`None`: NullRoute).
        default_policy: Option<Box<RouteHandle>>,
        /// Per operation.
        operation_policies: BTreeMap<Operation, RouteHandle>,
    },
    /// `PrefixSelectorRoute`: a child per key prefix (longest match wins), `wildcard` for the
    /// others.
    PrefixSelector {
        /// Per key prefix.
        policies: BTreeMap<String, RouteHandle>,
        /// For keys no prefix matches (`None`: NullRoute).
        wildcard: Option<Box<RouteHandle>>,
    },
    /// `WarmUpRoute`: everything to `cold`; a get that misses there is asked of `warm`, and
    /// a hit there is answered and copied to `cold` (an `add` with `exptime`).
    WarmUp {
        /// The new, empty destination.
        cold: Box<RouteHandle>,
        /// The filled one.
        warm: Box<RouteHandle>,
        /// TTL of the copies, seconds (0: none).
        exptime: u32,
    },
    /// `NullRoute`: the default reply (miss, `NOT_STORED`, `NOT_FOUND`) at once.
    Null,
    /// `ErrorRoute`: a `SERVER_ERROR` with this text.
    Error {
        /// The text.
        message: String,
    },
}

impl RouteHandle {
    /// `PoolRoute|pool`.
    pub fn pool(pool: impl Into<String>) -> RouteHandle {
        RouteHandle::Pool { pool: pool.into() }
    }

    /// The handle's type name in mcrouter's configs.
    pub fn type_name(&self) -> &'static str {
        match self {
            RouteHandle::Pool { .. } => "PoolRoute",
            RouteHandle::Hash { .. } => "HashRoute",
            RouteHandle::AllSync { .. } => "AllSyncRoute",
            RouteHandle::AllAsync { .. } => "AllAsyncRoute",
            RouteHandle::AllInitial { .. } => "AllInitialRoute",
            RouteHandle::Failover { .. } => "FailoverRoute",
            RouteHandle::FailoverWithExptime { .. } => "FailoverWithExptimeRoute",
            RouteHandle::OperationSelector { .. } => "OperationSelectorRoute",
            RouteHandle::PrefixSelector { .. } => "PrefixSelectorRoute",
            RouteHandle::WarmUp { .. } => "WarmUpRoute",
            RouteHandle::Null => "NullRoute",
            RouteHandle::Error { .. } => "ErrorRoute",
        }
    }

    /// Every handle type this router knows.
    pub const KNOWN: [&'static str; 12] = [
        "PoolRoute",
        "HashRoute",
        "AllSyncRoute",
        "AllAsyncRoute",
        "AllInitialRoute",
        "FailoverRoute",
        "FailoverWithExptimeRoute",
        "OperationSelectorRoute",
        "PrefixSelectorRoute",
        "WarmUpRoute",
        "NullRoute",
        "ErrorRoute",
    ];
}

impl Serialize for RouteHandle {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if let RouteHandle::Pool { pool } = self {
            return s.serialize_str(&format!("PoolRoute|{pool}"));
        }
        if let RouteHandle::Null = self {
            return s.serialize_str("NullRoute");
        }
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", self.type_name())?;
        match self {
            RouteHandle::Hash { children }
            | RouteHandle::AllSync { children }
            | RouteHandle::AllAsync { children }
            | RouteHandle::AllInitial { children }
            | RouteHandle::Failover { children } => m.serialize_entry("children", children)?,
            RouteHandle::FailoverWithExptime {
                normal,
                failover,
                failover_exptime,
                failover_errors,
            } => {
                m.serialize_entry("normal", normal)?;
                m.serialize_entry("failover", failover)?;
                m.serialize_entry("failover_exptime", failover_exptime)?;
                if let Some(errors) = failover_errors {
                    m.serialize_entry("failover_errors", errors)?;
                }
            }
            RouteHandle::OperationSelector {
                default_policy,
                operation_policies,
            } => {
                if let Some(d) = default_policy {
                    m.serialize_entry("default_policy", d)?;
                }
                m.serialize_entry("operation_policies", operation_policies)?;
            }
            RouteHandle::PrefixSelector { policies, wildcard } => {
                m.serialize_entry("policies", policies)?;
                if let Some(w) = wildcard {
                    m.serialize_entry("wildcard", w)?;
                }
            }
            RouteHandle::WarmUp {
                cold,
                warm,
                exptime,
            } => {
                m.serialize_entry("cold", cold)?;
                m.serialize_entry("warm", warm)?;
                m.serialize_entry("exptime", exptime)?;
            }
            RouteHandle::Error { message } => m.serialize_entry("value", message)?,
            RouteHandle::Pool { .. } | RouteHandle::Null => {}
        }
        m.end()
    }
}

/// Whether `alias` is a routing prefix `/<region>/<cluster>/` (segments may hold `*`).
pub fn is_alias(alias: &str) -> bool {
    is_routing_prefix(alias)
}

impl RoutesConfig {
    /// Checks what the parser cannot: pool names, aliases, numbers.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.pools.is_empty() {
            return Err(invalid("pools", "at least one pool is needed"));
        }
        for (name, pool) in &self.pools {
            if pool.servers.is_empty() {
                return Err(invalid(format!("pools.{name}.servers"), "empty"));
            }
            for (i, server) in pool.servers.iter().enumerate() {
                if server_address(server).is_none() {
                    return Err(invalid(
                        format!("pools.{name}.servers[{i}]"),
                        format!("{server:?} is not host:port (or host:port:ascii:plain)"),
                    ));
                }
            }
        }
        if self.routes.is_empty() {
            return Err(invalid("routes", "at least one route is needed"));
        }
        for (i, route) in self.routes.iter().enumerate() {
            for (j, alias) in route.aliases.iter().enumerate() {
                if !is_routing_prefix(alias) || alias.contains('*') {
                    return Err(invalid(
                        format!("routes[{i}].aliases[{j}]"),
                        format!("{alias:?} is not of the form /<region>/<cluster>/"),
                    ));
                }
            }
            self.check_handle(&route.route, &format!("routes[{i}].route"))?;
        }
        match &self.default_route {
            Some(d) if !self.routes.iter().any(|r| r.aliases.contains(d)) => {
                return Err(invalid(
                    "default_route",
                    format!("{d:?} is no route's alias"),
                ));
            }
            Some(_) => {}
            None if self.routes.len() > 1 => {
                return Err(invalid(
                    "default_route",
                    "needed with more than one route (mcrouter's --route-prefix)",
                ))
            }
            None => {}
        }
        if self.tko.timeouts_until_tko == 0 {
            return Err(invalid("tko.timeouts_until_tko", "must be at least 1"));
        }
        if self.tko.probe_delay_initial_ms == 0
            || self.tko.probe_delay_max_ms < self.tko.probe_delay_initial_ms
        {
            return Err(invalid(
                "tko",
                "probe_delay_initial_ms must be at least 1 and at most probe_delay_max_ms",
            ));
        }
        self.timeouts.check()?;
        self.limits.check()
    }

    fn check_handle(&self, handle: &RouteHandle, path: &str) -> Result<(), InvalidConfig> {
        let children = |list: &[RouteHandle], key: &str| -> Result<(), InvalidConfig> {
            if list.is_empty() {
                return Err(invalid(format!("{path}.{key}"), "empty"));
            }
            for (i, c) in list.iter().enumerate() {
                self.check_handle(c, &format!("{path}.{key}[{i}]"))?;
            }
            Ok(())
        };
        match handle {
            RouteHandle::Pool { pool } => {
                if !self.pools.contains_key(pool) {
                    return Err(invalid(
                        path,
                        format!(
                            "no pool named {pool:?} (pools: {})",
                            self.pools.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            RouteHandle::Hash { children: c }
            | RouteHandle::AllSync { children: c }
            | RouteHandle::AllAsync { children: c }
            | RouteHandle::AllInitial { children: c }
            | RouteHandle::Failover { children: c } => children(c, "children")?,
            RouteHandle::FailoverWithExptime {
                normal, failover, ..
            } => {
                self.check_handle(normal, &format!("{path}.normal"))?;
                children(failover, "failover")?;
            }
            RouteHandle::OperationSelector {
                default_policy,
                operation_policies,
            } => {
                if let Some(d) = default_policy {
                    self.check_handle(d, &format!("{path}.default_policy"))?;
                }
                for (op, h) in operation_policies {
                    self.check_handle(h, &format!("{path}.operation_policies.{}", op.name()))?;
                }
            }
            RouteHandle::PrefixSelector { policies, wildcard } => {
                for (prefix, h) in policies {
                    if prefix.is_empty() {
                        return Err(invalid(format!("{path}.policies"), "an empty prefix"));
                    }
                    self.check_handle(h, &format!("{path}.policies.{prefix}"))?;
                }
                if let Some(w) = wildcard {
                    self.check_handle(w, &format!("{path}.wildcard"))?;
                }
            }
            RouteHandle::WarmUp { cold, warm, .. } => {
                self.check_handle(cold, &format!("{path}.cold"))?;
                self.check_handle(warm, &format!("{path}.warm"))?;
            }
            RouteHandle::Null | RouteHandle::Error { .. } => {}
        }
        Ok(())
    }
}

/// The `host:port` of a server string: `host:port`, or mcrouter's `host:port:ascii:plain`
/// (the only protocol and transport spoken here). The ring names the server by this part.
pub fn server_address(server: &str) -> Option<&str> {
    let addr = server
        .strip_suffix(":ascii:plain")
        .or_else(|| server.strip_suffix(":ascii"))
        .unwrap_or(server);
    let ok = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    ok.then_some(addr)
}

impl Config {
    /// The route tree this shorthand stands for: the default route is the local pool failing
    /// over to the gutter; deletes and touches of it also go, in the background, to every
    /// `replicate_to` pool; each `routes` prefix goes to its pool (with the same gutter).
    pub fn to_routes(&self) -> RoutesConfig {
        let with_gutter = |pool: &str| -> RouteHandle {
            match &self.failover.gutter_pool {
                Some(g) if g != pool => RouteHandle::FailoverWithExptime {
                    normal: Box::new(RouteHandle::pool(pool)),
                    failover: vec![RouteHandle::pool(g)],
                    failover_exptime: self.failover.gutter_ttl_seconds,
                    failover_errors: None,
                },
                _ => RouteHandle::pool(pool),
            }
        };
        let local = with_gutter(&self.local_pool);
        let default_handle = if self.replicate_to.is_empty() {
            local
        } else {
            let mut everywhere = vec![local.clone()];
            everywhere.extend(self.replicate_to.iter().map(RouteHandle::pool));
            let replicated = RouteHandle::AllInitial {
                children: everywhere,
            };
            RouteHandle::OperationSelector {
                default_policy: Some(Box::new(local)),
                operation_policies: [
                    (Operation::Delete, replicated.clone()),
                    (Operation::Touch, replicated),
                ]
                .into_iter()
                .collect(),
            }
        };
        // The default route's alias: a prefix of its own that no client key can carry
        // (two segments of a form the `routes` prefixes cannot take).
        let default_alias = "/.default/.local/".to_string();
        let mut routes = vec![PrefixRoute {
            aliases: vec![default_alias.clone()],
            route: default_handle,
        }];
        for r in &self.routes {
            routes.push(PrefixRoute {
                aliases: vec![r.prefix.clone()],
                route: with_gutter(&r.pool),
            });
        }
        RoutesConfig {
            pools: self.pools.clone(),
            routes,
            default_route: Some(default_alias),
            tko: Tko {
                timeouts_until_tko: self.failover.failures_until_down,
                probe_delay_initial_ms: self.failover.probe_interval_ms,
                probe_delay_max_ms: self.failover.probe_interval_ms,
            },
            timeouts: self.timeouts.clone(),
            limits: self.limits.clone(),
            unavailable: self.failover.unavailable,
        }
    }
}

/// The layout of Wikimedia's WAN cache, from which [`wan_routes`] builds the route tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WanLayout {
    /// This router's datacenter (a key of `pools`).
    pub local: String,
    /// Memcached servers per datacenter (`host:port`). At Wikimedia a remote datacenter's
    /// entry lists its mcrouter proxies rather than its memcached servers.
    pub pools: BTreeMap<String, Vec<String>>,
    /// The local gutter pool's servers; empty for none.
    pub gutter: Vec<String>,
    /// TTL cap of what goes to the gutter, seconds (Wikimedia: 10 on Kubernetes, 60 on
    /// bare metal).
    pub gutter_ttl_seconds: u32,
    /// TKO settings (Wikimedia: 10 timeouts, first probe after 3 s).
    pub tko: Tko,
    /// Timeouts.
    pub timeouts: Timeouts,
}

/// The cluster name of the plain routes (`/<dc>/mw/`).
pub const WAN_LOCAL_CLUSTER: &str = "mw";
/// The cluster name of the WAN routes (`/<dc>/mw-wan/`), broadcast by MediaWiki as
/// `/*/mw-wan/` (its `broadcastRoutingPrefix`).
pub const WAN_CLUSTER: &str = "mw-wan";

/// Wikimedia's WAN route tree (operations/puppet, `profile::mediawiki::mcrouter_wancache`):
///
/// - `/<dc>/mw/` for each datacenter: its pool; the local one fails over to the gutter on TKO
///   with the gutter TTL. Keys without a prefix take the local one (`default_route`).
/// - `/<dc>/mw-wan/` for each datacenter: gets and every other operation go to the local
///   pool (reads stay local); `set` and `delete` go to `<dc>`'s pool, synchronously
///   (`AllSyncRoute`) for the local datacenter and in the background (`AllAsyncRoute`) for
///   the others. So MediaWiki's purges, written as `/*/mw-wan/<key>`, reach the local pool
///   before the client hears back and every remote pool soon after.
pub fn wan_routes(layout: &WanLayout) -> RoutesConfig {
    let mut pools: BTreeMap<String, Pool> = layout
        .pools
        .iter()
        .map(|(dc, servers)| {
            (
                dc.clone(),
                Pool {
                    servers: servers.clone(),
                },
            )
        })
        .collect();
    let gutter = (!layout.gutter.is_empty()).then(|| {
        pools.insert(
            "gutter".into(),
            Pool {
                servers: layout.gutter.clone(),
            },
        );
        "gutter".to_string()
    });
    let dc_route = |dc: &str| -> RouteHandle {
        match &gutter {
            Some(g) if dc == layout.local => RouteHandle::FailoverWithExptime {
                normal: Box::new(RouteHandle::pool(dc)),
                failover: vec![RouteHandle::pool(g)],
                failover_exptime: layout.gutter_ttl_seconds,
                failover_errors: Some(vec![FailoverError::Tko]),
            },
            _ => RouteHandle::pool(dc),
        }
    };
    let mut routes = Vec::new();
    for dc in layout.pools.keys() {
        routes.push(PrefixRoute {
            aliases: vec![format!("/{dc}/{WAN_LOCAL_CLUSTER}/")],
            route: dc_route(dc),
        });
    }
    for dc in layout.pools.keys() {
        let fan = |children: Vec<RouteHandle>| {
            if *dc == layout.local {
                RouteHandle::AllSync { children }
            } else {
                RouteHandle::AllAsync { children }
            }
        };
        routes.push(PrefixRoute {
            aliases: vec![format!("/{dc}/{WAN_CLUSTER}/")],
            route: RouteHandle::OperationSelector {
                default_policy: Some(Box::new(dc_route(&layout.local))),
                operation_policies: [
                    (Operation::Set, fan(vec![dc_route(dc)])),
                    (Operation::Delete, fan(vec![dc_route(dc)])),
                ]
                .into_iter()
                .collect(),
            },
        });
    }
    RoutesConfig {
        pools,
        routes,
        default_route: Some(format!("/{}/{WAN_LOCAL_CLUSTER}/", layout.local)),
        tko: layout.tko.clone(),
        timeouts: layout.timeouts.clone(),
        limits: Limits::default(),
        unavailable: Unavailable::default(),
    }
}
