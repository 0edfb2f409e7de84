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

/// Appends `text` to the file at `path`.
pub fn append(path: &Path, text: &str) {
    let mut old = std::fs::read_to_string(path).unwrap();
    old.push_str(text);
    std::fs::write(path, old).unwrap();
}

/// Where a test's farm listens on this machine: each test its own, so that tests run side by
/// side and beside a developer's farm.
pub struct Ports {
    pub http: u16,
    pub https: u16,
    pub debug_http: u16,
    pub debug_https: u16,
    pub edge: u16,
    pub mariadb: u16,
    /// The local memcached pool's one server; `None`: the caller rewrites the pools itself.
    pub memcached: Option<u16>,
}

/// The example farm copied into `dir/site` under the name `name` and listening on `ports`.
pub fn renamed_site(dir: &Path, name: &str, ports: &Ports) -> PathBuf {
    let site = dir.join("site");
    wikikube_test_support::copy_dir(&example(), &site);
    replace(
        &site.join("site.toml"),
        &[("name = \"farm\"", &format!("name = \"{name}\""))],
    );
    let web = format!("https_port = {}, http_port = {}", ports.https, ports.http);
    let debug = format!(
        "https_port = {}, http_port = {}",
        ports.debug_https, ports.debug_http
    );
    let edge = format!("local_https_port = {}", ports.edge);
    let mariadb = format!("port = {}", ports.mariadb);
    let mut pairs = vec![
        ("https_port = 8443, http_port = 8080", web.as_str()),
        ("https_port = 8444, http_port = 8081", debug.as_str()),
        ("local_https_port = 8445", edge.as_str()),
        ("port = 3306", mariadb.as_str()),
    ];
    let memcached = ports
        .memcached
        .map(|port| format!("host.containers.internal:{port}"));
    if let Some(memcached) = &memcached {
        pairs.push(("host.containers.internal:11211", memcached));
    }
    replace(&site.join("environments/local.toml"), &pairs);
    site
}

/// The name a test gives a built image in podman (`localhost/SITE/IMAGE:latest`): never the
/// `localhost/wikikube/` names another farm on this machine runs.
pub fn image_name(site: &str, image: &str) -> String {
    format!("localhost/{site}/{image}:latest")
}

/// An `[images]` table naming every image of the example's build by [`image_name`].
pub fn images_table(site: &str) -> String {
    let lines: String = [
        ("app", "app"),
        ("webserver", "webserver"),
        ("tls", "edge"),
        ("mcrouter", "mcrouter"),
        ("redis_proxy", "redis-proxy"),
        ("memcached", "base-memcached"),
        ("mariadb", "base-mariadb"),
        ("swift", "base-swift"),
        ("redis", "base-redis"),
    ]
    .map(|(key, image)| format!("{key} = \"{}\"\n", image_name(site, image)))
    .concat();
    format!("\n[images]\n{lines}")
}

/// Builds the site's images, checks that `wanted` are among them, and loads every one into
/// podman under its [`image_name`], so that farm tests running side by side never swap each
/// other's images (nor a developer's). The cache makes later builds, of this test or another,
/// reuse every unchanged layer.
pub fn build_images_as(site: &wikikube_model::ResolvedSite, wanted: &[&str]) {
    let report = build(site);
    for wanted in wanted {
        assert!(
            report.images.iter().any(|built| built.image == *wanted),
            "the build made no {wanted}"
        );
    }
    for built in &report.images {
        let name = image_name(&site.spec.site.name, &built.image);
        wikikube_image::podman::load_as(&report.out_dir, &built.image, &name)
            .expect("podman loads the image");
    }
}

/// A farm a test starts, taken down (volumes too) when the test ends, passed or failed, so that
/// no run leaves pods or volumes behind.
pub struct Farm {
    site: wikikube_model::ResolvedSite,
    pub state: wikikube_local::StateDir,
}

impl Farm {
    /// The farm of `site`, its state directory under `scratch`, and the options `up` starts it
    /// with: at most `timeout` for the pods to be ready, progress printed.
    pub fn new(
        site: &wikikube_model::ResolvedSite,
        scratch: &Path,
        timeout: std::time::Duration,
    ) -> (Farm, wikikube_local::UpOptions) {
        let state = wikikube_local::StateDir::new(scratch.join("state"));
        let options = wikikube_local::UpOptions {
            state: state.clone(),
            timeout,
            progress: true,
        };
        let farm = Farm {
            site: site.clone(),
            state,
        };
        (farm, options)
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        let _ = wikikube_local::down(&self.site, &self.state, true);
    }
}

/// The image cache the tests build with ([`wikikube_test_support::image_cache_dir`]).
pub fn cache_dir() -> PathBuf {
    wikikube_test_support::image_cache_dir(env!("CARGO_TARGET_TMPDIR"))
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
