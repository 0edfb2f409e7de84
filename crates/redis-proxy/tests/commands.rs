//! Every supported command through the proxy, against three real redis-servers, checked both
//! in the proxy's answers and in the servers themselves.

mod common;

use common::{Client, Farm, Proxy, RedisServer, Reply};
use serde_json::json;

fn farm() -> Farm {
    Farm::new(3, json!({"hash_tag": "{}"}), json!({}))
}

fn int(reply: Reply) -> i64 {
    match reply {
        Reply::Int(n) => n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[test]
fn strings_counters_and_expiry_on_every_server() {
    let farm = farm();
    let mut c = farm.client();
    for (server, key) in farm.keys_on_each_server("str:").iter().enumerate() {
        let k = key.as_str();
        assert_eq!(c.cmd(&["GET", k]), Reply::nil());
        assert_eq!(c.cmd(&["SET", k, "v1"]), Reply::ok());
        assert_eq!(farm.holder(k), Some(server), "{k} is on its ring server");
        assert_eq!(c.cmd(&["GET", k]), Reply::bulk("v1"));
        // SET's options: NX and XX, EX and PX (RedisBagOStuff's add() is SET NX EX).
        assert_eq!(c.cmd(&["SET", k, "v2", "NX"]), Reply::nil());
        assert_eq!(c.cmd(&["SET", k, "v2", "XX", "EX", "100"]), Reply::ok());
        let ttl = int(c.cmd(&["TTL", k]));
        assert!((1..=100).contains(&ttl), "{ttl}");
        assert_eq!(c.cmd(&["SET", k, "v3", "PX", "50000"]), Reply::ok());
        let pttl = int(c.cmd(&["PTTL", k]));
        assert!((1..=50_000).contains(&pttl), "{pttl}");
        assert_eq!(c.cmd(&["GET", k]), Reply::bulk("v3"));
        let fresh = format!("{k}:nx");
        assert_eq!(c.cmd(&["SET", &fresh, "x", "XX"]), Reply::nil());
        assert_eq!(c.cmd(&["SET", &fresh, "x", "NX", "EX", "60"]), Reply::ok());
        assert_eq!(c.cmd(&["SETNX", &fresh, "y"]), Reply::Int(0));
        assert_eq!(c.cmd(&["SETEX", k, "30", "v4"]), Reply::ok());
        assert!((1..=30).contains(&int(c.cmd(&["TTL", k]))));
        // Expiry, as RedisBagOStuff's changeTTL() uses it.
        assert_eq!(c.cmd(&["EXPIRE", k, "500"]), Reply::Int(1));
        assert!(int(c.cmd(&["TTL", k])) > 30);
        assert_eq!(c.cmd(&["PEXPIRE", k, "400000"]), Reply::Int(1));
        assert!(int(c.cmd(&["PTTL", k])) > 300_000);
        assert_eq!(c.cmd(&["PERSIST", k]), Reply::Int(1));
        assert_eq!(c.cmd(&["TTL", k]), Reply::Int(-1));
        let at = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600)
            .to_string();
        assert_eq!(c.cmd(&["EXPIREAT", k, &at]), Reply::Int(1));
        assert!(int(c.cmd(&["TTL", k])) > 3500);
        assert_eq!(c.cmd(&["TTL", &format!("{k}:missing")]), Reply::Int(-2));
        // Counters.
        let n = format!("{k}:n");
        assert_eq!(c.cmd(&["INCR", &n]), Reply::Int(1));
        assert_eq!(c.cmd(&["INCRBY", &n, "41"]), Reply::Int(42));
        assert_eq!(c.cmd(&["DECRBY", &n, "2"]), Reply::Int(40));
        assert_eq!(c.cmd(&["DECR", &n]), Reply::Int(39));
        assert_eq!(farm.holder(&n), Some(farm.holder(&n).unwrap()));
        // The server's own errors come back as they are.
        assert!(c
            .cmd(&["INCR", k])
            .err()
            .starts_with("ERR value is not an integer"));
        assert!(c.cmd(&["LPUSH", k, "x"]).err().starts_with("WRONGTYPE"));
    }
}

#[test]
fn multi_key_commands_are_cut_by_server_and_put_back_in_order() {
    let farm = farm();
    let mut c = farm.client();
    let keys = farm.keys_on_each_server("multi:");
    let [a, b, d] = [keys[0].as_str(), keys[1].as_str(), keys[2].as_str()];
    assert_eq!(c.cmd(&["MSET", a, "A", b, "B", d, "D"]), Reply::ok());
    for (server, key) in keys.iter().enumerate() {
        assert_eq!(farm.holder(key), Some(server));
    }
    assert_eq!(
        c.cmd(&["MGET", d, "multi:missing", a, b, d]),
        Reply::array(vec![
            Reply::bulk("D"),
            Reply::nil(),
            Reply::bulk("A"),
            Reply::bulk("B"),
            Reply::bulk("D")
        ])
    );
    // EXISTS counts a key as often as it is named, as Redis does.
    assert_eq!(
        c.cmd(&["EXISTS", a, b, d, a, "multi:missing"]),
        Reply::Int(4)
    );
    assert_eq!(c.cmd(&["TOUCH", a, b, "multi:missing"]), Reply::Int(2));
    assert_eq!(c.cmd(&["DEL", a, "multi:missing", b]), Reply::Int(2));
    assert_eq!(c.cmd(&["UNLINK", d]), Reply::Int(1));
    assert_eq!(farm.holder(a), None);
    assert_eq!(farm.holder(d), None);
    assert_eq!(
        c.cmd(&["MGET", a, b]),
        Reply::array(vec![Reply::nil(), Reply::nil()])
    );
    assert_eq!(
        c.cmd(&["MSET", a, "1", b]).err(),
        "ERR wrong number of arguments for 'mset' command"
    );
    assert_eq!(
        c.cmd(&["MGET"]).err(),
        "ERR wrong number of arguments for 'mget' command"
    );
    // Keys sharing a hash tag share a server, so commands that must stay whole can run.
    assert_eq!(
        c.cmd(&["MSETNX", "{u1}:a", "1", "{u1}:b", "2"]),
        Reply::Int(1)
    );
    assert_eq!(c.cmd(&["RENAME", "{u1}:a", "{u1}:c"]), Reply::ok());
    let err = c.cmd(&["RENAME", b, d]);
    assert!(err.err().contains("different servers"), "{err:?}");
}

/// A script shaped like RedisBagOStuff's incrWithInit: increment, or create with a TTL.
const INCR_WITH_INIT: &str = "\
local key = KEYS[1]
local ttl, step, init = unpack(ARGV)
if redis.call('exists', key) == 1 then
  return redis.call('incrby', key, step)
end
if 1 * ttl ~= 0 then
  redis.call('setex', key, ttl, init)
else
  redis.call('set', key, init)
end
return 1 * init";

#[test]
fn scripts_go_where_their_keys_are() {
    let farm = farm();
    let mut c = farm.client();
    let keys = farm.keys_on_each_server("counter:");
    for (server, key) in keys.iter().enumerate() {
        let r = c.cmd(&["EVAL", INCR_WITH_INIT, "1", key, "60", "1", "10"]);
        assert_eq!(r, Reply::Int(10));
        assert_eq!(farm.holder(key), Some(server));
        let r = c.cmd(&["EVAL", INCR_WITH_INIT, "1", key, "60", "5", "10"]);
        assert_eq!(r, Reply::Int(15));
    }
    // SCRIPT LOAD goes to every server, so EVALSHA finds it whichever server the keys are on.
    let Reply::Bulk(Some(sha)) = c.cmd(&["SCRIPT", "LOAD", INCR_WITH_INIT]) else {
        panic!("no SHA1");
    };
    let sha = String::from_utf8(sha).unwrap();
    for server in &farm.servers {
        let direct = server.client().cmd(&["SCRIPT", "EXISTS", &sha]);
        assert_eq!(direct, Reply::array(vec![Reply::Int(1)]));
    }
    for key in &keys {
        assert_eq!(
            c.cmd(&["EVALSHA", &sha, "1", key, "60", "1", "0"]),
            Reply::Int(16)
        );
    }
    assert_eq!(
        c.cmd(&[
            "SCRIPT",
            "EXISTS",
            &sha,
            "0000000000000000000000000000000000000000"
        ]),
        Reply::array(vec![Reply::Int(1), Reply::Int(0)])
    );
    // Keys on different servers: refused, and nothing ran.
    let r = c.cmd(&[
        "EVAL",
        "return redis.call('set', KEYS[1], 'x')",
        "2",
        &keys[0],
        &keys[1],
    ]);
    assert!(r.err().contains("different servers"), "{r:?}");
    // Keys with one hash tag are on one server.
    let r = c.cmd(&[
        "EVAL",
        "redis.call('set', KEYS[1], 'a'); return redis.call('set', KEYS[2], 'b')",
        "2",
        "{lock}:1",
        "{lock}:2",
    ]);
    assert_eq!(r, Reply::ok());
    let r = c.cmd(&["EVAL", "return 1", "0"]);
    assert!(r.err().contains("without keys cannot be routed"), "{r:?}");
    let r = c.cmd(&["EVAL", "return 1", "2", "k"]);
    assert_eq!(
        r.err(),
        "ERR Number of keys can't be greater than number of args"
    );
    let r = c.cmd(&["EVAL", "return 1", "-1"]);
    assert_eq!(r.err(), "ERR Number of keys can't be negative");
    // NOSCRIPT comes back as it is, so clients fall back to EVAL (RedisConnRef::luaEval).
    let r = c.cmd(&[
        "EVALSHA",
        "ffffffffffffffffffffffffffffffffffffffff",
        "1",
        "k",
    ]);
    assert!(r.err().starts_with("NOSCRIPT"), "{r:?}");
    assert_eq!(c.cmd(&["SCRIPT", "FLUSH"]), Reply::ok());
    assert_eq!(
        c.cmd(&["SCRIPT", "EXISTS", &sha]),
        Reply::array(vec![Reply::Int(0)])
    );
    assert!(c.cmd(&["SCRIPT", "KILL"]).err().contains("not supported"));
}

#[test]
fn the_proxy_answers_connection_commands_itself() {
    let farm = farm();
    let mut c = farm.client();
    assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
    assert_eq!(c.cmd(&["ping", "hello"]), Reply::bulk("hello"));
    assert_eq!(c.cmd(&["ECHO", "x y"]), Reply::bulk("x y"));
    assert_eq!(c.cmd(&["SELECT", "0"]), Reply::ok());
    assert_eq!(
        c.cmd(&["SELECT", "1"]).err(),
        "ERR the proxy serves database 0 only"
    );
    // RESP3 is declined the way Redis 5 declines it, so clients fall back to RESP2.
    assert!(c.cmd(&["HELLO", "3"]).err().starts_with("NOPROTO"));
    let Reply::Array(Some(hello)) = c.cmd(&["HELLO", "2", "SETNAME", "mw"]) else {
        panic!("HELLO");
    };
    let pairs: Vec<(Reply, Reply)> = hello
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    assert!(
        pairs.contains(&(Reply::bulk("proto"), Reply::Int(2))),
        "{pairs:?}"
    );
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), Reply::bulk("mw"));
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "wiki"]), Reply::ok());
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), Reply::bulk("wiki"));
    assert_eq!(
        c.cmd(&["CLIENT", "SETINFO", "LIB-NAME", "phpredis"]),
        Reply::ok()
    );
    assert!(matches!(c.cmd(&["CLIENT", "ID"]), Reply::Int(n) if n > 0));
    assert!(c
        .cmd(&["CLIENT", "KILL", "x"])
        .err()
        .contains("not supported"));
    let Reply::Bulk(Some(info)) = c.cmd(&["INFO"]) else {
        panic!("INFO");
    };
    let info = String::from_utf8(info).unwrap();
    assert!(
        info.contains("pool:p\r\n") && info.contains("servers_up:3\r\n"),
        "{info}"
    );
    assert!(c
        .cmd(&["AUTH", "x"])
        .err()
        .contains("without any password configured"));
    assert_eq!(c.cmd(&["QUIT"]), Reply::ok());
    assert!(c.closed());
}

#[test]
fn transactions_run_whole_on_one_server_and_refuse_to_span_servers() {
    let farm = farm();
    let mut c = farm.client();
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(
        c.cmd(&["SET", "{t}:a", "1"]),
        Reply::Status("QUEUED".into())
    );
    assert_eq!(c.cmd(&["INCR", "{t}:a"]), Reply::Status("QUEUED".into()));
    assert_eq!(c.cmd(&["PING"]), Reply::Status("QUEUED".into()));
    assert_eq!(
        c.cmd(&["MGET", "{t}:a", "{t}:b"]),
        Reply::Status("QUEUED".into())
    );
    assert_eq!(
        c.cmd(&["EXEC"]),
        Reply::array(vec![
            Reply::ok(),
            Reply::Int(2),
            Reply::Status("PONG".into()),
            Reply::array(vec![Reply::bulk("2"), Reply::nil()])
        ])
    );
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert!(c.cmd(&["MULTI"]).err().contains("nested"));
    assert_eq!(c.cmd(&["DISCARD"]), Reply::ok());
    assert!(c.cmd(&["EXEC"]).err().contains("EXEC without MULTI"));
    assert!(c.cmd(&["DISCARD"]).err().contains("DISCARD without MULTI"));

    let keys = farm.keys_on_each_server("tx:");
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(
        c.cmd(&["SET", &keys[0], "x"]),
        Reply::Status("QUEUED".into())
    );
    let r = c.cmd(&["SET", &keys[1], "x"]);
    assert!(r.err().contains("MULTI/EXEC across servers"), "{r:?}");
    assert!(c.cmd(&["EXEC"]).err().starts_with("EXECABORT"));
    assert_eq!(
        farm.holder(&keys[0]),
        None,
        "nothing of an aborted transaction ran"
    );
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert!(c.cmd(&["KEYS", "*"]).err().contains("not supported"));
    assert!(c.cmd(&["EXEC"]).err().starts_with("EXECABORT"));
    assert_eq!(c.cmd(&["MULTI"]), Reply::ok());
    assert_eq!(c.cmd(&["EXEC"]), Reply::array(vec![]));
}

#[test]
fn unroutable_commands_get_clear_errors_and_the_connection_goes_on() {
    let farm = farm();
    let mut c = farm.client();
    for (command, words) in [
        (&["KEYS", "*"][..], "whole keyspace"),
        (&["SCAN", "0"], "whole keyspace"),
        (&["FLUSHALL"], "whole keyspace"),
        (&["SUBSCRIBE", "ch"], "connection of its own"),
        (&["MONITOR"], "connection of its own"),
        (&["BLPOP", "list", "0"], "shares between clients"),
        (&["WATCH", "k"], "shares between clients"),
        (&["CONFIG", "GET", "save"], "administers one server"),
        (&["NOSUCHCOMMAND", "x"], "unknown command 'nosuchcommand'"),
        (&["GET"], "wrong number of arguments for 'get'"),
    ] {
        let r = c.cmd(command);
        assert!(r.err().contains(words), "{command:?}: {r:?}");
        assert_eq!(c.cmd(&["PING"]), Reply::Status("PONG".into()));
    }
    assert!(
        farm.proxy
            .metric("redis_proxy_refused_total{pool=\"p\"}")
            .unwrap()
            >= 10.0
    );
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let farm = farm();
    let mut c = farm.client();
    let mut batch = Vec::new();
    let n = 1500;
    for i in 0..n {
        let key = format!("pipe:{i}");
        // Set two commands earlier, in the same write.
        let earlier = format!("pipe:{}", i.max(2) - 2);
        let command: Vec<&[u8]> = match i % 5 {
            0 => vec![b"SET", key.as_bytes(), key.as_bytes()],
            1 => vec![b"GET", b"pipe:0"],
            2 => vec![b"MGET", b"pipe:0", earlier.as_bytes(), b"pipe:nope"],
            3 => vec![b"PING"],
            _ => vec![b"INCR", b"pipe:counter"],
        };
        batch.extend(Client::encode(&command));
    }
    c.send_raw(&batch);
    let mut incr = 0;
    for i in 0..n {
        let r = c.read_reply();
        match i % 5 {
            0 => assert_eq!(r, Reply::ok(), "{i}"),
            1 => assert_eq!(r, Reply::bulk("pipe:0"), "{i}"),
            2 => assert_eq!(
                r,
                Reply::array(vec![
                    Reply::bulk("pipe:0"),
                    Reply::bulk(&format!("pipe:{}", i - 2)),
                    Reply::nil()
                ]),
                "{i}"
            ),
            3 => assert_eq!(r, Reply::Status("PONG".into()), "{i}"),
            _ => {
                incr += 1;
                assert_eq!(r, Reply::Int(incr), "{i}");
            }
        }
    }
    // Every command but PING reached a server (MGET once per server of its keys), and every
    // request's latency was observed.
    let requests = farm.proxy.metric_sum("redis_proxy_requests_total{");
    assert!(requests >= 1200.0, "{requests}");
    let latencies = farm.proxy.metric_sum("redis_proxy_latency_seconds_count{");
    assert_eq!(latencies, requests);
    assert_eq!(
        farm.proxy.metric_sum("redis_proxy_commands_total{"),
        n as f64
    );
}

#[test]
fn inline_commands_work_as_typed() {
    let farm = farm();
    let mut c = farm.client();
    c.send_raw(b"PING\r\nSET inline:k hello\r\nget inline:k\n");
    assert_eq!(c.read_reply(), Reply::Status("PONG".into()));
    assert_eq!(c.read_reply(), Reply::ok());
    assert_eq!(c.read_reply(), Reply::bulk("hello"));
    assert!(farm.holder("inline:k").is_some());
}

/// Lock scripts shaped like RedisLockManager's: several `<type>:<hash>` record keys per call,
/// each standing for a hash at the key `<hash>` that the script works on (a key it does not
/// declare, which only a pool of one server can serve).
const ACQUIRE: &str = "\
local failed = {}
local session, ttl, now = ARGV[1], ARGV[2], ARGV[3]
for _, rk in ipairs(KEYS) do
  local _, _, kind, res = string.find(rk, '(%w+):(%w+)$')
  for _, lk in ipairs(redis.call('hkeys', res)) do
    local _, _, lkind, owner = string.find(lk, '(%w+):(%w+)')
    if owner ~= session and (kind == 'EX' or lkind == 'EX') then
      failed[#failed + 1] = rk
      break
    end
  end
end
if #failed == 0 then
  for _, rk in ipairs(KEYS) do
    local _, _, kind, res = string.find(rk, '(%w+):(%w+)$')
    redis.call('hset', res, kind .. ':' .. session, now + ttl)
    redis.call('expire', res, ttl)
  end
end
return failed";

const RELEASE: &str = "\
local failed = {}
for _, rk in ipairs(KEYS) do
  local _, _, kind, res = string.find(rk, '(%w+):(%w+)$')
  if redis.call('hdel', res, kind .. ':' .. ARGV[1]) == 0 then
    failed[#failed + 1] = rk
  elseif redis.call('hlen', res) == 0 then
    redis.call('del', res)
  end
end
return failed";

#[test]
fn mediawiki_sessions_and_locks_through_two_pools() {
    let sessions: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let locks = RedisServer::start();
    let addrs: Vec<String> = sessions.iter().map(RedisServer::addr).collect();
    let proxy = Proxy::start(json!({"pools": {
        "sessions": {"servers": addrs},
        "locks": {"servers": [locks.addr()]},
    }}));

    // RedisBagOStuff: phpredis's pipeline mode writes commands back to back and reads the
    // replies after; MULTI is never sent.
    let mut c = proxy.client("sessions");
    let keys: Vec<String> = (0..20)
        .map(|i| format!("enwiki:MWSession:{i:032x}"))
        .collect();
    let mut batch = Vec::new();
    for key in &keys {
        batch.extend(Client::encode(&[
            b"SETEX",
            key.as_bytes(),
            b"3600",
            b"a:1:{s:4:\"user\";i:7;}",
        ]));
    }
    for key in &keys {
        batch.extend(Client::encode(&[b"GET", key.as_bytes()]));
    }
    c.send_raw(&batch);
    for _ in &keys {
        assert_eq!(c.read_reply(), Reply::ok());
    }
    for _ in &keys {
        assert_eq!(c.read_reply(), Reply::bulk("a:1:{s:4:\"user\";i:7;}"));
    }
    let mut per_server = [0; 3];
    for key in &keys {
        let holders: Vec<usize> = (0..3).filter(|&s| sessions[s].has(key)).collect();
        assert_eq!(holders.len(), 1, "{key}: {holders:?}");
        per_server[holders[0]] += 1;
    }
    assert!(per_server.iter().all(|&n| n > 0), "{per_server:?}");
    assert_eq!(
        c.cmd(&["SET", &keys[0], "x", "NX", "EX", "60"]),
        Reply::nil()
    );
    assert_eq!(c.cmd(&["DEL", &keys[0]]), Reply::Int(1));

    // RedisLockManager: each lock server is a pool of one server, so scripts whose keys hash
    // anywhere run there.
    let mut a = proxy.client("locks");
    let mut b = proxy.client("locks");
    let records = [
        "RedisLockManager:locks:EX:abc123",
        "RedisLockManager:locks:SH:def456",
    ];
    let now = "1700000000";
    let lock = |c: &mut Client, session: &str, records: &[&str]| {
        let n = records.len().to_string();
        let mut args = vec!["EVAL", ACQUIRE, &n];
        args.extend_from_slice(records);
        args.extend_from_slice(&[session, "3600", now]);
        c.cmd(&args)
    };
    assert_eq!(lock(&mut a, "s1", &records), Reply::array(vec![]));
    assert!(locks.has("abc123") && locks.has("def456"));
    assert_eq!(
        lock(&mut b, "s2", &["RedisLockManager:locks:SH:abc123"]),
        Reply::array(vec![Reply::bulk("RedisLockManager:locks:SH:abc123")])
    );
    assert_eq!(
        lock(&mut b, "s2", &["RedisLockManager:locks:SH:def456"]),
        Reply::array(vec![])
    );
    let mut args = vec!["EVAL", RELEASE, "2"];
    args.extend_from_slice(&records);
    args.push("s1");
    assert_eq!(a.cmd(&args), Reply::array(vec![]));
    assert!(!locks.has("abc123"));
    assert_eq!(
        lock(&mut b, "s2", &["RedisLockManager:locks:EX:abc123"]),
        Reply::array(vec![])
    );
}

#[test]
fn large_values_pass_whole_both_ways() {
    let farm = farm();
    let mut c = farm.client();
    // 4 MiB, under the default 8 MiB request limit; arrives and leaves in many reads.
    let value: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let keys = farm.keys_on_each_server("large:");
    assert_eq!(
        c.cmd_bytes(&[b"SET", keys[0].as_bytes(), &value]),
        Reply::ok()
    );
    assert_eq!(
        c.cmd_bytes(&[b"SET", keys[1].as_bytes(), b"small"]),
        Reply::ok()
    );
    assert_eq!(
        c.cmd_bytes(&[b"GET", keys[0].as_bytes()]),
        Reply::Bulk(Some(value.clone()))
    );
    assert_eq!(
        c.cmd_bytes(&[b"MGET", keys[1].as_bytes(), keys[0].as_bytes()]),
        Reply::array(vec![Reply::bulk("small"), Reply::Bulk(Some(value))])
    );
}
