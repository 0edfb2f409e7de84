//! The external programs a build runs, and a clear error when one is missing.

use crate::error::{Error, Result};

/// Fails with the Debian package to install when `program` is not on PATH.
pub fn require(program: &str, package: &str, purpose: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if found {
        Ok(())
    } else {
        Err(Error::MissingProgram {
            program: program.into(),
            package: package.into(),
            purpose: purpose.into(),
        })
    }
}
