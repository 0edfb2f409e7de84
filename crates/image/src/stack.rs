//! The MediaWiki layers of the app image for code trees already on disk: each version's core,
//! its extensions and skins in [`crate::plan`] groups, its l10n cache split by language group,
//! and the site configuration, each keyed by the content hashes of its files.
//!
//! [`crate::build()`] makes the same layers from a site (and runs MediaWiki to make the l10n
//! cache); this entry point takes a tree that already holds them, which is what a deploy
//! machine with a checkout of Wikimedia's size has, and what `bench/image-scale.sh` measures.
//! Both key code by [`content_key`] over a [`Fingerprints`] store, so an unchanged tree is
//! stat'ed, never read, and a changed file costs reading that file and writing its layer.
//!
//! A group's layer is tens of megabytes at Wikimedia's size (185,000 files in ~80 groups for
//! two versions), too much to re-upload for a one-line backport. With
//! [`Options::incremental`], a changed group is its layer from a named earlier build (its
//! [`Base`]) plus one layer of what changed since, through [`crate::incremental`], the path
//! `wikikube build` takes too (its rules: [`REBASE_SHARE`], [`MAX_LAYERS`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::build::LayerReport;
use crate::cache::{Cache, LayerRecord};
use crate::code;
use crate::digest::{sha256, Inputs};
use crate::error::{Error, Result};
use crate::fingerprint::{Digest, Fingerprints, Stat};
use crate::incremental::{Incremental, Layer};
use crate::layer::{Contents, Data, Entry, Kind};
use crate::plan;

/// One MediaWiki version's tree on disk.
#[derive(Clone, Debug)]
pub struct VersionTree {
    /// The version (`1.45.0-wmf.3`); its code goes to `/srv/mediawiki/php-VERSION`.
    pub version: String,
    /// The code: the directory that holds `includes/`, `extensions/` and `skins/`.
    pub dir: PathBuf,
    /// The extensions to take from `extensions/`.
    pub extensions: Vec<String>,
    /// The skins to take from `skins/`.
    pub skins: Vec<String>,
    /// The l10n cache as MediaWiki's `rebuildLocalisationCache.php` wrote it (one
    /// `LANG.l10n.php` per language), if the tree has one.
    pub l10n_dir: Option<PathBuf>,
}

/// What a stack needs besides the trees.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Every mtime in the layers (SOURCE_DATE_EPOCH).
    pub epoch: u64,
    /// The config layer: path in the image -> content.
    pub config_files: BTreeMap<String, Vec<u8>>,
    /// Build each group as its layer in an earlier build (the base) plus one layer of what
    /// changed since, instead of rewriting the whole group (see [`Base`]).
    pub incremental: bool,
    /// The base to build on: the digest of a [`Base`] in the cache, as an earlier build's
    /// [`Stack::base`] named it. `None` (or a base the cache lacks) builds every group whole.
    pub base: Option<String>,
}

/// The layers made, bottom first.
#[derive(Clone, Debug, Default)]
pub struct Stack {
    /// Each layer's name and record, for [`crate::oci::assemble`].
    pub layers: Vec<(String, LayerRecord)>,
    /// Each layer as reported by a build.
    pub reports: Vec<LayerReport>,
    /// Uncompressed bytes written into new layers.
    pub tar_bytes: u64,
    /// With [`Options::incremental`]: the base the next build should name in [`Options::base`].
    pub base: Option<String>,
    /// Groups built as their base plus a layer of changes.
    pub deltas: usize,
    /// Groups whose changes had grown too large for a delta, built whole again.
    pub rebased: usize,
}

pub use crate::incremental::{Base, BaseGroup, MAX_LAYERS, REBASE_SHARE};

/// How a group's entries are found.
enum Walk<'a> {
    /// A version's core.
    Core(&'a VersionTree),
    /// Some extensions and skins of a version.
    Extensions(&'a VersionTree, Vec<String>, Vec<String>),
    /// Already listed (l10n files).
    Ready(Contents),
    /// Taken.
    Done,
}

impl Walk<'_> {
    fn contents(self) -> Result<Contents> {
        match self {
            Walk::Core(tree) => code::core(&tree.dir, "/", &tree.version),
            Walk::Extensions(tree, extensions, skins) => {
                code::extensions(&tree.dir, "/", &tree.version, &extensions, &skins)
            }
            Walk::Ready(contents) => Ok(contents),
            Walk::Done => Ok(Contents::default()),
        }
    }
}

/// A group walked: its entries, the content hash of each of its files (in the entries'
/// order), and the key of its content ([`content_key`]).
struct Walked {
    contents: Contents,
    digests: Vec<Digest>,
    content: String,
}

/// Walks every group and keys its entries, on as many threads as there are cores (up to
/// four): an unchanged tree of 185,000 files costs a stat per file and little else, and that
/// is spread over the cores. Each group's files are looked up in the store under one lock.
/// The results come back in the groups' order.
fn walk_all(walks: Vec<Walk>, fingerprints: &mut Fingerprints) -> Result<Vec<Walked>> {
    let count = walks.len();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4)
        .min(count.max(1));
    let queue = Mutex::new(walks.into_iter().enumerate());
    let store = Mutex::new(std::mem::replace(fingerprints, Fingerprints::in_memory()));
    let results: Mutex<Vec<Option<Result<Walked>>>> =
        Mutex::new((0..count).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some((index, walk)) = next else {
                    break;
                };
                let result = walk.contents().and_then(|contents| {
                    let files: Vec<(&Path, Option<Stat>)> = contents
                        .entries_seen()
                        .filter_map(|(entry, seen)| match &entry.kind {
                            Kind::File(Data::Path(path)) => Some((path.as_path(), seen.copied())),
                            _ => None,
                        })
                        .collect();
                    let digests = Fingerprints::hash_all_shared(&store, &files)?;
                    drop(files);
                    let content = content_digest(&contents, &digests);
                    Ok(Walked {
                        contents,
                        digests,
                        content,
                    })
                });
                results.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(result);
            });
        }
    });
    *fingerprints = store.into_inner().unwrap_or_else(|e| e.into_inner());
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.expect("every group was walked"))
        .collect()
}

/// Builds (or finds in `cache`) the MediaWiki layers of `versions`, then the config layer.
pub fn build(
    cache: &Cache,
    fingerprints: &mut Fingerprints,
    versions: &[VersionTree],
    options: &Options,
) -> Result<Stack> {
    let mut layering = Incremental::new(
        cache,
        options.epoch,
        options.incremental,
        options.base.as_deref(),
    )?;
    // Plans first, so that the number of groups (and so the room for deltas) is known.
    let mut groups: Vec<(String, String, Inputs, Walk)> = Vec::new();
    for tree in versions {
        let version = &tree.version;
        let mut inputs = Inputs::new("code");
        inputs.add("version", version);
        let id = format!("code {version}");
        groups.push((id.clone(), id, inputs, Walk::Core(tree)));

        for plan::ExtensionGroup {
            index,
            label,
            extensions,
            skins,
        } in plan::extension_groups(&tree.extensions, &tree.skins)
        {
            let mut inputs = Inputs::new("extensions");
            inputs
                .add("version", version)
                .add("extensions", extensions.join(","))
                .add("skins", skins.join(","));
            let id = format!("extensions {version} group {index:02}");
            let name = format!("extensions {version} {label}");
            groups.push((id, name, inputs, Walk::Extensions(tree, extensions, skins)));
        }

        if let Some(dir) = &tree.l10n_dir {
            let all = l10n_files(dir, version)?;
            let languages: Vec<String> = all
                .entries()
                .filter_map(|e| crate::l10n::language_of(&e.path).map(String::from))
                .collect();
            let plan = plan::groups(&languages, plan::L10N_LAYERS);
            let parts = crate::l10n::split(&all, &languages, &plan);
            for (group, contents) in plan.iter().zip(parts) {
                let mut inputs = Inputs::new("l10n-group");
                inputs
                    .add("version", version)
                    .add("languages", group.items.join(","));
                let id = format!("l10n {version} group {:02}", group.index);
                let name = format!("l10n {version} {}", group.label());
                groups.push((id, name, inputs, Walk::Ready(contents)));
            }
        }
    }
    // Every group and the config layer.
    layering.plan(groups.len() + 1);
    let walks: Vec<Walk> = groups
        .iter_mut()
        .map(|g| std::mem::replace(&mut g.3, Walk::Done))
        .collect();
    let walked = walk_all(walks, fingerprints)?;
    let mut stack = Stack::default();
    for ((id, name, mut inputs, _), walked) in groups.into_iter().zip(walked) {
        inputs.add("content", &walked.content);
        // The list of every entry's key is made only for a group that changed.
        let mut walked = Some(walked);
        let layers = layering.group(&id, &name, &inputs, &mut || {
            let Walked {
                contents, digests, ..
            } = walked.take().expect("a group is produced once");
            let keys = keys_of(&contents, &digests);
            Ok((contents, keys))
        })?;
        stack.add(layers);
    }
    let mut inputs = Inputs::new("config");
    for (path, bytes) in &options.config_files {
        inputs.add(path, sha256(bytes));
    }
    let config = layering.layer("config", &inputs, &mut || {
        let mut config = Contents::default();
        for (path, bytes) in &options.config_files {
            config.add(Entry::file(
                path.trim_start_matches('/'),
                Data::Bytes(bytes.clone()),
                false,
            ));
        }
        Ok(config)
    })?;
    stack.add(vec![config]);
    let summary = layering.finish()?;
    stack.base = summary.base;
    stack.deltas = summary.deltas;
    stack.rebased = summary.rebased;
    stack.tar_bytes = summary.tar_bytes;
    Ok(stack)
}

impl Stack {
    fn add(&mut self, layers: Vec<Layer>) {
        for (name, record, report) in layers {
            self.layers.push((name, record));
            self.reports.push(report);
        }
    }
}

/// The key of a layer's content: every entry's path, kind and mode, and for files the hash of
/// their bytes (from `fingerprints`, so unchanged files are not read).
pub fn content_key(fingerprints: &mut Fingerprints, contents: &Contents) -> Result<String> {
    Ok(content_digest(
        contents,
        &file_digests(fingerprints, contents)?,
    ))
}

/// Each entry's key, by path: what [`content_key`] hashes, and what
/// [`crate::incremental`] compares to find what changed in a group.
pub fn file_keys(
    fingerprints: &mut Fingerprints,
    contents: &Contents,
) -> Result<crate::incremental::FileKeys> {
    Ok(keys_of(contents, &file_digests(fingerprints, contents)?))
}

/// The content hash of each file of `contents` read from the build machine, in order.
fn file_digests(fingerprints: &mut Fingerprints, contents: &Contents) -> Result<Vec<Digest>> {
    let mut digests = Vec::new();
    for (entry, seen) in contents.entries_seen() {
        if let Kind::File(Data::Path(path)) = &entry.kind {
            digests.push(fingerprints.digest(path, seen.copied())?);
        }
    }
    Ok(digests)
}

/// [`content_key`] from the digests of the files: streamed through one buffer, since a
/// no-op build keys 185,000 entries and a string (and a map entry) each would be most of it.
fn content_digest(contents: &Contents, digests: &[Digest]) -> String {
    let mut hasher = Inputs::new("content").hasher();
    let mut key = String::with_capacity(128);
    let mut files = digests.iter();
    for entry in contents.entries() {
        key.clear();
        entry_key(entry, &mut files, &mut key);
        hasher.add(&entry.path, &key);
    }
    hasher.finish()
}

/// Each entry's part of [`content_key`], by path.
fn keys_of(contents: &Contents, digests: &[Digest]) -> crate::incremental::FileKeys {
    let mut files = digests.iter();
    contents
        .entries()
        .map(|entry| {
            let mut key = String::new();
            entry_key(entry, &mut files, &mut key);
            (entry.path.clone(), key)
        })
        .collect()
}

/// Writes an entry's key into `out`; `files` gives the digest of each file read from the
/// build machine, in the entries' order.
fn entry_key<'a>(entry: &Entry, files: &mut impl Iterator<Item = &'a Digest>, out: &mut String) {
    use std::fmt::Write as _;
    match &entry.kind {
        Kind::Dir => out.push_str("dir"),
        Kind::File(Data::Path(_)) => {
            let digest = files.next().expect("a digest for every file");
            let mut hex = [0u8; 64];
            hex::encode_to_slice(digest, &mut hex).expect("64 hex digits");
            out.push_str("sha256:");
            out.push_str(std::str::from_utf8(&hex).expect("hex is ASCII"));
        }
        Kind::File(Data::Bytes(bytes)) => out.push_str(&sha256(bytes)),
        Kind::File(Data::TarSlice { file, offset, len }) => {
            // Slices of a rootfs tarball, which is itself named by its packages' hashes.
            let _ = write!(out, "{} {offset} {len}", file.display());
        }
        Kind::Symlink(target) => {
            let _ = write!(out, "-> {target}");
        }
        Kind::Hardlink(target) => {
            let _ = write!(out, "=> {target}");
        }
        Kind::Whiteout => out.push_str("whiteout"),
    }
    let _ = write!(out, " {:o} {}:{}", entry.mode, entry.uid, entry.gid);
}

/// The files of an l10n cache directory, as they go into the image.
fn l10n_files(dir: &std::path::Path, version: &str) -> Result<Contents> {
    let prefix = code::image_dir(version);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(Error::io(dir))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .map_err(Error::io(dir))?;
    names.sort();
    let mut contents = Contents::default();
    for name in names {
        let path = dir.join(&name);
        if path.is_file() {
            contents.add(Entry::file(
                format!("{prefix}/cache/l10n/{name}"),
                Data::Path(path),
                false,
            ));
        }
    }
    Ok(contents)
}
