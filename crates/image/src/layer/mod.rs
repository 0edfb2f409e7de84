//! A layer's content as a list of entries, and how it becomes a blob.
//!
//! Entries are collected first and written in one go by [`tar::write`], which sorts them and
//! normalises every header, so what ends up in the blob depends only on the entries.

pub mod tar;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::fingerprint::Stat;

/// Where a regular file's bytes come from.
#[derive(Clone, Debug)]
pub enum Data {
    /// Held in memory (generated files).
    Bytes(Vec<u8>),
    /// A file on the build machine (unpacked trees, site files).
    Path(PathBuf),
    /// A slice of a tar file (a rootfs tarball), read without unpacking it.
    TarSlice {
        /// The tar file.
        file: PathBuf,
        /// Offset of the data.
        offset: u64,
        /// Length of the data.
        len: u64,
    },
}

/// What an entry is.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File(Data),
    /// A symbolic link to the target.
    Symlink(String),
    /// A hard link to an earlier entry of the same layer.
    Hardlink(String),
    /// An OCI whiteout: the path is deleted from the layers below.
    Whiteout,
}

/// One entry of a layer.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Path inside the image, relative (`srv/mediawiki/php-1.39/index.php`).
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
}

impl Entry {
    /// A root-owned directory, mode 0755.
    pub fn dir(path: impl Into<String>) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
        }
    }

    /// A root-owned file, mode 0644 (0755 when `executable`).
    pub fn file(path: impl Into<String>, data: Data, executable: bool) -> Entry {
        let mode = if executable { 0o755 } else { 0o644 };
        Entry {
            path: path.into(),
            kind: Kind::File(data),
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// The entries of one layer, by path; adding a path twice keeps the last.
#[derive(Clone, Debug, Default)]
pub struct Contents {
    /// Each entry, with the metadata of its host file as the walk that found it saw it (if
    /// one did): keying a layer then needs no second stat per file. Never part of a layer.
    /// Kept beside the entry rather than in a map by host path, which cost an allocation and
    /// a hash per file (185,000 of them at Wikimedia's size).
    entries: BTreeMap<String, (Entry, Option<Stat>)>,
}

impl Contents {
    /// Adds an entry, and its missing parent directories (root-owned, 0755), so that every
    /// layer unpacks on its own.
    pub fn add(&mut self, entry: Entry) {
        self.insert(entry, None);
    }

    fn insert(&mut self, mut entry: Entry, seen: Option<Stat>) {
        if entry.path.starts_with('/') || entry.path.ends_with('/') {
            entry.path = entry.path.trim_matches('/').to_string();
        }
        let mut parent = entry.path.as_str();
        while let Some((dir, _)) = parent.rsplit_once('/') {
            // Every entry came in with its parents: once one is there, so are the rest (this
            // keeps adding a tree of 185,000 files linear in its size).
            if self.entries.contains_key(dir) {
                break;
            }
            self.entries
                .insert(dir.to_string(), (Entry::dir(dir), None));
            parent = dir;
        }
        self.entries.insert(entry.path.clone(), (entry, seen));
    }

    /// Adds a file found on the build machine, with the metadata its walk saw.
    pub fn add_seen(&mut self, entry: Entry, meta: &std::fs::Metadata) {
        self.insert(entry, Some(Stat::of(meta)));
    }

    /// Adds the directories leading to `prefix` (`srv/mediawiki`).
    pub fn add_dirs(&mut self, prefix: &str) {
        if !prefix.is_empty() && !self.entries.contains_key(prefix) {
            self.add(Entry::dir(prefix));
        }
    }

    /// The entries in path order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().map(|(entry, _)| entry)
    }

    /// The entries in path order, each with the metadata its walk saw of its host file (for
    /// files added by [`Contents::add_seen`]).
    pub fn entries_seen(&self) -> impl Iterator<Item = (&Entry, Option<&Stat>)> {
        self.entries
            .values()
            .map(|(entry, seen)| (entry, seen.as_ref()))
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path).map(|(entry, _)| entry)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
