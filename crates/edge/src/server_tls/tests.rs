//! Against rustls's own buffered client (through tokio-rustls) on loopback sockets.

use super::*;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

struct Pair {
    server: TlsServerStream,
    client: tokio_rustls::client::TlsStream<TcpStream>,
}

fn configs(
    version: &'static rustls::SupportedProtocolVersion,
    client_alpn: &[&[u8]],
) -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["edge.test".to_string()]).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cert = CertificateDer::from(cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signing_key.serialize_der()));
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = client_alpn.iter().map(|p| p.to_vec()).collect();
    (Arc::new(server), Arc::new(client))
}

/// A loopback listener whose first connection is accepted with `config`.
async fn accept_one(
    config: Arc<ServerConfig>,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<io::Result<TlsServerStream>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        TlsServerStream::accept(tcp, &ServerConfigs::new(ServerConfig::clone(&config))).await
    });
    (address, accepted)
}

async fn pair(version: &'static rustls::SupportedProtocolVersion, alpn: &[&[u8]]) -> Pair {
    let (server_config, client_config) = configs(version, alpn);
    let (address, accepted) = accept_one(server_config).await;
    let tcp = TcpStream::connect(address).await.unwrap();
    let connect = tokio_rustls::TlsConnector::from(client_config)
        .connect(ServerName::try_from("edge.test").unwrap(), tcp);
    // Bounded, so that a server flight held back (TLS 1.2's Finished, which the client waits
    // for) fails the test rather than hanging it.
    let client = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .expect("the client's handshake did not finish within 10 s")
        .unwrap();
    let server = accepted.await.unwrap().unwrap();
    Pair { server, client }
}

/// Bytes that show a reordering or a lost record: not a repeating pattern of a record's size.
fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The server echoes what it reads until the client's close_notify, then closes itself.
async fn echo(mut server: TlsServerStream) -> usize {
    let mut buf = vec![0u8; 5000];
    let mut total = 0;
    loop {
        let n = server.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        total += n;
        server.write_all(&buf[..n]).await.unwrap();
    }
    server.shutdown().await.unwrap();
    total
}

async fn echo_round_trip(version: &'static rustls::SupportedProtocolVersion) {
    let Pair { server, client } = pair(version, &[]).await;
    let server = tokio::spawn(echo(server));
    let sent = data(3 * 1024 * 1024 + 17);
    let (mut reader, mut writer) = tokio::io::split(client);
    let expected = sent.clone();
    let writing = tokio::spawn(async move {
        // Uneven writes: records of every size, some larger than the server's read buffer.
        for chunk in sent.chunks(40_000 - 1) {
            writer.write_all(chunk).await.unwrap();
        }
        writer.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    reader.read_to_end(&mut echoed).await.unwrap();
    writing.await.unwrap();
    assert_eq!(server.await.unwrap(), expected.len());
    assert!(echoed == expected, "the echo differs from what was sent");
}

#[tokio::test]
async fn data_goes_both_ways_intact_over_tls13() {
    echo_round_trip(&rustls::version::TLS13).await;
}

#[tokio::test]
async fn data_goes_both_ways_intact_over_tls12() {
    echo_round_trip(&rustls::version::TLS12).await;
}

#[tokio::test]
async fn a_waiting_connection_holds_no_buffers() {
    let Pair {
        mut server,
        mut client,
    } = pair(&rustls::version::TLS13, &[]).await;
    let idle = |s: &TlsServerStream| {
        (
            s.received.capacity(),
            s.plaintext.capacity(),
            s.outgoing.capacity(),
        )
    };
    // After the handshake only TLS 1.3's session tickets wait, for the first response or
    // the first wait.
    let (received, plaintext, outgoing) = idle(&server);
    assert_eq!((received, plaintext), (0, 0), "after the handshake");
    assert!(outgoing > 0, "no session tickets wait after the handshake");
    // Waiting for the first request holds nothing, and ends when it comes.
    let waited = tokio::time::timeout(Duration::from_millis(50), server.wait_for_input()).await;
    assert!(waited.is_err(), "nothing was sent, yet the wait ended");
    assert_eq!(
        idle(&server),
        (0, 0, 0),
        "while waiting for the first request"
    );

    // A request and its response, then the server waits for the next request.
    client.write_all(&data(20_000)).await.unwrap();
    server.wait_for_input().await.unwrap();
    let mut request = vec![0u8; 20_000];
    server.read_exact(&mut request).await.unwrap();
    assert_eq!(request, data(20_000));
    server.write_all(&data(70_000)).await.unwrap();
    server.flush().await.unwrap();
    let mut response = vec![0u8; 70_000];
    client.read_exact(&mut response).await.unwrap();
    assert_eq!(response, data(70_000));
    let mut next = [0u8; 100];
    let waited = tokio::time::timeout(Duration::from_millis(50), server.read(&mut next)).await;
    assert!(waited.is_err(), "nothing was sent, yet the read returned");
    assert_eq!(
        idle(&server),
        (0, 0, 0),
        "while waiting for the next request"
    );

    // And it still works after giving its buffers back.
    client.write_all(b"next").await.unwrap();
    let n = server.read(&mut next).await.unwrap();
    assert_eq!(&next[..n], b"next");
}

#[tokio::test]
async fn a_client_key_update_is_answered_and_traffic_goes_on() {
    let Pair {
        mut server,
        mut client,
    } = pair(&rustls::version::TLS13, &[]).await;
    for round in 0..3u8 {
        client.get_mut().1.refresh_traffic_keys().unwrap();
        client.write_all(&[round; 1000]).await.unwrap();
        let mut got = [0u8; 1000];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [round; 1000]);
        // The server's own key update (the answer rustls owes) goes out with this.
        server.write_all(&[round + 10; 1000]).await.unwrap();
        server.flush().await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [round + 10; 1000]);
    }
}

/// Connects with `client_config` to a server that answers the first `request` bytes with
/// "ok" (or, if `request` is 0, only waits for input until the client has waited `wait`), and
/// says whether the TLS handshake resumed an earlier session.
async fn connect_and_ask(
    server_config: Arc<ServerConfig>,
    client_config: Arc<rustls::ClientConfig>,
    request: usize,
    wait: Duration,
) -> rustls::HandshakeKind {
    let (address, accepted) = accept_one(server_config).await;
    let tcp = TcpStream::connect(address).await.unwrap();
    let connecting = tokio_rustls::TlsConnector::from(client_config)
        .connect(ServerName::try_from("edge.test").unwrap(), tcp);
    let mut client = connecting.await.unwrap();
    let kind = client.get_ref().1.handshake_kind().unwrap();
    let mut server = accepted.await.unwrap().unwrap();
    if request == 0 {
        let serving = tokio::spawn(async move {
            let _ = server.wait_for_input().await;
            server
        });
        // The client reads nothing but takes in the records that come: the tickets.
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(wait, client.read(&mut byte)).await;
        assert!(read.is_err(), "the server sent data or closed: {read:?}");
        serving.abort();
    } else {
        client.write_all(&data(request)).await.unwrap();
        let mut got = vec![0u8; request];
        server.read_exact(&mut got).await.unwrap();
        server.write_all(b"ok").await.unwrap();
        let mut answer = [0u8; 2];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"ok");
    }
    kind
}

#[tokio::test]
async fn session_tickets_reach_a_client_that_asks_at_once_or_waits() {
    use rustls::HandshakeKind::{Full, Resumed};
    let (server_config, client_config) = configs(&rustls::version::TLS13, &[]);
    let ask = |request, wait| {
        connect_and_ask(server_config.clone(), client_config.clone(), request, wait)
    };
    // The tickets go out with the first response...
    assert_eq!(ask(100, Duration::ZERO).await, Full);
    assert_eq!(ask(100, Duration::ZERO).await, Resumed, "after a request");
    // ...or, when the client sends nothing, while the server waits for it.
    let (server_config, client_config) = configs(&rustls::version::TLS13, &[]);
    let ask = |request, wait| {
        connect_and_ask(server_config.clone(), client_config.clone(), request, wait)
    };
    assert_eq!(ask(0, Duration::from_millis(300)).await, Full);
    assert_eq!(
        ask(100, Duration::ZERO).await,
        Resumed,
        "after a connection that sent nothing"
    );
}

#[tokio::test]
async fn session_tickets_wait_for_the_response_to_a_request_sent_with_the_handshake() {
    use rustls::HandshakeKind::Resumed;
    use std::io::{Read, Write};
    let (server_config, client_config) = configs(&rustls::version::TLS13, &[]);
    let (address, accepted) = accept_one(server_config.clone()).await;
    // A blocking client on a thread of its own: rustls holds the request written before the
    // handshake and sends it in one write with its Finished, as wrk's and browsers' clients
    // do, so the server has it when its handshake ends.
    let config = client_config.clone();
    let client = std::thread::spawn(move || {
        let name = ServerName::try_from("edge.test").unwrap();
        let mut conn = rustls::ClientConnection::new(config, name).unwrap();
        let mut tcp = std::net::TcpStream::connect(address).unwrap();
        conn.writer().write_all(b"request").unwrap();
        let mut response = [0u8; 8];
        rustls::Stream::new(&mut conn, &mut tcp)
            .read_exact(&mut response)
            .unwrap();
        response
    });
    let mut server = accepted.await.unwrap().unwrap();
    let mut request = [0u8; 7];
    server.read_exact(&mut request).await.unwrap();
    assert_eq!(&request, b"request");
    // hyper reads ahead while it serves a request, and flushes on every turn of its loop;
    // the read waits, and the tickets stay.
    let mut more = [0u8; 16];
    let waited = tokio::time::timeout(Duration::from_millis(50), server.read(&mut more)).await;
    assert!(waited.is_err(), "nothing was sent, yet the read returned");
    server.flush().await.unwrap();
    assert!(
        server.sent < server.outgoing.len(),
        "the session tickets went out in a write of their own, before the response"
    );
    server.write_all(b"response").await.unwrap();
    assert_eq!(
        server.outgoing.len(),
        0,
        "the response and tickets were not sent"
    );
    let response = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    assert_eq!(&response, b"response");
    // The tickets arrived with it: the client's next connection resumes.
    assert_eq!(
        connect_and_ask(server_config, client_config, 100, Duration::ZERO).await,
        Resumed
    );
}

/// A client's session store that counts the TLS 1.3 session tickets the client received.
#[derive(Debug)]
struct CountingTickets {
    received: std::sync::atomic::AtomicUsize,
    cache: rustls::client::ClientSessionMemoryCache,
}

impl CountingTickets {
    fn received(&self) -> usize {
        self.received.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl rustls::client::ClientSessionStore for CountingTickets {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.cache.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.cache.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.cache.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.cache.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.cache.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.received
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.cache.insert_tls13_ticket(name, value)
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.cache.take_tls13_ticket(name)
    }
}

/// The first TLS bytes a client with `config` sends: its ClientHello.
fn client_hello(config: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from("edge.test").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

#[tokio::test]
async fn a_resumed_session_gets_one_new_ticket_and_a_full_handshake_two() {
    use rustls::HandshakeKind::{Full, Resumed};
    let (server_config, client_config) = configs(&rustls::version::TLS13, &[]);
    let tickets = Arc::new(CountingTickets {
        received: Default::default(),
        cache: rustls::client::ClientSessionMemoryCache::new(32),
    });
    let mut client_config = rustls::ClientConfig::clone(&client_config);
    client_config.resumption = rustls::client::Resumption::store(tickets.clone());
    let client_config = Arc::new(client_config);
    let ask = || {
        connect_and_ask(
            server_config.clone(),
            client_config.clone(),
            100,
            Duration::ZERO,
        )
    };

    let first = client_hello(client_config.clone());
    assert!(!offers_session_resumption(&first), "no session yet");
    assert_eq!(ask().await, Full);
    assert_eq!(tickets.received(), 2, "after a full handshake");
    // The client now offers its session, and the server sees the offer.
    let resuming = client_hello(client_config.clone());
    assert!(first_record_complete(&resuming));
    assert!(
        offers_session_resumption(&resuming),
        "the offer went unseen"
    );
    // Cut short anywhere, the same ClientHello cannot be read, so it counts as no offer.
    for end in 0..resuming.len() {
        assert!(!first_record_complete(&resuming[..end]), "{end} bytes");
        assert!(!offers_session_resumption(&resuming[..end]), "{end} bytes");
    }
    assert_eq!(ask().await, Resumed);
    assert_eq!(tickets.received(), 3, "after a resumption: one ticket more");
    assert_eq!(ask().await, Resumed);
    assert_eq!(tickets.received(), 4);
}

#[tokio::test]
async fn a_client_hello_sent_in_two_pieces_is_waited_for() {
    use std::io::{Read, Write};
    let (server_config, client_config) = configs(&rustls::version::TLS13, &[]);
    let (address, accepted) = accept_one(server_config).await;
    let client = std::thread::spawn(move || {
        let name = ServerName::try_from("edge.test").unwrap();
        let mut conn = rustls::ClientConnection::new(client_config, name).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let mut tcp = std::net::TcpStream::connect(address).unwrap();
        tcp.set_nodelay(true).unwrap();
        let (first, rest) = hello.split_at(hello.len() / 2);
        tcp.write_all(first).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        tcp.write_all(rest).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
        tls.write_all(b"ping").unwrap();
        let mut answer = [0u8; 4];
        tls.read_exact(&mut answer).unwrap();
        answer
    });
    let mut server = accepted.await.unwrap().unwrap();
    let mut ping = [0u8; 4];
    server.read_exact(&mut ping).await.unwrap();
    assert_eq!(&ping, b"ping");
    server.write_all(b"pong").await.unwrap();
    let answer = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    assert_eq!(&answer, b"pong");
}

#[test]
fn the_client_hello_peek_reads_only_what_is_there() {
    let (_, client_config) = configs(&rustls::version::TLS13, &[]);
    let hello = client_hello(client_config);
    assert!(first_record_complete(&hello));
    for end in 0..hello.len() {
        assert!(!first_record_complete(&hello[..end]), "{end} bytes");
    }
    // Not TLS at all: nothing to wait for; rustls answers it.
    assert!(first_record_complete(b"GET / HTTP/1.1\r\n"));
    assert!(!offers_session_resumption(b"GET / HTTP/1.1\r\n"));
    // A record longer than TLS allows is not waited for either.
    assert!(first_record_complete(&[22, 3, 1, 0xff, 0xff]));
}

#[tokio::test]
async fn alpn_says_what_the_client_chose() {
    let h2 = pair(&rustls::version::TLS13, &[b"h2"]).await;
    assert_eq!(h2.server.alpn_protocol(), Some(&b"h2"[..]));
    let http1 = pair(&rustls::version::TLS13, &[b"http/1.1"]).await;
    assert_eq!(http1.server.alpn_protocol(), Some(&b"http/1.1"[..]));
    let none = pair(&rustls::version::TLS13, &[]).await;
    assert_eq!(none.server.alpn_protocol(), None);
}

#[tokio::test]
async fn plain_http_is_refused_with_a_tls_alert() {
    let (server_config, _) = configs(&rustls::version::TLS13, &[]);
    let (address, accepted) = accept_one(server_config).await;
    let mut tcp = TcpStream::connect(address).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: edge.test\r\n\r\n")
        .await
        .unwrap();
    let error = accepted
        .await
        .unwrap()
        .err()
        .expect("plain HTTP was accepted");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    // A TLS record of content type 21 (alert), level 2 (fatal).
    assert_eq!(answer.first(), Some(&21), "answer: {answer:?}");
    assert_eq!(answer.get(5), Some(&2), "answer: {answer:?}");
}

#[tokio::test]
async fn a_client_gone_mid_handshake_is_an_error_not_a_hang() {
    let (server_config, _) = configs(&rustls::version::TLS13, &[]);
    let (address, accepted) = accept_one(server_config).await;
    // The first bytes of a ClientHello record, then gone.
    let mut tcp = TcpStream::connect(address).await.unwrap();
    tcp.write_all(&[22, 3, 1, 0, 200, 1]).await.unwrap();
    drop(tcp);
    let result = tokio::time::timeout(Duration::from_secs(5), accepted)
        .await
        .expect("the handshake waited on a closed connection")
        .unwrap();
    assert_eq!(
        result.err().map(|e| e.kind()),
        Some(io::ErrorKind::UnexpectedEof)
    );
}
