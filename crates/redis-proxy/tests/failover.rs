//! Servers that die or stall while clients keep asking: bounded waits, clear errors, servers
//! marked down and probed back, and (in an ejecting pool) keys moved to the servers left.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_until, Farm, Reply};
use serde_json::json;

/// Failover settings that keep the tests short: down after 2 failures, probed every 100 ms,
/// requests bounded at 300 ms.
fn quick() -> serde_json::Value {
    json!({
        "failover": {"failures_until_down": 2, "probe_interval_ms": 100},
        "timeouts": {"connect_ms": 200, "request_ms": 300},
    })
}

fn up_gauge(farm: &Farm, server: usize) -> Option<f64> {
    farm.proxy.metric(&format!(
        "redis_proxy_server_up{{pool=\"p\",server=\"{}\"}}",
        farm.servers[server].addr()
    ))
}

#[test]
fn a_server_killed_mid_run_fails_only_its_keys_briefly_and_comes_back() {
    let mut farm = Farm::new(3, json!({}), quick());
    let keys = farm.keys_on_each_server("live:");
    let stop = Arc::new(AtomicBool::new(false));
    // Per server: (successes, failures, the slowest answer).
    let outcomes = Arc::new(Mutex::new(vec![(0u32, 0u32, Duration::ZERO); 3]));
    let worker = {
        let (stop, outcomes, keys) = (stop.clone(), outcomes.clone(), keys.clone());
        let mut c = farm.client();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for (server, key) in keys.iter().enumerate() {
                    let start = Instant::now();
                    let r = c.cmd(&["SET", key, "v"]);
                    let mut o = outcomes.lock().unwrap();
                    o[server].2 = o[server].2.max(start.elapsed());
                    match r {
                        Reply::Status(_) => o[server].0 += 1,
                        Reply::Error(e) => {
                            assert!(e.contains("of pool p"), "{e}");
                            o[server].1 += 1
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        })
    };
    wait_until("traffic", Duration::from_secs(5), || {
        outcomes.lock().unwrap().iter().all(|o| o.0 > 20)
    });
    farm.servers[1].kill();
    wait_until("server 1 marked down", Duration::from_secs(5), || {
        up_gauge(&farm, 1) == Some(0.0)
    });
    // Down: its keys fail at once, naming the server, without waiting on a timeout.
    let mut c = farm.client();
    let start = Instant::now();
    let r = c.cmd(&["GET", &keys[1]]);
    assert!(r.err().contains("is marked down"), "{r:?}");
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    let (status, health) = farm.proxy.admin("/healthz");
    assert_eq!(status, 200);
    assert!(health.contains("pool p: 2/3 servers up"), "{health}");

    farm.servers[1].restart();
    wait_until("server 1 probed back", Duration::from_secs(5), || {
        up_gauge(&farm, 1) == Some(1.0)
    });
    let failures_then = outcomes.lock().unwrap()[1].1;
    wait_until("server 1 serving again", Duration::from_secs(5), || {
        outcomes.lock().unwrap()[1].0 > 0 && c.cmd(&["GET", &keys[1]]) == Reply::bulk("v")
    });
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();
    let o = outcomes.lock().unwrap();
    assert_eq!(o[0].1, 0, "server 0's keys never failed: {o:?}");
    assert_eq!(o[2].1, 0, "server 2's keys never failed: {o:?}");
    assert!(o[1].1 > 0 && o[1].1 >= failures_then, "{o:?}");
    for (server, (_, _, slowest)) in o.iter().enumerate() {
        // The request timeout (300 ms) bounds every answer, with room for a busy machine.
        assert!(
            *slowest < Duration::from_secs(2),
            "server {server}: {slowest:?}"
        );
    }
}

#[test]
fn a_stalled_server_times_out_with_a_clear_error() {
    let farm = Farm::new(2, json!({}), quick());
    let keys = farm.keys_on_each_server("stall:");
    let mut c = farm.client();
    assert_eq!(c.cmd(&["SET", &keys[0], "v"]), Reply::ok());
    farm.servers[0].pause();
    let start = Instant::now();
    let r = c.cmd(&["GET", &keys[0]]);
    let took = start.elapsed();
    assert!(r.err().contains("no reply within 300 ms"), "{r:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The other server is not held up.
    let start = Instant::now();
    assert_eq!(c.cmd(&["SET", &keys[1], "v"]), Reply::ok());
    assert!(start.elapsed() < Duration::from_millis(250));
    farm.servers[0].resume();
    wait_until(
        "the stalled server answering",
        Duration::from_secs(5),
        || c.cmd(&["GET", &keys[0]]) == Reply::bulk("v"),
    );
}

#[test]
fn an_ejecting_pool_moves_a_down_servers_keys_to_the_next_server() {
    let mut farm = Farm::new(3, json!({"eject_down_servers": true}), quick());
    let keys = farm.keys_on_each_server("eject:");
    let mut c = farm.client();
    farm.servers[2].kill();
    wait_until("server 2 marked down", Duration::from_secs(5), || {
        let _ = c.cmd(&["GET", &keys[2]]);
        up_gauge(&farm, 2) == Some(0.0)
    });
    assert_eq!(c.cmd(&["SET", &keys[2], "moved"]), Reply::ok());
    assert_eq!(c.cmd(&["GET", &keys[2]]), Reply::bulk("moved"));
    let holder = farm.holder_among(&keys[2], &[0, 1]);
    assert!(holder.is_some(), "the key went to a server that is up");
    farm.servers[2].restart();
    wait_until(
        "server 2 back with its keys",
        Duration::from_secs(5),
        || c.cmd(&["GET", &keys[2]]) == Reply::nil(),
    );
    assert_eq!(c.cmd(&["SET", &keys[2], "home"]), Reply::ok());
    assert!(farm.servers[2].has(&keys[2]));
}
