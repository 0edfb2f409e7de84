//! The local environment, the embedded default: a site's `local` environment runs on one
//! machine with podman, with the same images and the same rendered configuration as production.
//!
//! [`start`] is `wikikube up`: it has `image` build what the site needs, loads the images into
//! podman and calls [`up`]. [`up`] turns every rendered Deployment into a pod with one
//! conversion ([`pods`]), plays the ones that changed, installs each wiki's database once
//! ([`install`]), waits until every cake answers, and returns the wikis' URLs. [`down`],
//! [`status`] and [`logs`] do what they say; [`script`] runs a maintenance script in the farm;
//! [`backup`] writes and restores backups of the wikis; [`import`] loads a wiki from another
//! MediaWiki's dump.
//!
//! This crate runs what `render` produced and `image` built; it does not render, decide names
//! (they come from `render::naming`) or build images itself, and it never touches a pod or
//! volume whose name it did not make.

pub mod backup;
pub mod certificate;
pub mod import;
pub mod install;
mod media;
pub mod podman;
pub mod pods;
pub mod script;
pub mod state;

mod farm;
mod start;

pub use farm::{
    down, http_get, logs, status, up, ContainerStatus, PodStatus, Status, UpOptions, UpReport,
    WikiUrl,
};
pub use start::{start, StartOptions, StartReport};
pub use state::StateDir;

use std::path::Path;

/// What can go wrong running the local environment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// podman is not installed.
    #[error("podman is not installed: install Debian's podman and runc (`make up` does)")]
    PodmanMissing,
    /// A podman command failed.
    #[error("`{command}` failed: {output}")]
    Podman {
        /// The command line.
        command: String,
        /// What podman printed.
        output: String,
    },
    /// An image the site names is not in podman.
    #[error("image {0} is not in podman: run `wikikube build` (which `wikikube up` does) first")]
    MissingImage(String),
    /// A host port is taken by something else.
    #[error(
        "port {port} for {pod} is already in use on this machine: stop what uses it, or \
             change `{field}` in the local environment file"
    )]
    PortInUse {
        /// The port.
        port: u16,
        /// The pod that wants it.
        pod: String,
        /// The site key that sets it.
        field: &'static str,
    },
    /// A pod did not become ready.
    #[error("{pod} did not become ready within {seconds} s: {detail}\n  see `wikikube logs`")]
    NotReady {
        /// The pod.
        pod: String,
        /// How long we waited.
        seconds: u64,
        /// What was last seen.
        detail: String,
    },
    /// Installing a wiki's database failed.
    #[error("installing the database of wiki {wiki} failed:\n{output}")]
    Install {
        /// The wiki's database name.
        wiki: String,
        /// MediaWiki's installer output.
        output: String,
    },
    /// The database server does not accept connections.
    #[error(
        "the database server {server} does not answer after {seconds} s: {detail}\n  \
         check [database] host and port in the environment's values (`wikikube explain \
         database`), and `wikikube logs` for the farm's MariaDB"
    )]
    DatabaseUnreachable {
        /// `host:port`.
        server: String,
        /// How long we waited.
        seconds: u64,
        /// The client's last error.
        detail: String,
    },
    /// The database server refused the wikis' user: a wrong password (never printed).
    #[error(
        "the database server {server} refused user {user}: wrong password? ({detail})\n  \
         the password is the private value `database_password`"
    )]
    DatabaseRefused {
        /// `host:port`.
        server: String,
        /// The user MediaWiki connects as.
        user: String,
        /// The server's message.
        detail: String,
    },
    /// Wikis that the database server lacks have SQLite databases from an earlier farm.
    #[error(
        "wikis {} have their pages in SQLite files on volume {volume}, from a farm that ran \
         before this environment used MariaDB ({server}); nothing was installed and the files \
         are untouched.\n  to keep SQLite: set `type = \"sqlite\"` under [database] in the \
         environment's values;\n  to start afresh on MariaDB: `wikikube down --purge` (deletes \
         the SQLite files), then `wikikube up`;\n  to move the pages: export them with \
         `dumpBackup.php --full` under SQLite, then `importDump.php` under MariaDB",
        wikis.join(", ")
    )]
    DataInSqlite {
        /// The wikis whose data is in SQLite.
        wikis: Vec<String>,
        /// The volume holding the files.
        volume: String,
        /// The MariaDB server the environment names.
        server: String,
    },
    /// The site has no such wiki.
    #[error("the site has no wiki {wiki}; its wikis are {}", known.join(", "))]
    UnknownWiki {
        /// The name given.
        wiki: String,
        /// The site's wikis.
        known: Vec<String>,
    },
    /// The local farm's pod is not running.
    #[error("{0} is not running: start the local farm with `wikikube up` first")]
    NotRunning(String),
    /// The site is not a local environment.
    #[error(
        "environment {0} is not a local environment (its [environment] kind is not \"local\")"
    )]
    NotLocal(String),
    /// The rendered objects do not fit together (a bug in wikikube).
    #[error("{0}")]
    Inconsistent(String),
    /// The certificate could not be made.
    #[error("{0}")]
    Certificate(String),
    /// A backup or restore could not go on.
    #[error("{0}")]
    Backup(String),
    /// The backup directory is not sound: nothing was restored.
    #[error(transparent)]
    BackupFormat(#[from] wikikube_backup::BackupError),
    /// The wiki has edits newer than the backup.
    #[error(
        "wiki {wiki} has edits newer than the backup (its latest at {live}, the backup's at \
         {backup}); nothing was restored. Restore with --force to lose them, or take a new \
         backup first"
    )]
    NewerData {
        /// The wiki.
        wiki: String,
        /// Its latest edit now (MediaWiki timestamp).
        live: String,
        /// The backup's latest edit.
        backup: String,
    },
    /// Building or loading the images failed.
    #[error(transparent)]
    Image(#[from] wikikube_image::Error),
    /// Reading or writing the state directory failed.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
