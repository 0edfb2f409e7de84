//! What only a local environment renders: the memcached server that a cluster's cakes find in
//! their datacenter's pools, and the host ports and data volume that one machine uses instead of
//! Services and a database server.
//!
//! They are ordinary Deployments and pod settings (`hostPort`, a PersistentVolumeClaim volume),
//! so `local` runs them exactly as it runs the cakes, with one conversion for every Deployment.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use wikikube_model::ResolvedSite;

use crate::objects::Object;
use crate::pod::{pod_security_context, port, resources, restricted, strings, tcp_probe};
use crate::{labels, naming, sizing, RenderError};

/// The host name under which podman's containers reach the host, where a local environment's
/// memcached is published.
pub const HOST: &str = "host.containers.internal";

/// Where MediaWiki's SQLite databases live in the app container of a local environment.
pub const DATA_DIR: &str = "/var/lib/mediawiki-data";

/// The port memcached listens on inside its pod.
const MEMCACHED_PORT: u16 = 11211;

/// The memcached Deployment of a local environment, published on the host port that the local
/// pool names (`host.containers.internal:PORT`).
pub fn memcached(
    site: &ResolvedSite,
    meta: &impl Fn(String) -> ObjectMeta,
) -> Result<Vec<Object>, RenderError> {
    let host_port = memcached_host_port(site)?;
    let name = naming::memcached(site);
    let selector = std::collections::BTreeMap::from([
        (labels::SITE.to_string(), site.spec.site.name.clone()),
        (
            "app.kubernetes.io/component".to_string(),
            "memcached".to_string(),
        ),
    ]);
    let mut pod_labels = labels::common(&site.spec.site.name);
    pod_labels.extend(selector.clone());
    let images = wikikube_model::de::from_node::<wikikube_model::ImageValues>(
        site.tree.get_path(["images"]).expect("defaults set images"),
        "images",
    )
    .map_err(|error| RenderError::Invalid(error.to_string()))?;
    let container = Container {
        name: "memcached".into(),
        image: Some(images.memcached),
        command: Some(strings(&[
            "memcached",
            &format!("--port={MEMCACHED_PORT}"),
            "--memory-limit=64",
            "--conn-limit=1024",
        ])),
        ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
            host_port: Some(i32::from(host_port)),
            ..port("memcache", MEMCACHED_PORT)
        }]),
        readiness_probe: Some(tcp_probe("memcache")),
        liveness_probe: Some(tcp_probe("memcache")),
        resources: Some(resources(sizing::fixed(100, 96))),
        security_context: Some(restricted()),
        ..Container::default()
    };
    Ok(vec![Object::Deployment(Deployment {
        metadata: ObjectMeta {
            labels: Some(pod_labels.clone()),
            ..meta(name)
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    security_context: Some(pod_security_context()),
                    automount_service_account_token: Some(false),
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })])
}

/// The host port of the local memcached: the port of the local pool's first server, which a
/// local environment must name as `host.containers.internal:PORT`.
pub fn memcached_host_port(site: &ResolvedSite) -> Result<u16, RenderError> {
    let datacenter = &site.environment.datacenter;
    let server = site
        .deployments
        .iter()
        .flat_map(|deployment| deployment.releases.iter())
        .filter_map(|release| release.values.memcached.pools.get(datacenter))
        .flat_map(|pool| pool.servers.iter())
        .next()
        .ok_or_else(|| {
            RenderError::Invalid(format!(
                "memcached.pools.{datacenter} has no server for the local memcached"
            ))
        })?;
    match server.rsplit_once(':') {
        Some((HOST, port)) => port.parse().map_err(|_| {
            RenderError::Invalid(format!("memcached server {server} has no valid port"))
        }),
        _ => Err(RenderError::Invalid(format!(
            "a local environment's memcached pool must be `{HOST}:PORT`, where `wikikube up` \
             runs memcached; found {server}"
        ))),
    }
}

/// Publishes the container port named `name` on `host_port` of the machine (0: not at all).
pub(crate) fn publish(container: &mut Container, name: &str, host_port: u16) {
    if host_port == 0 {
        return;
    }
    for port in container.ports.iter_mut().flatten() {
        if port.name.as_deref() == Some(name) {
            port.host_port = Some(i32::from(host_port));
        }
    }
}

/// Gives the app container the wikis' SQLite databases, on a volume every pod of the site
/// shares.
pub(crate) fn mount_wiki_data(site: &ResolvedSite, spec: &mut PodSpec) {
    let volume = naming::wiki_data(site);
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: volume.clone(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: volume.clone(),
            ..PersistentVolumeClaimVolumeSource::default()
        }),
        ..Volume::default()
    });
    for container in spec.containers.iter_mut().filter(|c| c.name == "app") {
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: volume.clone(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            });
    }
}
