//! MediaWiki's code, read from a tree (an unpacked rootfs or a site directory) into
//! self-contained layer entries.
//!
//! Debian's `mediawiki` package is full of symlinks: `extensions` points into
//! `/var/lib/mediawiki`, whose entries point back into `/usr/share/mediawiki/extensions-core`,
//! and `vendor` libraries point into `/usr/share/php`. Inside an image only
//! `/srv/mediawiki/php-VERSION` exists, so every symlink is resolved *inside the tree it came
//! from* (an absolute target is taken relative to the tree's root, never the build machine's)
//! and its content copied in. Links to what belongs to run time or to the config layer
//! (`LocalSettings.php`, `images`, `cache`, `config`) are left out.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::layer::{Contents, Data, Entry};

/// Where a version's code lives in the app image: `srv/mediawiki/php-VERSION`, the layout of
/// Wikimedia's multiversion (the config layer's entry point picks this directory by version).
pub fn image_dir(version: &str) -> String {
    format!("srv/mediawiki/php-{version}")
}

/// Top-level names of the code that never go into the code layer: extensions and skins have a
/// layer of their own, the rest is run-time state or configuration.
const LEFT_OUT: &[&str] = &[
    "LocalSettings.php",
    "images",
    "cache",
    "config",
    "extensions",
    "extensions-core",
    "skins",
];

/// Resolves `path` (absolute, inside the tree at `root`) through every symlink, keeping it
/// inside `root`. `None` when it dangles or loops.
pub fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(String::from)
        .rev()
        .collect();
    let mut current: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                current.pop();
                continue;
            }
            _ => {}
        }
        current.push(part);
        let host = root.join(current.join("/"));
        let meta = std::fs::symlink_metadata(&host).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = std::fs::read_link(&host).ok()?;
            current.pop();
            if target.is_absolute() {
                current.clear();
            }
            for component in target.components().rev() {
                if let Component::Normal(name) = component {
                    pending.push(name.to_string_lossy().into_owned());
                } else if component == Component::ParentDir {
                    pending.push("..".into());
                }
            }
        }
    }
    Some(root.join(current.join("/")))
}

/// Adds the tree at host path `dir` (already resolved) under `prefix` to `contents`, following
/// symlinks inside `root`. `skip` decides which top-level names to leave out.
pub fn add_tree(
    contents: &mut Contents,
    root: &Path,
    dir: &Path,
    prefix: &str,
    skip: &dyn Fn(&str) -> bool,
) -> Result<()> {
    contents.add_dirs(prefix);
    // The directory entry's own type and metadata (stat'ed relative to the open directory, not
    // through the whole path) tell links apart: a tree of Wikimedia's size is 185,000 entries,
    // and each path walk counts.
    let mut names: Vec<(String, Option<std::fs::Metadata>)> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .map(|e| {
            let e = e?;
            let meta = e.metadata()?;
            let meta = (!meta.file_type().is_symlink()).then_some(meta);
            // A UTF-8 name (all of MediaWiki's) becomes a String without a copy.
            let name = e
                .file_name()
                .into_string()
                .unwrap_or_else(|name| name.to_string_lossy().into_owned());
            Ok((name, meta))
        })
        .collect::<std::io::Result<_>>()
        .map_err(Error::io(dir))?;
    names.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, meta) in names {
        if skip(&name) {
            continue;
        }
        let host = dir.join(&name);
        let target = format!("{prefix}/{name}");
        let (resolved, meta) = match meta {
            Some(meta) => (host, meta),
            None => {
                let inside = host
                    .strip_prefix(root)
                    .unwrap_or(&host)
                    .to_string_lossy()
                    .into_owned();
                match resolve(root, &inside) {
                    Some(path) => match std::fs::metadata(&path) {
                        Ok(meta) => (path, meta),
                        // A dangling link points at something that belongs to run time.
                        Err(_) => continue,
                    },
                    None => continue,
                }
            }
        };
        if meta.is_dir() {
            add_tree(contents, root, &resolved, &target, &|_| false)?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            contents.add_seen(Entry::file(target, Data::Path(resolved), executable), &meta);
        }
    }
    Ok(())
}

/// The code of `version` found at `code_dir` inside `root`: everything but extensions, skins
/// and run-time state, with the empty directories MediaWiki expects.
pub fn core(root: &Path, code_dir: &str, version: &str) -> Result<Contents> {
    let dir = code_root(root, code_dir, version)?;
    let prefix = image_dir(version);
    let mut contents = Contents::default();
    add_tree(&mut contents, root, &dir, &prefix, &|name| {
        LEFT_OUT.contains(&name)
    })?;
    for empty in ["images", "cache", "extensions", "skins"] {
        contents.add(Entry::dir(format!("{prefix}/{empty}")));
    }
    stamp_version(&mut contents, version)?;
    Ok(contents)
}

/// The given extensions and skins of `version`.
pub fn extensions(
    root: &Path,
    code_dir: &str,
    version: &str,
    extensions: &[String],
    skins: &[String],
) -> Result<Contents> {
    let dir = code_root(root, code_dir, version)?;
    let inside = dir
        .strip_prefix(root)
        .unwrap_or(&dir)
        .to_string_lossy()
        .into_owned();
    let prefix = image_dir(version);
    let mut contents = Contents::default();
    for (kind, names) in [("extensions", extensions), ("skins", skins)] {
        for name in names {
            let found = resolve(root, &format!("{inside}/{kind}/{name}")).filter(|p| p.is_dir());
            let Some(found) = found else {
                return Err(Error::Code {
                    version: version.into(),
                    message: format!("{kind}/{name} is not in the code at {code_dir}"),
                });
            };
            add_tree(
                &mut contents,
                root,
                &found,
                &format!("{prefix}/{kind}/{name}"),
                &|_| false,
            )?;
        }
    }
    Ok(contents)
}

fn code_root(root: &Path, code_dir: &str, version: &str) -> Result<PathBuf> {
    resolve(root, code_dir)
        .filter(|p| p.join("includes").is_dir())
        .ok_or_else(|| Error::Code {
            version: version.into(),
            message: format!("{code_dir} holds no MediaWiki code (no includes/ directory)"),
        })
}

/// Writes the version's name into its code, as Wikimedia's branches carry theirs
/// (`define( 'MW_VERSION', '1.47.0-wmf.16' )`): MediaWiki then reports it in the `generator`
/// meta tag, the API's siteinfo and Special:Version, so anyone can see which version served a
/// page. Two versions built from one release differ in name, and a reader can tell them apart.
pub fn stamp_version(contents: &mut Contents, version: &str) -> Result<()> {
    let path = format!("{}/includes/Defines.php", image_dir(version));
    let missing = || Error::Code {
        version: version.into(),
        message: "includes/Defines.php is missing or defines no MW_VERSION".into(),
    };
    let entry = contents.get(&path).ok_or_else(missing)?;
    let text = match &entry.kind {
        crate::layer::Kind::File(Data::Bytes(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
        crate::layer::Kind::File(Data::Path(file)) => {
            std::fs::read_to_string(file).map_err(Error::io(file))?
        }
        _ => return Err(missing()),
    };
    let marker = "define( 'MW_VERSION', '";
    let start = text.find(marker).ok_or_else(missing)? + marker.len();
    let end = start + text[start..].find('\'').ok_or_else(missing)?;
    let stamped = format!("{}{version}{}", &text[..start], &text[end..]);
    contents.add(Entry::file(path, Data::Bytes(stamped.into_bytes()), false));
    Ok(())
}

/// A MediaWiki release tarball (`.tar.gz`), checked against its SHA-256 and unpacked once into
/// the cache (`sources/<sha256>`). Returns the unpacked tree's root and the code directory in
/// it (the tarball's one top-level directory, `/mediawiki-1.39.17`).
pub fn unpack_tarball(
    cache: &crate::cache::Cache,
    tarball: &Path,
    sha256: &str,
    version: &str,
) -> Result<(PathBuf, String)> {
    let expected = sha256
        .strip_prefix("sha256:")
        .unwrap_or(sha256)
        .to_ascii_lowercase();
    let root = cache.root().join("sources").join(&expected);
    if !root.is_dir() {
        let bytes = std::fs::read(tarball).map_err(Error::io(tarball))?;
        let found = crate::digest::sha256(&bytes);
        let found = found.strip_prefix("sha256:").unwrap_or(&found);
        if found != expected {
            return Err(Error::Code {
                version: version.into(),
                message: format!(
                    "{} has SHA-256 {found}, not the {expected} that [versions] states: \
                     the file changed since it was reviewed (or the digest is mistyped)",
                    tarball.display()
                ),
            });
        }
        let scratch = cache.tempdir()?;
        let unpacked = scratch.path().join("tree");
        std::fs::create_dir_all(&unpacked).map_err(Error::io(&unpacked))?;
        let mut archive = ::tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        archive.set_preserve_permissions(true);
        // tar::Archive::unpack refuses entries that would land outside the directory.
        archive.unpack(&unpacked).map_err(|error| Error::Code {
            version: version.into(),
            message: format!("{} is not a readable .tar.gz: {error}", tarball.display()),
        })?;
        std::fs::create_dir_all(root.parent().expect("sources has a parent"))
            .map_err(Error::io(&root))?;
        if let Err(error) = std::fs::rename(&unpacked, &root) {
            // Another build unpacked the same tarball meanwhile: theirs is as good.
            if !root.is_dir() {
                return Err(Error::io(&root)(error));
            }
        }
    }
    let mut tops: Vec<String> = std::fs::read_dir(&root)
        .map_err(Error::io(&root))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    tops.sort();
    match tops.as_slice() {
        [top] if root.join(top).join("includes").is_dir() => Ok((root, format!("/{top}"))),
        _ if root.join("includes").is_dir() => Ok((root, "/".into())),
        _ => Err(Error::Code {
            version: version.into(),
            message: format!(
                "{} holds no MediaWiki release (no includes/ at its top or in its one \
                 top-level directory)",
                tarball.display()
            ),
        }),
    }
}
