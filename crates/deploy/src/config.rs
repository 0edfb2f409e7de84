//! The deploy's own settings, read from `deploy.toml` in the site directory (or a file given on
//! the command line): the canary's smoke checks and soak time.
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
