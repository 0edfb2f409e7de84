//! What the workspace's integration tests share, and nothing else: a dev-dependency only.
//!
//! Tests start real servers (redis-server, mcrouter, memcached, apache2, php-fpm, a registry) on
//! loopback ports they choose beforehand. Choosing those ports the usual way (bind port 0, read
//! it, release it) races with everything else the tests do on the machine; [`free_port`] does not.
//! Tests also run validators from PyPI, which scripts/install-packages installs into one
//! virtualenv ([`python_tool`]); tests install nothing themselves.
//! It also holds the waits and checks that the tests of every server crate share ([`require`],
//! [`wait_until`], [`wait_listening`]), and Debian's container registry on loopback
//! ([`registry::Registry`]), [`copy_dir`], with which tests start from a copy of the example
//! farm, and [`image_cache_dir`], the image cache they share. It must not grow helpers that only one test file uses.

pub mod registry;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The image cache that every crate's end-to-end tests build into, so that `cargo test
/// --workspace` builds each Debian rootfs once, whichever test comes first: WIKIKUBE_TEST_CACHE
/// (a developer's warm cache, such as ~/.cache/wikikube), else `wikikube-cache` under the
/// target's tmp directory, which the caller passes as `env!("CARGO_TARGET_TMPDIR")` (cargo sets
/// it only when compiling the integration test itself).
pub fn image_cache_dir(target_tmpdir: &str) -> PathBuf {
    std::env::var_os("WIKIKUBE_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(target_tmpdir).join("wikikube-cache"))
}

/// Copies the directory tree `from` to `to` (created if missing): regular files and directories,
/// which is all a site directory holds.
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A port that was free a moment ago, between 10000 and 19999: below the kernel's ephemeral
/// range and below the fixed ports of the local farm's end-to-end tests (21000-29999).
///
/// Binding port 0 would hand out an ephemeral port, and the kernel gives the same range to every
/// outgoing connection (the proxy's connections to its servers, the tests' clients): between
/// choosing the port and the server binding it, a connection of a test running beside this one
/// can take it, and the server exits with "address in use". Ports under 32768 are never given to
/// outgoing connections. The farm tests' fixed ports are left out because scripts/run-tests
/// runs them beside every other test binary: a port taken here for a moment could be the one a
/// farm's pod is about to publish.
///
/// Test binaries that run at the same time must not hand out the same port either (one's
/// server bound it first, the other's then failed to start, or its readiness probe reached the
/// wrong process): each process takes a block of its own (an flock on a file per block), and a counter
/// within the block never hands out the same port twice.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let first = port_block();
    for _ in 0..PORT_BLOCK {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (first + n % PORT_BLOCK) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {first} and {}", first + PORT_BLOCK);
}

/// The ports a test process may hand out: 10 blocks of this many between 10000 and 19999.
const PORT_BLOCK: u32 = 1_000;

/// The first port of this process's block, taken on first use: the first block, counted from
/// one picked by the pid, that no live process holds. A block is held by an exclusive
/// `flock` on its file in the temporary directory, kept for the life of the process: the
/// kernel drops it when the process ends, however it ends, so a run killed midway leaves no
/// claim behind, and two processes can never both hold one block.
fn port_block() -> u32 {
    static BLOCK: std::sync::OnceLock<(u32, std::fs::File)> = std::sync::OnceLock::new();
    BLOCK
        .get_or_init(|| {
            const FIRST: u32 = 10_000;
            const BLOCKS: u32 = 10;
            let dir = std::env::temp_dir().join("wikikube-test-ports");
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            let start = std::process::id() % BLOCKS;
            for i in 0..BLOCKS {
                let block = (start + i) % BLOCKS;
                let path = dir.join(format!("block-{block}"));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
                let lock = rustix::fs::FlockOperation::NonBlockingLockExclusive;
                if rustix::fs::flock(&file, lock).is_ok() {
                    return (FIRST + block * PORT_BLOCK, file);
                }
            }
            panic!(
                "all {BLOCKS} port blocks are held by live test processes (files in {})",
                dir.display()
            );
        })
        .0
}

/// A program of the Python tools' virtualenv (scripts/python-tools.txt), which
/// scripts/install-packages fills: `$WIKIKUBE_PYTHON_TOOLS`, or
/// `${XDG_CACHE_HOME:-~/.cache}/wikikube/python-tools`. Panics, saying what to run, when it
/// is missing.
pub fn python_tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("WIKIKUBE_PYTHON_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                });
            cache.join("wikikube/python-tools")
        });
    let program = dir.join("bin").join(name);
    assert!(
        program.is_file(),
        "{} is missing: run scripts/install-packages (it installs scripts/python-tools.txt)",
        program.display()
    );
    program
}

/// Fails the test, clearly, when a program it needs is not installed.
pub fn require(program: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).chain(["/usr/sbin".into(), "/usr/bin".into()]) {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{program}` is not installed: this test needs the Debian package `{package}` \
         (./scripts/install-packages installs it)"
    );
}

/// Polls `check` every few milliseconds until it holds or `limit` passes.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `child` listens on loopback `port`, failing at once if it exits first.
pub fn wait_listening(port: u16, child: &mut Child, what: &str) {
    wait_until(
        &format!("{what} on port {port}"),
        Duration::from_secs(10),
        || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{what} exited early: {status}");
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_bindable_below_the_farm_tests_ports_and_never_repeat() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        for port in ports {
            assert!((10_000..20_000).contains(&port), "{port}");
            TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }

    /// Another process opening this process's block file cannot lock it (flock conflicts
    /// between open files, in one process or two), and the lock lasts as long as the process.
    #[test]
    fn this_process_holds_its_block_for_its_life() {
        let block = (port_block() - 10_000) / PORT_BLOCK;
        let path = std::env::temp_dir().join(format!("wikikube-test-ports/block-{block}"));
        for _ in 0..2 {
            let other = std::fs::File::open(&path).unwrap();
            let lock = rustix::fs::FlockOperation::NonBlockingLockExclusive;
            assert!(
                rustix::fs::flock(&other, lock).is_err(),
                "{} could be locked again",
                path.display()
            );
            // Hand out a port in between: the block stays held.
            free_port();
        }
    }
}
