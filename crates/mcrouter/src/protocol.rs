//! The memcached text protocol: client requests in, server replies out.
//!
//! [`parse_request`] turns the bytes a client sent into one [`Request`] at a time, or a
//! [`ProtocolError`] carrying the exact reply memcached would give. [`encode_request`] writes a
//! request (with its key rewritten) for a server, and [`reply_len`] finds where a server's reply
//! ends so replies are never split or merged between clients.
//!
//! Written by hand: the memcached crates on crates.io are clients, not servers, and none parses
//! the request side of the text and meta protocols incrementally from a buffer.
//!
//! One deliberate difference from memcached: when a storage command's line is bad but its data
//! length is readable, the data block is skipped too, so value bytes are never run as commands.

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::Limits;

/// Longest command line accepted before the data block. memcached allows 2048 bytes for most
/// commands but much longer multi-key gets; 64 KiB holds ~250 keys of full length.
pub const MAX_LINE: usize = 64 * 1024;

/// Which command of the get family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetKind {
    /// `get`
    Get,
    /// `gets` (with CAS values)
    Gets,
    /// `gat` (get and touch)
    Gat,
    /// `gats` (get and touch, with CAS values)
    Gats,
}

impl GetKind {
    fn name(self) -> &'static [u8] {
        match self {
            GetKind::Get => b"get",
            GetKind::Gets => b"gets",
            GetKind::Gat => b"gat",
            GetKind::Gats => b"gats",
        }
    }

    /// Whether the command carries an expiry time (gat, gats).
    pub fn touches(self) -> bool {
        matches!(self, GetKind::Gat | GetKind::Gats)
    }
}

/// Which storage command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// `set`
    Set,
    /// `add`
    Add,
    /// `replace`
    Replace,
    /// `append`
    Append,
    /// `prepend`
    Prepend,
    /// `cas`
    Cas,
}

impl StoreOp {
    fn name(self) -> &'static [u8] {
        match self {
            StoreOp::Set => b"set",
            StoreOp::Add => b"add",
            StoreOp::Replace => b"replace",
            StoreOp::Append => b"append",
            StoreOp::Prepend => b"prepend",
            StoreOp::Cas => b"cas",
        }
    }
}

/// Which meta command (besides `mn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaOp {
    /// `mg`
    Get,
    /// `ms`
    Set,
    /// `md`
    Delete,
    /// `ma`
    Arith,
}

impl MetaOp {
    fn name(self) -> &'static [u8] {
        match self {
            MetaOp::Get => b"mg",
            MetaOp::Set => b"ms",
            MetaOp::Delete => b"md",
            MetaOp::Arith => b"ma",
        }
    }
}

/// One client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// get, gets, gat, gats.
    Get {
        /// Which of them.
        kind: GetKind,
        /// The new expiry of gat/gats (0 otherwise).
        exptime: i64,
        /// One or more keys, in the client's order.
        keys: Vec<Bytes>,
    },
    /// set, add, replace, append, prepend, cas.
    Store {
        /// Which of them.
        op: StoreOp,
        /// The key.
        key: Bytes,
        /// Opaque client flags.
        flags: u32,
        /// Expiry: seconds, or a unix time past 30 days, or negative for "expired".
        exptime: i64,
        /// The CAS value (cas only).
        cas: u64,
        /// The value, without its trailing CRLF.
        data: Bytes,
        /// The client wants no reply.
        noreply: bool,
    },
    /// delete.
    Delete {
        /// The key.
        key: Bytes,
        /// The client wants no reply.
        noreply: bool,
    },
    /// incr, decr.
    Arith {
        /// incr (true) or decr.
        incr: bool,
        /// The key.
        key: Bytes,
        /// The amount.
        delta: u64,
        /// The client wants no reply.
        noreply: bool,
    },
    /// touch.
    Touch {
        /// The key.
        key: Bytes,
        /// The new expiry.
        exptime: i64,
        /// The client wants no reply.
        noreply: bool,
    },
    /// mg, ms, md, ma.
    Meta {
        /// Which of them.
        op: MetaOp,
        /// The key (base64 when the `b` flag is given).
        key: Bytes,
        /// The flag tokens as sent, each starting with its flag letter.
        flags: Vec<Bytes>,
        /// The value of ms, without its trailing CRLF.
        data: Option<Bytes>,
    },
    /// mn: answered by the router once everything before it is answered.
    MetaNoop,
    /// version.
    Version,
    /// stats, with its arguments. Answered with the router's own statistics.
    Stats {
        /// `stats ARGS...`
        args: Vec<Bytes>,
    },
    /// verbosity: accepted and ignored (there is no server-side log level to set).
    Verbosity {
        /// The client wants no reply.
        noreply: bool,
    },
    /// flush_all: sent to every server of the local pool.
    FlushAll {
        /// Optional delay in seconds.
        delay: Option<i64>,
        /// The client wants no reply.
        noreply: bool,
    },
    /// quit.
    Quit,
}

impl Request {
    /// The key of a single-key request.
    pub fn key(&self) -> Option<&Bytes> {
        match self {
            Request::Store { key, .. }
            | Request::Delete { key, .. }
            | Request::Arith { key, .. }
            | Request::Touch { key, .. }
            | Request::Meta { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Whether the client asked for no reply (text `noreply`; meta `q` is handled apart).
    pub fn noreply(&self) -> bool {
        match self {
            Request::Store { noreply, .. }
            | Request::Delete { noreply, .. }
            | Request::Arith { noreply, .. }
            | Request::Touch { noreply, .. }
            | Request::Verbosity { noreply }
            | Request::FlushAll { noreply, .. } => *noreply,
            _ => false,
        }
    }
}

/// A request memcached would refuse, with the reply it would give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// The reply line, with its CRLF.
    pub reply: &'static str,
    /// Bytes of input to discard, possibly more than are buffered yet (a data block to skip).
    pub consume: usize,
    /// Close the connection after replying (the stream cannot be resynchronised).
    pub close: bool,
}

/// memcached's reply to a command it does not know.
pub const ERROR: &str = "ERROR\r\n";
/// memcached's reply to a malformed command line.
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format\r\n";
/// memcached's reply to a value not followed by CRLF.
pub const BAD_CHUNK: &str = "CLIENT_ERROR bad data chunk\r\n";
/// memcached's reply to a value over the size limit.
pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache\r\n";
/// memcached's reply to a line without end.
pub const LINE_TOO_LONG: &str = "CLIENT_ERROR line too long\r\n";

fn err(reply: &'static str, consume: usize) -> ProtocolError {
    ProtocolError {
        reply,
        consume,
        close: false,
    }
}

/// Parses the first request in `buf`.
///
/// `Ok(None)` means more bytes are needed. `Ok(Some((request, n)))` consumed `n` bytes.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(Request, usize)>, ProtocolError> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        if buf.len() > MAX_LINE {
            return Err(ProtocolError {
                reply: LINE_TOO_LONG,
                consume: buf.len(),
                close: true,
            });
        }
        return Ok(None);
    };
    let line_len = nl + 1;
    if nl > MAX_LINE {
        return Err(ProtocolError {
            reply: LINE_TOO_LONG,
            consume: line_len,
            close: true,
        });
    }
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let tokens: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .collect();
    let Some((&cmd, args)) = tokens.split_first() else {
        return Err(err(ERROR, line_len));
    };
    let bad = || err(BAD_FORMAT, line_len);
    // Like memcached, any byte but space and newline may be part of a key (memaslap's keys
    // start with control bytes).
    let key_ok = |key: &[u8]| key.len() <= limits.max_key_bytes;
    let key = |i: usize| -> Result<Bytes, ProtocolError> {
        match args.get(i) {
            Some(k) if key_ok(k) => Ok(Bytes::copy_from_slice(k)),
            _ => Err(bad()),
        }
    };
    let noreply_at = |i: usize| -> Result<bool, ProtocolError> {
        match args.get(i) {
            None => Ok(false),
            Some(&b"noreply") if args.len() == i + 1 => Ok(true),
            Some(_) => Err(bad()),
        }
    };
    let done = |request: Request| Ok(Some((request, line_len)));

    let store = match cmd {
        b"set" => Some(StoreOp::Set),
        b"add" => Some(StoreOp::Add),
        b"replace" => Some(StoreOp::Replace),
        b"append" => Some(StoreOp::Append),
        b"prepend" => Some(StoreOp::Prepend),
        b"cas" => Some(StoreOp::Cas),
        _ => None,
    };
    if let Some(op) = store {
        let fixed = if op == StoreOp::Cas { 5 } else { 4 };
        // Read the data length first: once it is known, the data block can be skipped
        // whatever else is wrong with the line.
        let Some(len) = args.get(3).and_then(|t| parse_num::<i64>(t)) else {
            return Err(bad());
        };
        let Ok(len) = usize::try_from(len) else {
            return Err(bad());
        };
        let total = line_len.saturating_add(len).saturating_add(2);
        if len > limits.max_value_bytes {
            return Err(err(TOO_LARGE, total));
        }
        let parsed = (|| {
            let key = key(0)?;
            let flags = args
                .get(1)
                .and_then(|t| parse_num::<u32>(t))
                .ok_or_else(bad)?;
            let exptime = args
                .get(2)
                .and_then(|t| parse_num::<i64>(t))
                .ok_or_else(bad)?;
            let cas = if op == StoreOp::Cas {
                args.get(4)
                    .and_then(|t| parse_num::<u64>(t))
                    .ok_or_else(bad)?
            } else {
                0
            };
            let noreply = noreply_at(fixed)?;
            Ok((key, flags, exptime, cas, noreply))
        })();
        if buf.len() < total {
            // Wait for the whole block even for a bad line, so it is skipped in one piece.
            return Ok(None);
        }
        let (key, flags, exptime, cas, noreply) = parsed.map_err(|mut e: ProtocolError| {
            e.consume = total;
            e
        })?;
        if &buf[line_len + len..total] != b"\r\n" {
            return Err(err(BAD_CHUNK, total));
        }
        let data = Bytes::copy_from_slice(&buf[line_len..line_len + len]);
        return Ok(Some((
            Request::Store {
                op,
                key,
                flags,
                exptime,
                cas,
                data,
                noreply,
            },
            total,
        )));
    }

    match cmd {
        b"get" | b"gets" | b"gat" | b"gats" => {
            let kind = match cmd {
                b"get" => GetKind::Get,
                b"gets" => GetKind::Gets,
                b"gat" => GetKind::Gat,
                _ => GetKind::Gats,
            };
            let (exptime, keys) = if kind.touches() {
                let Some(exptime) = args.first().and_then(|t| parse_num::<i64>(t)) else {
                    return Err(err("CLIENT_ERROR invalid exptime argument\r\n", line_len));
                };
                (exptime, &args[1..])
            } else {
                (0, args)
            };
            if keys.is_empty() {
                return Err(err(ERROR, line_len));
            }
            if !keys.iter().all(|k| key_ok(k)) {
                return Err(bad());
            }
            let keys = keys.iter().map(|k| Bytes::copy_from_slice(k)).collect();
            done(Request::Get {
                kind,
                exptime,
                keys,
            })
        }
        b"delete" => {
            let key = key(0)?;
            // `delete <key> 0` is the old form with a zero hold time; memcached still takes it.
            let rest = match args.get(1) {
                Some(&b"0") => 2,
                _ => 1,
            };
            let noreply = noreply_at(rest).map_err(|_| {
                err(
                    "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
                    line_len,
                )
            })?;
            done(Request::Delete { key, noreply })
        }
        b"incr" | b"decr" => {
            let key = key(0)?;
            let delta = args.get(1).ok_or_else(bad)?;
            let Some(delta) = parse_num::<u64>(delta) else {
                return Err(err(
                    "CLIENT_ERROR invalid numeric delta argument\r\n",
                    line_len,
                ));
            };
            let noreply = noreply_at(2)?;
            done(Request::Arith {
                incr: cmd == b"incr",
                key,
                delta,
                noreply,
            })
        }
        b"touch" => {
            let key = key(0)?;
            let exptime = args.get(1).ok_or_else(bad)?;
            let Some(exptime) = parse_num::<i64>(exptime) else {
                return Err(err("CLIENT_ERROR invalid exptime argument\r\n", line_len));
            };
            let noreply = noreply_at(2)?;
            done(Request::Touch {
                key,
                exptime,
                noreply,
            })
        }
        b"mg" | b"ms" | b"md" | b"ma" => {
            let op = match cmd {
                b"mg" => MetaOp::Get,
                b"ms" => MetaOp::Set,
                b"md" => MetaOp::Delete,
                _ => MetaOp::Arith,
            };
            let key = key(0)?;
            let (flag_tokens, data_len) = if op == MetaOp::Set {
                let len = args
                    .get(1)
                    .and_then(|t| parse_num::<usize>(t))
                    .ok_or_else(bad)?;
                (&args[2..], Some(len))
            } else {
                (&args[1..], None)
            };
            let flags_ok = flag_tokens.iter().all(|f| f[0].is_ascii_alphabetic());
            let flags: Vec<Bytes> = flag_tokens
                .iter()
                .map(|f| Bytes::copy_from_slice(f))
                .collect();
            let Some(len) = data_len else {
                if !flags_ok {
                    return Err(err("CLIENT_ERROR invalid flag\r\n", line_len));
                }
                return done(Request::Meta {
                    op,
                    key,
                    flags,
                    data: None,
                });
            };
            let total = line_len.saturating_add(len).saturating_add(2);
            if len > limits.max_value_bytes {
                return Err(err(TOO_LARGE, total));
            }
            if buf.len() < total {
                return Ok(None);
            }
            if !flags_ok {
                return Err(err("CLIENT_ERROR invalid flag\r\n", total));
            }
            if &buf[line_len + len..total] != b"\r\n" {
                return Err(err(BAD_CHUNK, total));
            }
            let data = Some(Bytes::copy_from_slice(&buf[line_len..line_len + len]));
            Ok(Some((
                Request::Meta {
                    op,
                    key,
                    flags,
                    data,
                },
                total,
            )))
        }
        b"mn" => done(Request::MetaNoop),
        b"version" => done(Request::Version),
        b"stats" => done(Request::Stats {
            args: args.iter().map(|a| Bytes::copy_from_slice(a)).collect(),
        }),
        b"quit" => done(Request::Quit),
        b"verbosity" => {
            // memcached's rules: one level, optionally `noreply`; a bad level is a
            // CLIENT_ERROR, which noreply silences like any reply.
            if !(1..=2).contains(&args.len()) {
                return Err(err(ERROR, line_len));
            }
            let noreply = args.last() == Some(&&b"noreply"[..]);
            if parse_num::<u32>(args[0]).is_none() {
                return Err(err(if noreply { "" } else { BAD_FORMAT }, line_len));
            }
            done(Request::Verbosity { noreply })
        }
        b"flush_all" => {
            let (delay, rest) = match args.first().map(|t| parse_num::<i64>(t)) {
                Some(Some(d)) => (Some(d), 1),
                _ => (None, 0),
            };
            let noreply = noreply_at(rest)?;
            done(Request::FlushAll { delay, noreply })
        }
        _ => Err(err(ERROR, line_len)),
    }
}

fn parse_num<T: std::str::FromStr>(token: &[u8]) -> Option<T> {
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// Writes `request` for a server, with `key` in place of the client's key and `exptime` in
/// place of its expiry (the gutter caps it). Replies are always asked for (`noreply` and meta
/// `q` are dropped): the router must read every reply to keep the connection in step, and
/// answers the client as it asked.
pub fn encode_request(request: &Request, key: &[u8], exptime: i64, out: &mut BytesMut) {
    let cmd = |out: &mut BytesMut, name: &[u8]| {
        out.put_slice(name);
        out.put_u8(b' ');
        out.put_slice(key);
    };
    match request {
        Request::Store {
            op,
            flags,
            cas,
            data,
            ..
        } => {
            cmd(out, op.name());
            out.put_u8(b' ');
            put_decimal(out, i64::from(*flags));
            out.put_u8(b' ');
            put_decimal(out, exptime);
            out.put_u8(b' ');
            put_unsigned(out, data.len() as u64);
            if *op == StoreOp::Cas {
                out.put_u8(b' ');
                put_unsigned(out, *cas);
            }
            out.put_slice(b"\r\n");
            out.put_slice(data);
            out.put_slice(b"\r\n");
        }
        Request::Delete { .. } => {
            cmd(out, b"delete");
            out.put_slice(b"\r\n");
        }
        Request::Arith { incr, delta, .. } => {
            cmd(out, if *incr { b"incr" } else { b"decr" });
            out.put_u8(b' ');
            put_unsigned(out, *delta);
            out.put_slice(b"\r\n");
        }
        Request::Touch { .. } => {
            cmd(out, b"touch");
            out.put_u8(b' ');
            put_decimal(out, exptime);
            out.put_slice(b"\r\n");
        }
        Request::Get { kind, .. } => encode_get(*kind, exptime, &[key], out),
        Request::Meta {
            op, flags, data, ..
        } => {
            cmd(out, op.name());
            if let Some(data) = data {
                out.put_u8(b' ');
                put_unsigned(out, data.len() as u64);
            }
            for flag in flags {
                match flag[0] {
                    b'q' => continue,
                    // The gutter's TTL cap, when it lowered the expiry.
                    b'T' if exptime != meta_ttl(flags).unwrap_or(0) => {
                        out.put_slice(b" T");
                        put_decimal(out, exptime);
                    }
                    _ => {
                        out.put_u8(b' ');
                        out.put_slice(flag);
                    }
                }
            }
            if exptime != 0 && meta_ttl(flags).is_none() && *op == MetaOp::Set {
                out.put_slice(b" T");
                put_decimal(out, exptime);
            }
            out.put_slice(b"\r\n");
            if let Some(data) = data {
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
        }
        Request::FlushAll { delay, .. } => {
            out.put_slice(b"flush_all");
            if let Some(d) = delay {
                out.put_u8(b' ');
                put_decimal(out, *d);
            }
            out.put_slice(b"\r\n");
        }
        Request::Version => out.put_slice(b"version\r\n"),
        Request::MetaNoop | Request::Stats { .. } | Request::Verbosity { .. } | Request::Quit => {
            out.put_slice(b"mn\r\n");
        }
    }
}

/// Writes `n` in decimal, without the `String` that `to_string` would allocate for every
/// request.
pub fn put_unsigned(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[at..]);
}

/// Writes `n` in decimal, with a sign when negative.
pub fn put_decimal(out: &mut BytesMut, n: i64) {
    if n < 0 {
        out.put_u8(b'-');
    }
    put_unsigned(out, n.unsigned_abs());
}

/// A get-family command for several keys of one server.
pub fn encode_get(kind: GetKind, exptime: i64, keys: &[&[u8]], out: &mut BytesMut) {
    out.put_slice(kind.name());
    if kind.touches() {
        out.put_u8(b' ');
        put_decimal(out, exptime);
    }
    for key in keys {
        out.put_u8(b' ');
        out.put_slice(key);
    }
    out.put_slice(b"\r\n");
}

/// The `T` (TTL) flag of a meta command, if given.
pub fn meta_ttl(flags: &[Bytes]) -> Option<i64> {
    flags
        .iter()
        .find(|f| f[0] == b'T')
        .and_then(|f| parse_num(&f[1..]))
}

/// Whether a meta command has the given flag letter.
pub fn meta_has(flags: &[Bytes], letter: u8) -> bool {
    flags.iter().any(|f| f[0] == letter)
}

/// The shape of a server's reply, which says where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// One line.
    Line,
    /// `VALUE` blocks up to `END` (get family).
    Values,
    /// One meta line, with a data block after a `VA` line.
    Meta,
}

/// A server reply that breaks the protocol: the connection cannot be trusted any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadReply;

/// The length of the complete reply at the start of `buf`, or `None` if more is needed.
pub fn reply_len(buf: &[u8], kind: ReplyKind) -> Result<Option<usize>, BadReply> {
    let mut pos = 0;
    loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[pos..]) else {
            return Ok(None);
        };
        let end = pos + nl + 1;
        let line = &buf[pos..end];
        let data_len = match kind {
            ReplyKind::Line => return Ok(Some(end)),
            ReplyKind::Meta if line.starts_with(b"VA ") => line_token(line, 1),
            ReplyKind::Meta => return Ok(Some(end)),
            ReplyKind::Values if line.starts_with(b"VALUE ") => line_token(line, 3),
            ReplyKind::Values if line == b"END\r\n" || is_error(line) => return Ok(Some(end)),
            ReplyKind::Values => return Err(BadReply),
        };
        let len = data_len.ok_or(BadReply)?;
        let next = end + len + 2;
        if buf.len() < next {
            return Ok(None);
        }
        if kind == ReplyKind::Meta {
            return Ok(Some(next));
        }
        pos = next;
    }
}

fn is_error(line: &[u8]) -> bool {
    line.starts_with(b"ERROR")
        || line.starts_with(b"CLIENT_ERROR")
        || line.starts_with(b"SERVER_ERROR")
}

/// The `index`th space-separated token of a reply line, as a length. Every reply the router
/// relays goes through here, so digits are read directly rather than through `str::parse`.
fn line_token(line: &[u8], index: usize) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let token = line
        .split(|&b| b == b' ')
        .filter(|t| !t.is_empty())
        .nth(index)?;
    if token.is_empty() || token.len() > 19 {
        return None;
    }
    token.iter().try_fold(0usize, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + usize::from(b - b'0'))
    })
}

/// Whether a get-family reply holds exactly one value, under `key`, then `END`: what a client
/// that asked for `key` alone expects, byte for byte, so it can be relayed as it is.
pub fn is_single_value(reply: &[u8], key: &[u8]) -> bool {
    let Some(rest) = reply
        .strip_prefix(b"VALUE ")
        .and_then(|r| r.strip_prefix(key))
    else {
        return false;
    };
    if rest.first() != Some(&b' ') {
        return false;
    }
    let Some(nl) = memchr::memchr(b'\n', reply) else {
        return false;
    };
    let Some(len) = line_token(&reply[..=nl], 3) else {
        return false;
    };
    let end = nl + 1 + len;
    reply.len() == end + 7 && &reply[end..] == b"\r\nEND\r\n"
}

/// One `VALUE` block of a get-family reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The key as the server knows it.
    pub key: Bytes,
    /// The rest of the header line after the key: `" <flags> <bytes>[ <cas>]\r\n"`.
    pub rest: Bytes,
    /// The data with its trailing CRLF.
    pub data: Bytes,
}

/// Splits a complete get-family reply (as measured by [`reply_len`]) into its values and its
/// last line (`END` or an error).
pub fn split_values(reply: &Bytes) -> (Vec<Value>, Bytes) {
    let mut values = Vec::new();
    let mut pos = 0;
    while let Some(nl) = memchr::memchr(b'\n', &reply[pos..]) {
        let end = pos + nl + 1;
        let line = &reply[pos..end];
        if !line.starts_with(b"VALUE ") {
            return (values, reply.slice(pos..end));
        }
        let Some(len) = line_token(line, 3) else {
            break;
        };
        let key_start = pos + 6;
        let key_end = key_start + memchr::memchr(b' ', &reply[key_start..end]).unwrap_or(0);
        values.push(Value {
            key: reply.slice(key_start..key_end),
            rest: reply.slice(key_end..end),
            data: reply.slice(end..end + len + 2),
        });
        pos = end + len + 2;
    }
    (values, Bytes::from_static(b"END\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Option<(Request, usize)>, ProtocolError> {
        parse_request(input, &Limits::default())
    }

    #[test]
    fn parses_set_with_data() {
        let (req, n) = parse(b"set k 5 10 3 noreply\r\nabc\r\nget k\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(n, 27);
        assert_eq!(
            req,
            Request::Store {
                op: StoreOp::Set,
                key: Bytes::from_static(b"k"),
                flags: 5,
                exptime: 10,
                cas: 0,
                data: Bytes::from_static(b"abc"),
                noreply: true,
            }
        );
    }

    #[test]
    fn waits_for_the_data_block() {
        assert_eq!(parse(b"set k 0 0 10\r\nabc").unwrap(), None);
        assert_eq!(parse(b"get k").unwrap(), None);
    }

    #[test]
    fn refuses_like_memcached() {
        assert_eq!(parse(b"bogus\r\n").unwrap_err().reply, ERROR);
        assert_eq!(
            parse(b"set k 0 0 3\r\nabcd\r\n").unwrap_err().reply,
            BAD_CHUNK
        );
        let long_key = format!("get {}\r\n", "k".repeat(251));
        assert_eq!(parse(long_key.as_bytes()).unwrap_err().reply, BAD_FORMAT);
        let big = parse(b"set k 0 0 2000000\r\n").unwrap_err();
        assert_eq!((big.reply, big.consume), (TOO_LARGE, 19 + 2_000_002));
        assert_eq!(parse(b"set k 0 0 -1\r\n").unwrap_err().reply, BAD_FORMAT);
        assert!(parse(&vec![b'a'; MAX_LINE + 1]).unwrap_err().close);
    }

    #[test]
    fn bad_line_skips_its_data_block() {
        let e = parse(b"set k x 0 3\r\nabc\r\n").unwrap_err();
        assert_eq!((e.reply, e.consume), (BAD_FORMAT, 18));
    }

    #[test]
    fn meta_set_round_trips_without_quiet() {
        let (req, _) = parse(b"ms k 2 T0 q F3\r\nhi\r\n").unwrap().unwrap();
        let mut out = BytesMut::new();
        encode_request(&req, b"k", 0, &mut out);
        assert_eq!(&out[..], b"ms k 2 T0 F3\r\nhi\r\n");
        out.clear();
        encode_request(&req, b"k", 10, &mut out);
        assert_eq!(&out[..], b"ms k 2 T10 F3\r\nhi\r\n");
    }

    #[test]
    fn encodes_numbers_without_strings() {
        let mut out = BytesMut::new();
        for n in [0, 7, -1, 10, i64::MAX, i64::MIN, 2_592_000] {
            out.clear();
            put_decimal(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
        let (req, _) = parse(b"cas k 4294967295 -1 2 18446744073709551615\r\nab\r\n")
            .unwrap()
            .unwrap();
        out.clear();
        encode_request(&req, b"k", -1, &mut out);
        assert_eq!(
            &out[..],
            b"cas k 4294967295 -1 2 18446744073709551615\r\nab\r\n"
        );
        let (req, _) = parse(b"flush_all 30 noreply\r\n").unwrap().unwrap();
        out.clear();
        encode_request(&req, b"", 0, &mut out);
        assert_eq!(&out[..], b"flush_all 30\r\n");
    }

    #[test]
    fn recognises_a_single_value_reply() {
        let one = b"VALUE k 0 3\r\nabc\r\nEND\r\n";
        assert!(is_single_value(one, b"k"));
        assert!(is_single_value(b"VALUE k 0 3 9\r\nabc\r\nEND\r\n", b"k"));
        assert!(!is_single_value(one, b"kk"));
        assert!(!is_single_value(b"VALUE kk 0 3\r\nabc\r\nEND\r\n", b"k"));
        assert!(!is_single_value(b"END\r\n", b"k"));
        assert!(!is_single_value(
            b"VALUE k 0 1\r\na\r\nVALUE k 0 1\r\nb\r\nEND\r\n",
            b"k"
        ));
        assert!(!is_single_value(b"VALUE k 0 x\r\nabc\r\nEND\r\n", b"k"));
    }

    #[test]
    fn measures_replies() {
        let get = b"VALUE a 0 3\r\nabc\r\nVALUE b 1 2 9\r\nxy\r\nEND\r\n";
        assert_eq!(reply_len(get, ReplyKind::Values), Ok(Some(get.len())));
        assert_eq!(reply_len(&get[..20], ReplyKind::Values), Ok(None));
        assert_eq!(
            reply_len(b"VA 2 f1\r\nhi\r\n", ReplyKind::Meta),
            Ok(Some(13))
        );
        assert_eq!(reply_len(b"EN\r\n", ReplyKind::Meta), Ok(Some(4)));
        assert_eq!(reply_len(b"junk\r\n", ReplyKind::Values), Err(BadReply));
        let (values, last) = split_values(&Bytes::from_static(get));
        assert_eq!(values.len(), 2);
        assert_eq!(&values[1].key[..], b"b");
        assert_eq!(&values[1].rest[..], b" 1 2 9\r\n");
        assert_eq!(&values[1].data[..], b"xy\r\n");
        assert_eq!(&last[..], b"END\r\n");
    }
}
