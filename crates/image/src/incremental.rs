//! Layers built on a named base: a group of files (a MediaWiki version's core, a group of
//! extensions and skins, an l10n language group) is its whole layer from an earlier build plus
//! one layer of what changed since (files, and whiteouts for what is gone), so that a one-line
//! backport adds a layer of kilobytes instead of rewriting the group's tens of megabytes.
//! [`crate::build()`] (the app and webserver images of `wikikube build`) and [`crate::stack`]
//! (the same layers from trees on disk, as `bench/image-scale.sh` measures them) both build
//! their groups through [`Incremental`].
//!
//! Why an explicit base and not "the last build": a layer of changes depends on what it
//! changes, so its digest is reproducible only if what it builds on is an input. A build with
//! the same inputs and the same base gives the same digests with any cache that holds the base
//! (a blob named by its digest, with its groups' file lists, also blobs); a build without a
//! base, or whose cache lacks it, gives every group's whole layer, the same layers as a build
//! that knows nothing of deltas, and records a new base.
//!
//! A group starts again from a whole layer (it is *rebased*) when its changes exceed
//! [`REBASE_SHARE`] of its base layer, and deltas are given up when the image would exceed
//! [`MAX_LAYERS`]: Wikimedia's incremental images follow the same two rules (25%, 125 layers).
//!
//! `wikikube build` remembers the base each site's next build of an image should name in the
//! cache ([`recorded`], [`record`]), and writes that record only after the build has written
//! its OCI layout: a failed build leaves the previous record, as it leaves the previous layout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::build::LayerReport;
use crate::cache::{Cache, LayerRecord};
use crate::digest::Inputs;
use crate::error::{Error, Result};
use crate::layer::{self, Contents, Data, Entry, Kind};

/// At most this many layers in an image: deltas are given up (their groups rebuilt whole)
/// beyond it, so that an image stays well below containerd's 127.
pub const MAX_LAYERS: usize = 100;

/// A delta is given up, and its group rebuilt whole, when it would hold more than this share of
/// the base layer's bytes (Wikimedia's own incremental builds start again at 25%).
pub const REBASE_SHARE: f64 = 0.25;

/// Each entry's key of a group, by its path in the image: what the entry is and, for a file,
/// the hash of its bytes (see [`crate::stack::content_key`]). Two keys alike mean two entries
/// that write the same bytes into a layer.
pub type FileKeys = BTreeMap<String, String>;

/// A layer of an image: its name, its record, and how it is reported.
pub type Layer = (String, LayerRecord, LayerReport);

/// What a layer is to its group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// The whole group (or a layer that is never split, such as a rootfs or the config).
    #[default]
    Whole,
    /// The group's layer from the base, as it is.
    Base,
    /// What changed in the group since its base layer.
    Changes,
}

/// The layers an incremental build builds on: for each group, the layer an earlier build made
/// whole and the files it holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Base {
    /// Group (`extensions 1.45 group 07`) -> its base layer.
    pub groups: BTreeMap<String, BaseGroup>,
}

/// One group's base layer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BaseGroup {
    /// The layer.
    pub layer: LayerRecord,
    /// The cache key of the inputs it was built from ([`Inputs::key`]).
    pub content: String,
    /// The blob of its [`FileKeys`].
    pub files: String,
}

/// What an image's groups came to, for its report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// The base the next build of the image should name (`None` when not incremental).
    pub base: Option<String>,
    /// Groups built as their base layer plus a layer of changes.
    pub deltas: usize,
    /// Groups that had a base layer but were built whole again: their changes exceeded
    /// [`REBASE_SHARE`], or the image had no room left for a delta under [`MAX_LAYERS`].
    pub rebased: usize,
    /// Uncompressed bytes written into new layers.
    pub tar_bytes: u64,
    /// Seconds spent writing them.
    pub seconds_writing: f64,
}

/// Builds the layers of one image's groups, whole or on a base.
#[derive(Debug)]
pub struct Incremental {
    cache: Cache,
    epoch: u64,
    enabled: bool,
    old: Base,
    old_digest: Option<String>,
    new: Base,
    max_layers: usize,
    /// Deltas still allowed under `max_layers`.
    allowance: usize,
    summary: Summary,
}

impl Incremental {
    /// Builds on the base blob `base` when `enabled` (a base the cache lacks, or none, builds
    /// every group whole). Every layer's mtimes are `epoch`.
    pub fn new(cache: &Cache, epoch: u64, enabled: bool, base: Option<&str>) -> Result<Self> {
        let old = match base.filter(|_| enabled) {
            Some(digest) => {
                let path = cache.blob_path(digest);
                match std::fs::read(&path) {
                    Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Config {
                        path,
                        message: format!("not a base of layers: {e}"),
                    })?,
                    // A cache without the base builds every group whole, and records a new base.
                    Err(_) => Base::default(),
                }
            }
            None => Base::default(),
        };
        Ok(Incremental {
            cache: cache.clone(),
            epoch,
            enabled,
            old_digest: base.filter(|_| enabled).map(String::from),
            old,
            new: Base::default(),
            max_layers: MAX_LAYERS,
            allowance: MAX_LAYERS,
            summary: Summary::default(),
        })
    }

    /// Uses `max` instead of [`MAX_LAYERS`] (tests, which cannot make 100 groups cheaply).
    pub fn with_max_layers(mut self, max: usize) -> Self {
        self.max_layers = max;
        self.allowance = max;
        self
    }

    /// Says how many layers the image has when every group is whole: each delta adds one, and
    /// deltas stop at the layer limit.
    pub fn plan(&mut self, whole_layers: usize) {
        self.allowance = self.max_layers.saturating_sub(whole_layers);
    }

    /// The layers of group `id` (its report name `name`), whose content is fixed by `inputs`:
    /// its base layer when unchanged; its base layer and a layer of changes when it changed a
    /// little; else its whole layer, from the cache or written. `produce` gives the group's
    /// entries and their keys; it is called only when they are needed, at most once.
    pub fn group(
        &mut self,
        id: &str,
        name: &str,
        inputs: &Inputs,
        produce: &mut dyn FnMut() -> Result<(Contents, FileKeys)>,
    ) -> Result<Vec<Layer>> {
        let key = inputs.key();
        let mut produced = Produced {
            produce,
            value: None,
        };
        if self.enabled {
            // A base layer whose blob left the cache (pruned) cannot be built on, nor one
            // compressed otherwise than this build's layers (build.toml's compression changed):
            // such a group is built whole, and that becomes its base.
            let base = self.old.groups.get(id).cloned();
            let base = base.filter(|b| {
                b.layer.compression == self.cache.compression()
                    && self.cache.blob_path(&b.layer.digest).exists()
            });
            if let Some(base) = base {
                if base.content == key {
                    self.new.groups.insert(id.to_string(), base.clone());
                    return Ok(vec![self.reused(name, &base.layer, inputs, Part::Whole)]);
                }
                if self.allowance > 0 {
                    let mut delta_inputs = Inputs::new("delta");
                    delta_inputs
                        .add("base", &base.layer.digest)
                        .add("files", &base.files)
                        .add("content", &key);
                    let cached = self.cache.layer(&delta_inputs).is_some();
                    let delta = if cached {
                        Some(Contents::default())
                    } else {
                        let (contents, keys) = produced.get()?;
                        changes_since(&self.cache, &base, contents, keys)?
                    };
                    if delta.as_ref().is_some_and(|d| d.is_empty() && !cached) {
                        // New inputs, same entries (a patch that touches no static file): the
                        // base layer is the group, now known by its new inputs too.
                        let same = BaseGroup {
                            content: key,
                            ..base.clone()
                        };
                        self.new.groups.insert(id.to_string(), same);
                        return Ok(vec![self.reused(name, &base.layer, inputs, Part::Whole)]);
                    }
                    if let Some(delta) = delta {
                        self.allowance -= 1;
                        self.summary.deltas += 1;
                        self.new.groups.insert(id.to_string(), base.clone());
                        let below =
                            self.reused(&format!("{name} (base)"), &base.layer, inputs, Part::Base);
                        let changes = self.layer_of(
                            &format!("{name} (changes)"),
                            &delta_inputs,
                            Part::Changes,
                            &delta,
                        )?;
                        return Ok(vec![below, changes]);
                    }
                }
                self.summary.rebased += 1;
            }
        }
        let start = Instant::now();
        let (record, reused) = match self.cache.layer(inputs) {
            Some(record) => (record, true),
            None => {
                let (contents, _) = produced.get()?;
                let record = self.write(contents)?;
                self.cache.put_layer(inputs, &record)?;
                (record, false)
            }
        };
        if self.enabled {
            let files = match self.cache.layer_files(inputs) {
                Some(files) => files,
                None => {
                    let (_, keys) = produced.get()?;
                    let bytes = serde_json::to_vec(keys).expect("keys serialize");
                    let files = self.cache.put_blob(&bytes)?;
                    self.cache.put_layer_files(inputs, &files)?;
                    files
                }
            };
            self.new.groups.insert(
                id.to_string(),
                BaseGroup {
                    layer: record.clone(),
                    content: key,
                    files,
                },
            );
        }
        Ok(vec![report(
            name,
            record,
            reused,
            inputs,
            Part::Whole,
            start,
        )])
    }

    /// A layer that is never split into a base and changes (the config): from the cache, or
    /// written from `contents`.
    pub fn layer(
        &mut self,
        name: &str,
        inputs: &Inputs,
        contents: &mut dyn FnMut() -> Result<Contents>,
    ) -> Result<Layer> {
        let start = Instant::now();
        let (record, reused) = match self.cache.layer(inputs) {
            Some(record) => (record, true),
            None => {
                let record = self.write(&contents()?)?;
                self.cache.put_layer(inputs, &record)?;
                (record, false)
            }
        };
        Ok(report(name, record, reused, inputs, Part::Whole, start))
    }

    /// The base the next build should name, and what the groups came to. Stores the new base
    /// in the cache (a blob): recording it for a site is the caller's, once its build is done.
    pub fn finish(mut self) -> Result<Summary> {
        if self.enabled {
            self.summary.base = Some(match self.old_digest {
                Some(digest) if self.new == self.old => digest,
                _ => {
                    let bytes = serde_json::to_vec(&self.new).expect("a base serializes");
                    self.cache.put_blob(&bytes)?
                }
            });
        }
        Ok(self.summary)
    }

    fn layer_of(
        &mut self,
        name: &str,
        inputs: &Inputs,
        part: Part,
        contents: &Contents,
    ) -> Result<Layer> {
        let start = Instant::now();
        let (record, reused) = match self.cache.layer(inputs) {
            Some(record) => (record, true),
            None => {
                let record = self.write(contents)?;
                self.cache.put_layer(inputs, &record)?;
                (record, false)
            }
        };
        Ok(report(name, record, reused, inputs, part, start))
    }

    fn write(&mut self, contents: &Contents) -> Result<LayerRecord> {
        let start = Instant::now();
        let record = layer::tar::write(&self.cache, contents, self.epoch)?;
        self.summary.tar_bytes += record.tar_size;
        self.summary.seconds_writing += start.elapsed().as_secs_f64();
        Ok(record)
    }

    fn reused(&self, name: &str, record: &LayerRecord, inputs: &Inputs, part: Part) -> Layer {
        report(name, record.clone(), true, inputs, part, Instant::now())
    }
}

/// A group's entries and keys, produced on first use.
struct Produced<'a> {
    produce: &'a mut dyn FnMut() -> Result<(Contents, FileKeys)>,
    value: Option<(Contents, FileKeys)>,
}

impl Produced<'_> {
    fn get(&mut self) -> Result<&(Contents, FileKeys)> {
        if self.value.is_none() {
            self.value = Some((self.produce)()?);
        }
        Ok(self.value.as_ref().expect("just produced"))
    }
}

/// A layer with its report: the one place a [`LayerReport`] is made, for whole layers of
/// [`crate::build()`] as for the parts of a group here.
pub(crate) fn report(
    name: &str,
    record: LayerRecord,
    reused: bool,
    inputs: &Inputs,
    part: Part,
    start: Instant,
) -> Layer {
    let report = LayerReport {
        name: name.to_string(),
        digest: record.digest.clone(),
        diff_id: record.diff_id.clone(),
        size: record.size,
        compression: record.compression,
        reused,
        part,
        seconds: start.elapsed().as_secs_f64(),
        inputs: inputs.items.clone(),
    };
    (name.to_string(), record, report)
}

/// What changed in a group since `base`: changed and new entries, and whiteouts for what is
/// gone. `None` when that is more than [`REBASE_SHARE`] of the base layer, or when the cache
/// lacks the base's file list.
fn changes_since(
    cache: &Cache,
    base: &BaseGroup,
    contents: &Contents,
    keys: &FileKeys,
) -> Result<Option<Contents>> {
    let path = cache.blob_path(&base.files);
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let old: FileKeys = serde_json::from_slice(&bytes).map_err(|e| Error::Config {
        path,
        message: format!("not a list of files: {e}"),
    })?;
    let limit = REBASE_SHARE * base.layer.tar_size as f64;
    let mut delta = Contents::default();
    // Tar bytes: a header of 512 bytes per entry, and the data.
    let mut bytes = 0u64;
    for entry in contents.entries() {
        if old.get(&entry.path) == keys.get(&entry.path) {
            continue;
        }
        bytes += 512
            + match &entry.kind {
                Kind::File(Data::Path(file)) => {
                    std::fs::metadata(file).map_err(Error::io(file))?.len()
                }
                Kind::File(Data::Bytes(data)) => data.len() as u64,
                Kind::File(Data::TarSlice { len, .. }) => *len,
                _ => 0,
            };
        if bytes as f64 > limit {
            return Ok(None);
        }
        delta.add(entry.clone());
    }
    for path in old.keys() {
        if keys.contains_key(path) {
            continue;
        }
        // A whiteout of a directory hides what is under it: one is enough.
        let parent_gone = path
            .rsplit_once('/')
            .is_some_and(|(dir, _)| old.contains_key(dir) && !keys.contains_key(dir));
        if !parent_gone {
            delta.add(Entry {
                path: path.clone(),
                kind: Kind::Whiteout,
                mode: 0o644,
                uid: 0,
                gid: 0,
            });
            bytes += 512;
        }
    }
    if bytes as f64 > limit {
        return Ok(None);
    }
    Ok(Some(delta))
}

/// The base recorded for the next build of a site's image.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// The manifest digest of the image that was built on (or as) this base.
    pub image: String,
    /// The [`Base`] blob the next build names.
    pub base: String,
}

fn record_path(cache: &Cache, site: &str, image: &str) -> PathBuf {
    // Names come from site files; anything that could leave the directory is replaced.
    let safe = |name: &str| -> String {
        name.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
            .trim_start_matches('.')
            .to_string()
    };
    cache
        .root()
        .join("bases")
        .join(safe(site))
        .join(format!("{}.json", safe(image)))
}

/// The base recorded for `image` of `site` in `cache`, if any (an unreadable record counts as
/// none: it only costs whole layers once).
pub fn recorded(cache: &Cache, site: &str, image: &str) -> Option<Record> {
    let bytes = std::fs::read(record_path(cache, site, image)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Records `record` as the base of the next build of `image` of `site`, atomically.
pub fn record(cache: &Cache, site: &str, image: &str, record: &Record) -> Result<()> {
    let path = record_path(cache, site, image);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    }
    let bytes = serde_json::to_vec_pretty(record).expect("a record serializes");
    cache.write_atomic(&path, &bytes)
}

/// The MediaWiki versions that the app image of `site` built last in `cache` carries (its
/// `code VERSION` groups), or `None` when this cache built none. `wikikube train` reads it to
/// tell a configuration-only promotion from one that needs a build.
pub fn carried_versions(cache: &Cache, site: &str) -> Option<std::collections::BTreeSet<String>> {
    let record = recorded(cache, site, "app")?;
    let bytes = std::fs::read(cache.blob_path(&record.base)).ok()?;
    let base: Base = serde_json::from_slice(&bytes).ok()?;
    Some(
        base.groups
            .keys()
            .filter_map(|id| id.strip_prefix("code "))
            .map(str::to_string)
            .collect(),
    )
}
