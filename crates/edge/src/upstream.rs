//! Connections to upstreams: HTTP/1.1 over TCP or TLS, kept alive in a pool per serving thread.
//!
//! Each serving thread runs a single-threaded runtime, so its pool is plain `Rc<RefCell<..>>`
//! state, and a connection is used only by the task of the request using it: no locks, atomics,
//! channels or cross-thread wake-ups on the request path. The HTTP/1.1 itself is
//! [`upstream_http1`]'s.
//!
//! A connection is checked out (most recently used first, so that idle ones age and are closed
//! by the upstream or by [`Pool::sweep`]), used for one request, and checked back in when the
//! response body has been read to its end. A response whose body is dropped before its end
//! takes its connection with it: HTTP/1.1 cannot abandon a response and stay usable.
//!
//! Every wait has a bound: connecting within [`CONNECT_TIMEOUT`], the response head within
//! the backend's `timeouts.header_ms` (else [`UpstreamError::HeaderTimeout`], a 504), and no
//! silence longer than `timeouts.body_ms` while the body is read (else the body ends with
//! [`Http1Error::BodyTimeout`], which cuts the client's response off).
//!
//! A request without a body whose method is idempotent is sent again on a new connection when
//! a reused one turns out closed before any byte of an answer (the upstream closed it while
//! idle, just as the request went out), as RFC 9110 9.2.2 allows; anything else gets the
//! error.

use crate::config::{UpstreamTimeouts, UpstreamTls};
use crate::upstream_http1::{self, Connection, Framing, Http1Error};
use crate::upstream_tls::UpstreamTlsStore;
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The body of a request sent upstream: the client's, streamed.
pub type UpstreamBody = Incoming;

/// Connecting (TCP and, for TLS backends, the handshake) must finish within this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// An idle connection unused this long is closed: upstreams close theirs after a while
/// anyway (httpd's KeepAliveTimeout), and a burst must not pin its sockets forever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept per upstream address and serving thread; more are closed when
/// returned. It must be above what a thread has in flight to one upstream at its peak, or
/// every burst closes connections only to open them again: at 256, 512 HTTP/2 streams in
/// flight over two threads (bench/edge.sh's h2load case) opened a new connection for 2.6 % of
/// requests, about 1,400 a second, which cost the edge 3 to 8 % of its CPU per request and the
/// upstream as many accepts (docs/benchmarks.md). Surplus ones age out by [`IDLE_TIMEOUT`] or
/// the upstream's own keep-alive timeout, and an idle one holds no buffer.
const MAX_IDLE: usize = 1024;

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection could not be made.
    // The cause goes into the message and is not a `source`: these errors are logged and sent
    // as 502 bodies on one line, and a chain printer would say it twice.
    #[error("connect to {address}: {cause}")]
    Connect {
        /// `HOST:PORT`.
        address: String,
        /// The cause.
        cause: std::io::Error,
    },
    /// Connecting (with the TLS handshake) took longer than [`CONNECT_TIMEOUT`].
    #[error("connect to {address}: no connection within {} s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout {
        /// `HOST:PORT`.
        address: String,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name, protocol).
    #[error("TLS to {address} as {server_name}: {cause}")]
    Tls {
        /// `HOST:PORT`.
        address: String,
        /// The name verified.
        server_name: String,
        /// The cause, as rustls reports it.
        cause: std::io::Error,
    },
    /// The backend's TLS settings are not loaded (cannot happen for a validated, prepared
    /// config; reported rather than falling back to plain HTTP).
    #[error("TLS to {address}: settings for CA {ca} are not loaded")]
    TlsNotLoaded {
        /// `HOST:PORT`.
        address: String,
        /// The CA file of the settings.
        ca: String,
    },
    /// The response head did not come within the backend's `timeouts.header_ms`.
    #[error("{address}: no response within {} ms", after.as_millis())]
    HeaderTimeout {
        /// `HOST:PORT`.
        address: String,
        /// The timeout.
        after: Duration,
    },
    /// The HTTP exchange failed.
    #[error("{0}")]
    Http(#[from] Http1Error),
}

/// A failed [`Pool::send`], with the request back when nothing of it was sent.
#[derive(Debug)]
pub struct SendError {
    /// What went wrong.
    pub error: UpstreamError,
    /// The request, untouched (body included), when no connection could be made.
    pub request: Option<Request<UpstreamBody>>,
}

impl UpstreamError {
    /// Whether nothing reached the upstream (so another endpoint may be tried).
    pub fn is_connect(&self) -> bool {
        !matches!(
            self,
            UpstreamError::Http(_) | UpstreamError::HeaderTimeout { .. }
        )
    }
}

/// The byte stream under an upstream connection.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP. Boxed: rustls's connection state is large, and most connections are
    /// plain TCP.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

/// One upstream connection. Boxed once when made: it is moved in and out of the pool and
/// through every request's future and response body.
type Conn = Box<Connection<Stream, UpstreamBody>>;

struct Idle {
    conn: Conn,
    since: Instant,
}

struct Slot {
    key: Rc<str>,
    tls: Option<UpstreamTls>,
    idle: Vec<Idle>,
}

/// One serving thread's idle upstream connections, by address.
pub struct Pool {
    slots: RefCell<HashMap<Rc<str>, Slot>>,
    tls: Arc<UpstreamTlsStore>,
    /// Request heads are encoded here; a head's bytes are split off and go back to this
    /// buffer's allocation once written, so encoding allocates nothing in the steady state.
    heads: RefCell<BytesMut>,
    /// What this thread's connections read into.
    read_space: upstream_http1::ReadSpace,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// An empty pool taking TLS client settings from `tls`. Its sweeper needs a
    /// `tokio::task::LocalSet`.
    pub fn new(tls: Arc<UpstreamTlsStore>) -> Rc<Pool> {
        Rc::new(Pool {
            slots: RefCell::new(HashMap::new()),
            tls,
            heads: RefCell::new(BytesMut::with_capacity(16 * 1024)),
            read_space: upstream_http1::read_space(),
        })
    }

    /// Closes idle connections older than [`IDLE_TIMEOUT`] every few seconds, until the pool
    /// is dropped.
    pub fn spawn_sweeper(pool: &Rc<Pool>) {
        let weak: Weak<Pool> = Rc::downgrade(pool);
        tokio::task::spawn_local(async move {
            loop {
                tokio::time::sleep(IDLE_TIMEOUT / 4).await;
                let Some(pool) = weak.upgrade() else { return };
                pool.sweep(Instant::now());
            }
        });
    }

    /// Drops idle connections that are closed or have been idle for [`IDLE_TIMEOUT`].
    pub fn sweep(&self, now: Instant) {
        let mut slots = self.slots.borrow_mut();
        for slot in slots.values_mut() {
            slot.idle.retain_mut(|i| {
                // Not polled while idle: a close by the upstream shows only when checked.
                i.conn
                    .poll_idle_is_open(&mut Context::from_waker(Waker::noop()))
                    && now.duration_since(i.since) < IDLE_TIMEOUT
            });
        }
        slots.retain(|_, s| !s.idle.is_empty());
    }

    /// Idle connections in the pool (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.slots.borrow().values().map(|s| s.idle.len()).sum()
    }

    fn check_out(&self, address: &str, tls: Option<&UpstreamTls>) -> Option<(Rc<str>, Conn)> {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get_mut(address)?;
        if slot.tls.as_ref() != tls {
            // The backend's TLS settings changed: its old connections are not what it asks for.
            slot.idle.clear();
            slot.tls = tls.cloned();
            return None;
        }
        while let Some(mut idle) = slot.idle.pop() {
            // No task waits on an idle connection, hence the no-op waker: this only asks
            // whether the upstream closed it meanwhile.
            if idle
                .conn
                .poll_idle_is_open(&mut Context::from_waker(Waker::noop()))
            {
                return Some((slot.key.clone(), idle.conn));
            }
        }
        None
    }

    fn check_in(&self, key: Rc<str>, conn: Conn) {
        // One whose exchange did not end cleanly (the upstream answered before reading the
        // whole request body, or asked to close) is closed rather than pooled.
        if !conn.is_reusable() {
            return;
        }
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(&*key) else {
            return;
        };
        if slot.idle.len() < MAX_IDLE {
            slot.idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn key(&self, address: &str, tls: Option<&UpstreamTls>) -> Rc<str> {
        let mut slots = self.slots.borrow_mut();
        if let Some(slot) = slots.get(address) {
            return slot.key.clone();
        }
        let key: Rc<str> = Rc::from(address);
        slots.insert(
            key.clone(),
            Slot {
                key: key.clone(),
                tls: tls.cloned(),
                idle: Vec::new(),
            },
        );
        key
    }

    /// Sends `req` (origin-form URI, Host header set) to `address`, over TLS with `tls`'s
    /// settings when given, on an idle connection if there is one, else a new one, and waits
    /// for the response head within `timeouts.header_ms`; the body then reads with
    /// `timeouts.body_ms` as the longest silence.
    pub async fn send(
        self: &Rc<Self>,
        address: &str,
        tls: Option<&UpstreamTls>,
        timeouts: &UpstreamTimeouts,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Pooled>, SendError> {
        let header = Duration::from_millis(timeouts.header_ms);
        let body_timeout = Duration::from_millis(timeouts.body_ms);
        let late = || SendError {
            error: UpstreamError::HeaderTimeout {
                address: address.to_owned(),
                after: header,
            },
            request: None,
        };
        let (mut parts, body) = req.into_parts();
        let (head, framing) = {
            let mut heads = self.heads.borrow_mut();
            let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let framing = upstream_http1::encode_head(
                &mut heads,
                &parts.method,
                target,
                &mut parts.headers,
                &body,
            );
            (heads.split().freeze(), framing)
        };
        // Sent again on a new connection if a reused one was found closed: only without a
        // body (none was consumed) and when repeating cannot do harm.
        let repeatable = framing == Framing::None && parts.method.is_idempotent();
        let mut body = Some(body);
        if let Some((key, mut conn)) = self.check_out(address, tls) {
            conn.start(
                &parts.method,
                head.clone(),
                framing,
                take_if_sent(&mut body, framing),
            );
            let head =
                tokio::time::timeout(header, std::future::poll_fn(|cx| conn.poll_response(cx)));
            match head.await.map_err(|_| late())? {
                Ok(resp) => return Ok(self.pooled(resp, key, conn, body_timeout)),
                Err(Http1Error::ClosedBeforeResponse) if repeatable => {
                    tracing::debug!(
                        upstream = address,
                        "reused connection was closed; sending again"
                    );
                }
                Err(error) => {
                    return Err(SendError {
                        error: error.into(),
                        request: None,
                    })
                }
            }
        }
        let key = self.key(address, tls);
        // Boxed: connecting (a TLS handshake above all) needs a large state that would otherwise
        // be part of, and moved with, every request's future.
        let mut conn = match Box::pin(self.connect(address, tls)).await {
            Ok(c) => c,
            Err(error) => {
                let request = body.map(|b| Request::from_parts(parts, b));
                return Err(SendError { error, request });
            }
        };
        conn.start(
            &parts.method,
            head,
            framing,
            take_if_sent(&mut body, framing),
        );
        let head = tokio::time::timeout(header, std::future::poll_fn(|cx| conn.poll_response(cx)));
        match head.await.map_err(|_| late())? {
            Ok(resp) => Ok(self.pooled(resp, key, conn, body_timeout)),
            Err(error) => Err(SendError {
                error: error.into(),
                request: None,
            }),
        }
    }

    fn pooled(
        self: &Rc<Self>,
        resp: Response<()>,
        key: Rc<str>,
        conn: Conn,
        body_timeout: Duration,
    ) -> Response<Pooled> {
        let (parts, ()) = resp.into_parts();
        let mut body = Pooled {
            check_in: Some(CheckIn {
                pool: self.clone(),
                key,
                conn,
            }),
            body_timeout,
            silence: None,
        };
        // A response without a body (204, 304, HEAD, Content-Length: 0) may never be polled.
        if body.is_end_stream() {
            body.return_connection();
        }
        Response::from_parts(parts, body)
    }

    async fn connect(
        &self,
        address: &str,
        tls: Option<&UpstreamTls>,
    ) -> Result<Conn, UpstreamError> {
        let stream = connect(address, tls, &self.tls).await?;
        Ok(Box::new(Connection::new(stream, self.read_space.clone())))
    }
}

/// Connects to `address`, over TLS with `settings` (from `store`) when given, within
/// [`CONNECT_TIMEOUT`]. Requests and health checks both connect this way.
pub async fn connect(
    address: &str,
    settings: Option<&UpstreamTls>,
    store: &UpstreamTlsStore,
) -> Result<Stream, UpstreamError> {
    let connect = async {
        let tcp = TcpStream::connect(address)
            .await
            .map_err(|cause| UpstreamError::Connect {
                address: address.to_owned(),
                cause,
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(settings) = settings else {
            return Ok(Stream::Tcp(tcp));
        };
        let client = store
            .client(settings)
            .ok_or_else(|| UpstreamError::TlsNotLoaded {
                address: address.to_owned(),
                ca: settings.ca.clone(),
            })?;
        let stream = tokio_rustls::TlsConnector::from(client.config)
            .connect(client.server_name, tcp)
            .await
            .map_err(|cause| UpstreamError::Tls {
                address: address.to_owned(),
                server_name: settings.server_name.clone(),
                cause,
            })?;
        Ok(Stream::Tls(Box::new(stream)))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .unwrap_or_else(|_| {
            Err(UpstreamError::ConnectTimeout {
                address: address.to_owned(),
            })
        })
}

/// A request's body goes with it only when its head announced one.
fn take_if_sent(body: &mut Option<UpstreamBody>, framing: Framing) -> Option<UpstreamBody> {
    if framing == Framing::None {
        None
    } else {
        body.take()
    }
}

struct CheckIn {
    pool: Rc<Pool>,
    key: Rc<str>,
    conn: Conn,
}

/// An upstream response body, read from its connection, which goes back to the pool at the
/// body's end.
pub struct Pooled {
    check_in: Option<CheckIn>,
    /// The longest silence of the upstream while the body is read.
    body_timeout: Duration,
    /// Armed the first time the body has to wait (most bodies arrive with their head and
    /// never do, so most responses set no timer), reset whenever data comes.
    silence: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for Pooled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("returned", &self.check_in.is_none())
            .finish_non_exhaustive()
    }
}

impl Pooled {
    fn return_connection(&mut self) {
        if let Some(c) = self.check_in.take() {
            c.pool.check_in(c.key, c.conn);
        }
    }
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = Http1Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Http1Error>>> {
        let this = &mut *self;
        let Some(c) = &mut this.check_in else {
            return Poll::Ready(None);
        };
        let frame = match c.conn.poll_body(cx) {
            Poll::Ready(frame) => {
                if let Some(silence) = &mut this.silence {
                    silence.as_mut().reset(Instant::now() + this.body_timeout);
                }
                frame
            }
            Poll::Pending => {
                let timeout = this.body_timeout;
                let silence = this
                    .silence
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if silence.as_mut().poll(cx).is_ready() {
                    // The connection is mid-response: it goes, not back to the pool.
                    this.check_in = None;
                    return Poll::Ready(Some(Err(Http1Error::BodyTimeout(timeout))));
                }
                return Poll::Pending;
            }
        };
        match &frame {
            // The connection broke mid-body: it is not reusable.
            Some(Err(_)) => this.check_in = None,
            _ if c.conn.body_is_end() => this.return_connection(),
            _ => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.check_in.as_ref().is_none_or(|c| c.conn.body_is_end())
    }

    fn size_hint(&self) -> SizeHint {
        self.check_in
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |c| c.conn.body_size_hint())
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // Servers stop polling once is_end_stream says so, so the end may be seen only here.
        if self.is_end_stream() {
            self.return_connection();
        }
    }
}
