//! HTTP/2 end to end: many streams on one connection, bodies larger than every flow-control
//! window in both directions, streams reset by the client, the header size limit, edge's own
//! answers, GOAWAY on SIGTERM. Clients: h2load and nghttp (nghttp2-client), and an h2 client
//! written here where a test needs to reset a stream or hold back its window.

mod common;

use bytes::Bytes;
use common::*;
use hyper::{Request, StatusCode};
use rustls::pki_types::ServerName;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// An HTTP/2 connection to edge with h2's client: `window` is the client's receive window
/// (stream and connection).
async fn connect(p: &Pod, window: u32) -> h2::client::SendRequest<Bytes> {
    let roots = p.pki.client_roots();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", p.edge.port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("wiki.example").unwrap(), tcp)
        .await
        .unwrap();
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(window)
        .handshake::<_, Bytes>(tls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

fn get(path: &str) -> Request<()> {
    Request::get(format!("https://wiki.example{path}"))
        .body(())
        .unwrap()
}

/// Reads a response body to its end, releasing flow-control capacity as it goes.
async fn read_all(mut body: h2::RecvStream) -> Result<Vec<u8>, h2::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        out.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    Ok(out)
}

async fn fetch(send: &mut h2::client::SendRequest<Bytes>, path: &str) -> (StatusCode, String) {
    let mut send = send.clone().ready().await.unwrap();
    let (resp, _) = send.send_request(get(path), true).unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status();
    let body = read_all(resp.into_body()).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_on_one_connection() {
    let p = Pod::start().await;
    let send = connect(&p, 65_535).await;
    // 100 streams at once (edge allows 200), each answered with its own request's echo.
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let mut send = send.clone();
            tokio::spawn(async move {
                let path = format!("/stream/{i}");
                let (status, body) = fetch(&mut send, &path).await;
                assert_eq!(status, 200);
                assert!(body.contains(&format!("GET {path}\n")), "{path}: {body}");
                assert!(body.contains("x-forwarded-proto: https"), "{body}");
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }

    // h2load: one connection, 100 streams in flight, 5,000 requests, every one a 200.
    require("h2load", "nghttp2-client");
    let out = Command::new("h2load")
        .args(["-n", "5000", "-c", "1", "-m", "100"])
        .arg(format!("https://127.0.0.1:{}/", p.edge.port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("5000 succeeded, 0 failed, 0 errored"),
        "{text}"
    );
    assert!(text.contains("status codes: 5000 2xx"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_respect_flow_control_both_ways() {
    let p = Pod::start().await;
    // 6 MiB up and echoed back down: more than edge's receive windows (1 MiB for a stream and
    // for the connection) and than the client's (256 KiB), so both sides must wait for window
    // updates.
    let data: Bytes = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut send = connect(&p, 256 * 1024).await.ready().await.unwrap();
    let req = Request::post("https://wiki.example/echo").body(()).unwrap();
    let (resp, mut up) = send.send_request(req, false).unwrap();
    let upload = {
        let data = data.clone();
        tokio::spawn(async move {
            let mut rest = data;
            while !rest.is_empty() {
                up.reserve_capacity(rest.len().min(64 * 1024));
                let n = std::future::poll_fn(|cx| up.poll_capacity(cx))
                    .await
                    .unwrap()
                    .unwrap();
                let chunk = rest.split_to(n.min(rest.len()));
                up.send_data(chunk, rest.is_empty()).unwrap();
            }
        })
    };
    let resp = tokio::time::timeout(Duration::from_secs(30), resp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    // A slow reader: edge must hold the upstream back rather than overrun the window (h2
    // here would fail the stream with FLOW_CONTROL_ERROR).
    let mut body = resp.into_body();
    let mut got = Vec::with_capacity(data.len());
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), body.data())
        .await
        .unwrap()
    {
        let chunk = chunk.unwrap();
        got.extend_from_slice(&chunk);
        if got.len() < 1024 * 1024 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        body.flow_control().release_capacity(chunk.len()).unwrap();
    }
    upload.await.unwrap();
    assert!(got == data, "echoed body differs ({} bytes)", got.len());

    // nghttp, a second client: 3 MiB up and back with its own windows.
    require("nghttp", "nghttp2-client");
    let file = p.pki.dir.join("up.bin");
    std::fs::write(&file, &data[..3 * 1024 * 1024]).unwrap();
    let out = Command::new("nghttp")
        .args(["-d"])
        .arg(&file)
        .arg(format!("https://127.0.0.1:{}/echo", p.edge.port))
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", out);
    assert!(
        out.stdout == data[..3 * 1024 * 1024],
        "nghttp: echoed body differs ({} bytes)",
        out.stdout.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_reset_by_the_client_leaves_the_connection_working() {
    let p = Pod::start().await;
    let mut send = connect(&p, 65_535).await;

    // Reset while the upstream is still answering.
    let mut s = send.clone().ready().await.unwrap();
    let (resp, mut stream) = s.send_request(get("/slow/2000"), true).unwrap();
    let inflight = p.backend.in_flight.clone();
    wait_for(
        "the request to reach the backend",
        Duration::from_secs(10),
        || (inflight.load(Ordering::SeqCst) == 1).then_some(()),
    );
    stream.send_reset(h2::Reason::CANCEL);
    assert!(resp.await.is_err());

    // Reset in the middle of a response body: /echo streams back what is sent, and the
    // request body is left unfinished.
    let mut s = send.clone().ready().await.unwrap();
    let req = Request::post("https://wiki.example/echo").body(()).unwrap();
    let (resp, mut up) = s.send_request(req, false).unwrap();
    up.send_data(Bytes::from(vec![b'x'; 32 * 1024]), false)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.data().await.unwrap().unwrap();
    assert!(!first.is_empty());
    up.send_reset(h2::Reason::CANCEL);
    drop(body);

    // The connection goes on serving, and so does edge, on every upstream connection.
    for i in 0..20 {
        let (status, text) = fetch(&mut send, &format!("/after/{i}")).await;
        assert_eq!(status, 200, "{text}");
    }
    let r = curl(&p.edge, &p.pki.ca_pem, "wiki.example", "/", &["--http2"]);
    assert_eq!(r.status, 200);
    let m = p.edge.metrics();
    assert!(m.contains("edge_active_connections 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_with_431() {
    let p = Pod::start().await;
    let mut send = connect(&p, 65_535).await;
    let mut s = send.clone().ready().await.unwrap();
    let req = Request::get("https://wiki.example/")
        .header("x-big", "a".repeat(20 * 1024))
        .body(())
        .unwrap();
    let (resp, _) = s.send_request(req, true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Headers under the limit pass, on the same connection.
    let mut s = send.clone().ready().await.unwrap();
    let req = Request::get("https://wiki.example/")
        .header("x-big", "a".repeat(8 * 1024))
        .body(())
        .unwrap();
    let (resp, _) = s.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    let (status, _) = fetch(&mut send, "/").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_own_answers_carry_date_and_length() {
    let p = Pod::start().await;
    p.backend.kill();
    wait_for("the backend to close", Duration::from_secs(5), || {
        p.backend.is_closed().then_some(())
    });
    let mut send = connect(&p, 65_535).await.ready().await.unwrap();
    let (resp, _) = send.send_request(get("/"), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let date = resp.headers()["date"].to_str().unwrap().to_owned();
    let length: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = read_all(resp.into_body()).await.unwrap();
    assert_eq!(body.len(), length);
    assert!(date.ends_with(" GMT"), "{date}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_sends_goaway_and_lets_streams_in_flight_finish() {
    let mut p = Pod::start().await;
    let send = connect(&p, 65_535).await;
    let mut s = send.clone().ready().await.unwrap();
    let (resp, _) = s.send_request(get("/slow/1500"), true).unwrap();
    let inflight = p.backend.in_flight.clone();
    wait_for(
        "the request to reach the backend",
        Duration::from_secs(10),
        || (inflight.load(Ordering::SeqCst) == 1).then_some(()),
    );
    p.edge.sigterm();
    // The stream in flight completes...
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = read_all(resp.into_body()).await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("GET /slow/1500"));
    // ...no new stream is accepted on the connection (GOAWAY)...
    let refused = match send.clone().ready().await {
        Err(_) => true,
        Ok(mut s) => match s.send_request(get("/late"), true) {
            Err(_) => true,
            Ok((resp, _)) => resp.await.is_err(),
        },
    };
    assert!(refused, "a stream opened after GOAWAY was served");
    // ...and edge exits cleanly once it is done.
    let status = p.edge.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_header_naming_another_host_than_the_authority_is_refused() {
    let p = Pod::start().await;
    let send = connect(&p, 65_535).await;
    let ask = |host: &'static str| {
        let send = send.clone();
        async move {
            let mut send = send.ready().await.unwrap();
            let mut req = get("/");
            req.headers_mut().insert("host", host.parse().unwrap());
            let (resp, _) = send.send_request(req, true).unwrap();
            let resp = resp.await.unwrap();
            let status = resp.status();
            let body = read_all(resp.into_body()).await.unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    // Routed by :authority, it would have reached an upstream that serves by Host.
    let (status, body) = ask("other.example").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains(":authority"), "{body}");
    // The same host with a port is no conflict; the upstream gets the authority as its Host.
    let (status, body) = ask("WIKI.example:443").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("host: wiki.example\n"), "{body}");
    assert_eq!(p.backend.served.load(Ordering::SeqCst), 1);
}
