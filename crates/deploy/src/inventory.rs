//! The inventory: the list of every object wikikube applied in a namespace, kept in the cluster
//! in the ConfigMap [`INVENTORY`]. Pruning deletes what the inventory lists and the caller does
//! not keep (what the site renders, and the versioned ConfigMaps and Secrets of recent revisions,
//! [`crate::history::retained`]), and nothing else: an object wikikube never applied is never touched, whatever its
//! labels say (a label search would also find copies made by hand or by other tools).
//!
//! The inventory only grows during a deploy (every phase adds what it applied before it applies
//! it), and shrinks only after a prune has deleted the objects it drops; so a deploy interrupted at
//! any point leaves an inventory that still covers every object it may have created.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::apply::{self, Mode, ObjectRef};
use crate::Error;

/// The ConfigMap that holds the inventory.
pub const INVENTORY: &str = "wikikube-inventory";
/// Its key.
const KEY: &str = "objects.json";

/// The objects wikikube owns in one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Every object applied and not yet pruned.
    pub objects: BTreeSet<ObjectRef>,
}

impl Inventory {
    /// The objects the inventory lists that `rendered` no longer has, in reverse apply order
    /// (a Deployment goes before the ConfigMaps it mounts). The Namespace and
    /// PersistentVolumeClaims are never pruned: deleting the Namespace would delete everything in
    /// it, history included, and deleting a claim deletes the wikis' uploads; that stays a
    /// decision for a person.
    pub fn prunable(&self, rendered: &[ObjectRef]) -> Vec<ObjectRef> {
        let rendered: BTreeSet<&ObjectRef> = rendered.iter().collect();
        let mut gone: Vec<ObjectRef> = self
            .objects
            .iter()
            .filter(|object| {
                !rendered.contains(object)
                    && !matches!(
                        object.kind,
                        wikikube_render::ObjectKind::Namespace
                            | wikikube_render::ObjectKind::PersistentVolumeClaim
                    )
            })
            .cloned()
            .collect();
        gone.sort_by_key(|object| std::cmp::Reverse(object.kind.apply_rank()));
        gone
    }
}

/// Reads the inventory; a namespace without one has an empty inventory.
pub async fn read(client: &kube::Client, namespace: &str) -> Result<Inventory, Error> {
    let reference = ObjectRef {
        kind: wikikube_render::ObjectKind::ConfigMap,
        name: INVENTORY.into(),
    };
    let Some(object) = apply::get(client, namespace, &reference).await? else {
        return Ok(Inventory::default());
    };
    let text = object
        .data
        .get("data")
        .and_then(|data| data.get(KEY))
        .and_then(|text| text.as_str())
        .unwrap_or("[]");
    let objects = serde_json::from_str(text).map_err(|error| Error::Corrupt {
        what: format!("ConfigMap/{INVENTORY}"),
        message: error.to_string(),
    })?;
    Ok(Inventory { objects })
}

/// Writes the inventory.
pub async fn write(
    client: &kube::Client,
    namespace: &str,
    inventory: &Inventory,
) -> Result<(), Error> {
    let text = serde_json::to_string(&inventory.objects).expect("references serialize");
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(INVENTORY.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_string(),
                "wikikube".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(KEY.to_string(), text)])),
        ..ConfigMap::default()
    };
    let reference = ObjectRef {
        kind: wikikube_render::ObjectKind::ConfigMap,
        name: INVENTORY.into(),
    };
    let body = serde_json::to_value(&map).expect("ConfigMaps serialize");
    apply::apply_value(client, namespace, &reference, &body, Mode::Apply).await?;
    Ok(())
}

/// Adds `objects` to the inventory before they are applied.
pub async fn add(
    client: &kube::Client,
    namespace: &str,
    objects: impl IntoIterator<Item = ObjectRef>,
) -> Result<Inventory, Error> {
    let mut inventory = read(client, namespace).await?;
    let before = inventory.objects.len();
    inventory.objects.extend(objects);
    if inventory.objects.len() != before {
        write(client, namespace, &inventory).await?;
    }
    Ok(inventory)
}

/// Deletes what the inventory lists and `keep` does not, then drops it from the inventory.
/// Returns what was deleted.
pub async fn prune(
    client: &kube::Client,
    namespace: &str,
    keep: &[ObjectRef],
) -> Result<Vec<ObjectRef>, Error> {
    let mut inventory = read(client, namespace).await?;
    let gone = inventory.prunable(keep);
    for object in &gone {
        apply::delete(client, namespace, object).await?;
        inventory.objects.remove(object);
    }
    if !gone.is_empty() {
        write(client, namespace, &inventory).await?;
    }
    Ok(gone)
}

/// Drops objects that were deleted from the inventory.
pub async fn remove<'a>(
    client: &kube::Client,
    namespace: &str,
    objects: impl IntoIterator<Item = &'a ObjectRef>,
) -> Result<(), Error> {
    let mut inventory = read(client, namespace).await?;
    let before = inventory.objects.len();
    for object in objects {
        inventory.objects.remove(object);
    }
    if inventory.objects.len() != before {
        write(client, namespace, &inventory).await?;
    }
    Ok(())
}
