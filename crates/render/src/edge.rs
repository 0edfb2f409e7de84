//! The edge in front of the releases, in a Kubernetes environment: the `edge` program in edge
//! mode as a Deployment of its own (`{site}-edge`), with its config in a ConfigMap, a Service and
//! a PodDisruptionBudget. `[traffic.edge] replicas = 0` renders none of them.
//!
//! The edge reaches each release through the release's Service, over TLS to the pods' `tls`
//! containers: the cake keeps a single way in, and the edge verifies the certificate the pods
//! present against the same TLS Secret they mount (a self-signed certificate is its own trust
//! anchor). The routes, shares and debug backends come from [`config::traffic`].
//!
//! The pod template carries no checksum of the config: the edge re-reads its config file when the
//! ConfigMap's projection changes, so moving a share does not restart the edge pods.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use edge::config::UpstreamTls;
use wikikube_model::{CakeValues, EnvironmentKind, ReleaseName, ResolvedSite};

use crate::config::paths::TLS_DIR;
use crate::config::traffic::{self, Upstream};
use crate::config::{self, tls, Files};
use crate::objects::Object;
use crate::pod::{
    certificate_secret, config_map_volume, http_probe, mount, pod_security_context, port, pre_stop,
    resources, restricted, secret_volume, strings, tcp_probe,
};
use crate::sizing;
use crate::{labels, naming};

/// The file name of the edge's config in its ConfigMap.
pub const FILE: &str = "edge.toml";

/// Where the TLS Secrets of the releases are mounted, one directory per Secret, for checking the
/// certificates the releases present.
pub const TRUST_DIR: &str = "/etc/wikikube/trust";

/// Label value of `app.kubernetes.io/component` on the edge's pods.
const COMPONENT: &str = "edge";

/// The edge's objects, or none when the site renders no edge or no main deployment runs.
///
/// In a Kubernetes environment the edge reaches each release through its Service
/// (`[traffic.edge] replicas = 0` renders none); on one machine through the host ports the
/// releases publish, with the edge itself on `[traffic] local_https_port` (0: none).
pub fn objects(site: &ResolvedSite, meta: &impl Fn(String) -> ObjectMeta) -> Vec<Object> {
    let spec = &site.spec.traffic.edge;
    let local = site.environment.kind == EnvironmentKind::Local;
    let (replicas, host_port) = if local {
        (1, site.spec.traffic.local_https_port)
    } else {
        (spec.replicas, 0)
    };
    if replicas == 0 || (local && host_port == 0) {
        return Vec::new();
    }
    let namespace = &site.spec.site.namespace;
    let server_name = traffic::upstream_server_name(site);
    let upstream = |deployment: &str, release: ReleaseName| {
        let values = &site
            .deployments
            .iter()
            .find(|found| found.name == deployment)?
            .release(release)?
            .values;
        let secret = certificate_secret(site, values);
        let tls = Some(UpstreamTls {
            ca: format!("{TRUST_DIR}/{secret}/tls.crt"),
            server_name: server_name.clone(),
        });
        if !local {
            return Some(Upstream {
                address: format!(
                    "{}.{namespace}.svc:{}",
                    naming::service(deployment, release),
                    values.service.port
                ),
                tls,
            });
        }
        // On one machine through the host: the release's tls container when it publishes
        // one, else httpd over plain HTTP.
        let address = |port: u16| format!("{}:{port}", crate::machine::HOST);
        match (values.local.https_port, values.local.http_port) {
            (0, 0) => None,
            (0, port) => Some(Upstream {
                address: address(port),
                tls: None,
            }),
            (port, _) => Some(Upstream {
                address: address(port),
                tls,
            }),
        }
    };
    let Some(mut config) = traffic::edge(site, upstream) else {
        return Vec::new();
    };
    // The main deployment's main release gives the edge its image, certificate and timings.
    let Some(main) = traffic::main_deployment(site)
        .and_then(|name| site.deployments.iter().find(|found| found.name == name))
        .and_then(|deployment| deployment.release(ReleaseName::Main))
        .map(|release| &release.values)
    else {
        return Vec::new();
    };
    let trusted_secrets: BTreeSet<String> = site
        .deployments
        .iter()
        .flat_map(|deployment| deployment.releases.iter())
        .filter(|release| release.values.enabled)
        .map(|release| certificate_secret(site, &release.values))
        .collect();
    config.listen.metrics = Some(format!("0.0.0.0:{}", tls::METRICS_PORT));
    // The farm's edge passes requests to the releases, whose longest request bounds its drain.
    let shutdown = main.lifecycle.shutdown(main.php.request_timeout_seconds);
    config.listen.drain_seconds = u64::from(shutdown.tls_drain_seconds);
    let name = naming::edge(site);
    let mut files = Files::new();
    files.insert(FILE.into(), config::traffic::file(&config));

    let mut objects = vec![Object::ConfigMap(ConfigMap {
        metadata: meta(name.clone()),
        data: Some(files),
        ..ConfigMap::default()
    })];
    let selector = selector(site);
    let mut pod_labels = labels::common(&site.spec.site.name);
    pod_labels.extend(selector.clone());
    objects.push(Object::Service(Service {
        metadata: meta(name.clone()),
        spec: Some(ServiceSpec {
            type_: Some(spec.service_type.as_str().into()),
            selector: Some(selector.clone()),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port: 443,
                target_port: Some(IntOrString::String("https".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }));
    objects.push(Object::Deployment(Deployment {
        metadata: ObjectMeta {
            labels: Some(pod_labels.clone()),
            ..meta(name.clone())
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            // One pod at a time, never fewer than asked: the edge is every request's way in.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some({
                    let mut pod = pod_spec(site, main, &name, &trusted_secrets);
                    for container in &mut pod.containers {
                        crate::machine::publish(container, "https", host_port);
                    }
                    pod
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }));
    objects.push(Object::PodDisruptionBudget(PodDisruptionBudget {
        metadata: meta(name),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }));
    objects
}

/// The labels that pick the edge's pods, and only them: cake pods have no component label.
fn selector(site: &ResolvedSite) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::SITE.to_string(), site.spec.site.name.clone()),
        (
            "app.kubernetes.io/component".to_string(),
            COMPONENT.to_string(),
        ),
    ])
}

fn pod_spec(
    site: &ResolvedSite,
    main: &CakeValues,
    config_map: &str,
    trusted_secrets: &BTreeSet<String>,
) -> PodSpec {
    let spec = &site.spec.traffic.edge;
    let mut mounts = vec![
        mount("edge-config", "/etc/wikikube/edge"),
        mount("tls-certificate", TLS_DIR),
    ];
    let mut volumes = vec![
        config_map_volume("edge-config", config_map),
        secret_volume("tls-certificate", &certificate_secret(site, main)),
    ];
    for (index, secret) in trusted_secrets.iter().enumerate() {
        let volume = format!("trust-{index}");
        mounts.push(mount(&volume, &format!("{TRUST_DIR}/{secret}")));
        volumes.push(secret_volume(&volume, secret));
    }
    let container = Container {
        name: "edge".into(),
        image: Some(main.images.tls.clone()),
        command: Some(strings(&["edge"])),
        args: Some(strings(&[
            "--config",
            &format!("/etc/wikikube/edge/{FILE}"),
        ])),
        ports: Some(vec![
            port("https", traffic::PORT),
            port("edge-metrics", tls::METRICS_PORT),
        ]),
        // /healthz turns 503 when the edge drains, which takes the pod out of the Service first.
        readiness_probe: Some(http_probe("/healthz", "edge-metrics", 1)),
        liveness_probe: Some(tcp_probe("https")),
        lifecycle: Some(pre_stop(main.lifecycle.tls_pre_stop_seconds)),
        resources: Some(resources(sizing::fixed(
            spec.cpu_millicores,
            spec.memory_mb,
        ))),
        security_context: Some(restricted()),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    PodSpec {
        service_account_name: Some(crate::SERVICE_ACCOUNT.into()),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(i64::from(
            main.lifecycle
                .shutdown(main.php.request_timeout_seconds)
                .grace_seconds,
        )),
        security_context: Some(pod_security_context()),
        containers: vec![container],
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}
