//! Connections to upstreams: HTTP/1.1 over TCP or TLS, kept alive in a pool per serving thread.
//!
//! Each serving thread runs a single-threaded runtime, so its pool is plain `Rc<RefCell<..>>`
//! state and each connection's task runs on the same thread as the requests using it: no
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
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll};
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

struct Idle {
    sender: SendRequest<UpstreamBody>,
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
    /// An empty pool taking TLS client settings from `tls`. Must be used inside a
    /// `tokio::task::LocalSet`: connection tasks are spawned on the current thread.
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
            slot.idle
                .retain(|i| !i.sender.is_closed() && now.duration_since(i.since) < IDLE_TIMEOUT);
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

    fn check_in(&self, key: Rc<str>, sender: SendRequest<UpstreamBody>) {
        let mut slots = self.slots.borrow_mut();
        let Some(slot) = slots.get_mut(&*key) else {
            return;
        };
        if slot.idle.len() < MAX_IDLE && !sender.is_closed() {
            slot.idle.push(Idle {
                sender,
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
        while let Some((key, mut idle)) = self.check_out(address, tls) {
            // Usually ready at once; an error means the upstream closed it while idle.
            if idle.sender.ready().await.is_err() {
                continue;
            }
            match idle.sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.pooled(resp, key, idle.sender)),
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
        let mut sender = match self.connect(address, tls).await {
            Ok(s) => s,
            Err(error) => {
                return Err(SendError {
                    error,
                    request: Some(req),
                })
            }
        };
        match sender.send_request(req).await {
            Ok(resp) => Ok(self.pooled(resp, key, sender)),
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
        sender: SendRequest<UpstreamBody>,
    ) -> Response<Pooled> {
        let (parts, body) = resp.into_parts();
        let mut body = Pooled {
            inner: body,
            check_in: Some(CheckIn {
                pool: self.clone(),
                key,
                sender,
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
    ) -> Result<SendRequest<UpstreamBody>, UpstreamError> {
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
                    tokio::task::spawn_local(drive(conn));
                    Ok(sender)
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
                    tokio::task::spawn_local(drive(conn));
                    Ok(sender)
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

async fn drive<F: std::future::Future<Output = hyper::Result<()>>>(conn: F) {
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "upstream connection ended with an error");
    }
}

struct CheckIn {
    pool: Rc<Pool>,
    key: Rc<str>,
    sender: SendRequest<UpstreamBody>,
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
            c.pool.check_in(c.key, c.sender);
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
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
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
