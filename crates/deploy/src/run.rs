//! A deploy as a whole: every cluster in parallel (bounded), each going through the phases with
//! its record's [`State`] written at every step, and, if anything fails anywhere, every release
//! the run touched put back in every cluster.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use crate::apply::{self, Mode, ObjectRef};
use crate::canary::{Applied, Gate};
use crate::config::SmokeCheck;
use crate::history::{self, Action, Record, State};
use crate::plan::{self, Phase, Step};
use crate::progress::Progress;
use crate::rollback;
use crate::{inventory, lock, rollout, Error, Target};

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

/// One cluster's run, as far as it got.
pub(crate) struct ClusterRun {
    pub(crate) record: Option<Record>,
    /// Phases whose objects were (or may have been, in an earlier interrupted run) applied.
    pub(crate) touched: BTreeSet<Phase>,
    pub(crate) applied: usize,
    pub(crate) pruned: Vec<ObjectRef>,
    pub(crate) error: Option<Error>,
    pub(crate) started: Instant,
}

/// Deploys `steps` (from [`plan::plan`]) to every cluster: canary, gate, main, holding the deploy
/// lock of every cluster ([`lock`]). Any failure rolls back what the run touched in every
/// cluster. Never returns early: the report says what happened in each cluster, including an
/// error that stopped it.
pub async fn deploy(
    targets: &[Target],
    namespace: &str,
    steps: &[Step],
    options: &Options,
    progress: &dyn Progress,
) -> DeployReport {
    let namespace_step = steps.iter().find(|step| step.object.kind == "Namespace");
    let work = run_all(
        targets,
        namespace,
        |_| Ok((steps.to_vec(), Action::Deploy)),
        options,
        true,
        progress,
    );
    lock::hold(targets, namespace, options, namespace_step, work).await
}

/// Runs `steps_for` in every cluster; shared by deploy and rollback.
pub(crate) async fn run_all(
    targets: &[Target],
    namespace: &str,
    steps_for: impl Fn(usize) -> Result<(Vec<Step>, Action), Error>,
    options: &Options,
    gate: bool,
    progress: &dyn Progress,
) -> DeployReport {
    let abort = AtomicBool::new(false);
    let work: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(index, target)| (target, steps_for(index)))
        .collect();
    let runs: Vec<(ClusterRun, Vec<Step>)> = futures::stream::iter(work)
        .map(|(target, steps)| {
            let abort = &abort;
            async move {
                match steps {
                    Ok((steps, action)) => {
                        let run = run_cluster(
                            target, namespace, &steps, action, options, gate, abort, progress,
                        )
                        .await;
                        (run, steps)
                    }
                    Err(error) => {
                        abort.store(true, Ordering::Relaxed);
                        (ClusterRun::failed(error), Vec::new())
                    }
                }
            }
        })
        .buffered(options.parallel.max(1))
        .collect()
        .await;

    let failed = runs.iter().any(|(run, _)| run.error.is_some());
    let first_failure = targets.iter().zip(&runs).find_map(|(target, (run, _))| {
        run.error
            .as_ref()
            .filter(|error| !matches!(error, Error::Aborted))
            .map(|error| format!("{}: {error}", target.name))
    });
    let mut reports = Vec::new();
    // Roll back all at once too: a failed canary in one datacenter should not leave the other
    // serving it for longer than needed.
    let undo = targets.iter().zip(runs).map(|(target, (mut run, steps))| {
        let reason = first_failure
            .clone()
            .unwrap_or_else(|| "another cluster failed".into());
        async move {
            let mut rolled_back = false;
            let mut rollback_failure = None;
            if failed && run.record.is_some() {
                progress.event(&target.name, None, "rolling back");
                match rollback::undo(
                    target, namespace, &mut run, &steps, options, &reason, progress,
                )
                .await
                {
                    Ok(()) => rolled_back = true,
                    Err(error) => rollback_failure = Some(error.to_string()),
                }
            }
            ClusterReport {
                cluster: target.name.clone(),
                revision: run.record.as_ref().map(|record| record.revision),
                state: run.record.as_ref().map(|record| record.state),
                applied: run.applied,
                pruned: run.pruned,
                failure: run.error.map(|error| error.to_string()),
                rolled_back,
                rollback_failure,
                seconds: run.started.elapsed().as_secs_f64(),
                lock_release_failure: None,
            }
        }
    });
    reports.extend(futures::future::join_all(undo).await);
    DeployReport {
        ok: !failed,
        failure: if failed {
            first_failure.or_else(|| Some("aborted".into()))
        } else {
            None
        },
        clusters: reports,
    }
}

impl ClusterRun {
    fn new() -> ClusterRun {
        ClusterRun {
            record: None,
            touched: BTreeSet::new(),
            applied: 0,
            pruned: Vec::new(),
            error: None,
            started: Instant::now(),
        }
    }

    fn failed(error: Error) -> ClusterRun {
        ClusterRun {
            error: Some(error),
            ..ClusterRun::new()
        }
    }
}

#[allow(clippy::too_many_arguments)] // The inputs of one cluster's run, each distinct.
async fn run_cluster(
    target: &Target,
    namespace: &str,
    steps: &[Step],
    action: Action,
    options: &Options,
    gate: bool,
    abort: &AtomicBool,
    progress: &dyn Progress,
) -> ClusterRun {
    let mut run = ClusterRun::new();
    let result = drive(
        &mut run, target, namespace, steps, action, options, gate, abort, progress,
    )
    .await;
    if let Err(error) = result {
        abort.store(true, Ordering::Relaxed);
        progress.event(&target.name, None, &format!("failed: {error}"));
        run.error = Some(error);
    }
    run
}

#[allow(clippy::too_many_arguments)] // The inputs of one cluster's run, each distinct.
async fn drive(
    run: &mut ClusterRun,
    target: &Target,
    namespace: &str,
    steps: &[Step],
    action: Action,
    options: &Options,
    gate: bool,
    abort: &AtomicBool,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let client = &target.client;
    let records = history::read(client, namespace).await?;
    let interrupted = records
        .last()
        .filter(|record| !record.state.is_terminal())
        .cloned();
    let hash = history::values_hash(steps);
    let (mut record, from) = match interrupted {
        Some(record) if options.resume && action == Action::Deploy => {
            if record.values_hash != hash {
                return Err(Error::ResumeMismatch {
                    revision: record.revision,
                });
            }
            progress.event(
                &target.name,
                None,
                &format!(
                    "resuming revision {} from {}",
                    record.revision, record.state
                ),
            );
            let from = match record.state {
                State::Started => Phase::Shared,
                State::CanaryApplied => Phase::Canary,
                _ => Phase::Main,
            };
            // An earlier process may have applied any phase before the one we resume at.
            run.touched
                .extend(Phase::ALL.into_iter().filter(|phase| *phase <= from));
            (record, from)
        }
        Some(mut record) if matches!(action, Action::Rollback { .. }) => {
            record.state = State::RolledBack;
            record.failure = Some("interrupted; replaced by a rollback".into());
            history::save(client, namespace, &record).await?;
            (
                new_record(
                    run, target, namespace, steps, action, options, &records, progress,
                )
                .await?,
                Phase::Shared,
            )
        }
        Some(record) => {
            return Err(Error::Interrupted {
                revision: record.revision,
                state: record.state,
                user: record.user,
            })
        }
        None => (
            new_record(
                run, target, namespace, steps, action, options, &records, progress,
            )
            .await?,
            Phase::Shared,
        ),
    };
    run.record = Some(record.clone());

    let gate_runner = Gate {
        target,
        namespace,
        poll: options.poll,
        extra_wait: options.extra_wait,
        abort,
        progress,
    };
    if from <= Phase::Shared {
        apply_phase(
            run,
            target,
            namespace,
            steps,
            Phase::Shared,
            abort,
            progress,
        )
        .await?;
        let debug =
            apply_phase(run, target, namespace, steps, Phase::Debug, abort, progress).await?;
        gate_runner.rollouts(Phase::Debug, &debug).await?;
    }
    if from <= Phase::Canary {
        let canaries = apply_phase(
            run,
            target,
            namespace,
            steps,
            Phase::Canary,
            abort,
            progress,
        )
        .await?;
        set_state(run, client, namespace, &mut record, State::CanaryApplied).await?;
        gate_runner.rollouts(Phase::Canary, &canaries).await?;
        if gate {
            gate_runner.smoke(&canaries, &options.smoke).await?;
            gate_runner.soak(&canaries, options.soak).await?;
        }
        set_state(run, client, namespace, &mut record, State::CanaryHealthy).await?;
    }
    let main = apply_phase(run, target, namespace, steps, Phase::Main, abort, progress).await?;
    set_state(run, client, namespace, &mut record, State::MainApplied).await?;
    gate_runner.rollouts(Phase::Main, &main).await?;
    let keep: Vec<ObjectRef> = steps.iter().map(|step| step.object.clone()).collect();
    run.pruned = inventory::prune(client, namespace, &keep).await?;
    for object in &run.pruned {
        progress.event(&target.name, Some(Phase::Main), &format!("pruned {object}"));
    }
    set_state(run, client, namespace, &mut record, State::Done).await?;
    history::prune_revisions(client, namespace).await?;
    progress.event(
        &target.name,
        None,
        &format!("revision {} done", record.revision),
    );
    Ok(())
}

/// Applies the Namespace (the history lives in it), then records a new revision.
#[allow(clippy::too_many_arguments)] // The inputs of one cluster's run, each distinct.
async fn new_record(
    run: &mut ClusterRun,
    target: &Target,
    namespace: &str,
    steps: &[Step],
    action: Action,
    options: &Options,
    records: &[Record],
    progress: &dyn Progress,
) -> Result<Record, Error> {
    let client = &target.client;
    for step in steps.iter().filter(|step| step.object.kind == "Namespace") {
        apply::apply_value(client, namespace, &step.object, &step.body, Mode::Apply).await?;
        run.applied += 1;
    }
    let revision = records
        .iter()
        .map(|record| record.revision)
        .max()
        .unwrap_or(0)
        + 1;
    let record = Record::new(revision, action, &options.user, steps);
    history::store_revision(client, namespace, revision, steps).await?;
    history::save(client, namespace, &record).await?;
    progress.event(&target.name, None, &format!("revision {revision} started"));
    Ok(record)
}

async fn set_state(
    run: &mut ClusterRun,
    client: &kube::Client,
    namespace: &str,
    record: &mut Record,
    state: State,
) -> Result<(), Error> {
    record.state = state;
    history::save(client, namespace, record).await?;
    run.record = Some(record.clone());
    Ok(())
}

/// Applies one phase's objects, inventory first; returns its Deployments for the gate.
pub(crate) async fn apply_phase(
    run: &mut ClusterRun,
    target: &Target,
    namespace: &str,
    steps: &[Step],
    phase: Phase,
    abort: &AtomicBool,
    progress: &dyn Progress,
) -> Result<Vec<Applied>, Error> {
    if abort.load(Ordering::Relaxed) {
        return Err(Error::Aborted);
    }
    let client = &target.client;
    let steps: Vec<&Step> = plan::phase(steps, phase).collect();
    if steps.is_empty() {
        return Ok(Vec::new());
    }
    run.touched.insert(phase);
    inventory::add(
        client,
        namespace,
        steps.iter().map(|step| step.object.clone()),
    )
    .await?;
    let mut deployments = Vec::new();
    for step in &steps {
        let result =
            apply::apply_value(client, namespace, &step.object, &step.body, Mode::Apply).await?;
        run.applied += 1;
        if step.object.kind == "Deployment" {
            deployments.push(Applied {
                step: (*step).clone(),
                since: rollout::applied_at(&result),
            });
        }
    }
    progress.event(
        &target.name,
        Some(phase),
        &format!("applied {} object(s)", steps.len()),
    );
    Ok(deployments)
}
