//! Asynchronous replication of invalidations to other datacenters' pools.
//!
//! Deletes and touches of keys in the local pool are answered from the local pool, and copies go
//! to each `replicate_to` pool through a bounded queue and one task per pool. The client never
//! waits for a remote datacenter; a full queue drops the copy and counts it
//! (`mcrouter_replication_dropped_total`) rather than holding memory without bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::protocol::ReplyKind;
use crate::route::Router;
use crate::server::call_server;

/// Queue depth per remote pool: a burst of this many invalidations can wait for a slow link.
pub const QUEUE: usize = 16 * 1024;

/// One request to send to one server of a remote pool.
#[derive(Debug)]
pub struct Replicated {
    /// The server id.
    pub server: usize,
    /// The encoded request (asking for a reply).
    pub request: Bytes,
}

/// Creates the queues and spawns one sender task per replica pool.
pub fn start(router: &Arc<Router>) {
    let mut senders = Vec::new();
    for _ in &router.replicas {
        let (tx, rx) = mpsc::channel(QUEUE);
        senders.push(tx);
        tokio::spawn(run(Arc::clone(router), rx));
    }
    // Only the first start wins; later calls (tests starting twice) keep the first queues.
    let _ = router.replication.set(senders);
}

/// Queues `make(server)` for the owner of `key` in every replica pool.
pub fn replicate(router: &Router, key: &[u8], request: impl Fn() -> Bytes) {
    let Some(senders) = router.replication.get() else {
        return;
    };
    for (pool, tx) in router.replicas.iter().zip(senders) {
        let server = router.pools[*pool].server_for(key);
        let item = Replicated {
            server,
            request: request(),
        };
        if tx.try_send(item).is_err() {
            router.metrics.replication_dropped.inc();
        }
    }
}

/// Waits, up to `deadline`, until every queue is empty.
pub async fn drain(router: &Router, deadline: Instant) {
    let Some(senders) = router.replication.get() else {
        return;
    };
    while Instant::now() < deadline && senders.iter().any(|tx| tx.capacity() < tx.max_capacity()) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(router: Arc<Router>, mut rx: mpsc::Receiver<Replicated>) {
    while let Some(item) = rx.recv().await {
        let server = &router.servers[item.server];
        if server.is_down() {
            // Counted, not sent: the probes will bring it back; a lost invalidation of a
            // down server's keys is what the gutter's short TTL is for.
            server.metrics.errors.inc();
            continue;
        }
        let _ = call_server(&router, item.server, item.request, ReplyKind::Line).await;
    }
}
