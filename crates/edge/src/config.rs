//! The config file's schema: plain serde types, nothing else.
//!
//! This module compiles with `default-features = false` and depends only on serde, because the
//! `render` crate builds these values from the site's values and writes the TOML file that the
//! `edge` binary reads. Everything here is data plus pure validation; loading a file (with
//! line/column errors) lives in [`load`](crate::load) behind the `toml` feature.
//!
//! One file selects one of two modes by which section it has:
//! - `[pod]`: the cake's `tls` container. Terminates TLS and forwards everything to httpd on
//!   loopback.
//! - `[edge]`: in front of the releases. Terminates TLS and routes by Host and path to named
//!   backends, with debug routing, weighted shares and health checks.
//!
//! A complete pod-mode file:
//! ```toml
//! [listen]
//! address = "0.0.0.0:8443"
//! metrics = "127.0.0.1:9361"
//! drain_seconds = 7
//!
//! [[tls.certificates]]
//! names = ["*.wiki.example", "wiki.example"]
//! cert = "/etc/edge/wiki.pem"
//! key = "/etc/edge/wiki.key"
//!
//! [pod]
//! upstream = "127.0.0.1:8080"
//! timeouts = { header_ms = 202000, body_ms = 60000 }
//! health = { path = "/fpm-ping", host = "localhost", interval_ms = 1000, timeout_ms = 500 }
//! ```
//!
//! A complete edge-mode file:
//! ```toml
//! [listen]
//! address = "0.0.0.0:443"
//!
//! [[tls.certificates]]
//! names = ["*.wiki.example"]
//! cert = "/etc/edge/wiki.pem"
//! key = "/etc/edge/wiki.key"
//!
//! [edge.backends.legacy]
//! addresses = ["192.0.2.10:80", "192.0.2.11:80"]
//! [edge.backends.mw-web]
//! addresses = ["mw-web.default.svc:8080"]
//! health = { path = "/healthz", interval_ms = 1000, timeout_ms = 500, fall = 2, rise = 2 }
//! timeouts = { header_ms = 202000, body_ms = 60000 }
//! panic_threshold_percent = 50
//! [edge.backends.mw-api]
//! addresses = ["mw-api.default.svc:8080"]
//! [edge.backends.mwdebug1001]
//! addresses = ["mw-debug.default.svc:8443"]
//! tls = { ca = "/etc/edge/cake.pem", server_name = "mw-debug.default.svc" }
//!
//! [edge.debug]
//! backends = ["mwdebug1001"]
//!
//! [[edge.routes]]
//! hosts = ["*.wiki.example"]
//! path_prefix = "/w/api.php"
//! backend = "mw-api"
//!
//! [[edge.routes]]
//! hosts = ["*.wiki.example"]
//! backend = "legacy"
//! split = { backend = "mw-web", default_percent = 0.5, host_percent = { "test.wiki.example" = 100.0 } }
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The whole config file. Exactly one of `pod` and `edge` must be present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen, and the timings that belong to the listener.
    pub listen: Listen,
    /// Certificates and protocol versions.
    pub tls: Tls,
    /// Pod mode: forward everything to httpd on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<Pod>,
    /// Edge mode: route by Host and path to named backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<Edge>,
}

/// `[listen]`: sockets and timings. Changing these needs a restart; everything else reloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The TLS listener, `IP:PORT` (e.g. `"0.0.0.0:8443"`, `"[::]:443"`).
    pub address: String,
    /// Optional plain-HTTP listener for `/metrics` (Prometheus text) and `/healthz`
    /// (200 while serving, 503 once draining), e.g. `"127.0.0.1:9361"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// After SIGTERM: how long in-flight requests may take before the process exits anyway.
    /// Default 7 (Wikimedia's tls preStop). Within it, an HTTP/1.1 connection accepted before
    /// SIGTERM that has not sent a request yet has 2 s to send one, which is answered.
    #[serde(default = "default_drain_seconds")]
    pub drain_seconds: u64,
    /// Serving threads, each accepting from the listening socket and with its own upstream
    /// connection pool. Default: the CPUs this process may use (cgroup limits included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// How often certificate files and (edge mode) the config file are checked for changes,
    /// in milliseconds. Default 2000.
    #[serde(default = "default_reload_interval_ms")]
    pub reload_interval_ms: u64,
    /// Peers whose `X-Client-IP` is believed (e.g. the edge in front of a cake, or the CDN):
    /// IP addresses or CIDR ranges such as `"10.64.0.0/12"`. From any other peer a client-sent
    /// `X-Client-IP` is replaced by the peer's address. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_proxies: Vec<String>,
}

/// An IP range parsed from `listen.trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: std::net::IpAddr,
    prefix: u8,
}

impl IpRange {
    /// Parses `ADDRESS` or `ADDRESS/PREFIX`.
    pub fn parse(text: &str) -> Option<IpRange> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network: std::net::IpAddr = addr.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(IpRange { network, prefix })
    }

    /// Whether `ip` is inside the range (IPv4-mapped IPv6 peers count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        // Compare the leading `prefix` bits; u128 holds both families.
        let bits = |a: std::net::IpAddr| match a {
            std::net::IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, true),
            std::net::IpAddr::V6(v) => (u128::from(v), false),
        };
        let ((n, n4), (i, i4)) = (bits(self.network), bits(ip));
        if n4 != i4 {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        n & mask == i & mask
    }
}

fn default_drain_seconds() -> u64 {
    7
}

fn default_reload_interval_ms() -> u64 {
    2000
}

/// `[tls]`: certificates chosen by SNI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The lowest protocol version offered: `"1.2"` (default) or `"1.3"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// `[[tls.certificates]]`, at least one. The first is also served when the client sends no
    /// SNI or a name that no entry lists.
    pub certificates: Vec<Certificate>,
}

/// The lowest TLS version to accept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// One certificate with its key, and the server names it answers for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Server names (SNI) that select this certificate: exact names or `*.domain` wildcards
    /// (one label). Matching is case-insensitive.
    pub names: Vec<String>,
    /// PEM file: the certificate chain, leaf first.
    pub cert: String,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

/// `[pod]`: forward everything to httpd on loopback.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pod {
    /// httpd's address, `HOST:PORT` (e.g. `"127.0.0.1:8080"`), spoken to in HTTP/1.1 with
    /// pooled keep-alive connections.
    pub upstream: String,
    /// How long httpd may take to answer (`timeouts = { header_ms = 202000, body_ms = 60000 }`).
    #[serde(default, skip_serializing_if = "UpstreamTimeouts::is_default")]
    pub timeouts: UpstreamTimeouts,
    /// A check of the cake behind this terminator (`health = { path = "/fpm-ping", host =
    /// "localhost" }`: php-fpm's ping through httpd): while it fails, `/healthz` on the
    /// metrics listener answers 503, so the readiness probe that asks it measures the whole
    /// cake, cheaply. Absent: `/healthz` says whether edge itself serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// Paths whose requests are answered but not written to the access log
    /// (`unlogged_paths = ["/fpm-ping"]`): the checks of the edge in front, which asks every
    /// pod every second or two and would be most of a quiet pod's lines. Metrics count them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unlogged_paths: Vec<String>,
}

/// How long an upstream may take, per backend. Each wait has a bound (a backend that accepts
/// and never answers would otherwise hold the request until the client gives up).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTimeouts {
    /// From the moment the request goes to the upstream (its body included) to the end of the
    /// response head, in milliseconds; past it the client gets a 504. Default 202000:
    /// php-fpm's request timeout at Wikimedia (201 s) and a second for httpd.
    pub header_ms: u64,
    /// Longest silence while the response body is read, in milliseconds; past it the response
    /// is cut off (its head has gone to the client already, so no 504 can be sent). Default
    /// 60000.
    pub body_ms: u64,
}

impl UpstreamTimeouts {
    /// Whether these are the defaults (left out when written).
    pub fn is_default(&self) -> bool {
        *self == UpstreamTimeouts::default()
    }
}

impl Default for UpstreamTimeouts {
    fn default() -> Self {
        UpstreamTimeouts {
            header_ms: 202_000,
            body_ms: 60_000,
        }
    }
}

/// `[edge]`: backends, debug backends and routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// `[edge.backends.NAME]`: every backend a route or the debug header may name.
    pub backends: BTreeMap<String, Backend>,
    /// `[edge.debug]`: which backends `X-Wikimedia-Debug: backend=NAME` may select.
    #[serde(default)]
    pub debug: Debug,
    /// `[[edge.routes]]`, tried in order; the first whose host and path match wins, so list
    /// path-specific routes before the catch-all of the same host. A request that matches no
    /// route gets a 404.
    pub routes: Vec<Route>,
}

/// A named group of interchangeable addresses (a deployment's Service, or legacy servers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    /// `HOST:PORT` of each endpoint, spoken to in HTTP/1.1; requests go round-robin over the
    /// healthy ones.
    pub addresses: Vec<String>,
    /// Active health checks; without them every endpoint counts as healthy. They go over TLS
    /// when `tls` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthCheck>,
    /// Speak TLS to every address of this backend (e.g. to the cakes' `tls` containers)
    /// instead of plain HTTP/1.1. Absent: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// How long its endpoints may take to answer.
    #[serde(default, skip_serializing_if = "UpstreamTimeouts::is_default")]
    pub timeouts: UpstreamTimeouts,
    /// Panic threshold, as envoy has it: when fewer than this percentage of the endpoints
    /// pass their health checks, requests go to every endpoint, healthy or not, rather than
    /// overload the few left or, with none left, answer 503. A check that fails because the
    /// service is slow (a cache outage) then does not take the whole backend out. 0 turns it
    /// off. Default 50 (envoy's).
    #[serde(
        default = "default_panic_threshold",
        skip_serializing_if = "is_default_panic_threshold"
    )]
    pub panic_threshold_percent: f64,
}

fn is_default_panic_threshold(v: &f64) -> bool {
    *v == default_panic_threshold()
}

fn default_panic_threshold() -> f64 {
    50.0
}

impl Default for Backend {
    /// No address (not valid on its own): a base for `Backend { addresses, ..default() }`.
    fn default() -> Self {
        Backend {
            addresses: Vec::new(),
            health: None,
            tls: None,
            timeouts: UpstreamTimeouts::default(),
            panic_threshold_percent: default_panic_threshold(),
        }
    }
}

/// TLS to a backend: TLS 1.2 or 1.3, ALPN `http/1.1`, the server's certificate verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM file of the certificates trusted for this backend: CA certificates, or the
    /// backend's own self-signed certificate, which then is its own trust anchor (how the edge
    /// trusts exactly the certificate the cakes present). Re-read when the file changes.
    pub ca: String,
    /// The name sent as SNI and that the backend's certificate must be valid for (a DNS
    /// name, e.g. `"wiki.example"`), whatever address is connected to.
    pub server_name: String,
}

/// An active HTTP health check, run against each address of a backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Path of the HTTP GET; a 2xx or 3xx answer is a success.
    pub path: String,
    /// Host header of the check; default: the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Time between checks, in milliseconds. Default 2000.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// A check that has not answered within this many milliseconds failed. Default 1000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failures that take a healthy endpoint out. Default 2.
    #[serde(default = "default_threshold")]
    pub fall: u32,
    /// Consecutive successes that bring a failed endpoint back. Default 2.
    #[serde(default = "default_threshold")]
    pub rise: u32,
}

fn default_interval_ms() -> u64 {
    2000
}

fn default_timeout_ms() -> u64 {
    1000
}

fn default_threshold() -> u32 {
    2
}

/// `[edge.debug]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debug {
    /// Names from `[edge.backends]` that `X-Wikimedia-Debug: backend=NAME` may select. Such a
    /// request skips the routes and its response gets
    /// `Cache-Control: private, no-cache, no-store, must-revalidate`.
    #[serde(default)]
    pub backends: Vec<String>,
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Hosts this route serves: exact names, `*.domain` (any subdomain) or `*` (any host).
    /// Matching is case-insensitive and ignores the port.
    pub hosts: Vec<String>,
    /// Optional path prefix (e.g. `"/w/api.php"`); absent means every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// The backend that gets the traffic (the "from" side of a split: legacy, or `main`).
    pub backend: String,
    /// Optional weighted share sent to another backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
}

/// A weighted share of a route's traffic sent to a second backend (Kubernetes instead of
/// legacy, or the `next` release instead of `main`).
///
/// Each client gets a cookie holding a random bucket in 0..10000; the request goes to
/// `split.backend` when `bucket < percent * 100`. So a client stays on its side while the
/// percentage is unchanged, and raising the percentage only moves clients towards
/// `split.backend` (never back). If one side has no healthy endpoint, its traffic goes to the
/// other side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// The backend that takes the share.
    pub backend: String,
    /// Percentage (0 to 100, fractions allowed, resolution 0.01) sent to `backend` for hosts
    /// not in `host_percent`.
    pub default_percent: f64,
    /// Per-host percentage overriding `default_percent` (exact host names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_percent: BTreeMap<String, f64>,
    /// Name of the pinning cookie. Default `edge_bucket`; routes may share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// The default name of the cookie that pins a client to one side of a split.
pub const DEFAULT_SPLIT_COOKIE: &str = "edge_bucket";

/// Which of the two modes a valid config selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `[pod]`.
    Pod,
    /// `[edge]`.
    Edge,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Pod => "pod",
            Mode::Edge => "edge",
        })
    }
}

/// What is wrong with a config that parsed but does not make sense. Each message names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// One line per problem, each starting with the key it is about.
    pub problems: Vec<String>,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for ValidationError {}

fn check_address(problems: &mut Vec<String>, key: &str, value: &str) {
    // Only the shape is checked here: names are resolved when connecting, so a Service name is
    // fine, but a missing port is a mistake that would otherwise show up only at run time.
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
        _ => problems.push(format!("{key}: expected HOST:PORT, got {value:?}")),
    }
}

/// Whether `name` is a DNS name a certificate can be issued for: dot-separated labels of
/// letters, digits and inner hyphens, each at most 63 bytes, 253 in all. An IP address is not
/// one (its labels would be all digits in the last place, which no top-level domain is).
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(label_ok)
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
}

impl Config {
    /// The mode this config selects, if exactly one of `[pod]` and `[edge]` is present.
    pub fn mode(&self) -> Option<Mode> {
        match (&self.pod, &self.edge) {
            (Some(_), None) => Some(Mode::Pod),
            (None, Some(_)) => Some(Mode::Edge),
            _ => None,
        }
    }

    /// Checks what serde cannot: one mode, known backend names, percentages, addresses.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut p = Vec::new();
        check_address(&mut p, "listen.address", &self.listen.address);
        if let Some(m) = &self.listen.metrics {
            check_address(&mut p, "listen.metrics", m);
        }
        if self.listen.threads == Some(0) {
            p.push("listen.threads: expected more than 0".into());
        }
        for t in &self.listen.trusted_proxies {
            if IpRange::parse(t).is_none() {
                p.push(format!(
                    "listen.trusted_proxies: expected an IP address or CIDR range, got {t:?}"
                ));
            }
        }
        if self.listen.reload_interval_ms == 0 {
            p.push("listen.reload_interval_ms: expected more than 0".into());
        }
        if self.tls.certificates.is_empty() {
            p.push("tls.certificates: expected at least one [[tls.certificates]]".into());
        }
        for (i, c) in self.tls.certificates.iter().enumerate() {
            if c.names.is_empty() {
                p.push(format!(
                    "tls.certificates[{i}].names: expected at least one name"
                ));
            }
        }
        if self.mode().is_none() {
            p.push("pod/edge: expected exactly one of the [pod] and [edge] sections".into());
        }
        if let Some(pod) = &self.pod {
            check_address(&mut p, "pod.upstream", &pod.upstream);
            check_timeouts(&mut p, "pod.timeouts", &pod.timeouts);
            if let Some(h) = &pod.health {
                check_health(&mut p, "pod.health", h);
            }
        }
        if let Some(edge) = &self.edge {
            validate_edge(edge, &mut p);
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { problems: p })
        }
    }
}

fn check_health(p: &mut Vec<String>, key: &str, h: &HealthCheck) {
    if !h.path.starts_with('/') {
        p.push(format!("{key}.path: expected a path starting with /"));
    }
    if h.interval_ms == 0 || h.timeout_ms == 0 || h.rise == 0 || h.fall == 0 {
        p.push(format!(
            "{key}: interval_ms, timeout_ms, rise and fall must be more than 0"
        ));
    }
}

fn check_timeouts(p: &mut Vec<String>, key: &str, t: &UpstreamTimeouts) {
    if t.header_ms == 0 || t.body_ms == 0 {
        p.push(format!("{key}: header_ms and body_ms must be more than 0"));
    }
}

fn validate_edge(edge: &Edge, p: &mut Vec<String>) {
    let known = || edge.backends.keys().cloned().collect::<Vec<_>>().join(", ");
    for (name, b) in &edge.backends {
        if b.addresses.is_empty() {
            p.push(format!(
                "edge.backends.{name}.addresses: expected at least one address"
            ));
        }
        for a in &b.addresses {
            check_address(p, &format!("edge.backends.{name}.addresses"), a);
        }
        if let Some(t) = &b.tls {
            if t.ca.is_empty() {
                p.push(format!(
                    "edge.backends.{name}.tls.ca: expected the path of a PEM file"
                ));
            }
            if !is_dns_name(&t.server_name) {
                p.push(format!(
                    "edge.backends.{name}.tls.server_name: expected a DNS name, got {:?}",
                    t.server_name
                ));
            }
        }
        if let Some(h) = &b.health {
            check_health(p, &format!("edge.backends.{name}.health"), h);
        }
        check_timeouts(p, &format!("edge.backends.{name}.timeouts"), &b.timeouts);
        if !(0.0..=100.0).contains(&b.panic_threshold_percent) {
            p.push(format!(
                "edge.backends.{name}.panic_threshold_percent: expected 0 to 100, got {}",
                b.panic_threshold_percent
            ));
        }
    }
    for d in &edge.debug.backends {
        if !edge.backends.contains_key(d) {
            p.push(format!(
                "edge.debug.backends: unknown backend {d:?}, expected one of: {}",
                known()
            ));
        }
    }
    if edge.routes.is_empty() {
        p.push("edge.routes: expected at least one [[edge.routes]]".into());
    }
    for (i, r) in edge.routes.iter().enumerate() {
        if r.hosts.is_empty() {
            p.push(format!(
                "edge.routes[{i}].hosts: expected at least one host"
            ));
        }
        if !edge.backends.contains_key(&r.backend) {
            p.push(format!(
                "edge.routes[{i}].backend: unknown backend {:?}, expected one of: {}",
                r.backend,
                known()
            ));
        }
        if let Some(path) = &r.path_prefix {
            if !path.starts_with('/') {
                p.push(format!(
                    "edge.routes[{i}].path_prefix: expected a path starting with /"
                ));
            }
        }
        if let Some(s) = &r.split {
            if !edge.backends.contains_key(&s.backend) {
                p.push(format!(
                    "edge.routes[{i}].split.backend: unknown backend {:?}, expected one of: {}",
                    s.backend,
                    known()
                ));
            }
            let bad = |v: f64| !(0.0..=100.0).contains(&v);
            if bad(s.default_percent) {
                p.push(format!(
                    "edge.routes[{i}].split.default_percent: expected 0 to 100, got {}",
                    s.default_percent
                ));
            }
            for (h, v) in &s.host_percent {
                if bad(*v) {
                    p.push(format!(
                        "edge.routes[{i}].split.host_percent.{h:?}: expected 0 to 100, got {v}"
                    ));
                }
            }
        }
    }
}
