//! The maintenance Job template: what a script's Job runs, mounts and carries.

mod common;

use wikikube_render::maintenance::{JobSettings, ScriptRequest};

fn request() -> ScriptRequest {
    ScriptRequest {
        wiki: "enwiki".into(),
        script: "showSiteStats.php".into(),
        arguments: vec!["--verbose".into()],
    }
}

#[test]
fn a_script_job_is_the_main_release_app_container_running_the_local_command_line() {
    let site = common::load("eqiad");
    let rendered =
        wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap();
    let template = rendered
        .maintenance
        .as_ref()
        .expect("a Kubernetes environment");
    let settings = JobSettings {
        user: "root@host".into(),
        deadline_seconds: None,
        keep_seconds: 60,
    };
    let job = template.script_job(&request(), &settings, "run1");
    assert_eq!(job.metadata.name.as_deref(), Some("mwscript-enwiki-run1"));
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, None);
    assert_eq!(spec.ttl_seconds_after_finished, Some(60));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));

    // Only the app container runs the script, with the same command as on one machine, the
    // main release's image and environment.
    let main = rendered
        .releases
        .iter()
        .find(|r| r.deployment == template.deployment && r.release.to_string() == "main")
        .unwrap()
        .deployment_object()
        .unwrap();
    let main_app = main
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .find(|c| c.name == "app")
        .unwrap();
    let names: Vec<&str> = pod.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["app"]);
    let app = &pod.containers[0];
    assert_eq!(app.command.as_ref(), Some(&request().command_line()));
    assert_eq!(app.image, main_app.image);
    assert_eq!(app.env, main_app.env);
    assert!(
        app.liveness_probe.is_none(),
        "php-fpm's socket check would kill the script"
    );

    // mcrouter beside it as a native sidecar, so that cache purges reach memcached and the Job
    // still ends with the script.
    let sidecars = pod.init_containers.as_ref().unwrap();
    assert_eq!(sidecars[0].name, "mcrouter");
    assert_eq!(sidecars[0].restart_policy.as_deref(), Some("Always"));

    // The main release's own versions of its PHP and mcrouter files and of the private values
    // (a deploy creates every version first, before any Job runs), all versioned objects.
    let volumes = |spec: &k8s_openapi::api::core::v1::PodSpec| -> Vec<(String, String)> {
        spec.volumes
            .iter()
            .flatten()
            .filter_map(|v| {
                let source = v
                    .config_map
                    .as_ref()
                    .map(|c| c.name.clone())
                    .or_else(|| v.secret.as_ref().and_then(|s| s.secret_name.clone()))?;
                Some((v.name.clone(), source))
            })
            .collect()
    };
    let mounted = volumes(pod);
    let names: Vec<&str> = mounted.iter().map(|(volume, _)| volume.as_str()).collect();
    assert_eq!(names, ["php-config", "secrets", "mcrouter-config"]);
    let main_pod = main.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let main_volumes = volumes(main_pod);
    let objects = rendered.objects();
    for mount in &mounted {
        assert!(main_volumes.contains(mount), "{mount:?} is not main's");
        assert!(
            objects
                .iter()
                .any(|o| o.name() == mount.1.as_str() && o.is_versioned()),
            "{mount:?} is not a versioned object"
        );
    }

    // Labels name the wiki, the script and the person, and none of the release's selectors:
    // a Service must never send requests to a Job's pod.
    let labels = job.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["wikikube.org/wiki"], "enwiki");
    assert_eq!(labels["wikikube.org/script"], "showSiteStats.php");
    assert_eq!(labels["wikikube.org/user"], "root_host");
    assert_eq!(labels["wikikube.org/maintenance"], "script");
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for selector in [
        wikikube_render::labels::DEPLOYMENT,
        wikikube_render::labels::RELEASE,
        wikikube_render::labels::ROUTED_VIA,
    ] {
        assert!(!pod_labels.contains_key(selector), "{selector}");
    }
    assert!(wikikube_render::lint::lint_job(&job).is_empty());
}

#[test]
fn the_job_lint_can_fail_and_a_local_environment_has_no_job_template() {
    let site = common::load("eqiad");
    let rendered =
        wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap();
    let template = rendered.maintenance.unwrap();
    let mut job = template.script_job(&request(), &JobSettings::default(), "x");
    let pod = job.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    pod.containers[0].security_context = None;
    pod.security_context = None;
    pod.init_containers.as_mut().unwrap()[0].readiness_probe = None;
    pod.init_containers.as_mut().unwrap()[0].liveness_probe = None;
    let rules: Vec<String> = wikikube_render::lint::lint_job(&job)
        .iter()
        .map(|finding| finding.rule.to_string())
        .collect();
    assert!(rules.contains(&"non-root".to_string()), "{rules:?}");
    assert!(rules.contains(&"probes".to_string()), "{rules:?}");

    let local = common::load("local");
    let rendered =
        wikikube_render::render(&local, &wikikube_render::RenderOptions::default()).unwrap();
    assert!(rendered.maintenance.is_none());
}

#[test]
fn the_installer_job_runs_install_php_of_the_wikis_version_against_its_server() {
    let site = common::load("eqiad");
    let rendered =
        wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap();
    let template = rendered.maintenance.unwrap();
    let job = template
        .install_job("dewiki", &JobSettings::default(), "7")
        .unwrap();
    let command = job.spec.unwrap().template.spec.unwrap().containers[0]
        .command
        .clone()
        .unwrap();
    let wiki = &site.spec.wikis["dewiki"];
    let database = site.database().unwrap();
    assert!(command.contains(&format!(
        "/srv/mediawiki/php-{}/maintenance/install.php",
        wiki.version
    )));
    assert!(command.contains(&"--dbname=dewiki".to_string()));
    assert!(command.contains(&format!(
        "--dbserver={}",
        database.server_of(wiki.section.as_deref())
    )));
    assert!(command.contains(&"--lang=de".to_string()) || wiki.language != "de");
    assert!(template
        .install_job("nowiki", &JobSettings::default(), "7")
        .is_none());
}
