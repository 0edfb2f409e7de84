//! Malformed, oversized and random input from clients: a clear error, the connection closed,
//! the proxy alive for everyone else. And the drain on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::{Client, Farm, Reply};
use serde_json::json;

fn alive(farm: &Farm) {
    let mut c = farm.client();
    assert_eq!(c.cmd(&["SET", "still", "here"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "still"]), Reply::bulk("here"));
}

#[test]
fn malformed_requests_get_an_error_and_their_connection_closed() {
    let farm = Farm::new(2, json!({}), json!({}));
    for (input, words) in [
        (&b"*2\r\n$3\r\nGET\r\n:1\r\n"[..], "expected '$'"),
        (b"*x\r\n", "invalid multibulk length"),
        (b"*1\r\n$3\r\nabcde\r\n", "not terminated by CRLF"),
        (b"*1\r\n$-3\r\n", "invalid bulk length"),
        (
            b"*1\r\n$99999999999999999999999999999999999999\r\n",
            "header line too long",
        ),
    ] {
        let mut c = farm.client();
        // A good command first: it is answered before the error.
        c.send_raw(b"*1\r\n$4\r\nPING\r\n");
        c.send_raw(input);
        assert_eq!(c.read_reply(), Reply::Status("PONG".into()));
        let r = c.read_reply();
        assert!(
            r.err().starts_with("ERR Protocol error: ") && r.err().contains(words),
            "{input:?}: {r:?}"
        );
        assert!(c.closed(), "{input:?}: connection left open");
        alive(&farm);
    }
    assert!(
        farm.proxy
            .metric("redis_proxy_protocol_errors_total")
            .unwrap()
            >= 5.0
    );
}

#[test]
fn oversized_requests_are_refused_before_they_arrive() {
    let farm = Farm::new(
        2,
        json!({}),
        json!({"limits": {"max_request_bytes": 65536, "max_args": 100, "max_inline_bytes": 1024}}),
    );
    // A value just under the limit is fine.
    let big = "x".repeat(60_000);
    let mut c = farm.client();
    assert_eq!(c.cmd(&["SET", "big", &big]), Reply::ok());
    assert_eq!(c.cmd(&["GET", "big"]), Reply::bulk(&big));

    for (header, setting) in [
        (
            &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n"[..],
            "limits.max_request_bytes",
        ),
        (b"*1000\r\n", "limits.max_args"),
        (&[b'A'; 2000][..], "limits.max_inline_bytes"),
    ] {
        let mut c = farm.client();
        let start = Instant::now();
        c.send_raw(header);
        // The error comes as soon as the header is read, not after a megabyte of body.
        let r = c.read_reply();
        assert!(r.err().contains(setting), "{r:?}");
        if setting == "limits.max_request_bytes" {
            assert_eq!(
                r.err(),
                "ERR Protocol error: request of 1000032 bytes is over the proxy's limit of \
                 65536 (limits.max_request_bytes)"
            );
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        // Whatever the client still sends goes nowhere: the connection is closed.
        let _ = c.stream.write_all(&vec![b'y'; 100_000]);
        assert!(c.closed());
        alive(&farm);
    }
}

/// A small deterministic generator (xorshift), so a failure can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_input_never_takes_the_proxy_down() {
    let farm = Farm::new(2, json!({}), json!({}));
    let pieces: [&[u8]; 14] = [
        b"*",
        b"$",
        b"\r\n",
        b"\n",
        b"-1",
        b"3",
        b"GET",
        b"SET",
        b"MGET",
        b"EVAL",
        b"k",
        b" ",
        b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
        b"99999999",
    ];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..150 {
        let mut input = Vec::new();
        for _ in 0..rng.below(12) + 1 {
            if rng.below(4) == 0 {
                input.push(rng.next() as u8);
            } else {
                input.extend_from_slice(pieces[rng.below(pieces.len())]);
            }
        }
        let mut s = TcpStream::connect(("127.0.0.1", farm.proxy.ports["p"])).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&input);
        // The client is done: the proxy answers what it can and closes on end of input.
        let _ = s.shutdown(Shutdown::Write);
        let mut answer = Vec::new();
        let read = s.read_to_end(&mut answer);
        assert!(
            read.is_ok()
                || read
                    .as_ref()
                    .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "round {round}: {input:?}: the connection neither answered nor closed: {read:?}"
        );
    }
    alive(&farm);
}

#[test]
fn sigterm_answers_what_was_sent_then_exits() {
    let mut farm = Farm::new(2, json!({}), json!({}));
    let mut c = farm.client();
    let mut batch = Vec::new();
    for i in 0..200 {
        batch.extend(Client::encode(&[
            b"SET",
            format!("drain:{i}").as_bytes(),
            b"v",
        ]));
    }
    c.send_raw(&batch);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &farm.proxy.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..200 {
        assert_eq!(c.read_reply(), Reply::ok());
    }
    assert!(c.closed());
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = farm.proxy.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(exit.success(), "{exit}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", farm.proxy.ports["p"])).is_err(),
        "still listening"
    );
}
