//! Counters, gauges and latency histograms, per pool and per server, for the Prometheus
//! endpoint and `INFO`.
//!
//! Every metric is created when the proxy starts and handed out as a cheap clone (an `Arc` to
//! atomics), so the hot path never looks a label set up in a map.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::Duration;

type Labels = Vec<(String, String)>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: a loopback Redis answers in tens of µs; the request timeout caps the top.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The metrics of one server.
#[derive(Debug, Clone)]
pub struct ServerMetrics {
    /// Requests sent (a command cut by server counts once per server).
    pub requests: Counter,
    /// Failed requests: timeouts, refused or broken connections, malformed replies. Error
    /// replies from Redis itself (`-WRONGTYPE`) are answers, not failures.
    pub errors: Counter,
    /// 1 while the server is up, 0 while it is marked down.
    pub up: Gauge,
    latency: Histogram,
}

impl ServerMetrics {
    /// Records one request's latency.
    pub fn observe(&self, elapsed: Duration) {
        self.requests.inc();
        self.latency.observe(elapsed.as_secs_f64());
    }
}

/// The metrics of one pool.
#[derive(Debug, Clone)]
pub struct PoolMetrics {
    /// Commands received from clients.
    pub commands: Counter,
    /// Commands answered with an error by the proxy itself: unsupported, unroutable, across
    /// servers, for a server that is down.
    pub refused: Counter,
}

/// Every metric of the proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    up: Family<Labels, Gauge>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    commands: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    /// Client connections open now.
    pub connections: Gauge,
    /// Client connections accepted since start.
    pub total_connections: Counter,
    /// Client connections closed for malformed or oversized requests.
    pub protocol_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with the proxy's metric families.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("redis_proxy");
        let requests = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let up = Family::<Labels, Gauge>::default();
        let latency: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let commands = Family::<Labels, Counter>::default();
        let refused = Family::<Labels, Counter>::default();
        let connections = Gauge::default();
        let total_connections = Counter::default();
        let protocol_errors = Counter::default();
        registry.register("requests", "Requests sent to a server", requests.clone());
        registry.register(
            "errors",
            "Requests to a server that failed (timeout, connection, malformed reply)",
            errors.clone(),
        );
        registry.register(
            "server_up",
            "1 while a server is up, 0 while marked down",
            up.clone(),
        );
        registry.register(
            "latency_seconds",
            "Request latency at a server",
            latency.clone(),
        );
        registry.register("commands", "Commands from clients", commands.clone());
        registry.register(
            "refused",
            "Commands the proxy answered with an error itself",
            refused.clone(),
        );
        registry.register(
            "connections",
            "Client connections open",
            connections.clone(),
        );
        registry.register(
            "client_connections",
            "Client connections accepted",
            total_connections.clone(),
        );
        registry.register(
            "protocol_errors",
            "Client connections closed for malformed or oversized requests",
            protocol_errors.clone(),
        );
        Metrics {
            registry,
            requests,
            errors,
            up,
            latency,
            commands,
            refused,
            connections,
            total_connections,
            protocol_errors,
        }
    }

    /// The metrics of one server (labelled `pool` and `server`).
    pub fn server(&self, pool: &str, addr: &str) -> ServerMetrics {
        let labels: Labels = vec![("pool".into(), pool.into()), ("server".into(), addr.into())];
        ServerMetrics {
            requests: self.requests.get_or_create(&labels).clone(),
            errors: self.errors.get_or_create(&labels).clone(),
            up: self.up.get_or_create(&labels).clone(),
            latency: self.latency.get_or_create(&labels).clone(),
        }
    }

    /// The metrics of one pool (labelled `pool`).
    pub fn pool(&self, pool: &str) -> PoolMetrics {
        let labels: Labels = vec![("pool".into(), pool.into())];
        PoolMetrics {
            commands: self.commands.get_or_create(&labels).clone(),
            refused: self.refused.get_or_create(&labels).clone(),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
