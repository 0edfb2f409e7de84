//! `edge`: wikikube's TLS terminator and traffic router.
//!
//! One binary, two modes chosen by the config file:
//! - **pod mode** (`[pod]`): the cake's `tls` container. Terminates TLS 1.2/1.3 (ALPN `h2` and
//!   `http/1.1`, certificates chosen by SNI and reloaded from their files), adds `X-Client-IP`,
//!   `X-Forwarded-For` and `X-Forwarded-Proto`, and streams every request to httpd on loopback
//!   over pooled HTTP/1.1 connections, with a bound on how long httpd may take (a 504 when
//!   the response head is late). `/healthz` on the metrics listener can report a health
//!   check of the cake behind (php-fpm's ping through httpd), for the readiness probe. On
//!   SIGTERM it stops accepting and drains.
//! - **edge mode** (`[edge]`): the same, in front of the releases, routing by Host and path to
//!   named backends (over TLS to those that ask for it, verifying their certificate);
//!   `X-Wikimedia-Debug: backend=NAME` selects a debug backend; weighted shares (legacy ->
//!   Kubernetes, `main` -> `next`) pinned by a cookie; active health checks, with envoy's
//!   panic threshold (when too few endpoints of a backend are healthy, all of them take
//!   requests rather than none); response timeouts per backend.
//!
//! What it must not do: buffer bodies whole, cache responses, rewrite anything but the
//! forwarding, hop-by-hop and (for debug requests) `Cache-Control` headers, or trust a
//! client-sent `X-Client-IP`. It does not speak HTTP/2 to upstreams, and does not proxy protocol
//! upgrades (WebSocket).
//!
//! Where to start reading: [`config`] (the file format, compiled without any feature so that
//! `render` can write it), then [`server::run`] (listeners, reload, drain) with [`drain`] and
//! [`server_tls`] (TLS toward clients, whose idle connections hold no buffers), [`proxy`] (one
//! request), [`upstream`] (pooled upstream connections) with [`upstream_http1`] (the HTTP/1.1
//! they speak), and [`router`] with [`debug_routing`], [`weighted`], [`host`] (pure decisions),
//! [`health`], [`certificates`], [`upstream_tls`], [`metrics`].
//!
//! Features: `toml` adds [`load`] (reading the file with line/column errors); `server`
//! (default) adds everything that runs and the `edge` binary.

pub mod config;
pub mod debug_routing;
pub mod host;
pub mod router;
pub mod weighted;

#[cfg(feature = "toml")]
pub mod load;

#[cfg(feature = "server")]
pub mod certificates;
#[cfg(feature = "server")]
pub mod drain;
#[cfg(feature = "server")]
pub mod health;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod proxy;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod server_tls;
#[cfg(feature = "server")]
pub mod upstream;
#[cfg(feature = "server")]
pub mod upstream_http1;
#[cfg(feature = "server")]
pub mod upstream_tls;

pub use config::Config;
