//! The deploy lock (a Lease `wikikube-deploy` per cluster) against the loopback **simulation**
//! of an API server (`tests/support`): refusal while held, takeover of an abandoned lock,
//! release after success and after a rollback, rollback taking it, and losing it.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::site::{farm_steps, fast_options, with_image};
use support::{Behaviour, FakeApi, TwoClusters};
use wikikube_deploy::history::State;
use wikikube_deploy::lock::LEASE_NAME;
use wikikube_deploy::progress::Quiet;
use wikikube_deploy::{Error, Phase};

fn app_image(fake: &FakeApi, deployment: &str) -> String {
    let object = fake.object("deployments", deployment).unwrap();
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

/// Someone else's Lease, last renewed at `renewed` by its holder's clock, for one second: short,
/// so that a test watching it for its duration before taking it over is quick.
fn lease(holder: &str, renewed: jiff::Timestamp, namespace: &str) -> serde_json::Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": namespace, "resourceVersion": "other-1",
            "uid": "other-uid", "creationTimestamp": renewed.to_string()},
        "spec": {"holderIdentity": holder, "acquireTime": renewed.to_string(),
            "renewTime": renewed.to_string(), "leaseDurationSeconds": 1}})
}

/// A simulated eqiad cluster with the farm deployed on it once: the API, the namespace, the
/// farm's steps and the fast options of the deploys that follow.
async fn farm_deployed() -> (
    FakeApi,
    String,
    Vec<wikikube_deploy::Step>,
    wikikube_deploy::Options,
) {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let options = fast_options();
    let report = fake.deploy("eqiad", &namespace, &steps, &options).await;
    assert!(report.ok, "{}", report.to_text());
    (fake, namespace, steps, options)
}

fn writes(requests: &[String]) -> Vec<&String> {
    requests
        .iter()
        .filter(|request| !request.starts_with("GET"))
        .collect()
}

#[tokio::test]
async fn simulated_second_deploy_while_the_first_holds_the_lock_fails_at_once_and_changes_nothing()
{
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let targets = [fake.target("eqiad")];
    let mut first = fast_options();
    first.user = "alice".into();
    first.soak = Duration::from_secs(30);
    let mut stop = fake.notify_at_state("canary-applied");
    // The second, by someone else, with --resume: the flag that used to skip the only guard.
    let mut second = fast_options();
    second.user = "bob".into();
    second.resume = true;
    let v2 = with_image(&steps, Phase::Main, "app:v2-bob");

    let (report, elapsed, direct, requests) = tokio::select! {
        _ = wikikube_deploy::deploy(&targets, &namespace, &steps, &first, &Quiet) => panic!("alice's deploy soaks for 30 s"),
        outcome = async {
            stop.recv().await;
            fake.clear_requests();
            let started = Instant::now();
            let report = wikikube_deploy::deploy(&targets, &namespace, &v2, &second, &Quiet).await;
            let elapsed = started.elapsed();
            let requests = fake.requests();
            let direct = wikikube_deploy::lock::acquire(
                &fake.client(), &namespace, "bob@here pid 2", Duration::from_secs(60), None,
            ).await;
            (report, elapsed, direct, requests)
        } => outcome,
    };

    assert!(!report.ok);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let failure = report.failure.clone().unwrap();
    assert!(
        failure.starts_with("eqiad: another deploy holds the lock"),
        "{failure}"
    );
    assert!(failure.contains("alice@"), "{failure}");
    assert!(failure.contains("wait for it to finish"), "{failure}");
    assert!(
        failure.contains("expires 60 s after its last renewal"),
        "{failure}"
    );
    assert!(
        report.to_text().contains("deploy did not start"),
        "{}",
        report.to_text()
    );
    assert_eq!(report.clusters[0].revision, None);
    match direct {
        Err(Error::Locked { holder, .. }) => assert!(holder.starts_with("alice@"), "{holder}"),
        Err(other) => panic!("not Locked: {other}"),
        Ok(_) => panic!("took a held lock"),
    }

    // Only bob's attempt to create the Lease; alice's soak only reads.
    let written = writes(&requests);
    assert!(
        written
            .iter()
            .all(|request| request.starts_with("POST") && request.contains("/leases")),
        "{written:?}"
    );
    assert!(!written.is_empty());
    let held = fake.object("leases", LEASE_NAME).unwrap();
    assert!(held["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .starts_with("alice@"));
    let history = wikikube_deploy::history::read(&fake.client(), &namespace)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].state, State::CanaryApplied);
    assert_eq!(history[0].user, "alice");
    // Alice's first deploy has not reached main; bob's would have applied it.
    assert!(fake.object("deployments", "mw-web-main").is_none());
}

#[tokio::test]
async fn simulated_lock_left_by_a_dead_process_is_taken_over() {
    let (fake, namespace, steps, options) = farm_deployed().await;
    let five_minutes_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(5);
    fake.insert(
        "leases",
        &namespace,
        lease("ghost@gone pid 1", five_minutes_ago, &namespace),
    );
    fake.clear_requests();
    let v2 = with_image(&steps, Phase::Main, "app:v2");
    let report = fake.deploy("eqiad", &namespace, &v2, &options).await;
    assert!(report.ok, "{}", report.to_text());
    assert_eq!(app_image(&fake, "mw-web-main"), "app:v2");
    let requests = fake.requests();
    let path = format!("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases");
    assert!(
        requests[0].starts_with(&format!("POST {path}?")),
        "{requests:?}"
    );
    assert!(requests
        .iter()
        .any(|request| request.starts_with(&format!("PUT {path}/{LEASE_NAME}"))));
    assert!(fake.object("leases", LEASE_NAME).is_none(), "released");

    // A lock renewed a moment ago is not taken over, whatever its holder (a minute ahead: the
    // one-second Lease of `lease` would otherwise be over by our clock as the deploy starts).
    fake.insert(
        "leases",
        &namespace,
        lease(
            "carol@busy pid 3",
            jiff::Timestamp::now() + jiff::SignedDuration::from_mins(1),
            &namespace,
        ),
    );
    let report = fake.deploy("eqiad", &namespace, &steps, &options).await;
    assert!(report.failure.unwrap().contains("carol@busy pid 3"));
    assert_eq!(app_image(&fake, "mw-web-main"), "app:v2");
}

#[tokio::test]
async fn simulated_lease_is_gone_after_a_deploy_and_after_a_failed_one_that_rolled_back() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let targets = [fake.target("eqiad")];
    let options = fast_options();
    let report = wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
    assert!(fake.object("leases", LEASE_NAME).is_none());
    // The first deploy's Lease needed its namespace: created first, then locked.
    let requests = fake.requests();
    let lease_created = requests
        .iter()
        .position(|r| r.starts_with("POST") && r.contains("/leases"))
        .unwrap();
    let history_read = requests
        .iter()
        .position(|r| r.contains("configmaps/wikikube-history"))
        .unwrap();
    assert!(lease_created < history_read, "{requests:?}");

    fake.behave("v2-broken", Behaviour::Stuck);
    fake.clear_requests();
    let v2 = with_image(&steps, Phase::Canary, "app:v2-broken");
    let report = wikikube_deploy::deploy(&targets, &namespace, &v2, &options, &Quiet).await;
    assert!(!report.ok);
    assert!(report.clusters[0].rolled_back, "{}", report.to_text());
    assert!(fake.object("leases", LEASE_NAME).is_none());
    // Released only after the rollback's last write.
    let requests = fake.requests();
    let released = requests
        .iter()
        .position(|r| r.starts_with("DELETE") && r.contains("/leases/"))
        .unwrap();
    let last_record = requests
        .iter()
        .rposition(|r| r.starts_with("PATCH") && r.contains("wikikube-history"))
        .unwrap();
    assert!(last_record < released, "{requests:?}");
}

#[tokio::test]
async fn simulated_rollback_takes_the_lock() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let targets = [fake.target("eqiad")];
    let options = fast_options();
    let v2 = with_image(
        &with_image(&steps, Phase::Canary, "app:v2"),
        Phase::Main,
        "app:v2",
    );
    for version in [&steps, &v2] {
        assert!(
            wikikube_deploy::deploy(&targets, &namespace, version, &options, &Quiet)
                .await
                .ok
        );
    }
    fake.insert(
        "leases",
        &namespace,
        lease("dave@elsewhere pid 4", jiff::Timestamp::now(), &namespace),
    );
    fake.clear_requests();
    let refused = wikikube_deploy::rollback(&targets, &namespace, &options, &Quiet).await;
    assert!(!refused.ok);
    assert!(refused.failure.unwrap().contains("dave@elsewhere pid 4"));
    assert_eq!(app_image(&fake, "mw-web-main"), "app:v2");
    assert!(
        fake.requests().iter().all(|r| r.contains("/leases")),
        "nothing but the lock was asked for: {:?}",
        fake.requests()
    );

    fake.expire_lock(&namespace);
    fake.clear_requests();
    let report = wikikube_deploy::rollback(&targets, &namespace, &options, &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
    assert_ne!(app_image(&fake, "mw-web-main"), "app:v2");
    let requests = fake.requests();
    assert!(requests[0].starts_with("POST") && requests[0].contains("/leases"));
    assert!(
        requests.last().unwrap().starts_with("DELETE")
            && requests.last().unwrap().contains("/leases/")
    );
    assert!(fake.object("leases", LEASE_NAME).is_none());
}

#[tokio::test]
async fn simulated_lost_lock_stops_the_run_and_leaves_the_new_holder_alone() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let targets = [fake.target("eqiad")];
    let mut options = fast_options();
    options.soak = Duration::from_secs(30);
    // Renewed every third of a second.
    options.lock_duration = Duration::from_secs(1);
    let mut stop = fake.notify_at_state("canary-applied");
    let started = Instant::now();
    let (report, _) = tokio::join!(
        wikikube_deploy::deploy(&targets, &namespace, &steps, &options, &Quiet),
        async {
            stop.recv().await;
            // Someone took it over, as they would after our renewals stalled past its expiry.
            fake.insert(
                "leases",
                &namespace,
                lease("erin@other pid 5", jiff::Timestamp::now(), &namespace),
            );
        }
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!report.ok);
    let failure = report.failure.clone().unwrap();
    assert!(failure.contains("lost the deploy lock"), "{failure}");
    assert!(report
        .to_text()
        .contains("deploy failed: eqiad: lost the deploy lock"));
    let held = fake.object("leases", LEASE_NAME).expect("the new holder's");
    assert_eq!(held["spec"]["holderIdentity"], "erin@other pid 5");
    // Stopped where it was: nothing rolled back, the record says where.
    let history = wikikube_deploy::history::read(&fake.client(), &namespace)
        .await
        .unwrap();
    assert_eq!(history[0].state, State::CanaryApplied);
    assert_eq!(report.clusters[0].state, Some(State::CanaryApplied));
    assert!(!report.clusters[0].rolled_back);
}

#[tokio::test]
async fn simulated_lock_held_in_one_cluster_stops_the_deploy_before_any_cluster_is_touched() {
    let TwoClusters {
        eqiad,
        codfw,
        targets,
        namespace,
        steps,
    } = TwoClusters::deployed().await;
    let options = fast_options();
    codfw.insert(
        "leases",
        &namespace,
        lease("frank@codfw-host pid 6", jiff::Timestamp::now(), &namespace),
    );
    eqiad.clear_requests();
    let v2 = with_image(&steps, Phase::Canary, "app:v2");
    let report = wikikube_deploy::deploy(&targets, &namespace, &v2, &options, &Quiet).await;
    assert!(!report.ok);
    assert!(report
        .failure
        .unwrap()
        .starts_with("codfw: another deploy holds the lock"));
    assert_eq!(report.clusters[0].failure, None);
    // eqiad's lock was taken and given back; nothing else was asked of eqiad.
    assert!(eqiad.object("leases", LEASE_NAME).is_none());
    assert!(
        eqiad.requests().iter().all(|r| r.contains("/leases")),
        "{:?}",
        eqiad.requests()
    );
    assert!(!app_image(&eqiad, "mw-web-canary").contains("v2"));
}

#[tokio::test]
async fn simulated_live_lock_of_a_holder_whose_clock_is_an_hour_behind_is_not_taken_over() {
    let (fake, namespace, steps, options) = farm_deployed().await;
    let an_hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    fake.insert(
        "leases",
        &namespace,
        lease("dave@slow-clock pid 4", an_hour_ago, &namespace),
    );
    // Its holder renews it every 300 ms; by its clock, each renewal is an hour old.
    let renewing = {
        let (fake, namespace) = (fake.clone(), namespace.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                fake.renew_lock_an_hour_behind(&namespace);
            }
        })
    };
    fake.clear_requests();
    let v2 = with_image(&steps, Phase::Main, "app:v2");
    let report = fake.deploy("eqiad", &namespace, &v2, &options).await;
    renewing.abort();
    let failure = report.failure.unwrap_or_default();
    assert!(failure.contains("dave@slow-clock pid 4"), "{failure}");
    // Its only write was the create that found the Lease there.
    let requests = fake.requests();
    let written = writes(&requests);
    assert!(
        written
            .iter()
            .all(|request| request.starts_with("POST") && request.contains("/leases?")),
        "{written:?}"
    );
    assert_ne!(app_image(&fake, "mw-web-main"), "app:v2");
}

/// A namespace being deleted refuses new objects, the deploy lock's Lease first, with 403 and
/// the `NamespaceTerminating` cause (simulated as the API server's admission answers): the
/// deploy says that the namespace is being deleted, not that a Lease could not be created.
#[tokio::test]
async fn simulated_deploy_into_a_namespace_being_deleted_says_so() {
    let (fake, namespace, steps, options) = farm_deployed().await;
    fake.terminate_namespace(&namespace);
    let report = fake.deploy("eqiad", &namespace, &steps, &options).await;
    assert!(!report.ok);
    let text = report.to_text();
    assert!(
        text.contains("the namespace is being deleted")
            && text.contains(&format!("namespace {namespace} is being terminated")),
        "{text}"
    );

    let error = wikikube_deploy::lock::acquire(
        &fake.client(),
        &namespace,
        "me",
        Duration::from_secs(60),
        None,
    )
    .await
    .err()
    .expect("refused");
    assert!(
        matches!(error, Error::NamespaceTerminating { .. }),
        "{error:?}"
    );
}
