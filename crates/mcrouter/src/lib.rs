//! A memcached router: the `mcrouter` of the cake, a compatible subset of Facebook's mcrouter as
//! MediaWiki uses it.
//!
//! Clients (PHP's memcached extension, MediaWiki's `MemcachedPeclBagOStuff`) speak the memcached
//! text protocol — get/gets/gat/gats (multi-key), set/add/replace/append/prepend/cas, delete,
//! incr/decr, touch, version, stats, verbosity, flush_all, quit — and the meta commands
//! mg/ms/md/ma/mn. The router:
//!
//! - places each key on one server of a pool with a ketama consistent-hash ring: 160 points per
//!   server, from MD5 of `"<host:port>-<i>"` for `i` in `0..40`, four little-endian `u32`s per
//!   digest; a key hashes to the little-endian `u32` of its MD5's first four bytes and belongs to
//!   the first point at or after it (see [`ring`]). twemproxy with `distribution: ketama` and
//!   `hash: md5` over the same server strings agrees on every key;
//! - routes keys under a configured `/<datacenter>/<cluster>/` prefix to that pool, stripping the
//!   prefix as real mcrouter does; other keys go to the local pool (see [`route`]);
//! - splits multi-key gets by server, asks the servers in parallel, and answers in the client's
//!   order under the client's keys;
//! - sends deletes and touches of local keys to the local pool and, asynchronously, to every
//!   `replicate_to` pool (see [`replicate`]); gets stay local;
//! - marks a server down after consecutive failures, sends its keys to the gutter pool with
//!   capped TTLs, and probes it back (see [`failover`]);
//! - counts requests, hits, misses, errors and latency per route and server, for `stats` and a
//!   Prometheus endpoint (see [`metrics`]);
//! - on SIGTERM stops accepting, answers what it has read, and exits (see [`server::serve`]).
//!
//! It does not speak the binary protocol (deprecated by memcached, unused by MediaWiki), UDP, or
//! mcrouter's own JSON route language: its configuration is the small schema of [`config`],
//! which compiles without the `server` feature so `render` can write it with serde alone.
//!
//! Start reading at [`server`] (a session answering one client), then [`protocol`] and
//! [`route`].

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
pub mod ring;
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
