//! `wikikube explain`: where a value comes from.

use std::path::PathBuf;

use clap::Args;

use crate::{exit, SiteArgs};

/// Show a key's merged value, the file and line that set it, and the values it overrode.
///
/// Without --deployment, KEY is read in the whole site (`wikis.enwiki.domains`, `php.workers`);
/// with it, in that deployment's release (main unless --release says otherwise), where
/// deployment and release scopes apply. Private values print as <redacted>.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The dotted key, such as `php.workers` or `deployments.mw-web.replicas`.
    key: String,
    /// The site directory.
    #[arg(default_value = ".", value_name = "SITE_DIR")]
    site_dir: PathBuf,
    #[command(flatten)]
    site: SiteArgs,
    /// Read the key in this deployment's scope.
    #[arg(long, short = 'd', value_name = "DEPLOYMENT")]
    deployment: Option<String>,
    /// The release of --deployment [default: main].
    #[arg(long, short = 'r', value_name = "RELEASE", requires = "deployment")]
    release: Option<wikikube_model::ReleaseName>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Explains one key.
pub fn run(args: &ExplainArgs) -> anyhow::Result<u8> {
    let site = args.site.load(&args.site_dir)?;
    let answer =
        wikikube_model::explain(&site, &args.key, args.deployment.as_deref(), args.release)?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&answer)?;
        text.push('\n');
        super::print(&text)?;
        return Ok(exit::OK);
    }
    let mut text = format!(
        "{} = {}\n  in {} of environment {}\n  set by {} ({})\n",
        answer.key,
        answer.value,
        answer.scope,
        site.environment_name,
        answer.set_by.location,
        answer.set_by.layer
    );
    if answer.overridden.is_empty() {
        text.push_str("  overrides nothing\n");
    } else {
        text.push_str("  overrides, most recent first:\n");
        for older in &answer.overridden {
            text.push_str(&format!(
                "    {} from {} ({})\n",
                older.value, older.location, older.layer
            ));
        }
    }
    super::print(&text)?;
    Ok(exit::OK)
}
