//! Backup, restore and import copy media in and out of Swift through its API when the site
//! keeps them there. A Swift that cannot be reached, or a site without the key to reach it, is
//! refused by name before anything is written or changed (a site without the key is refused
//! when it is loaded, by the model's validation). No podman needed: the Swift URL here
//! is a closed port on this machine, and the refusal comes before the database is asked.
//! (tests/swift_media.rs does the real backup and restore against a running Swift.)

use std::path::{Path, PathBuf};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

/// A copy of the example whose local environment keeps media in a Swift at a port nothing
/// listens on (with the key to reach it, which the site's validation requires).
fn swift_site(dir: &Path) -> wikikube_model::ResolvedSite {
    wikikube_test_support::copy_dir(&example(), dir);
    let closed = wikikube_test_support::free_port();
    let environment = dir.join("environments/local.toml");
    let mut text = std::fs::read_to_string(&environment).unwrap();
    text.push_str(&format!(
        "\n[media]\nstorage = \"swift\"\n\n[media.swift]\n\
         auth_url = \"http://127.0.0.1:{closed}/auth\"\naccount = \"wikis\"\nuser = \"mediawiki\"\n"
    ));
    std::fs::write(&environment, text).unwrap();
    let private = dir.join("private/local.toml");
    let mut text = std::fs::read_to_string(&private).unwrap();
    text.push_str("swift_key = \"example-swift-key\"\n");
    std::fs::write(&private, text).unwrap();
    wikikube_model::load(dir, "local", &wikikube_model::LoadOptions::default()).unwrap()
}

#[test]
fn a_backup_from_a_swift_that_does_not_answer_writes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let site = swift_site(&scratch.path().join("site"));
    let dir = scratch.path().join("backup");
    let error = wikikube_local::backup::backup(&site, &dir, &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("Swift did not answer"), "{error}");
    assert!(error.contains("wikis:mediawiki"), "{error}");
    assert!(!dir.exists(), "the refused backup made its directory");
}

#[test]
fn an_import_of_images_into_a_swift_that_does_not_answer_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let site = swift_site(&scratch.path().join("site"));
    let dump = scratch.path().join("dump.sql");
    std::fs::write(&dump, "SELECT 1;\n").unwrap();
    let images = scratch.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let error = wikikube_local::import::import(&site, "enwiki", &dump, Some(&images), false)
        .unwrap_err()
        .to_string();
    assert!(error.contains("Swift did not answer"), "{error}");
}
