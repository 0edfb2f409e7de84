//! Reading a rootfs tarball: as layer entries (data stays in the tarball and is copied from it
//! when the layer is written), as the list of installed packages, or unpacked into a tree.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::layer::{Contents, Data, Entry, Kind};

/// Paths left out of every rootfs layer: device nodes (the runtime provides /dev), apt's
/// package lists and its record of what was asked for (differs between a locked and an
/// unlocked build, and no container runs apt).
fn left_out(path: &str) -> bool {
    path.starts_with("dev/")
        || path == "var/lib/apt/extended_states"
        || path.starts_with("var/lib/apt/lists/")
        || path.starts_with("var/cache/apt/")
}

fn clean(path: &Path) -> String {
    let text = path.to_string_lossy();
    text.trim_start_matches("./")
        .trim_end_matches('/')
        .to_string()
}

/// The entries of a rootfs tarball, owners and modes as Debian set them.
pub fn contents(tarball: &Path) -> Result<Contents> {
    let file = File::open(tarball).map_err(Error::io(tarball))?;
    let mut archive = tar::Archive::new(file);
    let mut contents = Contents::default();
    // Hard links name their target; the link and the target may sort either way, so the group
    // is fixed up below to make the first path in sorted order the one holding the data.
    let mut hardlinks: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let err = Error::io(tarball);
    for entry in archive.entries_with_seek().map_err(err)? {
        let entry = entry.map_err(Error::io(tarball))?;
        let header = entry.header();
        let path = clean(&entry.path().map_err(Error::io(tarball))?);
        if path.is_empty() || path == "." || left_out(&path) {
            continue;
        }
        let mode = header.mode().map_err(Error::io(tarball))?;
        let uid = header.uid().map_err(Error::io(tarball))?;
        let gid = header.gid().map_err(Error::io(tarball))?;
        let link = || -> Result<String> {
            let name = entry
                .link_name()
                .map_err(Error::io(tarball))?
                .unwrap_or_default();
            Ok(name.to_string_lossy().into_owned())
        };
        let kind = match header.entry_type() {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File(Data::TarSlice {
                file: tarball.to_path_buf(),
                offset: entry.raw_file_position(),
                len: entry.size(),
            }),
            tar::EntryType::Symlink => Kind::Symlink(link()?),
            tar::EntryType::Link => {
                let target = clean(Path::new(&link()?));
                hardlinks
                    .entry(target.clone())
                    .or_default()
                    .push(path.clone());
                Kind::Hardlink(target)
            }
            // Device nodes and fifos outside /dev are not expected in a Debian rootfs.
            _ => continue,
        };
        contents.add(Entry {
            path,
            kind,
            mode,
            uid,
            gid,
        });
    }
    for (target, mut links) in hardlinks {
        links.push(target.clone());
        links.sort();
        let first = links[0].clone();
        if first == target {
            continue;
        }
        let Some(data) = contents.get(&target).cloned() else {
            continue;
        };
        contents.add(Entry {
            path: first.clone(),
            ..data
        });
        for link in links.into_iter().skip(1) {
            let Some(old) = contents.get(&link).cloned() else {
                continue;
            };
            contents.add(Entry {
                kind: Kind::Hardlink(first.clone()),
                ..old
            });
        }
    }
    Ok(contents)
}

/// `(name, version)` of every package dpkg installed in the rootfs, sorted.
pub fn installed_packages(tarball: &Path) -> Result<Vec<(String, String)>> {
    let file = File::open(tarball).map_err(Error::io(tarball))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    for entry in archive.entries().map_err(Error::io(tarball))? {
        let mut entry = entry.map_err(Error::io(tarball))?;
        if clean(&entry.path().map_err(Error::io(tarball))?) != "var/lib/dpkg/status" {
            continue;
        }
        let mut status = String::new();
        entry
            .read_to_string(&mut status)
            .map_err(Error::io(tarball))?;
        let mut packages = Vec::new();
        for stanza in status.split("\n\n") {
            let field = |name: &str| {
                stanza
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            if let (Some(package), Some(version), Some(state)) =
                (field("Package:"), field("Version:"), field("Status:"))
            {
                if state.ends_with(" installed") {
                    packages.push((package, version));
                }
            }
        }
        packages.sort();
        return Ok(packages);
    }
    Err(Error::Config {
        path: tarball.to_path_buf(),
        message: "the rootfs has no var/lib/dpkg/status".into(),
    })
}

/// The rootfs with `key` unpacked into the cache (once; later calls reuse it).
pub fn unpacked(cache: &Cache, key: &str, tarball: &Path) -> Result<PathBuf> {
    let dest = cache.tree_path(key);
    if dest.exists() {
        return Ok(dest);
    }
    let tmp = cache.tempdir()?;
    let work = tmp.path().join("tree");
    std::fs::create_dir(&work).map_err(Error::io(&work))?;
    let file = File::open(tarball).map_err(Error::io(tarball))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    archive.set_preserve_permissions(true);
    for entry in archive.entries().map_err(Error::io(tarball))? {
        let mut entry = entry.map_err(Error::io(tarball))?;
        let path = clean(&entry.path().map_err(Error::io(tarball))?);
        let kind = entry.header().entry_type();
        if path.starts_with("dev/") && !kind.is_dir() {
            continue;
        }
        entry.unpack_in(&work).map_err(Error::io(&work))?;
    }
    std::fs::rename(&work, &dest).map_err(Error::io(&dest))?;
    Ok(dest)
}
