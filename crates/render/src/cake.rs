//! The cake: one release's Deployment, with its four containers from the outside in.
//!
//! `tls` (edge, pod mode) -> `httpd` (apache, FastCGI over a shared unix socket) -> `app`
//! (php-fpm running MediaWiki) -> `mcrouter` (memcached router) and, when the site keeps
//! sessions in Redis, `redis-proxy`. Probes: readiness asks php-fpm's ping through httpd, so it
//! fails when either is down; liveness is a TCP check on httpd. On stop, tls stops taking
//! requests first and drains; httpd and php-fpm stop once the longest request it accepted is
//! over; mcrouter and redis-proxy last ([`wikikube_model::LifecycleValues::shutdown`]).

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, ExecAction, KeyToPath,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use wikikube_model::{CakeValues, EnvironmentKind, ReleaseName, ResolvedSite, REDIS_PASSWORD};

use crate::config::mediawiki::variables;
use crate::config::paths::{
    FPM_PING, FPM_SOCKET, MEDIA_DIR, SECRETS_DIR, SOCKET_DIR, TLS_DIR, WIKIVERSIONS_DIR,
};
use crate::config::{httpd, mcrouter, redis_proxy, tls};
use crate::labels;
use crate::pod::{
    certificate_secret, config_map_volume, http_probe, mount, pod_security_context, port, pre_stop,
    resources, restricted, seconds, secret_volume, strings, tcp_probe,
};
use crate::sizing;

/// Port of the mcrouter container's /metrics, also its probe.
pub const MCROUTER_METRICS_PORT: u16 = 9362;

/// Port of the redis-proxy container's /healthz and /metrics (validated in the model, where a
/// site's ports are checked against it).
pub const REDIS_PROXY_ADMIN_PORT: u16 = wikikube_model::REDIS_PROXY_ADMIN_PORT;

/// The names of the ConfigMaps and Secrets one release mounts. They are versioned
/// ([`crate::naming::versioned`]): a change of content changes a name here, so the pod template
/// changes and the release rolls, with no checksum annotations needed.
pub struct Mounts {
    /// The farm's virtual hosts, shared by every release.
    pub httpd_sites: String,
    /// Which version each wiki runs, shared by every release.
    pub wikiversions: String,
    /// The release's httpd settings.
    pub httpd: String,
    /// The release's php-fpm pool and php.ini.
    pub php: String,
    /// The release's tls (edge) config.
    pub tls: String,
    /// The release's mcrouter config.
    pub mcrouter: String,
    /// The release's redis-proxy config, when the site keeps sessions in Redis.
    pub redis_proxy: Option<String>,
    /// The site's private values.
    pub secrets: String,
}

/// The Deployment of one release.
pub fn deployment(
    site: &ResolvedSite,
    deployment: &str,
    release: ReleaseName,
    values: &CakeValues,
    mounts: &Mounts,
) -> Deployment {
    let name = crate::naming::release(deployment, release);
    let site_name = &site.spec.site.name;
    // A debug release serves whatever version a request asks for; the others never do.
    let debug = release == ReleaseName::Debug
        || site
            .spec
            .traffic
            .debug
            .iter()
            .any(|name| name == deployment);
    let mut spec = pod_spec(site, values, mounts, debug);
    if site.environment.kind == EnvironmentKind::Local {
        // One machine: the release's ports on the host, as its `local` values say, and the
        // wikis' SQLite databases on a volume.
        for container in &mut spec.containers {
            crate::machine::publish(container, "http", values.local.http_port);
            crate::machine::publish(container, "https", values.local.https_port);
        }
        crate::machine::mount_wiki_data(site, &mut spec);
    }
    let pod_labels = labels::pod(site_name, deployment, release);
    let percent = |value: u32| Some(IntOrString::String(format!("{value}%")));

    Deployment {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(site.spec.site.namespace.clone()),
            labels: Some(pod_labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(values.replicas).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(labels::release_selector(deployment, release)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: percent(values.rollout.max_surge_percent),
                    max_unavailable: percent(values.rollout.max_unavailable_percent),
                }),
            }),
            progress_deadline_seconds: Some(seconds(values.rollout.progress_deadline_seconds)),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(spec),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn pod_spec(site: &ResolvedSite, values: &CakeValues, mounts: &Mounts, debug: bool) -> PodSpec {
    let certificate_secret = certificate_secret(site, values);
    let mut volumes = vec![
        Volume {
            name: "shared-socket".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
        config_map_volume("httpd-sites", &mounts.httpd_sites),
        config_map_volume("wikiversions", &mounts.wikiversions),
        config_map_volume("httpd-config", &mounts.httpd),
        config_map_volume("php-config", &mounts.php),
        config_map_volume("tls-config", &mounts.tls),
        config_map_volume("mcrouter-config", &mounts.mcrouter),
        secret_volume("secrets", &mounts.secrets),
        secret_volume("tls-certificate", &certificate_secret),
    ];
    let mut containers = vec![
        tls_container(values),
        httpd_container(values, media_on_volume(values)),
        app_container(site, values, debug),
        mcrouter_container(values),
    ];
    if let Some(config) = &mounts.redis_proxy {
        // A container of its own rather than a second listener of mcrouter: the proxy is a
        // program of its own (crate redis-proxy), so the memcached router's memory, crashes
        // and restarts never touch sessions, and each has its own image, probes and metrics.
        volumes.push(config_map_volume("redis-proxy-config", config));
        let password = site.secrets.expose().contains_key(REDIS_PASSWORD);
        if password {
            volumes.push(redis_password_volume(&mounts.secrets));
        }
        containers.push(redis_proxy_container(values, password));
    }
    if media_on_volume(values) {
        volumes.push(Volume {
            name: "media".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: crate::naming::media(site),
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    PodSpec {
        service_account_name: Some(crate::SERVICE_ACCOUNT.into()),
        automount_service_account_token: Some(false),
        termination_grace_period_seconds: Some(i64::from(shutdown(values).grace_seconds)),
        security_context: Some(pod_security_context()),
        containers,
        volumes: Some(volumes),
        ..PodSpec::default()
    }
}

/// Whether the pods mount the media volume: with Swift, files go over HTTP and the pods have
/// no media volume at all.
fn media_on_volume(values: &CakeValues) -> bool {
    values.media.storage == wikikube_model::MediaStorage::Volume
}

fn tls_container(values: &CakeValues) -> Container {
    Container {
        name: "tls".into(),
        image: Some(values.images.tls.clone()),
        command: Some(strings(&["edge"])),
        args: Some(strings(&[
            "--config",
            &format!("/etc/wikikube/edge/{}", tls::FILE),
        ])),
        ports: Some(vec![
            port("https", values.tls.port),
            port("tls-metrics", tls::METRICS_PORT),
        ]),
        // /healthz answers 503 as soon as the terminator drains, which takes the pod out of the
        // Service before in-flight requests finish.
        readiness_probe: Some(http_probe("/healthz", "tls-metrics", 1)),
        liveness_probe: Some(tcp_probe("https")),
        lifecycle: Some(pre_stop(shutdown(values).tls_pre_stop_seconds)),
        resources: Some(resources(sizing::fixed(
            values.tls.cpu_millicores,
            values.tls.memory_mb,
        ))),
        security_context: Some(restricted()),
        volume_mounts: Some(vec![
            mount("tls-config", "/etc/wikikube/edge"),
            mount("tls-certificate", TLS_DIR),
        ]),
        ..Container::default()
    }
}

/// The pod's stop sequence (see [`wikikube_model::LifecycleValues::shutdown`]): tls stops
/// taking requests first, httpd and php-fpm stop when the longest request it accepted is over,
/// mcrouter after them.
fn shutdown(values: &CakeValues) -> wikikube_model::Shutdown {
    values
        .lifecycle
        .shutdown(values.php.request_timeout_seconds)
}

fn httpd_container(values: &CakeValues, media_volume: bool) -> Container {
    let mut volume_mounts = vec![
        mount("shared-socket", SOCKET_DIR),
        mount("httpd-sites", httpd::SITES_DIR),
        mount("httpd-config", httpd::CONFIG_DIR),
        mount("tmp", "/tmp"),
    ];
    if media_volume {
        // httpd only serves the uploads; MediaWiki writes them.
        volume_mounts.push(mount("media", MEDIA_DIR));
    }
    Container {
        name: "httpd".into(),
        image: Some(values.images.webserver.clone()),
        command: Some(strings(&[
            "apache2",
            "-DFOREGROUND",
            "-f",
            &format!("{}/httpd.conf", httpd::CONFIG_DIR),
        ])),
        ports: Some(vec![port("http", values.httpd.port)]),
        readiness_probe: Some(http_probe(FPM_PING, "http", 2)),
        liveness_probe: Some(tcp_probe("http")),
        lifecycle: Some(pre_stop(shutdown(values).backend_pre_stop_seconds)),
        resources: Some(resources(sizing::fixed(
            values.httpd.cpu_millicores,
            values.httpd.memory_mb,
        ))),
        security_context: Some(restricted()),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    }
}

/// The app container; in a debug release it honours a request's choice of MediaWiki version
/// (see [`variables::FORCE_VERSION`]).
fn app_container(site: &ResolvedSite, values: &CakeValues, debug: bool) -> Container {
    let mut env = vec![
        (variables::ENVIRONMENT, site.environment_name.clone()),
        (variables::DATACENTER, site.environment.datacenter.clone()),
        (
            variables::MEMCACHED,
            format!("127.0.0.1:{}", values.mcrouter.port),
        ),
        (variables::SECRETS_DIR, SECRETS_DIR.to_string()),
        (variables::DATA_DIR, "/var/lib/mediawiki-data".to_string()),
        (
            variables::DATABASE,
            crate::config::mediawiki::database_variable(&values.database),
        ),
        (
            variables::EMAIL,
            crate::config::mediawiki::email_variable(&values.email),
        ),
        (
            variables::MEDIA,
            crate::config::mediawiki::media_variable(&values.media),
        ),
        // A leading colon keeps the image's own conf.d and adds the release's php.ini after it.
        ("PHP_INI_SCAN_DIR", ":/etc/wikikube/php".to_string()),
    ];
    // Only with Redis: a site without it keeps the pod template it had, so nothing rolls.
    if let Some(redis) =
        crate::config::mediawiki::redis_variable(values, &site.environment.datacenter)
    {
        env.push((variables::REDIS, redis));
    }
    if debug {
        env.push((variables::FORCE_VERSION, "1".to_string()));
    }
    let mut app_mounts = vec![
        mount("shared-socket", SOCKET_DIR),
        mount("php-config", "/etc/wikikube/php"),
        mount("wikiversions", WIKIVERSIONS_DIR),
        mount("secrets", SECRETS_DIR),
        mount("tmp", "/tmp"),
    ];
    if media_on_volume(values) {
        app_mounts.push(VolumeMount {
            read_only: Some(false),
            ..mount("media", MEDIA_DIR)
        });
    }
    Container {
        name: "app".into(),
        image: Some(values.images.app.clone()),
        command: Some(strings(&[
            "php-fpm8.2",
            "--nodaemonize",
            "--fpm-config",
            "/etc/wikikube/php/php-fpm.conf",
        ])),
        env: Some(
            env.into_iter()
                .map(|(name, value)| EnvVar {
                    name: name.into(),
                    value: Some(value),
                    ..EnvVar::default()
                })
                .collect(),
        ),
        // php-fpm is the container's main process, so a crash restarts the container; this
        // catches a php-fpm that runs but lost its socket. Readiness is httpd's, through php-fpm.
        liveness_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(strings(&["test", "-S", FPM_SOCKET])),
            }),
            period_seconds: Some(10),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        lifecycle: Some(pre_stop(shutdown(values).backend_pre_stop_seconds)),
        resources: Some(resources(sizing::app(&values.php))),
        security_context: Some(restricted()),
        volume_mounts: Some(app_mounts),
        ..Container::default()
    }
}

fn mcrouter_container(values: &CakeValues) -> Container {
    Container {
        name: "mcrouter".into(),
        image: Some(values.images.mcrouter.clone()),
        command: Some(strings(&["mcrouter"])),
        args: Some(strings(&[
            "--config",
            &format!("/etc/wikikube/mcrouter/{}", mcrouter::FILE),
            "--listen",
            // Only the pod's own containers talk to the router.
            &format!("127.0.0.1:{}", values.mcrouter.port),
            "--metrics",
            &format!("0.0.0.0:{MCROUTER_METRICS_PORT}"),
        ])),
        ports: Some(vec![port("mcr-metrics", MCROUTER_METRICS_PORT)]),
        readiness_probe: Some(http_probe("/metrics", "mcr-metrics", 1)),
        liveness_probe: Some(tcp_probe("mcr-metrics")),
        lifecycle: Some(pre_stop(shutdown(values).mcrouter_pre_stop_seconds)),
        resources: Some(resources(sizing::fixed(
            values.mcrouter.cpu_millicores,
            values.mcrouter.memory_mb,
        ))),
        security_context: Some(restricted()),
        volume_mounts: Some(vec![mount("mcrouter-config", "/etc/wikikube/mcrouter")]),
        ..Container::default()
    }
}

/// The private Secret's `redis_password` alone, as a volume: the proxy needs no other private
/// value, and the app container, which mounts the rest, never sees this one.
fn redis_password_volume(secret: &str) -> Volume {
    let mut volume = secret_volume("redis-proxy-secret", secret);
    if let Some(source) = volume.secret.as_mut() {
        source.items = Some(vec![KeyToPath {
            key: REDIS_PASSWORD.into(),
            path: REDIS_PASSWORD.into(),
            mode: None,
        }]);
    }
    volume
}

/// The Redis proxy, sized and probed like mcrouter and stopped with it, after php-fpm, which
/// may still write a session as it ends. Its /healthz stays 200 while Redis servers are down
/// (the proxy then answers errors at once): a sessions outage must not take the readers' pods
/// out of the Service.
fn redis_proxy_container(values: &CakeValues, password: bool) -> Container {
    let mut volume_mounts = vec![mount("redis-proxy-config", redis_proxy::CONFIG_DIR)];
    if password {
        volume_mounts.push(mount("redis-proxy-secret", redis_proxy::SECRET_DIR));
    }
    Container {
        name: "redis-proxy".into(),
        image: Some(values.images.redis_proxy.clone()),
        command: Some(strings(&["redis-proxy"])),
        args: Some(strings(&[
            "--config",
            &format!("{}/{}", redis_proxy::CONFIG_DIR, redis_proxy::FILE),
            "--admin",
            &format!("0.0.0.0:{REDIS_PROXY_ADMIN_PORT}"),
        ])),
        ports: Some(vec![port("redis-admin", REDIS_PROXY_ADMIN_PORT)]),
        readiness_probe: Some(http_probe("/healthz", "redis-admin", 1)),
        liveness_probe: Some(tcp_probe("redis-admin")),
        lifecycle: Some(pre_stop(shutdown(values).mcrouter_pre_stop_seconds)),
        resources: Some(resources(sizing::fixed(
            values.redis_proxy.cpu_millicores,
            values.redis_proxy.memory_mb,
        ))),
        security_context: Some(restricted()),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    }
}
