//! The project's own programs (`edge`, `mcrouter`, `redis-proxy`) that the build packages as images: found
//! beside the running executable, where `cargo build` and an installation both put them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The programs of the cake that are not Debian packages.
pub const OWN: [&str; 3] = ["edge", "mcrouter", "redis-proxy"];

/// `name -> path` of each of [`OWN`] in the directory of the running executable.
pub fn beside_current_executable() -> Result<BTreeMap<String, PathBuf>> {
    let executable = std::env::current_exe().map_err(Error::io("the running executable"))?;
    let dir = executable
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut programs = BTreeMap::new();
    for name in OWN {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(Error::MissingOwnProgram {
                path,
                name: name.to_string(),
            });
        }
        programs.insert(name.to_string(), path);
    }
    Ok(programs)
}
