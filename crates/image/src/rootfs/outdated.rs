//! `wikikube build --outdated`: the locked packages that the configured sources serve in a
//! newer version, security updates first. How an operator learns that the base images need a
//! rebuild for a Debian security advisory.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::apt::{compare_versions, Apt};
use crate::config::BuildConfig;
use crate::error::Result;
use crate::lock::Lock;

/// A locked package with a newer version in the sources.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Outdated {
    /// The package.
    pub package: String,
    /// The locked version.
    pub locked: String,
    /// The newest version served.
    pub available: String,
    /// The suite serving it.
    pub suite: String,
    /// Whether that suite is a security suite.
    pub security: bool,
    /// The rootfs (and so the images) that hold the package at the locked version.
    pub images: Vec<String>,
}

/// Every locked package of the site in `site_dir` that has a newer version in the sources,
/// security updates first, then by name.
pub fn outdated(site_dir: &Path) -> Result<Vec<Outdated>> {
    let build = BuildConfig::load(site_dir)?;
    let lock = Lock::load(site_dir)?;
    let apt = Apt::open(&build.effective_sources()?)?;
    Ok(compare(&lock, |name| {
        apt.newest(name)
            .map(|a| (a.version.clone(), a.suite.clone(), a.security))
    }))
}

/// The comparison, apart from the archive: `newest` gives (version, suite, security).
pub fn compare(
    lock: &Lock,
    newest: impl Fn(&str) -> Option<(String, String, bool)>,
) -> Vec<Outdated> {
    let mut by_package: BTreeMap<(String, String), Outdated> = BTreeMap::new();
    for (rootfs, locked) in &lock.rootfs {
        for package in &locked.packages {
            let Some((version, suite, security)) = newest(&package.name) else {
                continue;
            };
            if compare_versions(&version, &package.version) != std::cmp::Ordering::Greater {
                continue;
            }
            by_package
                .entry((package.name.clone(), package.version.clone()))
                .or_insert_with(|| Outdated {
                    package: package.name.clone(),
                    locked: package.version.clone(),
                    available: version,
                    suite,
                    security,
                    images: Vec::new(),
                })
                .images
                .push(rootfs.clone());
        }
    }
    let mut list: Vec<Outdated> = by_package.into_values().collect();
    list.sort_by(|a, b| {
        b.security
            .cmp(&a.security)
            .then_with(|| a.package.cmp(&b.package))
    });
    list
}

/// The human form: one line per package.
pub fn table(list: &[Outdated]) -> String {
    if list.is_empty() {
        return "every locked package is the newest version the sources serve\n".into();
    }
    let mut out = format!(
        "{:<28} {:<28} {:<28} {:<9} IMAGES\n",
        "PACKAGE", "LOCKED", "AVAILABLE", "SECURITY"
    );
    for item in list {
        out.push_str(&format!(
            "{:<28} {:<28} {:<28} {:<9} {}\n",
            item.package,
            item.locked,
            item.available,
            if item.security { "yes" } else { "" },
            item.images.join(",")
        ));
    }
    let security = list.iter().filter(|i| i.security).count();
    out.push_str(&format!(
        "{} packages outdated, {security} of them security updates: rebuild with `wikikube build --update-lock`\n",
        list.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{LockedPackage, RootfsLock};

    fn package(name: &str, version: &str) -> LockedPackage {
        LockedPackage {
            name: name.into(),
            version: version.into(),
            sha256: None,
        }
    }

    #[test]
    fn lists_newer_versions_security_first_with_their_images() {
        let mut lock = Lock::default();
        for rootfs in ["base-httpd", "base-php"] {
            lock.rootfs.insert(
                rootfs.into(),
                RootfsLock {
                    request: vec![],
                    packages: vec![
                        package("bash", "5.2.15-2+b13"),
                        package("libc6", "2.36-9+deb12u13"),
                        package("zlib1g", "1:1.2.13.dfsg-1"),
                    ],
                },
            );
        }
        let list = compare(&lock, |name| match name {
            "zlib1g" => Some(("1:1.2.13.dfsg-2".into(), "bookworm".into(), false)),
            "libc6" => Some(("2.36-9+deb12u14".into(), "bookworm-security".into(), true)),
            "bash" => Some(("5.2.15-2+b13".into(), "bookworm".into(), false)),
            _ => None,
        });
        let names: Vec<_> = list.iter().map(|o| o.package.as_str()).collect();
        assert_eq!(names, ["libc6", "zlib1g"]);
        assert_eq!(list[0].images, ["base-httpd", "base-php"]);
        assert!(table(&list).contains("2 packages outdated, 1 of them security updates"));
    }
}
