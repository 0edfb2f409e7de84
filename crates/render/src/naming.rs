//! Every name a render gives: objects, Services, ConfigMaps, Secrets, the edge and the local
//! machine's pods and volumes. Consumers (`local`, `deploy`, the CLI) take names from here or
//! from [`crate::Rendered`], never by putting strings together themselves.

use wikikube_model::{ReleaseName, ResolvedSite};

/// A release's Deployment and PodDisruptionBudget: `{deployment}-{release}`.
pub fn release(deployment: &str, release: ReleaseName) -> String {
    format!("{deployment}-{release}")
}

/// One of a release's ConfigMaps: `{deployment}-{release}-{part}` (`mw-web-main-php`).
pub fn release_config(deployment: &str, release: ReleaseName, part: &str) -> String {
    format!("{deployment}-{release}-{part}")
}

/// The Service a release owns: main's is named after the deployment, the others'
/// `{deployment}-{release}`.
pub fn service(deployment: &str, release: ReleaseName) -> String {
    match release {
        ReleaseName::Main => deployment.to_string(),
        other => self::release(deployment, other),
    }
}

/// The farm's virtual hosts, shared by every release.
pub fn httpd_sites(site: &ResolvedSite) -> String {
    format!("{}-httpd-sites", site.spec.site.name)
}

/// The Secret with the site's private values.
pub fn private_secret(site: &ResolvedSite) -> String {
    format!("{}-private", site.spec.site.name)
}

/// One of the ConfigMaps maintenance Jobs mount, `{site}-maintenance-{part}` (`php`,
/// `mcrouter`): copies of the files of the release scripts run with.
pub fn maintenance_config(site: &ResolvedSite, part: &str) -> String {
    format!("{}-maintenance-{part}", site.spec.site.name)
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
