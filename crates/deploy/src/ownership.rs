//! Field ownership under server-side apply: the fields of a live object that other field
//! managers own, and taking them over.
//!
//! The API server records, per object, which manager owns which field
//! (`metadata.managedFields`, one FieldsV1 tree per manager and operation). A server-side apply
//! removes a field wikikube stops rendering only when no other manager owns it too, and leaves
//! alone the fields other managers set. So a field set by `kubectl edit`, `kubectl set env`,
//! helm or `kubectl rollout undo` stays through every deploy, and one can make an object invalid
//! beside a rendered field: a hand-added PodDisruptionBudget `minAvailable` next to the rendered
//! `maxUnavailable` makes every later apply fail with 422.
//!
//! [`foreign_fields`] lists such fields: owned by another manager and not by wikikube, and
//! without a field of wikikube's beneath them. `wikikube diff` shows them for the object a
//! dry-run apply would leave (so exactly what a deploy would keep); an apply refused as invalid
//! names them ([`crate::Error::ForeignFields`]). `deploy --take-over-fields` runs [`take_over`]
//! before each apply: one JSON patch, guarded by the object's resourceVersion, that removes the
//! foreign fields the site does not render and drops the other managers' ownership records, so
//! that the apply after it leaves the object exactly as rendered and wikikube sole owner.
//!
//! Left alone: the status subresource, and the entries of the cluster's own controllers
//! ([`CONTROLLERS`]), which keep fields on our objects by design (a claim's `volumeName`, a
//! Deployment's revision annotation).
//!
//! What it must not do: judge fields by their values (it reads ownership only), or patch an
//! object that changed since it was read.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kube::api::{Patch, PatchParams};
use kube::Client;
use serde::Serialize;
use serde_json::{json, Value};

use crate::apply::{self, ObjectRef, FIELD_MANAGER};
use crate::Error;

/// Managers of the cluster itself, whose fields on our objects are theirs by design: never
/// listed, never taken over.
pub const CONTROLLERS: &[&str] = &[
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "cloud-controller-manager",
];

/// One step of a field path, as FieldsV1 writes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    /// `f:NAME`: a field of a map.
    Field(String),
    /// `k:{...}`: the item of a list whose key fields have these values (the server's JSON text).
    Key(String),
    /// `v:VALUE`: the item of a set-like list with this value (JSON text).
    Value(String),
    /// `i:N`: the item of an atomic list at this index.
    Index(usize),
}

/// A field of an object, as a path from its root.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<Segment>);

impl FieldPath {
    /// Whether `self` is `other` or lies beneath it.
    pub fn starts_with(&self, other: &FieldPath) -> bool {
        self.0.starts_with(&other.0)
    }
}

impl fmt::Display for FieldPath {
    /// `spec.template.spec.containers[name=app].env[name=DEBUG]`, the way people name fields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Field(name) if position == 0 => write!(f, "{name}")?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Key(text) => {
                    let fields: serde_json::Map<String, Value> =
                        serde_json::from_str(text).unwrap_or_default();
                    let pairs: Vec<String> = fields
                        .iter()
                        .map(|(key, value)| format!("{key}={}", plain(value)))
                        .collect();
                    write!(f, "[{}]", pairs.join(","))?
                }
                Segment::Value(text) => {
                    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                    write!(f, "[{}]", plain(&value))?
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A value without JSON's quotes when it is a string.
fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A field other managers own and wikikube does not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ForeignField {
    /// The field (a whole list item or map when they own all of it).
    pub path: FieldPath,
    /// Who owns it, by field manager name.
    pub managers: Vec<String>,
}

impl fmt::Display for ForeignField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path, self.managers.join(", "))
    }
}

/// The fields one FieldsV1 tree owns: every leaf, and every node marked `.` (the list item or
/// map itself). Unknown prefixes are skipped: a newer server may add some.
pub fn parse_fields(tree: &Value) -> BTreeSet<FieldPath> {
    fn walk(prefix: &mut Vec<Segment>, node: &Value, out: &mut BTreeSet<FieldPath>) {
        let Some(children) = node.as_object() else {
            return;
        };
        for (name, child) in children {
            if name == "." {
                if !prefix.is_empty() {
                    out.insert(FieldPath(prefix.clone()));
                }
                continue;
            }
            let segment = match name.split_at_checked(2) {
                Some(("f:", rest)) => Segment::Field(rest.to_string()),
                Some(("k:", rest)) => Segment::Key(rest.to_string()),
                Some(("v:", rest)) => Segment::Value(rest.to_string()),
                Some(("i:", rest)) => match rest.parse() {
                    Ok(index) => Segment::Index(index),
                    Err(_) => continue,
                },
                _ => continue,
            };
            prefix.push(segment);
            if child.as_object().is_some_and(|map| map.is_empty()) {
                out.insert(FieldPath(prefix.clone()));
            } else {
                walk(prefix, child, out);
            }
            prefix.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(&mut Vec::new(), tree, &mut out);
    out
}

/// Every field other managers own on `object` and wikikube does not, each with its owners;
/// fields with one of wikikube's beneath them are left out (removing them would remove ours).
pub fn foreign_nodes(object: &Value) -> BTreeMap<FieldPath, BTreeSet<String>> {
    let mut ours = BTreeSet::new();
    let mut theirs: BTreeMap<FieldPath, BTreeSet<String>> = BTreeMap::new();
    for entry in managed_entries(object) {
        let fields = parse_fields(&entry["fieldsV1"]);
        match entry_owner(entry) {
            Owner::Us => ours.extend(fields),
            Owner::Other(manager) => {
                for field in fields {
                    theirs.entry(field).or_default().insert(manager.to_string());
                }
            }
            Owner::Cluster => {}
        }
    }
    theirs.retain(|path, _| !ours.iter().any(|own| own.starts_with(path)));
    theirs
}

/// The outermost of `nodes`: a field beneath another listed one goes with it.
fn outermost(
    nodes: BTreeMap<FieldPath, BTreeSet<String>>,
) -> BTreeMap<FieldPath, BTreeSet<String>> {
    let paths: Vec<FieldPath> = nodes.keys().cloned().collect();
    nodes
        .into_iter()
        .filter(|(path, _)| {
            !paths
                .iter()
                .any(|other| other != path && path.starts_with(other))
        })
        .collect()
}

/// The foreign fields of `object` ([`foreign_nodes`]), outermost only, with their owners.
pub fn foreign_fields(object: &Value) -> Vec<ForeignField> {
    outermost(foreign_nodes(object))
        .into_iter()
        .map(|(path, managers)| ForeignField {
            path,
            managers: managers.into_iter().collect(),
        })
        .collect()
}

/// Who an entry of `managedFields` speaks for.
enum Owner<'a> {
    Us,
    Other(&'a str),
    /// The cluster's controllers and the status subresource: never ours to take.
    Cluster,
}

fn entry_owner(entry: &Value) -> Owner<'_> {
    let manager = entry["manager"].as_str().unwrap_or_default();
    if entry["subresource"].as_str() == Some("status") || CONTROLLERS.contains(&manager) {
        Owner::Cluster
    } else if manager == FIELD_MANAGER {
        Owner::Us
    } else {
        Owner::Other(manager)
    }
}

fn managed_entries(object: &Value) -> impl Iterator<Item = &Value> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
}

/// Whether a list item is the one a `k:` segment names. A container port's or Service port's
/// `protocol` is part of its key and defaults to TCP, which a rendered object may leave out.
fn item_matches(item: &Value, key: &serde_json::Map<String, Value>) -> bool {
    key.iter().all(|(field, wanted)| match item.get(field) {
        Some(value) => value == wanted,
        None => field == "protocol" && wanted == "TCP",
    })
}

/// The JSON pointer of `path` in `object`, or `None` when the object does not have the field.
pub fn pointer(object: &Value, path: &FieldPath) -> Option<String> {
    let mut at = object;
    let mut pointer = String::new();
    for segment in &path.0 {
        let index = match segment {
            Segment::Field(name) => {
                at = at.as_object()?.get(name)?;
                pointer.push('/');
                pointer.push_str(&name.replace('~', "~0").replace('/', "~1"));
                continue;
            }
            Segment::Key(text) => {
                let key: serde_json::Map<String, Value> = serde_json::from_str(text).ok()?;
                at.as_array()?
                    .iter()
                    .position(|item| item_matches(item, &key))?
            }
            Segment::Value(text) => {
                let value: Value = serde_json::from_str(text).ok()?;
                at.as_array()?.iter().position(|item| *item == value)?
            }
            Segment::Index(index) => *index,
        };
        at = at.as_array()?.get(index)?;
        pointer.push_str(&format!("/{index}"));
    }
    Some(pointer)
}

/// The JSON patch that takes `live` over for a site that renders `rendered`, or `None` when no
/// other manager owns anything on it: a test of the resourceVersion (a concurrent change makes
/// the server refuse the patch instead of removing the wrong list item), the removal of every
/// foreign field the site does not render, and `managedFields` without the other managers'
/// entries, so that fields they shared with wikikube become wikikube's alone.
pub fn take_over_patch(live: &Value, rendered: &Value) -> Option<(Value, Vec<ForeignField>)> {
    let entries: Vec<&Value> = managed_entries(live).collect();
    let kept: Vec<Value> = entries
        .iter()
        .filter(|entry| !matches!(entry_owner(entry), Owner::Other(_)))
        .map(|entry| (*entry).clone())
        .collect();
    if kept.len() == entries.len() {
        return None;
    }
    let mut removed = foreign_nodes(live);
    // What the site renders stays (the apply after this sets it); only ownership changes.
    removed.retain(|path, _| pointer(rendered, path).is_none());
    let removed = outermost(removed);
    let mut pointers: Vec<String> = removed
        .keys()
        .filter_map(|path| pointer(live, path))
        .collect();
    // Later list items first, so that each removal leaves the indexes of the others valid.
    pointers.sort_by_key(|pointer| {
        pointer
            .split('/')
            .map(|token| match token.parse::<usize>() {
                Ok(index) => (index, String::new()),
                Err(_) => (0, token.to_string()),
            })
            .collect::<Vec<_>>()
    });
    pointers.reverse();
    let mut operations = vec![json!({"op": "test", "path": "/metadata/resourceVersion",
        "value": live["metadata"]["resourceVersion"]})];
    operations.extend(
        pointers
            .into_iter()
            .map(|pointer| json!({"op": "remove", "path": pointer})),
    );
    operations.push(json!({"op": "replace", "path": "/metadata/managedFields", "value": kept}));
    let removed = removed
        .into_iter()
        .map(|(path, managers)| ForeignField {
            path,
            managers: managers.into_iter().collect(),
        })
        .collect();
    Some((Value::Array(operations), removed))
}

/// Takes the live object of `target` over for `rendered` ([`take_over_patch`]) and returns the
/// fields removed; nothing when the object does not exist or no other manager owns anything.
pub async fn take_over(
    client: &Client,
    namespace: &str,
    target: &ObjectRef,
    rendered: &Value,
) -> Result<Vec<ForeignField>, Error> {
    let Some(live) = apply::get(client, namespace, target).await? else {
        return Ok(Vec::new());
    };
    let live = serde_json::to_value(live).expect("objects serialize");
    let Some((operations, removed)) = take_over_patch(&live, rendered) else {
        return Ok(Vec::new());
    };
    let patch: json_patch::Patch =
        serde_json::from_value(operations).expect("the operations are a JSON patch");
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    apply::api(client, namespace, target.kind)
        .patch(&target.name, &params, &Patch::Json::<()>(patch))
        .await
        .map_err(|source| Error::kube(format!("take the fields of {target} over"), source))?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manager: &str, fields: Value) -> Value {
        json!({"manager": manager, "operation": "Update", "apiVersion": "apps/v1",
            "fieldsType": "FieldsV1", "fieldsV1": fields})
    }

    /// A Deployment as a real server keeps it after `kubectl set env deployment/x DEBUG=1` on a
    /// container wikikube renders without env.
    fn deployment_with_env_set_by_hand() -> Value {
        json!({
            "metadata": {"name": "x", "resourceVersion": "7", "managedFields": [
                entry(FIELD_MANAGER, json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec":
                    {"f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {},
                        "f:name": {}, "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":
                        {".": {}, "f:containerPort": {}}}}}}}}})),
                entry("kubectl-set", json!({"f:spec": {"f:template": {"f:spec": {"f:containers":
                    {"k:{\"name\":\"app\"}": {"f:env": {".": {}, "k:{\"name\":\"DEBUG\"}":
                        {".": {}, "f:name": {}, "f:value": {}}}}}}}}})),
                {"manager": "kube-controller-manager", "operation": "Update",
                 "subresource": "status", "fieldsV1": {"f:status": {"f:replicas": {}}}},
                entry("kube-controller-manager", json!({"f:metadata": {"f:annotations":
                    {"f:deployment.kubernetes.io/revision": {}}}})),
            ]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [
                {"name": "sidecar", "image": "s"},
                {"name": "app", "image": "a", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                 "env": [{"name": "DEBUG", "value": "1"}]}]}}},
        })
    }

    #[test]
    fn fields_v1_trees_read_as_paths_with_their_keys() {
        let live = deployment_with_env_set_by_hand();
        let ours = parse_fields(&live["metadata"]["managedFields"][0]["fieldsV1"]);
        let names: Vec<String> = ours.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "spec.replicas",
                "spec.template.spec.containers[name=app]",
                "spec.template.spec.containers[name=app].image",
                "spec.template.spec.containers[name=app].name",
                "spec.template.spec.containers[name=app].ports[containerPort=80,protocol=TCP]",
                "spec.template.spec.containers[name=app].ports[containerPort=80,protocol=TCP].containerPort",
            ]
        );
    }

    #[test]
    fn a_field_set_by_hand_is_foreign_and_the_cluster_s_own_are_not() {
        let foreign = foreign_fields(&deployment_with_env_set_by_hand());
        let shown: Vec<String> = foreign.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["spec.template.spec.containers[name=app].env (kubectl-set)"]
        );
    }

    #[test]
    fn a_shared_map_with_one_of_ours_beneath_is_not_foreign() {
        let object = json!({"metadata": {"managedFields": [
            entry(FIELD_MANAGER, json!({"f:metadata": {"f:labels": {"f:app": {}}}})),
            entry("helm", json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:chart": {}}}})),
        ]}});
        let shown: Vec<String> = foreign_fields(&object)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(shown, ["metadata.labels.chart (helm)"]);
    }

    #[test]
    fn the_take_over_patch_removes_what_the_site_does_not_render_and_keeps_the_rest() {
        let live = deployment_with_env_set_by_hand();
        let rendered = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "a", "ports": [{"containerPort": 80}]}]}}}});
        let (patch, removed) = take_over_patch(&live, &rendered).unwrap();
        let operations = patch.as_array().unwrap();
        assert_eq!(
            operations[0],
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": "7"})
        );
        assert_eq!(
            operations[1],
            json!({"op": "remove", "path": "/spec/template/spec/containers/1/env"})
        );
        let kept: Vec<&str> = operations[2]["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["manager"].as_str().unwrap())
            .collect();
        assert_eq!(
            kept,
            [
                FIELD_MANAGER,
                "kube-controller-manager",
                "kube-controller-manager"
            ]
        );
        assert_eq!(removed.len(), 1);
        let mut patched = live.clone();
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        json_patch::patch(&mut patched, &patch).unwrap();
        assert!(patched["spec"]["template"]["spec"]["containers"][1]
            .get("env")
            .is_none());
    }

    #[test]
    fn a_field_the_site_renders_is_not_removed_only_released() {
        // `kubectl set image` took the image: it is theirs alone now, and the site renders it.
        let object = json!({"metadata": {"resourceVersion": "3", "managedFields": [
            entry(FIELD_MANAGER, json!({"f:spec": {"f:replicas": {}}})),
            entry("kubectl-set", json!({"f:spec": {"f:image": {}}})),
        ]}, "spec": {"replicas": 1, "image": "hand"}});
        let (patch, removed) =
            take_over_patch(&object, &json!({"spec": {"image": "site"}})).unwrap();
        assert!(removed.is_empty());
        let operations = patch.as_array().unwrap();
        assert_eq!(operations.len(), 2, "{patch}");
        assert_eq!(operations[1]["path"], "/metadata/managedFields");
    }

    #[test]
    fn nothing_to_take_when_only_wikikube_and_the_cluster_own_fields() {
        let mut live = deployment_with_env_set_by_hand();
        live["metadata"]["managedFields"]
            .as_array_mut()
            .unwrap()
            .remove(1);
        assert!(take_over_patch(&live, &json!({})).is_none());
        assert!(foreign_fields(&live).is_empty());
    }

    #[test]
    fn later_list_items_are_removed_first() {
        let object = json!({"metadata": {"resourceVersion": "1", "managedFields": [
            entry("kubectl-edit", json!({"f:list": {"k:{\"name\":\"a\"}": {".": {}},
                "k:{\"name\":\"c\"}": {".": {}}}})),
        ]}, "list": [{"name": "a"}, {"name": "b"}, {"name": "c"}]});
        let (patch, _) = take_over_patch(&object, &json!({})).unwrap();
        let paths: Vec<&str> = patch
            .as_array()
            .unwrap()
            .iter()
            .filter(|operation| operation["op"] == "remove")
            .map(|operation| operation["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths, ["/list/2", "/list/0"]);
    }
}
