//! Test fixtures: certificates, small backends, the edge binary as a process, real clients.
//!
//! Every wait polls with a deadline; nothing sleeps a fixed time hoping something happened.

#![allow(dead_code)] // each test binary uses a different part of this module

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Fails the test with a clear message when a client binary is missing: CI installs it.
pub fn require(bin: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "required program `{bin}` is missing: install the Debian package `{package}` (apt-get install -y {package})"
    );
}

/// Polls `f` every 50 ms until it returns Some, or panics after `limit` naming `what`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub use wikikube_test_support::free_port;

/// A test CA and leaf certificates it signs, as PEM files in `dir`.
pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edge test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca_pem = dir.join("ca.pem");
        std::fs::write(&ca_pem, cert.pem()).unwrap();
        Pki {
            dir: dir.to_owned(),
            ca_pem,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// The CA as a rustls client's roots.
    pub fn client_roots(&self) -> rustls::RootCertStore {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca_pem).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    }

    /// Writes `<file>.pem` and `<file>.key` for `names`, with subject CN `cn`.
    pub fn leaf(&self, file: &str, cn: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        // Like a real certificate (testssl.sh flags the rest): 90 days, and a CRL location.
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(90);
        params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: vec!["http://crl.wiki.invalid/edge-test-ca.crl".into()],
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        // Written to a temporary name and renamed, as Kubernetes does, so a reader never sees
        // half a file.
        let tmp = self.dir.join(format!("{file}.tmp"));
        std::fs::write(&tmp, key.serialize_pem()).unwrap();
        std::fs::rename(&tmp, &k).unwrap();
        std::fs::write(&tmp, cert.pem()).unwrap();
        std::fs::rename(&tmp, &c).unwrap();
        (c, k)
    }
}

/// A small HTTP/1.1 backend on loopback that reports what it received.
///
/// `GET /healthz` answers 200; `/slow/MS` waits MS milliseconds first; `/echo` streams the
/// request body back; anything else answers with `x-backend: NAME` and a body listing the
/// request line and headers. Responses carry `cache-control: public, max-age=300` so that
/// tests can see edge replace it.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub in_flight: Arc<AtomicUsize>,
    pub served: Arc<AtomicUsize>,
    pub healthy: Arc<AtomicBool>,
    /// TCP connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

type TestBody = BoxBody<Bytes, hyper::Error>;

fn full(s: String) -> TestBody {
    Full::new(Bytes::from(s)).map_err(|n| match n {}).boxed()
}

impl Backend {
    /// Starts on `port` (0: any) inside the current tokio runtime.
    pub async fn start(name: &str, port: u16) -> Backend {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let healthy = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = connections.clone();
        let (n, inf, srv, hl) = (
            name.to_owned(),
            in_flight.clone(),
            served.clone(),
            healthy.clone(),
        );
        let task = tokio::spawn(async move {
            // Connections live in this JoinSet: aborting the accept task drops it, which
            // aborts them all, like a killed process.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (n, inf, srv, hl) = (n.clone(), inf.clone(), srv.clone(), hl.clone());
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (n, inf, srv, hl) = (n.clone(), inf.clone(), srv.clone(), hl.clone());
                        async move { Ok::<_, Infallible>(answer(req, &n, &inf, &srv, &hl).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Backend {
            name: name.to_owned(),
            addr,
            in_flight,
            served,
            healthy,
            connections,
            task,
        }
    }

    /// Kills it: the listener closes and every open connection is cut.
    pub fn kill(&self) {
        self.task.abort();
    }

    /// Whether the socket is gone (after kill, once the runtime has dropped the task).
    pub fn is_closed(&self) -> bool {
        TcpStream::connect(self.addr).is_err()
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    name: &str,
    in_flight: &AtomicUsize,
    served: &AtomicUsize,
    healthy: &AtomicBool,
) -> Response<TestBody> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        let ok = healthy.load(Ordering::SeqCst);
        let mut r = Response::new(full(if ok { "ok" } else { "sick" }.into()));
        if !ok {
            *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
        }
        return r;
    }
    served.fetch_add(1, Ordering::SeqCst);
    in_flight.fetch_add(1, Ordering::SeqCst);
    if let Some(ms) = path.strip_prefix("/slow/") {
        let ms: u64 = ms.parse().unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut resp = if path == "/echo" {
        Response::new(req.into_body().boxed())
    } else {
        let mut text = format!("backend={name}\n{} {}\n", req.method(), req.uri());
        for (k, v) in req.headers() {
            text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
        }
        Response::new(full(text))
    };
    in_flight.fetch_sub(1, Ordering::SeqCst);
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    resp.headers_mut()
        .insert("cache-control", "public, max-age=300".parse().unwrap());
    resp
}

/// The edge binary running as a process with a config file in `dir`.
pub struct Edge {
    pub child: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
    pub log: PathBuf,
}

impl Edge {
    /// Writes `config` to `dir/edge.toml`, starts edge, waits until it accepts connections.
    pub fn start(dir: &Path, config: &str, port: u16, metrics_port: u16) -> Edge {
        let path = dir.join("edge.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join("edge.log");
        let child = Command::new(env!("CARGO_BIN_EXE_edge"))
            .arg("--config")
            .arg(&path)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("edge.err")).unwrap())
            .spawn()
            .unwrap();
        let mut edge = Edge {
            child,
            dir: dir.to_owned(),
            config: path,
            port,
            metrics_port,
            log,
        };
        wait_for("edge to listen", Duration::from_secs(20), || {
            if let Ok(Some(status)) = edge.child.try_wait() {
                panic!(
                    "edge exited with {status}: {}",
                    std::fs::read_to_string(dir.join("edge.err")).unwrap_or_default()
                );
            }
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        edge
    }

    /// Rewrites the config file in place (a reload trigger).
    pub fn rewrite_config(&self, config: &str) {
        let tmp = self.dir.join("edge.toml.tmp");
        let mut f = std::fs::File::create(&tmp).unwrap();
        f.write_all(config.as_bytes()).unwrap();
        drop(f);
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    pub fn resolve(&self, host: &str) -> String {
        format!("{host}:{}:127.0.0.1", self.port)
    }

    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn sigterm(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
    }

    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = &mut self.child;
        wait_for("edge to exit", limit, || child.try_wait().unwrap())
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response as curl saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub version: String,
    pub headers: String,
    pub body: String,
}

impl Reply {
    /// The first value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Runs curl against edge for `host` + `path` with extra arguments; panics if curl fails.
pub fn curl(edge: &Edge, ca: &Path, host: &str, path: &str, extra: &[&str]) -> Reply {
    require("curl", "curl");
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20", "--cacert"])
        .arg(ca)
        .args(["--resolve", &edge.resolve(host)])
        .args(extra)
        .arg(edge.url(host, path))
        .output()
        .unwrap();
    parse_curl(&out)
}

pub fn parse_curl(out: &Output) -> Reply {
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let first = head.lines().next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let version = parts.next().unwrap_or_default().to_owned();
    let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Reply {
        status,
        version,
        headers: head.to_owned(),
        body: body.to_owned(),
    }
}

/// `openssl s_client` connecting to edge; returns its stdout (certificate, protocol, ALPN).
pub fn s_client(port: u16, args: &[&str]) -> String {
    require("openssl", "openssl");
    let mut child = Command::new("openssl")
        .arg("s_client")
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Closing stdin makes s_client exit after the handshake.
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A pod-mode config: listening on `port` (TLS) and `metrics_port`, with `listen_extra` lines
/// added to `[listen]`, serving each `(cert, key, names)` and forwarding to `upstream`.
pub fn pod_config(
    port: u16,
    metrics_port: u16,
    listen_extra: &str,
    certificates: &[(&Path, &Path, &[&str])],
    upstream: &str,
) -> String {
    let mut config = format!(
        "[listen]\naddress = \"127.0.0.1:{port}\"\nmetrics = \"127.0.0.1:{metrics_port}\"\n{listen_extra}\n"
    );
    for (cert, key, names) in certificates {
        let names: Vec<String> = names.iter().map(|name| format!("{name:?}")).collect();
        config.push_str(&format!(
            "\n[[tls.certificates]]\nnames = [{}]\ncert = \"{}\"\nkey = \"{}\"\n",
            names.join(", "),
            cert.display(),
            key.display()
        ));
    }
    config.push_str(&format!("\n[pod]\nupstream = \"{upstream}\"\n"));
    config
}

/// An edge in pod mode in front of one backend (`httpd`), with certificates for
/// wiki.example and *.wiki.example (`wiki`) and other.example (`other`), a 10 s drain and a
/// 100 ms reload interval.
pub struct Pod {
    _tmp: tempfile::TempDir,
    pub pki: Pki,
    pub edge: Edge,
    pub backend: Backend,
}

impl Pod {
    pub async fn start() -> Pod {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::new(tmp.path());
        let (wc, wk) = pki.leaf("wiki", "wiki-cert", &["wiki.example", "*.wiki.example"]);
        let (oc, ok) = pki.leaf("other", "other-cert", &["other.example"]);
        let backend = Backend::start("httpd", 0).await;
        let (port, mport) = (free_port(), free_port());
        let config = pod_config(
            port,
            mport,
            "drain_seconds = 10\nreload_interval_ms = 100",
            &[
                (&wc, &wk, &["wiki.example", "*.wiki.example"]),
                (&oc, &ok, &["other.example"]),
            ],
            &backend.addr.to_string(),
        );
        let edge = Edge::start(tmp.path(), &config, port, mport);
        Pod {
            _tmp: tmp,
            pki,
            edge,
            backend,
        }
    }
}

/// Runs the edge binary on the config file at `path`, which it must refuse (exit status 1
/// before serving); its standard error.
pub fn refused_config(path: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .arg("--config")
        .arg(path)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The value of the `edge_endpoint_healthy` gauge whose `label` is `value` (1 healthy, 0 not).
pub fn endpoint_healthy(metrics: &str, label: &str, value: &str) -> Option<i64> {
    let wanted = format!("{label}=\"{value}\"");
    metrics
        .lines()
        .find(|l| l.starts_with("edge_endpoint_healthy{") && l.contains(&wanted))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
