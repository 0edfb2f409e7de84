//! `packages.lock`: the exact Debian package versions of every rootfs, like Cargo.lock.
//!
//! One `[NAME]` table per rootfs, with the package list of build.toml it was made from
//! (`request`, so a changed build.toml is noticed) and every installed package as
//! `"name=version"`, one a line, so an error can point at the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The file name in the site directory.
pub const FILE: &str = "packages.lock";

/// The lock of one rootfs.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RootfsLock {
    /// build.toml's packages and customize commands when this was locked.
    pub request: Vec<String>,
    /// Every installed package, `name=version`, sorted.
    pub packages: Vec<String>,
}

/// The whole lock file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    /// Where it lives.
    pub path: PathBuf,
    /// The rootfs locks by name.
    pub rootfs: BTreeMap<String, RootfsLock>,
    text: String,
}

impl Lock {
    /// Reads the lock of the site; a missing file is an empty lock.
    pub fn load(site_dir: &Path) -> Result<Lock> {
        let path = site_dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::Io { path, source: e }),
        };
        let rootfs = toml::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Lock { path, rootfs, text })
    }

    /// The 1-based line of `package`'s entry, 0 if it has none.
    pub fn line_of(&self, package: &str) -> usize {
        let needle = format!("\"{package}=");
        self.text
            .lines()
            .position(|line| line.contains(&needle))
            .map_or(0, |i| i + 1)
    }

    /// The entry (`name=version`) of `package` in any rootfs.
    pub fn entry_of(&self, package: &str) -> Option<String> {
        let prefix = format!("{package}=");
        self.rootfs
            .values()
            .flat_map(|lock| &lock.packages)
            .find(|entry| entry.starts_with(&prefix))
            .cloned()
    }

    /// The file's text, one package a line.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Written by `wikikube build --update-lock`: the exact Debian packages of every rootfs.\n\
             # A build installs exactly these versions. Commit this file with the site.\n",
        );
        for (name, lock) in &self.rootfs {
            out.push_str(&format!("\n[{name}]\nrequest = [\n"));
            for item in &lock.request {
                out.push_str(&format!("    {},\n", toml_string(item)));
            }
            out.push_str("]\npackages = [\n");
            for item in &lock.packages {
                out.push_str(&format!("    {},\n", toml_string(item)));
            }
            out.push_str("]\n");
        }
        out
    }

    /// Writes the file.
    pub fn save(&mut self) -> Result<()> {
        let text = self.render();
        let dir = self.path.parent().unwrap_or(Path::new("."));
        crate::cache::write_atomic(dir, &self.path, text.as_bytes())?;
        self.text = text;
        Ok(())
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}
