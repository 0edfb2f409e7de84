//! `wikikube deploy`: canary, gate, main, in every cluster of an environment; roll back on
//! failure. Also the site loading shared by `diff`, `rollback` and `history`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use crate::{exit, SiteArgs};

/// Deploy an environment: debug, then canary, then the gate (rollout, smoke checks, soak), then
/// main, in every cluster at once; any failure rolls back everything the deploy touched.
///
/// Images that the site runs by digest (after `wikikube build --push`, see pushed-images.toml)
/// must be in their registry, or nothing starts. Before any new code runs, the wikis' schema
/// Jobs run in the first cluster: update.php --quick
/// for wikis whose code changed since the last finished deploy, the installer for new wikis. A
/// failed one stops the deploy with the wiki and the script's last lines (docs/deploy.md).
///
/// Smoke checks and the soak time come from SITE_DIR/deploy.toml (see docs/deploy.md) or
/// --deploy-config. A deploy that was interrupted must be finished with --resume or undone with
/// `wikikube rollback` before another can start.
#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The site directory.
    #[arg(default_value = ".", value_name = "SITE_DIR")]
    site_dir: PathBuf,
    #[command(flatten)]
    site: SiteArgs,
    #[command(flatten)]
    rollout: RolloutArgs,
    /// Finish an interrupted deploy of the same site instead of refusing to start.
    #[arg(long)]
    resume: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// A site loaded for a Kubernetes environment, with its objects planned and its clusters reached.
pub struct Loaded {
    /// The site.
    pub site: wikikube_model::ResolvedSite,
    /// The rendered objects.
    pub rendered: wikikube_render::Rendered,
    /// The clusters.
    pub targets: Vec<wikikube_deploy::Target>,
}

/// Loads, renders and connects; shared by the deploy commands.
pub fn load(
    runtime: &wikikube_deploy::Runtime,
    site_dir: &Path,
    site: &SiteArgs,
) -> anyhow::Result<Loaded> {
    connect(runtime, site.load(site_dir)?)
}

/// Renders a loaded site and connects to its environment's clusters; [`load`] without the
/// loading (`train` renders a site it changed in memory).
pub fn connect(
    runtime: &wikikube_deploy::Runtime,
    site: wikikube_model::ResolvedSite,
) -> anyhow::Result<Loaded> {
    if site.environment.clusters.is_empty() {
        bail!(
            "environment {} names no clusters: add `clusters = [{{ name = \"...\", context = \"...\" }}]` to its [environment]",
            site.environment_name
        );
    }
    let rendered = wikikube_render::render(&site, &wikikube_render::RenderOptions::default())?;
    let targets = runtime.block_on(wikikube_deploy::connect(&site.environment.clusters))?;
    Ok(Loaded {
        site,
        rendered,
        targets,
    })
}

/// How a deploy rolls: shared by `deploy` and `release`.
#[derive(Args, Debug)]
pub struct RolloutArgs {
    /// Smoke checks and soak time [default: SITE_DIR/deploy.toml if present].
    #[arg(long, value_name = "FILE")]
    deploy_config: Option<PathBuf>,
    /// Soak the canaries this many seconds (overrides the config file).
    #[arg(long, value_name = "SECONDS")]
    soak: Option<u64>,
    /// How many clusters deploy at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    parallel: usize,
    /// Skip the wikis' schema Jobs (update.php, the installer) that run before any new code.
    #[arg(long)]
    skip_schema: bool,
    /// Stop a schema Job after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = wikikube_deploy::schema::DEFAULT_DEADLINE_SECONDS)]
    schema_deadline: u32,
    /// Before applying each object, remove the fields other field managers set on it that the
    /// site does not render (`kubectl edit`, `kubectl set env`, helm), and make wikikube the sole
    /// owner of the rest; `wikikube diff` lists such fields. Without it they stay in place.
    #[arg(long)]
    take_over_fields: bool,
}

impl RolloutArgs {
    /// The deploy's options, from the site's deploy.toml (or --deploy-config) and these
    /// arguments; schema Jobs are the caller's to add ([`RolloutArgs::schema_deadline`]).
    pub fn options(
        &self,
        site_dir: &Path,
        resume: bool,
    ) -> anyhow::Result<wikikube_deploy::Options> {
        let config = match &self.deploy_config {
            Some(path) => wikikube_deploy::DeployConfig::read(path)?,
            None => wikikube_deploy::DeployConfig::for_site(site_dir)?,
        };
        Ok(wikikube_deploy::Options {
            soak: Duration::from_secs(self.soak.unwrap_or(config.canary.soak_seconds)),
            smoke: config.smoke,
            config_revisions: config.retention.config_revisions.get(),
            parallel: self.parallel,
            resume,
            take_over_fields: self.take_over_fields,
            ..wikikube_deploy::Options::default()
        })
    }

    /// Each schema Job's deadline; `None` with --skip-schema.
    pub fn schema_deadline(&self) -> Option<u32> {
        (!self.skip_schema).then_some(self.schema_deadline)
    }
}

/// Progress on standard error, one spinner per cluster.
pub fn bars(targets: &[wikikube_deploy::Target]) -> wikikube_deploy::progress::Bars {
    let names: Vec<String> = targets.iter().map(|target| target.name.clone()).collect();
    wikikube_deploy::progress::Bars::new(&names)
}

/// Prints a deploy or rollback report and gives its exit code.
pub fn finish(report: &wikikube_deploy::DeployReport, json: bool) -> anyhow::Result<u8> {
    if json {
        let mut text = serde_json::to_string_pretty(report)?;
        text.push('\n');
        super::print(&text)?;
    } else {
        super::print(&report.to_text())?;
    }
    Ok(if report.ok { exit::OK } else { exit::FAILURE })
}

/// Deploys and prints the summary.
pub fn run(args: &DeployArgs) -> anyhow::Result<u8> {
    let runtime = wikikube_deploy::runtime()?;
    let loaded = load(&runtime, &args.site_dir, &args.site)?;
    deploy_loaded(
        &runtime,
        &loaded,
        &args.rollout,
        &args.site_dir,
        args.resume,
        args.json,
    )
}

/// Deploys a loaded site and prints the summary: shared by `deploy` and `train`.
pub fn deploy_loaded(
    runtime: &wikikube_deploy::Runtime,
    loaded: &Loaded,
    rollout: &RolloutArgs,
    site_dir: &Path,
    resume: bool,
    json: bool,
) -> anyhow::Result<u8> {
    // Images pinned by digest (pushed-images.toml) must be in their registry before any pod
    // is asked to pull them.
    wikikube_image::registry::check_pinned(
        &loaded.site,
        &wikikube_image::registry::ClientOptions::default(),
    )?;
    let mut options = rollout.options(site_dir, resume)?;
    options.schema = rollout.schema_deadline().and_then(|deadline| {
        wikikube_deploy::schema::Schema::of(&loaded.rendered, &options.user, deadline)
    });
    let steps = wikikube_deploy::plan(&loaded.rendered);
    let namespace = &loaded.site.spec.site.namespace;
    let progress = bars(&loaded.targets);
    let report = runtime.block_on(wikikube_deploy::deploy(
        &loaded.targets,
        namespace,
        &steps,
        &options,
        &progress,
    ));
    progress.finish();
    finish(&report, json).context("printing the summary")
}
