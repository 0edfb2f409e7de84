//! The Kubernetes features the example farm's rendered objects use, listed with the version from
//! which each is on by default, and none newer than the oldest version wikikube supports
//! (`kubernetes_version::MINIMUM`, 1.30, stated in README.md and docs/deploy.md). Fields an old
//! API server does not know at all are the strict schema test's (`kubernetes_schemas.rs`).

mod common;

use wikikube_render::kubernetes_version::{
    needed, uses_of, Use, MINIMUM, NATIVE_SIDECAR, SLEEP_ACTION,
};
use wikikube_render::{lint, render, Object, RenderOptions, Rule};

fn table(uses: &[Use]) -> String {
    uses.iter()
        .map(|found| {
            format!(
                "{:>5}  {}  {}{}",
                found.feature.since.to_string(),
                found.feature.name,
                found.object,
                found.at
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_needs_nothing_newer_than_the_oldest_supported_kubernetes() {
    assert_eq!(MINIMUM.to_string(), "1.30");
    for environment in ["local", "eqiad", "codfw"] {
        let rendered = render(&common::load(environment), &RenderOptions::default())
            .unwrap_or_else(|error| panic!("{environment}: {error}"));
        let uses = uses_of(&rendered);
        println!("{environment}:\n{}", table(&uses));
        assert!(
            uses.iter().any(|found| found.feature == SLEEP_ACTION),
            "{environment}: the preStop sleeps are seen:\n{}",
            table(&uses)
        );
        if rendered.maintenance.is_some() {
            assert!(
                uses.iter().any(|found| found.feature == NATIVE_SIDECAR),
                "{environment}: the maintenance Job's sidecars are seen:\n{}",
                table(&uses)
            );
        }
        assert_eq!(
            needed(&uses),
            MINIMUM,
            "{environment} needs a newer Kubernetes than it promises:\n{}",
            table(&uses)
        );
    }
}

/// The check can fail: a preStop sleep of 0 s (which the model refuses, but a render bug could
/// still produce) needs 1.33, and the lint says so, at the field, unless the rule is allowed.
#[test]
fn a_feature_newer_than_the_minimum_breaks_the_kubernetes_version_rule() {
    let rendered = render(&common::load("eqiad"), &RenderOptions::default()).unwrap();
    let mut objects: Vec<Object> = rendered.objects().into_iter().cloned().collect();
    let deployment = objects
        .iter_mut()
        .find_map(|object| match object {
            Object::Deployment(deployment) => Some(deployment),
            _ => None,
        })
        .unwrap();
    let pod = deployment
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap();
    let sleep = pod.containers[0]
        .lifecycle
        .as_mut()
        .and_then(|lifecycle| lifecycle.pre_stop.as_mut())
        .and_then(|hook| hook.sleep.as_mut())
        .expect("a preStop sleep");
    sleep.seconds = 0;
    let references: Vec<&Object> = objects.iter().collect();
    let findings: Vec<_> = lint::lint(&references)
        .into_iter()
        .filter(|finding| finding.rule == Rule::KubernetesVersion)
        .collect();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let text = findings[0].to_string();
    assert!(
        text.contains("[kubernetes-version]")
            && text.contains("/spec/template/spec/containers/0/lifecycle/preStop/sleep/seconds")
            && text.contains("Kubernetes 1.33")
            && text.contains("from 1.30"),
        "{text}"
    );
}
