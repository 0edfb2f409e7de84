//! Pushing images so that a registry never references something it does not fully have.
//!
//! For each image, in this order:
//! 1. every blob (config, layers, and the blobs of its SBOM and provenance) is made present in
//!    the image's repository: a `HEAD` first (an interrupted push resumes here without sending
//!    what the registry already has); then a cross-repository mount when another repository
//!    of this push holds it (base layers shared by `base-php` and `app` cross the wire once);
//!    only then an upload, whose bytes are hashed while they are read from the cache, so a
//!    corrupt cache entry is refused here rather than by a node pulling it;
//! 2. every blob is checked (`HEAD`: present, with the size of its descriptor and the digest
//!    the registry computed) before the manifest is written, so no manifest ever names a blob
//!    the registry lacks or holds wrongly;
//! 3. the image manifest is written by digest, then the SBOM and provenance manifests, as OCI
//!    1.1 referrers of the image (their `subject`). A registry with the referrers API says so
//!    with the `OCI-Subject` header; for one without it (Debian's docker-registry 2.8) the
//!    referrers index is kept under the fallback tag `sha256-<hex of the image digest>`, as
//!    the distribution spec describes;
//! 4. only then the tag moves to the image, so whoever follows the tag finds the image whole,
//!    with its SBOM and provenance.
//!
//! Resuming is per blob: a blob cut off mid-upload is sent again whole. Layers are a few
//! hundred MB at most (the layer plan keeps them so), and distribution's chunked resume would
//! add a protocol state machine for little gain.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::client::{Body, Client, ClientOptions};
use crate::cache::Cache;
use crate::error::{Error, Result};

/// The repository of an image under a registry location: `PREFIX/wikikube/IMAGE`.
pub fn repository_name(image: &str) -> String {
    format!("wikikube/{image}")
}

/// What a push did, in counts of blobs and bytes.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct PushReport {
    /// Blobs uploaded.
    pub uploaded: usize,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
    /// Blobs the repository already had.
    pub skipped: usize,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Manifests and referrer indexes written.
    pub manifests: usize,
    /// Each image pushed, by name.
    pub images: BTreeMap<String, PushedImage>,
}

/// How a registry keeps the referrers (SBOM, provenance) of an image.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Referrers {
    /// The OCI 1.1 referrers API: the registry lists them from their `subject`.
    Api,
    /// The distribution spec's fallback: an index under the tag `sha256-<hex of the image>`.
    TagSchema,
}

/// One image as pushed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PushedImage {
    /// `HOST[:PORT]/REPOSITORY@sha256:...`: what a pod spec should name.
    pub reference: String,
    /// `HOST[:PORT]/REPOSITORY`.
    pub repository: String,
    /// The tag it was also written under.
    pub tag: String,
    /// The manifest digest.
    pub digest: String,
    /// The manifest digests of its referrers (SBOM, provenance), as pushed.
    pub artifacts: Vec<String>,
    /// How the registry keeps them; `None` when the image has none.
    pub referrers: Option<Referrers>,
}

/// Something a push is doing, for progress and for tests that interrupt it.
#[derive(Clone, Debug)]
pub enum Event {
    /// `sent` bytes of the blob `digest` (of `size`) have been read for upload.
    Uploading {
        /// The blob.
        digest: String,
        /// Bytes read so far.
        sent: u64,
        /// The blob's size.
        size: u64,
    },
}

/// A push session to one registry: remembers which repository holds which blob, so later
/// images mount instead of uploading.
pub struct Pusher<'a> {
    client: Client,
    cache: &'a Cache,
    /// Blobs checked present this session: digest -> repository.
    known: BTreeMap<String, String>,
    on_event: Option<&'a (dyn Fn(&Event) + Sync)>,
}

impl<'a> Pusher<'a> {
    /// Opens a session to `registry` (`[scheme://]host[:port][/prefix]`), reading blobs from
    /// `cache`. Asks the registry once how to authenticate.
    pub fn new(cache: &'a Cache, registry: &str, options: &ClientOptions) -> Result<Pusher<'a>> {
        let client = Client::new(registry, options)?;
        client.ping()?;
        Ok(Pusher {
            client,
            cache,
            known: BTreeMap::new(),
            on_event: None,
        })
    }

    /// Calls `f` with every [`Event`].
    pub fn on_event(mut self, f: &'a (dyn Fn(&Event) + Sync)) -> Self {
        self.on_event = Some(f);
        self
    }

    /// The registry's `host:port`.
    pub fn host(&self) -> &str {
        &self.client.location.host
    }

    /// Pushes the image `name` (its manifest in the cache) and its `referrers` (artifact
    /// manifests whose subject it is), then writes it under `tag`; adds what it did to
    /// `report`.
    pub fn push_image(
        &mut self,
        name: &str,
        manifest: &Descriptor,
        referrers: &[Descriptor],
        tag: &str,
        report: &mut PushReport,
    ) -> Result<PushedImage> {
        let repo = self.client.location.repository(&repository_name(name));
        let mut blobs = crate::oci::blobs_of(self.cache, manifest)?;
        blobs.pop(); // the manifest itself
        for referrer in referrers {
            let mut more = crate::oci::blobs_of(self.cache, referrer)?;
            more.pop();
            blobs.extend(more);
        }
        let mut seen = std::collections::BTreeSet::new();
        blobs.retain(|b| seen.insert(b.digest().to_string()));
        for blob in &blobs {
            self.ensure_blob(&repo, blob, report)?;
        }
        // Step 2: nothing is referenced before everything it names is checked.
        for blob in &blobs {
            self.check_blob(&repo, blob)?;
        }
        // By digest first: the image and its referrers are complete before the tag, the name
        // people and tools follow, moves to them.
        let digest = manifest.digest().to_string();
        self.put_manifest(&repo, &digest, manifest)?;
        report.manifests += 1;
        let mut api = true;
        for referrer in referrers {
            let reply = self.put_manifest(&repo, referrer.digest().as_ref(), referrer)?;
            report.manifests += 1;
            // A registry that processed the subject says so in `OCI-Subject`.
            api &= reply.header("oci-subject").is_some();
        }
        let mode = match referrers.is_empty() {
            true => None,
            false if api || self.has_referrers_api(&repo, &digest)? => Some(Referrers::Api),
            false => {
                self.put_fallback_index(&repo, &digest, referrers)?;
                report.manifests += 1;
                Some(Referrers::TagSchema)
            }
        };
        self.put_manifest(&repo, tag, manifest)?;
        report.manifests += 1;
        Ok(PushedImage {
            reference: format!("{}/{repo}@{digest}", self.client.location.host),
            repository: format!("{}/{repo}", self.client.location.host),
            tag: tag.to_string(),
            digest,
            artifacts: referrers.iter().map(|r| r.digest().to_string()).collect(),
            referrers: mode,
        })
    }

    /// Pushes every image of the OCI layout at `layout` with its referrers, each under `tag`.
    pub fn push_layout(&mut self, layout: &Path, tag: &str) -> Result<PushReport> {
        let referrers = crate::oci::read_referrers(layout)?;
        let mut report = PushReport::default();
        // Bases first: the images built on them then mount their layers.
        let mut images: Vec<_> = crate::oci::read_index(layout)?.into_iter().collect();
        images.sort_by_key(|(name, _)| (!name.starts_with("base-"), name.clone()));
        for (image, manifest) in images {
            let mine = referrers
                .get(manifest.digest().as_ref())
                .cloned()
                .unwrap_or_default();
            let pushed = self.push_image(&image, &manifest, &mine, tag, &mut report)?;
            report.images.insert(image, pushed);
        }
        Ok(report)
    }

    fn scopes(repo: &str) -> Vec<String> {
        vec![format!("repository:{repo}:pull,push")]
    }

    fn blob_url(&self, repo: &str, digest: &str) -> String {
        self.client.url(&format!("{repo}/blobs/{digest}"))
    }

    /// Makes `blob` present in `repo`: there already, mounted, or uploaded.
    fn ensure_blob(
        &mut self,
        repo: &str,
        blob: &Descriptor,
        report: &mut PushReport,
    ) -> Result<()> {
        let digest = blob.digest().to_string();
        let url = self.blob_url(repo, &digest);
        let reply = self
            .client
            .send("HEAD", &url, &Self::scopes(repo), &[], Body::Empty, false)?;
        match reply.status {
            200 => {
                report.skipped += 1;
                self.known.insert(digest, repo.to_string());
                return Ok(());
            }
            404 => {}
            status => return Err(status_error(&url, status, &reply.body)),
        }
        let mut scopes = Self::scopes(repo);
        let start = match self.known.get(&digest).filter(|r| r.as_str() != repo) {
            Some(from) => {
                scopes.push(format!("repository:{from}:pull"));
                self.client
                    .url(&format!("{repo}/blobs/uploads/?mount={digest}&from={from}"))
            }
            None => self.client.url(&format!("{repo}/blobs/uploads/")),
        };
        let reply = self
            .client
            .send("POST", &start, &scopes, &[], Body::Empty, false)?;
        match reply.status {
            201 => {
                report.mounted += 1;
                self.known.insert(digest, repo.to_string());
                return Ok(());
            }
            202 => {}
            status => return Err(status_error(&start, status, &reply.body)),
        }
        let location = reply.header("location").ok_or_else(|| Error::Registry {
            url: start.clone(),
            message: "no Location header in the upload answer".into(),
        })?;
        let location = self.client.absolute(location);
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{separator}digest={digest}");
        let path = self.cache.blob_path(&digest);
        let size = blob.size();
        let on_event = self.on_event;
        let expected = digest.clone();
        let wrap = move |file: std::fs::File| -> Box<dyn Read + Send + '_> {
            Box::new(CheckingReader {
                inner: std::io::BufReader::with_capacity(1 << 20, file),
                hasher: Sha256::new(),
                expected: expected.clone(),
                sent: 0,
                size,
                on_event,
            })
        };
        let reply = self.client.send(
            "PUT",
            &put,
            &Self::scopes(repo),
            &[("Content-Type", "application/octet-stream")],
            Body::File(&path, &wrap),
            false,
        );
        let reply = match reply {
            Ok(reply) => reply,
            // The reader refused the cached bytes: say so rather than what the socket saw.
            Err(_) if !crate::digest::file_matches(&path, &digest) => {
                return Err(Error::CorruptBlob { path, digest })
            }
            Err(e) => return Err(e),
        };
        if reply.status != 201 {
            return Err(status_error(&put, reply.status, &reply.body));
        }
        report.uploaded += 1;
        report.bytes += size;
        self.known.insert(digest, repo.to_string());
        Ok(())
    }

    /// Fails unless `repo` holds `blob` with its size and digest.
    fn check_blob(&self, repo: &str, blob: &Descriptor) -> Result<()> {
        let digest = blob.digest().to_string();
        let url = self.blob_url(repo, &digest);
        let reply = self
            .client
            .send("HEAD", &url, &Self::scopes(repo), &[], Body::Empty, false)?;
        let size = reply
            .header("content-length")
            .and_then(|l| l.parse::<u64>().ok());
        let served = reply.header("docker-content-digest");
        let problem = if reply.status != 200 {
            Some(format!("HTTP {} for a blob just pushed", reply.status))
        } else if size != Some(blob.size()) {
            Some(format!(
                "it holds {} bytes where the manifest says {}",
                size.map_or("an unknown number of".into(), |s| s.to_string()),
                blob.size()
            ))
        } else if served.is_some_and(|d| d != digest) {
            Some(format!("it names it {}", served.unwrap_or_default()))
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(problem) => Err(Error::BlobCheck {
                registry: self.client.location.host.clone(),
                repository: repo.to_string(),
                digest,
                problem,
            }),
        }
    }

    /// Writes the manifest `manifest` (from the cache) under `reference` (a tag or its digest)
    /// and checks that the registry computed the same digest.
    fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Descriptor,
    ) -> Result<super::client::Reply> {
        let digest = manifest.digest().to_string();
        let path = self.cache.blob_path(&digest);
        let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
        if crate::digest::sha256(&bytes) != digest {
            return Err(Error::CorruptBlob { path, digest });
        }
        self.put_manifest_bytes(
            repo,
            reference,
            manifest.media_type().as_ref(),
            &bytes,
            &digest,
        )
    }

    fn put_manifest_bytes(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        digest: &str,
    ) -> Result<super::client::Reply> {
        let url = self.client.url(&format!("{repo}/manifests/{reference}"));
        let reply = self.client.send(
            "PUT",
            &url,
            &Self::scopes(repo),
            &[("Content-Type", media_type)],
            Body::Bytes(bytes),
            false,
        )?;
        if reply.status != 201 {
            return Err(status_error(&url, reply.status, &reply.body));
        }
        if let Some(served) = reply.header("docker-content-digest") {
            if served != digest {
                return Err(Error::BlobCheck {
                    registry: self.client.location.host.clone(),
                    repository: repo.to_string(),
                    digest: digest.to_string(),
                    problem: format!("the registry computed {served} for the manifest"),
                });
            }
        }
        Ok(reply)
    }

    fn has_referrers_api(&self, repo: &str, digest: &str) -> Result<bool> {
        let url = self.client.url(&format!("{repo}/referrers/{digest}"));
        let reply = self.client.send(
            "GET",
            &url,
            &Self::scopes(repo),
            &[("Accept", "application/vnd.oci.image.index.v1+json")],
            Body::Empty,
            true,
        )?;
        Ok(reply.status == 200
            && reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/vnd.oci.image.index.v1+json")))
    }

    /// The referrers tag schema: the index under `sha256-<hex>` lists every referrer of the
    /// image; ours are added to what is there (other tools may have put theirs).
    fn put_fallback_index(
        &self,
        repo: &str,
        subject: &str,
        referrers: &[Descriptor],
    ) -> Result<()> {
        let tag = fallback_tag(subject);
        let url = self.client.url(&format!("{repo}/manifests/{tag}"));
        let reply = self.client.send(
            "GET",
            &url,
            &Self::scopes(repo),
            &[("Accept", "application/vnd.oci.image.index.v1+json")],
            Body::Empty,
            true,
        )?;
        let mut manifests: Vec<Descriptor> = match reply.status {
            200 => serde_json::from_slice::<ImageIndex>(&reply.body)
                .map(|index| index.manifests().clone())
                .unwrap_or_default(),
            404 => Vec::new(),
            status => return Err(status_error(&url, status, &reply.body)),
        };
        for referrer in referrers {
            if !manifests.iter().any(|m| m.digest() == referrer.digest()) {
                manifests.push(referrer.clone());
            }
        }
        manifests.sort_by_key(|m| m.digest().to_string());
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(|e| Error::Registry {
                url: url.clone(),
                message: e.to_string(),
            })?;
        let bytes = serde_json::to_vec(&index).expect("an index serializes");
        let digest = crate::digest::sha256(&bytes);
        self.put_manifest_bytes(
            repo,
            &tag,
            "application/vnd.oci.image.index.v1+json",
            &bytes,
            &digest,
        )?;
        Ok(())
    }
}

/// The referrers fallback tag of `digest`: `sha256-<hex>`.
pub fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

fn status_error(url: &str, status: u16, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(body);
    Error::Registry {
        url: url.to_string(),
        message: format!("HTTP {status}: {}", text.trim()),
    }
}

/// Reads a cached blob for upload, hashing it; fails at the end when the bytes do not hash to
/// the digest they are stored under, so the registry never commits them.
struct CheckingReader<'a, R> {
    inner: R,
    hasher: Sha256,
    expected: String,
    sent: u64,
    size: u64,
    on_event: Option<&'a (dyn Fn(&Event) + Sync)>,
}

impl<R: Read> Read for CheckingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.sent += n as u64;
        if let Some(f) = self.on_event {
            f(&Event::Uploading {
                digest: self.expected.clone(),
                sent: self.sent,
                size: self.size,
            });
        }
        if n == 0 {
            let digest = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
            if digest != self.expected {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the cached blob hashes to {digest}"),
                ));
            }
        }
        Ok(n)
    }
}

/// Pushes every image of the OCI layout at `layout` with its referrers to `registry`
/// (`[scheme://]host[:port][/prefix]`) as `REGISTRY/wikikube/IMAGE:TAG`, with the default
/// [`ClientOptions`].
pub fn push_layout(cache: &Cache, layout: &Path, registry: &str, tag: &str) -> Result<PushReport> {
    Pusher::new(cache, registry, &ClientOptions::default())?.push_layout(layout, tag)
}
