//! Reproducible, daemonless OCI image builds for a wikikube site.
//!
//! From a site (its versions, extensions, skins and wikis, read by `model`), `build.toml` (the
//! Debian suite, mirrors, SOURCE_DATE_EPOCH and base image packages) and `packages.lock` (the
//! exact package versions), this crate builds the base images (`base-php`, `base-httpd`,
//! `base-memcached`), the `app` image (MediaWiki code, extensions, patches, l10n cache, config
//! as separate layers) and the `webserver` image (static files only), into an OCI image
//! layout. The same inputs give byte-identical layers and the same digests on any machine;
//! every layer is cached by the digest of its inputs, so a change rebuilds only what it touches.
//!
//! It does not render configuration (the caller passes the config layer's files, from
//! `render`), run containers beyond loading them into podman, or need a Docker daemon: rootfs
//! come from mmdebstrap, php runs under bubblewrap, and layers are written by [`layer::tar`].
//!
//! [`stack::build`] makes the app image's MediaWiki layers from code trees already on disk
//! (Wikimedia's size: ~185,000 files), with [`fingerprint`] sparing an unchanged tree from being
//! read. Both build each group of files through [`incremental`]: a group's layer from the
//! last build plus a small layer of what changed, or the whole group again.
//!
//! Start at [`build::build`]: it shows every image and the inputs of each layer. Then
//! [`layer::tar`] (how a layer becomes bytes), [`cache`] (where things are kept) and
//! [`oci`] (manifests and the layout).

pub mod attest;
pub mod build;
pub mod cache;
pub mod code;
pub mod config;
pub mod digest;
pub mod error;
pub mod fingerprint;
pub mod incremental;
pub mod l10n;
pub mod layer;
pub mod lock;
pub mod oci;
pub mod patches;
pub mod plan;
pub mod podman;
pub mod programs;
pub mod progress;
pub mod registry;
pub mod rootfs;
pub mod stack;
pub mod tools;

pub use build::{build, ArtifactReport, ImageReport, LayerReport, Options, Report};
pub use cache::Cache;
pub use error::{Error, Result};
pub use rootfs::debian::{LockMode, LockUpdate, PackageChange};

/// The version of how layers are made; part of every cache key, bumped when layer contents
/// change for the same inputs.
pub const LAYER_FORMAT: &str = "1";
