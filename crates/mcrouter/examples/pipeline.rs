//! A pipelining load generator for bench/mcrouter.sh: memaslap sends one request and waits
//! for its reply, so it cannot measure what a proxy does with a client that pipelines (PHP's
//! memcached client does, for getMulti over several servers and with `noreply`).
//!
//! `pipeline ADDR CONNECTIONS DEPTH SECONDS [KEYS_PER_GET]`: stores 1,000 keys of 100 bytes,
//! then each connection (a thread, blocking sockets) writes DEPTH gets in one write and
//! reads the DEPTH replies, for SECONDS. Prints `ops N seconds S` (an op is a key asked for).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mcrouter::protocol::{reply_len, ReplyKind};

const KEYS: usize = 1000;

fn read_replies(stream: &mut TcpStream, buf: &mut Vec<u8>, mut n: usize, kind: ReplyKind) {
    let mut chunk = vec![0u8; 256 * 1024];
    while n > 0 {
        while let Ok(Some(len)) = reply_len(buf, kind) {
            buf.drain(..len);
            n -= 1;
            if n == 0 {
                return;
            }
        }
        let got = stream.read(&mut chunk).expect("read");
        assert!(got > 0, "server closed the connection");
        buf.extend_from_slice(&chunk[..got]);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, connections, depth, seconds, rest @ ..] = &args[..] else {
        eprintln!("usage: pipeline ADDR CONNECTIONS DEPTH SECONDS [KEYS_PER_GET]");
        std::process::exit(2);
    };
    let connections: usize = connections.parse().expect("CONNECTIONS");
    let depth: usize = depth.parse().expect("DEPTH");
    let seconds: f64 = seconds.parse().expect("SECONDS");
    let per_get: usize = rest.first().map_or(1, |k| k.parse().expect("KEYS_PER_GET"));

    let mut setup = TcpStream::connect(addr.as_str()).expect("connect");
    let value = "v".repeat(100);
    let mut sets = String::new();
    for i in 0..KEYS {
        sets.push_str(&format!("set pipe:{i} 0 0 100\r\n{value}\r\n"));
    }
    setup.write_all(sets.as_bytes()).expect("write");
    read_replies(&mut setup, &mut Vec::new(), KEYS, ReplyKind::Line);

    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr.as_str()).expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut buf = Vec::new();
                let mut next = c * 7919;
                let mut ops = 0u64;
                while Instant::now() < deadline {
                    let mut batch = String::new();
                    for _ in 0..depth {
                        batch.push_str("get");
                        for _ in 0..per_get {
                            batch.push_str(&format!(" pipe:{}", next % KEYS));
                            next += 1;
                        }
                        batch.push_str("\r\n");
                    }
                    stream.write_all(batch.as_bytes()).expect("write");
                    read_replies(&mut stream, &mut buf, depth, ReplyKind::Values);
                    ops += (depth * per_get) as u64;
                }
                ops
            })
        })
        .collect();
    let ops: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    println!("ops {ops} seconds {:.3}", start.elapsed().as_secs_f64());
}
