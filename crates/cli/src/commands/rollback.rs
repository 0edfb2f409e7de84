//! `wikikube rollback`: back to the previous recorded revision in every cluster.

use std::path::PathBuf;

use clap::Args;

use crate::SiteArgs;

/// Re-apply the previous successful revision in every cluster of an environment, as a new
/// revision, and prune what it did not have. Also undoes a deploy that was interrupted.
#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The site directory.
    #[arg(default_value = ".", value_name = "SITE_DIR")]
    site_dir: PathBuf,
    #[command(flatten)]
    site: SiteArgs,
    /// How many clusters roll back at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    parallel: usize,
    /// Before applying each object, remove the fields other field managers set on it that the
    /// revision does not have, and make wikikube sole owner of the rest (as `deploy
    /// --take-over-fields`): for a rollback that an object made invalid by a hand edit stops.
    #[arg(long)]
    take_over_fields: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Rolls back and prints the summary.
pub fn run(args: &RollbackArgs) -> anyhow::Result<u8> {
    let runtime = wikikube_deploy::runtime()?;
    let loaded = super::deploy::load(&runtime, &args.site_dir, &args.site)?;
    let options = wikikube_deploy::Options {
        parallel: args.parallel,
        take_over_fields: args.take_over_fields,
        ..wikikube_deploy::Options::default()
    };
    let progress = super::deploy::bars(&loaded.targets);
    let report = runtime.block_on(wikikube_deploy::rollback(
        &loaded.targets,
        &loaded.site.spec.site.namespace,
        &options,
        &progress,
    ));
    progress.finish();
    super::deploy::finish(&report, args.json)
}
