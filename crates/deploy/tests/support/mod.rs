//! A loopback **simulation** of a Kubernetes API server, for tests and the benchmark: it stores
//! objects, answers server-side apply with field ownership per manager ([`fields`]: what another
//! manager set stays, a forced apply takes conflicting fields, a non-apply update such as
//! `kubectl edit` or a JSON patch takes what it changes; [`FakeApi::edit_as`]), and
//! plays a Deployment controller whose status moves one step each time a Deployment is read.
//! Create (POST, 409 AlreadyExists), replace (PUT, 409 Conflict on a stale resourceVersion) and
//! delete (with preconditions) behave as on a real server, for the deploy lock's Lease.
//! Jobs are simulated too: a created Job gets one pod (labelled with the Job's name, as the Job
//! controller does) that goes Pending, Running, then ends as the test scripted it
//! ([`FakeApi::script_job`]): exit 0 by default, an exit code, or the Job's deadline; the pod's
//! log (`pods/NAME/log`, streamed line by line with `follow=true`) is the scripted output.
//! Deletes take time, as on a real cluster: a foreground delete marks the object with
//! `metadata.deletionTimestamp` and the `foregroundDeletion` finalizer, GET answers with it
//! until its dependents would be gone (a Deployment's pods: their preStop sleep, at most the
//! grace period; anything else: a round of the garbage collector), and 404 after.
//! A background delete (the default, as the Lease's) removes the object at once. After a
//! rollout the replaced pods stay listed, with a deletionTimestamp, for their preStop sleep; a
//! server that knows `status.terminatingReplicas` (Kubernetes 1.33 and later) counts them there
//! ([`FakeApi::report_terminating_replicas`]). Simulated time runs fast: one second of a pod's
//! termination lasts [`FakeApi::termination_second`] of wall time. A Namespace being deleted
//! ([`FakeApi::terminate_namespace`]) refuses new objects with 403 and the `NamespaceTerminating`
//! cause, as the API server's NamespaceLifecycle admission does.
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

pub mod fields;
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

/// Wall time of one simulated second of a pod's termination, unless a test sets another: the
/// example's preStop sleep of 210 s then lasts 42 ms.
const TERMINATION_SECOND: std::time::Duration = std::time::Duration::from_micros(200);

/// How long an object without pods stays after a foreground delete: the garbage collector
/// finds it has no dependents and removes its finalizer in one round.
const GARBAGE_COLLECTOR_ROUND: std::time::Duration = std::time::Duration::from_millis(5);

/// Old pods a finished rollout left terminating: how many, and until when.
#[derive(Clone, Copy)]
struct Terminating {
    generation: i64,
    pods: i64,
    until: std::time::Instant,
}

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
    /// Time spent answering requests: the simulation's share of a benchmark's figures.
    busy: std::time::Duration,
    /// Jobs by name, with their pod's progress.
    jobs: BTreeMap<String, SimJob>,
    /// Scripts for Jobs whose name or command line contain a marker.
    job_scripts: Vec<(String, JobScript)>,
    /// Called with the history records' text whenever they are written.
    stop_at_state: Option<(String, tokio::sync::mpsc::UnboundedSender<()>)>,
    /// Objects being deleted, and when they will be gone (`None`: when a test says so).
    dying: BTreeMap<(String, String, String), Option<std::time::Instant>>,
    /// Each Deployment's old pods in their preStop sleep after its last finished rollout.
    terminating: BTreeMap<String, Terminating>,
    /// One simulated second of pod termination in wall time; zero means the default.
    termination_second: std::time::Duration,
    /// Whether Deployment status carries `terminatingReplicas` (Kubernetes 1.33 and later).
    reports_terminating_replicas: bool,
    /// When set, what the client may do: grants in the site's namespace, and cluster-scoped
    /// ones; anything else is answered 403, as RBAC does.
    role: Option<Role>,
}

/// What a simulated client is allowed ([`FakeApi::restrict`]).
#[derive(Clone)]
struct Role {
    namespace: String,
    namespaced: Vec<wikikube_deploy::rbac::Grant>,
    cluster: Vec<wikikube_deploy::rbac::Grant>,
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

    /// Deploys `steps` to this cluster alone, as target `name`, without progress output.
    pub async fn deploy(
        &self,
        name: &str,
        namespace: &str,
        steps: &[wikikube_deploy::Step],
        options: &wikikube_deploy::Options,
    ) -> wikikube_deploy::DeployReport {
        wikikube_deploy::deploy(
            &[self.target(name)],
            namespace,
            steps,
            options,
            &wikikube_deploy::progress::Quiet,
        )
        .await
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

    /// The time the simulation spent answering requests so far.
    pub fn busy(&self) -> std::time::Duration {
        self.state.lock().unwrap().busy
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        self.state.lock().unwrap().requests.clear();
    }

    /// A stored object that is not being deleted ([`FakeApi::being_deleted`] tells those).
    pub fn object(&self, plural: &str, name: &str) -> Option<Value> {
        let mut state = self.state.lock().unwrap();
        collect_garbage(&mut state);
        state
            .objects
            .iter()
            .filter(|(key, _)| !state.dying.contains_key(*key))
            .find(|((p, _, n), _)| p == plural && n == name)
            .map(|(_, value)| value.clone())
    }

    /// Names of the stored objects of one resource that are not being deleted.
    pub fn names(&self, plural: &str) -> Vec<String> {
        let mut state = self.state.lock().unwrap();
        collect_garbage(&mut state);
        state
            .objects
            .keys()
            .filter(|key| !state.dying.contains_key(*key))
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

    /// From now on, answers 403 to every request that `namespaced` (in `namespace`) and
    /// `cluster` (cluster-scoped) do not allow, as an API server with RBAC does for a user bound
    /// to that Role and ClusterRole. An apply of an object that does not exist needs `create`
    /// as well as `patch`, as on a real server.
    pub fn restrict(
        &self,
        namespace: &str,
        namespaced: Vec<wikikube_deploy::rbac::Grant>,
        cluster: Vec<wikikube_deploy::rbac::Grant>,
    ) {
        self.state.lock().unwrap().role = Some(Role {
            namespace: namespace.into(),
            namespaced,
            cluster,
        });
    }

    /// Lifts [`FakeApi::restrict`]: an administrator's client.
    pub fn unrestrict(&self) {
        self.state.lock().unwrap().role = None;
    }

    /// One simulated second of a pod's termination (preStop sleep) lasts `wall` of wall time.
    pub fn termination_second(&self, wall: std::time::Duration) {
        self.state.lock().unwrap().termination_second = wall;
    }

    /// Deployment status carries `terminatingReplicas`, as from Kubernetes 1.33 (behind the
    /// DeploymentReplicaSetTerminatingReplicas feature gate, on by default from 1.34); without
    /// it, as on older servers, terminating pods show only in the pod list.
    pub fn report_terminating_replicas(&self) {
        self.state.lock().unwrap().reports_terminating_replicas = true;
    }

    /// Starts deleting `namespace` and keeps it `Terminating` (as a namespace whose content
    /// takes long to go): new objects in it are refused with 403 NamespaceTerminating.
    pub fn terminate_namespace(&self, namespace: &str) {
        let mut state = self.state.lock().unwrap();
        let key = (
            "namespaces".to_string(),
            String::new(),
            namespace.to_string(),
        );
        let now = jiff::Timestamp::now().to_string();
        let object = state.objects.entry(key.clone()).or_insert_with(
            || json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        );
        object["metadata"]["deletionTimestamp"] = json!(now);
        object["status"] = json!({"phase": "Terminating"});
        state.dying.insert(key, None);
    }

    /// Names of a Deployment's pods that are being deleted (their preStop sleep runs).
    pub fn terminating_pods(&self, deployment: &str) -> Vec<String> {
        let mut state = self.state.lock().unwrap();
        collect_garbage(&mut state);
        let namespace = state
            .objects
            .keys()
            .find(|(plural, _, name)| plural == "deployments" && name == deployment)
            .map(|(_, namespace, _)| namespace.clone())
            .unwrap_or_default();
        deployment_pods(&state, &namespace, deployment)
            .iter()
            .filter(|pod| !pod["metadata"]["deletionTimestamp"].is_null())
            .map(|pod| {
                pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }

    /// Whether an object is stored but being deleted (it has a deletionTimestamp).
    pub fn being_deleted(&self, plural: &str, name: &str) -> bool {
        let mut state = self.state.lock().unwrap();
        collect_garbage(&mut state);
        state.dying.keys().any(|(p, _, n)| p == plural && n == name)
    }

    /// Changes a stored object as another field manager's update would (`kubectl edit`,
    /// `kubectl set env`): what `edit` adds or changes becomes `manager`'s, what it removes is no
    /// one's. The API server's validation answers as it would (a PodDisruptionBudget with both
    /// bounds: `Err` with its message).
    pub fn edit_as(
        &self,
        manager: &str,
        plural: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Result<(), String> {
        let mut state = self.state.lock().unwrap();
        let key = state
            .objects
            .keys()
            .find(|(p, _, n)| p == plural && n == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {plural}/{name}"));
        let before = state.objects[&key].clone();
        let mut after = before.clone();
        edit(&mut after);
        let now = jiff::Timestamp::now().to_string();
        let mut after = fields::update(&before, after, manager, &now);
        if let Some(message) = invalid(plural, name, &after) {
            return Err(message);
        }
        state.version += 1;
        after["metadata"]["resourceVersion"] = json!(state.version.to_string());
        bump_generation(Some(&before), &mut after, plural);
        note_rollout(&mut state, plural, name, &before, &after);
        state.objects.insert(key, after);
        Ok(())
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
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = to_bytes(request.into_body(), 16 << 20).await.unwrap();
    let started = std::time::Instant::now();
    let response = respond(&state, method, path, query, content_type, body);
    state.lock().unwrap().busy += started.elapsed();
    response
}

/// One request's answer (the time it takes is the simulation's own, [`FakeApi::busy`]).
fn respond(
    state: &Mutex<State>,
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: axum::body::Bytes,
) -> Response<Body> {
    let mut state = state.lock().unwrap();
    state.requests.push(format!("{method} {path}?{query}"));
    collect_garbage(&mut state);
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let (group, rest) = match segments.first() {
        Some(&"api") => ("", &segments[2..]),
        Some(&"apis") => (segments[1], &segments[3..]),
        _ => return status(404, "NotFound", "no such path"),
    };
    let (plural, namespace, name, tail) = match rest {
        ["namespaces", name] => ("namespaces", "", *name, &[][..]),
        ["namespaces", namespace, plural] => (*plural, *namespace, "", &[][..]),
        ["namespaces", namespace, plural, name, tail @ ..] => (*plural, *namespace, *name, tail),
        _ => return status(404, "NotFound", "no such path"),
    };
    let key = (plural.to_string(), namespace.to_string(), name.to_string());
    if let Some(role) = &state.role {
        let resource = match (plural, tail.first()) {
            ("pods", Some(sub)) => format!("pods/{sub}"),
            _ => plural.to_string(),
        };
        let mut verbs = vec![match method {
            Method::GET if name.is_empty() => "list",
            Method::GET => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE => "delete",
            _ => "unknown",
        }];
        if method == Method::PATCH && !state.objects.contains_key(&key) {
            // An apply that creates is authorised as a create too.
            verbs.push("create");
        }
        let grants = if namespace.is_empty() {
            &role.cluster
        } else if namespace == role.namespace {
            &role.namespaced
        } else {
            &Vec::new()
        };
        let denied = verbs
            .iter()
            .find(|verb| !wikikube_deploy::rbac::allows(grants, group, &resource, verb));
        if let Some(verb) = denied {
            let scope = if namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace \"{namespace}\"")
            };
            return status(
                403,
                "Forbidden",
                &format!("{resource} \"{name}\" is forbidden: User \"system:serviceaccount:ci:deployer\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"),
            );
        }
    }
    if plural == "pods" {
        return pods(&mut state, namespace, name, tail, &query);
    }
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
    let creates =
        method == Method::POST || (method == Method::PATCH && !state.objects.contains_key(&key));
    if creates && namespace_terminating(&state, namespace) {
        return forbidden_in_terminating_namespace(plural, group, name, namespace, &body);
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
                let behaviour = behaviour(&state, &object);
                let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
                let old_pods_stopping = state.terminating.get(name).is_some_and(|old| {
                    old.generation == generation && old.until > std::time::Instant::now()
                });
                let reads = state.reads.entry(name.to_string()).or_default();
                // A canary that crashes after its rollout does so once the rollout is over,
                // its replaced pods stopped included: its reads wait for them.
                if !(behaviour == Behaviour::CrashAfterReady && old_pods_stopping) {
                    *reads += 1;
                }
                let reads = *reads;
                let elapsed = state
                    .rolled_at
                    .get(name)
                    .map(std::time::Instant::elapsed)
                    .unwrap_or_default();
                let object = if state.dying.contains_key(&key) {
                    being_deleted(object)
                } else {
                    let object = controller(object, behaviour, reads, elapsed);
                    old_pods_terminate(&mut state, object)
                };
                state.objects.insert(key, object.clone());
                return ok(&object);
            }
            ok(&object)
        }
        Method::PATCH if content_type.starts_with("application/json-patch") => {
            let Some(existing) = state.objects.get(&key).cloned() else {
                return status(404, "NotFound", &format!("{plural} \"{name}\" not found"));
            };
            let patch: json_patch::Patch = serde_json::from_slice(&body).unwrap();
            let mut patched = existing.clone();
            if let Err(error) = json_patch::patch(&mut patched, &patch) {
                // A failed `test` (the object changed since it was read) included.
                return status(
                    422,
                    "Invalid",
                    &format!(
                        "the server rejected our request due to an error in our request: {error}"
                    ),
                );
            }
            let manager = query_value(&query, "fieldManager").unwrap_or("unknown");
            let now = jiff::Timestamp::now().to_string();
            let mut result = fields::update(&existing, patched, manager, &now);
            if let Some(message) = invalid(plural, name, &result) {
                return status(422, "Invalid", &message);
            }
            state.version += 1;
            result["metadata"]["resourceVersion"] = json!(state.version.to_string());
            bump_generation(Some(&existing), &mut result, plural);
            note_rollout(&mut state, plural, name, &existing, &result);
            state.objects.insert(key, result.clone());
            ok(&result)
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
            let manager = query_value(&query, "fieldManager").unwrap_or("unknown");
            let force = query_value(&query, "force") == Some("true");
            let version = state.version + 1;
            let result = match apply(existing.clone(), applied, version, plural, manager, force) {
                Ok(result) => result,
                Err(conflict) => return status(409, "Conflict", &conflict),
            };
            if let Some(message) = invalid(plural, name, &result) {
                return status(422, "Invalid", &message);
            }
            state.version = version;
            if !dry_run {
                if let Some(before) = &existing {
                    note_rollout(&mut state, plural, name, before, &result);
                } else if plural == "deployments" {
                    state.reads.insert(name.to_string(), 0);
                    state
                        .rolled_at
                        .insert(name.to_string(), std::time::Instant::now());
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
                // The API server's words for a name whose object is still going.
                let going = if state.dying.contains_key(&key) {
                    "object is being deleted: "
                } else {
                    ""
                };
                return status(
                    409,
                    "AlreadyExists",
                    &format!("{going}{plural} \"{name}\" already exists"),
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
            let Some(existing) = state.objects.get(&key).cloned() else {
                return status(404, "NotFound", &format!("{plural} \"{name}\" not found"));
            };
            let existing = &existing;
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
            if options["propagationPolicy"] != "Foreground" {
                // Background (the default): the object goes now, its dependents after it.
                state.objects.remove(&key);
                state.dying.remove(&key);
                return ok(&json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
            }
            if state.dying.contains_key(&key) {
                return ok(existing); // already going
            }
            // Foreground: the object stays, marked, until its dependents are gone; a
            // Deployment's pods first run their preStop sleep.
            let linger = if plural == "deployments" {
                second(&state) * termination_seconds(existing)
            } else {
                GARBAGE_COLLECTOR_ROUND
            };
            let gone_at = std::time::Instant::now() + linger;
            let mut object = existing.clone();
            object["metadata"]["deletionTimestamp"] = json!(jiff::Timestamp::now().to_string());
            object["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            object["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
            state.dying.insert(key.clone(), Some(gone_at));
            state.objects.insert(key, object.clone());
            ok(&object)
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

/// Drops the objects whose deletion has finished, with what the simulation kept about them.
fn collect_garbage(state: &mut State) {
    let now = std::time::Instant::now();
    let gone: Vec<_> = state
        .dying
        .iter()
        .filter(|(_, until)| until.is_some_and(|until| until <= now))
        .map(|(key, _)| key.clone())
        .collect();
    for key in gone {
        state.dying.remove(&key);
        state.objects.remove(&key);
        let (plural, _, name) = &key;
        if plural == "deployments" {
            state.reads.remove(name);
            state.rolled_at.remove(name);
            state.terminating.remove(name);
        }
        if plural == "jobs" {
            state.jobs.remove(name);
        }
    }
}

/// The wall time of one simulated second of pod termination.
fn second(state: &State) -> std::time::Duration {
    if state.termination_second.is_zero() {
        TERMINATION_SECOND
    } else {
        state.termination_second
    }
}

/// How long a Deployment's pods take to stop, in simulated seconds: the longest preStop sleep
/// (a container gets SIGTERM when its hook ends), at most the grace period (SIGKILL then), and
/// at least a second.
fn termination_seconds(deployment: &Value) -> u32 {
    let spec = &deployment["spec"]["template"]["spec"];
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    let longest = spec["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|container| {
            container
                .pointer("/lifecycle/preStop/sleep/seconds")?
                .as_u64()
        })
        .max()
        .unwrap_or(0);
    u32::try_from(longest.min(grace).max(1)).unwrap_or(u32::MAX)
}

/// Whether `namespace` is being deleted.
fn namespace_terminating(state: &State, namespace: &str) -> bool {
    !namespace.is_empty()
        && state
            .dying
            .contains_key(&("namespaces".into(), String::new(), namespace.into()))
}

/// The API server's answer (its NamespaceLifecycle admission plugin) to a new object in a
/// namespace being deleted: 403 with the `NamespaceTerminating` cause.
fn forbidden_in_terminating_namespace(
    plural: &str,
    group: &str,
    name: &str,
    namespace: &str,
    body: &[u8],
) -> Response<Body> {
    let name = if name.is_empty() {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|object| object["metadata"]["name"].as_str().map(String::from))
            .unwrap_or_default()
    } else {
        name.to_string()
    };
    let resource = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("{resource} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated"),
        "reason": "Forbidden",
        "details": {"name": name, "group": group, "kind": plural, "causes": [
            {"reason": "NamespaceTerminating",
             "message": format!("namespace {namespace} is being terminated"),
             "field": "metadata.namespace"}]},
        "code": 403});
    Response::builder()
        .status(403)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// The status of a Deployment being deleted: the controller only counts its pods, which the
/// garbage collector is deleting.
fn being_deleted(mut deployment: Value) -> Value {
    let generation = deployment["metadata"]["generation"].clone();
    deployment["status"] = json!({"observedGeneration": generation, "replicas": 0,
        "updatedReplicas": 0, "readyReplicas": 0, "availableReplicas": 0});
    deployment
}

/// Once a rollout of a new generation has finished, the pods it replaced stay in their preStop
/// sleep: recorded here for the pod list, and counted in `terminatingReplicas` by a server
/// that reports it. `status.replicas` leaves them out, as a real controller does.
fn old_pods_terminate(state: &mut State, mut deployment: Value) -> Value {
    let name = deployment["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(1);
    let desired = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let status = &deployment["status"];
    let count = |field: &str| status[field].as_i64().unwrap_or(0);
    let finished = status["observedGeneration"].as_i64() == Some(generation)
        && count("updatedReplicas") == desired
        && count("replicas") == desired;
    let recorded = state
        .terminating
        .get(&name)
        .is_some_and(|old| old.generation == generation);
    // Generation 1 replaced nothing.
    if finished && generation > 1 && !recorded {
        let until = std::time::Instant::now() + second(state) * termination_seconds(&deployment);
        state.terminating.insert(
            name.clone(),
            Terminating {
                generation,
                pods: desired,
                until,
            },
        );
    }
    if state.reports_terminating_replicas {
        let now = std::time::Instant::now();
        let pods = state
            .terminating
            .get(&name)
            .filter(|old| old.until > now)
            .map_or(0, |old| old.pods);
        deployment["status"]["terminatingReplicas"] = json!(pods);
    }
    deployment
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

/// A server-side apply by `manager` ([`fields::apply`]), then what the server adds: identity and
/// version, a Service's clusterIP, a Deployment's generation when its spec changes.
fn apply(
    existing: Option<Value>,
    applied: Value,
    version: u64,
    plural: &str,
    manager: &str,
    force: bool,
) -> Result<Value, String> {
    let now = jiff::Timestamp::now().to_string();
    let mut object = fields::apply(existing.as_ref(), &applied, manager, force, &now)?;
    if existing.is_none() {
        object["metadata"]["uid"] = json!(format!("uid-{version}"));
        object["metadata"]["creationTimestamp"] = json!(now);
    }
    for field in ["name", "namespace"] {
        if let Some(value) = applied["metadata"].get(field) {
            object["metadata"][field] = value.clone();
        }
    }
    for field in ["apiVersion", "kind"] {
        if let Some(value) = applied.get(field) {
            object[field] = value.clone();
        }
    }
    if plural == "services" && object["spec"].is_object() && object["spec"]["clusterIP"].is_null() {
        object["spec"]["clusterIP"] = json!("10.96.0.10");
    }
    object["metadata"]["resourceVersion"] = json!(version.to_string());
    bump_generation(existing.as_ref(), &mut object, plural);
    Ok(object)
}

/// A Deployment's generation moves when its spec changes.
fn bump_generation(existing: Option<&Value>, object: &mut Value, plural: &str) {
    if plural != "deployments" {
        return;
    }
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(0);
    if existing.map(|existing| &existing["spec"]) != Some(&object["spec"]) {
        object["metadata"]["generation"] = json!(generation + 1);
    }
}

/// A Deployment written with a new generation starts a rollout: the controller's reads count
/// from it.
fn note_rollout(state: &mut State, plural: &str, name: &str, before: &Value, after: &Value) {
    if plural == "deployments"
        && before["metadata"]["generation"] != after["metadata"]["generation"]
    {
        state.reads.insert(name.to_string(), 0);
        state
            .rolled_at
            .insert(name.to_string(), std::time::Instant::now());
    }
}

/// The API server's validation of what wikikube renders, where an object can become invalid by
/// a merge of two managers' fields.
fn invalid(plural: &str, name: &str, object: &Value) -> Option<String> {
    let spec = &object["spec"];
    (plural == "poddisruptionbudgets"
        && !spec["minAvailable"].is_null()
        && !spec["maxUnavailable"].is_null())
    .then(|| {
        format!("PodDisruptionBudget.policy \"{name}\" is invalid: spec: Invalid value: {spec}: minAvailable and maxUnavailable cannot be both set")
    })
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
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
                let name = deployment["metadata"]["name"].as_str().unwrap();
                items.extend(deployment_pods(state, namespace, name));
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

/// The pods listed under a Deployment's selector: one per ready replica, the replaced ones
/// still in their preStop sleep, and what a real cluster also lists until garbage collection.
/// A Deployment being deleted has only terminating pods.
fn deployment_pods(state: &State, namespace: &str, name: &str) -> Vec<Value> {
    let key = (
        "deployments".to_string(),
        namespace.to_string(),
        name.to_string(),
    );
    let Some(deployment) = state.objects.get(&key) else {
        return Vec::new();
    };
    let now = std::time::Instant::now();
    let since = jiff::Timestamp::now().to_string();
    let pod = |pod: String, deleting: bool, status: Value| {
        let mut metadata = json!({"name": pod, "namespace": namespace});
        if deleting {
            metadata["deletionTimestamp"] = json!(since);
        }
        json!({"metadata": metadata, "status": status})
    };
    let running =
        || json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
    let mut items = Vec::new();
    if state.dying.contains_key(&key) {
        let replicas = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
        for index in 0..replicas {
            items.push(pod(format!("{name}-pod-{index}"), true, running()));
        }
        return items;
    }
    let ready = deployment["status"]["readyReplicas"].as_i64().unwrap_or(0);
    for index in 0..ready {
        items.push(pod(format!("{name}-pod-{index}"), false, running()));
    }
    if let Some(old) = state.terminating.get(name).filter(|old| old.until > now) {
        // Still Ready until their containers stop: only the deletionTimestamp tells them apart.
        for index in 0..old.pods {
            items.push(pod(format!("{name}-old-{index}"), true, running()));
        }
    }
    // What a real cluster also lists under the selector until garbage collection: an evicted
    // pod, one not yet scheduled, and one running but not ready. None serves: the proxy
    // answers 503 for them, so a smoke check sent there fails.
    items.push(pod(
        format!("{name}-evicted-0"),
        false,
        json!({"phase": "Failed", "reason": "Evicted"}),
    ));
    items.push(pod(
        format!("{name}-pending-0"),
        false,
        json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False"}]}),
    ));
    items.push(pod(
        format!("{name}-unready-0"),
        false,
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}),
    ));
    items
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
