//! The plan: which objects a deploy applies in which phase.
//!
//! Phases, in order: [`Phase::Shared`] (Namespace, ServiceAccount, and every versioned ConfigMap
//! and Secret, whichever release uses it), [`Phase::Debug`], [`Phase::Canary`] (then the gate:
//! rollout, smoke checks, soak), and [`Phase::Main`] (main and next). The render says which
//! objects belong to which release; the components (the edge) go with main: a change of routes
//! or shares reaches users only once the canaries passed the gate.
//!
//! Versioned objects ([`wikikube_render::naming::versioned`]) all go first because creating one
//! changes nothing that runs: a new version is a new name, which only the pod templates of the
//! later phases point at. So the schema Jobs (after the shared phase) see the new settings, and
//! main keeps its old versions until its own phase, after the gate.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use wikikube_model::ReleaseName;
use wikikube_render::Rendered;

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

/// Places every rendered object in its phase, in apply order inside each phase.
pub fn plan(rendered: &Rendered) -> Vec<Step> {
    let mut placed: Vec<(Phase, &wikikube_render::Object)> = Vec::new();
    placed.extend(rendered.shared.iter().map(|object| (Phase::Shared, object)));
    for release in &rendered.releases {
        let phase = Phase::of_release(release.release);
        placed.extend(release.objects.iter().map(|object| {
            let phase = if object.is_versioned() {
                Phase::Shared
            } else {
                phase
            };
            (phase, object)
        }));
    }
    for component in &rendered.components {
        placed.extend(component.objects.iter().map(|object| (Phase::Main, object)));
    }
    placed.sort_by(|(phase_a, a), (phase_b, b)| {
        (phase_a, a.apply_rank(), a.name()).cmp(&(phase_b, b.apply_rank(), b.name()))
    });
    placed
        .into_iter()
        .map(|(phase, object)| Step {
            phase,
            object: ObjectRef::of(object),
            body: serde_json::to_value(object).expect("rendered objects serialize"),
        })
        .collect()
}

/// The steps of one phase.
pub fn phase(steps: &[Step], phase: Phase) -> impl Iterator<Item = &Step> {
    steps.iter().filter(move |step| step.phase == phase)
}
