//! The simulated API server's field ownership, as a real one keeps it for server-side apply:
//! one FieldsV1 tree per field manager and operation in `metadata.managedFields`, list items by
//! their merge keys, a field removed by an apply only when no other manager owns it, conflicts
//! with other managers' values taken over by a forced apply (409 otherwise), and updates that
//! are not applies (`kubectl edit`, `set env`, a JSON patch) taking the fields they change and
//! dropping, for every manager, the fields they remove.
//!
//! Independent of `wikikube_deploy::ownership` on purpose: the client reads what this writes, so
//! sharing code would let one mistake pass on both sides. Simplified where wikikube's objects do
//! not reach: list item order for new items is the applied order, and maps carry no `.` entry.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

/// A field path as FieldsV1 tokens: `f:spec`, `k:{"name":"app"}`.
pub type Path = Vec<String>;

/// The merge keys of the lists wikikube renders that the API treats as maps; every other list
/// is atomic (owned and replaced as a whole).
fn merge_keys(field: &str, item: &Value) -> Option<&'static [&'static str]> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets" => Some(&["name"]),
        "volumeMounts" => Some(&["mountPath"]),
        "ports" if item.get("containerPort").is_some() => Some(&["containerPort", "protocol"]),
        "ports" => Some(&["port", "protocol"]),
        "topologySpreadConstraints" => Some(&["topologyKey", "whenUnsatisfiable"]),
        _ => None,
    }
}

/// The `k:` token of a list item: its key fields, sorted, a missing port protocol as the TCP
/// the server defaults it to.
fn key_token(keys: &[&str], item: &Value) -> String {
    let mut key = Map::new();
    for field in keys {
        match item.get(*field) {
            Some(value) => {
                key.insert(field.to_string(), value.clone());
            }
            None if *field == "protocol" => {
                key.insert("protocol".into(), json!("TCP"));
            }
            None => {}
        }
    }
    format!("k:{}", Value::Object(key))
}

fn item_matches(item: &Value, token: &str) -> bool {
    let Ok(Value::Object(key)) = serde_json::from_str::<Value>(&token[2..]) else {
        return false;
    };
    key.iter().all(|(field, wanted)| match item.get(field) {
        Some(value) => value == wanted,
        None => field == "protocol" && wanted == "TCP",
    })
}

/// What marks a list item's own node among the leaves.
const ITEM: &str = "<item>";

/// Every owned field of an object's user-settable content: leaves (scalars, atomic lists, empty
/// maps) with their values, and list items as nodes. Server-written parts (status, identity and
/// bookkeeping metadata) are not anyone's.
pub fn leaves(object: &Value) -> Vec<(Path, Value)> {
    fn walk(path: &mut Path, value: &Value, out: &mut Vec<(Path, Value)>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (name, child) in map {
                    path.push(format!("f:{name}"));
                    match child {
                        Value::Array(items)
                            if items.first().is_some_and(|first| {
                                first.is_object() && merge_keys(name, first).is_some()
                            }) =>
                        {
                            for item in items {
                                let keys = merge_keys(name, item).unwrap_or(&["name"]);
                                path.push(key_token(keys, item));
                                out.push((path.clone(), json!(ITEM)));
                                walk(path, item, out);
                                path.pop();
                            }
                        }
                        _ => walk(path, child, out),
                    }
                    path.pop();
                }
            }
            other => out.push((path.clone(), other.clone())),
        }
    }
    let mut out = Vec::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (name, child) in map {
        let mut path = vec![format!("f:{name}")];
        match name.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for field in ["labels", "annotations"] {
                    if let Some(value) = child.get(field) {
                        path.push(format!("f:{field}"));
                        walk(&mut path, value, &mut out);
                        path.pop();
                    }
                }
            }
            _ => walk(&mut path, child, &mut out),
        }
    }
    out
}

/// A FieldsV1 tree of paths.
pub fn tree(paths: &BTreeSet<Path>) -> Value {
    let mut root = json!({});
    for path in paths {
        let mut node = &mut root;
        for token in path {
            node = node
                .as_object_mut()
                .unwrap()
                .entry(token.clone())
                .or_insert_with(|| json!({}));
        }
        if path.last().is_some_and(|token| token.starts_with("k:")) {
            node.as_object_mut().unwrap().insert(".".into(), json!({}));
        }
    }
    root
}

/// The paths a FieldsV1 tree owns (as [`tree`] writes them, or a client sends them back).
pub fn paths(tree: &Value) -> BTreeSet<Path> {
    fn walk(path: &mut Path, node: &Value, out: &mut BTreeSet<Path>) {
        for (token, child) in node.as_object().into_iter().flatten() {
            if token == "." {
                out.insert(path.clone());
                continue;
            }
            path.push(token.clone());
            if child.as_object().is_some_and(Map::is_empty) {
                out.insert(path.clone());
            } else {
                walk(path, child, out);
            }
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(&mut Vec::new(), tree, &mut out);
    out
}

/// One entry of `managedFields`.
#[derive(Clone, Debug)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub time: String,
    pub fields: BTreeSet<Path>,
}

pub fn entries(object: &Value) -> Vec<Entry> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| Entry {
            manager: entry["manager"].as_str().unwrap_or_default().into(),
            operation: entry["operation"].as_str().unwrap_or("Update").into(),
            time: entry["time"].as_str().unwrap_or_default().into(),
            fields: paths(&entry["fieldsV1"]),
        })
        .collect()
}

pub fn write_entries(object: &mut Value, entries: &[Entry], api_version: &str) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|entry| !entry.fields.is_empty())
        .map(|entry| {
            json!({"manager": entry.manager, "operation": entry.operation,
                "apiVersion": api_version, "time": entry.time, "fieldsType": "FieldsV1",
                "fieldsV1": tree(&entry.fields)})
        })
        .collect();
    if list.is_empty() {
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = Value::Array(list);
    }
}

fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut at = object;
    for token in path {
        at = if let Some(name) = token.strip_prefix("f:") {
            at.as_object()?.get(name)?
        } else {
            at.as_array()?
                .iter()
                .find(|item| item_matches(item, token))?
        };
    }
    Some(at)
}

/// Sets one leaf (or creates one list item) of `object`, creating what leads to it.
fn set(object: &mut Value, path: &[String], value: &Value) {
    let mut at = object;
    for (position, token) in path.iter().enumerate() {
        let last = position + 1 == path.len();
        if let Some(name) = token.strip_prefix("f:") {
            if !at.is_object() {
                *at = json!({});
            }
            let map = at.as_object_mut().unwrap();
            if last {
                map.insert(name.into(), value.clone());
                return;
            }
            let next_is_item = path[position + 1].starts_with("k:");
            at = map.entry(name.to_string()).or_insert_with(|| {
                if next_is_item {
                    json!([])
                } else {
                    json!({})
                }
            });
        } else {
            if !at.is_array() {
                *at = json!([]);
            }
            let items = at.as_array_mut().unwrap();
            let index = match items.iter().position(|item| item_matches(item, token)) {
                Some(index) => index,
                None => {
                    let key: Value = serde_json::from_str(&token[2..]).unwrap();
                    items.push(key);
                    items.len() - 1
                }
            };
            at = &mut items[index];
        }
    }
}

/// Removes one field or list item; maps and lists it leaves empty go too.
fn remove(object: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut at = &mut *object;
    for token in parent_path {
        let next = if let Some(name) = token.strip_prefix("f:") {
            at.as_object_mut().and_then(|map| map.get_mut(name))
        } else {
            at.as_array_mut()
                .and_then(|items| items.iter_mut().find(|item| item_matches(item, token)))
        };
        let Some(next) = next else {
            return;
        };
        at = next;
    }
    if let Some(name) = last.strip_prefix("f:") {
        if let Some(map) = at.as_object_mut() {
            map.remove(name);
        }
    } else if let Some(items) = at.as_array_mut() {
        items.retain(|item| !item_matches(item, last));
    }
    let empty = match &*at {
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    };
    if empty && parent_path.len() > 1 {
        remove(object, parent_path);
    }
}

/// A server-side apply of `applied` by `manager` onto `live` (`None`: a create). Returns the new
/// object with its `managedFields`, or the 409 conflict message of an apply without force.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, String> {
    let mut object = live.cloned().unwrap_or_else(|| json!({"metadata": {}}));
    let mut owners = entries(&object);
    let current: BTreeMap<Path, Value> = leaves(&object).into_iter().collect();
    let wanted = leaves(applied);
    let wanted_paths: BTreeSet<Path> = wanted.iter().map(|(path, _)| path.clone()).collect();
    let mut conflicts = Vec::new();
    for (path, value) in &wanted {
        for entry in owners.iter_mut().filter(|entry| entry.manager != manager) {
            if entry.fields.contains(path) && current.get(path) != Some(value) {
                if force {
                    entry.fields.remove(path);
                } else {
                    conflicts.push(format!(
                        "conflict with \"{}\": .{}",
                        entry.manager,
                        path.join(".")
                    ));
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            conflicts.join("; ")
        ));
    }
    let ours = owners
        .iter()
        .filter(|entry| entry.manager == manager && entry.operation == "Apply")
        .flat_map(|entry| entry.fields.iter().cloned())
        .collect::<BTreeSet<Path>>();
    let others: BTreeSet<Path> = owners
        .iter()
        .filter(|entry| entry.manager != manager || entry.operation != "Apply")
        .flat_map(|entry| entry.fields.iter().cloned())
        .collect();
    // What we set before and set no more goes, unless someone else owns it too; deepest first.
    let mut dropped: Vec<&Path> = ours
        .difference(&wanted_paths)
        .filter(|path| !others.contains(*path))
        .collect();
    dropped.sort_by_key(|path| std::cmp::Reverse(path.len()));
    for path in dropped {
        remove(&mut object, path);
    }
    for (path, value) in &wanted {
        if value != &json!(ITEM) {
            set(&mut object, path, value);
        } else if value_at(&object, path).is_none() {
            set(&mut object, path, value);
            // The item was created from its key alone; its fields follow.
        }
    }
    let changed = live.is_none_or(|live| strip(live) != strip(&object)) || ours != wanted_paths;
    match owners
        .iter_mut()
        .find(|entry| entry.manager == manager && entry.operation == "Apply")
    {
        Some(entry) => {
            entry.fields = wanted_paths;
            if changed {
                entry.time = now.to_string();
            }
        }
        None => owners.insert(
            0,
            Entry {
                manager: manager.into(),
                operation: "Apply".into(),
                time: now.into(),
                fields: wanted_paths,
            },
        ),
    }
    let api_version = applied["apiVersion"].as_str().unwrap_or("v1").to_string();
    write_entries(&mut object, &owners, &api_version);
    Ok(object)
}

/// An update that is not an apply (`kubectl edit`, `set env`, a JSON patch) by `manager`, from
/// `before` to `after`: fields it adds or changes become its own (taken from other managers),
/// fields it removes are no one's any more. `managedFields` the update itself rewrites are
/// taken as sent, as a real server does.
pub fn update(before: &Value, mut after: Value, manager: &str, now: &str) -> Value {
    let sent_own = after["metadata"]["managedFields"] != before["metadata"]["managedFields"];
    let mut owners = entries(if sent_own { &after } else { before });
    let old: BTreeMap<Path, Value> = leaves(before).into_iter().collect();
    let new: BTreeMap<Path, Value> = leaves(&after).into_iter().collect();
    for entry in &mut owners {
        entry.fields.retain(|path| new.contains_key(path));
    }
    let changed: BTreeSet<Path> = new
        .iter()
        .filter(|(path, value)| old.get(*path) != Some(*value))
        .map(|(path, _)| path.clone())
        .collect();
    if !changed.is_empty() {
        for entry in &mut owners {
            entry.fields.retain(|path| !changed.contains(path));
        }
        match owners
            .iter_mut()
            .find(|entry| entry.manager == manager && entry.operation == "Update")
        {
            Some(entry) => {
                entry.fields.extend(changed);
                entry.time = now.into();
            }
            None => owners.push(Entry {
                manager: manager.into(),
                operation: "Update".into(),
                time: now.into(),
                fields: changed,
            }),
        }
    }
    let api_version = after["apiVersion"].as_str().unwrap_or("v1").to_string();
    write_entries(&mut after, &owners, &api_version);
    after
}

/// An object without what only the server writes, to tell whether a write changed it.
fn strip(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object["metadata"].as_object_mut() {
        for field in ["managedFields", "resourceVersion", "generation"] {
            metadata.remove(field);
        }
    }
    object
}
