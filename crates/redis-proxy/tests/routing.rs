//! Where keys go, checked on the servers themselves: spread, stability across restarts of the
//! proxy, hash tags, and agreement with twemproxy's ketama.

mod common;

use std::process::{Command, Stdio};

use common::{require, wait_until, Client, Farm, Proxy, RedisServer, Reply, TempDir};
use ketama::Ring;
use serde_json::json;

#[test]
fn keys_spread_over_the_pool_and_stay_on_their_server() {
    let farm = Farm::new(3, json!({}), json!({}));
    let addrs: Vec<String> = farm.servers.iter().map(RedisServer::addr).collect();
    let ring = Ring::new(&addrs);
    let keys: Vec<String> = (0..300).map(|i| format!("enwiki:session:{i}")).collect();
    let mut c = farm.client();
    for key in &keys {
        assert_eq!(c.cmd(&["SET", key, "first"]), Reply::ok());
    }
    let mut per_server = [0usize; 3];
    for key in &keys {
        let holder = farm.holder(key).expect("stored");
        assert_eq!(
            holder,
            ring.server_for(key.as_bytes()),
            "{key} is off its ring server"
        );
        per_server[holder] += 1;
    }
    for count in per_server {
        assert!(count > 50, "uneven spread {per_server:?}");
    }

    // A new proxy process over the same servers sends every key to the same server again.
    let again = Proxy::start(Farm::config(&farm.servers, json!({}), json!({})));
    let mut c = again.client("p");
    for key in &keys {
        assert_eq!(c.cmd(&["SET", key, "second"]), Reply::ok());
    }
    let mut direct: Vec<Client> = farm.servers.iter().map(RedisServer::client).collect();
    for key in &keys {
        let owner = ring.server_for(key.as_bytes());
        assert_eq!(
            direct[owner].cmd(&["GET", key]),
            Reply::bulk("second"),
            "{key}"
        );
    }
}

#[test]
fn keys_sharing_a_hash_tag_share_a_server() {
    let farm = Farm::new(3, json!({"hash_tag": "{}"}), json!({}));
    let mut c = farm.client();
    let mut servers_used = std::collections::BTreeSet::new();
    for user in 0..30 {
        let keys: Vec<String> = ["a", "b", "c"]
            .iter()
            .map(|s| format!("{{user:{user}}}:{s}"))
            .collect();
        for key in &keys {
            assert_eq!(c.cmd(&["SET", key, "x"]), Reply::ok());
        }
        let holder = farm.holder(&keys[0]).unwrap();
        for key in &keys[1..] {
            assert_eq!(farm.holder(key), Some(holder), "{key}");
        }
        servers_used.insert(holder);
    }
    assert_eq!(servers_used.len(), 3, "tags spread over the servers too");
}

#[test]
fn placement_agrees_with_nutcracker_ketama_md5() {
    let nutcracker = require("nutcracker", "nutcracker");
    let farm = Farm::new(3, json!({"hash_tag": "{}"}), json!({}));
    let port = common::free_port();
    let dir = TempDir::new("nutcracker");
    let servers: String = farm
        .servers
        .iter()
        .map(|s| format!("    - {}:1\n", s.addr()))
        .collect();
    let yaml = format!(
        "pool:\n  listen: 127.0.0.1:{port}\n  hash: md5\n  distribution: ketama\n  \
         hash_tag: \"{{}}\"\n  redis: true\n  servers:\n{servers}"
    );
    std::fs::write(dir.0.join("nutcracker.yml"), yaml).unwrap();
    let mut child = Command::new(nutcracker)
        .arg("-c")
        .arg(dir.0.join("nutcracker.yml"))
        .args(["-s", &common::free_port().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("nutcracker", std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let mut through_nutcracker = Client::connect(port);
    let mut through_us = farm.client();
    let keys: Vec<String> = (0..200)
        .map(|i| match i % 2 {
            0 => format!("commonswiki:MWSession:{i}"),
            _ => format!("{{tag{i}}}:lock"),
        })
        .collect();
    for key in &keys {
        assert_eq!(through_nutcracker.cmd(&["SET", key, "n"]), Reply::ok());
    }
    for key in &keys {
        assert_eq!(through_us.cmd(&["GET", key]), Reply::bulk("n"), "{key}");
    }
    let _ = child.kill();
    let _ = child.wait();
}
