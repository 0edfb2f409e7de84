//! apache httpd: one virtual host per MediaWiki version (every domain of the wikis on it),
//! MediaWiki short URLs, FastCGI to php-fpm over the shared socket, and the release's listener
//! settings.
//!
//! Why per version and not per wiki: what differs between two wikis' virtual hosts is only their
//! domains and their version's code directory; the wiki itself is chosen from the Host header in
//! PHP, by the multiversion entry point. A virtual host per wiki took about 1 kB each, so the
//! shared ConfigMap passed the API server's 1 MiB limit near 1,000 wikis (Wikimedia runs about
//! 1,070); per version, a domain costs its name, and 10,000 wikis fit.

use std::collections::BTreeMap;

use serde::Serialize;

use wikikube_model::{HttpdValues, MediaStorage, MediaValues, PhpValues, SiteSpec};

use super::mediawiki::ENTRY_DIR;
use super::paths::{code_dir, FPM_PING, FPM_SOCKET};
use super::{template, Files};

#[derive(Serialize)]
struct VhostVersion<'a> {
    version: &'a str,
    wikis: usize,
    server_name: &'a str,
    /// The other domains, a few per `ServerAlias` line.
    alias_lines: Vec<String>,
    code: String,
}

/// Domains per `ServerAlias` line: short lines to read, few bytes of repeated directive.
const ALIASES_PER_LINE: usize = 8;

/// The virtual hosts of the farm: `000-default.conf` for unknown hosts and probes, then one file
/// per MediaWiki version, `mediawiki-VERSION.conf`. They depend only on the wikis (any port
/// matches) and the site's one media store, so every release shares them.
/// `media` is the site's (none when it has no release).
pub fn sites(spec: &SiteSpec, media: Option<&MediaValues>) -> Files {
    // With Swift, /images goes to the account's storage URL (see vhost.conf.j2).
    let swift_url = media
        .filter(|media| media.storage == MediaStorage::Swift)
        .map(|media| media.swift.effective_storage_url());
    let mut files = Files::new();
    files.insert(
        "000-default.conf".into(),
        template(
            "default-vhost.conf",
            minijinja::context! { socket => FPM_SOCKET, ping_path => FPM_PING },
        ),
    );
    let mut by_version: BTreeMap<&str, (usize, Vec<&str>)> = BTreeMap::new();
    for wiki in spec.wikis.values() {
        let entry = by_version.entry(wiki.version.as_str()).or_default();
        entry.0 += 1;
        entry.1.extend(wiki.domains.iter().map(String::as_str));
    }
    for (version, (wikis, domains)) in by_version {
        let (server_name, aliases) = domains
            .split_first()
            .expect("validation requires at least one domain per wiki");
        let vhost = VhostVersion {
            version,
            wikis,
            server_name,
            alias_lines: aliases
                .chunks(ALIASES_PER_LINE)
                .map(|chunk| chunk.join(" "))
                .collect(),
            code: code_dir(version),
        };
        files.insert(
            format!("mediawiki-{version}.conf"),
            template(
                "vhost.conf",
                minijinja::context! {
                    vhost,
                    socket => FPM_SOCKET,
                    entry_dir => ENTRY_DIR,
                    media_dir => super::paths::MEDIA_DIR,
                    media_url => super::paths::MEDIA_URL_PATH,
                    swift_url,
                },
            ),
        );
    }
    files
}

/// Where the release's httpd.conf is mounted.
pub const CONFIG_DIR: &str = "/etc/wikikube/httpd";

/// Where the farm's virtual hosts are mounted.
pub const SITES_DIR: &str = "/etc/wikikube/httpd-sites";

/// The modules the configuration uses, from Debian's apache2.
const MODULES: &[&str] = &[
    "mpm_event",
    "authz_core",
    "alias",
    "dir",
    "mime",
    "headers",
    "filter",
    "deflate",
    "rewrite",
    "remoteip",
    "proxy",
    "proxy_fcgi",
];

/// The module that proxies `/images` to Swift, loaded only when the media are there.
const SWIFT_MODULE: &str = "proxy_http";

/// The release's whole httpd configuration (`httpd.conf`): modules, listener, timeouts, logs,
/// and the farm's virtual hosts from [`SITES_DIR`].
pub fn server(httpd: &HttpdValues, php: &PhpValues, media: &MediaValues) -> Files {
    let mut modules = MODULES.to_vec();
    if media.storage == MediaStorage::Swift {
        modules.push(SWIFT_MODULE);
    }
    let mut files = Files::new();
    files.insert(
        "httpd.conf".into(),
        template(
            "httpd.conf",
            minijinja::context! {
                port => httpd.port,
                modules,
                config_dir => CONFIG_DIR,
                sites_dir => SITES_DIR,
                ping_path => FPM_PING,
                // httpd must wait at least as long as php-fpm lets a request run.
                timeout_seconds => php.request_timeout_seconds + 1,
            },
        ),
    );
    files
}
