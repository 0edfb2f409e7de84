//! A Redis proxy: the cake's router for MediaWiki's sessions and locks, as twemproxy
//! (nutcracker) was in Wikimedia's MediaWiki pods.
//!
//! Clients (phpredis under MediaWiki's `RedisBagOStuff`, `RedisLockManager`) connect to one
//! listening address per pool and speak RESP2. The proxy:
//!
//! - places each key on one server of the pool with the ketama ring of the memcached router
//!   ([`mcrouter::ring`]: MD5, 160 points per server named by its `host:port`), after cutting
//!   out the key's hash tag if the pool has one (`{user:1}:a` is placed by `user:1`), so
//!   twemproxy with `distribution: ketama`, `hash: md5` and the same `hash_tag` agrees with it
//!   on every key (see [`pool`]);
//! - forwards a command for one server as the bytes the client sent, over one shared,
//!   pipelined connection per server (see [`pool::Connection`]);
//! - cuts `MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS` and `TOUCH` by server, asks the servers in
//!   parallel and puts the answers back together in the client's order;
//! - routes `EVAL`/`EVALSHA` (and `_RO`, `FCALL`) by their keys, sends `SCRIPT LOAD | EXISTS |
//!   FLUSH` to every server, and runs `MULTI ... EXEC` whose keys share a server as one
//!   transaction there;
//! - answers `PING`, `ECHO`, `QUIT`, `AUTH` (its own client password), `HELLO` (RESP2 only:
//!   `HELLO 3` gets `-NOPROTO`, after which clients fall back to RESP2), `SELECT 0`,
//!   `CLIENT SETNAME | GETNAME | SETINFO | ID` and `INFO` itself, and gives the servers their
//!   own password on every connection it opens;
//! - marks a server down after consecutive failures (timeouts, refused or broken
//!   connections), then fails its keys at once with an error naming it, or in a pool that
//!   ejects down servers moves them to the next server on the ring, and probes it back (see
//!   [`failover`]);
//! - counts commands, refusals, requests, errors and latency per pool and server for a
//!   Prometheus endpoint, which also serves `/healthz` (see [`metrics`], [`server`]);
//! - on SIGTERM stops accepting, answers what it has read, and exits.
//!
//! It does not serve what no proxy over several servers can: commands on the whole keyspace
//! (`KEYS`, `SCAN`, `FLUSHALL`, ...), commands that block or change a connection it shares
//! (`BLPOP`, `WATCH`, `SELECT 1`, ...), pub/sub and `MONITOR`, administration (`CONFIG`,
//! `SHUTDOWN`, ...), multi-key commands, scripts and transactions whose keys are on different
//! servers, and commands it does not know. Each gets an `-ERR` that says why, and the
//! connection stays usable; the full list is in [`command`] and `docs/redis-proxy.md`. It does
//! not speak RESP3, TLS, or Redis Cluster's redirections, and never retries a failed request
//! elsewhere (a command may not be idempotent). Malformed or oversized requests get an error
//! and their connection is closed; the proxy goes on.
//!
//! Why a crate of its own rather than a second protocol of `mcrouter`: the two share the
//! ring (which this crate takes from `mcrouter` rather than copying) and the shape of a
//! router, but every other part is protocol-specific: the parser, how replies are framed,
//! which commands exist and how multi-key ones split, connection state (`AUTH`, `SELECT`,
//! transactions), failover (mcrouter's gutter pool suits a cache, not locks). A second
//! protocol inside mcrouter would put `if redis` through every module of a router that is
//! tuned and benchmarked for memcached, and make both images carry both. The config schema
//! compiles without the `server` feature, so `render` can depend on it with serde alone, as
//! it does on mcrouter's.
//!
//! Start reading at [`session`] (one client's commands), then [`command`] (where keys are),
//! [`resp`] (the codec) and [`pool`] (the shared connections).

pub mod config;

#[cfg(feature = "server")]
pub mod command;
#[cfg(feature = "server")]
pub mod failover;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod pool;
#[cfg(feature = "server")]
pub mod proxy;
#[cfg(feature = "server")]
pub mod resp;
#[cfg(feature = "server")]
pub mod secret;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod session;

pub use config::Config;
#[cfg(feature = "server")]
pub use proxy::{Proxy, Secrets};
#[cfg(feature = "server")]
pub use server::{serve, serve_admin};
