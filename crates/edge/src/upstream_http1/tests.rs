//! The connection against scripted upstreams on an in-memory pipe: exact request bytes, every
//! response framing, interim responses, early answers during an upload, and closes.

use super::*;
use std::future::poll_fn;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

/// A request body fed by the test, chunk by chunk; it ends when the sender is dropped.
struct TestBody {
    chunks: Option<mpsc::UnboundedReceiver<Bytes>>,
    exact: Option<u64>,
}

impl TestBody {
    fn empty() -> TestBody {
        TestBody {
            chunks: None,
            exact: Some(0),
        }
    }

    fn streamed(exact: Option<u64>) -> (mpsc::UnboundedSender<Bytes>, TestBody) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            tx,
            TestBody {
                chunks: Some(rx),
                exact,
            },
        )
    }
}

impl Body for TestBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.chunks {
            None => Poll::Ready(None),
            Some(rx) => rx.poll_recv(cx).map(|c| c.map(|c| Ok(Frame::data(c)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.exact.map(SizeHint::with_exact).unwrap_or_default()
    }
}

type TestConnection = Connection<DuplexStream, TestBody>;

fn pipe() -> (TestConnection, DuplexStream) {
    pipe_reading_into(read_space())
}

fn pipe_reading_into(space: ReadSpace) -> (TestConnection, DuplexStream) {
    let (client, server) = tokio::io::duplex(1 << 20);
    (Connection::new(client, space), server)
}

/// Starts a request on `conn`: the head as edge encodes it.
fn start(conn: &mut TestConnection, method: Method, headers: &[(&str, &str)], body: TestBody) {
    let mut map = HeaderMap::new();
    for (n, v) in headers {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let mut out = BytesMut::new();
    let framing = encode_head(
        &mut out,
        &method,
        "/w/index.php?title=Main",
        &mut map,
        &body,
    );
    conn.start(&method, out.freeze(), framing, Some(body));
}

/// Reads from the upstream's side until `end` has arrived; returns all of it.
async fn read_until(server: &mut DuplexStream, end: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(end) {
        let n = server.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// The upstream's side of a simple exchange: reads the request head, then writes `with`.
async fn answer(server: &mut DuplexStream, with: &[u8]) -> String {
    let request = read_until(server, "\r\n\r\n").await;
    server.write_all(with).await.unwrap();
    request
}

async fn response(conn: &mut TestConnection) -> Result<Response<()>, Http1Error> {
    poll_fn(|cx| conn.poll_response(cx)).await
}

async fn body(conn: &mut TestConnection) -> Result<(String, Option<HeaderMap>), Http1Error> {
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = poll_fn(|cx| conn.poll_body(cx)).await {
        match frame?.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    Ok((String::from_utf8_lossy(&data).into_owned(), trailers))
}

#[tokio::test]
async fn get_with_content_length_and_the_connection_is_reused() {
    let (mut conn, mut server) = pipe();
    for round in 0..3 {
        start(
            &mut conn,
            Method::GET,
            &[("host", "en.example"), ("x-client-ip", "192.0.2.7")],
            TestBody::empty(),
        );
        let (resp, request) = tokio::join!(response(&mut conn), answer(&mut server, b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Cache: miss\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello\n"));
        assert_eq!(
            request,
            "GET /w/index.php?title=Main HTTP/1.1\r\nhost: en.example\r\nx-client-ip: 192.0.2.7\r\n\r\n",
            "round {round}"
        );
        let resp = resp.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-cache"], "miss");
        assert_eq!(resp.headers().get_all("set-cookie").iter().count(), 2);
        assert_eq!(conn.body_size_hint().exact(), Some(6));
        assert_eq!(body(&mut conn).await.unwrap().0, "hello\n");
        assert!(conn.body_is_end());
        assert!(conn.is_reusable());
        assert!(poll_fn(|cx| Poll::Ready(conn.poll_idle_is_open(cx))).await);
    }
    drop(server);
    // The upstream closed it while idle: found out before reuse.
    assert!(!poll_fn(|cx| Poll::Ready(conn.poll_idle_is_open(cx))).await);
}

#[tokio::test]
async fn body_of_unknown_length_goes_up_chunked() {
    let (mut conn, mut server) = pipe();
    let (tx, body) = TestBody::streamed(None);
    start(&mut conn, Method::POST, &[("host", "a")], body);
    tx.send(Bytes::from_static(b"hello")).unwrap();
    tx.send(Bytes::from_static(b" world, and more")).unwrap();
    drop(tx);
    let (resp, request) = tokio::join!(response(&mut conn), async {
        let request = read_until(&mut server, "0\r\n\r\n").await;
        server
            .write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
            .await
            .unwrap();
        request
    });
    assert_eq!(
        request,
        "POST /w/index.php?title=Main HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n\
         5\r\nhello\r\n10\r\n world, and more\r\n0\r\n\r\n"
    );
    assert_eq!(resp.unwrap().status(), StatusCode::NO_CONTENT);
    assert!(conn.body_is_end());
    assert!(conn.is_reusable());
}

#[tokio::test]
async fn body_of_known_length_goes_up_as_it_is() {
    let (mut conn, mut server) = pipe();
    let (tx, body) = TestBody::streamed(Some(9));
    start(&mut conn, Method::PUT, &[], body);
    tx.send(Bytes::from_static(b"abcd")).unwrap();
    tx.send(Bytes::from_static(b"efghi")).unwrap();
    drop(tx);
    let (resp, request) = tokio::join!(response(&mut conn), async {
        let request = read_until(&mut server, "efghi").await;
        server
            .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        request
    });
    assert_eq!(
        request,
        "PUT /w/index.php?title=Main HTTP/1.1\r\ncontent-length: 9\r\n\r\nabcdefghi"
    );
    assert_eq!(resp.unwrap().status(), StatusCode::CREATED);
    assert!(conn.is_reusable());
}

#[tokio::test]
async fn a_body_longer_than_its_content_length_is_refused() {
    let (mut conn, mut server) = pipe();
    let (tx, body) = TestBody::streamed(None);
    start(&mut conn, Method::POST, &[("content-length", "3")], body);
    tx.send(Bytes::from_static(b"abcdef")).unwrap();
    let result = response(&mut conn).await;
    assert!(
        matches!(result, Err(Http1Error::RequestBody(_))),
        "{result:?}"
    );
    assert!(!conn.is_reusable());
    // Nothing of the body went up: the upstream sees at most the head, then the close.
    drop(conn);
    let mut got = String::new();
    server.read_to_string(&mut got).await.unwrap();
    assert!(!got.contains("abc"), "{got:?}");
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let (mut conn, mut server) = pipe();
    start(&mut conn, Method::GET, &[], TestBody::empty());
    let (resp, _) = tokio::join!(response(&mut conn), async {
        read_until(&mut server, "\r\n\r\n").await;
        server
            .write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n",
            )
            .await
            .unwrap();
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
    });
    let resp = resp.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!resp.headers().contains_key("link"));
    assert_eq!(body(&mut conn).await.unwrap().0, "ok");
    assert!(conn.is_reusable());
}

#[tokio::test]
async fn responses_to_head_have_no_body_whatever_their_length() {
    let (mut conn, mut server) = pipe();
    start(&mut conn, Method::HEAD, &[], TestBody::empty());
    let (resp, _) = tokio::join!(
        response(&mut conn),
        answer(
            &mut server,
            b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
        )
    );
    assert_eq!(resp.unwrap().headers()["content-length"], "1234");
    assert!(conn.body_is_end());
    assert!(conn.is_reusable());
}

#[tokio::test]
async fn chunked_response_with_trailers() {
    let (mut conn, mut server) = pipe();
    start(&mut conn, Method::GET, &[], TestBody::empty());
    let (resp, _) = tokio::join!(response(&mut conn), async {
        read_until(&mut server, "\r\n\r\n").await;
        server
            .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n4\r\nWiki\r\n")
            .await
            .unwrap();
        tokio::task::yield_now().await;
        server
            .write_all(b"7\r\npedia!\n\r\n0\r\nServer-Timing: db;dur=5\r\n\r\n")
            .await
            .unwrap();
    });
    let resp = resp.unwrap();
    // Transfer-Encoding overrides Content-Length, which is not passed on.
    assert!(!resp.headers().contains_key("content-length"));
    let (data, trailers) = body(&mut conn).await.unwrap();
    assert_eq!(data, "Wikipedia!\n");
    assert_eq!(trailers.unwrap()["server-timing"], "db;dur=5");
    assert!(conn.is_reusable());
}

#[tokio::test]
async fn a_body_delimited_by_close_ends_the_connection() {
    let (mut conn, mut server) = pipe();
    start(&mut conn, Method::GET, &[], TestBody::empty());
    let (resp, _) = tokio::join!(response(&mut conn), async {
        answer(&mut server, b"HTTP/1.1 200 OK\r\n\r\nall of it").await;
        drop(server);
    });
    resp.unwrap();
    assert_eq!(body(&mut conn).await.unwrap().0, "all of it");
    assert!(!conn.is_reusable());
}

#[tokio::test]
async fn close_and_http_1_0_responses_are_not_reused() {
    for (head, reusable) in [
        (
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            false,
        ),
        ("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false),
        (
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
            true,
        ),
        (
            "HTTP/1.1 200 OK\r\nConnection: upgrade, keep-alive\r\nContent-Length: 0\r\n\r\n",
            true,
        ),
    ] {
        let (mut conn, mut server) = pipe();
        start(&mut conn, Method::GET, &[], TestBody::empty());
        let (resp, _) = tokio::join!(response(&mut conn), answer(&mut server, head.as_bytes()));
        resp.unwrap();
        assert!(conn.body_is_end());
        assert_eq!(conn.is_reusable(), reusable, "{head:?}");
    }
}

#[tokio::test]
async fn malformed_responses_are_errors() {
    let long = format!("HTTP/1.1 200 OK\r\nX-Long: {}\r\n", "a".repeat(70_000));
    for head in [
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "SSH-2.0-OpenSSH\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        &long,
    ] {
        let (mut conn, mut server) = pipe();
        start(&mut conn, Method::GET, &[], TestBody::empty());
        let (resp, _) = tokio::join!(response(&mut conn), answer(&mut server, head.as_bytes()));
        assert!(
            matches!(resp, Err(Http1Error::Malformed(_))),
            "{:.60?}: {resp:?}",
            head
        );
    }
}

#[tokio::test]
async fn closes_before_and_during_a_response_are_told_apart() {
    let (mut conn, mut server) = pipe();
    start(&mut conn, Method::GET, &[], TestBody::empty());
    let (resp, _) = tokio::join!(response(&mut conn), async {
        read_until(&mut server, "\r\n\r\n").await;
        drop(server);
    });
    assert!(
        matches!(resp, Err(Http1Error::ClosedBeforeResponse)),
        "{resp:?}"
    );

    let (mut conn, mut server) = pipe();
    start(&mut conn, Method::GET, &[], TestBody::empty());
    let (resp, _) = tokio::join!(response(&mut conn), async {
        answer(
            &mut server,
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
        )
        .await;
        drop(server);
    });
    resp.unwrap();
    let result = body(&mut conn).await;
    assert!(
        matches!(result, Err(Http1Error::ClosedEarly("body"))),
        "{result:?}"
    );
    assert!(!conn.is_reusable());
}

#[tokio::test]
async fn the_upload_goes_on_while_the_response_streams_back() {
    // An echo: the upstream answers after the first half of the body and sends each half back
    // as it reads it, as upload-processing backends may.
    let (mut conn, mut server) = pipe();
    let (tx, body_in) = TestBody::streamed(Some(10));
    start(&mut conn, Method::POST, &[], body_in);
    tx.send(Bytes::from_static(b"hello")).unwrap();
    let upstream = tokio::spawn(async move {
        read_until(&mut server, "hello").await;
        server
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
            .await
            .unwrap();
        read_until(&mut server, "world").await;
        server.write_all(b"world").await.unwrap();
        server
    });
    let resp = response(&mut conn).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The rest of the body is sent only now, after the response head arrived.
    tx.send(Bytes::from_static(b"world")).unwrap();
    drop(tx);
    assert_eq!(body(&mut conn).await.unwrap().0, "helloworld");
    assert!(conn.is_reusable());
    upstream.await.unwrap();
}

#[tokio::test]
async fn an_early_answer_ends_an_upload_that_never_finishes() {
    let (mut conn, mut server) = pipe();
    let (tx, body_in) = TestBody::streamed(Some(1 << 30));
    start(&mut conn, Method::POST, &[], body_in);
    tx.send(Bytes::from(vec![b'x'; 1000])).unwrap();
    let (resp, _) = tokio::join!(response(&mut conn), async {
        read_until(&mut server, "xxxx").await;
        server
            .write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4\r\n\r\nbig!")
            .await
            .unwrap();
    });
    assert_eq!(resp.unwrap().status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body(&mut conn).await.unwrap().0, "big!");
    // The upload did not finish: the connection cannot carry another request.
    assert!(!conn.is_reusable());
}

/// Feeds `wire` as the upstream's whole answer (then closes) and reads a response and its
/// body to the end or the first error.
fn read_answer(wire: &[u8]) -> Result<(Response<()>, String), Http1Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (mut conn, mut server) = pipe();
        start(&mut conn, Method::GET, &[], TestBody::empty());
        let (resp, _) = tokio::join!(response(&mut conn), async {
            answer(&mut server, wire).await;
            drop(server);
        });
        let resp = resp?;
        let (data, _) = body(&mut conn).await?;
        Ok((resp, data))
    })
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(200))]

    /// Whatever an upstream sends, the client answers with a response or an error: no panic,
    /// no hang.
    #[test]
    fn any_upstream_bytes_give_a_response_or_an_error(
        wire in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
    ) {
        let _ = read_answer(&wire);
    }

    /// The same for answers that start well and go wrong anywhere: a valid chunked response
    /// with one byte replaced.
    #[test]
    fn damaged_answers_give_a_response_or_an_error(
        at in 0usize..120,
        byte in proptest::prelude::any::<u8>(),
    ) {
        let mut wire = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n".to_vec();
        let at = at % wire.len();
        wire[at] = byte;
        if let Ok((resp, data)) = read_answer(&wire) {
            proptest::prop_assert!(resp.status().as_u16() >= 200);
            // A damaged Transfer-Encoding leaves a body read to the close: the rest, as it came.
            proptest::prop_assert!(data.len() <= wire.len());
        }
    }
}

#[tokio::test]
async fn connections_sharing_a_read_space_keep_their_own_pieces() {
    // One connection's response arrives in two pieces with another connection's whole
    // response read into the shared space in between: the first's pieces are no longer
    // adjacent there, and must still join up.
    let space = read_space();
    let (mut first, mut first_server) = pipe_reading_into(space.clone());
    let (mut second, mut second_server) = pipe_reading_into(space);
    start(&mut first, Method::GET, &[], TestBody::empty());
    start(&mut second, Method::GET, &[], TestBody::empty());
    // Polled once each, to send the request heads.
    for conn in [&mut first, &mut second] {
        let sent = poll_fn(|cx| Poll::Ready(conn.poll_response(cx))).await;
        assert!(sent.is_pending());
    }
    read_until(&mut first_server, "\r\n\r\n").await;
    read_until(&mut second_server, "\r\n\r\n").await;

    first_server
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Le")
        .await
        .unwrap();
    let partial = poll_fn(|cx| Poll::Ready(first.poll_response(cx))).await;
    assert!(partial.is_pending());

    second_server
        .write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 6\r\n\r\nsecond")
        .await
        .unwrap();
    assert_eq!(
        response(&mut second).await.unwrap().status(),
        StatusCode::CREATED
    );

    first_server
        .write_all(b"ngth: 5\r\nX-Which: first\r\n\r\nfirst")
        .await
        .unwrap();
    let resp = response(&mut first).await.unwrap();
    assert_eq!(resp.headers()["x-which"], "first");
    assert_eq!(body(&mut first).await.unwrap().0, "first");
    assert_eq!(body(&mut second).await.unwrap().0, "second");
    assert!(first.is_reusable() && second.is_reusable());
}
