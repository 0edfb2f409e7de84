//! `redis-proxy`: the Redis proxy of the cake. Argument parsing, logging and signals only; the
//! work is in the library.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::net::TcpListener;

const AFTER_HELP: &str = r#"CONFIG FILE (JSON; unknown fields are errors):

  {
    "pools": {
      "sessions": {"listen": "127.0.0.1:6379",
                   "servers": ["10.64.0.1:6379", "10.64.0.2:6379"],
                   "hash_tag": "{}",
                   "eject_down_servers": false,
                   "server_password": {"file": "/etc/wikikube/secrets/redis-password"}},
      "locks":    {"listen": "127.0.0.1:6380", "servers": ["10.64.0.3:6379"]}
    },
    "client_password": {"env": "REDIS_PROXY_PASSWORD"},
    "failover": {"failures_until_down": 3, "probe_interval_ms": 1000},
    "timeouts": {"connect_ms": 250, "request_ms": 500, "drain_ms": 5000},
    "limits": {"max_request_bytes": 8388608, "max_args": 65536, "max_inline_bytes": 65536}
  }

  pools            required. name -> pool. Each pool has its own listening address.
    listen         required. host:port its clients connect to.
    servers        required. ["host:port", ...]; the string names the server on the ring.
    hash_tag       Two characters: a key with a non-empty part between them is placed by
                   that part alone ({user:1}:a and {user:1}:b share a server).
    eject_down_servers
                   false (default): a down server's keys get an error until it is back.
                   true: they go to the next server on the ring (twemproxy's
                   auto_eject_hosts), for a pure cache.
    server_password  {"file": PATH} or {"env": NAME}: sent in AUTH to the servers.
  client_password  {"file": PATH} or {"env": NAME}: clients must AUTH with it.
                   Passwords are never written in this file, and never printed.
  failover         A server is down after failures_until_down consecutive failures
                   (timeout, refused or broken connection), probed (PING) every
                   probe_interval_ms. Defaults: 3, 1000 ms.
  timeouts         Milliseconds. Defaults: connect 250, request 500, drain 5000.
  limits           Defaults: request 8 MiB, 65536 arguments, inline command 64 KiB.

CONSISTENT HASHING (so other clients can agree):
  ketama, as libketama and twemproxy (distribution: ketama, hash: md5) build it, over the
  hash tag's inside when there is one. See the mcrouter crate's ring for the exact points.

ENDPOINTS: with --admin ADDR:PORT, GET /metrics (Prometheus) and GET /healthz (200 while
  the proxy runs, with each pool's servers up).

SIGNALS: SIGTERM or SIGINT drains: stop accepting (connections already made are still
  served), answer every command clients sent before it, exit (at most timeouts.drain_ms
  later).

EXIT CODES: 0 after a drain; 1 on a bad config, an unreadable password, an unusable
  address, or a fatal error."#;

/// A Redis proxy: consistent hashing over a pool of Redis servers, multi-key commands cut
/// by server, failover, and Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "redis-proxy", version, after_help = AFTER_HELP)]
struct Args {
    /// The JSON config file (format below).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Serve /metrics and /healthz over HTTP at ADDR:PORT.
    #[arg(long, value_name = "ADDR:PORT")]
    admin: Option<String>,
    /// Worker threads. One (the default) runs on a single-threaded scheduler: one pod's
    /// php-fpm workers cannot keep even one busy, and it saves cross-thread wakeups.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Check the config file and that its passwords can be read, then exit.
    #[arg(long)]
    check: bool,
}

fn main() {
    // The error and its causes on one line, without the backtrace anyhow would add when
    // RUST_BACKTRACE is set: these are an operator's mistakes (a file, a password, a port),
    // not the program's.
    if let Err(err) = start() {
        eprintln!("redis-proxy: {err:#}");
        std::process::exit(1);
    }
}

fn start() -> Result<()> {
    let args = Args::parse();
    cache_proxy_server::init_logging();
    let config = redis_proxy::config::load(&args.config)?;
    let secrets = redis_proxy::Secrets::read(&config)?;
    if args.check {
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    cache_proxy_server::runtime(Some(args.threads))
        .context("cannot start the runtime")?
        .block_on(run(args, config, secrets))
}

async fn run(args: Args, config: redis_proxy::Config, secrets: redis_proxy::Secrets) -> Result<()> {
    let mut listeners = Vec::new();
    for (index, (name, pool)) in config.pools.iter().enumerate() {
        let listener = TcpListener::bind(&pool.listen)
            .await
            .with_context(|| format!("pool {name}: cannot listen on {}", pool.listen))?;
        listeners.push((index, listener));
    }
    let proxy = redis_proxy::Proxy::new(config, secrets)?;
    if let Some(addr) = &args.admin {
        let admin = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        let proxy = std::sync::Arc::clone(&proxy);
        tokio::spawn(async move {
            if let Err(err) = redis_proxy::serve_admin(proxy, admin).await {
                tracing::error!(%err, "admin endpoint stopped");
            }
        });
    }
    for pool in &proxy.config.pools {
        tracing::info!(pool = %pool.0, listen = %pool.1.listen, servers = pool.1.servers.len(), "serving");
    }
    let shutdown = cache_proxy_server::shutdown_signal().context("cannot handle SIGTERM")?;
    redis_proxy::serve(proxy, listeners, shutdown).await?;
    tracing::info!("drained");
    Ok(())
}
