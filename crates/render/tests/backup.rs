//! The backups of a Kubernetes environment: the Job and CronJob a render makes, and the
//! manifest step they run, in the real PHP (Debian's php8.2-cli) on a backup directory laid out
//! as the `dump` step leaves it, read back and checked by `wikikube-backup` as a restore does.
//! The `dump` step itself (mariadb-dump) runs against a real MariaDB in the local farm's end to
//! end test (crates/local/tests/farm.rs).

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use wikikube_render::backup::{BACKUPS_DIR, MANIFEST_PHP};
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
