//! `wikikube deploy`: the plan's steps to every cluster under the deploy lock, canary first,
//! then the gate, then main; if anything fails anywhere, every release the run touched is put
//! back in every cluster (the work itself is [`crate::cluster`]).

use crate::cluster::run_all;
use crate::history::Action;
use crate::plan::Step;
use crate::progress::Progress;
pub use crate::report::{ClusterReport, DeployReport, Options};
use crate::{lock, Target};

/// Deploys `steps` (from [`crate::plan::plan`]) to every cluster: canary, gate, main, holding the deploy
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
    let namespace_step = steps
        .iter()
        .find(|step| step.object.kind == wikikube_render::ObjectKind::Namespace);
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
