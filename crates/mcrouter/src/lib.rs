//! A memcached router: the `mcrouter` of the cake, a compatible subset of Facebook's mcrouter as
//! MediaWiki and Wikimedia use it.
//!
//! Clients (PHP's memcached extension, MediaWiki's `MemcachedPeclBagOStuff` and
//! `MemcachedPhpBagOStuff`) speak the memcached text protocol — get/gets/gat/gats (multi-key),
//! set/add/replace/append/prepend/cas, delete, incr/decr, touch, version, stats, verbosity,
//! flush_all, quit — and the meta commands mg/ms/md/ma/mn. The router:
//!
//! - reads mcrouter's own JSON config — pools and a route tree of route handles (PoolRoute,
//!   HashRoute, AllSync/AllAsync/AllInitialRoute, FailoverRoute, FailoverWithExptimeRoute,
//!   OperationSelectorRoute, PrefixSelectorRoute, WarmUpRoute, NullRoute, ErrorRoute) under
//!   routing prefixes `/<region>/<cluster>/`, broadcasts like `/*/mw-wan/` included — or a
//!   small shorthand that compiles to the same tree (see [`config`], [`tree`]);
//!   [`config::wan_routes`] builds Wikimedia's WAN tree from a description of the
//!   datacenters;
//! - places each key on one server of a pool with a ketama consistent-hash ring: 160 points per
//!   server, from MD5 of `"<host:port>-<i>"` for `i` in `0..40`, four little-endian `u32`s per
//!   digest; a key hashes to the little-endian `u32` of its MD5's first four bytes and belongs to
//!   the first point at or after it (the [`ketama`] crate). twemproxy with `distribution: ketama` and
//!   `hash: md5` over the same server strings agrees on every key (real mcrouter's default
//!   hash, Ch3, does not: keys move when a fleet switches);
//! - splits multi-key gets by server, asks the servers in parallel, and answers in the client's
//!   order under the client's keys;
//! - marks a server down (TKO) at once on a hard error and after `timeouts_until_tko`
//!   timeouts, sends its keys where the route fails over to (the gutter, with capped TTLs), and
//!   probes it back with a growing delay (see [`failover`]); with nowhere to go, a get is a
//!   miss and any other command is answered as [`config::Unavailable`] says (by default the
//!   connection closes, which both of MediaWiki's memcached clients take as an error and give
//!   up at once, rather than waiting on a lock);
//! - sends background requests (AllAsyncRoute, broadcasts) through a bounded queue per pool
//!   (see [`replicate`]);
//! - counts requests, hits, misses, errors and latency per pool and server, for `stats` and a
//!   Prometheus endpoint (see [`metrics`]);
//! - on SIGTERM stops accepting, answers what it has read, and exits (see [`server::serve`]).
//!
//! It does not speak the binary protocol (deprecated by memcached, unused by MediaWiki), UDP,
//! TLS to servers, or the parts of mcrouter's config that Wikimedia does not use (JSONM macros,
//! inline pools, shadowing, rate limits, other hash functions): an unknown route handle or
//! property is an error naming its JSON path. The config schema ([`config`]) compiles without
//! the `server` feature so `render` can write it with serde alone.
//!
//! Start reading at [`server`] (a session answering one client), then [`tree`] (where a
//! request goes) and [`protocol`].

pub mod config;
#[cfg(feature = "server")]
pub mod failover;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod pool;
#[cfg(feature = "server")]
pub mod protocol;
#[cfg(feature = "server")]
pub mod replicate;
#[cfg(feature = "server")]
pub mod route;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod tree;

pub use config::Config;
#[cfg(feature = "server")]
pub use route::Router;
#[cfg(feature = "server")]
pub use server::{serve, serve_metrics};
