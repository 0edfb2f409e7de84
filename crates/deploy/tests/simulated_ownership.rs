//! Fields other field managers own, against the loopback **simulation** of an API server
//! (`tests/support`), which keeps ownership per manager as server-side apply does: a deploy
//! leaves another manager's fields in place, `diff` lists them, an apply refused because of one
//! names it, and `take_over_fields` removes them and leaves wikikube sole owner. Also what
//! `diff` says of a live object being deleted.

mod support;

use serde_json::{json, Value};
use support::site::{farm_rendered, farm_steps, fast_options};
use support::FakeApi;
use wikikube_deploy::progress::Quiet;

/// The main web Deployment's name (its PodDisruptionBudget has the same).
const MAIN: &str = "mw-web-main";
/// The Service in front of it.
const SERVICE: &str = "mw-web";

fn app_env(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|container| container["name"] == "app")
        .unwrap()["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variable| variable["name"].as_str().unwrap().to_string())
        .collect()
}

fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["manager"].as_str().unwrap().to_string())
        .collect()
}

async fn diff(fake: &FakeApi, namespace: &str) -> wikikube_deploy::DiffReport {
    let rendered = farm_rendered("eqiad");
    wikikube_deploy::diff(
        &[fake.target("eqiad")],
        namespace,
        &rendered.objects(),
        wikikube_deploy::history::DEFAULT_CONFIG_REVISIONS,
    )
    .await
    .unwrap()
}

/// Deploys `steps` to the simulated cluster `eqiad` and expects it to succeed.
async fn deploy_ok(
    fake: &FakeApi,
    namespace: &str,
    steps: &[wikikube_deploy::Step],
    options: &wikikube_deploy::Options,
) {
    let targets = [fake.target("eqiad")];
    let report = wikikube_deploy::deploy(&targets, namespace, steps, options, &Quiet).await;
    assert!(report.ok, "{}", report.to_text());
}

/// Fast options that take other managers' fields over.
fn taking_over() -> wikikube_deploy::Options {
    wikikube_deploy::Options {
        take_over_fields: true,
        ..fast_options()
    }
}

/// Every object's foreign fields in a diff, as `KIND/NAME: FIELD (MANAGERS)`.
fn foreign(report: &wikikube_deploy::DiffReport) -> Vec<String> {
    report.clusters[0]
        .objects
        .iter()
        .flat_map(|object| {
            object
                .foreign_fields
                .iter()
                .map(move |field| format!("{}: {field}", object.object))
        })
        .collect()
}

#[tokio::test]
async fn simulated_env_set_by_hand_stays_through_deploys_until_taken_over() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    deploy_ok(&fake, &namespace, &steps, &fast_options()).await;
    let rendered_env = app_env(&fake.object("deployments", MAIN).unwrap());

    // `kubectl set env deployment/mw-web-main DEBUG=1`
    fake.edit_as("kubectl-set", "deployments", MAIN, |deployment| {
        let containers = deployment["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap();
        let app = containers.iter_mut().find(|c| c["name"] == "app").unwrap();
        app["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "DEBUG", "value": "1"}));
    })
    .unwrap();

    // A deploy leaves it: wikikube never owned it.
    deploy_ok(&fake, &namespace, &steps, &fast_options()).await;
    let live = fake.object("deployments", MAIN).unwrap();
    assert_eq!(app_env(&live).last().map(String::as_str), Some("DEBUG"));
    assert!(managers(&live).contains(&"kubectl-set".to_string()));

    let report = diff(&fake, &namespace).await;
    assert_eq!(
        foreign(&report),
        [
            "Deployment/mw-web-main: spec.template.spec.containers[name=app].env[name=DEBUG] (kubectl-set)"
        ]
    );
    let text = report.to_text();
    assert!(
        text.contains("Deployment/mw-web-main in eqiad: fields of other field managers")
            && text.contains("1 with fields of other managers"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    let listed = json["clusters"][0]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|object| object["foreign_fields"].is_array())
        .unwrap();
    assert_eq!(
        listed["foreign_fields"][0]["path"],
        "spec.template.spec.containers[name=app].env[name=DEBUG]"
    );

    // Taken over: gone, and wikikube the only manager.
    deploy_ok(&fake, &namespace, &steps, &taking_over()).await;
    let live = fake.object("deployments", MAIN).unwrap();
    assert_eq!(app_env(&live), rendered_env);
    assert_eq!(managers(&live), ["wikikube"]);
    assert!(foreign(&diff(&fake, &namespace).await).is_empty());
}

#[tokio::test]
async fn simulated_hand_edited_disruption_budget_fails_the_apply_by_name_until_taken_over() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    let targets = [fake.target("eqiad")];
    deploy_ok(&fake, &namespace, &steps, &fast_options()).await;

    // `kubectl edit pdb/mw-web-main`: maxUnavailable replaced by minAvailable.
    fake.edit_as("kubectl-edit", "poddisruptionbudgets", MAIN, |budget| {
        let spec = budget["spec"].as_object_mut().unwrap();
        spec.remove("maxUnavailable");
        spec.insert("minAvailable".into(), json!(2));
    })
    .unwrap();
    // Both bounds together are invalid, so a hand edit cannot add the second one either.
    let refused = fake.edit_as("kubectl-edit", "poddisruptionbudgets", MAIN, |budget| {
        budget["spec"]["maxUnavailable"] = json!(1);
    });
    assert!(refused.unwrap_err().contains("cannot be both set"));

    // The rendered maxUnavailable comes back beside the hand's minAvailable: 422, named.
    let report =
        wikikube_deploy::deploy(&targets, &namespace, &steps, &fast_options(), &Quiet).await;
    assert!(!report.ok);
    let text = report.to_text();
    assert!(
        text.contains("spec.minAvailable (kubectl-edit)") && text.contains("--take-over-fields"),
        "{text}"
    );
    assert_eq!(
        fake.object("poddisruptionbudgets", MAIN).unwrap()["spec"]["minAvailable"],
        2,
        "a refused apply changes nothing"
    );

    // Its rollback re-applies the budget as it was, beside the same hand-set field: refused
    // too, so the deploy stays stopped, for --resume with the fields taken over.
    assert!(text.contains("ROLLBACK FAILED"), "{text}");
    let resume = wikikube_deploy::Options {
        resume: true,
        ..taking_over()
    };
    deploy_ok(&fake, &namespace, &steps, &resume).await;
    let budget = fake.object("poddisruptionbudgets", MAIN).unwrap();
    assert!(budget["spec"].get("minAvailable").is_none(), "{budget}");
    assert_eq!(budget["spec"]["maxUnavailable"], "10%");
    assert_eq!(managers(&budget), ["wikikube"]);
}

#[tokio::test]
async fn simulated_label_shared_with_another_manager_stays_when_the_site_drops_it() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    deploy_ok(&fake, &namespace, &steps, &fast_options()).await;
    // helm set a label to the value the site also renders: both own it.
    fake.edit_as("helm", "services", SERVICE, |service| {
        service["metadata"]["labels"]["team"] = json!("wiki");
    })
    .unwrap();
    let with_team = |steps: &[wikikube_deploy::Step], team: bool| -> Vec<wikikube_deploy::Step> {
        steps
            .iter()
            .cloned()
            .map(|mut step| {
                if step.object.kind == wikikube_render::ObjectKind::Service
                    && step.object.name == SERVICE
                {
                    if team {
                        step.body["metadata"]["labels"]["team"] = json!("wiki");
                    } else {
                        step.body["metadata"]["labels"]
                            .as_object_mut()
                            .unwrap()
                            .remove("team");
                    }
                }
                step
            })
            .collect()
    };
    deploy_ok(&fake, &namespace, &with_team(&steps, true), &fast_options()).await;
    // The site drops it: helm still owns it, so it stays.
    deploy_ok(
        &fake,
        &namespace,
        &with_team(&steps, false),
        &fast_options(),
    )
    .await;
    let service = fake.object("services", SERVICE).unwrap();
    assert_eq!(service["metadata"]["labels"]["team"], "wiki");
    assert_eq!(
        foreign(&diff(&fake, &namespace).await),
        ["Service/mw-web: metadata.labels.team (helm)"]
    );

    // Taken over, the site's word holds: the label goes.
    deploy_ok(&fake, &namespace, &with_team(&steps, false), &taking_over()).await;
    let service = fake.object("services", SERVICE).unwrap();
    assert!(
        service["metadata"]["labels"].get("team").is_none(),
        "{service}"
    );
    assert_eq!(managers(&service), ["wikikube"]);
}

#[tokio::test]
async fn simulated_diff_shows_an_object_being_deleted_as_created_anew() {
    let fake = FakeApi::start().await;
    let (namespace, steps) = farm_steps("eqiad");
    deploy_ok(&fake, &namespace, &steps, &fast_options()).await;
    // A prune or rollback a moment ago deleted it; its pods are still stopping.
    let mut dying = fake.object("poddisruptionbudgets", MAIN).unwrap();
    dying["metadata"]["deletionTimestamp"] = json!("2026-12-01T10:00:00Z");
    dying["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
    fake.insert("poddisruptionbudgets", &namespace, dying);

    let report = diff(&fake, &namespace).await;
    let budget = report.clusters[0]
        .objects
        .iter()
        .find(|object| object.object.to_string() == format!("PodDisruptionBudget/{MAIN}"))
        .unwrap();
    assert_eq!(budget.change, wikikube_deploy::diff::Change::Create);
    assert!(
        budget.text.starts_with(&format!(
            "PodDisruptionBudget/{MAIN} is being deleted: a deploy waits until it is gone, then creates it\n"
        )),
        "{}",
        budget.text
    );
    assert!(
        report.to_text().contains("1 to create"),
        "{}",
        report.to_text()
    );
}
