//! One session per client connection, and what the metrics endpoint serves. Accepting
//! clients, draining them on SIGTERM and the endpoint's HTTP are [`cache_proxy_server`]'s,
//! shared with the Redis proxy.
//!
//! A session reads what its client sent, answers every complete command in order, and writes
//! the answers back in one write (so a pipelining client gets one syscall per batch). Requests
//! go to the servers over one shared, pipelined connection per server
//! ([`crate::pool::Connection`]), whose replies come back to the session that asked through a
//! oneshot channel, so replies cannot cross between clients.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use cache_proxy_server::{serve_clients, Drain};
use futures_util::future::join_all;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::config::{OpClass, Operation, Unavailable};
use crate::failover::{probe_loop, record_failure, record_success};
use crate::pool::{Connection, UpstreamError};
use crate::protocol::{
    encode_get, encode_request, is_single_value, meta_has, meta_ttl, parse_request, split_values,
    GetKind, MetaOp, ReplyKind, Request, Value,
};
use crate::replicate;
use crate::route::{Router, Target};
use crate::tree::{
    self, cap_exptime, fail_kind, null_reply, Call, GetPlan, Gutter, NodeId, Routed,
};

const SERVER_DOWN: &[u8] = b"SERVER_ERROR unavailable\r\n";

/// Serves clients from `listener` until `shutdown` completes, then drains: stops accepting,
/// lets every session answer the commands it has already read, and returns when they are done
/// or `timeouts.drain_ms` has passed.
pub async fn serve(
    router: Arc<Router>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let _ = router.connections.set(
        (0..router.servers.len())
            .map(|id| Connection::start(&router, id))
            .collect(),
    );
    replicate::start(&router);
    let probes = tokio::spawn(probe_loop(Arc::clone(&router)));
    let drain = Duration::from_millis(router.config.timeouts.drain_ms);
    let deadline = serve_clients(
        vec![((), listener)],
        shutdown,
        drain,
        |(), stream, drain| {
            router.metrics.total_connections.inc();
            session(Arc::clone(&router), stream, drain)
        },
    )
    .await;
    replicate::drain(&router, deadline).await;
    probes.abort();
    Ok(())
}

async fn session(router: Arc<Router>, mut stream: TcpStream, mut drain: Drain) {
    let _ = stream.set_nodelay(true);
    router.metrics.connections.inc();
    let session = Session {
        router: Arc::clone(&router),
    };
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    // Bytes still to discard: the rest of an oversized value.
    let mut swallow = 0usize;
    'conn: loop {
        let mut close = false;
        // Everything complete in the input, in order: commands to run and errors to answer.
        let mut batch: Vec<Item> = Vec::new();
        loop {
            if swallow > 0 {
                let n = swallow.min(input.len());
                let _ = input.split_to(n);
                swallow -= n;
                if swallow > 0 {
                    break;
                }
            }
            match parse_request(&input, &router.config.limits) {
                Ok(None) => break,
                Ok(Some((request, n))) => {
                    let _ = input.split_to(n);
                    if request == Request::Quit {
                        close = true;
                        break;
                    }
                    batch.push(Item::Run(request));
                }
                Err(err) => {
                    let n = err.consume.min(input.len());
                    let _ = input.split_to(n);
                    swallow = err.consume - n;
                    batch.push(Item::Say(err.reply));
                    if err.close {
                        close = true;
                        break;
                    }
                }
            }
        }
        // No server could take a command that expects a reply: what came before is answered,
        // then the connection closes (see config::Unavailable).
        if session.run(batch, &mut out).await {
            close = true;
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                break 'conn;
            }
            out.clear();
        }
        if close {
            break;
        }
        input.reserve(16 * 1024);
        if !drain.read(&mut stream, &mut input).await {
            break;
        }
    }
    router.metrics.connections.dec();
}

/// One client's state beyond its buffers.
struct Session {
    router: Arc<Router>,
}

/// One entry of what a client sent in one go.
enum Item {
    /// A command to run.
    Run(Request),
    /// A protocol error to answer with.
    Say(&'static str),
}

/// Sends one request to one server over its shared connection, keeping the server's health
/// and metrics.
pub(crate) async fn call_server(
    router: &Router,
    id: usize,
    request: Bytes,
    kind: ReplyKind,
) -> Result<Bytes, UpstreamError> {
    let server = &router.servers[id];
    let start = Instant::now();
    let result = match router.connections.get() {
        Some(conns) => conns[id].call(request, kind).await,
        None => Err(UpstreamError::Closed),
    };
    server.metrics.observe(start.elapsed());
    match &result {
        Ok(_) => record_success(server),
        Err(err) => {
            tracing::debug!(server = %server.addr, %err, "request failed");
            record_failure(router, server, err);
        }
    }
    result
}

impl Session {
    /// Answers a batch in order; true to hang up after the answers written.
    ///
    /// A pipelining client's commands run at once, not one after another: each would
    /// otherwise wait for its server's reply before the next went out, where the server
    /// connections pipeline them all in one write. Replies still go back in order, and
    /// commands for one server reach it in order (each is queued on the server's connection
    /// when first polled, and they are polled in order).
    async fn run(&self, batch: Vec<Item>, out: &mut BytesMut) -> bool {
        if let [Item::Run(_)] = &batch[..] {
            let Some(Item::Run(request)) = batch.into_iter().next() else {
                return false;
            };
            return self.execute(request, out).await;
        }
        if !batch.iter().any(|i| matches!(i, Item::Run(_))) {
            for item in batch {
                if let Item::Say(reply) = item {
                    out.put_slice(reply.as_bytes());
                }
            }
            return false;
        }
        if let Some(replies) = self.merged_gets(&batch).await {
            for reply in replies {
                out.put_slice(&reply);
            }
            return false;
        }
        let replies = join_all(batch.into_iter().map(|item| async move {
            let mut reply = BytesMut::new();
            let hang_up = match item {
                Item::Run(request) => self.execute(request, &mut reply).await,
                Item::Say(text) => {
                    reply.put_slice(text.as_bytes());
                    false
                }
            };
            (reply, hang_up)
        }))
        .await;
        for (reply, hang_up) in replies {
            if hang_up {
                return true;
            }
            out.put_slice(&reply);
        }
        false
    }

    async fn call(&self, id: usize, request: Bytes, kind: ReplyKind) -> Option<Bytes> {
        call_server(&self.router, id, request, kind).await.ok()
    }

    /// Answers one command into `out`; true when the connection must be closed instead of
    /// answering it (nothing could take it, and the config says so).
    async fn execute(&self, request: Request, out: &mut BytesMut) -> bool {
        match request {
            Request::Get {
                kind,
                exptime,
                keys,
            } => match &keys[..] {
                [key] => self.get_one(kind, exptime, key, out).await,
                _ => self.get(kind, exptime, &keys, out).await,
            },
            Request::Version => {
                out.put_slice(b"VERSION mcrouter-wikikube-");
                out.put_slice(env!("CARGO_PKG_VERSION").as_bytes());
                out.put_slice(b"\r\n");
            }
            Request::Verbosity { noreply } => {
                if !noreply {
                    out.put_slice(b"OK\r\n");
                }
            }
            Request::MetaNoop => out.put_slice(b"MN\r\n"),
            Request::Stats { args } => self.stats(&args, out),
            Request::FlushAll { noreply, .. } => {
                let mut ok = true;
                let mut buf = BytesMut::new();
                encode_request(&request, b"", 0, &mut buf);
                let buf = buf.freeze();
                let ids = self
                    .router
                    .local
                    .map(|p| self.router.pools[p].servers.clone())
                    .unwrap_or_default();
                for id in ids {
                    let reply = self.call(id, buf.clone(), ReplyKind::Line).await;
                    ok &= reply.is_some_and(|r| r.starts_with(b"OK"));
                }
                if !noreply {
                    out.put_slice(if ok { b"OK\r\n" } else { SERVER_DOWN });
                }
            }
            Request::Quit => {}
            _ => return self.single(request, out).await,
        }
        false
    }

    /// A single-key command through the route tree. Returns true to hang up.
    async fn single(&self, request: Request, out: &mut BytesMut) -> bool {
        let router = Arc::clone(&self.router);
        let Some(key) = request.key().cloned() else {
            return false;
        };
        let Some(op) = Call::operation(&request) else {
            return false;
        };
        let meta = match &request {
            Request::Meta { op, flags, .. } => Some((*op, flags.clone())),
            _ => None,
        };
        let (routed, stripped) = match &meta {
            Some((_, flags)) if meta_has(flags, b'b') => {
                (Routed::One(router.tree.default), &key[..])
            }
            _ => router.tree.route_key(&key),
        };
        let exptime = match &request {
            Request::Store { exptime, .. } | Request::Touch { exptime, .. } => *exptime,
            Request::Meta { flags, .. } => meta_ttl(flags).unwrap_or(0),
            _ => 0,
        };
        let kind = if meta.is_some() {
            ReplyKind::Meta
        } else {
            ReplyKind::Line
        };
        let call = Call {
            op,
            key: key.slice_ref(stripped),
            exptime,
            kind,
            request: Arc::new(request),
        };
        let outcome = match routed {
            Routed::One(node) => tree::execute(&router, node, &call).await,
            Routed::Broadcast(nodes) => {
                // Real mcrouter's root route: the first answers, the rest go on behind.
                for node in &nodes[1..] {
                    tree::send_async(&router, *node, &call);
                }
                tree::execute(&router, nodes[0], &call).await
            }
        };
        let reply = match outcome {
            Ok(reply) => reply.bytes,
            Err(_) => {
                if call.request.noreply() || meta.as_ref().is_some_and(|(_, f)| meta_has(f, b'q')) {
                    return false;
                }
                if op.class() == OpClass::Gets {
                    // A cache that cannot answer has nothing (mcrouter's miss_on_get_errors).
                    out.put_slice(&null_reply(op, kind));
                    return false;
                }
                return match router.config.unavailable {
                    Unavailable::Close => true,
                    Unavailable::ServerError => {
                        out.put_slice(SERVER_DOWN);
                        false
                    }
                };
            }
        };
        if let Some((op, flags)) = &meta {
            let status = &reply[..2.min(reply.len())];
            let quiet = meta_has(flags, b'q')
                && match op {
                    MetaOp::Get => status == b"EN",
                    MetaOp::Set => status == b"HD",
                    MetaOp::Delete => status == b"HD" || status == b"NF",
                    MetaOp::Arith => status == b"HD",
                };
            if !quiet {
                write_meta_reply(&reply, &key, stripped, out);
            }
        } else if !call.request.noreply() {
            out.put_slice(&reply);
        }
        false
    }

    /// A get-family command for one key, the common case (memaslap's gets, most of
    /// MediaWiki's): the same answers and metrics as [`Session::get`] without its grouping
    /// and maps, and the server's reply relayed as it is when it is exactly what the client
    /// expects.
    async fn get_one(&self, kind: GetKind, exptime: i64, key: &Bytes, out: &mut BytesMut) {
        let router = &*self.router;
        let (plan, stripped) = plan_get(router, kind, key);
        let GetPlan::Pool { pool, gutter } = plan else {
            let GetPlan::Tree(node) = plan else { return };
            let reply = tree_get(&self.router, node, kind, exptime, key, stripped).await;
            write_values(&reply, key, stripped, out);
            return;
        };
        let start = Instant::now();
        let route = &router.pools[pool].metrics;
        let mut target = router.target(pool, stripped, gutter);
        let reply = loop {
            let exptime = match (target, gutter) {
                (Target::Gutter(_), Some(g)) if kind.touches() => cap_exptime(exptime, g.exptime),
                (Target::Unavailable, _) => break None,
                _ => exptime,
            };
            let id = target_id(target);
            let mut buf = BytesMut::with_capacity(stripped.len() + 32);
            encode_get(kind, exptime, &[stripped], &mut buf);
            let err = match call_server(router, id, buf.freeze(), ReplyKind::Values).await {
                Ok(reply) => break Some((id, reply)),
                Err(err) => err,
            };
            target = match (target, gutter) {
                (Target::Primary(_), Some(g)) if g.takes(fail_kind(router, id, &err)) => {
                    router.gutter_for(stripped, g)
                }
                _ => Target::Unavailable,
            };
            if target != Target::Unavailable {
                router.metrics.failovers.inc();
            }
        };
        route.observe(start.elapsed());
        let Some((id, reply)) = reply else {
            route.errors.inc();
            route.misses.inc();
            out.put_slice(b"END\r\n");
            return;
        };
        let server = &router.servers[id].metrics;
        if key[..] == *stripped && is_single_value(&reply, stripped) {
            server.hits.inc();
            route.hits.inc();
            out.put_slice(&reply);
            return;
        }
        let (values, last) = split_values(&reply);
        server.hits.inc_by(values.len() as u64);
        server.misses.inc_by(u64::from(values.is_empty()));
        match values.iter().find(|v| v.key[..] == *stripped) {
            Some(v) => {
                route.hits.inc();
                out.put_slice(b"VALUE ");
                out.put_slice(key);
                out.put_slice(&v.rest);
                out.put_slice(&v.data);
            }
            None => {
                route.misses.inc();
            }
        }
        // END, or the server's error (say, CLIENT_ERROR for a gat with a bad time), which is
        // the client's error too since it asked for this key alone.
        out.put_slice(&last);
    }

    /// A get-family command: keys grouped by server, one request per server in parallel, the
    /// values written back in the client's order under the client's keys.
    async fn get(&self, kind: GetKind, exptime: i64, keys: &[Bytes], out: &mut BytesMut) {
        let Some((values, error_line)) = self.get_values(kind, exptime, keys).await else {
            // A route the shortcut cannot take: every key through the tree, at once.
            return self.get_each(kind, exptime, keys, out).await;
        };
        for (key, value) in keys.iter().zip(&values) {
            if let Some(v) = value {
                out.put_slice(b"VALUE ");
                out.put_slice(key);
                out.put_slice(&v.rest);
                out.put_slice(&v.data);
            }
        }
        // A server's error (say, CLIENT_ERROR for a gat with a bad time) is the client's
        // error too when it asked one server alone; otherwise the other keys still count.
        match error_line {
            Some(line) if keys.len() == 1 => out.put_slice(&line),
            _ => out.put_slice(b"END\r\n"),
        }
    }

    /// The values of a get-family command's keys, in the client's order (`None`: a miss),
    /// and a server's error line if one answered with one; `None` when a key's route needs
    /// the whole tree.
    async fn get_values(
        &self,
        kind: GetKind,
        exptime: i64,
        keys: &[Bytes],
    ) -> Option<(Vec<Option<Value>>, Option<Bytes>)> {
        let router = &*self.router;
        let start = Instant::now();
        let mut slots: Vec<Slot> = Vec::with_capacity(keys.len());
        for key in keys {
            let (plan, stripped) = plan_get(router, kind, key);
            let GetPlan::Pool { pool, gutter } = plan else {
                return None;
            };
            let stripped = key.slice_ref(stripped);
            let target = router.target(pool, &stripped, gutter);
            slots.push(Slot {
                pool,
                gutter,
                stripped,
                target,
                leader: usize::MAX,
            });
        }
        // Indexed by a leader slot: the value found for it.
        let mut values: Vec<Option<Value>> = vec![None; keys.len()];
        let mut error_line: Option<Bytes> = None;
        let mut pending: Vec<usize> = (0..slots.len())
            .filter(|&i| slots[i].target != Target::Unavailable)
            .collect();
        // Two rounds: the owners, then the gutter for keys whose owner failed.
        for _round in 0..2 {
            if pending.is_empty() {
                break;
            }
            // Sorted by target then key, each server's keys are one run and repeated keys are
            // neighbours: grouping and de-duplication in O(n log n), where pairwise checks
            // would be quadratic in a 250-key getMulti.
            pending.sort_unstable_by(|&a, &b| {
                (slots[a].target, &slots[a].stripped).cmp(&(slots[b].target, &slots[b].stripped))
            });
            // Each group: its target and its distinct keys' leader slots, sorted by key.
            let mut groups: Vec<(Target, Vec<usize>)> = Vec::new();
            for &i in &pending {
                let target = slots[i].target;
                match groups.last_mut() {
                    Some((t, leaders)) if *t == target => {
                        let last = leaders[leaders.len() - 1];
                        if slots[last].stripped == slots[i].stripped {
                            slots[i].leader = last;
                        } else {
                            slots[i].leader = i;
                            leaders.push(i);
                        }
                    }
                    _ => {
                        slots[i].leader = i;
                        groups.push((target, vec![i]));
                    }
                }
            }
            let results = fetch_groups(router, kind, exptime, &slots, &groups).await;
            let mut failed = Vec::new();
            for ((target, leaders), result) in groups.iter().zip(results) {
                let reply = match result {
                    Ok(reply) => reply,
                    Err(err) => {
                        failed.push((*target, fail_kind(router, target_id(*target), &err)));
                        continue;
                    }
                };
                let server = &router.servers[target_id(*target)].metrics;
                let (found, last) = split_values(&reply);
                server.hits.inc_by(found.len() as u64);
                server
                    .misses
                    .inc_by((leaders.len() - found.len().min(leaders.len())) as u64);
                if last.as_ref() != b"END\r\n" {
                    error_line = Some(last);
                }
                for value in found {
                    if let Ok(at) =
                        leaders.binary_search_by(|&j| slots[j].stripped[..].cmp(&value.key[..]))
                    {
                        values[leaders[at]] = Some(value);
                    }
                }
            }
            if failed.is_empty() {
                break;
            }
            pending.retain(|&i| failed.iter().any(|(t, _)| *t == slots[i].target));
            for &i in &pending {
                let slot = &mut slots[i];
                let why = failed
                    .iter()
                    .find(|(t, _)| *t == slot.target)
                    .map(|(_, k)| *k);
                slot.target = match (slot.target, slot.gutter, why) {
                    (Target::Primary(_), Some(g), Some(kind)) if g.takes(kind) => {
                        router.gutter_for(&slot.stripped, g)
                    }
                    _ => Target::Unavailable,
                };
                if slot.target != Target::Unavailable {
                    router.metrics.failovers.inc();
                }
            }
            pending.retain(|&i| slots[i].target != Target::Unavailable);
        }

        let elapsed = start.elapsed();
        let mut routes_seen: Vec<usize> = Vec::new();
        let mut found = Vec::with_capacity(keys.len());
        for slot in &slots {
            let metrics = &router.pools[slot.pool].metrics;
            if !routes_seen.contains(&slot.pool) {
                routes_seen.push(slot.pool);
                metrics.observe(elapsed);
            }
            let value = match slot.target {
                Target::Unavailable => {
                    metrics.errors.inc();
                    None
                }
                _ => values[slot.leader].clone(),
            };
            if value.is_some() {
                metrics.hits.inc();
            } else {
                metrics.misses.inc();
            }
            found.push(value);
        }
        Some((found, error_line))
    }

    /// Plain gets read together from a pipelining client, all of one kind: asked of each
    /// server as one multi-key get instead of one request per command (memcached answers a
    /// multi-get for much less than the same number of single gets), each command answered
    /// on its own, in order. `None` when they are not all plain gets of one kind.
    async fn merged_gets(&self, batch: &[Item]) -> Option<Vec<BytesMut>> {
        let mut kind = None;
        let mut keys = Vec::new();
        for item in batch {
            match item {
                Item::Run(Request::Get {
                    kind: k @ (GetKind::Get | GetKind::Gets),
                    keys: ks,
                    ..
                }) if kind.is_none_or(|kind| kind == *k) => {
                    kind = Some(*k);
                    keys.extend_from_slice(ks);
                }
                _ => return None,
            }
        }
        let (values, _) = self.get_values(kind?, 0, &keys).await?;
        let mut values = values.into_iter();
        let replies = batch
            .iter()
            .map(|item| {
                let mut reply = BytesMut::new();
                if let Item::Run(Request::Get { keys, .. }) = item {
                    for (key, value) in keys.iter().zip(values.by_ref()) {
                        if let Some(v) = value {
                            reply.put_slice(b"VALUE ");
                            reply.put_slice(key);
                            reply.put_slice(&v.rest);
                            reply.put_slice(&v.data);
                        }
                    }
                }
                reply.put_slice(b"END\r\n");
                reply
            })
            .collect();
        Some(replies)
    }

    /// A multi-key get whose keys need the whole tree: one get per key, all at once, the
    /// values in the client's order.
    async fn get_each(&self, kind: GetKind, exptime: i64, keys: &[Bytes], out: &mut BytesMut) {
        let router = &self.router;
        let replies = join_all(keys.iter().map(|key| async move {
            let (plan, stripped) = plan_get(router, kind, key);
            let node = match plan {
                GetPlan::Tree(node) => node,
                // A plain pool key among them: the tree from its route gives the same.
                GetPlan::Pool { .. } => match router.tree.route_key(key).0 {
                    Routed::One(node) => node,
                    Routed::Broadcast(nodes) => nodes[0],
                },
            };
            tree_get(router, node, kind, exptime, key, stripped).await
        }))
        .await;
        for (key, reply) in keys.iter().zip(&replies) {
            let (_, stripped) = router.tree.route_key(key);
            let (values, _) = split_values(reply);
            if let Some(v) = values.iter().find(|v| v.key[..] == *stripped) {
                out.put_slice(b"VALUE ");
                out.put_slice(key);
                out.put_slice(&v.rest);
                out.put_slice(&v.data);
            }
        }
        out.put_slice(b"END\r\n");
    }

    fn stats(&self, args: &[Bytes], out: &mut BytesMut) {
        if !args.is_empty() {
            out.put_slice(b"ERROR\r\n");
            return;
        }
        let router = &self.router;
        let m = &router.metrics;
        let uptime = router.started.elapsed().as_secs();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut stat = |name: &str, value: &dyn std::fmt::Display| {
            out.put_slice(format!("STAT {name} {value}\r\n").as_bytes());
        };
        stat("pid", &std::process::id());
        stat("uptime", &uptime);
        stat("time", &now);
        stat(
            "version",
            &concat!("mcrouter-wikikube-", env!("CARGO_PKG_VERSION")),
        );
        stat("curr_connections", &m.connections.get());
        stat("total_connections", &m.total_connections.get());
        stat("failovers", &m.failovers.get());
        stat("replication_dropped", &m.replication_dropped.get());
        for pool in &router.pools {
            let p = &pool.metrics;
            let name = format!("route:{}", pool.name);
            stat(&format!("{name}:requests"), &p.requests.get());
            stat(&format!("{name}:hits"), &p.hits.get());
            stat(&format!("{name}:misses"), &p.misses.get());
            stat(&format!("{name}:errors"), &p.errors.get());
            stat(&format!("{name}:mean_latency_us"), &p.mean_latency_us());
        }
        for server in &router.servers {
            let s = &server.metrics;
            let name = format!("server:{}:{}", server.pool, server.addr);
            stat(&format!("{name}:down"), &u8::from(server.is_down()));
            stat(&format!("{name}:requests"), &s.requests.get());
            stat(&format!("{name}:hits"), &s.hits.get());
            stat(&format!("{name}:misses"), &s.misses.get());
            stat(&format!("{name}:errors"), &s.errors.get());
            stat(&format!("{name}:mean_latency_us"), &s.mean_latency_us());
        }
        out.put_slice(b"END\r\n");
    }
}

/// One client key of a multi-key get.
struct Slot {
    pool: usize,
    /// Where the key goes when its server fails.
    gutter: Option<Gutter>,
    /// The key as its server knows it (routing prefix stripped).
    stripped: Bytes,
    target: Target,
    /// The slot whose fetched value this key shares: itself, or the first of the same key
    /// asked twice of the same server.
    leader: usize,
}

/// Sends one get-family request per group, concurrently when there are several.
async fn fetch_groups(
    router: &Router,
    kind: GetKind,
    exptime: i64,
    slots: &[Slot],
    groups: &[(Target, Vec<usize>)],
) -> Vec<Result<Bytes, UpstreamError>> {
    let request = |(target, leaders): &(Target, Vec<usize>)| {
        let exptime = match (target, slots[leaders[0]].gutter) {
            (Target::Gutter(_), Some(g)) if kind.touches() => cap_exptime(exptime, g.exptime),
            _ => exptime,
        };
        let size = leaders
            .iter()
            .map(|&i| slots[i].stripped.len() + 1)
            .sum::<usize>();
        let mut buf = BytesMut::with_capacity(size + 32);
        let keys: Vec<&[u8]> = leaders.iter().map(|&i| &slots[i].stripped[..]).collect();
        encode_get(kind, exptime, &keys, &mut buf);
        (target_id(*target), buf.freeze())
    };
    if let [group] = groups {
        let (id, request) = request(group);
        return vec![call_server(router, id, request, ReplyKind::Values).await];
    }
    let calls = groups
        .iter()
        .map(request)
        .map(|(id, request)| call_server(router, id, request, ReplyKind::Values));
    join_all(calls).await
}

/// The operation of a get-family command.
fn get_operation(kind: GetKind) -> Operation {
    match kind {
        GetKind::Get => Operation::Get,
        GetKind::Gets => Operation::Gets,
        GetKind::Gat => Operation::Gat,
        GetKind::Gats => Operation::Gats,
    }
}

/// How a get of `key` is served, and the key as servers know it. A broadcast prefix reads
/// from its first (local) route only: reads stay local.
fn plan_get<'k>(router: &Router, kind: GetKind, key: &'k [u8]) -> (GetPlan, &'k [u8]) {
    let (routed, stripped) = router.tree.route_key(key);
    let node = match routed {
        Routed::One(node) => node,
        Routed::Broadcast(nodes) => nodes[0],
    };
    (
        router.tree.plan_get(node, get_operation(kind), stripped),
        stripped,
    )
}

/// A get of one key through the tree: the server's reply, or a miss when nothing answered.
async fn tree_get(
    router: &Arc<Router>,
    node: NodeId,
    kind: GetKind,
    exptime: i64,
    key: &Bytes,
    stripped: &[u8],
) -> Bytes {
    let stripped = key.slice_ref(stripped);
    let call = Call {
        request: Arc::new(Request::Get {
            kind,
            exptime,
            keys: vec![stripped.clone()],
        }),
        op: get_operation(kind),
        key: stripped,
        exptime,
        kind: ReplyKind::Values,
    };
    match tree::execute(router, node, &call).await {
        Ok(reply) => reply.bytes,
        Err(_) => Bytes::from_static(b"END\r\n"),
    }
}

/// Writes the value of a one-key get reply under the client's key, then its last line.
fn write_values(reply: &Bytes, key: &[u8], stripped: &[u8], out: &mut BytesMut) {
    let (values, last) = split_values(reply);
    if let Some(v) = values.iter().find(|v| v.key[..] == *stripped) {
        out.put_slice(b"VALUE ");
        out.put_slice(key);
        out.put_slice(&v.rest);
        out.put_slice(&v.data);
    }
    out.put_slice(&last);
}

fn target_id(target: Target) -> usize {
    match target {
        Target::Primary(id) | Target::Gutter(id) => id,
        // Unavailable targets are filtered out before any lookup by id.
        Target::Unavailable => usize::MAX,
    }
}

/// Writes a meta reply, putting the client's key back in a `k` return flag when the routing
/// prefix was stripped.
fn write_meta_reply(reply: &Bytes, key: &[u8], stripped: &[u8], out: &mut BytesMut) {
    if key == stripped {
        out.put_slice(reply);
        return;
    }
    let nl = memchr::memchr(b'\n', reply).map_or(reply.len(), |i| i + 1);
    let line = reply[..nl].strip_suffix(b"\r\n").unwrap_or(&reply[..nl]);
    for (i, token) in line.split(|&b| b == b' ').enumerate() {
        if i > 0 {
            out.put_u8(b' ');
        }
        if i > 0 && token.first() == Some(&b'k') {
            out.put_u8(b'k');
            out.put_slice(key);
        } else {
            out.put_slice(token);
        }
    }
    out.put_slice(b"\r\n");
    out.put_slice(&reply[nl..]);
}

/// Serves `GET /metrics` (Prometheus text format) on `listener` forever.
pub async fn serve_metrics(router: Arc<Router>, listener: TcpListener) -> io::Result<()> {
    cache_proxy_server::serve_admin(listener, move |path| {
        (path == "/metrics").then(|| router.metrics.encode())
    })
    .await
}
