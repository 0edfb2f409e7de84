//! From rendered objects to the pods podman runs: the same containers, images, commands, config
//! files and security settings as in Kubernetes, with what a single machine lacks replaced.
//!
//! - ConfigMap volumes become read-only host directories holding the same files (podman keeps
//!   ConfigMap volumes across plays and would serve stale files after a change);
//! - Secret volumes become host directories with one file per key (podman 4.3 crashes on Secret
//!   volumes from YAML);
//! - emptyDir volumes get the pod's name as a prefix: podman makes them named volumes, which
//!   two pods would otherwise share;
//! - the app container gets the wikis' SQLite data on a named volume shared by every pod;
//! - ports are published on the host as the release's `local` values say, and only those;
//! - probes are left out: podman runs them only under systemd, and `up` checks readiness itself;
//! - a memcached pod runs beside the cakes, published on podman's gateway only.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HostPathVolumeSource, PersistentVolumeClaimVolumeSource, Pod,
    PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use model::{ReleaseName, ResolvedSite};
use render::{Object, Rendered};

use crate::state::StateDir;
use crate::Error;

/// Where MediaWiki's SQLite databases live in the app container.
pub const DATA_DIR: &str = "/var/lib/mediawiki-data";

/// A pod to run, with everything that decides whether a running one is still current.
#[derive(Clone, Debug)]
pub struct LocalPod {
    /// The pod's name (`farm-mw-web-main`), also the prefix of its containers' names.
    pub name: String,
    /// The manifest podman plays.
    pub manifest: Pod,
    /// Config directories to write before playing: path -> file name -> contents.
    pub config_dirs: BTreeMap<std::path::PathBuf, BTreeMap<String, String>>,
    /// The host's HTTP port of httpd, when published.
    pub http_port: Option<u16>,
    /// The host's HTTPS port of the tls container, when published.
    pub https_port: Option<u16>,
    /// The host port of memcached, for the memcached pod.
    pub memcached_port: Option<u16>,
    /// The host port of the edge in front of the farm, for the edge pod.
    pub edge_port: Option<u16>,
    /// Which deployment and release it runs, for cake pods.
    pub release: Option<(String, ReleaseName)>,
}

impl LocalPod {
    /// The manifest as YAML.
    pub fn yaml(&self) -> String {
        serde_yaml_ng::to_string(&self.manifest).expect("pods serialize")
    }

    /// The images the pod runs.
    pub fn images(&self) -> Vec<String> {
        self.manifest
            .spec
            .iter()
            .flat_map(|spec| spec.containers.iter())
            .filter_map(|container| container.image.clone())
            .collect()
    }

    /// The container names podman gives this pod's containers.
    pub fn container_name(&self, container: &str) -> String {
        format!("{}-{container}", self.name)
    }
}

/// The name of the volume holding every wiki's database.
pub fn data_volume(site: &ResolvedSite) -> String {
    format!("{}-wiki-data", site.spec.site.name)
}

/// The name of the memcached pod.
pub fn memcached_pod_name(site: &ResolvedSite) -> String {
    format!("{}-memcached", site.spec.site.name)
}

/// Every pod of the local environment: one per enabled release, then memcached. memcached comes
/// last because it is published on podman's gateway address, which exists only once a pod runs
/// on podman's network; until it starts, the cakes' routers count its server as down.
pub fn local_pods(
    site: &ResolvedSite,
    rendered: &Rendered,
    state: &StateDir,
    gateway: &str,
) -> Result<Vec<LocalPod>, Error> {
    let config_maps: BTreeMap<&str, &BTreeMap<String, String>> = rendered
        .objects
        .iter()
        .filter_map(|object| match object {
            Object::ConfigMap(map) => Some((object.name(), map.data.as_ref()?)),
            _ => None,
        })
        .collect();
    let mut pods = Vec::new();
    for object in &rendered.objects {
        let Object::Deployment(deployment) = object else {
            continue;
        };
        // Pods are named after the site too: two sites may run on one machine.
        let name = format!("{}-{}", site.spec.site.name, object.name());
        let labels = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.template.metadata.as_ref())
            .and_then(|meta| meta.labels.clone())
            .unwrap_or_default();
        let release = release_of(site, &labels)?;
        let values = &site
            .deployment(&release.0)
            .and_then(|deployment| deployment.release(release.1))
            .expect("rendered releases exist in the site")
            .values;
        let mut spec = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.template.spec.clone())
            .expect("rendered Deployments have a pod template");
        let mut config_dirs = BTreeMap::new();
        for volume in spec.volumes.iter_mut().flatten() {
            if let Some(source) = volume.config_map.take() {
                let files = config_maps.get(source.name.as_str()).ok_or_else(|| {
                    Error::Inconsistent(format!(
                        "{name} mounts ConfigMap {} which is not rendered",
                        source.name
                    ))
                })?;
                let dir = state
                    .config()
                    .join(format!("{}-{}", source.name, short_hash(files)));
                volume.host_path = Some(host_dir(&dir));
                config_dirs.insert(dir, (*files).clone());
            } else if let Some(source) = volume.secret.take() {
                let secret = source.secret_name.unwrap_or_default();
                let dir = if secret.ends_with("-tls") || volume.name.contains("tls") {
                    state.tls()
                } else {
                    state.secrets()
                };
                volume.host_path = Some(host_dir(&dir));
            } else if volume.empty_dir.is_some() {
                let scoped = format!("{name}-{}", volume.name);
                rename_mounts(&mut spec.containers, &volume.name, &scoped);
                volume.name = scoped;
            }
        }
        let data = data_volume(site);
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: data.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: data.clone(),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        });
        let http_port = nonzero(values.local.http_port);
        let https_port = nonzero(values.local.https_port);
        for container in &mut spec.containers {
            if container.name == "app" {
                container
                    .volume_mounts
                    .get_or_insert_with(Vec::new)
                    .push(VolumeMount {
                        name: data.clone(),
                        mount_path: DATA_DIR.into(),
                        ..VolumeMount::default()
                    });
            }
            for port in container.ports.iter_mut().flatten() {
                port.host_port = match port.name.as_deref() {
                    Some("http") => http_port.map(i32::from),
                    Some("https") => https_port.map(i32::from),
                    _ => None,
                };
            }
            // podman publishes every declared port on the host, the container port standing in
            // for a missing host port, so two pods would fight over their metrics ports: keep
            // only the ports published on purpose.
            if let Some(ports) = container.ports.as_mut() {
                ports.retain(|port| port.host_port.is_some());
            }
            // podman turns probes into healthchecks that need systemd timers and tools (nc, curl)
            // inside the images; `wikikube up` checks readiness itself instead.
            container.liveness_probe = None;
            container.readiness_probe = None;
        }
        pods.push(LocalPod {
            manifest: pod(&name, labels, spec),
            name,
            config_dirs,
            http_port,
            https_port,
            memcached_port: None,
            edge_port: None,
            release: Some(release),
        });
    }
    if let Some(edge) = edge_pod(site, state, &pods)? {
        pods.push(edge);
    }
    pods.push(memcached_pod(site, gateway, memcached_port(site)?)?);
    Ok(pods)
}

/// The host port memcached is published on: the port of the local pool's server, which the
/// environment file names as `host.containers.internal:PORT`.
pub fn memcached_port(site: &ResolvedSite) -> Result<u16, Error> {
    let datacenter = &site.environment.datacenter;
    let servers: Vec<String> = site
        .deployments
        .iter()
        .flat_map(|deployment| deployment.releases.iter())
        .filter_map(|release| release.values.memcached.pools.get(datacenter))
        .flat_map(|pool| pool.servers.iter().cloned())
        .collect();
    let server = servers.first().ok_or_else(|| {
        Error::Inconsistent(format!(
            "memcached.pools.{datacenter} has no server for the local memcached"
        ))
    })?;
    match server.rsplit_once(':') {
        Some(("host.containers.internal", port)) => port.parse().map_err(|_| {
            Error::Inconsistent(format!("memcached server {server} has no valid port"))
        }),
        _ => Err(Error::Inconsistent(format!(
            "a local environment's memcached pool must be `host.containers.internal:PORT`, \
             where `wikikube up` runs memcached; found {server}"
        ))),
    }
}

fn memcached_pod(site: &ResolvedSite, gateway: &str, port: u16) -> Result<LocalPod, Error> {
    let name = memcached_pod_name(site);
    let image = global_image(site, |images| images.memcached)?;
    let container = Container {
        name: "memcached".into(),
        image: Some(image),
        command: Some(
            [
                "memcached",
                "--port=11211",
                "--memory-limit=64",
                "--conn-limit=1024",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("memcache".into()),
            container_port: 11211,
            host_port: Some(i32::from(port)),
            // Only the host and its containers: never the machine's other networks.
            host_ip: Some(gateway.to_string()),
            protocol: Some("TCP".into()),
        }]),
        security_context: Some(pod_user()),
        ..Container::default()
    };
    let labels = render::labels::common(&site.spec.site.name);
    Ok(LocalPod {
        manifest: pod(
            &name,
            labels,
            PodSpec {
                containers: vec![container],
                ..PodSpec::default()
            },
        ),
        name,
        config_dirs: BTreeMap::new(),
        http_port: None,
        https_port: None,
        memcached_port: Some(port),
        edge_port: None,
        release: None,
    })
}

/// The cake's restricted security context, with the pods' user set: these pods have no pod-level
/// context to inherit it from.
fn pod_user() -> k8s_openapi::api::core::v1::SecurityContext {
    k8s_openapi::api::core::v1::SecurityContext {
        run_as_user: Some(render::pod::RUN_AS),
        ..render::pod::restricted()
    }
}

/// The image reference of a global image setting (the edge and memcached belong to no release).
fn global_image(
    site: &ResolvedSite,
    pick: fn(model::ImageValues) -> String,
) -> Result<String, Error> {
    let images = model::de::from_node::<model::ImageValues>(
        site.tree.get_path(["images"]).expect("defaults set images"),
        "images",
    )
    .map_err(|error| Error::Inconsistent(error.to_string()))?;
    Ok(pick(images))
}

/// The edge in front of the farm (`[traffic] local_https_port`), routing to the cake pods'
/// published httpd ports through the host.
fn edge_pod(
    site: &ResolvedSite,
    state: &StateDir,
    pods: &[LocalPod],
) -> Result<Option<LocalPod>, Error> {
    let port = site.spec.traffic.local_https_port;
    if port == 0 {
        return Ok(None);
    }
    // As in a cluster, the edge goes through each cake's tls container and checks its
    // certificate, which on one machine is the edge's own self-signed one; a release that
    // publishes only httpd's port is reached over plain HTTP.
    let server_name = render::config::traffic::upstream_server_name(site);
    let upstream = |deployment: &str, release: ReleaseName| {
        let pod = pods.iter().find(|pod| {
            pod.release
                .as_ref()
                .is_some_and(|r| r.0 == deployment && r.1 == release)
        })?;
        let address = |port: u16| format!("host.containers.internal:{port}");
        match (pod.https_port, pod.http_port) {
            (Some(port), _) => Some(render::config::traffic::Upstream {
                address: address(port),
                tls: Some(edge::config::UpstreamTls {
                    ca: format!("{}/tls.crt", render::config::paths::TLS_DIR),
                    server_name: server_name.clone(),
                }),
            }),
            (None, Some(port)) => Some(render::config::traffic::Upstream {
                address: address(port),
                tls: None,
            }),
            (None, None) => None,
        }
    };
    let Some(config) = render::config::traffic::edge(site, upstream) else {
        return Ok(None);
    };
    let name = render::edge::name(site);
    let files = BTreeMap::from([(
        "edge.toml".to_string(),
        render::config::traffic::file(&config),
    )]);
    let dir = state
        .config()
        .join(format!("{name}-{}", short_hash(&files)));
    let container = Container {
        name: "edge".into(),
        image: Some(global_image(site, |images| images.tls)?),
        command: Some(
            ["edge", "--config", "/etc/wikikube/edge/edge.toml"]
                .map(String::from)
                .to_vec(),
        ),
        ports: Some(vec![ContainerPort {
            name: Some("https".into()),
            container_port: i32::from(render::config::traffic::PORT),
            host_port: Some(i32::from(port)),
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "edge-config".into(),
                mount_path: "/etc/wikikube/edge".into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tls-certificate".into(),
                mount_path: render::config::paths::TLS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(pod_user()),
        ..Container::default()
    };
    let spec = PodSpec {
        containers: vec![container],
        volumes: Some(vec![
            Volume {
                name: "edge-config".into(),
                host_path: Some(host_dir(&dir)),
                ..Volume::default()
            },
            Volume {
                name: "tls-certificate".into(),
                host_path: Some(host_dir(&state.tls())),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };
    Ok(Some(LocalPod {
        manifest: pod(&name, render::labels::common(&site.spec.site.name), spec),
        name,
        config_dirs: BTreeMap::from([(dir, files)]),
        http_port: None,
        https_port: None,
        memcached_port: None,
        edge_port: Some(port),
        release: None,
    }))
}

fn pod(name: &str, labels: BTreeMap<String, String>, spec: PodSpec) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn release_of(
    site: &ResolvedSite,
    labels: &BTreeMap<String, String>,
) -> Result<(String, ReleaseName), Error> {
    let deployment = labels.get(render::labels::DEPLOYMENT);
    let release = labels
        .get(render::labels::RELEASE)
        .and_then(|name| name.parse::<ReleaseName>().ok());
    match (deployment, release) {
        (Some(deployment), Some(release)) if site.deployment(deployment).is_some() => {
            Ok((deployment.clone(), release))
        }
        _ => Err(Error::Inconsistent(format!(
            "a rendered Deployment lacks its deployment and release labels: {labels:?}"
        ))),
    }
}

fn rename_mounts(containers: &mut [Container], from: &str, to: &str) {
    for container in containers {
        for mount in container.volume_mounts.iter_mut().flatten() {
            if mount.name == from {
                mount.name = to.to_string();
            }
        }
    }
}

fn host_dir(dir: &Path) -> HostPathVolumeSource {
    HostPathVolumeSource {
        path: dir.display().to_string(),
        type_: Some("Directory".into()),
    }
}

fn nonzero(port: u16) -> Option<u16> {
    (port != 0).then_some(port)
}

/// A short content hash for directory names.
pub fn short_hash(files: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (name, text) in files {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    hasher.finalize()[..6]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
