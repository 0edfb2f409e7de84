//! A release of the example farm from its site directory to a cluster: a real build (mmdebstrap,
//! the farm's locked Debian packages), a real push to Debian's `docker-registry` on loopback,
//! then diff and deploy against the loopback **simulation** of an API server that the deploy
//! crate's tests use (deploy/tests/support: it stores objects and plays the Deployment and Job
//! controllers; it is not Kubernetes).
//!
//! One test, in order, because each step starts from the state the one before left: a release
//! that stops after the diff, the first real release (the pods name the pushed digests, the
//! record is written), the same release again (nothing to deploy), an edit whose canary fails
//! its gate (rolled back; the record still names what runs), and a registry that refuses
//! (nothing recorded, no cluster touched).

#[path = "../../deploy/tests/support/mod.rs"]
mod support;

mod common;

use std::path::{Path, PathBuf};

use support::{Behaviour, FakeApi};
use wikikube_release::{Clusters, Quiet, Report, Request, Until};
use wikikube_test_support::registry::Registry;

/// The image cache the farm end-to-end test builds into (target/tmp/wikikube-cache), so that
/// `cargo test --workspace` builds the farm's Debian bases once, whichever test runs first.
fn cache_dir() -> PathBuf {
    wikikube_test_support::image_cache_dir(env!("CARGO_TARGET_TMPDIR"))
}

fn request(site: &Path, until: Until) -> Request {
    common::eqiad_release(site, cache_dir(), support::site::fast_options(), until)
}

/// The app image of every container named `app` in the cluster's Deployments of `release`.
fn app_images(fake: &FakeApi, release: &str) -> Vec<String> {
    fake.names("deployments")
        .into_iter()
        .filter(|name| name.ends_with(&format!("-{release}")) && name.starts_with("mw-"))
        .map(|name| {
            let deployment = fake.object("deployments", &name).unwrap();
            deployment["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|container| container["name"] == "app")
                .unwrap_or_else(|| panic!("{name} has an app container"))["image"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn app_reference(report: &Report) -> String {
    report
        .images
        .iter()
        .find(|image| image.image == "app")
        .expect("the app image was pushed")
        .reference
        .clone()
}

fn record(site: &Path) -> Option<String> {
    std::fs::read_to_string(site.join(wikikube_model::pushed::FILE)).ok()
}

#[test]
fn a_change_goes_from_the_site_directory_to_the_cluster_by_digest() {
    for (program, package) in [
        ("mmdebstrap", "mmdebstrap"),
        ("bwrap", "bubblewrap"),
        ("patch", "patch"),
    ] {
        wikikube_test_support::require(program, package);
    }
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let site = common::site_copy(dir.path(), &registry.address);
    let runtime = wikikube_deploy::runtime().unwrap();
    let fake = runtime.block_on(FakeApi::start());
    // A kube client starts its worker on the runtime it is made in.
    let clusters = || Clusters::Given(vec![runtime.block_on(async { fake.target("eqiad") })]);

    // Up to the diff: everything would be created; nothing is touched or recorded.
    let report =
        wikikube_release::release(&request(&site, Until::Diff), clusters(), &runtime, &Quiet)
            .expect("a release up to the diff");
    eprintln!("{}", report.to_text());
    assert!(report.ok, "{}", report.to_text());
    assert!(report.diff.has_differences());
    assert!(report.deploy.is_none() && !report.recorded);
    assert!(
        fake.names("deployments").is_empty(),
        "the diff created nothing"
    );
    assert_eq!(record(&site), None);
    let app = app_reference(&report);
    assert!(
        app.starts_with(&format!("{}/wikikube/app@sha256:", registry.address)),
        "{app}"
    );

    // The release: every main and canary pod runs the pushed app digest; the record names it.
    let report =
        wikikube_release::release(&request(&site, Until::Deploy), clusters(), &runtime, &Quiet)
            .expect("the release");
    eprintln!("{}", report.to_text());
    assert!(report.ok, "{}", report.to_text());
    assert!(report.recorded);
    let deployed = report.deploy.as_ref().expect("a deploy ran");
    assert!(deployed.ok, "{}", deployed.to_text());
    assert_eq!(
        app_reference(&report),
        app,
        "the same build, the same digest"
    );
    let mains = app_images(&fake, "main");
    assert!(!mains.is_empty());
    assert!(mains.iter().all(|image| image == &app), "{mains:?}");
    assert!(app_images(&fake, "canary")
        .iter()
        .all(|image| image == &app));
    let recorded = record(&site).expect("the digests are recorded");
    let digest = app.split_once('@').unwrap().1;
    assert!(recorded.contains(digest), "{recorded}");
    // The installer ran for the new wikis, as Jobs, before any release rolled.
    assert!(
        !fake.names("jobs").is_empty(),
        "no schema Job ran: {:?}",
        report.stages
    );
    let stages: Vec<&str> = report
        .stages
        .iter()
        .map(|stage| stage.stage.name())
        .collect();
    assert_eq!(
        stages,
        ["build", "push", "render", "diff", "deploy", "record"]
    );

    // Again with no change: nothing is rebuilt or uploaded, nothing differs, nothing deploys.
    let report =
        wikikube_release::release(&request(&site, Until::Deploy), clusters(), &runtime, &Quiet)
            .unwrap();
    eprintln!("{}", report.to_text());
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(report.push.uploaded, 0, "{:?}", report.push);
    assert!(!report.diff.has_differences(), "{}", report.diff.to_text());
    assert!(report.deploy.is_none());
    assert!(
        report.outcome.contains("nothing differs"),
        "{}",
        report.outcome
    );

    // An edited setting whose canary fails its smoke checks: rolled back, record unchanged.
    common::edit_sitename(&site, "Farm English (edited)");
    fake.behave("canary", Behaviour::FailsSmoke);
    let before = record(&site);
    let report =
        wikikube_release::release(&request(&site, Until::Deploy), clusters(), &runtime, &Quiet)
            .unwrap();
    eprintln!("{}", report.to_text());
    assert!(
        !report.ok,
        "the canary failed its gate: {}",
        report.to_text()
    );
    assert!(!report.recorded);
    let edited = app_reference(&report);
    assert_ne!(edited, app, "the setting is in the app image");
    assert!(
        report.push.uploaded > 0 && report.push.uploaded < 10,
        "only the new configuration layer and manifests: {:?}",
        report.push
    );
    assert_eq!(record(&site), before, "a failed release records nothing");
    assert!(
        app_images(&fake, "main").iter().all(|image| image == &app),
        "main still runs the released digest"
    );
    assert!(report.outcome.contains("rolled back"), "{}", report.outcome);

    // A push to another registry than the one the environment runs from pins nothing it runs
    // (the digest pinned by the record is the first registry's): refused before any cluster.
    fake.clear_requests();
    let other = Registry::start();
    let mut elsewhere = request(&site, Until::Deploy);
    elsewhere.registry = Some(other.address.clone());
    let error = wikikube_release::release(&elsewhere, clusters(), &runtime, &Quiet)
        .expect_err("the environment does not run images from there");
    assert!(
        matches!(error, wikikube_release::Error::NothingPinned { .. }),
        "{error}"
    );
    assert_eq!(record(&site), before);
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());

    // A registry that is not there: the push fails, naming it; nothing recorded or touched.
    let mut unreachable = request(&site, Until::Deploy);
    unreachable.registry = Some(format!("127.0.0.1:{}", wikikube_test_support::free_port()));
    unreachable.registry_client.timeout = std::time::Duration::from_secs(2);
    let error = wikikube_release::release(&unreachable, clusters(), &runtime, &Quiet)
        .expect_err("nothing listens there");
    let text = format!("{error}");
    assert!(
        text.contains(unreachable.registry.as_deref().unwrap()),
        "{text}"
    );
    assert_eq!(record(&site), before);
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}
