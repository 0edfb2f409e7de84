//! `build.toml`: the build settings a site gives the image crate (Debian suite and mirrors,
//! SOURCE_DATE_EPOCH, the packages of each base image), kept apart from `site.toml` because
//! only builds read them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The file name in the site directory.
pub const FILE: &str = "build.toml";

/// `build.toml`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BuildConfig {
    /// Every timestamp in every layer and config (seconds since 1970).
    pub source_date_epoch: u64,
    /// The Debian suite (`bookworm`).
    pub suite: String,
    /// apt source lines (`deb URL SUITE COMPONENTS`).
    pub sources: Vec<String>,
    /// dpkg path-exclude patterns: files no image needs (manuals, documentation).
    #[serde(default)]
    pub path_exclude: Vec<String>,
    /// The base images, by name (`base-php`, `base-httpd`, `base-memcached`).
    pub bases: BTreeMap<String, BaseConfig>,
    /// Where the absolute `code` paths of `[versions]` come from.
    pub code: CodeConfig,
    /// The app image.
    #[serde(default)]
    pub app: AppConfig,
}

/// `[bases.NAME]`: a base image built from Debian packages.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BaseConfig {
    /// The packages to install (their dependencies come along).
    pub packages: Vec<String>,
    /// Shell commands run inside the rootfs after installing (`a2enmod rewrite`).
    #[serde(default)]
    pub customize: Vec<String>,
    /// The image's command.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Ports the image listens on (`80/tcp`).
    #[serde(default)]
    pub expose: Vec<String>,
}

/// `[code]`: a rootfs built only to read MediaWiki's code from: an absolute `code` path of a
/// version (`/usr/share/mediawiki`) is looked up inside it, so the code comes from pinned
/// packages rather than from whatever the build machine has installed.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CodeConfig {
    /// The rootfs's name in the lock file.
    pub name: String,
    /// The packages.
    pub packages: Vec<String>,
}

/// `[app]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Put the private settings into the app image. Off by default: they travel as a
    /// Kubernetes Secret; only a site that asks gets them baked in.
    #[serde(default)]
    pub private_settings: bool,
}

impl BuildConfig {
    /// Reads `build.toml` from the site directory.
    pub fn load(site_dir: &Path) -> Result<BuildConfig> {
        let path = site_dir.join(FILE);
        let text = std::fs::read_to_string(&path).map_err(Error::io(&path))?;
        Self::parse(&text, &path)
    }

    /// Parses the text of `build.toml`.
    pub fn parse(text: &str, path: &Path) -> Result<BuildConfig> {
        toml::from_str(text).map_err(|e| Error::Config {
            path: PathBuf::from(path),
            message: e.to_string(),
        })
    }

    /// Every rootfs to build: the bases and the code rootfs, with their settings.
    pub fn rootfs_specs(&self) -> Vec<(String, BaseConfig)> {
        let mut specs: Vec<(String, BaseConfig)> = self
            .bases
            .iter()
            .map(|(name, base)| (name.clone(), base.clone()))
            .collect();
        specs.push((
            self.code.name.clone(),
            BaseConfig {
                packages: self.code.packages.clone(),
                customize: vec![],
                cmd: vec![],
                expose: vec![],
            },
        ));
        specs
    }
}
