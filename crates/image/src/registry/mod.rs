//! Registries: pushing images with their SBOM and provenance ([`push`]), and the credentials
//! and certificates to do so ([`auth`], [`client`]).
//!
//! Every request goes to `https://` unless the registry is on loopback without a CA given for
//! it, or its name starts with `http://` (see [`client::Location::parse`]). A registry with a
//! certificate of its own CA is trusted through `--registry-ca FILE` or, as podman and docker
//! do, a `certs.d/HOST:PORT/*.crt` directory.

pub mod auth;
pub mod client;
pub mod push;

pub use client::ClientOptions;
pub use push::{push_layout, PushReport, PushedImage, Pusher, Referrers};

use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::{Error, Result};

/// The tag a build's images are pushed under: derived from every image's manifest digest in
/// the layout, so the same build gets the same tag on any machine and a different build never
/// reuses one (`build-` and 16 hex digits).
pub fn content_tag(layout: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    for (image, descriptor) in crate::oci::read_index(layout)? {
        hasher.update(format!("{image} {}\n", descriptor.digest()).as_bytes());
    }
    let hex: String = hasher.finalize()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(format!("build-{hex}"))
}

/// Records what `report` pushed in the site's `pushed-images.toml`, so that every environment
/// naming those repositories renders them by digest ([`wikikube_model::pushed`]).
pub fn record_pushed(
    site_dir: &Path,
    report: &PushReport,
) -> Result<wikikube_model::pushed::PushedImages> {
    let entries = report.images.values().map(|image| {
        (
            image.repository.clone(),
            wikikube_model::pushed::PushedImage {
                digest: image.digest.clone(),
                tag: image.tag.clone(),
                ..Default::default()
            },
        )
    });
    Ok(wikikube_model::pushed::PushedImages::record(
        site_dir, entries,
    )?)
}

/// Asks each registry whether it has every image that the site's releases run by digest
/// (`HOST/REPOSITORY@sha256:...`, see [`record_pushed`]): a deploy must not roll pods that can
/// never pull their image. Returns how many references were checked; references by tag are not
/// checked (a tag says nothing about what will run).
pub fn check_pinned(site: &wikikube_model::ResolvedSite, options: &ClientOptions) -> Result<usize> {
    let references: std::collections::BTreeSet<&str> = site
        .deployments
        .iter()
        .flat_map(|deployment| deployment.releases.iter())
        .filter(|release| release.values.enabled)
        .flat_map(|release| {
            let images = &release.values.images;
            [
                images.app.as_str(),
                images.webserver.as_str(),
                images.tls.as_str(),
                images.mcrouter.as_str(),
                images.redis_proxy.as_str(),
            ]
        })
        .filter(|reference| reference.contains("@sha256:"))
        .collect();
    for reference in &references {
        let (name, digest) = reference.split_once('@').expect("filtered on @");
        let (host, repository) = name.split_once('/').ok_or_else(|| Error::NotInRegistry {
            reference: reference.to_string(),
        })?;
        let client = client::Client::new(host, options)?;
        let url = client.url(&format!("{repository}/manifests/{digest}"));
        let reply = client.send(
            "HEAD",
            &url,
            &[format!("repository:{repository}:pull")],
            &[(
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, \
                 application/vnd.oci.image.index.v1+json",
            )],
            client::Body::Empty,
            false,
        )?;
        match reply.status {
            200 => {}
            404 => {
                return Err(Error::NotInRegistry {
                    reference: reference.to_string(),
                })
            }
            status => {
                return Err(Error::Registry {
                    url,
                    message: format!("HTTP {status} for the manifest"),
                })
            }
        }
    }
    Ok(references.len())
}
