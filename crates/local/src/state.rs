//! The local environment's state directory: the pod manifests as last applied, their config
//! files, the private values and the certificate.
//!
//! ```text
//! STATE/pods/NAME.yaml         the pod as played, and NAME.hash (manifest + images + config)
//! STATE/config/CONFIGMAP       a ConfigMap's files, named by content (its versioned name; the
//!                              edge's with a hash added): a running pod keeps its files until it
//!                              is replaced, and a new render never edits them in place
//! STATE/secrets/SECRET/KEY     one file per private value, readable by the pods' user only, in a
//!                              directory per version of the Secret (its versioned name)
//! STATE/tls/tls.crt, tls.key   the self-signed certificate
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::Error;

/// The uid and gid the cake's containers run as; files they read are given to them.
const POD_USER: u32 = wikikube_render::pod::RUN_AS as u32;

/// Paths inside one state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    /// The default for a site: `$XDG_STATE_HOME/wikikube/SITE` or `~/.local/state/wikikube/SITE`.
    pub fn default_for(site: &str) -> Self {
        let base = std::env::var_os("XDG_STATE_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
            })
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        StateDir::new(base.join("wikikube").join(site))
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where pod manifests are kept.
    pub fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }

    /// Where ConfigMaps' files are kept.
    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }

    /// Where private values are kept.
    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets")
    }

    /// Where the certificate is kept.
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }
}

/// Creates `dir` (and parents) for the pods' user to read.
pub fn create_dir(dir: &Path, mode: u32) -> Result<(), Error> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(Error::io(dir))?;
    give_to_pods(dir);
    Ok(())
}

/// Writes a file the pods read, replacing it atomically.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, contents).map_err(Error::io(&partial))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode))
        .map_err(Error::io(&partial))?;
    give_to_pods(&partial);
    std::fs::rename(&partial, path).map_err(Error::io(path))
}

/// With rootful podman the containers' user is the host's uid 33, so the files are handed to it
/// and need not be world-readable. (Rootless podman maps users differently and is not supported
/// yet; there `chown` fails and is ignored.)
fn give_to_pods(path: &Path) {
    let _ = std::os::unix::fs::chown(path, Some(POD_USER), Some(POD_USER));
}

/// Hands a directory tree to the pods' user (see `give_to_pods`): restored media are written by
/// this process as root and must be MediaWiki's to change.
pub(crate) fn give_tree_to_pods(path: &Path) {
    give_to_pods(path);
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            let child = entry.path();
            if child.is_dir() && !child.is_symlink() {
                give_tree_to_pods(&child);
            } else {
                give_to_pods(&child);
            }
        }
    }
}
