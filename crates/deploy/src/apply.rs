//! Talking to the API server: server-side apply (for real or as a dry run), get and delete of
//! the kinds wikikube renders.
//!
//! Every write goes through server-side apply under one field manager, [`FIELD_MANAGER`], with
//! `force`: wikikube owns every field it renders, so a conflict with a hand edit (`kubectl edit`)
//! is settled in favour of the site files, which is what a deploy means. Fields wikikube does not
//! render (added by other controllers, or `kubectl scale` on fields we never set) are left alone.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::Client;
use serde::{Deserialize, Serialize};

use wikikube_render::ObjectKind;

use crate::Error;

/// The field manager of every write wikikube makes.
pub const FIELD_MANAGER: &str = "wikikube";

/// Whether an apply changes the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `dryRun=All`: the server computes the result (defaults, admission) and stores nothing.
    DryRun,
    /// A real apply.
    Apply,
}

/// Which object: its kind and name. The namespace is the site's (none for a Namespace).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Its kind.
    pub kind: ObjectKind,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectRef {
    /// The reference of a rendered object.
    pub fn of(object: &wikikube_render::Object) -> Self {
        ObjectRef {
            kind: object.kind(),
            name: object.name().to_string(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// The API resource of a kind wikikube renders, and whether it lives in a namespace.
fn resource(kind: ObjectKind) -> (ApiResource, bool) {
    match kind {
        ObjectKind::Namespace => (ApiResource::erase::<Namespace>(&()), false),
        ObjectKind::ServiceAccount => (ApiResource::erase::<ServiceAccount>(&()), true),
        ObjectKind::ConfigMap => (ApiResource::erase::<ConfigMap>(&()), true),
        ObjectKind::Secret => (ApiResource::erase::<Secret>(&()), true),
        ObjectKind::PersistentVolumeClaim => {
            (ApiResource::erase::<PersistentVolumeClaim>(&()), true)
        }
        ObjectKind::Service => (ApiResource::erase::<Service>(&()), true),
        ObjectKind::Deployment => (ApiResource::erase::<Deployment>(&()), true),
        ObjectKind::PodDisruptionBudget => (ApiResource::erase::<PodDisruptionBudget>(&()), true),
        ObjectKind::CronJob => (
            ApiResource::erase::<k8s_openapi::api::batch::v1::CronJob>(&()),
            true,
        ),
    }
}

/// The dynamic API for objects of `kind` in `namespace`.
pub fn api(client: &Client, namespace: &str, kind: ObjectKind) -> Api<DynamicObject> {
    let (resource, namespaced) = resource(kind);
    if namespaced {
        Api::namespaced_with(client.clone(), namespace, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    }
}

/// The patch parameters of every apply: our field manager, forced, dry-run or not.
pub fn params(mode: Mode) -> PatchParams {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match mode {
        Mode::DryRun => params.dry_run(),
        Mode::Apply => params,
    }
}

/// Server-side applies `body` (a whole object with apiVersion and kind) and returns the object as
/// the server has (or, dry-run, would have) it.
pub async fn apply_value(
    client: &Client,
    namespace: &str,
    target: &ObjectRef,
    body: &serde_json::Value,
    mode: Mode,
) -> Result<DynamicObject, Error> {
    let result = api(client, namespace, target.kind)
        .patch(&target.name, &params(mode), &Patch::Apply(body))
        .await;
    match result {
        Ok(applied) => Ok(applied),
        Err(kube::Error::Api(status)) if status.code == 422 => {
            // Invalid: often a field another manager set beside a rendered one, which no
            // apply of ours removes. Name such fields, so the message says what to do.
            let action = format!("apply {target}");
            let foreign = match get(client, namespace, target).await {
                Ok(Some(live)) => crate::ownership::foreign_fields(
                    &serde_json::to_value(live).expect("objects serialize"),
                ),
                _ => Vec::new(),
            };
            if foreign.is_empty() {
                return Err(Error::kube(action, kube::Error::Api(status)));
            }
            let fields: Vec<String> = foreign.iter().map(ToString::to_string).collect();
            Err(Error::ForeignFields {
                action,
                message: status.message,
                fields: fields.join(", "),
            })
        }
        Err(source) => Err(Error::kube(format!("apply {target}"), source)),
    }
}

/// Server-side applies one rendered object.
pub async fn apply(
    client: &Client,
    namespace: &str,
    object: &wikikube_render::Object,
    mode: Mode,
) -> Result<DynamicObject, Error> {
    let body = serde_json::to_value(object).expect("rendered objects serialize");
    apply_value(client, namespace, &ObjectRef::of(object), &body, mode).await
}

/// The live object, or `None` when it does not exist.
pub async fn get(
    client: &Client,
    namespace: &str,
    target: &ObjectRef,
) -> Result<Option<DynamicObject>, Error> {
    api(client, namespace, target.kind)
        .get_opt(&target.name)
        .await
        .map_err(|source| Error::kube(format!("get {target}"), source))
}

/// Deletes an object; one that is already gone is not an error.
pub async fn delete(client: &Client, namespace: &str, target: &ObjectRef) -> Result<(), Error> {
    // Foreground: a Deployment's pods go before the Deployment is reported gone, so a rollback
    // that deletes a release does not leave pods serving behind it.
    let params = DeleteParams::foreground();
    match api(client, namespace, target.kind)
        .delete(&target.name, &params)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(source) => Err(Error::kube(format!("delete {target}"), source)),
    }
}

/// Whether a live Namespace already has every label and annotation the rendered one sets, and
/// is not being deleted: applying it would change nothing. Deploy and diff then skip the apply,
/// which is a cluster-scoped write that a namespace's deployer is rarely granted
/// ([`crate::rbac`]). Labels the server or an administrator added beside ours stay either way.
pub fn namespace_current(live: &DynamicObject, rendered: &serde_json::Value) -> bool {
    if live.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let has_all = |live: Option<&std::collections::BTreeMap<String, String>>, field: &str| {
        rendered["metadata"][field]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(key, value)| {
                live.and_then(|live| live.get(key)).map(String::as_str) == value.as_str()
            })
    };
    has_all(live.metadata.labels.as_ref(), "labels")
        && has_all(live.metadata.annotations.as_ref(), "annotations")
}

/// Whether an error is the API server's 404.
pub fn is_not_found(error: &Error) -> bool {
    matches!(error, Error::Kube { source: kube::Error::Api(status), .. } if status.is_not_found())
}
