//! A version from a release tarball: checked against its SHA-256, unpacked once into the cache,
//! read as MediaWiki code with the version's name written in. The tarball is made here, shaped
//! like MediaWiki's release tarballs (one top-level `mediawiki-X.Y.Z/` directory).

use std::path::Path;

use wikikube_image::cache::Cache;
use wikikube_image::code;
use wikikube_image::layer::{Data, Kind};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A `.tar.gz` of a small MediaWiki-shaped tree, and its SHA-256.
fn tarball(dir: &Path) -> (std::path::PathBuf, String) {
    let tree = dir.join("tree/mediawiki-1.39.17");
    write(
        &tree.join("includes/Defines.php"),
        "<?php\ndefine( 'MW_VERSION', '1.39.17' );\ndefine( 'MW_STABLE', true );\n",
    );
    write(&tree.join("index.php"), "<?php // index\n");
    write(&tree.join("skins/Vector/skin.json"), "{}\n");
    let path = dir.join("mediawiki-1.39.17.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&path)
        .arg("-C")
        .arg(dir.join("tree"))
        .arg("mediawiki-1.39.17")
        .status()
        .expect("tar runs");
    assert!(status.success());
    let digest = wikikube_image::digest::sha256(&std::fs::read(&path).unwrap());
    (path, digest)
}

#[test]
fn a_tarball_is_checked_unpacked_and_read_with_the_version_name() {
    let scratch = tempfile::tempdir().unwrap();
    let cache = Cache::open(&scratch.path().join("cache")).unwrap();
    let (path, digest) = tarball(scratch.path());
    let hex = digest.strip_prefix("sha256:").unwrap();

    let (root, dir) = code::unpack_tarball(&cache, &path, hex, "1.39.17-wmf.3").unwrap();
    assert_eq!(dir, "/mediawiki-1.39.17");
    let core = code::core(&root, &dir, "1.39.17-wmf.3").unwrap();
    let defines = core
        .get("srv/mediawiki/php-1.39.17-wmf.3/includes/Defines.php")
        .expect("Defines.php in the code");
    let Kind::File(Data::Bytes(bytes)) = &defines.kind else {
        panic!("Defines.php is not rewritten: {defines:?}");
    };
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.contains("define( 'MW_VERSION', '1.39.17-wmf.3' );"),
        "{text}"
    );
    assert!(text.contains("MW_STABLE"), "the rest of the file is kept");
    assert!(core
        .get("srv/mediawiki/php-1.39.17-wmf.3/index.php")
        .is_some());

    // Unpacked once: a second read does not need the tarball (the digest names the tree).
    std::fs::remove_file(&path).unwrap();
    let again = code::unpack_tarball(&cache, &path, &digest, "1.39.17-wmf.3").unwrap();
    assert_eq!(again, (root, dir));
}

#[test]
fn a_tarball_that_changed_since_review_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let cache = Cache::open(&scratch.path().join("cache")).unwrap();
    let (path, digest) = tarball(scratch.path());
    // Another last digit: always a different digest (a fixed '0' was the same one time in 16,
    // the gzip header's time making the digest differ from run to run).
    let last = if digest.ends_with('0') { '1' } else { '0' };
    let wrong = format!("{}{last}", &digest["sha256:".len()..digest.len() - 1]);
    let error = code::unpack_tarball(&cache, &path, &wrong, "1.39.17-wmf.3")
        .unwrap_err()
        .to_string();
    assert!(error.contains("changed since it was reviewed"), "{error}");
    assert!(error.contains(&digest["sha256:".len()..]), "{error}");
    assert!(!cache.root().join("sources").join(&wrong).exists());

    // Not a MediaWiki release: said so.
    let other = scratch.path().join("other.tar.gz");
    write(&scratch.path().join("junk/README"), "not MediaWiki\n");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&other)
        .arg("-C")
        .arg(scratch.path().join("junk"))
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let digest = wikikube_image::digest::sha256(&std::fs::read(&other).unwrap());
    let error = code::unpack_tarball(&cache, &other, &digest, "1.39.17-wmf.3")
        .unwrap_err()
        .to_string();
    assert!(error.contains("holds no MediaWiki release"), "{error}");
}
