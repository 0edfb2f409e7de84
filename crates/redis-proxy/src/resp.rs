//! RESP2, the Redis protocol: the client request parser, the reply scanner, and encoders.
//!
//! Hand-written, because what a proxy needs from a codec is not what the RESP crates on crates.io
//! offer: they decode frames into owned values, while the proxy wants
//!
//! - for a request, only *where* its arguments are in the client's own buffer, so a command for
//!   one server is forwarded as the very bytes the client sent, without decoding and encoding it
//!   again (the hot path of every `GET` and `SET`);
//! - for a reply, only *where it ends*, found without building it and resumed where the last
//!   read stopped, so a large reply arriving in many reads is scanned once.
//!
//! Requests are RESP2 multibulk (`*<n>\r\n` then `n` bulk strings, what every client library
//! sends) or inline commands (a line of space-separated words, what a person types into
//! `nc`; quoting is not supported there). Replies are RESP2 (`+ - : $ *`, nested arrays, null
//! bulk and null array): the proxy never asks a server for RESP3.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

use crate::config::Limits;

/// Why a client's request cannot be served. Either way the connection is closed after the
/// error reply: the stream can no longer be trusted to be in step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The bytes are not RESP.
    #[error("Protocol error: {0}")]
    Protocol(&'static str),
    /// The request is larger than a configured limit.
    #[error(
        "Protocol error: {what} of {size} {unit} is over the proxy's limit of {limit} ({setting})"
    )]
    TooLarge {
        /// What is too large: a request, an inline command, a command.
        what: &'static str,
        /// Its size.
        size: u64,
        /// What the size counts: bytes or arguments.
        unit: &'static str,
        /// The limit.
        limit: u64,
        /// The config setting that sets it.
        setting: &'static str,
    },
}

/// A complete request at the front of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// Its length in bytes.
    pub len: usize,
    /// Whether it was an inline command (then it must be encoded as multibulk before being
    /// forwarded).
    pub inline: bool,
}

/// Longest header line (`*<n>` or `$<n>`) accepted before its `\r\n`: 20 digits and a sign.
const MAX_HEADER: usize = 32;

/// Parses the request at the front of `buf`. On `Ok(Some(_))`, `args` holds the byte ranges of
/// its arguments within `buf` (none for an empty request, which the caller skips, as Redis
/// does). `Ok(None)`: the request is not complete yet; the limits are still checked against
/// what its headers declare, so an oversized request fails before its body arrives.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<Parsed>, RequestError> {
    args.clear();
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits, args),
        Some(_) => parse_inline(buf, limits, args),
    }
}

/// The line starting at `from` without its `\r\n`, and the index after the `\n`.
fn header_line(buf: &[u8], from: usize) -> Result<Option<(&[u8], usize)>, RequestError> {
    let window = &buf[from..buf.len().min(from + MAX_HEADER + 2)];
    match memchr::memchr(b'\n', window) {
        Some(i) => {
            let line = &window[..i];
            let line = line
                .strip_suffix(b"\r")
                .ok_or(RequestError::Protocol("header line not terminated by CRLF"))?;
            Ok(Some((line, from + i + 1)))
        }
        None if window.len() > MAX_HEADER + 1 => {
            Err(RequestError::Protocol("header line too long"))
        }
        None => Ok(None),
    }
}

fn too_large(what: &'static str, size: u64, limit: usize, setting: &'static str) -> RequestError {
    RequestError::TooLarge {
        what,
        size,
        unit: if setting == "limits.max_args" {
            "arguments"
        } else {
            "bytes"
        },
        limit: limit as u64,
        setting,
    }
}

fn parse_multibulk(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<Parsed>, RequestError> {
    let Some((line, mut pos)) = header_line(buf, 0)? else {
        return Ok(None);
    };
    let count = parse_int(&line[1..]).ok_or(RequestError::Protocol("invalid multibulk length"))?;
    if count <= 0 {
        // `*0` and `*-1` are empty requests; Redis skips them too.
        return Ok(Some(Parsed {
            len: pos,
            inline: false,
        }));
    }
    let count = count as u64;
    if count > limits.max_args as u64 {
        return Err(too_large(
            "command",
            count,
            limits.max_args,
            "limits.max_args",
        ));
    }
    for _ in 0..count {
        let Some(&kind) = buf.get(pos) else {
            return Ok(None);
        };
        if kind != b'$' {
            return Err(RequestError::Protocol("expected '$' before an argument"));
        }
        let Some((line, start)) = header_line(buf, pos)? else {
            return Ok(None);
        };
        let len = parse_int(&line[1..])
            .filter(|&n| n >= 0)
            .ok_or(RequestError::Protocol("invalid bulk length"))? as u64;
        let end = start as u64 + len;
        if end + 2 > limits.max_request_bytes as u64 {
            return Err(too_large(
                "request",
                end + 2,
                limits.max_request_bytes,
                "limits.max_request_bytes",
            ));
        }
        let end = end as usize;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(RequestError::Protocol("argument not terminated by CRLF"));
        }
        args.push(start..end);
        pos = end + 2;
    }
    Ok(Some(Parsed {
        len: pos,
        inline: false,
    }))
}

fn parse_inline(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<Parsed>, RequestError> {
    let window = &buf[..buf.len().min(limits.max_inline_bytes + 1)];
    let Some(nl) = memchr::memchr(b'\n', window) else {
        if window.len() > limits.max_inline_bytes {
            return Err(too_large(
                "inline command",
                buf.len() as u64,
                limits.max_inline_bytes,
                "limits.max_inline_bytes",
            ));
        }
        return Ok(None);
    };
    let line = &buf[..nl];
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        let start = i;
        while i < line.len() && !is_space(line[i]) {
            i += 1;
        }
        if i > start {
            if args.len() >= limits.max_args {
                return Err(too_large(
                    "command",
                    args.len() as u64 + 1,
                    limits.max_args,
                    "limits.max_args",
                ));
            }
            args.push(start..i);
        }
    }
    Ok(Some(Parsed {
        len: nl + 1,
        inline: true,
    }))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r')
}

/// A decimal integer with an optional minus sign, as RESP writes them; `None` for anything
/// else (empty, a plus sign, spaces, overflow).
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(if negative { -n } else { n })
}

/// A reply from a server that breaks RESP2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply")]
pub struct BadReply;

/// Finds where the next `count` RESP2 replies end in a buffer that fills up over several
/// reads, resuming where the last call stopped.
///
/// It keeps the offset of the first frame not yet complete and how many frames are still
/// owed (an array of `n` owes `n` more), so nested arrays need no stack and each byte of a
/// reply header is looked at once, however many reads the reply takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyScanner {
    pos: usize,
    owed: u64,
}

impl ReplyScanner {
    /// A scanner for `count` consecutive replies.
    pub fn new(count: u32) -> ReplyScanner {
        ReplyScanner {
            pos: 0,
            owed: u64::from(count),
        }
    }

    /// The length of the replies if `buf` now holds all of them; `Ok(None)` if more must be
    /// read (call again with the same buffer, grown).
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, BadReply> {
        while self.owed > 0 {
            let Some(&kind) = buf.get(self.pos) else {
                return Ok(None);
            };
            let Some(nl) = memchr::memchr(b'\n', &buf[self.pos..]) else {
                if kind != b'+' && kind != b'-' && buf.len() - self.pos > MAX_HEADER + 1 {
                    return Err(BadReply);
                }
                return Ok(None);
            };
            let after = self.pos + nl + 1;
            // The line between the type byte and its `\r\n` (`get` because a broken reply may
            // have no room for either).
            let line = buf[self.pos..after - 1]
                .strip_suffix(b"\r")
                .and_then(|l| l.get(1..))
                .ok_or(BadReply)?;
            match kind {
                b'+' | b'-' => self.owed -= 1,
                b':' => {
                    parse_int(line).ok_or(BadReply)?;
                    self.owed -= 1;
                }
                b'$' => match parse_int(line).ok_or(BadReply)? {
                    -1 => self.owed -= 1,
                    n if n < 0 => return Err(BadReply),
                    n => {
                        let end = after.checked_add(n as usize).ok_or(BadReply)?;
                        if buf.len() < end + 2 {
                            // Stay on this header: it is read again (a few bytes) when the
                            // body has arrived.
                            return Ok(None);
                        }
                        if &buf[end..end + 2] != b"\r\n" {
                            return Err(BadReply);
                        }
                        self.pos = end + 2;
                        self.owed -= 1;
                        continue;
                    }
                },
                b'*' => match parse_int(line).ok_or(BadReply)? {
                    -1 => self.owed -= 1,
                    n if n < 0 => return Err(BadReply),
                    n => self.owed = (self.owed - 1).checked_add(n as u64).ok_or(BadReply)?,
                },
                _ => return Err(BadReply),
            }
            self.pos = after;
        }
        Ok(Some(self.pos))
    }
}

/// The length of the one complete reply at the front of `buf`, if it is all there.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, BadReply> {
    ReplyScanner::new(1).scan(buf)
}

/// The byte ranges of the elements of the array reply `reply` (`None` for a null array, or if
/// `reply` is not an array).
pub fn array_elements(reply: &[u8]) -> Option<Vec<Range<usize>>> {
    let nl = memchr::memchr(b'\n', reply)?;
    if reply.first() != Some(&b'*') || nl < 2 {
        return None;
    }
    let n = parse_int(&reply[1..nl - 1])?;
    if n < 0 {
        return None;
    }
    let mut pos = nl + 1;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = reply_len(&reply[pos..]).ok()??;
        out.push(pos..pos + len);
        pos += len;
    }
    Some(out)
}

/// The value of an integer reply (`:<n>\r\n`).
pub fn integer(reply: &[u8]) -> Option<i64> {
    parse_int(reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?)
}

/// Writes a command as a multibulk request.
pub fn encode_command<'a>(out: &mut BytesMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    out.put_u8(b'*');
    put_decimal(out, args.len() as i64);
    out.put_slice(b"\r\n");
    for arg in args {
        write_bulk(out, arg);
    }
}

/// Writes a bulk string.
pub fn write_bulk(out: &mut BytesMut, value: &[u8]) {
    out.reserve(value.len() + 16);
    out.put_u8(b'$');
    put_decimal(out, value.len() as i64);
    out.put_slice(b"\r\n");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Writes an integer reply.
pub fn write_integer(out: &mut BytesMut, n: i64) {
    out.put_u8(b':');
    put_decimal(out, n);
    out.put_slice(b"\r\n");
}

/// Writes an array header for `n` elements.
pub fn write_array_header(out: &mut BytesMut, n: usize) {
    out.put_u8(b'*');
    put_decimal(out, n as i64);
    out.put_slice(b"\r\n");
}

/// Writes an error reply. `message` starts with its code (`ERR`, `NOAUTH`, ...) and must not
/// hold a line break, which would end the reply early; any there are replaced by spaces.
pub fn write_error(out: &mut BytesMut, message: &str) {
    out.put_u8(b'-');
    out.extend(
        message
            .bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.put_slice(b"\r\n");
}

fn put_decimal(out: &mut BytesMut, n: i64) {
    let mut buf = itoa::Buffer::new();
    out.put_slice(buf.format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits::default()
    }

    type Args = Vec<Vec<u8>>;

    fn parse(buf: &[u8]) -> Result<Option<(Parsed, Args)>, RequestError> {
        let mut args = Vec::new();
        Ok(parse_request(buf, &limits(), &mut args)?
            .map(|p| (p, args.iter().map(|r| buf[r.clone()].to_vec()).collect())))
    }

    fn encode(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_command(&mut out, args.iter().map(Vec::as_slice));
        out.to_vec()
    }

    #[test]
    fn multibulk_and_inline() {
        let (p, args) = parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!((p.len, p.inline), (20, false));
        assert_eq!(args, [b"GET".to_vec(), b"k".to_vec()]);
        let (p, args) = parse(b"set  k\tv\r\nPING").unwrap().unwrap();
        assert_eq!((p.len, p.inline), (10, true));
        assert_eq!(args, [b"set".to_vec(), b"k".to_vec(), b"v".to_vec()]);
        let (p, args) = parse(b"\r\n").unwrap().unwrap();
        assert_eq!((p.len, args.len()), (2, 0));
        let (p, args) = parse(b"*0\r\n").unwrap().unwrap();
        assert_eq!((p.len, args.len()), (4, 0));
        assert_eq!(parse(b"*2\r\n$3\r\nGET\r\n$1\r\n").unwrap(), None);
        assert_eq!(parse(b"PING").unwrap(), None);
    }

    #[test]
    fn malformed_requests_are_protocol_errors() {
        for bad in [
            &b"*x\r\n"[..],
            b"*1\r\n:1\r\n",
            b"*1\r\n$-1\r\n",
            b"*1\r\n$1\r\nab\r\n",
            b"*1\n",
            b"*1\r\n$1x\r\n",
            b"*111111111111111111111111111111111111111\r\n",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("Protocol error: "),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn declared_sizes_over_the_limits_fail_before_the_body_arrives() {
        let err = parse(b"*2\r\n$3\r\nSET\r\n$1073741824\r\nabc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Protocol error: request of 1073741852 bytes is over the proxy's limit of 8388608 \
             (limits.max_request_bytes)"
        );
        assert!(
            matches!(
                err,
                RequestError::TooLarge {
                    setting: "limits.max_request_bytes",
                    ..
                }
            ),
            "{err}"
        );
        let err = parse(b"*1000000\r\n").unwrap_err();
        assert!(matches!(
            err,
            RequestError::TooLarge {
                setting: "limits.max_args",
                ..
            }
        ));
        let long = vec![b'a'; 70 * 1024];
        let err = parse(&long).unwrap_err();
        assert!(matches!(
            err,
            RequestError::TooLarge {
                setting: "limits.max_inline_bytes",
                ..
            }
        ));
    }

    #[test]
    fn replies_nest_and_resume() {
        let reply = b"*3\r\n$3\r\nabc\r\n*2\r\n:1\r\n$-1\r\n-ERR x\r\n+OK\r\n";
        assert_eq!(reply_len(reply), Ok(Some(reply.len() - 5)));
        let mut scanner = ReplyScanner::new(2);
        for cut in 0..reply.len() {
            assert_eq!(scanner.scan(&reply[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(scanner.scan(reply), Ok(Some(reply.len())));
        assert_eq!(reply_len(b"*-1\r\n"), Ok(Some(5)));
        assert_eq!(reply_len(b"*0\r\n"), Ok(Some(4)));
        assert_eq!(reply_len(b"?\r\n"), Err(BadReply));
        // Found by the property test: a line break where the type byte should be.
        assert_eq!(reply_len(b"\n"), Err(BadReply));
        assert_eq!(reply_len(b"\r\n"), Err(BadReply));
        assert_eq!(reply_len(b"$3\r\nabcd\r\n"), Err(BadReply));
        assert_eq!(reply_len(b":x\r\n"), Err(BadReply));
    }

    #[test]
    fn array_elements_and_integers() {
        let reply = b"*3\r\n$1\r\na\r\n$-1\r\n:7\r\n";
        let elements = array_elements(reply).unwrap();
        let parts: Vec<&[u8]> = elements.iter().map(|r| &reply[r.clone()]).collect();
        assert_eq!(parts, [&b"$1\r\na\r\n"[..], b"$-1\r\n", b":7\r\n"]);
        assert_eq!(integer(b":-12\r\n"), Some(-12));
        assert_eq!(array_elements(b"*-1\r\n"), None);
        assert_eq!(array_elements(b"+OK\r\n"), None);
    }

    #[test]
    fn errors_stay_on_one_line() {
        let mut out = BytesMut::new();
        write_error(&mut out, "ERR a\r\nb");
        assert_eq!(&out[..], b"-ERR a  b\r\n");
    }

    /// A RESP2 reply of any shape, for the scanner's property tests.
    #[derive(Debug, Clone)]
    enum Reply {
        Simple(String),
        Error(String),
        Integer(i64),
        Bulk(Option<Vec<u8>>),
        Array(Option<Vec<Reply>>),
    }

    impl Reply {
        fn encode(&self, out: &mut BytesMut) {
            match self {
                Reply::Simple(s) => {
                    out.put_u8(b'+');
                    out.put_slice(s.as_bytes());
                    out.put_slice(b"\r\n");
                }
                Reply::Error(s) => write_error(out, s),
                Reply::Integer(n) => write_integer(out, *n),
                Reply::Bulk(None) => out.put_slice(b"$-1\r\n"),
                Reply::Bulk(Some(v)) => write_bulk(out, v),
                Reply::Array(None) => out.put_slice(b"*-1\r\n"),
                Reply::Array(Some(items)) => {
                    write_array_header(out, items.len());
                    for item in items {
                        item.encode(out);
                    }
                }
            }
        }
    }

    fn reply() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9 ]{0,20}".prop_map(Reply::Simple),
            "ERR [a-z ]{0,20}".prop_map(Reply::Error),
            any::<i64>().prop_map(Reply::Integer),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))
                .prop_map(Reply::Bulk),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            proptest::option::of(proptest::collection::vec(inner, 0..8)).prop_map(Reply::Array)
        })
    }

    proptest! {
        /// Any arguments, encoded as multibulk, parse back to the same arguments, and no
        /// prefix of the encoding parses as complete.
        #[test]
        fn multibulk_round_trips(
            args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let bytes = encode(&args);
            let (parsed, back) = parse(&bytes).unwrap().unwrap();
            prop_assert_eq!(parsed.len, bytes.len());
            prop_assert_eq!(back, args);
            let cut = cut.index(bytes.len());
            prop_assert_eq!(parse(&bytes[..cut]).unwrap(), None);
        }

        /// Requests sent back to back parse one after another.
        #[test]
        fn pipelined_requests_parse_in_order(
            commands in proptest::collection::vec(
                proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 1..4),
                1..10),
        ) {
            let stream: Vec<u8> = commands.iter().flat_map(|c| encode(c)).collect();
            let mut at = 0;
            for command in &commands {
                let (parsed, back) = parse(&stream[at..]).unwrap().unwrap();
                prop_assert_eq!(&back, command);
                at += parsed.len;
            }
            prop_assert_eq!(at, stream.len());
        }

        /// Any bytes at all: a result, never a panic; and a complete request never claims
        /// more bytes than there are, nor arguments outside them.
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut args = Vec::new();
            if let Ok(Some(parsed)) = parse_request(&bytes, &limits(), &mut args) {
                prop_assert!(parsed.len <= bytes.len());
                for arg in &args {
                    prop_assert!(arg.end <= parsed.len);
                }
            }
            let _ = reply_len(&bytes);
        }

        /// Bytes that start like a multibulk request: the same, on the paths past the header.
        #[test]
        fn multibulk_shaped_bytes_never_panic(
            head in proptest::collection::vec(prop_oneof![
                Just(b"*2\r\n".to_vec()), Just(b"$3\r\n".to_vec()), Just(b"GET\r\n".to_vec()),
                Just(b"$-1\r\n".to_vec()), Just(b"\r\n".to_vec()),
                proptest::collection::vec(any::<u8>(), 0..6),
            ], 0..8),
        ) {
            let bytes: Vec<u8> = std::iter::once(b'*').chain(head.concat()).collect();
            let mut args = Vec::new();
            let _ = parse_request(&bytes, &limits(), &mut args);
        }

        /// Any reply, split anywhere: incomplete until the last byte, then exactly its length.
        #[test]
        fn scanner_finds_the_end_of_any_reply(
            replies in proptest::collection::vec(reply(), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut buf = BytesMut::new();
            for r in &replies {
                r.encode(&mut buf);
            }
            let mut scanner = ReplyScanner::new(replies.len() as u32);
            let cut = cut.index(buf.len());
            prop_assert_eq!(scanner.scan(&buf[..cut]), Ok(None));
            prop_assert_eq!(scanner.scan(&buf), Ok(Some(buf.len())));
            let mut more = buf.to_vec();
            more.extend_from_slice(b"+trailing\r\n");
            prop_assert_eq!(ReplyScanner::new(replies.len() as u32).scan(&more), Ok(Some(buf.len())));
        }
    }
}
