//! From editing one MediaWiki setting in the site to the canary running it: wikikube's own time
//! for each stage of `wikikube release` (build, push to Debian's `docker-registry` on loopback,
//! render by digest, diff, deploy against the loopback **simulation** of an API server of the
//! deploy crate's tests, record). The simulation finishes a rollout after two reads, so the
//! deploy figure is our own overhead, not a rollout; the soak is 0 and there are no smoke checks.
//!
//! It builds real images (the example farm's Debian bases, MediaWiki from Debian's package) into
//! WIKIKUBE_BENCH_CACHE (default ~/.cache/wikikube): the first run on a machine builds them
//! cold, which is not what it measures. Run with `bench/release.sh`; it is kept out of
//! `cargo test` (`test = false`).

#[path = "../../deploy/tests/support/mod.rs"]
mod support;

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;

use wikikube_release::{Clusters, Quiet, Report, Request, Until};
use wikikube_test_support::registry::Registry;

fn request(site: &std::path::Path) -> Request {
    let cache = std::env::var_os("WIKIKUBE_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(wikikube_image::Cache::default_dir);
    let deploy = wikikube_deploy::Options {
        user: "bench".into(),
        soak: std::time::Duration::ZERO,
        smoke: Vec::new(),
        poll: std::time::Duration::from_millis(1),
        ..wikikube_deploy::Options::default()
    };
    common::eqiad_release(site, cache, deploy, Until::Deploy)
}

fn seconds(report: &Report, stage: &str) -> f64 {
    report
        .stages
        .iter()
        .filter(|timed| timed.stage.name() == stage)
        .map(|timed| timed.seconds)
        .sum()
}

fn main() {
    // `cargo test --all-targets` runs a harness-less bench without `--bench`: it builds images
    // for minutes, so it runs only under `cargo bench` (which passes `--bench`).
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("skipped: run with `cargo bench` (see the file's documentation)");
        return;
    }
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let site = common::site_copy(dir.path(), &registry.address);
    let runtime = wikikube_deploy::runtime().unwrap();
    let fake = runtime.block_on(support::FakeApi::start());
    let release = |what: &str| {
        let clusters = Clusters::Given(vec![runtime.block_on(async { fake.target("eqiad") })]);
        let report = wikikube_release::release(&request(&site), clusters, &runtime, &Quiet)
            .unwrap_or_else(|error| panic!("{what}: {error:?}"));
        assert!(report.ok, "{what}: {}", report.to_text());
        report
    };

    // The first release to an empty cluster (warm image cache, empty registry).
    let first = release("first release");
    let rounds = 3;
    let mut edits = Vec::new();
    for round in 0..rounds {
        common::edit_sitename(&site, &format!("Farm English (edit {round})"));
        let report = release("release of an edit");
        let canary = fake
            .object("deployments", "mw-web-canary")
            .expect("the canary exists");
        let app = report
            .images
            .iter()
            .find(|image| image.image == "app")
            .unwrap()
            .reference
            .clone();
        assert!(
            canary.to_string().contains(&app),
            "the canary runs the edited app image {app}"
        );
        edits.push(report);
    }
    let median = |stage: &str| {
        let mut values: Vec<f64> = edits.iter().map(|report| seconds(report, stage)).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let stages = ["build", "push", "render", "diff", "deploy", "record"];
    println!(
        "release bench: example farm, environment eqiad (1 simulated cluster), median of {rounds} edits"
    );
    println!("{:<10} {:>14} {:>14}", "stage", "first (s)", "edit (s)");
    for stage in stages {
        println!(
            "{stage:<10} {:>14.2} {:>14.2}",
            seconds(&first, stage),
            median(stage)
        );
    }
    let total = |report: &Report| report.stages.iter().map(|s| s.seconds).sum::<f64>();
    let mut totals: Vec<f64> = edits.iter().map(total).collect();
    totals.sort_by(f64::total_cmp);
    println!(
        "{:<10} {:>14.2} {:>14.2}",
        "total",
        total(&first),
        totals[totals.len() / 2]
    );
    let last = edits.last().unwrap();
    println!(
        "an edit uploads {} blobs ({} bytes); {} already in the registry",
        last.push.uploaded, last.push.bytes, last.push.skipped
    );
}
