//! One cluster's run of a deploy or rollback (`Cluster`): the phases in order with the
//! record's [`State`] written at every step, the gate, pruning, and putting back what a failed
//! run touched; and `run_all`, every cluster in parallel (bounded), shared by
//! [`crate::run::deploy`] and [`crate::rollback::rollback`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::StreamExt;

use crate::apply::{self, ObjectRef};
use crate::canary::{Applied, Gate};
use crate::history::{self, Action, Record, State};
use crate::plan::{self, Phase, Step};
use crate::progress::Progress;
use crate::report::{ClusterReport, DeployReport, Options};
use crate::{inventory, rollout, Error, Target};

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
    let schema_gate = crate::schema::Gate::new(options.schema.is_some());
    let work: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(index, target)| (target, steps_for(index)))
        .collect();
    let runs: Vec<(ClusterRun, Vec<Step>)> = futures::stream::iter(work)
        .map(|(target, steps)| {
            let (abort, schema_gate) = (&abort, &schema_gate);
            // The database is the environment's: its schema Jobs run in the first cluster.
            let runs_schema = std::ptr::eq(target, &targets[0]);
            async move {
                match steps {
                    Ok((steps, action)) => {
                        let cluster = Cluster {
                            target,
                            namespace,
                            options,
                            abort,
                            progress,
                            schema_gate,
                            runs_schema,
                        };
                        let run = cluster.run(&steps, action, gate).await;
                        (run, steps)
                    }
                    Err(error) => {
                        if runs_schema {
                            schema_gate.open(false);
                        }
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
            .map(|error| format!("{}: {}", target.name, error.with_causes()))
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
                // The failure that caused the undo must not stop the undo's own waits.
                let calm = AtomicBool::new(false);
                let open = crate::schema::Gate::new(false);
                let cluster = Cluster {
                    target,
                    namespace,
                    options,
                    abort: &calm,
                    progress,
                    schema_gate: &open,
                    runs_schema: false,
                };
                match cluster.undo(&mut run, &steps, &reason).await {
                    Ok(()) => rolled_back = true,
                    Err(error) => rollback_failure = Some(error.with_causes()),
                }
            }
            ClusterReport {
                cluster: target.name.clone(),
                revision: run.record.as_ref().map(|record| record.revision),
                state: run.record.as_ref().map(|record| record.state),
                applied: run.applied,
                pruned: run.pruned,
                failure: run.error.map(|error| error.with_causes()),
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

/// One cluster's part of a deploy or rollback: what every step of its run needs.
pub(crate) struct Cluster<'a> {
    /// The cluster.
    pub(crate) target: &'a Target,
    /// The site's namespace.
    pub(crate) namespace: &'a str,
    /// How the deploy runs.
    pub(crate) options: &'a Options,
    /// Set when any cluster failed: every other cluster stops at its next step.
    pub(crate) abort: &'a AtomicBool,
    /// Where events go.
    pub(crate) progress: &'a dyn Progress,
    /// Opened by the cluster that runs the schema Jobs; the others wait at it.
    pub(crate) schema_gate: &'a crate::schema::Gate,
    /// Whether this cluster runs the schema Jobs (the environment's first).
    pub(crate) runs_schema: bool,
}

impl Cluster<'_> {
    fn client(&self) -> &kube::Client {
        &self.target.client
    }

    /// Applies one step's object for real; one still being deleted (removed a moment ago by a
    /// prune, an undo or a rollback) is waited for and created anew ([`crate::deletion`]).
    /// The Namespace is read first and left alone when it is as rendered: applying it is a
    /// cluster-scoped write that a namespace's deployer is rarely granted ([`crate::rbac`]).
    /// With `take_over_fields`, other managers' fields go first ([`crate::ownership`]).
    async fn apply_step(&self, step: &Step) -> Result<kube::api::DynamicObject, Error> {
        if step.object.kind == wikikube_render::ObjectKind::Namespace {
            let live = apply::get(self.client(), self.namespace, &step.object).await?;
            if let Some(live) = live.filter(|live| apply::namespace_current(live, &step.body)) {
                return Ok(live);
            }
        }
        if self.options.take_over_fields {
            let removed = crate::ownership::take_over(
                self.client(),
                self.namespace,
                &step.object,
                &step.body,
            )
            .await?;
            if !removed.is_empty() {
                let fields: Vec<String> = removed.iter().map(ToString::to_string).collect();
                self.progress.event(
                    &self.target.name,
                    Some(step.phase),
                    &format!(
                        "{}: took over from other field managers, removed {}",
                        step.object,
                        fields.join(", ")
                    ),
                );
            }
        }
        let options = crate::deletion::WaitOptions {
            poll: self.options.poll,
            timeout: self.options.deletion_timeout,
        };
        crate::deletion::apply_anew(
            self.client(),
            self.namespace,
            &step.object,
            &step.body,
            options,
            self.abort,
            |message| {
                self.progress
                    .event(&self.target.name, Some(step.phase), message);
            },
        )
        .await
    }

    fn gate(&self) -> Gate<'_> {
        Gate {
            target: self.target,
            namespace: self.namespace,
            poll: self.options.poll,
            extra_wait: self.options.extra_wait,
            abort: self.abort,
            progress: self.progress,
        }
    }

    /// Runs `steps` here; a failure is kept in the returned run and raises the abort flag.
    async fn run(&self, steps: &[Step], action: Action, gate: bool) -> ClusterRun {
        let mut run = ClusterRun::new();
        let result = self.drive(&mut run, steps, action, gate).await;
        if self.runs_schema {
            // Whatever happened, nobody may wait for Jobs that will not run any more.
            self.schema_gate.open(result.is_ok());
        }
        if let Err(error) = result {
            self.abort.store(true, Ordering::Relaxed);
            self.progress.event(
                &self.target.name,
                None,
                &format!("failed: {}", error.with_causes()),
            );
            run.error = Some(error);
        }
        run
    }

    async fn drive(
        &self,
        run: &mut ClusterRun,
        steps: &[Step],
        action: Action,
        gate: bool,
    ) -> Result<(), Error> {
        let (target, namespace, options, progress) =
            (self.target, self.namespace, self.options, self.progress);
        let client = self.client();
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
                    self.new_record(run, steps, action, &records).await?,
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
                self.new_record(run, steps, action, &records).await?,
                Phase::Shared,
            ),
        };
        run.record = Some(record.clone());

        let gate_runner = self.gate();
        if from <= Phase::Shared {
            self.apply_phase(run, steps, Phase::Shared).await?;
            self.schema(&records, record.revision).await?;
            let debug = self.apply_phase(run, steps, Phase::Debug).await?;
            gate_runner.rollouts(Phase::Debug, &debug).await?;
        }
        if from > Phase::Shared && self.runs_schema {
            // Resumed past the schema Jobs: they ran in the interrupted run.
            self.schema_gate.open(true);
        }
        if from <= Phase::Canary {
            let canaries = self.apply_phase(run, steps, Phase::Canary).await?;
            set_state(run, client, namespace, &mut record, State::CanaryApplied).await?;
            gate_runner.rollouts(Phase::Canary, &canaries).await?;
            if gate {
                gate_runner.smoke(&canaries, &options.smoke).await?;
                gate_runner.soak(&canaries, options.soak).await?;
            }
            set_state(run, client, namespace, &mut record, State::CanaryHealthy).await?;
        }
        let main = self.apply_phase(run, steps, Phase::Main).await?;
        set_state(run, client, namespace, &mut record, State::MainApplied).await?;
        gate_runner.rollouts(Phase::Main, &main).await?;
        let mut keep: Vec<ObjectRef> = steps.iter().map(|step| step.object.clone()).collect();
        // This revision is the newest of the `config_revisions` whose versions stay.
        let earlier = options.config_revisions.saturating_sub(1);
        keep.extend(history::retained(client, namespace, &records, earlier).await?);
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

    /// The schema Jobs, after the shared objects (the Jobs mount the Secret and the maintenance
    /// ConfigMaps) and before any new code: run here, or waited for.
    async fn schema(&self, records: &[Record], revision: u64) -> Result<(), Error> {
        let Some(schema) = &self.options.schema else {
            return Ok(());
        };
        if !self.runs_schema {
            return self.schema_gate.wait(self.abort).await;
        }
        let work = crate::schema::work(&schema.template, records, revision);
        let result = crate::schema::run(
            self.target,
            self.namespace,
            schema,
            &work,
            revision,
            self.abort,
            self.progress,
        )
        .await;
        self.schema_gate.open(result.is_ok());
        result
    }

    /// Applies the Namespace (the history lives in it), then records a new revision.
    async fn new_record(
        &self,
        run: &mut ClusterRun,
        steps: &[Step],
        action: Action,
        records: &[Record],
    ) -> Result<Record, Error> {
        let (target, namespace, options, progress) =
            (self.target, self.namespace, self.options, self.progress);
        let client = self.client();
        for step in steps
            .iter()
            .filter(|step| step.object.kind == wikikube_render::ObjectKind::Namespace)
        {
            self.apply_step(step).await?;
            run.applied += 1;
        }
        let revision = records
            .iter()
            .map(|record| record.revision)
            .max()
            .unwrap_or(0)
            + 1;
        let mut record = Record::new(revision, action, &options.user, steps);
        if let Some(schema) = &options.schema {
            record.schema = crate::schema::fingerprints(&schema.template);
        }
        history::store_revision(client, namespace, revision, steps).await?;
        history::save(client, namespace, &record).await?;
        progress.event(&target.name, None, &format!("revision {revision} started"));
        Ok(record)
    }

    /// Applies one phase's objects, inventory first; returns its Deployments for the gate.
    async fn apply_phase(
        &self,
        run: &mut ClusterRun,
        steps: &[Step],
        phase: Phase,
    ) -> Result<Vec<Applied>, Error> {
        let (target, namespace, progress) = (self.target, self.namespace, self.progress);
        if self.abort.load(Ordering::Relaxed) {
            return Err(Error::Aborted);
        }
        let client = self.client();
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
            let result = self.apply_step(step).await?;
            run.applied += 1;
            if step.object.kind == wikikube_render::ObjectKind::Deployment {
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

    /// Puts back every phase `run` touched: the last done revision's objects of those phases are
    /// re-applied, and objects of those phases it did not have are deleted (for a first deploy, that
    /// is all of them but the Namespace). The record ends `rolled-back`, with the failure.
    async fn undo(&self, run: &mut ClusterRun, steps: &[Step], reason: &str) -> Result<(), Error> {
        let (target, namespace, progress) = (self.target, self.namespace, self.progress);
        let client = self.client();
        let Some(mut record) = run.record.clone() else {
            return Ok(());
        };
        let records = history::read(client, namespace).await?;
        let previous = match history::last_done(&records, record.revision) {
            Some(previous) => history::load_revision(client, namespace, previous.revision)
                .await?
                .ok_or(Error::NotStored {
                    revision: previous.revision,
                })?,
            None => Vec::new(),
        };
        let touched = run.touched.clone();
        let restore: Vec<Step> = previous
            .iter()
            .filter(|step| touched.contains(&step.phase))
            .cloned()
            .collect();
        // What goes live again keeps its objects, and the versions of the revisions before it
        // stay as a deploy's prune would have left them.
        let retained =
            history::retained(client, namespace, &records, self.options.config_revisions).await?;
        let keep: BTreeSet<&ObjectRef> = previous
            .iter()
            .map(|step| &step.object)
            .chain(&retained)
            .collect();
        inventory::add(
            client,
            namespace,
            restore.iter().map(|step| step.object.clone()),
        )
        .await?;
        let mut deployments = Vec::new();
        for step in &restore {
            let result = self.apply_step(step).await?;
            if step.object.kind == wikikube_render::ObjectKind::Deployment {
                deployments.push(crate::canary::Applied {
                    step: step.clone(),
                    since: crate::rollout::applied_at(&result),
                });
            }
        }
        let mut remove: Vec<&Step> = steps
            .iter()
            .filter(|step| touched.contains(&step.phase))
            .filter(|step| {
                !keep.contains(&step.object)
                    && step.object.kind != wikikube_render::ObjectKind::Namespace
            })
            .collect();
        remove.reverse();
        for step in &remove {
            apply::delete(client, namespace, &step.object).await?;
        }
        inventory::remove(client, namespace, remove.iter().map(|step| &step.object)).await?;
        progress.event(
            &target.name,
            None,
            &format!(
                "restored {} object(s), deleted {}",
                restore.len(),
                remove.len()
            ),
        );
        let gate = self.gate();
        for phase in Phase::ALL {
            let of_phase: Vec<_> = deployments
                .iter()
                .filter(|applied| applied.step.phase == phase)
                .cloned()
                .collect();
            gate.rollouts(phase, &of_phase).await?;
        }
        record.state = State::RolledBack;
        let own = run.error.as_ref().map(|error| error.with_causes());
        record.failure = Some(history::short_failure(
            &own.unwrap_or_else(|| reason.to_string()),
        ));
        history::save(client, namespace, &record).await?;
        run.record = Some(record);
        Ok(())
    }
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
