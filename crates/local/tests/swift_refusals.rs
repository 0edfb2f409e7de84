//! Backup, restore and import copy media as files of the media volume; a site whose media are
//! in Swift has no such volume, so they refuse it, by name, before they change anything,
//! rather than writing a backup without its media. No podman needed: the refusal comes first.

use std::path::{Path, PathBuf};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

/// The example's local environment with its media moved to Swift, as `[media] storage =
/// "swift"` does.
fn swift_site() -> wikikube_model::ResolvedSite {
    let mut site =
        wikikube_model::load(&example(), "local", &wikikube_model::LoadOptions::default()).unwrap();
    for release in site
        .deployments
        .iter_mut()
        .flat_map(|deployment| deployment.releases.iter_mut())
    {
        release.values.media.storage = wikikube_model::MediaStorage::Swift;
    }
    site
}

fn assert_refused(error: wikikube_local::Error, action: &str) {
    let text = error.to_string();
    assert!(
        matches!(error, wikikube_local::Error::MediaInSwift { .. }),
        "{text}"
    );
    assert!(text.contains(action) && text.contains("Swift"), "{text}");
}

#[test]
fn a_backup_of_media_in_swift_is_refused_before_anything_is_written() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("backup");
    let error = wikikube_local::backup::backup(&swift_site(), &dir, &[]).unwrap_err();
    assert_refused(error, "backup");
    assert!(!dir.exists(), "the refused backup made its directory");
}

#[test]
fn an_import_of_images_into_swift_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let dump = scratch.path().join("dump.sql");
    std::fs::write(&dump, "SELECT 1;\n").unwrap();
    let images: &Path = scratch.path();
    let error = wikikube_local::import::import(&swift_site(), "enwiki", &dump, Some(images), false)
        .unwrap_err();
    assert_refused(error, "import");
}
