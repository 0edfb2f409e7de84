//! `wikikube history`: the deploys and rollbacks recorded in every cluster.

use std::path::PathBuf;

use clap::Args;

use crate::{exit, SiteArgs};

/// List past deploys and rollbacks of an environment, per cluster: revision, who, when, state,
/// hash of the objects, app images, and why it failed.
#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The site directory.
    #[arg(default_value = ".", value_name = "SITE_DIR")]
    site_dir: PathBuf,
    #[command(flatten)]
    site: SiteArgs,
    /// Print the records as JSON.
    #[arg(long)]
    json: bool,
}

/// Reads and prints the history.
pub fn run(args: &HistoryArgs) -> anyhow::Result<u8> {
    let runtime = wikikube_deploy::runtime()?;
    let loaded = super::deploy::load(&runtime, &args.site_dir, &args.site)?;
    let history = runtime.block_on(wikikube_deploy::history(
        &loaded.targets,
        &loaded.site.spec.site.namespace,
    ))?;
    if args.json {
        let value: serde_json::Map<String, serde_json::Value> = history
            .iter()
            .map(|(cluster, records)| (cluster.clone(), serde_json::json!(records)))
            .collect();
        let mut text = serde_json::to_string_pretty(&value)?;
        text.push('\n');
        super::print(&text)?;
        return Ok(exit::OK);
    }
    let mut out = String::new();
    for (cluster, records) in &history {
        out.push_str(&format!("{cluster}:\n"));
        if records.is_empty() {
            out.push_str("  no deploys recorded\n");
        }
        for record in records {
            let action = match record.action {
                wikikube_deploy::history::Action::Deploy => "deploy".to_string(),
                wikikube_deploy::history::Action::Rollback { to } => format!("rollback to {to}"),
            };
            let mut images: Vec<&str> = record
                .images
                .values()
                .flatten()
                .map(String::as_str)
                .filter(|image| image.contains("/app") || image.contains("app:"))
                .collect();
            images.sort_unstable();
            images.dedup();
            out.push_str(&format!(
                "  {:>4}  {}  {:<10} {:<14} {}  {}  {}\n",
                record.revision,
                record.started.strftime("%Y-%m-%d %H:%M:%S"),
                record.user,
                record.state.to_string(),
                record.values_hash,
                action,
                images.join(" "),
            ));
            if let Some(failure) = &record.failure {
                out.push_str(&format!("        failed: {failure}\n"));
            }
        }
    }
    super::print(&out)?;
    Ok(exit::OK)
}
