//! Every name a render gives: objects, Services, ConfigMaps, Secrets, the edge and the local
//! machine's pods and volumes. Consumers (`local`, `deploy`, the CLI) take names from here or
//! from [`crate::Rendered`], never by putting strings together themselves.
//!
//! The ConfigMaps and the Secret the releases mount are *versioned*: their name is a base name
//! ([`release_config`], [`httpd_sites`], [`private_secret`]) followed by a hash of their content
//! ([`versioned`]), and they are immutable, as kustomize's generated ConfigMaps are. A change of
//! content is a new object and a new pod template, so it reaches each release with that release's
//! own rollout (the canary first) and a rollback finds the old object still there. Consumers take
//! a versioned name from the rendered objects, never from the base name.

use wikikube_model::{ReleaseName, ResolvedSite};

/// A release's Deployment and PodDisruptionBudget: `{deployment}-{release}`.
pub fn release(deployment: &str, release: ReleaseName) -> String {
    format!("{deployment}-{release}")
}

/// The base name of one of a release's ConfigMaps: `{deployment}-{release}-{part}`
/// (`mw-web-main-php`).
pub fn release_config(deployment: &str, release: ReleaseName, part: &str) -> String {
    format!("{deployment}-{release}-{part}")
}

/// How many hex digits of the content hash a versioned name carries: 40 bits, as kustomize's
/// ten-character suffix, so that two contents of one base name do not meet by chance.
pub const VERSION_DIGITS: usize = 10;

/// A versioned object's name: `{base}-{first VERSION_DIGITS digits of content_hash}`.
pub fn versioned(base: &str, content_hash: &str) -> String {
    let digits = &content_hash[..VERSION_DIGITS.min(content_hash.len())];
    format!("{base}-{digits}")
}

/// The base name of a versioned name (`mw-web-main-php-0123456789` -> `mw-web-main-php`); any
/// other name is its own base. Base names end in a word (`-php`, `-private`), never in ten hex
/// digits, so the two cannot be confused.
pub fn unversioned(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((base, digits))
            if digits.len() == VERSION_DIGITS
                && digits
                    .bytes()
                    .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            base
        }
        _ => name,
    }
}

/// The Service a release owns: main's is named after the deployment, the others'
/// `{deployment}-{release}`.
pub fn service(deployment: &str, release: ReleaseName) -> String {
    match release {
        ReleaseName::Main => deployment.to_string(),
        other => self::release(deployment, other),
    }
}

/// The base name of the farm's virtual hosts, shared by every release.
pub fn httpd_sites(site: &ResolvedSite) -> String {
    format!("{}-httpd-sites", site.spec.site.name)
}

/// The base name of the farm's wikiversions (which version each wiki runs), shared by every
/// release.
pub fn wikiversions(site: &ResolvedSite) -> String {
    format!("{}-wikiversions", site.spec.site.name)
}

/// The base name of the Secret with the site's private values.
pub fn private_secret(site: &ResolvedSite) -> String {
    format!("{}-private", site.spec.site.name)
}

/// The Secret of a self-signed certificate (made by `wikikube up` on one machine).
pub fn self_signed_certificate(site: &ResolvedSite) -> String {
    format!("{}-self-signed-tls", site.spec.site.name)
}

/// Every object of the edge in front of the releases.
pub fn edge(site: &ResolvedSite) -> String {
    format!("{}-edge", site.spec.site.name)
}

/// The memcached a local environment runs beside its cakes.
pub fn memcached(site: &ResolvedSite) -> String {
    format!("{}-memcached", site.spec.site.name)
}

/// The MariaDB a local environment runs beside its cakes.
pub fn mariadb(site: &ResolvedSite) -> String {
    format!("{}-mariadb", site.spec.site.name)
}

/// The volume with the local MariaDB's databases.
pub fn mariadb_data(site: &ResolvedSite) -> String {
    format!("{}-mariadb-data", site.spec.site.name)
}

/// The volume (a PersistentVolumeClaim; a named volume under podman) with the wikis' SQLite
/// databases in a local environment.
pub fn wiki_data(site: &ResolvedSite) -> String {
    format!("{}-wiki-data", site.spec.site.name)
}

/// The Swift cluster a local environment runs when its media are in Swift.
pub fn swift(site: &ResolvedSite) -> String {
    format!("{}-swift", site.spec.site.name)
}

/// The Redis servers a local environment runs beside its cakes: `SITE-redis` for the sessions
/// pool's first server, `SITE-redis-N` for the others (sessions, then lock servers, by port).
pub fn redis(site: &ResolvedSite, index: usize) -> String {
    match index {
        0 => format!("{}-redis", site.spec.site.name),
        _ => format!("{}-redis-{}", site.spec.site.name, index + 1),
    }
}

/// The named volume with the local Swift cluster's one device: every wiki's media.
pub fn swift_data(site: &ResolvedSite) -> String {
    format!("{}-swift-data", site.spec.site.name)
}

/// The PersistentVolumeClaim (a named volume under podman) with every wiki's uploads,
/// thumbnails and deleted files, mounted by every pod of the site.
pub fn media(site: &ResolvedSite) -> String {
    format!("{}-media", site.spec.site.name)
}

/// The PersistentVolumeClaim the backups of a Kubernetes environment are kept on:
/// `{site}-backups`.
pub fn backups(site: &ResolvedSite) -> String {
    format!("{}-backups", site.spec.site.name)
}

/// The CronJob that takes the site's scheduled backups: `{site}-backup`, the site's name cut so
/// that the whole stays within the 52 characters the CronJob controller allows (it adds the
/// run's 11-character suffix to name each Job).
pub fn backup_schedule(site_name: &str) -> String {
    let site: String = site_name.chars().take(52 - "-backup".len()).collect();
    format!("{}-backup", site.trim_end_matches('-'))
}

/// The pod podman runs for a release on one machine: the site's name comes first, since two
/// sites may run side by side (`farm-mw-web-main`). Components (the edge, memcached) carry the
/// site's name already and keep their Deployment's name.
pub fn local_release_pod(site: &ResolvedSite, deployment: &str, release: ReleaseName) -> String {
    format!(
        "{}-{}",
        site.spec.site.name,
        self::release(deployment, release)
    )
}
