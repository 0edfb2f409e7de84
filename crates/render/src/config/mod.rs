//! The config files of the cake's programs, generated from typed inputs.
//!
//! Files are rendered with minijinja templates (in `templates/`) whose inputs are typed structs,
//! or serialized from the programs' own config types (edge). Each function returns file name ->
//! contents, which become the data of one ConfigMap or one image layer.

pub mod httpd;
pub mod mcrouter;
pub mod mediawiki;
pub mod php;
pub mod redis_proxy;
pub mod tls;
pub mod traffic;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use minijinja::Environment;
use serde::Serialize;

/// File name -> contents. Sorted, so everything built from it is deterministic.
pub type Files = BTreeMap<String, String>;

/// Where the cake's containers meet: paths and endpoints shared by several config files.
pub mod paths {
    /// The emptyDir shared by httpd and php-fpm.
    pub const SOCKET_DIR: &str = "/run/shared";
    /// php-fpm's socket, in [`SOCKET_DIR`].
    pub const FPM_SOCKET: &str = "/run/shared/fpm-www.sock";
    /// php-fpm answers this path through httpd: the pod's readiness check.
    pub const FPM_PING: &str = "/fpm-ping";
    /// Where a MediaWiki version's code lives in the app and webserver images.
    pub fn code_dir(version: &str) -> String {
        format!("/srv/mediawiki/php-{version}")
    }
    /// The farm's own files (entry points, settings) in the app image.
    pub const FARM_DIR: &str = "/srv/mediawiki";
    /// Which version each wiki runs (`wikiversions.php`), mounted from a ConfigMap into the
    /// app container, so that moving a wiki to another version changes no image.
    pub const WIKIVERSIONS_DIR: &str = "/srv/mediawiki/wikiversions";
    /// The media volume in the app and httpd containers: `public/DBNAME` (uploads and
    /// thumbnails, which httpd serves under `/images/DBNAME`) and `deleted/DBNAME` (deleted
    /// files, which nothing serves).
    pub const MEDIA_DIR: &str = "/srv/mediawiki/media";
    /// The URL path of the wikis' public media, served by httpd from [`MEDIA_DIR`]`/public`.
    pub const MEDIA_URL_PATH: &str = "/images";
    /// The secrets volume in the app container.
    pub const SECRETS_DIR: &str = "/etc/wikikube/secrets";
    /// The certificate volume in the tls container.
    pub const TLS_DIR: &str = "/etc/wikikube/tls";
}

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut environment = Environment::new();
    environment.set_keep_trailing_newline(true);
    for (name, source) in [
        ("vhost.conf", include_str!("../../templates/vhost.conf.j2")),
        (
            "default-vhost.conf",
            include_str!("../../templates/default-vhost.conf.j2"),
        ),
        ("httpd.conf", include_str!("../../templates/httpd.conf.j2")),
        (
            "php-fpm.conf",
            include_str!("../../templates/php-fpm.conf.j2"),
        ),
        ("php.ini", include_str!("../../templates/php.ini.j2")),
    ] {
        environment
            .add_template(name, source)
            .expect("the built-in templates parse");
    }
    environment
});

/// Renders a built-in template. The templates and their typed inputs are ours, so a failure is
/// a bug in wikikube, not a user error.
fn template(name: &str, context: impl Serialize) -> String {
    TEMPLATES
        .get_template(name)
        .and_then(|template| template.render(context))
        .unwrap_or_else(|error| panic!("built-in template {name} failed: {error:#}"))
}
