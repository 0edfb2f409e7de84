//! Against a real cluster (kind or k3s; see docs/deploy.md). Ignored by default, so a run says
//! it was skipped rather than counting it as passed: run it with
//! `WIKIKUBE_TEST_KUBECONFIG=PATH cargo test -p wikikube-deploy --test real_cluster -- --ignored`,
//! PATH a kubeconfig whose current context may be written to: the test creates the example
//! farm's namespace there and deletes nothing but what it created.

use std::time::Duration;

use wikikube_deploy::progress::Quiet;

mod support;

async fn target() -> Option<wikikube_deploy::Target> {
    let path = std::env::var("WIKIKUBE_TEST_KUBECONFIG").ok()?;
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("a readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("a usable kubeconfig");
    Some(wikikube_deploy::Target {
        name: "test".into(),
        client: kube::Client::try_from(config).unwrap(),
    })
}

#[tokio::test]
#[ignore = "needs a real cluster: set WIKIKUBE_TEST_KUBECONFIG and pass --ignored"]
async fn real_cluster_diff_is_a_dry_run_and_deploy_records_history() {
    let target = target()
        .await
        .expect("WIKIKUBE_TEST_KUBECONFIG names the kubeconfig of a real cluster");
    let (namespace, steps) = support::site::farm_steps("eqiad");
    let site =
        wikikube_model::load(&support::site::farm_dir(), "eqiad", &Default::default()).unwrap();
    let rendered = wikikube_render::render(&site, &Default::default()).unwrap();
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
    // The example's images cannot be pulled in a test cluster: expect the canary to fail its
    // rollout and the deploy to roll back, which exercises the real controller's conditions.
    let options = wikikube_deploy::Options {
        soak: Duration::from_secs(5),
        extra_wait: Duration::from_secs(30),
        ..wikikube_deploy::Options::default()
    };
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
    println!("{}", report.to_text());
    let history = wikikube_deploy::history(&targets, &namespace)
        .await
        .unwrap();
    let last = history[0].1.last().expect("a record");
    assert!(last.state.is_terminal(), "{last:?}");
}
