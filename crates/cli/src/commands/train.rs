//! `wikikube train status | promote | rollback`: which MediaWiki version each group of wikis
//! runs, and moving a group between the versions the image carries.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};

use wikikube_model::EnvironmentKind;

use crate::{exit, SiteArgs};

/// The train: groups of wikis (the site's [[groups]]) and the MediaWiki version each runs.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(subcommand)]
    command: TrainCommand,
}

#[derive(Subcommand, Debug)]
enum TrainCommand {
    Status(StatusArgs),
    Promote(PromoteArgs),
    Rollback(RollbackArgs),
}

/// Show the versions, the groups in train order, and the wikis of each.
#[derive(Args, Debug)]
struct StatusArgs {
    /// The site directory.
    #[arg(default_value = ".", value_name = "SITE_DIR")]
    site_dir: PathBuf,
    /// The environment whose files to read.
    #[arg(long = "env", short = 'e', value_name = "ENV", default_value = "local")]
    environment: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Move a group of wikis to another MediaWiki version that the image carries, and roll it out.
///
/// The group's `version` in the site file becomes VERSION and its `previous` the version it
/// ran (for `train rollback`); the file is written only once the rollout succeeded, so a failed
/// promotion leaves it saying what runs. The change is configuration only (the wikiversions
/// ConfigMap): the app image built last must carry VERSION, or the promotion is refused with
/// the command that builds it.
///
/// In a Kubernetes environment the rollout is `wikikube deploy`'s: update.php for the moved
/// wikis first (their schema fingerprint changed), then canary, gate and main. In a local
/// environment update.php runs in the running farm with the new version's code, then the farm
/// converges as `wikikube up` does.
#[derive(Args, Debug)]
struct PromoteArgs {
    /// The group (`group1`).
    group: String,
    /// The version it moves to (a key of [versions]).
    version: String,
    #[command(flatten)]
    target: MoveArgs,
}

/// Move a group back to the version it ran before its last promotion, and roll it out.
#[derive(Args, Debug)]
struct RollbackArgs {
    /// The group.
    group: String,
    #[command(flatten)]
    target: MoveArgs,
}

/// Where a move goes and how it rolls out.
#[derive(Args, Debug)]
struct MoveArgs {
    /// The site directory.
    #[arg(default_value = ".", value_name = "SITE_DIR")]
    site_dir: PathBuf,
    #[command(flatten)]
    site: SiteArgs,
    /// Print the change to the site file and what would move; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The image build cache that built the images [default: ~/.cache/wikikube].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// A local environment: where the farm keeps its state [default: ~/.local/state/wikikube/SITE].
    #[arg(long, value_name = "DIR", env = "WIKIKUBE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// A local environment: seconds to wait for the pods.
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    timeout: u64,
    #[command(flatten)]
    rollout: super::deploy::RolloutArgs,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a train subcommand.
pub fn run(args: &TrainArgs) -> anyhow::Result<u8> {
    match &args.command {
        TrainCommand::Status(args) => status(args),
        TrainCommand::Promote(args) => {
            let site = args.target.site.load(&args.target.site_dir)?;
            let planned = wikikube_train::promote(&site, &args.group, &args.version)?;
            roll(&args.target, site, planned)
        }
        TrainCommand::Rollback(args) => {
            let site = args.target.site.load(&args.target.site_dir)?;
            let planned = wikikube_train::rollback(&site, &args.group)?;
            roll(&args.target, site, planned)
        }
    }
}

fn status(args: &StatusArgs) -> anyhow::Result<u8> {
    let site = wikikube_model::load(
        &args.site_dir,
        &args.environment,
        &wikikube_model::LoadOptions::default(),
    )?;
    let status = wikikube_train::status(&site);
    if args.json {
        super::print(&format!("{}\n", serde_json::to_string_pretty(&status)?))?;
        return Ok(exit::OK);
    }
    let mut text = String::from("versions:\n");
    for version in &status.versions {
        text.push_str(&format!(
            "  {:<18} {} wiki(s)   {}{}\n",
            version.name,
            version.wikis.len(),
            version.source,
            version
                .patches
                .as_ref()
                .map(|p| format!(" + {p}"))
                .unwrap_or_default()
        ));
    }
    if status.groups.is_empty() {
        text.push_str("groups: none (the wikis state their versions; see [[groups]] in docs/site-format.md)\n");
    } else {
        text.push_str("groups, in train order:\n");
        for group in &status.groups {
            let previous = group
                .previous
                .as_ref()
                .map(|p| format!(" (was {p})"))
                .unwrap_or_default();
            text.push_str(&format!(
                "  {:<10} {}{previous}: {}\n",
                group.name,
                group.version,
                group.wikis.join(", ")
            ));
        }
    }
    if !status.ungrouped.is_empty() {
        text.push_str(&format!("in no group: {}\n", status.ungrouped.join(", ")));
    }
    super::print(&text)?;
    Ok(exit::OK)
}

/// Checks, rolls out and records one move.
fn roll(
    args: &MoveArgs,
    mut site: wikikube_model::ResolvedSite,
    planned: wikikube_train::Move,
) -> anyhow::Result<u8> {
    eprintln!(
        "group {}: {} -> {} ({})",
        planned.group,
        planned.from,
        planned.to,
        planned.wikis.join(", ")
    );
    eprint!("{}", planned.diff);
    let cache = args
        .cache
        .clone()
        .unwrap_or_else(wikikube_image::Cache::default_dir);
    wikikube_train::check_carried(&site, &cache, &planned.to)?;
    if args.dry_run {
        if args.json {
            super::print(&format!("{}\n", serde_json::to_string_pretty(&planned)?))?;
        }
        eprintln!("dry run: nothing changed");
        return Ok(exit::OK);
    }
    planned.apply(&mut site);
    let local = site.environment.kind == EnvironmentKind::Local;
    let code = if local {
        roll_local(args, cache, site, &planned)?
    } else {
        let runtime = wikikube_deploy::runtime()?;
        let loaded = super::deploy::connect(&runtime, site)?;
        super::deploy::deploy_loaded(
            &runtime,
            &loaded,
            &args.rollout,
            &args.site_dir,
            false,
            args.json,
        )?
    };
    if code != exit::OK {
        eprintln!(
            "the rollout failed: {} still says group {} runs {}",
            planned.file.display(),
            planned.group,
            planned.from
        );
        return Ok(code);
    }
    planned.write()?;
    eprintln!(
        "{} updated: group {} runs {}",
        planned.file.display(),
        planned.group,
        planned.to
    );
    // A cluster's rollout printed its deploy report already.
    if args.json && local {
        super::print(&format!("{}\n", serde_json::to_string_pretty(&planned)?))?;
    }
    Ok(code)
}

/// update.php for the moved wikis on their new version in the running farm, then the farm
/// converged as `wikikube up` does.
fn roll_local(
    args: &MoveArgs,
    cache: PathBuf,
    site: wikikube_model::ResolvedSite,
    planned: &wikikube_train::Move,
) -> anyhow::Result<u8> {
    for wiki in &planned.wikis {
        eprintln!("update.php for {wiki} on {}", planned.to);
        let Some(output) = wikikube_local::script::update_on_version(&site, wiki, &planned.to)?
        else {
            eprintln!("the farm is not running: nothing to update before it starts");
            break;
        };
        if !output.status.success() {
            bail!(
                "update.php for {wiki} on MediaWiki {} failed; nothing was moved:\n{}{}",
                planned.to,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    let rendered = wikikube_render::render(&site, &wikikube_render::RenderOptions::default())?;
    let options = super::local::start_options(
        Some(cache),
        wikikube_image::LockMode::default(),
        super::local::state_dir(args.state_dir.as_deref(), &site),
        args.timeout,
        !args.json,
    );
    let started = wikikube_local::start(&site, &rendered, &options)?;
    eprintln!(
        "the local farm converged ({:.1} s): {} restarted",
        started.up.seconds,
        started.up.started.len()
    );
    Ok(exit::OK)
}
