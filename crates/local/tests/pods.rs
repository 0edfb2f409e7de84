//! Which pods a change restarts on one machine. `wikikube up` replaces a pod when its manifest
//! (or an image) changes and leaves it running otherwise (`farm.rs` checks that with podman); so
//! "a changed setting restarts exactly the pods that use it" is a property of the manifests,
//! checked here without podman on the example farm's local environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wikikube_local::pods::{local_pods, LocalPod};
use wikikube_local::StateDir;

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

/// The example's local environment, with its private values read from `private_dir`.
fn load(private_dir: Option<&Path>) -> (wikikube_model::ResolvedSite, wikikube_render::Rendered) {
    let options = wikikube_model::LoadOptions {
        private_dir: private_dir.map(Path::to_path_buf),
    };
    let site = wikikube_model::load(&example(), "local", &options).unwrap();
    let rendered =
        wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap();
    (site, rendered)
}

/// Every pod's manifest, by name.
fn manifests(
    site: &wikikube_model::ResolvedSite,
    rendered: &wikikube_render::Rendered,
    state: &StateDir,
) -> BTreeMap<String, LocalPod> {
    local_pods(site, rendered, state, "10.88.0.1")
        .unwrap()
        .into_iter()
        .map(|pod| (pod.name.clone(), pod))
        .collect()
}

/// The pods whose manifest differs.
fn restarted(
    before: &BTreeMap<String, LocalPod>,
    after: &BTreeMap<String, LocalPod>,
) -> Vec<String> {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    before
        .iter()
        .filter(|(name, pod)| pod.yaml() != after[*name].yaml())
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn a_setting_of_one_release_restarts_only_that_release() {
    let state = StateDir::new(tempfile::tempdir().unwrap().path());
    let (site, rendered) = load(None);
    let before = manifests(&site, &rendered, &state);

    let mut changed = site.clone();
    let debug = changed
        .deployments
        .iter_mut()
        .find(|deployment| deployment.name == "mw-debug")
        .unwrap();
    debug.releases[0].values.php.workers += 1;
    let changed_rendered =
        wikikube_render::render(&changed, &wikikube_render::RenderOptions::default()).unwrap();
    let after = manifests(&changed, &changed_rendered, &state);
    assert_eq!(restarted(&before, &after), ["farm-mw-debug-main"]);
    // Its new files are in a directory of their own: the running pod's are never rewritten.
    let new_dirs: Vec<&PathBuf> = after["farm-mw-debug-main"]
        .config_dirs
        .keys()
        .filter(|dir| !before["farm-mw-debug-main"].config_dirs.contains_key(*dir))
        .collect();
    assert_eq!(new_dirs.len(), 1, "{new_dirs:?}");
    assert!(new_dirs[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("mw-debug-main-php-"));
}

#[test]
fn a_private_value_restarts_exactly_the_pods_that_mount_the_private_values() {
    let state = StateDir::new(tempfile::tempdir().unwrap().path());
    let (site, rendered) = load(None);
    let before = manifests(&site, &rendered, &state);

    let private = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(example().join("private")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|line| {
                if line.starts_with("upgrade_key") {
                    "upgrade_key = \"a-new-upgrade-key\"".to_string()
                } else {
                    line.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(private.path().join(path.file_name().unwrap()), text).unwrap();
    }
    let (changed, changed_rendered) = load(Some(private.path()));
    let after = manifests(&changed, &changed_rendered, &state);
    // The releases and MariaDB mount the private values; the edge and memcached do not.
    assert_eq!(
        restarted(&before, &after),
        ["farm-mariadb", "farm-mw-debug-main", "farm-mw-web-main"]
    );
    let dirs = |pods: &BTreeMap<String, LocalPod>| -> Vec<PathBuf> {
        pods["farm-mw-web-main"]
            .secret_dirs
            .keys()
            .cloned()
            .collect()
    };
    let (old, new) = (dirs(&before), dirs(&after));
    assert_eq!(old.len(), 1);
    assert_ne!(old, new, "a new version of the values is a new directory");
    assert!(new[0].starts_with(state.secrets()));
    let values = &after["farm-mw-web-main"].secret_dirs[&new[0]];
    assert_eq!(values["upgrade_key"], b"a-new-upgrade-key");
}
