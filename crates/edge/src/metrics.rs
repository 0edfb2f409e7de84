//! Prometheus metrics: requests by status, latency, active connections, endpoint health.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `edge_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// HTTP status code.
    pub status: u16,
}

/// Labels of `edge_endpoint_healthy`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// Backend name.
    pub backend: String,
    /// Endpoint address.
    pub address: String,
}

/// Labels of `edge_panic_requests`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// Backend name.
    pub backend: String,
}

/// Every metric the server records.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by status (including the ones edge answers itself).
    pub requests: Family<StatusLabels, Counter>,
    /// Time from request received to response headers sent, in seconds.
    pub latency: Histogram,
    /// Open client connections.
    pub active_connections: Gauge,
    /// 1 while an endpoint is in, 0 while it is taken out.
    pub endpoint_healthy: Family<EndpointLabels, Gauge>,
    /// Requests routed while their backend was below its panic threshold.
    pub panic: Family<BackendLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<StatusLabels, Counter>::default();
        // 0.5 ms to about 65 s: from static files to slow API requests (php timeout is 201 s).
        let latency = Histogram::new([
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            30.0, 65.0,
        ]);
        let active_connections = Gauge::default();
        let endpoint_healthy = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "edge_requests",
            "Requests answered, by status",
            requests.clone(),
        );
        registry.register(
            "edge_request_duration_seconds",
            "Time to response headers",
            latency.clone(),
        );
        registry.register(
            "edge_active_connections",
            "Open client connections",
            active_connections.clone(),
        );
        registry.register(
            "edge_endpoint_healthy",
            "1 if the backend endpoint receives traffic",
            endpoint_healthy.clone(),
        );
        let panic = Family::<BackendLabels, Counter>::default();
        registry.register(
            "edge_panic_requests",
            "Requests sent to any endpoint because too few were healthy",
            panic.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            active_connections,
            endpoint_healthy,
            panic,
        }
    }
}

impl Metrics {
    /// Records one answered request.
    pub fn observe(&self, status: u16, elapsed: std::time::Duration) {
        self.requests.get_or_create(&StatusLabels { status }).inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Counts a request routed in panic mode.
    pub fn panic_requests(&self, backend: &str) {
        self.panic
            .get_or_create(&BackendLabels {
                backend: backend.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
