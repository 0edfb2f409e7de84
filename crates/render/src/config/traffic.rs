//! The edge in front of the releases (edge mode of the `edge` program), from the site's
//! `[traffic]`: every host to the main deployment, path routes to others, a weighted share of
//! each deployment to its `next` release, and the debug deployments behind
//! `X-Wikimedia-Debug: backend=NAME`.
//!
//! Where the backends are is the caller's business (Services over TLS in a cluster, see
//! [`crate::edge`]; host ports on one machine, see the `local` crate): [`edge()`] asks `upstream`
//! for each deployment's release and leaves out the ones it has none for.

use std::collections::BTreeMap;

use edge::config::{
    Backend, Certificate, Config, Debug, Edge, HealthCheck, Listen, Route, Split, Tls, TlsVersion,
    UpstreamTls,
};
use wikikube_model::{ReleaseName, ResolvedSite};

use super::paths::{FPM_PING, TLS_DIR};

/// The port the edge listens on inside its container.
pub const PORT: u16 = 4443;

/// The backend name of a deployment's release: the name of the release's Service (the
/// deployment for main, `NAME-next` for next), so that the edge's metrics and errors speak of
/// what `kubectl get services` shows.
pub fn backend_name(deployment: &str, release: ReleaseName) -> String {
    crate::naming::service(deployment, release)
}

/// Where the edge reaches one release.
#[derive(Clone, Debug, PartialEq)]
pub struct Upstream {
    /// `HOST:PORT`.
    pub address: String,
    /// TLS to it, or plain HTTP when `None`.
    pub tls: Option<UpstreamTls>,
}

/// The edge's config, or `None` when no main deployment has an upstream.
pub fn edge(
    site: &ResolvedSite,
    upstream: impl Fn(&str, ReleaseName) -> Option<Upstream>,
) -> Option<Config> {
    let traffic = &site.spec.traffic;
    let mut backends = BTreeMap::new();
    for deployment in &site.deployments {
        for release in [ReleaseName::Main, ReleaseName::Next] {
            let enabled = deployment
                .release(release)
                .is_some_and(|found| found.values.enabled);
            if let Some(upstream) = enabled
                .then(|| upstream(&deployment.name, release))
                .flatten()
            {
                backends.insert(
                    backend_name(&deployment.name, release),
                    Backend {
                        addresses: vec![upstream.address],
                        tls: upstream.tls,
                        // php-fpm's ping through httpd, as the pods' readiness probe asks.
                        health: Some(HealthCheck {
                            path: FPM_PING.into(),
                            host: Some("localhost".into()),
                            interval_ms: 2000,
                            timeout_ms: 1000,
                            fall: 2,
                            rise: 2,
                        }),
                        ..Backend::default()
                    },
                );
            }
        }
    }
    let main = main_deployment(site)
        .filter(|name| backends.contains_key(*name))?
        .to_string();
    let route = |path_prefix: Option<String>, deployment: &str| -> Option<Route> {
        if !backends.contains_key(deployment) {
            return None;
        }
        let next = backend_name(deployment, ReleaseName::Next);
        let split = backends.contains_key(&next).then(|| Split {
            backend: next,
            default_percent: traffic.next_percent,
            host_percent: traffic.next_host_percent.clone(),
            cookie: None,
        });
        Some(Route {
            hosts: vec!["*".into()],
            path_prefix,
            backend: deployment.to_string(),
            split,
        })
    };
    let mut routes: Vec<Route> = traffic
        .routes
        .iter()
        .filter_map(|path| route(Some(path.path_prefix.clone()), &path.deployment))
        .collect();
    routes.extend(route(None, &main));
    let debug = traffic
        .debug
        .iter()
        .filter(|name| backends.contains_key(*name))
        .cloned()
        .collect();
    let names = super::tls::certificate_names(&site.spec);
    Some(Config {
        listen: Listen {
            address: format!("0.0.0.0:{PORT}"),
            metrics: None,
            drain_seconds: 7,
            threads: None,
            reload_interval_ms: 2000,
            trusted_proxies: Vec::new(),
        },
        tls: Tls {
            min_version: TlsVersion::Tls12,
            certificates: vec![Certificate {
                names,
                cert: format!("{TLS_DIR}/tls.crt"),
                key: format!("{TLS_DIR}/tls.key"),
            }],
        },
        pod: None,
        edge: Some(Edge {
            backends,
            debug: Debug { backends: debug },
            routes,
        }),
    })
}

/// The deployment that serves every host unless a route says otherwise: `[traffic] main`, or
/// else the first deployment (by name) that is not a debug one.
pub fn main_deployment(site: &ResolvedSite) -> Option<&str> {
    let traffic = &site.spec.traffic;
    traffic.main.as_deref().or_else(|| {
        site.deployments
            .iter()
            .map(|deployment| deployment.name.as_str())
            .find(|name| !traffic.debug.iter().any(|debug| debug == name))
    })
}

/// The name the edge checks the releases' certificates against: any name they are issued for
/// does, and every wiki domain is on them; the first wiki's first domain.
pub fn upstream_server_name(site: &ResolvedSite) -> String {
    site.spec
        .wikis
        .values()
        .flat_map(|wiki| wiki.domains.first())
        .next()
        .cloned()
        .unwrap_or_else(|| "localhost".into())
}

/// The config as the file the edge reads.
pub fn file(config: &Config) -> String {
    let text = toml::to_string(config).expect("the edge config serializes");
    format!("# The edge in front of the releases. Generated by wikikube. Do not edit.\n{text}")
}
