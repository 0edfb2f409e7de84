//! `wikikube script` on one machine: a MediaWiki maintenance script for one wiki of the farm,
//! run with the farm's multiversion `mwscript.php` in the app container of the first
//! deployment's main release, the image and configuration that serve the wiki.
//!
//! A cluster runs the same command line as a Kubernetes Job (`deploy`); this module only knows
//! the local farm and must not start pods of its own.

use std::process::{Command, ExitStatus, Output, Stdio};

use wikikube_model::{ReleaseName, ResolvedSite};

use crate::{podman, Error};

/// One maintenance script run; its command line is shared with the cluster's Jobs.
pub use wikikube_render::maintenance::ScriptRequest;

/// Checks that the site has the wiki, naming the wikis it has when not.
pub fn check_wiki(site: &ResolvedSite, wiki: &str) -> Result<(), Error> {
    if site.spec.wikis.contains_key(wiki) {
        return Ok(());
    }
    Err(Error::UnknownWiki {
        wiki: wiki.to_string(),
        known: site.spec.wikis.keys().cloned().collect(),
    })
}

/// The app container scripts run in: the first deployment's main release.
fn container(site: &ResolvedSite) -> Result<String, Error> {
    let deployment = site
        .deployments
        .iter()
        .find(|deployment| {
            deployment
                .release(ReleaseName::Main)
                .is_some_and(|release| release.values.enabled)
        })
        .ok_or_else(|| Error::Inconsistent("no deployment has an enabled main release".into()))?;
    let pod = wikikube_render::naming::local_release_pod(site, &deployment.name, ReleaseName::Main);
    let name = format!("{pod}-app");
    let running = podman::output(&[
        "container",
        "inspect",
        "--format",
        "{{.State.Running}}",
        &name,
    ])?;
    if String::from_utf8_lossy(&running.stdout).trim() != "true" {
        return Err(Error::NotRunning(pod));
    }
    Ok(name)
}

fn command(site: &ResolvedSite, request: &ScriptRequest) -> Result<Command, Error> {
    check_wiki(site, &request.wiki)?;
    let container = container(site)?;
    let mut command = podman::command();
    command.args(["exec", "--interactive", &container]);
    command.args(request.command_line());
    Ok(command)
}

/// Runs the script with this process's standard input and output, as a person at a terminal
/// expects; returns its exit status.
pub fn run(site: &ResolvedSite, request: &ScriptRequest) -> Result<ExitStatus, Error> {
    command(site, request)?
        .stdin(Stdio::inherit())
        .status()
        .map_err(spawn_error)
}

/// Runs the script and collects what it printed.
pub fn output(site: &ResolvedSite, request: &ScriptRequest) -> Result<Output, Error> {
    command(site, request)?
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_error)
}

/// Runs the script with `input` as its standard input and collects what it printed.
pub fn output_with_input(
    site: &ResolvedSite,
    request: &ScriptRequest,
    input: std::fs::File,
) -> Result<Output, Error> {
    command(site, request)?
        .stdin(Stdio::from(input))
        .output()
        .map_err(spawn_error)
}

fn spawn_error(error: std::io::Error) -> Error {
    match error.kind() {
        std::io::ErrorKind::NotFound => Error::PodmanMissing,
        _ => Error::Io {
            path: "podman".into(),
            source: error,
        },
    }
}

/// Runs `update.php --quick` for `wiki` with the code of MediaWiki `version` rather than the
/// wiki's own (the promotion of a group runs the schema changes of the version it moves to
/// before any request is served by it), and collects what it printed. `Ok(None)` when the farm
/// is not running: the next `up` installs or serves the wikis as they are.
pub fn update_on_version(
    site: &ResolvedSite,
    wiki: &str,
    version: &str,
) -> Result<Option<Output>, Error> {
    check_wiki(site, wiki)?;
    let container = match container(site) {
        Ok(container) => container,
        Err(Error::NotRunning(_)) => return Ok(None),
        Err(error) => return Err(error),
    };
    let variable = wikikube_render::config::mediawiki::variables::SCRIPT_VERSION;
    let mut command = podman::command();
    command
        .args([
            "exec",
            "--env",
            &format!("{variable}={version}"),
            &container,
        ])
        .args(ScriptRequest::update(wiki).command_line());
    command
        .stdin(Stdio::null())
        .output()
        .map(Some)
        .map_err(spawn_error)
}
