//! apache httpd: one virtual host per wiki (all its domains), MediaWiki short URLs, FastCGI to
//! php-fpm over the shared socket, and the release's listener settings.

use serde::Serialize;

use wikikube_model::{HttpdValues, PhpValues, SiteSpec};

use super::mediawiki::ENTRY_DIR;
use super::paths::{code_dir, FPM_PING, FPM_SOCKET};
use super::{template, Files};

#[derive(Serialize)]
struct VhostWiki<'a> {
    dbname: &'a str,
    server_name: &'a str,
    aliases: &'a [String],
    code: String,
}

/// The virtual hosts of the farm: `000-default.conf` for unknown hosts and probes, then one file
/// per wiki. They depend only on the wikis (any port matches), so every release shares them.
pub fn sites(spec: &SiteSpec) -> Files {
    let mut files = Files::new();
    files.insert(
        "000-default.conf".into(),
        template(
            "default-vhost.conf",
            minijinja::context! { socket => FPM_SOCKET, ping_path => FPM_PING },
        ),
    );
    for (dbname, wiki) in &spec.wikis {
        let (server_name, aliases) = wiki
            .domains
            .split_first()
            .expect("validation requires at least one domain");
        let wiki = VhostWiki {
            dbname,
            server_name,
            aliases,
            code: code_dir(&wiki.version),
        };
        files.insert(
            format!("{dbname}.conf"),
            template(
                "vhost.conf",
                minijinja::context! { wiki, socket => FPM_SOCKET, entry_dir => ENTRY_DIR },
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

/// The release's whole httpd configuration (`httpd.conf`): modules, listener, timeouts, logs,
/// and the farm's virtual hosts from [`SITES_DIR`].
pub fn server(httpd: &HttpdValues, php: &PhpValues) -> Files {
    let mut files = Files::new();
    files.insert(
        "httpd.conf".into(),
        template(
            "httpd.conf",
            minijinja::context! {
                port => httpd.port,
                modules => MODULES,
                config_dir => CONFIG_DIR,
                sites_dir => SITES_DIR,
                // httpd must wait at least as long as php-fpm lets a request run.
                timeout_seconds => php.request_timeout_seconds + 1,
            },
        ),
    );
    files
}
