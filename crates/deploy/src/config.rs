//! The deploy's own settings, read from `deploy.toml` in the site directory (or a file given on
//! the command line): the canary's smoke checks and soak time, and how many revisions' versioned
//! ConfigMaps and Secrets stay in the cluster.
//!
//! They live here, not in the site model, until the site format has a `[smoke]` section of its
//! own; the file's shape is the one proposed for it.
//!
//! ```toml
//! [canary]
//! soak_seconds = 120
//!
//! [[smoke]]
//! name = "main page"
//! path = "/wiki/Main_Page"
//! host = "en.wiki.example"   # optional Host header
//! expect_status = 200        # default 200
//! contains = "Main Page"     # optional
//!
//! [retention]
//! config_revisions = 3       # the versioned ConfigMaps and Secrets of the newest 3 done
//!                            # revisions stay (default 3, from 1 to 5: the revisions whose
//!                            # objects are stored for a rollback)
//! ```

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// `deploy.toml`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeployConfig {
    /// `[canary]`.
    #[serde(default)]
    pub canary: CanaryConfig,
    /// `[[smoke]]`: HTTP checks every canary must pass.
    #[serde(default)]
    pub smoke: Vec<SmokeCheck>,
    /// `[retention]`.
    #[serde(default)]
    pub retention: RetentionConfig,
}

/// `[retention]`: what a deploy's prune keeps of earlier revisions.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// The versioned ConfigMaps and Secrets of this many of the newest done revisions (the one
    /// being deployed counts) stay in the cluster, so that a rollback, or the Deployment
    /// controller going back to an older ReplicaSet, finds them.
    #[serde(
        default = "default_config_revisions",
        deserialize_with = "config_revisions"
    )]
    pub config_revisions: std::num::NonZeroUsize,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            config_revisions: default_config_revisions(),
        }
    }
}

fn default_config_revisions() -> std::num::NonZeroUsize {
    std::num::NonZeroUsize::new(crate::history::DEFAULT_CONFIG_REVISIONS).expect("not zero")
}

/// `config_revisions`, refused (by toml, with the line and key) outside 1 to
/// [`crate::history::KEEP_REVISIONS`].
fn config_revisions<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<std::num::NonZeroUsize, D::Error> {
    let value = u64::deserialize(deserializer)?;
    let most = crate::history::KEEP_REVISIONS;
    usize::try_from(value)
        .ok()
        .filter(|value| *value <= most)
        .and_then(std::num::NonZeroUsize::new)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "expected from 1 to {most} (the revisions whose objects are stored for a \
                 rollback; a version older than those cannot be gone back to), got {value}"
            ))
        })
}

/// `[canary]`: the gate between canary and main.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// How long the canaries take real traffic, healthy, before main follows.
    #[serde(default = "default_soak")]
    pub soak_seconds: u64,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        CanaryConfig {
            soak_seconds: default_soak(),
        }
    }
}

fn default_soak() -> u64 {
    60
}

/// One smoke check: an HTTP request to every canary pod that must succeed.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmokeCheck {
    /// Its name in messages.
    pub name: String,
    /// The path requested, with its query.
    pub path: String,
    /// A Host header, to pick a wiki's virtual host.
    #[serde(default)]
    pub host: Option<String>,
    /// The status the answer must have.
    #[serde(default = "default_status")]
    pub expect_status: u16,
    /// Text the answer's body must contain.
    #[serde(default)]
    pub contains: Option<String>,
}

fn default_status() -> u16 {
    200
}

impl DeployConfig {
    /// Reads a config file.
    pub fn read(path: &Path) -> Result<DeployConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Config {
            path: path.display().to_string(),
            message: source.to_string(),
        })?;
        toml::from_str(&text).map_err(|error| Error::Config {
            path: path.display().to_string(),
            message: error.to_string(),
        })
    }

    /// Reads `SITE_DIR/deploy.toml`, or the defaults (no smoke checks) when there is none.
    pub fn for_site(site_dir: &Path) -> Result<DeployConfig, Error> {
        let path = site_dir.join("deploy.toml");
        if path.exists() {
            DeployConfig::read(&path)
        } else {
            Ok(DeployConfig::default())
        }
    }
}
