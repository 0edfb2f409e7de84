//! The labels that tie a release's Deployment, Service and PodDisruptionBudget together.
//!
//! A Deployment selects its pods by deployment and release. main's Service selects by deployment
//! and `routed-via=main`, which canary pods carry too: that is how a canary takes a share of
//! main's traffic without a Service of its own.

use std::collections::BTreeMap;

use wikikube_model::ReleaseName;

/// Label: which deployment (mw-web, mw-api-ext...).
pub const DEPLOYMENT: &str = "wikikube.org/deployment";
/// Label: which release (main, canary, debug, next).
pub const RELEASE: &str = "wikikube.org/release";
/// Label: which release's Service routes to the pod.
pub const ROUTED_VIA: &str = "wikikube.org/routed-via";
/// Label: the site.
pub const SITE: &str = "wikikube.org/site";
/// Label: the base name of a versioned ConfigMap or Secret ([`crate::naming::versioned`]), so
/// that `kubectl get configmaps -l wikikube.org/version-of=mw-web-main-php` lists its versions.
pub const VERSION_OF: &str = "wikikube.org/version-of";

/// Labels on every object of the site.
pub fn common(site: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "mediawiki".to_string(),
        ),
        (
            "app.kubernetes.io/managed-by".to_string(),
            "wikikube".to_string(),
        ),
        (SITE.to_string(), site.to_string()),
    ])
}

/// Which Service routes to a release's pods.
pub fn routed_via(release: ReleaseName) -> ReleaseName {
    match release {
        ReleaseName::Canary => ReleaseName::Main,
        other => other,
    }
}

/// The selector of a release's Deployment and PodDisruptionBudget.
pub fn release_selector(deployment: &str, release: ReleaseName) -> BTreeMap<String, String> {
    BTreeMap::from([
        (DEPLOYMENT.to_string(), deployment.to_string()),
        (RELEASE.to_string(), release.to_string()),
    ])
}

/// The selector of the Service that `release` owns.
pub fn service_selector(deployment: &str, release: ReleaseName) -> BTreeMap<String, String> {
    BTreeMap::from([
        (DEPLOYMENT.to_string(), deployment.to_string()),
        (ROUTED_VIA.to_string(), release.to_string()),
    ])
}

/// The labels of a release's pods: both selectors, plus the common labels.
pub fn pod(site: &str, deployment: &str, release: ReleaseName) -> BTreeMap<String, String> {
    let mut labels = common(site);
    labels.extend(release_selector(deployment, release));
    labels.insert(ROUTED_VIA.to_string(), routed_via(release).to_string());
    labels
}
