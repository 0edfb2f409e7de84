//! The listeners, the accept loop, reloading, and draining on SIGTERM.
//!
//! Start reading at [`run`]. Shutdown order: stop accepting, tell every connection to finish
//! (HTTP/1.1 closes after the response in flight, HTTP/2 sends GOAWAY), wait for them up to
//! `drain_seconds`, exit. `/healthz` on the metrics listener answers 503 from the first moment
//! of draining, so a readiness probe takes the pod out of its Service.

use crate::certificates::{self, CertStore, CertificateError};
use crate::config::Config;
use crate::drain::{Drain, DrainWatcher};
use crate::health;
use crate::load::{self, LoadError};
use crate::metrics::Metrics;
use crate::proxy::{Proxy, Routing};
use crate::server_tls::{ServerConfigs, TlsServerStream};
use crate::upstream_tls::{UpstreamTlsError, UpstreamTlsStore};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The config file is unusable.
    #[error(transparent)]
    Config(#[from] LoadError),
    /// A certificate could not be loaded.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
    /// rustls refused the TLS settings.
    #[error("TLS settings: {0}")]
    Tls(#[from] rustls::Error),
    /// A backend's TLS settings (its CA file) are unusable.
    #[error(transparent)]
    UpstreamTls(#[from] UpstreamTlsError),
    /// A listener could not be opened.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Waiting for signals failed.
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    /// A serving thread or its runtime could not be started.
    #[error("cannot start a serving thread: {0}")]
    Runtime(std::io::Error),
}

/// A TLS handshake that takes longer than this is dropped, so that idle sockets cannot hold
/// file descriptors forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an HTTP/1.1 client may take to send request headers (slowloris defence).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .ok()
        .and_then(|m| Some((m.modified().ok()?, m.len())))
}

/// Counts a connection in the active-connections gauge and in its serving thread's load
/// while it lives, however it ends.
struct ConnectionGuard {
    metrics: Arc<Metrics>,
    loads: Arc<[AtomicUsize]>,
    thread: usize,
}

impl ConnectionGuard {
    fn new(metrics: Arc<Metrics>, loads: Arc<[AtomicUsize]>, thread: usize) -> Self {
        metrics.active_connections.inc();
        loads[thread].fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            metrics,
            loads,
            thread,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.active_connections.dec();
        self.loads[self.thread].fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many more connections than the least loaded serving thread a thread may hold before
/// it hands what it accepts over to that thread. Threads race on accept, so the less busy
/// one tends to win anyway; this bounds what is left (a burst of keep-alive connections
/// opened together can otherwise land mostly on one thread, and its p99 shows it).
const HANDOVER_SLACK: usize = 4;

/// Runs the server of the config at `path` until SIGTERM or SIGINT, then drains and returns.
///
/// This (control) runtime runs signals, reloads, health checks and the metrics listener.
/// `listen.threads` serving threads each accept from the listening socket, with a
/// single-threaded runtime and its own upstream pool: a connection is then handled start to
/// finish on the thread that accepted it, with no cross-thread wake-ups (one shared
/// multi-threaded runtime gave about 0.7 of haproxy's keep-alive throughput in
/// bench/edge.sh, this about parity). Accepting in the serving threads rather than here
/// saves a thread wake-up and two epoll registrations per connection (the accepting thread
/// took 8 % of the CPU of new TLS connections: docs/benchmarks.md); a thread holding
/// `HANDOVER_SLACK` (4) more connections than the least loaded one hands what it accepts over,
/// which keeps the threads evenly loaded as round-robin did.
pub async fn run(path: PathBuf) -> Result<(), ServerError> {
    // First, before anything listens: the kernel completes connections to a bound socket at
    // once, so a client (or a test) can be served and send SIGTERM before the rest of the
    // start-up has run, and without a handler the signal would kill the process mid-request.
    // A signal that arrives early waits in the stream until the drain below takes it.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServerError::Signal)?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(ServerError::Signal)?;
    let config = load::load_file(&path)?;
    let metrics = Arc::new(Metrics::default());
    let draining = Arc::new(AtomicBool::new(false));

    let certs = Arc::new(CertStore::load(&config.tls.certificates)?);
    let tls = certificates::server_config(certs.clone(), config.tls.min_version)?;
    let tls = ServerConfigs::new(tls);

    let upstream_tls = Arc::new(UpstreamTlsStore::default());
    if let Some(edge) = &config.edge {
        upstream_tls.prepare(edge)?;
    }
    let routing = Routing::from_config(&config, None);
    if let Routing::Edge(table) = &routing {
        health::spawn_checks(table, &metrics, &upstream_tls);
    }
    // Pod mode: the cake behind this terminator, checked as edge mode checks endpoints, so
    // that /healthz (the readiness probe) says whether the whole cake answers. Read at start:
    // changing it needs a restart, like [listen].
    let cake = config.pod.as_ref().and_then(|pod| {
        let check = pod.health.clone()?;
        let ep = Arc::new(crate::router::Endpoint::new(
            "upstream",
            &pod.upstream,
            Some(check),
            None,
            pod.timeouts,
        ));
        health::spawn_one(&ep, &metrics, &upstream_tls);
        Some(ep)
    });
    let trusted = config
        .listen
        .trusted_proxies
        .iter()
        .filter_map(|t| crate::config::IpRange::parse(t))
        .collect();
    let proxy = Proxy::new(routing, trusted, metrics.clone(), upstream_tls);

    let listener = TcpListener::bind(&config.listen.address)
        .await
        .and_then(TcpListener::into_std)
        .map_err(|source| ServerError::Bind {
            address: config.listen.address.clone(),
            source,
        })?;
    if let Some(address) = &config.listen.metrics {
        let ml = TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::Bind {
                address: address.clone(),
                source,
            })?;
        tokio::spawn(serve_metrics(
            ml,
            metrics.clone(),
            draining.clone(),
            cake.clone(),
        ));
    }

    let threads = config.listen.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let drain = Duration::from_secs(config.listen.drain_seconds);
    let loads: Arc<[AtomicUsize]> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (queues, mut handed_over): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| tokio::sync::mpsc::unbounded_channel())
        .unzip();
    let queues = Arc::new(queues);
    let mut workers = Vec::with_capacity(threads);
    for i in 0..threads {
        let worker = Worker {
            index: i,
            listener: listener.try_clone().map_err(ServerError::Runtime)?,
            handed_over: handed_over.remove(0),
            queues: queues.clone(),
            loads: loads.clone(),
            stopped: stopped.clone(),
            tls: tls.clone(),
            proxy: proxy.clone(),
            metrics: metrics.clone(),
            drain,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let handle = std::thread::Builder::new()
            .name(format!("edge-serve-{i}"))
            // A LocalSet, for spawn_local: connection tasks hold an Rc<Proxy>.
            .spawn(move || tokio::task::LocalSet::new().block_on(&rt, worker.run()))
            .map_err(ServerError::Runtime)?;
        workers.push(handle);
    }

    tokio::spawn(reload_loop(
        path.clone(),
        config.clone(),
        certs,
        proxy,
        metrics.clone(),
    ));

    tracing::info!(
        address = %config.listen.address,
        mode = %config.mode().map_or(String::from("none"), |mode| mode.to_string()),
        threads,
        config = %path.display(),
        "listening"
    );
    // The serving threads hold their own handles on the listening socket.
    drop(listener);
    tokio::select! {
        _ = sigterm.recv() => {}
        _ = sigint.recv() => {}
    }

    // Stop accepting: each serving thread drops its handle on the socket, which closes with
    // the last, so new connections are refused from then on; then it drains its connections.
    draining.store(true, Ordering::SeqCst);
    tracing::info!(drain_seconds = config.listen.drain_seconds, "draining");
    let _ = stop.send(true);
    // Each worker bounds its own drain by `drain`; the margin covers thread teardown.
    let deadline = tokio::time::Instant::now() + drain + Duration::from_secs(1);
    while workers.iter().any(|w| !w.is_finished()) {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("drain time over, exiting with requests in flight");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::info!("drained");
    Ok(())
}

/// A connection one serving thread accepted and handed over to another.
type HandedOver = (std::net::TcpStream, std::net::SocketAddr);

/// One serving thread: the connections it accepts or is handed, and their drain.
struct Worker {
    /// This thread's place in `queues` and `loads`.
    index: usize,
    /// This thread's handle on the listening socket.
    listener: std::net::TcpListener,
    /// Connections other threads accepted and handed to this one.
    handed_over: tokio::sync::mpsc::UnboundedReceiver<HandedOver>,
    /// Every thread's queue of handed-over connections, this one's included.
    queues: Arc<Vec<tokio::sync::mpsc::UnboundedSender<HandedOver>>>,
    /// Every thread's open connections.
    loads: Arc<[AtomicUsize]>,
    /// Becomes true when the server drains.
    stopped: tokio::sync::watch::Receiver<bool>,
    tls: ServerConfigs,
    proxy: Proxy,
    metrics: Arc<Metrics>,
    drain: Duration,
}

impl Worker {
    async fn run(self) {
        let Worker {
            index,
            listener,
            mut handed_over,
            queues,
            loads,
            mut stopped,
            tls,
            proxy,
            metrics,
            drain,
        } = self;
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => Some(listener),
            Err(e) => {
                tracing::error!(thread = index, error = %e, "cannot accept on this thread");
                None
            }
        };
        let proxy = Rc::new(proxy.for_this_thread());
        let drain_signal = Drain::new();
        // Serves a connection on this thread, counted in its load while it lives.
        let serve = |tcp: tokio::net::TcpStream, peer: std::net::SocketAddr| {
            let guard = ConnectionGuard::new(metrics.clone(), loads.clone(), index);
            spawn_connection(
                tcp,
                peer,
                guard,
                tls.clone(),
                proxy.clone(),
                drain_signal.watcher(),
            );
        };
        // The same for a connection another thread accepted, once this thread's runtime
        // has registered it.
        let serve_handed_over = |(tcp, peer): HandedOver| match tokio::net::TcpStream::from_std(tcp)
        {
            Ok(tcp) => serve(tcp, peer),
            Err(e) => tracing::warn!(error = %e, "cannot register connection"),
        };
        loop {
            let accept = async {
                match &listener {
                    Some(listener) => listener.accept().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                accepted = accept => match accepted {
                    Ok((tcp, peer)) => {
                        if let Some((tcp, peer)) = keep_or_hand_over(tcp, peer, index, &loads, &queues) {
                            serve(tcp, peer);
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(handed) = handed_over.recv() => serve_handed_over(handed),
                _ = stopped.wait_for(|stop| *stop) => break,
            }
        }
        drop(listener);
        // Connections another thread handed over just before the stop are served like the
        // rest; a thread handing one over after this gets it back and serves it itself.
        close_handed_over(&mut handed_over)
            .into_iter()
            .for_each(serve_handed_over);
        tokio::select! {
            _ = drain_signal.run() => {}
            _ = tokio::time::sleep(drain) => {}
        }
    }
}

/// Serves one client connection on this thread: the TLS handshake, the wait for its first
/// bytes, then HTTP until the connection ends or the drain closes it.
fn spawn_connection(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    guard: ConnectionGuard,
    tls: ServerConfigs,
    proxy: Rc<crate::proxy::ThreadProxy>,
    drain: DrainWatcher,
) {
    tokio::task::spawn_local(async move {
        let _guard = guard;
        let accept = TlsServerStream::accept(tcp, &tls);
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        };
        // hyper takes its buffers (8 KiB to read, 8 KiB for response heads) as soon
        // as it starts on a connection, so it starts only once the client has sent
        // something: an idle connection holds the TLS state alone (5.4 KB in
        // bench/edge.sh, against 28.8 KB with hyper started at once: docs/benchmarks.md,
        // 2026-12-01 (third)). A TLS 1.3 client often sends
        // its request right behind its Finished message, in which case the stream
        // has it already and nothing is waited for.
        let mut tls = tls;
        // The same bound as a slow request head (hyper's header_read_timeout), and during a
        // drain, the grace a new connection has for its first request. Biased, so that a
        // request already here is served even when the grace is over (a client whose
        // handshake the drain overtook).
        let input = tokio::select! {
            biased;
            input = tokio::time::timeout(HEADER_READ_TIMEOUT, tls.wait_for_input()) => input,
            () = drain.first_request_grace_over() => return,
        };
        if !matches!(input, Ok(Ok(()))) {
            return;
        }
        // Boxed: the connection's task stays small while it waits above.
        Box::pin(serve_connection(tls, proxy, peer, drain)).await;
    });
}

/// Closes a serving thread's queue of handed-over connections and returns what is in it.
/// A thread that hands a connection over after this gets it back (the send fails) and serves
/// it itself, so no connection is lost between two threads that stop at about the same time.
fn close_handed_over(
    queue: &mut tokio::sync::mpsc::UnboundedReceiver<HandedOver>,
) -> Vec<HandedOver> {
    queue.close();
    let mut left = Vec::new();
    while let Ok(handed_over) = queue.try_recv() {
        left.push(handed_over);
    }
    left
}

/// The serving thread that thread `me` should hand a connection it accepted to: the least
/// loaded one, if `me` holds more than [`HANDOVER_SLACK`] connections more than it.
fn hand_over_to(me: usize, loads: &[AtomicUsize]) -> Option<usize> {
    let load = |i: usize| loads[i].load(Ordering::Relaxed);
    let least = (0..loads.len()).min_by_key(|&i| load(i))?;
    (load(me) > load(least) + HANDOVER_SLACK).then_some(least)
}

/// A connection thread `index` accepted: returned to be served here, or handed over to the
/// least loaded thread when this one is well ahead of it ([`hand_over_to`]). A handover that
/// fails (that thread has stopped: [`close_handed_over`]) serves it here rather than drop it.
fn keep_or_hand_over(
    tcp: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    index: usize,
    loads: &[AtomicUsize],
    queues: &[tokio::sync::mpsc::UnboundedSender<HandedOver>],
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    let _ = tcp.set_nodelay(true);
    let Some(other) = hand_over_to(index, loads) else {
        return Some((tcp, peer));
    };
    let tcp = match tcp.into_std() {
        Ok(tcp) => tcp,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hand a connection over");
            return None;
        }
    };
    match queues[other].send((tcp, peer)) {
        Ok(()) => None,
        Err(returned) => {
            let (tcp, peer) = returned.0;
            tokio::net::TcpStream::from_std(tcp)
                .ok()
                .map(|tcp| (tcp, peer))
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 (as ALPN chose) on a client connection until it ends or the
/// drain closes it.
///
/// On the drain, HTTP/2 sends GOAWAY (hyper's, which still takes the streams the client sent
/// before it saw it) and HTTP/1.1 closes after the response in flight, or at once when idle
/// between requests: a client retries a request that met the close of a reused connection.
/// A connection that has not had a request yet is the exception: its client could not know,
/// so it gets until [`FIRST_REQUEST_GRACE`](crate::drain::FIRST_REQUEST_GRACE) after the
/// drain began for its first request, which is answered with `Connection: close`.
async fn serve_connection(
    tls: TlsServerStream,
    proxy: Rc<crate::proxy::ThreadProxy>,
    peer: std::net::SocketAddr,
    drain: DrainWatcher,
) {
    let h2 = tls.alpn_protocol() == Some(b"h2");
    let client = Rc::new(proxy.shared().peer(peer));
    // Whether hyper has read a request head on this connection (and called the service).
    let had_request = Rc::new(std::cell::Cell::new(false));
    let request_seen = had_request.clone();
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        request_seen.set(true);
        let (proxy, client) = (proxy.clone(), client.clone());
        // Boxed when first polled: hyper and tokio move a stream's future several times
        // before that (into the stream task and its cell), and the handler's state is
        // kilobytes; memmove was the largest user-space item under h2 load.
        async move { Ok::<_, Infallible>(Box::pin(proxy.handle(req, &client)).await) }
    });
    let mut builder = auto::Builder::new(LocalExecutor);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // ALPN already said which protocol; skipping the preface sniffing saves a read.
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let conn = builder.serve_connection(TokioIo::new(tls), svc);
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        biased;
        result = conn.as_mut() => Some(result),
        _ = drain.began() => None,
    };
    let result = match ended {
        Some(result) => result,
        None => {
            if !h2 && !had_request.get() {
                // hyper reads the request when polled; it has read nothing until then.
                let first_request = std::future::poll_fn(|cx| match conn.as_mut().poll(cx) {
                    Poll::Ready(result) => Poll::Ready(Some(result)),
                    Poll::Pending if had_request.get() => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                });
                let waited = tokio::select! {
                    biased;
                    ended = first_request => ended,
                    () = drain.first_request_grace_over() => None,
                };
                if let Some(result) = waited {
                    log_end(peer, result);
                    return;
                }
            }
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    log_end(peer, result);
}

/// Logs how a client connection ended, when it ended with an error (at debug: clients
/// going away mid-request is routine).
fn log_end(
    peer: std::net::SocketAddr,
    result: Result<(), Box<dyn std::error::Error + Send + Sync>>,
) {
    if let Err(e) = result {
        tracing::debug!(client = %peer, error = %e, "connection ended with an error");
    }
}

/// Runs HTTP/2 stream tasks on the serving thread itself.
#[derive(Clone, Copy, Debug)]
struct LocalExecutor;

impl<F: std::future::Future + 'static> hyper::rt::Executor<F> for LocalExecutor {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// Polls the config file and the certificate files; applies what changed.
async fn reload_loop(
    path: PathBuf,
    mut config: Config,
    certs: Arc<CertStore>,
    proxy: Proxy,
    metrics: Arc<Metrics>,
) {
    // Polling rather than inotify: Kubernetes updates mounted Secrets and ConfigMaps by swapping
    // a symlink, which inotify watches on the file miss; a stat every few seconds is cheap.
    let mut stamp = file_stamp(&path);
    loop {
        tokio::time::sleep(Duration::from_millis(config.listen.reload_interval_ms)).await;
        let now = file_stamp(&path);
        if now != stamp {
            stamp = now;
            match load::load_file(&path) {
                Ok(new) => {
                    if new.listen != config.listen || new.tls.min_version != config.tls.min_version
                    {
                        tracing::warn!("[listen] and tls.min_version changes need a restart");
                    }
                    let prepared = new
                        .edge
                        .as_ref()
                        .map_or(Ok(()), |edge| proxy.upstream_tls().prepare(edge));
                    if let Err(e) = prepared {
                        tracing::error!(error = %e, "config not reloaded, keeping the old one");
                    } else {
                        let routing = Routing::from_config(&new, Some(&proxy.routing()));
                        if let Routing::Edge(table) = &routing {
                            health::spawn_checks(table, &metrics, proxy.upstream_tls());
                        }
                        proxy.set_routing(routing);
                        proxy.upstream_tls().retain(new.edge.as_ref());
                        let listen = config.listen.clone();
                        config = new;
                        config.listen = listen;
                        tracing::info!(config = %path.display(), "config reloaded");
                    }
                }
                Err(e) => tracing::error!(error = %e, "config not reloaded, keeping the old one"),
            }
        }
        let (reloaded, errors) = proxy.upstream_tls().reload_if_changed();
        if reloaded > 0 {
            tracing::info!(files = reloaded, "backend CA certificates reloaded");
        }
        for e in errors {
            tracing::error!(error = %e, "backend CA certificates not reloaded, keeping the old ones");
        }
        match certs.reload_if_changed(&config.tls.certificates) {
            Ok(true) => tracing::info!("certificates reloaded"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "certificates not reloaded, keeping the old ones")
            }
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    draining: Arc<AtomicBool>,
    cake: Option<Arc<crate::router::Endpoint>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        let draining = draining.clone();
        let cake = cake.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let resp = match req.uri().path() {
                    "/metrics" => {
                        let mut r = text(StatusCode::OK, metrics.encode());
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static(
                                "text/plain; version=0.0.4; charset=utf-8",
                            ),
                        );
                        r
                    }
                    "/healthz" if draining.load(Ordering::SeqCst) => {
                        text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
                    }
                    "/healthz" if cake.as_ref().is_some_and(|c| !c.is_healthy()) => text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "upstream {} fails its health check\n",
                            cake.as_ref().map_or("", |c| c.address.as_str())
                        ),
                    ),
                    "/healthz" => text(StatusCode::OK, "ok\n".into()),
                    _ => text(StatusCode::NOT_FOUND, "try /metrics or /healthz\n".into()),
                };
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(counts: &[usize]) -> Vec<AtomicUsize> {
        counts.iter().map(|&n| AtomicUsize::new(n)).collect()
    }

    #[test]
    fn a_stopping_thread_keeps_what_was_handed_over_and_refuses_the_rest() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let connection = || {
            let _client = std::net::TcpStream::connect(address).unwrap();
            listener.accept().unwrap()
        };
        let (queue, mut handed_over) = tokio::sync::mpsc::unbounded_channel();
        let (first, second) = (connection(), connection());
        let peers = [first.1, second.1];
        queue.send(first).unwrap();
        queue.send(second).unwrap();
        let left = close_handed_over(&mut handed_over);
        assert_eq!(
            left.iter().map(|(_, peer)| *peer).collect::<Vec<_>>(),
            peers
        );
        // A late handover comes back to its sender, which then serves it itself.
        let late = connection();
        let late_peer = late.1;
        let returned = queue.send(late).unwrap_err();
        assert_eq!(returned.0 .1, late_peer);
    }

    #[test]
    fn a_thread_keeps_what_it_accepts_until_it_is_well_ahead_of_the_least_loaded() {
        let even = loads(&[10, 10]);
        assert_eq!(hand_over_to(0, &even), None);
        let within = loads(&[10 + HANDOVER_SLACK, 10]);
        assert_eq!(hand_over_to(0, &within), None);
        let ahead = loads(&[11 + HANDOVER_SLACK, 10, 12]);
        assert_eq!(hand_over_to(0, &ahead), Some(1));
        // The least loaded thread never hands over, nor does a lone one.
        assert_eq!(hand_over_to(1, &ahead), None);
        assert_eq!(hand_over_to(0, &loads(&[100])), None);
    }
}
