//! The content-addressed cache directory: blobs by digest, layer records by the digest of their
//! inputs, Debian rootfs tarballs and their unpacked trees by the digest of their package lists.
//!
//! Layout (every entry is written to `tmp/` first and renamed into place, so a crash or a failed
//! build never leaves a half-written entry, and two builds may share one cache):
//! ```text
//! blobs/sha256/<hex>      layer, config and manifest blobs
//! layers/<key>.json       LayerRecord: which blob a layer with these inputs produced
//! layers/<key>.files      the digest of the blob that lists the layer's files and their keys
//!                         (crate::incremental: what a later layer of changes is computed against)
//! bases/<site>/<image>.json  the base the next build of a site's image names
//!                         (crate::incremental::record), written once a build has succeeded
//! rootfs/<key>.tar        mmdebstrap output
//! debs/<hex>.deb          Debian packages by their SHA-256 (and <hex>.control, their fields)
//! trees/<key>/            a rootfs unpacked, for reading MediaWiki code and running php
//! fingerprints            content hashes of site and code files by their metadata
//!                         (crate::fingerprint): an unchanged tree is not read again
//! tmp/                    work in progress, removed when its build ends
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Inputs;
use crate::error::{Error, Result};
use crate::layer::tar::Compression;

/// What building a layer produced: enough to put it into a manifest without reading it again.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    /// Digest of the compressed blob.
    pub digest: String,
    /// Digest of the uncompressed tar (the image config's `diff_id`).
    pub diff_id: String,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// Size of the uncompressed tar in bytes.
    pub tar_size: u64,
    /// Number of tar entries.
    pub entries: u64,
    /// How the blob is compressed (not written for gzip, so older records and the bases that
    /// hold them keep their bytes).
    #[serde(default, skip_serializing_if = "Compression::is_gzip")]
    pub compression: Compression,
}

/// A cache directory.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
    rootfs_dir: PathBuf,
    debs_dir: PathBuf,
    compression: Compression,
}

impl Cache {
    /// The per-user default: `$XDG_CACHE_HOME/wikikube`, else `~/.cache/wikikube`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            return PathBuf::from(dir).join("wikikube");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
        PathBuf::from(home).join(".cache").join("wikikube")
    }

    /// Opens (creating) the cache at `root`.
    pub fn open(root: &Path) -> Result<Cache> {
        for sub in ["blobs/sha256", "layers", "rootfs", "debs", "trees", "tmp"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
            rootfs_dir: root.join("rootfs"),
            debs_dir: root.join("debs"),
            compression: Compression::Gzip,
        })
    }

    /// Writes and looks up layers compressed with `compression` (build.toml's `[layers]`).
    /// One cache holds both kinds: a layer's record is kept per compression, since the same
    /// inputs make another blob.
    pub fn with_compression(self, compression: Compression) -> Cache {
        Cache {
            compression,
            ..self
        }
    }

    /// How this cache's new layers are compressed.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Keeps rootfs tarballs in `dir`, and Debian packages in `dir/debs`, instead (shared
    /// between caches; they are keyed by their locked package lists and hashes like
    /// everything else).
    pub fn with_rootfs_dir(self, dir: &Path) -> Result<Cache> {
        let debs_dir = dir.join("debs");
        fs::create_dir_all(&debs_dir).map_err(Error::io(&debs_dir))?;
        Ok(Cache {
            rootfs_dir: dir.to_path_buf(),
            debs_dir,
            ..self
        })
    }

    /// The cache's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `sha256:<hex>` lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    /// A fresh temporary directory under the cache (same filesystem, so renames are atomic);
    /// removed when dropped, so failed builds clean up after themselves.
    pub fn tempdir(&self) -> Result<tempfile::TempDir> {
        let tmp = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&tmp)
            .map_err(Error::io(&tmp))
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        let digest = crate::digest::sha256(bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            self.write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    /// Moves a finished file into the blob store under `digest`.
    pub fn adopt_blob(&self, file: &Path, digest: &str) -> Result<()> {
        let path = self.blob_path(digest);
        fs::rename(file, &path).map_err(Error::io(&path))
    }

    /// The record of a layer built from `inputs`, if it and its blob are in the cache.
    pub fn layer(&self, inputs: &Inputs) -> Option<LayerRecord> {
        let path = self.layer_record_path(inputs);
        let record: LayerRecord = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
        self.blob_path(&record.digest).exists().then_some(record)
    }

    /// Records that `inputs` built `record`.
    pub fn put_layer(&self, inputs: &Inputs, record: &LayerRecord) -> Result<()> {
        let path = self.layer_record_path(inputs);
        let bytes = serde_json::to_vec_pretty(record).expect("a record serializes");
        self.write_atomic(&path, &bytes)
    }

    /// The blob listing the files of the layer built from `inputs`
    /// ([`crate::incremental::FileKeys`]), if it was recorded and the blob is in the cache.
    pub fn layer_files(&self, inputs: &Inputs) -> Option<String> {
        let path = self.layer_record_path(inputs).with_extension("files");
        let digest = fs::read_to_string(path).ok()?.trim().to_string();
        self.blob_path(&digest).exists().then_some(digest)
    }

    /// Records that the layer built from `inputs` holds the files listed in blob `digest`.
    pub fn put_layer_files(&self, inputs: &Inputs, digest: &str) -> Result<()> {
        let path = self.layer_record_path(inputs).with_extension("files");
        self.write_atomic(&path, digest.as_bytes())
    }

    fn layer_record_path(&self, inputs: &Inputs) -> PathBuf {
        let name = match self.compression {
            // The name records had before zstd, so existing caches stay warm.
            Compression::Gzip => format!("{}.json", inputs.key()),
            Compression::Zstd => format!("{}.zstd.json", inputs.key()),
        };
        self.root.join("layers").join(name)
    }

    /// Where the rootfs tarball with key `key` lives (it may not exist).
    pub fn rootfs_path(&self, key: &str) -> PathBuf {
        self.rootfs_dir.join(format!("{key}.tar"))
    }

    /// Where the .deb with SHA-256 `digest` (`sha256:<hex>`) lives (it may not exist).
    pub fn deb_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.debs_dir.join(format!("{hex}.deb"))
    }

    /// The control fields of the cached .deb `digest`, as `dpkg-deb --field` printed them.
    pub fn deb_control(&self, digest: &str) -> Result<String> {
        let path = self.deb_path(digest).with_extension("control");
        fs::read_to_string(&path).map_err(Error::io(&path))
    }

    /// Moves a downloaded .deb into the cache under its SHA-256, with its control fields
    /// beside it; returns the digest.
    pub fn adopt_deb(&self, file: &Path) -> Result<String> {
        let bytes = fs::read(file).map_err(Error::io(file))?;
        let digest = crate::digest::sha256(&bytes);
        let control = std::process::Command::new("dpkg-deb")
            .arg("--field")
            .arg(file)
            .output()
            .map_err(Error::io("dpkg-deb"))?;
        if !control.status.success() {
            return Err(Error::Config {
                path: file.to_path_buf(),
                message: format!(
                    "not a Debian package: {}",
                    String::from_utf8_lossy(&control.stderr).trim()
                ),
            });
        }
        let path = self.deb_path(&digest);
        // The control file first: a .deb in the cache always has its fields.
        write_atomic(
            &self.debs_dir,
            &path.with_extension("control"),
            &control.stdout,
        )?;
        write_atomic(&self.debs_dir, &path, &bytes)?;
        let _ = fs::remove_file(file);
        Ok(digest)
    }

    /// Where the unpacked tree with key `key` lives (it may not exist).
    pub fn tree_path(&self, key: &str) -> PathBuf {
        self.root.join("trees").join(key)
    }

    /// Writes `bytes` to `path` through a temporary file and a rename.
    pub fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.root.join("tmp"), path, bytes)
    }
}

/// Writes `bytes` to `path` through a temporary file in `tmp_dir` and a rename, so readers see
/// the old content or the new one, never a mix.
pub fn write_atomic(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new_in(tmp_dir).map_err(Error::io(tmp_dir))?;
    file.write_all(bytes).map_err(Error::io(file.path()))?;
    file.persist(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}
