//! The lint catches each kind of broken object, and `--allow` lets one rule through on purpose.

mod common;

use k8s_openapi::api::core::v1::PodSpec;
use wikikube_render::lint::lint;
use wikikube_render::{build, render, Object, RenderError, RenderOptions, Rule};

fn broken(change: impl Fn(&mut Vec<Object>)) -> Vec<wikikube_render::Finding> {
    let rendered = build(&common::load("eqiad")).unwrap();
    let mut objects: Vec<Object> = rendered.objects().into_iter().cloned().collect();
    let all = |objects: &[Object]| lint(&objects.iter().collect::<Vec<_>>());
    assert!(all(&objects).is_empty(), "the example starts clean");
    change(&mut objects);
    all(&objects)
}

fn pod_of(objects: &mut [Object], name: &str) -> PodSpec {
    let object = objects
        .iter_mut()
        .find(|o| o.name() == name && o.kind() == wikikube_render::ObjectKind::Deployment);
    match object {
        Some(Object::Deployment(deployment)) => deployment
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .clone()
            .unwrap(),
        _ => panic!("no Deployment {name}"),
    }
}

fn set_pod(objects: &mut [Object], name: &str, pod: PodSpec) {
    for object in objects.iter_mut() {
        if let Object::Deployment(deployment) = object {
            if deployment.metadata.name.as_deref() == Some(name) {
                deployment.spec.as_mut().unwrap().template.spec = Some(pod.clone());
            }
        }
    }
}

fn rules(findings: &[wikikube_render::Finding]) -> Vec<Rule> {
    let mut rules: Vec<Rule> = findings.iter().map(|f| f.rule).collect();
    rules.dedup();
    rules
}

#[test]
fn a_container_without_probes_is_refused() {
    let findings = broken(|objects| {
        let mut pod = pod_of(objects, "mw-web-main");
        pod.containers[1].readiness_probe = None;
        set_pod(objects, "mw-web-main", pod);
    });
    assert_eq!(rules(&findings), [Rule::Probes]);
    assert_eq!(findings[0].object, "Deployment/mw-web-main");
    assert!(findings[0].message.contains("`httpd`"));
}

#[test]
fn a_container_without_resources_is_refused() {
    let findings = broken(|objects| {
        let mut pod = pod_of(objects, "mw-web-canary");
        pod.containers[2].resources = None;
        set_pod(objects, "mw-web-canary", pod);
    });
    assert_eq!(rules(&findings), [Rule::Resources]);
}

#[test]
fn root_is_refused() {
    let findings = broken(|objects| {
        let mut pod = pod_of(objects, "mw-debug-main");
        pod.security_context.as_mut().unwrap().run_as_user = Some(0);
        pod.containers[0]
            .security_context
            .as_mut()
            .unwrap()
            .allow_privilege_escalation = None;
        set_pod(objects, "mw-debug-main", pod);
    });
    assert_eq!(rules(&findings), [Rule::NonRoot]);
    assert_eq!(findings.len(), 2);
}

#[test]
fn a_selector_that_misses_the_template_is_refused() {
    let findings = broken(|objects| {
        for object in objects.iter_mut() {
            if let Object::Deployment(deployment) = object {
                if deployment.metadata.name.as_deref() == Some("mw-web-main") {
                    let labels = deployment
                        .spec
                        .as_mut()
                        .unwrap()
                        .selector
                        .match_labels
                        .as_mut()
                        .unwrap();
                    labels.insert("wikikube.org/release".into(), "mian".into());
                }
            }
        }
    });
    assert!(rules(&findings).contains(&Rule::Selector));
    assert!(findings
        .iter()
        .any(|f| f.object == "Deployment/mw-web-main" && f.message.contains("mian")));
}

#[test]
fn long_and_invalid_names_are_refused() {
    let findings = broken(|objects| {
        for object in objects.iter_mut() {
            if let Object::Service(service) = object {
                service.metadata.name = Some("x".repeat(64));
            }
            if let Object::ConfigMap(map) = object {
                map.metadata.name = Some("Not_Valid".into());
            }
        }
    });
    assert_eq!(rules(&findings), [Rule::Names]);
    assert!(findings.iter().any(|f| f.message.contains("64 characters")));
    assert!(findings.iter().any(|f| f.message.contains("`Not_Valid`")));
}

#[test]
fn long_port_names_are_refused_and_allow_lets_them_through() {
    let findings = broken(|objects| {
        let mut pod = pod_of(objects, "mw-web-main");
        pod.containers[0].ports.as_mut().unwrap()[0].name = Some("https-for-the-wiki".into());
        set_pod(objects, "mw-web-main", pod);
    });
    assert_eq!(rules(&findings), [Rule::PortNames]);
    assert!(findings[0].message.contains("`https-for-the-wiki`"));
}

#[test]
fn a_site_that_breaks_a_rule_fails_unless_allowed() {
    let site = common::load_texts(
        r#"
[site]
name = "tiny"
namespace = "tiny"
[versions."1.39"]
code = "/usr/share/mediawiki"
[wikis.testwiki]
domains = ["test.example"]
language = "en"
version = "1.39"
[deployments.a-deployment-name-that-is-much-too-long-for-pods]
"#,
        "[environment]\nkind = \"local\"\ndatacenter = \"here\"\n[memcached.pools]\nhere = { servers = [\"host.containers.internal:11211\"] }\n",
        "[secrets]\n",
    );
    let error = render(&site, &RenderOptions::default()).unwrap_err();
    let RenderError::Lint(findings) = &error else {
        panic!("expected a lint failure, got {error}");
    };
    assert!(findings.iter().all(|f| f.rule == Rule::Names));
    assert!(error.to_string().contains("--allow RULE"));
    let options = RenderOptions {
        allow: [Rule::Names].into(),
    };
    let rendered = render(&site, &options).unwrap();
    assert_eq!(rendered.allowed.len(), findings.len());
}

#[test]
fn rule_names_parse_with_a_helpful_error() {
    assert_eq!("port-names".parse::<Rule>().unwrap(), Rule::PortNames);
    let error = "probe".parse::<Rule>().unwrap_err();
    assert!(error.contains(
        "probes, resources, non-root, selector, names, port-names, size, kubernetes-version"
    ));
}
