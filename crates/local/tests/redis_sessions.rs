//! Sessions in Redis, end to end on the local farm: a site with `[redis.pools]` naming this
//! machine runs Debian's redis-server (an image the image builder made, with the password of
//! the private value `redis_password`), every cake pod runs the redis-proxy sidecar, and
//! MediaWiki keeps sessions in RedisBagOStuff through it. A real API client (mwclient) logs in
//! and edits; its session is then found through the proxy (from the app container, as
//! MediaWiki reaches it) and in redis-server itself, and not in memcached. An upload takes
//! RedisLockManager's locks through the proxy's lock pool.
//!
//! Its own site name (`wikiredis`), host ports (26xxx), image names and state directory, so it
//! runs beside the other end-to-end tests and a developer's farm without touching them.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{api, append, build_images_as, images_table, load, renamed_site, Farm, Ports};

const SITE: &str = "wikiredis";
const HTTP: u16 = 26080;
const HTTPS: u16 = 26443;
const DEBUG_HTTP: u16 = 26081;
const DEBUG_HTTPS: u16 = 26444;
const EDGE: u16 = 26445;
/// The local memcached; its default gutter takes the next port.
const MEMCACHED: u16 = 26211;
const MARIADB: u16 = 26306;
/// The sessions' redis-server and the lock server's.
const REDIS: u16 = 26379;
const REDIS_LOCKS: u16 = 26380;
const PASSWORD: &str = "example-redis-password";

/// The example farm under its own name, ports and image names, with its sessions in Redis on
/// this machine.
fn test_site(dir: &Path) -> PathBuf {
    let ports = Ports {
        http: HTTP,
        https: HTTPS,
        debug_http: DEBUG_HTTP,
        debug_https: DEBUG_HTTPS,
        edge: EDGE,
        mariadb: MARIADB,
        memcached: Some(MEMCACHED),
    };
    let site = renamed_site(dir, SITE, &ports);
    let local = site.join("environments/local.toml");
    append(
        &local,
        &format!(
            "\n[redis.pools.local]\n\
             servers = [\"host.containers.internal:{REDIS}\"]\n\
             lock_servers = [\"host.containers.internal:{REDIS_LOCKS}\"]\n{}",
            images_table(SITE)
        ),
    );
    append(
        &site.join("private/local.toml"),
        &format!("redis_password = \"{PASSWORD}\"\n"),
    );
    site
}

/// `redis-cli` against a local redis-server, as the host reaches it: on podman's gateway
/// address, where `up` publishes it. The password travels in the environment, never on a
/// command line.
fn redis_cli(port: u16, password: Option<&str>, args: &[&str]) -> String {
    let gateway = wikikube_local::podman::gateway().unwrap();
    let mut command = Command::new("redis-cli");
    command.args(["-h", &gateway, "-p", &port.to_string()]);
    if let Some(password) = password {
        command.env("REDISCLI_AUTH", password);
    }
    let output = command.args(args).output().expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// What memcached answers to `get KEY`, on the gateway where `up` publishes it.
fn memcached_get(key: &str) -> String {
    let gateway = wikikube_local::podman::gateway().unwrap();
    let mut stream = std::net::TcpStream::connect((gateway.as_str(), MEMCACHED)).unwrap();
    write!(stream, "get {key}\r\nquit\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// Logs in as `user` and edits `title` with mwclient; the session cookie's name and value.
fn login_and_edit(user: &str, password: &str, title: &str, text: &str) -> (String, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/redis_session.py");
    let output = Command::new(common::venv_python())
        .arg(script)
        .args([
            &HTTP.to_string(),
            "en.farm.test",
            user,
            password,
            title,
            text,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "mwclient failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let line = stdout
        .lines()
        .find(|line| line.starts_with("enwiki_session "))
        .unwrap_or_else(|| panic!("no enwiki_session cookie in {stdout:?}"));
    let (name, value) = line.split_once(' ').unwrap();
    (name.to_string(), value.to_string())
}

#[test]
fn login_sessions_go_through_the_proxy_into_redis_not_memcached() {
    wikikube_test_support::require("redis-cli", "redis-tools");
    let started = Instant::now();
    let scratch = tempfile::tempdir().unwrap();
    let site_dir = test_site(scratch.path());
    let (site, rendered) = load(&site_dir);
    let servers: Vec<String> = rendered
        .components
        .iter()
        .filter(|component| component.kind == wikikube_render::ComponentKind::Redis)
        .filter_map(|component| component.deployment_object()?.metadata.name.clone())
        .collect();
    assert_eq!(servers, ["wikiredis-redis", "wikiredis-redis-2"]);
    build_images_as(&site, &["base-redis", "redis-proxy"]);
    let built = started.elapsed();
    let (_farm, options) = Farm::new(&site, scratch.path(), Duration::from_secs(300));
    let report = wikikube_local::up(&site, &rendered, &options).expect("the farm starts");
    for server in &servers {
        assert!(report.started.contains(server), "{:?}", report.started);
    }
    let first_up = started.elapsed();

    // The servers require the password: without it, nothing.
    let refused = redis_cli(REDIS, None, &["GET", "x"]);
    assert!(refused.contains("NOAUTH"), "{refused}");
    assert_eq!(redis_cli(REDIS, Some(PASSWORD), &["PING"]), "PONG");

    // A real client logs in and edits: its session is what let the edit through.
    let admin = site.secrets.expose()[wikikube_local::install::ADMIN_PASSWORD].clone();
    let text = "Sessions in Redis, through the proxy.";
    let (cookie, id) = login_and_edit("Admin", &admin, "Redis session test", text);
    assert_eq!(cookie, "enwiki_session");
    let key = format!("enwiki:MWSession:{id}");

    // Through the proxy, as MediaWiki reaches it: from the app container, on loopback, with
    // phpredis and no password (the proxy gives the servers theirs).
    let app = format!("{SITE}-mw-web-main-app");
    let php = format!(
        "$r = new Redis(); $r->connect('127.0.0.1', 6379, 2.0); \
         echo $r->exists('{key}'), ' ', strlen((string)$r->get('{key}')), ' ', $r->ttl('{key}');"
    );
    let through_proxy = wikikube_local::podman::run(&["exec", &app, "php", "-r", &php]).unwrap();
    let fields: Vec<i64> = through_proxy
        .split_whitespace()
        .map(|field| field.parse().unwrap())
        .collect();
    assert_eq!(fields.len(), 3, "{through_proxy}");
    assert_eq!(fields[0], 1, "the proxy does not find {key}");
    assert!(fields[1] > 0, "the session is empty: {through_proxy}");
    assert!(fields[2] > 0, "the session has no expiry: {through_proxy}");
    // The proxy refuses what it cannot route, clearly.
    let php = "$r = new Redis(); $r->connect('127.0.0.1', 6379, 2.0); \
               try { $r->keys('*'); echo 'no error'; } catch (RedisException $e) { echo $e->getMessage(); } \
               echo '|', $r->getLastError();";
    let refused = wikikube_local::podman::run(&["exec", &app, "php", "-r", php]).unwrap();
    assert!(
        refused.contains("'keys' is not supported by the proxy"),
        "{refused}"
    );

    // In redis-server itself, and not in memcached.
    assert_eq!(redis_cli(REDIS, Some(PASSWORD), &["EXISTS", &key]), "1");
    let sessions = redis_cli(
        REDIS,
        Some(PASSWORD),
        &["--scan", "--pattern", "enwiki:MWSession:*"],
    );
    assert!(sessions.lines().any(|line| line == key), "{sessions}");
    let memcached = memcached_get(&key);
    assert!(
        memcached.starts_with("END"),
        "memcached has the session: {memcached}"
    );

    // An upload takes RedisLockManager's locks through the proxy's lock pool, on the lock
    // server.
    let png = scratch.path().join("upload.png");
    let uploaded = api(&[
        &HTTP.to_string(),
        "media.farm.test",
        "Admin",
        &admin,
        "upload",
        "Redis lock test.png",
        png.to_str().unwrap(),
    ]);
    assert_eq!(uploaded, "Success");
    let stats = redis_cli(REDIS_LOCKS, Some(PASSWORD), &["INFO", "commandstats"]);
    assert!(
        stats.contains("cmdstat_eval") || stats.contains("cmdstat_evalsha"),
        "the lock server ran no lock script:\n{stats}"
    );

    // The proxy's metrics count the sessions pool's commands.
    let php = "echo file_get_contents('http://127.0.0.1:9363/metrics');";
    let metrics = wikikube_local::podman::run(&["exec", &app, "php", "-r", php]).unwrap();
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("redis_proxy_commands_total{pool=\"sessions\"}")),
        "{metrics}"
    );
    eprintln!(
        "redis e2e: images built in {:.0} s, first up at {:.0} s, all {:.0} s",
        built.as_secs_f64(),
        first_up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
