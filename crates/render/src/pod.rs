//! Building blocks of pod specs shared by the cake's Deployments and the edge's: the security
//! context every pod and container runs with, probes, ports, mounts, volumes and resources.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, ContainerPort, HTTPGetAction, Lifecycle, LifecycleHandler,
    PodSecurityContext, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, SleepAction, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use wikikube_model::{CakeValues, CertificateSource, ResolvedSite};

use crate::sizing::Resources;

/// The uid and gid of `www-data` in Debian, which every cake image runs as.
pub const RUN_AS: i64 = 33;

/// The pod-level half of the restricted Pod Security Standard, as `www-data`.
pub fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// The TLS Secret a release's certificate comes from.
pub fn certificate_secret(site: &ResolvedSite, values: &CakeValues) -> String {
    match &values.tls.certificate {
        CertificateSource::Secret(name) => name.clone(),
        // Created at run time by `wikikube up`; a generated key never belongs in rendered output.
        CertificateSource::SelfSigned => crate::naming::self_signed_certificate(site),
    }
}

/// The restricted Pod Security Standard for one container.
pub fn restricted() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

pub(crate) fn resources(resources: Resources) -> ResourceRequirements {
    let memory = |mb: u64| Quantity(format!("{mb}Mi"));
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            (
                "cpu".to_string(),
                Quantity(format!("{}m", resources.cpu_request_millicores)),
            ),
            ("memory".to_string(), memory(resources.memory_request_mb)),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_string(),
            memory(resources.memory_limit_mb),
        )])),
        ..ResourceRequirements::default()
    }
}

pub(crate) fn pre_stop(seconds: u32) -> Lifecycle {
    Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: Some(SleepAction {
                seconds: i64::from(seconds),
            }),
            ..LifecycleHandler::default()
        }),
        ..Lifecycle::default()
    }
}

pub(crate) fn http_probe(path: &str, port_name: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(port_name.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

pub(crate) fn tcp_probe(port_name: &str) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String(port_name.into()),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

pub(crate) fn port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(number),
        protocol: Some("TCP".into()),
        ..ContainerPort::default()
    }
}

pub(crate) fn mount(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: Some(!matches!(volume, "shared-socket" | "tmp")),
        ..VolumeMount::default()
    }
}

pub(crate) fn config_map_volume(volume: &str, config_map: &str) -> Volume {
    Volume {
        name: volume.into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.into(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub(crate) fn secret_volume(volume: &str, secret: &str) -> Volume {
    Volume {
        name: volume.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.into()),
            // Readable by the pod's group (fsGroup), not by everyone.
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub(crate) fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|item| item.to_string()).collect()
}

pub(crate) fn seconds(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}
