//! What only a local environment renders: the memcached, Redis and MariaDB servers that a
//! cluster's cakes find outside the cluster (their datacenter's pools and gutter, a gutter by
//! default: [`default_gutter`]; the Redis pool; the database sections), and the host ports and SQLite data volume that
//! one machine uses instead of Services.
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

/// The port MariaDB listens on inside its pod.
const MARIADB_PORT: u16 = 3306;

/// Where the MariaDB component keeps its databases (a volume that outlives the pod). Not the
/// package's /var/lib/mysql: podman gives a new volume the owner of the directory it is mounted
/// on when the image has one (there, the package's `mysql` user), and the server runs as the
/// pod's unprivileged user.
pub const MARIADB_DATA_DIR: &str = "/var/lib/wikikube-mariadb";

/// The MariaDB component's start: make the data directory on first start, then run the server
/// with the wikis' user (`$1`) created, or its password set, from the private value
/// `database_password` on every start, so a changed password takes effect. The server runs as
/// the pod's unprivileged user and needs no capability.
const MARIADB_START: &str = r#"set -eu
data=/var/lib/wikikube-mariadb
if [ ! -d "$data/mysql" ]; then
  mariadb-install-db --datadir="$data" --auth-root-authentication-method=socket \
    --skip-test-db >/tmp/mariadb-install.log 2>&1 || { cat /tmp/mariadb-install.log >&2; exit 1; }
fi
password=$(sed "s/'/''/g" "$2/database_password")
cat >/tmp/init.sql <<SQL
CREATE USER IF NOT EXISTS '$1'@'%' IDENTIFIED BY '$password';
ALTER USER '$1'@'%' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON *.* TO '$1'@'%';
SQL
exec mariadbd --datadir="$data" --socket=/tmp/mariadb.sock --pid-file=/tmp/mariadb.pid \
  --bind-address=0.0.0.0 --port=3306 --skip-name-resolve --init-file=/tmp/init.sql \
  --innodb-buffer-pool-size=64M
"#;

/// The port Swift's proxy listens on inside its pod.
const SWIFT_PORT: u16 = 8080;

/// The proxy's health check (Swift's `healthcheck` middleware), which `wikikube up` waits for.
pub const SWIFT_HEALTH: &str = "/healthcheck";

/// Where the Swift component keeps its one device, `d1` (a volume that outlives the pod);
/// not the package's /srv/node, for the ownership reason of [`MARIADB_DATA_DIR`].
pub const SWIFT_DATA_DIR: &str = "/var/lib/wikikube-swift";

/// The Swift component's start: configuration and a one-device ring in /tmp, made anew at
/// each start from the site's account and user and the private value `swift_key`; then
/// memcached (tempauth keeps its tokens there) and the account, container, object and proxy
/// servers of Debian's packages, all as the pod's unprivileged user. Several servers in one
/// container rather than a container each: they share the ring and the device, and this only
/// ever runs on one machine. Swift reads its hash path prefix and suffix from the package's
/// /etc/swift/swift.conf, whose fixed values keep every object where the last start put it.
const SWIFT_START: &str = r#"set -eu
# $1: the account, $2: the user, $3: the directory of the private values (swift_key).
account=$1 user=$2 secrets=$3
data=/var/lib/wikikube-swift
conf=/tmp/swift
mkdir -p "$data/d1" "$conf"
me=$(id -un)
# paste.deploy reads the files with ConfigParser, which takes % for interpolation.
key=$(sed 's/%/%%/g' "$secrets/swift_key")
for server in account:6202 container:6201 object:6200; do
  name=${server%%:*} port=${server#*:}
  cat >"$conf/$name-server.conf" <<CONF
[DEFAULT]
devices = $data
mount_check = false
bind_ip = 127.0.0.1
bind_port = $port
workers = 0
user = $me
swift_dir = $conf
recon_cache_path = $conf

[pipeline:main]
pipeline = $name-server

[app:$name-server]
use = egg:swift#$name
CONF
  # One device and one replica: every partition is on d1 whatever the ring's random
  # assignment, so a ring made anew at each start finds the data the last one stored.
  swift-ring-builder "$conf/$name.builder" create 10 1 1 >/dev/null
  swift-ring-builder "$conf/$name.builder" add "r1z1-127.0.0.1:$port/d1" 100 >/dev/null
  swift-ring-builder "$conf/$name.builder" rebalance >/dev/null
done
cat >"$conf/proxy-server.conf" <<CONF
[DEFAULT]
bind_ip = 0.0.0.0
bind_port = 8080
workers = 0
user = $me
swift_dir = $conf

[pipeline:main]
pipeline = catch_errors healthcheck cache tempauth proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:11211

[filter:tempauth]
use = egg:swift#tempauth
user_${account}_${user} = $key .admin
CONF
# bash as the container's first process ignores SIGTERM unless told: stop the servers.
trap 'kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
memcached -l 127.0.0.1 -p 11211 -U 0 -m 32 &
swift-account-server "$conf/account-server.conf" --verbose &
swift-container-server "$conf/container-server.conf" --verbose &
swift-object-server "$conf/object-server.conf" --verbose &
# The proxy last, once the others listen, so that its /healthcheck answering means Swift
# serves.
for port in 11211 6202 6201 6200; do
  until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.2; done
done
swift-proxy-server "$conf/proxy-server.conf" --verbose &
# The container lives as long as all of its servers: when one ends, it ends, and its restart
# policy starts them all again.
wait -n
exit 1
"#;

/// The host port of the Swift cluster a local environment runs: the port of `[media.swift]
/// auth_url` when the media are in Swift and that URL is `http://host.containers.internal:PORT/...`.
pub fn local_swift_port(media: &wikikube_model::MediaValues) -> Option<u16> {
    if media.storage != wikikube_model::MediaStorage::Swift {
        return None;
    }
    match media.swift.auth_host_port() {
        Some((HOST, port)) => Some(port),
        _ => None,
    }
}

/// The Swift Deployment of a local environment (see `SWIFT_START` in this module): the proxy published on
/// the host at `port`, its device on a volume that outlives the pod, the private values'
/// Secret `secrets` (its versioned name) mounted for the user's key.
pub fn swift(
    site: &ResolvedSite,
    media: &wikikube_model::MediaValues,
    port: u16,
    secrets: &str,
    meta: &impl Fn(String) -> ObjectMeta,
) -> Result<Vec<Object>, RenderError> {
    let images = global_images(site)?;
    let data = naming::swift_data(site);
    let container = Container {
        args: Some(vec![
            media.swift.account.clone(),
            media.swift.user.clone(),
            crate::config::paths::SECRETS_DIR.to_string(),
        ]),
        readiness_probe: Some(crate::pod::http_probe(SWIFT_HEALTH, "swift", 2)),
        volume_mounts: Some(data_mounts(&data, SWIFT_DATA_DIR)),
        ..server_container(
            "swift",
            images.swift,
            strings(&["bash", "-c", SWIFT_START, "swift"]),
            ("swift", SWIFT_PORT, port),
            sizing::fixed(250, 384),
        )
    };
    let volumes = data_volumes(data, secrets);
    Ok(vec![component_deployment(
        site,
        naming::swift(site),
        "swift",
        container,
        volumes,
        meta,
    )])
}

/// The port redis-server listens on inside its pod.
const REDIS_PORT: u16 = 6379;

/// The local redis-server's start: its settings in a file in /tmp, so that the password (the
/// private value `redis_password`, when there is one) is never on a command line; no snapshot
/// and no append-only file, so a restart forgets the sessions (users log in again) and the
/// server needs no volume.
const REDIS_START: &str = r#"set -eu
conf=/tmp/redis.conf
{
  echo "port 6379"
  echo "bind 0.0.0.0"
  echo "protected-mode no"
  echo "save """
  echo "appendonly no"
  echo "dir /tmp"
  echo "maxmemory 64mb"
  echo "maxmemory-policy volatile-lru"
  if [ -f "$1/redis_password" ]; then
    printf 'requirepass %s
' "$(cat "$1/redis_password")"
  fi
} >"$conf"
exec redis-server "$conf"
"#;

/// One Redis server that a local environment runs: a server of the local datacenter's Redis
/// pool (sessions or locks) named as `host.containers.internal:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalRedis {
    /// The Deployment's name (see [`naming::redis`]).
    pub name: String,
    /// The host port it is published on.
    pub port: u16,
}

/// Every Redis server a local environment runs: each server of the local datacenter's Redis
/// pool (sessions first, then lock servers) that is on this machine, once per port. Servers
/// elsewhere are left alone; a site without Redis pools gets none.
pub fn local_redis(site: &ResolvedSite) -> Vec<LocalRedis> {
    let datacenter = &site.environment.datacenter;
    let mut servers: Vec<LocalRedis> = Vec::new();
    for release in site.deployments.iter().flat_map(|d| d.releases.iter()) {
        let Some(pool) = release.values.redis.pool(datacenter) else {
            continue;
        };
        for server in pool.servers.iter().chain(&pool.lock_servers) {
            let Some(port) = server
                .rsplit_once(':')
                .filter(|(host, _)| *host == HOST)
                .and_then(|(_, port)| port.parse::<u16>().ok())
            else {
                continue;
            };
            if servers.iter().any(|known| known.port == port) {
                continue;
            }
            servers.push(LocalRedis {
                name: naming::redis(site, servers.len()),
                port,
            });
        }
    }
    servers
}

/// The redis-server Deployment of one server of a local environment (see `REDIS_START` in this module),
/// published on its host port, the private values' Secret `secrets` mounted for the password.
pub fn redis(
    site: &ResolvedSite,
    server: &LocalRedis,
    secrets: &str,
    meta: &impl Fn(String) -> ObjectMeta,
) -> Result<Vec<Object>, RenderError> {
    let container = Container {
        args: Some(vec![crate::config::paths::SECRETS_DIR.to_string()]),
        volume_mounts: Some(vec![
            crate::pod::mount("secrets", crate::config::paths::SECRETS_DIR),
            VolumeMount {
                name: "tmp".into(),
                mount_path: "/tmp".into(),
                ..VolumeMount::default()
            },
        ]),
        ..server_container(
            "redis",
            global_images(site)?.redis,
            strings(&["sh", "-c", REDIS_START, "redis"]),
            ("redis", REDIS_PORT, server.port),
            sizing::fixed(100, 96),
        )
    };
    let volumes = vec![
        crate::pod::secret_volume("secrets", secrets),
        Volume {
            name: "tmp".into(),
            empty_dir: Some(k8s_openapi::api::core::v1::EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    Ok(vec![component_deployment(
        site,
        server.name.clone(),
        server_component(site, &server.name, "redis"),
        container,
        volumes,
        meta,
    )])
}

/// One memcached server that a local environment runs: a server of a pool, or of the gutter,
/// named as `host.containers.internal:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalMemcached {
    /// The Deployment's name: `SITE-memcached` for the local pool's first server,
    /// `SITE-memcached-POOL` (`-gutter` for the gutter) for the others.
    pub name: String,
    /// The host port it is published on.
    pub port: u16,
}

/// The gutter of a local environment that names none: a server `wikikube up` runs one port
/// above the local pool's first, so that when memcached fails, MediaWiki's `add`/lock traffic
/// and its caches keep working through the gutter (see docs/mcrouter.md). `None` in a cluster,
/// where a gutter is a set of servers the site must name.
pub fn default_gutter(site: &ResolvedSite) -> Option<String> {
    if site.environment.kind != wikikube_model::EnvironmentKind::Local {
        return None;
    }
    let port = memcached_host_port(site).ok()?.checked_add(1)?;
    Some(format!("{HOST}:{port}"))
}

/// A release's memcached values with the local default gutter filled in (see
/// [`default_gutter`]).
pub fn memcached_values(
    site: &ResolvedSite,
    values: &wikikube_model::MemcachedValues,
) -> wikikube_model::MemcachedValues {
    let mut values = values.clone();
    if values.gutter.is_empty() {
        values.gutter.extend(default_gutter(site));
    }
    values
}

/// Every memcached server a local environment runs: each server of its pools and gutter that
/// is on this machine (`host.containers.internal:PORT`), once per port; the local pool's first
/// server comes first. Servers elsewhere (a real remote datacenter's) are left alone.
pub fn local_memcached(site: &ResolvedSite) -> Result<Vec<LocalMemcached>, RenderError> {
    let first = memcached_host_port(site)?;
    let datacenter = &site.environment.datacenter;
    let mut servers = vec![LocalMemcached {
        name: naming::memcached(site),
        port: first,
    }];
    for release in site.deployments.iter().flat_map(|d| d.releases.iter()) {
        let values = memcached_values(site, &release.values.memcached);
        // The local pool first, then the other datacenters', then the gutter.
        let mut groups: Vec<(&str, &Vec<String>)> = values
            .pools
            .iter()
            .map(|(pool, servers)| (pool.as_str(), &servers.servers))
            .collect();
        groups.sort_by_key(|(pool, _)| *pool != datacenter.as_str());
        groups.push(("gutter", &values.gutter));
        for (pool, pool_servers) in groups {
            for (index, server) in pool_servers.iter().enumerate() {
                let Some(port) = server
                    .rsplit_once(':')
                    .filter(|(host, _)| *host == HOST)
                    .and_then(|(_, port)| port.parse::<u16>().ok())
                else {
                    continue;
                };
                if servers.iter().any(|known| known.port == port) {
                    continue;
                }
                let name = match index {
                    0 => format!("{}-{pool}", naming::memcached(site)),
                    _ => format!("{}-{pool}-{}", naming::memcached(site), index + 1),
                };
                servers.push(LocalMemcached { name, port });
            }
        }
    }
    Ok(servers)
}

/// The memcached Deployment of one server of a local environment, published on its host
/// port.
pub fn memcached(
    site: &ResolvedSite,
    server: &LocalMemcached,
    meta: &impl Fn(String) -> ObjectMeta,
) -> Result<Vec<Object>, RenderError> {
    let container = server_container(
        "memcached",
        global_images(site)?.memcached,
        strings(&[
            "memcached",
            &format!("--port={MEMCACHED_PORT}"),
            "--memory-limit=64",
            "--conn-limit=1024",
        ]),
        ("memcache", MEMCACHED_PORT, server.port),
        sizing::fixed(100, 96),
    );
    Ok(vec![component_deployment(
        site,
        server.name.clone(),
        server_component(site, &server.name, "memcached"),
        container,
        Vec::new(),
        meta,
    )])
}

/// The MariaDB Deployment of a local environment whose database is `host.containers.internal`,
/// published on the host at `[database] port`, its data on a volume that outlives the pod, the
/// private values' Secret `secrets` (its versioned name) mounted for its passwords.
pub fn mariadb(
    site: &ResolvedSite,
    database: &wikikube_model::DatabaseValues,
    secrets: &str,
    meta: &impl Fn(String) -> ObjectMeta,
) -> Result<Vec<Object>, RenderError> {
    let images = global_images(site)?;
    let data = naming::mariadb_data(site);
    let container = Container {
        args: Some(vec![
            database.user.clone(),
            crate::config::paths::SECRETS_DIR.to_string(),
        ]),
        volume_mounts: Some(data_mounts(&data, MARIADB_DATA_DIR)),
        ..server_container(
            "mariadb",
            images.mariadb,
            strings(&["sh", "-c", MARIADB_START, "mariadb"]),
            ("mysql", MARIADB_PORT, database.port),
            sizing::fixed(250, 512),
        )
    };
    let volumes = data_volumes(data, secrets);
    Ok(vec![component_deployment(
        site,
        naming::mariadb(site),
        "mariadb",
        container,
        volumes,
        meta,
    )])
}

/// The container of a local server: `command` in `image`, its one port `(name, number,
/// host port)` published on the host, a TCP readiness and liveness probe on it, fixed
/// resource `requests`, the restricted security context. Callers add arguments, mounts or another
/// readiness probe.
fn server_container(
    name: &str,
    image: String,
    command: Vec<String>,
    (port_name, number, host_port): (&str, u16, u16),
    requests: sizing::Resources,
) -> Container {
    Container {
        name: name.into(),
        image: Some(image),
        command: Some(command),
        ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
            host_port: Some(i32::from(host_port)),
            ..port(port_name, number)
        }]),
        readiness_probe: Some(tcp_probe(port_name)),
        liveness_probe: Some(tcp_probe(port_name)),
        resources: Some(resources(requests)),
        security_context: Some(restricted()),
        ..Container::default()
    }
}

/// The component label of one local server (`memcached-gutter`, `redis-2`): its name without
/// the site's, so that no two Deployments select the same pods; `default` for a name that
/// does not start with the site's.
fn server_component<'n>(site: &ResolvedSite, name: &'n str, default: &'n str) -> &'n str {
    name.strip_prefix(&format!("{}-", site.spec.site.name))
        .unwrap_or(default)
}

/// The mounts of a local server that keeps its data on the named volume `data`: the data at
/// `data_dir`, the private values, a writable /tmp.
fn data_mounts(data: &str, data_dir: &str) -> Vec<VolumeMount> {
    vec![
        VolumeMount {
            name: data.into(),
            mount_path: data_dir.into(),
            ..VolumeMount::default()
        },
        crate::pod::mount("secrets", crate::config::paths::SECRETS_DIR),
        VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        },
    ]
}

/// The volumes behind [`data_mounts`]: the claim `data` (a named podman volume), the private
/// values' Secret `secrets`, an empty /tmp.
fn data_volumes(data: String, secrets: &str) -> Vec<Volume> {
    vec![
        Volume {
            name: data.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: data,
                ..PersistentVolumeClaimVolumeSource::default()
            }),
            ..Volume::default()
        },
        crate::pod::secret_volume("secrets", secrets),
        Volume {
            name: "tmp".into(),
            empty_dir: Some(k8s_openapi::api::core::v1::EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ]
}

/// A one-replica Deployment of one container, selected by its component label.
fn component_deployment(
    site: &ResolvedSite,
    name: String,
    component: &str,
    container: Container,
    volumes: Vec<Volume>,
    meta: &impl Fn(String) -> ObjectMeta,
) -> Object {
    let selector = std::collections::BTreeMap::from([
        (labels::SITE.to_string(), site.spec.site.name.clone()),
        (
            "app.kubernetes.io/component".to_string(),
            component.to_string(),
        ),
    ]);
    let mut pod_labels = labels::common(&site.spec.site.name);
    pod_labels.extend(selector.clone());
    Object::Deployment(Deployment {
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
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

fn global_images(site: &ResolvedSite) -> Result<wikikube_model::ImageValues, RenderError> {
    wikikube_model::de::from_node::<wikikube_model::ImageValues>(
        site.tree.get_path(["images"]).expect("defaults set images"),
        "images",
    )
    .map_err(|error| RenderError::Invalid(error.to_string()))
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
