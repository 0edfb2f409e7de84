//! Going back: after a failed deploy, every phase it touched is put back to the last revision
//! that was `done` ([`undo`]); and `wikikube rollback` re-applies the revision before the current
//! one as a new revision ([`rollback`]).

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;

use crate::apply::{self, ObjectRef};
use crate::canary::Gate;
use crate::history::{self, Action, Record, State};
use crate::plan::{Phase, Step};
use crate::progress::Progress;
use crate::run::{self, ClusterRun, DeployReport, Options};
use crate::{inventory, lock, Error, Target};

/// The newest `done` record before `revision`.
fn last_done(records: &[Record], revision: u64) -> Option<&Record> {
    records
        .iter()
        .rev()
        .find(|record| record.state == State::Done && record.revision < revision)
}

/// Puts back every phase `run` touched: the last done revision's objects of those phases are
/// re-applied, and objects of those phases it did not have are deleted (for a first deploy, that
/// is all of them but the Namespace). The record ends `rolled-back`, with the failure.
pub(crate) async fn undo(
    target: &Target,
    namespace: &str,
    run: &mut ClusterRun,
    steps: &[Step],
    options: &Options,
    reason: &str,
    progress: &dyn Progress,
) -> Result<(), Error> {
    let client = &target.client;
    let Some(mut record) = run.record.clone() else {
        return Ok(());
    };
    let records = history::read(client, namespace).await?;
    let previous = match last_done(&records, record.revision) {
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
    let keep: BTreeSet<&ObjectRef> = previous.iter().map(|step| &step.object).collect();
    inventory::add(
        client,
        namespace,
        restore.iter().map(|step| step.object.clone()),
    )
    .await?;
    let mut deployments = Vec::new();
    for step in &restore {
        let result = apply::apply_value(
            client,
            namespace,
            &step.object,
            &step.body,
            apply::Mode::Apply,
        )
        .await?;
        if step.object.kind == "Deployment" {
            deployments.push(crate::canary::Applied {
                step: step.clone(),
                since: crate::rollout::applied_at(&result),
            });
        }
    }
    let mut remove: Vec<&Step> = steps
        .iter()
        .filter(|step| touched.contains(&step.phase))
        .filter(|step| !keep.contains(&step.object) && step.object.kind != "Namespace")
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
    // The failure that caused the undo must not stop the undo's own wait.
    let calm = AtomicBool::new(false);
    let gate = Gate {
        target,
        namespace,
        poll: options.poll,
        extra_wait: options.extra_wait,
        abort: &calm,
        progress,
    };
    for phase in Phase::ALL {
        let of_phase: Vec<_> = deployments
            .iter()
            .filter(|applied| applied.step.phase == phase)
            .cloned()
            .collect();
        gate.rollouts(phase, &of_phase).await?;
    }
    record.state = State::RolledBack;
    let own = run.error.as_ref().map(|error| error.to_string());
    record.failure = Some(own.unwrap_or_else(|| reason.to_string()));
    history::save(client, namespace, &record).await?;
    run.record = Some(record);
    Ok(())
}

/// The revision `rollback` goes back to: the done one before the one now live. The live state is
/// the newest done revision, unless a deploy was interrupted after it (then that done revision
/// is the target, undoing the interrupted one).
pub fn target_revision(records: &[Record]) -> Option<u64> {
    let interrupted = records
        .last()
        .is_some_and(|record| !record.state.is_terminal());
    let newest_done = last_done(records, u64::MAX)?;
    if interrupted {
        return Some(newest_done.revision);
    }
    last_done(records, newest_done.revision).map(|record| record.revision)
}

/// `wikikube rollback`: holding the deploy lock of every cluster ([`lock`]), in every cluster
/// re-applies the previous done revision as a new revision (no canary gate: going back to a known
/// state should be quick), prunes what it did not have, and records it.
pub async fn rollback(
    targets: &[Target],
    namespace: &str,
    options: &Options,
    progress: &dyn Progress,
) -> DeployReport {
    // The history is read under the lock too: a deploy finishing meanwhile changes what
    // "previous" means.
    let work = async {
        let mut prepared = Vec::new();
        for target in targets {
            prepared.push(prepare(target, namespace).await);
        }
        let prepared = std::sync::Mutex::new(prepared.into_iter().map(Some).collect::<Vec<_>>());
        run::run_all(
            targets,
            namespace,
            |index| {
                prepared.lock().expect("not poisoned")[index]
                    .take()
                    .expect("each cluster is prepared once")
            },
            options,
            false,
            progress,
        )
        .await
    };
    // No Namespace to create: a namespace without history has nothing to roll back.
    lock::hold(targets, namespace, options, None, work).await
}

async fn prepare(target: &Target, namespace: &str) -> Result<(Vec<Step>, Action), Error> {
    let records = history::read(&target.client, namespace).await?;
    let revision = target_revision(&records).ok_or(Error::NothingToRollBack)?;
    let steps = history::load_revision(&target.client, namespace, revision)
        .await?
        .ok_or(Error::NotStored { revision })?;
    Ok((steps, Action::Rollback { to: revision }))
}
