//! Real memcached servers and a real router on loopback, for the integration tests.
//!
//! Every process is killed when its handle drops. Waits poll with a deadline; none sleeps a
//! fixed time hoping something happened.

#![allow(dead_code)] // each test file uses a different part of this module

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mcrouter::protocol::{reply_len, ReplyKind};

#[allow(unused_imports)] // each test file uses a different part
pub use wikikube_test_support::{free_port, require, wait_listening, wait_until};

/// A memcached server on loopback.
pub struct Memcached {
    pub port: u16,
    child: Option<Child>,
}

impl Memcached {
    pub fn start() -> Memcached {
        let mut m = Memcached {
            port: free_port(),
            child: None,
        };
        m.restart();
        m
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port, empty.
    pub fn restart(&mut self) {
        let bin = require("memcached", "memcached");
        let mut child = Command::new(bin)
            .args([
                "-l",
                "127.0.0.1",
                "-U",
                "0",
                "-t",
                "1",
                "-m",
                "64",
                "-u",
                "root",
            ])
            .args(["-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start memcached");
        wait_listening(self.port, &mut child, "memcached");
        self.child = Some(child);
    }

    /// Kills it and waits until the port refuses connections.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The router binary, with a config file written for it.
pub struct Router {
    pub port: u16,
    pub metrics_port: u16,
    pub child: Child,
    config: PathBuf,
}

impl Router {
    pub fn start(config: &serde_json::Value) -> Router {
        Router::start_with_threads(config, 2)
    }

    /// A router whose one pool, `eqiad`, is `servers`, with every other setting at its default.
    pub fn over_pool(servers: &[Memcached]) -> Router {
        let servers: Vec<String> = servers.iter().map(Memcached::addr).collect();
        Router::start(&serde_json::json!({
            "pools": {"eqiad": {"servers": servers}},
            "local_pool": "eqiad",
        }))
    }

    pub fn start_with_threads(config: &serde_json::Value, threads: usize) -> Router {
        let port = free_port();
        let metrics_port = free_port();
        let path =
            std::env::temp_dir().join(format!("mcrouter-test-{}-{port}.json", std::process::id()));
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcrouter"))
            .arg("--config")
            .arg(&path)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics", &format!("127.0.0.1:{metrics_port}")])
            .args(["--threads", &threads.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mcrouter");
        wait_listening(port, &mut child, "mcrouter");
        Router {
            port,
            metrics_port,
            child,
            config: path,
        }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.port)
    }

    /// `STAT name value` lines of the router's `stats`.
    pub fn stat(&self, name: &str) -> Option<String> {
        let reply = self.client().stats();
        reply.lines().find_map(|l| {
            let rest = l.strip_prefix("STAT ")?;
            let (n, v) = rest.split_once(' ')?;
            (n == name).then(|| v.to_string())
        })
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// A blocking text-protocol client.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `request` and reads one reply of `kind`.
    pub fn call(&mut self, request: impl AsRef<[u8]>, kind: ReplyKind) -> String {
        self.stream.write_all(request.as_ref()).unwrap();
        self.read_reply(kind)
    }

    /// Reads one reply of `kind`.
    pub fn read_reply(&mut self, kind: ReplyKind) -> String {
        loop {
            if let Some(n) = reply_len(&self.buf, kind).expect("well-formed reply") {
                let reply: Vec<u8> = self.buf.drain(..n).collect();
                return String::from_utf8_lossy(&reply).into_owned();
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).expect("read reply");
            assert!(
                n > 0,
                "connection closed; had {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The whole reply to `stats`.
    pub fn stats(&mut self) -> String {
        self.stream.write_all(b"stats\r\n").unwrap();
        while !self.buf.ends_with(b"END\r\n") {
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).expect("read stats");
            assert!(n > 0, "connection closed during stats");
            self.buf.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8(std::mem::take(&mut self.buf)).unwrap()
    }

    pub fn set(&mut self, key: &str, value: &str, ttl: u32) -> String {
        self.call(
            format!("set {key} 0 {ttl} {}\r\n{value}\r\n", value.len()),
            ReplyKind::Line,
        )
    }

    /// The value of `key`, if any.
    pub fn get(&mut self, key: &str) -> Option<String> {
        let reply = self.call(format!("get {key}\r\n"), ReplyKind::Values);
        let mut lines = reply.split("\r\n");
        let header = lines.next()?;
        header
            .starts_with("VALUE ")
            .then(|| lines.next().unwrap().to_string())
    }
}
