//! `wikikube build`: build the site's images reproducibly and print their digests.

use std::path::PathBuf;

use clap::Args;

use crate::exit;

/// Build the site's images (base-php, base-httpd, base-memcached, app, webserver) into an OCI
/// layout, reusing every cached layer whose inputs did not change; print a table (or JSON) of
/// image digests.
#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The site directory (with build.toml and packages.lock).
    #[arg(default_value = ".", value_name = "SITE_DIR")]
    site_dir: PathBuf,
    /// The environment whose configuration goes into the app image.
    #[arg(long = "env", short = 'e', value_name = "ENV", default_value = "local")]
    environment: String,
    /// The cache directory [default: ~/.cache/wikikube].
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// The OCI image layout to write [default: CACHE/out/SITE].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Push the images to this registry (`host:port[/prefix]`), as REGISTRY/wikikube/IMAGE:latest.
    #[arg(long, value_name = "REGISTRY")]
    push: Option<String>,
    /// Load the images into podman as localhost/wikikube/IMAGE:latest.
    #[arg(long)]
    load: bool,
    /// Resolve the current Debian package versions and rewrite packages.lock.
    #[arg(long)]
    update_lock: bool,
    /// Print JSON: a list of {image, digest, size, layers, ...}.
    #[arg(long)]
    json: bool,
}

/// Builds, then pushes or loads when asked.
pub fn run(args: &BuildArgs) -> anyhow::Result<u8> {
    let site = model::load(
        &args.site_dir,
        &args.environment,
        &model::LoadOptions::default(),
    )?;
    let config_files = render::config::mediawiki::config_files(&site)
        .into_iter()
        .map(|(path, text)| (path.trim_start_matches('/').to_string(), text.into_bytes()))
        .collect();
    let options = image::Options {
        cache_dir: args.cache.clone().unwrap_or_else(image::Cache::default_dir),
        out_dir: args.out.clone(),
        update_lock: args.update_lock,
        config_files,
        progress: !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        binaries: match super::local::own_programs() {
            Ok(programs) => programs,
            Err(error) => {
                eprintln!("warning: no edge and mcrouter images: {error:#}");
                Default::default()
            }
        },
        ..Default::default()
    };
    let report = image::build(&site, &options)?;
    if let Some(registry) = &args.push {
        let cache = image::Cache::open(&options.cache_dir)?;
        let pushed = image::registry::push_layout(&cache, &report.out_dir, registry, "latest")?;
        eprintln!(
            "pushed to {registry}: {} blobs uploaded, {} already there",
            pushed.uploaded, pushed.skipped
        );
    }
    if args.load {
        for built in &report.images {
            image::podman::load(&report.out_dir, &built.image)?;
        }
    }
    if args.json {
        super::print(&format!("{}\n", image::progress::json(&report)))?;
    } else {
        super::print(&image::progress::table(&report))?;
    }
    Ok(exit::OK)
}
