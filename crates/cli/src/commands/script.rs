//! `wikikube script`: a MediaWiki maintenance script for one wiki. In a local environment it
//! runs in the farm (`wikikube_local::script`); in a Kubernetes environment as one Job per run
//! (`wikikube_deploy::jobs`), its output printed. Either way the exit status is the script's.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use crate::exit;

/// Run a MediaWiki maintenance script for one wiki, with the farm's image and configuration.
///
/// In a local environment the script runs in the app container of the first deployment's main
/// release (`wikikube up` first), through the farm's multiversion mwscript.php, with this
/// terminal's input and output. In a Kubernetes environment it runs as a Job of its own, from
/// the same release's image and settings, in the environment's first cluster (or --cluster);
/// the Job is labelled with the wiki, the script and $USER, and kept with its output for
/// --keep seconds. Either way wikikube exits with the script's exit status (1 when the Job was
/// stopped at its --deadline or its pod did not start).
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  wikikube script enwiki showSiteStats.php\n  \
                        wikikube script enwiki maintenance/update.php -- --quick\n  \
                        wikikube script enwiki showSiteStats.php --env eqiad --follow"
)]
pub struct ScriptArgs {
    /// The wiki's database name, such as enwiki.
    wiki: String,
    /// The script: a file of maintenance/ (showSiteStats.php) or a path under the MediaWiki
    /// code (maintenance/update.php, extensions/X/maintenance/y.php).
    script: String,
    /// The script's own arguments; put `--` before the first one that starts with a dash.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    arguments: Vec<String>,
    /// The site directory.
    #[arg(long = "site", value_name = "SITE_DIR", default_value = ".")]
    site_dir: PathBuf,
    /// The environment.
    #[arg(long = "env", short = 'e', value_name = "ENV", default_value = "local")]
    environment: String,
    /// The directory config management writes private values into [default: SITE_DIR/private].
    #[arg(long, value_name = "DIR")]
    private_dir: Option<PathBuf>,
    /// The cluster to run the Job in [default: the environment's first] (clusters only).
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// Print the script's output as it runs, rather than when it ends (clusters only).
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Stop the Job after this many seconds (its activeDeadlineSeconds) (clusters only).
    #[arg(long, value_name = "SECONDS")]
    pub deadline: Option<u32>,
    /// Keep the finished Job and its output this many seconds (clusters only).
    #[arg(long, value_name = "SECONDS", default_value_t = wikikube_render::maintenance::DEFAULT_KEEP_SECONDS)]
    pub keep: u32,
    /// Print a JSON report (the Job, its outcome and the output) (clusters only).
    #[arg(long)]
    pub json: bool,
}

/// Runs the script and passes its exit status on.
pub fn run(args: &ScriptArgs) -> anyhow::Result<u8> {
    let options = wikikube_model::LoadOptions {
        private_dir: args.private_dir.clone(),
    };
    let site = wikikube_model::load(&args.site_dir, &args.environment, &options)?;
    let request = wikikube_local::script::ScriptRequest {
        wiki: args.wiki.clone(),
        script: args.script.clone(),
        arguments: args.arguments.clone(),
    };
    if site.environment.kind != wikikube_model::EnvironmentKind::Local {
        return in_cluster(&site, &request, args);
    }
    let status = wikikube_local::script::run(&site, &request)?;
    Ok(status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .unwrap_or(exit::FAILURE))
}

/// The cluster a Job runs in: `name`, or the environment's first.
pub(crate) fn one_cluster<'a>(
    site: &'a wikikube_model::ResolvedSite,
    name: Option<&str>,
) -> anyhow::Result<&'a wikikube_model::ClusterSpec> {
    let clusters = &site.environment.clusters;
    match name {
        Some(name) => clusters.iter().find(|c| c.name == name).with_context(|| {
            let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
            format!(
                "environment {} has no cluster {name}; its clusters: {}",
                site.environment_name,
                names.join(", ")
            )
        }),
        None => clusters.first().with_context(|| {
            format!(
                "environment {} names no clusters: add `clusters = [{{ name = \"...\", context = \"...\" }}]` to its [environment]",
                site.environment_name
            )
        }),
    }
}

/// Progress as plain lines on standard error: the script's output owns standard output.
pub(crate) struct Lines;

impl wikikube_deploy::progress::Progress for Lines {
    fn event(&self, cluster: &str, _: Option<wikikube_deploy::Phase>, message: &str) {
        eprintln!("{cluster}: {message}");
    }
}

/// Runs `request` as a Job in the environment's first cluster (or `--cluster`).
fn in_cluster(
    site: &wikikube_model::ResolvedSite,
    request: &wikikube_render::maintenance::ScriptRequest,
    args: &ScriptArgs,
) -> anyhow::Result<u8> {
    let rendered = wikikube_render::render(site, &wikikube_render::RenderOptions::default())?;
    let Some(template) = &rendered.maintenance else {
        bail!(
            "environment {} has no deployment with an enabled main release to run scripts with",
            site.environment_name
        );
    };
    if !template.wikis.contains_key(&request.wiki) {
        let known: Vec<&str> = template.wikis.keys().map(String::as_str).collect();
        bail!(
            "the farm has no wiki {}; its wikis: {}",
            request.wiki,
            known.join(", ")
        );
    }
    let cluster = one_cluster(site, args.cluster.as_deref())?;
    let settings = wikikube_render::maintenance::JobSettings {
        user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        deadline_seconds: args.deadline,
        keep_seconds: args.keep,
    };
    let job = template.script_job(request, &settings, &wikikube_deploy::jobs::run_id());
    let options = wikikube_deploy::jobs::JobOptions {
        follow: args.follow,
        ..wikikube_deploy::jobs::JobOptions::default()
    };
    let runtime = wikikube_deploy::runtime()?;
    let targets = runtime.block_on(wikikube_deploy::connect(std::slice::from_ref(cluster)))?;
    let lines = std::sync::Mutex::new(Vec::new());
    let json = args.json;
    let output = |line: &str| {
        if json {
            lines.lock().expect("not poisoned").push(line.to_string());
        } else {
            // A closed pipe (`| head`) stops the printing, not the Job.
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
        }
    };
    let report = if json {
        runtime.block_on(wikikube_deploy::jobs::run(
            &targets[0],
            &template.namespace,
            &job,
            &options,
            &wikikube_deploy::progress::Quiet,
            &output,
        ))?
    } else {
        runtime.block_on(wikikube_deploy::jobs::run(
            &targets[0],
            &template.namespace,
            &job,
            &options,
            &Lines,
            &output,
        ))?
    };
    if json {
        let mut value = serde_json::to_value(&report)?;
        value["output"] = serde_json::json!(*lines.lock().expect("not poisoned"));
        value["exit_code"] = serde_json::json!(report.outcome.exit_code());
        super::print(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
    } else if report.outcome != wikikube_deploy::jobs::Outcome::Succeeded {
        eprintln!(
            "{}: {} {} (kept {} s: kubectl logs -n {} job/{})",
            report.cluster, report.job, report.outcome, args.keep, template.namespace, report.job
        );
    }
    Ok(u8::try_from(report.outcome.exit_code()).unwrap_or(exit::FAILURE))
}
