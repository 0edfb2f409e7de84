//! The `edge` binary: parses arguments, sets up logging, runs [`edge::server::run`].
//!
//! Exit codes: 0 after a clean drain, 1 when the config, a certificate or a listener is
//! unusable (the message names the file, line, column and key).

use anyhow::Context;
use clap::Parser;
use std::path::PathBuf;

// mimalloc instead of glibc malloc: a proxy allocates and frees small buffers for every
// request on every thread, and glibc's malloc/free took about 10 % of the CPU under h2 load in
// bench/edge.sh (perf); with mimalloc's thread-local free lists, allocation showed at 3.5 %.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONFIG_HELP: &str = r#"CONFIG FILE (TOML). Exactly one of [pod] and [edge]. Unknown keys are errors.

[listen]
address = "0.0.0.0:8443"        # TLS listener (required)
metrics = "127.0.0.1:9361"      # optional plain-HTTP /metrics and /healthz (503 while draining)
drain_seconds = 7               # after SIGTERM, time for in-flight requests (default 7)
reload_interval_ms = 2000       # how often the config and certificate files are checked
threads = 2                     # serving threads (default: the CPUs this process may use)
trusted_proxies = ["10.64.0.0/12"]  # peers whose X-Client-IP is kept (default: none)

[tls]
min_version = "1.2"             # "1.2" (default) or "1.3"
[[tls.certificates]]            # one or more; the first is the default when SNI matches none
names = ["*.wiki.example", "wiki.example"]
cert = "/etc/edge/wiki.pem"     # PEM chain, leaf first; reloaded when the file changes
key = "/etc/edge/wiki.key"      # PEM private key

# Pod mode: everything to httpd on loopback.
[pod]
upstream = "127.0.0.1:8080"
timeouts = { header_ms = 202000, body_ms = 60000 }  # response head within header_ms, else
                                # 504; body silent for body_ms: cut off (these are defaults)
health = { path = "/fpm-ping", host = "localhost", interval_ms = 1000, timeout_ms = 500 }
                                # optional: /healthz answers 503 while this check of the
                                # cake fails (fall/rise as below); read at start only
unlogged_paths = ["/fpm-ping"]  # optional: answered, counted, not in the access log

# Edge mode (instead of [pod]): backends, debug backends, routes tried in order.
[edge.backends.mw-web]
addresses = ["10.0.0.1:8080", "10.0.0.2:8080"]   # round-robin over healthy ones
health = { path = "/healthz", interval_ms = 2000, timeout_ms = 1000, fall = 2, rise = 2 }
timeouts = { header_ms = 202000, body_ms = 60000 }  # as in [pod]
panic_threshold_percent = 50    # below this share of healthy endpoints, all take requests
                                # (default 50, as envoy's; 0: off, nothing healthy = 503)
[edge.backends.mw-web-next]
addresses = ["10.0.1.1:8080"]
[edge.backends.mwdebug1001]
addresses = ["10.0.2.1:8443"]
tls = { ca = "/etc/edge/cake.pem", server_name = "wiki.example" }  # TLS 1.2+ to this backend:
                                # certificate checked against these PEM certificates (a
                                # self-signed one trusts itself) and server_name (also the SNI)
[edge.debug]
backends = ["mwdebug1001"]      # X-Wikimedia-Debug: backend=mwdebug1001; other attributes...
[[edge.routes]]
hosts = ["*.wiki.example"]      # exact, *.domain, or *
path_prefix = "/w/api.php"      # optional
backend = "mw-api"
[[edge.routes]]
hosts = ["*.wiki.example"]
backend = "mw-web"
split = { backend = "mw-web-next", default_percent = 0.5, host_percent = { "test.wiki.example" = 100.0 } }

Debug requests: an unknown or missing backend gets 400 listing the debug backends; responses get
"Cache-Control: private, no-cache, no-store, must-revalidate".
Splits: a cookie (default name edge_bucket) holds the client's bucket 0..9999; buckets below
percent*100 go to split.backend. A side with no healthy endpoint hands its traffic to the other.
Forwarded requests get X-Client-IP (the peer, or a trusted proxy's value), X-Forwarded-For
(peer appended) and X-Forwarded-Proto: https; hop-by-hop headers are dropped, the rest passes.
The config file is reloaded when it changes ([listen] and tls.min_version need a restart).

Logs: JSON lines on stdout; requests under target "access". RUST_LOG filters (default info);
rustls's own lines (clients' protocol mistakes) only at error unless RUST_LOG names rustls.
Exit codes: 0 after a clean drain; 1 if the config, a certificate or a listener is unusable."#;

/// wikikube's TLS terminator (pod mode) and router in front of the releases (edge mode).
#[derive(Parser, Debug)]
#[command(name = "edge", version, after_long_help = CONFIG_HELP)]
struct Args {
    /// The TOML config file (see --help for its format).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

/// RUST_LOG's directives (`info` when unset or unreadable), with rustls's own lines at
/// `error` unless RUST_LOG names rustls. rustls logs what a client gets wrong at `warn`, one
/// line per connection: wrk and some monitoring clients send an IP address as the server
/// name, and each of their connections logged "Illegal SNI extension". Nothing an operator
/// can act on, a flood under load, and 2.6 % of the edge's CPU per new connection in
/// bench/edge.sh. A handshake that fails is still logged, by the edge, at debug.
fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::EnvFilter {
    let filter = rust_log
        .and_then(|directives| tracing_subscriber::EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    if rust_log.is_some_and(|directives| directives.contains("rustls")) {
        return filter;
    }
    filter.add_directive("rustls=error".parse().expect("a valid directive"))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .with_current_span(false)
        .init();
    // The control runtime (accept, signals, reloads, health checks, metrics) is light work;
    // requests are served on the threads that `server::run` starts.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime
        .block_on(edge::server::run(args.config.clone()))
        .with_context(|| format!("edge --config {}", args.config.display()))?;
    Ok(())
}
