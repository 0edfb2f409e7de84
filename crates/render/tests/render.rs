//! Rendering the example farm: order, determinism, the cake's wiring, secrets and checksums.

mod common;

use common::config_map;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use wikikube_render::{render, Object, RenderOptions};

fn objects(environment: &str) -> Vec<Object> {
    render(&common::load(environment), &RenderOptions::default())
        .unwrap()
        .objects()
        .into_iter()
        .cloned()
        .collect()
}

fn deployment<'a>(objects: &'a [Object], name: &str) -> &'a Deployment {
    objects
        .iter()
        .find_map(|object| match object {
            Object::Deployment(deployment) if object.name() == name => Some(deployment),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no Deployment {name}"))
}

fn services(objects: &[Object]) -> Vec<&Service> {
    objects
        .iter()
        .filter_map(|object| match object {
            Object::Service(service) => Some(service),
            _ => None,
        })
        .collect()
}

#[test]
fn the_example_renders_in_apply_order_without_lint_exceptions() {
    for environment in ["eqiad", "codfw", "local"] {
        let rendered = render(&common::load(environment), &RenderOptions::default()).unwrap();
        assert!(rendered.allowed.is_empty(), "{environment}");
        let ranks: Vec<u8> = rendered
            .objects()
            .into_iter()
            .map(Object::apply_rank)
            .collect();
        assert!(
            ranks.windows(2).all(|pair| pair[0] <= pair[1]),
            "{environment}"
        );
        let kinds: Vec<&str> = rendered
            .objects()
            .into_iter()
            .map(|object| object.kind().as_str())
            .collect();
        for kind in [
            "Namespace",
            "ServiceAccount",
            "ConfigMap",
            "Secret",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
        ] {
            assert!(kinds.contains(&kind), "{environment} lacks a {kind}");
        }
    }
}

#[test]
fn rendering_twice_gives_identical_bytes() {
    let site = common::load("eqiad");
    let first = render(&site, &RenderOptions::default()).unwrap();
    let second = render(&common::load("eqiad"), &RenderOptions::default()).unwrap();
    assert_eq!(first.to_yaml(), second.to_yaml());
    assert_eq!(first.to_json(), second.to_json());
}

#[test]
fn the_cake_has_four_containers_sharing_the_fastcgi_socket() {
    let objects = objects("eqiad");
    let web = deployment(&objects, "mw-web-main");
    let pod = web.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["tls", "httpd", "app", "mcrouter"]);
    for container in ["httpd", "app"] {
        let mounts = pod
            .containers
            .iter()
            .find(|c| c.name == container)
            .unwrap()
            .volume_mounts
            .as_ref()
            .unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.name == "shared-socket" && m.mount_path == "/run/shared"),
            "{container} does not mount the socket directory"
        );
    }
    let php = config_map(&objects, "mw-web-main-php")
        .data
        .as_ref()
        .unwrap();
    assert!(php["php-fpm.conf"].contains("listen = /run/shared/fpm-www.sock"));
    let sites = config_map(&objects, "farm-httpd-sites")
        .data
        .as_ref()
        .unwrap();
    // One virtual host per MediaWiki version, each naming every domain of the wikis on it.
    let old = &sites["mediawiki-1.39.17-wmf.1.conf"];
    let new = &sites["mediawiki-1.39.17-wmf.2.conf"];
    for vhost in [old, new] {
        assert!(vhost.contains("unix:/run/shared/fpm-www.sock|fcgi://localhost"));
    }
    assert!(old.contains("ServerName commons.farm.test"), "{old}");
    for domain in ["media.farm.test", "en.farm.test", "www.farm.test"] {
        assert!(old.contains(domain), "{domain}: {old}");
        assert!(!new.contains(domain), "{domain}: {new}");
    }
    assert!(new.contains("ServerName de.farm.test"), "{new}");
    assert!(!old.contains("de.farm.test"), "{old}");
    assert!(old.contains("DocumentRoot /srv/mediawiki/php-1.39.17-wmf.1"));
    assert!(new.contains("DocumentRoot /srv/mediawiki/php-1.39.17-wmf.2"));
}

/// The stop sequence of a release's pod: preStop sleeps and the grace period, and the tls
/// container's drain time from its config.
fn stop_sequence(objects: &[Object], release: &str) -> (i64, i64, i64, i64, i64, u64) {
    let web = deployment(objects, release);
    let pod = web.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let sleep = |name: &str| {
        pod.containers
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.lifecycle.as_ref())
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.sleep.as_ref())
            .map(|s| s.seconds)
            .unwrap()
    };
    let text = &config_map(objects, &format!("{release}-tls"))
        .data
        .as_ref()
        .unwrap()["edge.toml"];
    let config: edge::config::Config = toml::from_str(text).unwrap();
    (
        sleep("tls"),
        sleep("httpd"),
        sleep("app"),
        sleep("mcrouter"),
        pod.termination_grace_period_seconds.unwrap(),
        config.listen.drain_seconds,
    )
}

#[test]
fn a_request_accepted_before_tls_stops_finishes_before_php_fpm_stops() {
    // php.request_timeout_seconds is 201 (the default, as at Wikimedia); tls keeps taking
    // requests for 7 s while the endpoint removal spreads.
    let (tls, httpd, app, mcrouter, grace, drain) = stop_sequence(&objects("eqiad"), "mw-web-main");
    assert_eq!((tls, httpd, app, mcrouter, grace), (7, 210, 210, 212, 214));
    // The order of stops: tls, then httpd and php-fpm together, then mcrouter, then SIGKILL.
    assert!(tls < httpd && httpd == app && app < mcrouter && mcrouter < grace);
    // A request accepted at the last moment runs for the whole timeout before its backends stop.
    assert!(httpd >= tls + 201);
    // tls waits for requests in flight until its backends are about to stop.
    assert_eq!(i64::try_from(drain).unwrap(), httpd - tls);

    // A shorter timeout shortens the whole sequence.
    let scratch = tempfile::tempdir().unwrap();
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(common::example())
        .arg(scratch.path().join("site"))
        .status()
        .unwrap();
    assert!(copied.success());
    let settings = scratch.path().join("site/site.toml");
    let mut text = std::fs::read_to_string(&settings).unwrap();
    assert!(!text.contains("[php]"));
    text.push_str("\n[php]\nrequest_timeout_seconds = 30\n");
    std::fs::write(&settings, text).unwrap();
    let site = wikikube_model::load(
        &scratch.path().join("site"),
        "eqiad",
        &wikikube_model::LoadOptions::default(),
    )
    .unwrap();
    let objects: Vec<Object> = render(&site, &RenderOptions::default())
        .unwrap()
        .objects()
        .into_iter()
        .cloned()
        .collect();
    let (tls, httpd, _, mcrouter, grace, drain) = stop_sequence(&objects, "mw-web-main");
    assert_eq!((tls, httpd, mcrouter, grace, drain), (7, 39, 41, 43, 32));
}

#[test]
fn canary_has_no_service_but_mains_service_selects_its_pods() {
    let objects = objects("eqiad");
    let names: Vec<&str> = services(&objects)
        .iter()
        .map(|s| s.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["farm-edge", "mw-api-ext", "mw-debug", "mw-web"]);
    let web_service = services(&objects)
        .into_iter()
        .find(|s| s.metadata.name.as_deref() == Some("mw-web"))
        .unwrap();
    let selector = web_service
        .spec
        .as_ref()
        .unwrap()
        .selector
        .as_ref()
        .unwrap();
    for release in ["mw-web-main", "mw-web-canary"] {
        let labels = pod_labels(&objects, release);
        assert!(
            selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
            "mw-web's Service does not select {release}"
        );
    }
}

#[test]
fn resources_follow_the_php_fpm_sizing() {
    let objects = objects("eqiad");
    let api = deployment(&objects, "mw-api-ext-main");
    let pod = api.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let app = pod.containers.iter().find(|c| c.name == "app").unwrap();
    let resources = app.resources.as_ref().unwrap();
    // 12 workers (site.toml, deployment scope), opcache 500, APCu 768.
    assert_eq!(resources.requests.as_ref().unwrap()["cpu"].0, "6500m");
    assert_eq!(resources.requests.as_ref().unwrap()["memory"].0, "3634Mi");
    assert_eq!(resources.limits.as_ref().unwrap()["memory"].0, "6634Mi");
    let strategy = api.spec.as_ref().unwrap().strategy.as_ref().unwrap();
    let rolling = strategy.rolling_update.as_ref().unwrap();
    assert_eq!(
        serde_json::to_value(rolling).unwrap(),
        serde_json::json!({"maxSurge": "3%", "maxUnavailable": "6%"})
    );
}

#[test]
fn secret_values_go_into_the_secret_and_never_into_output() {
    let site = common::load("eqiad");
    let rendered = render(&site, &RenderOptions::default()).unwrap();
    let secret = rendered
        .objects()
        .into_iter()
        .find_map(|object| match object {
            Object::Secret(secret) => Some(secret),
            _ => None,
        })
        .unwrap();
    let value = &secret.data.as_ref().unwrap()["secret_key"].0;
    assert!(String::from_utf8_lossy(value).starts_with("example-eqiad-secret-key"));
    let yaml = rendered.to_yaml();
    let json = rendered.to_json();
    for secret_value in site.secrets.expose().values() {
        assert!(!yaml.contains(secret_value.as_str()));
        assert!(!json.contains(secret_value.as_str()));
        for object in rendered.objects() {
            if let Object::ConfigMap(map) = object {
                for text in map.data.iter().flatten().map(|(_, text)| text) {
                    assert!(!text.contains(secret_value.as_str()));
                }
            }
        }
    }
    assert!(yaml.contains("secret_key: <redacted>"));
}

#[test]
fn a_config_change_is_a_new_version_of_that_config_only() {
    let base = objects("eqiad");
    let mut site = common::load("eqiad");
    let web = site
        .deployments
        .iter_mut()
        .find(|d| d.name == "mw-web")
        .unwrap();
    web.releases[0].values.php.workers = 3;
    let changed: Vec<Object> = render(&site, &RenderOptions::default())
        .unwrap()
        .objects()
        .into_iter()
        .cloned()
        .collect();
    let sources = |objects: &[Object], name: &str| -> Vec<(String, String)> {
        let pod = deployment(objects, name)
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .clone()
            .unwrap();
        pod.volumes
            .unwrap()
            .into_iter()
            .filter_map(|volume| {
                let source = volume
                    .config_map
                    .map(|map| map.name)
                    .or_else(|| volume.secret.and_then(|secret| secret.secret_name))?;
                Some((volume.name, source))
            })
            .collect()
    };
    let (before, after) = (
        sources(&base, "mw-web-main"),
        sources(&changed, "mw-web-main"),
    );
    let differing: Vec<&str> = before
        .iter()
        .zip(&after)
        .filter(|(old, new)| old != new)
        .map(|(old, _)| old.0.as_str())
        .collect();
    assert_eq!(differing, ["php-config"], "{before:?}\n{after:?}");
    // The new version is a new, immutable object; the old name is gone from the render; no other
    // release's pod template changes.
    let php = |sources: &[(String, String)]| {
        sources
            .iter()
            .find(|(volume, _)| volume == "php-config")
            .map(|(_, source)| source.clone())
            .unwrap()
    };
    let (old, new) = (&php(&before), &php(&after));
    assert!(old.starts_with("mw-web-main-php-") && new.starts_with("mw-web-main-php-"));
    assert!(changed
        .iter()
        .any(|o| o.name() == new.as_str() && o.is_versioned()));
    assert!(!changed.iter().any(|o| o.name() == old.as_str()));
    for other in ["mw-web-canary", "mw-api-ext-main", "mw-debug-main"] {
        assert_eq!(sources(&base, other), sources(&changed, other), "{other}");
    }
    // Nothing in a pod template says a checksum any more: the names do.
    let template = &deployment(&changed, "mw-web-main")
        .spec
        .as_ref()
        .unwrap()
        .template;
    assert!(template.metadata.as_ref().unwrap().annotations.is_none());
}

#[test]
fn mcrouter_routes_purges_to_the_other_datacenter() {
    let objects = objects("eqiad");
    let text = &config_map(&objects, "mw-web-main-mcrouter")
        .data
        .as_ref()
        .unwrap()["mcrouter.json"];
    let config: serde_json::Value = serde_json::from_str(text).unwrap();
    // Wikimedia's WAN tree: keys without a prefix stay in eqiad, failing over to the gutter.
    assert_eq!(config["default_route"], "/eqiad/mw/");
    let route = |alias: &str| {
        config["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["aliases"][0] == alias)
            .unwrap_or_else(|| panic!("no route {alias} in {text}"))["route"]
            .clone()
    };
    let local = route("/eqiad/mw/");
    assert_eq!(local["type"], "FailoverWithExptimeRoute");
    assert_eq!(local["normal"], "PoolRoute|eqiad");
    assert_eq!(local["failover"][0], "PoolRoute|gutter");
    // MediaWiki's broadcast prefix matches both WAN routes: purges (sets of tombstones,
    // deletes) reach eqiad synchronously and codfw in the background; reads stay in eqiad.
    let prefix = wikikube_render::config::mcrouter::broadcast_prefix();
    assert_eq!(prefix, "/*/mw-wan/");
    let (eqiad, codfw) = (route("/eqiad/mw-wan/"), route("/codfw/mw-wan/"));
    for operation in ["set", "delete"] {
        let sync = &eqiad["operation_policies"][operation];
        assert_eq!(sync["type"], "AllSyncRoute");
        assert_eq!(sync["children"][0], local);
        let background = &codfw["operation_policies"][operation];
        assert_eq!(background["type"], "AllAsyncRoute");
        assert_eq!(background["children"][0], "PoolRoute|codfw");
    }
    assert_eq!(eqiad["default_policy"], local);
    assert_eq!(codfw["default_policy"], local, "reads stay local");
    // The app's LocalSettings writes its purges with that prefix through a memcached client
    // pointed at the router.
    let site = common::load("eqiad");
    let files = wikikube_render::config::mediawiki::config_files(&site);
    let settings = files
        .iter()
        .find(|(path, _)| path.ends_with("LocalSettings.php"))
        .unwrap()
        .1;
    assert!(settings.contains("'broadcastRoutingPrefix' => '/*/mw-wan/'"));
    assert!(settings.contains("$wgMainWANCache = 'wancache-main-mcrouter';"));
    assert!(settings.contains("$wgMainCacheType = 'mcrouter';"));
}

#[test]
fn a_local_environment_runs_a_gutter_by_default() {
    let site = common::load("local");
    let rendered = render(&site, &RenderOptions::default()).unwrap();
    let memcached: Vec<String> = rendered
        .components
        .iter()
        .filter(|c| c.kind == wikikube_render::ComponentKind::Memcached)
        .map(|c| {
            c.deployment_object()
                .unwrap()
                .metadata
                .name
                .clone()
                .unwrap()
        })
        .collect();
    assert_eq!(memcached, ["farm-memcached", "farm-memcached-gutter"]);
    let objects = objects("local");
    let text = &config_map(&objects, "mw-web-main-mcrouter")
        .data
        .as_ref()
        .unwrap()["mcrouter.json"];
    let config: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        config["pools"]["gutter"]["servers"][0],
        "host.containers.internal:11212"
    );
}

#[test]
fn the_tls_config_is_one_the_edge_accepts() {
    let objects = objects("eqiad");
    let text = &config_map(&objects, "mw-web-main-tls")
        .data
        .as_ref()
        .unwrap()["edge.toml"];
    let config: edge::config::Config = toml::from_str(text).unwrap();
    assert_eq!(config.pod.unwrap().upstream, "127.0.0.1:8080");
    assert_eq!(config.listen.address, "0.0.0.0:4443");
}

#[test]
fn disabled_releases_are_not_rendered() {
    let rendered = render(&common::load("local"), &RenderOptions::default()).unwrap();
    let names: Vec<String> = rendered
        .releases
        .iter()
        .filter_map(|release| release.deployment_object())
        .map(|deployment| deployment.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["mw-debug-main", "mw-web-main"]);
}

#[test]
fn the_edge_routes_hosts_paths_and_debug_from_the_sites_traffic() {
    let site = common::load("eqiad");
    let upstream = |deployment: &str, release: wikikube_model::ReleaseName| {
        Some(wikikube_render::config::traffic::Upstream {
            address: format!("{deployment}-{release}.example:8080"),
            tls: None,
        })
    };
    let config = wikikube_render::config::traffic::edge(&site, upstream).unwrap();
    config.validate().unwrap();
    let edge = config.edge.as_ref().unwrap();
    let backends: Vec<&str> = edge.backends.keys().map(String::as_str).collect();
    assert_eq!(backends, ["mw-api-ext", "mw-debug", "mw-web"]);
    assert_eq!(edge.debug.backends, ["mw-debug"]);
    let routes: Vec<(Option<&str>, &str)> = edge
        .routes
        .iter()
        .map(|route| (route.path_prefix.as_deref(), route.backend.as_str()))
        .collect();
    assert_eq!(
        routes,
        [(Some("/w/api.php"), "mw-api-ext"), (None, "mw-web")]
    );
    // The file reads back as the same config.
    let text = wikikube_render::config::traffic::file(&config);
    let read: edge::config::Config = toml::from_str(&text).unwrap();
    assert_eq!(read, config);
    // A deployment without an address is left out, and without main there is no edge.
    let only_debug = |deployment: &str, _| {
        (deployment == "mw-debug").then(|| wikikube_render::config::traffic::Upstream {
            address: "x:1".into(),
            tls: None,
        })
    };
    assert!(wikikube_render::config::traffic::edge(&site, only_debug).is_none());
}

#[test]
fn a_cluster_gets_an_edge_that_reaches_the_releases_over_tls() {
    let site = common::load("eqiad");
    let objects = objects("eqiad");
    let edge: Vec<String> = objects
        .iter()
        .filter(|object| object.name() == "farm-edge")
        .map(|object| object.describe())
        .collect();
    assert_eq!(
        edge,
        [
            "ConfigMap/farm-edge",
            "Service/farm-edge",
            "Deployment/farm-edge",
            "PodDisruptionBudget/farm-edge"
        ]
    );
    let text =
        &config_map(&objects, "farm-edge").data.as_ref().unwrap()[wikikube_render::edge::FILE];
    let config: edge::config::Config = toml::from_str(text).unwrap();
    config.validate().unwrap();
    let domains: Vec<&String> = site
        .spec
        .wikis
        .values()
        .flat_map(|wiki| &wiki.domains)
        .collect();
    let pod = deployment(&objects, "farm-edge")
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let mounts = pod.containers[0].volume_mounts.as_ref().unwrap();
    let volumes = pod.volumes.as_ref().unwrap();
    let edge = config.edge.as_ref().unwrap();
    for (name, backend) in &edge.backends {
        // Through the release's Service, which only the tls container answers.
        let service = services(&objects)
            .into_iter()
            .find(|service| {
                backend.addresses[0].starts_with(&format!(
                    "{}.mediawiki.svc:",
                    service.metadata.name.as_ref().unwrap()
                ))
            })
            .unwrap_or_else(|| panic!("{name}: {:?} is no Service", backend.addresses));
        let port = service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port;
        assert!(backend.addresses[0].ends_with(&format!(":{port}")));
        let tls = backend
            .tls
            .as_ref()
            .unwrap_or_else(|| panic!("{name} without TLS"));
        assert!(
            domains.contains(&&tls.server_name),
            "{name}: {}",
            tls.server_name
        );
        // The CA file is the release's certificate Secret, mounted where the config says.
        let mount = mounts
            .iter()
            .find(|mount| tls.ca.starts_with(&format!("{}/", mount.mount_path)))
            .unwrap_or_else(|| panic!("{name}: {} is not mounted", tls.ca));
        let volume = volumes
            .iter()
            .find(|volume| volume.name == mount.name)
            .unwrap();
        assert_eq!(
            volume.secret.as_ref().unwrap().secret_name.as_deref(),
            Some("mediawiki-tls")
        );
        assert!(tls.ca.ends_with("/tls.crt"));
    }
    assert_eq!(edge.debug.backends, ["mw-debug"]);
    // The edge's pods are its Service's only pods, and no cake Service selects them.
    let labels = pod_labels(&objects, "farm-edge");
    for service in services(&objects) {
        let selector = service.spec.as_ref().unwrap().selector.as_ref().unwrap();
        let selects = selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value));
        assert_eq!(
            selects,
            service.metadata.name.as_deref() == Some("farm-edge")
        );
    }
}

#[test]
fn the_edge_is_rendered_unless_it_has_no_port_on_one_machine_or_no_replicas() {
    // On one machine the edge is published on `[traffic] local_https_port`, reaching the
    // releases through their host ports; 0 renders none.
    let rendered = render(&common::load("local"), &RenderOptions::default()).unwrap();
    let edge = rendered
        .component(wikikube_render::ComponentKind::Edge)
        .expect("the local edge");
    let deployment = edge.deployment_object().unwrap();
    let ports = &deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .ports;
    assert!(ports
        .iter()
        .flatten()
        .any(|port| port.name.as_deref() == Some("https") && port.host_port == Some(8445)));
    let mut site = common::load("local");
    site.spec.traffic.local_https_port = 0;
    let rendered = render(&site, &RenderOptions::default()).unwrap();
    assert!(rendered
        .component(wikikube_render::ComponentKind::Edge)
        .is_none());
    let mut site = common::load("eqiad");
    site.spec.traffic.edge.replicas = 0;
    let rendered = render(&site, &RenderOptions::default()).unwrap();
    assert!(rendered
        .objects()
        .into_iter()
        .all(|object| object.name() != "farm-edge"));
}

fn pod_labels(objects: &[Object], name: &str) -> std::collections::BTreeMap<String, String> {
    deployment(objects, name)
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap()
}

/// The site's media moved to Swift in every release, as `[media] storage = "swift"` does.
fn with_swift_media(environment: &str, auth_url: &str) -> wikikube_model::ResolvedSite {
    let mut site = common::load(environment);
    for release in site
        .deployments
        .iter_mut()
        .flat_map(|deployment| deployment.releases.iter_mut())
    {
        let media = &mut release.values.media;
        media.storage = wikikube_model::MediaStorage::Swift;
        media.swift.auth_url = auth_url.into();
        media.swift.account = "wikis".into();
        media.swift.user = "mediawiki".into();
    }
    site
}

#[test]
fn media_in_swift_need_no_volume_and_httpd_reads_them_from_the_account() {
    let site = with_swift_media("eqiad", "https://swift.eqiad.test/auth");
    let rendered = render(&site, &RenderOptions::default()).unwrap();
    let objects: Vec<Object> = rendered.objects().into_iter().cloned().collect();
    assert!(
        !objects
            .iter()
            .any(|object| matches!(object, Object::PersistentVolumeClaim(_))
                && object.name() == "farm-media"),
        "a claim for media that are in Swift"
    );
    assert!(rendered
        .component(wikikube_render::ComponentKind::Swift)
        .is_none());
    let pod = deployment(&objects, "mw-web-main")
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    assert!(pod
        .volumes
        .iter()
        .flatten()
        .all(|volume| volume.persistent_volume_claim.is_none()));
    let app = pod.containers.iter().find(|c| c.name == "app").unwrap();
    let media = app
        .env
        .iter()
        .flatten()
        .find(|var| var.name == "WIKIKUBE_MEDIA")
        .and_then(|var| var.value.as_deref())
        .unwrap();
    let media: serde_json::Value = serde_json::from_str(media).unwrap();
    assert_eq!(media["storage"], "swift");
    assert_eq!(media["auth_url"], "https://swift.eqiad.test/auth");
    assert_eq!(media["user"], "wikis:mediawiki");
    assert_eq!(
        media["storage_url"],
        "https://swift.eqiad.test/v1/AUTH_wikis"
    );
    let sites = config_map(&objects, "farm-httpd-sites")
        .data
        .as_ref()
        .unwrap();
    let vhost = &sites["mediawiki-1.39.17-wmf.1.conf"];
    assert!(vhost.contains(
        "\"^/images/([a-z0-9_]+)/thumb/(.+)$\" \
         \"https://swift.eqiad.test/v1/AUTH_wikis/$1-local-thumb/$2\""
    ));
    assert!(vhost.contains("\"https://swift.eqiad.test/v1/AUTH_wikis/$1-local-public/$2\""));
    assert!(!vhost.contains("/srv/mediawiki/media"), "{vhost}");
    let httpd = config_map(&objects, "mw-web-main-httpd")
        .data
        .as_ref()
        .unwrap();
    assert!(httpd["httpd.conf"].contains("mod_proxy_http.so"));
}

#[test]
fn a_local_environment_runs_the_swift_its_media_name() {
    let site = with_swift_media("local", "http://host.containers.internal:27380/auth");
    let rendered = render(&site, &RenderOptions::default()).unwrap();
    let swift = rendered
        .component(wikikube_render::ComponentKind::Swift)
        .expect("the local Swift");
    let pod = swift
        .deployment_object()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("localhost/wikikube/base-swift:latest")
    );
    assert!(container
        .ports
        .iter()
        .flatten()
        .any(|port| port.host_port == Some(27380)));
    assert_eq!(
        container.args.as_deref().unwrap()[..2],
        ["wikis".to_string(), "mediawiki".to_string()]
    );
    assert!(pod.volumes.iter().flatten().any(|volume| volume
        .persistent_volume_claim
        .as_ref()
        .is_some_and(|claim| claim.claim_name == "farm-swift-data")));
    // A Swift elsewhere is not run here.
    let site = with_swift_media("local", "https://swift.example.org/auth");
    let rendered = render(&site, &RenderOptions::default()).unwrap();
    assert!(rendered
        .component(wikikube_render::ComponentKind::Swift)
        .is_none());
}
