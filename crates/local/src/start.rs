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
    if build.bases_in_use.is_none() {
        build.bases_in_use = Some(bases_in_use(site, rendered, options)?);
    }
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

/// The base images the local pods run, by name (the last part of each image's repository:
/// `localhost/wikikube/base-swift:latest` is `base-swift`), so the build skips bases no pod
/// here runs (Swift for a farm whose media are on a volume, Redis without Redis pools).
fn bases_in_use(
    site: &ResolvedSite,
    rendered: &Rendered,
    options: &StartOptions,
) -> Result<std::collections::BTreeSet<String>, Error> {
    let gateway = crate::podman::gateway()?;
    let pods = crate::pods::local_pods(site, rendered, &options.up.state, &gateway)?;
    Ok(pods
        .iter()
        .flat_map(|pod| pod.images())
        .map(|image| image_base_name(&image).to_string())
        .collect())
}

/// `base-swift` of `localhost/wikikube/base-swift:latest` (or `...@sha256:...`).
fn image_base_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_image_reference_names_its_base_by_its_last_path_part() {
        for (image, base) in [
            ("localhost/wikikube/base-swift:latest", "base-swift"),
            (
                "registry.farm.test:5000/wikikube/base-mariadb@sha256:ab12",
                "base-mariadb",
            ),
            ("base-redis", "base-redis"),
        ] {
            assert_eq!(super::image_base_name(image), base);
        }
    }
}
