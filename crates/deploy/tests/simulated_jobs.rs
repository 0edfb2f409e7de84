//! Maintenance Jobs and the schema Jobs of a deploy, against the loopback **simulation** of an
//! API server (`tests/support`), whose Job controller runs no PHP: each Job's pod prints what the
//! test scripted and ends as scripted. What is checked is what wikikube creates, how it follows
//! a Job, and what a deploy does with the outcome; a real Job controller and real MediaWiki
//! scripts are not exercised here.

mod support;

use std::sync::Mutex;
use std::time::Instant;

use support::site::{
    farm_rendered, farm_steps, fast_jobs, fast_options, fast_schema as schema, with_image,
};
use support::{FakeApi, JobEnd};
use wikikube_deploy::history::State;
use wikikube_deploy::jobs::Outcome;
use wikikube_deploy::progress::{Log, Quiet};
use wikikube_deploy::Phase;
use wikikube_render::maintenance::{JobSettings, Maintenance, ScriptRequest};

fn template(env: &str) -> Maintenance {
    farm_rendered(env)
        .maintenance
        .expect("a Kubernetes environment")
}

/// The example farm deployed once to a simulated cluster, without schema Jobs.
async fn deployed() -> (FakeApi, String) {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let report = fake
        .deploy("eqiad", &namespace, &steps, &fast_options())
        .await;
    assert!(report.ok, "{}", report.to_text());
    (fake, namespace)
}

/// The deployed farm, with the API letting the caller do only what `command`'s Role allows
/// (as `render --rbac` prints it).
async fn deployed_under_role(command: wikikube_deploy::rbac::Command) -> (FakeApi, String) {
    let (fake, namespace) = deployed().await;
    fake.restrict(
        &namespace,
        wikikube_deploy::rbac::namespaced(command),
        wikikube_deploy::rbac::cluster(command)
            .into_iter()
            .collect(),
    );
    (fake, namespace)
}

/// A job run by jane without a deadline, kept for ten minutes after it ends.
fn by_jane() -> JobSettings {
    JobSettings {
        user: "jane".into(),
        deadline_seconds: None,
        keep_seconds: 600,
    }
}

fn job_names(fake: &FakeApi) -> Vec<String> {
    fake.names("jobs")
}

#[tokio::test]
async fn simulated_script_job_streams_its_output_and_succeeds() {
    let (fake, namespace) = deployed().await;
    let script = [
        "Total edits: 1234",
        "Number of articles: 56",
        "Total pages: 78",
        "Number of users: 9",
    ];
    fake.script_job("showSiteStats.php", &script, JobEnd::Exit(0));
    let request = ScriptRequest {
        wiki: "enwiki".into(),
        script: "showSiteStats.php".into(),
        arguments: vec!["--verbose".into()],
    };
    let settings = JobSettings {
        user: "Jane Doe".into(),
        deadline_seconds: Some(120),
        keep_seconds: 3600,
    };
    let job = template("eqiad").script_job(&request, &settings, "abc123");
    let seen = Mutex::new(Vec::new());
    let report = wikikube_deploy::jobs::run(
        &fake.target("eqiad"),
        &namespace,
        &job,
        &fast_jobs(true),
        &Quiet,
        &|line: &str| {
            seen.lock()
                .unwrap()
                .push((Instant::now(), line.to_string()))
        },
    )
    .await
    .unwrap();
    assert_eq!(report.outcome, Outcome::Succeeded);
    assert_eq!(report.outcome.exit_code(), 0);
    let seen = seen.into_inner().unwrap();
    let lines: Vec<&str> = seen.iter().map(|(_, line)| line.as_str()).collect();
    assert_eq!(lines, script);
    assert_eq!(report.tail, script);
    // Streamed: the lines came as the pod printed them (100 ms apart, 300 ms from the first
    // to the last), not in one piece at the end. The bound is one gap, not three: a loaded
    // machine may hold this test's task back while lines queue up.
    let spread = seen.last().unwrap().0 - seen[0].0;
    assert!(
        spread.as_millis() >= 100,
        "all lines came at once: {spread:?}"
    );
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.contains("/log?") && r.contains("follow=true") && r.contains("container=app")));

    // The Job as created: the same command line as `wikikube script` on one machine, one try,
    // a deadline, kept for the asked time, labelled with the wiki, the script and the person.
    let created = fake.object("jobs", "mwscript-enwiki-abc123").unwrap();
    let spec = &created["spec"];
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(spec["activeDeadlineSeconds"], 120);
    assert_eq!(spec["ttlSecondsAfterFinished"], 3600);
    assert_eq!(
        spec["template"]["spec"]["containers"][0]["command"],
        serde_json::json!(request.command_line())
    );
    let labels = &created["metadata"]["labels"];
    assert_eq!(labels["wikikube.org/wiki"], "enwiki");
    assert_eq!(labels["wikikube.org/script"], "showSiteStats.php");
    assert_eq!(labels["wikikube.org/user"], "Jane_Doe");
}

#[tokio::test]
async fn simulated_failing_script_reports_its_exit_code_and_output_at_the_end() {
    let (fake, namespace) = deployed().await;
    fake.script_job(
        "deleteBatch.php",
        &["Deleting Page_1", "Fatal error: no such page"],
        JobEnd::Exit(3),
    );
    let request = ScriptRequest {
        wiki: "dewiki".into(),
        script: "deleteBatch.php".into(),
        arguments: Vec::new(),
    };
    let job = template("eqiad").script_job(&request, &JobSettings::default(), "x1");
    let seen = Mutex::new(Vec::new());
    let report = wikikube_deploy::jobs::run(
        &fake.target("eqiad"),
        &namespace,
        &job,
        &fast_jobs(false),
        &Quiet,
        &|line: &str| seen.lock().unwrap().push(line.to_string()),
    )
    .await
    .unwrap();
    assert_eq!(
        report.outcome,
        Outcome::Failed {
            exit_code: Some(3),
            reason: "Error".into()
        }
    );
    assert_eq!(report.outcome.exit_code(), 3);
    assert_eq!(
        seen.into_inner().unwrap(),
        ["Deleting Page_1", "Fatal error: no such page"]
    );
    assert!(!fake.requests().iter().any(|r| r.contains("follow=true")));
}

#[tokio::test]
async fn simulated_deadline_exceeded_is_reported_as_such() {
    let (fake, namespace) = deployed().await;
    fake.script_job(
        "runJobs.php",
        &["Running job 1", "Running job 2"],
        JobEnd::Deadline,
    );
    let request = ScriptRequest {
        wiki: "enwiki".into(),
        script: "runJobs.php".into(),
        arguments: Vec::new(),
    };
    let settings = JobSettings {
        deadline_seconds: Some(30),
        ..JobSettings::default()
    };
    let job = template("eqiad").script_job(&request, &settings, "d1");
    let log = Log::default();
    let report = wikikube_deploy::jobs::run(
        &fake.target("eqiad"),
        &namespace,
        &job,
        &fast_jobs(true),
        &log,
        &|_: &str| {},
    )
    .await
    .unwrap();
    assert_eq!(
        report.outcome,
        Outcome::DeadlineExceeded { seconds: Some(30) }
    );
    assert_eq!(report.outcome.exit_code(), 1);
    assert_eq!(report.tail, ["Running job 1", "Running job 2"]);
    assert!(
        log.lines()
            .iter()
            .any(|line| line.contains("stopped at its deadline of 30 s")),
        "{:?}",
        log.lines()
    );
}

#[tokio::test]
async fn simulated_schema_jobs_run_for_new_and_changed_wikis_only_in_the_first_cluster() {
    let (eqiad, codfw) = (FakeApi::start().await, FakeApi::start().await);
    let targets = [eqiad.target("eqiad"), codfw.target("codfw")];
    let (namespace, steps) = farm_steps("eqiad");
    let v1 = template("eqiad");
    let wikis: Vec<String> = v1.wikis.keys().cloned().collect();
    assert!(wikis.len() >= 2, "{wikis:?}");
    let mut options = fast_options();
    options.schema = Some(schema(v1.clone()));

    // First deploy: nothing recorded, so every wiki gets the installer.
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
    let first = job_names(&eqiad);
    assert_eq!(first.len(), wikis.len(), "{first:?}");
    assert!(first.iter().all(|name| name.starts_with("mwinstall-")));
    assert!(
        job_names(&codfw).is_empty(),
        "the database is shared: one cluster runs the Jobs"
    );
    let installer = eqiad.object("jobs", &first[0]).unwrap();
    let command = installer["spec"]["template"]["spec"]["containers"][0]["command"].to_string();
    assert!(command.contains("install.php") && command.contains("--dbname="));

    // The same site again: no wiki changed, no Job.
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(job_names(&eqiad).len(), wikis.len());

    // A new wiki, and one wiki whose code changed: an installer and an update.
    let mut v2 = v1.clone();
    let mut added = v2.wikis[&wikis[0]].clone();
    added.fingerprint = "new".into();
    v2.wikis.insert("newwiki".into(), added);
    v2.wikis.get_mut(&wikis[1]).unwrap().fingerprint = "changed".into();
    options.schema = Some(schema(v2));
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
    let mut new: Vec<String> = job_names(&eqiad)
        .into_iter()
        .filter(|name| !first.contains(name))
        .collect();
    new.sort();
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new[0].starts_with("mwinstall-newwiki-"), "{new:?}");
    let update = wikis[1].replace('_', "-");
    assert!(
        new[1].starts_with(&format!("mwupdate-{update}-")),
        "{new:?}"
    );
}

#[tokio::test]
async fn simulated_failing_update_stops_the_deploy_before_any_new_code_with_wiki_and_output() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let v1 = template("eqiad");
    let mut options = fast_options();
    options.schema = Some(schema(v1.clone()));
    let report = fake.deploy("eqiad", &namespace, &steps, &options).await;
    assert!(report.ok, "{}", report.to_text());
    let image_of = |deployment: &str| {
        fake.object("deployments", deployment).unwrap()["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "app")
            .unwrap()["image"]
            .clone()
    };
    let (main_before, canary_before) = (image_of("mw-web-main"), image_of("mw-web-canary"));

    // v2: a new app image everywhere, so every wiki's schema fingerprint changes.
    let image = "registry.farm.test/wikikube/app:v2";
    let mut v2_steps = steps.clone();
    for phase in [Phase::Debug, Phase::Canary, Phase::Main] {
        v2_steps = with_image(&v2_steps, phase, image);
    }
    let mut v2 = v1.clone();
    v2.pod.containers[0].image = Some(image.into());
    for schema in v2.wikis.values_mut() {
        schema.fingerprint.push_str("-v2");
    }
    options.schema = Some(schema(v2));
    fake.script_job(
        "mwupdate-enwiki",
        &[
            "MediaWiki 1.39 Updater",
            "...have ipb_id field in ipblocks table.",
            "Wikimedia\\Rdbms\\DBQueryError: Error 1054: Unknown column 'bt_target'",
        ],
        JobEnd::Exit(1),
    );
    fake.clear_requests();
    let report = fake.deploy("eqiad", &namespace, &v2_steps, &options).await;
    assert!(!report.ok);
    let failure = report.failure.clone().unwrap();
    assert!(failure.contains("wiki enwiki"), "{failure}");
    assert!(failure.contains("update.php"), "{failure}");
    assert!(failure.contains("exit code 1"), "{failure}");
    assert!(failure.contains("Unknown column 'bt_target'"), "{failure}");
    assert!(
        report.to_text().contains("Unknown column"),
        "{}",
        report.to_text()
    );

    // Nothing of the new code reached the cluster: no Deployment was applied at all.
    let applied: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PATCH") && r.contains("/deployments/"))
        .collect();
    assert!(applied.is_empty(), "{applied:?}");
    assert_eq!(image_of("mw-web-main"), main_before);
    assert_eq!(image_of("mw-web-canary"), canary_before);

    let history = wikikube_deploy::history::read(&fake.client(), &namespace)
        .await
        .unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.state, State::RolledBack);
    let recorded = last.failure.clone().unwrap();
    assert!(
        recorded.contains("enwiki") && recorded.contains("bt_target"),
        "{recorded}"
    );
}

/// Runs `job` in the simulated cluster `eqiad`, its output read at the end and dropped.
async fn run_quietly(
    fake: &FakeApi,
    namespace: &str,
    job: &k8s_openapi::api::batch::v1::Job,
) -> wikikube_deploy::jobs::JobReport {
    wikikube_deploy::jobs::run(
        &fake.target("eqiad"),
        namespace,
        job,
        &fast_jobs(false),
        &Quiet,
        &|_| {},
    )
    .await
    .unwrap()
}

/// A cluster's backups against the simulation: the deploy keeps the backups' claim and the
/// schedule's CronJob (pointing at the Secret version it just created), a backup runs as a Job
/// on that claim and its outcome is the manifest step's, and a schedule taken out of the site is
/// pruned while the claim with the backups stays. What the pod's programs do is tested in real
/// PHP and MariaDB elsewhere (render's tests/backup.rs, the local farm's end to end test).
#[tokio::test]
async fn simulated_backups_keep_their_claim_schedule_and_run_as_a_job() {
    let (fake, namespace) = deployed().await;
    let claim = fake
        .object("persistentvolumeclaims", "farm-backups")
        .expect("the backups claim");
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteOnce");
    let cron = fake.object("cronjobs", "farm-backup").expect("the CronJob");
    assert_eq!(cron["spec"]["schedule"], "17 3 * * *");
    let (_, steps) = farm_steps("eqiad");
    let secret = support::site::private_secret(&steps);
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes
        .iter()
        .any(|volume| volume["secret"]["secretName"] == secret.as_str()));
    assert!(fake.object("secrets", &secret).is_some());

    let rendered = farm_rendered("eqiad");
    let backups = rendered.backups.expect("eqiad backs up");
    let settings = JobSettings {
        user: "jane".into(),
        deadline_seconds: Some(3600),
        keep_seconds: 600,
    };
    fake.script_job(
        "mwbackup-all-night1",
        &[
            "commonswiki: 12 revisions, 3 files, 52000 bytes",
            "backup mwbackup-all-night1 complete in /srv/backups/mwbackup-all-night1",
        ],
        JobEnd::Exit(0),
    );
    let job = backups.job(&[], &settings, "night1");
    let report = run_quietly(&fake, &namespace, &job).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{:?}", report.tail);
    assert!(report.tail[1].contains("complete"), "{:?}", report.tail);
    let created = fake.object("jobs", "mwbackup-all-night1").unwrap();
    let pod = &created["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "farm-backups"
    );
    assert_eq!(pod["initContainers"][0]["name"], "dump");
    assert_eq!(
        created["metadata"]["labels"]["wikikube.org/maintenance"],
        "backup"
    );

    // A failed dump fails the backup, with the Job's reason.
    fake.script_job("mwbackup-dewiki-night2", &[], JobEnd::Exit(2));
    let job = backups.job(&["dewiki".into()], &settings, "night2");
    let report = run_quietly(&fake, &namespace, &job).await;
    assert_eq!(
        report.outcome,
        Outcome::Failed {
            exit_code: Some(2),
            reason: "Error".into()
        }
    );

    // The schedule leaves the site: the next deploy deletes the CronJob, never the claim.
    let (_, steps) = farm_steps("eqiad");
    let unscheduled: Vec<_> = steps
        .into_iter()
        .filter(|step| step.object.kind != wikikube_render::ObjectKind::CronJob)
        .collect();
    let report = fake
        .deploy("eqiad", &namespace, &unscheduled, &fast_options())
        .await;
    assert!(report.ok, "{}", report.to_text());
    assert!(fake.object("cronjobs", "farm-backup").is_none());
    assert!(fake
        .object("persistentvolumeclaims", "farm-backups")
        .is_some());
}

/// A cluster's restore is a Job too, run under exactly the Role `render --rbac` prints for
/// `wikikube restore`; its steps run in real PHP and MariaDB elsewhere (render's
/// tests/backup.rs, the local farm's end to end test).
#[tokio::test]
async fn simulated_restore_runs_as_a_job_under_its_role_and_reports_a_refusal() {
    let (fake, namespace) = deployed_under_role(wikikube_deploy::rbac::Command::Restore).await;
    let backups = farm_rendered("eqiad").backups.expect("eqiad backs up");
    let settings = by_jane();
    fake.script_job(
        "mwrestore-enwiki-r1",
        &[
            "loading enwiki into db1100.eqiad.farm.test:3306",
            "restored enwiki: 42 revisions, 3 media files",
        ],
        JobEnd::Exit(0),
    );
    let job = backups.restore_job(
        "mwbackup-all-night1",
        &["enwiki".into()],
        false,
        &settings,
        "r1",
    );
    let report = run_quietly(&fake, &namespace, &job).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{:?}", report.tail);
    let created = fake.object("jobs", "mwrestore-enwiki-r1").unwrap();
    assert_eq!(
        created["metadata"]["labels"]["wikikube.org/maintenance"],
        "restore"
    );
    let pod = &created["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][0]["name"], "check");
    assert_eq!(pod["volumes"][0]["persistentVolumeClaim"]["readOnly"], true);

    // Newer edits in the wiki: the load step exits 3 and the restore is reported failed.
    fake.script_job(
        "mwrestore-enwiki-r2",
        &["wikikube: enwiki has an edit of 20261201101500, newer than the backup's last (20261201031700): nothing was restored; --force replaces it"],
        JobEnd::Exit(3),
    );
    let job = backups.restore_job(
        "mwbackup-all-night1",
        &["enwiki".into()],
        false,
        &settings,
        "r2",
    );
    let report = run_quietly(&fake, &namespace, &job).await;
    assert_eq!(
        report.outcome,
        Outcome::Failed {
            exit_code: Some(3),
            reason: "Error".into()
        }
    );
    assert!(
        report.tail[0].contains("--force replaces it"),
        "{:?}",
        report.tail
    );
}

/// A cluster's import is a Job too, run under exactly the Role `render --rbac` prints for
/// `wikikube import`; its fetch step runs in real PHP against a real HTTP server in render's
/// tests/backup.rs and its load step in the local farm's end to end test.
#[tokio::test]
async fn simulated_import_runs_as_a_job_under_its_role_and_reports_a_refusal() {
    let (fake, namespace) = deployed_under_role(wikikube_deploy::rbac::Command::Import).await;
    let backups = farm_rendered("eqiad").backups.expect("eqiad backs up");
    let settings = by_jane();
    let sql = "https://dumps.example.org/dewiki.sql.gz";
    fake.script_job(
        "mwimport-dewiki-i1",
        &[
            "dewiki: 12 tables upgraded",
            "Done.",
            "Rebuilding recent changes... done.",
        ],
        JobEnd::Exit(0),
    );
    let job = backups.import_job("dewiki", sql, None, false, &settings, "i1");
    let report = run_quietly(&fake, &namespace, &job).await;
    assert_eq!(report.outcome, Outcome::Succeeded, "{:?}", report.tail);
    let created = fake.object("jobs", "mwimport-dewiki-i1").unwrap();
    assert_eq!(
        created["metadata"]["labels"]["wikikube.org/maintenance"],
        "import"
    );
    let init = &created["spec"]["template"]["spec"]["initContainers"];
    assert_eq!(init[1]["name"], "fetch");
    assert_eq!(init[3]["args"][3], "import");

    // A wiki that already has pages: the load step exits 3 and the import is reported failed.
    fake.script_job(
        "mwimport-dewiki-i2",
        &["wikikube: dewiki already has 57 revisions: nothing was imported; --force replaces them"],
        JobEnd::Exit(3),
    );
    let job = backups.import_job("dewiki", sql, None, false, &settings, "i2");
    let report = run_quietly(&fake, &namespace, &job).await;
    assert_eq!(
        report.outcome,
        Outcome::Failed {
            exit_code: Some(3),
            reason: "Error".into()
        }
    );
    assert!(
        report.tail[0].contains("--force replaces them"),
        "{:?}",
        report.tail
    );
}
