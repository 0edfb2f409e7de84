//! The backups of a Kubernetes environment: the Job and CronJob a render makes, and the
//! manifest step they run, in the real PHP (Debian's php8.2-cli) on a backup directory laid out
//! as the `dump` step leaves it, read back and checked by `wikikube-backup` as a restore does.
//! The restore Job too, and its `check` step in the real PHP on a backup the manifest step
//! wrote. The `dump` and restore `app` steps (mariadb-dump, mariadb) run against a real MariaDB
//! in the local farm's end to end test (crates/local/tests/farm.rs).

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use wikikube_render::backup::{BACKUPS_DIR, MANIFEST_PHP, RESTORE_CHECK_PHP};
use wikikube_render::maintenance::JobSettings;
use wikikube_render::Object;

fn rendered(environment: &str) -> wikikube_render::Rendered {
    let site = common::load(environment);
    wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap()
}

#[test]
fn a_backup_job_dumps_every_wiki_from_its_section_then_writes_the_manifest_in_the_app_image() {
    let rendered = rendered("eqiad");
    let backups = rendered.backups.as_ref().expect("eqiad has MariaDB");
    let settings = JobSettings {
        user: "jane".into(),
        deadline_seconds: Some(7200),
        keep_seconds: 600,
    };
    let job = backups.job(&[], &settings, "run1");
    assert_eq!(job.metadata.name.as_deref(), Some("mwbackup-all-run1"));
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(7200));
    let pod = spec.template.spec.as_ref().unwrap();
    let dump = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(
        dump.image.as_deref(),
        Some("registry.farm.test/wikikube/base-mariadb:2026-11-25")
    );
    let args = dump.args.as_ref().unwrap();
    // enwiki is in its own section (s1) in the example; the others on the default server.
    assert!(
        args.contains(&"enwiki@db1100.eqiad.farm.test:3306".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"dewiki@db1001.eqiad.farm.test:3306".to_string()),
        "{args:?}"
    );
    assert_eq!(args[2], "tls");
    let app = &pod.containers[0];
    assert_eq!(app.name, "app");
    assert_eq!(
        app.image.as_deref(),
        Some("registry.farm.test/wikikube/app:2026-11-25")
    );
    let command = app.command.as_ref().unwrap();
    assert!(command.contains(&"$(WIKIKUBE_BACKUP)".to_string()));
    assert!(
        command.contains(&"dewiki=1.39.17-wmf.2".to_string()),
        "{command:?}"
    );
    // The password only ever as a mounted file; the media read-only.
    let yaml = serde_yaml_ng::to_string(&job).unwrap();
    assert!(!yaml.contains("eqiad-database-password"), "{yaml}");
    let media = dump
        .volume_mounts
        .iter()
        .flatten()
        .find(|mount| mount.name == "media")
        .expect("the media volume");
    assert_eq!(media.read_only, Some(true));

    let one = backups.job(&["dewiki".into()], &settings, "run2");
    assert_eq!(one.metadata.name.as_deref(), Some("mwbackup-dewiki-run2"));
    let pod = one.spec.unwrap().template.spec.unwrap();
    let args = pod.init_containers.unwrap()[0].args.clone().unwrap();
    assert_eq!(args.len(), 4, "{args:?}");
}

#[test]
fn a_schedule_renders_a_cronjob_and_no_schedule_none() {
    let rendered = rendered("eqiad");
    let cron = rendered
        .shared
        .iter()
        .find_map(|object| match object {
            Object::CronJob(cron) => Some(cron),
            _ => None,
        })
        .expect("production sets [backup] schedule");
    let spec = cron.spec.as_ref().unwrap();
    assert_eq!(spec.schedule, "17 3 * * *");
    assert_eq!(spec.concurrency_policy.as_deref(), Some("Forbid"));
    assert!(rendered.shared.iter().any(|object| matches!(object,
        Object::PersistentVolumeClaim(claim) if claim.metadata.name.as_deref() == Some("farm-backups"))));

    let local = wikikube_render::render(
        &common::load("local"),
        &wikikube_render::RenderOptions::default(),
    )
    .unwrap();
    assert!(local.backups.is_none());
    assert!(!local
        .shared
        .iter()
        .any(|object| matches!(object, Object::CronJob(_))));
}

/// A backup directory as the `dump` step leaves it: each wiki's dump, revision count and media
/// in `.NAME.partial`.
fn dumped(root: &Path, name: &str) {
    let partial = root.join(format!(".{name}.partial"));
    let enwiki = partial.join("enwiki");
    fs::create_dir_all(enwiki.join("media/public/a/ab")).unwrap();
    fs::write(
        enwiki.join("database.sql"),
        "CREATE TABLE page (page_id int);\n",
    )
    .unwrap();
    fs::write(enwiki.join(".edits"), "20261201051500\t42\n").unwrap();
    fs::write(
        enwiki.join("media/public/a/ab/Ünïcode file (1).png"),
        [0x89, b'P', b'N', b'G', 0, 1, 2],
    )
    .unwrap();
    let dewiki = partial.join("dewiki");
    fs::create_dir_all(&dewiki).unwrap();
    fs::write(dewiki.join("database.sql"), "").unwrap();
    fs::write(dewiki.join(".edits"), "NULL\t0\n").unwrap();
}

fn manifest_step(root: &Path, name: &str, keep: u32) -> std::process::Output {
    let output = Command::new("php")
        .args(["-r", MANIFEST_PHP, "--"])
        .arg(root)
        .args([name, "farm", "eqiad", &keep.to_string()])
        .args(["enwiki=1.39.17-wmf.1", "dewiki=1.39.17-wmf.2"])
        .output()
        .expect("php8.2-cli (scripts/install-packages installs it)");
    output
}

fn old_backup(root: &Path, name: &str, created: u64) {
    let dir = root.join(name);
    fs::create_dir_all(dir.join("enwiki")).unwrap();
    fs::write(
        dir.join("manifest.json"),
        format!(
            r#"{{"format":1,"site":"farm","environment":"eqiad","created_unix":{created},"wikis":{{}}}}"#
        ),
    )
    .unwrap();
}

#[test]
fn the_manifest_step_writes_what_a_restore_checks_and_keeps_the_newest_backups() {
    assert_eq!(BACKUPS_DIR, "/srv/backups");
    let root = tempfile::tempdir().unwrap();
    old_backup(root.path(), "farm-backup-1", 1_000);
    old_backup(root.path(), "farm-backup-2", 2_000);
    dumped(root.path(), "mwbackup-all-run1");

    let output = manifest_step(root.path(), "mwbackup-all-run1", 2);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = root.path().join("mwbackup-all-run1");
    let manifest = wikikube_backup::Manifest::read(&dir).unwrap();
    assert_eq!(
        (manifest.site.as_str(), manifest.environment.as_str()),
        ("farm", "eqiad")
    );
    let enwiki = manifest.wiki("enwiki").unwrap();
    assert_eq!(enwiki.revisions, 42);
    assert_eq!(enwiki.latest_edit.as_deref(), Some("20261201051500"));
    assert_eq!(enwiki.version, "1.39.17-wmf.1");
    assert_eq!(enwiki.files.len(), 2, "{:?}", enwiki.files);
    assert!(enwiki.files.iter().any(|file| file.path
        == "enwiki/media/public/a/ab/Ünïcode file (1).png"
        && file.bytes == 7));
    let dewiki = manifest.wiki("dewiki").unwrap();
    assert_eq!((dewiki.latest_edit.as_ref(), dewiki.revisions), (None, 0));
    manifest.verify(&dir, "enwiki").unwrap();
    manifest.verify(&dir, "dewiki").unwrap();
    assert!(!dir.join("enwiki/.edits").exists());
    assert!(!root.path().join(".mwbackup-all-run1.partial").exists());
    // keep = 2: the newest two stay, the oldest goes.
    assert!(root.path().join("farm-backup-2").exists());
    assert!(!root.path().join("farm-backup-1").exists(), "{stdout}");
    assert!(
        stdout.contains("deleted the old backup farm-backup-1"),
        "{stdout}"
    );

    // A damaged file is what a restore refuses, by its hash.
    fs::write(dir.join("enwiki/database.sql"), "DROP TABLE page;\n").unwrap();
    assert!(manifest.verify(&dir, "enwiki").is_err());
}

#[test]
fn a_dump_that_left_no_revision_count_is_not_made_a_backup() {
    let root = tempfile::tempdir().unwrap();
    dumped(root.path(), "mwbackup-all-run2");
    fs::remove_file(root.path().join(".mwbackup-all-run2.partial/dewiki/.edits")).unwrap();
    let output = manifest_step(root.path(), "mwbackup-all-run2", 7);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("dewiki left no revision count"));
    assert!(!root.path().join("mwbackup-all-run2").exists());
}

#[test]
fn a_restore_job_checks_the_backup_in_the_app_image_then_loads_it_in_the_mariadb_image() {
    let rendered = rendered("eqiad");
    let backups = rendered.backups.as_ref().expect("eqiad has MariaDB");
    let settings = JobSettings {
        user: "jane".into(),
        deadline_seconds: Some(3600),
        keep_seconds: 600,
    };
    let job = backups.restore_job(
        "mwbackup-all-run1",
        &["enwiki".into()],
        false,
        &settings,
        "r1",
    );
    assert_eq!(job.metadata.name.as_deref(), Some("mwrestore-enwiki-r1"));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[wikikube_render::maintenance::KIND_LABEL], "restore");
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(3600));
    let pod = spec.template.spec.as_ref().unwrap();
    let check = &pod.init_containers.as_ref().unwrap()[0];
    assert_eq!(check.name, "check");
    assert_eq!(
        check.image.as_deref(),
        Some("registry.farm.test/wikikube/app:2026-11-25")
    );
    let command = check.command.as_ref().unwrap();
    assert_eq!(
        command[4..],
        [
            "/srv/backups",
            "mwbackup-all-run1",
            "/tmp/wikikube-restore-plan",
            "enwiki"
        ]
    );
    let load = &pod.containers[0];
    assert_eq!(load.name, "app", "the container wikikube follows");
    assert_eq!(
        load.image.as_deref(),
        Some("registry.farm.test/wikikube/base-mariadb:2026-11-25")
    );
    let args = load.args.as_ref().unwrap();
    assert_eq!(args[2..4], ["tls", "check"]);
    assert!(
        args.contains(&"enwiki@db1100.eqiad.farm.test:3306".to_string()),
        "{args:?}"
    );
    let env = |container: &k8s_openapi::api::core::v1::Container, name: &str| {
        container
            .env
            .iter()
            .flatten()
            .find(|variable| variable.name == name)
            .and_then(|variable| variable.value.clone())
    };
    assert_eq!(
        env(load, "WIKIKUBE_BACKUP").as_deref(),
        Some("mwbackup-all-run1")
    );
    assert_eq!(
        env(check, "WIKIKUBE_BACKUP").as_deref(),
        Some("mwbackup-all-run1")
    );
    // The backups only read; the media written back; the password only as a mounted file.
    let volume = |name: &str| {
        pod.volumes
            .iter()
            .flatten()
            .find(|volume| volume.name == name)
            .and_then(|volume| volume.persistent_volume_claim.clone())
            .unwrap()
    };
    assert_eq!(volume("backups").read_only, Some(true));
    assert_ne!(volume("media").read_only, Some(true));
    let mount = |name: &str| {
        load.volume_mounts
            .iter()
            .flatten()
            .find(|mount| mount.name == name)
            .unwrap()
            .read_only
    };
    assert_eq!(mount("backups"), Some(true));
    assert_eq!(mount("media"), Some(false));
    let yaml = serde_yaml_ng::to_string(&job).unwrap();
    assert!(!yaml.contains("eqiad-database-password"), "{yaml}");

    let forced = backups.restore_job("mwbackup-all-run1", &[], true, &settings, "r2");
    assert_eq!(forced.metadata.name.as_deref(), Some("mwrestore-all-r2"));
    let pod = forced.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers[0].args.as_ref().unwrap()[3], "force");
    assert_eq!(
        pod.init_containers.unwrap()[0]
            .command
            .as_ref()
            .unwrap()
            .len(),
        7,
        "no wiki named: every wiki of the backup"
    );
    // The backup's Job keeps writing to the same claim as before.
    let backup = backups.job(&[], &settings, "run3");
    let pod = backup.spec.unwrap().template.spec.unwrap();
    let claim = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "backups")
        .unwrap();
    assert_ne!(
        claim.persistent_volume_claim.as_ref().unwrap().read_only,
        Some(true)
    );
}

fn check_step(root: &Path, name: &str, plan: &Path, wikis: &[&str]) -> std::process::Output {
    Command::new("php")
        .args(["-r", RESTORE_CHECK_PHP, "--"])
        .arg(root)
        .arg(name)
        .arg(plan)
        .args(wikis)
        .output()
        .expect("php8.2-cli (scripts/install-packages installs it)")
}

#[test]
fn the_restore_check_step_plans_a_sound_backup_and_refuses_a_damaged_one_by_name() {
    let root = tempfile::tempdir().unwrap();
    dumped(root.path(), "mwbackup-all-run1");
    assert!(manifest_step(root.path(), "mwbackup-all-run1", 7)
        .status
        .success());
    let plan = root.path().join("plan");

    let output = check_step(root.path(), "mwbackup-all-run1", &plan, &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let planned = fs::read_to_string(&plan).unwrap();
    let mut lines: Vec<&str> = planned.lines().collect();
    lines.sort();
    assert_eq!(lines, ["dewiki\tNULL", "enwiki\t20261201051500"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("enwiki: 2 files match the manifest"),
        "{stdout}"
    );

    let output = check_step(root.path(), "mwbackup-all-run1", &plan, &["frwiki"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("backup mwbackup-all-run1 has no wiki frwiki; it has"),
        "{stderr}"
    );

    let output = check_step(root.path(), "no-such-backup", &plan, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no manifest.json"));

    // One flipped byte in a media file: refused by its hash, naming the file.
    fs::remove_file(&plan).unwrap();
    let media = root
        .path()
        .join("mwbackup-all-run1/enwiki/media/public/a/ab/Ünïcode file (1).png");
    let mut bytes = fs::read(&media).unwrap();
    bytes[3] ^= 1;
    fs::write(&media, bytes).unwrap();
    let output = check_step(root.path(), "mwbackup-all-run1", &plan, &["enwiki"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Ünïcode file (1).png does not match its size and SHA-256"),
        "{stderr}"
    );
    assert!(!plan.exists(), "no plan, so the load step restores nothing");
}

#[test]
fn an_import_job_fetches_checks_and_loads_then_runs_the_scripts_in_the_maintenance_pod() {
    let rendered = rendered("eqiad");
    let backups = rendered.backups.as_ref().expect("eqiad has MariaDB");
    let settings = JobSettings {
        user: "jane".into(),
        deadline_seconds: Some(3600),
        keep_seconds: 600,
    };
    let sql = "https://dumps.example.org/dewiki.sql.gz";
    let images = "https://dumps.example.org/dewiki-images.tar.gz";
    let job = backups.import_job("dewiki", sql, Some(images), false, &settings, "i1");
    assert_eq!(job.metadata.name.as_deref(), Some("mwimport-dewiki-i1"));
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[wikikube_render::maintenance::KIND_LABEL], "import");
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(
        (spec.backoff_limit, spec.active_deadline_seconds),
        (Some(0), Some(3600))
    );
    let pod = spec.template.spec.as_ref().unwrap();
    let init = pod.init_containers.as_ref().unwrap();
    let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
    // The cache router starts first as a native sidecar (the scripts use it), then the three
    // steps in order.
    assert_eq!(names, ["mcrouter", "fetch", "check", "load"]);
    let name_of = |container: &k8s_openapi::api::core::v1::Container| {
        container
            .env
            .iter()
            .flatten()
            .find(|variable| variable.name == "WIKIKUBE_BACKUP")
            .and_then(|variable| variable.value.clone())
    };
    let fetch = &init[1];
    assert_eq!(
        fetch.image.as_deref(),
        Some("registry.farm.test/wikikube/app:2026-11-25")
    );
    assert_eq!(name_of(fetch).as_deref(), Some("mwimport-dewiki-i1"));
    let command = fetch.command.as_ref().unwrap();
    assert_eq!(
        command[5..],
        [
            "mwimport-dewiki-i1",
            "farm",
            "eqiad",
            "dewiki",
            "1.39.17-wmf.2",
            sql,
            images
        ]
    );
    let check = &init[2];
    assert_eq!(name_of(check).as_deref(), Some("mwimport-dewiki-i1"));
    assert_eq!(
        check.command.as_ref().unwrap()[5..],
        [
            "mwimport-dewiki-i1",
            wikikube_render::backup::RESTORE_PLAN,
            "dewiki"
        ]
    );
    let load = &init[3];
    assert_eq!(
        load.image.as_deref(),
        Some("registry.farm.test/wikikube/base-mariadb:2026-11-25")
    );
    assert_eq!(load.args.as_ref().unwrap()[3], "import");
    assert!(load
        .volume_mounts
        .iter()
        .flatten()
        .any(|mount| mount.name == "media" && mount.read_only == Some(false)));
    let app = &pod.containers[0];
    assert_eq!(app.name, "app");
    let script = app.command.as_ref().unwrap().join(" ");
    for step in [
        "dewiki maintenance/update.php --quick",
        "dewiki maintenance/initSiteStats.php --update",
        "dewiki maintenance/rebuildrecentchanges.php",
    ] {
        assert!(script.contains(step), "{script}");
    }
    // The fetch writes the backup onto the claim, and the load writes the media back.
    for volume in ["backups", "media"] {
        let claim = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == volume)
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .unwrap_or_else(|| panic!("no {volume} claim"));
        assert_ne!(claim.read_only, Some(true), "{volume}");
    }
    let forced = backups.import_job("dewiki", sql, None, true, &settings, "i2");
    let pod = forced.spec.unwrap().template.spec.unwrap();
    let init = pod.init_containers.unwrap();
    assert_eq!(init[3].args.as_ref().unwrap()[3], "force");
    assert_eq!(init[1].command.as_ref().unwrap().len(), 11, "no images URL");
}

/// A directory served over HTTP on loopback by Python's http.server (the cluster's web server
/// or object store in this test), stopped when dropped.
struct Served {
    child: std::process::Child,
    port: u16,
}

impl Served {
    fn start(dir: &Path) -> Served {
        let port = wikikube_test_support::free_port();
        let mut child = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3");
        wikikube_test_support::wait_listening(port, &mut child, "python3 -m http.server");
        Served { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fetch_step(root: &Path, name: &str, sql: &str, images: Option<&str>) -> std::process::Output {
    Command::new("php")
        .args(["-r", wikikube_render::backup::IMPORT_FETCH_PHP, "--"])
        .arg(root)
        .args([name, "farm", "eqiad", "dewiki", "1.39.17-wmf.1", sql])
        .args(images)
        .output()
        .expect("php8.2-cli with php8.2-curl (scripts/install-packages installs them)")
}

#[test]
fn the_import_fetch_step_downloads_a_dump_and_images_into_a_backup_the_check_step_accepts() {
    let scratch = tempfile::tempdir().unwrap();
    let served = scratch.path().join("served");
    let images = served.join("images");
    fs::create_dir_all(images.join("a/ab")).unwrap();
    fs::create_dir_all(images.join("thumb/a/ab/Photo.png")).unwrap();
    let photo = [0x89, b'P', b'N', b'G', 13, 10, 0, 7];
    fs::write(images.join("a/ab/Photo.png"), photo).unwrap();
    fs::write(images.join("thumb/a/ab/Photo.png/50px-Photo.png"), b"thumb").unwrap();
    let sql = "CREATE TABLE page (page_id int);\nINSERT INTO page VALUES (1);\n";
    fs::write(served.join("dewiki.sql"), sql).unwrap();
    let gzip = Command::new("gzip")
        .arg("dewiki.sql")
        .current_dir(&served)
        .status()
        .unwrap();
    assert!(gzip.success());
    // As an operator makes it: `tar czf images.tar.gz images` (one top directory).
    let tar = Command::new("tar")
        .args(["czf", "images.tar.gz", "images"])
        .current_dir(&served)
        .status()
        .unwrap();
    assert!(tar.success());
    fs::write(served.join("not-a-tar.tar.gz"), b"plain text").unwrap();
    let server = Served::start(&served);
    let root = scratch.path().join("backups");
    fs::create_dir_all(&root).unwrap();

    let output = fetch_step(
        &root,
        "mwimport-dewiki-i1",
        &server.url("dewiki.sql.gz"),
        Some(&server.url("images.tar.gz")),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("dewiki: 3 files ready to import as backup mwimport-dewiki-i1"),
        "{stdout}"
    );
    let dir = root.join("mwimport-dewiki-i1");
    assert_eq!(
        fs::read_to_string(dir.join("dewiki/database.sql")).unwrap(),
        sql
    );
    assert_eq!(
        fs::read(dir.join("dewiki/media/public/a/ab/Photo.png")).unwrap(),
        photo
    );
    let manifest = wikikube_backup::Manifest::read(&dir).unwrap();
    manifest.verify(&dir, "dewiki").unwrap();
    let wiki = &manifest.wikis["dewiki"];
    assert_eq!((wiki.revisions, wiki.latest_edit.as_deref()), (0, None));
    assert_eq!(wiki.version, "1.39.17-wmf.1");
    // The restore's check step plans it: no edit to compare with, so the load decides by the
    // wiki's revision count (`import`).
    let plan = scratch.path().join("plan");
    let checked = check_step(&root, "mwimport-dewiki-i1", &plan, &["dewiki"]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(fs::read_to_string(&plan).unwrap(), "dewiki\tNULL\n");

    // A plain dump, no images.
    fs::write(served.join("plain.sql"), sql).unwrap();
    let output = fetch_step(&root, "mwimport-dewiki-i2", &server.url("plain.sql"), None);
    assert!(output.status.success());
    let dir = root.join("mwimport-dewiki-i2");
    assert_eq!(
        fs::read_to_string(dir.join("dewiki/database.sql")).unwrap(),
        sql
    );
    assert!(!dir.join("dewiki/media").exists());

    // A URL the server does not have, and a tar that is none: exit 2 naming the URL, and
    // nothing left on the claim.
    for (name, sql_url, images_url, expected) in [
        (
            "mwimport-dewiki-i3",
            server.url("missing.sql.gz"),
            None,
            "cannot download",
        ),
        (
            "mwimport-dewiki-i4",
            server.url("dewiki.sql.gz"),
            Some(server.url("not-a-tar.tar.gz")),
            "is not a tar of MediaWiki's images directory",
        ),
    ] {
        let output = fetch_step(&root, name, &sql_url, images_url.as_deref());
        assert_eq!(output.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected) && stderr.contains("nothing was imported"),
            "{stderr}"
        );
        assert!(!root.join(name).exists(), "{name}");
        assert!(!root.join(format!(".{name}.partial")).exists(), "{name}");
    }
}
