//! What the workspace's integration tests share, and nothing else: a dev-dependency only.
//!
//! Tests start real servers (redis-server, mcrouter, memcached, apache2, php-fpm, a registry) on
//! loopback ports they choose beforehand. Choosing those ports the usual way (bind port 0, read
//! it, release it) races with everything else the tests do on the machine; [`free_port`] does not.
//! This crate must not grow helpers that only one test file uses.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// A port that was free a moment ago, below the kernel's ephemeral range.
///
/// Binding port 0 would hand out an ephemeral port, and the kernel gives the same range to every
/// outgoing connection (the proxy's connections to its servers, the tests' clients): between
/// choosing the port and the server binding it, a connection of a test running beside this one
/// can take it, and the server exits with "address in use". Ports under 32768 are never given to
/// outgoing connections; a process-wide counter (started at an offset from the pid, for test
/// binaries run at the same time) never hands out the same port twice.
pub fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = (std::process::id() * 97) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (base + n) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {FIRST} and {}", FIRST + SPAN);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_below_the_ephemeral_range_and_never_repeat() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        for port in ports {
            assert!((20_000..32_000).contains(&port), "{port}");
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }
}
