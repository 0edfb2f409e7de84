//! The backup format of a farm's wikis, and the checks a restore makes before it touches a wiki.
//!
//! A backup is a directory: `manifest.json`, then per wiki `WIKI/database.sql` (a consistent dump
//! of its database, `mariadb-dump --single-transaction`) and `WIKI/media/public/...` and
//! `WIKI/media/deleted/...` (its uploads, thumbnails and deleted files). The manifest names the
//! site, the environment, each wiki's MediaWiki version, its latest edit and revision count, and
//! the size and SHA-256 of every file, so a restore refuses a damaged or incomplete backup
//! before it changes anything, and refuses to replace a wiki that has newer edits.
//!
//! This crate only reads and writes the backup directory. Taking the dump and copying the media
//! in and out of a running farm is the environment's work (`wikikube-local` for a local farm);
//! it never talks to a database, podman or a cluster.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";

/// The database dump's file name in a wiki's directory.
pub const DATABASE_DUMP: &str = "database.sql";

/// The media directory in a wiki's directory.
pub const MEDIA: &str = "media";

/// The format this crate writes; a reader refuses others.
pub const FORMAT: u32 = 1;

/// What went wrong with a backup directory.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The manifest is not one this version reads.
    #[error("{path} is not a wikikube backup manifest: {message}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A file's bytes are not those the manifest recorded.
    #[error(
        "{path} is damaged: the manifest records {expected_bytes} bytes with SHA-256 {expected}, \
         the file has {found_bytes} bytes with SHA-256 {found}; nothing was restored"
    )]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The recorded digest.
        expected: String,
        /// The file's digest.
        found: String,
        /// The recorded size.
        expected_bytes: u64,
        /// The file's size.
        found_bytes: u64,
    },
    /// A file the manifest lists is missing.
    #[error("{path} is missing from the backup; nothing was restored")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// The manifest has no such wiki.
    #[error("the backup has no wiki `{wiki}`; it has: {available}")]
    UnknownWiki {
        /// The wiki asked for.
        wiki: String,
        /// The wikis it has.
        available: String,
    },
}

/// The manifest of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The site's name.
    pub site: String,
    /// The environment the backup was taken from.
    pub environment: String,
    /// When the backup was taken, seconds since the epoch.
    pub created_unix: u64,
    /// The wikis, by database name.
    pub wikis: BTreeMap<String, WikiBackup>,
}

/// One wiki's part of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WikiBackup {
    /// The MediaWiki version it ran.
    pub version: String,
    /// Its latest revision's timestamp (MediaWiki's `YYYYMMDDHHMMSS`), or `None` for a wiki
    /// without revisions.
    pub latest_edit: Option<String>,
    /// How many revisions it had.
    pub revisions: u64,
    /// Every file of the wiki's part, relative to the backup directory.
    pub files: Vec<FileEntry>,
}

impl WikiBackup {
    /// Bytes of all its files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|file| file.bytes).sum()
    }
}

/// One file of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the backup directory, `/`-separated.
    pub path: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Size and SHA-256 of a file, read in pieces (dumps and media may be large).
pub fn digest_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(io(path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        bytes += read as u64;
    }
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// The entries of every file under `root/relative`, sorted, with paths relative to `root`. A
/// directory that does not exist has none.
pub fn list_files(root: &Path, relative: &str) -> Result<Vec<FileEntry>, BackupError> {
    let mut entries = Vec::new();
    let mut pending = vec![root.join(relative)];
    while let Some(dir) = pending.pop() {
        if !dir.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let path = entry.map_err(io(&dir))?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.is_file() {
                let (bytes, sha256) = digest_file(&path)?;
                let relative = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                entries.push(FileEntry {
                    path: relative,
                    bytes,
                    sha256,
                });
            }
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Copies the directory tree `from` to `to` (made as needed): regular files and directories,
/// which is all MediaWiki's media directories hold.
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    if !from.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let path = entry.map_err(io(from))?.path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else if path.is_file() {
            std::fs::copy(&path, &target).map_err(io(&path))?;
        }
    }
    Ok(())
}

impl Manifest {
    /// Writes the manifest into `dir`, through a temporary file and a rename, so a backup that
    /// stopped halfway has no manifest and is never taken for a whole one.
    pub fn write(&self, dir: &Path) -> Result<(), BackupError> {
        let path = dir.join(MANIFEST);
        let partial = dir.join(format!("{MANIFEST}.partial"));
        let mut text = serde_json::to_vec_pretty(self).map_err(|error| BackupError::Manifest {
            path: path.clone(),
            message: error.to_string(),
        })?;
        text.push(b'\n');
        let mut file = std::fs::File::create(&partial).map_err(io(&partial))?;
        file.write_all(&text).map_err(io(&partial))?;
        file.sync_all().map_err(io(&partial))?;
        std::fs::rename(&partial, &path).map_err(io(&path))
    }

    /// Reads the manifest of the backup in `dir`.
    pub fn read(dir: &Path) -> Result<Manifest, BackupError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read(&path).map_err(io(&path))?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|error| BackupError::Manifest {
                path: path.clone(),
                message: error.to_string(),
            })?;
        if manifest.format != FORMAT {
            return Err(BackupError::Manifest {
                path,
                message: format!(
                    "format {} (this wikikube reads format {FORMAT})",
                    manifest.format
                ),
            });
        }
        for file in manifest.wikis.values().flat_map(|wiki| &wiki.files) {
            if !is_inside(&file.path) {
                return Err(BackupError::Manifest {
                    path,
                    message: format!("`{}` is not a path inside the backup", file.path),
                });
            }
        }
        Ok(manifest)
    }

    /// The part of `wiki`, or an error naming the wikis the backup has.
    pub fn wiki(&self, wiki: &str) -> Result<&WikiBackup, BackupError> {
        self.wikis
            .get(wiki)
            .ok_or_else(|| BackupError::UnknownWiki {
                wiki: wiki.to_string(),
                available: self.wikis.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Checks that every file of `wiki` in `dir` has the size and SHA-256 the manifest
    /// recorded.
    pub fn verify(&self, dir: &Path, wiki: &str) -> Result<(), BackupError> {
        for file in &self.wiki(wiki)?.files {
            let path = dir.join(&file.path);
            if !path.is_file() {
                return Err(BackupError::Missing { path });
            }
            let (bytes, sha256) = digest_file(&path)?;
            if bytes != file.bytes || sha256 != file.sha256 {
                return Err(BackupError::Damaged {
                    path,
                    expected: file.sha256.clone(),
                    found: sha256,
                    expected_bytes: file.bytes,
                    found_bytes: bytes,
                });
            }
        }
        Ok(())
    }
}

/// A relative path that stays inside the directory it is joined to.
fn is_inside(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|part| matches!(part, Component::Normal(_)))
}
