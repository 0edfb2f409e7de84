//! What the local farm's end-to-end tests share: the example site, edits to its files, the
//! images (built once per machine into one cache) and mwclient's Python.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's example farm.
pub fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

/// Replaces each `from` with its `to` in the file at `path`; a `from` the file lacks fails the
/// test, so an example that changed under a test is noticed.
pub fn replace(path: &Path, pairs: &[(&str, &str)]) {
    let mut text = std::fs::read_to_string(path).unwrap();
    for (from, to) in pairs {
        assert!(text.contains(from), "{} lacks {from}", path.display());
        text = text.replace(from, to);
    }
    std::fs::write(path, text).unwrap();
}

/// The image cache the tests build with: WIKIKUBE_TEST_CACHE lets a developer reuse a warm
/// one (such as ~/.cache/wikikube).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("WIKIKUBE_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("wikikube-cache"))
}

/// Builds the site's images and loads them into podman; the cache makes later builds (of this
/// test or another) reuse every unchanged layer.
pub fn build_images(site: &wikikube_model::ResolvedSite) {
    let report = build(site);
    for built in &report.images {
        wikikube_image::podman::load(&report.out_dir, &built.image)
            .expect("podman loads the image");
    }
}

/// Builds the site's images into the shared cache, without loading them.
pub fn build(site: &wikikube_model::ResolvedSite) -> wikikube_image::Report {
    let config_files = wikikube_render::config::mediawiki::image_layer(site);
    // The cake's own programs, built by `cargo test --workspace` beside this test.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("debug");
    let binaries = ["edge", "mcrouter"]
        .map(|name| {
            let path = target.join(name);
            assert!(
                path.is_file(),
                "{} is missing: cargo build -p {name}",
                path.display()
            );
            (name.to_string(), path)
        })
        .into();
    let options = wikikube_image::Options {
        binaries,
        cache_dir: cache_dir(),
        config_files,
        ..Default::default()
    };
    wikikube_image::build(site, &options).expect("the images build")
}

/// A Python with mwclient, the API client Wikimedia's own tools use, made once per target dir.
pub fn venv_python() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mwclient-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .unwrap();
        assert!(made.success(), "python3 -m venv failed");
        let pip = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "mwclient==0.11.0"])
            .status()
            .unwrap();
        assert!(pip.success(), "pip install mwclient failed");
    }
    python
}
