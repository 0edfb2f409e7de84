//! `wikikube render`: write the Kubernetes objects of one environment.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::{exit, SiteArgs};

/// Write every Kubernetes object of an environment, in apply order, as YAML (or JSON).
///
/// The objects are linted first; a broken rule stops the render (exit code 3) unless allowed
/// with --allow. Rules: probes, resources, non-root, selector, names, port-names, size,
/// kubernetes-version (nothing newer than Kubernetes 1.30, the oldest supported).
/// Secret values are always shown as <redacted>.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The site directory.
    #[arg(default_value = ".", value_name = "SITE_DIR")]
    site_dir: PathBuf,
    #[command(flatten)]
    site: SiteArgs,
    /// Write one file per object into DIR (replaced whole) instead of printing.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print a JSON `v1 List` instead of YAML documents.
    #[arg(long)]
    json: bool,
    /// Accept objects that break this lint rule (repeatable).
    #[arg(long, value_name = "RULE")]
    allow: Vec<wikikube_render::Rule>,
    /// Print instead the Role and ClusterRole that each of diff, deploy, rollback, history,
    /// script and backup needs in the environment's namespace, and the ClusterRole that creates the
    /// namespace (docs/deploy.md, "Permissions").
    #[arg(long, conflicts_with_all = ["out", "allow"])]
    rbac: bool,
}

/// Renders and prints or writes the objects.
pub fn run(args: &RenderArgs) -> anyhow::Result<u8> {
    let site = args.site.load(&args.site_dir)?;
    if args.rbac {
        let documents = wikikube_deploy::rbac::documents(&site.spec.site.namespace);
        if args.json {
            let items: Vec<_> = documents.into_iter().map(|(_, object)| object).collect();
            let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
            super::print(&format!("{}\n", serde_json::to_string_pretty(&list)?))?;
        } else {
            super::print(&wikikube_deploy::rbac::to_yaml(&site.spec.site.namespace))?;
        }
        return Ok(exit::OK);
    }
    let options = wikikube_render::RenderOptions {
        allow: args.allow.iter().copied().collect(),
    };
    let rendered = wikikube_render::render(&site, &options)?;
    for finding in &rendered.allowed {
        eprintln!("warning: allowed by --allow {}: {finding}", finding.rule);
    }
    match &args.out {
        Some(dir) => {
            rendered
                .write_dir(dir)
                .with_context(|| format!("writing the objects into {}", dir.display()))?;
            eprintln!(
                "wrote {} objects for environment {} into {}",
                rendered.objects().len(),
                site.environment_name,
                dir.display()
            );
        }
        None if args.json => super::print(&rendered.to_json())?,
        None => super::print(&rendered.to_yaml())?,
    }
    Ok(exit::OK)
}
