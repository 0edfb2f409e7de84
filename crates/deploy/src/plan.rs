//! The plan: which objects a deploy applies in which phase.
//!
//! Phases, in order: [`Phase::Shared`] (Namespace, ServiceAccount, the shared ConfigMap and the
//! Secret), [`Phase::Debug`], [`Phase::Canary`] (then the gate: rollout, smoke checks, soak), and
//! [`Phase::Main`] (main and next). An object belongs to a release when its name is the release's
//! base name `{deployment}-{release}` or starts with it (its ConfigMaps), or when it is main's
//! Service, named after the deployment. The edge's objects (`{site}-edge`) go with main: a change
//! of routes or shares reaches users only once the canaries passed the gate.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use model::{ReleaseName, ResolvedSite};

use crate::apply::ObjectRef;

/// A step of a deploy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Objects every release uses.
    Shared,
    /// The debug releases: reachable only on purpose, so they go first.
    Debug,
    /// The canaries: a few replicas taking real traffic; the gate follows them.
    Canary,
    /// main and next: everyone's traffic.
    Main,
}

impl Phase {
    /// Every phase, in deploy order.
    pub const ALL: [Phase; 4] = [Phase::Shared, Phase::Debug, Phase::Canary, Phase::Main];

    /// The phase a release's objects go in.
    pub fn of_release(release: ReleaseName) -> Phase {
        match release {
            ReleaseName::Debug => Phase::Debug,
            ReleaseName::Canary => Phase::Canary,
            ReleaseName::Main | ReleaseName::Next => Phase::Main,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Shared => "shared",
            Phase::Debug => "debug",
            Phase::Canary => "canary",
            Phase::Main => "main",
        })
    }
}

/// One object to apply, in the phase it belongs to. The body is the whole object as JSON, so a
/// plan can come from a render or from a recorded revision alike.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// When it is applied.
    pub phase: Phase,
    /// Which object.
    pub object: ObjectRef,
    /// The object, with apiVersion and kind. Secrets hold their real values: never print it.
    pub body: Value,
}

/// Places every rendered object (already in apply order) in its phase; the order inside a phase
/// is kept.
pub fn plan(site: &ResolvedSite, objects: &[render::Object]) -> Vec<Step> {
    let mut bases: Vec<(String, ReleaseName)> = site
        .deployments
        .iter()
        .flat_map(|deployment| {
            ReleaseName::ALL
                .into_iter()
                .map(move |release| (format!("{}-{release}", deployment.name), release))
        })
        .collect();
    // Longest first, so `mw-api-ext-main` is not taken for a release of `mw-api`.
    bases.sort_by_key(|(base, _)| std::cmp::Reverse(base.len()));
    let edge = render::edge::name(site);
    let mut steps: Vec<Step> = objects
        .iter()
        .map(|object| {
            let name = object.name();
            let release = bases
                .iter()
                .find(|(base, _)| {
                    name == base
                        || name
                            .strip_prefix(base.as_str())
                            .is_some_and(|rest| rest.starts_with('-'))
                })
                .map(|(_, release)| *release)
                .or_else(|| {
                    let main_service = object.kind() == "Service"
                        && site.deployments.iter().any(|d| d.name == name);
                    (main_service || name == edge).then_some(ReleaseName::Main)
                });
            Step {
                phase: release.map_or(Phase::Shared, Phase::of_release),
                object: ObjectRef::of(object),
                body: serde_json::to_value(object).expect("rendered objects serialize"),
            }
        })
        .collect();
    // Stable: apply order is kept inside each phase.
    steps.sort_by_key(|step| step.phase);
    steps
}

/// The steps of one phase.
pub fn phase(steps: &[Step], phase: Phase) -> impl Iterator<Item = &Step> {
    steps.iter().filter(move |step| step.phase == phase)
}
