//! `wikikube release`: build, push, diff, deploy and record, in one command.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::{exit, SiteArgs};

/// Take the site directory as it is to an environment's clusters, by digest: build the images
/// (with the environment's configuration), push them under the build's content tag, render the
/// environment with every pushed image pinned by digest, show what differs in each cluster,
/// deploy (schema Jobs, debug, canary and its gate, main; a failure rolls everything back), and
/// only then record the digests in SITE_DIR/pushed-images.toml.
///
/// A release that fails anywhere leaves pushed-images.toml as it was, so the site keeps
/// rendering what the clusters run. When nothing differs, nothing is deployed. Exit code 0 when
/// released (or nothing differed), 1 when the deploy failed and was rolled back or another step
/// failed, 4 with --diff-only when something differs.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The site directory (with build.toml and packages.lock).
    #[arg(default_value = ".", value_name = "SITE_DIR")]
    site_dir: PathBuf,
    #[command(flatten)]
    site: SiteArgs,
    /// The registry to push to (`host[:port][/prefix]`) [default: the one the environment's
    /// [images] app names, the part before /wikikube/app].
    #[arg(long, value_name = "REGISTRY")]
    registry: Option<String>,
    /// A CA certificate (PEM) to trust for the registry, besides the public roots and
    /// certs.d/HOST:PORT/*.crt. Credentials come from podman's or docker's auth.json.
    #[arg(long, value_name = "FILE")]
    registry_ca: Vec<PathBuf>,
    /// Build, push and show the diff, then stop: no cluster is touched, nothing recorded.
    #[arg(long)]
    diff_only: bool,
    /// The cache directory [default: ~/.cache/wikikube].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Build exactly the locked Debian packages and never rewrite packages.lock (see
    /// `wikikube build --help`); releases to production should use it.
    #[arg(long)]
    locked: bool,
    #[command(flatten)]
    rollout: super::deploy::RolloutArgs,
    /// Print the report as JSON on stdout: {ok, outcome, registry, images, push, stages, diff,
    /// deploy, recorded}.
    #[arg(long)]
    json: bool,
}

/// Stage lines on standard error; the deploy's spinners per cluster, started with the deploy
/// (before, they would tick between the build's own progress lines).
struct Lines {
    bars: std::sync::OnceLock<wikikube_deploy::progress::Bars>,
}

impl wikikube_release::Progress for Lines {
    fn started(&self, stage: wikikube_release::Stage) {
        eprintln!("release: {} ...", stage.name());
    }
    fn finished(&self, stage: wikikube_release::Stage, seconds: f64, summary: &str) {
        if let Some(bars) = self.bars.get() {
            bars.finish();
        }
        eprintln!(
            "release: {} done in {seconds:.2} s: {summary}",
            stage.name()
        );
    }
    fn deploy(&self, clusters: &[String]) -> &dyn wikikube_deploy::progress::Progress {
        self.bars
            .get_or_init(|| wikikube_deploy::progress::Bars::new(clusters))
    }
}

/// Releases and prints the report.
pub fn run(args: &ReleaseArgs) -> anyhow::Result<u8> {
    let deploy = args.rollout.options(&args.site_dir, false)?;
    let registry_client = wikikube_image::registry::ClientOptions {
        ca_files: args.registry_ca.clone(),
        ..Default::default()
    };
    let request = wikikube_release::Request {
        site_dir: args.site_dir.clone(),
        environment: args.site.environment.clone(),
        load: wikikube_model::LoadOptions {
            private_dir: args.site.private_dir.clone(),
        },
        registry: args.registry.clone(),
        build: wikikube_image::Options {
            cache_dir: args
                .cache
                .clone()
                .unwrap_or_else(wikikube_image::Cache::default_dir),
            lock_mode: if args.locked {
                wikikube_image::LockMode::Locked
            } else {
                wikikube_image::LockMode::Amend
            },
            progress: true,
            binaries: wikikube_image::programs::beside_current_executable().unwrap_or_else(
                |error| {
                    eprintln!("warning: no edge and mcrouter images: {error}");
                    Default::default()
                },
            ),
            ..Default::default()
        },
        registry_client,
        deploy,
        schema_deadline: args.rollout.schema_deadline(),
        until: if args.diff_only {
            wikikube_release::Until::Diff
        } else {
            wikikube_release::Until::Deploy
        },
    };
    let runtime = wikikube_deploy::runtime()?;
    let progress = Lines {
        bars: std::sync::OnceLock::new(),
    };
    let result = wikikube_release::release(
        &request,
        wikikube_release::Clusters::FromKubeconfig,
        &runtime,
        &progress,
    );
    if let Some(bars) = progress.bars.get() {
        bars.finish();
    }
    let report = result?;
    if args.json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        super::print(&text)?;
    } else {
        let mut text = report.diff.to_text();
        if let Some(deployed) = &report.deploy {
            text.push_str(&deployed.to_text());
        }
        text.push_str(&report.to_text());
        super::print(&text).context("printing the report")?;
    }
    Ok(if !report.ok {
        exit::FAILURE
    } else if args.diff_only && report.diff.has_differences() {
        exit::DIFFERENCES
    } else {
        exit::OK
    })
}
