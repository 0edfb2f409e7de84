//! From rendered Deployments to the pods podman runs. Every Deployment of the render, a cake's
//! or a component's (the edge, memcached), goes through one conversion, so the local farm runs
//! exactly the containers, images, commands, config files and security settings production
//! runs. What podman cannot do is replaced here, and only here:
//!
//! - ConfigMap volumes become read-only host directories holding the same files (podman keeps
//!   ConfigMap volumes across plays and would serve stale files after a change);
//! - Secret volumes become host directories: the private values' Secret one file per key in a
//!   directory named after its versioned name (so that a changed value is a new directory and
//!   restarts exactly the pods that mount it, as a new Secret does in a cluster), certificate
//!   Secrets the certificate `wikikube up` made (podman 4.3 crashes on Secret volumes from YAML);
//! - emptyDir volumes get the pod's name as a prefix: podman makes them named volumes, which
//!   two pods would otherwise share;
//! - only ports with a `hostPort` are kept (podman publishes every declared port on the host,
//!   the container port standing in for a missing host port, so pods would fight over their
//!   metrics ports); memcached's are bound to podman's gateway, so only the host and its
//!   containers reach it;
//! - probes are left out: podman runs them only under systemd timers with tools inside the
//!   images, and `up` checks readiness itself.
//!
//! render decides everything else (host ports, the data volume, the edge's upstreams).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, HostPathVolumeSource, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use wikikube_model::{ReleaseName, ResolvedSite};
use wikikube_render::{naming, ComponentKind, Object, Rendered};

use crate::state::StateDir;
use crate::Error;

/// What a pod runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodRole {
    /// A release's cake.
    Release {
        /// The deployment.
        deployment: String,
        /// The release.
        release: ReleaseName,
        /// Whether it serves only requests that ask for it.
        debug: bool,
    },
    /// A component beside the releases.
    Component(ComponentKind),
}

/// A pod to run, with everything that decides whether a running one is still current.
#[derive(Clone, Debug)]
pub struct LocalPod {
    /// The pod's name (`farm-mw-web-main`), also the prefix of its containers' names.
    pub name: String,
    /// What it runs.
    pub role: PodRole,
    /// The manifest podman plays.
    pub manifest: Pod,
    /// Config directories to write before playing: path -> file name -> contents.
    pub config_dirs: BTreeMap<PathBuf, BTreeMap<String, String>>,
    /// Private values' directories to write before playing, readable by the pods' user only:
    /// path -> key -> value.
    pub secret_dirs: BTreeMap<PathBuf, BTreeMap<String, Vec<u8>>>,
    /// The host ports it publishes, by port name (`https` -> 8443).
    pub host_ports: BTreeMap<String, u16>,
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

    /// The host port of httpd's plain HTTP, when published.
    pub fn http_port(&self) -> Option<u16> {
        self.host_ports.get("http").copied()
    }

    /// The host port of HTTPS (a cake's tls container, or the edge), when published.
    pub fn https_port(&self) -> Option<u16> {
        self.host_ports.get("https").copied()
    }

    /// The deployment and release, for a cake.
    pub fn release(&self) -> Option<(&str, ReleaseName)> {
        match &self.role {
            PodRole::Release {
                deployment,
                release,
                ..
            } => Some((deployment, *release)),
            PodRole::Component(_) => None,
        }
    }

    /// Whether this is a debug release's cake.
    pub fn is_debug(&self) -> bool {
        matches!(self.role, PodRole::Release { debug: true, .. })
    }

    /// Whether this is the component `kind`.
    pub fn is(&self, kind: ComponentKind) -> bool {
        self.role == PodRole::Component(kind)
    }
}

/// Every pod of the local environment: one per enabled release, then the components. memcached,
/// MariaDB and Swift come last because they are published on podman's gateway address, which exists only once a
/// pod runs on podman's network; until it starts, the cakes' routers count its server as down.
pub fn local_pods(
    site: &ResolvedSite,
    rendered: &Rendered,
    state: &StateDir,
    gateway: &str,
) -> Result<Vec<LocalPod>, Error> {
    let objects = rendered.objects();
    let config_maps: BTreeMap<&str, &BTreeMap<String, String>> = objects
        .iter()
        .filter_map(|object| match object {
            Object::ConfigMap(map) => Some((object.name(), map.data.as_ref()?)),
            _ => None,
        })
        .collect();
    let secrets = objects
        .iter()
        .filter_map(|object| match object {
            Object::Secret(secret) => Some((object.name(), secret.data.as_ref()?)),
            _ => None,
        })
        .collect();
    let converter = Converter {
        state,
        config_maps,
        secrets,
    };
    let mut pods = Vec::new();
    for release in &rendered.releases {
        let deployment = release.deployment_object().ok_or_else(|| {
            Error::Inconsistent(format!(
                "release {}-{} has no Deployment",
                release.deployment, release.release
            ))
        })?;
        let name = naming::local_release_pod(site, &release.deployment, release.release);
        let role = PodRole::Release {
            deployment: release.deployment.clone(),
            release: release.release,
            debug: release.debug,
        };
        pods.push(converter.pod(name, role, deployment, None)?);
    }
    let mut components: Vec<_> = rendered.components.iter().collect();
    components.sort_by_key(|component| on_gateway(component.kind));
    for component in components {
        let Some(deployment) = component.deployment_object() else {
            continue;
        };
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let host_ip = on_gateway(component.kind).then_some(gateway);
        pods.push(converter.pod(
            name,
            PodRole::Component(component.kind),
            deployment,
            host_ip,
        )?);
    }
    Ok(pods)
}

/// Whether a component serves only the cakes, on podman's gateway address
/// (`host.containers.internal` inside the pods), and not the machine's other users.
fn on_gateway(kind: ComponentKind) -> bool {
    matches!(
        kind,
        ComponentKind::Memcached
            | ComponentKind::Mariadb
            | ComponentKind::Swift
            | ComponentKind::Redis
    )
}

/// The one conversion from a Deployment to a pod.
struct Converter<'a> {
    state: &'a StateDir,
    config_maps: BTreeMap<&'a str, &'a BTreeMap<String, String>>,
    /// The rendered Secrets (the private values'); any other Secret a pod mounts is the
    /// certificate.
    secrets: BTreeMap<&'a str, &'a BTreeMap<String, ByteString>>,
}

impl Converter<'_> {
    fn pod(
        &self,
        name: String,
        role: PodRole,
        deployment: &Deployment,
        host_ip: Option<&str>,
    ) -> Result<LocalPod, Error> {
        let template = deployment.spec.as_ref().map(|spec| &spec.template);
        let labels = template
            .and_then(|template| template.metadata.as_ref())
            .and_then(|meta| meta.labels.clone())
            .unwrap_or_default();
        let mut spec = template
            .and_then(|template| template.spec.clone())
            .ok_or_else(|| Error::Inconsistent(format!("{name} has no pod template")))?;
        let mut config_dirs = BTreeMap::new();
        let mut secret_dirs = BTreeMap::new();
        for volume in spec.volumes.iter_mut().flatten() {
            if let Some(source) = volume.config_map.take() {
                let files = self.config_maps.get(source.name.as_str()).ok_or_else(|| {
                    Error::Inconsistent(format!(
                        "{name} mounts ConfigMap {} which is not rendered",
                        source.name
                    ))
                })?;
                let dir = self
                    .state
                    .config()
                    .join(config_dir_name(&source.name, files));
                volume.host_path = Some(host_dir(&dir));
                config_dirs.insert(dir, (*files).clone());
            } else if let Some(source) = volume.secret.take() {
                let rendered = source
                    .secret_name
                    .as_deref()
                    .and_then(|name| Some((name, self.secrets.get(name)?)));
                let dir = match rendered {
                    Some((name, data)) => {
                        let dir = self.state.secrets().join(name);
                        let values = data
                            .iter()
                            .map(|(key, value)| (key.clone(), value.0.clone()))
                            .collect();
                        secret_dirs.insert(dir.clone(), values);
                        dir
                    }
                    None => self.state.tls(),
                };
                volume.host_path = Some(host_dir(&dir));
            } else if volume.empty_dir.is_some() {
                let scoped = format!("{name}-{}", volume.name);
                rename_mounts(&mut spec.containers, &volume.name, &scoped);
                volume.name = scoped;
            }
        }
        let mut host_ports = BTreeMap::new();
        for container in &mut spec.containers {
            if let Some(ports) = container.ports.as_mut() {
                ports.retain(|port| port.host_port.is_some());
                for port in ports.iter_mut() {
                    port.host_ip = host_ip.map(str::to_string);
                    if let (Some(port_name), Some(host)) = (&port.name, port.host_port) {
                        host_ports.insert(port_name.clone(), u16::try_from(host).unwrap_or(0));
                    }
                }
            }
            container.liveness_probe = None;
            container.readiness_probe = None;
        }
        Ok(LocalPod {
            manifest: Pod {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
                status: None,
            },
            name,
            role,
            config_dirs,
            secret_dirs,
            host_ports,
        })
    }
}

/// The directory of a ConfigMap's files: named by content, so that a running pod's files are
/// never edited. A versioned ConfigMap's name says its content already; the edge's (updated in
/// place in a cluster) gets its content's hash added.
fn config_dir_name(name: &str, files: &BTreeMap<String, String>) -> String {
    if naming::unversioned(name) != name {
        return name.to_string();
    }
    format!("{name}-{}", &wikikube_render::checksum(files)[..12])
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
