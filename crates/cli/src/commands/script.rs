//! `wikikube script --env ENV` in a Kubernetes environment: one Job per run
//! (`wikikube_deploy::jobs`), its output printed, its exit status passed on.

use std::io::Write;

use anyhow::{bail, Context};

use super::local::ScriptArgs;
use crate::exit;

/// Progress as plain lines on standard error: the script's output owns standard output.
struct Lines;

impl wikikube_deploy::progress::Progress for Lines {
    fn event(&self, cluster: &str, _: Option<wikikube_deploy::Phase>, message: &str) {
        eprintln!("{cluster}: {message}");
    }
}

/// Runs `request` as a Job in the environment's first cluster (or `--cluster`).
pub fn in_cluster(
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
    let clusters = &site.environment.clusters;
    let cluster = match &args.cluster {
        Some(name) => clusters.iter().find(|c| &c.name == name).with_context(|| {
            let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
            format!(
                "environment {} has no cluster {name}; its clusters: {}",
                site.environment_name,
                names.join(", ")
            )
        })?,
        None => clusters.first().with_context(|| {
            format!(
                "environment {} names no clusters: add `clusters = [{{ name = \"...\", context = \"...\" }}]` to its [environment]",
                site.environment_name
            )
        })?,
    };
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
