//! Pushing images through the OCI distribution API, uploading only the blobs the registry
//! lacks (a `HEAD` per blob first), then the manifest under its tag.
//!
//! Written on ureq rather than a registry client crate: the four requests needed (HEAD blob,
//! POST upload, PUT upload, PUT manifest) are short, and the client crates pull in an async
//! runtime this crate has no other use for. Token authentication is not implemented (the
//! registries we push to are loopback or behind the network's own access control).

use std::path::Path;

use oci_spec::image::Descriptor;

use crate::cache::Cache;
use crate::error::{Error, Result};

/// What a push did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PushReport {
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
    /// Bytes uploaded.
    pub bytes: u64,
}

/// Pushes `image` (its manifest `manifest` from `cache`) to `registry` (`host:port` or
/// `host:port/prefix`) as `REGISTRY/wikikube/IMAGE:TAG`.
pub fn push(
    cache: &Cache,
    registry: &str,
    image: &str,
    tag: &str,
    manifest: &Descriptor,
) -> Result<PushReport> {
    let (host, prefix) = registry.split_once('/').unwrap_or((registry, ""));
    let scheme = if host.starts_with("localhost") || host.starts_with("127.") {
        "http"
    } else {
        "https"
    };
    let repo = if prefix.is_empty() {
        format!("wikikube/{image}")
    } else {
        format!("{}/wikikube/{image}", prefix.trim_matches('/'))
    };
    let base = format!("{scheme}://{host}/v2/{repo}");
    let agent = ureq::AgentBuilder::new().build();
    let mut report = PushReport::default();
    let blobs = crate::oci::blobs_of(cache, manifest)?;
    let (manifest_blob, blobs) = blobs.split_last().expect("blobs_of ends with the manifest");
    for blob in blobs {
        let digest = blob.digest().to_string();
        let url = format!("{base}/blobs/{digest}");
        match agent.head(&url).call() {
            Ok(_) => {
                report.skipped += 1;
                continue;
            }
            Err(ureq::Error::Status(404, _)) => {}
            Err(e) => {
                return Err(Error::Registry {
                    url,
                    message: e.to_string(),
                })
            }
        }
        upload(&agent, &base, cache, &digest)?;
        report.uploaded += 1;
        report.bytes += blob.size();
    }
    let path = cache.blob_path(manifest_blob.digest().as_ref());
    let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
    let url = format!("{base}/manifests/{tag}");
    agent
        .put(&url)
        .set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .send_bytes(&bytes)
        .map_err(|e| Error::Registry {
            url,
            message: describe(e),
        })?;
    Ok(report)
}

fn upload(agent: &ureq::Agent, base: &str, cache: &Cache, digest: &str) -> Result<()> {
    let url = format!("{base}/blobs/uploads/");
    let response = agent
        .post(&url)
        .send_bytes(&[])
        .map_err(|e| Error::Registry {
            url: url.clone(),
            message: describe(e),
        })?;
    let location = response.header("Location").ok_or_else(|| Error::Registry {
        url: url.clone(),
        message: "no Location header in the upload response".into(),
    })?;
    let location = if location.starts_with('/') {
        let origin: String = base.split('/').take(3).collect::<Vec<_>>().join("/");
        format!("{origin}{location}")
    } else {
        location.to_string()
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let put = format!("{location}{separator}digest={digest}");
    let path = cache.blob_path(digest);
    let file = std::fs::File::open(&path).map_err(Error::io(&path))?;
    let len = file.metadata().map_err(Error::io(&path))?.len();
    agent
        .put(&put)
        .set("Content-Type", "application/octet-stream")
        .set("Content-Length", &len.to_string())
        .send(file)
        .map_err(|e| Error::Registry {
            url: put,
            message: describe(e),
        })?;
    Ok(())
}

fn describe(error: ureq::Error) -> String {
    match error {
        ureq::Error::Status(code, response) => {
            format!(
                "HTTP {code}: {}",
                response.into_string().unwrap_or_default()
            )
        }
        other => other.to_string(),
    }
}

/// Pushes every image named in the layout at `layout` with tag `tag`.
pub fn push_layout(cache: &Cache, layout: &Path, registry: &str, tag: &str) -> Result<PushReport> {
    let mut total = PushReport::default();
    for (image, manifest) in crate::oci::read_index(layout)? {
        let report = push(cache, registry, &image, tag, &manifest)?;
        total.uploaded += report.uploaded;
        total.skipped += report.skipped;
        total.bytes += report.bytes;
    }
    Ok(total)
}
