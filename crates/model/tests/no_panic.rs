//! No input makes the loader panic or hang: generated site trees (real keys with values of any
//! type and size, in any layer) and arbitrary bytes in a site file are either loaded or refused
//! with an error that names a file of the site and a line inside it.

use std::path::Path;

use proptest::prelude::*;
use wikikube_model::{Layer, LoadOptions};

/// Keys a site may set (and near misses), as dotted paths.
const KEYS: &[&str] = &[
    "replicas",
    "enabled",
    "php.workers",
    "php.request_timeout_seconds",
    "php.memory_limit_mb",
    "php.max_upload_mb",
    "php.opcache_mb",
    "httpd.port",
    "httpd.memory_mb",
    "tls.port",
    "tls.certificate",
    "tls.trusted_proxies",
    "mcrouter.port",
    "memcached.pools",
    "memcached.gutter",
    "lifecycle.pre_stop_seconds",
    "lifecycle.termination_grace_seconds",
    "images.app",
    "database.host",
    "database.port",
    "database.type",
    "database.sections",
    "traffic.main",
    "traffic.next_percent",
    "wikis.enwiki.domains",
    "wikis.enwiki.language",
    "wikis.enwiki.version",
    "wikis.enwiki.settings",
    "wikis.newwiki.domains",
    "deployments.mw-web.replicas",
    "deployments.mw-web.releases.canary.replicas",
    "deployments.mw-wbe.replicas",
    "deployments.mw-web.releases.canery",
    "versions.1.php",
    "site.namespace",
    "site.name",
    "environment.kind",
    "environment.clusters",
    "secrets.secret_key",
    "phpp.workers",
];

/// A TOML value of any type, some of them extreme.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        prop_oneof![
            Just(0i64),
            Just(-1),
            Just(1),
            Just(65_535),
            Just(4_294_967_296)
        ]
        .prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:?}")),
        any::<bool>().prop_map(|b| b.to_string()),
        "[a-z0-9./:-]{0,20}".prop_map(|s| format!("{s:?}")),
        "\\PC{0,12}".prop_map(|s| format!("{s:?}")),
        proptest::collection::vec("[a-z.]{0,12}", 0..4).prop_map(|items| format!("{items:?}")),
        Just("{}".to_string()),
        Just("{ servers = [\"10.0.0.1:11211\"] }".to_string()),
        Just("[{ name = \"x\", context = \"y\" }]".to_string()),
    ]
}

/// Lines `key = value` (dotted keys, so any path can go in any layer).
fn lines() -> impl Strategy<Value = String> {
    proptest::collection::vec((proptest::sample::select(KEYS), value()), 0..6).prop_map(|pairs| {
        let mut seen = std::collections::BTreeSet::new();
        pairs
            .into_iter()
            // TOML refuses a key defined twice in one file (reported, not a panic), but
            // then nothing else in the file is tried: keep the first.
            .filter(|(key, _)| seen.insert(*key))
            .map(|(key, value)| {
                let key = key.replace("versions.1.php", "versions.\"1.39\".php");
                format!("{key} = {value}\n")
            })
            .collect()
    })
}

fn example() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

fn check(
    result: Result<wikikube_model::ResolvedSite, wikikube_model::Error>,
    texts: &[(&str, &str)],
) {
    if let Err(error) = result {
        assert!(
            !error.message.is_empty() || !error.key.is_empty(),
            "{error:?}"
        );
        let file = error.origin.file.to_string();
        if let Some((_, text)) = texts.iter().find(|(name, _)| file.ends_with(name)) {
            let lines = text.lines().count().max(1) as u32;
            assert!(
                error.origin.line <= lines + 1,
                "{error}: line {} of a {lines}-line file",
                error.origin.line
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Generated values in the site, environment, datacenter and private layers, merged over
    /// the example farm's own files.
    #[test]
    fn generated_layers_never_panic(
        site in lines(),
        environment in lines(),
        datacenter in lines(),
        private in lines(),
    ) {
        let read = |file: &str| std::fs::read_to_string(example().join(file)).unwrap();
        let site = format!("{site}{}", read("site.toml"));
        let environment = format!("{environment}{}", read("environments/production.toml"));
        let datacenter = format!("{datacenter}{}", read("environments/production/eqiad.toml"));
        // After the file's [secrets] header: the generated keys land inside it.
        let private = format!("{}\n{private}", read("private/eqiad.toml"));
        let texts = [
            ("site.toml", site.as_str()),
            ("production.toml", environment.as_str()),
            ("eqiad.toml", datacenter.as_str()),
            ("private.toml", private.as_str()),
        ];
        let layers = [
            (Layer::Defaults, wikikube_model::load::DEFAULTS, "<built-in>/defaults.toml"),
            (Layer::Site, texts[0].1, "site.toml"),
            (Layer::Environment("production".into()), texts[1].1, "production.toml"),
            (Layer::Datacenter("eqiad".into()), texts[2].1, "eqiad.toml"),
            (Layer::Private("eqiad".into()), texts[3].1, "private.toml"),
        ];
        let mut trees = Vec::new();
        for (layer, text, file) in layers {
            match wikikube_model::tree::parse_file(text, file, layer.clone()) {
                Ok(tree) => trees.push((layer, tree)),
                Err(error) => {
                    check(Err(error), &texts);
                    return Ok(());
                }
            }
        }
        let result = wikikube_model::resolve::resolve(Path::new("."), "eqiad", Vec::new(), trees);
        check(result, &texts);
    }

    /// Arbitrary bytes inserted anywhere into site.toml, read from disk as `wikikube` does.
    #[test]
    fn arbitrary_bytes_in_a_file_never_panic(
        at in 0usize..2000,
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let copy = |from: &Path, to: &Path| {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(from, to).unwrap();
        };
        for file in ["site.toml", "environments/local.toml", "private/local.toml"] {
            copy(&example().join(file), &dir.path().join(file));
        }
        let mut text = std::fs::read(dir.path().join("site.toml")).unwrap();
        let at = at.min(text.len());
        text.splice(at..at, bytes);
        std::fs::write(dir.path().join("site.toml"), &text).unwrap();
        let shown = String::from_utf8_lossy(&text).into_owned();
        let result = wikikube_model::load(dir.path(), "local", &LoadOptions::default());
        check(result, &[("site.toml", shown.as_str())]);
    }
}
