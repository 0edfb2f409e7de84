//! Maintenance Jobs in a cluster (`wikikube script --env ENV`, and the schema Jobs of a
//! deploy): create the Job that `render` made, wait for its pod, stream the script's output or
//! collect it at the end, and report how it ended: succeeded, failed with the container's exit
//! code, or stopped at its deadline.
//!
//! It does not build Jobs (`wikikube_render::maintenance` does), retry a failed one (a Job has
//! `backoffLimit: 0`: running a script twice is a person's decision), or delete one (the Job's
//! `ttlSecondsAfterFinished` keeps the output for a while, then the cluster removes it).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, TryStreamExt};
/// The Job type [`run`] takes, so callers need no k8s-openapi of their own.
pub use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams, PostParams};
use serde::Serialize;

use wikikube_render::maintenance::SCRIPT_CONTAINER;

use crate::progress::Progress;
use crate::{Error, Target};

/// The label the Job controller puts on a Job's pods (Kubernetes 1.27 and later).
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// How many of the script's last lines a report keeps.
pub const TAIL_LINES: usize = 40;

/// How a Job is run and watched.
#[derive(Clone, Debug)]
pub struct JobOptions {
    /// Time between two reads of the Job's and its pod's status.
    pub poll: Duration,
    /// Stream the script's output while it runs; otherwise it is read once, at the end.
    pub follow: bool,
    /// How long the pod may take to start (scheduling, image pull) before we stop waiting.
    /// The Job's own deadline bounds the rest; a Job without one is waited for until it ends.
    pub start_timeout: Duration,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            poll: Duration::from_secs(1),
            follow: false,
            // An app image of a few GB may take minutes to pull onto a fresh node.
            start_timeout: Duration::from_secs(600),
        }
    }
}

/// How a Job ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    /// The script exited 0.
    Succeeded,
    /// The script failed: its exit code when the container reported one.
    Failed {
        /// The container's exit code.
        exit_code: Option<i32>,
        /// The Job's or container's reason (`BackoffLimitExceeded`, `Error`, `OOMKilled`).
        reason: String,
    },
    /// The Job ran past its activeDeadlineSeconds and was stopped.
    DeadlineExceeded {
        /// The deadline, in seconds.
        seconds: Option<i64>,
    },
}

impl Outcome {
    /// The exit status a command passes on: the script's own, 1 when it has none.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Succeeded => 0,
            Outcome::Failed {
                exit_code: Some(code),
                ..
            } if *code != 0 => *code,
            _ => 1,
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Succeeded => f.write_str("succeeded"),
            Outcome::Failed {
                exit_code: Some(code),
                reason,
            } => write!(f, "failed with exit code {code} ({reason})"),
            Outcome::Failed {
                exit_code: None,
                reason,
            } => write!(f, "failed ({reason})"),
            Outcome::DeadlineExceeded { seconds: Some(s) } => {
                write!(f, "was stopped at its deadline of {s} s")
            }
            Outcome::DeadlineExceeded { seconds: None } => f.write_str("exceeded its deadline"),
        }
    }
}

/// What one Job did.
#[derive(Clone, Debug, Serialize)]
pub struct JobReport {
    /// The cluster it ran in.
    pub cluster: String,
    /// The Job's name (`kubectl logs job/NAME` while it is kept).
    pub job: String,
    /// Its pod, once there was one.
    pub pod: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The script's last lines of output (at most [`TAIL_LINES`]).
    pub tail: Vec<String>,
    /// Wall time, in seconds.
    pub seconds: f64,
}

/// A name suffix that differs between runs: the time in milliseconds, in base 36.
pub fn run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    let mut value = millis;
    let mut digits = Vec::new();
    while value > 0 {
        let digit = u32::try_from(value % 36).expect("below 36");
        digits.push(char::from_digit(digit, 36).expect("a base-36 digit"));
        value /= 36;
    }
    digits.iter().rev().collect()
}

/// Creates `job` in `target` and waits for it to end; every line of the script's output goes to
/// `output` (as it comes with `follow`, at the end otherwise). A failed script is an `Ok` report
/// with its outcome; `Err` is for the cluster not doing what was asked.
pub async fn run(
    target: &Target,
    namespace: &str,
    job: &Job,
    options: &JobOptions,
    progress: &dyn Progress,
    output: &(dyn Fn(&str) + Send + Sync),
) -> Result<JobReport, Error> {
    let started = Instant::now();
    let name = job.metadata.name.clone().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(target.client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(target.client.clone(), namespace);
    let event = |message: &str| progress.event(&target.name, None, message);
    jobs.create(&PostParams::default(), job)
        .await
        .map_err(|source| Error::kube(format!("create Job/{name}"), source))?;
    event(&format!("Job/{name} created"));

    let mut tail: VecDeque<String> = VecDeque::new();
    let mut keep = |line: &str| {
        output(line);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    };
    let mut pod_name = None;
    let mut streamed = false;
    let mut last_wait = String::new();
    let mut ever_started = false;
    let outcome = loop {
        let current = jobs
            .get(&name)
            .await
            .map_err(|source| Error::kube(format!("read Job/{name}"), source))?;
        let pod = find_pod(&pods, &name).await?;
        if let Some(pod) = &pod {
            pod_name = pod.metadata.name.clone();
        }
        if let Some(outcome) = finished(&current, pod.as_ref()) {
            break outcome;
        }
        let state = match &pod {
            Some(pod) => started_or_waiting(pod),
            None => Err("no pod yet".to_string()),
        };
        match state {
            Ok(()) if !ever_started => {
                ever_started = true;
                continue;
            }
            Ok(()) if options.follow && !streamed => {
                let pod = pod_name.clone().unwrap_or_default();
                event(&format!(
                    "Job/{name}: pod {pod} running; its output follows"
                ));
                stream(&pods, &pod, &mut keep).await?;
                streamed = true;
                continue;
            }
            Ok(()) => {}
            Err(waiting) if !ever_started && started.elapsed() > options.start_timeout => {
                return Err(Error::JobStart {
                    job: name,
                    seconds: options.start_timeout.as_secs(),
                    reason: waiting,
                });
            }
            Err(waiting) => {
                if waiting != last_wait {
                    event(&format!("Job/{name}: {waiting}"));
                    last_wait = waiting;
                }
            }
        }
        tokio::time::sleep(options.poll).await;
    };
    if !streamed {
        if let Some(pod) = &pod_name {
            // The pod of a Job stopped at its deadline may be gone already: the output then
            // is lost, which the report says rather than failing.
            match collect(&pods, pod).await {
                Ok(text) => text.lines().for_each(&mut keep),
                Err(error) => keep(&format!("(the output could not be read: {error})")),
            }
        }
    }
    event(&format!("Job/{name} {outcome}"));
    Ok(JobReport {
        cluster: target.name.clone(),
        job: name,
        pod: pod_name,
        outcome,
        tail: tail.into_iter().collect(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn find_pod(pods: &Api<Pod>, job: &str) -> Result<Option<Pod>, Error> {
    let params = ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job}"));
    let list = pods
        .list(&params)
        .await
        .map_err(|source| Error::kube(format!("list the pods of Job/{job}"), source))?;
    Ok(list.items.into_iter().next())
}

fn script_status(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|status| status.name == SCRIPT_CONTAINER)
}

/// `Ok` once the script's container started (its output can be read); otherwise why not yet.
fn started_or_waiting(pod: &Pod) -> Result<(), String> {
    let status = script_status(pod);
    let state = status.and_then(|status| status.state.as_ref());
    if state.is_some_and(|state| state.running.is_some() || state.terminated.is_some()) {
        return Ok(());
    }
    let waiting = state.and_then(|state| state.waiting.as_ref());
    Err(match waiting {
        Some(waiting) => format!(
            "pod waiting: {}{}",
            waiting.reason.as_deref().unwrap_or("starting"),
            waiting
                .message
                .as_deref()
                .map(|message| format!(": {message}"))
                .unwrap_or_default()
        ),
        None => format!(
            "pod {}",
            pod.status
                .as_ref()
                .and_then(|status| status.phase.as_deref())
                .unwrap_or("Pending")
        ),
    })
}

/// How the Job ended, once its Complete or Failed condition is true.
fn finished(job: &Job, pod: Option<&Pod>) -> Option<Outcome> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let holds = |kind: &str| {
        conditions
            .iter()
            .find(|condition| condition.type_ == kind && condition.status == "True")
    };
    if holds("Complete").is_some() {
        return Some(Outcome::Succeeded);
    }
    let failed = holds("Failed")?;
    let reason = failed.reason.clone().unwrap_or_else(|| "Failed".into());
    if reason == "DeadlineExceeded" {
        let seconds = job
            .spec
            .as_ref()
            .and_then(|spec| spec.active_deadline_seconds);
        return Some(Outcome::DeadlineExceeded { seconds });
    }
    let terminated = pod
        .and_then(script_status)
        .and_then(|status| status.state.as_ref())
        .and_then(|state| state.terminated.as_ref());
    Some(Outcome::Failed {
        exit_code: terminated.map(|terminated| terminated.exit_code),
        reason: terminated
            .and_then(|terminated| terminated.reason.clone())
            .unwrap_or(reason),
    })
}

async fn stream(pods: &Api<Pod>, pod: &str, keep: &mut impl FnMut(&str)) -> Result<(), Error> {
    let params = LogParams {
        container: Some(SCRIPT_CONTAINER.into()),
        follow: true,
        ..LogParams::default()
    };
    let reader = pods
        .log_stream(pod, &params)
        .await
        .map_err(|source| Error::kube(format!("follow the output of pod {pod}"), source))?;
    let mut lines = std::pin::pin!(reader.lines());
    // A connection that drops mid-stream ends the following; the Job's status still decides
    // the outcome, and `kubectl logs` has the rest while the Job is kept.
    while let Ok(Some(line)) = lines.try_next().await {
        keep(&line);
    }
    Ok(())
}

async fn collect(pods: &Api<Pod>, pod: &str) -> Result<String, Error> {
    let params = LogParams {
        container: Some(SCRIPT_CONTAINER.into()),
        ..LogParams::default()
    };
    pods.logs(pod, &params)
        .await
        .map_err(|source| Error::kube(format!("read the output of pod {pod}"), source))
}
