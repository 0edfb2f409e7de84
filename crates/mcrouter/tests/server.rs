//! The router as a program: failover, protocol errors, memcapable, metrics, draining, config.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{require, wait_until, Memcached, Router};
use ketama::Ring;
use mcrouter::protocol::ReplyKind;
use serde_json::json;

#[test]
fn a_killed_server_fails_over_to_the_gutter_and_comes_back() {
    let mut pool: Vec<Memcached> = (0..2).map(|_| Memcached::start()).collect();
    let gutter = Memcached::start();
    let addrs: Vec<String> = pool.iter().map(Memcached::addr).collect();
    let router = Router::start(&json!({
        "pools": {"eqiad": {"servers": addrs}, "gutter": {"servers": [gutter.addr()]}},
        "local_pool": "eqiad",
        "failover": {"gutter_pool": "gutter", "gutter_ttl_seconds": 7,
                     "failures_until_down": 2, "probe_interval_ms": 50},
        "timeouts": {"connect_ms": 200, "request_ms": 300},
    }));
    let ring = Ring::new(&addrs);
    let key = (0..)
        .map(|i| format!("fo:{i}"))
        .find(|k| ring.server_for(k.as_bytes()) == 0)
        .unwrap();
    let down = format!("server:eqiad:{}:down", addrs[0]);
    let mut client = router.client();
    assert_eq!(client.set(&key, "before", 0), "STORED\r\n");

    pool[0].kill();
    // The first failing request is retried on the gutter: the client sees no error.
    assert_eq!(client.set(&key, "during", 3600), "STORED\r\n");
    assert_eq!(client.get(&key).as_deref(), Some("during"));
    wait_until(
        "the server to be marked down",
        Duration::from_secs(5),
        || {
            client.get(&key);
            router.stat(&down).as_deref() == Some("1")
        },
    );
    // The value lives in the gutter with its TTL capped.
    let mut g = gutter.client();
    let ttl = g.call(format!("mg {key} t v\r\n"), ReplyKind::Meta);
    let t: i64 = ttl
        .split_whitespace()
        .find_map(|t| t.strip_prefix('t')?.parse().ok())
        .unwrap();
    assert!((1..=7).contains(&t), "gutter TTL {t} from {ttl:?}");
    // The other server's keys are untouched by the failure.
    let other = (0..)
        .map(|i| format!("ok:{i}"))
        .find(|k| ring.server_for(k.as_bytes()) == 1)
        .unwrap();
    assert_eq!(client.set(&other, "fine", 0), "STORED\r\n");
    assert_eq!(pool[1].client().get(&other).as_deref(), Some("fine"));

    pool[0].restart();
    wait_until(
        "a probe to bring the server back",
        Duration::from_secs(10),
        || router.stat(&down).as_deref() == Some("0"),
    );
    assert_eq!(client.set(&key, "after", 0), "STORED\r\n");
    assert_eq!(pool[0].client().get(&key).as_deref(), Some("after"));
    assert_eq!(client.get(&key).as_deref(), Some("after"));
}

#[test]
fn a_multi_get_over_a_dead_server_takes_its_keys_from_the_gutter() {
    let mut pool: Vec<Memcached> = (0..2).map(|_| Memcached::start()).collect();
    let gutter = Memcached::start();
    let addrs: Vec<String> = pool.iter().map(Memcached::addr).collect();
    let router = Router::start(&json!({
        "pools": {"eqiad": {"servers": addrs}, "gutter": {"servers": [gutter.addr()]}},
        "local_pool": "eqiad",
        // The first get finds the server dead (refused: marked down at once) and is retried
        // on the gutter within the same request.
        "failover": {"gutter_pool": "gutter", "failures_until_down": 1000},
        "timeouts": {"connect_ms": 200, "request_ms": 300},
    }));
    let ring = Ring::new(&addrs);
    let on = |server: usize, prefix: &str| {
        (0..)
            .map(|i| format!("{prefix}:{i}"))
            .find(|k| ring.server_for(k.as_bytes()) == server)
            .unwrap()
    };
    let (lost, missing, kept) = (on(0, "lost"), on(0, "missing"), on(1, "kept"));
    let mut client = router.client();
    assert_eq!(client.set(&kept, "here", 0), "STORED\r\n");
    assert_eq!(gutter.client().set(&lost, "in-gutter", 0), "STORED\r\n");
    pool[0].kill();
    // A repeated key, a key on the live server, and a key in neither place, in the client's
    // order.
    let reply = client.call(
        format!("get {lost} {kept} {missing} {lost}\r\n"),
        ReplyKind::Values,
    );
    assert_eq!(
        reply,
        format!(
            "VALUE {lost} 0 9\r\nin-gutter\r\nVALUE {kept} 0 4\r\nhere\r\n\
             VALUE {lost} 0 9\r\nin-gutter\r\nEND\r\n"
        )
    );
    assert_eq!(router.stat("failovers").as_deref(), Some("3"));
}

#[test]
fn without_a_gutter_a_dead_server_is_a_miss_or_a_hang_up_not_a_hang() {
    let mut server = Memcached::start();
    let config = |unavailable: &str| {
        json!({
            "pools": {"eqiad": {"servers": [server.addr()]}},
            "local_pool": "eqiad",
            "failover": {"unavailable": unavailable},
            "timeouts": {"connect_ms": 200, "request_ms": 300},
        })
    };
    let closing = Router::start(&config("close"));
    let erroring = Router::start(&config("server_error"));
    let mut client = closing.client();
    assert_eq!(client.set("k", "v", 0), "STORED\r\n");
    server.kill();
    // A get is a miss, as a cache should answer, and the connection stays.
    assert_eq!(client.get("k"), None);
    assert_eq!(client.get("k"), None);
    // A store that nothing can take: the replies before it, then the connection closes, which
    // MediaWiki's clients take as an I/O error (see config::Unavailable).
    client
        .stream
        .write_all(b"mn\r\nadd lock 0 6 1\r\n1\r\nmn\r\n")
        .unwrap();
    assert_eq!(client.read_reply(ReplyKind::Line), "MN\r\n");
    let mut rest = Vec::new();
    client.stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    // The other way: memcached's kind of error line, and the connection stays.
    let mut client = erroring.client();
    assert_eq!(client.set("k", "v", 0), "SERVER_ERROR unavailable\r\n");
    assert_eq!(client.get("k"), None);
    assert_eq!(
        client.call("delete k\r\n", ReplyKind::Line),
        "SERVER_ERROR unavailable\r\n"
    );
}

#[test]
fn malformed_input_gets_memcached_errors_and_harms_no_one() {
    let server = Memcached::start();
    let router = Router::start(&json!({
        "pools": {"eqiad": {"servers": [server.addr()]}},
        "local_pool": "eqiad",
        "limits": {"max_key_bytes": 250, "max_value_bytes": 1000},
    }));
    // Another client with a conversation in progress.
    let mut bystander = router.client();
    assert_eq!(bystander.set("mine", "safe", 0), "STORED\r\n");

    let mut c = router.client();
    assert_eq!(c.call("bogus command\r\n", ReplyKind::Line), "ERROR\r\n");
    assert_eq!(c.call("\r\n", ReplyKind::Line), "ERROR\r\n");
    let long = "k".repeat(251);
    assert_eq!(
        c.call(format!("get {long}\r\n"), ReplyKind::Line),
        "CLIENT_ERROR bad command line format\r\n"
    );
    // Oversized value: refused, and its bytes are skipped, never run as commands.
    let value = "flush_all\r\n".repeat(200);
    assert_eq!(
        c.call(
            format!("set big 0 0 {}\r\n{value}\r\n", value.len()),
            ReplyKind::Line
        ),
        "SERVER_ERROR object too large for cache\r\n"
    );
    assert_eq!(
        c.call("set k 0 0 3\r\nabcdef\r\n", ReplyKind::Line),
        "CLIENT_ERROR bad data chunk\r\n"
    );
    // As memcached does, the bytes past the declared length are read as a command.
    assert_eq!(c.read_reply(ReplyKind::Line), "ERROR\r\n");
    assert_eq!(
        c.call("incr mine x\r\n", ReplyKind::Line),
        "CLIENT_ERROR invalid numeric delta argument\r\n"
    );
    assert_eq!(
        c.call("set k 0 0 -1\r\n", ReplyKind::Line),
        "CLIENT_ERROR bad command line format\r\n"
    );
    // The connection still works, in order.
    assert_eq!(c.set("k", "v", 0), "STORED\r\n");

    // Clients that leave mid-command: mid-line, mid-value, and mid-oversized-value.
    for partial in [
        "get mi",
        "set half 0 0 10\r\nabc",
        "set huge 0 0 5000\r\nxyz",
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", router.port)).unwrap();
        s.write_all(partial.as_bytes()).unwrap();
        drop(s);
    }
    // A line without end closes that connection with an error.
    let mut s = TcpStream::connect(("127.0.0.1", router.port)).unwrap();
    let _ = s.write_all(&vec![b'a'; 70 * 1024]);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(
        reply.starts_with(b"CLIENT_ERROR line too long\r\n"),
        "{reply:?}"
    );

    assert_eq!(bystander.get("mine").as_deref(), Some("safe"));
    assert_eq!(bystander.get("half"), None);
    assert_eq!(router.client().get("k").as_deref(), Some("v"));
}

#[test]
fn memcapable_ascii_passes_through_the_router() {
    let memcapable = require("memccapable", "libmemcached-tools");
    let servers: Vec<Memcached> = (0..2).map(|_| Memcached::start()).collect();
    // One thread: the current-thread runtime, as the benchmark runs it.
    let router = Router::start_with_threads(
        &json!({
            "pools": {"eqiad": {"servers": servers.iter().map(Memcached::addr).collect::<Vec<_>>()}},
            "local_pool": "eqiad",
        }),
        1,
    );
    // -a: the ASCII protocol only. The binary protocol is out of scope: memcached deprecated
    // it, PHP's memcached client uses it only when told to, and MediaWiki does not.
    let output = Command::new(memcapable)
        .args([
            "-a",
            "-t",
            "5",
            "-h",
            "127.0.0.1",
            "-p",
            &router.port.to_string(),
        ])
        .output()
        .expect("run memccapable");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("All tests passed"),
        "memccapable failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !stdout.contains("[FAIL]") && !stdout.contains("[skip]"),
        "{stdout}"
    );
}

#[test]
fn meta_commands_work_through_the_router() {
    let servers: Vec<Memcached> = (0..2).map(|_| Memcached::start()).collect();
    let router = Router::over_pool(&servers);
    let mut c = router.client();
    assert_eq!(
        c.call("ms m1 2 T60 F5\r\nhi\r\n", ReplyKind::Meta),
        "HD\r\n"
    );
    assert_eq!(
        c.call("mg m1 v f\r\n", ReplyKind::Meta),
        "VA 2 f5\r\nhi\r\n"
    );
    assert_eq!(c.call("mg nope v\r\n", ReplyKind::Meta), "EN\r\n");
    // Quiet mode: a miss and a stored set say nothing; mn marks the end.
    c.stream
        .write_all(b"mg nope v q\r\nms m2 1 q\r\nx\r\nmg m2 v q\r\nmn\r\n")
        .unwrap();
    assert_eq!(c.read_reply(ReplyKind::Meta), "VA 1\r\nx\r\n");
    assert_eq!(c.read_reply(ReplyKind::Meta), "MN\r\n");
    assert_eq!(
        c.call("ma ctr N0 J10 v\r\n", ReplyKind::Meta),
        "VA 2\r\n10\r\n"
    );
    assert_eq!(c.call("ma ctr D5 v\r\n", ReplyKind::Meta), "VA 2\r\n15\r\n");
    assert_eq!(c.call("md m1\r\n", ReplyKind::Meta), "HD\r\n");
    assert_eq!(c.call("md m1\r\n", ReplyKind::Meta), "NF\r\n");
    assert_eq!(
        c.call("gat 100 m2\r\n", ReplyKind::Values),
        "VALUE m2 0 1\r\nx\r\nEND\r\n"
    );
    let gats = c.call("gats 100 m2\r\n", ReplyKind::Values);
    assert!(gats.starts_with("VALUE m2 0 1 "), "{gats}");
    assert_eq!(c.call("touch m2 10\r\n", ReplyKind::Line), "TOUCHED\r\n");
}

#[test]
fn stats_and_prometheus_count_per_route_and_server() {
    let server = Memcached::start();
    let router = Router::over_pool(std::slice::from_ref(&server));
    let mut c = router.client();
    c.set("a", "1", 0);
    c.get("a");
    c.get("b");
    assert_eq!(router.stat("route:eqiad:hits").as_deref(), Some("1"));
    assert_eq!(router.stat("route:eqiad:misses").as_deref(), Some("1"));
    assert_eq!(router.stat("route:eqiad:requests").as_deref(), Some("3"));
    let mut http = TcpStream::connect(("127.0.0.1", router.metrics_port)).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("mcrouter_hits_total{route=\"eqiad\"} 1"),
        "{body}"
    );
    let server_line = format!(
        "mcrouter_requests_total{{pool=\"eqiad\",server=\"{}\"}} 3",
        server.addr()
    );
    assert!(body.contains(&server_line), "{body}");
    assert!(body.contains("mcrouter_latency_seconds_bucket"), "{body}");
}

#[test]
fn sigterm_drains_in_flight_commands_then_exits() {
    let server = Memcached::start();
    let mut router = Router::start(&json!({
        "pools": {"eqiad": {"servers": [server.addr()]}},
        "local_pool": "eqiad",
    }));
    let mut c = router.client();
    c.set("d", "v", 0);
    // A pipelined batch, then SIGTERM at once: every command sent is answered.
    let batch: String = (0..500).map(|_| "get d\r\n").collect();
    c.stream.write_all(batch.as_bytes()).unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &router.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..500 {
        assert_eq!(
            c.read_reply(ReplyKind::Values),
            "VALUE d 0 1\r\nv\r\nEND\r\n"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(status) = router.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "router did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(exit.success(), "{exit}");
    assert!(TcpStream::connect(("127.0.0.1", router.port)).is_err());
}

#[test]
fn a_bad_config_names_the_file_line_and_expectation() {
    let path = std::env::temp_dir().join(format!("mcrouter-bad-{}.json", std::process::id()));
    std::fs::write(
        &path,
        "{\n  \"pools\": {},\n  \"local_pool\": \"eqiad\",\n  \"rootes\": []\n}\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mcrouter"))
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let expected = format!(
        "{}:4:10: unknown field `rootes`, expected one of",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    std::fs::write(
        &path,
        r#"{"pools": {"a": {"servers": ["x:1"]}}, "local_pool": "b"}"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mcrouter"))
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("local_pool: no pool named \"b\""),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&path);

    let help = Command::new(env!("CARGO_BIN_EXE_mcrouter"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in ["\"gutter_ttl_seconds\"", "ketama", "STRIPPED", "SIGTERM"] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}

#[test]
fn pipelined_commands_run_together_and_answer_in_order() {
    let servers: Vec<Memcached> = (0..2).map(|_| Memcached::start()).collect();
    let router = Router::over_pool(&servers);
    let mut c = router.client();
    // Writes and reads of the same keys in one write: each read sees the write before it.
    let mut batch = String::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        let key = format!("p{}", i % 7);
        batch += &format!(
            "set {key} 0 0 {}\r\n{i}\r\nget {key}\r\n",
            i.to_string().len()
        );
        expected.push(("STORED\r\n".to_string(), ReplyKind::Line));
        expected.push((
            format!("VALUE {key} 0 {}\r\n{i}\r\nEND\r\n", i.to_string().len()),
            ReplyKind::Values,
        ));
    }
    batch += "bogus\r\ndelete p0\r\nget p0\r\nmn\r\n";
    expected.push(("ERROR\r\n".into(), ReplyKind::Line));
    expected.push(("DELETED\r\n".into(), ReplyKind::Line));
    expected.push(("END\r\n".into(), ReplyKind::Values));
    expected.push(("MN\r\n".into(), ReplyKind::Line));
    c.stream.write_all(batch.as_bytes()).unwrap();
    for (want, kind) in expected {
        assert_eq!(c.read_reply(kind), want);
    }
}

#[test]
fn pipelined_gets_are_merged_per_server_and_answered_per_command() {
    let servers: Vec<Memcached> = (0..2).map(|_| Memcached::start()).collect();
    let router = Router::over_pool(&servers);
    let mut c = router.client();
    for i in 0..20 {
        c.set(&format!("m{i}"), &format!("v{i}"), 0);
    }
    let commands: Vec<Vec<String>> = (0..40)
        .map(|i| {
            (0..(i % 4))
                .map(|j| format!("m{}", (i * 3 + j) % 25)) // some miss (m20..m24)
                .chain([format!("m{}", i % 20)])
                .collect()
        })
        .collect();
    let batch: String = commands
        .iter()
        .map(|keys| format!("get {}\r\n", keys.join(" ")))
        .collect();
    c.stream.write_all(batch.as_bytes()).unwrap();
    for keys in &commands {
        let mut want = String::new();
        for key in keys {
            let n: usize = key[1..].parse().unwrap();
            if n < 20 {
                want += &format!("VALUE {key} 0 {}\r\nv{n}\r\n", format!("v{n}").len());
            }
        }
        want += "END\r\n";
        assert_eq!(c.read_reply(ReplyKind::Values), want);
    }
    // Each server got far fewer requests than there were commands.
    let requests: u64 = servers
        .iter()
        .map(|s| {
            let addr = s.addr();
            router
                .stat(&format!("server:eqiad:{addr}:requests"))
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert!(
        requests < 20 + 20,
        "{requests} server requests for 20 sets and 40 gets"
    );
}

#[test]
fn concurrent_clients_gets_stay_their_own() {
    // Many clients share one pipelined connection per server: each must still get exactly
    // the values of its own keys.
    let server = Memcached::start();
    let router = Router::over_pool(std::slice::from_ref(&server));
    let mut c = router.client();
    for i in 0..30 {
        c.set(&format!("c{i}"), &format!("value-{i}"), 0);
    }
    let port = router.port;
    let threads: Vec<_> = (0..12)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = common::Client::connect(port);
                for i in 0..300 {
                    let n = (t * 7 + i) % 40; // c30..c39 miss
                    let got = c.get(&format!("c{n}"));
                    let want = (n < 30).then(|| format!("value-{n}"));
                    assert_eq!(got, want, "client {t}, key c{n}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}
