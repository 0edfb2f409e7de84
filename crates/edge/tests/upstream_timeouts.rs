//! Upstreams that do not answer, answer only in part, or fail their health check: response
//! timeouts per backend (a 504, or a cut-off body), and pod mode's `/healthz` reporting the
//! cake behind it.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

/// A backend that accepts connections and then says nothing, or (with `partial`) reads the
/// request, sends a response head and part of the promised body, and then says nothing.
fn stalling_backend(partial: bool) -> TcpListener {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let accepting = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = accepting.accept() {
            if partial {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nthe first part");
            }
            held.push(stream);
        }
    });
    listener
}

struct Setup {
    _tmp: tempfile::TempDir,
    pki: Pki,
    edge: Edge,
}

fn pod_with(upstream: &str, pod_extra: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let (cert, key) = pki.leaf("wiki", "wiki-cert", &["wiki.example"]);
    let (port, mport) = (free_port(), free_port());
    let config = pod_config(
        port,
        mport,
        "",
        &[(&cert, &key, &["wiki.example"])],
        upstream,
    ) + pod_extra;
    let edge = Edge::start(tmp.path(), &config, port, mport);
    Setup {
        _tmp: tmp,
        pki,
        edge,
    }
}

#[test]
fn a_backend_that_never_answers_gets_a_504_at_the_header_timeout() {
    let silent = stalling_backend(false);
    let s = pod_with(
        &silent.local_addr().unwrap().to_string(),
        "timeouts = { header_ms = 400, body_ms = 400 }\n",
    );
    for http in ["--http1.1", "--http2"] {
        let start = Instant::now();
        let r = curl(
            &s.edge,
            &s.pki.ca_pem,
            "wiki.example",
            "/wiki/Main_Page",
            &[http],
        );
        let took = start.elapsed();
        assert_eq!(r.status, 504, "{r:?}");
        assert!(
            r.body.contains("did not answer within 400 ms"),
            "{}",
            r.body
        );
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }
    assert!(s
        .edge
        .metrics()
        .contains("edge_requests_total{status=\"504\"} 2"));
}

#[test]
fn a_body_that_stops_coming_is_cut_off_at_the_body_timeout() {
    let partial = stalling_backend(true);
    let s = pod_with(
        &partial.local_addr().unwrap().to_string(),
        "timeouts = { header_ms = 5000, body_ms = 400 }\n",
    );
    require("curl", "curl");
    let start = Instant::now();
    let out = Command::new("curl")
        .args(["-sS", "-i", "--http1.1", "--max-time", "20", "--cacert"])
        .arg(&s.pki.ca_pem)
        .args(["--resolve", &s.edge.resolve("wiki.example")])
        .arg(s.edge.url("wiki.example", "/big"))
        .output()
        .unwrap();
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The head and the first part got through; then the response ends short of its length.
    assert!(stdout.starts_with("HTTP/1.1 200"), "{stdout}");
    assert!(stdout.contains("the first part"), "{stdout}");
    assert!(!out.status.success(), "curl saw a complete response");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_healthz_reports_the_cake_behind_it() {
    let backend = Backend::start("httpd", 0).await;
    let s = pod_with(
        &backend.addr.to_string(),
        "health = { path = \"/healthz\", interval_ms = 100, timeout_ms = 300, fall = 2, rise = 2 }\n",
    );
    let healthz = |mport: u16| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{mport}/healthz"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mport = s.edge.metrics_port;
    assert_eq!(healthz(mport), "200");
    backend
        .healthy
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for("/healthz to fail", Duration::from_secs(10), || {
        (healthz(mport) == "503").then_some(())
    });
    // Requests still go through: the check speaks for the readiness probe only.
    let r = curl(&s.edge, &s.pki.ca_pem, "wiki.example", "/", &[]);
    assert_eq!(r.status, 200);
    backend
        .healthy
        .store(true, std::sync::atomic::Ordering::SeqCst);
    wait_for("/healthz to pass again", Duration::from_secs(10), || {
        (healthz(mport) == "200").then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_waits_after_the_handshake_is_served_when_it_speaks() {
    // edge starts HTTP on a connection only once the client sends something (an idle one
    // holds no HTTP buffers): a client quiet for a while after its handshake is still served.
    let backend = Backend::start("httpd", 0).await;
    let s = pod_with(&backend.addr.to_string(), "");
    require("openssl", "openssl");
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{}", s.edge.port))
        .args(["-servername", "wiki.example", "-CAfile"])
        .arg(&s.pki.ca_pem)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    stdin
        .write_all(b"GET /quiet HTTP/1.1\r\nHost: wiki.example\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("GET /quiet"), "{text}");
    drop(stdin);
}
