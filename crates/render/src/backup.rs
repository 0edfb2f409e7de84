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
//! A restore (`wikikube restore --env ENV --from NAME`) is a Job too, reading the same claim:
//! `check`, an init container from the app image, verifies every file of the chosen wikis
//! against the manifest ([`RESTORE_CHECK_PHP`]) before anything changes; then `app`, from the
//! MariaDB image, refuses a wiki with edits newer than the backup (unless forced) for all of
//! them first, then loads each dump into a scratch database and swaps its tables in with one
//! `RENAME TABLE`, and copies the media beside the live directory and renames it into place
//! ([`RESTORE_SHELL`]): the same steps, in the same order, as a local restore.
//!
//! An import (`wikikube import WIKI --env ENV --sql URL [--images URL]`) is a restore of a
//! backup the Job makes itself: `fetch`, from the app image, downloads the dump (plain or
//! gzip) and a tar of MediaWiki's `images/` directory into the claim as a backup of that one
//! wiki ([`IMPORT_FETCH_PHP`]), then the restore's `check` and load steps run on it (the load
//! refusing a wiki that already has pages unless forced), and `app`, from the app image again,
//! brings the schema to the wiki's MediaWiki version and rebuilds the site statistics and
//! recent changes, as a local import does. The imported backup stays on the claim, like any.
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
    self, JobKind, JobSettings, Maintenance, ScriptRequest, KIND_LABEL, SCRIPT_CONTAINER,
    SCRIPT_LABEL, USER_LABEL, WIKI_LABEL,
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

/// Where a restore's `check` step leaves the list of wikis to restore, each with the last edit
/// the backup holds (`wiki<TAB>timestamp`, `NULL` for none), for the `app` step.
pub const RESTORE_PLAN: &str = "/tmp/wikikube-restore-plan";

/// The restore's `check` step, in the app image's PHP. Arguments: the backups directory, the
/// backup's name, the plan file, then the wikis to restore (none: every wiki of the backup).
/// Exit 2, naming the file, when the backup is incomplete or a file does not match its size
/// and SHA-256 in the manifest.
pub const RESTORE_CHECK_PHP: &str = r#"[, $root, $name, $plan] = array_slice($argv, 0, 4);
$wikis = array_slice($argv, 4);
$dir = "$root/$name";
$refuse = function (string $why) { fwrite(STDERR, "wikikube: $why; nothing was restored\n"); exit(2); };
$manifest = json_decode((string)@file_get_contents("$dir/manifest.json"), true);
if (!is_array($manifest) || ($manifest['format'] ?? null) !== 1 || !is_array($manifest['wikis'] ?? null)) {
    $refuse("$dir has no manifest.json of format 1: not a complete backup");
}
if (!$wikis) {
    $wikis = array_keys($manifest['wikis']);
}
$lines = '';
foreach ($wikis as $wiki) {
    $part = $manifest['wikis'][$wiki] ?? null;
    if (!is_array($part)) {
        $refuse("backup $name has no wiki $wiki; it has " . implode(', ', array_keys($manifest['wikis'])));
    }
    foreach ($part['files'] as $file) {
        $relative = (string)$file['path'];
        if (!str_starts_with($relative, "$wiki/") || str_contains($relative, '..')) {
            $refuse("the manifest of $name lists $relative under $wiki");
        }
        $path = "$dir/$relative";
        if (!is_file($path)) {
            $refuse("$path is missing");
        }
        if (filesize($path) !== (int)$file['bytes'] || hash_file('sha256', $path) !== $file['sha256']) {
            $refuse("$path does not match its size and SHA-256 in the manifest: damaged");
        }
    }
    $lines .= $wiki . "\t" . ($part['latest_edit'] ?? 'NULL') . "\n";
    printf("%s: %d files match the manifest\n", $wiki, count($part['files']));
}
if (file_put_contents($plan, $lines) !== strlen($lines)) {
    $refuse("cannot write $plan");
}
"#;

/// The restore's `app` step, in the MariaDB image's shell. Arguments: the wikis' user, the
/// password file, `tls` or `plain`, `force`, `check` or `import`, then one `wiki@host:port` per
/// wiki of the site. It restores the wikis the plan lists: every newer-data check first (exit
/// 3; for `import`, a wiki with more than its installation's one revision), then
/// per wiki the dump into a scratch database (exit 4 with MariaDB's message when it does not
/// load, the wiki untouched), its ID counters raised above the live wiki's (no revision or text
/// ID is handed out twice, so caches keyed by them stay right), one `RENAME TABLE` swapping it
/// in, and the media when `$MEDIA` is set.
pub const RESTORE_SHELL: &str = r#"set -eu
user=$1 passfile=$2 tls=$3 force=$4; shift 4
servers="$*"
dir="$BACKUPS/$WIKIKUBE_BACKUP"
umask 077
options=/tmp/client.cnf
# The password goes to the client in an options file, never on a command line.
password=$(sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' "$passfile")
trap 'rm -f "$options"' EXIT
printf '[client]\nuser=%s\npassword="%s"\n' "$user" "$password" > "$options"
[ "$tls" = tls ] && printf 'ssl\n' >> "$options"
umask 022
at() {
  wiki=$1 server=
  for entry in $servers; do
    [ "${entry%%@*}" = "$wiki" ] && server=${entry#*@}
  done
  if [ -z "$server" ]; then
    echo "wikikube: the backup has $wiki, which the site does not; nothing was restored" >&2
    exit 2
  fi
  host=${server%:*} port=${server##*:}
}
sql() {
  mariadb --defaults-extra-file="$options" --host="$host" --port="$port" --batch \
    --skip-column-names "$@"
}
tab=$(printf '\t')
while IFS=$tab read -r wiki latest; do
  at "$wiki"
  [ "$force" = force ] && continue
  tables=$(sql -e "SELECT COUNT(*) FROM information_schema.tables
    WHERE table_schema = '$wiki' AND table_name = 'revision'")
  [ "$tables" = 1 ] || continue
  if [ "$force" = import ]; then
    # An import goes into a new wiki: the one revision its installation made, no more.
    revisions=$(sql -e "SELECT COUNT(*) FROM revision" "$wiki")
    if [ "$revisions" -gt 1 ]; then
      echo "wikikube: $wiki already has $revisions revisions: nothing was imported; --force replaces them" >&2
      exit 3
    fi
    continue
  fi
  newer=$(sql -e "SELECT COUNT(*), MAX(rev_timestamp) FROM revision
    WHERE '$latest' = 'NULL' OR rev_timestamp > '$latest'" "$wiki")
  if [ "${newer%%$tab*}" != 0 ]; then
    echo "wikikube: $wiki has an edit of ${newer#*$tab}, newer than the backup's last ($latest): nothing was restored; --force replaces it" >&2
    exit 3
  fi
done < "$PLAN"
while IFS=$tab read -r wiki latest; do
  at "$wiki"
  scratch="${wiki}__restore" replaced="${wiki}__replaced"
  echo "loading $wiki into $server"
  sql -e "DROP DATABASE IF EXISTS \`$scratch\`; CREATE DATABASE \`$scratch\`"
  if ! sql --default-character-set=binary "$scratch" < "$dir/$wiki/database.sql"; then
    sql -e "DROP DATABASE \`$scratch\`" || true
    echo "wikikube: the dump of $wiki does not load (MariaDB's message above); $wiki is as it was" >&2
    exit 4
  fi
  # IDs the wiki handed out since the backup must not be handed out again: caches keep what
  # they read by revision and text IDs. The restored tables' counters start above the live ones.
  for counter in $(sql -e "SELECT CONCAT(table_name, ':', auto_increment) FROM information_schema.tables
      WHERE table_schema = '$wiki' AND auto_increment IS NOT NULL"); do
    sql -e "ALTER TABLE IF EXISTS \`$scratch\`.\`${counter%%:*}\` AUTO_INCREMENT = ${counter##*:}"
  done
  renames=
  for table in $(sql -e "SELECT table_name FROM information_schema.tables WHERE table_schema = '$wiki'"); do
    renames="$renames, \`$wiki\`.\`$table\` TO \`$replaced\`.\`$table\`"
  done
  for table in $(sql -e "SELECT table_name FROM information_schema.tables WHERE table_schema = '$scratch'"); do
    renames="$renames, \`$scratch\`.\`$table\` TO \`$wiki\`.\`$table\`"
  done
  # One RENAME TABLE moves the live tables out and the restored ones in: MariaDB runs it
  # atomically, so a reader sees the old wiki or the restored one, never a mix.
  sql -e "CREATE DATABASE IF NOT EXISTS \`$wiki\`; DROP DATABASE IF EXISTS \`$replaced\`;
    CREATE DATABASE \`$replaced\`; ${renames:+RENAME TABLE ${renames#, };}
    DROP DATABASE \`$scratch\`; DROP DATABASE \`$replaced\`"
  files=0
  if [ -n "${MEDIA:-}" ]; then
    for part in public deleted; do
      live="$MEDIA/$part/$wiki"
      mkdir -p "$MEDIA/$part"
      rm -rf "$live.restore" "$live.replaced"
      if [ -d "$dir/$wiki/media/$part" ]; then
        cp -R "$dir/$wiki/media/$part" "$live.restore"
        files=$((files + $(find "$live.restore" -type f | wc -l)))
      else
        mkdir "$live.restore"
      fi
      [ -d "$live" ] && mv "$live" "$live.replaced"
      mv "$live.restore" "$live"
      rm -rf "$live.replaced"
    done
  fi
  revisions=$(sql -e "SELECT COUNT(*) FROM revision" "$wiki")
  echo "restored $wiki: $revisions revisions, $files media files"
done < "$PLAN"
"#;

/// The import's `fetch` step, in the app image's PHP (curl and phar). Arguments: the backups
/// directory, the backup's name, the site, the environment, the wiki, its MediaWiki version,
/// the dump's URL, then the images' URL or nothing. It writes a backup of that one wiki in the
/// format of `wikikube_backup::Manifest`: the dump as `WIKI/database.sql` (gunzipped when its
/// URL ends in `.gz`), the tar's files under `WIKI/media/public` (a tar holding one directory,
/// as `tar czf images.tar.gz images` makes, is taken from inside it), the manifest last. Exit
/// 2, naming the URL, when a download or the tar fails; nothing is left on the claim then.
pub const IMPORT_FETCH_PHP: &str = r#"[, $root, $name, $site, $environment, $wiki, $version, $sql] = array_slice($argv, 0, 8);
$images = $argv[8] ?? '';
$partial = "$root/.$name.partial";
$remove = function (string $dir) {
    if (!is_dir($dir)) {
        return;
    }
    $walk = new RecursiveIteratorIterator(
        new RecursiveDirectoryIterator($dir, FilesystemIterator::SKIP_DOTS),
        RecursiveIteratorIterator::CHILD_FIRST);
    foreach ($walk as $file) {
        $file->isDir() && !$file->isLink() ? rmdir($file->getPathname()) : unlink($file->getPathname());
    }
    rmdir($dir);
};
$refuse = function (string $why) use ($remove, $partial) {
    $remove($partial);
    fwrite(STDERR, "wikikube: $why; nothing was imported\n");
    exit(2);
};
$download = function (string $url, string $to) use ($refuse) {
    $out = fopen($to, 'wb');
    $curl = curl_init($url);
    curl_setopt_array($curl, [CURLOPT_FILE => $out, CURLOPT_FOLLOWLOCATION => true,
        CURLOPT_FAILONERROR => true, CURLOPT_CONNECTTIMEOUT => 30,
        CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
        CURLOPT_REDIR_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS]);
    $done = curl_exec($curl);
    $error = curl_error($curl);
    fclose($out);
    if (!$done) {
        $refuse("cannot download $url: $error");
    }
    printf("downloaded %s: %d bytes\n", $url, filesize($to));
};
$remove($partial);
mkdir("$partial/$wiki", 0755, true);
$dump = "$partial/$wiki/database.sql";
if (str_ends_with(parse_url($sql, PHP_URL_PATH) ?? '', '.gz')) {
    $download($sql, "$dump.gz");
    $in = gzopen("$dump.gz", 'rb');
    $out = fopen($dump, 'wb');
    while (!gzeof($in)) {
        $chunk = gzread($in, 1 << 20);
        if ($chunk === false) {
            $refuse("$sql is not gzip");
        }
        fwrite($out, $chunk);
    }
    gzclose($in);
    fclose($out);
    unlink("$dump.gz");
} else {
    $download($sql, $dump);
}
if ($images !== '') {
    $path = parse_url($images, PHP_URL_PATH) ?? '';
    $suffix = str_ends_with($path, '.tar.gz') || str_ends_with($path, '.tgz') ? '.tar.gz' : '.tar';
    $tar = "$partial/images$suffix";
    $download($images, $tar);
    $extracted = "$partial/images";
    try {
        (new PharData($tar))->extractTo($extracted);
    } catch (Exception $error) {
        $refuse("$images is not a tar of MediaWiki's images directory: " . $error->getMessage());
    }
    unlink($tar);
    $top = array_values(array_diff(scandir($extracted), ['.', '..']));
    $from = count($top) === 1 && is_dir("$extracted/$top[0]") ? "$extracted/$top[0]" : $extracted;
    mkdir("$partial/$wiki/media", 0755, true);
    rename($from, "$partial/$wiki/media/public");
    $remove($extracted);
}
$files = [];
$walk = new RecursiveIteratorIterator(
    new RecursiveDirectoryIterator("$partial/$wiki", FilesystemIterator::SKIP_DOTS));
foreach ($walk as $file) {
    if ($file->isFile()) {
        $path = substr($file->getPathname(), strlen($partial) + 1);
        $files[$path] = ['path' => $path, 'bytes' => $file->getSize(),
            'sha256' => hash_file('sha256', $file->getPathname())];
    }
}
ksort($files, SORT_STRING);
$manifest = ['format' => 1, 'site' => $site, 'environment' => $environment,
    'created_unix' => time(), 'wikis' => [$wiki => ['version' => $version,
    'latest_edit' => null, 'revisions' => 0, 'files' => array_values($files)]]];
$json = json_encode($manifest, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES) . "\n";
if (file_put_contents("$partial/manifest.json.partial", $json) !== strlen($json)
    || !rename("$partial/manifest.json.partial", "$partial/manifest.json")
    || !rename($partial, "$root/$name")) {
    $refuse("could not write the backup $name");
}
printf("%s: %d files ready to import as backup %s\n", $wiki, count($files), $name);
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
    /// The restore pod's fixed parts, as `pod` for a backup.
    restore_pod: PodSpec,
    /// The import pod's fixed parts: the maintenance template's pod with the restore's steps
    /// after a `fetch` step.
    import_pod: PodSpec,
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
        // Every step is one process with the same resources and the restricted security
        // context; the database steps run a shell script in the MariaDB image, the others in
        // the app image as the maintenance Job's script container does.
        let step = |name: &str, env: Vec<EnvVar>, mounts: Vec<VolumeMount>| Container {
            name: name.into(),
            image: app.image.clone(),
            image_pull_policy: app.image_pull_policy.clone(),
            env: Some(env),
            volume_mounts: Some(mounts),
            resources: Some(one_process.clone()),
            security_context: Some(restricted()),
            ..Container::default()
        };
        // `program` is the script's $0, which its messages start with.
        let database_step = |name: &str, script: &str, program: &str, env, mounts| Container {
            image: Some(values.images.mariadb.clone()),
            image_pull_policy: None,
            command: Some(strings(&["sh", "-c", script, program])),
            ..step(name, env, mounts)
        };
        // The pod of each Job: the steps, and the maintenance pod's identity and security.
        let job_pod = |steps_before: Vec<Container>, last: Container, volumes| PodSpec {
            init_containers: Some(steps_before),
            containers: vec![last],
            volumes: Some(volumes),
            restart_policy: Some("Never".into()),
            service_account_name: template.pod.service_account_name.clone(),
            automount_service_account_token: template.pod.automount_service_account_token,
            security_context: template.pod.security_context.clone(),
            ..PodSpec::default()
        };
        let dump = database_step(
            "dump",
            DUMP_SHELL,
            "dump",
            vec![
                name_from_job.clone(),
                variable("BACKUPS", BACKUPS_DIR),
                variable("MEDIA", MEDIA_DIR),
            ],
            dump_mounts,
        );
        let manifest = step(
            SCRIPT_CONTAINER,
            vec![name_from_job],
            vec![
                volume_mount("backups", BACKUPS_DIR, false),
                volume_mount("tmp", "/tmp", false),
            ],
        );
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
        let restore_pod = {
            let backup_name = variable(NAME_VARIABLE, "");
            let check = step(
                "check",
                vec![backup_name.clone()],
                vec![
                    volume_mount("backups", BACKUPS_DIR, true),
                    volume_mount("tmp", "/tmp", false),
                ],
            );
            let mut env = vec![
                backup_name,
                variable("BACKUPS", BACKUPS_DIR),
                variable("PLAN", RESTORE_PLAN),
            ];
            let mut mounts = vec![
                volume_mount("backups", BACKUPS_DIR, true),
                volume_mount("secrets", SECRETS_DIR, true),
                volume_mount("tmp", "/tmp", false),
            ];
            if with_media {
                env.push(variable("MEDIA", MEDIA_DIR));
                mounts.push(volume_mount("media", MEDIA_DIR, false));
            }
            let load = database_step(SCRIPT_CONTAINER, RESTORE_SHELL, "restore", env, mounts);
            let mut restore_volumes = volumes.clone();
            for volume in &mut restore_volumes {
                match (volume.name.as_str(), &mut volume.persistent_volume_claim) {
                    // A restore only reads the backups, and writes the media back.
                    ("backups", Some(claim)) => claim.read_only = Some(true),
                    ("media", Some(claim)) => claim.read_only = None,
                    _ => {}
                }
            }
            job_pod(vec![check], load, restore_volumes)
        };
        let import_pod = {
            let fetch = step(
                "fetch",
                vec![variable(NAME_VARIABLE, "")],
                vec![
                    volume_mount("backups", BACKUPS_DIR, false),
                    volume_mount("tmp", "/tmp", false),
                ],
            );
            let check = restore_pod.init_containers.as_ref()?[0].clone();
            let mut load = restore_pod.containers[0].clone();
            load.name = "load".into();
            // The maintenance pod (its app container, private values, PHP settings and cache
            // router) runs update.php and the rebuilds once the three steps have finished.
            let mut pod = template.pod.clone();
            pod.init_containers
                .get_or_insert_with(Vec::new)
                .extend([fetch, check, load]);
            let pod_volumes = pod.volumes.get_or_insert_with(Vec::new);
            pod_volumes.extend(
                volumes
                    .iter()
                    .filter(|volume| matches!(volume.name.as_str(), "backups" | "media"))
                    .cloned()
                    .map(|mut volume| {
                        if let Some(claim) = &mut volume.persistent_volume_claim {
                            // The fetch writes the backup; the load writes the media back.
                            claim.read_only = None;
                        }
                        volume
                    }),
            );
            pod
        };
        let pod = job_pod(vec![dump], manifest, volumes);
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
            restore_pod,
            import_pod,
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

    /// The Job that restores `wikis` (every wiki of the backup when empty) from the backup
    /// `backup` on the claim; `force` replaces wikis with edits newer than the backup. `id`
    /// makes its name unique. `backup` is a name in the claim's top directory, which the caller
    /// checks ([`valid_backup_name`]).
    pub fn restore_job(
        &self,
        backup: &str,
        wikis: &[String],
        force: bool,
        settings: &JobSettings,
        id: &str,
    ) -> Job {
        let wiki = match wikis {
            [one] => one.as_str(),
            _ => "all",
        };
        let mut labels = self.labels(wiki, &settings.user);
        labels.insert(KIND_LABEL.into(), JobKind::Restore.as_str().into());
        labels.insert(SCRIPT_LABEL.into(), "restore".into());
        let mut pod = self.restore_pod.clone();
        let set_name = |container: &mut Container| {
            for variable in container.env.iter_mut().flatten() {
                if variable.name == NAME_VARIABLE {
                    variable.value = Some(backup.to_string());
                }
            }
        };
        let check = &mut pod.init_containers.get_or_insert_with(Vec::new)[0];
        set_name(check);
        check.command = Some(check_command(backup, wikis));
        let load = &mut pod.containers[0];
        set_name(load);
        load.args = Some(self.load_arguments(if force { "force" } else { "check" }));
        self.one_try_job(
            maintenance::job_name(JobKind::Restore, wiki, id),
            labels,
            pod,
            settings,
        )
    }

    /// The Job that imports `wiki` from the dump at `sql` (an http or https URL the cluster
    /// can reach; gzip when it ends in `.gz`) and, when given, the tar of an `images/`
    /// directory at `images`; `force` replaces a wiki that already has pages. `id` makes its
    /// name unique; the name is also that of the backup it leaves on the claim. The caller
    /// checks that the wiki is the site's ([`Backups::wikis`]) and that the URLs are http(s).
    pub fn import_job(
        &self,
        wiki: &str,
        sql: &str,
        images: Option<&str>,
        force: bool,
        settings: &JobSettings,
        id: &str,
    ) -> Job {
        let name = maintenance::job_name(JobKind::Import, wiki, id);
        let mut labels = self.labels(wiki, &settings.user);
        labels.insert(KIND_LABEL.into(), JobKind::Import.as_str().into());
        labels.insert(SCRIPT_LABEL.into(), "import".into());
        let version = self
            .wikis
            .iter()
            .find(|entry| entry.wiki == wiki)
            .map(|entry| entry.version.clone())
            .unwrap_or_default();
        let mut pod = self.import_pod.clone();
        let init = pod.init_containers.get_or_insert_with(Vec::new);
        for container in init.iter_mut() {
            for variable in container.env.iter_mut().flatten() {
                if variable.name == NAME_VARIABLE {
                    variable.value = Some(name.clone());
                }
            }
            match container.name.as_str() {
                "fetch" => {
                    let mut command = strings(&["php", "-r", IMPORT_FETCH_PHP, "--", BACKUPS_DIR]);
                    command.extend([
                        name.clone(),
                        self.site.clone(),
                        self.environment.clone(),
                        wiki.to_string(),
                        version.clone(),
                        sql.to_string(),
                    ]);
                    command.extend(images.map(str::to_string));
                    container.command = Some(command);
                }
                "check" => {
                    container.command = Some(check_command(&name, &[wiki.to_string()]));
                }
                "load" => {
                    container.args =
                        Some(self.load_arguments(if force { "force" } else { "import" }));
                }
                _ => {}
            }
        }
        // The same three scripts as a local import, one after the other; each line is the
        // command a `wikikube script` Job would run, made of a wiki name (validated as a
        // database name) and fixed words, so joining them for sh needs no quoting.
        let scripts = ScriptRequest::after_import(wiki)
            .iter()
            .map(|request| request.command_line().join(" "))
            .collect::<Vec<_>>()
            .join(" && ");
        pod.containers[0].command = Some(strings(&["sh", "-c", &format!("set -e; {scripts}")]));
        self.one_try_job(name, labels, pod, settings)
    }

    /// The load step's arguments ([`RESTORE_SHELL`]): the database client's settings, `mode`
    /// (`force`, `check` or `import`), then every wiki of the site with its server.
    fn load_arguments(&self, mode: &str) -> Vec<String> {
        let mut args = self.dump_arguments.clone();
        args.push(mode.into());
        args.extend(
            self.wikis
                .iter()
                .map(|entry| format!("{}@{}", entry.wiki, entry.server)),
        );
        args
    }

    /// A restore's or import's Job: one try (one that failed is looked at by a person, never
    /// retried on its own), stopped at the settings' deadline.
    fn one_try_job(
        &self,
        name: String,
        labels: BTreeMap<String, String>,
        pod: PodSpec,
        settings: &JobSettings,
    ) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                backoff_limit: Some(0),
                active_deadline_seconds: settings.deadline_seconds.map(i64::from),
                ttl_seconds_after_finished: Some(crate::pod::seconds(settings.keep_seconds)),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(pod),
                },
                ..JobSpec::default()
            }),
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

/// The check step's command ([`RESTORE_CHECK_PHP`]) for the backup `backup` on the claim and
/// `wikis` (every wiki of the backup when empty).
fn check_command(backup: &str, wikis: &[String]) -> Vec<String> {
    let mut command = strings(&[
        "php",
        "-r",
        RESTORE_CHECK_PHP,
        "--",
        BACKUPS_DIR,
        backup,
        RESTORE_PLAN,
    ]);
    command.extend(wikis.iter().cloned());
    command
}

/// Whether `name` can be a backup's name on the claim: what backup Jobs name them (a Job's
/// name: lower-case letters, digits, `-` and `.`), never a path.
pub fn valid_backup_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}
