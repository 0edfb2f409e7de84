//! Every way a build can fail, each with what a user needs to fix it.

use std::path::PathBuf;

/// A failed build. The messages name the file, line, patch or command at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The site could not be loaded.
    #[error(transparent)]
    Model(#[from] model::Error),
    /// `build.toml` or `packages.lock` is not valid.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A program the build needs is not installed.
    #[error("`{program}` is not installed (Debian package `{package}`); the build needs it to {purpose}")]
    MissingProgram {
        /// The program's name.
        program: String,
        /// The Debian package that provides it.
        package: String,
        /// Why the build needs it.
        purpose: String,
    },
    /// The lock file does not list the packages `build.toml` asks for.
    #[error("{path}: the lock of `{image}` is out of date with build.toml ({reason}); run `wikikube build --update-lock`")]
    StaleLock {
        /// The lock file.
        path: PathBuf,
        /// The base image.
        image: String,
        /// What differs.
        reason: String,
    },
    /// A locked package version cannot be installed.
    #[error("{path}:{line}: package `{package}` ({entry}) is not available from the mirror: {detail}; run `wikikube build --update-lock` to pick the current version")]
    MissingPackage {
        /// The lock file.
        path: PathBuf,
        /// Line of the package in the lock file (1-based), 0 when the package is not in it.
        line: usize,
        /// The package name.
        package: String,
        /// The lock entry (`name=version`).
        entry: String,
        /// apt's message.
        detail: String,
    },
    /// mmdebstrap failed for another reason.
    #[error("mmdebstrap failed building the rootfs of `{image}`:\n{log}")]
    Mmdebstrap {
        /// The base image.
        image: String,
        /// The end of mmdebstrap's output.
        log: String,
    },
    /// A security patch does not apply.
    #[error("patch {patch} does not apply: {file}: {hunks}\n{rejected}")]
    Patch {
        /// The patch file.
        patch: PathBuf,
        /// The file it patches.
        file: String,
        /// patch's verdict on the hunks (`Hunk #1 FAILED at 12.`).
        hunks: String,
        /// The failing hunks, as patch saved them.
        rejected: String,
    },
    /// The MediaWiki code of a version is missing or malformed.
    #[error("MediaWiki {version}: {message}")]
    Code {
        /// The version.
        version: String,
        /// What is wrong.
        message: String,
    },
    /// rebuildLocalisationCache.php failed.
    #[error("the l10n cache of MediaWiki {version} failed to build (exit {status}):\n{output}")]
    L10n {
        /// The version.
        version: String,
        /// The exit status.
        status: String,
        /// PHP's output, with its error.
        output: String,
    },
    /// Talking to a registry failed.
    #[error("registry {url}: {message}")]
    Registry {
        /// The URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// podman failed.
    #[error("podman {action} failed: {output}")]
    Podman {
        /// What we asked.
        action: String,
        /// podman's output.
        output: String,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

/// The result of a build step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
