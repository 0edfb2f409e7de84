//! packages.lock while the Debian archive moves, with real mmdebstrap and apt.
//!
//! One rootfs (the essential set and `hostname`) is resolved once against the real Debian
//! archive of examples/farm/build.toml. Its .debs then make test archives on file:// that
//! stand for the archive a week later: a security update of `hostname` (the real package,
//! rebuilt with a higher version) next to the locked version, or in place of it. `hostname` is
//! an essential package: the kind that a newer archive used to turn into a downgrade error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use wikikube_image::config::{BaseConfig, BuildConfig};
use wikikube_image::lock::{Lock, LockedPackage};
use wikikube_image::rootfs::debian::{LockMode, Resolver};
use wikikube_image::rootfs::repository::Repository;
use wikikube_image::rootfs::tarball::installed_packages;
use wikikube_image::Cache;

const ROOTFS: &str = "small";

fn base() -> BaseConfig {
    BaseConfig {
        packages: vec!["hostname".into()],
        customize: vec![],
        cmd: vec![],
        expose: vec![],
    }
}

fn root() -> PathBuf {
    let dir = std::env::temp_dir().join("wikikube-lock-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The example farm's build settings with other sources.
fn build_config(sources: Vec<String>) -> BuildConfig {
    let farm = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm");
    let mut config = BuildConfig::load(&farm).unwrap();
    config.sources = sources;
    config.bases = BTreeMap::from([(ROOTFS.to_string(), base())]);
    config
}

/// What every test starts from: a lock resolved against the real archive, its .debs in a
/// cache, and the security update of `hostname` beside them.
struct Resolved {
    _dir: tempfile::TempDir,
    cache: Cache,
    lock_text: String,
    hostname: LockedPackage,
    /// The rebuilt `hostname` with a higher version, in `cache`.
    update: LockedPackage,
    /// Every locked .deb but `hostname`'s.
    others: Vec<String>,
}

fn resolved() -> &'static Resolved {
    static RESOLVED: OnceLock<Resolved> = OnceLock::new();
    RESOLVED.get_or_init(|| {
        let dir = tempfile::tempdir_in(root()).unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let farm = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm");
        let live = BuildConfig::load(&farm).unwrap().sources;
        let site = dir.path().join("site");
        std::fs::create_dir_all(&site).unwrap();
        let mut lock = Lock::load(&site).unwrap();
        let mut resolver = Resolver::new(&cache, &build_config(live), LockMode::Amend);
        let update = resolver
            .settle(&mut lock, ROOTFS, &base())
            .expect("the rootfs resolves against the Debian archive")
            .expect("a first resolution writes the lock");
        assert!(update.changes.iter().all(|c| c.old.is_none()));
        let packages = lock.rootfs[ROOTFS].packages.clone();
        assert!(packages.iter().all(|p| p.sha256.is_some()), "{packages:?}");
        let hostname = packages
            .iter()
            .find(|p| p.name == "hostname")
            .unwrap()
            .clone();
        let others = packages
            .iter()
            .filter(|p| p.name != "hostname")
            .map(|p| p.sha256.clone().unwrap())
            .collect();
        let update = rebuilt(&cache, &hostname, dir.path());
        Resolved {
            lock_text: std::fs::read_to_string(&lock.path).unwrap(),
            _dir: dir,
            cache,
            hostname,
            update,
            others,
        }
    })
}

/// `package`'s real .deb rebuilt as version `VERSION+wikikube1`: a stand-in for a security
/// update that the archive publishes after the lock was written.
fn rebuilt(cache: &Cache, package: &LockedPackage, work: &Path) -> LockedPackage {
    let tree = work.join("rebuild");
    let deb = cache.deb_path(package.sha256.as_deref().unwrap());
    run(Command::new("dpkg-deb")
        .arg("--raw-extract")
        .arg(&deb)
        .arg(&tree));
    let control = tree.join("DEBIAN/control");
    let version = format!("{}+wikikube1", package.version);
    let text = std::fs::read_to_string(&control).unwrap().replace(
        &format!("Version: {}\n", package.version),
        &format!("Version: {version}\n"),
    );
    std::fs::write(&control, text).unwrap();
    let out = work.join("hostname-update.deb");
    run(Command::new("dpkg-deb")
        .arg("--root-owner-group")
        .arg("--build")
        .arg(&tree)
        .arg(&out));
    let sha256 = cache.adopt_deb(&out).unwrap();
    LockedPackage {
        name: package.name.clone(),
        version,
        sha256: Some(sha256),
    }
}

fn run(command: &mut Command) {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A test archive: `bookworm` with `main`, `bookworm-security` with the update.
fn archive(main: Vec<String>, update: &LockedPackage) -> (Repository, Vec<String>) {
    let resolved = resolved();
    let suites = BTreeMap::from([
        ("bookworm".to_string(), main),
        (
            "bookworm-security".to_string(),
            vec![update.sha256.clone().unwrap()],
        ),
    ]);
    let repository = Repository::create(&resolved.cache, &suites).unwrap();
    let sources = vec![
        repository.source("bookworm"),
        repository.source("bookworm-security"),
    ];
    (repository, sources)
}

/// The lock as resolved, in a site directory of its own (the tests rewrite it).
fn site_with_lock(dir: &Path) -> Lock {
    std::fs::write(dir.join("packages.lock"), &resolved().lock_text).unwrap();
    Lock::load(dir).unwrap()
}

fn installed_version(tarball: &Path, name: &str) -> String {
    installed_packages(tarball)
        .unwrap()
        .into_iter()
        .find(|(package, _)| package == name)
        .unwrap()
        .1
}

#[test]
fn a_lock_older_than_the_archive_builds_its_own_versions_and_then_without_the_archive() {
    let resolved = resolved();
    let mut main = resolved.others.clone();
    main.push(resolved.hostname.sha256.clone().unwrap());
    let (repository, sources) = archive(main, &resolved.update);
    let dir = tempfile::tempdir_in(root()).unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let config = build_config(sources);
    let mut lock = site_with_lock(dir.path());

    // The archive's candidate for the essential `hostname` is newer than the lock's; a
    // locked build installs the lock's, and does not touch the lock.
    let mut resolver = Resolver::new(&cache, &config, LockMode::Locked);
    assert_eq!(resolver.settle(&mut lock, ROOTFS, &base()).unwrap(), None);
    let (key, tarball) = resolver.ensure(&lock, ROOTFS, &base()).unwrap();
    assert_eq!(
        installed_version(&tarball, "hostname"),
        resolved.hostname.version
    );
    let locked: Vec<_> = lock.rootfs[ROOTFS]
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    assert_eq!(installed_packages(&tarball).unwrap(), locked);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("packages.lock")).unwrap(),
        resolved.lock_text
    );
    let first = std::fs::read(&tarball).unwrap();

    // `--outdated` sees the update, as a security update.
    let outdated = wikikube_image::rootfs::outdated::compare(&lock, |name| {
        (name == "hostname").then(|| {
            (
                resolved.update.version.clone(),
                "bookworm-security".to_string(),
                true,
            )
        })
    });
    assert_eq!(outdated.len(), 1);
    assert!(outdated[0].security);

    // With every .deb cached, the archive can be gone: the same tarball, byte for byte.
    drop(repository);
    std::fs::remove_file(&tarball).unwrap();
    let mut resolver = Resolver::new(&cache, &config, LockMode::Locked);
    assert_eq!(resolver.settle(&mut lock, ROOTFS, &base()).unwrap(), None);
    let (again, tarball) = resolver.ensure(&lock, ROOTFS, &base()).unwrap();
    assert_eq!(again, key);
    assert!(
        std::fs::read(&tarball).unwrap() == first,
        "a rebuild from cached .debs gave other bytes"
    );
}

#[test]
fn versions_that_can_no_longer_be_had_are_moved_on_or_refused_with_locked() {
    let resolved = resolved();
    // A week later: the update replaced the locked `hostname` in the archive.
    let (_repository, sources) = archive(resolved.others.clone(), &resolved.update);
    let dir = tempfile::tempdir_in(root()).unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let config = build_config(sources);
    let mut lock = site_with_lock(dir.path());

    let error = Resolver::new(&cache, &config, LockMode::Locked)
        .settle(&mut lock, ROOTFS, &base())
        .unwrap_err()
        .to_string();
    let line = resolved
        .lock_text
        .lines()
        .position(|l| l.contains("name = \"hostname\""))
        .unwrap()
        + 1;
    let entry = format!("line {line}: {}", resolved.hostname.entry());
    assert!(error.contains(&entry), "{error}");
    assert!(error.contains("without --locked"), "{error}");
    assert!(error.contains("snapshot"), "{error}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("packages.lock")).unwrap(),
        resolved.lock_text,
        "--locked never writes the lock"
    );

    let update = Resolver::new(&cache, &config, LockMode::Amend)
        .settle(&mut lock, ROOTFS, &base())
        .unwrap()
        .expect("the lock changes");
    assert_eq!(update.changes.len(), 1, "{update:?}");
    let change = &update.changes[0];
    assert_eq!(change.package, "hostname");
    assert_eq!(
        change.old.as_deref(),
        Some(resolved.hostname.version.as_str())
    );
    assert_eq!(
        change.new.as_deref(),
        Some(resolved.update.version.as_str())
    );
    assert!(change.security);
    let written = Lock::load(dir.path()).unwrap();
    let hostname = written.rootfs[ROOTFS]
        .packages
        .iter()
        .find(|p| p.name == "hostname")
        .unwrap();
    assert_eq!(hostname, &resolved.update);
    let (_, tarball) = Resolver::new(&cache, &config, LockMode::Locked)
        .ensure(&written, ROOTFS, &base())
        .unwrap();
    assert_eq!(
        installed_version(&tarball, "hostname"),
        resolved.update.version
    );
}
