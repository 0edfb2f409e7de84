//! Maintenance scripts: the command line that runs one (the same on one machine and in a
//! cluster), and in a Kubernetes environment the `batch/v1` Job that runs it, one Job per run,
//! as Wikimedia's `mwscript-k8s` does.
//!
//! A Job's pod is the first deployment's main release cut down to what a script needs: the app
//! container (same image, environment, private values and PHP settings) running the script
//! instead of php-fpm, and mcrouter beside it as a native sidecar (an init container that keeps
//! running, Kubernetes 1.29+), because MediaWiki purges its caches through memcached and a
//! script that edits pages without it would leave stale pages behind. tls and httpd are left
//! out: a Job serves no requests.
//!
//! The pod mounts that release's own PHP and mcrouter ConfigMaps and the private values' Secret,
//! by their versioned names ([`crate::naming::versioned`]): a deploy creates every versioned
//! object in its first phase, before any pod template points at it, so the schema Jobs it runs
//! before the canaries already see the new settings, while the running main release keeps its
//! own versions until main's phase.
//!
//! This module builds values only: it does not create Jobs or wait for them (that is `deploy`),
//! and it does not pick the run's unique suffix or read the clock (the caller passes it).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    EmptyDirVolumeSource, PodSpec, PodTemplateSpec, ResourceRequirements, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use wikikube_model::{DatabaseEngine, ReleaseName, ResolvedSite, SettingValue};

use crate::config::paths::{code_dir, FARM_DIR, SECRETS_DIR};
use crate::pod::{mount, strings};

/// The name of the container that runs the script (the app container's).
pub const SCRIPT_CONTAINER: &str = "app";

/// Label: what kind of run a Job is ([`JobKind`]).
pub const KIND_LABEL: &str = "wikikube.org/maintenance";
/// Label: the wiki a Job runs for (its database name, made a label value).
pub const WIKI_LABEL: &str = "wikikube.org/wiki";
/// Label: the script a Job runs (its file name, made a label value).
pub const SCRIPT_LABEL: &str = "wikikube.org/script";
/// Label: who started the run (`$USER`, made a label value).
pub const USER_LABEL: &str = "wikikube.org/user";
/// Annotation: the whole command line, which labels cannot hold.
pub const COMMAND_ANNOTATION: &str = "wikikube.org/command";

/// How long a finished Job and its pod (with the output) stay by default: three days, as
/// Wikimedia keeps a maintenance run's output for days.
pub const DEFAULT_KEEP_SECONDS: u32 = 3 * 24 * 3600;

/// The administrator account the installer creates (the same as `wikikube up`'s).
pub const ADMIN_USER: &str = "Admin";
/// The private value with the administrator's password.
pub const ADMIN_PASSWORD: &str = "admin_password";

/// Asks a MariaDB server whether a wiki's database is installed. Arguments: `host:port`, user,
/// password file, database name. Exit status: 0 installed, 1 not installed, 2 server
/// unreachable, 3 access denied; the server's message on stderr, never the password.
pub const DATABASE_PROBE: &str = r#"mysqli_report(MYSQLI_REPORT_OFF);
[, $server, $user, $passfile, $db] = $argv;
[$host, $port] = array_pad(explode(':', $server, 2), 2, '3306');
$password = trim((string)@file_get_contents($passfile));
$link = @new mysqli($host, $user, $password, '', (int)$port);
if ($link->connect_errno) {
    fwrite(STDERR, $link->connect_error . "\n");
    exit(in_array($link->connect_errno, [1044, 1045, 1698], true) ? 3 : 2);
}
$table = $link->query(sprintf(
    "SELECT 1 FROM information_schema.tables WHERE table_schema = '%s' AND table_name = 'page'",
    $link->real_escape_string($db)
));
exit($table && $table->num_rows > 0 ? 0 : 1);
"#;

/// The installer Job's shell: install the wiki unless its tables exist (then only update it),
/// then run update.php through the farm's settings so extensions get their tables too.
/// Arguments: the probe, wiki, server, user, password file, then the installer's command line.
const INSTALL_SHELL: &str = r#"probe=$1 wiki=$2 server=$3 user=$4 passfile=$5; shift 5
status=0
php -r "$probe" -- "$server" "$user" "$passfile" "$wiki" || status=$?
case $status in
  0) echo "wikikube: $wiki has its tables already; updating instead of installing" ;;
  1) confpath="/tmp/install-$wiki"
     mkdir -p "$confpath"
     php "$@" --confpath="$confpath" || exit $? ;;
  3) echo "wikikube: the database server $server refused user $user (wrong password?)" >&2; exit 3 ;;
  *) echo "wikikube: cannot reach the database server $server" >&2; exit 2 ;;
esac
exec php "$FARM/multiversion/mwscript.php" "$wiki" maintenance/update.php --quick
"#;

/// One maintenance script run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptRequest {
    /// The wiki's database name (`enwiki`).
    pub wiki: String,
    /// The script: a path under the MediaWiki version's code (`maintenance/update.php`) or a
    /// bare name, which means one in `maintenance/` (`showSiteStats.php`).
    pub script: String,
    /// The script's own arguments.
    pub arguments: Vec<String>,
}

impl ScriptRequest {
    /// The script's path relative to the wiki's MediaWiki code.
    pub fn script_path(&self) -> String {
        if self.script.contains('/') {
            self.script.clone()
        } else {
            format!("maintenance/{}", self.script)
        }
    }

    /// The command line that runs it in an app container, the same locally and in a Job.
    pub fn command_line(&self) -> Vec<String> {
        let mut line = vec![
            "php".to_string(),
            format!("{FARM_DIR}/multiversion/mwscript.php"),
            self.wiki.clone(),
            self.script_path(),
        ];
        line.extend(self.arguments.iter().cloned());
        line
    }

    /// The schema update a deploy runs for a wiki whose code changed.
    pub fn update(wiki: &str) -> ScriptRequest {
        ScriptRequest {
            wiki: wiki.to_string(),
            script: "update.php".into(),
            arguments: vec!["--quick".into()],
        }
    }

    /// What runs after a SQL dump replaced a wiki's tables (locally and in a cluster's import
    /// Job): the schema brought to the wiki's version (the dump may be of an older MediaWiki),
    /// the caches of what the replaced tables held under the same IDs dropped
    /// ([`PURGE_REPLACED_CACHES`](crate::config::mediawiki::PURGE_REPLACED_CACHES)), then the
    /// [`rebuilds`](ScriptRequest::rebuilds).
    pub fn after_import(wiki: &str) -> Vec<ScriptRequest> {
        let mut requests = vec![
            ScriptRequest::update(wiki),
            ScriptRequest {
                wiki: wiki.to_string(),
                script: "maintenance/runScript.php".into(),
                arguments: vec![crate::config::mediawiki::PURGE_REPLACED_CACHES.into()],
            },
        ];
        requests.extend(ScriptRequest::rebuilds(wiki));
        requests
    }

    /// What MediaWiki derives from a wiki's pages, rebuilt after an import (locally and in a
    /// cluster's import Job): the site statistics, then the recent changes.
    pub fn rebuilds(wiki: &str) -> [ScriptRequest; 2] {
        [
            ScriptRequest {
                wiki: wiki.to_string(),
                script: "initSiteStats.php".into(),
                arguments: vec!["--update".into()],
            },
            ScriptRequest {
                wiki: wiki.to_string(),
                script: "rebuildrecentchanges.php".into(),
                arguments: Vec::new(),
            },
        ]
    }
}

/// What a maintenance Job is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// `wikikube script`: a person's run.
    Script,
    /// A deploy's `update.php --quick` for a wiki whose code changed.
    Update,
    /// A deploy's installer for a new wiki.
    Install,
    /// A backup of the wikis (`wikikube backup`, or the backup schedule).
    Backup,
    /// A restore of wikis from a backup on the backups claim (`wikikube restore`).
    Restore,
    /// An import of a wiki from another MediaWiki's dump (`wikikube import`).
    Import,
}

impl JobKind {
    /// The label value, also the Job name's prefix after `mw`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Script => "script",
            JobKind::Update => "update",
            JobKind::Install => "install",
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
            JobKind::Import => "import",
        }
    }
}

/// How a Job runs and how long it stays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSettings {
    /// Who runs it (`$USER`); made a label value.
    pub user: String,
    /// `activeDeadlineSeconds`: the run is stopped after this long; none: no limit.
    pub deadline_seconds: Option<u32>,
    /// `ttlSecondsAfterFinished`: how long the finished Job and its pod's output are kept.
    pub keep_seconds: u32,
}

impl Default for JobSettings {
    fn default() -> Self {
        JobSettings {
            user: "unknown".into(),
            deadline_seconds: None,
            keep_seconds: DEFAULT_KEEP_SECONDS,
        }
    }
}

/// What a deploy needs to know about one wiki's schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WikiSchema {
    /// A hash of everything that can change the wiki's schema: the app image, the wiki's
    /// MediaWiki version and its code, the farm's extensions and skins, and the farm's wiki
    /// list. A deploy runs update.php for a wiki whose fingerprint changed.
    pub fingerprint: String,
    /// The installer's command line for the wiki.
    pub install: Vec<String>,
}

/// The maintenance Job template of a Kubernetes environment: everything but the command.
#[derive(Clone, Debug, PartialEq)]
pub struct Maintenance {
    /// The deployment whose main release the pod is cut from.
    pub deployment: String,
    /// The site's namespace.
    pub namespace: String,
    /// The site's name, for the common labels.
    pub site: String,
    /// The pod, without the script's command.
    pub pod: PodSpec,
    /// Every wiki of the farm, by database name.
    pub wikis: BTreeMap<String, WikiSchema>,
}

/// The first deployment with an enabled main release: scripts run with its image and settings.
pub fn script_deployment(site: &ResolvedSite) -> Option<&wikikube_model::ResolvedDeployment> {
    site.deployments.iter().find(|deployment| {
        deployment
            .release(ReleaseName::Main)
            .is_some_and(|release| release.values.enabled)
    })
}

impl Maintenance {
    /// Cuts the template from the release Deployment `release` of `deployment` (its main).
    pub(crate) fn new(
        site: &ResolvedSite,
        deployment: &str,
        release: &k8s_openapi::api::apps::v1::Deployment,
    ) -> Option<Maintenance> {
        let template = release.spec.as_ref()?.template.spec.as_ref()?;
        let app = template
            .containers
            .iter()
            .find(|container| container.name == SCRIPT_CONTAINER)?;
        let mcrouter = template
            .containers
            .iter()
            .find(|container| container.name == "mcrouter");
        // The release's own volumes, by the names the cake gives them: the same versions of
        // its files and private values.
        let volume = |name: &str| {
            template
                .volumes
                .iter()
                .flatten()
                .find(|volume| volume.name == name)
                .cloned()
        };

        let mut script = app.clone();
        script.command = None;
        script.args = None;
        // php-fpm's socket check and drain make no sense for a script that runs to its end.
        script.liveness_probe = None;
        script.readiness_probe = None;
        script.lifecycle = None;
        script.ports = None;
        script.resources = Some(script_resources(app.resources.as_ref()));
        script.volume_mounts = Some(vec![
            mount("php-config", "/etc/wikikube/php"),
            mount("secrets", SECRETS_DIR),
            mount("tmp", "/tmp"),
        ]);
        let mut volumes = vec![
            Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
            volume("php-config")?,
            volume("secrets")?,
        ];
        let mut init_containers = Vec::new();
        if let Some(mcrouter) = mcrouter {
            let mut sidecar = mcrouter.clone();
            // A native sidecar: started before the script, stopped when it ends, so the Job
            // completes with the script.
            sidecar.restart_policy = Some("Always".into());
            sidecar.lifecycle = None;
            init_containers.push(sidecar);
            volumes.push(volume("mcrouter-config")?);
        }
        let pod = PodSpec {
            containers: vec![script],
            init_containers: (!init_containers.is_empty()).then_some(init_containers),
            volumes: Some(volumes),
            restart_policy: Some("Never".into()),
            service_account_name: template.service_account_name.clone(),
            automount_service_account_token: template.automount_service_account_token,
            security_context: template.security_context.clone(),
            termination_grace_period_seconds: template.termination_grace_period_seconds,
            ..PodSpec::default()
        };
        let app_image = app.image.clone().unwrap_or_default();
        let farm = farm_fingerprint(site);
        let wikis = site
            .spec
            .wikis
            .keys()
            .map(|dbname| {
                (
                    dbname.clone(),
                    WikiSchema {
                        fingerprint: fingerprint(site, &farm, &app_image, dbname),
                        install: install_command(site, dbname),
                    },
                )
            })
            .collect();
        Some(Maintenance {
            deployment: deployment.to_string(),
            namespace: site.spec.site.namespace.clone(),
            site: site.spec.site.name.clone(),
            pod,
            wikis,
        })
    }

    /// The Job that runs `request`. `id` makes its name unique (a few lowercase letters and
    /// digits: the caller's clock or counter).
    pub fn script_job(&self, request: &ScriptRequest, settings: &JobSettings, id: &str) -> Job {
        let script = request
            .script_path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        self.job(
            JobKind::Script,
            &request.wiki,
            &script,
            request.command_line(),
            settings,
            id,
        )
    }

    /// The deploy's `update.php --quick` Job for `wiki`.
    pub fn update_job(&self, wiki: &str, settings: &JobSettings, id: &str) -> Job {
        let request = ScriptRequest::update(wiki);
        self.job(
            JobKind::Update,
            wiki,
            "update.php",
            request.command_line(),
            settings,
            id,
        )
    }

    /// The deploy's installer Job for `wiki`, or `None` for a wiki the farm does not have.
    pub fn install_job(&self, wiki: &str, settings: &JobSettings, id: &str) -> Option<Job> {
        let command = self.wikis.get(wiki)?.install.clone();
        Some(self.job(JobKind::Install, wiki, "install.php", command, settings, id))
    }

    fn job(
        &self,
        kind: JobKind,
        wiki: &str,
        script: &str,
        command: Vec<String>,
        settings: &JobSettings,
        id: &str,
    ) -> Job {
        let mut labels = crate::labels::common(&self.site);
        labels.insert(KIND_LABEL.into(), kind.as_str().into());
        labels.insert(WIKI_LABEL.into(), label_value(wiki));
        labels.insert(SCRIPT_LABEL.into(), label_value(script));
        labels.insert(USER_LABEL.into(), label_value(&settings.user));
        let annotations = BTreeMap::from([(COMMAND_ANNOTATION.to_string(), command.join(" "))]);
        let mut pod = self.pod.clone();
        pod.containers[0].command = Some(command);
        Job {
            metadata: ObjectMeta {
                name: Some(job_name(kind, wiki, id)),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels.clone()),
                annotations: Some(annotations.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                // A maintenance script is not safe to run twice by itself: one try, and a
                // person (or the next deploy) decides.
                backoff_limit: Some(0),
                active_deadline_seconds: settings.deadline_seconds.map(i64::from),
                ttl_seconds_after_finished: Some(crate::pod::seconds(settings.keep_seconds)),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        annotations: Some(annotations),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(pod),
                },
                ..JobSpec::default()
            }),
            status: None,
        }
    }
}

/// `mw{kind}-{wiki}-{id}`, a valid DNS label of at most 52 characters: the Job controller
/// adds its pods' suffix (11 characters) and puts the Job's name in a 63-character label.
pub fn job_name(kind: JobKind, wiki: &str, id: &str) -> String {
    let wiki = label_value(wiki)
        .to_ascii_lowercase()
        .replace(['_', '.'], "-");
    let id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .take(12)
        .collect();
    let prefix = format!("mw{}-", kind.as_str());
    let room = 52 - prefix.len() - id.len() - 1;
    let wiki: String = wiki.chars().take(room).collect();
    let wiki = wiki.trim_matches('-');
    format!("{prefix}{wiki}-{id}")
}

/// `text` as a Kubernetes label value: letters, digits, `-`, `_` and `.`, at most 63
/// characters, beginning and ending with a letter or digit; `unknown` when nothing is left.
pub fn label_value(text: &str) -> String {
    let kept: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    let trimmed = kept.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if trimmed.is_empty() {
        "unknown".into()
    } else {
        trimmed.to_string()
    }
}

/// One PHP process: a core, and memory up to the release's app container's limit (a script
/// holds no pool of workers, but update.php on a big wiki may need as much as php-fpm does).
fn script_resources(app: Option<&ResourceRequirements>) -> ResourceRequirements {
    let limit = app
        .and_then(|resources| resources.limits.as_ref())
        .and_then(|limits| limits.get("memory"))
        .cloned()
        .unwrap_or_else(|| Quantity("2048Mi".into()));
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("1".into())),
            ("memory".to_string(), Quantity("512Mi".into())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), limit)])),
        ..ResourceRequirements::default()
    }
}

/// What every wiki's schema depends on besides its own version: the extensions, the skins and
/// the list of wikis, hashed once (hashing the list per wiki made a farm's render quadratic in
/// its wikis: 10,000 wikis took a minute).
fn farm_fingerprint(site: &ResolvedSite) -> [u8; 32] {
    let spec = &site.spec;
    let mut hasher = Sha256::new();
    for text in [
        spec.extensions.join(","),
        spec.skins.join(","),
        spec.wikis.keys().cloned().collect::<Vec<_>>().join(","),
    ] {
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    hasher.finalize().into()
}

fn fingerprint(site: &ResolvedSite, farm: &[u8; 32], app_image: &str, dbname: &str) -> String {
    let spec = &site.spec;
    let wiki = &spec.wikis[dbname];
    let mut hasher = Sha256::new();
    let mut part = |text: &[u8]| {
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text);
    };
    part(app_image.as_bytes());
    part(wiki.version.as_bytes());
    part(
        serde_json::to_string(&spec.versions.get(&wiki.version))
            .expect("specs serialize")
            .as_bytes(),
    );
    part(farm);
    hasher.finalize()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// MediaWiki's installer for one wiki, without `--confpath`: Debian's MediaWiki 1.39
/// `install.php` run from the wiki's version directly (the farm's entry point names the farm's
/// LocalSettings.php, and the installer refuses to run where settings exist), into the database
/// the release values name (MariaDB/MySQL, or SQLite files in `sqlite_dir` when chosen). The
/// same command installs a wiki of a local farm and of a cluster's schema Job.
pub fn installer(site: &ResolvedSite, dbname: &str, sqlite_dir: &str) -> Vec<String> {
    let wiki = &site.spec.wikis[dbname];
    let sitename = match wiki.settings.get("wgSitename") {
        Some(SettingValue::String(name)) => name.clone(),
        _ => dbname.to_string(),
    };
    let mut line = vec![
        "php".to_string(),
        format!("{}/maintenance/install.php", code_dir(&wiki.version)),
    ];
    match site.database() {
        Some(database) if database.engine == DatabaseEngine::Mysql => line.extend([
            "--dbtype=mysql".to_string(),
            format!("--dbserver={}", database.server_of(wiki.section.as_deref())),
            format!("--dbuser={}", database.user),
            format!(
                "--dbpassfile={SECRETS_DIR}/{}",
                wikikube_model::DATABASE_PASSWORD
            ),
        ]),
        _ => line.extend([
            "--dbtype=sqlite".to_string(),
            format!("--dbpath={sqlite_dir}"),
        ]),
    }
    line.extend([
        format!("--dbname={dbname}"),
        format!(
            "--server=https://{}",
            wiki.domains.first().map_or("localhost", String::as_str)
        ),
        "--scriptpath=/w".into(),
        format!("--lang={}", wiki.language),
        format!("--passfile={SECRETS_DIR}/{ADMIN_PASSWORD}"),
        format!("--skins={}", site.spec.skins.join(",")),
        sitename,
        ADMIN_USER.into(),
    ]);
    line
}

/// The schema Job's command for one wiki: [`installer`] guarded by a probe, so that a wiki
/// whose tables exist is only updated.
fn install_command(site: &ResolvedSite, dbname: &str) -> Vec<String> {
    let wiki = &site.spec.wikis[dbname];
    let (server, user) = match site.database() {
        Some(database) if database.engine == DatabaseEngine::Mysql => (
            database.server_of(wiki.section.as_deref()),
            database.user.clone(),
        ),
        // Validation refuses SQLite in a Kubernetes environment; the probe then fails loudly.
        _ => (String::new(), String::new()),
    };
    let mut line = strings(&["sh", "-c"]);
    line.push(INSTALL_SHELL.replace("$FARM", FARM_DIR));
    line.extend([
        "install".to_string(),
        DATABASE_PROBE.to_string(),
        dbname.to_string(),
        server,
        user,
        format!("{SECRETS_DIR}/{}", wikikube_model::DATABASE_PASSWORD),
    ]);
    // The shell runs `php "$@"`: the installer's arguments without its leading `php`.
    line.extend(installer(site, dbname, "").into_iter().skip(1));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_dns_labels_within_the_job_controllers_limit() {
        let name = job_name(JobKind::Script, "be_x_old.wiki", "K3Q9-ZZ");
        assert_eq!(name, "mwscript-be-x-old-wiki-k3q9zz");
        let long = job_name(JobKind::Install, &"x".repeat(200), "abcdefabcdefabcdef");
        assert!(long.len() <= 52, "{long}");
        assert!(wikikube_model::validate::is_dns_label(&long), "{long}");
    }

    #[test]
    fn label_values_keep_what_kubernetes_allows() {
        assert_eq!(label_value("jane.doe"), "jane.doe");
        assert_eq!(label_value("Jane Doe (ops)"), "Jane_Doe__ops");
        assert_eq!(label_value("  "), "unknown");
        assert_eq!(label_value(&"u".repeat(99)).len(), 63);
    }
}
