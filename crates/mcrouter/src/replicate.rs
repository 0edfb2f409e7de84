//! Requests sent in the background (`AllAsyncRoute`, `AllInitialRoute`, broadcasts): one
//! bounded queue and one sender task per pool.
//!
//! The client never waits for them; a full queue drops the request and counts it
//! (`mcrouter_replication_dropped_total`) rather than holding memory without bound, and a
//! request for a server that is down is counted as an error and dropped: the probes bring the
//! server back, and a lost invalidation of a down server's keys is what the gutter's short
//! TTL is for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::protocol::ReplyKind;
use crate::route::Router;
use crate::server::call_server;

/// Queue depth per pool: a burst of this many background requests can wait for a slow link.
pub const QUEUE: usize = 16 * 1024;

/// One request to send to one server.
#[derive(Debug)]
pub struct Replicated {
    /// The server id.
    pub server: usize,
    /// The encoded request (asking for a reply).
    pub request: Bytes,
    /// The shape of its reply.
    pub kind: ReplyKind,
}

/// Creates the queues and spawns one sender task per pool.
pub fn start(router: &Arc<Router>) {
    let mut senders = Vec::new();
    for _ in &router.pools {
        let (tx, rx) = mpsc::channel(QUEUE);
        senders.push(tx);
        tokio::spawn(run(Arc::clone(router), rx));
    }
    // Only the first start wins; later calls (tests starting twice) keep the first queues.
    let _ = router.replication.set(senders);
}

/// Queues `request` for server `id`.
pub fn enqueue(router: &Router, id: usize, request: Bytes, kind: ReplyKind) {
    let server = &router.servers[id];
    if server.is_down() {
        server.metrics.errors.inc();
        return;
    }
    let Some(senders) = router.replication.get() else {
        return;
    };
    let pool = server.pool_index;
    let item = Replicated {
        server: id,
        request,
        kind,
    };
    if senders[pool].try_send(item).is_err() {
        router.metrics.replication_dropped.inc();
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
        if router.servers[item.server].is_down() {
            router.servers[item.server].metrics.errors.inc();
            continue;
        }
        let _ = call_server(&router, item.server, item.request, item.kind).await;
    }
}
