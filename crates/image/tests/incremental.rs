//! Groups built on a recorded base ([`wikikube_image::incremental`]), as `wikikube build` builds
//! the app image's code and extension groups: read from a small tree of real files with
//! [`wikikube_image::code`], keyed by [`wikikube_image::stack::content_key`], their base
//! recorded per site and image in the cache once a build is done. A changed file adds one small
//! layer and keeps every earlier layer; changes past the thresholds start the group again
//! whole; a cache without a record gives the layers of a build that knows nothing of deltas.

use std::path::Path;
use std::time::Duration;

use wikikube_image::cache::Cache;
use wikikube_image::code;
use wikikube_image::digest::Inputs;
use wikikube_image::fingerprint::Fingerprints;
use wikikube_image::incremental::{self, Incremental, Layer, Part, Summary};
use wikikube_image::layer::tar::Compression;
use wikikube_image::plan;
use wikikube_image::stack::{content_key, file_keys};

const EPOCH: u64 = 1_716_163_200;
const SITE: &str = "farm";
const VERSION: &str = "1.45";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A site directory with MediaWiki's code in `php/`: core and twelve extensions.
fn site(dir: &Path) -> Vec<String> {
    // The build writes the version's name here (code::stamp_version).
    write(
        &dir.join("php/includes/Defines.php"),
        "<?php\ndefine( 'MW_VERSION', '1.45.0' );\n",
    );
    for i in 0..20 {
        write(
            &dir.join(format!("php/includes/File{i}.php")),
            &format!("<?php // core {i}\n{}\n", "// filler\n".repeat(40)),
        );
    }
    let extensions: Vec<String> = (0..12).map(|i| format!("Ext{i:02}")).collect();
    for name in &extensions {
        write(
            &dir.join(format!("php/extensions/{name}/extension.json")),
            "{}\n",
        );
        for i in 0..8 {
            write(
                &dir.join(format!("php/extensions/{name}/includes/Hook{i}.php")),
                &format!("<?php // {name} {i}\n{}\n", "// filler\n".repeat(40)),
            );
        }
    }
    extensions
}

/// One build of the groups as `wikikube build` makes them (core, then the extension groups),
/// on the base recorded for the site's app image unless `rebase`; records the new base when
/// the build succeeds, as the build does once its layout is written.
struct Build {
    layers: Vec<Layer>,
    summary: Summary,
}

fn build(cache: &Cache, dir: &Path, extensions: &[String], max_layers: Option<usize>) -> Build {
    try_build(cache, dir, extensions, max_layers, false).unwrap()
}

fn try_build(
    cache: &Cache,
    dir: &Path,
    extensions: &[String],
    max_layers: Option<usize>,
    fail_at_the_end: bool,
) -> wikikube_image::Result<Build> {
    let mut fingerprints = Fingerprints::open(cache).with_racy_window(Duration::ZERO);
    let base = incremental::recorded(cache, SITE, "app").map(|r| r.base);
    let mut layering = Incremental::new(cache, EPOCH, true, base.as_deref())?;
    if let Some(max) = max_layers {
        layering = layering.with_max_layers(max);
    }
    let mut groups = vec![(format!("code {VERSION}"), code::core(dir, "php", VERSION)?)];
    for group in plan::extension_groups(extensions, &[]) {
        groups.push((
            format!("extensions {VERSION} group {:02}", group.index),
            code::extensions(dir, "php", VERSION, &group.extensions, &[])?,
        ));
    }
    layering.plan(groups.len());
    let mut layers = Vec::new();
    for (id, contents) in groups {
        let mut inputs = Inputs::new("group");
        inputs.add("content", content_key(&mut fingerprints, &contents)?);
        let keys = file_keys(&mut fingerprints, &contents)?;
        let mut produced = Some((contents, keys));
        layers.extend(layering.group(&id, &id, &inputs, &mut || Ok(produced.take().unwrap()))?);
    }
    fingerprints.save()?;
    let summary = layering.finish()?;
    if fail_at_the_end {
        return Err(wikikube_image::Error::Config {
            path: dir.to_path_buf(),
            message: "failed before the layout was written".into(),
        });
    }
    let record = incremental::Record {
        image: format!("{} layers", layers.len()),
        base: summary.base.clone().unwrap(),
    };
    incremental::record(cache, SITE, "app", &record)?;
    Ok(Build { layers, summary })
}

fn digests(layers: &[Layer]) -> Vec<String> {
    layers.iter().map(|(_, r, _)| r.digest.clone()).collect()
}

/// The files (not directories) in a layer blob.
fn files(cache: &Cache, digest: &str) -> Vec<String> {
    let file = std::fs::File::open(cache.blob_path(digest)).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .filter(|p| !p.ends_with('/'))
        .collect()
}

/// The digests a build without any history gives: every group whole.
fn whole(dir: &Path, extensions: &[String], name: &str) -> Vec<String> {
    let cache = Cache::open(&dir.join(name)).unwrap();
    digests(&build(&cache, &dir.join("site"), extensions, None).layers)
}

#[test]
fn a_changed_extension_file_adds_one_small_layer_and_keeps_every_earlier_one() {
    let dir = tempfile::tempdir().unwrap();
    let site_dir = dir.path().join("site");
    let extensions = site(&site_dir);
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let first = build(&cache, &site_dir, &extensions, None);
    assert_eq!(first.summary.deltas, 0);
    assert!(first.layers.iter().all(|(_, _, r)| r.part == Part::Whole));
    // A fresh machine (an empty cache) gets the same whole-group layers.
    assert_eq!(
        digests(&first.layers),
        whole(dir.path(), &extensions, "fresh")
    );

    // Nothing changed: the same layers, the same base.
    let again = build(&cache, &site_dir, &extensions, None);
    assert_eq!(digests(&again.layers), digests(&first.layers));
    assert_eq!(again.summary.base, first.summary.base);
    assert!(again.layers.iter().all(|(_, _, r)| r.reused));

    // A copy of this state, for another machine below.
    let copy = dir.path().join("copy");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&site_dir)
        .arg(&copy)
        .status();
    assert!(copied.unwrap().success());

    write(
        &site_dir.join("php/extensions/Ext05/includes/Hook3.php"),
        "<?php // Ext05 3, backported\n",
    );
    let second = build(&cache, &site_dir, &extensions, None);
    assert_eq!(second.summary.deltas, 1);
    assert_eq!(second.summary.rebased, 0);
    assert_eq!(second.layers.len(), first.layers.len() + 1);
    // The base did not move: the next build builds on the same layers.
    assert_eq!(second.summary.base, first.summary.base);
    let before = digests(&first.layers);
    let new: Vec<&Layer> = second
        .layers
        .iter()
        .filter(|(_, r, _)| !before.contains(&r.digest))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    let (name, record, report) = new[0];
    assert!(name.ends_with("(changes)"), "{name}");
    assert_eq!(report.part, Part::Changes);
    assert!(!report.reused);
    assert!(
        record.size < 1024,
        "a layer of changes of {} bytes",
        record.size
    );
    assert_eq!(
        files(&cache, &record.digest),
        ["srv/mediawiki/php-1.45/extensions/Ext05/includes/Hook3.php"]
    );
    // Every earlier layer is still there, in its order.
    let kept: Vec<String> = second
        .layers
        .iter()
        .filter(|(_, _, r)| r.part != Part::Changes)
        .map(|(_, r, _)| r.digest.clone())
        .collect();
    assert_eq!(kept, before);

    // The same tree and the same base give the same digests in another cache (another
    // machine that built the first state, then the change).
    let other = Cache::open(&dir.path().join("other")).unwrap();
    let other_first = build(&other, &copy, &extensions, None);
    assert_eq!(digests(&other_first.layers), before);
    write(
        &copy.join("php/extensions/Ext05/includes/Hook3.php"),
        "<?php // Ext05 3, backported\n",
    );
    let other_second = build(&other, &copy, &extensions, None);
    assert_eq!(digests(&other_second.layers), digests(&second.layers));
}

#[test]
fn switching_to_zstd_builds_every_group_whole_once_then_deltas_again() {
    let dir = tempfile::tempdir().unwrap();
    let site_dir = dir.path().join("site");
    let extensions = site(&site_dir);
    let gzip = Cache::open(&dir.path().join("cache")).unwrap();
    let first = build(&gzip, &site_dir, &extensions, None);
    write(&site_dir.join("php/includes/File3.php"), "<?php // 3\n");
    // The same cache, now writing zstd (build.toml's `[layers] compression` changed): no gzip
    // base layer is built on, so the image holds zstd layers only.
    let zstd = gzip.with_compression(Compression::Zstd);
    let second = build(&zstd, &site_dir, &extensions, None);
    assert_eq!((second.summary.deltas, second.summary.rebased), (0, 0));
    assert_eq!(second.layers.len(), first.layers.len());
    for (name, record, _) in &second.layers {
        assert_eq!(record.compression, Compression::Zstd, "{name}");
        assert!(!digests(&first.layers).contains(&record.digest), "{name}");
    }
    // From that zstd base, a small change is a small zstd layer again.
    write(&site_dir.join("php/includes/File4.php"), "<?php // 4\n");
    let third = build(&zstd, &site_dir, &extensions, None);
    assert_eq!(third.summary.deltas, 1);
    assert_eq!(third.layers[0].1.digest, second.layers[0].1.digest);
    assert_eq!(third.layers[1].1.compression, Compression::Zstd);
}

#[test]
fn a_group_changed_past_the_share_starts_again_whole() {
    let dir = tempfile::tempdir().unwrap();
    let site_dir = dir.path().join("site");
    let extensions = site(&site_dir);
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let first = build(&cache, &site_dir, &extensions, None);
    // Every core file changes: far more than a quarter of its layer.
    for i in 0..20 {
        write(
            &site_dir.join(format!("php/includes/File{i}.php")),
            &format!("<?php // core {i}, next\n{}\n", "// other\n".repeat(40)),
        );
    }
    let second = build(&cache, &site_dir, &extensions, None);
    assert_eq!((second.summary.deltas, second.summary.rebased), (0, 1));
    assert_ne!(second.summary.base, first.summary.base, "the base moved");
    assert_eq!(second.layers.len(), first.layers.len());
    // Whole again, it is what a machine without history builds.
    assert_eq!(
        digests(&second.layers),
        whole(dir.path(), &extensions, "fresh")
    );
    // And the next small change builds on the new core layer.
    write(&site_dir.join("php/includes/File3.php"), "<?php // 3\n");
    let third = build(&cache, &site_dir, &extensions, None);
    assert_eq!(third.summary.deltas, 1);
    assert_eq!(third.layers[0].1.digest, second.layers[0].1.digest);
}

#[test]
fn past_the_layer_limit_changed_groups_are_built_whole() {
    let dir = tempfile::tempdir().unwrap();
    let site_dir = dir.path().join("site");
    let extensions = site(&site_dir);
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let first = build(&cache, &site_dir, &extensions, None);
    let groups = first.layers.len();
    // Room for one layer more than the groups: one delta, then whole layers. One extension
    // changes in each of three groups.
    let changed: Vec<String> = plan::extension_groups(&extensions, &[])
        .into_iter()
        .take(3)
        .map(|group| group.extensions[0].clone())
        .collect();
    assert_eq!(changed.len(), 3);
    for name in &changed {
        write(
            &site_dir.join(format!("php/extensions/{name}/includes/Hook1.php")),
            &format!("<?php // {name} changed\n"),
        );
    }
    let second = build(&cache, &site_dir, &extensions, Some(groups + 1));
    assert_eq!(second.layers.len(), groups + 1);
    assert_eq!(second.summary.deltas, 1);
    assert!(second.summary.rebased >= 1, "{:?}", second.summary);
    assert_ne!(second.summary.base, first.summary.base);
}

#[test]
fn a_failed_build_leaves_the_recorded_base() {
    let dir = tempfile::tempdir().unwrap();
    let site_dir = dir.path().join("site");
    let extensions = site(&site_dir);
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    build(&cache, &site_dir, &extensions, None);
    let recorded = incremental::recorded(&cache, SITE, "app").unwrap();
    for i in 0..20 {
        write(
            &site_dir.join(format!("php/includes/File{i}.php")),
            &format!("<?php // rewritten {i}\n"),
        );
    }
    assert!(try_build(&cache, &site_dir, &extensions, None, true).is_err());
    assert_eq!(
        incremental::recorded(&cache, SITE, "app"),
        Some(recorded.clone())
    );
    // Another site (or image) has a record of its own.
    assert_eq!(incremental::recorded(&cache, "other", "app"), None);
    assert_eq!(incremental::recorded(&cache, SITE, "webserver"), None);
}
