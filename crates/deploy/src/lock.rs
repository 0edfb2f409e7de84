//! The deploy lock: one `coordination.k8s.io/v1` Lease, [`LEASE_NAME`], in the site's namespace
//! of each cluster, held by a deploy or rollback from before it reads the history until after any
//! rollback of its own, so that two people cannot deploy to the same cluster at once.
//!
//! A Lease rather than a field in the history: creation is atomic on the API server (the loser
//! gets 409 AlreadyExists), every later write carries the resourceVersion we read (the loser gets
//! 409 Conflict), and a holder that dies stops renewing, so its lock expires on its own.
//! All clusters are locked before work starts in any (`hold`): a run that could lock only some
//! would roll back, across clusters, a deploy that never had the others.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::apply::{self, Mode};
use crate::history;
use crate::plan::Step;
use crate::report::{ClusterReport, DeployReport, Options};
use crate::{Error, Target};

/// The Lease's name, in the site's namespace.
pub const LEASE_NAME: &str = "wikikube-deploy";

/// Who we are, as the Lease's holderIdentity says it: `USER@HOSTNAME pid N`.
pub fn holder_identity(user: &str) -> String {
    // No crate for one read: the kernel's name is what `hostname` prints; $HOSTNAME is a shell
    // variable that is often not exported.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{user}@{host} pid {}", std::process::id())
}

/// A Lease we hold in one cluster. The resourceVersion of our last write is the proof that it
/// is still ours: the identity alone cannot tell two runs of one user on one host apart.
pub struct Lock {
    api: Api<Lease>,
    lease: Lease,
    duration: Duration,
    renewed: jiff::Timestamp,
}

fn seconds(duration: Duration) -> i32 {
    // A Lease counts whole seconds; never round a short test duration down to zero.
    i32::try_from(duration.as_secs_f64().ceil() as u64)
        .unwrap_or(i32::MAX)
        .max(1)
}

fn spec(holder: &str, duration: Duration, now: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.to_string()),
        acquire_time: Some(MicroTime(now)),
        renew_time: Some(MicroTime(now)),
        lease_duration_seconds: Some(seconds(duration)),
        ..LeaseSpec::default()
    }
}

fn api_error(action: &str, source: kube::Error) -> Error {
    Error::kube(format!("{action} Lease/{LEASE_NAME}"), source)
}

/// The error for a Lease someone else holds.
fn held(lease: &Lease, now: jiff::Timestamp) -> Error {
    let spec = lease.spec.clone().unwrap_or_default();
    let renewed = last_renewal(lease);
    Error::Locked {
        holder: spec.holder_identity.unwrap_or_else(|| "someone".into()),
        since: spec
            .acquire_time
            .map(|time| time.0)
            .or(renewed)
            .map_or_else(|| "an unknown time".into(), |time| time.to_string()),
        renewed_seconds_ago: renewed.map_or(0, |time| now.duration_since(time).as_secs().max(0)),
        expires_after_seconds: i64::from(spec.lease_duration_seconds.unwrap_or(0)),
    }
}

fn last_renewal(lease: &Lease) -> Option<jiff::Timestamp> {
    let spec = lease.spec.as_ref();
    spec.and_then(|spec| spec.renew_time.as_ref().or(spec.acquire_time.as_ref()))
        .map(|time| time.0)
        .or_else(|| {
            lease
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|time| time.0)
        })
}

/// Whether the holder's last renewal plus its own duration is past, by our clock. That compares
/// the holder's clock with ours, so it only decides that a Lease is *live* (refused at once); one
/// that looks expired is taken over only after [`unchanged_for_its_duration`].
fn expired(lease: &Lease, now: jiff::Timestamp) -> bool {
    let Some(renewed) = last_renewal(lease) else {
        return true;
    };
    let duration = lease
        .spec
        .as_ref()
        .and_then(|spec| spec.lease_duration_seconds)
        .unwrap_or(0);
    renewed + jiff::SignedDuration::from_secs(i64::from(duration)) < now
}

/// Takes the lock in `namespace`: creates the Lease, or takes over one whose holder stopped
/// renewing it. Fails at once with [`Error::Locked`] when someone else holds it.
///
/// `namespace_step`, if given, is applied first when the namespace does not exist yet (a first
/// deploy): the Lease needs its namespace, and applying a Namespace twice is harmless.
pub async fn acquire(
    client: &kube::Client,
    namespace: &str,
    holder: &str,
    duration: Duration,
    namespace_step: Option<&Step>,
) -> Result<Lock, Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let now = jiff::Timestamp::now();
    let fresh = Lease {
        metadata: ObjectMeta {
            name: Some(LEASE_NAME.into()),
            namespace: Some(namespace.into()),
            ..ObjectMeta::default()
        },
        spec: Some(spec(holder, duration, now)),
    };
    let mut created = api.create(&PostParams::default(), &fresh).await;
    if let (Err(kube::Error::Api(status)), Some(step)) = (&created, namespace_step) {
        if status.is_not_found() {
            apply::apply_value(client, namespace, &step.object, &step.body, Mode::Apply).await?;
            created = api.create(&PostParams::default(), &fresh).await;
        }
    }
    let lease = match created {
        Ok(lease) => lease,
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            let Some(existing) = api
                .get_opt(LEASE_NAME)
                .await
                .map_err(|source| api_error("read", source))?
            else {
                // Released between our create and our read: the holder is gone, but another
                // deploy may be taking it right now, so let the user try again.
                return Err(Error::kube(
                    format!("create Lease/{LEASE_NAME}"),
                    kube::Error::Api(status),
                ));
            };
            if !expired(&existing, now) {
                return Err(held(&existing, now));
            }
            let existing = unchanged_for_its_duration(&api, existing).await?;
            let mut takeover = existing.clone();
            let transitions = existing
                .spec
                .as_ref()
                .and_then(|spec| spec.lease_transitions)
                .unwrap_or(0);
            takeover.spec = Some(LeaseSpec {
                lease_transitions: Some(transitions + 1),
                ..spec(holder, duration, now)
            });
            // `existing` carries the resourceVersion we read: if another deploy took it over
            // first, the server refuses ours with a Conflict.
            match api
                .replace(LEASE_NAME, &PostParams::default(), &takeover)
                .await
            {
                Ok(lease) => lease,
                Err(kube::Error::Api(status)) if status.is_conflict() || status.is_not_found() => {
                    let winner = api
                        .get_opt(LEASE_NAME)
                        .await
                        .map_err(|source| api_error("read", source))?;
                    return Err(held(winner.as_ref().unwrap_or(&takeover), now));
                }
                Err(source) => return Err(api_error("take over", source)),
            }
        }
        Err(source) => return Err(api_error("create", source)),
    };
    Ok(Lock {
        api,
        lease,
        duration,
        renewed: now,
    })
}

/// Watches a Lease whose renewTime looks expired for its whole duration by our own clock, and
/// returns it if nobody wrote it meanwhile. As client-go's leader election does, this trusts
/// only what we saw change: a holder whose clock is behind ours writes renewTimes that look old
/// while it renews every third of the duration, and must not lose its lock to us. A holder that
/// died is taken over one duration later than its timestamps say.
async fn unchanged_for_its_duration(api: &Api<Lease>, existing: Lease) -> Result<Lease, Error> {
    let seconds = existing
        .spec
        .as_ref()
        .and_then(|spec| spec.lease_duration_seconds)
        .unwrap_or(0)
        .max(1);
    let duration = Duration::from_secs(u64::try_from(seconds).unwrap_or(1));
    let poll = (duration / 10).clamp(Duration::from_millis(50), Duration::from_secs(2));
    let watching = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(poll).await;
        let current = api
            .get_opt(LEASE_NAME)
            .await
            .map_err(|source| api_error("read", source))?;
        let Some(current) = current else {
            // Released while we watched: another deploy may be taking it right now.
            return Err(Error::LockReleased);
        };
        if current.metadata.resource_version != existing.metadata.resource_version {
            return Err(held(&current, jiff::Timestamp::now()));
        }
        if watching.elapsed() >= duration {
            return Ok(existing);
        }
    }
}

impl Lock {
    /// The Lease as we last wrote it.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Moves renewTime to now. A transient failure is retried at the next renewal while the
    /// lease has not expired; a Conflict or NotFound means someone else changed it: lost.
    pub async fn renew(&mut self) -> Result<(), Error> {
        let now = jiff::Timestamp::now();
        let mut lease = self.lease.clone();
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(now));
        }
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(lease) => {
                self.lease = lease;
                self.renewed = now;
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_not_found() => {
                Err(Error::LockLost {
                    message: format!("someone else changed or deleted it ({})", status.message),
                })
            }
            Err(source) => {
                let deadline = self.renewed
                    + jiff::SignedDuration::from_secs(i64::from(seconds(self.duration)));
                if now >= deadline {
                    Err(Error::LockLost {
                        message: format!("it expired: it could not be renewed: {source}"),
                    })
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Deletes the Lease if it is still ours: the delete carries our last resourceVersion, so
    /// a lease someone else took over in the meantime stays.
    pub async fn release(self) -> Result<(), Error> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: self.lease.metadata.resource_version.clone(),
                uid: self.lease.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        match self.api.delete(LEASE_NAME, &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() || status.is_conflict() => {
                Ok(())
            }
            Err(source) => Err(api_error("release", source)),
        }
    }
}

/// Runs `work` while holding the lock of every target, renewing each every third of
/// `options.lock_duration`, and releases them all when `work` ends, whatever its outcome.
///
/// If any lock cannot be taken, nothing runs: the locks taken are released and the report says
/// which cluster is held by whom. If a lock is lost while `work` runs, `work` is dropped at once,
/// exactly as if this process had been killed (the state its new holder assumed when taking it
/// over); the history says where each cluster stopped.
pub(crate) async fn hold<F>(
    targets: &[Target],
    namespace: &str,
    options: &Options,
    namespace_step: Option<&Step>,
    work: F,
) -> DeployReport
where
    F: Future<Output = DeployReport>,
{
    let holder = holder_identity(&options.user);
    let attempts = targets.iter().map(|target| {
        acquire(
            &target.client,
            namespace,
            &holder,
            options.lock_duration,
            namespace_step,
        )
    });
    let results = futures::future::join_all(attempts).await;
    if results.iter().any(Result::is_err) {
        let mut clusters = Vec::new();
        let mut first = None;
        for (target, result) in targets.iter().zip(results) {
            let failure = match result {
                Ok(lock) => {
                    // Ours, but unused: a failure to delete it only delays the next deploy
                    // by one lease duration, and the report already says why this one failed.
                    let _ = lock.release().await;
                    None
                }
                Err(error) => Some(error.with_causes()),
            };
            if first.is_none() {
                first = failure
                    .as_ref()
                    .map(|failure| format!("{}: {failure}", target.name));
            }
            clusters.push(ClusterReport::not_started(&target.name, failure));
        }
        return DeployReport {
            ok: false,
            failure: first,
            clusters,
        };
    }
    let mut locks: Vec<Lock> = results.into_iter().map(|r| r.expect("checked")).collect();

    let interval = (options.lock_duration / 3).max(Duration::from_millis(10));
    let renewals = async {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await; // The first tick is at once; we have just written the leases.
        loop {
            ticker.tick().await;
            let renewed =
                futures::future::join_all(locks.iter_mut().map(|lock| lock.renew())).await;
            if let Some(lost) = renewed
                .into_iter()
                .enumerate()
                .find_map(|(index, result)| result.err().map(|error| (index, error)))
            {
                return lost;
            }
        }
    };
    let outcome = tokio::select! {
        report = work => Ok(report),
        (index, error) = renewals => Err((index, error)),
    };
    let mut report = match outcome {
        Ok(report) => report,
        Err((index, error)) => {
            // The run's own account went with it; the history says where each cluster stopped.
            // Reading it is harmless to whoever holds the lock now.
            let reads = targets.iter().enumerate().map(|(i, target)| {
                let failure = (i == index).then(|| error.with_causes());
                async move {
                    let mut report = ClusterReport::not_started(&target.name, failure);
                    if let Ok(records) = history::read(&target.client, namespace).await {
                        if let Some(record) = records.last() {
                            report.revision = Some(record.revision);
                            report.state = Some(record.state);
                        }
                    }
                    report
                }
            });
            DeployReport {
                ok: false,
                failure: Some(format!("{}: {}", targets[index].name, error.with_causes())),
                clusters: futures::future::join_all(reads).await,
            }
        }
    };
    let releases = futures::future::join_all(locks.into_iter().map(Lock::release)).await;
    for (cluster, result) in report.clusters.iter_mut().zip(releases) {
        if let Err(error) = result {
            // The work is done; a lock left behind only makes the next deploy wait for it to
            // expire, so it is worth a line but not a failure.
            cluster.lock_release_failure = Some(error.with_causes());
        }
    }
    report
}
