//! The gate between a phase and the next: every Deployment of the phase rolled out, and for the
//! canaries also the smoke checks passed and a soak during which they stay healthy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use crate::config::SmokeCheck;
use crate::plan::{Phase, Step};
use crate::progress::Progress;
use crate::rollout::{self, Rollout, WaitOptions};
use crate::{smoke, Error, Target};

/// A Deployment that was applied, and when (by the server's clock) our apply last changed it.
#[derive(Clone, Debug)]
pub struct Applied {
    /// Its step.
    pub step: Step,
    /// When our apply changed it; `None` if the server did not say.
    pub since: Option<Timestamp>,
}

/// What the gate needs to know.
pub struct Gate<'a> {
    /// The cluster.
    pub target: &'a Target,
    /// The namespace.
    pub namespace: &'a str,
    /// Status polling.
    pub poll: Duration,
    /// Time allowed past a Deployment's own progressDeadlineSeconds.
    pub extra_wait: Duration,
    /// Set when any cluster failed: stop waiting.
    pub abort: &'a AtomicBool,
    /// Where events go.
    pub progress: &'a dyn Progress,
}

impl Gate<'_> {
    /// Waits for every Deployment in `applied` to roll out, all at once.
    pub async fn rollouts(&self, phase: Phase, applied: &[Applied]) -> Result<(), Error> {
        let waits = applied.iter().map(|applied| self.rollout(phase, applied));
        futures::future::try_join_all(waits).await?;
        Ok(())
    }

    async fn rollout(&self, phase: Phase, applied: &Applied) -> Result<(), Error> {
        let api: Api<Deployment> = Api::namespaced(self.target.client.clone(), self.namespace);
        let name = &applied.step.object.name;
        let deadline = applied
            .step
            .body
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(|seconds| seconds.as_u64())
            .unwrap_or(600);
        let options = WaitOptions {
            poll: self.poll,
            timeout: Duration::from_secs(deadline) + self.extra_wait,
        };
        // Without the server's time of our apply, take a time before it: a condition older
        // than the whole run is certainly stale.
        let since = applied.since.unwrap_or(Timestamp::UNIX_EPOCH);
        rollout::wait(&api, name, since, options, self.abort, |message| {
            self.progress.event(
                &self.target.name,
                Some(phase),
                &format!("{name}: {message}"),
            );
        })
        .await?;
        self.progress.event(
            &self.target.name,
            Some(phase),
            &format!("{name}: rolled out"),
        );
        Ok(())
    }

    /// Runs the smoke checks against the pods of every canary.
    pub async fn smoke(&self, canaries: &[Applied], checks: &[SmokeCheck]) -> Result<(), Error> {
        for applied in canaries {
            let name = &applied.step.object.name;
            let selector = applied
                .step
                .body
                .pointer("/spec/selector/matchLabels")
                .and_then(|labels| labels.as_object())
                .map(|labels| {
                    labels
                        .iter()
                        .map(|(key, value)| format!("{key}={}", value.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let port = smoke::https_port(&applied.step.body);
            let passed = smoke::run(
                &self.target.client,
                self.namespace,
                name,
                &selector,
                port,
                checks,
            )
            .await?;
            if passed > 0 {
                self.progress.event(
                    &self.target.name,
                    Some(Phase::Canary),
                    &format!("{name}: {passed} smoke check(s) passed"),
                );
            }
        }
        Ok(())
    }

    /// Keeps the canaries under watch for `soak`: any of them falling out of a complete rollout
    /// (pods crashing after they became ready) fails the gate.
    pub async fn soak(&self, canaries: &[Applied], soak: Duration) -> Result<(), Error> {
        if soak.is_zero() {
            return Ok(());
        }
        self.progress.event(
            &self.target.name,
            Some(Phase::Canary),
            &format!("soaking for {} s", soak.as_secs()),
        );
        let api: Api<Deployment> = Api::namespaced(self.target.client.clone(), self.namespace);
        let end = tokio::time::Instant::now() + soak;
        // Watch at least every 5 s, but never busier than the rollout poll.
        let interval = self
            .poll
            .max(Duration::from_millis(1))
            .min(Duration::from_secs(5));
        loop {
            if self.abort.load(Ordering::Relaxed) {
                return Err(Error::Aborted);
            }
            for applied in canaries {
                let name = &applied.step.object.name;
                let deployment = api
                    .get(name)
                    .await
                    .map_err(|source| Error::kube(format!("read Deployment/{name}"), source))?;
                let since = applied.since.unwrap_or(Timestamp::UNIX_EPOCH);
                if let Rollout::Waiting(reason) | Rollout::Failed(reason) =
                    rollout::check(&deployment, since)
                {
                    return Err(Error::Soak {
                        deployment: name.clone(),
                        reason,
                    });
                }
            }
            let now = tokio::time::Instant::now();
            if now >= end {
                return Ok(());
            }
            tokio::time::sleep(interval.min(end - now)).await;
        }
    }
}
