//! The built-in lint: rules every rendered object must follow. It runs on every render; a broken
//! rule fails the render unless the user allows that rule on purpose (`--allow RULE`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde::Serialize;

use crate::objects::Object;

/// One rule of the lint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Every container has a liveness or readiness probe; containers with ports have both.
    Probes,
    /// Every container requests CPU and memory and limits memory.
    Resources,
    /// Pods run as non-root, without privilege escalation, with all capabilities dropped and
    /// the RuntimeDefault seccomp profile.
    NonRoot,
    /// Selectors of Deployments, Services and PodDisruptionBudgets match a pod template's labels.
    Selector,
    /// Object and container names are valid DNS-1123 names within Kubernetes' length limits.
    Names,
    /// Port names are IANA service names: at most 15 characters.
    PortNames,
    /// Every object is at most [`MAX_OBJECT_BYTES`] as JSON: an API server refuses a ConfigMap
    /// or Secret whose data passes 1 MiB, and etcd any object much larger.
    Size,
    /// Nothing needs a Kubernetes version newer than the oldest wikikube supports
    /// ([`crate::kubernetes_version::MINIMUM`]); allowed, for clusters known to be newer.
    KubernetesVersion,
}

/// The largest object the size rule accepts, in bytes of compact JSON (what is sent).
pub const MAX_OBJECT_BYTES: usize = 1024 * 1024;

impl Rule {
    /// Every rule, in the order they are documented.
    pub const ALL: [Rule; 8] = [
        Rule::Probes,
        Rule::Resources,
        Rule::NonRoot,
        Rule::Selector,
        Rule::Names,
        Rule::PortNames,
        Rule::Size,
        Rule::KubernetesVersion,
    ];

    /// The name used with `--allow`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Probes => "probes",
            Rule::Resources => "resources",
            Rule::NonRoot => "non-root",
            Rule::Selector => "selector",
            Rule::Names => "names",
            Rule::PortNames => "port-names",
            Rule::Size => "size",
            Rule::KubernetesVersion => "kubernetes-version",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(text: &str) -> Result<Rule, String> {
        Rule::ALL
            .into_iter()
            .find(|rule| rule.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Rule::ALL.iter().map(|rule| rule.as_str()).collect();
                format!("no lint rule `{text}`; the rules are {}", names.join(", "))
            })
    }
}

/// An object breaking a rule.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// The rule broken.
    pub rule: Rule,
    /// `Kind/name` of the object.
    pub object: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.rule, self.object, self.message)
    }
}

/// A maintenance Job as the template makes it, for [`lint_job`] at render time: the first
/// wiki's `showSiteStats.php`, with a deadline.
pub fn sample_job(template: &crate::maintenance::Maintenance) -> Job {
    let wiki = template.wikis.keys().next().cloned().unwrap_or_default();
    let request = crate::maintenance::ScriptRequest {
        wiki,
        script: "showSiteStats.php".into(),
        arguments: Vec::new(),
    };
    let settings = crate::maintenance::JobSettings {
        user: "lint".into(),
        deadline_seconds: Some(3600),
        ..crate::maintenance::JobSettings::default()
    };
    template.script_job(&request, &settings, "0")
}

/// Checks a maintenance or backup Job: the same rules as a Deployment's pods, except that the
/// containers that run to their end (the script, a backup's steps) need no probe; sidecars do.
pub fn lint_job(job: &Job) -> Vec<Finding> {
    let mut findings = Vec::new();
    let object = format!("Job/{}", job.metadata.name.as_deref().unwrap_or_default());
    let mut report = |rule: Rule, message: String| {
        findings.push(Finding {
            rule,
            object: object.clone(),
            message,
        });
    };
    let name = job.metadata.name.as_deref().unwrap_or_default();
    // The Job controller names its pods `{job}-{5 characters}` and labels them with the Job's
    // name, a 63-character label value: 52 leaves room for the suffix and its dash.
    if !is_dns_label(name) || name.len() > 52 {
        report(
            Rule::Names,
            format!("`{name}` must be a DNS-1123 label of at most 52 characters"),
        );
    }
    for (key, value) in job.metadata.labels.iter().flatten() {
        if value.len() > 63 {
            report(
                Rule::Names,
                format!("label {key} has a value longer than 63 characters"),
            );
        }
    }
    let Some(pod) = job
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
    else {
        report(Rule::Probes, "has no pod template".into());
        return findings;
    };
    let json = serde_json::to_value(job).expect("Jobs serialize");
    check_versions(&json, &mut report);
    let mut all = pod.clone();
    all.containers
        .extend(pod.init_containers.iter().flatten().cloned());
    check_pod_security(&all, &mut report);
    for container in &pod.containers {
        let mut script = container.clone();
        // Stands in for the probe a run-to-completion container does not have.
        script.liveness_probe = Some(Default::default());
        check_container(&script, &mut report);
    }
    for container in pod.init_containers.iter().flatten() {
        let mut container = container.clone();
        // An init container that runs to its end (not a native sidecar) may not have probes:
        // the API server refuses them.
        if container.restart_policy.as_deref() != Some("Always") {
            container.liveness_probe = Some(Default::default());
        }
        check_container(&container, &mut report);
    }
    findings
}

/// A feature newer than the oldest Kubernetes wikikube supports.
fn check_versions(object: &serde_json::Value, report: &mut impl FnMut(Rule, String)) {
    use crate::kubernetes_version::{uses, MINIMUM};
    for found in uses(object) {
        if found.feature.since > MINIMUM {
            report(
                Rule::KubernetesVersion,
                format!(
                    "{} uses {}, on by default from Kubernetes {}; wikikube supports clusters \
                     from {MINIMUM}",
                    found.at, found.feature.name, found.feature.since
                ),
            );
        }
    }
}

/// Checks every object against every rule.
pub fn lint(objects: &[&Object]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let templates: Vec<&BTreeMap<String, String>> = objects
        .iter()
        .filter_map(|object| match object {
            Object::Deployment(deployment) => template_labels(deployment),
            _ => None,
        })
        .collect();
    let selects_a_template = |selector: &BTreeMap<String, String>| {
        !selector.is_empty() && templates.iter().any(|labels| is_subset(selector, labels))
    };

    for &object in objects {
        let mut report = |rule: Rule, message: String| {
            findings.push(Finding {
                rule,
                object: object.describe(),
                message,
            });
        };
        check_object_name(object, &mut report);
        let json = serde_json::to_value(object).expect("objects serialize");
        check_versions(&json, &mut report);
        let bytes = serde_json::to_vec(&json).map_or(0, |json| json.len());
        if bytes > MAX_OBJECT_BYTES {
            report(
                Rule::Size,
                format!(
                    "{bytes} bytes, over the {MAX_OBJECT_BYTES} an API server accepts: split \
                     it (the farm's virtual hosts grow with its domains)"
                ),
            );
        }
        match object {
            Object::Deployment(deployment) => check_deployment(deployment, &mut report),
            Object::Service(service) => {
                let spec = service.spec.as_ref();
                let selector = spec
                    .and_then(|spec| spec.selector.clone())
                    .unwrap_or_default();
                if !selects_a_template(&selector) {
                    report(
                        Rule::Selector,
                        format!("selector {selector:?} matches no Deployment's pods"),
                    );
                }
                for port in spec
                    .and_then(|spec| spec.ports.as_ref())
                    .into_iter()
                    .flatten()
                {
                    check_port_name(port.name.as_deref(), &mut report);
                }
            }
            Object::PodDisruptionBudget(budget) => {
                let selector = budget
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.selector.as_ref())
                    .and_then(|selector| selector.match_labels.clone())
                    .unwrap_or_default();
                if !selects_a_template(&selector) {
                    report(
                        Rule::Selector,
                        format!("selector {selector:?} matches no Deployment's pods"),
                    );
                }
            }
            _ => {}
        }
    }
    findings.sort();
    findings
}

fn template_labels(deployment: &Deployment) -> Option<&BTreeMap<String, String>> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .labels
        .as_ref()
}

fn is_subset(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
}

fn check_object_name(object: &Object, report: &mut impl FnMut(Rule, String)) {
    let name = object.name();
    // Namespaces and Services become DNS labels; a Deployment's name plus the ReplicaSet's and
    // pod's suffixes (17 characters) must stay a 63-character hostname.
    let limit = match object {
        Object::Namespace(_) | Object::Service(_) => 63,
        Object::Deployment(_) => 63 - 17,
        _ => 253,
    };
    // Characters first, length second, so that each mistake gets its own message.
    let valid = match object {
        Object::ConfigMap(_) | Object::Secret(_) => name.split('.').all(has_label_characters),
        Object::Service(_) => {
            has_label_characters(name) && name.starts_with(|c: char| c.is_ascii_lowercase())
        }
        _ => has_label_characters(name),
    };
    if !valid {
        report(
            Rule::Names,
            format!("`{name}` is not a valid DNS-1123 name (lowercase letters, digits, `-`)"),
        );
    } else if name.len() > limit {
        report(
            Rule::Names,
            format!(
                "`{name}` is {} characters long; the limit here is {limit}",
                name.len()
            ),
        );
    }
    for (key, value) in object.metadata().labels.iter().flatten() {
        if value.len() > 63 {
            report(
                Rule::Names,
                format!("label {key} has a value longer than 63 characters"),
            );
        }
    }
}

fn check_deployment(deployment: &Deployment, report: &mut impl FnMut(Rule, String)) {
    let Some(spec) = deployment.spec.as_ref() else {
        report(Rule::Selector, "has no spec".into());
        return;
    };
    let selector = spec.selector.match_labels.clone().unwrap_or_default();
    let labels = template_labels(deployment).cloned().unwrap_or_default();
    if selector.is_empty() || !is_subset(&selector, &labels) {
        report(
            Rule::Selector,
            format!("selector {selector:?} does not match the pod template's labels {labels:?}"),
        );
    }
    let Some(pod) = spec.template.spec.as_ref() else {
        report(Rule::Probes, "has no pod template".into());
        return;
    };
    check_pod_security(pod, report);
    for container in &pod.containers {
        check_container(container, report);
    }
}

fn check_pod_security(pod: &PodSpec, report: &mut impl FnMut(Rule, String)) {
    let context = pod.security_context.as_ref();
    let pod_non_root = context.and_then(|c| c.run_as_non_root) == Some(true);
    let pod_seccomp = context
        .and_then(|c| c.seccomp_profile.as_ref())
        .is_some_and(|profile| profile.type_ == "RuntimeDefault");
    if context.and_then(|c| c.run_as_user) == Some(0) {
        report(Rule::NonRoot, "the pod runs as user 0 (root)".into());
    }
    for container in &pod.containers {
        let name = &container.name;
        let security = container.security_context.as_ref();
        let non_root = security
            .and_then(|c| c.run_as_non_root)
            .map_or(pod_non_root, |flag| flag);
        if !non_root {
            report(
                Rule::NonRoot,
                format!("container `{name}` may run as root: set runAsNonRoot"),
            );
        }
        if security.and_then(|c| c.run_as_user) == Some(0) {
            report(Rule::NonRoot, format!("container `{name}` runs as user 0"));
        }
        if security.and_then(|c| c.privileged) == Some(true) {
            report(Rule::NonRoot, format!("container `{name}` is privileged"));
        }
        if security.and_then(|c| c.allow_privilege_escalation) != Some(false) {
            report(
                Rule::NonRoot,
                format!("container `{name}` allows privilege escalation"),
            );
        }
        let drops_all = security
            .and_then(|c| c.capabilities.as_ref())
            .and_then(|caps| caps.drop.as_ref())
            .is_some_and(|drop| drop.iter().any(|cap| cap == "ALL"));
        if !drops_all {
            report(
                Rule::NonRoot,
                format!("container `{name}` does not drop ALL capabilities"),
            );
        }
        let seccomp = security
            .and_then(|c| c.seccomp_profile.as_ref())
            .map_or(pod_seccomp, |profile| profile.type_ == "RuntimeDefault");
        if !seccomp {
            report(
                Rule::NonRoot,
                format!("container `{name}` has no RuntimeDefault seccomp profile"),
            );
        }
    }
}

fn check_container(container: &Container, report: &mut impl FnMut(Rule, String)) {
    let name = &container.name;
    if !is_dns_label(name) {
        report(
            Rule::Names,
            format!("container name `{name}` is not a DNS-1123 label"),
        );
    }
    let ports = container.ports.as_deref().unwrap_or_default();
    for port in ports {
        check_port_name(port.name.as_deref(), report);
    }
    let liveness = container.liveness_probe.is_some();
    let readiness = container.readiness_probe.is_some();
    let serves = !ports.is_empty();
    if serves && (!liveness || !readiness) {
        report(
            Rule::Probes,
            format!("container `{name}` serves ports but lacks a liveness or readiness probe"),
        );
    } else if !liveness && !readiness {
        report(Rule::Probes, format!("container `{name}` has no probe"));
    }
    let resources = container.resources.as_ref();
    let requests: BTreeSet<&str> = resources
        .and_then(|r| r.requests.as_ref())
        .map(|r| r.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let limits: BTreeSet<&str> = resources
        .and_then(|r| r.limits.as_ref())
        .map(|r| r.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if !requests.contains("cpu") || !requests.contains("memory") || !limits.contains("memory") {
        report(
            Rule::Resources,
            format!("container `{name}` must request cpu and memory and limit memory"),
        );
    }
}

fn check_port_name(name: Option<&str>, report: &mut impl FnMut(Rule, String)) {
    let Some(name) = name else { return };
    let valid = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.chars().any(|c| c.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !valid {
        report(
            Rule::PortNames,
            format!(
                "port name `{name}` must be at most 15 lowercase letters, digits and single \
                 dashes, with at least one letter"
            ),
        );
    }
}

fn is_dns_label(name: &str) -> bool {
    wikikube_model::validate::is_dns_label(name)
}

/// A DNS-1123 label's characters, whatever its length.
fn has_label_characters(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}
