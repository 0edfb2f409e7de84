//! Writing a layer blob: a sorted tar with normalised headers, compressed with gzip or zstd.
//!
//! Why gzip by default: every runtime and registry we target (podman 4.3, containerd,
//! Debian's docker-registry, Kubernetes nodes of any age) reads `tar+gzip`, while zstd layers
//! need containerd 1.5 or podman 3 on every node. A site whose nodes all have them sets
//! `[layers] compression = "zstd"` in build.toml: its blobs are about a third smaller than
//! ours in gzip and unpack four to six times as fast (docs/benchmarks.md, "Layer
//! compression"). Both are deterministic for a given library version (pinned in Cargo.lock),
//! level and parameters: flate2 with the zlib-rs backend, with the gzip header written through
//! `GzBuilder` with mtime 0, no file name and OS byte 255; libzstd on one thread, without a
//! checksum or content size in the frame. Nothing about the build machine or the time leaks
//! into the blob.
//!
//! Every header gets: the entry's own mode/uid/gid (rootfs files keep Debian's owners, our own
//! files are root:root 0644/0755), an mtime of SOURCE_DATE_EPOCH, no user or group names, and
//! GNU long-name records for long paths; entries are written in byte order of their path, which
//! puts every directory before its content.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use flate2::GzBuilder;
use serde::{Deserialize, Serialize};

use super::{Contents, Data, Kind};
use crate::cache::{Cache, LayerRecord};
use crate::digest::HashingWriter;
use crate::error::{Error, Result};

/// The gzip level. Level 1 compresses a Debian rootfs to within a few percent of level 6 at
/// about three times the speed (see docs/benchmarks.md); layers are compressed once and cached.
pub const GZIP_LEVEL: u32 = 1;

/// The zstd level: zstd's own default (and podman's and containerd's). On the benchmark's tree
/// its layers are a third smaller than our gzip level 1's, written about 1.45 times as slowly
/// (docs/benchmarks.md, "Layer compression"): a cold build pays once, every push and pull gains.
pub const ZSTD_LEVEL: i32 = 3;

/// How layer blobs are compressed: build.toml's `[layers] compression`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `application/vnd.oci.image.layer.v1.tar+gzip`: read everywhere.
    #[default]
    Gzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd`: containerd 1.5+, podman 3+.
    Zstd,
}

impl Compression {
    /// Whether this is the default, gzip (records of gzip layers do not name it, so the
    /// records and bases written before zstd existed keep their bytes and digests).
    pub fn is_gzip(&self) -> bool {
        *self == Compression::Gzip
    }
}

/// The compressing end of a layer's writer.
enum Compressor<W: Write> {
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Compressor<W> {
    fn new(compression: Compression, out: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => Compressor::Gzip(
                GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(out, flate2::Compression::new(GZIP_LEVEL)),
            ),
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
                // Spelled out, though they are libzstd's defaults, because the blob's bytes
                // (its digest) depend on them.
                encoder.include_checksum(false)?;
                encoder.include_contentsize(false)?;
                Compressor::Zstd(encoder)
            }
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(gz) => gz.finish(),
            Compressor::Zstd(zstd) => zstd.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(gz) => gz.write(buf),
            Compressor::Zstd(zstd) => zstd.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(gz) => gz.flush(),
            Compressor::Zstd(zstd) => zstd.flush(),
        }
    }
}

/// Counts of what writing a layer did, for the benchmark figures.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteStats {
    /// Uncompressed bytes hashed and compressed.
    pub tar_bytes: u64,
    /// Time spent, in seconds.
    pub seconds: f64,
}

/// Writes `contents` as a tar blob into the cache, compressed as the cache says
/// ([`Cache::compression`]), with every mtime set to `mtime`.
pub fn write(cache: &Cache, contents: &Contents, mtime: u64) -> Result<LayerRecord> {
    let compression = cache.compression();
    let tmp = cache.tempdir()?;
    let tmp_file = tmp.path().join("layer.tar");
    let file = File::create(&tmp_file).map_err(Error::io(&tmp_file))?;
    let compressed = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let compressor = Compressor::new(compression, compressed).map_err(Error::io(&tmp_file))?;
    let uncompressed = HashingWriter::new(compressor);
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
    let (compressor, diff_id, tar_size) = uncompressed.finish();
    let compressed = compressor.finish().map_err(Error::io(&tmp_file))?;
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
        compression,
    })
}

/// Unpacks a layer blob, gzip or zstd (told apart by their magic numbers), into `dest` (used
/// to unpack base layers).
pub fn unpack(blob: &Path, dest: &Path) -> Result<()> {
    let mut file = io::BufReader::new(File::open(blob).map_err(Error::io(blob))?);
    let magic = io::BufRead::fill_buf(&mut file).map_err(Error::io(blob))?;
    let reader: Box<dyn Read> = if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(file).map_err(Error::io(blob))?)
    } else {
        Box::new(flate2::read::GzDecoder::new(file))
    };
    let mut archive = ::tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
    archive.unpack(dest).map_err(Error::io(dest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Entry;

    fn contents(dir: &Path) -> Contents {
        let file = dir.join("index.php");
        std::fs::write(&file, "<?php\n// MediaWiki\n".repeat(5000)).unwrap();
        let mut contents = Contents::default();
        contents.add(Entry::dir("srv/mediawiki"));
        contents.add(Entry::file(
            "srv/mediawiki/index.php",
            Data::Path(file),
            false,
        ));
        contents.add(Entry::file(
            "srv/mediawiki/LocalSettings.php",
            Data::Bytes(b"<?php $wgSitename = 'Farm';\n".to_vec()),
            false,
        ));
        contents
    }

    fn cache(dir: &Path, name: &str, compression: Compression) -> Cache {
        Cache::open(&dir.join(name))
            .unwrap()
            .with_compression(compression)
    }

    #[test]
    fn zstd_blobs_are_reproducible_hold_the_gzip_tar_and_unpack() {
        let dir = tempfile::tempdir().unwrap();
        let contents = contents(dir.path());
        let gzip = write(&cache(dir.path(), "gzip", Compression::Gzip), &contents, 1).unwrap();
        let one = write(&cache(dir.path(), "one", Compression::Zstd), &contents, 1).unwrap();
        let two = write(&cache(dir.path(), "two", Compression::Zstd), &contents, 1).unwrap();
        assert_eq!(one, two, "two writes of the same entries differ");
        assert_eq!(one.compression, Compression::Zstd);
        assert_eq!(gzip.compression, Compression::Gzip);
        assert_eq!(one.diff_id, gzip.diff_id, "another tar inside");
        assert_ne!(one.digest, gzip.digest);
        let blob = cache(dir.path(), "one", Compression::Zstd).blob_path(&one.digest);
        assert_eq!(
            &std::fs::read(&blob).unwrap()[..4],
            [0x28, 0xb5, 0x2f, 0xfd]
        );
        for (name, record) in [("one", &one), ("gzip", &gzip)] {
            let blob = cache(dir.path(), name, Compression::Gzip).blob_path(&record.digest);
            let out = dir.path().join(format!("unpacked-{name}"));
            unpack(&blob, &out).unwrap();
            let index = std::fs::read_to_string(out.join("srv/mediawiki/index.php")).unwrap();
            assert_eq!(index, "<?php\n// MediaWiki\n".repeat(5000), "{name}");
        }
    }

    #[test]
    fn a_gzip_record_is_written_as_before_zstd_existed() {
        let dir = tempfile::tempdir().unwrap();
        let record = write(
            &cache(dir.path(), "gzip", Compression::Gzip),
            &contents(dir.path()),
            1,
        )
        .unwrap();
        // Bases hold records; their digests must not move for caches written before.
        let json = serde_json::to_string(&record).unwrap();
        assert!(!json.contains("compression"), "{json}");
        let read: LayerRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(read.compression, Compression::Gzip);
        let zstd = LayerRecord {
            compression: Compression::Zstd,
            ..record
        };
        let json = serde_json::to_string(&zstd).unwrap();
        assert!(json.contains(r#""compression":"zstd""#), "{json}");
    }
}
