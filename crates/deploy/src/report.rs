//! What a deploy or rollback is given ([`Options`]) and what it reports ([`DeployReport`],
//! one [`ClusterReport`] per cluster). Shared by [`crate::run`], [`mod@crate::rollback`] and
//! [`crate::lock`], which is why it lives apart from all three.

use std::time::Duration;

use serde::Serialize;

use crate::apply::ObjectRef;
use crate::config::SmokeCheck;
use crate::history::State;

/// How a deploy runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Who runs it, for the history.
    pub user: String,
    /// How long the canaries soak.
    pub soak: Duration,
    /// The canaries' smoke checks.
    pub smoke: Vec<SmokeCheck>,
    /// Time between two reads of a rollout's status.
    pub poll: Duration,
    /// Time allowed past a Deployment's progressDeadlineSeconds before we give up on it.
    pub extra_wait: Duration,
    /// How many clusters deploy at once.
    pub parallel: usize,
    /// Go on with an interrupted deploy instead of refusing to start.
    pub resume: bool,
    /// How long the deploy lock lasts after its last renewal; it is renewed every third of it.
    pub lock_duration: Duration,
    /// The wikis' schema Jobs ([`crate::schema`]); none: the deploy runs none (a rollback).
    pub schema: Option<crate::schema::Schema>,
    /// How many done revisions' versioned ConfigMaps and Secrets the prune keeps, the one going
    /// live included ([`crate::history::retained`]); at least 1.
    pub config_revisions: usize,
    /// How long an object to apply may still be being deleted before we give up on it
    /// ([`crate::deletion`]).
    pub deletion_timeout: Duration,
    /// Before each apply, remove the fields other field managers set that the site does not
    /// render, and make wikikube sole owner of the rest ([`crate::ownership::take_over`]).
    pub take_over_fields: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            soak: Duration::from_secs(60),
            smoke: Vec::new(),
            poll: Duration::from_secs(2),
            extra_wait: Duration::from_secs(60),
            parallel: 4,
            resume: false,
            // Long enough that a slow API server does not cost us the lock between renewals,
            // short enough that a killed deploy does not block the next one for long.
            lock_duration: Duration::from_secs(60),
            schema: None,
            config_revisions: crate::history::DEFAULT_CONFIG_REVISIONS,
            // A deleted Deployment goes when its pods have: their preStop sleep, up to the
            // grace period (214 s with the default request timeout), then the garbage
            // collector's rounds. Twice that leaves room for a busy cluster.
            deletion_timeout: Duration::from_secs(600),
            take_over_fields: false,
        }
    }
}

/// What happened in one cluster.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterReport {
    /// The cluster.
    pub cluster: String,
    /// The revision recorded, if it got that far.
    pub revision: Option<u64>,
    /// Its final state.
    pub state: Option<State>,
    /// Objects applied.
    pub applied: usize,
    /// Objects pruned.
    pub pruned: Vec<ObjectRef>,
    /// What failed here, if anything.
    pub failure: Option<String>,
    /// Whether this cluster was put back.
    pub rolled_back: bool,
    /// What went wrong while putting it back: this cluster needs a person.
    pub rollback_failure: Option<String>,
    /// Wall time, in seconds.
    pub seconds: f64,
    /// Why the deploy lock could not be released: the next deploy waits for it to expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_release_failure: Option<String>,
}

impl ClusterReport {
    /// A cluster where no work started, with why.
    pub(crate) fn not_started(cluster: &str, failure: Option<String>) -> ClusterReport {
        ClusterReport {
            cluster: cluster.to_string(),
            revision: None,
            state: None,
            applied: 0,
            pruned: Vec::new(),
            failure,
            rolled_back: false,
            rollback_failure: None,
            seconds: 0.0,
            lock_release_failure: None,
        }
    }
}

/// What happened everywhere.
#[derive(Clone, Debug, Serialize)]
pub struct DeployReport {
    /// Whether every cluster finished.
    pub ok: bool,
    /// The first failure, naming the cluster and the check.
    pub failure: Option<String>,
    /// One entry per cluster, in the environment's order.
    pub clusters: Vec<ClusterReport>,
}

impl DeployReport {
    /// The summary for people.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for cluster in &self.clusters {
            let state = cluster
                .state
                .map_or("not started".to_string(), |s| s.to_string());
            out.push_str(&format!(
                "{}: revision {}, {state}, {} applied, {} pruned, {:.1} s",
                cluster.cluster,
                cluster.revision.map_or("-".into(), |r| r.to_string()),
                cluster.applied,
                cluster.pruned.len(),
                cluster.seconds
            ));
            if let Some(failure) = &cluster.failure {
                out.push_str(&format!("\n  failed: {failure}"));
            }
            if let Some(failure) = &cluster.rollback_failure {
                out.push_str(&format!("\n  ROLLBACK FAILED: {failure}"));
            }
            if let Some(failure) = &cluster.lock_release_failure {
                out.push_str(&format!("\n  lock not released: {failure}"));
            }
            out.push('\n');
        }
        match &self.failure {
            None => out.push_str("deploy complete\n"),
            // Refused before any revision was recorded (the lock, an interrupted deploy):
            // there was nothing to roll back.
            Some(failure) if self.clusters.iter().all(|c| c.revision.is_none()) => {
                out.push_str(&format!("deploy did not start: {failure}\n"));
            }
            // A lost lock stops the run without a rollback: that is the new holder's to decide.
            Some(failure)
                if !self
                    .clusters
                    .iter()
                    .any(|c| c.rolled_back || c.rollback_failure.is_some()) =>
            {
                out.push_str(&format!("deploy failed: {failure}\n"));
            }
            Some(failure) => out.push_str(&format!("deploy failed and rolled back: {failure}\n")),
        }
        out
    }
}
