//! Passwords: clients authenticate to the proxy with its own, the proxy to the servers with
//! theirs; neither is ever written in the config or printed.

mod common;

use common::{Proxy, RedisServer, Reply, TempDir};
use serde_json::json;

const SERVER_SECRET: &str = "server-secret-8f3a";
const CLIENT_SECRET: &str = "client-secret-21cd";

#[test]
fn clients_must_authenticate_and_servers_get_their_own_password() {
    let servers: Vec<RedisServer> = (0..2)
        .map(|_| RedisServer::start_with_password(Some(SERVER_SECRET)))
        .collect();
    let dir = TempDir::new("secrets");
    let client_file = dir.0.join("client-password");
    std::fs::write(&client_file, format!("{CLIENT_SECRET}\n")).unwrap();
    let addrs: Vec<String> = servers.iter().map(RedisServer::addr).collect();
    let proxy = Proxy::start_with_env(
        json!({
            "pools": {"p": {"servers": addrs, "server_password": {"env": "TEST_REDIS_PASSWORD"}}},
            "client_password": {"file": client_file},
        }),
        &[("TEST_REDIS_PASSWORD", SERVER_SECRET)],
    );
    let mut c = proxy.client("p");
    assert_eq!(
        c.cmd(&["GET", "k"]).err(),
        "NOAUTH Authentication required."
    );
    assert!(c.cmd(&["AUTH", "wrong"]).err().starts_with("WRONGPASS"));
    assert!(c
        .cmd(&["AUTH", "admin", CLIENT_SECRET])
        .err()
        .starts_with("WRONGPASS"));
    assert!(c.cmd(&["HELLO", "2"]).err().starts_with("NOAUTH"));
    assert_eq!(
        c.cmd(&["GET", "k"]).err(),
        "NOAUTH Authentication required."
    );
    assert_eq!(c.cmd(&["AUTH", CLIENT_SECRET]), Reply::ok());
    for i in 0..20 {
        let key = format!("auth:{i}");
        assert_eq!(c.cmd(&["SET", &key, "v"]), Reply::ok());
        assert_eq!(c.cmd(&["GET", &key]), Reply::bulk("v"));
    }
    // HELLO's AUTH option authenticates too; "default" is the only user.
    let mut h = proxy.client("p");
    assert!(matches!(
        h.cmd(&["HELLO", "2", "AUTH", "default", CLIENT_SECRET]),
        Reply::Array(Some(_))
    ));
    assert_eq!(h.cmd(&["GET", "auth:0"]), Reply::bulk("v"));

    // Nowhere in the config file, the logs, or the output of --check.
    let config = std::fs::read_to_string(proxy.dir.0.join("redis-proxy.json")).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_redis-proxy"))
        .arg("--check")
        .arg("--config")
        .arg(proxy.dir.0.join("redis-proxy.json"))
        .env("TEST_REDIS_PASSWORD", SERVER_SECRET)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let check = format!("{check:?}");
    for text in [&config, &proxy.stderr(), &check] {
        assert!(
            !text.contains(SERVER_SECRET) && !text.contains(CLIENT_SECRET),
            "{text}"
        );
    }
}

#[test]
fn a_password_the_servers_refuse_is_a_clear_error() {
    let server = RedisServer::start_with_password(Some(SERVER_SECRET));
    let proxy = Proxy::start_with_env(
        json!({"pools": {"p": {"servers": [server.addr()],
                               "server_password": {"env": "TEST_REDIS_PASSWORD"}}}}),
        &[("TEST_REDIS_PASSWORD", "not-the-password")],
    );
    let mut c = proxy.client("p");
    let r = c.cmd(&["GET", "k"]);
    assert!(
        r.err().contains("refused the proxy's AUTH") && r.err().contains("WRONGPASS"),
        "{r:?}"
    );
    // At the third failure the server is marked down, and the log says why.
    let _ = c.cmd(&["GET", "k"]);
    let _ = c.cmd(&["GET", "k"]);
    assert!(c.cmd(&["GET", "k"]).err().contains("marked down"));
    common::wait_until("the log line", std::time::Duration::from_secs(5), || {
        let log = proxy.stderr();
        log.contains("server marked down") && log.contains("WRONGPASS")
    });
    assert!(!proxy.stderr().contains("not-the-password"));
}

#[test]
fn a_missing_password_stops_the_proxy_at_start() {
    let dir = TempDir::new("missing");
    let path = dir.0.join("redis-proxy.json");
    std::fs::write(
        &path,
        r#"{"pools": {"p": {"listen": "127.0.0.1:1", "servers": ["127.0.0.1:2"],
                            "server_password": {"env": "TEST_REDIS_PASSWORD_UNSET"}}}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_redis-proxy"))
        .arg("--config")
        .arg(&path)
        .env_remove("TEST_REDIS_PASSWORD_UNSET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("pools.p.server_password")
            && stderr.contains("TEST_REDIS_PASSWORD_UNSET is not set"),
        "{stderr}"
    );
}
