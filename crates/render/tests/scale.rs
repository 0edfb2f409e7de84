//! A farm of 10,000 wikis (Wikimedia runs about 1,070) renders into objects an API server
//! accepts: none over the size rule's limit, which 40,000 wikis' domains do break.

mod common;

use std::fmt::Write;

use wikikube_render::lint::{Rule, MAX_OBJECT_BYTES};
use wikikube_render::{render, RenderOptions};

/// A site of `wikis` wikis with two domains each, on two MediaWiki versions.
fn farm(wikis: usize) -> String {
    let mut text = String::from(
        "[site]\nname = \"bigfarm\"\nnamespace = \"mediawiki\"\n\
         [versions.\"1.39\"]\ncode = \"/usr/share/mediawiki\"\n\
         [versions.\"1.40\"]\ncode = \"/srv/mediawiki-1.40\"\n",
    );
    for wiki in 0..wikis {
        let version = if wiki % 10 == 0 { "1.40" } else { "1.39" };
        writeln!(
            text,
            "[wikis.wiki{wiki}]\ndomains = [\"wiki{wiki}.example.org\", \"wiki{wiki}.m.example.org\"]\n\
             language = \"en\"\nversion = \"{version}\""
        )
        .unwrap();
    }
    text.push_str(
        "[deployments.mw-web]\nreplicas = 10\n[deployments.mw-web.releases.main]\n\
         [deployments.mw-web.releases.canary]\nreplicas = 1\n",
    );
    text
}

const ENVIRONMENT: &str = "[environment]\nkind = \"kubernetes\"\ndatacenter = \"eqiad\"\n\
    clusters = [{ name = \"eqiad\", context = \"eqiad\" }]\n[tls]\ncertificate = \"secret:wiki-tls\"\n";

fn largest(wikis: usize) -> (String, usize, Vec<wikikube_render::lint::Finding>) {
    let site = common::load_texts(
        &farm(wikis),
        ENVIRONMENT,
        "[secrets]\nsecret_key = \"scale\"\n",
    );
    let rendered = render(&site, &RenderOptions::default());
    let findings = match &rendered {
        Err(wikikube_render::RenderError::Lint(findings)) => findings.clone(),
        _ => Vec::new(),
    };
    let rendered = render(
        &site,
        &RenderOptions {
            allow: std::collections::BTreeSet::from([Rule::Size]),
        },
    )
    .unwrap();
    let (name, bytes) = rendered
        .objects()
        .into_iter()
        .map(|object| (object.describe(), serde_json::to_vec(object).unwrap().len()))
        .max_by_key(|(_, bytes)| *bytes)
        .unwrap();
    (name, bytes, findings)
}

#[test]
fn ten_thousand_wikis_render_within_the_api_servers_limit() {
    let (name, bytes, findings) = largest(10_000);
    eprintln!("10,000 wikis: the largest object is {name}, {bytes} bytes");
    assert!(findings.is_empty(), "{findings:?}");
    assert!(bytes <= MAX_OBJECT_BYTES, "{name}: {bytes} bytes");
}

#[test]
fn forty_thousand_wikis_break_the_size_rule_by_name() {
    let (name, bytes, findings) = largest(40_000);
    eprintln!("40,000 wikis: the largest object is {name}, {bytes} bytes");
    assert!(bytes > MAX_OBJECT_BYTES);
    assert!(
        findings
            .iter()
            .any(|finding| finding.rule == Rule::Size && finding.object == name),
        "{findings:?}"
    );
}
