//! Accepting, draining and the admin endpoint over real loopback sockets.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cache_proxy_server::{serve_admin, serve_clients, Drain};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A session that answers each read with what it read, tagged with its listener's tag.
async fn echo(tag: char, mut stream: TcpStream, mut drain: Drain) {
    let mut input = BytesMut::new();
    loop {
        input.reserve(1024);
        if !drain.read(&mut stream, &mut input).await {
            break;
        }
        let mut out = vec![tag as u8];
        out.extend_from_slice(&input.split());
        if stream.write_all(&out).await.is_err() {
            break;
        }
    }
}

fn blocking_client(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let client = std::net::TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client
}

fn read_to_close(client: &mut std::net::TcpStream) -> String {
    let mut text = String::new();
    client.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn sessions_answer_until_the_drain_then_close_and_each_listener_keeps_its_tag() {
    runtime().block_on(async {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let second = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (first_addr, second_addr) = (first.local_addr().unwrap(), second.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let client = tokio::task::spawn_blocking(move || {
            let mut a = blocking_client(first_addr);
            let mut b = blocking_client(second_addr);
            let mut reply = [0u8; 3];
            a.write_all(b"hi").unwrap();
            a.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"ahi");
            b.write_all(b"yo").unwrap();
            b.read_exact(&mut reply).unwrap();
            assert_eq!(&reply, b"byo");
            stop.send(()).unwrap();
            // The drain closes both connections, though neither client closed.
            (read_to_close(&mut a), read_to_close(&mut b))
        });
        let started = Instant::now();
        serve_clients(
            vec![('a', first), ('b', second)],
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(30),
            echo,
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the drain waited for sessions that had ended"
        );
        assert_eq!(client.await.unwrap(), (String::new(), String::new()));
    });
}

#[test]
fn a_connection_completed_before_the_stop_is_answered_not_reset() {
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Connected and sent before the server accepts anything: the kernel holds the
        // connection in the listener's backlog and the command in its socket.
        let mut client = blocking_client(addr);
        client.write_all(b"late").unwrap();
        // The shutdown is already due when serving starts.
        serve_clients(
            vec![('x', listener)],
            std::future::ready(()),
            Duration::from_secs(30),
            echo,
        )
        .await;
        assert_eq!(read_to_close(&mut client), "xlate");
    });
}

#[test]
fn the_drain_gives_up_on_sessions_at_its_deadline() {
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let (accepted, is_accepted) = oneshot::channel::<()>();
        let mut accepted = Some(accepted);
        let client = tokio::task::spawn_blocking(move || {
            let client = blocking_client(addr);
            is_accepted.blocking_recv().unwrap();
            stop.send(()).unwrap();
            client
        });
        let started = Instant::now();
        let serving = serve_clients(
            vec![((), listener)],
            async {
                let _ = stopped.await;
            },
            Duration::from_millis(300),
            |(), stream, _drain| {
                let _ = accepted.take().map(|a| a.send(()));
                // A session that ignores the drain and never ends.
                async move {
                    let _stream = stream;
                    std::future::pending::<()>().await
                }
            },
        );
        let deadline = tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("the drain waited past its deadline");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300),
            "returned after {took:?}"
        );
        assert!(deadline <= Instant::now());
        drop(client.await.unwrap());
    });
}

#[test]
fn the_admin_endpoint_answers_known_paths_and_404s_others() {
    runtime().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_admin(listener, |path| {
            (path == "/metrics").then(|| "requests_total 7\n".to_string())
        }));
        let responses = tokio::task::spawn_blocking(move || {
            ["/metrics", "/nothing"].map(|path| {
                let mut client = blocking_client(addr);
                write!(
                    client,
                    "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                read_to_close(&mut client)
            })
        })
        .await
        .unwrap();
        assert!(
            responses[0].starts_with("HTTP/1.1 200 OK\r\n"),
            "{}",
            responses[0]
        );
        assert!(
            responses[0].contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{}",
            responses[0]
        );
        assert!(
            responses[0].ends_with("\r\n\r\nrequests_total 7\n"),
            "{}",
            responses[0]
        );
        assert!(
            responses[1].starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{}",
            responses[1]
        );
    });
}
