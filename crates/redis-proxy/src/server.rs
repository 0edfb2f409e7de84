//! The read-dispatch-resolve-write loop of each client connection, and what the HTTP endpoint
//! answers for metrics and health. Accepting clients, draining them on SIGTERM and the
//! endpoint's HTTP are [`cache_proxy_server`]'s, shared with the memcached router.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cache_proxy_server::{serve_clients, Drain};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

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
    let drain = Duration::from_millis(proxy.config.timeouts.drain_ms);
    serve_clients(listeners, shutdown, drain, |pool, stream, drain| {
        proxy.metrics.total_connections.inc();
        session(Arc::clone(&proxy), pool, stream, drain)
    })
    .await;
    probes.abort();
    Ok(())
}

async fn session(proxy: Arc<Proxy>, pool: usize, mut stream: TcpStream, mut drain: Drain) {
    let _ = stream.set_nodelay(true);
    proxy.metrics.connections.inc();
    let limits = proxy.config.limits.clone();
    let mut session = Session::new(Arc::clone(&proxy), pool);
    let mut input = BytesMut::with_capacity(READ_BUFFER);
    let mut out = BytesMut::with_capacity(16 * 1024);
    let mut args = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
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
        if !drain.read(&mut stream, &mut input).await {
            break;
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
    cache_proxy_server::serve_admin(listener, move |path| match path {
        "/metrics" => Some(proxy.metrics.encode()),
        "/healthz" => Some(health(&proxy)),
        _ => None,
    })
    .await
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
