//! Building a rootfs tarball with mmdebstrap, from the versions in the lock file.
//!
//! mmdebstrap needs no daemon and no root (`--mode=unshare`), and with SOURCE_DATE_EPOCH set it
//! writes the same tarball for the same packages (checked by the `rootfs_is_reproducible`
//! test). What still differs between an unlocked and a locked run
//! (`var/lib/apt/extended_states`, which records what was asked for) is left out of layers by
//! [`super::tarball`].

use std::path::Path;
use std::process::Command;

use crate::cache::Cache;
use crate::config::{BaseConfig, BuildConfig};
use crate::digest::Inputs;
use crate::error::{Error, Result};
use crate::lock::{Lock, RootfsLock};

/// What a rootfs is made of: the cache key of its tarball.
pub fn inputs(build: &BuildConfig, name: &str, locked: &RootfsLock, base: &BaseConfig) -> Inputs {
    let mut inputs = Inputs::new("rootfs");
    inputs
        .add("name", name)
        .add("suite", &build.suite)
        .add("sources", build.sources.join("\n"))
        .add("path_exclude", build.path_exclude.join("\n"))
        .add("source_date_epoch", build.source_date_epoch.to_string())
        .add("packages", locked.packages.join("\n"))
        .add("customize", base.customize.join("\n"));
    inputs
}

/// The request line recorded in the lock: packages, then customize commands.
pub fn request(base: &BaseConfig) -> Vec<String> {
    let mut request = base.packages.clone();
    request.extend(base.customize.iter().map(|c| format!("customize: {c}")));
    request
}

/// Makes sure the rootfs `name` is in the cache and returns its key and tarball path.
///
/// With `update_lock`, an unlocked build resolves the current versions and records them in
/// `lock`; otherwise the lock must match build.toml and its exact versions are installed.
pub fn ensure(
    cache: &Cache,
    build: &BuildConfig,
    lock: &mut Lock,
    name: &str,
    base: &BaseConfig,
    update_lock: bool,
) -> Result<(String, std::path::PathBuf)> {
    let wanted = request(base);
    let current = lock
        .rootfs
        .get(name)
        .filter(|l| l.request == wanted)
        .cloned();
    let locked = match (current, update_lock) {
        (Some(locked), false) => locked,
        (None, false) => {
            let reason = if lock.rootfs.contains_key(name) {
                "its packages or customize commands changed".to_string()
            } else {
                format!("it has no [{name}] table")
            };
            return Err(Error::StaleLock {
                path: lock.path.clone(),
                image: name.into(),
                reason,
            });
        }
        (_, true) => {
            let tmp = cache.tempdir()?;
            let out = tmp.path().join("rootfs.tar");
            mmdebstrap(build, name, base, &base.packages, &out, lock)?;
            let packages = super::tarball::installed_packages(&out)?;
            let locked = RootfsLock {
                request: wanted,
                packages,
            };
            lock.rootfs.insert(name.to_string(), locked.clone());
            lock.save()?;
            // The unlocked tarball differs from a locked one only in what layers leave out,
            // so it is stored under the locked key.
            let path = cache.rootfs_path(&inputs(build, name, &locked, base).key());
            std::fs::rename(&out, &path).map_err(Error::io(&path))?;
            locked
        }
    };
    let key = inputs(build, name, &locked, base).key();
    let path = cache.rootfs_path(&key);
    if !path.exists() {
        let tmp = cache.tempdir()?;
        let out = tmp.path().join("rootfs.tar");
        mmdebstrap(build, name, base, &locked.packages, &out, lock)?;
        std::fs::rename(&out, &path).map_err(Error::io(&path))?;
    }
    Ok((key, path))
}

/// Runs mmdebstrap for `include` into `out`.
fn mmdebstrap(
    build: &BuildConfig,
    name: &str,
    base: &BaseConfig,
    include: &[String],
    out: &Path,
    lock: &Lock,
) -> Result<()> {
    crate::tools::require("mmdebstrap", "mmdebstrap", "build Debian base images")?;
    let mut command = Command::new("mmdebstrap");
    command
        .env("SOURCE_DATE_EPOCH", build.source_date_epoch.to_string())
        .env("LC_ALL", "C.UTF-8")
        .arg("--variant=essential")
        .arg("--mode=unshare")
        .arg("--format=tar")
        .arg(format!("--include={}", include.join(",")));
    for pattern in &build.path_exclude {
        command.arg(format!("--dpkgopt=path-exclude={pattern}"));
    }
    for customize in &base.customize {
        // The command runs inside the new rootfs; its own quotes are kept by sh -c.
        let quoted = customize.replace('\'', r"'\''");
        command.arg(format!("--customize-hook=chroot \"$1\" sh -c '{quoted}'"));
    }
    command.arg(&build.suite).arg(out).args(&build.sources);
    let output = command.output().map_err(Error::io("mmdebstrap"))?;
    if output.status.success() {
        return Ok(());
    }
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    if let Some((package, detail)) = missing_package(&log) {
        let entry = include
            .iter()
            .find(|i| i.split('=').next() == Some(package.as_str()))
            .cloned()
            .unwrap_or_else(|| package.clone());
        return Err(Error::MissingPackage {
            path: lock.path.clone(),
            line: lock.line_of(&package),
            package,
            entry,
            detail,
        });
    }
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    Err(Error::Mmdebstrap {
        image: name.into(),
        log,
    })
}

/// Finds apt's complaint about a package it cannot install: `E: Version 'V' for 'P' was not
/// found` or `E: Unable to locate package P`.
fn missing_package(log: &str) -> Option<(String, String)> {
    for line in log.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("E: Version '") {
            let package = rest.split("' for '").nth(1)?.split('\'').next()?;
            return Some((package.to_string(), line.to_string()));
        }
        if let Some(package) = line.strip_prefix("E: Unable to locate package ") {
            return Some((package.trim().to_string(), line.to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::missing_package;

    #[test]
    fn finds_missing_versions_and_packages() {
        let log = "I: foo\nE: Version '1.0' for 'php8.2-fpm' was not found\nE: bar";
        assert_eq!(missing_package(log).unwrap().0, "php8.2-fpm");
        let log = "E: Unable to locate package nosuch\n";
        assert_eq!(missing_package(log).unwrap().0, "nosuch");
        assert!(missing_package("E: something else").is_none());
    }
}
