//! Backups in a Kubernetes environment: the claim they are kept on (`SITE-backups`), the Job
//! that takes one (`wikikube backup --env ENV`) and, when the site sets `[backup] schedule`, the
//! CronJob that takes one on that schedule. A backup has the layout and manifest of
//! `wikikube-backup`, the same as a local backup's, so a restore checks both the same way.
//!
//! The pod runs two programs, one after the other. `dump`, an init container from the
//! environment's MariaDB image, runs the real `mariadb-dump --single-transaction` (a consistent
//! snapshot while the wikis serve) for each wiki, counts its revisions and copies its media
//! into a partial directory; then `app`, the app image's PHP, hashes every file into the
//! manifest, writes the manifest last, renames the partial directory to the backup's name and
//! deletes the oldest backups beyond `keep`. A backup without a manifest is never restored
//! from. The backup's name is its Job's name, which the Job controller puts in a label that the
//! pod reads through the downward API, so every run of a CronJob gets its own.
//!
//! This module builds values only: it does not create Jobs or wait for them (that is
//! `deploy::jobs`, which follows the `app` container as it follows a maintenance script).

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, Job, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
    ResourceRequirements, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use wikikube_model::{BackupValues, DatabaseEngine, MediaStorage, ResolvedSite};

use crate::config::paths::{MEDIA_DIR, SECRETS_DIR};
use crate::maintenance::{
    self, JobKind, JobSettings, Maintenance, KIND_LABEL, SCRIPT_CONTAINER, SCRIPT_LABEL,
    USER_LABEL, WIKI_LABEL,
};
use crate::pod::{restricted, strings};

/// Where the backups' claim is mounted in a backup pod.
pub const BACKUPS_DIR: &str = "/srv/backups";

/// The environment variable that carries the backup's name (its Job's) into the pod.
const NAME_VARIABLE: &str = "WIKIKUBE_BACKUP";

/// The label the Job controller puts on a Job's pods (Kubernetes 1.27 and later).
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// The `dump` container's shell. Arguments: the wikis' user, the password file, `tls` or
/// `plain`, then one `wiki@host:port` per wiki. A wiki's media parts are copied when the media
/// volume is mounted.
pub const DUMP_SHELL: &str = r#"set -eu
user=$1 passfile=$2 tls=$3; shift 3
partial="$BACKUPS/.$WIKIKUBE_BACKUP.partial"
rm -rf "$partial"
mkdir -p "$partial"
umask 077
options=/tmp/client.cnf
# The password goes to the client in an options file, never on a command line.
password=$(sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' "$passfile")
trap 'rm -f "$options"' EXIT
printf '[client]\nuser=%s\npassword="%s"\n' "$user" "$password" > "$options"
[ "$tls" = tls ] && printf 'ssl\n' >> "$options"
umask 022
for entry in "$@"; do
  wiki=${entry%%@*} server=${entry#*@}
  host=${server%:*} port=${server##*:}
  echo "dumping $wiki from $server"
  mkdir -p "$partial/$wiki"
  mariadb-dump --defaults-extra-file="$options" --host="$host" --port="$port" \
    --single-transaction --quick --hex-blob --default-character-set=binary --skip-dump-date \
    "$wiki" > "$partial/$wiki/database.sql"
  tables=$(mariadb --defaults-extra-file="$options" --host="$host" --port="$port" --batch \
    --skip-column-names -e "SELECT COUNT(*) FROM information_schema.tables
      WHERE table_schema = '$wiki' AND table_name = 'revision'")
  if [ "$tables" = 1 ]; then
    mariadb --defaults-extra-file="$options" --host="$host" --port="$port" --batch \
      --skip-column-names -e "SELECT MAX(rev_timestamp), COUNT(*) FROM revision" "$wiki" \
      > "$partial/$wiki/.edits"
  else
    printf 'NULL\t0\n' > "$partial/$wiki/.edits"
  fi
  for part in public deleted; do
    if [ -d "$MEDIA/$part/$wiki" ]; then
      mkdir -p "$partial/$wiki/media"
      cp -R "$MEDIA/$part/$wiki" "$partial/$wiki/media/$part"
    fi
  done
done
"#;

/// The `app` container's PHP: the manifest of what `dump` wrote, then the backup put in place
/// and the oldest beyond `keep` deleted. Arguments: the backups directory, the backup's name,
/// the site, the environment, `keep`, then one `wiki=version` per wiki. It writes the format of
/// `wikikube_backup::Manifest` (format 1).
pub const MANIFEST_PHP: &str = r#"[, $root, $name, $site, $environment, $keep] = array_slice($argv, 0, 6);
$partial = "$root/.$name.partial";
$manifest = ['format' => 1, 'site' => $site, 'environment' => $environment,
    'created_unix' => time(), 'wikis' => []];
foreach (array_slice($argv, 6) as $entry) {
    [$wiki, $version] = explode('=', $entry, 2);
    $edits = explode("\t", trim((string)@file_get_contents("$partial/$wiki/.edits")));
    if (count($edits) !== 2) {
        fwrite(STDERR, "wikikube: the dump of $wiki left no revision count; not a backup\n");
        exit(1);
    }
    unlink("$partial/$wiki/.edits");
    $files = [];
    $walk = new RecursiveIteratorIterator(
        new RecursiveDirectoryIterator("$partial/$wiki", FilesystemIterator::SKIP_DOTS));
    foreach ($walk as $file) {
        if (!$file->isFile()) {
            continue;
        }
        $path = substr($file->getPathname(), strlen($partial) + 1);
        $files[$path] = ['path' => $path, 'bytes' => $file->getSize(),
            'sha256' => hash_file('sha256', $file->getPathname())];
    }
    ksort($files, SORT_STRING);
    $manifest['wikis'][$wiki] = ['version' => $version,
        'latest_edit' => $edits[0] === 'NULL' ? null : $edits[0],
        'revisions' => (int)$edits[1], 'files' => array_values($files)];
    $bytes = array_sum(array_column($files, 'bytes'));
    printf("%s: %d revisions, %d files, %d bytes\n", $wiki, $edits[1], count($files), $bytes);
}
$manifest['wikis'] = (object)$manifest['wikis'];
$json = json_encode($manifest, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n";
if (file_put_contents("$partial/manifest.json.partial", $json) !== strlen($json)
    || !rename("$partial/manifest.json.partial", "$partial/manifest.json")
    || !rename($partial, "$root/$name")) {
    fwrite(STDERR, "wikikube: could not write the manifest of $name\n");
    exit(1);
}
echo "backup $name complete in $root/$name\n";
// The newest $keep complete backups stay; a partial one of a run that died is removed a day on.
$complete = [];
foreach (scandir($root) as $entry) {
    $path = "$root/$entry";
    if ($entry === '.' || $entry === '..' || !is_dir($path)) {
        continue;
    }
    if (str_ends_with($entry, '.partial')) {
        if (filemtime($path) < time() - 86400) {
            $complete[] = [0, $entry];
        }
        continue;
    }
    $read = json_decode((string)@file_get_contents("$path/manifest.json"), true);
    if (is_array($read) && isset($read['created_unix'])) {
        $complete[] = [(int)$read['created_unix'], $entry];
    }
}
usort($complete, fn($a, $b) => $b[0] <=> $a[0] ?: strcmp($b[1], $a[1]));
$kept = 0;
foreach ($complete as [$created, $entry]) {
    if ($created > 0 && ++$kept <= (int)$keep) {
        continue;
    }
    $walk = new RecursiveIteratorIterator(
        new RecursiveDirectoryIterator("$root/$entry", FilesystemIterator::SKIP_DOTS),
        RecursiveIteratorIterator::CHILD_FIRST);
    foreach ($walk as $file) {
        $file->isDir() && !$file->isLink() ? rmdir($file->getPathname()) : unlink($file->getPathname());
    }
    rmdir("$root/$entry");
    echo "deleted the old backup $entry\n";
}
"#;

/// One wiki as a backup pod names it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct WikiEntry {
    wiki: String,
    /// `host:port` of its database server.
    server: String,
    /// The MediaWiki version it runs.
    version: String,
}

/// The backups of a Kubernetes environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Backups {
    namespace: String,
    site: String,
    environment: String,
    /// The backup pod's fixed parts: volumes, security, both containers without their wikis.
    pod: PodSpec,
    dump_arguments: Vec<String>,
    wikis: Vec<WikiEntry>,
    values: BackupValues,
}

impl Backups {
    /// The backups of `site`, from the maintenance template's pod (its service account,
    /// security, app image and private values), or `None` when the wikis' databases are not
    /// MariaDB/MySQL (a Kubernetes environment refuses SQLite anyway).
    pub(crate) fn new(site: &ResolvedSite, template: &Maintenance) -> Option<Backups> {
        let deployment = maintenance::script_deployment(site)?;
        let values = &deployment.releases.first()?.values;
        let database = site
            .database()
            .filter(|database| database.engine == DatabaseEngine::Mysql)?;
        let app = template
            .pod
            .containers
            .iter()
            .find(|container| container.name == SCRIPT_CONTAINER)?;
        let secrets = template
            .pod
            .volumes
            .iter()
            .flatten()
            .find(|volume| volume.name == "secrets")?
            .clone();
        let with_media = values.media.storage == MediaStorage::Volume;

        let name_from_job = EnvVar {
            name: NAME_VARIABLE.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: format!("metadata.labels['{JOB_NAME_LABEL}']"),
                    ..ObjectFieldSelector::default()
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        };
        let variable = |name: &str, value: &str| EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..EnvVar::default()
        };
        let volume_mount = |name: &str, path: &str, read_only: bool| VolumeMount {
            name: name.into(),
            mount_path: path.into(),
            read_only: Some(read_only),
            ..VolumeMount::default()
        };
        let mut dump_mounts = vec![
            volume_mount("backups", BACKUPS_DIR, false),
            volume_mount("secrets", SECRETS_DIR, true),
            volume_mount("tmp", "/tmp", false),
        ];
        if with_media {
            dump_mounts.push(volume_mount("media", MEDIA_DIR, true));
        }
        let one_process = ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("500m".into())),
                ("memory".to_string(), Quantity("256Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("1Gi".into()),
            )])),
            ..ResourceRequirements::default()
        };
        let dump = Container {
            name: "dump".into(),
            image: Some(values.images.mariadb.clone()),
            command: Some(strings(&["sh", "-c", DUMP_SHELL, "dump"])),
            env: Some(vec![
                name_from_job.clone(),
                variable("BACKUPS", BACKUPS_DIR),
                variable("MEDIA", MEDIA_DIR),
            ]),
            volume_mounts: Some(dump_mounts),
            resources: Some(one_process.clone()),
            security_context: Some(restricted()),
            ..Container::default()
        };
        let manifest = Container {
            name: SCRIPT_CONTAINER.into(),
            image: app.image.clone(),
            image_pull_policy: app.image_pull_policy.clone(),
            env: Some(vec![name_from_job]),
            volume_mounts: Some(vec![
                volume_mount("backups", BACKUPS_DIR, false),
                volume_mount("tmp", "/tmp", false),
            ]),
            resources: Some(one_process),
            security_context: Some(restricted()),
            ..Container::default()
        };
        let mut volumes = vec![
            Volume {
                name: "backups".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: crate::naming::backups(site),
                    ..PersistentVolumeClaimVolumeSource::default()
                }),
                ..Volume::default()
            },
            secrets,
            Volume {
                name: "tmp".into(),
                empty_dir: Some(Default::default()),
                ..Volume::default()
            },
        ];
        if with_media {
            volumes.push(Volume {
                name: "media".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: crate::naming::media(site),
                    read_only: Some(true),
                }),
                ..Volume::default()
            });
        }
        let pod = PodSpec {
            init_containers: Some(vec![dump]),
            containers: vec![manifest],
            volumes: Some(volumes),
            restart_policy: Some("Never".into()),
            service_account_name: template.pod.service_account_name.clone(),
            automount_service_account_token: template.pod.automount_service_account_token,
            security_context: template.pod.security_context.clone(),
            ..PodSpec::default()
        };
        let wikis = site
            .spec
            .wikis
            .iter()
            .map(|(wiki, spec)| WikiEntry {
                wiki: wiki.clone(),
                server: database.server_of(spec.section.as_deref()),
                version: spec.version.clone(),
            })
            .collect();
        Some(Backups {
            namespace: site.spec.site.namespace.clone(),
            site: site.spec.site.name.clone(),
            environment: site.environment_name.clone(),
            pod,
            dump_arguments: vec![
                database.user.clone(),
                format!("{SECRETS_DIR}/{}", wikikube_model::DATABASE_PASSWORD),
                if database.tls { "tls" } else { "plain" }.into(),
            ],
            wikis,
            values: values.backup.clone(),
        })
    }

    /// The site's backup settings.
    pub fn values(&self) -> &BackupValues {
        &self.values
    }

    /// The wikis a backup covers, by database name.
    pub fn wikis(&self) -> impl Iterator<Item = &str> {
        self.wikis.iter().map(|entry| entry.wiki.as_str())
    }

    /// The pod that backs up `wikis` (every wiki when empty; names the site does not have are
    /// left out: the caller checks them first).
    fn pod(&self, wikis: &[String]) -> PodSpec {
        let chosen: Vec<&WikiEntry> = self
            .wikis
            .iter()
            .filter(|entry| wikis.is_empty() || wikis.contains(&entry.wiki))
            .collect();
        let mut pod = self.pod.clone();
        let dump = &mut pod.init_containers.get_or_insert_with(Vec::new)[0];
        let mut dump_args = self.dump_arguments.clone();
        dump_args.extend(
            chosen
                .iter()
                .map(|entry| format!("{}@{}", entry.wiki, entry.server)),
        );
        dump.args = Some(dump_args);
        let mut command = strings(&["php", "-r", MANIFEST_PHP, "--", BACKUPS_DIR]);
        command.push(format!("$({NAME_VARIABLE})"));
        command.extend([
            self.site.clone(),
            self.environment.clone(),
            self.values.keep.to_string(),
        ]);
        command.extend(
            chosen
                .iter()
                .map(|entry| format!("{}={}", entry.wiki, entry.version)),
        );
        pod.containers[0].command = Some(command);
        pod
    }

    fn labels(&self, wiki: &str, user: &str) -> BTreeMap<String, String> {
        let mut labels = crate::labels::common(&self.site);
        labels.insert(KIND_LABEL.into(), JobKind::Backup.as_str().into());
        labels.insert(WIKI_LABEL.into(), maintenance::label_value(wiki));
        labels.insert(SCRIPT_LABEL.into(), "backup".into());
        labels.insert(USER_LABEL.into(), maintenance::label_value(user));
        labels
    }

    fn job_spec(
        &self,
        wikis: &[String],
        labels: BTreeMap<String, String>,
        keep_seconds: u32,
    ) -> JobSpec {
        JobSpec {
            // A dump that failed halfway is taken again by a person or the next schedule, not
            // retried at once against a database that may be the reason.
            backoff_limit: Some(0),
            ttl_seconds_after_finished: Some(crate::pod::seconds(keep_seconds)),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(self.pod(wikis)),
            },
            ..JobSpec::default()
        }
    }

    /// The Job that takes one backup of `wikis` (every wiki when empty). `id` makes its name,
    /// which is also the backup's, unique.
    pub fn job(&self, wikis: &[String], settings: &JobSettings, id: &str) -> Job {
        let wiki = match wikis {
            [one] => one.as_str(),
            _ => "all",
        };
        let labels = self.labels(wiki, &settings.user);
        let mut spec = self.job_spec(wikis, labels.clone(), settings.keep_seconds);
        spec.active_deadline_seconds = settings.deadline_seconds.map(i64::from);
        Job {
            metadata: ObjectMeta {
                name: Some(maintenance::job_name(JobKind::Backup, wiki, id)),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    /// The CronJob that takes a backup of every wiki on `schedule` (cron's five fields, UTC).
    pub fn cron_job(&self, schedule: &str) -> CronJob {
        let labels = self.labels("all", "schedule");
        CronJob {
            metadata: ObjectMeta {
                name: Some(crate::naming::backup_schedule(&self.site)),
                namespace: Some(self.namespace.clone()),
                labels: Some(crate::labels::common(&self.site)),
                ..ObjectMeta::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.to_string(),
                time_zone: Some("Etc/UTC".into()),
                // Two dumps at once would only slow each other and the wikis down.
                concurrency_policy: Some("Forbid".into()),
                // A run missed by more than an hour (the controller was down) waits for the
                // next one rather than starting at a busy time.
                starting_deadline_seconds: Some(3600),
                successful_jobs_history_limit: Some(3),
                failed_jobs_history_limit: Some(3),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels.clone()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(self.job_spec(&[], labels, maintenance::DEFAULT_KEEP_SECONDS)),
                },
                ..CronJobSpec::default()
            }),
            status: None,
        }
    }

    /// The claim the backups are kept on. ReadWriteOnce: one backup Job writes at a time.
    pub fn claim(&self, site: &ResolvedSite) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(crate::naming::backups(site)),
                namespace: Some(self.namespace.clone()),
                labels: Some(crate::labels::common(&self.site)),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: (!self.values.storage_class.is_empty())
                    .then(|| self.values.storage_class.clone()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_string(),
                        Quantity(format!("{}Gi", self.values.size_gib)),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        }
    }
}
