//! Marking servers down after consecutive failures, and probing them back.
//!
//! A request that times out, is refused or breaks its connection counts one failure against its
//! server; any success resets the count. At `failures_until_down` the server is marked down and
//! its keys go to the gutter pool (with capped TTLs, see [`crate::route::Router::gutter_exptime`])
//! until a probe — a fresh connection answering `version` — succeeds. The failing request itself
//! is retried once on the gutter, so a client sees a server die as a short burst of gutter hits,
//! not errors.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::pool::{Server, Upstream};
use crate::protocol::ReplyKind;
use crate::route::Router;

/// Records a successful request.
pub fn record_success(server: &Server) {
    // A load before the store keeps the hot path free of writes to a shared cache line.
    if server.failures.load(Ordering::Relaxed) != 0 {
        server.failures.store(0, Ordering::Relaxed);
    }
}

/// Records a failed request; marks the server down at the threshold.
pub fn record_failure(router: &Router, server: &Server) {
    server.metrics.errors.inc();
    let failures = server.failures.fetch_add(1, Ordering::Relaxed) + 1;
    if failures >= router.config.failover.failures_until_down
        && !server.down.swap(true, Ordering::Relaxed)
    {
        server.generation.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(pool = %server.pool, server = %server.addr, failures, "server marked down");
    }
}

/// Probes down servers every `probe_interval_ms` until the router is dropped.
pub async fn probe_loop(router: Arc<Router>) {
    let mut interval = tokio::time::interval(Duration::from_millis(
        router.config.failover.probe_interval_ms,
    ));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        for server in router.servers.iter().filter(|s| s.is_down()) {
            if probe(&router, server).await {
                server.failures.store(0, Ordering::Relaxed);
                server.generation.fetch_add(1, Ordering::Relaxed);
                server.down.store(false, Ordering::Relaxed);
                tracing::info!(pool = %server.pool, server = %server.addr, "server back up");
            }
        }
    }
}

async fn probe(router: &Router, server: &Server) -> bool {
    let Ok(mut conn) = Upstream::connect(&server.addr, 0, router.connect_timeout()).await else {
        return false;
    };
    matches!(
        conn.call(b"version\r\n", ReplyKind::Line, router.request_timeout()).await,
        Ok(reply) if reply.starts_with(b"VERSION ")
    )
}
