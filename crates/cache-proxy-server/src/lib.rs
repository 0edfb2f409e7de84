//! What the cake's two cache proxies, the memcached router (`mcrouter`) and the Redis proxy
//! (`redis-proxy`), share around their protocols:
//!
//! - [`serve_clients`]: accepting clients on the listeners, one session task per connection,
//!   and on shutdown the drain: stop accepting (connections the kernel already completed are
//!   still served), tell every session, and wait for them up to a deadline;
//! - [`Drain`]: a session's next read of its client's input, which ends the session once the
//!   drain has begun and the client has nothing more already sent;
//! - [`serve_admin`]: the plain-text HTTP endpoint for Prometheus metrics and health;
//! - [`runtime`], [`init_logging`] and [`shutdown_signal`]: the process around them.
//!
//! What it must not do: parse or answer a protocol, know pools or servers, or decide what a
//! session does with what it reads; each proxy's `server` module owns that. Both proxies
//! drain the same way because this is the one place that does it.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Serves clients from `listeners`, each tagged with what its sessions need to know (the
/// Redis proxy's pool; `()` for one listener), until `shutdown` completes; then drains and
/// returns the drain's deadline, `drain` after the shutdown, for work the proxy finishes after
/// its sessions (the router's queued replications).
///
/// `session` is called once per accepted connection and its future runs as a task of its
/// own. The drain stops the accepting, hands on the connections the kernel completed before
/// the stop (a client that connected and sent a command gets its answer, not a reset), tells
/// every session through its [`Drain`], and waits for the sessions until the deadline.
pub async fn serve_clients<T, S, F>(
    listeners: Vec<(T, TcpListener)>,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    mut session: S,
) -> Instant
where
    T: Copy + Send + 'static,
    S: FnMut(T, TcpStream, Drain) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<(T, TcpStream)>(64);
    let mut accepters = JoinSet::new();
    for (tag, listener) in listeners {
        accepters.spawn(accept(tag, listener, conn_tx.clone(), stop_rx.clone()));
    }
    drop(conn_tx);
    let mut sessions = JoinSet::new();
    let mut stopping = false;
    tokio::pin!(shutdown);
    let mut deadline = None;
    loop {
        tokio::select! {
            Some((tag, stream)) = conn_rx.recv() => {
                sessions.spawn(session(tag, stream, Drain::new(stop_rx.clone())));
                while sessions.try_join_next().is_some() {}
            }
            () = &mut shutdown, if !stopping => {
                stopping = true;
                deadline = Some(Instant::now() + drain);
                let _ = stop_tx.send(true);
            }
            // Stopping, and every accepter has handed over its last connection.
            else => break,
        }
    }
    while accepters.join_next().await.is_some() {}
    tracing::info!(sessions = sessions.len(), "draining");
    let deadline = deadline.unwrap_or_else(|| Instant::now() + drain);
    let _ = tokio::time::timeout_at(deadline.into(), async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    deadline
}

/// Accepts on one listener until the stop, then hands on what the kernel had already accepted.
async fn accept<T>(
    tag: T,
    listener: TcpListener,
    connections: tokio::sync::mpsc::Sender<(T, TcpStream)>,
    mut stop: watch::Receiver<bool>,
) where
    T: Copy,
{
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if connections.send((tag, stream)).await.is_err() {
                        return;
                    }
                }
                Err(err) => {
                    // Out of file descriptors and the like: keep serving the clients we have;
                    // the listener recovers when they leave.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    // Connections the kernel completed before the stop are served (what they sent is
    // answered) rather than reset when the listener closes. Accepted by the socket itself:
    // tokio's accept only tries once the runtime has seen the listener readable, which it may
    // not have yet for the last connections in the backlog.
    let Ok(listener) = listener.into_std() else {
        return;
    };
    while let Ok((stream, _)) = listener.accept() {
        let Ok(stream) = stream
            .set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(stream))
        else {
            continue;
        };
        if connections.send((tag, stream)).await.is_err() {
            return;
        }
    }
}

/// One session's view of the drain: reads its client's input until the client leaves or,
/// once the proxy is draining, until the client has nothing more already sent.
pub struct Drain {
    /// Completes when the drain begins. Made once per session and kept: a fresh wait per
    /// read would queue a waiter on the watch's notifier (under its lock) for every request.
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
    draining: bool,
}

impl std::fmt::Debug for Drain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain")
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

impl Drain {
    fn new(mut stop: watch::Receiver<bool>) -> Drain {
        let draining = *stop.borrow_and_update();
        Drain {
            stopped: Box::pin(async move {
                // A dropped sender means the server is gone: a stop too.
                let _ = stop.changed().await;
            }),
            draining,
        }
    }

    /// Whether the drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Reads more of the client's input into `input`'s spare room (the caller reserves it).
    /// False when the session is over: the client closed or broke the connection (what it
    /// sent in part is dropped), or the drain has begun and nothing more is in the socket.
    ///
    /// Commands a client sent before the drain began are in flight too: what is already in
    /// the socket is read and answered before the session ends.
    pub async fn read(&mut self, stream: &mut TcpStream, input: &mut BytesMut) -> bool {
        if !self.draining {
            tokio::select! {
                // Biased, so no random branch order is drawn per read; the stop first, so a
                // client that never stops sending still sees the drain.
                biased;
                () = &mut self.stopped => self.draining = true,
                read = stream.read_buf(input) => return matches!(read, Ok(n) if n > 0),
            }
        }
        read_now(stream, input)
    }
}

/// Reads what is in the socket now, asking the socket itself: tokio's `try_read` trusts the
/// readiness the runtime last saw, which misses bytes that arrived since its last poll of
/// the kernel (and everything on a connection accepted during the drain), and closing a
/// socket with unread bytes resets the connection instead of answering them.
fn read_now(stream: &TcpStream, input: &mut BytesMut) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match rustix::net::recv(stream, &mut chunk[..], rustix::net::RecvFlags::DONTWAIT) {
        // The count read, and the message's whole length (the same on a TCP socket).
        Ok((n, _)) if n > 0 => {
            input.extend_from_slice(&chunk[..n]);
            true
        }
        _ => false,
    }
}

/// Serves plain-text HTTP/1.1 on `listener` forever: each request's path goes to `respond`,
/// whose text is the 200 response (with Prometheus's text content type, which is plain text
/// to anything else), and `None` is a 404.
pub async fn serve_admin<R>(listener: TcpListener, respond: R) -> io::Result<()>
where
    R: Fn(&str) -> Option<String> + Send + Sync + 'static,
{
    use http_body_util::Full;
    use hyper::header::{HeaderValue, CONTENT_TYPE};
    use hyper::{Response, StatusCode};

    let respond = Arc::new(respond);
    loop {
        let (stream, _) = listener.accept().await?;
        let respond = Arc::clone(&respond);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let _: &hyper::body::Incoming = req.body();
                let (status, body) = match respond(req.uri().path()) {
                    Some(text) => (StatusCode::OK, Bytes::from(text)),
                    None => (StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n")),
                };
                let mut response = Response::new(Full::new(body));
                *response.status_mut() = status;
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                std::future::ready(Ok::<_, Infallible>(response))
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

/// The runtime of a proxy with `threads` worker threads (`None`: one per core). One thread
/// runs on tokio's current-thread scheduler: no work stealing and no cross-thread wake-ups,
/// which a single proxy thread does not need (real mcrouter's default is one proxy thread).
pub fn runtime(threads: Option<usize>) -> io::Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Some(0 | 1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// Logs to stderr at info and above, without module paths, in colour only for a person at a
/// terminal (not in a container's log).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .init();
}

/// Completes on SIGTERM (Kubernetes stopping the pod) or Ctrl-C (a developer's terminal).
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()>> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    })
}
