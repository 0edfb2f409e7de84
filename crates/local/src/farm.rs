//! `up`, `down`, `status` and `logs`: the local farm's life cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use wikikube_model::{EnvironmentKind, ResolvedSite};
use wikikube_render::Rendered;

use crate::pods::{local_pods, LocalPod, PodRole};
use crate::state::{self, StateDir};
use crate::{certificate, install, podman, Error};
use wikikube_render::ComponentKind;

/// How `up` runs.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The state directory.
    pub state: StateDir,
    /// How long to wait for every pod to become ready.
    pub timeout: Duration,
    /// Print progress lines to stderr.
    pub progress: bool,
}

/// What `up` did, and where the wikis are.
#[derive(Clone, Debug, Serialize)]
pub struct UpReport {
    /// Pods (re)started because they were new or changed.
    pub started: Vec<String>,
    /// Pods left running because nothing about them changed.
    pub unchanged: Vec<String>,
    /// Pods removed because the site no longer has them.
    pub removed: Vec<String>,
    /// Wikis whose database was installed now.
    pub installed: Vec<String>,
    /// Every wiki and its URLs.
    pub wikis: Vec<WikiUrl>,
    /// The debug deployments' URLs.
    pub debug: Vec<String>,
    /// The edge in front of the farm, when it runs.
    pub edge: Option<String>,
    /// Wall time of the whole `up`.
    pub seconds: f64,
}

/// A wiki's address on this machine.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct WikiUrl {
    /// The database name.
    pub dbname: String,
    /// HTTPS through the tls container.
    pub url: String,
    /// Plain HTTP straight to httpd, when published.
    pub http_url: Option<String>,
}

fn say(options: &UpOptions, message: impl AsRef<str>) {
    if options.progress {
        eprintln!("{}", message.as_ref());
    }
}

/// Starts or converges the local farm. Everything that can fail before a pod is touched is
/// checked first (environment kind, podman, images, ports), so a mistake leaves a running farm
/// as it was.
pub fn up(
    site: &ResolvedSite,
    rendered: &Rendered,
    options: &UpOptions,
) -> Result<UpReport, Error> {
    let started_at = Instant::now();
    if site.environment.kind != EnvironmentKind::Local {
        return Err(Error::NotLocal(site.environment_name.clone()));
    }
    podman::run(&["--version"])?;
    let gateway = podman::gateway()?;
    let state = &options.state;
    let pods = local_pods(site, rendered, state, &gateway)?;

    let mut image_ids = BTreeMap::new();
    for image in pods.iter().flat_map(LocalPod::images) {
        if image_ids.contains_key(&image) {
            continue;
        }
        let output = podman::output(&["image", "inspect", "--format", "{{.Id}}", &image])?;
        if !output.status.success() {
            return Err(Error::MissingImage(image));
        }
        let id = String::from_utf8_lossy(&output.stdout).trim().to_string();
        image_ids.insert(image, id);
    }

    let mut plans = Vec::new();
    for pod in &pods {
        let yaml = pod.yaml();
        let mut hasher = Sha256::new();
        hasher.update(yaml.as_bytes());
        for image in pod.images() {
            hasher.update(image_ids[&image].as_bytes());
        }
        let hash: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let hash_file = state.pods().join(format!("{}.hash", pod.name));
        let previous = std::fs::read_to_string(&hash_file).ok();
        let running = pod_state(&pod.name)?.is_some_and(|state| state == "Running");
        let changed = !running || previous.as_deref() != Some(hash.as_str());
        plans.push((pod, yaml, hash, changed, running));
    }
    check_ports(&plans, &gateway, &held_ports(state)?)?;

    // From here on the machine changes.
    state::create_dir(state.root(), 0o755)?;
    state::create_dir(&state.pods(), 0o700)?;
    state::create_dir(&state.config(), 0o755)?;
    state::create_dir(&state.secrets(), 0o750)?;
    state::create_dir(&state.tls(), 0o750)?;
    let names = wikikube_render::config::tls::certificate_names(&site.spec);
    certificate::ensure(&state.tls(), &names)?;

    let mut report = UpReport {
        started: Vec::new(),
        unchanged: Vec::new(),
        removed: Vec::new(),
        installed: Vec::new(),
        wikis: Vec::new(),
        debug: Vec::new(),
        edge: None,
        seconds: 0.0,
    };
    for (pod, yaml, hash, changed, _) in &plans {
        for (dir, files) in &pod.config_dirs {
            let files = files.iter().map(|(name, text)| (name, text.as_bytes()));
            write_once(dir, files, (0o755, 0o444))?;
        }
        for (dir, values) in &pod.secret_dirs {
            let values = values.iter().map(|(key, value)| (key, value.as_slice()));
            write_once(dir, values, (0o750, 0o440))?;
        }
        if !changed {
            report.unchanged.push(pod.name.clone());
            continue;
        }
        say(options, format!("starting {}", pod.name));
        let manifest = state.pods().join(format!("{}.yaml", pod.name));
        state::write_file(&manifest, yaml.as_bytes(), 0o600)?;
        let manifest_text = manifest.display().to_string();
        podman::run(&["kube", "play", "--replace", &manifest_text])?;
        state::write_file(
            &state.pods().join(format!("{}.hash", pod.name)),
            hash.as_bytes(),
            0o600,
        )?;
        report.started.push(pod.name.clone());
    }

    for (pod, ..) in &plans {
        wait_ready(pod, options)?;
    }

    let installer = pods
        .iter()
        .find(|pod| pod.release().is_some())
        .map(|pod| pod.container_name("app"));
    if let Some(container) = installer {
        say(options, "installing wikis that have no database yet");
        report.installed = install::install_missing(site, &container)?;
    }

    let wanted: BTreeSet<&str> = pods.iter().map(|pod| pod.name.as_str()).collect();
    for name in known_pods(state) {
        if !wanted.contains(name.as_str()) {
            say(
                options,
                format!("removing {name}, which the site no longer has"),
            );
            podman::run(&["pod", "rm", "--force", "--time", "10", &name])?;
            let _ = std::fs::remove_file(state.pods().join(format!("{name}.yaml")));
            let _ = std::fs::remove_file(state.pods().join(format!("{name}.hash")));
            report.removed.push(name);
        }
    }
    let used: BTreeSet<&PathBuf> = pods
        .iter()
        .flat_map(|pod| pod.config_dirs.keys().chain(pod.secret_dirs.keys()))
        .collect();
    for parent in [state.config(), state.secrets()] {
        for entry in std::fs::read_dir(&parent).map_err(Error::io(&parent))? {
            let path = entry.map_err(Error::io(&parent))?.path();
            if !used.contains(&path) {
                // Directories of versions no pod uses any more, and the loose files of the
                // private values from before they were versioned.
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
    }

    report.wikis = wiki_urls(site, &pods);
    report.debug = pods
        .iter()
        .filter(|pod| pod.is_debug())
        .filter_map(|pod| {
            let domain = site.spec.wikis.values().next()?.domains.first()?;
            Some(format!(
                "{} (deployment {}): https://{domain}:{}/",
                pod.name,
                pod.release()?.0,
                pod.https_port()?
            ))
        })
        .collect();
    report.edge = pods
        .iter()
        .filter(|pod| pod.is(ComponentKind::Edge))
        .find_map(LocalPod::https_port)
        .map(|port| format!("https://localhost:{port}/"));
    report.seconds = started_at.elapsed().as_secs_f64();
    Ok(report)
}

/// Host ports that running pods of this farm hold now, from the manifests they were played with.
/// Writes a directory of files once: a versioned directory's content never changes, and a pod
/// may be reading it. Written beside it and renamed, so a failure leaves no half directory.
/// `modes`: the directory's and the files'.
fn write_once<'a>(
    dir: &Path,
    files: impl Iterator<Item = (&'a String, &'a [u8])>,
    (dir_mode, file_mode): (u32, u32),
) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    let partial = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    state::create_dir(&partial, dir_mode)?;
    for (name, contents) in files {
        state::write_file(&partial.join(name), contents, file_mode)?;
    }
    std::fs::rename(&partial, dir).map_err(Error::io(dir))
}

fn held_ports(state: &StateDir) -> Result<BTreeSet<u16>, Error> {
    let mut held = BTreeSet::new();
    for name in known_pods(state) {
        if pod_state(&name)?.as_deref() != Some("Running") {
            continue;
        }
        let manifest = state.pods().join(format!("{name}.yaml"));
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let Ok(pod) = serde_yaml_ng::from_str::<k8s_openapi::api::core::v1::Pod>(&text) else {
            continue;
        };
        let ports = pod
            .spec
            .iter()
            .flat_map(|spec| spec.containers.iter())
            .flat_map(|container| container.ports.iter().flatten())
            .filter_map(|port| port.host_port)
            .filter_map(|port| u16::try_from(port).ok());
        held.extend(ports);
    }
    Ok(held)
}

fn check_ports(
    plans: &[(&LocalPod, String, String, bool, bool)],
    gateway: &str,
    held: &BTreeSet<u16>,
) -> Result<(), Error> {
    let mut claimed: BTreeMap<u16, &str> = BTreeMap::new();
    for (pod, _, _, changed, _) in plans {
        for (port_name, &port) in &pod.host_ports {
            // The site key a user changes to move the port.
            let (field, address) = match (&pod.role, port_name.as_str()) {
                (PodRole::Component(ComponentKind::Memcached), _) => {
                    ("memcached.pools or memcached.gutter (its port)", gateway)
                }
                (PodRole::Component(ComponentKind::Mariadb), _) => ("database.port", gateway),
                (PodRole::Component(ComponentKind::Swift), _) => {
                    ("media.swift.auth_url (its port)", gateway)
                }
                (PodRole::Component(ComponentKind::Redis), _) => {
                    ("redis.pools (its port)", gateway)
                }
                (PodRole::Component(ComponentKind::Edge), _) => {
                    ("traffic.local_https_port", "0.0.0.0")
                }
                (_, "http") => ("local.http_port", "0.0.0.0"),
                _ => ("local.https_port", "0.0.0.0"),
            };
            if let Some(other) = claimed.insert(port, &pod.name) {
                return Err(Error::Inconsistent(format!(
                    "pods {other} and {} both want host port {port}",
                    pod.name
                )));
            }
            // A port one of our running pods holds is handed over when that pod is replaced.
            // The gateway's address exists only while a container runs on podman's network; an
            // address that is not there yet cannot have its port taken.
            let taken = matches!(
                TcpListener::bind((address, port)),
                Err(error) if error.kind() == std::io::ErrorKind::AddrInUse
            );
            if *changed && !held.contains(&port) && taken {
                return Err(Error::PortInUse {
                    port,
                    pod: pod.name.clone(),
                    field,
                });
            }
        }
    }
    Ok(())
}

fn wait_ready(pod: &LocalPod, options: &UpOptions) -> Result<(), Error> {
    let start = Instant::now();
    let mut detail = String::from("not started");
    while start.elapsed() < options.timeout {
        let containers = containers(&pod.name)?;
        let all_running = !containers.is_empty()
            && containers
                .iter()
                .all(|container| container.state == "running");
        detail = containers
            .iter()
            .filter(|container| container.state != "running")
            .map(|container| format!("{} is {}", container.name, container.state))
            .collect::<Vec<_>>()
            .join(", ");
        if all_running {
            match pod.http_port() {
                Some(port) => {
                    match http_get(port, "localhost", wikikube_render::config::paths::FPM_PING) {
                        Some((200, _)) => {
                            say(
                                options,
                                format!(
                                    "{} is ready ({:.1} s)",
                                    pod.name,
                                    start.elapsed().as_secs_f64()
                                ),
                            );
                            return Ok(());
                        }
                        Some((status, _)) => {
                            detail = format!("httpd answers {status} to the php-fpm ping")
                        }
                        None => detail = "httpd does not answer yet".into(),
                    }
                }
                // Swift's servers take a while to load; an upload before its proxy answers
                // would fail.
                None if pod.is(ComponentKind::Swift) => match swift_health(pod) {
                    Some((200, _)) => return Ok(()),
                    Some((status, _)) => detail = format!("Swift's proxy answers {status}"),
                    None => detail = "Swift's proxy does not answer yet".into(),
                },
                None => return Ok(()),
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(Error::NotReady {
        pod: pod.name.clone(),
        seconds: options.timeout.as_secs(),
        detail,
    })
}

/// The local Swift's health check, at the address and port its pod publishes.
fn swift_health(pod: &LocalPod) -> Option<(u16, String)> {
    let published = pod
        .manifest
        .spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .flat_map(|container| container.ports.iter().flatten())
        .find(|port| port.host_port.is_some())?;
    let address: std::net::IpAddr = published.host_ip.as_deref()?.parse().ok()?;
    let port = u16::try_from(published.host_port?).ok()?;
    http_get_at(
        (address, port).into(),
        "localhost",
        wikikube_render::machine::SWIFT_HEALTH,
    )
}

/// One HTTP/1.0 request to a port on this machine: the status and body, or nothing if the
/// connection failed. Written by hand because it is a probe, not a client: no redirects, no TLS.
pub fn http_get(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    http_get_at(([127, 0, 0, 1], port).into(), host, path)
}

/// [`http_get`] to any address.
fn http_get_at(address: std::net::SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let text = String::from_utf8_lossy(&response);
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    Some((status, body))
}

fn wiki_urls(site: &ResolvedSite, pods: &[LocalPod]) -> Vec<WikiUrl> {
    // The wikis' traffic goes to the first release that publishes HTTPS and is not a debug one.
    let cakes = || pods.iter().filter(|pod| pod.release().is_some());
    let serving = cakes()
        .filter(|pod| pod.https_port().is_some())
        .find(|pod| !pod.is_debug())
        .or_else(|| cakes().find(|pod| pod.https_port().is_some()));
    site.spec
        .wikis
        .iter()
        .map(|(dbname, wiki)| {
            let domain = &wiki.domains[0];
            WikiUrl {
                dbname: dbname.clone(),
                url: serving
                    .and_then(LocalPod::https_port)
                    // `/wiki/` rather than a title: MediaWiki redirects it to the main page in
                    // the wiki's own language (`Hauptseite` on a German wiki).
                    .map(|port| format!("https://{domain}:{port}/wiki/"))
                    .unwrap_or_default(),
                http_url: serving
                    .and_then(LocalPod::http_port)
                    .map(|port| format!("http://{domain}:{port}/wiki/")),
            }
        })
        .collect()
}

fn pod_state(name: &str) -> Result<Option<String>, Error> {
    let output = podman::output(&["pod", "inspect", "--format", "{{.State}}", name])?;
    Ok(output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string()))
}

fn known_pods(state: &StateDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.pods())
        .map(|entries| {
            entries
                .filter_map(|entry| {
                    let name = entry.ok()?.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".yaml").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A container of a local pod.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Its name in podman (`mw-web-main-app`).
    pub name: String,
    /// podman's state: running, exited, created...
    pub state: String,
    /// The image reference.
    pub image: String,
    /// The image's id (the digest of its config).
    pub image_id: String,
    /// How often it was restarted.
    pub restarts: u64,
}

/// A pod of the local farm.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PodStatus {
    /// The pod's name.
    pub name: String,
    /// podman's state of the pod, or `absent`.
    pub state: String,
    /// Its containers.
    pub containers: Vec<ContainerStatus>,
}

/// The local farm as podman sees it.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// Every pod `up` made.
    pub pods: Vec<PodStatus>,
    /// Every wiki and its URL.
    pub wikis: Vec<WikiUrl>,
}

fn containers(pod: &str) -> Result<Vec<ContainerStatus>, Error> {
    let text = podman::run(&[
        "ps",
        "--all",
        "--filter",
        &format!("pod={pod}"),
        "--format",
        "json",
    ])?;
    let listed: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap_or_default();
    let mut containers: Vec<ContainerStatus> = listed
        .iter()
        .filter(|container| container["IsInfra"] != serde_json::Value::Bool(true))
        .filter_map(|container| {
            let name = container["Names"]
                .as_array()?
                .first()?
                .as_str()?
                .to_string();
            Some(ContainerStatus {
                name,
                state: container["State"].as_str().unwrap_or("unknown").to_string(),
                image: container["Image"].as_str().unwrap_or_default().to_string(),
                image_id: container["ImageID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                restarts: 0,
            })
        })
        .collect();
    // `podman ps` does not report restarts; `inspect` does.
    for container in &mut containers {
        let count = podman::output(&["inspect", "--format", "{{.RestartCount}}", &container.name])?;
        container.restarts = String::from_utf8_lossy(&count.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
    }
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(containers)
}

/// The pods, containers and wiki URLs of the local farm.
pub fn status(site: &ResolvedSite, rendered: &Rendered, state: &StateDir) -> Result<Status, Error> {
    podman::run(&["--version"])?;
    let gateway = podman::gateway().unwrap_or_else(|_| "127.0.0.1".into());
    let pods = local_pods(site, rendered, state, &gateway)?;
    let mut names: BTreeSet<String> = known_pods(state).into_iter().collect();
    names.extend(pods.iter().map(|pod| pod.name.clone()));
    let mut statuses = Vec::new();
    for name in names {
        statuses.push(PodStatus {
            state: pod_state(&name)?.unwrap_or_else(|| "absent".into()),
            containers: containers(&name)?,
            name,
        });
    }
    Ok(Status {
        pods: statuses,
        wikis: wiki_urls(site, &pods),
    })
}

/// Stops every pod of the local farm. Data stays on its volume unless `purge`, which also
/// removes the volumes and the state directory.
pub fn down(site: &ResolvedSite, state: &StateDir, purge: bool) -> Result<Vec<String>, Error> {
    podman::run(&["--version"])?;
    let mut stopped = Vec::new();
    let pods = known_pods(state);
    for name in &pods {
        if pod_state(name)?.is_some() {
            podman::run(&["pod", "rm", "--force", "--time", "10", name])?;
            stopped.push(name.clone());
        }
        let _ = std::fs::remove_file(state.pods().join(format!("{name}.hash")));
    }
    if purge {
        let mut volumes = vec![
            wikikube_render::naming::wiki_data(site),
            wikikube_render::naming::media(site),
            wikikube_render::naming::swift_data(site),
        ];
        let listed = podman::run(&["volume", "ls", "--format", "{{.Name}}"])?;
        for volume in listed.lines() {
            if pods
                .iter()
                .any(|pod| volume.starts_with(&format!("{pod}-")))
            {
                volumes.push(volume.to_string());
            }
        }
        for volume in volumes {
            if podman::exists(&["volume", "exists", &volume])? {
                podman::run(&["volume", "rm", "--force", &volume])?;
            }
        }
        if state.root().exists() {
            std::fs::remove_dir_all(state.root()).map_err(Error::io(state.root()))?;
        }
    }
    Ok(stopped)
}

/// Prints a pod's logs (all containers, or one) to stdout, following them if asked.
pub fn logs(pod: &str, container: Option<&str>, follow: bool) -> Result<(), Error> {
    let mut command = podman::command();
    match container {
        Some(container) => command.arg("logs").arg(format!("{pod}-{container}")),
        None => command.args(["pod", "logs"]).arg(pod),
    };
    if follow {
        command.arg("--follow");
    }
    let status = command.status().map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => Error::PodmanMissing,
        _ => Error::Io {
            path: "podman".into(),
            source: error,
        },
    })?;
    if !status.success() {
        return Err(Error::Podman {
            command: format!("podman logs {pod}"),
            output: "see above".into(),
        });
    }
    Ok(())
}
