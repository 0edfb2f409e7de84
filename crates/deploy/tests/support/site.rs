//! The example farm, rendered and planned, and ways to change it as a new version would.

use std::path::PathBuf;

use wikikube_deploy::Step;

/// The repository's example farm.
pub fn farm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/farm")
}

/// The example farm's steps for `env`.
pub fn farm_steps(env: &str) -> (String, Vec<Step>) {
    let site =
        wikikube_model::load(&farm_dir(), env, &wikikube_model::LoadOptions::default()).unwrap();
    let rendered =
        wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap();
    (
        site.spec.site.namespace.clone(),
        wikikube_deploy::plan(&rendered),
    )
}

/// The example farm rendered for `env`.
pub fn farm_rendered(env: &str) -> wikikube_render::Rendered {
    let site =
        wikikube_model::load(&farm_dir(), env, &wikikube_model::LoadOptions::default()).unwrap();
    wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap()
}

/// The example farm's steps for `env` with its private values' `upgrade_key` set to `value`:
/// what config management writing a new secret looks like to a deploy.
pub fn farm_steps_with_upgrade_key(env: &str, value: &str) -> (String, Vec<Step>) {
    let (site, rendered) = farm_rendered_with_upgrade_key(env, value);
    (
        site.spec.site.namespace.clone(),
        wikikube_deploy::plan(&rendered),
    )
}

/// The example farm for `env`, its `upgrade_key` set to `value`, and its render.
pub fn farm_rendered_with_upgrade_key(
    env: &str,
    value: &str,
) -> (wikikube_model::ResolvedSite, wikikube_render::Rendered) {
    let private = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(farm_dir().join("private")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .lines()
            .map(|line| {
                if line.starts_with("upgrade_key") {
                    format!("upgrade_key = {value:?}")
                } else {
                    line.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(private.path().join(path.file_name().unwrap()), text).unwrap();
    }
    let options = wikikube_model::LoadOptions {
        private_dir: Some(private.path().to_path_buf()),
    };
    let site = wikikube_model::load(&farm_dir(), env, &options).unwrap();
    let rendered =
        wikikube_render::render(&site, &wikikube_render::RenderOptions::default()).unwrap();
    (site, rendered)
}

/// The versioned name of the private values' Secret in `steps`.
pub fn private_secret(steps: &[Step]) -> String {
    steps
        .iter()
        .find(|step| step.object.kind == wikikube_render::ObjectKind::Secret)
        .map(|step| step.object.name.clone())
        .expect("the steps have the private values' Secret")
}

/// The same steps with the app image of every Deployment of `phase` replaced.
pub fn with_image(steps: &[Step], phase: wikikube_deploy::Phase, image: &str) -> Vec<Step> {
    steps
        .iter()
        .cloned()
        .map(|mut step| {
            if step.phase == phase && step.object.kind == wikikube_render::ObjectKind::Deployment {
                for container in step.body["spec"]["template"]["spec"]["containers"]
                    .as_array_mut()
                    .unwrap()
                {
                    if container["name"] == "app" {
                        container["image"] = serde_json::json!(image);
                    }
                }
            }
            step
        })
        .collect()
}

/// Options for a simulation: fast polls, a short soak.
pub fn fast_options() -> wikikube_deploy::Options {
    wikikube_deploy::Options {
        user: "tester".into(),
        soak: std::time::Duration::from_millis(30),
        smoke: vec![wikikube_deploy::SmokeCheck {
            name: "main page".into(),
            path: "/wiki/Main_Page".into(),
            host: Some("en.farm.test".into()),
            expect_status: 200,
            contains: Some("Main Page".into()),
        }],
        poll: std::time::Duration::from_millis(2),
        extra_wait: std::time::Duration::from_secs(5),
        parallel: 2,
        resume: false,
        lock_duration: std::time::Duration::from_secs(60),
        schema: None,
        config_revisions: wikikube_deploy::history::DEFAULT_CONFIG_REVISIONS,
        deletion_timeout: std::time::Duration::from_secs(5),
        take_over_fields: false,
    }
}

/// Job watching that polls every 2 ms: the simulation answers at once.
pub fn fast_jobs(follow: bool) -> wikikube_deploy::jobs::JobOptions {
    wikikube_deploy::jobs::JobOptions {
        poll: std::time::Duration::from_millis(2),
        follow,
        start_timeout: std::time::Duration::from_secs(5),
    }
}

/// Schema Jobs from `template`, run by `tester`, watched fast.
pub fn fast_schema(
    template: wikikube_render::maintenance::Maintenance,
) -> wikikube_deploy::schema::Schema {
    wikikube_deploy::schema::Schema {
        template,
        settings: wikikube_render::maintenance::JobSettings {
            user: "tester".into(),
            deadline_seconds: Some(600),
            ..Default::default()
        },
        jobs: fast_jobs(false),
    }
}
