//! `wikikube diff`: what a deploy would change in every cluster of an environment.

use std::path::PathBuf;

use clap::Args;

use crate::{exit, SiteArgs};

/// Show what a deploy would change: a server-side dry-run apply of every object, then a unified
/// diff per object against the live one (server-written fields stripped; Secret values never
/// shown), and the objects a deploy would prune. A new version of a ConfigMap or Secret is shown
/// as replacing the version the live revision uses, diffed against it.
///
/// Exit code 0 when nothing differs, 4 when something does.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The site directory.
    #[arg(default_value = ".", value_name = "SITE_DIR")]
    site_dir: PathBuf,
    #[command(flatten)]
    site: SiteArgs,
    /// Print the differences as JSON.
    #[arg(long)]
    json: bool,
}

/// Diffs and prints.
pub fn run(args: &DiffArgs) -> anyhow::Result<u8> {
    let runtime = wikikube_deploy::runtime()?;
    let loaded = super::deploy::load(&runtime, &args.site_dir, &args.site)?;
    // What the deploy's prune would keep, to list only what it would delete.
    let retention = wikikube_deploy::DeployConfig::for_site(&args.site_dir)?.retention;
    let report = runtime.block_on(wikikube_deploy::diff(
        &loaded.targets,
        &loaded.site.spec.site.namespace,
        &loaded.rendered.objects(),
        retention.config_revisions.get(),
    ))?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        super::print(&text)?;
    } else {
        super::print(&report.to_text())?;
    }
    Ok(if report.has_differences() {
        exit::DIFFERENCES
    } else {
        exit::OK
    })
}
