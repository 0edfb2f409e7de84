//! Debian rootfs tarballs from the lock file, and the lock kept buildable while the Debian
//! archive moves.
//!
//! A rootfs is always built the same way: its locked .debs, checked against the lock's SHA-256
//! and kept in the package cache, become a throwaway apt repository ([`super::repository`]),
//! and mmdebstrap installs from that repository alone. apt then cannot pick a newer version of
//! anything, the essential set included, and with SOURCE_DATE_EPOCH set the tarball has the
//! same bytes on any machine (the `rootfs_is_reproducible` test).
//!
//! Getting the .debs is where the archive's movement shows (a point release or a security
//! update removes the versions it supersedes). [`Resolver::settle`] decides, before anything
//! is built, what each rootfs's lock entry is, like cargo does with Cargo.lock:
//! - every .deb cached, or still served by the sources: the lock stands;
//! - some version can no longer be had: with [`LockMode::Amend`] (the default) only those
//!   packages move to the newest version served and the lock is rewritten (falling back to a
//!   fresh resolution if that set does not install); with [`LockMode::Locked`] that is an error
//!   naming every such package;
//! - no entry, a changed request in build.toml, or [`LockMode::Update`]: mmdebstrap resolves
//!   the request against the sources afresh.
//!
//! What changed is returned as [`LockUpdate`]s for the caller to show.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::apt::{Apt, Available};
use super::repository::Repository;
use crate::cache::Cache;
use crate::config::{BaseConfig, BuildConfig};
use crate::digest::Inputs;
use crate::error::{Error, Result, UnavailablePackage};
use crate::lock::{Lock, LockedPackage, RootfsLock};

/// How a build may use and change `packages.lock`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LockMode {
    /// Build what the lock says; re-resolve only packages that can no longer be had, and
    /// rewrite the lock (what `cargo build` does with Cargo.lock).
    #[default]
    Amend,
    /// Build exactly what the lock says or fail, never writing it (`--locked`: CI and
    /// production builds).
    Locked,
    /// Resolve every rootfs afresh from the current archive (`--update-lock`).
    Update,
}

/// One package whose lock entry changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageChange {
    /// The package.
    pub package: String,
    /// The version before, `None` for a package new to the rootfs.
    pub old: Option<String>,
    /// The version after, `None` for a package no longer in the rootfs.
    pub new: Option<String>,
    /// Whether the new version comes from a security suite.
    pub security: bool,
}

/// How the lock entry of one rootfs changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LockUpdate {
    /// The rootfs (`base-php`).
    pub rootfs: String,
    /// Why (`3 locked versions can no longer be had`).
    pub reason: String,
    /// The packages that changed, by name.
    pub changes: Vec<PackageChange>,
    /// Hashes recorded for packages whose version did not change (a lock of the first form).
    pub hashes_recorded: usize,
}

/// What a rootfs is made of: the cache key of its tarball.
pub fn inputs(build: &BuildConfig, name: &str, locked: &RootfsLock, base: &BaseConfig) -> Inputs {
    let packages: Vec<String> = locked
        .packages
        .iter()
        .map(|p| format!("{} {}", p.entry(), p.sha256.as_deref().unwrap_or("-")))
        .collect();
    let mut inputs = Inputs::new("rootfs");
    inputs
        .add("builder", "local-repository")
        .add("name", name)
        .add("suite", &build.suite)
        .add("sources", build.sources.join("\n"))
        .add("path_exclude", build.path_exclude.join("\n"))
        .add("source_date_epoch", build.source_date_epoch.to_string())
        .add("packages", packages.join("\n"))
        .add("customize", base.customize.join("\n"));
    inputs
}

/// The request line recorded in the lock: packages, then customize commands.
pub fn request(base: &BaseConfig) -> Vec<String> {
    let mut request = base.packages.clone();
    request.extend(base.customize.iter().map(|c| format!("customize: {c}")));
    request
}

/// Settles lock entries and builds rootfs tarballs for one build. Opens the archive (an apt
/// session) only when something is not in the cache.
pub struct Resolver {
    cache: Cache,
    build: BuildConfig,
    mode: LockMode,
    apt: Option<Apt>,
    /// Rootfs tarballs being built on threads of their own ([`Resolver::start`]), by name,
    /// each with the flag that stops it.
    started: BTreeMap<String, (std::thread::JoinHandle<Result<()>>, Arc<AtomicBool>)>,
}

/// For the builds nobody stops: those that run on the caller's thread.
static NEVER_STOPPED: AtomicBool = AtomicBool::new(false);

impl Resolver {
    /// A resolver over `cache` for the sources of `build`.
    pub fn new(cache: &Cache, build: &BuildConfig, mode: LockMode) -> Resolver {
        Resolver {
            cache: cache.clone(),
            build: build.clone(),
            mode,
            apt: None,
            started: BTreeMap::new(),
        }
    }

    /// Makes the lock entry of rootfs `name` final and its .debs cached (unless its tarball
    /// already is), saving the lock when it changed. Needs the network only for what the cache
    /// lacks.
    pub fn settle(
        &mut self,
        lock: &mut Lock,
        name: &str,
        base: &BaseConfig,
    ) -> Result<Option<LockUpdate>> {
        let wanted = request(base);
        let current = lock
            .rootfs
            .get(name)
            .filter(|l| l.request == wanted)
            .cloned();
        let current = match (current, self.mode) {
            (_, LockMode::Update) => {
                return self.resolve(lock, name, base, "--update-lock resolves afresh".into())
            }
            (None, LockMode::Locked) => {
                return Err(Error::StaleLock {
                    path: lock.path.clone(),
                    image: name.into(),
                    reason: stale_reason(lock, name),
                })
            }
            (None, LockMode::Amend) => {
                let reason = stale_reason(lock, name);
                return self.resolve(lock, name, base, reason);
            }
            (Some(current), _) => current,
        };
        if self
            .cache
            .rootfs_path(&inputs(&self.build, name, &current, base).key())
            .exists()
        {
            return Ok(None);
        }
        let missing: Vec<LockedPackage> = current
            .packages
            .iter()
            .filter(|p| match &p.sha256 {
                Some(sha) => !self.cache.deb_path(sha).exists(),
                None => true,
            })
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(None);
        }
        if self.mode == LockMode::Locked {
            let unhashed: Vec<String> = missing
                .iter()
                .filter(|p| p.sha256.is_none())
                .map(LockedPackage::entry)
                .collect();
            if !unhashed.is_empty() {
                return Err(Error::LockWithoutHashes {
                    path: lock.path.clone(),
                    image: name.into(),
                    count: unhashed.len(),
                });
            }
        }
        let lock_path = lock.path.clone();
        let apt = apt_session(&mut self.apt, &self.build)?;
        let mut download = Vec::new();
        let mut unavailable = Vec::new();
        let mut hashes_recorded = 0;
        for package in &missing {
            match apt.find(&package.name, &package.version) {
                Some(found) => {
                    if let Some(sha) = &package.sha256 {
                        if *sha != found.sha256 {
                            return Err(Error::HashMismatch {
                                path: lock_path,
                                line: lock.line_of(name, &package.name),
                                entry: package.entry(),
                                detail: format!(
                                    "{} serves it with {}, but the lock recorded {sha}",
                                    found.suite, found.sha256
                                ),
                            });
                        }
                    } else {
                        hashes_recorded += 1;
                    }
                    download.push(found.clone());
                }
                None => unavailable.push(package.clone()),
            }
        }
        if !unavailable.is_empty() && self.mode == LockMode::Locked {
            return Err(Error::Unavailable {
                path: lock_path,
                image: name.into(),
                packages: unavailable
                    .iter()
                    .map(|p| UnavailablePackage {
                        line: lock.line_of(name, &p.name),
                        entry: p.entry(),
                    })
                    .collect(),
            });
        }
        let newest: Vec<Option<Available>> = unavailable
            .iter()
            .map(|p| apt.newest(&p.name).cloned())
            .collect();
        let mut changes = Vec::new();
        for (package, newest) in unavailable.iter().zip(newest) {
            let Some(newest) = newest else {
                // The package left the archive altogether: only a fresh resolution knows what
                // takes its place.
                let reason = format!("{} is no longer in the archive", package.name);
                return self.resolve(lock, name, base, reason);
            };
            changes.push(PackageChange {
                package: package.name.clone(),
                old: Some(package.version.clone()),
                new: Some(newest.version.clone()),
                security: newest.security,
            });
            download.push(newest);
        }
        let refs: Vec<_> = download.iter().collect();
        apt_session(&mut self.apt, &self.build)?.download(&self.cache, &refs)?;
        let mut updated = current.clone();
        for package in &mut updated.packages {
            if let Some(found) = download.iter().find(|a| a.name == package.name) {
                package.version = found.version.clone();
                package.sha256 = Some(found.sha256.clone());
            }
        }
        updated.packages.sort();
        let mut reason = if unavailable.is_empty() {
            format!("recorded the SHA-256 of {hashes_recorded} packages")
        } else {
            format!("{} locked versions can no longer be had", unavailable.len())
        };
        if !unavailable.is_empty() {
            // Check that the amended set installs before writing it down; a new version that
            // needs a package the old set lacks sends us to a fresh resolution.
            if let Err(error) = self.build_here(name, base, &updated) {
                reason.push_str(&format!(
                    "; moving only those did not install ({error}), so everything was resolved afresh"
                ));
                return self.resolve(lock, name, base, reason);
            }
        }
        if updated != current {
            lock.rootfs.insert(name.to_string(), updated);
            lock.save()?;
            return Ok(Some(LockUpdate {
                rootfs: name.into(),
                reason,
                changes,
                hashes_recorded,
            }));
        }
        Ok(None)
    }

    /// Resolves the request of `name` against the sources with mmdebstrap, records the result
    /// with hashes, and builds its tarball from the repository like any locked build.
    fn resolve(
        &mut self,
        lock: &mut Lock,
        name: &str,
        base: &BaseConfig,
        reason: String,
    ) -> Result<Option<LockUpdate>> {
        let sources = self.build.effective_sources()?;
        let tmp = self.cache.tempdir()?;
        let out = tmp.path().join("resolve.tar");
        // Customize commands do not change the package set; they run in the real build.
        mmdebstrap(
            &self.build,
            name,
            &base.packages,
            &[],
            &sources,
            &out,
            None,
            &NEVER_STOPPED,
        )
        .map_err(|error| match &error {
            Error::Mmdebstrap { log, .. } => match unknown_package(log) {
                Some((package, detail)) => Error::UnknownPackage {
                    image: name.into(),
                    package,
                    detail,
                },
                None => error,
            },
            _ => error,
        })?;
        let installed = super::tarball::installed_packages(&out)?;
        drop(tmp);
        let apt = apt_session(&mut self.apt, &self.build)?;
        let mut packages = Vec::new();
        let mut download = Vec::new();
        for (package, version) in installed {
            let found = apt
                .find(&package, &version)
                .ok_or_else(|| Error::Apt {
                    action: format!("looking up {package}={version}"),
                    output: "mmdebstrap installed a version that no index lists".into(),
                })?
                .clone();
            if !self.cache.deb_path(&found.sha256).exists() {
                download.push(found.clone());
            }
            packages.push((
                found,
                LockedPackage {
                    name: package,
                    version,
                    sha256: None,
                },
            ));
        }
        let refs: Vec<_> = download.iter().collect();
        apt.download(&self.cache, &refs)?;
        let mut locked = RootfsLock {
            request: request(base),
            packages: Vec::new(),
        };
        let mut security = BTreeSet::new();
        for (found, mut package) in packages {
            package.sha256 = Some(found.sha256.clone());
            if found.security {
                security.insert(package.name.clone());
            }
            locked.packages.push(package);
        }
        locked.packages.sort();
        self.build_here(name, base, &locked)?;
        let old: BTreeMap<String, String> = lock
            .rootfs
            .get(name)
            .map(|l| {
                l.packages
                    .iter()
                    .map(|p| (p.name.clone(), p.version.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let new: BTreeMap<String, String> = locked
            .packages
            .iter()
            .map(|p| (p.name.clone(), p.version.clone()))
            .collect();
        let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        let changes = names
            .into_iter()
            .filter(|n| old.get(*n) != new.get(*n))
            .map(|n| PackageChange {
                package: n.clone(),
                old: old.get(n).cloned(),
                new: new.get(n).cloned(),
                security: new.contains_key(n) && security.contains(n),
            })
            .collect();
        let changed = lock.rootfs.get(name) != Some(&locked);
        lock.rootfs.insert(name.to_string(), locked);
        if changed {
            lock.save()?;
        }
        Ok(changed.then(|| LockUpdate {
            rootfs: name.into(),
            reason,
            changes,
            hashes_recorded: 0,
        }))
    }

    /// The tarball of rootfs `name` as `lock` has it: its cache key and path, built from the
    /// cached .debs if the cache lacks it. [`Resolver::settle`] must have run for `name`.
    pub fn ensure(
        &mut self,
        lock: &Lock,
        name: &str,
        base: &BaseConfig,
    ) -> Result<(String, PathBuf)> {
        let locked = locked_entry(lock, name, base)?;
        let key = inputs(&self.build, name, &locked, base).key();
        let path = self.cache.rootfs_path(&key);
        if let Some((started, _)) = self.started.remove(name) {
            started.join().map_err(|_| Error::Apt {
                action: format!("building {name}"),
                output: "the thread building it panicked".into(),
            })??;
        }
        if !path.exists() {
            self.build_here(name, base, &locked)?;
        }
        Ok((key, path))
    }

    /// Builds the tarball of rootfs `name` on this thread (nothing stops it but an error).
    fn build_here(&self, name: &str, base: &BaseConfig, locked: &RootfsLock) -> Result<()> {
        build_tarball(&self.cache, &self.build, name, base, locked, &NEVER_STOPPED)
    }

    /// Whether [`Resolver::start`] started rootfs `name` and [`Resolver::ensure`] has not yet
    /// waited for it.
    pub fn is_started(&self, name: &str) -> bool {
        self.started.contains_key(name)
    }

    /// Starts building the tarball of rootfs `name` on a thread of its own, when the cache
    /// lacks it, so that it is built while the caller builds others; [`Resolver::ensure`] then
    /// waits for it. True if a build started. mmdebstrap (dpkg) keeps about one core busy: the
    /// longest rootfs (MediaWiki's code, one to two minutes on our 2-core machines) no longer
    /// waits for every base before it.
    pub fn start(&mut self, lock: &Lock, name: &str, base: &BaseConfig) -> Result<bool> {
        let locked = locked_entry(lock, name, base)?;
        let key = inputs(&self.build, name, &locked, base).key();
        if self.started.contains_key(name) || self.cache.rootfs_path(&key).exists() {
            return Ok(false);
        }
        let (cache, build) = (self.cache.clone(), self.build.clone());
        let (image, base) = (name.to_string(), base.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rootfs {name}"))
            .spawn(move || build_tarball(&cache, &build, &image, &base, &locked, &stopped))
            .map_err(Error::io(self.cache.root()))?;
        self.started.insert(name.to_string(), (thread, stop));
        Ok(true)
    }
}

impl Drop for Resolver {
    /// A build that stops early (an error elsewhere) stops the rootfs builds it started and
    /// waits for them to end. Not waiting would leave mmdebstrap running and its temporary
    /// directory behind when the process exits; waiting for them to finish held the error back
    /// for as long as the longest one (MediaWiki's code rootfs, a minute or two).
    fn drop(&mut self) {
        let started = std::mem::take(&mut self.started);
        for (_, stop) in started.values() {
            stop.store(true, Ordering::Relaxed);
        }
        for (_, (thread, _)) in started {
            let _ = thread.join();
        }
    }
}

/// The lock entry of rootfs `name`, if the lock has one for `base`'s request.
fn locked_entry(lock: &Lock, name: &str, base: &BaseConfig) -> Result<RootfsLock> {
    lock.rootfs
        .get(name)
        .filter(|l| l.request == request(base))
        .cloned()
        .ok_or_else(|| Error::StaleLock {
            path: lock.path.clone(),
            image: name.into(),
            reason: stale_reason(lock, name),
        })
}

/// Builds the tarball of `locked` from its cached .debs into the cache.
fn build_tarball(
    cache: &Cache,
    build: &BuildConfig,
    name: &str,
    base: &BaseConfig,
    locked: &RootfsLock,
    stop: &AtomicBool,
) -> Result<()> {
    let key = inputs(build, name, locked, base).key();
    let path = cache.rootfs_path(&key);
    // Builds that share a cache (two test binaries, two CI jobs on one machine) and need the
    // same rootfs at once: the later one waits for the earlier one's tarball instead of
    // running mmdebstrap for it too. The lock is the kernel's, so a build that dies drops it.
    let lock_path = path.with_extension("tar.lock");
    let guard = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(Error::io(&lock_path))?;
    rustix::fs::flock(&guard, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| Error::io(&lock_path)(e.into()))?;
    if path.exists() {
        return Ok(());
    }
    let mut digests = Vec::new();
    for package in &locked.packages {
        match &package.sha256 {
            Some(sha) if cache.deb_path(sha).exists() => digests.push(sha.clone()),
            _ => {
                return Err(Error::Apt {
                    action: format!("building {name}"),
                    output: format!("{} is not in the package cache", package.entry()),
                })
            }
        }
    }
    let repository = Repository::create(cache, &BTreeMap::from([(build.suite.clone(), digests)]))?;
    let tmp = cache.tempdir()?;
    let out = tmp.path().join("rootfs.tar");
    // The image's own apt sources are the site's, not the throwaway repository's.
    let sources_list = repository.path().join("sources.list");
    std::fs::write(&sources_list, build.sources.join("\n") + "\n")
        .map_err(Error::io(&sources_list))?;
    std::fs::set_permissions(
        &sources_list,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .map_err(Error::io(&sources_list))?;
    mmdebstrap(
        build,
        name,
        &base.packages,
        &base.customize,
        &[repository.source(&build.suite)],
        &out,
        Some(&sources_list),
        stop,
    )?;
    let installed = super::tarball::installed_packages(&out)?;
    let mut wanted: Vec<(String, String)> = locked
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    // Locks of the first form are sorted as `name=version` strings (`apache2-bin` before
    // `apache2`), dpkg's list by name.
    wanted.sort();
    if installed != wanted {
        return Err(Error::LockMismatch {
            image: name.into(),
            detail: mismatch(&wanted, &installed),
        });
    }
    std::fs::rename(&out, &path).map_err(Error::io(&path))?;
    drop(guard);
    Ok(())
}

/// The build's apt session, opened on first use. A function of the two fields rather than a
/// method, so the session can be held while the resolver's other fields are read.
fn apt_session<'a>(slot: &'a mut Option<Apt>, build: &BuildConfig) -> Result<&'a Apt> {
    if slot.is_none() {
        *slot = Some(Apt::open(&build.effective_sources()?)?);
    }
    Ok(slot.as_ref().expect("just opened"))
}

/// Why the lock has no usable entry for `name`.
fn stale_reason(lock: &Lock, name: &str) -> String {
    if lock.rootfs.contains_key(name) {
        "its packages or customize commands changed".to_string()
    } else {
        format!("it has no [{name}] table")
    }
}

/// What differs between the locked and the installed package lists, briefly.
fn mismatch(wanted: &[(String, String)], installed: &[(String, String)]) -> String {
    let wanted: BTreeSet<_> = wanted.iter().collect();
    let installed: BTreeSet<_> = installed.iter().collect();
    let missing: Vec<String> = wanted
        .difference(&installed)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    let extra: Vec<String> = installed
        .difference(&wanted)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    format!(
        "locked but not installed: [{}]; installed but not locked: [{}]",
        missing.join(", "),
        extra.join(", ")
    )
}

/// How often a running mmdebstrap is checked for having ended or being asked to stop.
const STOP_POLL: Duration = Duration::from_millis(100);

/// Runs mmdebstrap for `include` from `sources` into `out`; with `sources_list`, the rootfs's
/// /etc/apt/sources.list is replaced by that file. When `stop` becomes true it is interrupted
/// as Ctrl-C would (it cleans up and exits), and this returns its error.
#[allow(clippy::too_many_arguments)]
fn mmdebstrap(
    build: &BuildConfig,
    name: &str,
    include: &[String],
    customize: &[String],
    sources: &[String],
    out: &Path,
    sources_list: Option<&Path>,
    stop: &AtomicBool,
) -> Result<()> {
    crate::tools::require("mmdebstrap", "mmdebstrap", "build Debian base images")?;
    let mut command = Command::new("mmdebstrap");
    command
        .env("SOURCE_DATE_EPOCH", build.source_date_epoch.to_string())
        .env("LC_ALL", "C.UTF-8")
        .arg("--variant=essential")
        .arg("--mode=unshare")
        .arg("--format=tar")
        .arg(format!("--include={}", include.join(",")));
    for pattern in &build.path_exclude {
        command.arg(format!("--dpkgopt=path-exclude={pattern}"));
    }
    if sources.iter().any(|s| s.contains("file://")) {
        // dpkg inside the rootfs opens the .debs by the repository's path: mmdebstrap's own
        // hook makes file:// repositories visible there and removes them afterwards.
        command.arg("--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount");
    }
    for command_text in customize {
        // The command runs inside the new rootfs; its own quotes are kept by sh -c.
        let quoted = command_text.replace('\'', r"'\''");
        command.arg(format!("--customize-hook=chroot \"$1\" sh -c '{quoted}'"));
    }
    if let Some(list) = sources_list {
        command.arg(format!(
            "--customize-hook=upload {} /etc/apt/sources.list",
            list.display()
        ));
    }
    command.arg(&build.suite).arg(out).args(sources);
    // Its log goes to a file beside the tarball rather than a pipe, so that nothing has to read
    // it while this thread watches for the end or a stop.
    let log_path = out.with_extension("log");
    let log_file = std::fs::File::create(&log_path).map_err(Error::io(&log_path))?;
    // A process group of its own: mmdebstrap's main process ignores SIGINT and waits for the
    // process doing the work inside the namespace, which stops on it, as on a terminal's
    // Ctrl-C, which reaches the whole group.
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(Error::io("mmdebstrap"))?;
    let mut interrupted = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(Error::io("mmdebstrap"))? {
            break status;
        }
        // Signalled only while the child is running or not yet reaped, so its process group
        // cannot have been given to another process.
        if !interrupted && stop.load(Ordering::Relaxed) {
            interrupted = true;
            let group = rustix::process::Pid::from_child(&child);
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::INT);
        }
        std::thread::sleep(STOP_POLL);
    };
    if status.success() {
        return Ok(());
    }
    if interrupted {
        return Err(Error::Mmdebstrap {
            image: name.into(),
            log: "stopped: the build ended early, before this rootfs was done".into(),
        });
    }
    let log = std::fs::read(&log_path).map_err(Error::io(&log_path))?;
    let log = String::from_utf8_lossy(&log).into_owned();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    Err(Error::Mmdebstrap {
        image: name.into(),
        log,
    })
}

/// Finds apt's complaint about a package it does not know: `E: Unable to locate package P`
/// or `E: Package 'P' has no installation candidate`.
fn unknown_package(log: &str) -> Option<(String, String)> {
    for line in log.lines() {
        let line = line.trim();
        if let Some(package) = line.strip_prefix("E: Unable to locate package ") {
            return Some((package.trim().to_string(), line.to_string()));
        }
        if let Some(rest) = line.strip_prefix("E: Package '") {
            let package = rest.split('\'').next()?;
            return Some((package.to_string(), line.to_string()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unknown_packages_in_apt_output() {
        let log = "I: foo\nE: Unable to locate package nosuch\nE: bar";
        assert_eq!(unknown_package(log).unwrap().0, "nosuch");
        let log = "E: Package 'php9-fpm' has no installation candidate\n";
        assert_eq!(unknown_package(log).unwrap().0, "php9-fpm");
        assert!(unknown_package("E: something else").is_none());
    }

    /// A cache in a temporary directory, the example farm's build settings, and a rootfs
    /// `base-hello` locked to one .deb the cache does not have: building it fails at once,
    /// without mmdebstrap.
    fn unbuildable_rootfs() -> (
        tempfile::TempDir,
        Cache,
        BuildConfig,
        BaseConfig,
        RootfsLock,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("cache")).unwrap();
        let site = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm");
        let build = BuildConfig::load(&site).unwrap();
        let base = BaseConfig {
            packages: vec!["hello".into()],
            customize: vec![],
            cmd: vec![],
            expose: vec![],
        };
        let locked = RootfsLock {
            request: request(&base),
            packages: vec![LockedPackage {
                name: "hello".into(),
                version: "2.10-3".into(),
                sha256: Some(format!("sha256:{}", "0".repeat(64))),
            }],
        };
        (dir, cache, build, base, locked)
    }

    /// A rootfs started on a thread of its own fails where the build waits for it, with its
    /// own error; one the cache has is not started at all.
    #[test]
    fn a_rootfs_started_aside_reports_its_error_when_waited_for() {
        let (dir, cache, build, base, locked) = unbuildable_rootfs();
        let mut lock = Lock::load(dir.path()).unwrap();
        lock.rootfs.insert("base-hello".into(), locked.clone());
        let mut resolver = Resolver::new(&cache, &build, LockMode::Locked);
        assert!(resolver.start(&lock, "base-hello", &base).unwrap());
        let error = resolver.ensure(&lock, "base-hello", &base).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("hello=2.10-3 is not in the package cache"),
            "{error}"
        );
        // Cached: nothing to start.
        let key = inputs(&build, "base-hello", &locked, &base).key();
        std::fs::write(cache.rootfs_path(&key), b"").unwrap();
        assert!(!resolver.start(&lock, "base-hello", &base).unwrap());
        assert_eq!(resolver.ensure(&lock, "base-hello", &base).unwrap().0, key);
    }

    /// A build that finds another holding the rootfs it needs waits, then takes the other's
    /// tarball rather than building it again (here it could not: its .debs are missing).
    #[test]
    fn a_rootfs_another_build_is_making_is_waited_for() {
        let (_dir, cache, build, base, locked) = unbuildable_rootfs();
        let path = cache.rootfs_path(&inputs(&build, "base-hello", &locked, &base).key());
        // The other build: holds the lock, then puts the tarball in place.
        let other = std::fs::File::create(path.with_extension("tar.lock")).unwrap();
        rustix::fs::flock(&other, rustix::fs::FlockOperation::LockExclusive).unwrap();
        let waiting = {
            let (cache, build, base, locked) =
                (cache.clone(), build.clone(), base.clone(), locked.clone());
            std::thread::spawn(move || {
                build_tarball(&cache, &build, "base-hello", &base, &locked, &NEVER_STOPPED)
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert!(
            !waiting.is_finished(),
            "it did not wait for the other build"
        );
        std::fs::write(&path, b"the other build's tarball").unwrap();
        drop(other);
        waiting.join().unwrap().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"the other build's tarball");
        // Alone, the same build fails: its .debs are not in the cache.
        std::fs::remove_file(&path).unwrap();
        let error = build_tarball(&cache, &build, "base-hello", &base, &locked, &NEVER_STOPPED)
            .unwrap_err();
        assert!(
            error.to_string().contains("not in the package cache"),
            "{error}"
        );
    }

    #[test]
    fn a_mismatch_names_both_sides() {
        let wanted = vec![("a".into(), "1".into()), ("b".into(), "1".into())];
        let installed = vec![("a".into(), "1".into()), ("b".into(), "2".into())];
        let text = mismatch(&wanted, &installed);
        assert!(text.contains("locked but not installed: [b=1]"), "{text}");
        assert!(text.contains("installed but not locked: [b=2]"), "{text}");
    }
}
