//! Time to diff and to deploy 5 deployments x 3 releases (main, canary, debug) in 2 clusters,
//! against the loopback **simulation** of an API server (`tests/support`), whose controller
//! finishes a rollout after two reads. So the figures are wikikube's own overhead (planning,
//! serialization, requests over loopback, bookkeeping) plus the simulation's, with no rollout
//! time: the part that must stay negligible next to a real rollout. Soak is 0.
//!
//! Run with `bench/deploy.sh` or `cargo bench -p wikikube-deploy --bench deploy`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use wikikube_deploy::progress::Quiet;

/// Writes a copy of the example farm with 5 deployments of 3 releases each and 2 clusters.
fn bench_site(dir: &std::path::Path) {
    let farm = support::site::farm_dir();
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    };
    copy(&farm, dir);
    copy(&farm.join("environments"), &dir.join("environments"));
    copy(
        &farm.join("environments/production"),
        &dir.join("environments/production"),
    );
    copy(&farm.join("private"), &dir.join("private"));
    let mut site = std::fs::read_to_string(dir.join("site.toml")).unwrap();
    // mw-web and mw-api-ext have main and canary; mw-debug has none. Give all five deployments
    // main, canary and debug.
    site.push_str(
        "\n[deployments.mw-web.releases.debug]\n[deployments.mw-api-ext.releases.debug]\n",
    );
    site.push_str(
        "[deployments.mw-debug.releases.main]\n[deployments.mw-debug.releases.canary]\n[deployments.mw-debug.releases.debug]\n",
    );
    for name in ["mw-api-int", "mw-jobrunner"] {
        site.push_str(&format!(
            "[deployments.{name}]\nreplicas = 2\n[deployments.{name}.releases.main]\n\
             [deployments.{name}.releases.canary]\nreplicas = 1\n[deployments.{name}.releases.debug]\nreplicas = 1\n"
        ));
    }
    std::fs::write(dir.join("site.toml"), site).unwrap();
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    bench_site(dir.path());
    let site =
        wikikube_model::load(dir.path(), "eqiad", &wikikube_model::LoadOptions::default()).unwrap();
    let rendered =
        wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap();
    let steps = wikikube_deploy::plan(&rendered);
    let namespace = site.spec.site.namespace.clone();
    let deployments = steps
        .iter()
        .filter(|step| step.object.kind == wikikube_render::ObjectKind::Deployment)
        .count();
    let names: Vec<&str> = steps
        .iter()
        .filter(|step| step.object.kind == wikikube_render::ObjectKind::Deployment)
        .map(|step| step.object.name.as_str())
        .collect();
    assert_eq!(
        deployments, 16,
        "5 deployments x 3 releases, and the edge: {names:?}"
    );

    let runtime = wikikube_deploy::runtime().unwrap();
    let options = wikikube_deploy::Options {
        user: "bench".into(),
        soak: Duration::ZERO,
        smoke: Vec::new(),
        poll: Duration::from_millis(1),
        extra_wait: Duration::from_secs(5),
        parallel: 2,
        resume: false,
        lock_duration: std::time::Duration::from_secs(60),
        ..wikikube_deploy::Options::default()
    };
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this without it, only to
    // show that it still works, and one round does that.
    let rounds = if std::env::args().any(|argument| argument == "--bench") {
        5
    } else {
        1
    };
    let (mut first, mut again, mut diffs, mut requests) = (Vec::new(), Vec::new(), Vec::new(), 0);
    // The simulated servers' own time answering, per run and summed over both: what of each
    // figure is the simulation's rather than wikikube's.
    let (mut first_busy, mut again_busy, mut diff_busy) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        runtime.block_on(async {
            let fakes = [
                support::FakeApi::start().await,
                support::FakeApi::start().await,
            ];
            // Replaced pods stop in simulated time; a microsecond per simulated second keeps
            // their preStop sleep out of the figures, which are about our own overhead.
            for fake in &fakes {
                fake.termination_second(Duration::from_micros(1));
            }
            let targets = [fakes[0].target("eqiad"), fakes[1].target("codfw")];
            let busy = || fakes[0].busy() + fakes[1].busy();
            let start = Instant::now();
            let report =
                wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
            first.push(start.elapsed());
            first_busy.push(busy());
            assert!(report.ok, "{}", report.to_text());
            // A change to every Deployment: the realistic redeploy.
            let next = support::site::with_image(
                &steps,
                wikikube_deploy::Phase::Main,
                &format!("app:r{round}"),
            );
            let next = support::site::with_image(
                &next,
                wikikube_deploy::Phase::Canary,
                &format!("app:r{round}"),
            );
            let next = support::site::with_image(
                &next,
                wikikube_deploy::Phase::Debug,
                &format!("app:r{round}"),
            );
            let start = Instant::now();
            let report =
                wikikube_deploy::deploy(&targets, &namespace, &next, &options, &Quiet).await;
            again.push(start.elapsed());
            again_busy.push(busy() - first_busy[first_busy.len() - 1]);
            assert!(report.ok, "{}", report.to_text());
            let before_diff = busy();
            let start = Instant::now();
            let diff = wikikube_deploy::diff(
                &targets,
                &namespace,
                &rendered.objects(),
                wikikube_deploy::history::DEFAULT_CONFIG_REVISIONS,
            )
            .await
            .unwrap();
            diffs.push(start.elapsed());
            diff_busy.push(busy() - before_diff);
            assert!(diff.has_differences());
            requests = fakes[0].requests().len();
        });
    }
    let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
    println!(
        "deploy bench: {} objects ({deployments} Deployments) per cluster, 2 clusters, simulated API server, median of {rounds}",
        steps.len()
    );
    println!(
        "  first deploy: {:8.1} ms, of which the simulated servers {:.1} ms",
        ms(median(first)),
        ms(median(first_busy))
    );
    println!(
        "  redeploy:     {:8.1} ms (every Deployment changed), of which the simulated servers {:.1} ms",
        ms(median(again)),
        ms(median(again_busy))
    );
    println!(
        "  diff:         {:8.1} ms, of which the simulated servers {:.1} ms",
        ms(median(diffs)),
        ms(median(diff_busy))
    );
    println!("  requests to one cluster for deploy + redeploy + diff: {requests}");
}
