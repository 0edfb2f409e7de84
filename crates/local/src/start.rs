//! `wikikube up` from start to end: build the site's images (reusing every cached layer),
//! load them into podman, then start or converge the farm with [`crate::up`].

use wikikube_model::ResolvedSite;
use wikikube_render::Rendered;

use crate::{Error, UpOptions, UpReport};

/// What [`start`] needs: how to build, and how to run.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// The image build; its configuration layer and programs are filled in by [`start`].
    pub build: wikikube_image::Options,
    /// Running the farm.
    pub up: UpOptions,
}

/// What [`start`] did: the build, then the farm.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StartReport {
    /// The images built or found in the cache.
    pub build: wikikube_image::Report,
    /// The pods and the wikis' URLs.
    pub up: UpReport,
}

/// Builds the images of `site` (the configuration layer from `render`, the project's programs
/// from beside the running executable), loads each into podman and starts the farm. Nothing
/// running changes until the images are built and loaded.
pub fn start(
    site: &ResolvedSite,
    rendered: &Rendered,
    options: &StartOptions,
) -> Result<StartReport, Error> {
    let mut build = options.build.clone();
    build.config_files = wikikube_render::config::mediawiki::image_layer(site);
    if build.binaries.is_empty() {
        build.binaries = wikikube_image::programs::beside_current_executable()?;
    }
    if options.up.progress {
        eprintln!("building images (cached layers are reused)");
    }
    let built = wikikube_image::build(site, &build)?;
    for image in &built.images {
        wikikube_image::podman::load(&built.out_dir, &image.image)?;
    }
    let up = crate::up(site, rendered, &options.up)?;
    Ok(StartReport { build: built, up })
}
