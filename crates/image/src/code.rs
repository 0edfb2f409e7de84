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
