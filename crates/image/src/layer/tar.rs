//! Writing a layer blob: a sorted tar with normalised headers, gzip-compressed.
//!
//! Why gzip and not zstd: every runtime and registry we target (podman 4.3, containerd,
//! Debian's docker-registry, Kubernetes nodes of any age) reads `tar+gzip`, while zstd layers
//! still break older nodes. flate2 with the zlib-rs backend is deterministic for a given
//! version (pinned in Cargo.lock) and level, and we write the gzip header ourselves through
//! `GzBuilder` with mtime 0, no file name and OS byte 255, so nothing about the build machine
//! or the time leaks into the blob.
//!
//! Every header gets: the entry's own mode/uid/gid (rootfs files keep Debian's owners, our own
//! files are root:root 0644/0755), an mtime of SOURCE_DATE_EPOCH, no user or group names, and
//! GNU long-name records for long paths; entries are written in byte order of their path, which
//! puts every directory before its content.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use flate2::{Compression, GzBuilder};

use super::{Contents, Data, Kind};
use crate::cache::{Cache, LayerRecord};
use crate::digest::HashingWriter;
use crate::error::{Error, Result};

/// The gzip level. Level 1 compresses a Debian rootfs to within a few percent of level 6 at
/// about three times the speed (see docs/benchmarks.md); layers are compressed once and cached.
pub const GZIP_LEVEL: u32 = 1;

/// Counts of what writing a layer did, for the benchmark figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteStats {
    /// Uncompressed bytes hashed and compressed.
    pub tar_bytes: u64,
    /// Time spent, in seconds.
    pub seconds: f64,
}

/// Writes `contents` as a gzip'd tar blob into the cache, with every mtime set to `mtime`.
pub fn write(cache: &Cache, contents: &Contents, mtime: u64) -> Result<LayerRecord> {
    let tmp = cache.tempdir()?;
    let tmp_file = tmp.path().join("layer.tar.gz");
    let file = File::create(&tmp_file).map_err(Error::io(&tmp_file))?;
    let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(compressed, Compression::new(GZIP_LEVEL));
    let uncompressed = HashingWriter::new(gz);
    let mut builder = ::tar::Builder::new(uncompressed);
    let mut entries = 0u64;
    let mut open: Option<(std::path::PathBuf, File)> = None;
    for entry in contents.entries() {
        entries += 1;
        let mut header = ::tar::Header::new_gnu();
        header.set_mode(entry.mode & 0o7777);
        header.set_uid(entry.uid);
        header.set_gid(entry.gid);
        header.set_mtime(mtime);
        let path = entry.path.as_str();
        let result = match &entry.kind {
            Kind::Dir => {
                header.set_entry_type(::tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), io::empty())
            }
            Kind::Symlink(target) | Kind::Hardlink(target) => {
                let kind = if matches!(entry.kind, Kind::Symlink(_)) {
                    ::tar::EntryType::Symlink
                } else {
                    ::tar::EntryType::Link
                };
                header.set_entry_type(kind);
                header.set_size(0);
                builder.append_link(&mut header, path, target)
            }
            Kind::Whiteout => {
                let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
                let whiteout = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                header.set_entry_type(::tar::EntryType::Regular);
                header.set_size(0);
                builder.append_data(&mut header, whiteout, io::empty())
            }
            Kind::File(data) => {
                header.set_entry_type(::tar::EntryType::Regular);
                match data {
                    Data::Bytes(bytes) => {
                        header.set_size(bytes.len() as u64);
                        builder.append_data(&mut header, path, bytes.as_slice())
                    }
                    Data::Path(source) => {
                        let file = File::open(source).map_err(Error::io(source))?;
                        let len = file.metadata().map_err(Error::io(source))?.len();
                        header.set_size(len);
                        builder.append_data(&mut header, path, file.take(len))
                    }
                    Data::TarSlice { file, offset, len } => {
                        if open.as_ref().is_none_or(|(p, _)| p != file) {
                            let f = File::open(file).map_err(Error::io(file))?;
                            open = Some((file.clone(), f));
                        }
                        let (_, f) = open.as_mut().expect("just opened");
                        f.seek(SeekFrom::Start(*offset)).map_err(Error::io(file))?;
                        header.set_size(*len);
                        builder.append_data(&mut header, path, f.take(*len))
                    }
                }
            }
        };
        result.map_err(Error::io(&tmp_file))?;
    }
    let uncompressed = builder.into_inner().map_err(Error::io(&tmp_file))?;
    let (gz, diff_id, tar_size) = uncompressed.finish();
    let compressed = gz.finish().map_err(Error::io(&tmp_file))?;
    let (mut file, digest, size) = compressed.finish();
    file.flush().map_err(Error::io(&tmp_file))?;
    drop(file);
    cache.adopt_blob(&tmp_file, &digest)?;
    Ok(LayerRecord {
        digest,
        diff_id,
        size,
        tar_size,
        entries,
    })
}

/// Reads a gzip'd layer blob and calls `f` for each entry (used to unpack base layers).
pub fn unpack(blob: &Path, dest: &Path) -> Result<()> {
    let file = File::open(blob).map_err(Error::io(blob))?;
    let mut archive = ::tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(file)));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    archive.unpack(dest).map_err(Error::io(dest))
}
