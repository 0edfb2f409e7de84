//! `wikikube diff`: what a deploy would change, object by object, as readable unified diffs.
//!
//! Both sides come from the server: the live object, and the result of a server-side apply with
//! `dryRun=All` of the rendered one. Defaults the server fills in (a Service's clusterIP, a
//! container's terminationMessagePath) are then on both sides and cancel out, so a diff shows what
//! the site changes and nothing else. Fields only the server writes (managedFields, status,
//! resourceVersion, uid, creationTimestamp, generation) are stripped before comparing.
//!
//! Secret values are never shown: each is replaced by a marker that only says whether it changes.
//!
//! A new version of a versioned ConfigMap or Secret ([`wikikube_render::naming::versioned`]) is
//! shown as what it is, [`Change::Replace`]: diffed against the version the live revision uses,
//! not as a create beside an unrelated object. The old version is listed as a delete only when
//! this deploy's prune would remove it ([`crate::history::retained`]).

use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;

use wikikube_render::naming;

use crate::apply::{self, Mode, ObjectRef};
use crate::ownership::{self, ForeignField};
use crate::{history, inventory, Error, Target};

/// What a deploy would do to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// It does not exist yet.
    Create,
    /// It exists and would change.
    Update,
    /// A new version of a versioned ConfigMap or Secret, which replaces the one the live
    /// revision uses ([`ObjectDiff::replaces`]).
    Replace,
    /// It exists and would not change.
    Unchanged,
    /// It is in the inventory but no longer rendered: the deploy prunes it.
    Delete,
}

/// One object's difference.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectDiff {
    /// The object.
    pub object: ObjectRef,
    /// What would happen to it.
    pub change: Change,
    /// For [`Change::Replace`], the version it replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaces: Option<ObjectRef>,
    /// A unified diff, live first; empty when unchanged. Secret values are redacted.
    pub text: String,
    /// Fields other field managers own that the site does not render: a deploy leaves them in
    /// place, `deploy --take-over-fields` removes them ([`crate::ownership`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub foreign_fields: Vec<ForeignField>,
}

/// The differences in one cluster.
#[derive(Clone, Debug, Serialize)]
pub struct ClusterDiff {
    /// The cluster's name.
    pub cluster: String,
    /// Every rendered object, then every object that would be pruned.
    pub objects: Vec<ObjectDiff>,
}

/// The differences in every cluster of the environment.
#[derive(Clone, Debug, Serialize)]
pub struct DiffReport {
    /// One entry per cluster, in the environment's order.
    pub clusters: Vec<ClusterDiff>,
}

impl DiffReport {
    /// Whether a deploy would change anything anywhere.
    pub fn has_differences(&self) -> bool {
        self.clusters
            .iter()
            .flat_map(|cluster| &cluster.objects)
            .any(|object| object.change != Change::Unchanged)
    }

    /// The report for people: the diffs, then one summary line per cluster.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for cluster in &self.clusters {
            for object in &cluster.objects {
                if !object.text.is_empty() {
                    out.push_str(&object.text);
                }
                if !object.foreign_fields.is_empty() {
                    out.push_str(&format!(
                        "{} in {}: fields of other field managers, which a deploy leaves in place (deploy --take-over-fields removes them):\n",
                        object.object, cluster.cluster
                    ));
                    for field in &object.foreign_fields {
                        out.push_str(&format!("  {field}\n"));
                    }
                }
            }
        }
        for cluster in &self.clusters {
            let count = |change| {
                cluster
                    .objects
                    .iter()
                    .filter(|object| object.change == change)
                    .count()
            };
            let foreign = cluster
                .objects
                .iter()
                .filter(|object| !object.foreign_fields.is_empty())
                .count();
            let foreign = if foreign == 0 {
                String::new()
            } else {
                format!("; {foreign} with fields of other managers")
            };
            out.push_str(&format!(
                "{}: {} to create, {} to update, {} to replace, {} to delete, {} unchanged{foreign}\n",
                cluster.cluster,
                count(Change::Create),
                count(Change::Update),
                count(Change::Replace),
                count(Change::Delete),
                count(Change::Unchanged),
            ));
        }
        out
    }
}

/// Diffs the rendered objects against one cluster. `config_revisions` is the deploy's
/// ([`crate::Options::config_revisions`]), to list as deletes only what its prune would remove.
pub async fn diff_cluster(
    target: &Target,
    namespace: &str,
    objects: &[&wikikube_render::Object],
    config_revisions: usize,
) -> Result<ClusterDiff, Error> {
    let client = &target.client;
    let inventory = inventory::read(client, namespace).await?;
    let records = history::read(client, namespace).await?;
    let live_versions = history::retained(client, namespace, &records, 1).await?;
    let mut diffs = Vec::with_capacity(objects.len());
    for &object in objects {
        let reference = ObjectRef::of(object);
        let live_object = apply::get(client, namespace, &reference).await?;
        let body = serde_json::to_value(object).expect("objects serialize");
        let current_namespace = reference.kind == wikikube_render::ObjectKind::Namespace
            && live_object
                .as_ref()
                .is_some_and(|live| apply::namespace_current(live, &body));
        let dying = live_object
            .as_ref()
            .is_some_and(|live| live.metadata.deletion_timestamp.is_some());
        let live = live_object.map(|live| serde_json::to_value(live).expect("objects serialize"));
        if dying {
            // A deploy waits for it to be gone and creates it afresh ([`crate::deletion`]): a
            // create of the rendered object, not an update of the dying one.
            let mut diff = object_diff(reference.clone(), None, Some(body));
            diff.text = format!(
                "{reference} is being deleted: a deploy waits until it is gone, then creates it\n{}",
                diff.text
            );
            diffs.push(diff);
            continue;
        }
        if current_namespace {
            // As deploy does, no dry-run write of a Namespace that is as rendered: a dry run
            // is authorised as the write, which is cluster-scoped.
            diffs.push(object_diff(reference, live.clone(), live));
            continue;
        }
        let would = match apply::apply(client, namespace, object, Mode::DryRun).await {
            Ok(result) => serde_json::to_value(result).expect("objects serialize"),
            // A namespaced object cannot be dry-run into a namespace that does not exist yet
            // (the first deploy): show the rendered object as it is.
            Err(error) if live.is_none() && apply::is_not_found(&error) => {
                serde_json::to_value(object).expect("objects serialize")
            }
            Err(error) => return Err(error),
        };
        let predecessor = match (&live, object.is_versioned()) {
            (None, true) => predecessor(&reference, &live_versions, &inventory),
            _ => None,
        };
        let replaced = match &predecessor {
            Some(old) => apply::get(client, namespace, old)
                .await?
                .map(|live| serde_json::to_value(live).expect("objects serialize")),
            None => None,
        };
        // What a deploy would leave of other managers' fields: the dry run's ownership is the
        // server's own answer, conflicts the forced apply takes already taken.
        let foreign_fields = match &live {
            Some(_) => ownership::foreign_fields(&would),
            None => Vec::new(),
        };
        let mut diff = match (predecessor, replaced) {
            (Some(old), Some(replaced)) => replacement(reference, old, replaced, would),
            _ => object_diff(reference, live, Some(would)),
        };
        diff.foreign_fields = foreign_fields;
        diffs.push(diff);
    }
    let mut keep: Vec<ObjectRef> = objects.iter().map(|object| ObjectRef::of(object)).collect();
    let earlier = config_revisions.saturating_sub(1);
    keep.extend(history::retained(client, namespace, &records, earlier).await?);
    for reference in inventory.prunable(&keep) {
        if let Some(live) = apply::get(client, namespace, &reference).await? {
            let live = serde_json::to_value(live).expect("objects serialize");
            diffs.push(object_diff(reference, Some(live), None));
        }
    }
    Ok(ClusterDiff {
        cluster: target.name.clone(),
        objects: diffs,
    })
}

/// The version a new versioned object replaces: the one of the same base name that the live
/// revision uses, or else one the inventory lists (a revision recorded before objects were
/// versioned, whose object has the base name itself).
fn predecessor(
    new: &ObjectRef,
    live_versions: &[ObjectRef],
    inventory: &inventory::Inventory,
) -> Option<ObjectRef> {
    let base = naming::unversioned(&new.name);
    let same_base = |old: &&ObjectRef| {
        old.kind == new.kind && old.name != new.name && naming::unversioned(&old.name) == base
    };
    live_versions
        .iter()
        .find(same_base)
        .or_else(|| inventory.objects.iter().rev().find(same_base))
        .cloned()
}

/// A new version diffed against the one it replaces.
fn replacement(new: ObjectRef, old: ObjectRef, replaced: Value, would: Value) -> ObjectDiff {
    let mut diff = object_diff(new.clone(), Some(replaced), Some(would));
    let headline = format!("new {new} replaces {old}\n");
    diff.text = headline
        + &diff
            .text
            .replacen(&format!("live/{new}"), &format!("live/{old}"), 1);
    diff.change = Change::Replace;
    diff.replaces = Some(old);
    diff
}

/// Diffs every cluster, all at once: the work is waiting on the network.
pub async fn diff(
    targets: &[Target],
    namespace: &str,
    objects: &[&wikikube_render::Object],
    config_revisions: usize,
) -> Result<DiffReport, Error> {
    let clusters = futures::future::try_join_all(
        targets
            .iter()
            .map(|target| diff_cluster(target, namespace, objects, config_revisions)),
    )
    .await?;
    Ok(DiffReport { clusters })
}

/// Compares two versions of one object (`None`: absent) after stripping and redaction.
pub fn object_diff(object: ObjectRef, live: Option<Value>, would: Option<Value>) -> ObjectDiff {
    let mut live = live.map(normalize);
    let mut would = would.map(normalize);
    if object.kind == wikikube_render::ObjectKind::Secret {
        redact_secret(live.as_mut(), would.as_mut());
    }
    let change = match (&live, &would) {
        (None, _) => Change::Create,
        (Some(_), None) => Change::Delete,
        (Some(old), Some(new)) if old == new => Change::Unchanged,
        (Some(_), Some(_)) => Change::Update,
    };
    let text = if change == Change::Unchanged {
        String::new()
    } else {
        let old = live.map(|value| to_yaml(&value)).unwrap_or_default();
        let new = would.map(|value| to_yaml(&value)).unwrap_or_default();
        let diff = TextDiff::from_lines(&old, &new);
        let live_name = format!("live/{object}");
        let rendered_name = format!("rendered/{object}");
        diff.unified_diff()
            .context_radius(3)
            .header(&live_name, &rendered_name)
            .to_string()
    };
    ObjectDiff {
        object,
        change,
        replaces: None,
        text,
        foreign_fields: Vec::new(),
    }
}

/// Annotations the server or other tools write, which a site never sets.
const SERVER_ANNOTATIONS: &[&str] = &[
    "deployment.kubernetes.io/revision",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// Strips what only the server writes, so that two versions of an object compare by what a site
/// can change.
pub fn normalize(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
        if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
            for field in [
                "managedFields",
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "generation",
                "selfLink",
            ] {
                metadata.remove(field);
            }
            if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
                for annotation in SERVER_ANNOTATIONS {
                    annotations.remove(*annotation);
                }
                if annotations.is_empty() {
                    metadata.remove("annotations");
                }
            }
        }
    }
    value
}

/// What a Secret value shows as when it is the same on both sides.
const SAME: &str = "<redacted>";
/// What a Secret value shows as, live, when the deploy would change it.
const OLD: &str = "<redacted: old value>";
/// What a Secret value shows as, rendered, when the deploy would change it.
const NEW: &str = "<redacted: new value>";

/// Replaces every value of a Secret's `data` and `stringData` by a marker that says only whether
/// the deploy changes it. Keys stay visible: they are names, not secrets.
pub fn redact_secret(live: Option<&mut Value>, would: Option<&mut Value>) {
    let values = |secret: &Option<&mut Value>| -> serde_json::Map<String, Value> {
        let mut all = serde_json::Map::new();
        for field in ["data", "stringData"] {
            if let Some(Value::Object(map)) = secret.as_ref().and_then(|s| s.get(field)) {
                all.extend(map.clone());
            }
        }
        all
    };
    let (old, new) = (values(&live), values(&would));
    let redact = |secret: Option<&mut Value>,
                  this: &serde_json::Map<String, Value>,
                  other: &serde_json::Map<String, Value>,
                  changed: &str| {
        let Some(secret) = secret.and_then(Value::as_object_mut) else {
            return;
        };
        for field in ["data", "stringData"] {
            if let Some(Value::Object(map)) = secret.get_mut(field) {
                for (key, value) in map.iter_mut() {
                    let same = other.get(key) == this.get(key);
                    *value = Value::String(if same { SAME } else { changed }.to_string());
                }
            }
        }
    };
    redact(live, &old, &new, OLD);
    redact(would, &new, &old, NEW);
}

fn to_yaml(value: &Value) -> String {
    serde_yaml_ng::to_string(value).expect("JSON values serialize as YAML")
}
