//! Which Kubernetes version the rendered objects need: every feature they use that a cluster
//! has not always had, with the version from which it is on by default, checked against
//! [`MINIMUM`], the oldest version wikikube supports (docs/deploy.md, README.md).
//!
//! Two checks share the work. A field that an older API server does not know at all is caught by
//! the strict schema test of the oldest version (`tests/kubernetes_schemas.rs`); this module
//! catches what a schema cannot tell: a field that exists but needs a feature gate that is only
//! on by default later (the `sleep` action, `restartPolicy: Always` on an init container), or a
//! value that a later version first accepts (a sleep of 0 s). The [`crate::lint::Rule::KubernetesVersion`]
//! rule fails a render that uses anything newer than [`MINIMUM`].

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// A Kubernetes minor version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Version {
    /// 1.
    pub major: u32,
    /// The minor version.
    pub minor: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

const fn v1(minor: u32) -> Version {
    Version { major: 1, minor }
}

/// The oldest Kubernetes version wikikube supports: the preStop hooks' `sleep` action is on
/// by default from 1.30.
pub const MINIMUM: Version = v1(30);

/// A feature the rendered objects may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Feature {
    /// What it is, with its feature gate where it has one.
    pub name: &'static str,
    /// The first version in which it is on by default.
    pub since: Version,
}

/// The `sleep` lifecycle action (PodLifecycleSleepAction: beta and on from 1.30).
pub const SLEEP_ACTION: Feature = Feature {
    name: "lifecycle sleep action (PodLifecycleSleepAction)",
    since: v1(30),
};
/// A sleep action of 0 s (PodLifecycleSleepActionAllowZero: beta and on from 1.33).
pub const SLEEP_ZERO: Feature = Feature {
    name: "lifecycle sleep action of 0 s (PodLifecycleSleepActionAllowZero)",
    since: v1(33),
};
/// Native sidecars: an init container with `restartPolicy: Always` (SidecarContainers: beta
/// and on from 1.29).
pub const NATIVE_SIDECAR: Feature = Feature {
    name: "native sidecar container (SidecarContainers)",
    since: v1(29),
};
/// The Job controller's `batch.kubernetes.io/job-name` label on its pods, which `wikikube
/// script` finds a Job's pod by (1.27).
pub const JOB_NAME_LABEL: Feature = Feature {
    name: "batch.kubernetes.io/job-name pod label",
    since: v1(27),
};
/// Immutable ConfigMaps and Secrets (ImmutableEphemeralVolumes: on from 1.19, GA 1.21).
pub const IMMUTABLE: Feature = Feature {
    name: "immutable ConfigMap or Secret",
    since: v1(19),
};
/// `policy/v1` PodDisruptionBudget (1.21).
pub const PDB_V1: Feature = Feature {
    name: "policy/v1 PodDisruptionBudget",
    since: v1(21),
};
/// A pod-level `resources` (PodLevelResources: beta and on from 1.34).
pub const POD_LEVEL_RESOURCES: Feature = Feature {
    name: "pod-level resources (PodLevelResources)",
    since: v1(34),
};
/// A Service's `trafficDistribution` (ServiceTrafficDistribution: beta and on from 1.31).
pub const TRAFFIC_DISTRIBUTION: Feature = Feature {
    name: "Service trafficDistribution (ServiceTrafficDistribution)",
    since: v1(31),
};
/// A container's `lifecycle.stopSignal` (ContainerStopSignals: alpha in 1.33, not on by
/// default in any version wikikube knows; placed after every one).
pub const STOP_SIGNAL: Feature = Feature {
    name: "container stopSignal (ContainerStopSignals, alpha)",
    since: v1(99),
};

/// A feature used by one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Use {
    /// The feature.
    pub feature: Feature,
    /// `Kind/name` of the object.
    pub object: String,
    /// Where in it, as a JSON pointer.
    pub at: String,
}

/// The features `object` (a whole object as JSON, with its `kind`) uses, in document order.
pub fn uses(object: &Value) -> Vec<Use> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let described = format!("{kind}/{name}");
    let mut found = Vec::new();
    let mut add = |feature: Feature, at: String| {
        found.push(Use {
            feature,
            object: described.clone(),
            at,
        });
    };
    if matches!(kind, "ConfigMap" | "Secret") && object.get("immutable").is_some() {
        add(IMMUTABLE, "/immutable".into());
    }
    if kind == "PodDisruptionBudget" && object["apiVersion"] == "policy/v1" {
        add(PDB_V1, "/apiVersion".into());
    }
    if kind == "Service" && object["spec"].get("trafficDistribution").is_some() {
        add(TRAFFIC_DISTRIBUTION, "/spec/trafficDistribution".into());
    }
    let pod = match kind {
        "Deployment" | "Job" => Some(("/spec/template/spec", &object["spec"]["template"]["spec"])),
        "CronJob" => Some((
            "/spec/jobTemplate/spec/template/spec",
            &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        )),
        "Pod" => Some(("/spec", &object["spec"])),
        _ => None,
    };
    if kind == "Job" {
        add(JOB_NAME_LABEL, "/metadata/name".into());
    }
    if let Some((base, pod)) = pod {
        if pod.get("resources").is_some() {
            add(POD_LEVEL_RESOURCES, format!("{base}/resources"));
        }
        for list in ["initContainers", "containers"] {
            for (index, container) in pod[list].as_array().into_iter().flatten().enumerate() {
                let at = format!("{base}/{list}/{index}");
                if list == "initContainers" && container["restartPolicy"] == "Always" {
                    add(NATIVE_SIDECAR, format!("{at}/restartPolicy"));
                }
                for hook in ["preStop", "postStart"] {
                    let Some(seconds) = container["lifecycle"][hook]["sleep"]["seconds"].as_i64()
                    else {
                        continue;
                    };
                    let at = format!("{at}/lifecycle/{hook}/sleep/seconds");
                    add(
                        if seconds == 0 {
                            SLEEP_ZERO
                        } else {
                            SLEEP_ACTION
                        },
                        at,
                    );
                }
                if container["lifecycle"].get("stopSignal").is_some() {
                    add(STOP_SIGNAL, format!("{at}/lifecycle/stopSignal"));
                }
            }
        }
    }
    found
}

/// Every feature the render uses: its objects and a maintenance Job of its template.
pub fn uses_of(rendered: &crate::Rendered) -> Vec<Use> {
    let mut found: Vec<Use> = rendered
        .objects()
        .iter()
        .flat_map(|object| uses(&serde_json::to_value(object).expect("objects serialize")))
        .collect();
    if let Some(template) = &rendered.maintenance {
        let job = crate::lint::sample_job(template);
        found.extend(uses(&serde_json::to_value(&job).expect("Jobs serialize")));
    }
    found
}

/// The newest version any of `uses` needs; [`MINIMUM`] when none needs more.
pub fn needed(uses: &[Use]) -> Version {
    uses.iter()
        .map(|found| found.feature.since)
        .max()
        .unwrap_or(MINIMUM)
        .max(MINIMUM)
}
