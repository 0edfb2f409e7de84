//! The `wikikube` binary as a user runs it: output, files, messages and exit codes.

use std::path::{Path, PathBuf};
use wikikube_test_support::copy_dir;

use assert_cmd::Command;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

/// Runs `command`, which must exit with status 1 (a refusal, not a crash); its standard error.
fn refused(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

fn wikikube() -> Command {
    Command::cargo_bin("wikikube").unwrap()
}

#[test]
fn render_prints_yaml_in_apply_order() {
    let output = wikikube()
        .args(["render", example().to_str().unwrap(), "--env", "eqiad"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("kind: "))
        .collect();
    assert_eq!(kinds.first(), Some(&"Namespace"));
    // The backup schedule's CronJob last: it mounts the claims and the Secret before it.
    assert_eq!(kinds.last(), Some(&"CronJob"));
    assert!(!text.contains("example-eqiad-secret-key"));
}

#[test]
fn render_rbac_prints_a_role_per_command_and_the_namespace_writer() {
    let output = wikikube()
        .args([
            "render",
            example().to_str().unwrap(),
            "--env",
            "eqiad",
            "--rbac",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for command in [
        "diff", "deploy", "rollback", "history", "script", "backup", "restore", "import",
    ] {
        assert!(
            text.contains(&format!("# wikikube {command}: in namespace mediawiki\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("name: wikikube-{command}\n")),
            "{text}"
        );
    }
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("kind: "))
        .collect();
    assert_eq!(kinds.iter().filter(|kind| **kind == "Role").count(), 8);
    // diff, deploy and rollback read the Namespace; one more creates it.
    assert_eq!(
        kinds.iter().filter(|kind| **kind == "ClusterRole").count(),
        4
    );
    assert!(
        text.contains("name: wikikube-namespace-mediawiki"),
        "{text}"
    );
    assert!(
        text.contains("pods/proxy") && text.contains("leases"),
        "{text}"
    );
}

#[test]
fn render_json_is_a_list() {
    let output = wikikube()
        .args([
            "render",
            example().to_str().unwrap(),
            "--env",
            "codfw",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(list["kind"], "List");
    assert!(list["items"].as_array().unwrap().len() > 10);
}

#[test]
fn render_out_writes_one_file_per_object_and_replaces_the_directory() {
    let scratch = tempfile::tempdir().unwrap();
    let out = scratch.path().join("manifests");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("stale.yaml"), "old").unwrap();
    wikikube()
        .args([
            "render",
            example().to_str().unwrap(),
            "--env",
            "local",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.contains(&"stale.yaml".to_string()));
    assert!(names.contains(&"000-namespace-mediawiki.yaml".to_string()));
}

#[test]
fn a_site_mistake_names_the_file_line_and_key_and_exits_1() {
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(&example(), scratch.path());
    let site = scratch.path().join("site.toml");
    let text = std::fs::read_to_string(&site).unwrap();
    std::fs::write(
        &site,
        text.replacen("language = \"de\"", "langauge = \"de\"", 1),
    )
    .unwrap();
    let output = wikikube()
        .args(["render", scratch.path().to_str().unwrap(), "--env", "local"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    // Strict UTF-8: the message is read whole, not repaired.
    let message = String::from_utf8(output.stderr).unwrap();
    assert!(message.starts_with("error: "), "{message}");
    assert!(message.contains("site.toml:"), "{message}");
    assert!(message.contains("`wikis.dewiki.langauge`"), "{message}");
    assert!(message.contains("did you mean `language`?"), "{message}");
}

#[test]
fn a_lint_failure_exits_3_and_allow_accepts_it() {
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(&example(), scratch.path());
    let site = scratch.path().join("site.toml");
    let text = std::fs::read_to_string(&site).unwrap();
    let long = "mw-a-deployment-name-far-too-long-for-pod-names";
    std::fs::write(&site, format!("{text}\n[deployments.{long}]\n")).unwrap();
    let output = wikikube()
        .args(["render", scratch.path().to_str().unwrap(), "--env", "local"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stderr).contains("[names] Deployment/"));
    let output = wikikube()
        .args(["render", scratch.path().to_str().unwrap(), "--env", "local"])
        .args(["--allow", "names"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("warning: allowed by --allow names"));
}

#[test]
fn explain_shows_where_a_value_came_from() {
    let output = wikikube()
        .args(["explain", "php.workers", example().to_str().unwrap()])
        .args(["--env", "eqiad", "--deployment", "mw-api-ext"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("php.workers = 12\n"), "{text}");
    assert!(text.contains("in deployment mw-api-ext, release main of environment eqiad"));
    assert!(text.contains("site.toml:"), "{text}");
    assert!(text.contains("8 from <built-in>/defaults.toml"), "{text}");

    let output = wikikube()
        .args([
            "explain",
            "secrets.admin_password",
            example().to_str().unwrap(),
        ])
        .args(["--env", "local", "--json"])
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["value"], "<redacted>");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("example-local-admin"));
}

#[test]
fn help_documents_exit_codes() {
    let output = wikikube().arg("--help").output().unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("Exit codes:"));
    assert!(text.contains("render"));
    assert!(text.contains("explain"));
}

/// A release is refused before anything is built when it cannot go anywhere: the local
/// environment has no clusters, and an app image outside REGISTRY/wikikube/app names no registry.
#[test]
fn a_release_that_cannot_reach_a_cluster_or_registry_is_refused_before_building() {
    let cache = tempfile::tempdir().unwrap();
    let text = refused(
        wikikube()
            .args(["release", "--env", "local", "--cache"])
            .arg(cache.path())
            .arg(example()),
    );
    assert!(
        text.contains("environment local names no clusters"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(cache.path()).unwrap().count(),
        0,
        "nothing was built"
    );

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example(), dir.path());
    let production = dir.path().join("environments/production.toml");
    let settings = std::fs::read_to_string(&production).unwrap();
    std::fs::write(
        &production,
        settings.replace(
            "registry.farm.test/wikikube/app:2026-11-25",
            "docker.io/library/mediawiki:1.39",
        ),
    )
    .unwrap();
    let text = refused(
        wikikube()
            .args(["release", "--env", "eqiad", "--cache"])
            .arg(cache.path())
            .arg(dir.path()),
    );
    assert!(
        text.contains("docker.io/library/mediawiki:1.39") && text.contains("--registry"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
}

/// An installed `wikikube` knows nothing of the source tree it was built in: a copy of the
/// binary, run in a site directory elsewhere, finds the site there and its podman settings in
/// itself.
#[test]
fn an_installed_binary_works_outside_the_source_tree() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let installed = bin.join("wikikube");
    std::fs::copy(assert_cmd::cargo::cargo_bin("wikikube"), &installed).unwrap();
    let site = dir.path().join("my-farm");
    std::fs::create_dir_all(&site).unwrap();
    copy_dir(&example(), &site);
    let output = std::process::Command::new(&installed)
        .args(["explain", "php.workers", "--env", "eqiad"])
        .current_dir(&site)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("php.workers = 8"));
    // The podman settings are compiled in, and no site directory of the build machine is.
    let binary = std::fs::read(&installed).unwrap();
    let containers_conf =
        std::fs::read(example().join("../../crates/image/containers.conf")).unwrap();
    assert!(binary
        .windows(containers_conf.len())
        .any(|window| window == containers_conf.as_slice()));
    let source = env!("CARGO_MANIFEST_DIR").as_bytes();
    let examples = [source, b"/../../examples/farm"].concat();
    assert!(!binary
        .windows(examples.len())
        .any(|window| window == examples.as_slice()));
}

#[test]
fn train_status_shows_groups_and_promote_refuses_a_version_no_image_carries() {
    let output = wikikube()
        .args(["train", "status", example().to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["groups"][0]["name"], "group0");
    assert_eq!(status["groups"][1]["wikis"][1], "enwiki");
    let text = wikikube()
        .args(["train", "status", example().to_str().unwrap()])
        .output()
        .unwrap()
        .stdout;
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("group1     1.39.17-wmf.1: commonswiki, enwiki"),
        "{text}"
    );

    // No image was built with this cache: refused, the site file untouched, the command named.
    let scratch = tempfile::tempdir().unwrap();
    copy_dir(&example(), scratch.path());
    let before = std::fs::read_to_string(scratch.path().join("site.toml")).unwrap();
    let stderr = refused(
        wikikube()
            .args(["train", "promote", "group1", "1.39.17-wmf.2"])
            .arg(scratch.path())
            .args(["--env", "local", "--cache"])
            .arg(scratch.path().join("cache")),
    );
    assert!(stderr.contains("+version = \"1.39.17-wmf.2\""), "{stderr}");
    assert!(stderr.contains("wikikube build"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("site.toml")).unwrap(),
        before
    );
}

#[test]
fn backup_restore_and_import_say_what_they_need_before_touching_anything() {
    let help = wikikube().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for command in ["backup", "restore", "import"] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    // A cluster's backups go onto its backups volume, not to a directory here.
    let scratch = tempfile::tempdir().unwrap();
    let to = scratch.path().join("backup");
    let stderr = refused(
        wikikube()
            .args([
                "backup",
                example().to_str().unwrap(),
                "--env",
                "eqiad",
                "--to",
            ])
            .arg(&to),
    );
    assert!(
        stderr.contains("farm-backups") && stderr.contains("leave out --to"),
        "{stderr}"
    );
    assert!(!to.exists(), "a refused backup made {}", to.display());
    // A local backup needs its directory.
    let stderr = refused(wikikube().args(["backup", example().to_str().unwrap()]));
    assert!(stderr.contains("--to DIR"), "{stderr}");
    // A cluster restores from a backup on its volume, by name: a directory here is refused,
    // and so is a wiki the farm does not have, before any cluster is reached.
    let stderr = refused(
        wikikube()
            .args([
                "restore",
                example().to_str().unwrap(),
                "--env",
                "eqiad",
                "--from",
            ])
            .arg(scratch.path()),
    );
    assert!(
        stderr.contains("--from is the name of a backup on the volume farm-backups"),
        "{stderr}"
    );
    let stderr = refused(
        wikikube()
            .args(["restore", example().to_str().unwrap(), "--env", "eqiad"])
            .args(["--from", "mwbackup-all-run1", "--wiki", "xxwiki"]),
    );
    assert!(stderr.contains("the farm has no wiki xxwiki"), "{stderr}");
    // A cluster's import downloads the dump itself: a file here is refused with what it
    // takes, and so is an unknown wiki, before any cluster is reached.
    let dump = scratch.path().join("dewiki.sql");
    std::fs::write(&dump, "SELECT 1;\n").unwrap();
    // `wikikube import WIKI <example> TARGET...`, the rest of its arguments to come.
    let import = |wiki: &str, target: [&str; 2]| {
        let mut command = wikikube();
        command
            .args(["import", wiki, example().to_str().unwrap()])
            .args(target);
        command
    };
    let stderr = refused(import("dewiki", ["--env", "eqiad"]).arg("--sql").arg(&dump));
    assert!(
        stderr.contains("--sql is an http(s) URL that the cluster can reach"),
        "{stderr}"
    );
    let stderr = refused(
        import("xxwiki", ["--env", "eqiad"]).args(["--sql", "https://dumps.example.org/xx.sql.gz"]),
    );
    assert!(stderr.contains("the farm has no wiki xxwiki"), "{stderr}");
    let stderr = refused(import("dewiki", ["--cluster", "x"]).arg("--sql").arg(&dump));
    assert!(stderr.contains("for Kubernetes environments"), "{stderr}");
    // A restore from a directory that is no backup names the missing manifest.
    let stderr = refused(
        wikikube()
            .args(["restore", example().to_str().unwrap(), "--from"])
            .arg(scratch.path()),
    );
    assert!(stderr.contains("manifest.json"), "{stderr}");
}

#[test]
fn backup_schedule_prints_the_cronjob_for_a_schedule_and_refuses_a_bad_one() {
    let output = wikikube()
        .args(["backup", example().to_str().unwrap(), "--env", "eqiad"])
        .args(["--schedule", "@daily"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let yaml = String::from_utf8_lossy(&output.stdout);
    for line in [
        "apiVersion: batch/v1",
        "kind: CronJob",
        "  name: farm-backup",
        "  schedule: '@daily'",
        "  concurrencyPolicy: Forbid",
    ] {
        assert!(
            yaml.lines().any(|l| l == line),
            "{line} missing from:\n{yaml}"
        );
    }

    let stderr = refused(
        wikikube()
            .args(["backup", example().to_str().unwrap(), "--env", "eqiad"])
            .args(["--schedule", "3 17 * *"]),
    );
    assert!(stderr.contains("4 fields, not 5"), "{stderr}");

    // One machine has no CronJobs: cron or a timer runs `wikikube backup --to`.
    let stderr = refused(wikikube().args([
        "backup",
        example().to_str().unwrap(),
        "--schedule",
        "@daily",
    ]));
    assert!(stderr.contains("systemd timer"), "{stderr}");
}
