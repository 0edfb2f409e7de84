//! A throwaway apt repository made of cached .debs: what a locked rootfs is built from.
//!
//! mmdebstrap resolves packages with apt, and apt picks the newest version its sources offer,
//! for the essential set as much as for the packages asked for. A repository that holds
//! exactly the locked .debs leaves it nothing else to pick: every package of the rootfs is
//! the locked version, whatever the Debian archive serves today, and a build whose .debs are
//! cached needs no network at all.
//!
//! The repository lives under the system's temporary directory, readable by everyone,
//! because mmdebstrap's unshare mode reads it as an unprivileged user. It is removed when the
//! value is dropped.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cache::Cache;
use crate::digest::sha256;
use crate::error::{Error, Result};

/// The component every suite of the repository has.
const COMPONENT: &str = "main";

/// A local apt repository: one or more suites, each a set of cached .debs.
pub struct Repository {
    dir: tempfile::TempDir,
}

impl Repository {
    /// Writes a repository with `suites`: suite name -> SHA-256 digests of .debs in `cache`.
    pub fn create(cache: &Cache, suites: &BTreeMap<String, Vec<String>>) -> Result<Repository> {
        let dir = tempfile::Builder::new()
            .prefix("wikikube-repository-")
            .tempdir()
            .map_err(Error::io(std::env::temp_dir()))?;
        let root = dir.path();
        let architecture = host_architecture()?;
        let pool = root.join("pool");
        fs::create_dir_all(&pool).map_err(Error::io(&pool))?;
        for (suite, digests) in suites {
            let mut packages = String::new();
            for digest in digests {
                let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
                let file = pool.join(format!("{hex}.deb"));
                if !file.exists() {
                    link_or_copy(&cache.deb_path(digest), &file)?;
                }
                let size = fs::metadata(&file).map_err(Error::io(&file))?.len();
                let control = cache.deb_control(digest)?;
                packages.push_str(control.trim_end());
                packages.push_str(&format!(
                    "\nFilename: pool/{hex}.deb\nSize: {size}\nSHA256: {hex}\n\n"
                ));
            }
            let index = format!("{COMPONENT}/binary-{architecture}/Packages");
            let dists = root.join("dists").join(suite);
            let path = dists.join(&index);
            write(&path, packages.as_bytes())?;
            let hex = sha256(packages.as_bytes());
            let hex = hex.trim_start_matches("sha256:");
            // apt wants a Release file naming the suite (mmdebstrap narrows the essential set
            // to the suite it is given) and the index's hash; `trusted=yes` in the source line
            // stands in for a signature, the .debs having been checked against the lock.
            let release = format!(
                "Suite: {suite}\nCodename: {suite}\nArchitectures: {architecture}\n\
                 Components: {COMPONENT}\nSHA256:\n {hex} {} {index}\n",
                packages.len()
            );
            write(&dists.join("Release"), release.as_bytes())?;
        }
        make_readable(root)?;
        Ok(Repository { dir })
    }

    /// The repository's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The apt source line of `suite`.
    pub fn source(&self, suite: &str) -> String {
        format!(
            "deb [trusted=yes] file://{} {suite} {COMPONENT}",
            self.dir.path().display()
        )
    }
}

/// The build machine's Debian architecture (`amd64`), which is the rootfs's too.
pub fn host_architecture() -> Result<String> {
    let output = std::process::Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .map_err(Error::io("dpkg"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(Error::io(parent))?;
    }
    fs::write(path, bytes).map_err(Error::io(path))
}

/// A hard link when the cache is on the same filesystem (no copy of hundreds of MB), else a
/// copy.
fn link_or_copy(from: &Path, to: &PathBuf) -> Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to).map_err(Error::io(from))?;
    Ok(())
}

/// Every directory 0755 and file 0644, so the unshared user mmdebstrap runs as can read it.
fn make_readable(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).map_err(Error::io(dir))?;
    for entry in fs::read_dir(dir).map_err(Error::io(dir))? {
        let path = entry.map_err(Error::io(dir))?.path();
        if path.is_dir() {
            make_readable(&path)?;
        } else {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
                .map_err(Error::io(&path))?;
        }
    }
    Ok(())
}
