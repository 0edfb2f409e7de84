//! The typed site: what each key of the site's files means.
//!
//! Two kinds of values live in a site. The *structure* (the site's name, its wikis, MediaWiki
//! versions, extensions and skins) is global. The *cake values* ([`CakeValues`]: replicas, php-fpm
//! sizing, ports, images, memcached pools...) can be set globally and overridden per deployment
//! and per release, so they are resolved once for every release (see [`crate::resolve`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// `[site]`: who the farm is.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteInfo {
    /// A short name, used as a prefix for shared objects (`farm`).
    pub name: String,
    /// The Kubernetes namespace every object goes into.
    pub namespace: String,
}

/// `[versions."1.39.17-wmf.1"]`: one MediaWiki version, named like Wikimedia's branches: its
/// source and its own patch series. The name is what MediaWiki reports (`MW_VERSION`, the
/// `generator` meta tag, Special:Version): the build writes it into the version's code.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VersionSpec {
    /// The directory holding that version's MediaWiki code: an absolute path is read from the
    /// build's code rootfs (Debian's `mediawiki` package at its locked version installs it in
    /// `/usr/share/mediawiki`), a relative one from the site directory. Empty when `tarball`
    /// gives the code.
    #[serde(default)]
    pub code: String,
    /// A MediaWiki release tarball (`mediawiki-1.39.17.tar.gz`, relative to the site), with its
    /// `sha256`; the build checks the digest before reading it.
    #[serde(default)]
    pub tarball: Option<String>,
    /// The SHA-256 of `tarball`, as 64 hex digits.
    #[serde(default)]
    pub sha256: Option<String>,
    /// A directory of patch files applied in name order at build time (relative to the site).
    #[serde(default)]
    pub patches: Option<String>,
}

/// `[[groups]]`: one group of the train, in the order a new version reaches them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// The group's name (`group0`), used by `wikikube train`.
    pub name: String,
    /// Wikis of the group, by database name.
    #[serde(default)]
    pub wikis: Vec<String>,
    /// Rules for wikis no group lists by name: database-name patterns where `*` stands for any
    /// text (`"*wiki"`: every Wikipedia; `"*"`: every other wiki). A wiki goes to the first group
    /// in train order whose rule matches it.
    #[serde(default, rename = "match")]
    pub patterns: Vec<String>,
    /// The MediaWiki version the group's wikis run: a key of `[versions]`.
    pub version: String,
    /// The version the group ran before its last promotion (written by `wikikube train
    /// promote`, read by `wikikube train rollback`).
    #[serde(default)]
    pub previous: Option<String>,
}

impl GroupSpec {
    /// Whether one of the group's rules matches `dbname`.
    pub fn matches(&self, dbname: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| glob_matches(pattern, dbname))
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters. Written here
/// because database names need nothing more than `*`, and a glob crate's path semantics
/// (separators, character classes) would only add ways to be surprised.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*`: the whole text must be the pattern.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// `[wikis.<dbname>]`: one wiki of the farm, named by its database name.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WikiSpec {
    /// Every domain the wiki answers on; the first is its canonical server name.
    pub domains: Vec<String>,
    /// The content language code (`en`, `de`).
    pub language: String,
    /// The MediaWiki version it runs: a key of `[versions]`. Left out when a group of
    /// `[[groups]]` holds the wiki: the group's version is filled in when the site loads.
    #[serde(default)]
    pub version: String,
    /// The train group that holds the wiki, filled in when the site loads (never written).
    #[serde(skip)]
    pub group: Option<String>,
    /// The database section whose server holds the wiki (a key of `[database.sections]`);
    /// none: the default server.
    #[serde(default)]
    pub section: Option<String>,
    /// MediaWiki settings for this wiki only (`wgSitename = "..."`).
    #[serde(default)]
    pub settings: BTreeMap<String, SettingValue>,
}

/// The value of a MediaWiki setting: any TOML value.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum SettingValue {
    /// `true` / `false`.
    Boolean(bool),
    /// A whole number.
    Integer(i64),
    /// A number with a fraction.
    Float(f64),
    /// Text.
    String(String),
    /// A list.
    Array(Vec<SettingValue>),
    /// A map of names to values.
    Table(BTreeMap<String, SettingValue>),
}

/// The global structure of a site, from the merged files.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SiteSpec {
    /// `[site]`.
    pub site: SiteInfo,
    /// `[versions]`, by version name.
    #[serde(default)]
    pub versions: BTreeMap<String, VersionSpec>,
    /// Extensions enabled on every wiki (directories under the version's `extensions/`).
    #[serde(default)]
    pub extensions: Vec<String>,
    /// Skins installed on every wiki; the first is the default skin.
    #[serde(default)]
    pub skins: Vec<String>,
    /// `[wikis]`, by database name.
    #[serde(default)]
    pub wikis: BTreeMap<String, WikiSpec>,
    /// `[[groups]]`: the train's groups, in the order a new version reaches them.
    #[serde(default)]
    pub groups: Vec<GroupSpec>,
    /// `[traffic]`: how the edge in front of the releases routes requests.
    #[serde(default)]
    pub traffic: TrafficSpec,
}

impl SiteSpec {
    /// The keys of the site file that belong to the structure rather than to the cake values.
    pub const KEYS: &'static [&'static str] = &[
        "site",
        "versions",
        "extensions",
        "skins",
        "wikis",
        "groups",
        "traffic",
    ];
}

/// `[traffic]`: the edge in front of the releases (edge mode of the `edge` program).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    /// The deployment that serves every host unless a route says otherwise.
    #[serde(default)]
    pub main: Option<String>,
    /// Paths that go to another deployment (`/w/api.php` to mw-api-ext).
    #[serde(default)]
    pub routes: Vec<PathRoute>,
    /// Deployments reachable with `X-Wikimedia-Debug: backend=NAME`.
    #[serde(default)]
    pub debug: Vec<String>,
    /// Percent of each deployment's traffic that goes to its `next` release.
    #[serde(default)]
    pub next_percent: f64,
    /// Percent for particular hosts, overriding `next_percent`.
    #[serde(default)]
    pub next_host_percent: BTreeMap<String, f64>,
    /// The host port of the edge that `wikikube up` runs in front of a local farm (0: none).
    #[serde(default)]
    pub local_https_port: u16,
    /// `[traffic.edge]`: the edge's own Deployment in a Kubernetes environment.
    #[serde(default)]
    pub edge: EdgeSpec,
}

/// `[traffic.edge]`: the edge Deployment rendered for a Kubernetes environment. It runs the
/// `tls` image in edge mode and reaches the releases through their Services over TLS.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// Pods of the edge Deployment; 0 renders no edge (another layer, a CDN, routes instead).
    #[serde(default = "EdgeSpec::default_replicas")]
    pub replicas: u32,
    /// The edge Service's type: `ClusterIP`, `NodePort` or `LoadBalancer`.
    #[serde(default)]
    pub service_type: ServiceType,
    /// The edge container's CPU request, in millicores.
    #[serde(default = "EdgeSpec::default_cpu_millicores")]
    pub cpu_millicores: u32,
    /// The edge container's memory request and limit, in MiB.
    #[serde(default = "EdgeSpec::default_memory_mb")]
    pub memory_mb: u32,
}

impl EdgeSpec {
    fn default_replicas() -> u32 {
        2
    }
    fn default_cpu_millicores() -> u32 {
        1000
    }
    fn default_memory_mb() -> u32 {
        256
    }
}

impl Default for EdgeSpec {
    fn default() -> EdgeSpec {
        EdgeSpec {
            replicas: EdgeSpec::default_replicas(),
            service_type: ServiceType::default(),
            cpu_millicores: EdgeSpec::default_cpu_millicores(),
            memory_mb: EdgeSpec::default_memory_mb(),
        }
    }
}

/// A Kubernetes Service type.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum ServiceType {
    /// Reachable inside the cluster only (a load balancer outside forwards to it).
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through the cloud's load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The name Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// One path route of `[traffic]`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PathRoute {
    /// The path prefix (`/w/api.php`).
    pub path_prefix: String,
    /// The deployment that serves it.
    pub deployment: String,
}

/// How an environment runs.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum EnvironmentKind {
    /// One machine, with podman (`wikikube up`).
    Local,
    /// One or more Kubernetes clusters (`wikikube deploy`).
    Kubernetes,
}

/// `[environment]` in an environment or datacenter file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// `local` or `kubernetes`.
    pub kind: EnvironmentKind,
    /// The datacenter this environment runs in; its memcached pool is the local one.
    pub datacenter: String,
    /// The clusters to deploy to (Kubernetes environments).
    #[serde(default)]
    pub clusters: Vec<ClusterSpec>,
}

/// One Kubernetes cluster of an environment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// The cluster's name in messages and history.
    pub name: String,
    /// The kubeconfig context that reaches it.
    pub context: String,
}

/// The releases a deployment can have.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ReleaseName {
    /// The release that takes the deployment's traffic.
    Main,
    /// A few replicas of a new version, routed through main's Service by shared labels.
    Canary,
    /// Reachable only with the `X-Wikimedia-Debug` header; has its own Service.
    Debug,
    /// A new PHP or MediaWiki version taking a weighted share; has its own Service.
    Next,
}

impl ReleaseName {
    /// Every release name, in the order releases are rendered and deployed.
    pub const ALL: [ReleaseName; 4] = [
        ReleaseName::Main,
        ReleaseName::Canary,
        ReleaseName::Debug,
        ReleaseName::Next,
    ];

    /// The name as written in files and object names.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseName::Main => "main",
            ReleaseName::Canary => "canary",
            ReleaseName::Debug => "debug",
            ReleaseName::Next => "next",
        }
    }

    /// Whether the release gets a Service of its own (canary shares main's).
    pub fn has_own_service(self) -> bool {
        !matches!(self, ReleaseName::Canary)
    }
}

impl fmt::Display for ReleaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReleaseName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        ReleaseName::ALL
            .into_iter()
            .find(|release| release.as_str() == text)
            .ok_or_else(|| {
                format!("`{text}` is not a release; expected main, canary, debug or next")
            })
    }
}

/// Where the tls container gets its certificate.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(into = "String")]
pub enum CertificateSource {
    /// `"self-signed"`: generated at start, for local environments.
    SelfSigned,
    /// `"secret:NAME"`: a Kubernetes TLS Secret (keys `tls.crt`, `tls.key`).
    Secret(String),
}

impl From<CertificateSource> for String {
    fn from(source: CertificateSource) -> String {
        match source {
            CertificateSource::SelfSigned => "self-signed".into(),
            CertificateSource::Secret(name) => format!("secret:{name}"),
        }
    }
}

impl<'de> Deserialize<'de> for CertificateSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.split_once(':') {
            _ if text == "self-signed" => Ok(CertificateSource::SelfSigned),
            Some(("secret", name)) if !name.is_empty() => {
                Ok(CertificateSource::Secret(name.to_string()))
            }
            _ => Err(serde::de::Error::custom(format!(
                "expected \"self-signed\" or \"secret:NAME\", found {text:?}"
            ))),
        }
    }
}

/// The cake's knobs for one release, after every layer and scope is merged.
///
/// Every field is required: the built-in `defaults.toml` sets them all, so a site only writes
/// what it changes.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CakeValues {
    /// Whether this release is rendered at all in this environment.
    pub enabled: bool,
    /// How many pods run the cake.
    pub replicas: u32,
    /// The application server.
    pub php: PhpValues,
    /// The web server in front of php-fpm.
    pub httpd: HttpdValues,
    /// The TLS terminator, outermost in the pod.
    pub tls: TlsValues,
    /// The memcached router in the pod.
    pub mcrouter: McrouterValues,
    /// The memcached pools the router sends to.
    pub memcached: MemcachedValues,
    /// The Redis proxy in the pod (when `redis.pools` has a pool).
    pub redis_proxy: RedisProxyValues,
    /// The Redis pools sessions (and, where a site says so, locks) live in.
    pub redis: RedisValues,
    /// Image references for the cake's containers.
    pub images: ImageValues,
    /// Rolling update pacing.
    pub rollout: RolloutValues,
    /// How many pods may be voluntarily disrupted at once.
    pub disruption: DisruptionValues,
    /// Shutdown ordering.
    pub lifecycle: LifecycleValues,
    /// The Service in front of the release.
    pub service: ServiceValues,
    /// Where a local environment publishes the release on the host.
    pub local: LocalValues,
    /// The wikis' database servers.
    pub database: DatabaseValues,
    /// Where uploaded files and their thumbnails live.
    pub media: MediaValues,
    /// How the wikis send email.
    pub email: EmailValues,
    /// Backups of the wikis in a Kubernetes environment: their volume and schedule.
    pub backup: BackupValues,
}

impl CakeValues {
    /// The keys of [`CakeValues`], as written in files.
    pub const KEYS: &'static [&'static str] = &[
        "enabled",
        "replicas",
        "php",
        "httpd",
        "tls",
        "mcrouter",
        "memcached",
        "redis_proxy",
        "redis",
        "images",
        "rollout",
        "disruption",
        "lifecycle",
        "service",
        "local",
        "database",
        "media",
        "email",
        "backup",
    ];
}

/// `[database]`: where the wikis' databases live. MediaWiki talks to MariaDB/MySQL servers
/// outside the cluster (Wikimedia splits its wikis over "sections" of servers); SQLite is for
/// a tiny farm on one machine and must be chosen explicitly.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DatabaseValues {
    /// `"mysql"` (MariaDB or MySQL) or `"sqlite"`.
    #[serde(rename = "type")]
    pub engine: DatabaseEngine,
    /// The server of every wiki whose section names no other (MariaDB/MySQL): a host name or
    /// address. A local environment uses `host.containers.internal`, where `wikikube up` runs
    /// MariaDB.
    pub host: String,
    /// The server's port.
    pub port: u16,
    /// The user MediaWiki connects as; its password is the private value `database_password`.
    pub user: String,
    /// Whether connections use TLS.
    pub tls: bool,
    /// Servers by section (`s1 = { host = "db1001", port = 3306 }`); a wiki picks one with
    /// `section` in its `[wikis.NAME]` table.
    pub sections: BTreeMap<String, SectionValues>,
}

/// The database engine.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseEngine {
    /// MariaDB or MySQL, as MediaWiki's `mysql` type.
    Mysql,
    /// SQLite files on a volume: one machine only.
    Sqlite,
}

/// `[media]`: where the wikis keep uploaded files, their thumbnails and deleted files. Never a
/// pod's own disk, which goes with the pod.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MediaValues {
    /// `"volume"`: one ReadWriteMany PersistentVolumeClaim that every pod of the site mounts (a
    /// named volume on one machine), the way small farms keep an `images/` directory.
    /// `"swift"`: OpenStack Swift through MediaWiki's SwiftFileBackend, as Wikimedia stores
    /// media; see [`SwiftValues`].
    pub storage: MediaStorage,
    /// The claim's size, in GiB (Kubernetes environments, `storage = "volume"`).
    pub size_gib: u32,
    /// The claim's StorageClass; empty for the cluster's default. It must offer ReadWriteMany
    /// (NFS, CephFS and the like), since every pod of every release mounts it.
    pub storage_class: String,
    /// The Swift cluster, when `storage = "swift"`.
    pub swift: SwiftValues,
}

/// `[media.swift]`: the Swift cluster the wikis keep media in. MediaWiki's SwiftFileBackend
/// puts each wiki's files in containers named `DBNAME-local-ZONE`: `-public` (originals and old
/// versions, world-readable), `-thumb` (thumbnails, world-readable), `-deleted` and `-temp`
/// (private). The user's key is the private value `swift_key`, never a site value.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SwiftValues {
    /// The authentication URL without its version (MediaWiki appends `/v1.0`):
    /// `http://swift.example.org/auth`. On one machine `http://host.containers.internal:PORT/auth`
    /// makes `wikikube up` run Swift, published on that port.
    pub auth_url: String,
    /// The Swift account (tempauth's account, a Keystone project's name).
    pub account: String,
    /// The user MediaWiki authenticates as, within `account`.
    pub user: String,
    /// The account's storage URL (`https://swift.example.org/v1/AUTH_wikis`), which httpd
    /// reads public files from and MediaWiki writes to. Empty: the auth URL's scheme and
    /// host with `/v1/AUTH_ACCOUNT`, which is what tempauth answers.
    pub storage_url: String,
}

impl SwiftValues {
    /// The storage URL: [`SwiftValues::storage_url`], or the one tempauth gives `account` at the
    /// auth URL's host.
    pub fn effective_storage_url(&self) -> String {
        if !self.storage_url.is_empty() {
            return self.storage_url.trim_end_matches('/').to_string();
        }
        let origin = match self.auth_url.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or_default())
            }
            None => self.auth_url.clone(),
        };
        format!("{origin}/v1/AUTH_{}", self.account)
    }

    /// The auth URL's host and port, when it names both.
    pub fn auth_host_port(&self) -> Option<(&str, u16)> {
        let rest = self.auth_url.split_once("://")?.1;
        let authority = rest.split('/').next()?;
        let (host, port) = authority.rsplit_once(':')?;
        Some((host, port.parse().ok()?))
    }
}

/// Where uploads are stored.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MediaStorage {
    /// A shared filesystem volume.
    Volume,
    /// OpenStack Swift, through MediaWiki's SwiftFileBackend.
    Swift,
}

/// `[backup]`: where a Kubernetes environment keeps the wikis' backups and when it takes one.
/// A local environment backs up to a directory the operator names (`wikikube backup --to`)
/// and uses none of this.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupValues {
    /// When to take a backup, in cron's five fields (`"17 3 * * *"`, UTC) or a macro such as
    /// `"@daily"`; empty for none (a backup is then only taken by `wikikube backup`). A
    /// schedule renders a CronJob.
    pub schedule: String,
    /// How many backups the volume keeps: the oldest beyond this many are deleted after each
    /// new one is complete.
    pub keep: u32,
    /// The backups' PersistentVolumeClaim size, in GiB.
    pub size_gib: u32,
    /// Its StorageClass; empty for the cluster's default. ReadWriteOnce is enough: one backup
    /// Job writes at a time.
    pub storage_class: String,
}

/// `[email]`: the SMTP server the wikis send password resets and notifications through.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmailValues {
    /// The server's host name or address; empty turns email off (`$wgEnableEmail = false`).
    pub smtp_host: String,
    /// The server's port: 587 for submission with STARTTLS, 465 with `implicit_tls`, 25.
    pub smtp_port: u16,
    /// Whether the connection is TLS from the first byte (port 465) rather than upgraded with
    /// STARTTLS when the server offers it.
    pub implicit_tls: bool,
    /// The user to log in as, or empty for a server that takes mail without login; its
    /// password is the private value `smtp_password`.
    pub smtp_user: String,
    /// The sender of the wikis' mail (`$wgPasswordSender`); empty for `wiki@` the wiki's
    /// first domain.
    pub sender: String,
}

/// One section's server.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SectionValues {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl DatabaseValues {
    /// `host:port` of the server that holds a wiki of `section` (or of no section).
    pub fn server_of(&self, section: Option<&str>) -> String {
        match section.and_then(|name| self.sections.get(name)) {
            Some(server) => format!("{}:{}", server.host, server.port),
            None => format!("{}:{}", self.host, self.port),
        }
    }
}

/// `[php]`: php-fpm and PHP.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PhpValues {
    /// php-fpm workers (`pm = static`).
    pub workers: u32,
    /// php-fpm's request_terminate_timeout, in seconds.
    pub request_timeout_seconds: u32,
    /// opcache.memory_consumption, in MiB.
    pub opcache_mb: u32,
    /// apc.shm_size, in MiB.
    pub apcu_mb: u32,
    /// PHP's memory_limit per request, in MiB.
    pub memory_limit_mb: u32,
    /// The largest file a wiki takes in one upload, in MiB: PHP's upload_max_filesize (its
    /// post_max_size a MiB above, for the form's other fields) and MediaWiki's
    /// $wgMaxUploadSize, which also caps a file assembled from chunked uploads.
    pub max_upload_mb: u32,
    /// Whether PHP shows errors in pages (development only).
    pub display_errors: bool,
}

/// `[httpd]`: apache.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpdValues {
    /// The plain HTTP port httpd listens on inside the pod.
    pub port: u16,
    /// The container's CPU request, in millicores.
    pub cpu_millicores: u32,
    /// The container's memory request and limit, in MiB.
    pub memory_mb: u32,
}

/// `[tls]`: the TLS terminator.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsValues {
    /// The HTTPS port the pod exposes.
    pub port: u16,
    /// `"self-signed"` or `"secret:NAME"`.
    pub certificate: CertificateSource,
    /// Peers whose `X-Client-IP` the tls container believes: IP addresses or CIDR ranges (the
    /// pod network where the edge runs). From any other peer the header is replaced by the
    /// peer's address, so MediaWiki sees the real client only behind a trusted edge.
    pub trusted_proxies: Vec<String>,
    /// The container's CPU request, in millicores.
    pub cpu_millicores: u32,
    /// The container's memory request and limit, in MiB.
    pub memory_mb: u32,
}

/// `[mcrouter]`: the memcached router in the pod.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McrouterValues {
    /// The loopback port MediaWiki talks memcached to.
    pub port: u16,
    /// The container's CPU request, in millicores.
    pub cpu_millicores: u32,
    /// The container's memory request and limit, in MiB.
    pub memory_mb: u32,
}

/// `[memcached]`: the pools behind the router.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemcachedValues {
    /// Pools by datacenter name; the environment's datacenter is the local pool, the others are
    /// remote and receive replicated purges.
    pub pools: BTreeMap<String, PoolValues>,
    /// Servers that take a failed server's keys for a short time.
    pub gutter: Vec<String>,
    /// Seconds a value stored in the gutter lives.
    pub gutter_ttl_seconds: u32,
    /// Consecutive failures before a server is marked down.
    pub failures_until_down: u32,
    /// How long to wait for a memcached server, in milliseconds.
    pub timeout_ms: u32,
}

/// One memcached pool.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PoolValues {
    /// `host:port` of every server.
    pub servers: Vec<String>,
}

/// `[redis_proxy]`: the Redis proxy in the pod (crate `redis-proxy`), which MediaWiki reaches on
/// loopback as it reaches mcrouter.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisProxyValues {
    /// The loopback port of the sessions pool; each lock server takes the next ports, one
    /// each (`port + 1`, `port + 2`, ...).
    pub port: u16,
    /// The container's CPU request, in millicores.
    pub cpu_millicores: u32,
    /// The container's memory request and limit, in MiB.
    pub memory_mb: u32,
}

/// `[redis]`: the Redis servers behind the proxy. With no pool at all (the default) the cake has
/// no Redis proxy and MediaWiki keeps its sessions in memcached.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisValues {
    /// Pools by datacenter name. A pod uses its own datacenter's pool only: a session lives
    /// where its user is served, and declaring every datacenter's pool in one file lets each
    /// datacenter's environment pick its own, as `memcached.pools` does.
    pub pools: BTreeMap<String, RedisPoolValues>,
    /// Consecutive failures before the proxy marks a server down.
    pub failures_until_down: u32,
    /// How long the proxy waits for one request to a Redis server, in milliseconds; below
    /// phpredis's own read timeout (1 s in MediaWiki) so that MediaWiki hears the proxy's error.
    pub timeout_ms: u32,
}

/// One datacenter's Redis servers. The password they all require (`requirepass`) is the private
/// value `redis_password`, never a site value.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RedisPoolValues {
    /// `host:port` of every server that keeps sessions; keys are spread over them by the
    /// proxy's consistent hash.
    pub servers: Vec<String>,
    /// `host:port` of the servers that keep file locks (MediaWiki's `RedisLockManager`, which
    /// takes a quorum over them); empty: locks stay in the database. Each is a pool of one in
    /// the proxy, since the lock scripts touch keys they do not declare.
    #[serde(default)]
    pub lock_servers: Vec<String>,
}

impl RedisValues {
    /// The pool of `datacenter`, when the site keeps sessions in Redis there.
    pub fn pool(&self, datacenter: &str) -> Option<&RedisPoolValues> {
        self.pools.get(datacenter)
    }
}

/// `[images]`: image references of the cake's containers.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageValues {
    /// php-fpm with MediaWiki and the site's configuration.
    pub app: String,
    /// apache with MediaWiki's static files.
    pub webserver: String,
    /// The TLS terminator.
    pub tls: String,
    /// The memcached router.
    pub mcrouter: String,
    /// The Redis proxy.
    pub redis_proxy: String,
    /// Debian's redis-server, for environments that run their own.
    pub redis: String,
    /// memcached, for environments that run their own.
    pub memcached: String,
    /// MariaDB, for environments that run their own.
    pub mariadb: String,
    /// Swift (proxy, account, container and object servers), for environments that run
    /// their own.
    pub swift: String,
}

/// `[rollout]`: how a Deployment replaces its pods.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RolloutValues {
    /// maxSurge, in percent of replicas.
    pub max_surge_percent: u32,
    /// maxUnavailable, in percent of replicas.
    pub max_unavailable_percent: u32,
    /// progressDeadlineSeconds.
    pub progress_deadline_seconds: u32,
}

/// `[disruption]`: the PodDisruptionBudget.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DisruptionValues {
    /// maxUnavailable, in percent of replicas.
    pub max_unavailable_percent: u32,
}

/// `[lifecycle]`: how a pod stops, so that no request is cut when a rollout replaces it.
///
/// When Kubernetes stops a pod it removes it from the Service's endpoints (which takes a few
/// seconds to reach every node) and, at the same moment, runs every container's preStop hook; a
/// container gets SIGTERM when its own hook ends, and everything left gets SIGKILL at the grace
/// period. php-fpm and httpd stop at once on SIGTERM, killing the requests they serve, so they
/// must outlive the longest request the tls container may still have accepted: see
/// [`LifecycleValues::shutdown`].
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LifecycleValues {
    /// How long the tls container keeps taking requests after the pod is told to stop, while
    /// its removal from the endpoints spreads (its preStop sleep), in seconds.
    pub tls_pre_stop_seconds: u32,
    /// The preStop sleep of httpd and php-fpm, in seconds. Unset: derived from
    /// `php.request_timeout_seconds`; set, it must be at least that long (validated).
    #[serde(default)]
    pub pre_stop_seconds: Option<u32>,
    /// terminationGracePeriodSeconds. Unset: derived; set, it must cover the sequence.
    #[serde(default)]
    pub termination_grace_seconds: Option<u32>,
}

/// When each container of a pod stops, in seconds after Kubernetes tells the pod to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shutdown {
    /// tls stops taking new connections (SIGTERM after its preStop sleep).
    pub tls_pre_stop_seconds: u32,
    /// How long tls then waits for the requests in flight (its `drain_seconds`).
    pub tls_drain_seconds: u32,
    /// httpd and php-fpm get SIGTERM: every request tls accepted has finished or timed out.
    pub backend_pre_stop_seconds: u32,
    /// mcrouter gets SIGTERM, after php-fpm, which may still write to memcached as it ends.
    pub mcrouter_pre_stop_seconds: u32,
    /// SIGKILL for whatever is left.
    pub grace_seconds: u32,
}

impl LifecycleValues {
    /// Seconds between one stop and the next: a process's own exit after SIGTERM.
    pub const STEP_SECONDS: u32 = 2;

    /// The shortest preStop sleep of httpd and php-fpm that cuts no request: a request may
    /// arrive just before tls stops taking them and then run for the whole request timeout.
    pub fn minimum_backend_pre_stop(&self, request_timeout_seconds: u32) -> u32 {
        self.tls_pre_stop_seconds + request_timeout_seconds + Self::STEP_SECONDS
    }

    /// The stop sequence for a php-fpm request timeout: tls, then httpd and php-fpm once the
    /// longest request is over, then mcrouter, then the grace period. Set values are used as
    /// they are ([`crate::validate`] refuses ones that would cut requests).
    pub fn shutdown(&self, request_timeout_seconds: u32) -> Shutdown {
        let backend = self
            .pre_stop_seconds
            .unwrap_or_else(|| self.minimum_backend_pre_stop(request_timeout_seconds));
        let mcrouter = backend + Self::STEP_SECONDS;
        Shutdown {
            tls_pre_stop_seconds: self.tls_pre_stop_seconds,
            tls_drain_seconds: backend.saturating_sub(self.tls_pre_stop_seconds).max(1),
            backend_pre_stop_seconds: backend,
            mcrouter_pre_stop_seconds: mcrouter,
            grace_seconds: self
                .termination_grace_seconds
                .unwrap_or(mcrouter + Self::STEP_SECONDS),
        }
    }
}

/// `[service]`: the Service in front of a release.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceValues {
    /// The port the Service exposes (HTTPS, to the tls container).
    pub port: u16,
}

/// `[local]`: host ports of a release in a local environment (`wikikube up`). Kubernetes
/// environments ignore them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalValues {
    /// The host port for the tls container's HTTPS, or 0 to publish none.
    pub https_port: u16,
    /// The host port for httpd's plain HTTP, or 0 to publish none.
    pub http_port: u16,
}
