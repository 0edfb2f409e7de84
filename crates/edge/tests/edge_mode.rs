//! Edge mode end to end: routing by host and path, the debug header, weighted shares with the
//! pinning cookie, config reload, and health checks taking a killed backend out.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

struct Setup {
    _tmp: tempfile::TempDir,
    pki: Pki,
    edge: Edge,
    port: u16,
    mport: u16,
}

fn header(port: u16, mport: u16, pki_dir: &Path) -> String {
    format!(
        r#"
[listen]
address = "127.0.0.1:{port}"
metrics = "127.0.0.1:{mport}"
reload_interval_ms = 100

[[tls.certificates]]
names = ["*.wiki.example", "wiki.example", "*.other.example"]
cert = "{}"
key = "{}"
"#,
        pki_dir.join("wiki.pem").display(),
        pki_dir.join("wiki.key").display()
    )
}

fn start(body: impl Fn(&str) -> String) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::new(tmp.path());
    pki.leaf(
        "wiki",
        "wiki-cert",
        &["wiki.example", "*.wiki.example", "*.other.example"],
    );
    let (port, mport) = (free_port(), free_port());
    let config = header(port, mport, tmp.path()) + &body("");
    let edge = Edge::start(tmp.path(), &config, port, mport);
    Setup {
        _tmp: tmp,
        pki,
        edge,
        port,
        mport,
    }
}

/// Many requests in one curl process (keep-alive); returns (status, x-backend) per request.
fn many(s: &Setup, host: &str, path: &str, n: usize, extra: &[&str]) -> Vec<(u16, String)> {
    require("curl", "curl");
    let url = s.edge.url(host, path);
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "--cacert"])
        .arg(&s.pki.ca_pem)
        .args(["--resolve", &s.edge.resolve(host)])
        .args(["-w", "%{http_code} %header{x-backend}\\n"])
        .args(extra)
        // `-o` applies to one URL only, so each URL gets its own.
        .args((0..n).flat_map(|_| ["-o", "/dev/null", url.as_str()]))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (code, backend) = l.split_once(' ').unwrap_or((l, ""));
            (code.parse().unwrap_or(0), backend.to_owned())
        })
        .collect()
}

fn counts(replies: &[(u16, String)]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for (status, backend) in replies {
        assert_eq!(
            *status,
            200,
            "a request failed ({backend:?}) among {}",
            replies.len()
        );
        *m.entry(backend.clone()).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path() {
    let web = Backend::start("web", 0).await;
    let api = Backend::start("api", 0).await;
    let other = Backend::start("other", 0).await;
    let s = start(|_| {
        format!(
            r#"
[edge.backends.web]
addresses = ["{}"]
[edge.backends.api]
addresses = ["{}"]
[edge.backends.other]
addresses = ["{}"]

[[edge.routes]]
hosts = ["*.wiki.example"]
path_prefix = "/w/api.php"
backend = "api"
[[edge.routes]]
hosts = ["*.wiki.example", "wiki.example"]
backend = "web"
[[edge.routes]]
hosts = ["*.other.example"]
backend = "other"
"#,
            web.addr, api.addr, other.addr
        )
    });
    let get = |host: &str, path: &str| curl(&s.edge, &s.pki.ca_pem, host, path, &[]);
    assert_eq!(
        get("en.wiki.example", "/wiki/Main_Page")
            .header("x-backend")
            .as_deref(),
        Some("web")
    );
    assert_eq!(
        get("en.wiki.example", "/w/api.php?action=query")
            .header("x-backend")
            .as_deref(),
        Some("api")
    );
    assert_eq!(
        get("wiki.example", "/w/api.php")
            .header("x-backend")
            .as_deref(),
        Some("web")
    );
    assert_eq!(
        get("EN.Other.Example", "/").header("x-backend").as_deref(),
        Some("other")
    );
    let r = get("en.wiki.example", "/w/index.php");
    assert!(r.body.contains("x-forwarded-proto: https"), "{}", r.body);
    // HTTP/2 too.
    let r = curl(
        &s.edge,
        &s.pki.ca_pem,
        "en.wiki.example",
        "/w/api.php",
        &["--http2"],
    );
    assert_eq!(
        (r.version.as_str(), r.header("x-backend").as_deref()),
        ("HTTP/2", Some("api"))
    );
    // A host no route serves: 404 that says so.
    let r = curl(&s.edge, &s.pki.ca_pem, "nowhere.example", "/", &["-k"]);
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("no route for host \"nowhere.example\""),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_header_routes_to_debug_backend_and_unknown_gets_400() {
    let web = Backend::start("web", 0).await;
    let dbg1 = Backend::start("mwdebug1001", 0).await;
    let dbg2 = Backend::start("mwdebug1002", 0).await;
    let s = start(|_| {
        format!(
            r#"
[edge.backends.web]
addresses = ["{}"]
[edge.backends.mwdebug1001]
addresses = ["{}"]
[edge.backends.mwdebug1002]
addresses = ["{}"]
[edge.debug]
backends = ["mwdebug1001", "mwdebug1002"]

[[edge.routes]]
hosts = ["*"]
backend = "web"
"#,
            web.addr, dbg1.addr, dbg2.addr
        )
    });
    let get = |extra: &[&str]| curl(&s.edge, &s.pki.ca_pem, "en.wiki.example", "/wiki/X", extra);
    let r = get(&[]);
    assert_eq!(r.header("x-backend").as_deref(), Some("web"));
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("public, max-age=300")
    );

    let r = get(&[
        "-H",
        "X-Wikimedia-Debug: backend=mwdebug1002; profile; readonly",
    ]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-backend").as_deref(), Some("mwdebug1002"));
    assert_eq!(
        r.header("cache-control").as_deref(),
        Some("private, no-cache, no-store, must-revalidate")
    );
    // The header itself reaches the backend: MediaWiki reads its other attributes.
    assert!(r
        .body
        .contains("x-wikimedia-debug: backend=mwdebug1002; profile; readonly"));
    let r = get(&[
        "--http2",
        "-H",
        "X-Wikimedia-Debug: log; backend=mwdebug1001",
    ]);
    assert_eq!(r.header("x-backend").as_deref(), Some("mwdebug1001"));

    let r = get(&["-H", "X-Wikimedia-Debug: backend=mwdebug9999"]);
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("unknown debug backend \"mwdebug9999\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("mwdebug1001, mwdebug1002"), "{}", r.body);
    // A backend that exists but is not a debug backend is refused the same way.
    let r = get(&["-H", "X-Wikimedia-Debug: backend=web"]);
    assert_eq!(r.status, 400);
    let r = get(&["-H", "X-Wikimedia-Debug: profile"]);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("no backend=NAME"), "{}", r.body);
}

fn split_config(old: &str, new: &str, percent: f64) -> impl Fn(&str) -> String {
    let (old, new) = (old.to_owned(), new.to_owned());
    move |_| {
        format!(
            r#"
[edge.backends.legacy]
addresses = ["{old}"]
[edge.backends.k8s]
addresses = ["{new}"]

[[edge.routes]]
hosts = ["*.wiki.example"]
backend = "legacy"
split = {{ backend = "k8s", default_percent = {percent}, host_percent = {{ "all.wiki.example" = 100.0, "none.wiki.example" = 0.0 }} }}
"#
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_end_to_end_with_pinning_cookie() {
    let legacy = Backend::start("legacy", 0).await;
    let k8s = Backend::start("k8s", 0).await;
    let s = start(split_config(
        &legacy.addr.to_string(),
        &k8s.addr.to_string(),
        30.0,
    ));

    // 400 new clients (no cookie): about 30 % go to k8s. The bound is loose on purpose (3.9
    // standard deviations); the 2-point bound over 10,000 is tested on the selection itself.
    let c = counts(&many(&s, "en.wiki.example", "/", 400, &[]));
    let share = *c.get("k8s").unwrap_or(&0) as f64 / 4.0;
    assert!((share - 30.0).abs() <= 9.0, "k8s share {share} %, {c:?}");

    // Clients with a bucket cookie land exactly where their bucket says: 0..10000 in steps of
    // 25 is 400 clients, 120 of them below 3000.
    let mut to_k8s = 0;
    for i in 0..400u32 {
        let cookie = format!("edge_bucket={}", i * 25);
        let r = &many(
            &s,
            "en.wiki.example",
            "/",
            1,
            &["-H", &format!("Cookie: x=1; {cookie}")],
        )[0];
        assert_eq!(r.0, 200);
        to_k8s += usize::from(r.1 == "k8s");
        if i % 50 == 0 {
            assert_eq!(r.1, if i * 25 < 3000 { "k8s" } else { "legacy" });
        }
    }
    assert_eq!(to_k8s, 120);

    // A new client gets a cookie and then stays on its side.
    let first = curl(&s.edge, &s.pki.ca_pem, "en.wiki.example", "/", &[]);
    let set = first
        .header("set-cookie")
        .expect("a Set-Cookie for a new client");
    assert!(set.contains("Secure") && set.contains("HttpOnly"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let side = first.header("x-backend").unwrap();
    let c = counts(&many(
        &s,
        "en.wiki.example",
        "/",
        30,
        &["-H", &format!("Cookie: {cookie}")],
    ));
    assert_eq!(c.get(&side), Some(&30), "{c:?}");
    let again = curl(
        &s.edge,
        &s.pki.ca_pem,
        "en.wiki.example",
        "/",
        &["-H", &format!("Cookie: {cookie}")],
    );
    assert_eq!(
        again.header("set-cookie"),
        None,
        "a pinned client gets no new cookie"
    );

    // Per-host weights override the default.
    assert_eq!(
        counts(&many(&s, "all.wiki.example", "/", 50, &[])).get("k8s"),
        Some(&50)
    );
    assert_eq!(
        counts(&many(&s, "none.wiki.example", "/", 50, &[])).get("legacy"),
        Some(&50)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_are_reloaded_from_the_config_file() {
    let legacy = Backend::start("legacy", 0).await;
    let k8s = Backend::start("k8s", 0).await;
    let (l, k) = (legacy.addr.to_string(), k8s.addr.to_string());
    let s = start(split_config(&l, &k, 0.0));
    assert_eq!(
        counts(&many(&s, "en.wiki.example", "/", 20, &[])).get("legacy"),
        Some(&20)
    );

    // A broken config is refused and the old one stays.
    s.edge
        .rewrite_config(&(header(s.port, s.mport, &s.pki.dir) + "[edge]\nroutes = 3\n"));
    std::thread::sleep(Duration::from_millis(500)); // several reload intervals
    assert_eq!(
        counts(&many(&s, "en.wiki.example", "/", 20, &[])).get("legacy"),
        Some(&20)
    );
    let log = std::fs::read_to_string(&s.edge.log).unwrap();
    assert!(log.contains("config not reloaded"), "{log}");

    s.edge
        .rewrite_config(&(header(s.port, s.mport, &s.pki.dir) + &split_config(&l, &k, 100.0)("")));
    wait_for("the new weights", Duration::from_secs(10), || {
        (counts(&many(&s, "en.wiki.example", "/", 20, &[])).get("k8s") == Some(&20)).then_some(())
    });
}

fn healthy_gauge(metrics: &str, address: &str) -> Option<i64> {
    endpoint_healthy(metrics, "address", address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_is_taken_out_and_its_traffic_moves() {
    let a = Backend::start("web-a", 0).await;
    let b = Backend::start("web-b", 0).await;
    let next = Backend::start("next", 0).await;
    let health = r#"health = { path = "/healthz", interval_ms = 100, timeout_ms = 300, fall = 2, rise = 2 }"#;
    let s = start(|_| {
        format!(
            r#"
[edge.backends.web]
addresses = ["{}", "{}"]
{health}
[edge.backends.next]
addresses = ["{}"]
{health}

[[edge.routes]]
hosts = ["*.wiki.example"]
backend = "web"
split = {{ backend = "next", default_percent = 50.0 }}
"#,
            a.addr, b.addr, next.addr
        )
    });
    let load = |n| counts(&many(&s, "en.wiki.example", "/", n, &[]));
    let c = load(200);
    assert!(
        c.contains_key("web-a") && c.contains_key("web-b") && c.contains_key("next"),
        "{c:?}"
    );

    // Kill one endpoint of `web`: once the check notices, its share goes to the other endpoint.
    a.kill();
    let (mport, addr_a) = (s.mport, a.addr.to_string());
    wait_for("web-a to be taken out", Duration::from_secs(10), || {
        (healthy_gauge(&s.edge.metrics(), &addr_a) == Some(0)).then_some(())
    });
    let _ = mport;
    let c = load(200); // `counts` fails on any non-200
    assert!(
        !c.contains_key("web-a") && c.contains_key("web-b") && c.contains_key("next"),
        "{c:?}"
    );

    // Kill the whole `next` side: the split sends everything to `web`.
    next.kill();
    let addr_n = next.addr.to_string();
    wait_for("next to be taken out", Duration::from_secs(10), || {
        (healthy_gauge(&s.edge.metrics(), &addr_n) == Some(0)).then_some(())
    });
    let c = load(200);
    assert_eq!(c.get("web-b"), Some(&200), "{c:?}");

    // A failing health check (the process is up, /healthz says 503) also takes it out.
    b.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    let addr_b = b.addr.to_string();
    wait_for("web-b to be taken out", Duration::from_secs(10), || {
        (healthy_gauge(&s.edge.metrics(), &addr_b) == Some(0)).then_some(())
    });
    // Nothing healthy is left: below the panic threshold every endpoint takes requests
    // again, so the one still up (whose check only says it is sick) serves rather than a 503
    // for everyone; the dead one's connect failure is retried there. (Pinned to the `web`
    // side of the split: `next` is dead.)
    for _ in 0..4 {
        let r = curl(
            &s.edge,
            &s.pki.ca_pem,
            "en.wiki.example",
            "/",
            &["-H", "Cookie: edge_bucket=9999"],
        );
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("x-backend").as_deref(), Some("web-b"));
    }
    assert!(
        s.edge
            .metrics()
            .contains("edge_panic_requests_total{backend=\"web\"}"),
        "{}",
        s.edge.metrics()
    );

    // Brought back after `rise` good checks.
    b.healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let a2 = Backend::start("web-a", a.addr.port()).await;
    wait_for("web-a and web-b back", Duration::from_secs(10), || {
        let m = s.edge.metrics();
        (healthy_gauge(&m, &addr_a) == Some(1) && healthy_gauge(&m, &addr_b) == Some(1))
            .then_some(())
    });
    let c = load(100);
    assert!(c.contains_key("web-a") && c.contains_key("web-b"), "{c:?}");
    drop(a2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failure_before_the_check_notices_is_retried_on_another_endpoint() {
    let a = Backend::start("web-a", 0).await;
    let b = Backend::start("web-b", 0).await;
    // Checks far apart: the kill is not noticed during this test.
    let s = start(|_| {
        format!(
            r#"
[edge.backends.web]
addresses = ["{}", "{}"]
health = {{ path = "/healthz", interval_ms = 60000, timeout_ms = 300 }}
[[edge.routes]]
hosts = ["*"]
backend = "web"
"#,
            a.addr, b.addr
        )
    });
    a.kill();
    wait_for("web-a's socket to close", Duration::from_secs(5), || {
        a.is_closed().then_some(())
    });
    // GETs without a body are retried on the next endpoint when connecting fails.
    let c = counts(&many(
        &s,
        "en.wiki.example",
        "/",
        50,
        &["-H", "Connection: close"],
    ));
    assert_eq!(c.get("web-b"), Some(&50), "{c:?}");
}
