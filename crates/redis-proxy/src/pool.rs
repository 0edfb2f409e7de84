//! Servers, pools, where a key goes, and the connections to the servers.
//!
//! A [`Server`] is shared by every client session: its address, its health (see
//! [`crate::failover`]) and its metrics. A [`Pool`] places keys on its servers with the
//! ketama ring the memcached router uses too ([`ketama::Ring`], which twemproxy's
//! `distribution: ketama` + `hash: md5` agrees with), after cutting out the key's hash tag.
//!
//! Each server has one [`Connection`]: a task that owns one TCP connection, writes every
//! session's requests to it back to back and hands each reply to the session that asked, in
//! order (twemproxy's `server_connections: 1`). Sharing it is why commands that change or
//! block their connection (`SELECT 1`, `WATCH`, `BLPOP`, `SUBSCRIBE`) are refused.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ketama::Ring;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{PoolMetrics, ServerMetrics};
use crate::resp::{encode_command, ReplyScanner};
use crate::secret::Password;

/// One Redis server.
#[derive(Debug)]
pub struct Server {
    /// `host:port` as configured.
    pub addr: String,
    /// The pool it belongs to.
    pub pool: String,
    /// Consecutive failures since the last success.
    pub(crate) failures: AtomicU32,
    /// Marked down: no requests go to it until a probe succeeds.
    pub(crate) down: AtomicBool,
    /// Requests, errors, latency and health.
    pub metrics: ServerMetrics,
}

impl Server {
    /// A server that is up.
    pub fn new(addr: &str, pool: &str, metrics: ServerMetrics) -> Server {
        metrics.up.set(1);
        Server {
            addr: addr.to_string(),
            pool: pool.to_string(),
            failures: AtomicU32::new(0),
            down: AtomicBool::new(false),
            metrics,
        }
    }

    /// Whether the server is marked down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }
}

/// Why no server can take a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// The key's server (an id into the proxy's servers) is marked down and the pool does not
    /// eject down servers.
    Down(usize),
    /// Every server of the pool is marked down.
    AllDown,
}

/// The ring over the servers that are up, for a pool that ejects down servers.
#[derive(Debug)]
struct Live {
    ring: Ring,
    /// Server ids, in the ring's order.
    ids: Vec<usize>,
}

/// A pool: its servers (ids into the proxy's list) and their ring.
#[derive(Debug)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    /// Server ids, in configured order (the ring's indices).
    pub servers: Vec<usize>,
    ring: Ring,
    hash_tag: Option<[u8; 2]>,
    eject: bool,
    /// Rebuilt when a server goes down or comes back; read only for keys whose server is down.
    live: RwLock<Option<Arc<Live>>>,
    /// The password for the pool's servers.
    pub password: Option<Password>,
    /// Commands and refusals at this pool.
    pub metrics: PoolMetrics,
}

impl Pool {
    /// A pool over `servers` (ids) named by `addrs` (the same order).
    pub fn new(
        name: &str,
        servers: Vec<usize>,
        addrs: &[String],
        hash_tag: Option<&str>,
        eject: bool,
        password: Option<Password>,
        metrics: PoolMetrics,
    ) -> Pool {
        let hash_tag = hash_tag
            .map(str::as_bytes)
            .and_then(|t| Some([*t.first()?, *t.get(1)?]));
        Pool {
            name: name.to_string(),
            servers,
            ring: Ring::new(addrs),
            hash_tag,
            eject,
            live: RwLock::new(None),
            password,
            metrics,
        }
    }

    /// The part of `key` that places it: the inside of its hash tag if it has a non-empty one,
    /// else the whole key (twemproxy's rule: the first opening character, then the first
    /// closing one after it).
    pub fn hash_key<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        if let Some([open, close]) = self.hash_tag {
            if let Some(start) = memchr::memchr(open, key) {
                let inner = &key[start + 1..];
                if let Some(end) = memchr::memchr(close, inner) {
                    if end > 0 {
                        return &inner[..end];
                    }
                }
            }
        }
        key
    }

    /// The server that owns `key` when every server is up.
    pub fn owner(&self, key: &[u8]) -> usize {
        self.servers[self.ring.server_for(self.hash_key(key))]
    }

    /// The server to send a request for `key` to now.
    pub fn target(&self, servers: &[Server], key: &[u8]) -> Result<usize, Unavailable> {
        let id = self.owner(key);
        if !servers[id].is_down() {
            return Ok(id);
        }
        if !self.eject {
            return Err(Unavailable::Down(id));
        }
        // A poisoned lock only means a panic elsewhere while rebuilding; the value is whole.
        let live = self.live.read().unwrap_or_else(|e| e.into_inner()).clone();
        match live {
            // Removing a server from a ketama ring moves only its own points' keys, each to
            // the next point on the ring: the same servers twemproxy's ejection picks.
            Some(live) => Ok(live.ids[live.ring.server_for(self.hash_key(key))]),
            None => Err(Unavailable::AllDown),
        }
    }

    /// Rebuilds the ring of servers that are up, after one went down or came back.
    pub fn rebuild_live(&self, servers: &[Server]) {
        if !self.eject {
            return;
        }
        let ids: Vec<usize> = self
            .servers
            .iter()
            .copied()
            .filter(|&id| !servers[id].is_down())
            .collect();
        let live = (!ids.is_empty()).then(|| {
            let addrs: Vec<&str> = ids.iter().map(|&id| servers[id].addr.as_str()).collect();
            Arc::new(Live {
                ring: Ring::new(&addrs),
                ids,
            })
        });
        *self.live.write().unwrap_or_else(|e| e.into_inner()) = live;
    }
}

/// Why a request to a server failed. Every kind counts towards marking the server down.
/// Cloned to every request that was in flight on a connection when it failed, so each client
/// hears the real cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Connecting failed (refused, unreachable).
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The server refused the proxy's password.
    #[error("the server refused the proxy's AUTH: {0}")]
    Auth(String),
    /// No complete reply within the timeout.
    #[error("no reply within {0} ms")]
    Timeout(u64),
    /// Reading or writing failed.
    #[error("connection lost: {0}")]
    Io(String),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The reply broke RESP2.
    #[error("malformed reply")]
    BadReply,
}

/// Where and how to reach one server.
#[derive(Debug, Clone)]
pub struct Link {
    /// `host:port`.
    pub addr: String,
    /// Sent in `AUTH` on every new connection.
    pub password: Option<Password>,
    /// Connecting, including the `AUTH` exchange.
    pub connect_timeout: Duration,
    /// One request, from sending it to its complete reply.
    pub request_timeout: Duration,
}

impl Link {
    /// Opens a connection and authenticates it, within the connect timeout.
    pub async fn connect(&self) -> Result<TcpStream, UpstreamError> {
        let ms = self.connect_timeout.as_millis() as u64;
        tokio::time::timeout(self.connect_timeout, async {
            let mut stream = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| UpstreamError::Connect(e.to_string()))?;
            // Requests are small and latency-bound; Nagle would hold them back.
            stream
                .set_nodelay(true)
                .map_err(|e| UpstreamError::Connect(e.to_string()))?;
            if let Some(password) = &self.password {
                let mut auth = BytesMut::new();
                encode_command(&mut auth, [&b"AUTH"[..], password.as_bytes()].into_iter());
                let reply = exchange(&mut stream, &auth).await?;
                if &reply[..] != b"+OK\r\n" {
                    let line = String::from_utf8_lossy(&reply[1..]).trim_end().to_string();
                    return Err(UpstreamError::Auth(line));
                }
            }
            Ok(stream)
        })
        .await
        .map_err(|_| UpstreamError::Timeout(ms))?
    }

    /// Whether the server answers `PING` on a fresh connection, within the timeouts.
    pub async fn probe(&self) -> Result<(), UpstreamError> {
        let mut stream = self.connect().await?;
        let reply = tokio::time::timeout(
            self.request_timeout,
            exchange(&mut stream, b"*1\r\n$4\r\nPING\r\n"),
        )
        .await
        .map_err(|_| UpstreamError::Timeout(self.request_timeout.as_millis() as u64))??;
        if &reply[..] == b"+PONG\r\n" {
            Ok(())
        } else {
            Err(UpstreamError::BadReply)
        }
    }
}

/// Sends one request and reads its one reply, on a connection of its own (handshakes, probes).
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> Result<Bytes, UpstreamError> {
    let io = |e: std::io::Error| UpstreamError::Io(e.to_string());
    stream.write_all(request).await.map_err(io)?;
    let mut buf = BytesMut::with_capacity(256);
    let mut scanner = ReplyScanner::new(1);
    loop {
        if stream.read_buf(&mut buf).await.map_err(io)? == 0 {
            return Err(UpstreamError::Closed);
        }
        if let Some(n) = scanner.scan(&buf).map_err(|_| UpstreamError::BadReply)? {
            return Ok(buf.split_to(n).freeze());
        }
    }
}

/// The answer to a [`Job`]: its replies, back to back, or why there are none.
pub type JobResult = Result<Bytes, UpstreamError>;

/// Requests queued for a server's shared connection.
#[derive(Debug)]
pub struct Job {
    /// The encoded requests.
    pub request: Bytes,
    /// How many replies they produce (more than one for a transaction sent as a whole).
    pub count: u32,
    /// Where the replies go.
    pub reply: oneshot::Sender<JobResult>,
}

/// The read buffer of a shared connection, and the room it must have before a read.
const READ_BUFFER: usize = 64 * 1024;
const READ_ROOM: usize = 4 * 1024;

/// The handle to a server's shared, pipelined connection.
///
/// Under load the task writes many sessions' requests in one write and reads many replies in
/// one read: the syscalls, not the parsing, are where a proxy spends its CPU.
#[derive(Debug, Clone)]
pub struct Connection {
    tx: mpsc::UnboundedSender<Job>,
}

impl Connection {
    /// Starts the connection task for a server (it connects on the first request), which
    /// counts its requests and their latency in `metrics`. Must be called within a Tokio
    /// runtime.
    pub fn start(link: Link, metrics: ServerMetrics) -> Connection {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(connection_task(link, metrics, rx));
        Connection { tx }
    }

    /// Queues `request` (which produces `count` replies). The receiver gets the replies, or
    /// an error; the task bounds the wait with the connect and request timeouts.
    pub fn submit(&self, request: Bytes, count: u32) -> oneshot::Receiver<JobResult> {
        let (reply, rx) = oneshot::channel();
        // If the task is gone, `reply` is dropped with the job and the receiver sees it.
        let _ = self.tx.send(Job {
            request,
            count,
            reply,
        });
        rx
    }
}

async fn connection_task(link: Link, metrics: ServerMetrics, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match rx.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        match link.connect().await {
            Ok(stream) => next = pipeline(&link, &metrics, stream, job, &mut rx).await,
            Err(err) => {
                // What queued up meanwhile fails with it: those clients waited already.
                metrics.requests.inc();
                let _ = job.reply.send(Err(err.clone()));
                while let Ok(job) = rx.try_recv() {
                    metrics.requests.inc();
                    let _ = job.reply.send(Err(err.clone()));
                }
            }
        }
        if next.is_none() && rx.is_closed() {
            return;
        }
    }
}

/// Runs one connection until it fails, the server closes it while idle, or the queue closes.
/// Returns a job taken from the queue but not sent yet, if any.
async fn pipeline(
    link: &Link,
    metrics: &ServerMetrics,
    stream: TcpStream,
    job: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
) -> Option<Job> {
    let (mut read, mut write) = stream.into_split();
    // Each request's reply count, its sender, and when it was queued. The clock is read once
    // per batch of requests queued and once per batch of replies read, not per request.
    let mut inflight: VecDeque<(u32, oneshot::Sender<JobResult>, Instant)> = VecDeque::new();
    // The scanner of the reply at the front, kept across reads.
    let mut scanner: Option<ReplyScanner> = None;
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    // Replies leave as slices of this buffer; one large buffer lets many reads share an
    // allocation instead of allocating per read.
    let mut rbuf = BytesMut::with_capacity(READ_BUFFER);
    let timeout = link.request_timeout;
    let timeout_ms = timeout.as_millis() as u64;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let queue = |job: Job, wbuf: &mut BytesMut, inflight: &mut VecDeque<_>, now: Instant| {
        wbuf.extend_from_slice(&job.request);
        inflight.push_back((job.count, job.reply, now));
    };
    let now = Instant::now();
    queue(job, &mut wbuf, &mut inflight, now);
    deadline.as_mut().reset((now + timeout).into());
    let mut yielded = false;
    let failure = loop {
        if let Ok(job) = rx.try_recv() {
            let was_idle = inflight.is_empty();
            let now = Instant::now();
            queue(job, &mut wbuf, &mut inflight, now);
            while let Ok(job) = rx.try_recv() {
                queue(job, &mut wbuf, &mut inflight, now);
            }
            if was_idle {
                deadline.as_mut().reset((now + timeout).into());
            }
        }
        // Before writing, let the other ready tasks run once: their sessions queue requests
        // here too, and one write then carries them all (the same measured trade as the
        // memcached router's: one scheduler pass of latency for fewer syscalls per request).
        if !wbuf.is_empty() && !yielded {
            yielded = true;
            tokio::task::yield_now().await;
            continue;
        }
        rbuf.reserve(READ_ROOM);
        tokio::select! {
            written = write.write_buf(&mut wbuf), if !wbuf.is_empty() => {
                if let Err(err) = written {
                    break UpstreamError::Io(err.to_string());
                }
                yielded = false;
            }
            // Read even while idle: a server that closes an idle connection (a restart, its
            // `timeout` setting) is noticed here, before a request is lost on it.
            read_result = read.read_buf(&mut rbuf) => {
                match read_result {
                    Ok(0) if inflight.is_empty() => return None,
                    Ok(0) => break UpstreamError::Closed,
                    Err(_) if inflight.is_empty() => return None,
                    Err(err) => break UpstreamError::Io(err.to_string()),
                    Ok(_) if inflight.is_empty() => break UpstreamError::BadReply,
                    Ok(_) => {}
                }
                // Set when a reply completes: progress, which restarts the deadline.
                let mut now = None;
                let bad = loop {
                    let Some(&(count, _, _)) = inflight.front() else { break false };
                    match scanner.get_or_insert_with(|| ReplyScanner::new(count)).scan(&rbuf) {
                        Ok(Some(n)) => {
                            scanner = None;
                            let reply = rbuf.split_to(n).freeze();
                            if let Some((_, tx, sent)) = inflight.pop_front() {
                                let now = *now.get_or_insert_with(Instant::now);
                                metrics.observe(now - sent);
                                let _ = tx.send(Ok(reply));
                            }
                        }
                        Ok(None) => break false,
                        Err(_) => break true,
                    }
                };
                if bad {
                    break UpstreamError::BadReply;
                }
                if let Some(now) = now {
                    deadline.as_mut().reset((now + timeout).into());
                }
            }
            job = rx.recv(), if wbuf.is_empty() => match job {
                Some(job) => {
                    let now = Instant::now();
                    if inflight.is_empty() {
                        deadline.as_mut().reset((now + timeout).into());
                    }
                    queue(job, &mut wbuf, &mut inflight, now);
                }
                None => return None,
            },
            () = &mut deadline, if !inflight.is_empty() => break UpstreamError::Timeout(timeout_ms),
        }
    };
    tracing::debug!(server = %link.addr, err = %failure, "connection failed");
    let now = Instant::now();
    for (_, tx, sent) in inflight {
        metrics.observe(now - sent);
        let _ = tx.send(Err(failure.clone()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn pool(eject: bool) -> (Pool, Vec<Server>) {
        let metrics = Metrics::new();
        let addrs: Vec<String> = (1..=3).map(|i| format!("127.0.0.1:{i}")).collect();
        let servers = addrs
            .iter()
            .map(|a| Server::new(a, "p", metrics.server("p", a)))
            .collect();
        let pool = Pool::new(
            "p",
            vec![0, 1, 2],
            &addrs,
            Some("{}"),
            eject,
            None,
            metrics.pool("p"),
        );
        (pool, servers)
    }

    #[test]
    fn hash_tags_place_keys_by_their_tag() {
        let (pool, _) = pool(false);
        assert_eq!(pool.hash_key(b"{user:1}:session"), b"user:1");
        assert_eq!(pool.hash_key(b"a{b}c{d}"), b"b");
        assert_eq!(pool.hash_key(b"{}x"), b"{}x");
        assert_eq!(pool.hash_key(b"x{y"), b"x{y");
        assert_eq!(pool.hash_key(b"x}y{"), b"x}y{");
        for i in 0..50 {
            let a = format!("{{user:{i}}}:a");
            let b = format!("{{user:{i}}}:b");
            assert_eq!(pool.owner(a.as_bytes()), pool.owner(b.as_bytes()));
        }
    }

    #[test]
    fn a_down_server_fails_its_keys_or_ejects_them() {
        for eject in [false, true] {
            let (pool, servers) = pool(eject);
            let keys: Vec<String> = (0..300).map(|i| format!("key:{i}")).collect();
            let before: Vec<usize> = keys.iter().map(|k| pool.owner(k.as_bytes())).collect();
            servers[1].down.store(true, Ordering::Relaxed);
            pool.rebuild_live(&servers);
            for (key, &owner) in keys.iter().zip(&before) {
                let now = pool.target(&servers, key.as_bytes());
                match (owner, eject) {
                    (1, false) => assert_eq!(now, Err(Unavailable::Down(1))),
                    (1, true) => assert!(matches!(now, Ok(0 | 2)), "{key}: {now:?}"),
                    // Keys of the servers that are up never move.
                    _ => assert_eq!(now, Ok(owner), "{key}"),
                }
            }
            for s in &servers {
                s.down.store(true, Ordering::Relaxed);
            }
            pool.rebuild_live(&servers);
            let expected = if eject {
                Unavailable::AllDown
            } else {
                Unavailable::Down(before[0])
            };
            assert_eq!(pool.target(&servers, keys[0].as_bytes()), Err(expected));
        }
    }
}
