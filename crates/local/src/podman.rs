//! Running podman: every call goes through here, with the project's containers.conf, and a
//! failure becomes an error that says what was attempted and what podman answered.

use std::process::{Command, Output};

use crate::Error;

/// A podman command with this machine's settings (see `wikikube_image::podman::command`).
pub fn command() -> Command {
    wikikube_image::podman::command()
}

/// Runs podman with `args`; returns its stdout.
pub fn run(args: &[&str]) -> Result<String, Error> {
    let output = output(args)?;
    if !output.status.success() {
        return Err(Error::Podman {
            command: format!("podman {}", args.join(" ")),
            output: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs podman with `args` and returns whatever happened.
pub fn output(args: &[&str]) -> Result<Output, Error> {
    command().args(args).output().map_err(|error| {
        if error.kind() == std::io::ErrorKind::NotFound {
            Error::PodmanMissing
        } else {
            Error::Io {
                path: "podman".into(),
                source: error,
            }
        }
    })
}

/// Whether podman answers `true` to an `exists` query (`podman pod exists NAME`).
pub fn exists(args: &[&str]) -> Result<bool, Error> {
    Ok(output(args)?.status.success())
}

/// The network `podman kube play` puts pods on.
pub const KUBE_NETWORK: &str = "podman-default-kube-network";

/// The gateway of the network the pods run on: the host as containers see it
/// (`host.containers.internal`). The network is created if it does not exist yet, as
/// `podman kube play` would.
pub fn gateway() -> Result<String, Error> {
    if !exists(&["network", "exists", KUBE_NETWORK])? {
        run(&["network", "create", KUBE_NETWORK])?;
    }
    let text = run(&[
        "network",
        "inspect",
        KUBE_NETWORK,
        "--format",
        "{{range .Subnets}}{{.Gateway}} {{end}}",
    ])?;
    text.split_whitespace()
        .next()
        .map(str::to_string)
        .ok_or_else(|| Error::Podman {
            command: format!("podman network inspect {KUBE_NETWORK}"),
            output: "the network has no gateway".into(),
        })
}
