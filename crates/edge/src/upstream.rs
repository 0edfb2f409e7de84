//! Connections to upstreams: HTTP/1.1 over TCP or TLS, kept alive in a pool per serving thread.
//!
//! Each serving thread runs a single-threaded runtime, so its pool is plain `Rc<RefCell<..>>`
//! state, and a connection is driven by the task of the request using it (see [`Conn`]): no
//! locks, atomics or cross-thread wake-ups on the request path. (hyper-util's pooled client,
//! used before, hands every request to the connection task through a channel, checks
//! connections in and out under a mutex, and spawns a task per response to return the
//! connection; for HTTP/2 clients that was a large part of edge's CPU per request.)
//!
//! A connection is checked out (most recently used first, so that idle ones age and are closed
//! by the upstream or by [`Pool::sweep`]), used for one request, and checked back in when the
//! response body has been read to its end. A response whose body is dropped before its end
//! takes its connection with it: HTTP/1.1 cannot abandon a response and stay usable.

use crate::config::UpstreamTls;
use crate::upstream_tls::UpstreamTlsStore;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;

/// The body of a request sent upstream: the client's, streamed.
pub type UpstreamBody = Incoming;

/// Connecting (TCP and, for TLS backends, the handshake) must finish within this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// An idle connection unused this long is closed: upstreams close theirs after a while
/// anyway (httpd's KeepAliveTimeout), and a burst must not pin its sockets forever.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept per upstream address; more are closed when returned.
const MAX_IDLE: usize = 256;

/// Why a request could not be sent or answered.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The TCP connection could not be made.
    #[error("connect to {address}: {source}")]
    Connect {
        /// `HOST:PORT`.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Connecting (with the TLS handshake) took longer than [`CONNECT_TIMEOUT`].
    #[error("connect to {address}: no connection within {} s", CONNECT_TIMEOUT.as_secs())]
    ConnectTimeout {
        /// `HOST:PORT`.
        address: String,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name, protocol).
    #[error("TLS to {address} as {server_name}: {source}")]
    Tls {
        /// `HOST:PORT`.
        address: String,
        /// The name verified.
        server_name: String,
        /// The cause, as rustls reports it.
        source: std::io::Error,
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
    /// The HTTP exchange failed.
    #[error("{0}")]
    Http(#[from] hyper::Error),
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
        !matches!(self, UpstreamError::Http(_))
    }
}

/// hyper's state machine of one connection: reads and writes happen when it is polled.
type Driver = Pin<Box<dyn Future<Output = hyper::Result<()>>>>;

/// One upstream connection. It has no task of its own: whoever uses it polls its driver (the
/// request while waiting for the response head, then the response body), so a request's
/// upstream I/O wakes only the task serving it.
struct Conn {
    sender: SendRequest<UpstreamBody>,
    driver: Driver,
    ended: bool,
}

impl Conn {
    fn new<F: Future<Output = hyper::Result<()>> + 'static>(
        sender: SendRequest<UpstreamBody>,
        driver: F,
    ) -> Conn {
        Conn {
            sender,
            driver: Box::pin(driver),
            ended: false,
        }
    }

    /// Lets hyper read and write what it can; returns whether the connection is still open.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.ended {
            if let Poll::Ready(result) = self.driver.as_mut().poll(cx) {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
                self.ended = true;
            }
        }
        !self.ended
    }

    /// Waits until a request can be sent; false when the connection closed.
    async fn ready(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            if !self.drive(cx) {
                return Poll::Ready(false);
            }
            self.sender.poll_ready(cx).map(|r| r.is_ok())
        })
        .await
    }

    /// Drives the connection until `exchange` (a sent request's response) resolves.
    async fn exchange<T>(&mut self, exchange: impl Future<Output = T>) -> T {
        let mut exchange = std::pin::pin!(exchange);
        std::future::poll_fn(|cx| {
            self.drive(cx);
            exchange.as_mut().poll(cx)
        })
        .await
    }
}

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
    http1: hyper::client::conn::http1::Builder,
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
            http1: hyper::client::conn::http1::Builder::new(),
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
                // Not polled while idle: a close by the upstream shows only when polled.
                let open = i.conn.drive(&mut Context::from_waker(Waker::noop()));
                open && now.duration_since(i.since) < IDLE_TIMEOUT
            });
        }
        slots.retain(|_, s| !s.idle.is_empty());
    }

    /// Idle connections in the pool (for tests and metrics).
    pub fn idle_count(&self) -> usize {
        self.slots.borrow().values().map(|s| s.idle.len()).sum()
    }

    fn check_out(&self, address: &str, tls: Option<&UpstreamTls>) -> Option<(Rc<str>, Idle)> {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get_mut(address)?;
        if slot.tls.as_ref() != tls {
            // The backend's TLS settings changed: its old connections are not what it asks for.
            slot.idle.clear();
            slot.tls = tls.cloned();
            return None;
        }
        slot.idle.pop().map(|i| (slot.key.clone(), i))
    }

    fn check_in(&self, key: Rc<str>, mut conn: Conn) {
        // Once more, so that hyper sees the exchange complete and the connection idle. No task
        // waits on an idle connection, hence the no-op waker. One that is still busy (the
        // upstream answered before reading the whole request body) is closed rather than
        // pooled: the next request would wait on the previous client's upload.
        if !conn.drive(&mut Context::from_waker(Waker::noop())) || !conn.sender.is_ready() {
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
    /// settings when given, on an idle connection if there is one, else a new one.
    pub async fn send(
        self: &Rc<Self>,
        address: &str,
        tls: Option<&UpstreamTls>,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Pooled>, SendError> {
        while let Some((key, Idle { mut conn, .. })) = self.check_out(address, tls) {
            // Usually ready at once; false means the upstream closed it while idle.
            if !conn.ready().await {
                continue;
            }
            let exchange = conn.sender.try_send_request(req);
            match conn.exchange(exchange).await {
                Ok(resp) => return Ok(self.pooled(resp, key, conn)),
                Err(mut e) => match e.take_message() {
                    // Closed just before the request was written: nothing was sent, so it is
                    // safe to try again on another connection.
                    Some(back) => req = back,
                    None => {
                        return Err(SendError {
                            error: UpstreamError::Http(e.into_error()),
                            request: None,
                        })
                    }
                },
            }
        }
        let key = self.key(address, tls);
        // Boxed: connecting (a TLS handshake above all) needs a large state that would otherwise
        // be part of, and moved with, every request's future.
        let mut conn = match Box::pin(self.connect(address, tls)).await {
            Ok(c) => c,
            Err(error) => {
                return Err(SendError {
                    error,
                    request: Some(req),
                })
            }
        };
        let exchange = conn.sender.send_request(req);
        match conn.exchange(exchange).await {
            Ok(resp) => Ok(self.pooled(resp, key, conn)),
            Err(e) => Err(SendError {
                error: UpstreamError::Http(e),
                request: None,
            }),
        }
    }

    fn pooled(
        self: &Rc<Self>,
        resp: Response<Incoming>,
        key: Rc<str>,
        conn: Conn,
    ) -> Response<Pooled> {
        let (parts, body) = resp.into_parts();
        let mut body = Pooled {
            inner: body,
            check_in: Some(CheckIn {
                pool: self.clone(),
                key,
                conn,
            }),
        };
        // A response without a body (204, 304, HEAD, Content-Length: 0) may never be polled.
        if body.inner.is_end_stream() {
            body.return_connection();
        }
        Response::from_parts(parts, body)
    }

    async fn connect(
        &self,
        address: &str,
        tls: Option<&UpstreamTls>,
    ) -> Result<Conn, UpstreamError> {
        let connect = async {
            let tcp = tokio::net::TcpStream::connect(address)
                .await
                .map_err(|source| UpstreamError::Connect {
                    address: address.to_owned(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            match tls {
                None => {
                    let (sender, conn) = self.http1.handshake(TokioIo::new(tcp)).await?;
                    Ok(Conn::new(sender, conn))
                }
                Some(settings) => {
                    let client =
                        self.tls
                            .client(settings)
                            .ok_or_else(|| UpstreamError::TlsNotLoaded {
                                address: address.to_owned(),
                                ca: settings.ca.clone(),
                            })?;
                    let stream = tokio_rustls::TlsConnector::from(client.config)
                        .connect(client.server_name, tcp)
                        .await
                        .map_err(|source| UpstreamError::Tls {
                            address: address.to_owned(),
                            server_name: settings.server_name.clone(),
                            source,
                        })?;
                    let (sender, conn) = self.http1.handshake(TokioIo::new(stream)).await?;
                    Ok(Conn::new(sender, conn))
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .unwrap_or_else(|_| {
                Err(UpstreamError::ConnectTimeout {
                    address: address.to_owned(),
                })
            })
    }
}

struct CheckIn {
    pool: Rc<Pool>,
    key: Rc<str>,
    conn: Conn,
}

/// An upstream response body that returns its connection to the pool at its end.
pub struct Pooled {
    inner: Incoming,
    check_in: Option<CheckIn>,
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
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // The body first, so that it asks hyper for data; then the connection, which reads
        // it; then the body again to take it.
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                if let Some(c) = &mut this.check_in {
                    c.conn.drive(cx);
                }
                std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx))
            }
        };
        match &frame {
            None => this.return_connection(),
            Some(Ok(_)) if this.inner.is_end_stream() => this.return_connection(),
            // The connection broke mid-body: it is not reusable.
            Some(Err(_)) => this.check_in = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        // Servers stop polling once is_end_stream says so, so the end may be seen only here.
        if self.inner.is_end_stream() {
            self.return_connection();
        }
    }
}
