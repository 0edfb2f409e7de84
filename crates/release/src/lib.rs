//! `wikikube release`: one change from the site directory to an environment's clusters, as
//! Wikimedia's `scap` takes a backport from a checkout to the servers.
//!
//! The stages, in order ([`Stage`]):
//! 1. **build** the site's images for the environment (its configuration is in the app image);
//! 2. **push** them to the environment's registry under the build's content tag;
//! 3. **render** the environment with every pushed image pinned by digest, and check that the
//!    registry has each pinned image;
//! 4. **diff** against every cluster (nothing differs: the release stops there, successfully);
//! 5. **deploy**: schema Jobs, debug, canary and its gate, main; a failure rolls back;
//! 6. **record** the digests in `pushed-images.toml` ([`wikikube_model::pushed`]).
//!
//! The record comes last on purpose: the file then always names what the clusters run after a
//! release. A release that fails anywhere (a build error, a registry that refuses, a canary
//! that fails its gate) leaves the file, and so every later render, exactly as it was.
//! (`wikikube build --push` alone records at once: that is what it is for.)
//!
//! What it must not do: build, render, push or deploy by itself (it calls `image`, `render`
//! and `deploy` and only orders them), print (the caller hears about stages through
//! [`Progress`] and prints the [`Report`]), or talk to clusters other than the environment's.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

pub use wikikube_deploy::Target;

/// The stages of a release, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Building the images.
    Build,
    /// Pushing them.
    Push,
    /// Rendering the environment by digest and checking the registry has every pinned image.
    Render,
    /// Comparing with the clusters.
    Diff,
    /// Deploying.
    Deploy,
    /// Writing `pushed-images.toml`.
    Record,
}

impl Stage {
    /// Its name, as the report prints it.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Build => "build",
            Stage::Push => "push",
            Stage::Render => "render",
            Stage::Diff => "diff",
            Stage::Deploy => "deploy",
            Stage::Record => "record",
        }
    }
}

/// Where the clusters come from.
pub enum Clusters {
    /// The kubeconfig contexts the environment names (`KUBECONFIG` or `~/.kube/config`).
    FromKubeconfig,
    /// Clients made by the caller, one per cluster of the environment, in its order (tests
    /// and benchmarks against a simulated API server).
    Given(Vec<Target>),
}

/// Where a release stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Until {
    /// After the diff: build, push and show what a deploy would change, touching no cluster
    /// and recording nothing.
    Diff,
    /// The whole release.
    Deploy,
}

/// What to release, and how.
pub struct Request {
    /// The site directory.
    pub site_dir: PathBuf,
    /// The environment (a Kubernetes one: it must name clusters).
    pub environment: String,
    /// Where private values come from.
    pub load: wikikube_model::LoadOptions,
    /// The registry to push to (`host[:port][/prefix]`); `None`: the one the environment's app
    /// image names ([`registry_of`]).
    pub registry: Option<String>,
    /// The build's options; the configuration layer is filled in from the environment.
    pub build: wikikube_image::Options,
    /// Credentials and certificates for the registry.
    pub registry_client: wikikube_image::registry::ClientOptions,
    /// The deploy's options (soak, smoke checks, parallelism, user). Its `schema` is filled in
    /// from the render unless `schema_deadline` is `None`.
    pub deploy: wikikube_deploy::Options,
    /// The deadline of each schema Job; `None` runs none.
    pub schema_deadline: Option<u32>,
    /// Where to stop.
    pub until: Until,
}

/// What the caller hears while a release runs. Image builds and deploys report their own
/// progress (the build's `progress` option, the deploy's [`wikikube_deploy::progress::Progress`]).
pub trait Progress: Sync {
    /// A stage starts.
    fn started(&self, stage: Stage);
    /// A stage ended after `seconds`; `summary` says what it did, in a line.
    fn finished(&self, stage: Stage, seconds: f64, summary: &str);
    /// Events of the deploy stage, in `clusters` (by name, in the environment's order).
    fn deploy(&self, clusters: &[String]) -> &dyn wikikube_deploy::progress::Progress;
}

/// Hears nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn started(&self, _: Stage) {}
    fn finished(&self, _: Stage, _: f64, _: &str) {}
    fn deploy(&self, _: &[String]) -> &dyn wikikube_deploy::progress::Progress {
        &wikikube_deploy::progress::Quiet
    }
}

/// One stage as it ran.
#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    /// Which.
    pub stage: Stage,
    /// How long it took.
    pub seconds: f64,
    /// What it did, in a line.
    pub summary: String,
}

/// One image as released.
#[derive(Clone, Debug, Serialize)]
pub struct ReleasedImage {
    /// The image's name in build.toml (`app`).
    pub image: String,
    /// `HOST[:PORT]/REPOSITORY@sha256:...`, as the rendered pods name it.
    pub reference: String,
    /// The content tag it was pushed under too.
    pub tag: String,
}

/// What a release did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Whether it did everything asked: the deploy (when there was one) finished.
    pub ok: bool,
    /// Where it stopped and why, for people: "nothing differs", "stopped after the diff as
    /// asked", or the deploy's failure.
    pub outcome: String,
    /// The registry pushed to.
    pub registry: String,
    /// Each pushed image.
    pub images: Vec<ReleasedImage>,
    /// What the push sent.
    pub push: wikikube_image::registry::PushReport,
    /// The stages that ran.
    pub stages: Vec<StageReport>,
    /// What differed in each cluster before the deploy.
    pub diff: wikikube_deploy::DiffReport,
    /// The deploy, when one ran.
    pub deploy: Option<wikikube_deploy::DeployReport>,
    /// Whether `pushed-images.toml` now names these images.
    pub recorded: bool,
}

impl Report {
    /// The stages as a table, then the images and the outcome; the diff and the deploy's own
    /// summary are the caller's to print (they have their own `to_text`).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for stage in &self.stages {
            out.push_str(&format!(
                "{:<8} {:>8.2} s  {}\n",
                stage.stage.name(),
                stage.seconds,
                stage.summary
            ));
        }
        let total: f64 = self.stages.iter().map(|stage| stage.seconds).sum();
        out.push_str(&format!("{:<8} {total:>8.2} s\n", "total"));
        for image in &self.images {
            out.push_str(&format!("  {:<16} {}\n", image.image, image.reference));
        }
        out.push_str(&format!(
            "{}: {}\n",
            if self.ok { "released" } else { "not released" },
            self.outcome
        ));
        out
    }
}

/// Why a release stopped before it could report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The site does not load for the environment.
    #[error(transparent)]
    Site(#[from] wikikube_model::Error),
    /// The environment is not one a release can go to.
    #[error("environment {environment} names no clusters: a release deploys to the clusters of a Kubernetes environment (`wikikube up` runs the local farm)")]
    NoClusters {
        /// The environment.
        environment: String,
    },
    /// No registry was given and the environment's app image names none.
    #[error("environment {environment}: its app image `{image}` is not of the form REGISTRY/wikikube/app[:TAG], so the registry to push to is unknown; pass --registry HOST[:PORT]")]
    NoRegistry {
        /// The environment.
        environment: String,
        /// Its `[images] app`.
        image: String,
    },
    /// The environment runs images from another registry than the one pushed to, so the push
    /// would pin nothing.
    #[error("the push to {registry} pinned none of the images environment {environment} runs (its app image is `{image}`): push to the registry its [images] name, or change them")]
    NothingPinned {
        /// The registry pushed to.
        registry: String,
        /// The environment.
        environment: String,
        /// Its `[images] app`.
        image: String,
    },
    /// The build failed; nothing was pushed.
    #[error("building the images")]
    Build(#[source] Box<wikikube_image::Error>),
    /// The push failed; nothing was recorded and no cluster was touched.
    #[error("pushing to {registry} (nothing was recorded and no cluster was touched)")]
    Push {
        /// The registry.
        registry: String,
        /// What went wrong.
        #[source]
        source: Box<wikikube_image::Error>,
    },
    /// The render failed.
    #[error(transparent)]
    Render(#[from] wikikube_render::RenderError),
    /// A pinned image is not in its registry.
    #[error("checking the registry has every image the environment runs by digest")]
    Pinned(#[source] Box<wikikube_image::Error>),
    /// A cluster could not be reached, or the diff failed.
    #[error(transparent)]
    Deploy(#[from] wikikube_deploy::Error),
    /// The deploy finished but the record could not be written.
    #[error("the deploy finished, but recording the digests failed (run `wikikube build --push` to record them)")]
    Record(#[source] Box<wikikube_image::Error>),
}

/// The registry an environment's images come from: the app image's reference up to
/// `/wikikube/app` (`registry.farm.test/wikikube/app:2026-11-25` -> `registry.farm.test`), the
/// layout `wikikube build --push` writes.
pub fn registry_of(app_image: &str) -> Option<&str> {
    let repository = wikikube_model::pushed::repository_of(app_image);
    repository
        .strip_suffix("/wikikube/app")
        .filter(|registry| !registry.is_empty())
}

fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Runs a release: see the crate's documentation for the stages. `runtime` drives the
/// cluster stages; the build and push run on the calling thread.
pub fn release(
    request: &Request,
    clusters: Clusters,
    runtime: &wikikube_deploy::Runtime,
    progress: &dyn Progress,
) -> Result<Report, Error> {
    let mut stages = Vec::new();
    let mut timed = |stage: Stage, start: Instant, summary: String| {
        let seconds = start.elapsed().as_secs_f64();
        progress.finished(stage, seconds, &summary);
        stages.push(StageReport {
            stage,
            seconds,
            summary,
        });
    };

    // Everything that can be refused without building is checked first.
    let mut site = wikikube_model::load(&request.site_dir, &request.environment, &request.load)?;
    if site.environment.clusters.is_empty() {
        return Err(Error::NoClusters {
            environment: request.environment.clone(),
        });
    }
    let app_image = site
        .deployments
        .iter()
        .flat_map(|deployment| deployment.releases.iter())
        .map(|release| release.values.images.app.clone())
        .next()
        .unwrap_or_default();
    let registry = match &request.registry {
        Some(registry) => registry.clone(),
        None => registry_of(&app_image)
            .ok_or_else(|| Error::NoRegistry {
                environment: request.environment.clone(),
                image: app_image.clone(),
            })?
            .to_string(),
    };

    progress.started(Stage::Build);
    let start = Instant::now();
    let mut build = request.build.clone();
    build.config_files = wikikube_render::config::mediawiki::image_layer(&site);
    let built =
        wikikube_image::build(&site, &build).map_err(|error| Error::Build(Box::new(error)))?;
    let rebuilt: usize = built.images.iter().map(|image| image.built).sum();
    timed(
        Stage::Build,
        start,
        format!(
            "{} images, {rebuilt} layers built, the others from the cache",
            built.images.len()
        ),
    );

    progress.started(Stage::Push);
    let start = Instant::now();
    let push_error = |error| Error::Push {
        registry: registry.clone(),
        source: Box::new(error),
    };
    let cache = wikikube_image::Cache::open(&build.cache_dir).map_err(push_error)?;
    let tag = wikikube_image::registry::content_tag(&built.out_dir).map_err(push_error)?;
    let pushed = wikikube_image::registry::Pusher::new(&cache, &registry, &request.registry_client)
        .and_then(|mut pusher| pusher.push_layout(&built.out_dir, &tag))
        .map_err(push_error)?;
    timed(
        Stage::Push,
        start,
        format!(
            "as :{tag}: {} blobs uploaded ({} bytes), {} mounted, {} already there",
            pushed.uploaded, pushed.bytes, pushed.mounted, pushed.skipped
        ),
    );
    let images: Vec<ReleasedImage> = pushed
        .images
        .iter()
        .map(|(image, pushed)| ReleasedImage {
            image: image.clone(),
            reference: pushed.reference.clone(),
            tag: pushed.tag.clone(),
        })
        .collect();

    progress.started(Stage::Render);
    let start = Instant::now();
    let record = wikikube_model::pushed::PushedImages(
        pushed
            .images
            .values()
            .map(|image| {
                (
                    image.repository.clone(),
                    wikikube_model::pushed::PushedImage {
                        digest: image.digest.clone(),
                        tag: image.tag.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect(),
    );
    // The app image must be one this push published: a pin left by an earlier record in
    // pushed-images.toml does not count.
    if record.pin(&app_image).is_none() {
        return Err(Error::NothingPinned {
            registry,
            environment: request.environment.clone(),
            image: app_image,
        });
    }
    site.pin_images(&record);
    let rendered = wikikube_render::render(&site, &wikikube_render::RenderOptions::default())?;
    let checked = wikikube_image::registry::check_pinned(&site, &request.registry_client)
        .map_err(|error| Error::Pinned(Box::new(error)))?;
    timed(
        Stage::Render,
        start,
        format!(
            "{} objects, {checked} images by digest, each in its registry",
            rendered.objects().len()
        ),
    );

    progress.started(Stage::Diff);
    let start = Instant::now();
    let targets = match clusters {
        Clusters::Given(targets) => targets,
        Clusters::FromKubeconfig => {
            runtime.block_on(wikikube_deploy::connect(&site.environment.clusters))?
        }
    };
    let namespace = site.spec.site.namespace.clone();
    let diff = runtime.block_on(wikikube_deploy::diff(
        &targets,
        &namespace,
        &rendered.objects(),
        request.deploy.config_revisions,
    ))?;
    let changed = diff
        .clusters
        .iter()
        .map(|cluster| {
            cluster
                .objects
                .iter()
                .filter(|object| object.change != wikikube_deploy::diff::Change::Unchanged)
                .count()
        })
        .sum::<usize>();
    timed(
        Stage::Diff,
        start,
        format!(
            "{changed} objects differ in {}",
            plural(diff.clusters.len(), "cluster")
        ),
    );

    let mut report = Report {
        ok: true,
        outcome: String::new(),
        registry,
        images,
        push: pushed.clone(),
        stages: Vec::new(),
        diff,
        deploy: None,
        recorded: false,
    };
    if !report.diff.has_differences() {
        report.outcome = "nothing differs: every cluster already runs this release".into();
    } else if request.until == Until::Diff {
        report.outcome =
            "stopped after the diff, as asked: no cluster was touched, nothing recorded".into();
    } else {
        progress.started(Stage::Deploy);
        let start = Instant::now();
        let mut options = request.deploy.clone();
        options.schema = request.schema_deadline.and_then(|deadline| {
            wikikube_deploy::schema::Schema::of(&rendered, &options.user, deadline)
        });
        let steps = wikikube_deploy::plan(&rendered);
        let names: Vec<String> = targets.iter().map(|target| target.name.clone()).collect();
        let deployed = runtime.block_on(wikikube_deploy::deploy(
            &targets,
            &namespace,
            &steps,
            &options,
            progress.deploy(&names),
        ));
        report.ok = deployed.ok;
        report.outcome = match &deployed.failure {
            None => format!("deployed to {}", plural(targets.len(), "cluster")),
            Some(failure) => format!(
                "the deploy failed and was rolled back: {failure}; pushed-images.toml is unchanged"
            ),
        };
        timed(
            Stage::Deploy,
            start,
            if deployed.ok {
                "debug, canary (gate passed), main".into()
            } else {
                "failed, rolled back".into()
            },
        );
        report.deploy = Some(deployed);
    }

    // Recorded when the clusters run these images (or already did): see the crate docs.
    if report.ok && request.until == Until::Deploy {
        progress.started(Stage::Record);
        let start = Instant::now();
        wikikube_image::registry::record_pushed(&request.site_dir, &pushed)
            .map_err(|error| Error::Record(Box::new(error)))?;
        report.recorded = true;
        timed(
            Stage::Record,
            start,
            request
                .site_dir
                .join(wikikube_model::pushed::FILE)
                .display()
                .to_string(),
        );
    }
    report.stages = stages;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_is_what_precedes_wikikube_app() {
        assert_eq!(
            registry_of("registry.farm.test/wikikube/app:2026-11-25"),
            Some("registry.farm.test")
        );
        assert_eq!(
            registry_of("127.0.0.1:5000/prefix/wikikube/app@sha256:ab"),
            Some("127.0.0.1:5000/prefix")
        );
        assert_eq!(
            registry_of("localhost/wikikube/app:latest"),
            Some("localhost")
        );
        assert_eq!(registry_of("docker.io/library/mediawiki:1.39"), None);
        assert_eq!(registry_of("wikikube/app:latest"), None);
    }
}
