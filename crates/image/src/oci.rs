//! OCI images: the config and manifest of an image from its layers, and the image layout
//! directory (`oci-layout`, `index.json`, `blobs/sha256/`) that podman and registries read.
//!
//! `index.json` is replaced in one rename at the very end of a build, so a failed build leaves
//! the previous images and their names as they were; blobs are only ever added.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, HistoryBuilder,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Os,
    RootFsBuilder,
};

use crate::cache::{Cache, LayerRecord};
use crate::error::{Error, Result};
use crate::layer::tar::Compression;

/// The annotation that names an image in an index (`oci:DIR:NAME`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How an image runs.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    /// The command.
    pub cmd: Vec<String>,
    /// Ports (`80/tcp`).
    pub expose: Vec<String>,
    /// The working directory.
    pub workdir: Option<String>,
}

/// An image written to the cache: its manifest's descriptor and digest.
#[derive(Clone, Debug)]
pub struct Built {
    /// The manifest descriptor (digest, size, media type).
    pub manifest: Descriptor,
    /// Total compressed size of config and layers.
    pub size: u64,
}

fn descriptor(media_type: MediaType, digest: &str, size: u64) -> Result<Descriptor> {
    let digest = Digest::from_str(digest).map_err(|e| Error::Config {
        path: PathBuf::from(digest),
        message: e.to_string(),
    })?;
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest)
        .size(size)
        .build()
        .map_err(|e| Error::Config {
            path: PathBuf::new(),
            message: e.to_string(),
        })
}

fn spec_error(e: impl std::fmt::Display) -> Error {
    Error::Config {
        path: PathBuf::from("<oci>"),
        message: e.to_string(),
    }
}

/// Writes the config and manifest of an image made of `layers` (named, in order) into the
/// cache. Every timestamp is `epoch`, so the same layers give the same digest.
pub fn assemble(
    cache: &Cache,
    layers: &[(String, LayerRecord)],
    run: &RunConfig,
    epoch: u64,
) -> Result<Built> {
    let created = rfc3339(epoch);
    let mut config = ConfigBuilder::default();
    config = config.env(vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    ]);
    if !run.cmd.is_empty() {
        config = config.cmd(run.cmd.clone());
    }
    if !run.expose.is_empty() {
        config = config.exposed_ports(run.expose.clone());
    }
    if let Some(dir) = &run.workdir {
        config = config.working_dir(dir.clone());
    }
    let history = layers
        .iter()
        .map(|(name, _)| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by(format!("wikikube build: {name}"))
                .build()
                .map_err(spec_error)
        })
        .collect::<Result<Vec<_>>>()?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(
            layers
                .iter()
                .map(|(_, l)| l.diff_id.clone())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(spec_error)?;
    let image_config = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .config(config.build().map_err(spec_error)?)
        .rootfs(rootfs)
        .history(history)
        .build()
        .map_err(spec_error)?;
    let config_bytes = serde_json::to_vec(&image_config).map_err(spec_error)?;
    let config_digest = cache.put_blob(&config_bytes)?;
    let layer_descriptors = layers
        .iter()
        .map(|(_, l)| {
            let media_type = match l.compression {
                Compression::Gzip => MediaType::ImageLayerGzip,
                Compression::Zstd => MediaType::ImageLayerZstd,
            };
            descriptor(media_type, &l.digest, l.size)
        })
        .collect::<Result<Vec<_>>>()?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            &config_digest,
            config_bytes.len() as u64,
        )?)
        .layers(layer_descriptors)
        .build()
        .map_err(spec_error)?;
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(spec_error)?;
    let manifest_digest = cache.put_blob(&manifest_bytes)?;
    let size = config_bytes.len() as u64 + layers.iter().map(|(_, l)| l.size).sum::<u64>();
    Ok(Built {
        manifest: descriptor(
            MediaType::ImageManifest,
            &manifest_digest,
            manifest_bytes.len() as u64,
        )?,
        size,
    })
}

/// The blobs an image needs: its manifest, config and layers.
pub fn blobs_of(cache: &Cache, manifest: &Descriptor) -> Result<Vec<Descriptor>> {
    let path = cache.blob_path(manifest.digest().as_ref());
    let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
    let parsed: oci_spec::image::ImageManifest =
        serde_json::from_slice(&bytes).map_err(spec_error)?;
    let mut blobs = vec![parsed.config().clone()];
    blobs.extend(parsed.layers().iter().cloned());
    blobs.push(manifest.clone());
    Ok(blobs)
}

/// The digest and bytes of the empty JSON blob `{}` that an artifact manifest names as config.
const EMPTY_JSON: &[u8] = b"{}";

/// Writes an artifact (one blob of `media_type`) whose subject is `subject` as an OCI 1.1
/// artifact manifest into the cache; returns the manifest's descriptor, with its artifact
/// type, as an index lists it.
pub fn artifact(
    cache: &Cache,
    subject: &Descriptor,
    media_type: &str,
    bytes: &[u8],
    epoch: u64,
) -> Result<Descriptor> {
    let blob = cache.put_blob(bytes)?;
    let empty = cache.put_blob(EMPTY_JSON)?;
    let annotations: std::collections::HashMap<String, String> = [(
        "org.opencontainers.image.created".to_string(),
        rfc3339(epoch),
    )]
    .into();
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(media_type.to_string()))
        .config(descriptor(
            MediaType::EmptyJSON,
            &empty,
            EMPTY_JSON.len() as u64,
        )?)
        .layers(vec![descriptor(
            MediaType::Other(media_type.to_string()),
            &blob,
            bytes.len() as u64,
        )?])
        .subject(subject.clone())
        .annotations(annotations.clone())
        .build()
        .map_err(spec_error)?;
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(spec_error)?;
    let digest = cache.put_blob(&manifest_bytes)?;
    let mut found = descriptor(
        MediaType::ImageManifest,
        &digest,
        manifest_bytes.len() as u64,
    )?;
    found.set_artifact_type(Some(MediaType::Other(media_type.to_string())));
    found.set_annotations(Some(annotations));
    Ok(found)
}

/// Writes an OCI image layout at `out` naming each image, with the artifacts whose subject
/// each image is (`referrers`: image name -> artifact manifests); images already in the
/// layout under other names are kept, with their referrers.
pub fn write_layout(
    cache: &Cache,
    out: &Path,
    images: &BTreeMap<String, Descriptor>,
    referrers: &BTreeMap<String, Vec<Descriptor>>,
) -> Result<()> {
    let blobs = out.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(Error::io(&blobs))?;
    std::fs::write(out.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .map_err(Error::io(out))?;
    for manifest in images.values().chain(referrers.values().flatten()) {
        for blob in blobs_of(cache, manifest)? {
            let digest = blob.digest().to_string();
            let source = cache.blob_path(&digest);
            let dest = out
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"));
            if dest.exists() {
                continue;
            }
            // A hard link costs nothing when the cache is on the same filesystem.
            if std::fs::hard_link(&source, &dest).is_err() {
                let tmp = dest.with_extension("tmp");
                std::fs::copy(&source, &tmp).map_err(Error::io(&source))?;
                std::fs::rename(&tmp, &dest).map_err(Error::io(&dest))?;
            }
        }
    }
    let mut named: BTreeMap<String, Descriptor> = read_index(out)?;
    let mut by_subject = read_referrers(out)?;
    named.extend(images.iter().map(|(k, v)| (k.clone(), v.clone())));
    for (name, list) in referrers {
        if let Some(image) = images.get(name) {
            by_subject.insert(image.digest().to_string(), list.clone());
        }
    }
    let mut manifests = Vec::new();
    for (name, mut d) in named {
        // An image's referrers follow it, and leave with it when its name moves on.
        let subject = d.digest().to_string();
        d.set_annotations(Some([(REF_NAME.to_string(), name)].into_iter().collect()));
        manifests.push(d);
        manifests.extend(by_subject.remove(&subject).unwrap_or_default());
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(spec_error)?;
    let bytes = serde_json::to_vec_pretty(&index).map_err(spec_error)?;
    crate::cache::write_atomic(out, &out.join("index.json"), &bytes)
}

/// The images named in the layout at `out` (empty when there is none).
pub fn read_index(out: &Path) -> Result<BTreeMap<String, Descriptor>> {
    let path = out.join("index.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(BTreeMap::new());
    };
    let index: oci_spec::image::ImageIndex = serde_json::from_slice(&bytes).map_err(spec_error)?;
    Ok(index
        .manifests()
        .iter()
        .filter_map(|d| {
            let name = d.annotations().as_ref()?.get(REF_NAME)?.clone();
            Some((name, d.clone()))
        })
        .collect())
}

/// The artifacts in the layout at `out` by the digest of their subject: the manifests of its
/// index that have no name and a `subject` (OCI 1.1 referrers).
pub fn read_referrers(out: &Path) -> Result<BTreeMap<String, Vec<Descriptor>>> {
    let path = out.join("index.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(BTreeMap::new());
    };
    let index: oci_spec::image::ImageIndex = serde_json::from_slice(&bytes).map_err(spec_error)?;
    let mut found: BTreeMap<String, Vec<Descriptor>> = BTreeMap::new();
    for d in index.manifests() {
        let named = d
            .annotations()
            .as_ref()
            .is_some_and(|a| a.contains_key(REF_NAME));
        if named || d.artifact_type().is_none() {
            continue;
        }
        let blob = out
            .join("blobs/sha256")
            .join(d.digest().as_ref().trim_start_matches("sha256:"));
        let bytes = std::fs::read(&blob).map_err(Error::io(&blob))?;
        let manifest: oci_spec::image::ImageManifest =
            serde_json::from_slice(&bytes).map_err(spec_error)?;
        if let Some(subject) = manifest.subject() {
            found
                .entry(subject.digest().to_string())
                .or_default()
                .push(d.clone());
        }
    }
    Ok(found)
}

/// `epoch` as RFC 3339 UTC, by hand: a date library for one format is not worth a dependency.
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_epochs() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_716_163_200), "2024-05-20T00:00:00Z");
    }
}
