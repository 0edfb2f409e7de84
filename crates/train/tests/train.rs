//! The train on the example farm: status, a promotion planned, applied in memory, rendered and
//! written; a rollback; and the mistakes a release engineer makes.

use std::path::{Path, PathBuf};
use wikikube_test_support::copy_dir;

use wikikube_model::{load, LoadOptions, ResolvedSite};
use wikikube_render::{render, Object, RenderOptions};

/// A copy of the example farm.
fn example(dir: &Path) -> PathBuf {
    let site = dir.join("site");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm"),
        &site,
    );
    site
}

fn load_site(dir: &Path, environment: &str) -> ResolvedSite {
    load(dir, environment, &LoadOptions::default()).unwrap()
}

/// Every rendered object by name, as JSON.
fn objects(site: &ResolvedSite) -> std::collections::BTreeMap<String, serde_json::Value> {
    let rendered = render(site, &RenderOptions::default()).unwrap();
    rendered
        .objects()
        .into_iter()
        .map(|object: &Object| {
            (
                format!("{}/{}", object.kind(), object.name()),
                serde_json::to_value(object).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_status_lists_versions_groups_and_wikis_in_train_order() {
    let scratch = tempfile::tempdir().unwrap();
    let site = load_site(&example(scratch.path()), "local");
    let status = wikikube_train::status(&site);
    let groups: Vec<(&str, &str, Vec<&str>)> = status
        .groups
        .iter()
        .map(|g| {
            (
                g.name.as_str(),
                g.version.as_str(),
                g.wikis.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [
            ("group0", "1.39.17-wmf.2", vec!["dewiki"]),
            ("group1", "1.39.17-wmf.1", vec!["commonswiki", "enwiki"]),
        ]
    );
    assert_eq!(status.versions[1].wikis, ["dewiki"]);
    assert!(status.ungrouped.is_empty());
}

#[test]
fn a_promotion_is_a_small_diff_and_a_configuration_change_and_a_rollback_undoes_it() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = example(scratch.path());
    let before = load_site(&dir, "eqiad");
    let planned = wikikube_train::promote(&before, "group1", "1.39.17-wmf.2").unwrap();
    assert_eq!(
        (planned.from.as_str(), planned.to.as_str()),
        ("1.39.17-wmf.1", "1.39.17-wmf.2")
    );
    assert_eq!(planned.wikis, ["commonswiki", "enwiki"]);
    // The diff: one version replaced, one `previous` (with its comment) added, nothing else.
    let changed: Vec<&str> = planned
        .diff
        .lines()
        .filter(|line| {
            (line.starts_with('+') || line.starts_with('-'))
                && !line.starts_with("+++")
                && !line.starts_with("---")
        })
        .collect();
    assert_eq!(
        changed,
        [
            "-version = \"1.39.17-wmf.1\"",
            "+version = \"1.39.17-wmf.2\"",
            "+# written by `wikikube train promote`, read by `rollback`",
            "+previous = \"1.39.17-wmf.1\"",
        ],
        "{}",
        planned.diff
    );
    assert!(planned.diff.contains("--- a/site.toml"), "{}", planned.diff);

    // Applied in memory, it renders what the file will say once written.
    let mut applied = before.clone();
    planned.apply(&mut applied);
    let old = objects(&before);
    let new = objects(&applied);
    planned.write().unwrap();
    let written = load_site(&dir, "eqiad");
    assert_eq!(objects(&written), new, "the written file renders otherwise");
    assert_eq!(written.spec.groups, applied.spec.groups);

    // A configuration change only: the image's configuration layer is the same, the versioned
    // wikiversions and virtual hosts are new, and the pods roll because their template names
    // them. Nothing else changed.
    assert_eq!(
        wikikube_render::config::mediawiki::image_layer(&before),
        wikikube_render::config::mediawiki::image_layer(&written),
        "the promotion changed the app image's configuration layer"
    );
    let kind_and_base = |name: &str| -> String {
        name.rsplit_once('-')
            .map_or(name, |(base, _)| base)
            .to_string()
    };
    let added: Vec<String> = new
        .keys()
        .filter(|name| !old.contains_key(*name))
        .map(|name| kind_and_base(name))
        .collect();
    assert_eq!(
        added,
        ["ConfigMap/farm-httpd-sites", "ConfigMap/farm-wikiversions"]
    );
    for (name, object) in &new {
        if let Some(previous) = old.get(name) {
            if object != previous && name == "CronJob/farm-backup" {
                // The scheduled backup records each wiki's version in its manifest: the
                // promoted wiki's changes, and nothing else.
                let (before, after) = (previous.to_string(), object.to_string());
                for wiki in ["commonswiki", "enwiki"] {
                    assert!(
                        before.contains(&format!("{wiki}=1.39.17-wmf.1")),
                        "{before}"
                    );
                    assert!(after.contains(&format!("{wiki}=1.39.17-wmf.2")), "{after}");
                }
                let promoted = before
                    .replace("commonswiki=1.39.17-wmf.1", "commonswiki=1.39.17-wmf.2")
                    .replace("enwiki=1.39.17-wmf.1", "enwiki=1.39.17-wmf.2");
                assert_eq!(promoted, after, "the backup schedule changed otherwise");
                continue;
            }
            if object != previous {
                assert!(name.starts_with("Deployment/mw-"), "{name} changed");
                let text = serde_json::to_string(object).unwrap();
                for image in ["app:", "webserver:"] {
                    assert!(
                        text.contains(&format!("registry.farm.test/wikikube/{image}")),
                        "{name}"
                    );
                }
            }
        }
    }
    let wikiversions = new
        .iter()
        .find(|(name, _)| name.starts_with("ConfigMap/farm-wikiversions"))
        .unwrap()
        .1
        .to_string();
    assert!(wikiversions.contains("'enwiki' => '1.39.17-wmf.2'"));

    // Rolled back: the file is as it was, but for nothing: `previous` goes with the rollback.
    let rolled = wikikube_train::rollback(&written, "group1").unwrap();
    assert_eq!(rolled.to, "1.39.17-wmf.1");
    rolled.write().unwrap();
    let back = load_site(&dir, "eqiad");
    assert_eq!(objects(&back), old);
    let original = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm/site.toml"),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("site.toml")).unwrap(),
        original
    );
    let error = wikikube_train::rollback(&back, "group1").unwrap_err();
    assert!(error.to_string().contains("no previous version"), "{error}");
}

#[test]
fn mistakes_are_refused_with_what_to_do() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = example(scratch.path());
    let site = load_site(&dir, "local");
    let error = wikikube_train::promote(&site, "group9", "1.39.17-wmf.2").unwrap_err();
    assert!(
        error.to_string().contains("its groups: group0, group1"),
        "{error}"
    );
    let error = wikikube_train::promote(&site, "group1", "1.40.0-wmf.1").unwrap_err();
    let text = error.to_string();
    assert!(text.contains("[versions.\"1.40.0-wmf.1\"]"), "{text}");
    assert!(text.contains("wikikube build"), "{text}");
    let error = wikikube_train::promote(&site, "group0", "1.39.17-wmf.2").unwrap_err();
    assert!(error.to_string().contains("already runs"), "{error}");

    // A version the image built last does not carry: refused with the command that builds it.
    let cache = scratch.path().join("cache");
    let error = wikikube_train::check_carried(&site, &cache, "1.39.17-wmf.2").unwrap_err();
    let text = error.to_string();
    assert!(text.contains("no app image of `farm`"), "{text}");
    assert!(text.contains("wikikube build"), "{text}");
}
