//! Loading built images into podman, without a registry: `podman pull oci:DIR:NAME` reads
//! the image layout directly, then the image is tagged `localhost/wikikube/NAME:latest`, the
//! names the site's local environment runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};

/// The containers.conf our machines' podman needs (see DESIGN.md): no default ulimits (they
/// need CAP_SYS_RESOURCE) and runc (crun refuses hybrid cgroups).
const CONTAINERS_CONF: &str = include_str!("../containers.conf");

/// The path of the crate's `containers.conf`, written once per process under the system's temporary
/// directory: the file is compiled into the binary, so an installed `wikikube` works without
/// the source tree it was built from.
pub fn containers_conf() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let digest = crate::digest::sha256(CONTAINERS_CONF.as_bytes());
        let name = format!("wikikube-containers-{}.conf", &digest[7..19]);
        let path = std::env::temp_dir().join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(CONTAINERS_CONF) {
            // Written beside and renamed, so a concurrent reader never sees half a file.
            let partial = path.with_extension(format!("{}.partial", std::process::id()));
            if std::fs::write(&partial, CONTAINERS_CONF).is_ok() {
                let _ = std::fs::rename(&partial, &path);
            }
        }
        path
    })
    .clone()
}

/// A podman command using [`containers_conf`] unless CONTAINERS_CONF is set.
pub fn command() -> Command {
    let mut command = Command::new("podman");
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        command.env("CONTAINERS_CONF", containers_conf());
    }
    command
}

/// The name an image gets in podman.
pub fn local_name(image: &str) -> String {
    format!("localhost/wikikube/{image}:latest")
}

/// Loads `image` from the layout at `layout` and tags it; returns podman's image id.
pub fn load(layout: &Path, image: &str) -> Result<String> {
    load_as(layout, image, &local_name(image))
}

/// Loads `image` from the layout at `layout` under the name `name` (a site whose `[images]`
/// name its own tags, such as a test that must not replace the images another farm runs);
/// returns podman's image id.
pub fn load_as(layout: &Path, image: &str, name: &str) -> Result<String> {
    crate::tools::require("podman", "podman", "load images for local runs")?;
    // podman 4.3 names an image pulled from `oci:` after the directory's path, and refuses
    // paths that are not valid image names (upper case, as in temporary directories): pull
    // through a lowercase symlink, then give the image its real name and drop the path name.
    let link = std::env::temp_dir().join(format!("wikikube-oci-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    let absolute = std::fs::canonicalize(layout).map_err(Error::io(layout))?;
    std::os::unix::fs::symlink(&absolute, &link).map_err(Error::io(&link))?;
    let source = format!("oci:{}:{image}", link.display());
    let pulled = run(command().args(["pull", "-q"]).arg(&source), "pull");
    let _ = std::fs::remove_file(&link);
    let id = pulled?
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    run(command().args(["tag", &id, name]), "tag")?;
    let path_name = format!("localhost{}:latest", link.display());
    let _ = command().args(["untag", &id, &path_name]).output();
    Ok(id)
}

fn run(command: &mut Command, action: &str) -> Result<String> {
    let output = command.output().map_err(Error::io("podman"))?;
    if !output.status.success() {
        return Err(Error::Podman {
            action: action.into(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
