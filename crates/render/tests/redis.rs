//! The Redis proxy in the cake: a site with `[redis.pools]` renders a `redis-proxy` container
//! beside mcrouter, its config from `redis_proxy::config` types in a ConfigMap of its own, the
//! servers' password only from the Secret, and MediaWiki pointed at the proxy on loopback. The
//! rendered config loads in the real `redis-proxy` binary and carries a session to a real
//! `redis-server` that requires the password.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use wikikube_render::{render, Object, RenderOptions};

use common::{site_with_redis, REDIS_PASSWORD as PASSWORD};

fn deployment<'a>(objects: &'a [Object], name: &str) -> &'a Deployment {
    objects
        .iter()
        .find_map(|object| match object {
            Object::Deployment(deployment) if object.name() == name => Some(deployment),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Deployment {name}"))
}

fn pod<'a>(objects: &'a [Object], name: &str) -> &'a PodSpec {
    deployment(objects, name)
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
}

fn container<'a>(pod: &'a PodSpec, name: &str) -> &'a Container {
    pod.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env<'a>(container: &'a Container, name: &str) -> &'a str {
    container
        .env
        .iter()
        .flatten()
        .find(|var| var.name == name)
        .and_then(|var| var.value.as_deref())
        .unwrap_or_else(|| panic!("no {name}"))
}

fn pre_stop(container: &Container) -> i64 {
    container
        .lifecycle
        .as_ref()
        .and_then(|lifecycle| lifecycle.pre_stop.as_ref())
        .and_then(|handler| handler.sleep.as_ref())
        .map(|sleep| sleep.seconds)
        .expect("a preStop sleep")
}

fn rendered_objects(site: &wikikube_model::ResolvedSite) -> Vec<Object> {
    render(site, &RenderOptions::default())
        .unwrap()
        .objects()
        .into_iter()
        .cloned()
        .collect()
}

fn proxy_config(objects: &[Object], release: &str) -> redis_proxy::config::Config {
    let map = common::config_map(objects, &format!("{release}-redis-proxy"));
    let text = &map.data.as_ref().unwrap()["redis-proxy.json"];
    serde_json::from_str(text).unwrap()
}

#[test]
fn the_proxy_is_a_sidecar_sized_probed_and_stopped_like_mcrouter() {
    let (_dir, site) = site_with_redis("eqiad");
    let objects = rendered_objects(&site);
    let pod = pod(&objects, "mw-web-main");
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["tls", "httpd", "app", "mcrouter", "redis-proxy"]);
    let proxy = container(pod, "redis-proxy");
    let mcrouter = container(pod, "mcrouter");
    assert_eq!(
        proxy.image.as_deref(),
        Some("registry.farm.test/wikikube/redis-proxy:2026-11-25")
    );
    // Stopped with mcrouter, after php-fpm, which may write a session as it ends, and before
    // the grace period's SIGKILL.
    assert_eq!(pre_stop(proxy), pre_stop(mcrouter));
    assert!(pre_stop(proxy) > pre_stop(container(pod, "app")));
    assert!(pod.termination_grace_period_seconds.unwrap() > pre_stop(proxy));
    assert!(proxy.readiness_probe.is_some() && proxy.liveness_probe.is_some());
    let readiness = proxy.readiness_probe.as_ref().unwrap();
    assert_eq!(
        readiness.http_get.as_ref().map(|get| get.path.as_deref()),
        Some(Some("/healthz"))
    );
    let resources = proxy.resources.as_ref().unwrap();
    assert_eq!(
        resources.requests.as_ref().unwrap()["memory"],
        resources.limits.as_ref().unwrap()["memory"]
    );
    assert!(proxy
        .security_context
        .as_ref()
        .unwrap()
        .run_as_non_root
        .unwrap_or(false));
    // MediaWiki finds the proxy's pools on loopback.
    let redis: serde_json::Value =
        serde_json::from_str(env(container(pod, "app"), "WIKIKUBE_REDIS")).unwrap();
    assert_eq!(
        redis,
        serde_json::json!({"sessions": "127.0.0.1:6379", "locks": ["127.0.0.1:6380"]})
    );
}

#[test]
fn the_config_is_the_datacenters_pool_and_one_pool_per_lock_server() {
    let (_dir, site) = site_with_redis("eqiad");
    let objects = rendered_objects(&site);
    let config = proxy_config(&objects, "mw-web-main");
    config.validate().unwrap();
    let sessions = &config.pools["sessions"];
    assert_eq!(sessions.listen, "127.0.0.1:6379");
    assert_eq!(
        sessions.servers,
        [
            "rdb1001.eqiad.farm.test:6379",
            "rdb1002.eqiad.farm.test:6379"
        ]
    );
    assert!(!sessions.eject_down_servers, "a session must not fork");
    let lock = &config.pools["lock1"];
    assert_eq!(lock.listen, "127.0.0.1:6380");
    assert_eq!(lock.servers, ["rdb1003.eqiad.farm.test:6379"]);
    assert_eq!(config.pools.len(), 2);
    assert!(config.client_password.is_none());
    assert_eq!(config.timeouts.request_ms, 500);
    let password = redis_proxy::config::SecretRef::File(PathBuf::from(
        "/etc/wikikube/redis-proxy-secret/redis_password",
    ));
    assert_eq!(sessions.server_password.as_ref(), Some(&password));
    assert_eq!(lock.server_password.as_ref(), Some(&password));

    // codfw: its own pool, no locks, and no password among its private values.
    let (_dir, codfw) = site_with_redis("codfw");
    let objects = rendered_objects(&codfw);
    let config = proxy_config(&objects, "mw-web-main");
    assert_eq!(
        config.pools["sessions"].servers,
        ["rdb2001.codfw.farm.test:6379"]
    );
    assert_eq!(config.pools.len(), 1);
    assert!(config.pools["sessions"].server_password.is_none());
    let pod = pod(&objects, "mw-web-main");
    assert!(container(pod, "redis-proxy")
        .volume_mounts
        .iter()
        .flatten()
        .all(|mount| mount.name != "redis-proxy-secret"));
}

#[test]
fn the_password_comes_from_the_secret_and_only_the_proxy_mounts_it() {
    let (_dir, site) = site_with_redis("eqiad");
    let rendered = render(&site, &RenderOptions::default()).unwrap();
    let objects: Vec<Object> = rendered.objects().into_iter().cloned().collect();
    for object in &objects {
        if let Object::ConfigMap(map) = object {
            for (file, text) in map.data.iter().flatten() {
                assert!(
                    !text.contains(PASSWORD),
                    "{} has the password in {file}",
                    object.name()
                );
            }
        }
    }
    assert!(!rendered.to_yaml().contains(PASSWORD));
    let secret = objects
        .iter()
        .find_map(|object| match object {
            Object::Secret(secret) if object.name().starts_with("farm-private") => Some(secret),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        secret.data.as_ref().unwrap()["redis_password"].0,
        PASSWORD.as_bytes()
    );
    let pod = pod(&objects, "mw-web-main");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|volume| volume.name == "redis-proxy-secret")
        .unwrap();
    let source = volume.secret.as_ref().unwrap();
    assert_eq!(source.secret_name.as_deref(), Some(secret_name(&objects)));
    let items: Vec<&str> = source
        .items
        .iter()
        .flatten()
        .map(|item| item.key.as_str())
        .collect();
    assert_eq!(items, ["redis_password"], "the proxy sees no other secret");
    for container in &pod.containers {
        let mounts_it = container
            .volume_mounts
            .iter()
            .flatten()
            .any(|mount| mount.name == "redis-proxy-secret");
        assert_eq!(
            mounts_it,
            container.name == "redis-proxy",
            "{}",
            container.name
        );
    }
}

fn secret_name(objects: &[Object]) -> &str {
    objects
        .iter()
        .find(|object| {
            matches!(object, Object::Secret(_)) && object.name().starts_with("farm-private")
        })
        .map(|object| object.name())
        .unwrap()
}

#[test]
fn without_redis_pools_there_is_no_proxy_and_sessions_stay_in_memcached() {
    let site = common::load("eqiad");
    let objects = rendered_objects(&site);
    let pod = pod(&objects, "mw-web-main");
    assert!(pod.containers.iter().all(|c| c.name != "redis-proxy"));
    // Not even the variable: the pod template of a site without Redis is what it was.
    assert!(container(pod, "app")
        .env
        .iter()
        .flatten()
        .all(|var| var.name != "WIKIKUBE_REDIS"));
    assert!(objects
        .iter()
        .all(|object| !object.name().contains("redis-proxy")));
}

#[test]
fn local_settings_keep_sessions_in_redis_when_the_proxy_is_there() {
    let site = common::load("local");
    let layer = wikikube_render::config::mediawiki::image_layer(&site);
    let settings = layer
        .iter()
        .find(|(path, _)| path.ends_with("LocalSettings.php"))
        .map(|(_, text)| String::from_utf8(text.clone()).unwrap())
        .unwrap();
    for needle in [
        "getenv('WIKIKUBE_REDIS')",
        "'class' => RedisBagOStuff::class",
        "$wgSessionCacheType = 'redis-sessions';",
        "'class' => RedisLockManager::class",
        "'lockManager' => $wikikubeLockManager",
    ] {
        assert!(
            settings.contains(needle),
            "LocalSettings.php lacks {needle}"
        );
    }
    // The Redis block comes after memcached's, so that it wins.
    let memcached = settings.find("$wgSessionCacheType = 'mcrouter';").unwrap();
    let redis = settings
        .find("$wgSessionCacheType = 'redis-sessions';")
        .unwrap();
    assert!(memcached < redis);
}

/// The redis-proxy config and the mw-web main Deployment of eqiad with Redis, compared with
/// reviewed golden files in `tests/golden/eqiad-redis/` (bless with `WIKIKUBE_BLESS=1`).
#[test]
fn eqiad_with_redis_matches_the_golden_files() {
    let (_dir, site) = site_with_redis("eqiad");
    let rendered = render(&site, &RenderOptions::default()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    rendered.write_dir(scratch.path()).unwrap();
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/eqiad-redis");
    let mut actual = BTreeMap::new();
    for entry in fs::read_dir(scratch.path()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.contains("configmap-mw-web-main-redis-proxy")
            || name.ends_with("deployment-mw-web-main.yaml")
        {
            actual.insert(name, fs::read_to_string(entry.path()).unwrap());
        }
    }
    assert_eq!(actual.len(), 2, "{:?}", actual.keys());
    if std::env::var_os("WIKIKUBE_BLESS").is_some() {
        let _ = fs::remove_dir_all(&golden_dir);
        fs::create_dir_all(&golden_dir).unwrap();
        for (name, text) in &actual {
            fs::write(golden_dir.join(name), text).unwrap();
        }
        return;
    }
    for (name, text) in &actual {
        let expected = fs::read_to_string(golden_dir.join(name))
            .unwrap_or_else(|_| panic!("no golden file {name}; bless and review"));
        assert!(
            text == &expected,
            "eqiad-redis/{name} differs from its golden file; if intended, bless and review"
        );
    }
}

/// The program built beside this test (`cargo build -p redis-proxy`).
fn redis_proxy_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("debug/redis-proxy");
    assert!(
        path.is_file(),
        "{} is missing: cargo build -p redis-proxy",
        path.display()
    );
    path
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_cli(port: u16, password: Option<&str>, args: &[&str]) -> String {
    let mut command = Command::new("redis-cli");
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some(password) = password {
        // REDISCLI_AUTH rather than -a: no warning on stderr, no password on a command line.
        command.env("REDISCLI_AUTH", password);
    }
    let output = command.args(args).output().expect("redis-cli runs");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The rendered config, with its addresses moved to free loopback ports and its password file
/// into a scratch directory (the only changes), passes `redis-proxy --check`, and a session
/// written through the proxy lands in a real redis-server that requires the password.
#[test]
fn the_rendered_config_runs_in_the_real_proxy_against_a_real_redis_server() {
    wikikube_test_support::require("redis-server", "redis-server");
    wikikube_test_support::require("redis-cli", "redis-tools");
    let (_dir, site) = site_with_redis("eqiad");
    let objects = rendered_objects(&site);
    let map = common::config_map(&objects, "mw-web-main-redis-proxy");
    let rendered = &map.data.as_ref().unwrap()["redis-proxy.json"];

    let scratch = tempfile::tempdir().unwrap();
    let secret_dir = scratch.path().join("secret");
    fs::create_dir(&secret_dir).unwrap();
    // As Kubernetes writes a Secret's key: the value, here with a trailing newline as config
    // management might leave one.
    fs::write(secret_dir.join("redis_password"), format!("{PASSWORD}\n")).unwrap();
    let server_port = wikikube_test_support::free_port();
    let lock_port = wikikube_test_support::free_port();
    let (sessions_listen, lock_listen) = (
        wikikube_test_support::free_port(),
        wikikube_test_support::free_port(),
    );
    let mut moved: redis_proxy::config::Config = serde_json::from_str(rendered).unwrap();
    let password_file = redis_proxy::config::SecretRef::File(secret_dir.join("redis_password"));
    for (name, port, listen) in [
        ("sessions", server_port, sessions_listen),
        ("lock1", lock_port, lock_listen),
    ] {
        let pool = moved.pools.get_mut(name).unwrap();
        assert_eq!(
            pool.server_password.as_ref(),
            Some(&redis_proxy::config::SecretRef::File(PathBuf::from(
                "/etc/wikikube/redis-proxy-secret/redis_password"
            )))
        );
        pool.server_password = Some(password_file.clone());
        pool.servers = vec![format!("127.0.0.1:{port}")];
        pool.listen = format!("127.0.0.1:{listen}");
    }
    let moved = serde_json::to_string_pretty(&moved).unwrap();
    let config = scratch.path().join("redis-proxy.json");
    fs::write(&config, &moved).unwrap();

    let check = Command::new(redis_proxy_binary())
        .arg("--check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "--check refused the rendered config: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!String::from_utf8_lossy(&check.stdout).contains(PASSWORD));

    let mut servers = Vec::new();
    for port in [server_port, lock_port] {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wikikube_test_support::wait_listening(port, &mut child, "redis-server");
        servers.push(Running(child));
    }
    let mut proxy = Command::new(redis_proxy_binary())
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wikikube_test_support::wait_listening(sessions_listen, &mut proxy, "redis-proxy");
    let _proxy = Running(proxy);

    // What RedisBagOStuff sends for a session, without any password: the proxy gives the
    // servers theirs.
    assert_eq!(
        redis_cli(
            sessions_listen,
            None,
            &["SET", "farm:MWSession:abc", "data", "EX", "3600"]
        ),
        "OK"
    );
    assert_eq!(
        redis_cli(server_port, Some(PASSWORD), &["GET", "farm:MWSession:abc"]),
        "data"
    );
    assert_eq!(
        redis_cli(lock_listen, None, &["SET", "lock-key", "1"]),
        "OK"
    );
    assert_eq!(
        redis_cli(lock_port, Some(PASSWORD), &["GET", "lock-key"]),
        "1"
    );
}

/// A local environment whose Redis pool is on this machine runs redis-server from the image
/// builder's `base-redis`, one pod per server, published where the pool says.
#[test]
fn a_local_pool_on_this_machine_runs_redis_server_beside_the_cakes() {
    let dir = tempfile::tempdir().unwrap();
    wikikube_test_support::copy_dir(&common::example(), dir.path());
    let local = dir.path().join("environments/local.toml");
    let mut text = fs::read_to_string(&local).unwrap();
    text.push_str(
        "\n[redis.pools.local]\nservers = [\"host.containers.internal:28379\"]\n\
         lock_servers = [\"host.containers.internal:28380\", \"redis.elsewhere.test:6379\"]\n",
    );
    fs::write(&local, text).unwrap();
    let site = wikikube_model::load(dir.path(), "local", &wikikube_model::LoadOptions::default())
        .unwrap_or_else(|error| panic!("{error}"));
    let rendered = render(&site, &RenderOptions::default()).unwrap();
    let servers: Vec<(String, i32, String)> = rendered
        .components
        .iter()
        .filter(|component| component.kind == wikikube_render::ComponentKind::Redis)
        .flat_map(|component| &component.objects)
        .filter_map(|object| match object {
            Object::Deployment(deployment) => {
                let pod = deployment.spec.as_ref()?.template.spec.as_ref()?;
                let container = &pod.containers[0];
                let port = container.ports.as_ref()?[0].host_port?;
                Some((
                    object.name().to_string(),
                    port,
                    container.image.clone().unwrap_or_default(),
                ))
            }
            _ => None,
        })
        .collect();
    let image = "localhost/wikikube/base-redis:latest".to_string();
    assert_eq!(
        servers,
        [
            ("farm-redis".to_string(), 28379, image.clone()),
            ("farm-redis-2".to_string(), 28380, image),
        ],
        "a server elsewhere is left alone"
    );
    let objects: Vec<Object> = rendered.objects().into_iter().cloned().collect();
    let config = proxy_config(&objects, "mw-web-main");
    assert_eq!(
        config.pools["sessions"].servers,
        ["host.containers.internal:28379"]
    );
    assert_eq!(config.pools.len(), 3);
}
