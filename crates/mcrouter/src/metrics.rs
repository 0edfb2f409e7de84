//! Counters and latency histograms, per route and per server, for the `stats` command and the
//! Prometheus endpoint.
//!
//! Every metric is created when the router starts and handed out as a cheap clone (an `Arc` to
//! atomics), so the hot path never looks a label set up in a map.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s: a loopback memcached answers in tens of µs; the request timeout caps
    // the top.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The metrics of one route or one server.
#[derive(Debug, Clone)]
pub struct OpMetrics {
    /// Requests sent (a multi-key get counts once per server or route it touches).
    pub requests: Counter,
    /// Keys found.
    pub hits: Counter,
    /// Keys not found.
    pub misses: Counter,
    /// Failed requests (timeouts, refused or broken connections, server errors at the route).
    pub errors: Counter,
    latency: Histogram,
    latency_us: Arc<AtomicU64>,
}

impl OpMetrics {
    /// Records one request's latency.
    pub fn observe(&self, elapsed: Duration) {
        self.requests.inc();
        self.latency.observe(elapsed.as_secs_f64());
        self.latency_us
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Mean latency in microseconds so far (for `stats`).
    pub fn mean_latency_us(&self) -> u64 {
        let n = self.requests.get();
        self.latency_us
            .load(Ordering::Relaxed)
            .checked_div(n)
            .unwrap_or(0)
    }
}

/// Every metric of the router.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    hits: Family<Labels, Counter>,
    misses: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
    /// Client connections open now.
    pub connections: Gauge,
    /// Client connections accepted since start.
    pub total_connections: Counter,
    /// Replicated operations dropped because a datacenter's queue was full.
    pub replication_dropped: Counter,
    /// Requests answered from the gutter pool in place of a failed or down server.
    pub failovers: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with the router's metric families.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mcrouter");
        let requests = Family::<Labels, Counter>::default();
        let hits = Family::<Labels, Counter>::default();
        let misses = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let latency: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let connections = Gauge::default();
        let total_connections = Counter::default();
        let replication_dropped = Counter::default();
        let failovers = Counter::default();
        registry.register("requests", "Requests sent", requests.clone());
        registry.register("hits", "Keys found", hits.clone());
        registry.register("misses", "Keys not found", misses.clone());
        registry.register("errors", "Failed requests", errors.clone());
        registry.register("latency_seconds", "Request latency", latency.clone());
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
            "replication_dropped",
            "Replicated operations dropped on a full queue",
            replication_dropped.clone(),
        );
        registry.register(
            "failovers",
            "Requests sent to the gutter pool",
            failovers.clone(),
        );
        Metrics {
            registry,
            requests,
            hits,
            misses,
            errors,
            latency,
            connections,
            total_connections,
            replication_dropped,
            failovers,
        }
    }

    fn op(&self, labels: Labels) -> OpMetrics {
        OpMetrics {
            requests: self.requests.get_or_create(&labels).clone(),
            hits: self.hits.get_or_create(&labels).clone(),
            misses: self.misses.get_or_create(&labels).clone(),
            errors: self.errors.get_or_create(&labels).clone(),
            latency: self.latency.get_or_create(&labels).clone(),
            latency_us: Arc::default(),
        }
    }

    /// The metrics of the route to `pool` (labelled `route="<pool>"`).
    pub fn route(&self, pool: &str) -> OpMetrics {
        self.op(vec![("route".into(), pool.into())])
    }

    /// The metrics of one server (labelled `pool` and `server`).
    pub fn server(&self, pool: &str, addr: &str) -> OpMetrics {
        self.op(vec![
            ("pool".into(), pool.into()),
            ("server".into(), addr.into()),
        ])
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
