//! The build of a site's images: which layers each image has, what each layer's inputs are,
//! and reusing every layer whose inputs the cache has seen.
//!
//! Images and their layers, bottom first:
//! - each `[bases.NAME]` of build.toml: one layer, the Debian rootfs;
//! - `app`: base-php; the code of each MediaWiki version; its extensions and skins; its
//!   security patches; its l10n cache; the site configuration (and private settings only when
//!   build.toml says `[app] private_settings = true`);
//! - `webserver`: base-httpd; the static files of each version (no PHP).
//!
//! The app's and the webserver's groups of files (code, extension groups, patches, l10n
//! groups, static files) are built on the base recorded by the site's last build of the image
//! ([`crate::incremental`]): a group that changed a little is its earlier layer plus a layer
//! of changes. With an empty cache (a fresh machine) there is no base, and every group is one
//! whole layer: the digests of a build that knows nothing of deltas.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::attest;
use crate::cache::{Cache, LayerRecord};
use crate::code;
use crate::config::{BaseConfig, BuildConfig};
use crate::digest::{sha256, Inputs};
use crate::error::{Error, Result};
use crate::fingerprint::Fingerprints;
use crate::incremental::{self, FileKeys, Incremental, Layer, Part, Summary};
use crate::layer::{self, Contents, Data, Entry, Kind};
use crate::lock::Lock;
use crate::oci::{self, RunConfig};
use crate::patches;
use crate::plan;
use crate::progress::Progress;
use crate::rootfs::debian::{self, LockMode, LockUpdate, Resolver};
use crate::rootfs::tarball;
use crate::stack::{content_key, file_keys};

/// What a build needs besides the site.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The cache directory ([`Cache::default_dir`] when the CLI is given none).
    pub cache_dir: PathBuf,
    /// The OCI layout to write; `<cache>/out/<site>` when `None`.
    pub out_dir: Option<PathBuf>,
    /// How the build may use and change `packages.lock`.
    pub lock_mode: LockMode,
    /// The config layer: path in the image -> content (render's `config_files`).
    pub config_files: BTreeMap<String, Vec<u8>>,
    /// Private settings files; used only when build.toml asks for them.
    pub private_files: BTreeMap<String, Vec<u8>>,
    /// Keep rootfs tarballs here instead of in the cache (tests share them between caches).
    pub rootfs_dir: Option<PathBuf>,
    /// Show progress on stderr (spinners on a terminal, one line per step otherwise).
    pub progress: bool,
    /// The project's own programs to package, each as an image of its own name with the
    /// executable in /usr/local/bin: image name (`edge`, `mcrouter`) -> executable.
    pub binaries: BTreeMap<String, PathBuf>,
    /// Build every group whole, ignoring the recorded base (the digests a fresh machine
    /// gets), and record that as the base of the next build.
    pub rebase: bool,
    /// The base images wanted as images of their own, by name (`base-swift`); `None` for every
    /// base of build.toml. `wikikube up` names the bases its pods run, so a farm without Swift
    /// or Redis never builds their rootfs. The bases other images stand on (`base-php`,
    /// `base-httpd`, [`BINARY_BASE`]) are built either way.
    pub bases_in_use: Option<BTreeSet<String>>,
}

/// The base of the images of the project's own programs: the smallest base the site already
/// builds (Debian's essential set plus memcached), so that no extra rootfs is needed.
pub const BINARY_BASE: &str = "base-memcached";

/// One layer in the report.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    /// What the layer holds (`code 1.39`).
    pub name: String,
    /// Digest of the compressed blob.
    pub digest: String,
    /// Digest of the tar.
    pub diff_id: String,
    /// Compressed size.
    pub size: u64,
    /// How the blob is compressed (`gzip`, `zstd`).
    pub compression: crate::layer::tar::Compression,
    /// Whether it came from the cache.
    pub reused: bool,
    /// Whether it is a whole group, a group's base layer, or a group's changes since its base.
    pub part: Part,
    /// Seconds spent on it.
    pub seconds: f64,
    /// Its inputs, as hashed into its cache key.
    pub inputs: Vec<(String, String)>,
}

/// An artifact that travels with an image (its SBOM or provenance), as an OCI 1.1 referrer.
#[derive(Clone, Debug, Serialize)]
pub struct ArtifactReport {
    /// The artifact manifest's digest (what the registry's referrers list names).
    pub manifest: String,
    /// The document's own digest (the manifest's one layer).
    pub blob: String,
    /// Its media type (`application/spdx+json`, `application/vnd.in-toto+json`).
    pub media_type: String,
    /// The document's size in bytes.
    pub size: u64,
}

/// One image in the report.
#[derive(Clone, Debug, Serialize)]
pub struct ImageReport {
    /// The image's name (`app`).
    pub image: String,
    /// The manifest digest.
    pub digest: String,
    /// Config and layers, compressed.
    pub size: u64,
    /// Its layers, bottom first.
    pub layers: Vec<LayerReport>,
    /// Layers taken from the cache.
    pub reused: usize,
    /// Layers built.
    pub built: usize,
    /// Groups built as their layer from the recorded base plus a layer of changes.
    pub deltas: usize,
    /// Groups that started again from a whole layer: their changes had grown past
    /// [`crate::incremental::REBASE_SHARE`] of the base layer, or the image had no room for
    /// another layer under [`crate::incremental::MAX_LAYERS`].
    pub rebased: usize,
    /// The base this build recorded for the next build of the image (app and webserver).
    pub base: Option<String>,
    /// Seconds spent on it.
    pub seconds: f64,
    /// Its SPDX 2.3 SBOM.
    pub sbom: ArtifactReport,
    /// Its in-toto SLSA v1 provenance.
    pub provenance: ArtifactReport,
}

/// What an image's SBOM and provenance say besides its layers.
#[derive(Clone, Debug, Default)]
struct Origin {
    /// The rootfs whose packages are in the image.
    rootfs: Vec<String>,
    /// Whether it holds MediaWiki's code (app, webserver).
    mediawiki: bool,
    /// The project's own programs in it: `(name, sha256)`.
    binaries: Vec<(String, String)>,
}

/// What a build did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The OCI layout written.
    pub out_dir: PathBuf,
    /// The images, in build order.
    pub images: Vec<ImageReport>,
    /// Uncompressed bytes written into layers this build (hashed and compressed).
    pub bytes_compressed: u64,
    /// Seconds spent writing those layers.
    pub seconds_compressing: f64,
    /// How `packages.lock` changed (empty when it did not).
    pub lock_updates: Vec<LockUpdate>,
}

/// Whether the base `name` is built: every base unless [`Options::bases_in_use`] leaves it out;
/// the bases other images stand on always.
fn base_wanted(options: &Options, name: &str) -> bool {
    matches!(name, "base-php" | "base-httpd" | BINARY_BASE)
        || options
            .bases_in_use
            .as_ref()
            .is_none_or(|in_use| in_use.contains(name))
}

/// Builds every image of `site` and writes them to an OCI layout.
pub fn build(site: &wikikube_model::ResolvedSite, options: &Options) -> Result<Report> {
    let config = BuildConfig::load(&site.dir)?;
    let lock = Lock::load(&site.dir)?;
    let mut cache = Cache::open(&options.cache_dir)?.with_compression(config.layers.compression);
    if let Some(dir) = &options.rootfs_dir {
        cache = cache.with_rootfs_dir(dir)?;
    }
    let out_dir = options
        .out_dir
        .clone()
        .unwrap_or_else(|| cache.root().join("out").join(&site.spec.site.name));
    let resolver = Resolver::new(&cache, &config, options.lock_mode);
    let fingerprints = Fingerprints::open(&cache);
    let mut builder = Builder {
        cache,
        config,
        lock,
        resolver,
        site,
        options,
        rootfs: BTreeMap::new(),
        code: BTreeMap::new(),
        l10n: BTreeMap::new(),
        progress: Progress::new(options.progress),
        fingerprints,
        bytes: 0,
        seconds: 0.0,
    };
    // Every lock entry is final before any cache key is computed from it.
    let mut lock_updates = Vec::new();
    for (name, base) in builder.config.rootfs_specs() {
        // A base left out is neither settled nor built: its lock entries stay as they are, for
        // the next build that wants it.
        if builder.config.bases.contains_key(&name) && !base_wanted(options, &name) {
            continue;
        }
        builder
            .progress
            .step(&name, "Debian packages (packages.lock)");
        if let Some(update) = builder.resolver.settle(&mut builder.lock, &name, &base)? {
            lock_updates.push(update);
        }
    }
    // MediaWiki's code from Debian's package is the longest rootfs to build (a minute or two of
    // dpkg here) and the last needed: started now, on a thread of its own, it is built beside
    // the bases instead of after them. Its cache key feeds the code layers' keys, so a cache
    // without its tarball has never built those layers either: it is not built for nothing.
    if builder.code_from_rootfs() {
        let name = builder.config.code.name.clone();
        let base = builder.spec_of(&name)?;
        if builder.resolver.start(&builder.lock, &name, &base)? {
            builder
                .progress
                .step(&name, "debian rootfs (mmdebstrap), beside the bases");
        }
    }
    let mut images = Vec::new();
    let mut named = BTreeMap::new();
    let mut referrers = BTreeMap::new();
    for (name, base) in builder.config.bases.clone() {
        if !base_wanted(options, &name) {
            continue;
        }
        let run = RunConfig {
            cmd: base.cmd.clone(),
            expose: base.expose.clone(),
            workdir: None,
        };
        let layers = vec![builder.base_layer(&name)?];
        let origin = Origin {
            rootfs: vec![name.clone()],
            ..Default::default()
        };
        let (report, manifest, artifacts) =
            builder.image(&name, layers, &run, origin, Summary::default())?;
        named.insert(name.clone(), manifest);
        referrers.insert(name, artifacts);
        images.push(report);
    }
    let (app, app_summary) = builder.app_layers()?;
    let php = builder.base_config("base-php")?;
    let run = RunConfig {
        cmd: php.cmd,
        expose: php.expose,
        workdir: Some("/srv/mediawiki".into()),
    };
    let mut origin = Origin {
        rootfs: vec!["base-php".into()],
        mediawiki: true,
        ..Default::default()
    };
    if builder.code_from_rootfs() {
        origin.rootfs.push(builder.config.code.name.clone());
    }
    let (report, manifest, artifacts) =
        builder.image("app", app, &run, origin.clone(), app_summary)?;
    named.insert("app".into(), manifest);
    referrers.insert("app".to_string(), artifacts);
    images.push(report);
    let (web, web_summary) = builder.webserver_layers()?;
    let httpd = builder.base_config("base-httpd")?;
    let run = RunConfig {
        cmd: httpd.cmd,
        expose: httpd.expose,
        workdir: None,
    };
    origin.rootfs[0] = "base-httpd".into();
    let (report, manifest, artifacts) =
        builder.image("webserver", web, &run, origin, web_summary)?;
    named.insert("webserver".into(), manifest);
    referrers.insert("webserver".to_string(), artifacts);
    images.push(report);
    for (name, executable) in &options.binaries {
        let layers = builder.binary_layers(name, executable)?;
        let run = RunConfig {
            cmd: vec![format!("/usr/local/bin/{name}")],
            expose: Vec::new(),
            workdir: None,
        };
        let bytes = std::fs::read(executable).map_err(Error::io(executable))?;
        let origin = Origin {
            rootfs: vec![BINARY_BASE.to_string()],
            binaries: vec![(name.clone(), sha256(&bytes))],
            ..Default::default()
        };
        let (report, manifest, artifacts) =
            builder.image(name, layers, &run, origin, Summary::default())?;
        named.insert(name.clone(), manifest);
        referrers.insert(name.clone(), artifacts);
        images.push(report);
    }
    builder.progress.finish();
    builder.fingerprints.save()?;

    // Only now, with every image built, do the names in the layout move.
    oci::write_layout(&builder.cache, &out_dir, &named, &referrers)?;
    // And only once the layout names the new images is their base recorded for the next
    // build: a build that failed before this line left the previous record.
    let site_name = &site.spec.site.name;
    for image in &images {
        if let Some(base) = &image.base {
            let record = incremental::Record {
                image: image.digest.clone(),
                base: base.clone(),
            };
            incremental::record(&builder.cache, site_name, &image.image, &record)?;
        }
    }
    let report = Report {
        out_dir: out_dir.clone(),
        images,
        bytes_compressed: builder.bytes,
        seconds_compressing: builder.seconds,
        lock_updates,
    };
    let bytes = serde_json::to_vec_pretty(&report).expect("the report serializes");
    crate::cache::write_atomic(&out_dir, &out_dir.join("build-report.json"), &bytes)?;
    Ok(report)
}

/// How a layer of a group is made when the cache lacks it: from the builder, in a scratch
/// directory that lives until the layer is written.
type Make<'a> = Box<dyn FnOnce(&mut Builder<'a>, &Path) -> Result<Contents> + 'a>;

/// A group of an image's files, planned before any is built so that the number of layers
/// (and so the room for deltas) is known.
struct Planned<'a> {
    /// Stable across builds: what the recorded base knows the group by.
    id: String,
    /// The layer's name in reports.
    name: String,
    inputs: Inputs,
    make: Make<'a>,
}

struct Builder<'a> {
    cache: Cache,
    config: BuildConfig,
    lock: Lock,
    resolver: Resolver,
    site: &'a wikikube_model::ResolvedSite,
    options: &'a Options,
    /// Rootfs tarballs made or found this build: name -> (key, path).
    rootfs: BTreeMap<String, (String, PathBuf)>,
    /// Code read this build: version -> (core, extensions).
    code: BTreeMap<String, (Contents, Contents)>,
    /// l10n caches generated this build, by the key of their inputs: one run of MediaWiki's
    /// rebuild serves every language group's layer.
    l10n: BTreeMap<String, Contents>,
    progress: Progress,
    /// Content hashes of site files by their metadata: an unchanged site is not read again.
    fingerprints: Fingerprints,
    bytes: u64,
    seconds: f64,
}

impl<'a> Builder<'a> {
    fn base_config(&self, name: &str) -> Result<BaseConfig> {
        self.config
            .bases
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Config {
                path: self.site.dir.join(crate::config::FILE),
                message: format!("[bases.{name}] is missing"),
            })
    }

    fn spec_of(&self, name: &str) -> Result<BaseConfig> {
        self.config
            .rootfs_specs()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
            .ok_or_else(|| Error::Config {
                path: self.site.dir.join(crate::config::FILE),
                message: format!("no rootfs is named `{name}`"),
            })
    }

    /// The cache key of a rootfs, from the lock alone (no mmdebstrap run).
    fn rootfs_key(&self, name: &str) -> Result<String> {
        let base = self.spec_of(name)?;
        match self
            .lock
            .rootfs
            .get(name)
            .filter(|l| l.request == debian::request(&base))
        {
            Some(locked) => Ok(debian::inputs(&self.config, name, locked, &base).key()),
            None => Err(Error::StaleLock {
                path: self.lock.path.clone(),
                image: name.into(),
                reason: "its packages or customize commands are not in the lock".into(),
            }),
        }
    }

    /// The rootfs tarball `name`, built if the cache lacks it.
    fn rootfs(&mut self, name: &str, base: &BaseConfig) -> Result<(String, PathBuf)> {
        if let Some(found) = self.rootfs.get(name) {
            return Ok(found.clone());
        }
        let what = if self.resolver.is_started(name) {
            "debian rootfs (mmdebstrap, waiting for the build started beside the bases)"
        } else {
            "debian rootfs (mmdebstrap)"
        };
        self.progress.step(name, what);
        let found = self.resolver.ensure(&self.lock, name, base)?;
        self.rootfs.insert(name.to_string(), found.clone());
        Ok(found)
    }

    fn tree(&mut self, name: &str) -> Result<PathBuf> {
        let base = self.spec_of(name)?;
        let (key, path) = self.rootfs(name, &base)?;
        tarball::unpacked(&self.cache, &key, &path)
    }

    /// A layer: from the cache if its inputs were built before, else made by `make`.
    fn layer(
        &mut self,
        image: &str,
        name: &str,
        inputs: Inputs,
        make: impl FnOnce(&mut Self, &Path) -> Result<Contents>,
    ) -> Result<Layer> {
        let start = Instant::now();
        self.progress.step(image, name);
        let (record, reused) = match self.cache.layer(&inputs) {
            Some(record) => (record, true),
            None => {
                let tmp = self.cache.tempdir()?;
                let contents = make(self, tmp.path())?;
                self.progress.step(
                    image,
                    &format!("{name}: writing {} entries", contents.len()),
                );
                let write_start = Instant::now();
                let record =
                    layer::tar::write(&self.cache, &contents, self.config.source_date_epoch)?;
                self.seconds += write_start.elapsed().as_secs_f64();
                self.bytes += record.tar_size;
                self.cache.put_layer(&inputs, &record)?;
                (record, false)
            }
        };
        Ok(crate::incremental::report(
            name,
            record,
            reused,
            &inputs,
            Part::Whole,
            start,
        ))
    }

    fn base_layer(&mut self, name: &str) -> Result<Layer> {
        let key = self.rootfs_key(name)?;
        let mut inputs = Inputs::new("rootfs-layer");
        inputs
            .add("rootfs", key)
            .add("epoch", self.config.source_date_epoch.to_string());
        let name = name.to_string();
        self.layer(&name, &format!("{name} rootfs"), inputs, |b, _| {
            let base = b.spec_of(&name)?;
            let (_, path) = b.rootfs(&name, &base)?;
            tarball::contents(&path)
        })
    }

    /// [`BINARY_BASE`] and one layer with the executable, keyed by its content.
    fn binary_layers(&mut self, name: &str, executable: &Path) -> Result<Vec<Layer>> {
        let mut layers = vec![self.base_layer(BINARY_BASE)?];
        let bytes = std::fs::read(executable).map_err(Error::io(executable))?;
        let mut inputs = Inputs::new("binary");
        inputs
            .add("name", name)
            .add("executable", sha256(&bytes))
            .add("epoch", self.config.source_date_epoch.to_string());
        let target = format!("usr/local/bin/{name}");
        let layer = self.layer(name, &format!("{name} executable"), inputs, move |_, _| {
            let mut contents = Contents::default();
            contents.add(Entry::file(target, Data::Bytes(bytes), true));
            Ok(contents)
        })?;
        layers.push(layer);
        Ok(layers)
    }

    fn code_from_rootfs(&self) -> bool {
        self.site
            .spec
            .versions
            .values()
            .any(|v| v.code.starts_with('/'))
    }

    /// What the SBOM and provenance of an image say.
    fn facts(
        &mut self,
        name: &str,
        manifest: &str,
        records: &[(String, LayerRecord)],
        origin: Origin,
    ) -> Result<attest::Facts> {
        let mut rootfs = Vec::new();
        for r in &origin.rootfs {
            if let Some(lock) = self.lock.rootfs.get(r) {
                rootfs.push((r.clone(), lock.clone()));
            }
        }
        let mut mediawiki = Vec::new();
        if origin.mediawiki {
            let spec = self.site.spec.clone();
            for version in spec.versions.keys() {
                let (dir, source) = self.code_source(version)?;
                let mut patches = Vec::new();
                for file in self.patch_files(version)? {
                    let bytes = std::fs::read(&file).map_err(Error::io(&file))?;
                    patches.push(sha256(&bytes));
                }
                patches.sort();
                mediawiki.push(attest::MediaWiki {
                    version: version.clone(),
                    source: format!("{dir} ({source})"),
                    extensions: spec.extensions.clone(),
                    skins: spec.skins.clone(),
                    patches,
                });
            }
        }
        let mut inputs = Vec::new();
        for file in [crate::config::FILE, crate::lock::FILE] {
            let path = self.site.dir.join(file);
            if let Ok(bytes) = std::fs::read(&path) {
                inputs.push((file.to_string(), sha256(&bytes)));
            }
        }
        Ok(attest::Facts {
            site: self.site.spec.site.name.clone(),
            image: name.to_string(),
            manifest: manifest.to_string(),
            epoch: self.config.source_date_epoch,
            suite: self.config.suite.clone(),
            rootfs,
            mediawiki,
            binaries: origin.binaries,
            inputs,
            layers: records
                .iter()
                .map(|(n, r)| (n.clone(), r.diff_id.clone()))
                .collect(),
        })
    }

    /// Writes one document as an artifact of `subject`.
    fn artifact(
        &self,
        subject: &oci_spec::image::Descriptor,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(ArtifactReport, oci_spec::image::Descriptor)> {
        let manifest = oci::artifact(
            &self.cache,
            subject,
            media_type,
            bytes,
            self.config.source_date_epoch,
        )?;
        let report = ArtifactReport {
            manifest: manifest.digest().to_string(),
            blob: sha256(bytes),
            media_type: media_type.to_string(),
            size: bytes.len() as u64,
        };
        Ok((report, manifest))
    }

    fn image(
        &mut self,
        name: &str,
        layers: Vec<Layer>,
        run: &RunConfig,
        origin: Origin,
        summary: Summary,
    ) -> Result<(
        ImageReport,
        oci_spec::image::Descriptor,
        Vec<oci_spec::image::Descriptor>,
    )> {
        let start = Instant::now();
        let records: Vec<(String, LayerRecord)> = layers
            .iter()
            .map(|(n, r, _)| (n.clone(), r.clone()))
            .collect();
        let built = oci::assemble(&self.cache, &records, run, self.config.source_date_epoch)?;
        let facts = self.facts(name, built.manifest.digest().as_ref(), &records, origin)?;
        let (sbom, sbom_manifest) =
            self.artifact(&built.manifest, attest::MEDIA_SBOM, &attest::sbom(&facts))?;
        let (provenance, provenance_manifest) = self.artifact(
            &built.manifest,
            attest::MEDIA_PROVENANCE,
            &attest::provenance(&facts),
        )?;
        let reports: Vec<LayerReport> = layers.into_iter().map(|(_, _, r)| r).collect();
        let reused = reports.iter().filter(|r| r.reused).count();
        let seconds =
            reports.iter().map(|r| r.seconds).sum::<f64>() + start.elapsed().as_secs_f64();
        self.progress.done(name, built.manifest.digest().as_ref());
        let report = ImageReport {
            image: name.to_string(),
            digest: built.manifest.digest().to_string(),
            size: built.size,
            built: reports.len() - reused,
            reused,
            deltas: summary.deltas,
            rebased: summary.rebased,
            base: summary.base,
            layers: reports,
            seconds,
            sbom,
            provenance,
        };
        Ok((
            report,
            built.manifest,
            vec![sbom_manifest, provenance_manifest],
        ))
    }

    /// Where a version's code is read from, and the key of that source.
    fn code_source(&mut self, version: &str) -> Result<(String, String)> {
        let spec = self.site.spec.versions[version].clone();
        if let (Some(tarball), Some(sha256)) = (&spec.tarball, &spec.sha256) {
            // The digest is checked before the tarball is read: it is the source's key.
            return Ok((tarball.clone(), format!("tarball {sha256}")));
        }
        if spec.code.starts_with('/') {
            let name = self.config.code.name.clone();
            Ok((spec.code, format!("rootfs {}", self.rootfs_key(&name)?)))
        } else {
            // Code in the site directory: its key is the digest of its content.
            let root = self.site.dir.clone();
            let contents = code::core(&root, &spec.code, version)?;
            Ok((
                spec.code,
                format!("site {}", content_key(&mut self.fingerprints, &contents)?),
            ))
        }
    }

    /// The tree a version's code is in, and the code's directory inside it.
    fn code_location(&mut self, version: &str) -> Result<(PathBuf, String)> {
        let spec = self.site.spec.versions[version].clone();
        if let (Some(tarball), Some(sha256)) = (&spec.tarball, &spec.sha256) {
            let path = self.site.dir.join(tarball);
            return code::unpack_tarball(&self.cache, &path, sha256, version);
        }
        if spec.code.starts_with('/') {
            let name = self.config.code.name.clone();
            Ok((self.tree(&name)?, spec.code))
        } else {
            Ok((self.site.dir.clone(), spec.code))
        }
    }

    /// Whether a version's code is in the site directory, where only its content can key it.
    fn code_in_site(&self, version: &str) -> bool {
        let spec = &self.site.spec.versions[version];
        spec.tarball.is_none() && !spec.code.starts_with('/')
    }

    fn code_contents(&mut self, version: &str) -> Result<(Contents, Contents)> {
        if let Some(found) = self.code.get(version) {
            return Ok(found.clone());
        }
        let (root, dir) = self.code_location(version)?;
        let core = code::core(&root, &dir, version)?;
        let spec = &self.site.spec;
        let ext = code::extensions(&root, &dir, version, &spec.extensions, &spec.skins)?;
        self.code
            .insert(version.to_string(), (core.clone(), ext.clone()));
        Ok((core, ext))
    }

    fn patch_files(&self, version: &str) -> Result<Vec<PathBuf>> {
        match &self.site.spec.versions[version].patches {
            Some(dir) => patches::list(&self.site.dir.join(dir)),
            None => Ok(vec![]),
        }
    }

    fn patched(&mut self, version: &str, work: &Path) -> Result<Contents> {
        let files = self.patch_files(version)?;
        let (core, ext) = self.code_contents(version)?;
        let mut both = core;
        for entry in ext.entries() {
            both.add(entry.clone());
        }
        patches::apply(&files, &both, &code::image_dir(version), work)
    }

    /// The layering of `image`'s groups, on the base the site's last build of it recorded.
    fn layering(&self, image: &str) -> Result<Incremental> {
        let base = if self.options.rebase {
            None
        } else {
            incremental::recorded(&self.cache, &self.site.spec.site.name, image).map(|r| r.base)
        };
        Incremental::new(
            &self.cache,
            self.config.source_date_epoch,
            true,
            base.as_deref(),
        )
    }

    /// Builds the planned groups of `image` on `layering`, in order.
    fn groups(
        &mut self,
        image: &str,
        layering: &mut Incremental,
        planned: Vec<Planned<'a>>,
    ) -> Result<Vec<Layer>> {
        let mut layers = Vec::new();
        for Planned {
            id,
            name,
            inputs,
            make,
        } in planned
        {
            self.progress.step(image, &name);
            let scratch = self.cache.tempdir()?;
            let mut make = Some(make);
            let mut produce = || -> Result<(Contents, FileKeys)> {
                let make = make.take().expect("a group is made once");
                let contents = make(self, scratch.path())?;
                self.progress.step(
                    image,
                    &format!("{name}: writing {} entries", contents.len()),
                );
                let keys = file_keys(&mut self.fingerprints, &contents)?;
                Ok((contents, keys))
            };
            layers.extend(layering.group(&id, &name, &inputs, &mut produce)?);
        }
        Ok(layers)
    }

    fn app_layers(&mut self) -> Result<(Vec<Layer>, Summary)> {
        let mut layers = vec![self.base_layer("base-php")?];
        let versions: Vec<String> = self.site.spec.versions.keys().cloned().collect();
        let spec = self.site.spec.clone();
        let mut planned: Vec<Planned<'a>> = Vec::new();
        let mut keys = BTreeMap::new();
        for version in &versions {
            let (dir, source) = self.code_source(version)?;
            let mut inputs = Inputs::new("code");
            inputs
                .add("version", version)
                // The version's name is written into its Defines.php (code::stamp_version).
                .add("stamp", "MW_VERSION")
                .add("code", &dir)
                .add("source", source);
            let code_key = inputs.key();
            let v = version.clone();
            planned.push(Planned {
                id: format!("code {version}"),
                name: format!("code {version}"),
                inputs,
                make: Box::new(move |b, _| Ok(b.code_contents(&v)?.0)),
            });
            keys.insert(version.clone(), code_key);
        }
        // Extensions and skins in groups (crate::plan): a change in one extension rebuilds
        // and re-pushes its group's layer only.
        let mut ext_keys = BTreeMap::new();
        for version in &versions {
            let mut all = Inputs::new("extensions");
            all.add("code", &keys[version]);
            for plan::ExtensionGroup {
                index,
                label,
                extensions,
                skins,
            } in plan::extension_groups(&spec.extensions, &spec.skins)
            {
                let mut inputs = Inputs::new("extensions");
                inputs
                    .add("code", &keys[version])
                    .add("extensions", extensions.join(","))
                    .add("skins", skins.join(","));
                if self.code_in_site(version) {
                    // Code in the site directory: the group's key is its content, since the
                    // code key covers core only.
                    let (root, dir) = self.code_location(version)?;
                    let contents = code::extensions(&root, &dir, version, &extensions, &skins)?;
                    inputs.add("content", content_key(&mut self.fingerprints, &contents)?);
                }
                all.add(&format!("group {index}"), inputs.key());
                let v = version.clone();
                planned.push(Planned {
                    id: format!("extensions {version} group {index:02}"),
                    name: format!("extensions {version} {label}"),
                    inputs,
                    make: Box::new(move |b, _| {
                        let (root, dir) = b.code_location(&v)?;
                        code::extensions(&root, &dir, &v, &extensions, &skins)
                    }),
                });
            }
            ext_keys.insert(version.clone(), all.key());
        }
        let mut l10n_patches = BTreeMap::new();
        for version in &versions {
            let files = self.patch_files(version)?;
            let mut for_l10n = Vec::new();
            let mut inputs = Inputs::new("patches");
            inputs.add("extensions", &ext_keys[version]);
            for file in &files {
                let bytes = std::fs::read(file).map_err(Error::io(file))?;
                let name = file
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let text = String::from_utf8_lossy(&bytes);
                if patches::targets(&text)
                    .iter()
                    .any(|t| crate::l10n::is_input(&format!("/{t}")))
                {
                    for_l10n.push((name.clone(), sha256(&bytes)));
                }
                inputs.add(&format!("patch {name}"), sha256(&bytes));
            }
            l10n_patches.insert(version.clone(), for_l10n);
            if files.is_empty() {
                continue;
            }
            let v = version.clone();
            planned.push(Planned {
                id: format!("patches {version}"),
                name: format!("patches {version}"),
                inputs,
                make: Box::new(move |b, work| b.patched(&v, work)),
            });
        }
        for version in &versions {
            // Every wiki's language, not only those of the wikis on this version today: the
            // train moves wikis between the versions an image carries without rebuilding it.
            let mut languages: Vec<String> = spec
                .wikis
                .values()
                .map(|w| w.language.clone())
                .chain(["en".to_string()])
                .collect();
            languages.sort();
            languages.dedup();
            let mut inputs = Inputs::new("l10n");
            inputs
                .add("php", self.rootfs_key("base-php")?)
                .add("extensions", &ext_keys[version])
                .add("languages", languages.join(","));
            for (name, digest) in &l10n_patches[version] {
                inputs.add(&format!("patch {name}"), digest);
            }
            // One run of MediaWiki's rebuild makes every language; its files are split into
            // layers by language group (crate::plan), so a message changed in a few languages
            // changes only their groups' layers and a push sends only those.
            let run = inputs.key();
            let groups = plan::groups(&languages, plan::L10N_LAYERS);
            // Files that belong to no language go with `en` (crate::l10n::split).
            for (number, group) in groups.iter().enumerate() {
                let mut inputs = Inputs::new("l10n-group");
                inputs
                    .add("run", &run)
                    .add("languages", group.items.join(","));
                let v = version.clone();
                let spec = spec.clone();
                let languages = languages.clone();
                let run = run.clone();
                let groups = groups.clone();
                planned.push(Planned {
                    id: format!("l10n {version} group {:02}", group.index),
                    name: format!("l10n {version} {}", group.label()),
                    inputs,
                    make: Box::new(move |b, work| {
                        if !b.l10n.contains_key(&run) {
                            let php = b.tree("base-php")?;
                            let patched = b.patched(&v, &work.join("patches"))?;
                            let (core, ext) = b.code_contents(&v)?;
                            let all = crate::l10n::build(
                                &php,
                                &[&core, &ext, &patched],
                                &v,
                                &spec.extensions,
                                &spec.skins,
                                &languages,
                                work,
                            )?;
                            b.l10n.insert(run.clone(), all);
                        }
                        let mut parts = crate::l10n::split(&b.l10n[&run], &languages, &groups);
                        Ok(std::mem::take(&mut parts[number]))
                    }),
                });
            }
        }
        let private = self.config.app.private_settings && !self.options.private_files.is_empty();
        let mut layering = self.layering("app")?;
        // base-php, the groups, config and private settings.
        layering.plan(1 + planned.len() + 1 + usize::from(private));
        layers.extend(self.groups("app", &mut layering, planned)?);
        layers.push(self.files_layer("config", &self.options.config_files.clone())?);
        if private {
            layers.push(self.files_layer("private", &self.options.private_files.clone())?);
        }
        let summary = layering.finish()?;
        self.bytes += summary.tar_bytes;
        self.seconds += summary.seconds_writing;
        Ok((layers, summary))
    }

    fn files_layer(&mut self, name: &str, files: &BTreeMap<String, Vec<u8>>) -> Result<Layer> {
        let mut inputs = Inputs::new(name);
        for (path, bytes) in files {
            inputs.add(path, sha256(bytes));
        }
        let files = files.clone();
        self.layer("app", name, inputs, move |_, _| {
            let mut contents = Contents::default();
            for (path, bytes) in files {
                contents.add(Entry::file(
                    path.trim_start_matches('/'),
                    Data::Bytes(bytes),
                    false,
                ));
            }
            Ok(contents)
        })
    }

    fn webserver_layers(&mut self) -> Result<(Vec<Layer>, Summary)> {
        let mut layers = vec![self.base_layer("base-httpd")?];
        let spec = self.site.spec.clone();
        let versions: Vec<String> = spec.versions.keys().cloned().collect();
        let mut planned: Vec<Planned<'a>> = Vec::new();
        for version in &versions {
            let (dir, source) = self.code_source(version)?;
            let mut inputs = Inputs::new("static");
            inputs
                .add("version", version)
                .add("code", &dir)
                .add("source", source)
                .add("extensions", spec.extensions.join(","))
                .add("skins", spec.skins.join(","));
            for file in self.patch_files(version)? {
                let bytes = std::fs::read(&file).map_err(Error::io(&file))?;
                inputs.add(
                    &file.file_name().unwrap_or_default().to_string_lossy(),
                    sha256(&bytes),
                );
            }
            let v = version.clone();
            planned.push(Planned {
                id: format!("static {version}"),
                name: format!("static {version}"),
                inputs,
                make: Box::new(move |b, work| {
                    let (core, ext) = b.code_contents(&v)?;
                    let patched = b.patched(&v, work)?;
                    let mut all = Contents::default();
                    for contents in [&core, &ext, &patched] {
                        for entry in contents.entries() {
                            let keep = match entry.kind {
                                Kind::File(_) => is_static(&entry.path),
                                Kind::Whiteout => false,
                                _ => false,
                            };
                            if keep {
                                all.add(entry.clone());
                            }
                        }
                    }
                    Ok(all)
                }),
            });
        }
        let mut layering = self.layering("webserver")?;
        layering.plan(1 + planned.len());
        layers.extend(self.groups("webserver", &mut layering, planned)?);
        let summary = layering.finish()?;
        self.bytes += summary.tar_bytes;
        self.seconds += summary.seconds_writing;
        Ok((layers, summary))
    }
}

/// Files the webserver serves itself: images, styles, scripts and fonts. Never PHP.
fn is_static(path: &str) -> bool {
    const EXTENSIONS: &[&str] = &[
        "png", "gif", "jpg", "jpeg", "svg", "ico", "webp", "cur", "css", "js", "map", "woff",
        "woff2", "ttf", "eot", "otf", "html", "txt", "xml", "xsl",
    ];
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    EXTENSIONS.contains(&ext.as_str())
}
