//! Fuzzing the request parser and the reply scanner: no input may panic them, every answer must
//! make progress, and cutting the input anywhere must not change what is parsed.

use mcrouter::config::Limits;
use mcrouter::protocol::{parse_request, reply_len, ProtocolError, ReplyKind, Request};
use proptest::prelude::*;

/// What a session does with a buffer: parse until it needs more bytes or must close.
#[derive(Debug, PartialEq)]
enum Event {
    Request(Request),
    Error(&'static str),
}

fn drive(chunks: &[&[u8]], limits: &Limits) -> (Vec<Event>, bool) {
    let mut buf: Vec<u8> = Vec::new();
    let mut events = Vec::new();
    let mut swallow = 0usize;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            if swallow > 0 {
                let n = swallow.min(buf.len());
                buf.drain(..n);
                swallow -= n;
                if swallow > 0 {
                    break;
                }
            }
            match parse_request(&buf, limits) {
                Ok(None) => break,
                Ok(Some((request, n))) => {
                    assert!(n > 0 && n <= buf.len(), "consumed {n} of {}", buf.len());
                    buf.drain(..n);
                    events.push(Event::Request(request));
                }
                Err(ProtocolError {
                    reply,
                    consume,
                    close,
                }) => {
                    assert!(consume > 0, "an error must consume input");
                    assert!(reply.is_empty() || reply.ends_with("\r\n"));
                    events.push(Event::Error(reply));
                    if close {
                        return (events, true);
                    }
                    let n = consume.min(buf.len());
                    buf.drain(..n);
                    swallow = consume - n;
                }
            }
        }
    }
    (events, false)
}

fn limits() -> Limits {
    Limits {
        max_key_bytes: 250,
        max_value_bytes: 4096,
    }
}

/// Valid commands to mutate.
fn command() -> impl Strategy<Value = Vec<u8>> {
    let key = "[a-zA-Z0-9:/_-]{1,20}";
    let value = proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        (key, value.clone()).prop_map(|(k, v)| {
            let mut c = format!("set {k} 0 0 {}\r\n", v.len()).into_bytes();
            c.extend_from_slice(&v);
            c.extend_from_slice(b"\r\n");
            c
        }),
        (key, value).prop_map(|(k, v)| {
            let mut c = format!("ms {k} {} T10 q\r\n", v.len()).into_bytes();
            c.extend_from_slice(&v);
            c.extend_from_slice(b"\r\n");
            c
        }),
        proptest::collection::vec(key, 1..5)
            .prop_map(|ks| format!("get {}\r\n", ks.join(" ")).into_bytes()),
        (key, any::<u64>()).prop_map(|(k, d)| format!("incr {k} {d} noreply\r\n").into_bytes()),
        key.prop_map(|k| format!("delete {k}\r\n").into_bytes()),
        (key, -5i64..100).prop_map(|(k, t)| format!("touch {k} {t}\r\n").into_bytes()),
        (key, 0i64..100).prop_map(|(k, t)| format!("gat {t} {k}\r\n").into_bytes()),
        key.prop_map(|k| format!("mg {k} v k f t\r\n").into_bytes()),
        Just(b"mn\r\n".to_vec()),
        Just(b"version\r\n".to_vec()),
        Just(b"stats\r\n".to_vec()),
        Just(b"flush_all 0 noreply\r\n".to_vec()),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"-1".to_vec()),
        Just(b"99999999999999999999".to_vec()),
        Just(b"noreply".to_vec()),
        Just(b"\0".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) if !bytes.is_empty() => bytes[i % len] = *b,
            Mutation::Flip(..) => {}
            Mutation::Insert(i, s) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, s.iter().copied());
            }
            Mutation::Delete(i, n) if !bytes.is_empty() => {
                let at = i % len;
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Delete(..) => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        drive(&[&bytes], &limits());
        for kind in [ReplyKind::Line, ReplyKind::Values, ReplyKind::Meta] {
            let _ = reply_len(&bytes, kind);
        }
    }

    #[test]
    fn mutated_commands_never_panic_and_parse_the_same_in_pieces(
        commands in proptest::collection::vec(command(), 1..8),
        mutations in proptest::collection::vec(mutation(), 0..6),
        cut in any::<usize>(),
    ) {
        let input = apply(commands.concat(), &mutations);
        let whole = drive(&[&input], &limits());
        let at = cut % (input.len() + 1);
        let pieces = drive(&[&input[..at], &input[at..]], &limits());
        prop_assert_eq!(whole, pieces);
    }

    #[test]
    fn valid_commands_parse_without_errors(commands in proptest::collection::vec(command(), 1..8)) {
        let (events, closed) = drive(&[&commands.concat()], &limits());
        prop_assert!(!closed);
        prop_assert_eq!(events.len(), commands.len());
        prop_assert!(events.iter().all(|e| matches!(e, Event::Request(_))), "{:?}", events);
    }
}

#[test]
fn byte_at_a_time_equals_all_at_once() {
    let input = b"set a 0 0 3\r\nabc\r\nget a b\r\nbogus\r\nset big 0 0 5000\r\n".to_vec();
    let mut input = input;
    input.extend(std::iter::repeat_n(b'x', 5000));
    input.extend_from_slice(b"\r\nmn\r\n");
    let whole = drive(&[&input], &limits());
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(drive(&bytes, &limits()), whole);
    assert_eq!(whole.0.len(), 5);
}
