//! `wikikube build`: build the site's images reproducibly and print their digests.

use std::path::PathBuf;

use clap::Args;

use crate::exit;

/// Build the site's images (base-php, base-httpd, base-memcached, app, webserver) into an OCI
/// layout, reusing every cached layer whose inputs did not change; a group of the app's or
/// webserver's files that changed a little becomes a small layer of changes on the base the
/// site's last build recorded in the cache. Print a table (or JSON) of image digests.
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
    /// Push the images to this registry (`host:port[/prefix]`), as REGISTRY/wikikube/IMAGE under
    /// a tag derived from the build (`build-<hash of every image digest>`), and record their
    /// digests in SITE_DIR/pushed-images.toml: an environment whose [images] names one of these
    /// repositories then renders it by digest. Credentials come from podman's or docker's
    /// auth.json.
    #[arg(long, value_name = "REGISTRY")]
    push: Option<String>,
    /// Load the images into podman as localhost/wikikube/IMAGE:latest.
    #[arg(long)]
    load: bool,
    #[command(flatten)]
    lock: LockArgs,
    /// Build nothing: list the locked Debian packages that the sources serve in a newer
    /// version, security updates first (with --json, a list of {package, locked, available,
    /// suite, security, images}).
    #[arg(long)]
    outdated: bool,
    /// Build every group of files (code, extension groups, l10n groups) as one whole layer, as
    /// a fresh machine does, instead of on the base the site's last build recorded; the result
    /// becomes the next build's base.
    #[arg(long)]
    rebase: bool,
    /// Print JSON: a list of {image, digest, size, reused, built, deltas, rebased, base,
    /// layers, sbom, provenance, ...}: deltas counts the groups built as their recorded base
    /// layer plus a layer of changes, rebased those started again whole; each layer says its
    /// part (whole, base or changes) and whether it was reused; sbom and provenance name the
    /// OCI 1.1 referrer manifests of the image in the layout.
    #[arg(long)]
    json: bool,
}

/// How a build may use and change packages.lock; shared by `build` and `up`.
#[derive(Args, Debug)]
pub struct LockArgs {
    /// Build exactly the locked Debian packages and never rewrite packages.lock: a locked
    /// version that is neither cached nor served any more is an error naming each package
    /// (for CI and production builds). Without it, such packages move to the version served
    /// today and the lock is rewritten, as `cargo build` does with Cargo.lock.
    #[arg(long, conflicts_with = "update_lock")]
    pub locked: bool,
    /// Resolve every Debian package afresh from the sources and rewrite packages.lock.
    #[arg(long)]
    pub update_lock: bool,
}

impl LockArgs {
    /// The library's lock mode.
    pub fn mode(&self) -> wikikube_image::LockMode {
        if self.locked {
            wikikube_image::LockMode::Locked
        } else if self.update_lock {
            wikikube_image::LockMode::Update
        } else {
            wikikube_image::LockMode::Amend
        }
    }
}

/// Tells what changed in packages.lock, one line per package, on stderr.
pub fn print_lock_updates(updates: &[wikikube_image::LockUpdate]) {
    for update in updates {
        eprintln!(
            "packages.lock: [{}] updated: {}",
            update.rootfs, update.reason
        );
        for change in &update.changes {
            let security = if change.security {
                " (security update)"
            } else {
                ""
            };
            match (&change.old, &change.new) {
                (Some(old), Some(new)) => {
                    eprintln!("  {} {old} -> {new}{security}", change.package)
                }
                (None, Some(new)) => eprintln!("  {} added at {new}{security}", change.package),
                (Some(old), None) => eprintln!("  {} {old} removed", change.package),
                (None, None) => {}
            }
        }
    }
}

/// Builds, then pushes or loads when asked.
pub fn run(args: &BuildArgs) -> anyhow::Result<u8> {
    if args.outdated {
        let list = wikikube_image::rootfs::outdated::outdated(&args.site_dir)?;
        if args.json {
            super::print(&format!("{}\n", serde_json::to_string_pretty(&list)?))?;
        } else {
            super::print(&wikikube_image::rootfs::outdated::table(&list))?;
        }
        return Ok(exit::OK);
    }
    let site = wikikube_model::load(
        &args.site_dir,
        &args.environment,
        &wikikube_model::LoadOptions::default(),
    )?;
    let config_files = wikikube_render::config::mediawiki::image_layer(&site);
    let options = wikikube_image::Options {
        cache_dir: args
            .cache
            .clone()
            .unwrap_or_else(wikikube_image::Cache::default_dir),
        out_dir: args.out.clone(),
        lock_mode: args.lock.mode(),
        config_files,
        progress: !args.json,
        rebase: args.rebase,
        binaries: wikikube_image::programs::beside_current_executable().unwrap_or_else(|error| {
            eprintln!("warning: no edge and mcrouter images: {error}");
            Default::default()
        }),
        ..Default::default()
    };
    let report = wikikube_image::build(&site, &options)?;
    print_lock_updates(&report.lock_updates);
    if let Some(registry) = &args.push {
        let cache = wikikube_image::Cache::open(&options.cache_dir)?;
        let tag = wikikube_image::registry::content_tag(&report.out_dir)?;
        let pushed =
            wikikube_image::registry::push_layout(&cache, &report.out_dir, registry, &tag)?;
        eprintln!(
            "pushed to {registry} as :{tag}: {} blobs uploaded ({} bytes), {} mounted from another repository, {} already there; each image with its SBOM and provenance as referrers",
            pushed.uploaded, pushed.bytes, pushed.mounted, pushed.skipped
        );
        wikikube_image::registry::record_pushed(&args.site_dir, &pushed)?;
        eprintln!(
            "recorded the digests in {}: environments whose [images] name these repositories now run them by digest",
            args.site_dir.join(wikikube_model::pushed::FILE).display()
        );
    }
    if args.load {
        for built in &report.images {
            wikikube_image::podman::load(&report.out_dir, &built.image)?;
        }
    }
    if args.json {
        super::print(&format!("{}\n", wikikube_image::progress::json(&report)))?;
    } else {
        super::print(&wikikube_image::progress::table(&report))?;
    }
    Ok(exit::OK)
}
