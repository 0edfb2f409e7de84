//! The Kubernetes objects wikikube writes, in the order they must be applied.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
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
    /// Stable addresses of releases.
    Service(Service),
    /// The cake itself.
    Deployment(Deployment),
    /// Limits on voluntary disruption.
    PodDisruptionBudget(PodDisruptionBudget),
}

impl Object {
    /// The object's kind, as in its `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Namespace(_) => "Namespace",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Secret(_) => "Secret",
            Object::Service(_) => "Service",
            Object::Deployment(_) => "Deployment",
            Object::PodDisruptionBudget(_) => "PodDisruptionBudget",
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Object::Namespace(object) => &object.metadata,
            Object::ServiceAccount(object) => &object.metadata,
            Object::ConfigMap(object) => &object.metadata,
            Object::Secret(object) => &object.metadata,
            Object::Service(object) => &object.metadata,
            Object::Deployment(object) => &object.metadata,
            Object::PodDisruptionBudget(object) => &object.metadata,
        }
    }

    /// The object's name.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or_default()
    }

    /// Position in apply order.
    pub fn apply_rank(&self) -> u8 {
        match self {
            Object::Namespace(_) => 0,
            Object::ServiceAccount(_) => 1,
            Object::ConfigMap(_) => 2,
            Object::Secret(_) => 3,
            Object::Service(_) => 4,
            Object::Deployment(_) => 5,
            Object::PodDisruptionBudget(_) => 6,
        }
    }

    /// `Kind/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }
}
