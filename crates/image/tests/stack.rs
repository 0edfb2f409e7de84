//! The app image's MediaWiki layers from code trees on disk ([`wikikube_image::stack`]), on
//! small trees: the same code paths `bench/image-scale.sh` measures at Wikimedia's scale.
//! An unchanged tree is not read; a change, even one that keeps size and mtime, is seen and
//! rebuilds only its group; digests never depend on the build machine's metadata or on the
//! cache's history; an incremental build's layer of changes holds the change and nothing else.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use wikikube_image::cache::Cache;
use wikikube_image::fingerprint::Fingerprints;
use wikikube_image::stack::{self, Stack, VersionTree};

const EPOCH: u64 = 1_716_163_200;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Core, eight extensions, two skins and an l10n cache of five languages.
fn tree(dir: &Path) -> VersionTree {
    for i in 0..20 {
        write(
            &dir.join(format!("includes/File{i}.php")),
            &format!("<?php // core {i}\n"),
        );
    }
    write(
        &dir.join("index.php"),
        "<?php require 'includes/WebStart.php';\n",
    );
    // The build writes the version's name here (code::stamp_version).
    write(
        &dir.join("includes/Defines.php"),
        "<?php\ndefine( 'MW_VERSION', '1.45.0' );\n",
    );
    let extensions: Vec<String> = (0..8).map(|i| format!("Ext{i}")).collect();
    for name in &extensions {
        write(
            &dir.join(format!("extensions/{name}/extension.json")),
            "{}\n",
        );
        for i in 0..5 {
            write(
                &dir.join(format!("extensions/{name}/includes/Hook{i}.php")),
                &format!("<?php // {name} {i}\n"),
            );
        }
    }
    let skins = vec!["Vector".to_string(), "Timeless".to_string()];
    for name in &skins {
        write(&dir.join(format!("skins/{name}/skin.json")), "{}\n");
    }
    for language in ["en", "de", "fr", "ja", "nl"] {
        write(
            &dir.join(format!("cache/l10n/{language}.l10n.php")),
            &format!("<?php return ['lang' => '{language}', 'hello' => 'hello'];\n"),
        );
    }
    VersionTree {
        version: "1.45".into(),
        dir: dir.to_path_buf(),
        extensions,
        skins,
        l10n_dir: Some(dir.join("cache/l10n")),
    }
}

fn options(incremental: bool, base: Option<String>) -> stack::Options {
    let mut config_files = BTreeMap::new();
    config_files.insert(
        "srv/mediawiki/wikiversions.json".to_string(),
        b"{\"enwiki\": \"php-1.45\"}".to_vec(),
    );
    stack::Options {
        epoch: EPOCH,
        config_files,
        incremental,
        base,
    }
}

/// A store that trusts files written just now: these tests cannot wait out the racy window.
fn store(cache: &Cache) -> Fingerprints {
    Fingerprints::open(cache).with_racy_window(Duration::ZERO)
}

fn build(cache: &Cache, tree: &VersionTree, options: &stack::Options) -> (Stack, u64) {
    let mut fingerprints = store(cache);
    let built = stack::build(
        cache,
        &mut fingerprints,
        std::slice::from_ref(tree),
        options,
    )
    .unwrap();
    fingerprints.save().unwrap();
    (built, fingerprints.stats().hashed)
}

fn digests(stack: &Stack) -> Vec<String> {
    stack.layers.iter().map(|(_, r)| r.digest.clone()).collect()
}

/// The paths in a layer blob.
fn paths(cache: &Cache, digest: &str) -> Vec<String> {
    let file = std::fs::File::open(cache.blob_path(digest)).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut paths = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let mut body = String::new();
        entry.read_to_string(&mut body).unwrap();
        paths.push(entry.path().unwrap().to_string_lossy().into_owned());
    }
    paths
}

#[test]
fn a_no_op_rebuild_reads_no_file_and_rebuilds_no_layer() {
    let dir = tempfile::tempdir().unwrap();
    let tree = tree(&dir.path().join("php-1.45"));
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let (first, hashed) = build(&cache, &tree, &options(false, None));
    assert!(hashed > 50, "the cold build hashed only {hashed} files");
    // Groups: core, one per non-empty extension group, one per l10n group, config.
    assert!(first.layers.len() >= 5, "{:?}", first.layers);
    assert!(first.reports.iter().all(|r| !r.reused));
    let (second, hashed) = build(&cache, &tree, &options(false, None));
    assert_eq!(hashed, 0, "a no-op rebuild read files");
    assert!(second.reports.iter().all(|r| r.reused));
    assert_eq!(digests(&first), digests(&second));
}

#[test]
fn a_rewrite_with_the_same_size_and_mtime_rebuilds_its_group_only() {
    let dir = tempfile::tempdir().unwrap();
    let tree = tree(&dir.path().join("php-1.45"));
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let (first, _) = build(&cache, &tree, &options(false, None));
    let file = tree.dir.join("extensions/Ext3/includes/Hook2.php");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    let before = std::fs::read_to_string(&file).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let after = before.replace("Ext3", "EXT3");
    assert_eq!(before.len(), after.len());
    std::fs::write(&file, &after).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let (second, hashed) = build(&cache, &tree, &options(false, None));
    assert_eq!(hashed, 1, "only the rewritten file is read");
    let changed: Vec<_> = first
        .layers
        .iter()
        .zip(&second.layers)
        .filter(|(a, b)| a.1.digest != b.1.digest)
        .map(|(_, b)| b.0.clone())
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].starts_with("extensions"), "{changed:?}");
}

#[test]
fn digests_depend_on_content_not_on_metadata_or_cache() {
    let dir = tempfile::tempdir().unwrap();
    let tree_a = tree(&dir.path().join("a/php-1.45"));
    // The same tree written again elsewhere, later: other inodes, mtimes and ctimes.
    std::thread::sleep(Duration::from_millis(1100));
    let tree_b = tree(&dir.path().join("b/php-1.45"));
    let old = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(tree_b.dir.join("index.php"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let cache_a = Cache::open(&dir.path().join("cache-a")).unwrap();
    let cache_b = Cache::open(&dir.path().join("cache-b")).unwrap();
    let (a, _) = build(&cache_a, &tree_a, &options(false, None));
    let (b, _) = build(&cache_b, &tree_b, &options(false, None));
    assert_eq!(digests(&a), digests(&b));
    // An incremental build without a base is the whole build, layer for layer.
    let cache_c = Cache::open(&dir.path().join("cache-c")).unwrap();
    let (c, _) = build(&cache_c, &tree_b, &options(true, None));
    assert_eq!(digests(&a), digests(&c));
    assert!(c.base.is_some());
}

#[test]
fn an_incremental_build_adds_a_layer_of_the_change_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let tree = tree(&dir.path().join("php-1.45"));
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let (first, _) = build(&cache, &tree, &options(true, None));
    let base = first.base.clone().unwrap();

    write(
        &tree.dir.join("extensions/Ext5/includes/Hook1.php"),
        "<?php // Ext5 1, backported\n",
    );
    std::fs::remove_file(tree.dir.join("extensions/Ext5/includes/Hook4.php")).unwrap();
    let (second, hashed) = build(&cache, &tree, &options(true, Some(base.clone())));
    assert_eq!(hashed, 1);
    assert_eq!(second.deltas, 1);
    assert_eq!(second.layers.len(), first.layers.len() + 1);
    assert_eq!(
        second.base.as_deref(),
        Some(base.as_str()),
        "the base moved"
    );
    // Every layer of the first build is still there, in order; one layer of changes is new.
    let new: Vec<_> = second
        .layers
        .iter()
        .filter(|(_, r)| !first.layers.iter().any(|(_, f)| f.digest == r.digest))
        .collect();
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(new[0].0.ends_with("(changes)"), "{}", new[0].0);
    let files: Vec<String> = paths(&cache, &new[0].1.digest)
        .into_iter()
        .filter(|p| !p.ends_with('/'))
        .collect();
    assert_eq!(
        files,
        [
            "srv/mediawiki/php-1.45/extensions/Ext5/includes/Hook1.php",
            "srv/mediawiki/php-1.45/extensions/Ext5/includes/.wh.Hook4.php",
        ]
    );

    // The same tree and base in a cache of another history give the same digests.
    let other = Cache::open(&dir.path().join("other")).unwrap();
    let fresh = self::tree(&dir.path().join("copy/php-1.45"));
    let (other_first, _) = build(&other, &fresh, &options(true, None));
    assert_eq!(other_first.base.as_deref(), Some(base.as_str()));
    write(
        &fresh.dir.join("extensions/Ext5/includes/Hook1.php"),
        "<?php // Ext5 1, backported\n",
    );
    std::fs::remove_file(fresh.dir.join("extensions/Ext5/includes/Hook4.php")).unwrap();
    let (other_second, _) = build(&other, &fresh, &options(true, Some(base)));
    assert_eq!(digests(&second), digests(&other_second));
}

#[test]
fn a_large_change_rebuilds_the_group_whole_and_moves_the_base() {
    let dir = tempfile::tempdir().unwrap();
    let tree = tree(&dir.path().join("php-1.45"));
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let (first, _) = build(&cache, &tree, &options(true, None));
    // Every file of the core changes: far more than a quarter of its layer.
    for i in 0..20 {
        write(
            &tree.dir.join(format!("includes/File{i}.php")),
            &format!("<?php // core {i}, next version\n"),
        );
    }
    let (second, _) = build(&cache, &tree, &options(true, first.base.clone()));
    assert_eq!(second.deltas, 0);
    assert_eq!(second.rebased, 1);
    assert_ne!(second.base, first.base);
    // Whole, it is the layer a build without any history makes.
    let fresh = Cache::open(&dir.path().join("fresh")).unwrap();
    let mut fingerprints = Fingerprints::in_memory();
    let whole = stack::build(
        &fresh,
        &mut fingerprints,
        std::slice::from_ref(&tree),
        &options(false, None),
    )
    .unwrap();
    assert_eq!(digests(&second), digests(&whole));
}

#[test]
fn the_content_key_is_the_digest_of_the_entry_keys_in_their_old_format() {
    // content_key streams what file_keys lists, and a group's key must agree with the file
    // list its base records. The format of an entry's key is pinned too: the cache's layer
    // records are keyed by it, and a change would silently rebuild every cached layer.
    let dir = tempfile::tempdir().unwrap();
    let tree = tree(&dir.path().join("php-1.45"));
    let contents = wikikube_image::code::core(&tree.dir, "/", "1.45").unwrap();
    let mut fingerprints = Fingerprints::in_memory();
    let key = stack::content_key(&mut fingerprints, &contents).unwrap();
    let keys = stack::file_keys(&mut fingerprints, &contents).unwrap();
    let expected = wikikube_image::digest::Inputs::new("content")
        .key_with(keys.iter().map(|(path, key)| (path.as_str(), key.as_str())));
    assert_eq!(key, expected);
    let index = wikikube_image::digest::sha256(b"<?php require 'includes/WebStart.php';\n");
    assert_eq!(
        keys["srv/mediawiki/php-1.45/index.php"],
        format!("{index} 644 0:0")
    );
    assert_eq!(keys["srv/mediawiki/php-1.45/includes"], "dir 755 0:0");
}
