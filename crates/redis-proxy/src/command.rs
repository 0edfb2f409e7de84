//! The command table: for each command the proxy knows, where its keys are and how it is
//! served.
//!
//! A proxy over several servers can serve a command only if it can tell which server holds
//! the data the command touches. Each command is therefore one of:
//!
//! - [`Kind::Keyed`]: its keys are at fixed positions (`GET key`, `RENAME a b`); it goes to the
//!   server that holds them, and is refused if they are on different servers;
//! - [`Kind::Split`]: a multi-key command that can be cut into one command per server and the
//!   answers put back together (`MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH`);
//! - [`Kind::Script`]: `EVAL` and friends, whose keys follow a count (`EVAL script 2 k1 k2`);
//! - [`Kind::Local`]: answered by the proxy itself (`PING`, `AUTH`, `SELECT 0`, `MULTI`, ...);
//! - [`Kind::Refused`]: commands no proxy over several servers can serve, with the reason.
//!
//! A command that is not in the table is refused as unknown: without knowing where its keys
//! are, the proxy cannot route it.

/// Where the keys of a [`Kind::Keyed`] or [`Kind::Split`] command are, in Redis's own terms
/// (its command table has the same three numbers): the first key's position, the last key's
/// (negative: counted from the end, -1 the last argument), and the step between keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keys {
    /// Position of the first key (the command name is position 0).
    pub first: usize,
    /// Position of the last key; negative counts from the end.
    pub last: isize,
    /// Distance between keys (2 for `MSET key value key value`).
    pub step: usize,
}

impl Keys {
    const ONE: Keys = Keys {
        first: 1,
        last: 1,
        step: 1,
    };
    const TWO: Keys = Keys {
        first: 1,
        last: 2,
        step: 1,
    };
    const ALL: Keys = Keys {
        first: 1,
        last: -1,
        step: 1,
    };
    const PAIRS: Keys = Keys {
        first: 1,
        last: -1,
        step: 2,
    };

    /// The positions of the keys in a command of `argc` arguments, or `None` if the command
    /// has too few arguments to hold them (or, with step 2, an odd count of key/value pairs).
    pub fn positions(&self, argc: usize) -> Option<impl Iterator<Item = usize>> {
        let last = if self.last < 0 {
            argc.checked_sub(self.last.unsigned_abs())?
        } else {
            self.last as usize
        };
        if last >= argc || last < self.first {
            return None;
        }
        if self.step > 1 && (argc - self.first) % self.step != 0 {
            return None;
        }
        Some((self.first..=last).step_by(self.step))
    }
}

/// How the answers of a [`Kind::Split`] command's parts are put back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// `MGET`: every part's array, back in the client's key order.
    Values,
    /// `MSET`: `+OK` when every part said so.
    Ok,
    /// `DEL`, `UNLINK`, `EXISTS`, `TOUCH`: the sum of the parts' counts.
    Sum,
}

/// Commands the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// `PING [message]`.
    Ping,
    /// `ECHO message`.
    Echo,
    /// `QUIT`: `+OK`, then the connection closes.
    Quit,
    /// `AUTH [username] password`: the proxy's client password.
    Auth,
    /// `HELLO [protover [AUTH username password] [SETNAME name]]`: RESP2 only.
    Hello,
    /// `SELECT 0`: the only database a proxy over several servers can offer.
    Select,
    /// `CLIENT SETNAME | GETNAME | SETINFO | ID`.
    Client,
    /// `INFO`: the proxy's own state.
    Info,
    /// `MULTI`: queue commands for one server.
    Multi,
    /// `EXEC`: send the queue as one transaction.
    Exec,
    /// `DISCARD`: drop the queue.
    Discard,
    /// `SCRIPT LOAD | EXISTS | FLUSH`: sent to every server of the pool, so a script loaded
    /// once can run with `EVALSHA` on whichever server its keys are.
    Script,
}

/// How a command is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Keys at fixed positions, all on one server.
    Keyed(Keys),
    /// Keys at fixed positions, cut into one command per server.
    Split(Keys, Merge),
    /// `EVAL`, `EVALSHA`, `EVAL_RO`, `EVALSHA_RO`, `FCALL`, `FCALL_RO`: the key count at
    /// position 2, the keys after it, all on one server.
    Script,
    /// Answered by the proxy.
    Local(Local),
    /// Never served; the reason says why.
    Refused(&'static str),
}

const KEYSPACE: &str = "works on the whole keyspace, which the proxy spreads over several servers";
const SHARED: &str = "blocks or changes its connection, which the proxy shares between clients";
const PUBSUB: &str = "needs a connection of its own to one server (pub/sub, monitoring)";
const ADMIN: &str = "administers one server: connect to that server itself";

/// The kind of the command named `name`, which must be upper case. `None` if the proxy does
/// not know it.
pub fn lookup(name: &[u8]) -> Option<Kind> {
    use Kind::{Keyed, Local as L, Refused, Split};
    Some(match name {
        // Strings, counters and expiry: what RedisBagOStuff uses, and their neighbours.
        b"GET" | b"SET" | b"SETEX" | b"PSETEX" | b"SETNX" | b"GETSET" | b"GETDEL" | b"GETEX"
        | b"GETRANGE" | b"SETRANGE" | b"APPEND" | b"STRLEN" | b"INCR" | b"DECR" | b"INCRBY"
        | b"DECRBY" | b"INCRBYFLOAT" | b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT"
        | b"EXPIRETIME" | b"PEXPIRETIME" | b"TTL" | b"PTTL" | b"PERSIST" | b"TYPE" | b"DUMP"
        | b"RESTORE" | b"SETBIT" | b"GETBIT" | b"BITCOUNT" | b"BITPOS" | b"BITFIELD"
        | b"BITFIELD_RO" | b"SUBSTR" => Keyed(Keys::ONE),
        // Hashes (RedisLockManager keeps its locks in hashes, through its scripts).
        b"HGET" | b"HSET" | b"HSETNX" | b"HMSET" | b"HMGET" | b"HDEL" | b"HEXISTS" | b"HGETALL"
        | b"HKEYS" | b"HVALS" | b"HLEN" | b"HINCRBY" | b"HINCRBYFLOAT" | b"HSTRLEN"
        | b"HRANDFIELD" | b"HSCAN" => Keyed(Keys::ONE),
        // Lists, sets, sorted sets, streams and HyperLogLogs, one key each.
        b"LPUSH" | b"RPUSH" | b"LPUSHX" | b"RPUSHX" | b"LPOP" | b"RPOP" | b"LLEN" | b"LRANGE"
        | b"LINDEX" | b"LSET" | b"LREM" | b"LTRIM" | b"LINSERT" | b"LPOS" | b"SADD" | b"SREM"
        | b"SMEMBERS" | b"SISMEMBER" | b"SMISMEMBER" | b"SCARD" | b"SPOP" | b"SRANDMEMBER"
        | b"SSCAN" | b"ZADD" | b"ZREM" | b"ZCARD" | b"ZSCORE" | b"ZMSCORE" | b"ZINCRBY"
        | b"ZRANK" | b"ZREVRANK" | b"ZRANGE" | b"ZREVRANGE" | b"ZRANGEBYSCORE"
        | b"ZREVRANGEBYSCORE" | b"ZRANGEBYLEX" | b"ZREVRANGEBYLEX" | b"ZCOUNT" | b"ZLEXCOUNT"
        | b"ZREMRANGEBYRANK" | b"ZREMRANGEBYSCORE" | b"ZREMRANGEBYLEX" | b"ZPOPMIN"
        | b"ZPOPMAX" | b"ZRANDMEMBER" | b"ZSCAN" | b"XADD" | b"XLEN" | b"XRANGE" | b"XREVRANGE"
        | b"XDEL" | b"XTRIM" | b"PFADD" => Keyed(Keys::ONE),
        // Several keys that must be on one server: a hash tag puts them there.
        b"RENAME" | b"RENAMENX" | b"SMOVE" | b"RPOPLPUSH" | b"LMOVE" | b"COPY" => Keyed(Keys::TWO),
        b"SDIFF" | b"SINTER" | b"SUNION" | b"SDIFFSTORE" | b"SINTERSTORE" | b"SUNIONSTORE"
        | b"PFCOUNT" | b"PFMERGE" => Keyed(Keys::ALL),
        b"MSETNX" => Keyed(Keys::PAIRS),
        // Multi-key commands cut by server.
        b"MGET" => Split(Keys::ALL, Merge::Values),
        b"MSET" => Split(Keys::PAIRS, Merge::Ok),
        b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" => Split(Keys::ALL, Merge::Sum),
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" => Kind::Script,
        b"PING" => L(Local::Ping),
        b"ECHO" => L(Local::Echo),
        b"QUIT" => L(Local::Quit),
        b"AUTH" => L(Local::Auth),
        b"HELLO" => L(Local::Hello),
        b"SELECT" => L(Local::Select),
        b"CLIENT" => L(Local::Client),
        b"INFO" => L(Local::Info),
        b"MULTI" => L(Local::Multi),
        b"EXEC" => L(Local::Exec),
        b"DISCARD" => L(Local::Discard),
        b"SCRIPT" => L(Local::Script),
        b"KEYS" | b"SCAN" | b"RANDOMKEY" | b"DBSIZE" | b"FLUSHDB" | b"FLUSHALL" => {
            Refused(KEYSPACE)
        }
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BLMPOP" | b"BZPOPMIN" | b"BZPOPMAX"
        | b"BZMPOP" | b"WAIT" | b"XREAD" | b"XREADGROUP" | b"WATCH" | b"UNWATCH" | b"RESET"
        | b"READONLY" | b"READWRITE" => Refused(SHARED),
        b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE"
        | b"SUNSUBSCRIBE" | b"PUBLISH" | b"SPUBLISH" | b"PUBSUB" | b"MONITOR" => Refused(PUBSUB),
        b"CONFIG" | b"SAVE" | b"BGSAVE" | b"BGREWRITEAOF" | b"LASTSAVE" | b"SHUTDOWN"
        | b"DEBUG" | b"SLAVEOF" | b"REPLICAOF" | b"SYNC" | b"PSYNC" | b"CLUSTER" | b"MIGRATE"
        | b"MOVE" | b"SWAPDB" | b"OBJECT" | b"MEMORY" | b"SLOWLOG" | b"LATENCY" | b"ACL"
        | b"FAILOVER" | b"ROLE" | b"MODULE" | b"FUNCTION" | b"COMMAND" | b"TIME" | b"LOLWUT" => {
            Refused(ADMIN)
        }
        _ => return None,
    })
}

/// Writes `name` in upper case into `buf` and returns it; `None` if it is longer than any
/// command name.
pub fn upper<'b>(name: &[u8], buf: &'b mut [u8; 24]) -> Option<&'b [u8]> {
    let out = buf.get_mut(..name.len())?;
    for (o, c) in out.iter_mut().zip(name) {
        *o = c.to_ascii_uppercase();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_positions() {
        let pos = |k: Keys, argc| k.positions(argc).map(|p| p.collect::<Vec<_>>());
        assert_eq!(pos(Keys::ONE, 2), Some(vec![1]));
        assert_eq!(pos(Keys::ONE, 4), Some(vec![1]));
        assert_eq!(pos(Keys::ONE, 1), None);
        assert_eq!(pos(Keys::ALL, 4), Some(vec![1, 2, 3]));
        assert_eq!(pos(Keys::ALL, 1), None);
        assert_eq!(pos(Keys::PAIRS, 5), Some(vec![1, 3]));
        assert_eq!(pos(Keys::PAIRS, 4), None);
        assert_eq!(pos(Keys::PAIRS, 1), None);
        assert_eq!(pos(Keys::TWO, 3), Some(vec![1, 2]));
        assert_eq!(pos(Keys::TWO, 2), None);
    }

    /// The first backticked group of the table row of `docs/redis-proxy.md` that starts with
    /// `row`, split into words.
    fn documented(row: &str) -> Vec<&'static str> {
        let doc = include_str!("../../../docs/redis-proxy.md");
        let line = doc
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no row {row:?} in docs/redis-proxy.md"));
        let group = line.split('`').nth(1).unwrap();
        group.split_whitespace().collect()
    }

    /// The commands docs/redis-proxy.md lists are served the way it says.
    #[test]
    fn the_documented_lists_match_the_table() {
        for name in documented("| one key |") {
            assert_eq!(
                lookup(name.as_bytes()),
                Some(Kind::Keyed(Keys::ONE)),
                "{name}"
            );
        }
        for name in documented("| keys on one server |") {
            assert!(
                matches!(lookup(name.as_bytes()), Some(Kind::Keyed(_))),
                "{name}"
            );
        }
        for name in documented("| cut by server |") {
            assert!(
                matches!(lookup(name.as_bytes()), Some(Kind::Split(..))),
                "{name}"
            );
        }
        for name in documented("| scripts |") {
            assert_eq!(lookup(name.as_bytes()), Some(Kind::Script), "{name}");
        }
        for (row, reason) in [
            ("| `KEYS", KEYSPACE),
            ("| `BLPOP", SHARED),
            ("| `SUBSCRIBE", PUBSUB),
            ("| `CONFIG", ADMIN),
        ] {
            for name in documented(row) {
                assert_eq!(
                    lookup(name.as_bytes()),
                    Some(Kind::Refused(reason)),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn names_are_matched_in_upper_case() {
        let mut buf = [0; 24];
        let name = upper(b"eVaLsHa", &mut buf).unwrap();
        assert_eq!(lookup(name), Some(Kind::Script));
        assert_eq!(upper(&[b'a'; 25], &mut buf), None);
        assert_eq!(lookup(b"NOSUCH"), None);
        assert!(matches!(lookup(b"KEYS"), Some(Kind::Refused(r)) if r.contains("keyspace")));
    }
}
