//! What the release test and the release benchmark share: a copy of the example farm that
//! pushes to a loopback registry.

use std::path::{Path, PathBuf};

/// A release of `site`'s environment eqiad (one cluster), images cached in `cache_dir`.
pub fn eqiad_release(
    site: &Path,
    cache_dir: PathBuf,
    deploy: wikikube_deploy::Options,
    until: wikikube_release::Until,
) -> wikikube_release::Request {
    wikikube_release::Request {
        site_dir: site.to_path_buf(),
        environment: "eqiad".into(),
        load: Default::default(),
        registry: None,
        build: wikikube_image::Options {
            cache_dir,
            ..Default::default()
        },
        registry_client: Default::default(),
        deploy,
        schema_deadline: Some(600),
        until,
    }
}

/// The repository's example farm.
pub fn farm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

/// The example farm, its production images in `registry` instead of registry.farm.test.
pub fn site_copy(dir: &Path, registry: &str) -> PathBuf {
    let site = dir.join("site");
    copy_tree(&farm_dir(), &site);
    let production = site.join("environments/production.toml");
    let text = std::fs::read_to_string(&production).unwrap();
    assert!(text.contains("registry.farm.test/wikikube/app:"));
    std::fs::write(&production, text.replace("registry.farm.test", registry)).unwrap();
    site
}

/// A recursive copy of a directory of plain files.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// Changes the English wiki's `wgSitename` in the site's site.toml, as a person editing one
/// setting would.
pub fn edit_sitename(site: &Path, name: &str) {
    let settings = site.join("site.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    let key = "wgSitename = \"";
    let start = text
        .find(&format!("{key}Farm English"))
        .expect("site.toml names the English wiki")
        + key.len();
    let end = start + text[start..].find('"').unwrap();
    std::fs::write(
        &settings,
        format!("{}{name}{}", &text[..start], &text[end..]),
    )
    .unwrap();
}
