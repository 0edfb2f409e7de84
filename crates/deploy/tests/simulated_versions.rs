//! Versioned ConfigMaps and Secrets through deploy, gate, rollback and prune, against the loopback
//! **simulation** of an API server (`tests/support`), which refuses, as a real one does, any change
//! to the content of an immutable object.
//!
//! The change is the one that used to escape the canary gate: config management writes a new
//! private value. It must be a new Secret that the canary mounts first and main only after the
//! gate, and that a failed canary or a rollback leaves main without.

mod support;

use support::site::{farm_steps_with_upgrade_key, fast_options, private_secret, with_image};
use support::{Behaviour, FakeApi};
use wikikube_deploy::progress::Quiet;
use wikikube_deploy::{Phase, Step};

/// The Secret a Deployment's pods mount their private values from.
fn mounted_secret(fake: &FakeApi, deployment: &str) -> String {
    let object = fake
        .object("deployments", deployment)
        .unwrap_or_else(|| panic!("Deployment/{deployment} exists"));
    object["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|volume| volume["name"] == "secrets")
        .unwrap()["secret"]["secretName"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn deploy(fake: &FakeApi, namespace: &str, steps: &[Step]) -> wikikube_deploy::DeployReport {
    deploy_with(fake, namespace, steps, &fast_options()).await
}

async fn deploy_with(
    fake: &FakeApi,
    namespace: &str,
    steps: &[Step],
    options: &wikikube_deploy::Options,
) -> wikikube_deploy::DeployReport {
    fake.deploy("eqiad", namespace, steps, options).await
}

#[tokio::test]
async fn a_secret_change_reaches_the_canary_first_and_main_after_the_gate() {
    let fake = FakeApi::start().await;
    let (namespace, v1) = farm_steps_with_upgrade_key("eqiad", "upgrade-key-1");
    assert!(deploy(&fake, &namespace, &v1).await.ok);
    let (_, v2) = farm_steps_with_upgrade_key("eqiad", "upgrade-key-2");
    let (old, new) = (private_secret(&v1), private_secret(&v2));
    assert_ne!(old, new);

    fake.clear_requests();
    let report = deploy(&fake, &namespace, &v2).await;
    assert!(report.ok, "{}", report.to_text());
    let requests = fake.requests();
    let applied = |needle: &str| {
        requests
            .iter()
            .position(|request| {
                request.starts_with("PATCH") && request.contains(&format!("/{needle}?"))
            })
            .unwrap_or_else(|| panic!("no apply of {needle}: {requests:#?}"))
    };
    let smoke = requests
        .iter()
        .position(|request| request.contains("/proxy/wiki/Main_Page"))
        .expect("a smoke check");
    assert!(applied(&format!("secrets/{new}")) < applied("deployments/mw-web-canary"));
    assert!(applied("deployments/mw-web-canary") < smoke);
    assert!(smoke < applied("deployments/mw-web-main"));
    assert!(
        requests
            .iter()
            .all(|request| !(request.starts_with("PATCH") && request.contains(&format!("/{old}?")))),
        "the old version is never written to"
    );
    for deployment in ["mw-web-main", "mw-web-canary", "mw-api-ext-main"] {
        assert_eq!(mounted_secret(&fake, deployment), new, "{deployment}");
    }
    // The previous version stays for a rollback.
    assert!(fake.object("secrets", &old).is_some());
}

#[tokio::test]
async fn a_failing_canary_leaves_main_on_the_old_secret() {
    let fake = FakeApi::start().await;
    let (namespace, v1) = farm_steps_with_upgrade_key("eqiad", "upgrade-key-1");
    assert!(deploy(&fake, &namespace, &v1).await.ok);
    let (_, v2) = farm_steps_with_upgrade_key("eqiad", "upgrade-key-2");
    // The new value breaks the wiki: the canary fails its smoke check.
    fake.behave("v2-smokefail", Behaviour::FailsSmoke);
    let v2 = with_image(&v2, Phase::Canary, "app:v2-smokefail");
    let (old, new) = (private_secret(&v1), private_secret(&v2));

    let report = deploy(&fake, &namespace, &v2).await;
    assert!(!report.ok);
    for deployment in ["mw-web-main", "mw-web-canary", "mw-api-ext-main"] {
        assert_eq!(mounted_secret(&fake, deployment), old, "{deployment}");
    }
    assert!(fake.object("secrets", &old).is_some());
    assert!(
        fake.object("secrets", &new).is_none(),
        "the failed revision's version is deleted"
    );
    let inventory = wikikube_deploy::inventory::read(&fake.client(), &namespace)
        .await
        .unwrap();
    assert!(inventory.objects.iter().all(|object| object.name != new));
}

#[tokio::test]
async fn rollback_points_main_back_at_the_previous_versions() {
    let fake = FakeApi::start().await;
    let (namespace, v1) = farm_steps_with_upgrade_key("eqiad", "upgrade-key-1");
    assert!(deploy(&fake, &namespace, &v1).await.ok);
    let (_, v2) = farm_steps_with_upgrade_key("eqiad", "upgrade-key-2");
    assert!(deploy(&fake, &namespace, &v2).await.ok);
    assert_eq!(mounted_secret(&fake, "mw-web-main"), private_secret(&v2));

    let old = private_secret(&v1);
    let uid = fake.object("secrets", &old).expect("kept after v2")["metadata"]["uid"].clone();
    let report =
        wikikube_deploy::rollback(&[fake.target("eqiad")], &namespace, &fast_options(), &Quiet)
            .await;
    assert!(report.ok, "{}", report.to_text());
    for deployment in ["mw-web-main", "mw-web-canary", "mw-api-ext-main"] {
        assert_eq!(mounted_secret(&fake, deployment), old, "{deployment}");
    }
    // It was still there (the same object, not a copy made again): the rollback re-applied it
    // unchanged, which an immutable object accepts; the newer version stays too, as a version
    // of a recent revision.
    assert_eq!(
        fake.object("secrets", &old).unwrap()["metadata"]["uid"],
        uid
    );
    assert!(fake.object("secrets", &private_secret(&v2)).is_some());
}

#[tokio::test]
async fn prune_removes_only_versions_that_no_recent_revision_uses() {
    let fake = FakeApi::start().await;
    let mut options = fast_options();
    options.config_revisions = 2;
    let mut versions = Vec::new();
    for key in 1..=4 {
        let (namespace, steps) =
            farm_steps_with_upgrade_key("eqiad", &format!("upgrade-key-{key}"));
        if key == 1 {
            // Someone's copy with a versioned-looking name, never applied by wikikube.
            fake.insert(
                "secrets",
                &namespace,
                serde_json::json!({"apiVersion": "v1", "kind": "Secret", "immutable": true,
                    "metadata": {"name": "farm-private-0123456789", "namespace": namespace,
                        "labels": {"app.kubernetes.io/managed-by": "wikikube"}}}),
            );
        }
        let report = deploy_with(&fake, &namespace, &steps, &options).await;
        assert!(report.ok, "{}", report.to_text());
        versions.push(private_secret(&steps));
    }
    let secrets: Vec<String> = fake
        .names("secrets")
        .into_iter()
        .filter(|name| name.starts_with("farm-private-"))
        .collect();
    let mut expected = vec![
        versions[2].clone(),
        versions[3].clone(),
        "farm-private-0123456789".to_string(),
    ];
    expected.sort();
    let mut secrets = secrets;
    secrets.sort();
    assert_eq!(secrets, expected, "versions 3 and 4 kept, 1 and 2 pruned");
    // The ConfigMaps did not change between these revisions: one version each, kept.
    let php: Vec<String> = fake
        .names("configmaps")
        .into_iter()
        .filter(|name| name.starts_with("mw-web-main-php-"))
        .collect();
    assert_eq!(php.len(), 1, "{php:?}");
}

#[test]
fn config_revisions_out_of_range_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    for (value, bad) in [("0", true), ("6", true), ("1", false), ("5", false)] {
        let path = dir.path().join("deploy.toml");
        std::fs::write(
            &path,
            format!("[canary]\nsoak_seconds = 1\n\n[retention]\nconfig_revisions = {value}\n"),
        )
        .unwrap();
        let result = wikikube_deploy::DeployConfig::read(&path);
        if bad {
            let message = result.unwrap_err().to_string();
            assert!(message.contains("deploy.toml"), "{message}");
            assert!(message.contains("line 5"), "{message}");
            assert!(message.contains("expected from 1 to 5"), "{message}");
        } else {
            let config = result.unwrap();
            assert_eq!(config.retention.config_revisions.to_string(), value);
        }
    }
}
