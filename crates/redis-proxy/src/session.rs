//! One client connection's commands: where each goes, what the proxy answers itself, and how
//! the answers of a command cut by server are put back together.
//!
//! A batch of commands read together is *dispatched* first, each queued at once on its
//! server's connection (so a pipelining client's commands travel to the servers together, in
//! order per server), and then *resolved* in the client's order: every reply is written in
//! the order the commands came, whichever server answers first.

use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::command::{lookup, upper, Keys, Kind, Local, Merge};
use crate::failover::{record_failure, record_success};
use crate::pool::{JobResult, Unavailable, UpstreamError};
use crate::proxy::Proxy;
use crate::resp::{
    array_elements, encode_command, integer, parse_int, write_array_header, write_bulk,
    write_error, write_integer, ReplyScanner,
};

/// Whether the connection goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Read the next command.
    Continue,
    /// Answer what is pending, then close (`QUIT`).
    Close,
}

/// One command as the client sent it.
#[derive(Debug, Clone, Copy)]
pub struct Cmd<'a> {
    /// The request's bytes.
    pub frame: &'a Bytes,
    /// Where its arguments are in `frame`.
    pub args: &'a [Range<usize>],
    /// Whether it came inline (then it is encoded as multibulk before it is forwarded).
    pub inline: bool,
}

impl Cmd<'_> {
    fn arg(&self, i: usize) -> &[u8] {
        &self.frame[self.args[i].clone()]
    }

    fn len(&self) -> usize {
        self.args.len()
    }

    /// The bytes to send a server: the client's own, unless they came inline.
    fn forward(&self) -> Bytes {
        if !self.inline {
            return self.frame.clone();
        }
        let mut out = BytesMut::with_capacity(self.frame.len() + 16 * self.len());
        encode_command(&mut out, self.args.iter().map(|r| &self.frame[r.clone()]));
        out.freeze()
    }

    /// The command's name for messages, lower case as Redis writes it.
    fn name(&self) -> String {
        let name = self.arg(0);
        String::from_utf8_lossy(&name[..name.len().min(32)]).to_lowercase()
    }
}

type Reply = oneshot::Receiver<JobResult>;

/// What `SCRIPT` subcommand a broadcast was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broadcast {
    /// `SCRIPT LOAD`: every server's SHA1, which must agree.
    Load,
    /// `SCRIPT EXISTS`: 1 for a script only if every server has it.
    Exists,
    /// `SCRIPT FLUSH`: `+OK` from every server.
    Flush,
}

/// A command's answer, ready or on its way.
#[derive(Debug)]
pub enum Pending {
    /// Answered by the proxy.
    Ready(Bytes),
    /// One server's reply, relayed as it is.
    One {
        /// The server.
        id: usize,
        /// Its reply.
        rx: Reply,
    },
    /// A transaction: the reply of its `EXEC`, the last of `skip + 1` replies.
    Exec {
        /// The server.
        id: usize,
        /// Its replies.
        rx: Reply,
        /// Replies before `EXEC`'s (`MULTI`'s and each `QUEUED`).
        skip: u32,
    },
    /// A command cut by server.
    Split {
        /// How to put the parts back together.
        merge: Merge,
        /// Each part's server and reply.
        parts: Vec<(usize, Reply)>,
        /// For `MGET`, the part holding each key, in the client's order.
        slots: Vec<u32>,
    },
    /// A `SCRIPT` command sent to every server.
    Broadcast {
        /// Which subcommand.
        what: Broadcast,
        /// Each server and its reply.
        parts: Vec<(usize, Reply)>,
    },
}

/// Why a command cannot be sent.
#[derive(Debug)]
enum RouteError {
    WrongArgs,
    CrossServer,
    Unavailable(Unavailable),
    Message(String),
}

/// A transaction being queued.
#[derive(Debug, Default)]
struct Multi {
    /// The queued commands, encoded.
    queued: BytesMut,
    /// How many.
    count: u32,
    /// The server its keyed commands go to.
    server: Option<usize>,
    /// A command was refused: `EXEC` must abort, as Redis's would.
    failed: bool,
}

/// One client connection's state.
#[derive(Debug)]
pub struct Session {
    proxy: Arc<Proxy>,
    /// The pool this client reached by its listening address.
    pool: usize,
    id: u64,
    authed: bool,
    name: Option<Bytes>,
    multi: Option<Multi>,
}

const OK: &[u8] = b"+OK\r\n";

fn ready(bytes: &'static [u8]) -> Pending {
    Pending::Ready(Bytes::from_static(bytes))
}

/// Writes a ready answer straight out when nothing before it is still on its way.
fn push(pending: &mut Vec<Pending>, out: &mut BytesMut, p: Pending) {
    match p {
        Pending::Ready(bytes) if pending.is_empty() => out.put_slice(&bytes),
        p => pending.push(p),
    }
}

impl Session {
    /// A session for a client of `pool`.
    pub fn new(proxy: Arc<Proxy>, pool: usize) -> Session {
        let id = proxy.next_client_id.fetch_add(1, Ordering::Relaxed);
        let authed = proxy.client_password.is_none();
        Session {
            proxy,
            pool,
            id,
            authed,
            name: None,
            multi: None,
        }
    }

    fn error(&self, message: &str) -> Pending {
        self.proxy.pools[self.pool].metrics.refused.inc();
        let mut out = BytesMut::with_capacity(message.len() + 3);
        write_error(&mut out, message);
        Pending::Ready(out.freeze())
    }

    fn route_error(&self, cmd: &Cmd, err: RouteError) -> Pending {
        let pool = &self.proxy.pools[self.pool];
        let message = match err {
            RouteError::WrongArgs => {
                format!("ERR wrong number of arguments for '{}' command", cmd.name())
            }
            RouteError::CrossServer => format!(
                "ERR the keys of '{}' are on different servers of pool {}: the proxy cannot \
                 run it (keys sharing a hash tag share a server)",
                cmd.name(),
                pool.name
            ),
            RouteError::Unavailable(unavailable) => self.unavailable(unavailable),
            RouteError::Message(m) => m,
        };
        self.error(&message)
    }

    fn unavailable(&self, unavailable: Unavailable) -> String {
        let pool = &self.proxy.pools[self.pool];
        match unavailable {
            Unavailable::Down(id) => format!(
                "ERR server {} of pool {} is marked down: its keys are unavailable until it \
                 answers again",
                self.proxy.servers[id].addr, pool.name
            ),
            Unavailable::AllDown => {
                format!("ERR every server of pool {} is marked down", pool.name)
            }
        }
    }

    /// The one server that holds the keys at `positions`.
    fn route(
        &self,
        cmd: &Cmd,
        positions: Option<impl Iterator<Item = usize>>,
    ) -> Result<usize, RouteError> {
        let pool = &self.proxy.pools[self.pool];
        let mut target = None;
        for p in positions.ok_or(RouteError::WrongArgs)? {
            let id = pool
                .target(&self.proxy.servers, cmd.arg(p))
                .map_err(RouteError::Unavailable)?;
            if target.is_some_and(|t| t != id) {
                return Err(RouteError::CrossServer);
            }
            target = Some(id);
        }
        target.ok_or(RouteError::WrongArgs)
    }

    /// The keys of `EVAL script numkeys key... arg...`, checked as Redis would.
    fn script_keys(cmd: &Cmd) -> Result<Range<usize>, RouteError> {
        if cmd.len() < 3 {
            return Err(RouteError::WrongArgs);
        }
        let message = |m: &str| Err(RouteError::Message(m.to_string()));
        match parse_int(cmd.arg(2)) {
            None => message("ERR value is not an integer or out of range"),
            Some(n) if n < 0 => message("ERR Number of keys can't be negative"),
            Some(n) if n as u64 > (cmd.len() - 3) as u64 => {
                message("ERR Number of keys can't be greater than number of args")
            }
            Some(0) => message(&format!(
                "ERR '{}' without keys cannot be routed by the proxy: pass the keys the script \
                 uses as its KEYS",
                cmd.name()
            )),
            Some(n) => Ok(3..3 + n as usize),
        }
    }

    fn send(&self, id: usize, request: Bytes) -> Pending {
        Pending::One {
            id,
            rx: self.proxy.connections[id].submit(request, 1),
        }
    }

    /// Dispatches one command: answers it, or queues it on its servers' connections and adds
    /// what will answer it to `pending`.
    pub fn dispatch(&mut self, cmd: &Cmd, pending: &mut Vec<Pending>, out: &mut BytesMut) -> Flow {
        self.proxy.pools[self.pool].metrics.commands.inc();
        let mut buf = [0; 24];
        let kind = upper(cmd.arg(0), &mut buf).and_then(lookup);
        if !self.authed
            && !matches!(
                kind,
                Some(Kind::Local(Local::Auth | Local::Hello | Local::Quit))
            )
        {
            push(pending, out, self.error("NOAUTH Authentication required."));
            return Flow::Continue;
        }
        if self.multi.is_some()
            && !matches!(
                kind,
                Some(Kind::Local(
                    Local::Exec | Local::Discard | Local::Multi | Local::Quit
                ))
            )
        {
            let p = self.queue(cmd, kind);
            push(pending, out, p);
            return Flow::Continue;
        }
        let p = match kind {
            Some(Kind::Keyed(keys)) => match self.route(cmd, keys.positions(cmd.len())) {
                Ok(id) => self.send(id, cmd.forward()),
                Err(err) => self.route_error(cmd, err),
            },
            Some(Kind::Split(keys, merge)) => self.split(cmd, keys, merge),
            Some(Kind::Script) => {
                match Self::script_keys(cmd).and_then(|r| self.route(cmd, Some(r))) {
                    Ok(id) => self.send(id, cmd.forward()),
                    Err(err) => self.route_error(cmd, err),
                }
            }
            Some(Kind::Local(local)) => return self.local(local, cmd, pending, out),
            Some(Kind::Refused(reason)) => self.error(&format!(
                "ERR '{}' is not supported by the proxy: it {reason}",
                cmd.name()
            )),
            None => self.unknown(cmd),
        };
        push(pending, out, p);
        Flow::Continue
    }

    fn unknown(&self, cmd: &Cmd) -> Pending {
        self.error(&format!(
            "ERR unknown command '{}': the proxy routes only the commands it knows the keys of \
             (see docs/redis-proxy.md)",
            cmd.name()
        ))
    }

    /// A multi-key command cut by server; sent whole when its keys share a server.
    fn split(&self, cmd: &Cmd, keys: Keys, merge: Merge) -> Pending {
        let Some(positions) = keys.positions(cmd.len()) else {
            return self.route_error(cmd, RouteError::WrongArgs);
        };
        let pool = &self.proxy.pools[self.pool];
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        let mut slots = Vec::new();
        for p in positions {
            let id = match pool.target(&self.proxy.servers, cmd.arg(p)) {
                Ok(id) => id,
                Err(err) => return self.route_error(cmd, RouteError::Unavailable(err)),
            };
            let group = match groups.iter().position(|(g, _)| *g == id) {
                Some(g) => g,
                None => {
                    groups.push((id, Vec::new()));
                    groups.len() - 1
                }
            };
            groups[group].1.push(p);
            if merge == Merge::Values {
                slots.push(group as u32);
            }
        }
        if let [(id, _)] = groups[..] {
            return self.send(id, cmd.forward());
        }
        let parts = groups
            .iter()
            .map(|(id, positions)| {
                let mut request = BytesMut::new();
                let args = std::iter::once(0)
                    .chain(positions.iter().flat_map(|&p| p..p + keys.step))
                    .map(|i| cmd.arg(i));
                let n = 1 + positions.len() * keys.step;
                encode_command(&mut request, ExactLen(args, n));
                (*id, self.proxy.connections[*id].submit(request.freeze(), 1))
            })
            .collect();
        Pending::Split {
            merge,
            parts,
            slots,
        }
    }

    /// Queues a command inside `MULTI`.
    fn queue(&mut self, cmd: &Cmd, kind: Option<Kind>) -> Pending {
        let target = match kind {
            Some(Kind::Keyed(keys) | Kind::Split(keys, _)) => {
                self.route(cmd, keys.positions(cmd.len())).map(Some)
            }
            Some(Kind::Script) => Self::script_keys(cmd)
                .and_then(|r| self.route(cmd, Some(r)))
                .map(Some),
            Some(Kind::Local(Local::Ping | Local::Echo)) => Ok(None),
            Some(Kind::Local(_)) => Err(RouteError::Message(format!(
                "ERR '{}' inside MULTI is not supported by the proxy",
                cmd.name()
            ))),
            Some(Kind::Refused(reason)) => Err(RouteError::Message(format!(
                "ERR '{}' is not supported by the proxy: it {reason}",
                cmd.name()
            ))),
            None => {
                if let Some(multi) = &mut self.multi {
                    multi.failed = true;
                }
                return self.unknown(cmd);
            }
        };
        let servers = &self.proxy.servers;
        let Some(multi) = &mut self.multi else {
            return ready(b"-ERR internal: no transaction\r\n");
        };
        let message = match target {
            Err(err) => {
                multi.failed = true;
                return self.route_error(cmd, err);
            }
            Ok(Some(id)) if multi.server.is_some_and(|s| s != id) => format!(
                "ERR MULTI/EXEC across servers is not supported by the proxy: '{}' goes to {}, \
                 the transaction's other commands to {}",
                cmd.name(),
                servers[id].addr,
                multi.server.map_or("", |s| servers[s].addr.as_str())
            ),
            Ok(target) => {
                if target.is_some() {
                    multi.server = target;
                }
                multi.queued.extend_from_slice(&cmd.forward());
                multi.count += 1;
                return ready(b"+QUEUED\r\n");
            }
        };
        multi.failed = true;
        self.error(&message)
    }

    /// Commands the proxy answers itself.
    fn local(
        &mut self,
        local: Local,
        cmd: &Cmd,
        pending: &mut Vec<Pending>,
        out: &mut BytesMut,
    ) -> Flow {
        let wrong_args = |s: &Self| s.route_error(cmd, RouteError::WrongArgs);
        let p = match local {
            Local::Ping => match cmd.len() {
                1 => ready(b"+PONG\r\n"),
                2 => bulk(cmd.arg(1)),
                _ => wrong_args(self),
            },
            Local::Echo if cmd.len() == 2 => bulk(cmd.arg(1)),
            Local::Echo => wrong_args(self),
            Local::Quit => {
                push(pending, out, ready(OK));
                return Flow::Close;
            }
            Local::Auth => match cmd.len() {
                2 => self.auth(None, cmd.arg(1)),
                3 => self.auth(Some(cmd.arg(1)), cmd.arg(2)),
                _ => wrong_args(self),
            },
            Local::Hello => self.hello(cmd),
            Local::Select => match cmd.len() {
                2 if cmd.arg(1) == b"0" => ready(OK),
                2 => self.error("ERR the proxy serves database 0 only"),
                _ => wrong_args(self),
            },
            Local::Client => self.client(cmd),
            Local::Info => bulk(self.info().as_bytes()),
            Local::Multi if self.multi.is_some() => self.error("ERR MULTI calls can not be nested"),
            Local::Multi => {
                self.multi = Some(Multi::default());
                ready(OK)
            }
            Local::Discard => match self.multi.take() {
                Some(_) => ready(OK),
                None => self.error("ERR DISCARD without MULTI"),
            },
            Local::Exec => self.exec(),
            Local::Script => self.script(cmd),
        };
        push(pending, out, p);
        Flow::Continue
    }

    fn auth(&mut self, user: Option<&[u8]>, password: &[u8]) -> Pending {
        let Some(expected) = &self.proxy.client_password else {
            return self.error(
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
            );
        };
        if user.is_some_and(|u| u != b"default") || !expected.matches(password) {
            return self.error("WRONGPASS invalid username-password pair or user is disabled.");
        }
        self.authed = true;
        ready(OK)
    }

    /// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
    fn hello(&mut self, cmd: &Cmd) -> Pending {
        if cmd.len() >= 2 {
            match parse_int(cmd.arg(1)) {
                Some(2) => {}
                Some(3) => {
                    return self.error(
                        "NOPROTO sorry, the proxy speaks RESP2 only: use HELLO 2, or no HELLO",
                    )
                }
                _ => return self.error("NOPROTO unsupported protocol version"),
            }
        }
        let mut i = 2;
        while i < cmd.len() {
            let mut buf = [0; 24];
            match upper(cmd.arg(i), &mut buf) {
                Some(b"AUTH") if i + 2 < cmd.len() => {
                    if let Pending::Ready(reply) = self.auth(Some(cmd.arg(i + 1)), cmd.arg(i + 2)) {
                        if reply.starts_with(b"-") {
                            return Pending::Ready(reply);
                        }
                    }
                    i += 3;
                }
                Some(b"SETNAME") if i + 1 < cmd.len() => {
                    self.name = Some(Bytes::copy_from_slice(cmd.arg(i + 1)));
                    i += 2;
                }
                _ => {
                    return self.error(&format!(
                        "ERR syntax error in HELLO option '{}'",
                        String::from_utf8_lossy(cmd.arg(i))
                    ))
                }
            }
        }
        if !self.authed {
            return self.error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise \
                 the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the \
                 client and select the RESP protocol version at the same time",
            );
        }
        let mut out = BytesMut::with_capacity(160);
        write_array_header(&mut out, 14);
        for (key, value) in [
            ("server", "wikikube-redis-proxy"),
            ("version", env!("CARGO_PKG_VERSION")),
        ] {
            write_bulk(&mut out, key.as_bytes());
            write_bulk(&mut out, value.as_bytes());
        }
        write_bulk(&mut out, b"proto");
        write_integer(&mut out, 2);
        write_bulk(&mut out, b"id");
        write_integer(&mut out, self.id as i64);
        for (key, value) in [("mode", "proxy"), ("role", "master")] {
            write_bulk(&mut out, key.as_bytes());
            write_bulk(&mut out, value.as_bytes());
        }
        write_bulk(&mut out, b"modules");
        write_array_header(&mut out, 0);
        Pending::Ready(out.freeze())
    }

    /// `CLIENT SETNAME | GETNAME | SETINFO | ID`: the connection's own, kept by the proxy.
    fn client(&mut self, cmd: &Cmd) -> Pending {
        let mut buf = [0; 24];
        let sub = if cmd.len() >= 2 {
            upper(cmd.arg(1), &mut buf)
        } else {
            None
        };
        match (sub, cmd.len()) {
            (Some(b"SETNAME"), 3) => {
                self.name = Some(Bytes::copy_from_slice(cmd.arg(2)));
                ready(OK)
            }
            (Some(b"GETNAME"), 2) => match &self.name {
                Some(name) => bulk(name),
                None => ready(b"$-1\r\n"),
            },
            // Client libraries announce themselves with SETINFO; nothing to keep.
            (Some(b"SETINFO"), 4) => ready(OK),
            (Some(b"ID"), 2) => {
                let mut out = BytesMut::new();
                write_integer(&mut out, self.id as i64);
                Pending::Ready(out.freeze())
            }
            (Some(b"SETNAME" | b"GETNAME" | b"SETINFO" | b"ID"), _) | (None, _) => {
                self.route_error(cmd, RouteError::WrongArgs)
            }
            (Some(sub), _) => self.error(&format!(
                "ERR 'client {}' is not supported by the proxy: the connection behind it is \
                 shared between clients",
                String::from_utf8_lossy(sub).to_lowercase()
            )),
        }
    }

    fn info(&self) -> String {
        let pool = &self.proxy.pools[self.pool];
        let servers = &self.proxy.servers;
        let up = pool
            .servers
            .iter()
            .filter(|&&id| !servers[id].is_down())
            .count();
        let mut text = format!(
            "# Proxy\r\nproxy:wikikube-redis-proxy\r\nproxy_version:{}\r\nredis_mode:proxy\r\n\
             pool:{}\r\nservers:{}\r\nservers_up:{up}\r\nconnected_clients:{}\r\n\r\n# Servers\r\n",
            env!("CARGO_PKG_VERSION"),
            pool.name,
            pool.servers.len(),
            self.proxy.metrics.connections.get(),
        );
        for (i, &id) in pool.servers.iter().enumerate() {
            let s = &servers[id];
            text.push_str(&format!(
                "server{i}:addr={},up={}\r\n",
                s.addr,
                u8::from(!s.is_down())
            ));
        }
        text
    }

    fn exec(&mut self) -> Pending {
        let Some(multi) = self.multi.take() else {
            return self.error("ERR EXEC without MULTI");
        };
        if multi.failed {
            return self.error("EXECABORT Transaction discarded because of previous errors.");
        }
        if multi.count == 0 {
            return ready(b"*0\r\n");
        }
        let pool = &self.proxy.pools[self.pool];
        let servers = &self.proxy.servers;
        let id = match multi.server {
            Some(id) if servers[id].is_down() => {
                return self.error(&self.unavailable(Unavailable::Down(id)))
            }
            Some(id) => id,
            // Only keyless commands (PING, ECHO): any server that is up can run them.
            None => match pool.servers.iter().find(|&&id| !servers[id].is_down()) {
                Some(&id) => id,
                None => return self.error(&self.unavailable(Unavailable::AllDown)),
            },
        };
        let mut request = BytesMut::with_capacity(multi.queued.len() + 32);
        request.put_slice(b"*1\r\n$5\r\nMULTI\r\n");
        request.put_slice(&multi.queued);
        request.put_slice(b"*1\r\n$4\r\nEXEC\r\n");
        // The whole transaction is one job: its bytes are written together on the shared
        // connection, so no other client's command can fall between MULTI and EXEC.
        Pending::Exec {
            id,
            rx: self.proxy.connections[id].submit(request.freeze(), multi.count + 2),
            skip: multi.count + 1,
        }
    }

    /// `SCRIPT LOAD | EXISTS | FLUSH`, to every server of the pool that is up.
    fn script(&self, cmd: &Cmd) -> Pending {
        let mut buf = [0; 24];
        let sub = if cmd.len() >= 2 {
            upper(cmd.arg(1), &mut buf)
        } else {
            None
        };
        let what = match (sub, cmd.len()) {
            (Some(b"LOAD"), 3) => Broadcast::Load,
            (Some(b"EXISTS"), n) if n >= 3 => Broadcast::Exists,
            (Some(b"FLUSH"), 2 | 3) => Broadcast::Flush,
            (Some(b"LOAD" | b"EXISTS" | b"FLUSH"), _) | (None, _) => {
                return self.route_error(cmd, RouteError::WrongArgs)
            }
            (Some(sub), _) => {
                return self.error(&format!(
                    "ERR 'script {}' is not supported by the proxy: it administers one server: \
                     connect to that server itself",
                    String::from_utf8_lossy(sub).to_lowercase()
                ))
            }
        };
        let pool = &self.proxy.pools[self.pool];
        let request = cmd.forward();
        let parts: Vec<(usize, Reply)> = pool
            .servers
            .iter()
            .filter(|&&id| !self.proxy.servers[id].is_down())
            .map(|&id| (id, self.proxy.connections[id].submit(request.clone(), 1)))
            .collect();
        if parts.is_empty() {
            return self.error(&self.unavailable(Unavailable::AllDown));
        }
        Pending::Broadcast { what, parts }
    }

    /// Waits for one server's reply, keeping its health. (The connection task counts the
    /// request and its latency.)
    async fn wait(&self, id: usize, rx: Reply) -> Result<Bytes, String> {
        let result = rx.await.unwrap_or(Err(UpstreamError::Closed));
        let server = &self.proxy.servers[id];
        match result {
            Ok(reply) => {
                record_success(server);
                Ok(reply)
            }
            Err(err) => {
                tracing::debug!(server = %server.addr, %err, "request failed");
                record_failure(&self.proxy, id, &err);
                Err(format!(
                    "ERR server {} of pool {}: {err}",
                    server.addr, server.pool
                ))
            }
        }
    }

    /// Waits for every part's reply (all of them, so each server's health is kept), and
    /// returns them, or the first failure.
    async fn wait_all(&self, parts: Vec<(usize, Reply)>) -> Result<Vec<Bytes>, String> {
        let mut replies = Vec::with_capacity(parts.len());
        let mut failure = None;
        for (id, rx) in parts {
            match self.wait(id, rx).await {
                Ok(reply) => replies.push(reply),
                Err(err) => {
                    failure.get_or_insert(err);
                }
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(replies),
        }
    }

    /// Writes the answer of `pending` to `out` once it is there.
    pub async fn resolve(&self, pending: Pending, out: &mut BytesMut) {
        let result = match pending {
            Pending::Ready(bytes) => {
                out.put_slice(&bytes);
                return;
            }
            Pending::One { id, rx } => self.wait(id, rx).await.map(|reply| {
                out.put_slice(&reply);
            }),
            Pending::Exec { id, rx, skip } => self.wait(id, rx).await.and_then(|reply| {
                match ReplyScanner::new(skip).scan(&reply) {
                    Ok(Some(n)) => {
                        out.put_slice(&reply[n..]);
                        Ok(())
                    }
                    _ => Err("ERR malformed transaction reply".to_string()),
                }
            }),
            Pending::Split {
                merge,
                parts,
                slots,
            } => match self.wait_all(parts).await {
                Ok(replies) => merge_replies(merge, &replies, &slots, out),
                Err(err) => Err(err),
            },
            Pending::Broadcast { what, parts } => match self.wait_all(parts).await {
                Ok(replies) => merge_broadcast(what, &replies, out),
                Err(err) => Err(err),
            },
        };
        if let Err(message) = result {
            write_error(out, &message);
        }
    }
}

fn bulk(value: &[u8]) -> Pending {
    let mut out = BytesMut::with_capacity(value.len() + 16);
    write_bulk(&mut out, value);
    Pending::Ready(out.freeze())
}

/// An iterator with a known length (`encode_command` writes the count first).
struct ExactLen<I>(I, usize);

impl<I: Iterator> Iterator for ExactLen<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let item = self.0.next()?;
        self.1 = self.1.saturating_sub(1);
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactLen<I> {}

const BAD_PART: &str = "ERR a server's answer to part of the command was not what it should be";

/// Puts the answers of a command cut by server back together.
fn merge_replies(
    merge: Merge,
    replies: &[Bytes],
    slots: &[u32],
    out: &mut BytesMut,
) -> Result<(), String> {
    // An error from any server (`WRONGTYPE`, `OOM`) is the answer, as Redis would give it.
    if let Some(err) = replies.iter().find(|r| r.first() == Some(&b'-')) {
        out.put_slice(err);
        return Ok(());
    }
    match merge {
        Merge::Sum => {
            let mut sum = 0i64;
            for r in replies {
                sum += integer(r).ok_or(BAD_PART)?;
            }
            write_integer(out, sum);
        }
        Merge::Ok => {
            if replies.iter().any(|r| &r[..] != OK) {
                return Err(BAD_PART.into());
            }
            out.put_slice(OK);
        }
        Merge::Values => {
            let elements: Vec<Vec<Range<usize>>> = replies
                .iter()
                .map(|r| array_elements(r).ok_or(BAD_PART))
                .collect::<Result<_, _>>()?;
            let mut next = vec![0usize; replies.len()];
            write_array_header(out, slots.len());
            for &part in slots {
                let part = part as usize;
                let range = elements[part].get(next[part]).ok_or(BAD_PART)?;
                next[part] += 1;
                out.put_slice(&replies[part][range.clone()]);
            }
        }
    }
    Ok(())
}

/// Puts the answers of a `SCRIPT` command sent to every server back together.
fn merge_broadcast(what: Broadcast, replies: &[Bytes], out: &mut BytesMut) -> Result<(), String> {
    if let Some(err) = replies.iter().find(|r| r.first() == Some(&b'-')) {
        out.put_slice(err);
        return Ok(());
    }
    match what {
        // Every server answers with the script's SHA1, the same one.
        Broadcast::Load => {
            if replies.windows(2).any(|w| w[0] != w[1]) {
                return Err("ERR the servers disagree on the script's SHA1".into());
            }
            out.put_slice(&replies[0]);
        }
        Broadcast::Flush => {
            if replies.iter().any(|r| &r[..] != OK) {
                return Err(BAD_PART.into());
            }
            out.put_slice(OK);
        }
        // A script exists for the proxy when every server has it.
        Broadcast::Exists => {
            let elements: Vec<Vec<Range<usize>>> = replies
                .iter()
                .map(|r| array_elements(r).ok_or(BAD_PART))
                .collect::<Result<_, _>>()?;
            let n = elements[0].len();
            if elements.iter().any(|e| e.len() != n) {
                return Err(BAD_PART.into());
            }
            write_array_header(out, n);
            for i in 0..n {
                let all = replies
                    .iter()
                    .zip(&elements)
                    .all(|(r, e)| integer(&r[e[i].clone()]) == Some(1));
                write_integer(out, i64::from(all));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mget_answers_come_back_in_the_clients_order() {
        let replies = [
            Bytes::from_static(b"*2\r\n$1\r\na\r\n$-1\r\n"),
            Bytes::from_static(b"*1\r\n$1\r\nc\r\n"),
        ];
        let mut out = BytesMut::new();
        merge_replies(Merge::Values, &replies, &[0, 1, 0], &mut out).unwrap();
        assert_eq!(&out[..], b"*3\r\n$1\r\na\r\n$1\r\nc\r\n$-1\r\n");
        let mut out = BytesMut::new();
        let short = merge_replies(Merge::Values, &replies, &[1, 1], &mut out).unwrap_err();
        assert_eq!(short, BAD_PART);
    }

    #[test]
    fn counts_add_up_and_errors_win() {
        let mut out = BytesMut::new();
        let replies = [Bytes::from_static(b":2\r\n"), Bytes::from_static(b":3\r\n")];
        merge_replies(Merge::Sum, &replies, &[], &mut out).unwrap();
        assert_eq!(&out[..], b":5\r\n");
        let mut out = BytesMut::new();
        let replies = [
            Bytes::from_static(b"+OK\r\n"),
            Bytes::from_static(b"-OOM no\r\n"),
        ];
        merge_replies(Merge::Ok, &replies, &[], &mut out).unwrap();
        assert_eq!(&out[..], b"-OOM no\r\n");
    }

    #[test]
    fn script_exists_needs_every_server() {
        let mut out = BytesMut::new();
        let replies = [
            Bytes::from_static(b"*2\r\n:1\r\n:1\r\n"),
            Bytes::from_static(b"*2\r\n:0\r\n:1\r\n"),
        ];
        merge_broadcast(Broadcast::Exists, &replies, &mut out).unwrap();
        assert_eq!(&out[..], b"*2\r\n:0\r\n:1\r\n");
    }
}
