//! Content hashes of files on the build machine, remembered by their metadata, so that a build
//! of an unchanged tree of ~185,000 files (Wikimedia's size) stats them but reads none.
//!
//! A file's hash is reused when its size, mtime and ctime (both with nanoseconds), inode and
//! device are all what they were when it was hashed. Only cache keys come from here: the bytes
//! of a layer never depend on any of this metadata (see [`crate::layer::tar`]), so a wrong or
//! lost fingerprint can cost a rebuild, never change a digest.
//!
//! Why ctime and the racy window: a program can rewrite a file in place with the same size and
//! put its mtime back (`touch -d`, `cp -p`, `rsync -t`), so mtime alone is not enough; ctime is
//! set by the kernel on every change and cannot be set by a user. But timestamps are coarse
//! (the kernel's clock tick, a few milliseconds): a file hashed and then rewritten within the
//! same tick keeps every field. So, as git does with its "racy" index entries, a hash is only
//! remembered when the file's ctime and mtime are at least [`RACY_WINDOW`] older than the
//! moment it was hashed; a file changed just before it is hashed is hashed again next build.
//!
//! Residual risk, which we accept: a change goes unnoticed only if the system clock steps back
//! by more than the window, or the file system does not keep ctime (some network and FUSE file
//! systems), or a file is replaced by another with the same size, inode, device and both
//! timestamps (which needs one of the first two).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::cache::Cache;
use crate::error::{Error, Result};

/// How old a file's timestamps must be, at the moment it is hashed, for its hash to be
/// remembered. Two seconds is far above any kernel's timestamp granularity (ext4 and xfs:
/// a clock tick; FAT: two seconds).
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// The first line of the store; a store without it is ignored (and rewritten).
const HEADER: &str = "wikikube-fingerprints 1";

/// Where the store lives in the cache directory.
const FILE: &str = "fingerprints";

/// The metadata a hash is remembered by: what a walk keeps of each file it lists
/// ([`crate::layer::Contents::add_seen`]), so that keying the file needs no second stat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    size: u64,
    mtime: i64,
    mtime_ns: i64,
    ctime: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

impl Stat {
    /// The fields of `meta` that tell a changed file.
    pub fn of(meta: &std::fs::Metadata) -> Stat {
        Stat {
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_ns: meta.mtime_nsec(),
            ctime: meta.ctime(),
            ctime_ns: meta.ctime_nsec(),
            ino: meta.ino(),
            dev: meta.dev(),
        }
    }

    /// Whether the file changed less than `window` before `now` (or after it: clock skew).
    fn is_racy(&self, now: SystemTime, window: Duration) -> bool {
        let newest = (self.mtime, self.mtime_ns).max((self.ctime, self.ctime_ns));
        let changed = if newest.0 >= 0 {
            UNIX_EPOCH + Duration::new(newest.0 as u64, newest.1.clamp(0, 999_999_999) as u32)
        } else {
            UNIX_EPOCH
        };
        match now.duration_since(changed) {
            Ok(age) => age < window,
            Err(_) => true,
        }
    }
}

/// A hasher for maps keyed by host paths: eight bytes at a time (a multiply and a rotate per
/// word, as rustc's FxHasher does), several times faster than the default SipHash, or than
/// FNV's byte at a time, on paths of 60 to 120 bytes, which a no-op build of 185,000 files
/// hashes twice each. The keys come from the build's own trees, so resistance to chosen
/// collisions (SipHash's reason to be) buys nothing here.
pub type PathHasher = std::hash::BuildHasherDefault<WordHasher>;

/// See [`PathHasher`].
#[derive(Debug, Default)]
pub struct WordHasher(u64);

impl WordHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl std::hash::Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(word.try_into().expect("eight bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }
}

/// What the store did since it was opened, for tests and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Files whose hash was reused without reading them.
    pub reused: u64,
    /// Files read and hashed.
    pub hashed: u64,
    /// Bytes read to hash them.
    pub bytes_hashed: u64,
}

/// What the store knows of one file. The digest is kept as bytes: a no-op build looks up
/// 185,000 of them, and a string each would be an allocation each.
#[derive(Clone, Copy, Debug)]
struct Known {
    stat: Stat,
    digest: [u8; 32],
    /// Whether this build looked it up (see [`Fingerprints::save`]).
    used: bool,
}

/// What the store knows, by path as bytes (hashing a `Path` walks its components).
type KnownFiles = HashMap<OsString, Known, PathHasher>;

/// A file's content hash, as bytes.
pub type Digest = [u8; 32];

/// `sha256:<hex>` of a digest.
pub fn digest_text(digest: &Digest) -> String {
    format!("sha256:{}", hex::encode(digest))
}

/// The fingerprint store of a cache directory.
#[derive(Debug)]
pub struct Fingerprints {
    file: Option<PathBuf>,
    tmp: PathBuf,
    /// By path as bytes (hashing a `Path` walks its components, a measurable cost here).
    /// Path -> its metadata, hash, and whether this build looked it up (entries of files
    /// that were not, and that no longer exist, are dropped on save: deleted trees do not
    /// stay in the store forever).
    known: KnownFiles,
    /// The store being read from the cache, on a thread of its own from [`Fingerprints::open`]
    /// on, so that a build walks its trees meanwhile (a no-op build of 185,000 files spends a
    /// fifth of its time reading the store); joined on first use.
    loading: Option<std::thread::JoinHandle<KnownFiles>>,
    window: Duration,
    dirty: bool,
    stats: Stats,
}

impl Fingerprints {
    /// Opens the store of `cache`. An unreadable or foreign store is treated as empty: it only
    /// costs reading the files again.
    pub fn open(cache: &Cache) -> Fingerprints {
        let file = cache.root().join(FILE);
        let path = file.clone();
        let loading = std::thread::Builder::new()
            .name("fingerprints".into())
            .spawn(move || read_store(&path))
            .ok();
        let known = match loading {
            Some(_) => HashMap::default(),
            // No thread to be had: read it here.
            None => read_store(&file),
        };
        Fingerprints {
            file: Some(file),
            tmp: cache.root().join("tmp"),
            known,
            loading,
            window: RACY_WINDOW,
            dirty: false,
            stats: Stats::default(),
        }
    }

    /// What the store knows, once it has been read.
    fn known(&mut self) -> &mut KnownFiles {
        if let Some(loading) = self.loading.take() {
            // A thread that failed to read the store leaves it empty: that only costs reading
            // the files again.
            self.known = loading.join().unwrap_or_default();
        }
        &mut self.known
    }

    /// A store that remembers nothing between builds (every file is read once per build).
    pub fn in_memory() -> Fingerprints {
        Fingerprints {
            file: None,
            tmp: std::env::temp_dir(),
            known: HashMap::default(),
            loading: None,
            window: RACY_WINDOW,
            dirty: false,
            stats: Stats::default(),
        }
    }

    /// Uses `window` instead of [`RACY_WINDOW`] (tests that cannot wait two seconds).
    pub fn with_racy_window(mut self, window: Duration) -> Fingerprints {
        self.window = window;
        self
    }

    /// `sha256:<hex>` of the content of the file at `path` (symlinks followed), read only when
    /// its metadata differs from when it was last hashed.
    pub fn hash(&mut self, path: &Path) -> Result<String> {
        Ok(digest_text(&self.digest(path, None)?))
    }

    /// The content hash of the file at `path`, as [`Fingerprints::hash`]; `seen` is its
    /// metadata if the caller has just stat'ed it.
    pub fn digest(&mut self, path: &Path, seen: Option<Stat>) -> Result<Digest> {
        let stat = match seen {
            Some(stat) => stat,
            None => stat(path)?,
        };
        if let Some(digest) = self.lookup(path, &stat) {
            return Ok(digest);
        }
        let read = read(path, stat, self.window)?;
        Ok(self.record(path, stat, read))
    }

    /// The digests of `files` (each a path, and its metadata if the caller has just stat'ed
    /// it) for a store shared between threads: one lock for the lookups of all of them, and
    /// the files whose metadata changed read with the lock released.
    pub fn hash_all_shared(
        store: &Mutex<Fingerprints>,
        files: &[(&Path, Option<Stat>)],
    ) -> Result<Vec<Digest>> {
        let mut stats = Vec::with_capacity(files.len());
        for (path, seen) in files {
            stats.push(match seen {
                Some(stat) => *stat,
                None => stat(path)?,
            });
        }
        let mut digests = Vec::with_capacity(files.len());
        let mut missing = Vec::new();
        let window = {
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            for (index, ((path, _), stat)) in files.iter().zip(&stats).enumerate() {
                match store.lookup(path, stat) {
                    Some(digest) => digests.push(digest),
                    None => {
                        digests.push([0; 32]);
                        missing.push(index);
                    }
                }
            }
            store.window
        };
        for index in missing {
            let path = files[index].0;
            let read = read(path, stats[index], window)?;
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            digests[index] = store.record(path, stats[index], read);
        }
        Ok(digests)
    }

    fn lookup(&mut self, path: &Path, stat: &Stat) -> Option<Digest> {
        let known = self.known().get_mut(path.as_os_str())?;
        if known.stat != *stat {
            return None;
        }
        known.used = true;
        let digest = known.digest;
        self.stats.reused += 1;
        Some(digest)
    }

    fn record(&mut self, path: &Path, stat: Stat, read: Read) -> Digest {
        self.stats.hashed += 1;
        self.stats.bytes_hashed += read.bytes;
        if read.remember {
            let known = Known {
                stat,
                digest: read.digest,
                used: true,
            };
            self.known().insert(path.as_os_str().to_owned(), known);
            self.dirty = true;
        } else if self.known().remove(path.as_os_str()).is_some() {
            self.dirty = true;
        }
        read.digest
    }

    /// What the store did since it was opened (or since [`Fingerprints::reset_stats`]).
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Starts counting again.
    pub fn reset_stats(&mut self) {
        self.stats = Stats::default();
    }

    /// Writes the store back to the cache, if anything changed; atomically, so a crash leaves
    /// the old store or the new one.
    pub fn save(&mut self) -> Result<()> {
        let Some(file) = self.file.clone() else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        // Only on a save that has something to write, so a no-op build pays nothing for it.
        self.known()
            .retain(|path, known| known.used || std::fs::symlink_metadata(Path::new(path)).is_ok());
        let mut out = Vec::with_capacity(self.known.len() * 160);
        writeln!(out, "{HEADER}").expect("writing to memory");
        let mut entries: Vec<_> = self.known.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (path, known) in entries {
            let s = &known.stat;
            let hex = hex::encode(known.digest);
            writeln!(
                out,
                "{} {} {} {} {} {} {} {hex} {}",
                s.size,
                s.mtime,
                s.mtime_ns,
                s.ctime,
                s.ctime_ns,
                s.ino,
                s.dev,
                Path::new(path).display()
            )
            .expect("writing to memory");
        }
        crate::cache::write_atomic(&self.tmp, &file, &out)?;
        self.dirty = false;
        Ok(())
    }
}

/// The store in `file`, or nothing when it is missing, unreadable or foreign (that only costs
/// reading the files again). Read whole and parsed as bytes: one allocation per file (its
/// path), where reading line by line into strings cost three.
fn read_store(file: &Path) -> KnownFiles {
    let mut known = KnownFiles::default();
    let Ok(bytes) = std::fs::read(file) else {
        return known;
    };
    let mut lines = bytes.split(|b| *b == b'\n');
    if lines.next() != Some(HEADER.as_bytes()) {
        return known;
    }
    known.reserve(bytes.len() / 150);
    for line in lines {
        if let Some((path, stat, digest)) = parse(line) {
            let entry = Known {
                stat,
                digest,
                used: false,
            };
            known.insert(path, entry);
        }
    }
    known
}

fn stat(path: &Path) -> Result<Stat> {
    Ok(Stat::of(&std::fs::metadata(path).map_err(Error::io(path))?))
}

/// A file read and hashed.
struct Read {
    digest: Digest,
    bytes: u64,
    /// Whether its hash may be reused by metadata (see the module's doc).
    remember: bool,
}

fn read(path: &Path, stat: Stat, window: Duration) -> Result<Read> {
    // Taken before reading: a change during the read makes the file look recent.
    let now = SystemTime::now();
    let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut file, &mut hasher).map_err(Error::io(path))?;
    let digest: Digest = hasher.finalize().into();
    // The metadata after the read must still be the one before it, or the content read may
    // be a mix; and a recent file may still change within its timestamp's tick.
    let after = std::fs::metadata(path).map(|m| Stat::of(&m)).ok();
    let remember = after == Some(stat)
        && !stat.is_racy(now, window)
        && !path.as_os_str().as_encoded_bytes().contains(&b'\n');
    Ok(Read {
        digest,
        bytes,
        remember,
    })
}

/// One line of the store: seven numbers, the hex digest, then the path (which may hold spaces).
fn parse(line: &[u8]) -> Option<(OsString, Stat, Digest)> {
    use std::os::unix::ffi::OsStringExt;
    let mut parts = line.splitn(9, |b| *b == b' ');
    fn number<T: std::str::FromStr>(text: Option<&[u8]>) -> Option<T> {
        std::str::from_utf8(text?).ok()?.parse().ok()
    }
    let size: u64 = number(parts.next())?;
    let mtime: i64 = number(parts.next())?;
    let mtime_ns: i64 = number(parts.next())?;
    let ctime: i64 = number(parts.next())?;
    let ctime_ns: i64 = number(parts.next())?;
    let ino: u64 = number(parts.next())?;
    let dev: u64 = number(parts.next())?;
    let hex = parts.next()?;
    let path = parts.next()?;
    let mut digest = [0; 32];
    if hex.len() != 64 || path.is_empty() || hex::decode_to_slice(hex, &mut digest).is_err() {
        return None;
    }
    let stat = Stat {
        size,
        mtime,
        mtime_ns,
        ctime,
        ctime_ns,
        ino,
        dev,
    };
    Some((OsString::from_vec(path.to_vec()), stat, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        (dir, cache)
    }

    #[test]
    fn an_unchanged_file_is_not_read_again_even_by_a_new_store() {
        let (dir, cache) = cache();
        let file = dir.path().join("a.php");
        std::fs::write(&file, "<?php echo 1;\n").unwrap();
        let mut first = Fingerprints::open(&cache).with_racy_window(Duration::ZERO);
        let digest = first.hash(&file).unwrap();
        assert_eq!(digest, crate::digest::sha256(b"<?php echo 1;\n"));
        first.save().unwrap();
        let mut second = Fingerprints::open(&cache).with_racy_window(Duration::ZERO);
        assert_eq!(second.hash(&file).unwrap(), digest);
        assert_eq!(
            second.stats(),
            Stats {
                reused: 1,
                hashed: 0,
                bytes_hashed: 0
            }
        );
    }

    #[test]
    fn a_rewrite_with_the_same_size_and_mtime_is_noticed() {
        let (dir, cache) = cache();
        let file = dir.path().join("a.php");
        std::fs::write(&file, "one").unwrap();
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        let mut store = Fingerprints::open(&cache).with_racy_window(Duration::ZERO);
        store.hash(&file).unwrap();
        // Same size, same mtime to the nanosecond, same inode: only ctime tells.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, "two").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), mtime);
        assert_eq!(store.hash(&file).unwrap(), crate::digest::sha256(b"two"));
    }

    #[test]
    fn a_file_hashed_within_its_timestamps_tick_is_hashed_again() {
        let (dir, cache) = cache();
        let file = dir.path().join("a.php");
        let mut store = Fingerprints::open(&cache);
        // With the real window: written just now, so not remembered; an immediate rewrite of
        // the same size (very likely within the same tick, so every field alike) is seen.
        std::fs::write(&file, "one").unwrap();
        store.hash(&file).unwrap();
        assert!(
            store.known.is_empty(),
            "a file changed just now was remembered"
        );
        std::fs::write(&file, "two").unwrap();
        assert_eq!(store.hash(&file).unwrap(), crate::digest::sha256(b"two"));
        assert_eq!(store.stats().hashed, 2);
    }

    #[test]
    fn a_replaced_file_is_noticed_and_a_corrupt_store_is_ignored() {
        let (dir, cache) = cache();
        let file = dir.path().join("a.php");
        std::fs::write(&file, "one").unwrap();
        let mut store = Fingerprints::open(&cache).with_racy_window(Duration::ZERO);
        store.hash(&file).unwrap();
        store.save().unwrap();
        // A new file renamed over the old one: a new inode.
        let other = dir.path().join("b.php");
        std::fs::write(&other, "two").unwrap();
        std::fs::rename(&other, &file).unwrap();
        let mut store = Fingerprints::open(&cache).with_racy_window(Duration::ZERO);
        assert_eq!(store.hash(&file).unwrap(), crate::digest::sha256(b"two"));
        std::fs::write(cache.root().join(FILE), "garbage\n1 2 3\n").unwrap();
        let mut store = Fingerprints::open(&cache);
        assert_eq!(store.hash(&file).unwrap(), crate::digest::sha256(b"two"));
        assert_eq!(store.stats().hashed, 1);
    }

    #[test]
    fn entries_of_deleted_files_are_dropped_when_the_store_is_written() {
        let (dir, cache) = cache();
        let [a, b, c] = ["a.php", "b.php", "c.php"].map(|n| dir.path().join(n));
        for file in [&a, &b, &c] {
            std::fs::write(file, "x").unwrap();
        }
        let mut store = Fingerprints::open(&cache).with_racy_window(Duration::ZERO);
        store.hash(&a).unwrap();
        store.hash(&b).unwrap();
        store.save().unwrap();
        std::fs::remove_file(&b).unwrap();
        let mut store = Fingerprints::open(&cache).with_racy_window(Duration::ZERO);
        store.hash(&c).unwrap();
        store.save().unwrap();
        let mut store = Fingerprints::open(&cache);
        let mut kept: Vec<_> = store.known().keys().cloned().collect();
        kept.sort();
        // `a` was not looked up by the second build but still exists: it stays.
        assert_eq!(kept, [a.into_os_string(), c.into_os_string()]);
    }

    #[test]
    fn paths_with_spaces_survive_the_store() {
        let (dir, cache) = cache();
        let file = dir.path().join("a file with spaces.json");
        std::fs::write(&file, "{}").unwrap();
        let mut store = Fingerprints::open(&cache).with_racy_window(Duration::ZERO);
        store.hash(&file).unwrap();
        store.save().unwrap();
        let mut store = Fingerprints::open(&cache).with_racy_window(Duration::ZERO);
        store.hash(&file).unwrap();
        assert_eq!(store.stats().reused, 1);
    }
}
