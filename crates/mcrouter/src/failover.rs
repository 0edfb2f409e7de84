//! TKO: marking servers down, and probing them back.
//!
//! As real mcrouter does: a connection refused, reset or closed, or a reply that breaks the
//! protocol, marks the server down at once (a hard TKO); timeouts count against it, and
//! `tko.timeouts_until_tko` of them in a row mark it down (a soft TKO); any success resets
//! the count. A down server gets no requests: the route answers from its failover (the
//! gutter) or, without one, as [`crate::config::Unavailable`] says. It is probed — a fresh
//! connection answering `version` — after `tko.probe_delay_initial_ms`, then at doubling
//! intervals up to `tko.probe_delay_max_ms`, until a probe succeeds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::pool::{Server, Upstream, UpstreamError};
use crate::protocol::ReplyKind;
use crate::route::Router;

/// Records a successful request.
pub fn record_success(server: &Server) {
    // A load before the store keeps the hot path free of writes to a shared cache line.
    if server.failures.load(Ordering::Relaxed) != 0 {
        server.failures.store(0, Ordering::Relaxed);
    }
}

/// Records a failed request; marks the server down on a hard error or at the timeout
/// threshold.
pub fn record_failure(router: &Router, server: &Server, err: &UpstreamError) {
    server.metrics.errors.inc();
    let failures = server.failures.fetch_add(1, Ordering::Relaxed) + 1;
    let hard = !matches!(err, UpstreamError::Timeout);
    if (hard || failures >= router.config.tko.timeouts_until_tko)
        && !server.down.swap(true, Ordering::Relaxed)
    {
        server.generation.fetch_add(1, Ordering::Relaxed);
        let initial = router.config.tko.probe_delay_initial_ms;
        server
            .next_probe_ms
            .store(now_ms(router) + initial, Ordering::Relaxed);
        server.probe_delay_ms.store(initial, Ordering::Relaxed);
        tracing::warn!(pool = %server.pool, server = %server.addr, failures, %err, "server marked down (TKO)");
    }
}

fn now_ms(router: &Router) -> u64 {
    router.started.elapsed().as_millis() as u64
}

/// Probes down servers when their probe is due, until the router is dropped.
pub async fn probe_loop(router: Arc<Router>) {
    // Often enough for the shortest configured delay; cheap when nothing is down.
    let tick = router.config.tko.probe_delay_initial_ms.clamp(5, 100);
    let mut interval = tokio::time::interval(Duration::from_millis(tick));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        for server in router.servers.iter().filter(|s| s.is_down()) {
            if now_ms(&router) < server.next_probe_ms.load(Ordering::Relaxed) {
                continue;
            }
            if probe(&router, server).await {
                server.failures.store(0, Ordering::Relaxed);
                server.generation.fetch_add(1, Ordering::Relaxed);
                server.down.store(false, Ordering::Relaxed);
                tracing::info!(pool = %server.pool, server = %server.addr, "server back up");
            } else {
                let delay = (server.probe_delay_ms.load(Ordering::Relaxed) * 2)
                    .min(router.config.tko.probe_delay_max_ms);
                server.probe_delay_ms.store(delay, Ordering::Relaxed);
                server
                    .next_probe_ms
                    .store(now_ms(&router) + delay, Ordering::Relaxed);
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
