//! Every way a build can fail, each with what a user needs to fix it.

use std::path::PathBuf;

/// A failed build. The messages name the file, line, patch or command at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The site could not be loaded.
    #[error(transparent)]
    Model(#[from] wikikube_model::Error),
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
    /// One of the project's own programs is not beside the running executable.
    #[error("{path} is missing: the cake's {name} image packages it; build it with `cargo build --release -p {name}` (`make up` does)")]
    MissingOwnProgram {
        /// Where it was looked for.
        path: PathBuf,
        /// The program.
        name: String,
    },
    /// The lock file does not list the packages `build.toml` asks for (an error only with
    /// `--locked`; otherwise the build resolves them).
    #[error("{path}: the lock of `{image}` is out of date with build.toml ({reason}); run `wikikube build` without --locked to resolve it")]
    StaleLock {
        /// The lock file.
        path: PathBuf,
        /// The base image.
        image: String,
        /// What differs.
        reason: String,
    },
    /// `--locked` with a lock whose packages have no recorded hashes.
    #[error("{path}: {count} packages of `{image}` have no SHA-256 in the lock (written by an older wikikube); run `wikikube build` once without --locked to record them")]
    LockWithoutHashes {
        /// The lock file.
        path: PathBuf,
        /// The rootfs.
        image: String,
        /// How many lack a hash.
        count: usize,
    },
    /// `--locked` with locked versions that are neither cached nor served any more.
    #[error("{path}: {} locked packages of `{image}` can no longer be had (not in the package cache, not served by build.toml's sources):\n{}\nRun `wikikube build` without --locked to move them to the versions served today and rewrite the lock (`--update-lock` resolves everything afresh), or set build.toml's `snapshot` to a time of Debian's snapshot archive when the lock was written.", packages.len(), packages.iter().map(|p| format!("  line {}: {}", p.line, p.entry)).collect::<Vec<_>>().join("\n"))]
    Unavailable {
        /// The lock file.
        path: PathBuf,
        /// The rootfs.
        image: String,
        /// The packages, with their lines in the lock.
        packages: Vec<UnavailablePackage>,
    },
    /// The archive serves a locked version with other content than the lock recorded.
    #[error("{path}:{line}: {entry}: {detail}; the archive or a proxy changed a published package: check the mirror before building")]
    HashMismatch {
        /// The lock file.
        path: PathBuf,
        /// The package's line.
        line: usize,
        /// `name=version`.
        entry: String,
        /// Which suite served which hash, and what the lock recorded.
        detail: String,
    },
    /// build.toml asks for a package the archive does not have.
    #[error("build.toml: [bases.{image}] asks for `{package}`, which the Debian sources do not have ({detail})")]
    UnknownPackage {
        /// The rootfs.
        image: String,
        /// The package.
        package: String,
        /// apt's message.
        detail: String,
    },
    /// The rootfs built from the locked packages does not hold exactly those packages.
    #[error("the rootfs of `{image}` does not hold exactly its locked packages ({detail}); run `wikikube build --update-lock`")]
    LockMismatch {
        /// The rootfs.
        image: String,
        /// What differs.
        detail: String,
    },
    /// apt failed (reading the sources, downloading).
    #[error("{action} failed:\n{output}")]
    Apt {
        /// What was run.
        action: String,
        /// apt's output.
        output: String,
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
    /// An image the site runs by digest is not in its registry.
    #[error(
        "the registry has no image {reference}: push the build that made it (`wikikube build \
         --push REGISTRY`) before deploying, or remove its repository from pushed-images.toml"
    )]
    NotInRegistry {
        /// `HOST/REPOSITORY@sha256:...`.
        reference: String,
    },
    /// A registry refused to authenticate us.
    #[error("registry {registry} refused the push: {reason}")]
    RegistryRefused {
        /// `host:port`.
        registry: String,
        /// Why, and how to log in (never the password).
        reason: String,
    },
    /// A blob was not as pushed when checked before writing the manifest.
    #[error("registry {registry}: blob {digest} of {repository} failed its check before the manifest was written: {problem}; the manifest was not written, push again")]
    BlobCheck {
        /// `host:port`.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob.
        digest: String,
        /// What was wrong.
        problem: String,
    },
    /// A blob in the cache does not hash to its name.
    #[error("{path}: the cached blob does not hash to {digest}; delete it and build again")]
    CorruptBlob {
        /// The file.
        path: PathBuf,
        /// The digest it is stored under.
        digest: String,
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

/// A locked package that can no longer be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailablePackage {
    /// Its line in the lock file.
    pub line: usize,
    /// `name=version`.
    pub entry: String,
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
