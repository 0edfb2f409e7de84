//! The rollout completion check: when is a Deployment's new version fully out, and when has it
//! failed?
//!
//! A Deployment is rolled out when all of these hold (the same test as `kubectl rollout status`,
//! plus the readiness counts):
//! - the controller has seen the spec we applied: `status.observedGeneration >= metadata.generation`.
//!   Until then every other status field describes the *previous* version, and trusting it would
//!   declare a rollout done before it started;
//! - updated, ready and available replicas all equal the desired replicas;
//! - no pod of an old version is left: `status.replicas == status.updatedReplicas`;
//! - no pod is still terminating. `status.replicas` leaves out pods being deleted, and a
//!   replaced pod runs its preStop sleep (210 s by default) before it stops: until then it
//!   still finishes requests of the old version and holds its node's resources, so a gate,
//!   soak or next phase started earlier would judge a mix. A server that reports
//!   `status.terminatingReplicas` (Kubernetes 1.33 and later, with the
//!   DeploymentReplicaSetTerminatingReplicas feature, on by default from 1.34) says how many;
//!   on older ones [`wait`] counts the Deployment's pods that have a `deletionTimestamp`.
//!
//! It has failed when the controller says `Progressing=False` with reason
//! `ProgressDeadlineExceeded`, but only if that condition belongs to this rollout: a condition
//! whose `lastUpdateTime` is older than our apply is left over from an earlier rollout and says
//! nothing about this one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::Error;

/// Where a rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Every replica runs the new version and is available.
    Complete,
    /// Still going; the text says what it waits for.
    Waiting(String),
    /// The controller gave up; the text says why.
    Failed(String),
}

/// Checks a Deployment's status for a rollout started (by the server's clock) at `since`.
pub fn check(deployment: &Deployment, since: Timestamp) -> Rollout {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let Some(status) = &deployment.status else {
        return Rollout::Waiting("no status yet".into());
    };
    let observed = status.observed_generation.unwrap_or(0);
    if observed < generation {
        return Rollout::Waiting(format!(
            "the controller has not seen generation {generation} yet (observed {observed})"
        ));
    }
    let deadline_exceeded = status.conditions.iter().flatten().find(|condition| {
        condition.type_ == "Progressing"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if let Some(condition) = deadline_exceeded {
        let updated = condition
            .last_update_time
            .as_ref()
            .or(condition.last_transition_time.as_ref())
            .map(|time| time.0);
        // A condition without times cannot be placed; the controller always sets them, so
        // treat a missing one as current rather than wait for ever.
        if updated.is_none_or(|updated| updated >= since) {
            return Rollout::Failed(format!(
                "progress deadline exceeded: {}",
                condition.message.as_deref().unwrap_or("no message")
            ));
        }
    }
    let count = |value: Option<i32>| value.unwrap_or(0);
    let updated = count(status.updated_replicas);
    let ready = count(status.ready_replicas);
    let available = count(status.available_replicas);
    let total = count(status.replicas);
    if updated < desired {
        return Rollout::Waiting(format!("{updated} of {desired} replicas updated"));
    }
    if total > updated {
        return Rollout::Waiting(format!(
            "{} old replica(s) still terminating",
            total - updated
        ));
    }
    if ready < desired || available < desired {
        return Rollout::Waiting(format!("{ready} of {desired} ready, {available} available"));
    }
    if let Some(terminating) = status.terminating_replicas.filter(|count| *count > 0) {
        return Rollout::Waiting(terminating_message(terminating));
    }
    Rollout::Complete
}

fn terminating_message(pods: i32) -> String {
    format!("{pods} replaced pod(s) still terminating (preStop sleep)")
}

/// The Deployment's pods that are being deleted, counted from the pod list; for servers whose
/// Deployment status has no `terminatingReplicas` (before Kubernetes 1.33).
async fn terminating_pods(api: &Api<Deployment>, deployment: &Deployment) -> Result<i32, Error> {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let labels = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.selector.match_labels.as_ref());
    let selector = labels
        .into_iter()
        .flatten()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",");
    if selector.is_empty() {
        // A selector of expressions only: wikikube renders none, and an empty one would
        // count every pod of the namespace.
        return Ok(0);
    }
    let namespace = deployment
        .metadata
        .namespace
        .as_deref()
        .unwrap_or("default");
    let pods: Api<Pod> = Api::namespaced(api.clone().into_client(), namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::kube(format!("list pods of Deployment/{name}"), source))?;
    let terminating = list
        .items
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_some())
        .count();
    Ok(i32::try_from(terminating).unwrap_or(i32::MAX))
}

/// How to wait for a rollout.
#[derive(Clone, Copy, Debug)]
pub struct WaitOptions {
    /// Time between two reads of the status.
    pub poll: Duration,
    /// Give up after this long **without progress**, even if the controller has not: the same
    /// measure as the controller's own `progressDeadlineSeconds`, which restarts whenever the
    /// rollout moves. A fixed limit from the start would fail a healthy rollout of many
    /// replicas rolled a few at a time.
    pub timeout: Duration,
}

/// The counts whose rise is progress, as the Deployment controller counts it: a newer
/// generation observed, more pods updated, ready or available.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    observed_generation: i64,
    updated: i32,
    ready: i32,
    available: i32,
    /// Pods still terminating, where known; fewer is progress.
    terminating: Option<i32>,
}

impl Counts {
    fn of(deployment: &Deployment) -> Counts {
        let status = deployment.status.as_ref();
        Counts {
            observed_generation: status.and_then(|s| s.observed_generation).unwrap_or(0),
            updated: status.and_then(|s| s.updated_replicas).unwrap_or(0),
            ready: status.and_then(|s| s.ready_replicas).unwrap_or(0),
            available: status.and_then(|s| s.available_replicas).unwrap_or(0),
            terminating: status.and_then(|s| s.terminating_replicas),
        }
    }

    /// Whether any count is above the highest seen so far (`best`), which then takes it. The
    /// highest, not the last: a pod that flaps between ready and not is no progress.
    fn rose(self, best: &mut Counts) -> bool {
        let fewer_terminating = match (self.terminating, best.terminating) {
            (Some(now), Some(least)) => now < least,
            _ => false,
        };
        let rose = self.observed_generation > best.observed_generation
            || self.updated > best.updated
            || self.ready > best.ready
            || self.available > best.available
            || fewer_terminating;
        best.terminating = match (self.terminating, best.terminating) {
            (Some(now), Some(least)) => Some(now.min(least)),
            (now, least) => now.or(least),
        };
        best.observed_generation = best.observed_generation.max(self.observed_generation);
        best.updated = best.updated.max(self.updated);
        best.ready = best.ready.max(self.ready);
        best.available = best.available.max(self.available);
        rose
    }
}

/// Polls a Deployment until [`check`] says it is complete or failed, or it makes no progress for
/// `timeout`. `report` hears every new waiting message; `abort` stops the wait early.
pub async fn wait(
    api: &Api<Deployment>,
    name: &str,
    since: Timestamp,
    options: WaitOptions,
    abort: &AtomicBool,
    mut report: impl FnMut(&str),
) -> Result<(), Error> {
    let mut last_progress = tokio::time::Instant::now();
    let mut best: Option<Counts> = None;
    let mut last = String::new();
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(Error::Aborted);
        }
        let deployment = api
            .get(name)
            .await
            .map_err(|source| Error::kube(format!("read Deployment/{name}"), source))?;
        let mut counts = Counts::of(&deployment);
        let mut verdict = check(&deployment, since);
        let reported = deployment
            .status
            .as_ref()
            .and_then(|status| status.terminating_replicas)
            .is_some();
        if verdict == Rollout::Complete && !reported {
            // Only once the rest is done: one list per poll while the old pods stop.
            let terminating = terminating_pods(api, &deployment).await?;
            counts.terminating = Some(terminating);
            if terminating > 0 {
                verdict = Rollout::Waiting(terminating_message(terminating));
            }
        }
        match &mut best {
            // The first read is where progress is measured from.
            None => best = Some(counts),
            Some(best) => {
                if counts.rose(best) {
                    last_progress = tokio::time::Instant::now();
                }
            }
        }
        match verdict {
            Rollout::Complete => return Ok(()),
            Rollout::Failed(reason) => {
                return Err(Error::Rollout {
                    deployment: name.into(),
                    reason,
                })
            }
            Rollout::Waiting(message) => {
                if message != last {
                    report(&message);
                    last = message;
                }
            }
        }
        if last_progress.elapsed() >= options.timeout {
            return Err(Error::Rollout {
                deployment: name.into(),
                reason: format!("no progress for {} s: {last}", options.timeout.as_secs()),
            });
        }
        tokio::time::sleep(options.poll).await;
    }
}

/// When our last apply changed a Deployment, by the server's clock: the `time` of our field
/// manager's entry in `managedFields`. Local clocks drift from the server's, so comparing a
/// condition's time with ours could call a fresh failure stale, or a stale one fresh.
pub fn applied_at(object: &kube::api::DynamicObject) -> Option<Timestamp> {
    object
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.manager.as_deref() == Some(crate::apply::FIELD_MANAGER))
        .filter_map(|entry| entry.time.as_ref().map(|time| time.0))
        .max()
}
