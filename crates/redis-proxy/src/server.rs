//! The listeners, the read-dispatch-resolve-write loop of each client connection, draining,
//! and the HTTP endpoint for metrics and health.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::failover::probe_loop;
use crate::proxy::Proxy;
use crate::resp::{parse_request, write_error};
use crate::session::{Cmd, Flow, Pending, Session};

/// Commands dispatched before their answers are written: bounds the memory one pipelining
/// client holds in replies, while keeping a batch large enough to travel together.
const MAX_BATCH: usize = 256;

/// A client connection's read buffer, and the room it must have before a read.
const READ_BUFFER: usize = 16 * 1024;
const READ_ROOM: usize = 4 * 1024;

/// Serves clients from `listeners` (each with the index of the pool it serves) until
/// `shutdown` completes, then drains: stops accepting, lets every session answer the commands
/// it has already read, and returns when they are done or `timeouts.drain_ms` has passed.
pub async fn serve(
    proxy: Arc<Proxy>,
    listeners: Vec<(usize, TcpListener)>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let probes = tokio::spawn(probe_loop(Arc::clone(&proxy)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (conn_tx, mut conn_rx) = tokio::sync::mpsc::channel::<(usize, TcpStream)>(64);
    let mut accepters = JoinSet::new();
    for (pool, listener) in listeners {
        let conn_tx = conn_tx.clone();
        let mut stop = stop_rx.clone();
        accepters.spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            if conn_tx.send((pool, stream)).await.is_err() {
                                return;
                            }
                        }
                        Err(err) => {
                            // Out of file descriptors and the like: keep serving the clients
                            // we have; the listener recovers when they leave.
                            tracing::warn!(%err, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    },
                }
            }
            // Connections the kernel completed before the stop are served (what they sent is
            // answered) rather than reset when the listener closes.
            while let Poll::Ready(Ok((stream, _))) =
                std::future::poll_fn(|cx| Poll::Ready(listener.poll_accept(cx))).await
            {
                if conn_tx.send((pool, stream)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(conn_tx);
    let mut sessions = JoinSet::new();
    let mut stopping = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            Some((pool, stream)) = conn_rx.recv() => {
                proxy.metrics.total_connections.inc();
                sessions.spawn(session(Arc::clone(&proxy), pool, stream, stop_rx.clone()));
                while sessions.try_join_next().is_some() {}
            }
            () = &mut shutdown, if !stopping => {
                stopping = true;
                let _ = stop_tx.send(true);
            }
            // Stopping, and every accepter has handed over its last connection.
            else => break,
        }
    }
    while accepters.join_next().await.is_some() {}
    tracing::info!(sessions = sessions.len(), "draining");
    let deadline = Instant::now() + Duration::from_millis(proxy.config.timeouts.drain_ms);
    let _ = tokio::time::timeout_at(deadline.into(), async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    probes.abort();
    Ok(())
}

async fn session(
    proxy: Arc<Proxy>,
    pool: usize,
    mut stream: TcpStream,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    proxy.metrics.connections.inc();
    let limits = proxy.config.limits.clone();
    let mut session = Session::new(Arc::clone(&proxy), pool);
    let mut input = BytesMut::with_capacity(READ_BUFFER);
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut args = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut draining = *stop.borrow();
    // One registration for the whole session: a fresh `changed()` per batch would queue a
    // waiter on the watch's notifier (under its lock) every time.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        let mut close = false;
        let mut full = false;
        loop {
            if pending.len() >= MAX_BATCH {
                full = true;
                break;
            }
            match parse_request(&input, &limits, &mut args) {
                Ok(None) => break,
                Ok(Some(parsed)) => {
                    // The request's bytes go to its server as they are: a slice of the read
                    // buffer, not a copy.
                    let frame: Bytes = input.split_to(parsed.len).freeze();
                    if args.is_empty() {
                        continue;
                    }
                    let cmd = Cmd {
                        frame: &frame,
                        args: &args,
                        inline: parsed.inline,
                    };
                    if session.dispatch(&cmd, &mut pending, &mut out) == Flow::Close {
                        close = true;
                        break;
                    }
                }
                Err(err) => {
                    // The stream is out of step: answer what came before, say why, close.
                    proxy.metrics.protocol_errors.inc();
                    tracing::debug!(%err, "closing a client connection");
                    let mut reply = BytesMut::new();
                    write_error(&mut reply, &format!("ERR {err}"));
                    pending.push(Pending::Ready(reply.freeze()));
                    close = true;
                    break;
                }
            }
        }
        for p in pending.drain(..) {
            session.resolve(p, &mut out).await;
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                break;
            }
            out.clear();
        }
        if close {
            break;
        }
        if full {
            continue;
        }
        // Room for the next read. Once every request read so far has been handed on, this
        // reuses the buffer's space rather than allocating; a small minimum makes that happen
        // once per few hundred requests, not on every read.
        input.reserve(READ_ROOM);
        if draining {
            // Commands the client sent before the drain began are in flight too: answer
            // whatever is already in the socket, then close.
            match stream.try_read_buf(&mut input) {
                Ok(n) if n > 0 => continue,
                _ => break,
            }
        }
        tokio::select! {
            // Biased, so no random branch order is drawn per batch; the stop first, so a
            // client that never stops sending still sees the drain.
            biased;
            _ = &mut stopped, if !draining => draining = true,
            read = stream.read_buf(&mut input) => match read {
                // The client left, perhaps mid-command: what it sent in part is dropped.
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
    }
    proxy.metrics.connections.dec();
}

/// Serves, on `listener`, `GET /metrics` (Prometheus text format) and `GET /healthz` (200 and
/// each pool's servers up, for as long as the proxy runs).
///
/// Health does not turn 503 when Redis servers are down: the proxy is then still doing its
/// job (answering errors at once), and a failing readiness probe would take the whole cake
/// out of its Service, readers included, over a sessions outage.
pub async fn serve_admin(proxy: Arc<Proxy>, listener: TcpListener) -> io::Result<()> {
    use http_body_util::Full;
    use hyper::header::{HeaderValue, CONTENT_TYPE};
    use hyper::{Response, StatusCode};

    loop {
        let (stream, _) = listener.accept().await?;
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let proxy = Arc::clone(&proxy);
                async move {
                    let _: &hyper::body::Incoming = req.body();
                    let (status, body) = match req.uri().path() {
                        "/metrics" => (StatusCode::OK, proxy.metrics.encode()),
                        "/healthz" => (StatusCode::OK, health(&proxy)),
                        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
                    };
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

fn health(proxy: &Proxy) -> String {
    let mut text = String::from("ok\n");
    for pool in &proxy.pools {
        let up = pool
            .servers
            .iter()
            .filter(|&&id| !proxy.servers[id].is_down())
            .count();
        text.push_str(&format!(
            "pool {}: {up}/{} servers up\n",
            pool.name,
            pool.servers.len()
        ));
    }
    text
}
