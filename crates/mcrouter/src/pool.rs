//! Servers, pools, and the connections to them.
//!
//! A [`Server`] is shared by every client session: its address, its health (see
//! [`crate::failover`]) and its metrics. Each server has one [`Connection`]: a task that owns
//! the TCP connection, pipelines every session's requests over it, and hands each reply back
//! to the session that asked, in order. An [`Upstream`] is a plain connection for one caller
//! (the probes).

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::OpMetrics;
use crate::protocol::{reply_len, ReplyKind};
use crate::route::Router;
use ketama::Ring;

/// One memcached server.
#[derive(Debug)]
pub struct Server {
    /// `host:port` as configured.
    pub addr: String,
    /// The pool it belongs to.
    pub pool: String,
    /// That pool's index in the router's list.
    pub pool_index: usize,
    /// Its index in the router's flat list of servers.
    pub id: usize,
    /// Consecutive failures since the last success.
    pub(crate) failures: AtomicU32,
    /// Marked down: its keys go to the gutter until a probe succeeds.
    pub(crate) down: AtomicBool,
    /// Bumped whenever the server goes down or comes back: sessions drop connections opened in
    /// an older generation, which a restarted server has closed.
    pub(crate) generation: AtomicU64,
    /// While down: when the next probe is due, in ms since the router started.
    pub(crate) next_probe_ms: AtomicU64,
    /// While down: the delay before the probe after next (doubles up to the maximum).
    pub(crate) probe_delay_ms: AtomicU64,
    /// Requests, hits, misses, errors and latency at this server.
    pub metrics: OpMetrics,
}

impl Server {
    /// Whether the server is marked down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// A pool: its servers (ids into the router's list) and their ring.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// Server ids, in configured order (the ring's indices).
    pub servers: Vec<usize>,
    /// The consistent-hash ring over them.
    pub ring: Ring,
    /// Requests, hits, misses, errors and latency of the route to this pool.
    pub metrics: OpMetrics,
}

impl Pool {
    /// The id of the server that holds `key`.
    pub fn server_for(&self, key: &[u8]) -> usize {
        self.servers[self.ring.server_for(key)]
    }
}

/// Why a request to a server failed. Every kind counts towards marking the server down.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting or talking failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// No complete reply within the request timeout.
    #[error("timed out")]
    Timeout,
    /// The reply broke the protocol.
    #[error("malformed reply")]
    BadReply,
    /// The server closed the connection mid-reply.
    #[error("connection closed")]
    Closed,
}

/// One connection to a server.
#[derive(Debug)]
pub struct Upstream {
    stream: TcpStream,
    buf: BytesMut,
    /// The server's generation when this connection was opened.
    pub generation: u64,
}

impl Upstream {
    /// Connects within `timeout`.
    pub async fn connect(
        addr: &str,
        generation: u64,
        timeout: Duration,
    ) -> Result<Upstream, UpstreamError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        // Requests are small and latency-bound; Nagle would hold them back.
        stream.set_nodelay(true)?;
        Ok(Upstream {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            generation,
        })
    }

    /// Sends `request` and returns the complete reply, within `timeout`.
    pub async fn call(
        &mut self,
        request: &[u8],
        kind: ReplyKind,
        timeout: Duration,
    ) -> Result<Bytes, UpstreamError> {
        tokio::time::timeout(timeout, self.call_inner(request, kind))
            .await
            .map_err(|_| UpstreamError::Timeout)?
    }

    async fn call_inner(
        &mut self,
        request: &[u8],
        kind: ReplyKind,
    ) -> Result<Bytes, UpstreamError> {
        self.stream.write_all(request).await?;
        loop {
            if let Some(n) = reply_len(&self.buf, kind).map_err(|_| UpstreamError::BadReply)? {
                return Ok(self.buf.split_to(n).freeze());
            }
            // Without room to spare, BytesMut would grow (and the reads shrink) to 64 bytes.
            self.buf.reserve(16 * 1024);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(UpstreamError::Closed);
            }
        }
    }
}

/// The read buffer of a server's shared connection, and the room it must have before a read.
const READ_BUFFER: usize = 64 * 1024;
const READ_ROOM: usize = 4 * 1024;

/// A request queued for a server's shared connection.
#[derive(Debug)]
pub struct Job {
    /// The encoded request.
    pub request: Bytes,
    /// The shape of its reply.
    pub kind: ReplyKind,
    /// Where the reply goes.
    pub reply: oneshot::Sender<Result<Bytes, UpstreamError>>,
}

/// The handle to a server's shared, pipelined connection.
///
/// Every session queues its requests here; one task writes whatever is queued in one write
/// and hands the replies back in order. Under load this batches many clients' requests into
/// one syscall each way, which is where a proxy spends its time (the profile of one connection
/// per client per server showed 84% of the router's CPU in the kernel).
#[derive(Debug, Clone)]
pub struct Connection {
    tx: mpsc::UnboundedSender<Job>,
}

impl Connection {
    /// Starts the connection task for `server` (it connects on the first request).
    pub fn start(router: &Arc<Router>, id: usize) -> Connection {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(connection_task(Arc::clone(router), id, rx));
        Connection { tx }
    }

    /// Sends `request` and waits for its reply. The task bounds the wait with the connect
    /// and request timeouts.
    pub async fn call(&self, request: Bytes, kind: ReplyKind) -> Result<Bytes, UpstreamError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job {
                request,
                kind,
                reply,
            })
            .map_err(|_| UpstreamError::Closed)?;
        rx.await.unwrap_or(Err(UpstreamError::Closed))
    }
}

async fn connection_task(router: Arc<Router>, id: usize, mut rx: mpsc::UnboundedReceiver<Job>) {
    let server = &router.servers[id];
    let mut first = None;
    loop {
        let job = match first.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let generation = server.generation();
        let stream =
            match Upstream::connect(&server.addr, generation, router.connect_timeout()).await {
                Ok(upstream) => upstream.stream,
                Err(err) => {
                    // Everything queued meanwhile fails with it: those clients waited the connect
                    // timeout already.
                    let _ = job.reply.send(Err(err));
                    while let Ok(job) = rx.try_recv() {
                        let _ = job.reply.send(Err(UpstreamError::Closed));
                    }
                    continue;
                }
            };
        first = pipeline(&router, id, generation, stream, job, &mut rx).await;
        if first.is_none() && rx.is_closed() {
            return;
        }
    }
}

/// Runs one connection until it fails, its server changes generation, or the queue closes.
/// Returns a job taken from the queue but not yet sent, if any.
async fn pipeline(
    router: &Router,
    id: usize,
    generation: u64,
    stream: TcpStream,
    job: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
) -> Option<Job> {
    let server = &router.servers[id];
    let (mut read, mut write) = stream.into_split();
    let mut inflight: VecDeque<(ReplyKind, oneshot::Sender<Result<Bytes, UpstreamError>>)> =
        VecDeque::new();
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    // Replies leave as slices of this buffer, so the space they used comes back only once
    // every session has copied its reply out. A large buffer with a small minimum of room per
    // read lets many reads share one allocation instead of allocating 16 KiB per read.
    let mut rbuf = BytesMut::with_capacity(READ_BUFFER);
    let timeout = router.request_timeout();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let queue = |job: Job, wbuf: &mut BytesMut, inflight: &mut VecDeque<_>| {
        wbuf.extend_from_slice(&job.request);
        inflight.push_back((job.kind, job.reply));
    };
    queue(job, &mut wbuf, &mut inflight);
    deadline
        .as_mut()
        .reset(tokio::time::Instant::now() + timeout);
    let mut yielded = false;
    let failure = loop {
        // Take everything already queued: one write for all of it.
        let was_idle = inflight.is_empty();
        while let Ok(job) = rx.try_recv() {
            queue(job, &mut wbuf, &mut inflight);
        }
        if was_idle && !inflight.is_empty() {
            deadline
                .as_mut()
                .reset(tokio::time::Instant::now() + timeout);
        }
        // Before writing, let every other ready task run once, and the runtime look for newly
        // readable clients: their sessions queue here too, and the write carries twice as many
        // requests (measured under memaslap: 8 per write instead of 4, and about 15% less of
        // the router's CPU per request). It costs one pass of the scheduler in latency.
        if !wbuf.is_empty() && !yielded {
            yielded = true;
            tokio::task::yield_now().await;
            continue;
        }
        rbuf.reserve(READ_ROOM);
        tokio::select! {
            written = write.write_buf(&mut wbuf), if !wbuf.is_empty() => {
                if let Err(err) = written {
                    break UpstreamError::Io(err);
                }
                yielded = false;
            }
            read_result = read.read_buf(&mut rbuf), if !inflight.is_empty() => {
                match read_result {
                    Ok(0) => break UpstreamError::Closed,
                    Err(err) => break UpstreamError::Io(err),
                    Ok(_) => {}
                }
                let mut progressed = false;
                while let Some((kind, _)) = inflight.front() {
                    match reply_len(&rbuf, *kind) {
                        Ok(Some(n)) => {
                            let reply = rbuf.split_to(n).freeze();
                            if let Some((_, tx)) = inflight.pop_front() {
                                let _ = tx.send(Ok(reply));
                            }
                            progressed = true;
                        }
                        Ok(None) => break,
                        Err(_) => break,
                    }
                }
                if inflight.front().is_some_and(|(kind, _)| reply_len(&rbuf, *kind).is_err()) {
                    break UpstreamError::BadReply;
                }
                if progressed {
                    deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                }
            }
            job = rx.recv(), if wbuf.is_empty() => match job {
                Some(job) => {
                    if inflight.is_empty() {
                        deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                    }
                    if server.generation() != generation && inflight.is_empty() {
                        // The server went down or came back: this connection is from before.
                        return Some(job);
                    }
                    queue(job, &mut wbuf, &mut inflight);
                }
                None => return None,
            },
            () = &mut deadline, if !inflight.is_empty() => break UpstreamError::Timeout,
        }
    };
    tracing::debug!(server = %server.addr, err = %failure, "connection failed");
    let mut first = Some(failure);
    for (_, tx) in inflight {
        let err = first.take().unwrap_or(UpstreamError::Closed);
        let _ = tx.send(Err(err));
    }
    None
}
