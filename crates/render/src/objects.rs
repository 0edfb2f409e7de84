//! The Kubernetes objects wikikube writes, in the order they must be applied.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// One rendered object. The variants are declared in apply order, so sorting by variant gives
/// the order in which a cluster accepts them (a Deployment's ConfigMaps exist before it).
// A render holds a few dozen objects in one Vec, so the size of the largest variant costs little;
// boxing it would only make every match on objects noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    /// The site's namespace.
    Namespace(Namespace),
    /// The identity the cake's pods run as.
    ServiceAccount(ServiceAccount),
    /// Config files of the cake's programs.
    ConfigMap(ConfigMap),
    /// Private values and certificates.
    Secret(Secret),
    /// Storage that outlives pods: the wikis' media.
    PersistentVolumeClaim(PersistentVolumeClaim),
    /// Stable addresses of releases.
    Service(Service),
    /// The cake itself.
    Deployment(Deployment),
    /// Limits on voluntary disruption.
    PodDisruptionBudget(PodDisruptionBudget),
    /// Work on a schedule: the site's backups.
    CronJob(CronJob),
}

/// The kinds of object wikikube renders. Serialized as the `kind` field writes them
/// (`Deployment`), which is also how deploy records them in its history.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub enum ObjectKind {
    /// A Namespace.
    Namespace,
    /// A ServiceAccount.
    ServiceAccount,
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
    /// A PersistentVolumeClaim.
    PersistentVolumeClaim,
    /// A Service.
    Service,
    /// A Deployment (apps/v1).
    Deployment,
    /// A PodDisruptionBudget (policy/v1).
    PodDisruptionBudget,
    /// A CronJob (batch/v1).
    CronJob,
}

impl ObjectKind {
    /// Position in apply order: the variants are declared in it.
    pub fn apply_rank(self) -> u8 {
        self as u8
    }

    /// The kind as the `kind` field writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Namespace => "Namespace",
            ObjectKind::ServiceAccount => "ServiceAccount",
            ObjectKind::ConfigMap => "ConfigMap",
            ObjectKind::Secret => "Secret",
            ObjectKind::PersistentVolumeClaim => "PersistentVolumeClaim",
            ObjectKind::Service => "Service",
            ObjectKind::Deployment => "Deployment",
            ObjectKind::PodDisruptionBudget => "PodDisruptionBudget",
            ObjectKind::CronJob => "CronJob",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Namespace(_) => ObjectKind::Namespace,
            Object::ServiceAccount(_) => ObjectKind::ServiceAccount,
            Object::ConfigMap(_) => ObjectKind::ConfigMap,
            Object::Secret(_) => ObjectKind::Secret,
            Object::PersistentVolumeClaim(_) => ObjectKind::PersistentVolumeClaim,
            Object::Service(_) => ObjectKind::Service,
            Object::Deployment(_) => ObjectKind::Deployment,
            Object::PodDisruptionBudget(_) => ObjectKind::PodDisruptionBudget,
            Object::CronJob(_) => ObjectKind::CronJob,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(object) => &object.metadata,
            Object::ServiceAccount(object) => &object.metadata,
            Object::ConfigMap(object) => &object.metadata,
            Object::Secret(object) => &object.metadata,
            Object::PersistentVolumeClaim(object) => &object.metadata,
            Object::Service(object) => &object.metadata,
            Object::Deployment(object) => &object.metadata,
            Object::PodDisruptionBudget(object) => &object.metadata,
            Object::CronJob(object) => &object.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// Whether it is a versioned ConfigMap or Secret ([`crate::naming::versioned`]): immutable,
    /// named after its content, kept while a recent revision uses it.
    pub fn is_versioned(&self) -> bool {
        match self {
            Object::ConfigMap(map) => map.immutable == Some(true),
            Object::Secret(secret) => secret.immutable == Some(true),
            _ => false,
        }
    }

    /// Position in apply order.
    pub fn apply_rank(&self) -> u8 {
        self.kind().apply_rank()
    }

    /// `Kind/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }
}
