//! The train against the loopback **simulation** of an API server (`tests/support`): a group of
//! the example farm promoted to the other version its image carries is a configuration rollout,
//! with update.php for the moved wikis first, then the canary gate; a failed update.php stops
//! it before any pod changes. The simulation's Job controller runs no PHP: whether update.php
//! would succeed is scripted; what is checked is what wikikube creates and in which order.

mod support;

use support::site::{farm_dir, fast_options, fast_schema};
use support::{FakeApi, JobEnd};
use wikikube_deploy::DeployReport;

/// The example farm as loaded, and as it is once `group1` runs 1.39.17-wmf.2.
fn sites() -> (wikikube_model::ResolvedSite, wikikube_model::ResolvedSite) {
    let site = wikikube_model::load(
        &farm_dir(),
        "eqiad",
        &wikikube_model::LoadOptions::default(),
    )
    .unwrap();
    let planned = wikikube_train::promote(&site, "group1", "1.39.17-wmf.2").unwrap();
    let mut promoted = site.clone();
    planned.apply(&mut promoted);
    (site, promoted)
}

/// Deploys `site` with its schema Jobs to the simulated cluster `eqiad`.
async fn deploy(fake: &FakeApi, site: &wikikube_model::ResolvedSite) -> DeployReport {
    let rendered =
        wikikube_render::render(site, &wikikube_render::RenderOptions::default()).unwrap();
    let mut options = fast_options();
    options.schema = Some(fast_schema(rendered.maintenance.clone().unwrap()));
    let steps = wikikube_deploy::plan(&rendered);
    let namespace = &site.spec.site.namespace;
    fake.deploy("eqiad", namespace, &steps, &options).await
}

fn images(fake: &FakeApi, deployment: &str) -> Vec<String> {
    fake.object("deployments", deployment).unwrap()["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image"].as_str().unwrap().to_string())
        .collect()
}

fn wikiversions_of(fake: &FakeApi, deployment: &str) -> String {
    fake.object("deployments", deployment).unwrap()["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "wikiversions")
        .unwrap()["configMap"]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn simulated_promotion_updates_the_moved_wikis_then_rolls_config_canary_first() {
    let fake = FakeApi::start().await;
    let (site, promoted) = sites();
    let report = deploy(&fake, &site).await;
    assert!(report.ok, "{}", report.to_text());
    let installed = fake.names("jobs");
    let images_before = images(&fake, "mw-web-main");
    let versions_before = wikiversions_of(&fake, "mw-web-main");

    fake.clear_requests();
    let report = deploy(&fake, &promoted).await;
    assert!(report.ok, "{}", report.to_text());

    // update.php for the two wikis that moved, and for nothing else.
    let mut updates: Vec<String> = fake
        .names("jobs")
        .into_iter()
        .filter(|name| !installed.contains(name))
        .collect();
    updates.sort();
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert!(
        updates[0].starts_with("mwupdate-commonswiki-"),
        "{updates:?}"
    );
    assert!(updates[1].starts_with("mwupdate-enwiki-"), "{updates:?}");

    // Configuration only: the same images, a new wikiversions ConfigMap.
    assert_eq!(images(&fake, "mw-web-main"), images_before);
    let versions_after = wikiversions_of(&fake, "mw-web-main");
    assert_ne!(versions_after, versions_before);
    let data = fake.object("configmaps", &versions_after).unwrap()["data"]["wikiversions.php"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(data.contains("'enwiki' => '1.39.17-wmf.2'"), "{data}");

    // In order: the Jobs, then the canary, then main.
    let requests = fake.requests();
    let first = |method: &str, path: &str| {
        requests
            .iter()
            .position(|r| r.starts_with(method) && r.contains(path))
            .unwrap_or_else(|| panic!("no {method} of {path}: {requests:#?}"))
    };
    let job = first("POST", "/jobs");
    let canary = first("PATCH", "/deployments/mw-web-canary");
    let main = first("PATCH", "/deployments/mw-web-main");
    assert!(job < canary && canary < main, "{requests:#?}");
}

#[tokio::test]
async fn simulated_failed_update_stops_a_promotion_before_any_pod_changes() {
    let fake = FakeApi::start().await;
    let (site, promoted) = sites();
    let report = deploy(&fake, &site).await;
    assert!(report.ok, "{}", report.to_text());
    let versions_before = wikiversions_of(&fake, "mw-web-canary");

    fake.script_job(
        "mwupdate-enwiki",
        &["Wikimedia\\Rdbms\\DBQueryError: Error 1146: Table 'enwiki.bt_target' doesn't exist"],
        JobEnd::Exit(1),
    );
    fake.clear_requests();
    let report = deploy(&fake, &promoted).await;
    assert!(!report.ok);
    let failure = report.failure.clone().unwrap();
    assert!(failure.contains("wiki enwiki"), "{failure}");
    assert!(failure.contains("update.php"), "{failure}");
    let patched: Vec<String> = fake
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PATCH") && r.contains("/deployments/"))
        .collect();
    assert!(patched.is_empty(), "{patched:?}");
    assert_eq!(wikiversions_of(&fake, "mw-web-canary"), versions_before);
}
