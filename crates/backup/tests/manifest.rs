//! The backup directory on a real file system: a manifest round trip, and a damaged, missing or
//! foreign file refused before anything is restored.

use std::fs;
use std::path::Path;

use wikikube_backup::{list_files, BackupError, Manifest, WikiBackup, FORMAT};

fn backup(dir: &Path) -> Manifest {
    fs::create_dir_all(dir.join("enwiki/media/public/a/ab")).unwrap();
    fs::write(
        dir.join("enwiki/database.sql"),
        "CREATE TABLE page (page_id INT);\n",
    )
    .unwrap();
    fs::write(
        dir.join("enwiki/media/public/a/ab/Photo.png"),
        [0x89, b'P', b'N', b'G'],
    )
    .unwrap();
    let files = list_files(dir, "enwiki").unwrap();
    let manifest = Manifest {
        format: FORMAT,
        site: "farm".into(),
        environment: "local".into(),
        created_unix: 1,
        wikis: [(
            "enwiki".to_string(),
            WikiBackup {
                version: "1.39.17-wmf.1".into(),
                latest_edit: Some("20261201000000".into()),
                revisions: 3,
                files,
            },
        )]
        .into(),
    };
    manifest.write(dir).unwrap();
    manifest
}

#[test]
fn a_backup_reads_back_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let written = backup(dir.path());
    let read = Manifest::read(dir.path()).unwrap();
    assert_eq!(read, written);
    let paths: Vec<&str> = read.wikis["enwiki"]
        .files
        .iter()
        .map(|f| f.path.as_str())
        .collect();
    assert_eq!(
        paths,
        ["enwiki/database.sql", "enwiki/media/public/a/ab/Photo.png"]
    );
    assert_eq!(read.wikis["enwiki"].bytes(), 33 + 4);
    read.verify(dir.path(), "enwiki").unwrap();
}

#[test]
fn a_changed_byte_is_named_with_both_digests() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = backup(dir.path());
    let dump = dir.path().join("enwiki/database.sql");
    let mut bytes = fs::read(&dump).unwrap();
    bytes[0] ^= 1;
    fs::write(&dump, bytes).unwrap();
    let error = manifest.verify(dir.path(), "enwiki").unwrap_err();
    assert!(
        matches!(&error, BackupError::Damaged { path, .. } if path == &dump),
        "{error}"
    );
    assert!(
        error.to_string().contains("nothing was restored"),
        "{error}"
    );
}

#[test]
fn a_missing_file_and_an_unknown_wiki_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = backup(dir.path());
    fs::remove_file(dir.path().join("enwiki/media/public/a/ab/Photo.png")).unwrap();
    let error = manifest.verify(dir.path(), "enwiki").unwrap_err();
    assert!(matches!(error, BackupError::Missing { .. }), "{error}");
    let error = manifest.verify(dir.path(), "dewiki").unwrap_err();
    assert!(error.to_string().contains("has: enwiki"), "{error}");
}

#[test]
fn a_manifest_pointing_outside_the_backup_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    backup(dir.path());
    let path = dir.path().join("manifest.json");
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("enwiki/database.sql", "../../etc/passwd");
    fs::write(&path, text).unwrap();
    let error = Manifest::read(dir.path()).unwrap_err();
    assert!(error.to_string().contains("not a path inside"), "{error}");
}
