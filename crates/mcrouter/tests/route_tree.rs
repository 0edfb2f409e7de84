//! mcrouter's own config format against real memcached servers: each route handle, routing
//! prefixes and broadcasts, Wikimedia's WAN tree, TKO and the gutter.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{wait_until, Memcached, Router};
use ketama::Ring;
use mcrouter::config::{wan_routes, Timeouts, Tko, WanLayout};
use mcrouter::protocol::ReplyKind;
use serde_json::json;

/// The TTL memcached reports for `key` (`mg key t`), if it holds the key.
fn ttl(server: &Memcached, key: &str) -> Option<i64> {
    let reply = server
        .client()
        .call(format!("mg {key} t\r\n"), ReplyKind::Meta);
    reply
        .trim_end()
        .strip_prefix("HD t")
        .and_then(|t| t.parse().ok())
}

fn layout(local: &[&Memcached], remote: &[&Memcached], gutter: &[&Memcached]) -> WanLayout {
    let addrs = |list: &[&Memcached]| list.iter().map(|m| m.addr()).collect::<Vec<_>>();
    WanLayout {
        local: "eqiad".into(),
        pools: BTreeMap::from([
            ("eqiad".to_string(), addrs(local)),
            ("codfw".to_string(), addrs(remote)),
        ]),
        gutter: addrs(gutter),
        gutter_ttl_seconds: 10,
        tko: Tko {
            timeouts_until_tko: 3,
            probe_delay_initial_ms: 50,
            probe_delay_max_ms: 200,
        },
        timeouts: Timeouts {
            connect_ms: 200,
            request_ms: 300,
            drain_ms: 1000,
        },
    }
}

#[test]
fn wan_purges_reach_every_datacenter_and_reads_stay_local() {
    let eqiad = Memcached::start();
    let codfw = Memcached::start();
    let gutter = Memcached::start();
    let config =
        serde_json::to_value(wan_routes(&layout(&[&eqiad], &[&codfw], &[&gutter]))).unwrap();
    let router = Router::start(&config);
    let mut c = router.client();
    for server in [&eqiad, &codfw] {
        server.client().set("page", "stale", 0);
    }
    // A purge as WANObjectCache writes it: a tombstone set with the broadcast prefix. The
    // local pool has it when the client hears back; the remote one soon after.
    assert_eq!(c.set("/*/mw-wan/page", "PURGED", 10), "STORED\r\n");
    assert_eq!(eqiad.client().get("page").as_deref(), Some("PURGED"));
    let mut remote = codfw.client();
    wait_until("the purge to reach codfw", Duration::from_secs(5), || {
        remote.get("page").as_deref() == Some("PURGED")
    });
    // Deletes too.
    for server in [&eqiad, &codfw] {
        server.client().set("gone", "x", 0);
    }
    assert_eq!(
        c.call("delete /*/mw-wan/gone\r\n", ReplyKind::Line),
        "DELETED\r\n"
    );
    assert_eq!(eqiad.client().get("gone"), None);
    wait_until("the delete to reach codfw", Duration::from_secs(5), || {
        remote.get("gone").is_none()
    });
    // Reads stay local, whatever the prefix: only codfw has this one.
    codfw.client().set("only-remote", "r", 0);
    assert_eq!(c.get("only-remote"), None);
    assert_eq!(c.get("/*/mw-wan/only-remote"), None);
    assert_eq!(c.get("/codfw/mw-wan/only-remote"), None);
    // An add (a lock) with the WAN prefix stays local too.
    assert_eq!(
        c.call("add /*/mw-wan/lock 0 5 1\r\n1\r\n", ReplyKind::Line),
        "STORED\r\n"
    );
    assert_eq!(eqiad.client().get("lock").as_deref(), Some("1"));
    assert_eq!(codfw.client().get("lock"), None);
    // The plain per-datacenter routes go where they say; unprefixed keys are local.
    assert_eq!(c.set("/codfw/mw/there", "t", 0), "STORED\r\n");
    assert_eq!(codfw.client().get("there").as_deref(), Some("t"));
    assert_eq!(c.set("here", "h", 0), "STORED\r\n");
    assert_eq!(eqiad.client().get("here").as_deref(), Some("h"));
    // A multi-get across prefixes keeps the client's keys and order.
    let reply = c.call("get here /eqiad/mw/here nope\r\n", ReplyKind::Values);
    assert_eq!(
        reply,
        "VALUE here 0 1\r\nh\r\nVALUE /eqiad/mw/here 0 1\r\nh\r\nEND\r\n"
    );
}

#[test]
fn a_killed_server_fails_over_to_the_gutter_with_no_client_visible_error() {
    let mut eqiad: Vec<Memcached> = (0..2).map(|_| Memcached::start()).collect();
    let codfw = Memcached::start();
    let gutter = Memcached::start();
    let mut tree = wan_routes(&layout(&[&eqiad[0], &eqiad[1]], &[&codfw], &[&gutter]));
    // Errors show as error lines here rather than a closed connection, to be counted.
    tree.unavailable = mcrouter::config::Unavailable::ServerError;
    let router = Router::start(&serde_json::to_value(tree).unwrap());
    let addrs: Vec<String> = eqiad.iter().map(Memcached::addr).collect();
    let ring = Ring::new(&addrs);
    let keys: Vec<String> = (0..40).map(|i| format!("key:{i}")).collect();
    let on_dead: Vec<&String> = keys
        .iter()
        .filter(|k| ring.server_for(k.as_bytes()) == 0)
        .collect();
    assert!(!on_dead.is_empty());

    // A client doing what MediaWiki does (get, set, add a lock, delete it, a multi-get)
    // in a loop while the server dies.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let port = router.port;
    let worker = {
        let (stop, rounds, keys) = (stop.clone(), rounds.clone(), keys.clone());
        std::thread::spawn(move || {
            let mut c = common::Client::connect(port);
            let mut errors = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for key in &keys {
                    for (request, kind) in [
                        (format!("set {key} 0 3600 1\r\nv\r\n"), ReplyKind::Line),
                        (format!("get {key}\r\n"), ReplyKind::Values),
                        (format!("add {key}:lock 0 5 1\r\n1\r\n"), ReplyKind::Line),
                        (format!("delete {key}:lock\r\n"), ReplyKind::Line),
                        (format!("get {key} {key}:x other\r\n"), ReplyKind::Values),
                    ] {
                        let reply = c.call(&request, kind);
                        if reply.contains("ERROR") {
                            errors.push((request, reply));
                        }
                    }
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            errors
        })
    };
    wait_until("a first round", Duration::from_secs(10), || {
        rounds.load(Ordering::Relaxed) >= 1
    });
    eqiad[0].kill();
    let killed_at = rounds.load(Ordering::Relaxed);
    wait_until("rounds after the kill", Duration::from_secs(20), || {
        rounds.load(Ordering::Relaxed) >= killed_at + 3
    });
    stop.store(true, Ordering::Relaxed);
    let errors = worker.join().unwrap();
    assert!(errors.is_empty(), "client-visible errors: {errors:?}");
    let down = format!("server:eqiad:{}:down", addrs[0]);
    assert_eq!(router.stat(&down).as_deref(), Some("1"));
    // The dead server's keys went to the gutter, with their TTL capped at the gutter TTL.
    let t = ttl(&gutter, on_dead[0]).expect("the key is in the gutter");
    assert!((1..=10).contains(&t), "gutter TTL {t}");
    // Keys of the live server never went there.
    let alive = keys
        .iter()
        .find(|k| ring.server_for(k.as_bytes()) == 1)
        .unwrap();
    assert_eq!(ttl(&gutter, alive), None);
    assert_eq!(eqiad[1].client().get(alive).as_deref(), Some("v"));

    // Back: probed after probe_delay_initial_ms, then served by its owner again.
    eqiad[0].restart();
    wait_until(
        "the probe to bring it back",
        Duration::from_secs(10),
        || router.stat(&down).as_deref() == Some("0"),
    );
    let mut c = router.client();
    assert_eq!(c.set(on_dead[0], "after", 0), "STORED\r\n");
    assert_eq!(eqiad[0].client().get(on_dead[0]).as_deref(), Some("after"));
}

/// A server that accepts connections and never answers.
fn silent_server() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepting = listener.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((stream, _)) = accepting.accept() {
            held.push(stream);
        }
    });
    (listener, port)
}

#[test]
fn timeouts_until_tko_then_the_gutter_takes_over() {
    let (_silent, port) = silent_server();
    let gutter = Memcached::start();
    let router = Router::start(&json!({
        "pools": {"eqiad": {"servers": [format!("127.0.0.1:{port}:ascii:plain")]},
                  "gutter": {"servers": [gutter.addr()]}},
        "route": {"type": "FailoverWithExptimeRoute", "normal": "PoolRoute|eqiad",
                  "failover": ["PoolRoute|gutter"], "failover_exptime": 7,
                  "failover_errors": ["tko"]},
        "tko": {"timeouts_until_tko": 2, "probe_delay_initial_ms": 60000,
                "probe_delay_max_ms": 60000},
        "timeouts": {"connect_ms": 200, "request_ms": 150},
        "unavailable": "server_error",
    }));
    let mut c = router.client();
    // Timeouts are not TKO: the first two reach the client (a store as an error, a get as
    // a miss); the second marks the server down.
    assert_eq!(c.set("a", "1", 0), "SERVER_ERROR unavailable\r\n");
    assert_eq!(c.get("a"), None);
    let down = format!("server:eqiad:127.0.0.1:{port}:down");
    assert_eq!(router.stat(&down).as_deref(), Some("1"));
    // From then on the gutter answers, at once, with the TTL capped.
    assert_eq!(c.set("a", "1", 0), "STORED\r\n");
    assert_eq!(c.get("a").as_deref(), Some("1"));
    let t = ttl(&gutter, "a").unwrap();
    assert!((1..=7).contains(&t), "{t}");
}

#[test]
fn selectors_hash_failover_and_warm_up_routes() {
    let a = Memcached::start();
    let b = Memcached::start();
    let mut dead = Memcached::start();
    dead.kill();
    let router = Router::start(&json!({
        "pools": {"A": {"servers": [a.addr()]}, "B": {"servers": [b.addr()]},
                  "dead": {"servers": [dead.addr()]}},
        "routes": [
            {"aliases": ["/x/prefix/"],
             "route": {"type": "PrefixSelectorRoute",
                       "policies": {"a:": "PoolRoute|A", "a:b:": "PoolRoute|B"},
                       "wildcard": "PoolRoute|B"}},
            {"aliases": ["/x/hash/"],
             "route": {"type": "HashRoute", "children": ["PoolRoute|A", "PoolRoute|B"]}},
            {"aliases": ["/x/failover/"],
             "route": {"type": "FailoverRoute", "children": ["PoolRoute|dead", "PoolRoute|B"]}},
            {"aliases": ["/x/warm/"],
             "route": {"type": "WarmUpRoute", "cold": "PoolRoute|A", "warm": "PoolRoute|B",
                       "exptime": 30}},
            {"aliases": ["/x/ops/"],
             "route": {"type": "OperationSelectorRoute", "default_policy": "PoolRoute|A",
                       "operation_policies": {"set": {"type": "AllSyncRoute",
                                                      "children": ["PoolRoute|A", "PoolRoute|B"]},
                                              "delete": "NullRoute",
                                              "incr": "ErrorRoute|no counters here"}}},
        ],
        "default_route": "/x/prefix/",
        "tko": {"probe_delay_initial_ms": 60000},
    }));
    let mut c = router.client();
    // PrefixSelectorRoute: the longest prefix wins; unmatched keys take the wildcard.
    c.set("/x/prefix/a:1", "v", 0);
    c.set("/x/prefix/a:b:1", "v", 0);
    c.set("/x/prefix/z", "v", 0);
    assert_eq!(a.client().get("a:1").as_deref(), Some("v"));
    assert_eq!(b.client().get("a:b:1").as_deref(), Some("v"));
    assert_eq!(b.client().get("z").as_deref(), Some("v"));
    // Keys without a prefix take the default route.
    c.set("a:default", "v", 0);
    assert_eq!(a.client().get("a:default").as_deref(), Some("v"));
    // HashRoute: each key on exactly one child, both children used, stable.
    let (mut on_a, mut on_b) = (0, 0);
    for i in 0..60 {
        let key = format!("h{i}");
        c.set(&format!("/x/hash/{key}"), "v", 0);
        match (
            a.client().get(&key).is_some(),
            b.client().get(&key).is_some(),
        ) {
            (true, false) => on_a += 1,
            (false, true) => on_b += 1,
            other => panic!("{key}: {other:?}"),
        }
        assert_eq!(c.get(&format!("/x/hash/{key}")).as_deref(), Some("v"));
    }
    assert!(on_a > 5 && on_b > 5, "{on_a} / {on_b}");
    // FailoverRoute: the dead child's requests go to the next.
    assert_eq!(c.set("/x/failover/f", "v", 0), "STORED\r\n");
    assert_eq!(b.client().get("f").as_deref(), Some("v"));
    assert_eq!(c.get("/x/failover/f").as_deref(), Some("v"));
    // WarmUpRoute: a miss in the cold pool is read from the warm one and copied over.
    b.client().set("w", "warm-value", 0);
    assert_eq!(a.client().get("w"), None);
    assert_eq!(c.get("/x/warm/w").as_deref(), Some("warm-value"));
    let mut cold = a.client();
    wait_until("the warm-up copy", Duration::from_secs(5), || {
        cold.get("w").as_deref() == Some("warm-value")
    });
    let t = ttl(&a, "w").unwrap();
    assert!((1..=30).contains(&t), "{t}");
    // Sets and deletes go to the cold one only.
    c.set("/x/warm/s", "v", 0);
    assert_eq!(a.client().get("s").as_deref(), Some("v"));
    assert_eq!(b.client().get("s"), None);
    // OperationSelectorRoute with AllSync, NullRoute and ErrorRoute below it.
    assert_eq!(c.set("/x/ops/both", "v", 0), "STORED\r\n");
    assert_eq!(a.client().get("both").as_deref(), Some("v"));
    assert_eq!(b.client().get("both").as_deref(), Some("v"));
    assert_eq!(
        c.call("delete /x/ops/both\r\n", ReplyKind::Line),
        "NOT_FOUND\r\n"
    );
    assert_eq!(a.client().get("both").as_deref(), Some("v"));
    assert_eq!(
        c.call("incr /x/ops/n 1\r\n", ReplyKind::Line),
        "SERVER_ERROR no counters here\r\n"
    );
    assert_eq!(c.get("/x/ops/both").as_deref(), Some("v"));
}

#[test]
fn an_unknown_handle_is_named_with_its_json_path() {
    let path = std::env::temp_dir().join(format!("mcrouter-tree-{}.json", std::process::id()));
    let check = |text: &str| {
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_mcrouter"))
            .arg("--config")
            .arg(&path)
            .arg("--check")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = check(
        r#"{"pools": {"A": {"servers": ["127.0.0.1:1"]}},
            "routes": [{"aliases": ["/a/b/"], "route": {"type": "OperationSelectorRoute",
                "operation_policies": {"get": {"type": "MissFailoverRoute",
                                               "children": ["PoolRoute|A"]}}}}]}"#,
    );
    assert!(
        stderr.contains("routes[0].route.operation_policies.get.type: unknown route handle \"MissFailoverRoute\""),
        "{stderr}"
    );
    let stderr = check(
        r#"{"pools": {"A": {"servers": ["127.0.0.1:1"]}},
            "route": {"type": "AllSyncRoute", "children": ["PoolRoute|A", "LatestRoute|A"]}}"#,
    );
    assert!(
        stderr.contains("route.children[1]: unknown route handle \"LatestRoute\""),
        "{stderr}"
    );
    let stderr = check(
        r#"{"pools": {"A": {"servers": ["127.0.0.1:1"]}},
            "route": {"type": "FailoverWithExptimeRoute", "normal": "PoolRoute|B",
                      "failover": "PoolRoute|A"}}"#,
    );
    assert!(
        stderr.contains("route.normal: no pool named \"B\""),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&path);
}
