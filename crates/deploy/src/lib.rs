//! Deploying a rendered wikikube site to Kubernetes clusters with kube-rs: `wikikube diff`,
//! `deploy`, `rollback` and `history`.
//!
//! What it does, per cluster of the environment (`[environment] clusters`, each a kubeconfig
//! context), all clusters in parallel:
//! - [`diff()`]: server-side apply with `dryRun=All` of every rendered object and a unified diff
//!   against the live object, server-written fields stripped, Secret values never shown;
//! - [`run::deploy`]: server-side apply under one field manager ([`apply::FIELD_MANAGER`],
//!   forced), phase by phase ([`plan()`]): shared objects, debug, canary, then the gate
//!   ([`canary`]: the rollout completion check of [`rollout`], [`smoke`] checks, a soak), then main
//!   and next; then [`inventory`] pruning. Every step is written to the [`mod@history`] record first,
//!   so an interrupted deploy can be resumed or rolled back. Any failure in any cluster rolls back
//!   every phase the run touched, everywhere ([`mod@rollback`]).
//!
//! Before the debug and canary releases, a deploy runs the wikis' schema changes as Jobs
//! ([`schema`]): `update.php --quick` for wikis whose code changed, the installer for new ones,
//! in the environment's first cluster; a failed one stops the deploy before any new code runs.
//! [`jobs`] runs one maintenance Job (also `wikikube script --env ENV`).
//!
//! Before a deploy or rollback touches any cluster it takes the deploy lock of every cluster, a
//! Lease renewed while it runs and released when it ends ([`lock`]), so that two people cannot
//! deploy to the same clusters at once.
//!
//! What it must not do: render objects (that is `render`; this crate takes them as they are),
//! print (it reports through [`progress::Progress`] and returns reports that the CLI prints),
//! show a Secret's values anywhere, or touch an object that its inventory does not list.
//!
//! Where to start: [`run::deploy`], then [`rollout::check`] (when a rollout is complete) and
//! [`history::State`] (the state machine of a deploy). Tests use a loopback *simulation* of an
//! API server with a Deployment controller (`tests/support`); see `docs/deploy.md`.

pub mod apply;
pub mod canary;
pub mod cluster;
pub mod config;
pub mod deletion;
pub mod diff;
pub mod history;
pub mod inventory;
pub mod jobs;
pub mod lock;
pub mod ownership;
pub mod plan;
pub mod progress;
pub mod rbac;
pub mod report;
pub mod rollback;
pub mod rollout;
pub mod run;
pub mod schema;
pub mod smoke;

pub use config::{DeployConfig, SmokeCheck};
pub use diff::{diff, DiffReport};
pub use history::{Record, State};
pub use plan::{plan, Phase, Step};
pub use report::{ClusterReport, DeployReport, Options};
pub use rollback::rollback;
pub use run::deploy;
/// The async runtime the CLI drives this crate with (see [`runtime`]).
pub use tokio::runtime::Runtime;

/// One cluster to talk to.
#[derive(Clone)]
pub struct Target {
    /// Its name, from the environment's `clusters`.
    pub name: String,
    /// A client for its API server.
    pub client: kube::Client,
}

/// Connects to every cluster of the environment, through the kubeconfig contexts it names
/// (`KUBECONFIG` or `~/.kube/config`).
pub async fn connect(clusters: &[wikikube_model::ClusterSpec]) -> Result<Vec<Target>, Error> {
    let mut targets = Vec::with_capacity(clusters.len());
    for cluster in clusters {
        let options = kube::config::KubeConfigOptions {
            context: Some(cluster.context.clone()),
            ..Default::default()
        };
        let connect_error = |message: String| Error::Connect {
            cluster: cluster.name.clone(),
            context: cluster.context.clone(),
            message,
        };
        let config = kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|error| connect_error(error.to_string()))?;
        let client =
            kube::Client::try_from(config).map_err(|error| connect_error(error.to_string()))?;
        targets.push(Target {
            name: cluster.name.clone(),
            client,
        });
    }
    Ok(targets)
}

/// The history of every cluster: `(cluster, records oldest first)`.
pub async fn history(
    targets: &[Target],
    namespace: &str,
) -> Result<Vec<(String, Vec<Record>)>, Error> {
    let reads = targets.iter().map(|target| async move {
        history::read(&target.client, namespace)
            .await
            .map(|records| (target.name.clone(), records))
    });
    futures::future::try_join_all(reads).await
}

/// Why a deploy command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the API server failed.
    #[error("cannot {action}")]
    Kube {
        /// What we were doing.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The kubeconfig does not lead to the cluster.
    #[error("cannot reach cluster {cluster} (kubeconfig context {context}): {message}")]
    Connect {
        /// The cluster's name.
        cluster: String,
        /// Its context.
        context: String,
        /// Why.
        message: String,
    },
    /// Bookkeeping in the cluster that cannot be read.
    #[error("{what} cannot be read: {message}")]
    Corrupt {
        /// Which object.
        what: String,
        /// Why.
        message: String,
    },
    /// The API server refused an object as invalid, and other field managers own fields of it
    /// that a deploy leaves in place ([`ownership`]).
    #[error("cannot {action}: {message}\n  fields other field managers set on it, which a deploy leaves in place: {fields}\n  `--take-over-fields` (of deploy, with --resume if it stopped, or of rollback) removes those the site does not render")]
    ForeignFields {
        /// What we were doing.
        action: String,
        /// The server's message.
        message: String,
        /// The fields and their managers, listed.
        fields: String,
    },
    /// `deploy.toml` is wrong.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A rollout failed or did not finish.
    #[error("rollout of Deployment/{deployment} failed: {reason}")]
    Rollout {
        /// The Deployment.
        deployment: String,
        /// Why.
        reason: String,
    },
    /// A smoke check failed.
    #[error("smoke check {check:?} failed on {deployment}: {message}")]
    Smoke {
        /// The canary Deployment.
        deployment: String,
        /// The check's name.
        check: String,
        /// What was wrong.
        message: String,
    },
    /// A canary fell out of health while it soaked.
    #[error("canary Deployment/{deployment} became unhealthy while soaking: {reason}")]
    Soak {
        /// The canary Deployment.
        deployment: String,
        /// What its status says.
        reason: String,
    },
    /// A maintenance Job's pod did not start in time.
    #[error("the pod of Job/{job} did not start within {seconds} s: {reason}")]
    JobStart {
        /// The Job.
        job: String,
        /// How long we waited.
        seconds: u64,
        /// What the pod waits for (`ImagePullBackOff: ...`).
        reason: String,
    },
    /// A deploy's schema Job failed: nothing of the new code was applied. Boxed: the failure
    /// carries the script's output, and every other `Result` of this crate would pay its size.
    #[error("{0}")]
    Schema(Box<SchemaFailure>),
    /// Stopped because another cluster failed.
    #[error("stopped because another cluster failed")]
    Aborted,
    /// Another deploy or rollback holds the deploy lock.
    #[error("another deploy holds the lock (Lease wikikube-deploy): {holder}, since {since}, renewed {renewed_seconds_ago} s ago; wait for it to finish; if that process died, the lock expires {expires_after_seconds} s after its last renewal")]
    Locked {
        /// Its holderIdentity: `USER@HOST pid N`.
        holder: String,
        /// When it took the lock.
        since: String,
        /// How long ago it last renewed it.
        renewed_seconds_ago: i64,
        /// Its leaseDurationSeconds.
        expires_after_seconds: i64,
    },
    /// The deploy lock was released while we waited to take it over.
    #[error("the deploy lock (Lease wikikube-deploy) was released while we waited to take it over; another deploy may be starting: run the command again")]
    LockReleased,
    /// Our deploy lock was taken over or could not be renewed in time; the run stopped.
    #[error("lost the deploy lock (Lease wikikube-deploy): {message}; this run stopped where it was, as if killed: see `wikikube history`, then `wikikube deploy --resume` or `wikikube rollback` once nobody else is deploying")]
    LockLost {
        /// Why.
        message: String,
    },
    /// The last deploy did not finish.
    #[error("revision {revision} (by {user}) stopped in state {state}: run `wikikube deploy --resume` to finish it with the same site, or `wikikube rollback` to undo it")]
    Interrupted {
        /// Its revision.
        revision: u64,
        /// Where it stopped.
        state: State,
        /// Who ran it.
        user: String,
    },
    /// `--resume` with a site that renders differently from the interrupted deploy.
    #[error("revision {revision} was interrupted with different objects than the site renders now; `wikikube rollback` it, then deploy")]
    ResumeMismatch {
        /// The interrupted revision.
        revision: u64,
    },
    /// An object to apply again was deleted a moment ago and is still going at the deadline.
    #[error("{object} is still being deleted (since {since}, finalizers: {finalizers:?}) after waiting {waited:?} for it to be gone; it cannot be applied again until it is: `kubectl get` it to see what holds it (pods that do not stop, a finalizer whose controller is down), then run the command again")]
    StillDeleting {
        /// The object.
        object: String,
        /// Its deletionTimestamp.
        since: String,
        /// How long we waited.
        waited: std::time::Duration,
        /// What still holds it.
        finalizers: Vec<String>,
    },
    /// The namespace is being deleted: nothing new can be created in it.
    #[error("the namespace is being deleted, and the API server refuses new objects in it ({message}); wait until `kubectl get namespaces` no longer lists it, then run the command again, which creates it anew")]
    NamespaceTerminating {
        /// The API server's words, which name the namespace.
        message: String,
    },
    /// There is no earlier revision.
    #[error("no earlier successful revision to roll back to")]
    NothingToRollBack,
    /// The revision's objects were pruned from the history.
    #[error("revision {revision}'s objects are no longer stored")]
    NotStored {
        /// The revision.
        revision: u64,
    },
    /// The compressed objects would not fit in one API object.
    #[error("the site's objects take {bytes} bytes compressed, more than a revision can hold")]
    RevisionTooLarge {
        /// Their size.
        bytes: usize,
    },
}

/// A schema Job that did not succeed, as [`Error::Schema`] reports it.
#[derive(Debug)]
pub struct SchemaFailure {
    /// The wiki.
    pub wiki: String,
    /// `update.php` or `install.php`.
    pub script: String,
    /// The Job, kept for its `ttlSecondsAfterFinished`.
    pub job: String,
    /// How it ended.
    pub outcome: jobs::Outcome,
    /// The script's last lines.
    pub tail: Vec<String>,
}

impl std::fmt::Display for SchemaFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the schema Job for wiki {} ({}, Job/{}) {}; nothing of the new release was applied; \
             its last lines of output:\n{}",
            self.wiki,
            self.script,
            self.job,
            self.outcome,
            indent(&self.tail)
        )
    }
}

fn indent(lines: &[String]) -> String {
    if lines.is_empty() {
        return "  (no output)".into();
    }
    lines
        .iter()
        .map(|line| format!("  | {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    /// The error and every cause under it, on one line: what a report keeps, since it keeps
    /// text (`cannot apply Namespace/farm: namespaces "farm" is forbidden: ...`).
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        if let Error::Kube {
            source: kube::Error::Api(status),
            ..
        } = self
        {
            // The client's own text repeats the status twice over; its message says it all.
            text.push_str(&format!(": {} ({})", status.message, status.reason));
            return text;
        }
        let mut cause = std::error::Error::source(self);
        while let Some(error) = cause {
            text.push_str(": ");
            text.push_str(&error.to_string());
            cause = error.source();
        }
        text
    }

    /// A failed request: the namespace being deleted is told as such (a 403 with the
    /// `NamespaceTerminating` cause, from the API server's NamespaceLifecycle admission), any
    /// other failure with what we were doing.
    pub(crate) fn kube(action: String, source: kube::Error) -> Error {
        if let kube::Error::Api(status) = &source {
            let cause = status
                .details
                .iter()
                .flat_map(|details| &details.causes)
                .find(|cause| cause.reason == "NamespaceTerminating");
            if let Some(cause) = cause.filter(|_| status.is_forbidden()) {
                return Error::NamespaceTerminating {
                    message: cause.message.clone(),
                };
            }
        }
        Error::Kube { action, source }
    }
}

/// A runtime for the CLI's blocking calls into this crate (which is async, waiting on the
/// network). Two worker threads: the work is waiting, not computing.
pub fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}
