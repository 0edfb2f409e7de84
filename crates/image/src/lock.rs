//! `packages.lock`: the exact Debian package versions of every rootfs, like Cargo.lock.
//!
//! One `[NAME]` table per rootfs, with the package list of build.toml it was made from
//! (`request`, so a changed build.toml is noticed) and every installed package with its
//! version and the SHA-256 of its .deb, one a line, so an error can point at the line:
//!
//! ```toml
//! [base-httpd]
//! request = ["apache2", "customize: a2enmod rewrite"]
//! packages = [
//!     { name = "apache2", version = "2.4.71-1~deb12u1", sha256 = "sha256:0a1b..." },
//! ]
//! ```
//!
//! Locks written before the hashes were recorded list `"name=version"` strings; they are read
//! as packages without a hash, and the next build that is allowed to write the lock adds them.

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
    /// Every installed package, sorted by name.
    pub packages: Vec<LockedPackage>,
}

/// One package of a rootfs at its exact version.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockedPackage {
    /// The package name.
    pub name: String,
    /// The exact version.
    pub version: String,
    /// `sha256:<hex>` of the .deb; `None` in locks written before hashes were recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl LockedPackage {
    /// `name=version`, as apt writes a version request.
    pub fn entry(&self) -> String {
        format!("{}={}", self.name, self.version)
    }
}

impl<'de> Deserialize<'de> for LockedPackage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            /// Today's form: a table.
            Table {
                name: String,
                version: String,
                sha256: Option<String>,
            },
            /// The first form: `"name=version"`.
            Entry(String),
        }
        match Form::deserialize(deserializer)? {
            Form::Table {
                name,
                version,
                sha256,
            } => Ok(LockedPackage {
                name,
                version,
                sha256,
            }),
            Form::Entry(text) => match text.split_once('=') {
                Some((name, version)) if !name.is_empty() && !version.is_empty() => {
                    Ok(LockedPackage {
                        name: name.to_string(),
                        version: version.to_string(),
                        sha256: None,
                    })
                }
                _ => Err(serde::de::Error::custom(format!(
                    "`{text}` is not `name=version`"
                ))),
            },
        }
    }
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

    /// The 1-based line of `package`'s entry in the table of `rootfs`, 0 if it has none.
    pub fn line_of(&self, rootfs: &str, package: &str) -> usize {
        let table = format!("[{rootfs}]");
        let old_form = format!("\"{package}=");
        let new_form = format!("name = \"{package}\"");
        let mut in_table = false;
        for (number, line) in self.text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.starts_with('[') && !trimmed.starts_with("[\"") {
                in_table = trimmed == table;
            } else if in_table && (line.contains(&old_form) || line.contains(&new_form)) {
                return number + 1;
            }
        }
        0
    }

    /// The file's text, one package a line.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Written by `wikikube build`: the exact Debian packages of every rootfs and the SHA-256\n\
             # of each .deb. A build installs exactly these; commit this file with the site.\n",
        );
        for (name, lock) in &self.rootfs {
            out.push_str(&format!("\n[{name}]\nrequest = [\n"));
            for item in &lock.request {
                out.push_str(&format!("    {},\n", toml_string(item)));
            }
            out.push_str("]\npackages = [\n");
            for package in &lock.packages {
                out.push_str(&format!(
                    "    {{ name = {}, version = {}",
                    toml_string(&package.name),
                    toml_string(&package.version)
                ));
                if let Some(sha256) = &package.sha256 {
                    out.push_str(&format!(", sha256 = {}", toml_string(sha256)));
                }
                out.push_str(" },\n");
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

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH_FORMS: &str = r#"
[base-httpd]
request = ["apache2"]
packages = [
    "apache2=2.4.71-1~deb12u1",
    "bash=5.2.15-2+b13",
]

[base-php]
request = ["php8.2-fpm"]
packages = [
    { name = "bash", version = "5.2.15-2+b13", sha256 = "sha256:00ff" },
]
"#;

    fn lock(text: &str) -> Lock {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), text).unwrap();
        Lock::load(dir.path()).unwrap()
    }

    #[test]
    fn reads_the_first_form_without_hashes_and_the_current_form_with_them() {
        let lock = lock(BOTH_FORMS);
        let httpd = &lock.rootfs["base-httpd"].packages;
        assert_eq!(httpd[0].entry(), "apache2=2.4.71-1~deb12u1");
        assert_eq!(httpd[0].sha256, None);
        let php = &lock.rootfs["base-php"].packages[0];
        assert_eq!(php.sha256.as_deref(), Some("sha256:00ff"));
    }

    #[test]
    fn finds_a_package_line_within_its_rootfs_table() {
        let lock = lock(BOTH_FORMS);
        // Editors count from 1, and BOTH_FORMS starts with an empty line.
        assert_eq!(lock.line_of("base-httpd", "bash"), 6);
        assert_eq!(lock.line_of("base-php", "bash"), 12);
        assert_eq!(lock.line_of("base-php", "apache2"), 0);
    }

    #[test]
    fn writes_what_it_reads() {
        let mut first = lock(BOTH_FORMS);
        first.path = PathBuf::new();
        let text = first.render();
        let second: BTreeMap<String, RootfsLock> = toml::from_str(&text).unwrap();
        assert_eq!(second, first.rootfs);
        assert!(text
            .contains(r#"{ name = "bash", version = "5.2.15-2+b13", sha256 = "sha256:00ff" },"#));
    }

    #[test]
    fn a_malformed_entry_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "[x]\nrequest = []\npackages = [\"bash\"]\n",
        )
        .unwrap();
        let error = Lock::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("`bash` is not `name=version`"), "{error}");
    }
}
