//! A Redis proxy: the cake's router for MediaWiki's sessions and locks, as twemproxy
//! (nutcracker) was in Wikimedia's MediaWiki pods.
//!
//! Clients (phpredis under MediaWiki's `RedisBagOStuff`, `RedisLockManager`) connect to one
//! listening address per pool and speak RESP2. The proxy:
//!
//! - places each key on one server of the pool with the ketama ring the memcached router uses
//!   too ([`ketama`]: MD5, 160 points per server named by its `host:port`), after cutting
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
//! It does not serve what no proxy over several servers can. Each of these gets an `-ERR` that
//! says why, and the connection stays usable (the table is [`command::lookup`]; the same list,
//! with the messages, is in `docs/redis-proxy.md`):
//!
//! - commands on the whole keyspace: `KEYS SCAN RANDOMKEY DBSIZE FLUSHDB FLUSHALL`;
//! - commands that block or change a connection, which the proxy shares between clients:
//!   `BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP WAIT XREAD XREADGROUP WATCH
//!   UNWATCH RESET READONLY READWRITE`, `SELECT` of a database other than 0, `CLIENT` but
//!   `SETNAME GETNAME SETINFO ID`;
//! - pub/sub and monitoring, which need a connection of their own: `SUBSCRIBE PSUBSCRIBE
//!   SSUBSCRIBE UNSUBSCRIBE PUNSUBSCRIBE SUNSUBSCRIBE PUBLISH SPUBLISH PUBSUB MONITOR`;
//! - administration of one server: `CONFIG SAVE BGSAVE BGREWRITEAOF LASTSAVE SHUTDOWN DEBUG
//!   SLAVEOF REPLICAOF SYNC PSYNC CLUSTER MIGRATE MOVE SWAPDB OBJECT MEMORY SLOWLOG LATENCY ACL
//!   FAILOVER ROLE MODULE FUNCTION COMMAND TIME LOLWUT`, `SCRIPT KILL`;
//! - multi-key commands, scripts and `MULTI`/`EXEC` whose keys are on different servers,
//!   scripts without keys, and commands the proxy does not know (it cannot tell where their
//!   keys are).
//!
//! It does not speak RESP3, TLS, or Redis Cluster's redirections, and never retries a failed
//! request elsewhere (a command may not be idempotent). Malformed or oversized requests get an
//! error and their connection is closed; the proxy goes on.
//!
//! Why a crate of its own rather than a second protocol of `mcrouter`: the two share the
//! ring (the [`ketama`] crate), accepting and draining clients and the metrics endpoint
//! (the [`cache_proxy_server`] crate), and the shape of a router, but every other part is
//! protocol-specific: the parser, how replies are framed,
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
