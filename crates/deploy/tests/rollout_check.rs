//! The rollout completion check on hand-written Deployment statuses (pure; no server).

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use wikikube_deploy::rollout::{check, Rollout};

fn deployment(status: serde_json::Value) -> Deployment {
    serde_json::from_value(
        json!({"metadata": {"name": "mw-web-canary", "generation": 3},
        "spec": {"replicas": 2, "selector": {}, "template": {}}, "status": status}),
    )
    .unwrap()
}

fn since() -> jiff::Timestamp {
    "2026-01-01T12:00:00Z".parse().unwrap()
}

fn deadline(time: &str) -> serde_json::Value {
    json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
        "lastUpdateTime": time, "lastTransitionTime": time}])
}

#[test]
fn complete_needs_the_new_generation_observed_and_every_count() {
    let done = json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
        "readyReplicas": 2, "availableReplicas": 2});
    assert_eq!(check(&deployment(done.clone()), since()), Rollout::Complete);
    let mut old = done.clone();
    old["observedGeneration"] = json!(2);
    assert!(
        matches!(check(&deployment(old), since()), Rollout::Waiting(m) if m.contains("generation 3"))
    );
    let mut leftover = done.clone();
    leftover["replicas"] = json!(3);
    assert!(
        matches!(check(&deployment(leftover), since()), Rollout::Waiting(m) if m.contains("old replica"))
    );
    let mut unavailable = done;
    unavailable["availableReplicas"] = json!(1);
    assert!(matches!(
        check(&deployment(unavailable), since()),
        Rollout::Waiting(_)
    ));
}

#[test]
fn a_deadline_condition_older_than_the_apply_is_stale() {
    let status = json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1,
        "readyReplicas": 2, "availableReplicas": 2, "conditions": deadline("2026-01-01T11:00:00Z")});
    assert!(matches!(
        check(&deployment(status), since()),
        Rollout::Waiting(_)
    ));
}

#[test]
fn a_fresh_deadline_condition_fails_fast() {
    let status = json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1,
        "readyReplicas": 2, "availableReplicas": 2, "conditions": deadline("2026-01-01T12:05:00Z")});
    assert!(
        matches!(check(&deployment(status), since()), Rollout::Failed(m) if m.contains("deadline"))
    );
}

#[test]
fn a_deadline_condition_is_not_read_before_the_controller_saw_the_new_generation() {
    let status = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
        "readyReplicas": 2, "availableReplicas": 2, "conditions": deadline("2026-01-01T12:05:00Z")});
    assert!(matches!(
        check(&deployment(status), since()),
        Rollout::Waiting(_)
    ));
}

#[test]
fn replaced_pods_still_terminating_keep_a_rollout_waiting() {
    // `replicas` leaves out terminating pods: without `terminatingReplicas` this looks done.
    let mut status = json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2,
        "readyReplicas": 2, "availableReplicas": 2, "terminatingReplicas": 2});
    assert!(matches!(
        check(&deployment(status.clone()), since()),
        Rollout::Waiting(m) if m.contains("2 replaced pod(s) still terminating")
    ));
    status["terminatingReplicas"] = json!(0);
    assert_eq!(check(&deployment(status), since()), Rollout::Complete);
}
