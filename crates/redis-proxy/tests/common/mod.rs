//! Real redis-server processes and a real proxy process on loopback, for the integration tests.
//!
//! Every process is killed, and every file it used removed, when its handle drops. Waits poll
//! with a deadline; none sleeps a fixed time hoping something happened.

#![allow(dead_code)] // each test file uses a different part of this module

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redis_proxy::resp::reply_len;
use serde_json::{json, Value};

#[allow(unused_imports)] // each test file uses a different part
pub use wikikube_test_support::{free_port, require, wait_listening, wait_until};

/// A fresh directory under the system's temp dir, removed by [`TempDir`]'s drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "redis-proxy-test-{what}-{}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} failed");
}

/// A redis-server on loopback, with no persistence.
pub struct RedisServer {
    pub port: u16,
    pub password: Option<String>,
    child: Option<Child>,
    dir: TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with_password(None)
    }

    pub fn start_with_password(password: Option<&str>) -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            password: password.map(str::to_string),
            child: None,
            dir: TempDir::new("redis"),
        };
        r.restart();
        r
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it (again) on the same port, empty.
    pub fn restart(&mut self) {
        let bin = require("redis-server", "redis-server");
        let mut command = Command::new(bin);
        command
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let mut child = command.spawn().expect("start redis-server");
        wait_listening(self.port, &mut child, "redis-server");
        self.child = Some(child);
    }

    /// Kills it and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it (SIGSTOP): its port still accepts connections, but nothing answers.
    pub fn pause(&self) {
        signal(self.child.as_ref().unwrap(), "-STOP");
    }

    /// Lets a paused server run again.
    pub fn resume(&self) {
        signal(self.child.as_ref().unwrap(), "-CONT");
    }

    /// A direct client, authenticated if the server has a password.
    pub fn client(&self) -> Client {
        let mut c = Client::connect(self.port);
        if let Some(password) = &self.password {
            assert_eq!(c.cmd(&["AUTH", password]), Reply::ok());
        }
        c
    }

    /// Whether the server holds `key` (asked directly, not through the proxy).
    pub fn has(&self, key: &str) -> bool {
        self.client().cmd(&["EXISTS", key]) == Reply::Int(1)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a paused server too.
        self.kill();
    }
}

/// The proxy binary, with a config file written for it.
pub struct Proxy {
    /// Each pool's listening port.
    pub ports: BTreeMap<String, u16>,
    pub admin_port: u16,
    pub child: Child,
    pub dir: TempDir,
}

impl Proxy {
    /// Starts the proxy with `config`, giving each pool without a `listen` a free port.
    pub fn start(config: Value) -> Proxy {
        Proxy::start_with_env(config, &[])
    }

    pub fn start_with_env(mut config: Value, env: &[(&str, &str)]) -> Proxy {
        let dir = TempDir::new("proxy");
        let mut ports = BTreeMap::new();
        for (name, pool) in config["pools"].as_object_mut().unwrap() {
            let port = match pool.get("listen") {
                Some(listen) => listen
                    .as_str()
                    .unwrap()
                    .rsplit_once(':')
                    .unwrap()
                    .1
                    .parse()
                    .unwrap(),
                None => free_port(),
            };
            pool["listen"] = json!(format!("127.0.0.1:{port}"));
            ports.insert(name.clone(), port);
        }
        let admin_port = free_port();
        let path = dir.0.join("redis-proxy.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_redis-proxy"))
            .arg("--config")
            .arg(&path)
            .args(["--admin", &format!("127.0.0.1:{admin_port}")])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("stderr")).unwrap())
            .spawn()
            .expect("start redis-proxy");
        for port in ports.values() {
            wait_listening(*port, &mut child, "redis-proxy");
        }
        wait_listening(admin_port, &mut child, "redis-proxy admin");
        Proxy {
            ports,
            admin_port,
            child,
            dir,
        }
    }

    /// A client of the pool named `pool`.
    pub fn client(&self, pool: &str) -> Client {
        Client::connect(self.ports[pool])
    }

    /// What the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("stderr")).unwrap_or_default()
    }

    /// `GET path` on the admin endpoint: the status code and the body.
    pub fn admin(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }

    /// The sum of every metric line that starts with `prefix` (a name: all its label sets).
    pub fn metric_sum(&self, prefix: &str) -> f64 {
        self.admin("/metrics")
            .1
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of a metric line that starts with `prefix` (name and labels), if any.
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        self.admin("/metrics")
            .1
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A RESP2 reply, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Status("OK".into())
    }

    pub fn bulk(s: &str) -> Reply {
        Reply::Bulk(Some(s.as_bytes().to_vec()))
    }

    pub fn nil() -> Reply {
        Reply::Bulk(None)
    }

    pub fn array(items: Vec<Reply>) -> Reply {
        Reply::Array(Some(items))
    }

    /// The message of an error reply; panics on anything else.
    pub fn err(&self) -> &str {
        match self {
            Reply::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Decodes the one complete reply `bytes` holds.
    pub fn decode(bytes: &[u8]) -> Reply {
        let (reply, rest) = decode(bytes);
        assert!(rest.is_empty(), "trailing bytes {rest:?}");
        reply
    }
}

fn decode(b: &[u8]) -> (Reply, &[u8]) {
    let nl = b.iter().position(|&c| c == b'\n').unwrap();
    let line = std::str::from_utf8(&b[1..nl - 1]).unwrap();
    let rest = &b[nl + 1..];
    match b[0] {
        b'+' => (Reply::Status(line.into()), rest),
        b'-' => (Reply::Error(line.into()), rest),
        b':' => (Reply::Int(line.parse().unwrap()), rest),
        b'$' => match line.parse::<i64>().unwrap() {
            -1 => (Reply::Bulk(None), rest),
            n => {
                let n = n as usize;
                (Reply::Bulk(Some(rest[..n].to_vec())), &rest[n + 2..])
            }
        },
        b'*' => match line.parse::<i64>().unwrap() {
            -1 => (Reply::Array(None), rest),
            n => {
                let mut items = Vec::new();
                let mut rest = rest;
                for _ in 0..n {
                    let (item, r) = decode(rest);
                    items.push(item);
                    rest = r;
                }
                (Reply::Array(Some(items)), rest)
            }
        },
        other => panic!("not RESP: {:?}", other as char),
    }
}

/// A blocking RESP2 client.
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

    /// Encodes a command as multibulk.
    pub fn encode(args: &[&[u8]]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd_bytes(&args)
    }

    pub fn cmd_bytes(&mut self, args: &[&[u8]]) -> Reply {
        self.send_raw(&Client::encode(args));
        self.read_reply()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one reply.
    pub fn read_reply(&mut self) -> Reply {
        loop {
            if let Some(n) = reply_len(&self.buf).expect("well-formed reply") {
                let reply: Vec<u8> = self.buf.drain(..n).collect();
                return Reply::decode(&reply);
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

    /// Whether the other side has closed the connection (reads to the end, within a bound).
    pub fn closed(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// `n` redis-servers and a proxy with one pool, `p`, over them, plus `extra` pool settings.
pub struct Farm {
    pub servers: Vec<RedisServer>,
    pub proxy: Proxy,
}

impl Farm {
    pub fn new(n: usize, pool: Value, top: Value) -> Farm {
        let servers: Vec<RedisServer> = (0..n).map(|_| RedisServer::start()).collect();
        let proxy = Proxy::start(Farm::config(&servers, pool, top));
        Farm { servers, proxy }
    }

    pub fn config(servers: &[RedisServer], pool: Value, top: Value) -> Value {
        let addrs: Vec<String> = servers.iter().map(RedisServer::addr).collect();
        let mut p = json!({"servers": addrs});
        for (k, v) in pool.as_object().unwrap() {
            p[k] = v.clone();
        }
        let mut config = json!({"pools": {"p": p}});
        for (k, v) in top.as_object().unwrap() {
            config[k] = v.clone();
        }
        config
    }

    pub fn client(&self) -> Client {
        self.proxy.client("p")
    }

    /// The index of the server that holds `key` (asked of every server directly).
    pub fn holder(&self, key: &str) -> Option<usize> {
        let all: Vec<usize> = (0..self.servers.len()).collect();
        self.holder_among(key, &all)
    }

    /// The index of the server among `servers` that holds `key`.
    pub fn holder_among(&self, key: &str, servers: &[usize]) -> Option<usize> {
        let holders: Vec<usize> = servers
            .iter()
            .copied()
            .filter(|&i| self.servers[i].has(key))
            .collect();
        assert!(holders.len() <= 1, "{key} is on servers {holders:?}");
        holders.first().copied()
    }

    /// Keys `{prefix}{i}`, one on each server, from the ring the proxy uses.
    pub fn keys_on_each_server(&self, prefix: &str) -> Vec<String> {
        let addrs: Vec<String> = self.servers.iter().map(RedisServer::addr).collect();
        let ring = ketama::Ring::new(&addrs);
        (0..self.servers.len())
            .map(|s| {
                (0..)
                    .map(|i| format!("{prefix}{i}"))
                    .find(|k| ring.server_for(k.as_bytes()) == s)
                    .unwrap()
            })
            .collect()
    }
}
