//! Servers, pools, and the connections to them.
//!
//! A [`Server`] is shared by every client session: its address, its health (see
//! [`crate::failover`]) and its metrics. An [`Upstream`] is one TCP connection to a server, owned
//! by one session at a time, so replies can never be handed to the wrong client; a session opens
//! its upstreams lazily and keeps them while the client stays connected.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::metrics::OpMetrics;
use crate::protocol::{reply_len, ReplyKind};
use crate::ring::Ring;

/// One memcached server.
#[derive(Debug)]
pub struct Server {
    /// `host:port` as configured.
    pub addr: String,
    /// The pool it belongs to.
    pub pool: String,
    /// Its index in the router's flat list of servers.
    pub id: usize,
    /// Consecutive failures since the last success.
    pub(crate) failures: AtomicU32,
    /// Marked down: its keys go to the gutter until a probe succeeds.
    pub(crate) down: AtomicBool,
    /// Bumped whenever the server goes down or comes back: sessions drop connections opened in
    /// an older generation, which a restarted server has closed.
    pub(crate) generation: AtomicU64,
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
