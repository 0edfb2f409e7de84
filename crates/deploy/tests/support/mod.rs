//! A loopback **simulation** of a Kubernetes API server, for tests and the benchmark: it stores
//! objects, answers server-side apply (a simplified merge, not the real structured merge), and
//! plays a Deployment controller whose status moves one step each time a Deployment is read.
//! Create (POST, 409 AlreadyExists), replace (PUT, 409 Conflict on a stale resourceVersion) and
//! delete (with preconditions) behave as on a real server, for the deploy lock's Lease.
//! Jobs are simulated too: a created Job gets one pod (labelled with the Job's name, as the Job
//! controller does) that goes Pending, Running, then ends as the test scripted it
//! ([`FakeApi::script_job`]): exit 0 by default, an exit code, or the Job's deadline; the pod's
//! log (`pods/NAME/log`, streamed line by line with `follow=true`) is the scripted output.
//! It is not Kubernetes: it checks what wikikube does with the status a controller reports,
//! not what a real controller reports. Tests against a real cluster are in `tests/real_cluster.rs`.
#![allow(dead_code)] // Each test binary uses a part of it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::http::{Method, Request, Response, StatusCode};
use futures::StreamExt;
use serde_json::{json, Value};

pub mod site;

/// How the simulated controller treats a Deployment whose name or images contain a marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Complete after this many reads.
    Healthy(u32),
    /// The controller reports ProgressDeadlineExceeded (fresh) after a few reads.
    Stuck,
    /// A ProgressDeadlineExceeded condition from an earlier rollout (an hour old) stays in the
    /// status, and the first read still shows the previous generation as complete; complete
    /// after this many reads.
    StaleCondition(u32),
    /// Complete after 2 reads, then a pod stops being ready after 5.
    CrashAfterReady,
    /// Pods answer smoke checks with 500.
    FailsSmoke,
    /// A rollout of many replicas rolled one at a time: one more replica updated, ready and
    /// available every period of wall time after the apply, so that the whole rollout takes
    /// longer than the progress deadline while it never stops progressing.
    SlowProgress(std::time::Duration),
    /// One replica is updated and then nothing moves, and (unlike [`Behaviour::Stuck`]) the
    /// controller says nothing about it: only a wait that measures progress itself ends.
    Stalls,
}

/// How a simulated Job's pod ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEnd {
    /// The script exits with this code.
    Exit(i32),
    /// The Job runs past its activeDeadlineSeconds: the controller fails it and deletes its pod.
    Deadline,
}

/// What a simulated Job's pod prints and how it ends.
#[derive(Clone, Debug)]
pub struct JobScript {
    /// Its output lines.
    pub output: Vec<String>,
    /// How it ends.
    pub end: JobEnd,
}

struct SimJob {
    pod: String,
    reads: u32,
    script: JobScript,
}

/// Reads of a Job after which its pod has ended.
const JOB_ENDS_AT_READ: u32 = 4;

#[derive(Default)]
struct State {
    objects: BTreeMap<(String, String, String), Value>,
    reads: BTreeMap<String, u32>,
    /// When each Deployment's current generation was applied.
    rolled_at: BTreeMap<String, std::time::Instant>,
    behaviours: Vec<(String, Behaviour)>,
    version: u64,
    /// Method, path and query of every request.
    requests: Vec<String>,
    /// Jobs by name, with their pod's progress.
    jobs: BTreeMap<String, SimJob>,
    /// Scripts for Jobs whose name or command line contain a marker.
    job_scripts: Vec<(String, JobScript)>,
    /// Called with the history records' text whenever they are written.
    stop_at_state: Option<(String, tokio::sync::mpsc::UnboundedSender<()>)>,
}

/// A running simulation on 127.0.0.1.
#[derive(Clone)]
pub struct FakeApi {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// Starts one on a free loopback port.
    pub async fn start() -> FakeApi {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let state = shared.clone();
            async move { handle(state, request).await }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeApi { addr, state }
    }

    /// A kube client for it.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// A deploy target for it.
    pub fn target(&self, name: &str) -> wikikube_deploy::Target {
        wikikube_deploy::Target {
            name: name.into(),
            client: self.client(),
        }
    }

    /// Deployments whose name or images contain `marker` behave so.
    pub fn behave(&self, marker: &str, behaviour: Behaviour) {
        let mut state = self.state.lock().unwrap();
        state.behaviours.insert(0, (marker.into(), behaviour));
    }

    /// Jobs whose name or command line contains `marker` print `output` and end so.
    pub fn script_job(&self, marker: &str, output: &[&str], end: JobEnd) {
        let script = JobScript {
            output: output.iter().map(|line| line.to_string()).collect(),
            end,
        };
        let mut state = self.state.lock().unwrap();
        state.job_scripts.insert(0, (marker.into(), script));
    }

    /// Sends on the returned channel when the history first records `state`.
    pub fn notify_at_state(&self, wanted: &str) -> tokio::sync::mpsc::UnboundedReceiver<()> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        self.state.lock().unwrap().stop_at_state = Some((wanted.into(), sender));
        receiver
    }

    /// Every request so far, as `METHOD path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// A stored object.
    pub fn object(&self, plural: &str, name: &str) -> Option<Value> {
        let state = self.state.lock().unwrap();
        state
            .objects
            .iter()
            .find(|((p, _, n), _)| p == plural && n == name)
            .map(|(_, value)| value.clone())
    }

    /// Names of the stored objects of one resource.
    pub fn names(&self, plural: &str) -> Vec<String> {
        let state = self.state.lock().unwrap();
        state
            .objects
            .keys()
            .filter(|(p, _, _)| p == plural)
            .map(|(_, _, n)| n.clone())
            .collect()
    }

    /// Makes the deploy lock in `namespace` look abandoned, as it is an hour after its holder
    /// died: its renewTime goes back an hour.
    pub fn expire_lock(&self, namespace: &str) {
        let mut state = self.state.lock().unwrap();
        let lease = deploy_lock(&mut state, namespace);
        let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
        lease["spec"]["renewTime"] = json!(hour_ago.to_string());
        // Short, so that a test watching it for its duration before taking over is quick.
        lease["spec"]["leaseDurationSeconds"] = json!(1);
    }

    /// Renews the deploy lock in `namespace` as a live holder whose clock is an hour behind
    /// ours does: a new resourceVersion, a renewTime that looks an hour old.
    pub fn renew_lock_an_hour_behind(&self, namespace: &str) {
        let mut state = self.state.lock().unwrap();
        state.version += 1;
        let version = state.version;
        let lease = deploy_lock(&mut state, namespace);
        let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
        lease["spec"]["renewTime"] = json!(hour_ago.to_string());
        lease["metadata"]["resourceVersion"] = json!(version.to_string());
    }

    /// Stores an object as if someone else had created it.
    pub fn insert(&self, plural: &str, namespace: &str, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let mut state = self.state.lock().unwrap();
        state
            .objects
            .insert((plural.into(), namespace.into(), name), object);
    }
}

/// The stored deploy lock of `namespace`.
fn deploy_lock<'a>(state: &'a mut State, namespace: &str) -> &'a mut Value {
    let key = (
        "leases".to_string(),
        namespace.to_string(),
        "wikikube-deploy".to_string(),
    );
    state.objects.get_mut(&key).expect("a deploy lock")
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": code});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn created(value: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::CREATED)
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .unwrap()
}

fn ok(value: &Value) -> Response<Body> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .unwrap()
}

async fn handle(state: Arc<Mutex<State>>, request: Request<Body>) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let body = to_bytes(request.into_body(), 16 << 20).await.unwrap();
    let mut state = state.lock().unwrap();
    state.requests.push(format!("{method} {path}?{query}"));
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let rest = match segments.first() {
        Some(&"api") => &segments[2..],
        Some(&"apis") => &segments[3..],
        _ => return status(404, "NotFound", "no such path"),
    };
    let (plural, namespace, name, tail) = match rest {
        ["namespaces", name] => ("namespaces", "", *name, &[][..]),
        ["namespaces", namespace, plural] => (*plural, *namespace, "", &[][..]),
        ["namespaces", namespace, plural, name, tail @ ..] => (*plural, *namespace, *name, tail),
        _ => return status(404, "NotFound", "no such path"),
    };
    if plural == "pods" {
        return pods(&mut state, namespace, name, tail, &query);
    }
    let key = (plural.to_string(), namespace.to_string(), name.to_string());
    if !namespace.is_empty()
        && !state
            .objects
            .contains_key(&("namespaces".into(), String::new(), namespace.into()))
    {
        return status(
            404,
            "NotFound",
            &format!("namespaces \"{namespace}\" not found"),
        );
    }
    match method {
        Method::GET => {
            let Some(object) = state.objects.get(&key).cloned() else {
                return status(404, "NotFound", &format!("{plural} \"{name}\" not found"));
            };
            if plural == "jobs" {
                let object = job_controller(&mut state, object);
                state.objects.insert(key, object.clone());
                return ok(&object);
            }
            if plural == "deployments" {
                let reads = state.reads.entry(name.to_string()).or_default();
                *reads += 1;
                let reads = *reads;
                let behaviour = behaviour(&state, &object);
                let elapsed = state
                    .rolled_at
                    .get(name)
                    .map(std::time::Instant::elapsed)
                    .unwrap_or_default();
                let object = controller(object, behaviour, reads, elapsed);
                state.objects.insert(key, object.clone());
                return ok(&object);
            }
            ok(&object)
        }
        Method::PATCH => {
            let applied: Value = serde_json::from_slice(&body).unwrap();
            let dry_run = query.contains("dryRun=All");
            let existing = state.objects.get(&key).cloned();
            if let Some(field) = immutable_change(existing.as_ref(), &applied) {
                // As the API server: an immutable ConfigMap's or Secret's content never changes.
                return status(
                    422,
                    "Invalid",
                    &format!("{plural} \"{name}\" is invalid: {field}: Forbidden: field is immutable when `immutable` is set"),
                );
            }
            state.version += 1;
            let version = state.version;
            let result = apply(existing, applied, version, plural);
            if !dry_run {
                if plural == "deployments" {
                    let generation = result["metadata"]["generation"].clone();
                    let before = state
                        .objects
                        .get(&key)
                        .map(|o| o["metadata"]["generation"].clone());
                    if before.as_ref() != Some(&generation) {
                        state.reads.insert(name.to_string(), 0);
                        state
                            .rolled_at
                            .insert(name.to_string(), std::time::Instant::now());
                    }
                }
                if name == "wikikube-history" {
                    let text = result["data"]["records.json"].as_str().unwrap_or_default();
                    if let Some((wanted, sender)) = &state.stop_at_state {
                        if text.contains(&format!("\"state\":\"{wanted}\"")) {
                            let _ = sender.send(());
                        }
                    }
                }
                state.objects.insert(key, result.clone());
            }
            ok(&result)
        }
        Method::POST => {
            let mut object: Value = serde_json::from_slice(&body).unwrap();
            let Some(name) = object["metadata"]["name"].as_str().map(String::from) else {
                return status(422, "Invalid", "metadata.name: Required value");
            };
            let key = (plural.to_string(), namespace.to_string(), name.clone());
            if state.objects.contains_key(&key) {
                return status(
                    409,
                    "AlreadyExists",
                    &format!("{plural} \"{name}\" already exists"),
                );
            }
            state.version += 1;
            let version = state.version;
            object["metadata"]["namespace"] = json!(namespace);
            object["metadata"]["resourceVersion"] = json!(version.to_string());
            object["metadata"]["uid"] = json!(format!("uid-{version}"));
            object["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::now().to_string());
            if plural == "jobs" {
                let command = object["spec"]["template"]["spec"]["containers"][0]["command"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|part| part.as_str())
                    .collect::<Vec<_>>()
                    .join(" ");
                let text = format!("{name} {command}");
                let script = state
                    .job_scripts
                    .iter()
                    .find(|(marker, _)| text.contains(marker.as_str()))
                    .map(|(_, script)| script.clone())
                    .unwrap_or_else(|| JobScript {
                        output: vec![format!("simulated: {command}")],
                        end: JobEnd::Exit(0),
                    });
                let pod = format!("{name}-sim01");
                state.jobs.insert(
                    name.clone(),
                    SimJob {
                        pod,
                        reads: 0,
                        script,
                    },
                );
            }
            state.objects.insert(key, object.clone());
            created(&object)
        }
        Method::PUT => {
            let mut object: Value = serde_json::from_slice(&body).unwrap();
            let Some(existing) = state.objects.get(&key).cloned() else {
                return status(404, "NotFound", &format!("{plural} \"{name}\" not found"));
            };
            let sent = object["metadata"]["resourceVersion"].as_str();
            if sent
                .is_some_and(|sent| Some(sent) != existing["metadata"]["resourceVersion"].as_str())
            {
                return status(409, "Conflict", &format!("Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"));
            }
            state.version += 1;
            object["metadata"]["resourceVersion"] = json!(state.version.to_string());
            for field in ["uid", "creationTimestamp"] {
                object["metadata"][field] = existing["metadata"][field].clone();
            }
            state.objects.insert(key, object.clone());
            ok(&object)
        }
        Method::DELETE => {
            let Some(existing) = state.objects.get(&key) else {
                return status(404, "NotFound", &format!("{plural} \"{name}\" not found"));
            };
            let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let wanted = &options["preconditions"];
            for (field, sent) in [
                ("resourceVersion", &wanted["resourceVersion"]),
                ("uid", &wanted["uid"]),
            ] {
                if !sent.is_null() && *sent != existing["metadata"][field] {
                    return status(409, "Conflict", &format!("Precondition failed: {field} in precondition: {sent}, {field} in object meta: {}", existing["metadata"][field]));
                }
            }
            state.objects.remove(&key);
            ok(&json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
        }
        _ => status(405, "MethodNotAllowed", "not simulated"),
    }
}

fn behaviour(state: &State, deployment: &Value) -> Behaviour {
    let mut text = deployment["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for container in deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        text.push(' ');
        text.push_str(container["image"].as_str().unwrap_or_default());
    }
    state
        .behaviours
        .iter()
        .find(|(marker, _)| text.contains(marker.as_str()))
        .map_or(Behaviour::Healthy(2), |(_, behaviour)| *behaviour)
}

/// The field an apply would change in an immutable object, if any.
fn immutable_change(existing: Option<&Value>, applied: &Value) -> Option<&'static str> {
    let existing = existing?;
    if existing["immutable"] != json!(true) {
        return None;
    }
    ["data", "binaryData", "immutable"]
        .into_iter()
        .find(|field| {
            applied
                .get(*field)
                .is_some_and(|value| existing.get(*field) != Some(value))
        })
}

/// A simplified server-side apply: the applied fields replace the stored ones, the server adds
/// its metadata, a Service gets a clusterIP default, and a Deployment's generation moves when its
/// spec changes.
fn apply(existing: Option<Value>, applied: Value, version: u64, plural: &str) -> Value {
    let now = jiff::Timestamp::now().to_string();
    let mut object = existing.clone().unwrap_or_else(|| {
        json!({"metadata": {
        "uid": format!("uid-{version}"), "creationTimestamp": now.clone()}})
    });
    let mut changed = existing.is_none();
    for (key, value) in applied.as_object().unwrap() {
        if key == "metadata" {
            for field in ["name", "namespace", "labels", "annotations"] {
                if let Some(value) = value.get(field) {
                    if object["metadata"].get(field) != Some(value) {
                        changed = true;
                    }
                    object["metadata"][field] = value.clone();
                }
            }
        } else if key != "status" {
            let mut value = value.clone();
            if plural == "services" && key == "spec" {
                value["clusterIP"] = json!("10.96.0.10");
            }
            if object.get(key) != Some(&value) {
                changed = true;
            }
            object[key.as_str()] = value;
        }
    }
    object["metadata"]["resourceVersion"] = json!(version.to_string());
    if changed {
        object["metadata"]["managedFields"] = json!([{"manager": "wikikube",
            "operation": "Apply", "apiVersion": "v1", "time": now, "fieldsType": "FieldsV1",
            "fieldsV1": {}}]);
    }
    if plural == "deployments" {
        let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
        let spec_changed = existing.as_ref().map(|e| &e["spec"]) != Some(&object["spec"]);
        if spec_changed {
            object["metadata"]["generation"] = json!(generation + 1);
        }
    }
    object
}

/// One step of the simulated Deployment controller: the status after `reads` reads and
/// `elapsed` wall time since the generation was applied.
fn controller(
    mut deployment: Value,
    behaviour: Behaviour,
    reads: u32,
    elapsed: std::time::Duration,
) -> Value {
    let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(1);
    let desired = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let now = jiff::Timestamp::now();
    let hour_ago = (now - jiff::SignedDuration::from_hours(1)).to_string();
    let now = now.to_string();
    let progressing = |status: &str, reason: &str, time: &str| {
        json!({"type": "Progressing", "status": status, "reason": reason,
            "message": format!("simulated: {reason}"), "lastUpdateTime": time,
            "lastTransitionTime": time})
    };
    let done = |time: &str| {
        json!({"observedGeneration": generation, "replicas": desired, "updatedReplicas": desired,
            "readyReplicas": desired, "availableReplicas": desired,
            "conditions": [progressing("True", "NewReplicaSetAvailable", time)]})
    };
    let rolling = |conditions: Value| {
        json!({"observedGeneration": generation, "replicas": desired + 1,
            "updatedReplicas": (desired - 1).max(1), "readyReplicas": desired,
            "availableReplicas": desired, "conditions": conditions})
    };
    let previous_complete = |conditions: Value| {
        json!({"observedGeneration": generation - 1, "replicas": desired,
            "updatedReplicas": desired, "readyReplicas": desired,
            "availableReplicas": desired, "conditions": conditions})
    };
    let status = match behaviour {
        Behaviour::Healthy(_) | Behaviour::FailsSmoke if reads >= settle(behaviour) => done(&now),
        Behaviour::Healthy(_) | Behaviour::FailsSmoke if reads <= 1 => previous_complete(json!([])),
        Behaviour::Healthy(_) | Behaviour::FailsSmoke => {
            rolling(json!([progressing("True", "ReplicaSetUpdated", &now)]))
        }
        Behaviour::StaleCondition(n) if reads >= n => done(&now),
        Behaviour::StaleCondition(_) => {
            let stale = json!([progressing("False", "ProgressDeadlineExceeded", &hour_ago)]);
            if reads <= 1 {
                previous_complete(stale)
            } else {
                rolling(stale)
            }
        }
        Behaviour::Stuck if reads <= 2 => {
            rolling(json!([progressing("True", "ReplicaSetUpdated", &now)]))
        }
        Behaviour::Stuck => rolling(json!([progressing(
            "False",
            "ProgressDeadlineExceeded",
            &now
        )])),
        Behaviour::SlowProgress(period) => {
            let rolled = i64::try_from(elapsed.as_millis() / period.as_millis().max(1))
                .unwrap_or(i64::MAX)
                .min(desired);
            if rolled >= desired {
                done(&now)
            } else {
                // The surge pod is the one rolling; `rolled` new ones serve beside the old.
                json!({"observedGeneration": generation, "replicas": desired + 1,
                    "updatedReplicas": rolled + 1, "readyReplicas": desired,
                    "availableReplicas": desired,
                    "conditions": [progressing("True", "ReplicaSetUpdated", &now)]})
            }
        }
        Behaviour::Stalls => json!({"observedGeneration": generation, "replicas": desired + 1,
            "updatedReplicas": 1, "readyReplicas": desired, "availableReplicas": desired,
            "conditions": [progressing("True", "ReplicaSetUpdated", &now)]}),
        Behaviour::CrashAfterReady if reads < 2 => rolling(json!([])),
        Behaviour::CrashAfterReady if reads < 5 => done(&now),
        Behaviour::CrashAfterReady => {
            let mut status = done(&now);
            status["readyReplicas"] = json!(desired - 1);
            status["availableReplicas"] = json!(desired - 1);
            status
        }
    };
    deployment["status"] = status;
    deployment
}

/// One step of the simulated Job controller: the Job's status after one more read.
fn job_controller(state: &mut State, mut job: Value) -> Value {
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let Some(sim) = state.jobs.get_mut(&name) else {
        return job;
    };
    sim.reads += 1;
    let now = jiff::Timestamp::now().to_string();
    let condition = |kind: &str, reason: &str| {
        json!([{"type": kind, "status": "True", "reason": reason,
            "message": format!("simulated: {reason}"), "lastTransitionTime": now}])
    };
    job["status"] = match (sim.reads >= JOB_ENDS_AT_READ, sim.script.end) {
        (false, _) => json!({"active": 1}),
        (true, JobEnd::Exit(0)) => {
            json!({"succeeded": 1, "conditions": condition("Complete", "Completed")})
        }
        (true, JobEnd::Exit(_)) => {
            json!({"failed": 1, "conditions": condition("Failed", "BackoffLimitExceeded")})
        }
        (true, JobEnd::Deadline) => {
            json!({"failed": 1, "conditions": condition("Failed", "DeadlineExceeded")})
        }
    };
    job
}

/// The pod of a simulated Job, as its Job's reads so far have it.
fn job_pods(state: &State, namespace: &str, query: &str) -> Response<Body> {
    let wanted = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("labelSelector="))
        .map(|s| s.replace("%2F", "/").replace("%3D", "="))
        .unwrap_or_default();
    let mut items = Vec::new();
    for (job, sim) in &state.jobs {
        if wanted != format!("batch.kubernetes.io/job-name={job}") {
            continue;
        }
        let ended = sim.reads >= JOB_ENDS_AT_READ;
        if ended && sim.script.end == JobEnd::Deadline {
            continue; // the controller deleted it
        }
        let container = |state: Value| {
            json!([{"name": "app", "ready": !ended, "restartCount": 0, "image": "app",
                "imageID": "", "state": state}])
        };
        let now = jiff::Timestamp::now().to_string();
        let status = match (sim.reads, sim.script.end) {
            (0 | 1, _) => json!({"phase": "Pending", "containerStatuses": container(
                json!({"waiting": {"reason": "ContainerCreating"}}))}),
            (reads, _) if reads < JOB_ENDS_AT_READ => json!({"phase": "Running",
                "containerStatuses": container(json!({"running": {"startedAt": now}}))}),
            (_, JobEnd::Exit(code)) => json!({
                "phase": if code == 0 { "Succeeded" } else { "Failed" },
                "containerStatuses": container(json!({"terminated": {"exitCode": code,
                    "reason": if code == 0 { "Completed" } else { "Error" },
                    "startedAt": now, "finishedAt": now}}))}),
            (_, JobEnd::Deadline) => unreachable!("deleted above"),
        };
        items.push(json!({"metadata": {"name": sim.pod, "namespace": namespace,
            "labels": {"batch.kubernetes.io/job-name": job}}, "status": status}));
    }
    ok(&json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
}

/// A simulated Job pod's log: every line at once, or with `follow=true` one line every 100 ms.
fn job_log(state: &State, pod: &str, query: &str) -> Response<Body> {
    let Some(sim) = state.jobs.values().find(|sim| sim.pod == pod) else {
        return status(404, "NotFound", &format!("pods \"{pod}\" not found"));
    };
    if sim.reads >= JOB_ENDS_AT_READ && sim.script.end == JobEnd::Deadline {
        return status(404, "NotFound", &format!("pods \"{pod}\" not found"));
    }
    let lines: Vec<String> = sim.script.output.iter().map(|l| format!("{l}\n")).collect();
    if !query.contains("follow=true") {
        return Response::builder()
            .body(Body::from(lines.concat()))
            .unwrap();
    }
    let stream = futures::stream::iter(lines).then(|line| async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(line)
    });
    Response::builder().body(Body::from_stream(stream)).unwrap()
}

fn settle(behaviour: Behaviour) -> u32 {
    match behaviour {
        Behaviour::Healthy(n) => n,
        _ => 2,
    }
}

/// Pods of the simulated Deployments (one per ready replica) and the pod proxy.
fn pods(
    state: &mut State,
    namespace: &str,
    name: &str,
    tail: &[&str],
    query: &str,
) -> Response<Body> {
    let deployments: Vec<Value> = state
        .objects
        .iter()
        .filter(|((plural, ns, _), _)| plural == "deployments" && ns == namespace)
        .map(|(_, value)| value.clone())
        .collect();
    if name.is_empty() && query.contains("job-name") {
        return job_pods(state, namespace, query);
    }
    if tail.first() == Some(&"log") {
        return job_log(state, name, query);
    }
    if name.is_empty() {
        let selector = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("labelSelector="))
            .map(|s| {
                s.replace("%2F", "/")
                    .replace("%3D", "=")
                    .replace("%2C", ",")
            })
            .unwrap_or_default();
        let mut items = Vec::new();
        for deployment in &deployments {
            let labels = deployment["spec"]["selector"]["matchLabels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let matches = selector.split(',').filter(|s| !s.is_empty()).all(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                labels.get(key).and_then(|v| v.as_str()) == Some(value)
            });
            if matches && !selector.is_empty() {
                let ready = deployment["status"]["readyReplicas"].as_i64().unwrap_or(0);
                let name = deployment["metadata"]["name"].as_str().unwrap();
                for index in 0..ready {
                    items.push(json!({
                        "metadata": {"name": format!("{name}-pod-{index}"), "namespace": namespace},
                        "status": {"phase": "Running", "conditions": [
                            {"type": "Ready", "status": "True"}]}}));
                }
                // What a real cluster also lists under the selector until garbage collection:
                // an evicted pod, one not yet scheduled, and one running but not ready. None
                // serves: the proxy answers 503 for them, so a smoke check sent there fails.
                items.push(json!({
                    "metadata": {"name": format!("{name}-evicted-0"), "namespace": namespace},
                    "status": {"phase": "Failed", "reason": "Evicted"}}));
                items.push(json!({
                    "metadata": {"name": format!("{name}-pending-0"), "namespace": namespace},
                    "status": {"phase": "Pending", "conditions": [
                        {"type": "PodScheduled", "status": "False"}]}}));
                items.push(json!({
                    "metadata": {"name": format!("{name}-unready-0"), "namespace": namespace},
                    "status": {"phase": "Running", "conditions": [
                        {"type": "Ready", "status": "False"}]}}));
            }
        }
        return ok(&json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}));
    }
    // `https:POD:PORT` / proxy / path
    let pod = name.split(':').nth(1).unwrap_or_default();
    if tail.first() != Some(&"proxy") {
        return status(404, "NotFound", "not simulated");
    }
    let owner = deployments
        .iter()
        .find(|d| pod.starts_with(&format!("{}-pod-", d["metadata"]["name"].as_str().unwrap())));
    let Some(owner) = owner else {
        return status(503, "ServiceUnavailable", "the pod is not serving");
    };
    if behaviour(state, owner) == Behaviour::FailsSmoke {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from("simulated: fatal error"))
            .unwrap();
    }
    Response::builder()
        .body(Body::from("<html><title>Main Page</title></html>"))
        .unwrap()
}

/// Two simulated clusters, eqiad and codfw, with the example farm (eqiad's environment)
/// deployed to both.
pub struct TwoClusters {
    pub eqiad: FakeApi,
    pub codfw: FakeApi,
    pub targets: [wikikube_deploy::Target; 2],
    pub namespace: String,
    pub steps: Vec<wikikube_deploy::Step>,
}

impl TwoClusters {
    pub async fn deployed() -> TwoClusters {
        let (eqiad, codfw) = (FakeApi::start().await, FakeApi::start().await);
        let targets = [eqiad.target("eqiad"), codfw.target("codfw")];
        let (namespace, steps) = site::farm_steps("eqiad");
        let report = wikikube_deploy::deploy(
            &targets,
            &namespace,
            &steps,
            &site::fast_options(),
            &wikikube_deploy::progress::Quiet,
        )
        .await;
        assert!(report.ok, "{}", report.to_text());
        TwoClusters {
            eqiad,
            codfw,
            targets,
            namespace,
            steps,
        }
    }
}
