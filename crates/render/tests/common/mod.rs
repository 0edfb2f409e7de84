//! Helpers shared by the render tests.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The ConfigMap whose base name is `name` among `objects` (a versioned one's name has its
/// content hash added: `mw-web-main-php` finds `mw-web-main-php-f7143523e9`).
pub fn config_map<'a>(
    objects: &'a [wikikube_render::Object],
    name: &str,
) -> &'a k8s_openapi::api::core::v1::ConfigMap {
    objects
        .iter()
        .find_map(|object| match object {
            wikikube_render::Object::ConfigMap(map)
                if wikikube_render::naming::unversioned(object.name()) == name =>
            {
                Some(map)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no ConfigMap {name}"))
}

pub fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

pub fn load(environment: &str) -> wikikube_model::ResolvedSite {
    wikikube_model::load(
        &example(),
        environment,
        &wikikube_model::LoadOptions::default(),
    )
    .unwrap_or_else(|error| panic!("the example loads for {environment}: {error}"))
}

/// Loads a site given as TOML texts, one per layer, without files.
pub fn load_texts(site: &str, environment: &str, private: &str) -> wikikube_model::ResolvedSite {
    let layers = [
        (
            wikikube_model::Layer::Defaults,
            wikikube_model::load::DEFAULTS,
        ),
        (wikikube_model::Layer::Site, site),
        // Every environment needs its database server and password; a test's own texts,
        // merged after these, can change them.
        (
            wikikube_model::Layer::Environment("test".into()),
            "[database]\nhost = \"db.test\"\n",
        ),
        (
            wikikube_model::Layer::Environment("test".into()),
            environment,
        ),
        (
            wikikube_model::Layer::Private("test".into()),
            "[secrets]\ndatabase_password = \"test\"\n",
        ),
        (wikikube_model::Layer::Private("test".into()), private),
    ];
    let trees = layers
        .iter()
        .map(|(layer, text)| {
            let tree =
                wikikube_model::tree::parse_file(text, &format!("{layer}.toml"), layer.clone())
                    .unwrap_or_else(|error| panic!("{error}"));
            (layer.clone(), tree)
        })
        .collect();
    wikikube_model::resolve::resolve(Path::new("."), "test", Vec::new(), trees)
        .unwrap_or_else(|error| panic!("{error}"))
}

/// The Redis servers' password in [`site_with_redis`]'s private values.
pub const REDIS_PASSWORD: &str = "example-redis-password-0123";

/// The example farm with Redis pools in production (two session servers and a lock server in
/// eqiad, one session server in codfw), the password in eqiad's private values only.
pub fn site_with_redis(environment: &str) -> (tempfile::TempDir, wikikube_model::ResolvedSite) {
    let dir = tempfile::tempdir().unwrap();
    wikikube_test_support::copy_dir(&example(), dir.path());
    let append = |file: &str, text: &str| {
        let path = dir.path().join(file);
        let mut old = std::fs::read_to_string(&path).unwrap();
        old.push_str(text);
        std::fs::write(path, old).unwrap();
    };
    append(
        "environments/production.toml",
        "\n[redis.pools]\n\
         eqiad = { servers = [\"rdb1001.eqiad.farm.test:6379\", \"rdb1002.eqiad.farm.test:6379\"], \
         lock_servers = [\"rdb1003.eqiad.farm.test:6379\"] }\n\
         codfw = { servers = [\"rdb2001.codfw.farm.test:6379\"] }\n",
    );
    let production = dir.path().join("environments/production.toml");
    let text = std::fs::read_to_string(&production).unwrap();
    let mcrouter = "mcrouter = \"registry.farm.test/wikikube/mcrouter:2026-11-25\"\n";
    assert!(text.contains(mcrouter));
    std::fs::write(
        &production,
        text.replacen(
            mcrouter,
            &format!(
                "{mcrouter}redis_proxy = \"registry.farm.test/wikikube/redis-proxy:2026-11-25\"\n"
            ),
            1,
        ),
    )
    .unwrap();
    append(
        "private/eqiad.toml",
        &format!("redis_password = \"{REDIS_PASSWORD}\"\n"),
    );
    let site = wikikube_model::load(
        dir.path(),
        environment,
        &wikikube_model::LoadOptions::default(),
    )
    .unwrap_or_else(|error| panic!("{error}"));
    (dir, site)
}
