//! Deploy, gate, rollback, resume, prune and history against a loopback **simulation** of an API
//! server and a Deployment controller (`tests/support`). What is checked is wikikube's logic
//! given the status a controller reports; a real controller is exercised by
//! `tests/real_cluster.rs` when `WIKIKUBE_TEST_KUBECONFIG` is set.

mod support;

use support::site::{farm_steps, fast_options, with_image};
use support::{Behaviour, FakeApi, TwoClusters};
use wikikube_deploy::history::{Action, State};
use wikikube_deploy::progress::{Log, Quiet};
use wikikube_deploy::Phase;

fn app_image(fake: &FakeApi, deployment: &str) -> String {
    let object = fake
        .object("deployments", deployment)
        .expect("the Deployment exists");
    object["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|container| container["name"] == "app")
        .unwrap()["image"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn records(fake: &FakeApi, namespace: &str) -> Vec<wikikube_deploy::Record> {
    wikikube_deploy::history::read(&fake.client(), namespace)
        .await
        .unwrap()
}

#[tokio::test]
async fn simulated_deploy_goes_debug_canary_gate_main_and_records_done() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let log = Log::default();
    let report = wikikube_deploy::deploy(
        &[fake.target("eqiad")],
        &namespace,
        &steps,
        &fast_options(),
        &log,
    )
    .await;
    assert!(report.ok, "{}", report.to_text());

    let requests = fake.requests();
    let position = |needle: &str| {
        requests
            .iter()
            .position(|request| request.starts_with("PATCH") && request.contains(needle))
            .unwrap_or_else(|| panic!("no apply of {needle}"))
    };
    let proxy = requests
        .iter()
        .position(|r| r.contains("/proxy/wiki/Main_Page"))
        .expect("a smoke check");
    assert!(position("deployments/mw-web-canary") < proxy);
    assert!(proxy < position("deployments/mw-web-main"));
    assert!(position("deployments/mw-api-ext-canary") < position("deployments/mw-api-ext-main"));

    let history = records(&fake, &namespace).await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].state, State::Done);
    assert_eq!(history[0].user, "tester");
    assert!(history[0].images["mw-web-main"]
        .iter()
        .any(|image| image.contains("app:")));
    let inventory = wikikube_deploy::inventory::read(&fake.client(), &namespace)
        .await
        .unwrap();
    assert_eq!(inventory.objects.len(), steps.len());
    assert!(log
        .lines()
        .iter()
        .any(|line| line.contains("canary") && line.contains("rolled out")));
    assert!(log
        .lines()
        .iter()
        .any(|line| line.contains("smoke check(s) passed")));
}

#[tokio::test]
async fn simulated_stale_deadline_condition_from_an_earlier_rollout_is_not_a_failure() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let options = fast_options();
    assert!(fake.deploy("eqiad", &namespace, &steps, &options).await.ok);
    // v2's canary: the first reads show the previous generation complete and an hour-old
    // ProgressDeadlineExceeded condition. A check that trusted either would stop too early.
    fake.behave("v2-stale", Behaviour::StaleCondition(5));
    let v2 = with_image(
        &steps,
        Phase::Canary,
        "registry.farm.test/wikikube/app:v2-stale",
    );
    fake.clear_requests();
    let report = fake.deploy("eqiad", &namespace, &v2, &options).await;
    assert!(report.ok, "{}", report.to_text());
    let reads = fake
        .requests()
        .iter()
        .filter(|request| {
            request.starts_with("GET") && request.contains("deployments/mw-web-canary")
        })
        .count();
    assert!(reads >= 5, "waited for the new generation: {reads} reads");
}

#[tokio::test]
async fn simulated_stuck_canary_in_one_cluster_rolls_back_both_clusters() {
    let TwoClusters {
        eqiad,
        codfw,
        targets,
        namespace,
        steps,
    } = TwoClusters::deployed().await;
    let options = fast_options();
    let v1 = app_image(&eqiad, "mw-web-canary");

    codfw.behave("v2-broken", Behaviour::Stuck);
    let v2 = with_image(
        &steps,
        Phase::Canary,
        "registry.farm.test/wikikube/app:v2-broken",
    );
    let v2 = with_image(
        &v2,
        Phase::Main,
        "registry.farm.test/wikikube/app:v2-broken",
    );
    let report = wikikube_deploy::deploy(&targets, &namespace, &v2, &options, &Quiet).await;
    assert!(!report.ok);
    let failure = report.failure.clone().unwrap();
    assert!(failure.starts_with("codfw:"), "{failure}");
    assert!(failure.contains("progress deadline exceeded"), "{failure}");
    for fake in [&eqiad, &codfw] {
        assert_eq!(app_image(fake, "mw-web-canary"), v1, "canary put back");
        assert_eq!(app_image(fake, "mw-web-main"), v1, "main never touched");
        let history = records(fake, &namespace).await;
        assert_eq!(history.last().unwrap().state, State::RolledBack);
        assert!(history.last().unwrap().failure.is_some());
    }
    assert!(report.clusters.iter().all(|cluster| cluster.rolled_back));
}

#[tokio::test]
async fn simulated_failing_smoke_check_names_the_check_and_rolls_back() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let options = fast_options();
    assert!(fake.deploy("eqiad", &namespace, &steps, &options).await.ok);
    fake.behave("v2-smokefail", Behaviour::FailsSmoke);
    let v2 = with_image(&steps, Phase::Canary, "app:v2-smokefail");
    let report = fake.deploy("eqiad", &namespace, &v2, &options).await;
    let failure = report.failure.unwrap();
    assert!(failure.contains("smoke check \"main page\""), "{failure}");
    assert!(failure.contains("answered 500"), "{failure}");
    assert!(!app_image(&fake, "mw-web-canary").contains("v2"));
}

#[tokio::test]
async fn simulated_canary_that_crashes_while_soaking_fails_the_gate() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let mut options = fast_options();
    assert!(fake.deploy("eqiad", &namespace, &steps, &options).await.ok);
    fake.behave("v2-crash", Behaviour::CrashAfterReady);
    options.soak = std::time::Duration::from_millis(300);
    let v2 = with_image(&steps, Phase::Canary, "app:v2-crash");
    let report = fake.deploy("eqiad", &namespace, &v2, &options).await;
    let failure = report.failure.unwrap();
    assert!(failure.contains("unhealthy while soaking"), "{failure}");
}

#[tokio::test]
async fn simulated_failed_first_deploy_deletes_what_it_created_but_the_namespace() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    fake.behave("mw-web-canary", Behaviour::Stuck);
    let report = fake
        .deploy("eqiad", &namespace, &steps, &fast_options())
        .await;
    assert!(!report.ok);
    assert!(
        fake.names("deployments").is_empty(),
        "{:?}",
        fake.names("deployments")
    );
    assert_eq!(fake.names("namespaces"), vec![namespace.clone()]);
    let history = records(&fake, &namespace).await;
    assert_eq!(history[0].state, State::RolledBack);
}

#[tokio::test]
async fn simulated_prune_deletes_objects_removed_from_the_site_and_nothing_it_does_not_own_nor_the_media_claim(
) {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let options = fast_options();
    assert!(fake.deploy("eqiad", &namespace, &steps, &options).await.ok);
    // Someone else's ConfigMap with our labels: a label search would take it for ours.
    fake.insert(
        "configmaps",
        &namespace,
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "mw-web-main-extra", "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "wikikube", "wikikube.org/site": "farm"}}}),
    );
    assert!(fake
        .object("persistentvolumeclaims", "farm-media")
        .is_some());
    // The media claim leaves the site too, but is never pruned: deleting it deletes every upload.
    let fewer: Vec<_> = steps
        .iter()
        .filter(|step| {
            !step.object.name.starts_with("mw-api-ext") && step.object.name != "farm-media"
        })
        .cloned()
        .collect();
    let report = fake.deploy("eqiad", &namespace, &fewer, &options).await;
    assert!(report.ok, "{}", report.to_text());
    assert!(!report.clusters[0].pruned.is_empty());
    assert!(fake
        .names("deployments")
        .iter()
        .all(|name| !name.starts_with("mw-api-ext")));
    assert!(fake
        .names("configmaps")
        .contains(&"mw-web-main-extra".to_string()));
    assert!(fake.object("deployments", "mw-web-main").is_some());
    assert!(fake
        .object("persistentvolumeclaims", "farm-media")
        .is_some());
}

#[tokio::test]
async fn simulated_interrupted_deploy_is_refused_then_resumed() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let mut options = fast_options();
    options.soak = std::time::Duration::from_secs(30);
    let mut stop = fake.notify_at_state("canary-applied");
    let targets = [fake.target("eqiad")];
    tokio::select! {
        _ = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet) => panic!("should be interrupted"),
        _ = stop.recv() => {} // The process "dies" here: the future is dropped.
    }
    // Its lock stays until it expires; a minute later, it has.
    fake.expire_lock(&namespace);
    assert_eq!(
        records(&fake, &namespace).await[0].state,
        State::CanaryApplied
    );

    options.soak = std::time::Duration::from_millis(10);
    let refused = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
    assert!(refused.failure.unwrap().contains("--resume"));

    options.resume = true;
    let resumed = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
    assert!(resumed.ok, "{}", resumed.to_text());
    let history = records(&fake, &namespace).await;
    assert_eq!(history.len(), 1, "the same revision went on");
    assert_eq!(history[0].state, State::Done);
}

#[tokio::test]
async fn simulated_resume_refuses_a_different_site() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let mut options = fast_options();
    options.soak = std::time::Duration::from_secs(30);
    let mut stop = fake.notify_at_state("canary-applied");
    let targets = [fake.target("eqiad")];
    tokio::select! {
        _ = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet) => panic!("should be interrupted"),
        _ = stop.recv() => {}
    }
    fake.expire_lock(&namespace);
    options.resume = true;
    let other = with_image(&steps, Phase::Main, "app:other");
    let report = wikikube_deploy::deploy(&targets, &namespace, &other, &options, &Quiet).await;
    assert!(report.failure.unwrap().contains("different objects"));
}

#[tokio::test]
async fn simulated_rollback_reapplies_the_previous_revision_as_a_new_one() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let options = fast_options();
    let targets = [fake.target("eqiad")];
    assert!(
        wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet)
            .await
            .ok
    );
    let v1 = app_image(&fake, "mw-web-main");
    let v2 = with_image(
        &with_image(&steps, Phase::Canary, "app:v2"),
        Phase::Main,
        "app:v2",
    );
    assert!(
        wikikube_deploy::deploy(&targets, &namespace, &v2, &options, &Quiet)
            .await
            .ok
    );
    assert_eq!(app_image(&fake, "mw-web-main"), "app:v2");

    let report = wikikube_deploy::rollback(&targets, &namespace, &options, &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(app_image(&fake, "mw-web-main"), v1);
    let history = records(&fake, &namespace).await;
    assert_eq!(history.len(), 3);
    assert_eq!(history[2].action, Action::Rollback { to: 1 });
    assert_eq!(history[2].state, State::Done);
}

#[tokio::test]
async fn simulated_interrupted_deploy_can_be_rolled_back() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let mut options = fast_options();
    let targets = [fake.target("eqiad")];
    assert!(
        wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet)
            .await
            .ok
    );
    let v1 = app_image(&fake, "mw-web-canary");
    options.soak = std::time::Duration::from_secs(30);
    let mut stop = fake.notify_at_state("canary-applied");
    let v2 = with_image(&steps, Phase::Canary, "app:v2");
    tokio::select! {
        _ = wikikube_deploy::deploy(&targets, &namespace, &v2, &options, &Quiet) => panic!("should be interrupted"),
        _ = stop.recv() => {}
    }
    fake.expire_lock(&namespace);
    assert_eq!(app_image(&fake, "mw-web-canary"), "app:v2");
    options.soak = std::time::Duration::from_millis(10);
    let report = wikikube_deploy::rollback(&targets, &namespace, &options, &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(app_image(&fake, "mw-web-canary"), v1);
    let history = records(&fake, &namespace).await;
    assert_eq!(history[1].state, State::RolledBack);
    assert_eq!(history[2].action, Action::Rollback { to: 1 });
    // And a normal deploy may follow.
    assert!(
        wikikube_deploy::deploy(&targets, &namespace, &v2, &options, &Quiet)
            .await
            .ok
    );
}

#[tokio::test]
async fn simulated_history_keeps_few_full_revisions_and_small_records() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let mut options = fast_options();
    options.soak = std::time::Duration::ZERO;
    let targets = [fake.target("eqiad")];
    for version in 0..8 {
        let next = with_image(&steps, Phase::Main, &format!("app:v{version}"));
        assert!(
            wikikube_deploy::deploy(&targets, &namespace, &next, &options, &Quiet)
                .await
                .ok
        );
    }
    let stored: Vec<String> = fake
        .names("secrets")
        .into_iter()
        .filter(|name| name.starts_with("wikikube-revision-"))
        .collect();
    assert_eq!(
        stored.len(),
        wikikube_deploy::history::KEEP_REVISIONS,
        "{stored:?}"
    );
    let history = records(&fake, &namespace).await;
    assert_eq!(history.len(), 8);
    let history_text =
        fake.object("configmaps", "wikikube-history").unwrap()["data"]["records.json"].to_string();
    // At most KEEP_RECORDS records of under 2 KiB each: far below the 1 MiB object limit.
    assert!(
        history_text.len() / 8 < 2048,
        "{} bytes",
        history_text.len()
    );
    let revision =
        fake.object("secrets", "wikikube-revision-8").unwrap()["data"]["steps.json.gz"].to_string();
    assert!(revision.len() < 64 * 1024, "{} bytes", revision.len());
}

#[tokio::test]
async fn simulated_diff_shows_changes_and_never_secret_values() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let site = wikikube_model::load(
        &support::site::farm_dir(),
        "eqiad",
        &wikikube_model::LoadOptions::default(),
    )
    .unwrap();
    let rendered =
        wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap();
    let targets = [fake.target("eqiad")];

    let before = wikikube_deploy::diff(
        &targets,
        &namespace,
        &rendered.objects(),
        wikikube_deploy::history::DEFAULT_CONFIG_REVISIONS,
    )
    .await
    .unwrap();
    assert!(before.has_differences());
    assert!(before.clusters[0]
        .objects
        .iter()
        .all(|object| object.change == wikikube_deploy::diff::Change::Create));

    assert!(
        wikikube_deploy::deploy(&targets, &namespace, &steps, &fast_options(), &Quiet)
            .await
            .ok
    );
    let after = wikikube_deploy::diff(
        &targets,
        &namespace,
        &rendered.objects(),
        wikikube_deploy::history::DEFAULT_CONFIG_REVISIONS,
    )
    .await
    .unwrap();
    assert!(!after.has_differences(), "{}", after.to_text());

    // config management writes a new upgrade key; someone scales mw-web.
    let (_, new_secret) = support::site::farm_rendered_with_upgrade_key("eqiad", "hunter2-new-key");
    let mut changed: Vec<wikikube_render::Object> =
        new_secret.objects().into_iter().cloned().collect();
    for object in &mut changed {
        if let wikikube_render::Object::Deployment(deployment) = object {
            if deployment.metadata.name.as_deref() == Some("mw-web-main") {
                deployment.spec.as_mut().unwrap().replicas = Some(99);
            }
        }
    }
    let changed: Vec<&wikikube_render::Object> = changed.iter().collect();
    let report = wikikube_deploy::diff(
        &targets,
        &namespace,
        &changed,
        wikikube_deploy::history::DEFAULT_CONFIG_REVISIONS,
    )
    .await
    .unwrap();
    let text = report.to_text();
    assert!(text.contains("+  replicas: 99"), "{text}");

    // The new Secret is shown against the one it replaces, which is kept, not deleted.
    let (old, new) = (
        support::site::private_secret(&steps),
        support::site::private_secret(&wikikube_deploy::plan(&new_secret)),
    );
    assert_ne!(old, new, "a new secret value is a new version");
    let secret = report.clusters[0]
        .objects
        .iter()
        .find(|object| object.object.name == new)
        .unwrap();
    assert_eq!(secret.change, wikikube_deploy::diff::Change::Replace);
    assert_eq!(secret.replaces.as_ref().unwrap().name, old);
    assert!(
        secret
            .text
            .starts_with(&format!("new Secret/{new} replaces Secret/{old}\n")),
        "{}",
        secret.text
    );
    assert!(
        secret.text.contains(&format!("--- live/Secret/{old}")),
        "{}",
        secret.text
    );
    assert!(
        secret.text.contains("upgrade_key: '<redacted: new value>'"),
        "{}",
        secret.text
    );
    assert!(
        secret.text.contains("secret_key: <redacted>"),
        "{}",
        secret.text
    );
    assert!(report.clusters[0]
        .objects
        .iter()
        .all(|object| object.change != wikikube_deploy::diff::Change::Delete));
    // The pod templates that point at it change with it.
    assert!(
        text.contains(&format!("+          secretName: {new}")),
        "{text}"
    );
    assert!(
        text.contains("cluster eqiad")
            || text.contains("1 to replace")
            || text.contains("to replace")
    );

    for value in site.secrets.expose().values() {
        assert!(!text.contains(value.as_str()), "a secret value is shown");
    }
    assert!(!text.contains("hunter2"));
    use base64::Engine;
    assert!(!text.contains(&base64::engine::general_purpose::STANDARD.encode("hunter2-new-key")));
    assert!(!text.contains("managedFields") && !text.contains("resourceVersion"));
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("hunter2"));
}

#[test]
fn the_edge_changes_with_main_after_the_canary_gate() {
    let (_, steps) = farm_steps("eqiad");
    let edge: Vec<(Phase, &str)> = steps
        .iter()
        .filter(|step| step.object.name == "farm-edge")
        .map(|step| (step.phase, step.object.kind.as_str()))
        .collect();
    assert_eq!(
        edge,
        [
            (Phase::Main, "ConfigMap"),
            (Phase::Main, "Service"),
            (Phase::Main, "Deployment"),
            (Phase::Main, "PodDisruptionBudget"),
        ]
    );
}

/// `steps` with every Deployment's progress deadline at one second, and mw-web-main at eight
/// replicas: a rollout of one replica at a time then outlasts the deadline many times.
fn one_second_deadline(steps: Vec<wikikube_deploy::Step>) -> Vec<wikikube_deploy::Step> {
    steps
        .into_iter()
        .map(|mut step| {
            if step.object.kind == wikikube_render::ObjectKind::Deployment {
                step.body["spec"]["progressDeadlineSeconds"] = serde_json::json!(1);
                if step.object.name == "mw-web-main" {
                    step.body["spec"]["replicas"] = serde_json::json!(8);
                }
            }
            step
        })
        .collect()
}

#[tokio::test]
async fn simulated_slow_rollout_is_waited_for_while_it_progresses_and_a_stalled_one_is_not() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let targets = [fake.target("eqiad")];
    assert!(
        wikikube_deploy::deploy(&targets, &namespace, &steps, &fast_options(), &Quiet)
            .await
            .ok
    );
    let mut options = fast_options();
    options.extra_wait = std::time::Duration::ZERO;

    // Eight replicas, one more every 300 ms: 2.4 s of rollout against a 1 s deadline, never a
    // second without progress. A wait with a fixed limit from the start gave up at 1 s.
    fake.behave(
        "v2-slow",
        Behaviour::SlowProgress(std::time::Duration::from_millis(300)),
    );
    let v2 = one_second_deadline(with_image(&steps, Phase::Main, "app:v2-slow"));
    let started = std::time::Instant::now();
    let report = wikikube_deploy::deploy(&targets, &namespace, &v2, &options, &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(2400),
        "the rollout took {:?}: it must have outlasted the deadline",
        started.elapsed()
    );
    assert!(app_image(&fake, "mw-web-main").contains("v2-slow"));

    // One replica, then nothing, and no word from the controller: given up a second after the
    // last progress, and rolled back.
    fake.behave("v3-stall", Behaviour::Stalls);
    let v3 = one_second_deadline(with_image(&steps, Phase::Main, "app:v3-stall"));
    let started = std::time::Instant::now();
    let report = wikikube_deploy::deploy(&targets, &namespace, &v3, &options, &Quiet).await;
    let failure = report.failure.clone().unwrap_or_default();
    assert!(!report.ok);
    assert!(failure.contains("no progress for 1 s"), "{failure}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(app_image(&fake, "mw-web-main").contains("v2-slow"));
}

/// The first Deployment a deploy applies before its gate (a debug or canary release's): one
/// that the undo of a failed first deploy deletes.
fn first_deployment(steps: &[wikikube_deploy::Step]) -> String {
    steps
        .iter()
        .find(|step| {
            step.phase <= Phase::Canary
                && step.object.kind == wikikube_render::ObjectKind::Deployment
        })
        .expect("a Deployment before the gate")
        .object
        .name
        .clone()
}

/// A deploy retried at once after a failed one, in the simulation: the failed run's undo
/// deleted the Deployments it had created, and those stay, with a deletionTimestamp, while
/// their pods run the preStop sleep (210 s, here 1 s). Applying them again meanwhile would
/// patch objects that then disappear under the deploy; it must wait for each to be gone and
/// create it anew, and say so.
#[tokio::test]
async fn simulated_retry_waits_for_the_deployments_its_failed_run_deleted_to_be_gone() {
    let fake = FakeApi::start().await;
    // Long enough that the retry, even on a busy machine, reaches them before they are gone.
    fake.termination_second(std::time::Duration::from_millis(5));
    let (namespace, steps) = farm_steps("eqiad");
    let targets = [fake.target("eqiad")];
    fake.behave("v1-stuck", Behaviour::Stuck);
    let broken = with_image(&steps, Phase::Canary, "app:v1-stuck");
    let report =
        wikikube_deploy::deploy(&targets, &namespace, &broken, &fast_options(), &Quiet).await;
    assert!(!report.ok, "{}", report.to_text());
    let first = first_deployment(&steps);
    assert!(
        fake.being_deleted("deployments", &first),
        "the undo's deletes are still going"
    );

    let log = Log::default();
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &fast_options(), &log).await;
    assert!(report.ok, "{}", report.to_text());
    let lines = log.lines();
    assert!(
        lines
            .iter()
            .any(|line| line.contains(&format!("Deployment/{first} is being deleted"))),
        "{lines:#?}"
    );
    for step in &steps {
        if step.object.kind == wikikube_render::ObjectKind::Deployment {
            let name = &step.object.name;
            assert!(!fake.being_deleted("deployments", name), "{name} is going");
            assert!(fake.object("deployments", name).is_some(), "{name} is gone");
        }
    }
}

/// An object that is never gone (a finalizer whose controller is down, in the simulation a
/// one-hour preStop sleep) stops the deploy at the deadline with an error that names it.
#[tokio::test]
async fn simulated_object_that_stays_deleting_is_an_error_at_the_deadline() {
    let fake = FakeApi::start().await;
    fake.termination_second(std::time::Duration::from_secs(3600));
    let (namespace, steps) = farm_steps("eqiad");
    let targets = [fake.target("eqiad")];
    fake.behave("v1-stuck", Behaviour::Stuck);
    let broken = with_image(&steps, Phase::Canary, "app:v1-stuck");
    let options = fast_options();
    assert!(
        !wikikube_deploy::deploy(&targets, &namespace, &broken, &options, &Quiet)
            .await
            .ok
    );
    let options = wikikube_deploy::Options {
        deletion_timeout: std::time::Duration::from_millis(200),
        ..fast_options()
    };
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
    let failure = report.failure.expect("a failure");
    assert!(
        failure.contains(&format!(
            "Deployment/{} is still being deleted",
            first_deployment(&steps)
        )) && failure.contains("foregroundDeletion"),
        "{failure}"
    );
}

/// After a rollout the replaced pods run their preStop sleep; `status.replicas` leaves them
/// out, so the status looks complete while they still finish old requests. In the simulation
/// (210 s of preStop lasting 420 ms) a deploy is done only once they have stopped: counted in
/// `terminatingReplicas` by a server that reports it (1.33 and later), from the pod list on one
/// that does not.
#[tokio::test]
async fn simulated_rollout_is_complete_only_when_the_replaced_pods_have_stopped() {
    for reports_terminating_replicas in [false, true] {
        let fake = FakeApi::start().await;
        fake.termination_second(std::time::Duration::from_millis(2));
        if reports_terminating_replicas {
            fake.report_terminating_replicas();
        }
        let (namespace, steps) = farm_steps("eqiad");
        let targets = [fake.target("eqiad")];
        let options = fast_options();
        assert!(
            wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet)
                .await
                .ok
        );
        let v2 = with_image(&steps, Phase::Main, "app:v2");
        let log = Log::default();
        let report = wikikube_deploy::deploy(&targets, &namespace, &v2, &options, &log).await;
        assert!(report.ok, "{}", report.to_text());
        for deployment in fake.names("deployments") {
            let terminating = fake.terminating_pods(&deployment);
            assert!(
                terminating.is_empty(),
                "terminatingReplicas reported: {reports_terminating_replicas}: \
                 {deployment} done with {terminating:?} still stopping"
            );
        }
        let lines = log.lines();
        assert!(
            lines
                .iter()
                .any(|line| line.contains("replaced pod(s) still terminating")),
            "{lines:#?}"
        );
    }
}
