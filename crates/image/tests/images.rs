//! End-to-end builds of the example farm with the real tools (mmdebstrap, bwrap, php from the
//! built rootfs, podman). The expensive part, the Debian rootfs tarballs, is kept in one rootfs
//! directory shared by every build of these tests and by the local farm's end-to-end tests
//! (crates/local/tests, which `cargo test --workspace` runs after these): a fresh target
//! directory builds each rootfs once. `rootfs_is_reproducible` shows that sharing them is sound
//! (mmdebstrap gives the same bytes for the same locked packages, from empty caches), and every
//! layer above them is rebuilt from scratch in each fresh cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use wikikube_image::{Options, Report};
use wikikube_test_support::python_tool;

fn require(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()));
    assert!(
        found,
        "`{program}` is missing: install the Debian package `{package}` (CI must)"
    );
}

fn farm() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

/// A copy of the whole example site in `dir`, for a test to change.
fn farm_copy(dir: &Path) -> PathBuf {
    let site = dir.join("site");
    wikikube_test_support::copy_dir(&farm(), &site);
    site
}

/// A copy of the example site that a test may change, without its MariaDB, Swift and Redis bases:
/// these tests are about the builder, and more Debian rootfs would only make them slower (the
/// local farm's end-to-end tests build and run both).
fn site_copy(dir: &Path) -> PathBuf {
    let site = farm_copy(dir);
    let build_toml = site.join("build.toml");
    let text = std::fs::read_to_string(&build_toml).unwrap();
    let mut kept = Vec::new();
    let mut skipping = false;
    for line in text.lines() {
        if line.starts_with('[') {
            skipping = matches!(
                line.trim(),
                "[bases.base-mariadb]" | "[bases.base-swift]" | "[bases.base-redis]"
            );
        }
        if !skipping {
            kept.push(line);
        }
    }
    assert!(
        kept.len() < text.lines().count(),
        "build.toml has no base-mariadb or base-swift"
    );
    std::fs::write(&build_toml, kept.join("\n") + "\n").unwrap();
    site
}

/// The example farm's MediaWiki versions: one Debian release with two patch series.
const VERSIONS: [&str; 2] = ["1.39.17-wmf.1", "1.39.17-wmf.2"];

fn config_files(sitename: &str) -> BTreeMap<String, Vec<u8>> {
    let settings = format!(
        "<?php\n$wgSitename = '{sitename}';\n$wgServer = 'http://localhost';\n\
         $wgDBtype = 'sqlite';\n$wgDBname = 'wiki';\n$wgSQLiteDataDir = '/tmp';\n\
         $wgLocalisationCacheConf['store'] = 'array';\n\
         $wgLocalisationCacheConf['storeDirectory'] = \"$IP/cache/l10n\";\n\
         $wgLocalisationCacheConf['manualRecache'] = true;\n\
         $wgUseDatabaseMessages = false;\n"
    );
    VERSIONS
        .iter()
        .map(|version| {
            (
                format!("srv/mediawiki/php-{version}/LocalSettings.php"),
                settings.clone().into_bytes(),
            )
        })
        .collect()
}

struct Shared {
    _dir: tempfile::TempDir,
    /// A copy of the example farm: a build may rewrite its packages.lock when the Debian
    /// archive has moved on, and tests never write into the source tree.
    site: PathBuf,
    rootfs: PathBuf,
    cache: PathBuf,
    report: Report,
}

fn root() -> PathBuf {
    let dir = std::env::temp_dir().join("wikikube-image-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The rootfs tarballs of the image cache the local farm's end-to-end tests build into
/// ([`wikikube_test_support::image_cache_dir`]). Rootfs tarballs are keyed by their locked
/// packages, customize commands and sources, so sharing them cannot mix up two locks; it spares
/// CI building the same rootfs twice.
fn shared_rootfs_dir() -> PathBuf {
    wikikube_test_support::image_cache_dir(env!("CARGO_TARGET_TMPDIR")).join("rootfs")
}

/// The example built once into a fresh cache; rootfs tarballs kept for the other builds.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        for (program, package) in [
            ("mmdebstrap", "mmdebstrap"),
            ("bwrap", "bubblewrap"),
            ("patch", "patch"),
        ] {
            require(program, package);
        }
        // A static is never dropped, so its TempDir would outlive the run: the previous run's
        // directory is removed here instead.
        let _ = std::fs::remove_dir_all(root().join("shared"));
        std::fs::create_dir_all(root().join("shared")).unwrap();
        let dir = tempfile::tempdir_in(root().join("shared")).unwrap();
        let site = site_copy(dir.path());
        let rootfs = shared_rootfs_dir();
        let cache = dir.path().join("cache-a");
        let report =
            build(&site, &cache, &rootfs, config_files("Farm")).expect("the example builds");
        Shared {
            _dir: dir,
            site,
            rootfs,
            cache,
            report,
        }
    })
}

fn build(
    site: &Path,
    cache: &Path,
    rootfs: &Path,
    config: BTreeMap<String, Vec<u8>>,
) -> wikikube_image::Result<Report> {
    let site = wikikube_model::load(site, "local", &wikikube_model::LoadOptions::default())
        .expect("the site loads");
    let options = Options {
        cache_dir: cache.to_path_buf(),
        rootfs_dir: Some(rootfs.to_path_buf()),
        config_files: config,
        ..Default::default()
    };
    wikikube_image::build(&site, &options)
}

fn digests(report: &Report) -> BTreeMap<String, Vec<(String, String)>> {
    report
        .images
        .iter()
        .map(|i| {
            let mut layers: Vec<_> = i
                .layers
                .iter()
                .map(|l| (l.name.clone(), l.digest.clone()))
                .collect();
            layers.push(("manifest".into(), i.digest.clone()));
            (i.image.clone(), layers)
        })
        .collect()
}

/// podman and the shared cache's layout are used by several tests; one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn two_fresh_caches_give_identical_digests() {
    let shared = shared();
    let dir = tempfile::tempdir_in(root()).unwrap();
    let second = build(
        &shared.site,
        &dir.path().join("cache-b"),
        &shared.rootfs,
        config_files("Farm"),
    )
    .unwrap();
    // A fresh cache builds every layer (app and webserver reuse only the base layer that this
    // same build made a moment before).
    for image in &second.images {
        assert_eq!(
            image.reused,
            usize::from(!image.image.starts_with("base-")),
            "{}",
            image.image
        );
    }
    assert_eq!(digests(&shared.report), digests(&second));
    let names: Vec<_> = shared
        .report
        .images
        .iter()
        .map(|i| i.image.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "base-httpd",
            "base-memcached",
            "base-php",
            "app",
            "webserver"
        ]
    );
    let app = &shared.report.images[3];
    let layers: Vec<_> = app.layers.iter().map(|l| l.name.as_str()).collect();
    // Extensions and skins, and l10n by language, in the groups of the layer plan.
    use wikikube_image::plan;
    let items: Vec<String> = ["Cite", "ParserFunctions", "CategoryTree"]
        .iter()
        .map(|e| e.to_string())
        .chain(
            ["Vector", "MonoBook", "Timeless"]
                .iter()
                .map(|s| format!("skins/{s}")),
        )
        .collect();
    // Each version in layers of its own: adding or patching one rebuilds none of the other's.
    let mut expected = vec!["base-php rootfs".to_string()];
    for version in VERSIONS {
        expected.push(format!("code {version}"));
    }
    for version in VERSIONS {
        for group in plan::groups(&items, plan::EXTENSION_LAYERS) {
            expected.push(format!("extensions {version} {}", group.label()));
        }
    }
    for version in VERSIONS {
        expected.push(format!("patches {version}"));
    }
    for version in VERSIONS {
        for group in plan::groups(&["de".into(), "en".into()], plan::L10N_LAYERS) {
            expected.push(format!("l10n {version} {}", group.label()));
        }
    }
    expected.push("config".into());
    assert_eq!(layers, expected);
    assert!(expected.len() >= 9, "{expected:?}");
}

#[test]
fn changing_one_setting_changes_only_the_config_layer() {
    let shared = shared();
    let _guard = serial();
    let dir = tempfile::tempdir_in(root()).unwrap();
    let changed = build(
        &shared.site,
        &shared.cache,
        &shared.rootfs,
        config_files("Farm renamed"),
    )
    .unwrap();
    // The shared layout must name the original images again for the other tests.
    let _ = dir;
    let before = digests(&shared.report);
    let after = digests(&changed);
    for (image, layers) in &before {
        for (old, new) in layers.iter().zip(&after[image]) {
            let expect_change = image == "app" && (old.0 == "config" || old.0 == "manifest");
            assert_eq!(old.1 != new.1, expect_change, "{image} {}", old.0);
        }
    }
    let app = changed.images.iter().find(|i| i.image == "app").unwrap();
    assert_eq!(app.built, 1, "only the config layer is built: {app:#?}");
    // Built on the base the first build recorded: no group changed, so no delta, and the
    // record names this build's image.
    assert_eq!((app.deltas, app.rebased), (0, 0));
    let cache = wikikube_image::Cache::open(&shared.cache).unwrap();
    let recorded = wikikube_image::incremental::recorded(&cache, "farm", "app").unwrap();
    assert_eq!(recorded.image, app.digest);
    assert_eq!(Some(&recorded.base), app.base.as_ref());
    build(
        &shared.site,
        &shared.cache,
        &shared.rootfs,
        config_files("Farm"),
    )
    .unwrap();
}

#[test]
fn a_bad_patch_names_the_patch_and_hunk_and_keeps_the_previous_images() {
    let shared = shared();
    let _guard = serial();
    let dir = tempfile::tempdir_in(root()).unwrap();
    let site = dir.path().join("bad-site");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&shared.site)
        .arg(&site)
        .status();
    assert!(copied.unwrap().success());
    let bad = site.join("patches/1.39.17-wmf.1/0002-bad.patch");
    std::fs::write(
        &bad,
        "--- a/includes/WebStart.php\n+++ b/includes/WebStart.php\n@@ -1,3 +1,3 @@\n\
          \x20<?php\n-/** this line is not in WebStart.php\n+/** nor is this one\n  * The set up\n",
    )
    .unwrap();
    let index = shared.report.out_dir.join("index.json");
    let before = std::fs::read(&index).unwrap();
    let options = Options {
        cache_dir: shared.cache.clone(),
        rootfs_dir: Some(shared.rootfs.clone()),
        out_dir: Some(shared.report.out_dir.clone()),
        config_files: config_files("Farm"),
        ..Default::default()
    };
    let loaded =
        wikikube_model::load(&site, "local", &wikikube_model::LoadOptions::default()).unwrap();
    let error = wikikube_image::build(&loaded, &options)
        .unwrap_err()
        .to_string();
    assert!(error.contains("0002-bad.patch"), "{error}");
    assert!(error.contains("includes/WebStart.php"), "{error}");
    assert!(error.contains("Hunk #1 FAILED"), "{error}");
    assert_eq!(
        std::fs::read(&index).unwrap(),
        before,
        "the layout's names are untouched"
    );
    let leftovers = std::fs::read_dir(shared.cache.join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "temporary files are cleaned");
}

#[test]
fn the_app_image_runs_php_and_mediawiki_under_podman() {
    require("podman", "podman");
    require("runc", "runc");
    let shared = shared();
    let _guard = serial();
    let id = wikikube_image::podman::load(&shared.report.out_dir, "app").unwrap();
    assert!(!id.is_empty());
    let run = |args: &[&str]| {
        let output = wikikube_image::podman::command()
            .args([
                "run",
                "--rm",
                "--network=none",
                &wikikube_image::podman::local_name("app"),
            ])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {text}");
        text
    };
    assert!(run(&["php", "-v"]).contains("PHP 8.2"));
    // Each version reports its own name (the build writes it into Defines.php) and carries its
    // own patch series.
    for version in VERSIONS {
        let reported = run(&[
            "php",
            &format!("/srv/mediawiki/php-{version}/maintenance/version.php"),
        ]);
        assert!(reported.contains(version), "{version}: {reported}");
        let setup = run(&[
            "cat",
            &format!("/srv/mediawiki/php-{version}/includes/Setup.php"),
        ]);
        assert_eq!(
            setup.contains("the second version's own patch"),
            version.ends_with("wmf.2"),
            "{version}"
        );
    }
    let l10n = run(&["ls", "/srv/mediawiki/php-1.39.17-wmf.1/cache/l10n"]);
    assert!(
        l10n.contains("de.l10n.php") || l10n.contains("l10n"),
        "{l10n}"
    );
    let web = wikikube_image::podman::load(&shared.report.out_dir, "webserver").unwrap();
    assert!(!web.is_empty());
    let php_files = wikikube_image::podman::command()
        .args(["run", "--rm", "--network=none", &wikikube_image::podman::local_name("webserver")])
        .args(["sh", "-c", "find /srv/mediawiki -type f -name '*.php' | wc -l; apache2ctl -M 2>/dev/null | grep -c -E 'proxy_fcgi|rewrite|headers|remoteip'"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&php_files.stdout);
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        ["0", "4"],
        "{text}"
    );
}

#[test]
fn rootfs_is_reproducible() {
    require("mmdebstrap", "mmdebstrap");
    // base-mariadb, because its package's postinst writes state (mariadb-install-db's InnoDB
    // and Aria files carry their own IDs and times) that build.toml's customize command has to
    // clear: a rootfs without such a package would pass whatever the builder did. The full
    // example farm, not `site_copy`, which leaves base-mariadb out; a copy, since settling may
    // amend the lock when the Debian archive has moved on.
    let dir = tempfile::tempdir_in(root()).unwrap();
    let site = farm_copy(dir.path());
    let config = wikikube_image::config::BuildConfig::load(&site).unwrap();
    let base = config.bases["base-mariadb"].clone();
    let mut lock = wikikube_image::lock::Lock::load(&site).unwrap();
    let mut tarballs = Vec::new();
    // Two fresh caches download the locked .debs and build the rootfs independently.
    for name in ["one", "two"] {
        let cache = wikikube_image::Cache::open(&dir.path().join(name)).unwrap();
        let mut resolver = wikikube_image::rootfs::debian::Resolver::new(
            &cache,
            &config,
            wikikube_image::LockMode::Amend,
        );
        resolver.settle(&mut lock, "base-mariadb", &base).unwrap();
        let (_, path) = resolver.ensure(&lock, "base-mariadb", &base).unwrap();
        tarballs.push(std::fs::read(path).unwrap());
    }
    assert!(
        tarballs[0] == tarballs[1],
        "two mmdebstrap runs of base-mariadb gave different tarballs"
    );
}

/// The processes whose `/proc/PID/stat` says `wanted(parent, process group, name)`.
fn processes(wanted: impl Fn(u32, u32, &str) -> bool) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (NAME) STATE PPID PGRP ...": the name may hold spaces, so split after the ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let (Some(Ok(parent)), Some(Ok(group))) = (
            fields.get(1).map(|f| f.parse::<u32>()),
            fields.get(2).map(|f| f.parse::<u32>()),
        ) else {
            continue;
        };
        if wanted(parent, group, name) {
            found.push(pid);
        }
    }
    found
}

/// A build that fails while a rootfs is being made beside it (MediaWiki's code rootfs, started
/// beside the bases) stops that mmdebstrap rather than waiting a minute or two for it to end,
/// and leaves neither its processes nor a partial tarball behind.
#[test]
fn a_build_that_ends_early_stops_the_rootfs_started_beside_it() {
    require("mmdebstrap", "mmdebstrap");
    let dir = tempfile::tempdir_in(root()).unwrap();
    let site = farm_copy(dir.path());
    let config = wikikube_image::config::BuildConfig::load(&site).unwrap();
    let base = config.bases["base-httpd"].clone();
    let mut lock = wikikube_image::lock::Lock::load(&site).unwrap();
    // A cache of its own, so the tarball is not there already; the .debs are downloaded.
    let cache = wikikube_image::Cache::open(&dir.path().join("cache")).unwrap();
    let mut resolver = wikikube_image::rootfs::debian::Resolver::new(
        &cache,
        &config,
        wikikube_image::LockMode::Amend,
    );
    resolver.settle(&mut lock, "base-httpd", &base).unwrap();
    assert!(resolver.start(&lock, "base-httpd", &base).unwrap());
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mmdebstrap = loop {
        let found = processes(|parent, _, name| parent == me && name == "mmdebstrap");
        if let Some(pid) = found.first() {
            break *pid;
        }
        assert!(Instant::now() < deadline, "mmdebstrap did not start");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Well into its work: the namespace set up, dpkg unpacking (base-httpd takes about 30 s).
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        processes(|_, group, _| group == mmdebstrap).len() > 1,
        "mmdebstrap ended before the test could stop it"
    );
    let stopping = Instant::now();
    drop(resolver);
    let took = stopping.elapsed();
    eprintln!("mmdebstrap stopped in {took:?}");
    assert!(took < Duration::from_secs(15), "stopping took {took:?}");
    assert_eq!(
        processes(|_, group, _| group == mmdebstrap),
        Vec::<u32>::new(),
        "processes of the stopped mmdebstrap are still running"
    );
    let tarballs: Vec<_> = std::fs::read_dir(dir.path().join("cache/rootfs"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".tar"))
                .collect()
        })
        .unwrap_or_default();
    assert!(tarballs.is_empty(), "a tarball was left: {tarballs:?}");
    let temporary: Vec<_> = std::fs::read_dir(dir.path().join("cache/tmp"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(temporary.is_empty(), "temporary files left: {temporary:?}");
}

use wikikube_test_support::registry::Registry;

#[test]
fn a_second_push_to_a_registry_uploads_no_blob() {
    let shared = shared();
    let _serial = serial();
    let registry = Registry::start();
    let cache = wikikube_image::Cache::open(&shared.cache).unwrap();
    let out = &shared.report.out_dir;
    let first =
        wikikube_image::registry::push_layout(&cache, out, &registry.address, "latest").unwrap();
    assert!(first.uploaded > 0, "the first push uploaded nothing");
    assert!(first.bytes > 0);
    let second =
        wikikube_image::registry::push_layout(&cache, out, &registry.address, "latest").unwrap();
    assert_eq!(second.uploaded, 0, "the second push uploaded blobs again");
    assert_eq!(
        second.skipped,
        first.uploaded + first.mounted + first.skipped
    );
    // The registry serves what was pushed: the app image's manifest under its tag.
    let manifest = std::process::Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!(
            "http://{}/v2/wikikube/app/manifests/latest",
            registry.address
        ))
        .output()
        .unwrap();
    assert!(
        manifest.status.success(),
        "the registry has no app manifest"
    );
    let app = shared
        .report
        .images
        .iter()
        .find(|image| image.image == "app")
        .unwrap();
    let digest = format!("sha256:{}", sha256_hex(&manifest.stdout));
    assert_eq!(
        digest, app.digest,
        "the pushed manifest is not the built one"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[test]
fn every_image_has_a_valid_sbom_and_provenance_the_same_in_two_builds() {
    let shared = shared();
    let dir = tempfile::tempdir_in(root()).unwrap();
    let second = build(
        &shared.site,
        &dir.path().join("cache-c"),
        &shared.rootfs,
        config_files("Farm"),
    )
    .unwrap();
    let artifacts = |report: &Report| -> Vec<(String, String, String)> {
        report
            .images
            .iter()
            .map(|i| {
                (
                    i.image.clone(),
                    i.sbom.manifest.clone(),
                    i.provenance.manifest.clone(),
                )
            })
            .collect()
    };
    assert_eq!(artifacts(&shared.report), artifacts(&second));
    let out = &shared.report.out_dir;
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| std::fs::read(out.join("blobs/sha256").join(&digest[7..])).unwrap();
    for image in &shared.report.images {
        // The layout's index lists both documents, each an artifact whose subject is the image.
        for artifact in [&image.sbom, &image.provenance] {
            let listed = index["manifests"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["digest"] == artifact.manifest.as_str());
            assert!(
                listed,
                "{}: {} is not in index.json",
                image.image, artifact.manifest
            );
            let manifest: serde_json::Value =
                serde_json::from_slice(&blob(&artifact.manifest)).unwrap();
            assert_eq!(manifest["subject"]["digest"], image.digest.as_str());
            assert_eq!(manifest["layers"][0]["digest"], artifact.blob.as_str());
        }
        let sbom = blob(&image.sbom.blob);
        let file = dir.path().join(format!("{}.spdx.json", image.image));
        std::fs::write(&file, &sbom).unwrap();
        let output = std::process::Command::new(python_tool("pyspdxtools"))
            .arg("--infile")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: pyspdxtools refused the SBOM: {}",
            image.image,
            String::from_utf8_lossy(&output.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&sbom).unwrap();
        let packages = json["packages"].as_array().unwrap();
        let has = |name: &str| packages.iter().any(|p| p["name"] == name);
        match image.image.as_str() {
            "base-php" => assert!(has("php8.2-fpm") && has("libc6")),
            "base-httpd" | "webserver" => assert!(has("apache2")),
            "app" => assert!(has("php8.2-fpm") && has("mediawiki")),
            _ => {}
        }
    }
}

/// `wikikube up` builds only the bases its pods run: a base left out of `bases_in_use` is
/// neither built nor settled (its lock entries stay as they are), while the bases other images
/// stand on are built either way.
#[test]
fn bases_left_out_are_neither_settled_nor_built() {
    let shared = shared();
    let _guard = serial();
    let dir = tempfile::tempdir_in(root()).unwrap();
    let site = dir.path().join("site");
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(&shared.site)
        .arg(&site)
        .status();
    assert!(status.unwrap().success());
    // The example's Swift base back in build.toml; packages.lock has its entries.
    let example = std::fs::read_to_string(farm().join("build.toml")).unwrap();
    let swift_base: String = example
        .split("\n[")
        .find(|section| section.starts_with("bases.base-swift]"))
        .map(|section| format!("\n[{section}\n"))
        .expect("the example has base-swift");
    let build_toml = site.join("build.toml");
    let mut text = std::fs::read_to_string(&build_toml).unwrap();
    text.push_str(&swift_base);
    std::fs::write(&build_toml, text).unwrap();
    let lock_before = std::fs::read_to_string(site.join("packages.lock")).unwrap();

    let loaded = wikikube_model::load(&site, "local", &wikikube_model::LoadOptions::default())
        .expect("the site loads");
    let options = Options {
        cache_dir: shared.cache.clone(),
        rootfs_dir: Some(shared.rootfs.clone()),
        config_files: config_files("Farm"),
        bases_in_use: Some(Default::default()),
        ..Default::default()
    };
    let report = wikikube_image::build(&loaded, &options).unwrap();
    let images: Vec<&str> = report.images.iter().map(|i| i.image.as_str()).collect();
    assert!(!images.contains(&"base-swift"), "{images:?}");
    for needed in [
        "base-php",
        "base-httpd",
        "base-memcached",
        "app",
        "webserver",
    ] {
        assert!(images.contains(&needed), "{needed} missing: {images:?}");
    }
    assert_eq!(
        std::fs::read_to_string(site.join("packages.lock")).unwrap(),
        lock_before
    );
    // The shared layout must name the original images again for the other tests.
    build(
        &shared.site,
        &shared.cache,
        &shared.rootfs,
        config_files("Farm"),
    )
    .unwrap();
}

#[test]
fn zstd_layers_hold_the_same_tars_and_run_under_podman() {
    require("podman", "podman");
    require("runc", "runc");
    let shared = shared();
    let dir = tempfile::tempdir_in(root()).unwrap();
    let site = site_copy(dir.path());
    let build_toml = site.join("build.toml");
    let text = std::fs::read_to_string(&build_toml).unwrap();
    std::fs::write(&build_toml, text + "\n[layers]\ncompression = \"zstd\"\n").unwrap();
    // The lock as the shared build settled it, so that both builds install the same packages.
    std::fs::copy(
        shared.site.join("packages.lock"),
        site.join("packages.lock"),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let zstd = build(&site, &cache, &shared.rootfs, config_files("Farm")).unwrap();

    // Every layer holds the very tar of the gzip build (its diff_id), in a smaller zstd blob
    // that the manifest says is zstd.
    let tars = |report: &Report| -> Vec<(String, Vec<String>, u64)> {
        report
            .images
            .iter()
            .map(|i| {
                let diff_ids = i.layers.iter().map(|l| l.diff_id.clone()).collect();
                (
                    i.image.clone(),
                    diff_ids,
                    i.layers.iter().map(|l| l.size).sum(),
                )
            })
            .collect()
    };
    let (gzip_images, zstd_images) = (tars(&shared.report), tars(&zstd));
    assert_eq!(gzip_images.len(), zstd_images.len());
    for ((image, gzip_tars, gzip_bytes), (_, zstd_tars, zstd_bytes)) in
        gzip_images.iter().zip(&zstd_images)
    {
        assert_eq!(gzip_tars, zstd_tars, "{image}: other tars");
        assert!(
            zstd_bytes < gzip_bytes,
            "{image}: zstd {zstd_bytes} bytes, gzip {gzip_bytes}"
        );
    }
    let blob = |digest: &str| cache.join("blobs/sha256").join(&digest["sha256:".len()..]);
    for image in &zstd.images {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(blob(&image.digest)).unwrap()).unwrap();
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(
                layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
                "{}",
                image.image
            );
            let digest = layer["digest"].as_str().unwrap();
            let head = std::fs::read(blob(digest)).unwrap();
            assert_eq!(
                &head[..4],
                [0x28, 0xb5, 0x2f, 0xfd],
                "{digest}: no zstd frame"
            );
        }
    }
    // That the same inputs give the same zstd blobs is shown by the unit tests of layer::tar
    // (a second build of this size would add minutes to CI for the same check).

    // podman unpacks zstd layers: the app image runs PHP and MediaWiki.
    let _guard = serial();
    let name = "localhost/wikikube-image-tests/app-zstd:latest";
    wikikube_image::podman::load_as(&zstd.out_dir, "app", name).unwrap();
    let output = wikikube_image::podman::command()
        .args(["run", "--rm", "--network=none", name])
        .args([
            "php",
            "/srv/mediawiki/php-1.39.17-wmf.1/maintenance/version.php",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let _ = wikikube_image::podman::command()
        .args(["rmi", "--force", name])
        .output();
    assert!(output.status.success(), "{text}");
    assert!(text.contains("1.39.17-wmf.1"), "{text}");
}
