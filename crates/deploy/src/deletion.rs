//! Deletes take time. A foreground delete (how [`crate::apply::delete`] deletes) returns at
//! once, but the object stays, with `metadata.deletionTimestamp` and the `foregroundDeletion`
//! finalizer, until the garbage collector has removed its dependents: a Deployment's ReplicaSets
//! and pods, which first run their preStop sleep, up to their grace period. Only then does the
//! server answer 404.
//!
//! Applying the same name meanwhile patches the dying object, and the object then disappears
//! with the new content in it: a deploy right after a rollback or a prune that removed a
//! release would report success, and the release vanish a few minutes later. So every apply of
//! a deploy or rollback goes through [`apply_anew`]: an object that turns out to be going is
//! waited for until it is gone, then created afresh.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::api::DynamicObject;
use kube::Client;

use crate::apply::{self, Mode, ObjectRef};
use crate::Error;

/// How to wait for a deleted object to be gone.
#[derive(Clone, Copy, Debug)]
pub struct WaitOptions {
    /// Time between two reads.
    pub poll: Duration,
    /// Give up after this long.
    pub timeout: Duration,
}

/// How often a long wait says it is still waiting.
const REPORT_EVERY: Duration = Duration::from_secs(15);

/// Server-side applies `body`; if the object turns out to be being deleted, waits until the
/// server answers 404 for it ([`wait_gone`]) and applies it again, so that what is applied is a
/// new object that stays. `report` hears what is waited for.
///
/// The answer to the apply is what tells: it costs no request more than an apply of a live
/// object. The one patch of a dying object changes nothing that acts: the controllers leave a
/// Deployment being deleted alone, and a versioned ConfigMap or Secret has the same content
/// under the same name.
pub async fn apply_anew(
    client: &Client,
    namespace: &str,
    target: &ObjectRef,
    body: &serde_json::Value,
    options: WaitOptions,
    abort: &AtomicBool,
    report: impl FnMut(&str),
) -> Result<DynamicObject, Error> {
    let applied = apply::apply_value(client, namespace, target, body, Mode::Apply).await?;
    if applied.metadata.deletion_timestamp.is_none() {
        return Ok(applied);
    }
    wait_gone(client, namespace, target, options, abort, report).await?;
    apply::apply_value(client, namespace, target, body, Mode::Apply).await
}

/// Polls an object until the server answers 404 for it, or `options.timeout` has passed.
pub async fn wait_gone(
    client: &Client,
    namespace: &str,
    target: &ObjectRef,
    options: WaitOptions,
    abort: &AtomicBool,
    mut report: impl FnMut(&str),
) -> Result<(), Error> {
    let started = tokio::time::Instant::now();
    let mut reported: Option<tokio::time::Instant> = None;
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(Error::Aborted);
        }
        let Some(live) = apply::get(client, namespace, target).await? else {
            return Ok(());
        };
        let Some(since) = live.metadata.deletion_timestamp.as_ref().map(|time| time.0) else {
            // Gone and already created again by someone else: it is a live object now, and
            // the caller's apply takes it over as it would any other.
            return Ok(());
        };
        let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
        let waited = started.elapsed();
        if waited >= options.timeout {
            return Err(Error::StillDeleting {
                object: target.to_string(),
                since: since.to_string(),
                waited: options.timeout,
                finalizers,
            });
        }
        if reported.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
            report(&format!(
                "{target} is being deleted (since {since}, finalizers: {}); waiting for it to be \
                 gone before applying it again ({} s of at most {} s)",
                if finalizers.is_empty() {
                    "none".to_string()
                } else {
                    finalizers.join(", ")
                },
                waited.as_secs(),
                options.timeout.as_secs()
            ));
            reported = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(options.poll).await;
    }
}
