//! Routing against real memcached servers: the ring, prefixes, and replication.

mod common;

use std::time::Duration;

use common::{wait_until, Memcached, Router};
use ketama::Ring;
use mcrouter::protocol::ReplyKind;
use serde_json::json;

#[test]
fn keys_spread_over_the_pool_and_stay_on_their_server() {
    let servers: Vec<Memcached> = (0..3).map(|_| Memcached::start()).collect();
    let addrs: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let config = json!({"pools": {"eqiad": {"servers": addrs}}, "local_pool": "eqiad"});
    let ring = Ring::new(&addrs);
    let keys: Vec<String> = (0..300).map(|i| format!("WANCache:v:key-{i}")).collect();
    {
        let router = Router::start(&config);
        let mut client = router.client();
        for key in &keys {
            assert_eq!(client.set(key, "first", 0), "STORED\r\n");
        }
    }
    let mut direct: Vec<_> = servers.iter().map(Memcached::client).collect();
    let mut per_server = [0usize; 3];
    for key in &keys {
        let holders: Vec<usize> = (0..3).filter(|&s| direct[s].get(key).is_some()).collect();
        assert_eq!(holders.len(), 1, "{key} is on servers {holders:?}");
        assert_eq!(
            holders[0],
            ring.server_for(key.as_bytes()),
            "{key} is off its ring server"
        );
        per_server[holders[0]] += 1;
    }
    for count in per_server {
        assert!(count > 50, "uneven spread {per_server:?}");
    }

    // A new router process (same config) sends every key to the same server again.
    let router = Router::start(&config);
    let mut client = router.client();
    for key in &keys {
        assert_eq!(client.set(key, "second", 0), "STORED\r\n");
    }
    for key in &keys {
        let owner = ring.server_for(key.as_bytes());
        assert_eq!(direct[owner].get(key).as_deref(), Some("second"), "{key}");
    }
}

#[test]
fn multi_get_spans_servers_and_keeps_the_clients_order() {
    let servers: Vec<Memcached> = (0..3).map(|_| Memcached::start()).collect();
    let addrs: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let router = Router::start(&json!({
        "pools": {"eqiad": {"servers": addrs}},
        "local_pool": "eqiad",
        "routes": [{"prefix": "/eqiad/mw/", "pool": "eqiad"}],
    }));
    let mut client = router.client();
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    for key in keys.iter().step_by(2) {
        client.set(key, &format!("v-{key}"), 0);
    }
    // Reversed, with a prefixed duplicate and misses in between.
    let mut asked: Vec<String> = keys.iter().rev().cloned().collect();
    asked.push("/eqiad/mw/k0".into());
    let reply = client.call(format!("get {}\r\n", asked.join(" ")), ReplyKind::Values);
    let mut expected = String::new();
    for key in &asked {
        let plain = key.trim_start_matches("/eqiad/mw/");
        if plain[1..].parse::<u32>().unwrap() % 2 == 0 {
            let value = format!("v-{plain}");
            expected += &format!("VALUE {key} 0 {}\r\n{value}\r\n", value.len());
        }
    }
    expected += "END\r\n";
    assert_eq!(reply, expected);
}

#[test]
fn prefixes_pick_the_pool_and_are_stripped() {
    let eqiad = Memcached::start();
    let codfw = Memcached::start();
    let router = Router::start(&json!({
        "pools": {"eqiad": {"servers": [eqiad.addr()]}, "codfw": {"servers": [codfw.addr()]}},
        "local_pool": "eqiad",
        "routes": [{"prefix": "/eqiad/mw/", "pool": "eqiad"}, {"prefix": "/codfw/mw/", "pool": "codfw"}],
        "replicate_to": ["codfw"],
    }));
    let mut client = router.client();
    assert_eq!(client.set("/codfw/mw/remote", "r", 0), "STORED\r\n");
    assert_eq!(client.set("/eqiad/mw/local", "l", 0), "STORED\r\n");
    assert_eq!(client.set("/ulsfo/mw/other", "o", 0), "STORED\r\n");
    assert_eq!(codfw.client().get("remote").as_deref(), Some("r"));
    assert_eq!(eqiad.client().get("local").as_deref(), Some("l"));
    assert_eq!(eqiad.client().get("/ulsfo/mw/other").as_deref(), Some("o"));
    // Gets stay local: a key only codfw has is a miss through the default route.
    codfw.client().set("only-codfw", "x", 0);
    assert_eq!(client.get("only-codfw"), None);
    // The meta `k` flag gives back the client's key.
    let reply = client.call("mg /codfw/mw/remote k v\r\n", ReplyKind::Meta);
    assert_eq!(reply, "VA 1 k/codfw/mw/remote\r\nr\r\n");
}

#[test]
fn deletes_and_touches_reach_every_datacenter() {
    let eqiad: Vec<Memcached> = (0..2).map(|_| Memcached::start()).collect();
    let codfw = Memcached::start();
    let esams = Memcached::start();
    let router = Router::start(&json!({
        "pools": {"eqiad": {"servers": eqiad.iter().map(Memcached::addr).collect::<Vec<_>>()},
                  "codfw": {"servers": [codfw.addr()]},
                  "esams": {"servers": [esams.addr()]}},
        "local_pool": "eqiad",
        "replicate_to": ["codfw", "esams"],
    }));
    let everywhere = || eqiad.iter().chain([&codfw, &esams]);
    for server in everywhere() {
        let mut c = server.client();
        c.set("purged", "stale", 0);
        c.set("touched", "v", 0);
    }
    let mut client = router.client();
    assert_eq!(
        client.call("delete purged\r\n", ReplyKind::Line),
        "DELETED\r\n"
    );
    // The local pool is synchronous: gone from its eqiad server the moment we hear back.
    let ring = Ring::new(&eqiad.iter().map(Memcached::addr).collect::<Vec<_>>());
    let owner = ring.server_for(b"purged");
    assert_eq!(eqiad[owner].client().get("purged"), None);
    assert_eq!(
        eqiad[1 - owner].client().get("purged").as_deref(),
        Some("stale")
    );
    // Remote pools are asynchronous: poll, with a bound.
    for server in [&codfw, &esams] {
        let mut c = server.client();
        wait_until(
            "the delete to reach a remote pool",
            Duration::from_secs(5),
            || c.get("purged").is_none(),
        );
    }
    assert_eq!(
        client.call("touch touched 1000\r\n", ReplyKind::Line),
        "TOUCHED\r\n"
    );
    for server in [&codfw, &esams] {
        let mut c = server.client();
        wait_until(
            "the touch to reach a remote pool",
            Duration::from_secs(5),
            || {
                let reply = c.call("mg touched t\r\n", ReplyKind::Meta);
                reply
                    .trim_end()
                    .strip_prefix("HD t")
                    .and_then(|t| t.parse::<i64>().ok())
                    .is_some_and(|t| (0..=1000).contains(&t))
            },
        );
    }
    // A noreply delete is replicated too, and answers nothing.
    for server in everywhere() {
        server.client().set("quiet", "v", 0);
    }
    client
        .stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        client.call("delete quiet noreply\r\nmn\r\n", ReplyKind::Line),
        "MN\r\n"
    );
    for server in [&codfw, &esams] {
        let mut c = server.client();
        wait_until(
            "a noreply delete to reach a remote pool",
            Duration::from_secs(5),
            || c.get("quiet").is_none(),
        );
    }
}

#[test]
fn ring_agrees_with_nutcracker_ketama_md5() {
    let nutcracker = common::require("nutcracker", "nutcracker");
    let servers: Vec<Memcached> = (0..3).map(|_| Memcached::start()).collect();
    let addrs: Vec<String> = servers.iter().map(Memcached::addr).collect();
    let port = common::free_port();
    let dir =
        std::env::temp_dir().join(format!("mcrouter-nutcracker-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let yaml = format!(
        "pool:\n  listen: 127.0.0.1:{port}\n  hash: md5\n  distribution: ketama\n  redis: false\n  auto_eject_hosts: false\n  servers:\n{}",
        addrs.iter().map(|a| format!("    - {a}:1\n")).collect::<String>()
    );
    std::fs::write(dir.join("nutcracker.yml"), yaml).unwrap();
    let mut child = std::process::Command::new(nutcracker)
        .arg("-c")
        .arg(dir.join("nutcracker.yml"))
        .args(["-s", &common::free_port().to_string(), "-o"])
        .arg(dir.join("log"))
        .spawn()
        .expect("start nutcracker");
    wait_until("nutcracker", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let mut twem = common::Client::connect(port);
    let ring = Ring::new(&addrs);
    let mut direct: Vec<_> = servers.iter().map(Memcached::client).collect();
    for i in 0..200 {
        let key = format!("agree:{i}");
        assert_eq!(twem.set(&key, "v", 0), "STORED\r\n");
        let owner = ring.server_for(key.as_bytes());
        assert_eq!(
            direct[owner].get(&key).as_deref(),
            Some("v"),
            "{key}: nutcracker disagrees"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}
