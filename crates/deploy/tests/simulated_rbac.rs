//! deploy, diff and rollback under exactly the permissions `wikikube render --rbac` prints
//! (`wikikube_deploy::rbac`), against the loopback **simulation** of an API server
//! (`tests/support`) answering 403 to anything else, as RBAC does. The namespace was created by
//! an administrator, as rendered: no command may then write it (a cluster-scoped write).

mod support;

use support::site::{farm_rendered, farm_steps, fast_options, with_image};
use support::FakeApi;
use wikikube_deploy::progress::Quiet;
use wikikube_deploy::rbac::{self, Command};
use wikikube_deploy::Phase;

fn restrict(fake: &FakeApi, namespace: &str, command: Command) {
    fake.restrict(
        namespace,
        rbac::namespaced(command),
        rbac::cluster(command).into_iter().collect(),
    );
}

#[tokio::test]
async fn simulated_deploy_diff_and_rollback_run_under_their_documented_roles() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let targets = [fake.target("eqiad")];
    let namespace_step = steps
        .iter()
        .find(|step| step.object.kind == wikikube_render::ObjectKind::Namespace)
        .unwrap();
    // The administrator's namespace, as the site renders it.
    fake.insert("namespaces", "", namespace_step.body.clone());
    let rendered = farm_rendered("eqiad");
    let options = fast_options();

    restrict(&fake, &namespace, Command::Diff);
    let diff = wikikube_deploy::diff(
        &targets,
        &namespace,
        &rendered.objects(),
        wikikube_deploy::history::DEFAULT_CONFIG_REVISIONS,
    )
    .await
    .unwrap_or_else(|error| panic!("diff: {error:?}"));
    assert!(diff.has_differences());

    restrict(&fake, &namespace, Command::Deploy);
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
    assert!(report.ok, "first deploy: {}", report.to_text());
    let v2 = with_image(&steps, Phase::Main, "app:v2");
    let report = wikikube_deploy::deploy(&targets, &namespace, &v2, &options, &Quiet).await;
    assert!(report.ok, "second deploy: {}", report.to_text());

    restrict(&fake, &namespace, Command::Diff);
    wikikube_deploy::diff(
        &targets,
        &namespace,
        &rendered.objects(),
        wikikube_deploy::history::DEFAULT_CONFIG_REVISIONS,
    )
    .await
    .unwrap_or_else(|error| panic!("diff of a deployed site: {error:?}"));

    restrict(&fake, &namespace, Command::Rollback);
    let report = wikikube_deploy::rollback(&targets, &namespace, &options, &Quiet).await;
    assert!(report.ok, "rollback: {}", report.to_text());

    restrict(&fake, &namespace, Command::History);
    let history = wikikube_deploy::history(&targets, &namespace)
        .await
        .unwrap();
    assert_eq!(history[0].1.len(), 3);

    // The simulation's RBAC refuses: history's role cannot deploy, and says what is missing.
    let report = wikikube_deploy::deploy(&targets, &namespace, &v2, &options, &Quiet).await;
    let text = report.to_text();
    assert!(!report.ok && text.contains("forbidden"), "{text}");
}

/// A first deploy into a namespace that does not exist needs the Namespace writer: the deploy
/// role alone is refused at the cluster scope, with it the deploy goes through.
#[tokio::test]
async fn simulated_first_deploy_without_the_namespace_needs_the_namespace_writer() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let targets = [fake.target("eqiad")];
    let options = fast_options();
    restrict(&fake, &namespace, Command::Deploy);
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
    let text = report.to_text();
    assert!(
        !report.ok && text.contains("at the cluster scope"),
        "{text}"
    );
    let mut cluster: Vec<_> = rbac::cluster(Command::Deploy).into_iter().collect();
    cluster.push(rbac::NAMESPACE_WRITE);
    fake.restrict(&namespace, rbac::namespaced(Command::Deploy), cluster);
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
}
