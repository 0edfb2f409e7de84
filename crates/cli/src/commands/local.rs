//! `wikikube up`, `down`, `status` and `logs`: the local farm on this machine.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::exit;

/// The site directory and the local environment's name, shared by the local commands.
#[derive(Args, Debug)]
pub struct LocalSite {
    /// The site directory.
    #[arg(value_name = "SITE_DIR", default_value = ".")]
    site_dir: PathBuf,
    /// The local environment.
    #[arg(long = "env", short = 'e', value_name = "ENV", default_value = "local")]
    environment: String,
    /// The directory config management writes private values into [default: SITE_DIR/private].
    #[arg(long, value_name = "DIR")]
    private_dir: Option<PathBuf>,
    /// Where the local farm keeps its state [default: ~/.local/state/wikikube/SITE].
    #[arg(long, value_name = "DIR", env = "WIKIKUBE_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

impl LocalSite {
    fn load(
        &self,
    ) -> anyhow::Result<(
        wikikube_model::ResolvedSite,
        wikikube_render::Rendered,
        wikikube_local::StateDir,
    )> {
        let site_dir = &self.site_dir;
        let options = wikikube_model::LoadOptions {
            private_dir: self.private_dir.clone(),
        };
        let site = wikikube_model::load(site_dir, &self.environment, &options)?;
        let rendered = wikikube_render::render(&site, &wikikube_render::RenderOptions::default())?;
        let state = state_dir(self.state_dir.as_deref(), &site);
        Ok((site, rendered, state))
    }
}

/// Build what is missing, start the local farm (or converge a running one), and print the URLs.
///
/// Runs the site's local environment with podman: memcached (and its gutter), MariaDB, Swift
/// (when the media are in Swift), the edge and one cake pod per enabled release, with the same
/// images and rendered configuration as production. Each wiki's database is installed on first start (in MariaDB, or SQLite on a
/// podman volume); later starts reuse it.
#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    site: LocalSite,
    /// The image build cache [default: ~/.cache/wikikube].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    #[command(flatten)]
    lock: super::build::LockArgs,
    /// Seconds to wait for every pod to become ready.
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    timeout: u64,
    /// Print JSON (what started, and the wikis' URLs).
    #[arg(long)]
    json: bool,
}

/// How the local farm is built and started: shared by `up` and `train`.
pub fn start_options(
    cache: Option<PathBuf>,
    lock_mode: wikikube_image::LockMode,
    state: wikikube_local::StateDir,
    timeout_seconds: u64,
    progress: bool,
) -> wikikube_local::StartOptions {
    wikikube_local::StartOptions {
        build: wikikube_image::Options {
            cache_dir: cache.unwrap_or_else(wikikube_image::Cache::default_dir),
            progress,
            lock_mode,
            ..Default::default()
        },
        up: wikikube_local::UpOptions {
            state,
            timeout: Duration::from_secs(timeout_seconds),
            progress,
        },
    }
}

/// The state directory of the site's local farm: `--state-dir` or the default for its name.
pub fn state_dir(
    chosen: Option<&std::path::Path>,
    site: &wikikube_model::ResolvedSite,
) -> wikikube_local::StateDir {
    match chosen {
        Some(dir) => wikikube_local::StateDir::new(dir),
        None => wikikube_local::StateDir::default_for(&site.spec.site.name),
    }
}

/// Builds, loads and starts.
pub fn up(args: &UpArgs) -> anyhow::Result<u8> {
    let (site, rendered, state) = args.site.load()?;
    let options = start_options(
        args.cache.clone(),
        args.lock.mode(),
        state,
        args.timeout,
        !args.json,
    );
    let started = wikikube_local::start(&site, &rendered, &options)?;
    super::build::print_lock_updates(&started.build.lock_updates);
    let report = started.up;
    if args.json {
        super::print(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
        return Ok(exit::OK);
    }
    let mut text = format!(
        "the local farm is up ({:.1} s): {} started, {} unchanged",
        report.seconds,
        report.started.len(),
        report.unchanged.len()
    );
    if !report.installed.is_empty() {
        text.push_str(&format!(", installed {}", report.installed.join(", ")));
    }
    text.push_str("\n\nwikis:\n");
    for wiki in &report.wikis {
        text.push_str(&format!("  {:<14} {}\n", wiki.dbname, wiki.url));
        if let Some(http) = &wiki.http_url {
            text.push_str(&format!("  {:<14} {http}\n", ""));
        }
    }
    if let Some(edge) = &report.edge {
        let domain = site
            .spec
            .wikis
            .values()
            .next()
            .and_then(|wiki| wiki.domains.first())
            .map_or("DOMAIN", String::as_str);
        let debug = site
            .spec
            .traffic
            .debug
            .first()
            .map_or("NAME", String::as_str);
        text.push_str(&format!(
            "every wiki through the edge: {edge} with the wiki's Host, such as
  \
             curl -k -H 'Host: {domain}' {edge}wiki/
  \
             and the debug release with -H 'X-Wikimedia-Debug: backend={debug}'
"
        ));
    }
    if !report.debug.is_empty() {
        text.push_str("debug release:\n");
        for debug in &report.debug {
            text.push_str(&format!("  {debug}\n"));
        }
    }
    let domains: Vec<&str> = site
        .spec
        .wikis
        .values()
        .flat_map(|wiki| wiki.domains.iter().map(String::as_str))
        .collect();
    text.push_str(&format!(
        "\nThe domains resolve to this machine with this line in /etc/hosts:\n  127.0.0.1 {}\n\
         or per request: curl -k --resolve {}:PORT:127.0.0.1 URL\n\
         The certificate is self-signed; the administrator is `{}` with the site's admin_password.\n",
        domains.join(" "),
        domains.first().copied().unwrap_or("DOMAIN"),
        wikikube_local::install::ADMIN_USER,
    ));
    super::print(&text)?;
    Ok(exit::OK)
}

/// Stop the local farm; its data stays unless --purge.
#[derive(Args, Debug)]
pub struct DownArgs {
    #[command(flatten)]
    site: LocalSite,
    /// Also delete the wikis' data (databases, media, Swift's objects) and the local state.
    #[arg(long)]
    purge: bool,
}

/// Stops the pods.
pub fn down(args: &DownArgs) -> anyhow::Result<u8> {
    let (site, _, state) = args.site.load()?;
    let stopped = wikikube_local::down(&site, &state, args.purge)?;
    eprintln!(
        "stopped {} pod(s){}",
        stopped.len(),
        if args.purge {
            "; data and state deleted"
        } else {
            "; data kept"
        }
    );
    Ok(exit::OK)
}

/// Show the local farm's pods, containers, image ids and wiki URLs.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    site: LocalSite,
    /// Print JSON, with a `wikis` list of {dbname, url}.
    #[arg(long)]
    json: bool,
}

/// Prints the status.
pub fn status(args: &StatusArgs) -> anyhow::Result<u8> {
    let (site, rendered, state) = args.site.load()?;
    let status = wikikube_local::status(&site, &rendered, &state)?;
    if args.json {
        super::print(&format!("{}\n", serde_json::to_string_pretty(&status)?))?;
        return Ok(exit::OK);
    }
    let mut text = String::new();
    // Columns as wide as their longest entry: container names grow with the site's name.
    let containers = status.pods.iter().flat_map(|pod| &pod.containers);
    let name_width = containers.clone().map(|c| c.name.len()).max().unwrap_or(0);
    let state_width = containers.map(|c| c.state.len()).max().unwrap_or(0);
    for pod in &status.pods {
        text.push_str(&format!("{}  {}\n", pod.name, pod.state));
        for container in &pod.containers {
            let id: String = container.image_id.chars().take(12).collect();
            text.push_str(&format!(
                "  {:<name_width$}  {:<state_width$}  restarts {:<3} {} ({id})\n",
                container.name, container.state, container.restarts, container.image
            ));
        }
    }
    text.push_str("wikis:\n");
    let dbname_width = status
        .wikis
        .iter()
        .map(|w| w.dbname.len())
        .max()
        .unwrap_or(0);
    for wiki in &status.wikis {
        text.push_str(&format!("  {:<dbname_width$}  {}\n", wiki.dbname, wiki.url));
    }
    super::print(&text)?;
    Ok(exit::OK)
}

/// Print the logs of a local pod (all its containers, or one).
#[derive(Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    site: LocalSite,
    /// The deployment.
    #[arg(long, short = 'd', default_value = "mw-web")]
    deployment: String,
    /// The release.
    #[arg(long, short = 'r', default_value = "main")]
    release: wikikube_model::ReleaseName,
    /// One container (tls, httpd, app or mcrouter); all of them when left out.
    #[arg(long, short = 'c')]
    container: Option<String>,
    /// Keep printing new lines.
    #[arg(long, short = 'f')]
    follow: bool,
}

/// Prints logs.
pub fn logs(args: &LogsArgs) -> anyhow::Result<u8> {
    let (site, ..) = args.site.load()?;
    let pod = wikikube_render::naming::local_release_pod(&site, &args.deployment, args.release);
    wikikube_local::logs(&pod, args.container.as_deref(), args.follow)?;
    Ok(exit::OK)
}
