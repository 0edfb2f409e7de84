//! The example farm's rendered objects, compared with reviewed golden files: one file per object
//! in `tests/golden/ENV/`, named by apply order, kind and name.
//!
//! After an intended change, regenerate with `WIKIKUBE_BLESS=1 cargo test -p wikikube-render
//! --test golden` and review every changed file in the diff before committing.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

fn read_dir(dir: &Path) -> BTreeMap<String, String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| {
                    let entry = entry.unwrap();
                    (
                        entry.file_name().to_string_lossy().into_owned(),
                        fs::read_to_string(entry.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn check(environment: &str) {
    let site = common::load(environment);
    let rendered =
        wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("out");
    rendered.write_dir(&out).unwrap();
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(environment);
    if std::env::var_os("WIKIKUBE_BLESS").is_some() {
        let _ = fs::remove_dir_all(&golden_dir);
        rendered.write_dir(&golden_dir).unwrap();
        return;
    }
    let actual = read_dir(&out);
    let expected = read_dir(&golden_dir);
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the set of rendered objects changed for {environment}"
    );
    for (name, text) in &actual {
        assert!(
            text == &expected[name],
            "{environment}/{name} differs from its golden file; if intended, bless and review"
        );
    }
}

#[test]
fn eqiad_matches_the_golden_files() {
    check("eqiad");
}

#[test]
fn local_matches_the_golden_files() {
    check("local");
}
