//! Every rendered object of every environment of the example farm checked against Kubernetes'
//! own OpenAPI schemas, in strict mode (an unknown field is an error), with `kubernetes-validate`
//! from PyPI, for the oldest and the newest Kubernetes version wikikube supports.
//!
//! 1.30 is the oldest: the containers' preStop hooks use the `sleep` action, which is in the
//! schema from 1.29 and enabled by default from 1.30 (the 1.28 schema rejects it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest and the newest Kubernetes versions wikikube supports (docs/deploy.md).
const VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

/// The validator, from the Python tools' virtualenv (scripts/python-tools.txt pins it).
fn validator() -> PathBuf {
    wikikube_test_support::python_tool("kubernetes-validate")
}

fn validate(files: &[PathBuf], version: &str) -> (bool, String) {
    let output = Command::new(validator())
        .args(["--strict", "--quiet", "--kubernetes-version", version])
        .args(files)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success() && !text.contains("ERROR"), text)
}

fn rendered_files(environment: &str, out: &Path) -> Vec<PathBuf> {
    site_files(&common::load(environment), environment, out)
}

/// The objects of `site`'s render in `out/NAME`, and the Jobs made from its templates.
fn site_files(site: &wikikube_model::ResolvedSite, name: &str, out: &Path) -> Vec<PathBuf> {
    let rendered =
        wikikube_render::render(site, &wikikube_render::RenderOptions::default()).unwrap();
    let environment = name;
    let dir = out.join(environment);
    rendered.write_dir(&dir).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() > 10,
        "{environment} rendered {} files",
        files.len()
    );
    // A maintenance Job, as `wikikube script` and a deploy's schema phase create them: not an
    // object of the render, but made from its template, and just as strictly checked.
    if let Some(template) = &rendered.maintenance {
        let job = wikikube_render::lint::sample_job(template);
        let path = dir.join("999-job-maintenance.yaml");
        std::fs::write(&path, serde_yaml_ng::to_string(&job).unwrap()).unwrap();
        files.push(path);
        let install = template
            .install_job("enwiki", &Default::default(), "1")
            .unwrap();
        let path = dir.join("999-job-install.yaml");
        std::fs::write(&path, serde_yaml_ng::to_string(&install).unwrap()).unwrap();
        files.push(path);
    }
    // So are the backup, restore and import Jobs of `wikikube backup`, `restore` and `import`.
    if let Some(backups) = &rendered.backups {
        let settings = Default::default();
        let url = "https://dumps.example.org/enwiki.sql.gz";
        for (file, job) in [
            ("999-job-backup.yaml", backups.job(&[], &settings, "1")),
            (
                "999-job-restore.yaml",
                backups.restore_job("mwbackup-all-1", &[], false, &settings, "2"),
            ),
            (
                "999-job-import.yaml",
                backups.import_job("enwiki", url, Some(url), false, &settings, "3"),
            ),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, serde_yaml_ng::to_string(&job).unwrap()).unwrap();
            files.push(path);
        }
    }
    files
}

#[test]
fn every_environment_validates_strictly_against_the_supported_kubernetes_versions() {
    let scratch = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for environment in ["local", "eqiad", "codfw"] {
        files.extend(rendered_files(environment, scratch.path()));
    }
    // eqiad with sessions in Redis: the redis-proxy container and its Secret volume.
    let (_dir, with_redis) = common::site_with_redis("eqiad");
    files.extend(site_files(&with_redis, "eqiad-redis", scratch.path()));
    for checked in [
        "999-job-restore.yaml",
        "999-job-import.yaml",
        "-configmap-mw-web-main-redis-proxy",
    ] {
        assert!(
            files
                .iter()
                .any(|file| file.to_string_lossy().contains(checked)),
            "{checked} is checked too"
        );
    }
    assert!(
        files
            .iter()
            .any(|file| file.ends_with("999-job-install.yaml")),
        "the maintenance Jobs are checked too"
    );
    for version in VERSIONS {
        let (valid, report) = validate(&files, version);
        assert!(
            valid,
            "Kubernetes {version} rejects rendered objects:\n{report}"
        );
    }

    // The check can fail: an unknown field in one Deployment, and a version without the
    // preStop sleep action, are both rejected.
    let deployment = files
        .iter()
        .find(|path| path.to_string_lossy().contains("-deployment-mw-web-main"))
        .unwrap()
        .clone();
    let (valid, report) = validate(std::slice::from_ref(&deployment), "1.28.0");
    assert!(
        !valid,
        "Kubernetes 1.28 accepted the preStop sleep action:\n{report}"
    );
    let text = std::fs::read_to_string(&deployment).unwrap();
    let broken = scratch.path().join("broken.yaml");
    std::fs::write(
        &broken,
        text.replacen("spec:\n", "spec:\n  replicaz: 3\n", 1),
    )
    .unwrap();
    let (valid, report) = validate(&[broken], VERSIONS[0]);
    assert!(!valid, "an unknown field passed:\n{report}");
    assert!(report.contains("replicaz"), "{report}");
}
