//! Properties over generated sites: rendering is deterministic, and every object a valid site
//! produces passes the lint.

mod common;

use proptest::prelude::*;
use wikikube_render::{render, RenderOptions};

#[derive(Debug, Clone)]
struct Deployment {
    name: String,
    replicas: u32,
    workers: Option<u32>,
    releases: Vec<(&'static str, u32, bool)>,
}

fn deployment() -> impl Strategy<Value = Deployment> {
    (
        "[a-z]{1,10}(-[a-z0-9]{1,8}){0,2}",
        0u32..500,
        proptest::option::of(1u32..64),
        proptest::collection::vec(
            (
                prop_oneof![Just("canary"), Just("debug"), Just("next")],
                0u32..20,
                any::<bool>(),
            ),
            0..3,
        ),
    )
        .prop_map(|(name, replicas, workers, releases)| Deployment {
            name,
            replicas,
            workers,
            releases,
        })
}

fn site_text(wikis: usize, deployments: &[Deployment], opcache: u32, port: u16) -> String {
    let mut text = String::from(
        "[site]\nname = \"generated\"\nnamespace = \"generated-wikis\"\n\
         [versions.\"1.39\"]\ncode = \"/usr/share/mediawiki\"\n",
    );
    for wiki in 0..wikis {
        text.push_str(&format!(
            "[wikis.wiki{wiki}]\ndomains = [\"w{wiki}.example\", \"alias{wiki}.example\"]\n\
             language = \"en\"\nversion = \"1.39\"\n"
        ));
    }
    text.push_str(&format!(
        "[php]\nopcache_mb = {opcache}\n[httpd]\nport = {port}\n"
    ));
    for deployment in deployments {
        text.push_str(&format!(
            "[deployments.{}]\nreplicas = {}\n",
            deployment.name, deployment.replicas
        ));
        if let Some(workers) = deployment.workers {
            text.push_str(&format!("php.workers = {workers}\n"));
        }
        if !deployment.releases.is_empty() {
            text.push_str(&format!(
                "[deployments.{}.releases.main]\n",
                deployment.name
            ));
        }
        for (release, replicas, enabled) in &deployment.releases {
            text.push_str(&format!(
                "[deployments.{}.releases.{release}]\nreplicas = {replicas}\nenabled = {enabled}\n",
                deployment.name
            ));
        }
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn rendering_is_deterministic_and_lint_clean(
        wikis in 1usize..12,
        deployments in proptest::collection::vec(deployment(), 1..5),
        opcache in 16u32..2048,
        // httpd's port, never the tls or mcrouter default (the model refuses clashing ports).
        port in (1024u16..60000).prop_filter("a free port", |port| ![4443, 11213].contains(port)),
    ) {
        let mut deployments = deployments;
        deployments.sort_by(|a, b| a.name.cmp(&b.name));
        deployments.dedup_by(|a, b| a.name == b.name);
        for deployment in &mut deployments {
            deployment.releases.sort_by_key(|release| release.0);
            deployment.releases.dedup_by_key(|release| release.0);
        }
        let site = site_text(wikis, &deployments, opcache, port);
        let environment = "[environment]\nkind = \"local\"\ndatacenter = \"here\"\n\
                           [memcached.pools]\nhere = { servers = [\"host.containers.internal:11211\"] }\n";
        let private = "[secrets]\nsecret_key = \"generated\"\n";
        let first = render(&common::load_texts(&site, environment, private), &RenderOptions::default());
        let first = match first {
            Ok(rendered) => rendered,
            Err(error) => panic!("a valid generated site failed the lint:\n{error}\n{site}"),
        };
        prop_assert!(first.allowed.is_empty());
        let second = render(&common::load_texts(&site, environment, private), &RenderOptions::default()).unwrap();
        prop_assert_eq!(first.to_yaml(), second.to_yaml());
        let expected_deployments: usize = deployments
            .iter()
            .map(|d| 1 + d.releases.iter().filter(|r| r.2).count())
            .sum();
        prop_assert_eq!(first.releases.len(), expected_deployments);
        // Besides the releases, each component of a local environment (memcached, the edge)
        // is a Deployment of its own.
        let rendered_deployments = first
            .objects()
            .into_iter()
            .filter(|o| o.kind() == wikikube_render::ObjectKind::Deployment)
            .count();
        prop_assert_eq!(rendered_deployments, expected_deployments + first.components.len());
    }
}
