//! What the local farm's end-to-end tests share: the example site, edits to its files, the
//! images (built once per machine into one cache), mwclient's Python and the API client, and
//! reading pages and PNGs.

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
    let binaries = ["edge", "mcrouter", "redis-proxy"]
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

/// The site's local environment, loaded and rendered.
pub fn load(site_dir: &Path) -> (wikikube_model::ResolvedSite, wikikube_render::Rendered) {
    let site =
        wikikube_model::load(site_dir, "local", &wikikube_model::LoadOptions::default()).unwrap();
    let rendered =
        wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap();
    (site, rendered)
}

/// The first `attribute="..."` value in `html` that starts with `prefix` and ends with `suffix`.
pub fn link(html: &str, attribute: &str, prefix: &str, suffix: &str) -> String {
    html.split(&format!("{attribute}=\""))
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|value| value.starts_with(prefix) && value.ends_with(suffix))
        .unwrap_or_else(|| panic!("no {attribute} {prefix}...{suffix} in:\n{html}"))
        .to_string()
}

/// A PNG's width, from its header.
pub fn png_width(bytes: &[u8]) -> u32 {
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    u32::from_be_bytes(bytes[16..20].try_into().unwrap())
}

/// Runs tests/api_edit.py (mwclient) with `args`; its output, trimmed. A failure fails the test
/// with mwclient's message.
pub fn api(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api_edit.py");
    let output = Command::new(venv_python())
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "mwclient failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
