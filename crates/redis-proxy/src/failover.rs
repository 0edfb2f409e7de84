//! Marking servers down after consecutive failures, and probing them back.
//!
//! A request that times out, is refused, breaks its connection or gets a malformed reply
//! counts one failure against its server; any success resets the count. At
//! `failover.failures_until_down` the server is marked down: its keys fail at once with an
//! error naming it (or, in a pool with `eject_down_servers`, go to the next server on the
//! ring), so clients stop waiting on timeouts. Every `probe_interval_ms` each down server gets
//! a fresh connection, its `AUTH` and a `PING`; when that answers, the server is back.
//!
//! The failing request itself is not retried elsewhere: a Redis command may not be idempotent
//! (`INCR`, a lock script), and the server may have run it before the connection broke.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::pool::{Server, UpstreamError};
use crate::proxy::Proxy;

/// Records a successful request.
pub fn record_success(server: &Server) {
    // A load before the store keeps the hot path free of writes to a shared cache line.
    if server.failures.load(Ordering::Relaxed) != 0 {
        server.failures.store(0, Ordering::Relaxed);
    }
}

/// Records a failed request; marks the server down at the threshold, logging why (the last
/// failure: a refused password reads differently from a dead server).
pub fn record_failure(proxy: &Proxy, id: usize, err: &UpstreamError) {
    let server = &proxy.servers[id];
    server.metrics.errors.inc();
    let failures = server.failures.fetch_add(1, Ordering::Relaxed) + 1;
    if failures >= proxy.config.failover.failures_until_down
        && !server.down.swap(true, Ordering::Relaxed)
    {
        server.metrics.up.set(0);
        proxy.pool_of(id).rebuild_live(&proxy.servers);
        tracing::warn!(pool = %server.pool, server = %server.addr, failures, last = %err, "server marked down");
    }
}

/// Probes down servers every `probe_interval_ms`, forever.
pub async fn probe_loop(proxy: Arc<Proxy>) {
    let mut interval = tokio::time::interval(Duration::from_millis(
        proxy.config.failover.probe_interval_ms,
    ));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        for (id, server) in proxy.servers.iter().enumerate() {
            if !server.is_down() {
                continue;
            }
            match proxy.links[id].probe().await {
                Ok(()) => {
                    server.failures.store(0, Ordering::Relaxed);
                    server.down.store(false, Ordering::Relaxed);
                    server.metrics.up.set(1);
                    proxy.pool_of(id).rebuild_live(&proxy.servers);
                    tracing::info!(pool = %server.pool, server = %server.addr, "server back up");
                }
                Err(err) => {
                    tracing::debug!(pool = %server.pool, server = %server.addr, %err, "probe failed");
                }
            }
        }
    }
}
