//! Pod mode end to end: real TLS clients (curl, openssl s_client, testssl.sh) against the edge
//! binary, forwarding to a small backend.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_and_tls13_both_work() {
    let p = Pod::start().await;
    let out12 = s_client(p.edge.port, &["-tls1_2", "-servername", "wiki.example"]);
    assert!(out12.contains("Protocol  : TLSv1.2"), "{out12}");
    let out13 = s_client(p.edge.port, &["-tls1_3", "-servername", "wiki.example"]);
    assert!(out13.contains("TLSv1.3"), "{out13}");
    // And full requests through curl with each version pinned.
    let r = curl(
        &p.edge,
        &p.pki.ca_pem,
        "wiki.example",
        "/",
        &["--tlsv1.2", "--tls-max", "1.2"],
    );
    assert_eq!(r.status, 200);
    let r = curl(&p.edge, &p.pki.ca_pem, "wiki.example", "/", &["--tlsv1.3"]);
    assert_eq!(r.status, 200);
    // TLS 1.1 is refused.
    let out11 = s_client(p.edge.port, &["-tls1_1", "-servername", "wiki.example"]);
    assert!(out11.contains("no peer certificate available"), "{out11}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_chooses_the_suite_in_its_own_order() {
    let p = Pod::start().await;
    // OpenSSL's clients list AES-256 first; the edge's order (AES-128 first) decides.
    let out13 = s_client(p.edge.port, &["-tls1_3", "-servername", "wiki.example"]);
    assert!(
        out13.contains("Cipher is TLS_AES_128_GCM_SHA256"),
        "{out13}"
    );
    let out12 = s_client(p.edge.port, &["-tls1_2", "-servername", "wiki.example"]);
    assert!(
        out12.contains("Cipher is ECDHE-ECDSA-AES128-GCM-SHA256")
            || out12.contains("Cipher is ECDHE-RSA-AES128-GCM-SHA256"),
        "{out12}"
    );
    // A client without AES-128 gets the next in the edge's order.
    let out = s_client(
        p.edge.port,
        &[
            "-tls1_3",
            "-ciphersuites",
            "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384",
            "-servername",
            "wiki.example",
        ],
    );
    assert!(out.contains("Cipher is TLS_AES_256_GCM_SHA384"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_prefers_post_quantum_key_exchange_gets_it() {
    use rustls::crypto::aws_lc_rs::kx_group::{X25519, X25519MLKEM768};
    let p = Pod::start().await;
    let roots = p.pki.client_roots();
    // The group the edge agrees on with a client offering `groups` in this order.
    let negotiated = |groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>| {
        let roots = roots.clone();
        async move {
            let provider = rustls::crypto::CryptoProvider {
                kx_groups: groups,
                ..rustls::crypto::aws_lc_rs::default_provider()
            };
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.edge.port))
                .await
                .unwrap();
            let name = rustls::pki_types::ServerName::try_from("wiki.example").unwrap();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .unwrap();
            tls.get_ref()
                .1
                .negotiated_key_exchange_group()
                .map(|g| g.name())
        }
    };
    // Current browsers list the hybrid X25519 + ML-KEM-768 group first.
    assert_eq!(
        negotiated(vec![X25519MLKEM768, X25519]).await,
        Some(rustls::NamedGroup::X25519MLKEM768)
    );
    assert_eq!(
        negotiated(vec![X25519]).await,
        Some(rustls::NamedGroup::X25519)
    );
}

/// A TLS 1.3 client that trusts the test CA, with a session store of its own.
fn tls13_client(pki: &Pki) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(pki.client_roots())
        .with_no_client_auth();
    Arc::new(config)
}

/// A TLS connection to wiki.example on `port`, handshake done (ALPN: none, so HTTP/1.1).
async fn connect_tls(
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("wiki.example").unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap()
}

/// One request over TLS 1.3 with `config`'s session store; whether the handshake resumed.
async fn request_resumed(port: u16, config: Arc<rustls::ClientConfig>) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = connect_tls(port, config).await;
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: wiki.example\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    // To the end, so that the session tickets are taken in; the close may lack close_notify.
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    assert!(response.starts_with(b"HTTP/1.1 200"), "{response:?}");
    resumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_its_session_after_hundreds_of_other_clients() {
    let p = Pod::start().await;
    let (first, others) = (tls13_client(&p.pki), tls13_client(&p.pki));
    assert!(!request_resumed(p.edge.port, first.clone()).await);
    // 300 connections of other clients: more sessions than a session cache of rustls's
    // default size (256) would hold.
    for _ in 0..300 {
        request_resumed(p.edge.port, others.clone()).await;
    }
    assert!(
        request_resumed(p.edge.port, first).await,
        "the first client's session was forgotten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_offers_h2_and_http11() {
    let p = Pod::start().await;
    let out = s_client(
        p.edge.port,
        &["-alpn", "h2,http/1.1", "-servername", "wiki.example"],
    );
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    let out = s_client(
        p.edge.port,
        &["-alpn", "http/1.1", "-servername", "wiki.example"],
    );
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    let r = curl(&p.edge, &p.pki.ca_pem, "wiki.example", "/h2", &["--http2"]);
    assert_eq!((r.status, r.version.as_str()), (200, "HTTP/2"), "{r:?}");
    let r = curl(
        &p.edge,
        &p.pki.ca_pem,
        "wiki.example",
        "/h1",
        &["--http1.1"],
    );
    assert_eq!((r.status, r.version.as_str()), (200, "HTTP/1.1"), "{r:?}");
    // The backend always gets HTTP/1.1 with a Host header, even from an HTTP/2 client.
    let r = curl(
        &p.edge,
        &p.pki.ca_pem,
        "en.wiki.example",
        "/x",
        &["--http2"],
    );
    assert!(
        r.body
            .contains(&format!("host: en.wiki.example:{}", p.edge.port)),
        "{}",
        r.body
    );
}

fn subject(out: &str) -> String {
    out.lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject in s_client output: {out}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate() {
    let p = Pod::start().await;
    let port = p.edge.port;
    assert!(subject(&s_client(port, &["-servername", "wiki.example"])).contains("wiki-cert"));
    assert!(subject(&s_client(port, &["-servername", "en.wiki.example"])).contains("wiki-cert"));
    assert!(subject(&s_client(port, &["-servername", "other.example"])).contains("other-cert"));
    // No SNI, or an unknown name: the first certificate.
    assert!(subject(&s_client(port, &["-noservername"])).contains("wiki-cert"));
    assert!(subject(&s_client(port, &["-servername", "nope.test"])).contains("wiki-cert"));
    // curl verifies each name against the CA: the chosen certificate matches the name.
    for host in ["wiki.example", "de.wiki.example", "other.example"] {
        let r = curl(&p.edge, &p.pki.ca_pem, host, "/", &[]);
        assert_eq!(r.status, 200, "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ip_address_as_server_name_gets_the_first_certificate_and_no_log_line() {
    let p = Pod::start().await;
    // wrk and some monitoring clients send one; rustls warned about it on every connection.
    for _ in 0..3 {
        let out = s_client(p.edge.port, &["-servername", "127.0.0.1"]);
        assert!(subject(&out).contains("wiki-cert"), "{out}");
    }
    let log = std::fs::read_to_string(&p.edge.log).unwrap();
    assert!(
        !log.contains("rustls"),
        "rustls logged a client's mistake: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_is_reloaded_without_restart() {
    let p = Pod::start().await;
    let port = p.edge.port;
    assert!(subject(&s_client(port, &["-servername", "other.example"])).contains("other-cert"));
    p.pki.leaf("other", "renewed-cert", &["other.example"]);
    wait_for("the renewed certificate", Duration::from_secs(10), || {
        subject(&s_client(port, &["-servername", "other.example"]))
            .contains("renewed-cert")
            .then_some(())
    });
    let r = curl(&p.edge, &p.pki.ca_pem, "other.example", "/", &[]);
    assert_eq!(r.status, 200);
    // A broken file keeps the old certificate in use.
    std::fs::write(p.pki.dir.join("other.pem"), "garbage").unwrap();
    std::thread::sleep(Duration::from_millis(400)); // several reload intervals
    assert!(subject(&s_client(port, &["-servername", "other.example"])).contains("renewed-cert"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_added_and_the_rest_passes_through() {
    let p = Pod::start().await;
    let r = curl(
        &p.edge,
        &p.pki.ca_pem,
        "wiki.example",
        "/wiki/Main_Page?action=raw",
        &[
            "-H",
            "X-Client-IP: 6.6.6.6",
            "-H",
            "X-Forwarded-For: 192.0.2.7",
            "-H",
            "X-Custom: kept as is",
            "-H",
            "Cookie: a=1",
        ],
    );
    assert_eq!(r.status, 200);
    let b = &r.body;
    assert!(b.contains("GET /wiki/Main_Page?action=raw"), "{b}");
    assert!(b.contains("x-client-ip: 127.0.0.1\n"), "{b}");
    assert!(
        !b.contains("6.6.6.6"),
        "a client-sent X-Client-IP must not pass: {b}"
    );
    assert!(b.contains("x-forwarded-for: 192.0.2.7, 127.0.0.1\n"), "{b}");
    assert!(b.contains("x-forwarded-proto: https\n"), "{b}");
    assert!(b.contains("x-custom: kept as is\n"), "{b}");
    assert!(b.contains("cookie: a=1\n"), "{b}");
    // Response headers pass through too (pod mode does not touch Cache-Control).
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("public, max-age=300")
    );
    assert_eq!(r.header("x-backend").as_deref(), Some("httpd"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways() {
    let p = Pod::start().await;
    // 8 MiB up and back down, over both protocols.
    let data: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let file = p.pki.dir.join("upload.bin");
    std::fs::write(&file, &data).unwrap();
    for proto in ["--http1.1", "--http2"] {
        let down = p.pki.dir.join("download.bin");
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", proto, "--cacert"])
            .arg(&p.pki.ca_pem)
            .args(["--resolve", &p.edge.resolve("wiki.example")])
            .arg("--data-binary")
            .arg(format!("@{}", file.display()))
            .arg("-o")
            .arg(&down)
            .arg(p.edge.url("wiki.example", "/echo"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(&down).unwrap() == data,
            "{proto}: echoed body differs"
        );
    }
}

/// Runs one curl process (so one client connection) for `n` requests of `path`; returns the
/// status codes.
fn repeated(p: &Pod, path: &str, n: usize, extra: &[&str]) -> Vec<String> {
    repeated_on(&p.edge, &p.pki.ca_pem, path, n, extra)
}

fn repeated_on(
    edge: &Edge,
    ca: &std::path::Path,
    path: &str,
    n: usize,
    extra: &[&str],
) -> Vec<String> {
    let url = edge.url("wiki.example", path);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca)
        .args(["--resolve", &edge.resolve("wiki.example")])
        .args(["-w", "%{http_code}\\n"])
        .args(extra)
        .args((0..n).flat_map(|_| ["-o", "/dev/null", url.as_str()]))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_and_broken_ones_dropped() {
    let p = Pod::start().await;
    let before = p.backend.connections.load(Ordering::SeqCst);
    // One client connection is served by one thread, whose pool reuses one upstream connection,
    // also after responses without a body (HEAD) and over HTTP/2.
    let codes = repeated(&p, "/", 40, &["--http1.1"]);
    assert_eq!(codes, vec!["200"; 40]);
    let codes = repeated(&p, "/", 20, &["--http1.1", "--head"]);
    assert_eq!(codes, vec!["200"; 20]);
    let codes = repeated(&p, "/", 20, &["--http2"]);
    assert_eq!(codes, vec!["200"; 20]);
    let used = p.backend.connections.load(Ordering::SeqCst) - before;
    assert!(used <= 2, "{used} upstream connections for 80 requests");

    // A client that gives up mid-request takes its upstream connection down with it (HTTP/1.1
    // cannot abandon a response); the next request gets a working one.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "0.5", "--cacert"])
        .arg(&p.pki.ca_pem)
        .args(["--resolve", &p.edge.resolve("wiki.example")])
        .arg(p.edge.url("wiki.example", "/slow/1500"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "curl should have timed out");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(repeated(&p, "/", 5, &["--http1.1"]), vec!["200"; 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_and_connections() {
    let p = Pod::start().await;
    for _ in 0..3 {
        assert_eq!(
            curl(&p.edge, &p.pki.ca_pem, "wiki.example", "/", &[]).status,
            200
        );
    }
    let m = p.edge.metrics();
    assert!(m.contains("edge_requests_total{status=\"200\"} 3"), "{m}");
    assert!(m.contains("edge_request_duration_seconds_count 3"), "{m}");
    assert!(m.contains("edge_active_connections"), "{m}");
    // The access log is JSON, one line per request, under target "access".
    let log = std::fs::read_to_string(&p.edge.log).unwrap();
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"target\":\"access\""))
        .collect();
    assert_eq!(access.len(), 3, "{log}");
    assert!(
        access[0].starts_with('{') && access[0].contains("\"status\":200"),
        "{}",
        access[0]
    );
}

/// Sends `request` as it is over TLS (HTTP/1.1) to the pod's edge and reads the response to
/// the connection's close: for requests curl will not send.
async fn raw_https(p: &Pod, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = connect_tls(p.edge.port, tls13_client(&p.pki)).await;
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_two_host_headers_is_refused() {
    let p = Pod::start().await;
    // Routed by one, it would have been served by whichever the upstream reads.
    let response = raw_https(
        &p,
        "GET / HTTP/1.1\r\nHost: wiki.example\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    assert!(response.contains("more than one Host header"), "{response}");
    // An absolute-form target outranks the Host header (RFC 9112 3.2.2): routed by the
    // target, and the upstream gets the target's host.
    let response = raw_https(
        &p,
        "GET https://wiki.example/abs HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
    assert!(response.contains("host: wiki.example\n"), "{response}");
    assert!(!response.contains("other.example"), "{response}");
    assert_eq!(p.backend.served.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlogged_paths_are_answered_and_counted_but_not_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let (cert, key) = pki.leaf("wiki", "wiki-cert", &["wiki.example"]);
    let backend = Backend::start("httpd", 0).await;
    let (port, mport) = (free_port(), free_port());
    let mut config = pod_config(
        port,
        mport,
        "",
        &[(&cert, &key, &["wiki.example"])],
        &backend.addr.to_string(),
    );
    config.push_str("unlogged_paths = [\"/healthz\"]\n");
    let edge = Edge::start(tmp.path(), &config, port, mport);
    // As the edge in front checks each pod: the same path, through the terminator.
    for path in ["/healthz", "/", "/healthz"] {
        assert_eq!(
            curl(&edge, &pki.ca_pem, "wiki.example", path, &[]).status,
            200
        );
    }
    let metrics = edge.metrics();
    assert!(
        metrics.contains("edge_requests_total{status=\"200\"} 3"),
        "{metrics}"
    );
    let log = std::fs::read_to_string(&edge.log).unwrap();
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("\"target\":\"access\""))
        .collect();
    assert_eq!(access.len(), 1, "{log}");
    assert!(access[0].contains("\"path\":\"/\""), "{}", access[0]);
}

async fn sigterm_drain(protocol: &str) {
    let mut p = Pod::start().await;
    require("curl", "curl");
    let slow = Command::new("curl")
        .args(["-sS", "--max-time", "20", protocol, "--cacert"])
        .arg(&p.pki.ca_pem)
        .args(["--resolve", &p.edge.resolve("wiki.example")])
        .args(["-w", "\n%{http_version}"])
        .arg(p.edge.url("wiki.example", "/slow/1500"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let inflight = p.backend.in_flight.clone();
    wait_for(
        "the slow request to reach the backend",
        Duration::from_secs(10),
        || (inflight.load(Ordering::SeqCst) == 1).then_some(()),
    );
    p.edge.sigterm();
    // New connections are refused soon after SIGTERM...
    wait_for_listener_closed(p.edge.port);
    // ...while the request in flight completes...
    let out = slow.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("backend=httpd"), "{text}");
    let expected = if protocol == "--http2" {
        "\n2"
    } else {
        "\n1.1"
    };
    assert!(text.ends_with(expected), "{protocol}: {text}");
    // ...and then edge exits cleanly, well before the drain time.
    let status = p.edge.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_complete() {
    sigterm_drain("--http1.1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_http2_request_in_flight_complete() {
    sigterm_drain("--http2").await;
}

/// Waits until the edge's listener refuses connections: the drain has begun.
fn wait_for_listener_closed(port: u16) {
    wait_for("the listener to close", Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_the_first_request_of_a_connection_opened_just_before() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut p = Pod::start().await;
    // Connected before SIGTERM, the request sent after the drain began: its client could not
    // have known, and clients do not retry a request on a new connection that closed.
    let mut tls = connect_tls(p.edge.port, tls13_client(&p.pki)).await;
    p.edge.sigterm();
    wait_for_listener_closed(p.edge.port);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: wiki.example\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{read:?}: {text}");
    assert!(text.contains("backend=httpd"), "{text}");
    // ...and the connection closes after it, as the drain asks.
    assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    assert!(read.is_ok(), "the connection stayed open after the answer");
    let status = p.edge.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_a_new_connection_that_sends_nothing_after_a_short_grace() {
    use tokio::io::AsyncReadExt;
    let mut p = Pod::start().await;
    let mut tls = connect_tls(p.edge.port, tls13_client(&p.pki)).await;
    let start = std::time::Instant::now();
    p.edge.sigterm();
    // It does not hold the drain (drain_seconds = 10 here): it is closed after the grace
    // for a first request (2 s), and the edge exits.
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(8), tls.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "still open 8 s after SIGTERM");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    let closed_after = start.elapsed();
    assert!(
        closed_after >= Duration::from_millis(1500) && closed_after < Duration::from_secs(6),
        "closed {closed_after:?} after SIGTERM"
    );
    let status = p.edge.wait_exit(Duration::from_secs(3));
    assert!(status.success(), "{status}");
}

#[test]
fn bad_config_names_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.toml");
    std::fs::write(
        &path,
        "[listen]\naddress = \"127.0.0.1:1\"\ndrain_seconds = \"soon\"\n[tls]\ncertificates = []\n[pod]\nupstream = \"127.0.0.1:2\"\n",
    )
    .unwrap();
    let err = refused_config(&path);
    assert!(err.contains(&format!("{}:3:17", path.display())), "{err}");
    assert!(err.contains("listen.drain_seconds"), "{err}");
    assert!(err.contains("expected u64"), "{err}");
}

#[test]
fn help_documents_the_config_format() {
    let out = Command::new(env!("CARGO_BIN_EXE_edge"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for key in [
        "[listen]",
        "[[tls.certificates]]",
        "[pod]",
        "[edge.debug]",
        "split",
        "health",
    ] {
        assert!(help.contains(key), "--help lacks {key}");
    }
}

/// testssl.sh over the pod listener: no finding of severity HIGH or CRITICAL.
/// It takes about a minute here (`--fast`), so it runs with the other tests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_no_high_or_critical_issue() {
    require("testssl", "testssl.sh");
    let p = Pod::start().await;
    let json = p.pki.dir.join("testssl.json");
    let out = Command::new("testssl")
        .args(["--quiet", "--fast", "--warnings", "off", "--color", "0"])
        .arg("--jsonfile")
        .arg(&json)
        .arg("--add-ca")
        .arg(&p.pki.ca_pem)
        .args(["--ip", "127.0.0.1"])
        .arg(format!("wiki.example:{}", p.edge.port))
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "testssl wrote no JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // testssl's flat JSON pads keys with spaces; compare without whitespace.
    let squeezed: Vec<String> = report
        .lines()
        .map(|l| l.chars().filter(|c| !c.is_whitespace()).collect())
        .collect();
    // The scan really reached the server: it saw TLS 1.3 offered.
    assert!(
        squeezed.iter().any(|l| l.contains("\"id\":\"TLS1_3\"")),
        "testssl did not see the server: {report}"
    );
    // One finding per `{ ... }` block: keep the whole block so the message says what it is.
    let blocks: Vec<String> = squeezed
        .join("")
        .split('}')
        .map(|b| b.trim_start_matches([',', '[', '{']).to_owned())
        .collect();
    let bad: Vec<&String> = blocks
        .iter()
        .filter(|b| b.contains("\"severity\":\"HIGH\"") || b.contains("\"severity\":\"CRITICAL\""))
        .collect();
    let flagged: Vec<&String> = squeezed
        .iter()
        .filter(|l| l.contains("\"severity\":\""))
        .collect();
    assert!(flagged.len() > 10, "testssl reported too little: {report}");
    assert!(bad.is_empty(), "testssl findings: {bad:?}");
}

#[test]
fn port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let (c, k) = pki.leaf("wiki", "wiki-cert", &["wiki.example"]);
    let path = tmp.path().join("edge.toml");
    std::fs::write(
        &path,
        format!(
            "[listen]\naddress = \"127.0.0.1:{port}\"\n[[tls.certificates]]\nnames = [\"wiki.example\"]\ncert = \"{}\"\nkey = \"{}\"\n[pod]\nupstream = \"127.0.0.1:9\"\n",
            c.display(),
            k.display()
        ),
    )
    .unwrap();
    let err = refused_config(&path);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

/// A backend that answers the first request on each connection and closes the connection on
/// reading the second, without answering: an upstream closing an idle keep-alive connection
/// just as the next request arrives, made to happen every time.
async fn closing_backend() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = closed.clone();
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let count = count.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                let mut answered = false;
                loop {
                    let Ok(n) = tcp.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    // Requests here have no body or a one-byte one ("-d x").
                    let text = String::from_utf8_lossy(&got).into_owned();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let length = if text[..end]
                        .to_ascii_lowercase()
                        .contains("content-length: 1")
                    {
                        1
                    } else {
                        0
                    };
                    if got.len() < end + 4 + length {
                        continue;
                    }
                    got.drain(..end + 4 + length);
                    if answered {
                        count.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    answered = true;
                    tcp.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                        .await
                        .unwrap();
                }
            });
        }
    });
    (addr, closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_connection_found_closed_is_retried_for_idempotent_requests_only() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    let (cert, key) = pki.leaf("wiki", "wiki-cert", &["wiki.example"]);
    let (backend, closed) = closing_backend().await;
    let (port, mport) = (free_port(), free_port());
    let config = pod_config(
        port,
        mport,
        "",
        &[(&cert, &key, &["wiki.example"])],
        &backend.to_string(),
    );
    let edge = Edge::start(tmp.path(), &config, port, mport);
    let run = |extra: &[&str]| repeated_on(&edge, &pki.ca_pem, "/", 10, extra);
    // One client connection, so one serving thread and its pool: every request after the
    // first finds its reused upstream connection closed, and goes again on a new one.
    assert_eq!(run(&["--http1.1"]), vec!["200"; 10]);
    assert!(
        closed.load(Ordering::SeqCst) >= 9,
        "{} closes",
        closed.load(Ordering::SeqCst)
    );
    // A POST is not sent twice: the upstream may have acted on it. Those on a reused
    // connection get 502; the next one goes on a new connection.
    let codes = run(&["--http1.1", "-d", "x"]);
    assert_eq!(codes.iter().filter(|c| *c == "502").count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| *c == "200").count(), 5, "{codes:?}");
}
