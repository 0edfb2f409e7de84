//! Against a real cluster (kind or k3s; see docs/deploy.md). Ignored by default, so a run says
//! it was skipped rather than counting it as passed: run them with
//! `WIKIKUBE_TEST_KUBECONFIG=PATH cargo test -p wikikube-deploy --test real_cluster -- --ignored`,
//! PATH a kubeconfig whose current context may be written to. The tests create the site's
//! namespace there and delete nothing but what their deploys created.
//!
//! Two tests: one with the example farm as it is, whose images no cluster can pull (the canary
//! never becomes ready: the real controller's progress deadline fails it, and the deploy rolls
//! back); and, with `WIKIKUBE_TEST_SITE` naming a copy of the farm whose images were pushed to a
//! registry the cluster pulls from (`wikikube build --push`), a full deploy, a canary stopped at
//! the gate, a rollback and the history they leave.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use wikikube_deploy::history::{Action, State};
use wikikube_deploy::progress::Quiet;
use wikikube_deploy::{Phase, Step};

mod support;

/// The two tests deploy to the same namespace, whose deploy lock would refuse the second while
/// the first runs: they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn target() -> wikikube_deploy::Target {
    let path = std::env::var("WIKIKUBE_TEST_KUBECONFIG")
        .expect("WIKIKUBE_TEST_KUBECONFIG names the kubeconfig of a real cluster");
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("a readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a usable kubeconfig");
    wikikube_deploy::Target {
        name: "test".into(),
        client: kube::Client::try_from(config).unwrap(),
    }
}

/// The site's steps for `eqiad`, each Deployment's progress deadline cut to a minute so a
/// failing canary fails in minutes, not ten.
fn steps(site_dir: &std::path::Path) -> (String, Vec<Step>, wikikube_render::Rendered) {
    let site = wikikube_model::load(site_dir, "eqiad", &Default::default()).unwrap();
    let rendered = wikikube_render::render(&site, &Default::default()).unwrap();
    let mut steps = wikikube_deploy::plan(&rendered);
    for step in &mut steps {
        if step.object.kind == wikikube_render::ObjectKind::Deployment {
            step.body["spec"]["progressDeadlineSeconds"] = json!(60);
        }
    }
    (site.spec.site.namespace.clone(), steps, rendered)
}

fn options() -> wikikube_deploy::Options {
    wikikube_deploy::Options {
        soak: Duration::from_secs(10),
        extra_wait: Duration::from_secs(30),
        ..wikikube_deploy::Options::default()
    }
}

/// The live Deployment's app image, and whether all its replicas are available.
async fn live_app(target: &wikikube_deploy::Target, namespace: &str, name: &str) -> (String, bool) {
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(target.client.clone(), namespace);
    let deployment = api.get(name).await.unwrap();
    let spec = deployment.spec.unwrap();
    let image = spec
        .template
        .spec
        .unwrap()
        .containers
        .into_iter()
        .find(|container| container.name == "app")
        .and_then(|container| container.image)
        .unwrap_or_default();
    let status = deployment.status.unwrap_or_default();
    let available = status.available_replicas.unwrap_or(0) == spec.replicas.unwrap_or(1);
    (image, available)
}

#[tokio::test]
#[ignore = "needs a real cluster: set WIKIKUBE_TEST_KUBECONFIG and pass --ignored"]
async fn real_cluster_unpullable_canary_fails_its_progress_deadline_and_rolls_back() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let target = target().await;
    let (namespace, steps, rendered) = steps(&support::site::farm_dir());
    let targets = [target];
    let diff = wikikube_deploy::diff(
        &targets,
        &namespace,
        &rendered.objects(),
        wikikube_deploy::history::DEFAULT_CONFIG_REVISIONS,
    )
    .await
    .unwrap();
    println!("{}", diff.to_text());
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &options(), &Quiet).await;
    println!("{}", report.to_text());
    assert!(!report.ok, "the example's images cannot be pulled");
    let history = wikikube_deploy::history(&targets, &namespace)
        .await
        .unwrap();
    let last = history[0].1.last().expect("a record");
    assert_eq!(last.state, State::RolledBack, "{last:?}");
    let failure = last.failure.clone().unwrap_or_default();
    assert!(failure.contains("rollout of Deployment/"), "{failure}");
}

#[tokio::test]
#[ignore = "needs a real cluster and pushed images: set WIKIKUBE_TEST_KUBECONFIG and WIKIKUBE_TEST_SITE and pass --ignored"]
async fn real_cluster_full_deploy_gate_rollback_and_history() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let site_dir = PathBuf::from(
        std::env::var("WIKIKUBE_TEST_SITE")
            .expect("WIKIKUBE_TEST_SITE names a copy of the farm whose images were pushed"),
    );
    let target = target().await;
    let (namespace, steps, _) = steps(&site_dir);
    let targets = [target.clone()];
    let main = |phase: Phase| {
        steps
            .iter()
            .find(|step| {
                step.phase == phase && step.object.kind == wikikube_render::ObjectKind::Deployment
            })
            .map(|step| step.object.name.clone())
            .unwrap()
    };
    let (main_name, canary_name) = (main(Phase::Main), main(Phase::Canary));

    // 1. A full deploy: every release rolled out and available.
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &options(), &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
    let (good_image, available) = live_app(&target, &namespace, &main_name).await;
    assert!(
        available,
        "{main_name} is not fully available after a done deploy"
    );

    // 2. A canary whose image does not exist stops at the gate; main is never touched.
    let broken_image = match good_image.split_once('@') {
        Some((repository, _)) => format!("{repository}@sha256:{}", "0".repeat(64)),
        None => format!("{good_image}-does-not-exist"),
    };
    let broken = support::site::with_image(&steps, Phase::Canary, &broken_image);
    let report = wikikube_deploy::deploy(&targets, &namespace, &broken, &options(), &Quiet).await;
    assert!(!report.ok, "{}", report.to_text());
    assert_eq!(
        live_app(&target, &namespace, &main_name).await.0,
        good_image
    );
    assert_eq!(
        live_app(&target, &namespace, &canary_name).await.0,
        good_image
    );

    // 3. A second good revision (an annotation on main's pods), then a rollback to the first.
    let mut annotated = steps.clone();
    for step in &mut annotated {
        if step.object.name == main_name
            && step.object.kind == wikikube_render::ObjectKind::Deployment
        {
            step.body["spec"]["template"]["metadata"]["annotations"]["wikikube.test/revision"] =
                json!("3");
        }
    }
    let report =
        wikikube_deploy::deploy(&targets, &namespace, &annotated, &options(), &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
    let report = wikikube_deploy::rollback(&targets, &namespace, &options(), &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(target.client.clone(), &namespace);
    let template = api.get(&main_name).await.unwrap().spec.unwrap().template;
    let annotations = template
        .metadata
        .unwrap_or_default()
        .annotations
        .unwrap_or_default();
    assert!(!annotations.contains_key("wikikube.test/revision"));
    assert!(live_app(&target, &namespace, &main_name).await.1);

    // 4. The history says all of it, newest last.
    let history = wikikube_deploy::history(&targets, &namespace)
        .await
        .unwrap();
    let records = &history[0].1;
    let tail: Vec<(Action, State)> = records[records.len() - 4..]
        .iter()
        .map(|record| (record.action, record.state))
        .collect();
    let first = records[records.len() - 4].revision;
    assert_eq!(
        tail,
        [
            (Action::Deploy, State::Done),
            (Action::Deploy, State::RolledBack),
            (Action::Deploy, State::Done),
            (Action::Rollback { to: first }, State::Done),
        ]
    );
}
