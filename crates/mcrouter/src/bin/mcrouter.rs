//! `mcrouter`: the memcached router of the cake. Argument parsing, logging and signals only;
//! the work is in the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::net::TcpListener;

const AFTER_HELP: &str = r#"CONFIG FILE (JSON; unknown fields are errors), in one of two formats.

1. mcrouter's own: pools and a route tree.

  {
    "pools": {"eqiad": {"servers": ["10.0.0.1:11211:ascii:plain"]},
              "codfw": {"servers": ["10.1.0.1:11211"]},
              "gutter": {"servers": ["10.0.0.9:11211"]}},
    "routes": [
      {"aliases": ["/eqiad/mw/"],
       "route": {"type": "FailoverWithExptimeRoute", "normal": "PoolRoute|eqiad",
                 "failover": "PoolRoute|gutter", "failover_exptime": 10,
                 "failover_errors": ["tko"]}},
      {"aliases": ["/codfw/mw-wan/"],
       "route": {"type": "OperationSelectorRoute", "default_policy": "PoolRoute|eqiad",
                 "operation_policies": {"set": {"type": "AllAsyncRoute",
                                                "children": ["PoolRoute|codfw"]}}}}],
    "default_route": "/eqiad/mw/",
    "tko": {"timeouts_until_tko": 3, "probe_delay_initial_ms": 3000,
            "probe_delay_max_ms": 60000},
    "timeouts": {"connect_ms": 250, "request_ms": 500, "drain_ms": 5000},
    "unavailable": "close"
  }

  Route handles: PoolRoute, HashRoute, AllSyncRoute, AllAsyncRoute, AllInitialRoute,
  FailoverRoute, FailoverWithExptimeRoute, OperationSelectorRoute, PrefixSelectorRoute,
  WarmUpRoute, NullRoute, ErrorRoute ("PoolRoute|NAME", "NullRoute" and
  "ErrorRoute|TEXT" also as strings). "route": HANDLE may stand for "routes".
  A key "/<region>/<cluster>/rest" takes the route with that alias, as "rest"; "*" in the
  prefix ("/*/mw-wan/") broadcasts to every matching route: the default route's region
  answers, the others complete in the background. Other keys go whole to default_route.
  TKO: refused/closed connections mark a server down at once, timeouts after
  timeouts_until_tko in a row; probes after probe_delay_initial_ms, doubling.
  unavailable: "close" (default) hangs up on a command no server can take (gets are
  misses), which MediaWiki's clients take as an error; "server_error" answers
  SERVER_ERROR instead.

2. The shorthand (recognised by "local_pool"), which compiles to such a tree:

  {
    "pools": {"eqiad":  {"servers": ["127.0.0.1:11211", "127.0.0.1:11212"]},
              "codfw":  {"servers": ["127.0.0.1:11311"]},
              "gutter": {"servers": ["127.0.0.1:11411"]}},
    "local_pool": "eqiad",
    "routes": [{"prefix": "/eqiad/mw/", "pool": "eqiad"},
               {"prefix": "/codfw/mw/", "pool": "codfw"}],
    "replicate_to": ["codfw"],
    "failover": {"gutter_pool": "gutter", "gutter_ttl_seconds": 10,
                 "failures_until_down": 3, "probe_interval_ms": 1000},
    "timeouts": {"connect_ms": 250, "request_ms": 500, "drain_ms": 5000},
    "limits": {"max_key_bytes": 250, "max_value_bytes": 1048576}
  }

  pools         required. name -> {"servers": ["host:port", ...]}.
  local_pool    required. The default route: keys without a known routing prefix.
  routes        A key starting with "/<dc>/<cluster>/" goes to that pool, prefix STRIPPED
                before it is sent (as real mcrouter does). Unknown prefixes go, unstripped,
                to local_pool.
  replicate_to  Pools that also get, asynchronously, every delete/touch/md of a local key.
  failover      After failures_until_down consecutive timeouts (or one refused or broken
                connection) a server is down: its keys go to gutter_pool, sets with TTL
                capped at gutter_ttl_seconds (0 = never also becomes the cap), until a
                probe ("version" every probe_interval_ms) answers. A failed request is
                retried once on the gutter. A refused or closed connection marks the
                server down at once. "unavailable" as above.
                Defaults: no gutter, 10 s, 3, 1000 ms, "close".
  timeouts      Milliseconds. Defaults: connect 250, request 500, drain 5000.
  limits        Defaults: key 250 bytes (memcached's maximum), value 1 MiB.

CONSISTENT HASHING (so other clients can agree):
  ketama, as libketama and twemproxy (distribution: ketama, hash: md5) build it.
  Each server, named by its "host:port" string exactly as configured, gets 160 points:
  for i in 0..40, MD5("<host:port>-<i>") gives 4 points, bytes 0-3, 4-7, 8-11, 12-15,
  each a little-endian u32. A key (prefix stripped) hashes to the little-endian u32 of
  the first 4 bytes of MD5(key) and belongs to the server of the first point >= that
  hash, wrapping to the lowest point.

SIGNALS: SIGTERM or SIGINT drains: stop accepting (connections already made are still
  served), answer every command clients sent before it, exit (at most timeouts.drain_ms
  later).

EXIT CODES: 0 after a drain; 1 on a bad config, an unusable address, or a fatal error."#;

/// A memcached router: consistent hashing, prefix routing, replication of invalidations,
/// failover to a gutter pool, stats and Prometheus metrics.
#[derive(Debug, Parser)]
#[command(name = "mcrouter", version, after_help = AFTER_HELP)]
struct Args {
    /// The JSON config file (format below).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Where clients connect.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:11213")]
    listen: String,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Check the config file and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    cache_proxy_server::init_logging();
    let config = mcrouter::config::load(&args.config)?;
    if args.check {
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    cache_proxy_server::runtime(args.threads)
        .context("cannot start the runtime")?
        .block_on(run(args, config))
}

async fn run(args: Args, config: mcrouter::config::RoutesConfig) -> Result<()> {
    let router = Arc::new(mcrouter::Router::from_routes(config)?);
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    if let Some(addr) = &args.metrics {
        let metrics = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        let router = Arc::clone(&router);
        tokio::spawn(async move {
            if let Err(err) = mcrouter::serve_metrics(router, metrics).await {
                tracing::error!(%err, "metrics endpoint stopped");
            }
        });
    }
    tracing::info!(listen = %args.listen, "serving");
    let shutdown = cache_proxy_server::shutdown_signal().context("cannot handle SIGTERM")?;
    mcrouter::serve(router, listener, shutdown).await?;
    tracing::info!("drained");
    Ok(())
}
