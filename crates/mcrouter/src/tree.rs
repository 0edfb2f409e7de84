//! The route tree: mcrouter's route handles compiled into an arena of [`Node`]s, routing
//! prefixes, and the executor that walks the tree for one request.
//!
//! A request first picks its route by the key's routing prefix ([`Tree::route_key`]), then
//! walks the tree: selectors (`OperationSelectorRoute`, `PrefixSelectorRoute`, `HashRoute`)
//! pick one child without I/O; `PoolRoute` asks the key's server; the others combine the
//! replies of their children ([`execute`]). Gets take a shortcut when the tree below their
//! route is only selectors, pools and a failover to one pool (Wikimedia's tree is), so a
//! multi-key get can still be split by server and sent as one request per server
//! ([`Tree::plan_get`]).
//!
//! Compiled into an arena, not boxes, so that nodes are plain indices that a spawned
//! background request can carry without lifetimes.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::{join_all, BoxFuture};

use crate::config::{FailoverError, OpClass, Operation, RouteHandle, RoutesConfig};
use crate::pool::UpstreamError;
use crate::protocol::{encode_request, split_values, MetaOp, ReplyKind, Request};
use crate::replicate;
use crate::route::Router;
use crate::server::call_server;
use ketama::Ring;

/// An index into [`Tree::nodes`].
pub type NodeId = usize;

/// One compiled route handle.
#[derive(Debug)]
pub enum Node {
    /// `PoolRoute`: the pool's index.
    Pool(usize),
    /// `HashRoute`: children on a ring named by their position.
    Hash {
        /// The children.
        children: Vec<NodeId>,
        /// The ring over `"0"`, `"1"`, ... (ketama, as pools).
        ring: Ring,
    },
    /// `AllSyncRoute`.
    AllSync(Vec<NodeId>),
    /// `AllAsyncRoute`.
    AllAsync(Vec<NodeId>),
    /// `AllInitialRoute`.
    AllInitial(Vec<NodeId>),
    /// `FailoverRoute`.
    Failover(Vec<NodeId>),
    /// `FailoverWithExptimeRoute`.
    FailoverExptime {
        /// First choice.
        normal: NodeId,
        /// Tried in turn when `normal` fails with one of `errors`.
        failover: Vec<NodeId>,
        /// TTL cap of requests sent to `failover`.
        exptime: i64,
        /// Bit `1 << kind` for each [`FailoverError`] that fails over.
        errors: u8,
    },
    /// `OperationSelectorRoute`, with the default filled in for every operation.
    OpSelect([NodeId; Operation::ALL.len()]),
    /// `PrefixSelectorRoute`: longest prefix first.
    PrefixSelect {
        /// `(prefix, child)`, longest prefix first.
        policies: Vec<(Vec<u8>, NodeId)>,
        /// For keys no prefix matches.
        wildcard: NodeId,
    },
    /// `WarmUpRoute`.
    WarmUp {
        /// The new destination.
        cold: NodeId,
        /// The filled one.
        warm: NodeId,
        /// TTL of the copies made into `cold`.
        exptime: i64,
    },
    /// `NullRoute`.
    Null,
    /// `ErrorRoute`: the reply line.
    Error(Bytes),
}

/// The compiled routes of a config.
#[derive(Debug)]
pub struct Tree {
    /// Every node.
    pub nodes: Vec<Node>,
    /// `(alias, route)` of every routing prefix.
    aliases: Vec<(Vec<u8>, NodeId)>,
    /// The route of keys without a (known) prefix.
    pub default: NodeId,
    /// The region segment of the default route's alias (`/eqiad/mw/` -> `eqiad`): the
    /// broadcast route answered from.
    default_region: Vec<u8>,
}

/// Where a key goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Routed {
    /// One route, and the key to send (prefix stripped when it selected the route).
    One(NodeId),
    /// A broadcast prefix (`/*/cluster/`): the routes it matches, the one to answer from
    /// first.
    Broadcast(Vec<NodeId>),
}

/// How a get for one key is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetPlan {
    /// By one pool's server, perhaps with a gutter pool on failure: the shortcut.
    Pool {
        /// The pool.
        pool: usize,
        /// The gutter, if the route fails over to a single pool.
        gutter: Option<Gutter>,
    },
    /// By walking the tree from this node.
    Tree(NodeId),
}

/// A failover to a single pool, as the shortcut for gets sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gutter {
    /// The gutter pool.
    pub pool: usize,
    /// TTL cap of what is sent there.
    pub exptime: i64,
    /// Failures that fail over (bits of [`FailoverError`]).
    pub errors: u8,
}

impl Gutter {
    /// Whether a failure of `kind` fails over.
    pub fn takes(&self, kind: FailoverError) -> bool {
        self.errors & bit(kind) != 0
    }
}

fn bit(kind: FailoverError) -> u8 {
    1 << (kind as u8)
}

/// Caps a TTL for a failover destination: zero (never), absolute times (over 30 days) and
/// anything longer become the cap; negative (already expired) stays.
pub fn cap_exptime(exptime: i64, cap: i64) -> i64 {
    if exptime < 0 || (exptime > 0 && exptime <= cap) {
        exptime
    } else {
        cap
    }
}

impl Tree {
    /// Compiles `config`'s routes; `pool_index` maps pool names to indices (every name is
    /// known: the config was validated).
    pub fn compile(config: &RoutesConfig, pool_index: &dyn Fn(&str) -> usize) -> Tree {
        let mut tree = Tree {
            nodes: Vec::new(),
            aliases: Vec::new(),
            default: 0,
            default_region: Vec::new(),
        };
        let null = tree.push(Node::Null);
        let mut default = None;
        for route in &config.routes {
            let id = tree.add(&route.route, pool_index, null);
            for alias in &route.aliases {
                tree.aliases.push((alias.as_bytes().to_vec(), id));
                if config.default_route.as_ref() == Some(alias) {
                    default = Some(id);
                }
            }
            if route.aliases.is_empty() || config.routes.len() == 1 {
                default = default.or(Some(id));
            }
        }
        tree.default = default.unwrap_or(null);
        if let Some(d) = &config.default_route {
            tree.default_region = d
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("")
                .as_bytes()
                .to_vec();
        }
        tree
    }

    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn add(&mut self, h: &RouteHandle, pool: &dyn Fn(&str) -> usize, null: NodeId) -> NodeId {
        let all = |tree: &mut Tree, list: &[RouteHandle]| -> Vec<NodeId> {
            list.iter().map(|c| tree.add(c, pool, null)).collect()
        };
        let node = match h {
            RouteHandle::Pool { pool: name } => Node::Pool(pool(name)),
            RouteHandle::Hash { children } => {
                let names: Vec<String> = (0..children.len()).map(|i| i.to_string()).collect();
                Node::Hash {
                    children: all(self, children),
                    ring: Ring::new(&names),
                }
            }
            RouteHandle::AllSync { children } => Node::AllSync(all(self, children)),
            RouteHandle::AllAsync { children } => Node::AllAsync(all(self, children)),
            RouteHandle::AllInitial { children } => Node::AllInitial(all(self, children)),
            RouteHandle::Failover { children } => Node::Failover(all(self, children)),
            RouteHandle::FailoverWithExptime {
                normal,
                failover,
                failover_exptime,
                failover_errors,
            } => {
                let errors = match failover_errors {
                    None => u8::MAX,
                    Some(kinds) => kinds.iter().fold(0, |m, k| m | bit(*k)),
                };
                Node::FailoverExptime {
                    normal: self.add(normal, pool, null),
                    failover: all(self, failover),
                    exptime: i64::from(*failover_exptime),
                    errors,
                }
            }
            RouteHandle::OperationSelector {
                default_policy,
                operation_policies,
            } => {
                let default = match default_policy {
                    Some(d) => self.add(d, pool, null),
                    None => null,
                };
                let mut ops = [default; Operation::ALL.len()];
                for (op, child) in operation_policies {
                    ops[*op as usize] = self.add(child, pool, null);
                }
                Node::OpSelect(ops)
            }
            RouteHandle::PrefixSelector { policies, wildcard } => {
                let mut list: Vec<(Vec<u8>, NodeId)> = policies
                    .iter()
                    .map(|(p, c)| (p.as_bytes().to_vec(), self.add(c, pool, null)))
                    .collect();
                list.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
                Node::PrefixSelect {
                    policies: list,
                    wildcard: match wildcard {
                        Some(w) => self.add(w, pool, null),
                        None => null,
                    },
                }
            }
            RouteHandle::WarmUp {
                cold,
                warm,
                exptime,
            } => Node::WarmUp {
                cold: self.add(cold, pool, null),
                warm: self.add(warm, pool, null),
                exptime: i64::from(*exptime),
            },
            RouteHandle::Null => return null,
            RouteHandle::Error { message } => {
                let mut line = BytesMut::from(&b"SERVER_ERROR "[..]);
                line.put_slice(if message.is_empty() {
                    b"error route"
                } else {
                    message.as_bytes()
                });
                line.put_slice(b"\r\n");
                Node::Error(line.freeze())
            }
        };
        self.push(node)
    }

    /// The route of `key` and the key as its servers know it: a routing prefix that selects
    /// a route is stripped; a key without one, or with one that no alias matches, goes
    /// whole to the default route.
    pub fn route_key<'k>(&self, key: &'k [u8]) -> (Routed, &'k [u8]) {
        if key.first() == Some(&b'/') && !self.aliases.is_empty() {
            if let Some(end) = prefix_end(key) {
                let (prefix, rest) = key.split_at(end);
                if !rest.is_empty() {
                    if memchr::memchr(b'*', prefix).is_none() {
                        if let Some((_, id)) = self.aliases.iter().find(|(a, _)| a == prefix) {
                            return (Routed::One(*id), rest);
                        }
                    } else {
                        let mut ids: Vec<(bool, NodeId)> = Vec::new();
                        for (alias, id) in &self.aliases {
                            if glob(prefix, alias) && !ids.iter().any(|(_, i)| i == id) {
                                let region = alias[1..].split(|&b| b == b'/').next();
                                ids.push((region == Some(&self.default_region[..]), *id));
                            }
                        }
                        if !ids.is_empty() {
                            // The local region's route answers; stable, so config order
                            // decides among the rest.
                            ids.sort_by_key(|(local, _)| !local);
                            return (
                                Routed::Broadcast(ids.into_iter().map(|(_, i)| i).collect()),
                                rest,
                            );
                        }
                    }
                }
            }
        }
        (Routed::One(self.default), key)
    }

    /// How a get-class `op` for `key` (already stripped) is served from `node`.
    pub fn plan_get(&self, mut node: NodeId, op: Operation, key: &[u8]) -> GetPlan {
        loop {
            match &self.nodes[node] {
                Node::Pool(p) => {
                    return GetPlan::Pool {
                        pool: *p,
                        gutter: None,
                    }
                }
                Node::FailoverExptime {
                    normal,
                    failover,
                    exptime,
                    errors,
                } => {
                    if let ([g], Some(pool)) = (&failover[..], self.plain_pool(*normal, op, key)) {
                        if let Some(gutter) = self.plain_pool(*g, op, key) {
                            return GetPlan::Pool {
                                pool,
                                gutter: Some(Gutter {
                                    pool: gutter,
                                    exptime: *exptime,
                                    errors: *errors,
                                }),
                            };
                        }
                    }
                    return GetPlan::Tree(node);
                }
                _ => match self.select(node, op, key) {
                    Some(next) => node = next,
                    None => return GetPlan::Tree(node),
                },
            }
        }
    }

    /// The pool `node` leads to through selectors alone, if it does.
    fn plain_pool(&self, mut node: NodeId, op: Operation, key: &[u8]) -> Option<usize> {
        loop {
            match &self.nodes[node] {
                Node::Pool(p) => return Some(*p),
                _ => node = self.select(node, op, key)?,
            }
        }
    }

    /// The child a selector picks, without I/O; `None` for any other node.
    fn select(&self, node: NodeId, op: Operation, key: &[u8]) -> Option<NodeId> {
        match &self.nodes[node] {
            Node::OpSelect(ops) => Some(ops[op as usize]),
            Node::PrefixSelect { policies, wildcard } => Some(
                policies
                    .iter()
                    .find(|(p, _)| key.starts_with(p))
                    .map_or(*wildcard, |(_, c)| *c),
            ),
            Node::Hash { children, ring } => Some(children[ring.server_for(key)]),
            _ => None,
        }
    }

    /// The first pool reached from the default route for gets: where `flush_all` goes.
    pub fn local_pool(&self) -> Option<usize> {
        let mut stack = vec![self.default];
        while let Some(n) = stack.pop() {
            match &self.nodes[n] {
                Node::Pool(p) => return Some(*p),
                Node::OpSelect(ops) => stack.push(ops[Operation::Get as usize]),
                Node::FailoverExptime { normal, .. } => stack.push(*normal),
                Node::WarmUp { cold, .. } => stack.push(*cold),
                Node::PrefixSelect { wildcard, .. } => stack.push(*wildcard),
                Node::Hash { children, .. }
                | Node::AllSync(children)
                | Node::AllAsync(children)
                | Node::AllInitial(children)
                | Node::Failover(children) => stack.extend(children.iter().rev()),
                Node::Null | Node::Error(_) => {}
            }
        }
        None
    }
}

/// The end of a `/<region>/<cluster>/` prefix at the start of `key` (index after its last
/// slash).
fn prefix_end(key: &[u8]) -> Option<usize> {
    let second = 1 + memchr::memchr(b'/', &key[1..])?;
    let third = second + 1 + memchr::memchr(b'/', &key[second + 1..])?;
    (second > 1 && third > second + 1).then_some(third + 1)
}

/// Whether `pattern` (with `*` matching any run of bytes but `/`) matches `text`.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len())
            .take_while(|&i| i == 0 || text[i - 1] != b'/')
            .any(|i| glob(rest, &text[i..])),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

/// One single-key request on its way through the tree.
#[derive(Debug, Clone)]
pub struct Call {
    /// The client's request.
    pub request: Arc<Request>,
    /// Its operation.
    pub op: Operation,
    /// The key as servers know it.
    pub key: Bytes,
    /// The expiry to send (a failover caps it).
    pub exptime: i64,
    /// The shape of the reply.
    pub kind: ReplyKind,
}

impl Call {
    /// The operation of a request, as route handles see it.
    pub fn operation(request: &Request) -> Option<Operation> {
        use crate::protocol::{GetKind, StoreOp};
        Some(match request {
            Request::Get { kind, .. } => match kind {
                GetKind::Get => Operation::Get,
                GetKind::Gets => Operation::Gets,
                GetKind::Gat => Operation::Gat,
                GetKind::Gats => Operation::Gats,
            },
            Request::Store { op, .. } => match op {
                StoreOp::Set => Operation::Set,
                StoreOp::Add => Operation::Add,
                StoreOp::Replace => Operation::Replace,
                StoreOp::Append => Operation::Append,
                StoreOp::Prepend => Operation::Prepend,
                StoreOp::Cas => Operation::Cas,
            },
            Request::Delete { .. } => Operation::Delete,
            Request::Arith { incr: true, .. } => Operation::Incr,
            Request::Arith { incr: false, .. } => Operation::Decr,
            Request::Touch { .. } => Operation::Touch,
            Request::Meta { op, .. } => match op {
                MetaOp::Get => Operation::Get,
                MetaOp::Set => Operation::Set,
                MetaOp::Delete => Operation::Delete,
                MetaOp::Arith => Operation::Incr,
            },
            _ => return None,
        })
    }
}

/// What a destination answered.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The server that answered, if one did (not for the default replies).
    pub server: Option<usize>,
    /// The reply bytes, for the key as servers know it.
    pub bytes: Bytes,
}

/// Why no destination answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail {
    /// What went wrong, in failover terms.
    pub kind: FailoverError,
}

/// The result of a request through the tree.
pub type Outcome = Result<Reply, Fail>;

/// The reply `NullRoute` (and `AllAsyncRoute`) gives: a miss, not stored, not found.
pub fn null_reply(op: Operation, kind: ReplyKind) -> Bytes {
    let meta = kind == ReplyKind::Meta;
    Bytes::from_static(match (op.class(), op, meta) {
        (OpClass::Gets, _, false) => b"END\r\n",
        (OpClass::Gets, _, true) => b"EN\r\n",
        (_, Operation::Delete | Operation::Incr | Operation::Decr, true) => b"NF\r\n",
        (_, _, true) => b"NS\r\n",
        (_, Operation::Delete | Operation::Incr | Operation::Decr | Operation::Touch, false) => {
            b"NOT_FOUND\r\n"
        }
        _ => b"NOT_STORED\r\n",
    })
}

fn null(call: &Call) -> Outcome {
    Ok(Reply {
        server: None,
        bytes: null_reply(call.op, call.kind),
    })
}

/// Whether a get-family reply is a miss.
fn is_miss(bytes: &[u8]) -> bool {
    bytes.starts_with(b"END") || bytes.starts_with(b"EN\r")
}

/// The failover kind of an upstream error; a failure that (just) marked the server down is
/// `tko`, so that a route failing over on TKO only takes over from the very first failure
/// that knocks a server out, not one after.
pub fn fail_kind(router: &Router, id: usize, err: &UpstreamError) -> FailoverError {
    if router.servers[id].is_down() {
        return FailoverError::Tko;
    }
    match err {
        UpstreamError::Timeout => FailoverError::DataTimeout,
        UpstreamError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            FailoverError::ConnectError
        }
        _ => FailoverError::RemoteError,
    }
}

/// Sends `call` through the tree from `node`.
pub fn execute<'a>(
    router: &'a Arc<Router>,
    node: NodeId,
    call: &'a Call,
) -> BoxFuture<'a, Outcome> {
    Box::pin(async move {
        let mut node = node;
        loop {
            match &router.tree.nodes[node] {
                Node::Pool(p) => return pool_call(router, *p, call).await,
                Node::OpSelect(_) | Node::PrefixSelect { .. } | Node::Hash { .. } => {
                    // `select` answers for exactly these three.
                    node = router.tree.select(node, call.op, &call.key).unwrap_or(0);
                }
                Node::Null => return null(call),
                Node::Error(line) => {
                    return Ok(Reply {
                        server: None,
                        bytes: line.clone(),
                    })
                }
                Node::AllAsync(children) => {
                    for c in children {
                        send_async(router, *c, call);
                    }
                    return null(call);
                }
                Node::AllInitial(children) => {
                    for c in &children[1..] {
                        send_async(router, *c, call);
                    }
                    node = children[0];
                }
                Node::AllSync(children) => {
                    let replies =
                        join_all(children.iter().map(|c| execute(router, *c, call))).await;
                    return worst(replies);
                }
                Node::Failover(children) => {
                    let mut last = Err(Fail {
                        kind: FailoverError::Tko,
                    });
                    for (i, c) in children.iter().enumerate() {
                        if i > 0 {
                            router.metrics.failovers.inc();
                        }
                        last = execute(router, *c, call).await;
                        if last.is_ok() {
                            break;
                        }
                    }
                    return last;
                }
                Node::FailoverExptime {
                    normal,
                    failover,
                    exptime,
                    errors,
                } => {
                    let first = execute(router, *normal, call).await;
                    let fail = match first {
                        Err(f) if errors & bit(f.kind) != 0 => f,
                        other => return other,
                    };
                    router.metrics.failovers.inc();
                    let capped = Call {
                        exptime: cap_exptime(call.exptime, *exptime),
                        ..call.clone()
                    };
                    let mut last = Err(fail);
                    for c in failover {
                        last = execute(router, *c, &capped).await;
                        if last.is_ok() {
                            break;
                        }
                    }
                    return last;
                }
                Node::WarmUp {
                    cold,
                    warm,
                    exptime,
                } => {
                    if call.op.class() != OpClass::Gets {
                        node = *cold;
                        continue;
                    }
                    let from_cold = execute(router, *cold, call).await;
                    if matches!(&from_cold, Ok(r) if !is_miss(&r.bytes)) {
                        return from_cold;
                    }
                    let from_warm = execute(router, *warm, call).await;
                    match &from_warm {
                        Ok(r) if !is_miss(&r.bytes) => {
                            warm_up(router, *cold, call, &r.bytes, *exptime);
                            return from_warm;
                        }
                        // A miss in both: the cold one's answer (or the warm one's, when
                        // the cold one failed).
                        _ => {
                            return if from_cold.is_ok() {
                                from_cold
                            } else {
                                from_warm
                            }
                        }
                    }
                }
            }
        }
    })
}

/// The reply of an `AllSyncRoute`: a failure if any child failed, else a server's error
/// line if any, else the first child's reply.
fn worst(replies: Vec<Outcome>) -> Outcome {
    let mut first = None;
    let mut error_line = None;
    for r in replies {
        match r {
            Err(f) => return Err(f),
            Ok(reply) => {
                if error_line.is_none() && reply.bytes.starts_with(b"SERVER_ERROR") {
                    error_line = Some(reply.clone());
                }
                first.get_or_insert(reply);
            }
        }
    }
    match (error_line, first) {
        (Some(e), _) => Ok(e),
        (None, Some(f)) => Ok(f),
        (None, None) => Err(Fail {
            kind: FailoverError::Tko,
        }),
    }
}

/// `call` to its key's server in pool `p`.
async fn pool_call(router: &Router, p: usize, call: &Call) -> Outcome {
    let pool = &router.pools[p];
    let id = pool.server_for(&call.key);
    let server = &router.servers[id];
    if server.is_down() {
        pool.metrics.errors.inc();
        return Err(Fail {
            kind: FailoverError::Tko,
        });
    }
    let start = std::time::Instant::now();
    let mut buf = BytesMut::with_capacity(call.key.len() + 64);
    encode_request(&call.request, &call.key, call.exptime, &mut buf);
    let result = call_server(router, id, buf.freeze(), call.kind).await;
    pool.metrics.observe(start.elapsed());
    match result {
        Ok(bytes) => {
            if call.op.class() == OpClass::Gets {
                let (counter, server_counter) = if is_miss(&bytes) {
                    (&pool.metrics.misses, &server.metrics.misses)
                } else {
                    (&pool.metrics.hits, &server.metrics.hits)
                };
                counter.inc();
                server_counter.inc();
            }
            Ok(Reply {
                server: Some(id),
                bytes,
            })
        }
        Err(err) => {
            pool.metrics.errors.inc();
            Err(Fail {
                kind: fail_kind(router, id, &err),
            })
        }
    }
}

/// Sends `call` from `node` in the background. A pool's requests go through the pool's
/// bounded queue (see [`replicate`]); anything else is a task of its own.
pub fn send_async(router: &Arc<Router>, node: NodeId, call: &Call) {
    if let Node::Pool(p) = &router.tree.nodes[node] {
        let id = router.pools[*p].server_for(&call.key);
        let mut buf = BytesMut::with_capacity(call.key.len() + 64);
        encode_request(&call.request, &call.key, call.exptime, &mut buf);
        replicate::enqueue(router, id, buf.freeze(), call.kind);
        return;
    }
    let router = Arc::clone(router);
    let call = call.clone();
    tokio::spawn(async move {
        let _ = execute(&router, node, &call).await;
    });
}

/// Copies a value found in the warm destination into the cold one, in the background, with
/// `add` (never over a value the cold one got meanwhile). Only text get replies carry what an
/// `add` needs; meta replies are not copied.
fn warm_up(router: &Arc<Router>, cold: NodeId, call: &Call, reply: &Bytes, exptime: i64) {
    if call.kind != ReplyKind::Values {
        return;
    }
    let (values, _) = split_values(reply);
    let Some(value) = values.into_iter().next() else {
        return;
    };
    // rest = " <flags> <bytes>[ <cas>]\r\n"
    let flags = value
        .rest
        .split(|&b| b == b' ')
        .find(|t| !t.is_empty())
        .and_then(|t| std::str::from_utf8(t).ok()?.parse::<u32>().ok())
        .unwrap_or(0);
    let data = value.data.slice(..value.data.len().saturating_sub(2));
    let request = Request::Store {
        op: crate::protocol::StoreOp::Add,
        key: call.key.clone(),
        flags,
        exptime,
        cas: 0,
        data,
        noreply: false,
    };
    let add = Call {
        request: Arc::new(request),
        op: Operation::Add,
        key: call.key.clone(),
        exptime,
        kind: ReplyKind::Line,
    };
    send_async(router, cold, &add);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_a_segment() {
        assert!(glob(b"/*/mw-wan/", b"/eqiad/mw-wan/"));
        assert!(glob(b"/*/*/", b"/codfw/mw/"));
        assert!(!glob(b"/*/mw-wan/", b"/eqiad/mw/"));
        assert!(glob(b"/eq*/mw/", b"/eqiad/mw/"));
        assert!(!glob(b"/*/", b"/a/b/"));
    }

    #[test]
    fn prefixes_end_after_the_third_slash() {
        assert_eq!(prefix_end(b"/a/b/key"), Some(5));
        assert_eq!(prefix_end(b"//b/key"), None);
        assert_eq!(prefix_end(b"/a//key"), None);
        assert_eq!(prefix_end(b"/a/key"), None);
    }

    #[test]
    fn failover_ttl_is_capped() {
        assert_eq!(cap_exptime(0, 10), 10);
        assert_eq!(cap_exptime(5, 10), 5);
        assert_eq!(cap_exptime(3600, 10), 10);
        assert_eq!(cap_exptime(-1, 10), -1);
    }
}
