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
    /// A time of Debian's snapshot archive (`20261125T000000Z`): the Debian and
    /// Debian-Security sources are read from snapshot.debian.org as they were then, so a lock
    /// keeps building after the archive has moved on. See [`BuildConfig::effective_sources`].
    #[serde(default)]
    pub snapshot: Option<String>,
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
    /// How layers are written.
    #[serde(default)]
    pub layers: LayersConfig,
}

/// `[layers]`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LayersConfig {
    /// `"gzip"` (the default, read by every runtime) or `"zstd"` (smaller, faster to unpack;
    /// needs containerd 1.5 or podman 3 on every node that pulls the images).
    #[serde(default)]
    pub compression: crate::layer::tar::Compression,
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

    /// The apt sources a build reads: `sources`, or with `snapshot` set, each Debian and
    /// Debian-Security source moved to snapshot.debian.org at that time (with
    /// `check-valid-until=no`, since a snapshot's Release files have long expired). Sources of
    /// other archives are kept as they are.
    pub fn effective_sources(&self) -> Result<Vec<String>> {
        let Some(time) = &self.snapshot else {
            return Ok(self.sources.clone());
        };
        let valid = time.len() == 16
            && time.as_bytes()[8] == b'T'
            && time.ends_with('Z')
            && time[..8].bytes().all(|b| b.is_ascii_digit())
            && time[9..15].bytes().all(|b| b.is_ascii_digit());
        if !valid {
            return Err(Error::Config {
                path: PathBuf::from(FILE),
                message: format!(
                    "snapshot = \"{time}\": expected a time of Debian's snapshot archive as \
                     YYYYMMDDTHHMMSSZ, for example \"20261125T000000Z\""
                ),
            });
        }
        Ok(self
            .sources
            .iter()
            .map(|line| snapshot_source(line, time))
            .collect())
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

/// One source line moved to snapshot.debian.org at `time`, if it is Debian's.
fn snapshot_source(line: &str, time: &str) -> String {
    let mut words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    if words.first().map(String::as_str) != Some("deb") {
        return line.to_string();
    }
    // `deb [options] URL SUITE COMPONENTS...`
    let mut options = Vec::new();
    let mut index = 1;
    if words.get(1).is_some_and(|w| w.starts_with('[')) {
        while index < words.len() {
            let word = words[index].trim_start_matches('[').trim_end_matches(']');
            let last = words[index].ends_with(']');
            if !word.is_empty() {
                options.push(word.to_string());
            }
            index += 1;
            if last {
                break;
            }
        }
    }
    let Some(url) = words.get(index).cloned() else {
        return line.to_string();
    };
    let archive = match url.trim_end_matches('/').rsplit('/').next() {
        Some("debian") => "debian",
        Some("debian-security") => "debian-security",
        _ => return line.to_string(),
    };
    if !options.iter().any(|o| o.starts_with("check-valid-until")) {
        options.push("check-valid-until=no".into());
    }
    let rest = words.split_off(index + 1);
    format!(
        "deb [{}] http://snapshot.debian.org/archive/{archive}/{time}/ {}",
        options.join(" "),
        rest.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::tar::Compression;

    fn config(snapshot: Option<&str>) -> BuildConfig {
        BuildConfig {
            source_date_epoch: 0,
            suite: "bookworm".into(),
            sources: vec![
                "deb http://deb.debian.org/debian bookworm main".into(),
                "deb [arch=amd64] http://security.debian.org/debian-security bookworm-security main contrib".into(),
                "deb http://apt.example.org/wikimedia bookworm-wikimedia main".into(),
            ],
            snapshot: snapshot.map(str::to_string),
            path_exclude: vec![],
            bases: BTreeMap::new(),
            code: CodeConfig {
                name: "code".into(),
                packages: vec![],
            },
            app: AppConfig::default(),
            layers: LayersConfig::default(),
        }
    }

    #[test]
    fn layers_are_gzip_unless_zstd_is_asked_and_another_codec_is_named() {
        let path = Path::new("site/build.toml");
        let head = "source_date_epoch = 1\nsuite = \"bookworm\"\nsources = []\n\
                    [bases]\n[code]\nname = \"code\"\npackages = []\n";
        let plain = BuildConfig::parse(head, path).unwrap();
        assert_eq!(plain.layers.compression, Compression::Gzip);
        let zstd = format!("{head}[layers]\ncompression = \"zstd\"\n");
        let zstd = BuildConfig::parse(&zstd, path).unwrap();
        assert_eq!(zstd.layers.compression, Compression::Zstd);
        let lz4 = format!("{head}[layers]\ncompression = \"lz4\"\n");
        let error = BuildConfig::parse(&lz4, path).unwrap_err().to_string();
        for needed in ["site/build.toml", "line 9", "lz4", "`gzip`", "`zstd`"] {
            assert!(error.contains(needed), "{needed} not in: {error}");
        }
    }

    #[test]
    fn a_snapshot_moves_debian_sources_to_the_snapshot_archive() {
        let sources = config(Some("20261125T000000Z"))
            .effective_sources()
            .unwrap();
        assert_eq!(
            sources,
            [
                "deb [check-valid-until=no] http://snapshot.debian.org/archive/debian/20261125T000000Z/ bookworm main",
                "deb [arch=amd64 check-valid-until=no] http://snapshot.debian.org/archive/debian-security/20261125T000000Z/ bookworm-security main contrib",
                "deb http://apt.example.org/wikimedia bookworm-wikimedia main",
            ]
        );
        assert_eq!(
            config(None).effective_sources().unwrap(),
            config(None).sources
        );
    }

    #[test]
    fn a_malformed_snapshot_time_is_refused_with_an_example() {
        let error = config(Some("2026-11-25")).effective_sources().unwrap_err();
        assert!(error.to_string().contains("YYYYMMDDTHHMMSSZ"), "{error}");
    }
}
