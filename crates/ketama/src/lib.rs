//! The consistent-hash ring that places a key on one server of a pool, shared by the cake's
//! memcached router and its Redis proxy so that both place keys as twemproxy does.
//!
//! The ring is ketama, as libketama and twemproxy (`distribution: ketama`, `hash: md5`) build it,
//! so any client that implements ketama agrees with us on every key:
//!
//! - each server, named by its `host:port` string exactly as configured, gets 160 points: for
//!   `i` in `0..40`, the MD5 digest of `"<host:port>-<i>"` gives four points, its bytes
//!   `0..4`, `4..8`, `8..12`, `12..16` each read as a little-endian `u32`;
//! - a key hashes to the little-endian `u32` of the first four bytes of its MD5 digest (the
//!   key as its proxy hashes it: the memcached router strips the routing prefix first, the
//!   Redis proxy hashes only a key's hash tag when it has one);
//! - the key belongs to the server of the first point at or after its hash, wrapping past the end
//!   to the first point. Equal points are ordered by the servers' position in the pool.
//!
//! Adding or removing a server moves only the keys whose nearest point changes (about 1/N of
//! them). Written by hand because it is thirty lines, and the ketama crates on crates.io are
//! unmaintained or use a different point layout, which would break agreement with twemproxy.
//!
//! What it does not do: know servers' health (a proxy that skips down servers builds a ring
//! over the live ones), cut hash tags out of keys, or speak to anything.

use md5::{Digest, Md5};

/// Points per server: 40 digests of 4 points each, libketama's and twemproxy's figure.
pub const POINTS_PER_SERVER: usize = 160;

/// A ring over the servers of one pool.
#[derive(Debug, Clone)]
pub struct Ring {
    /// `(point, server index)`, sorted.
    points: Vec<(u32, u32)>,
}

impl Ring {
    /// Builds the ring for servers named by their `host:port` strings.
    pub fn new<S: AsRef<str>>(servers: &[S]) -> Ring {
        let mut points = Vec::with_capacity(servers.len() * POINTS_PER_SERVER);
        for (index, server) in servers.iter().enumerate() {
            for i in 0..POINTS_PER_SERVER / 4 {
                let digest = Md5::digest(format!("{}-{i}", server.as_ref()).as_bytes());
                for chunk in digest.chunks_exact(4) {
                    let point = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    points.push((point, index as u32));
                }
            }
        }
        points.sort_unstable();
        Ring { points }
    }

    /// The index (in the pool's server list) of the server that holds `key`.
    pub fn server_for(&self, key: &[u8]) -> usize {
        if self.points.len() <= POINTS_PER_SERVER {
            // One server (or none, which config validation forbids): no hashing needed.
            return 0;
        }
        let hash = key_hash(key);
        let at = self.points.partition_point(|&(point, _)| point < hash);
        let (_, server) = self.points.get(at).unwrap_or(&self.points[0]);
        *server as usize
    }
}

/// The ring position of a key: the first four bytes of its MD5 digest, little-endian.
pub fn key_hash(key: &[u8]) -> u32 {
    let digest = Md5::digest(key);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{i}:11211")).collect()
    }

    #[test]
    fn spreads_keys_over_every_server() {
        let ring = Ring::new(&servers(4));
        let mut counts = [0usize; 4];
        for k in 0..10_000 {
            counts[ring.server_for(format!("key:{k}").as_bytes())] += 1;
        }
        for c in counts {
            assert!((1500..3500).contains(&c), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn adding_a_server_moves_only_its_share() {
        let before = Ring::new(&servers(4));
        let after = Ring::new(&servers(5));
        let mut moved = 0;
        for k in 0..10_000 {
            let key = format!("key:{k}");
            let (a, b) = (
                before.server_for(key.as_bytes()),
                after.server_for(key.as_bytes()),
            );
            if a != b {
                assert_eq!(b, 4, "a key moved between two old servers");
                moved += 1;
            }
        }
        assert!((1000..3000).contains(&moved), "moved {moved}");
    }

    #[test]
    fn key_hash_is_md5_little_endian() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(key_hash(b""), 0xd98c1dd4);
    }
}
