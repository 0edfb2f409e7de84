//! `wikikube rollback`: re-applies the revision before the current one as a new revision
//! ([`rollback`]). Putting back what a failed deploy touched is part of every cluster's run
//! (`crate::cluster`).

use crate::history::{self, Action, Record};
use crate::plan::Step;
use crate::progress::Progress;
use crate::report::{DeployReport, Options};
use crate::{lock, Error, Target};

/// The revision `rollback` goes back to: the done one before the one now live. The live state is
/// the newest done revision, unless a deploy was interrupted after it (then that done revision
/// is the target, undoing the interrupted one).
pub fn target_revision(records: &[Record]) -> Option<u64> {
    let interrupted = records
        .last()
        .is_some_and(|record| !record.state.is_terminal());
    let newest_done = history::last_done(records, u64::MAX)?;
    if interrupted {
        return Some(newest_done.revision);
    }
    history::last_done(records, newest_done.revision).map(|record| record.revision)
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
        crate::cluster::run_all(
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
