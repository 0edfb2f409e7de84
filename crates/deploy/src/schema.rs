//! Schema on deploy: before any new code serves a request (before the debug and canary
//! releases, right after the shared objects), a deploy runs what the new code needs of the
//! wikis' databases, one Job per wiki ([`crate::jobs`]):
//! - `update.php --quick` for every wiki whose schema fingerprint changed since the last
//!   deploy that finished (the fingerprint covers the app image, the wiki's MediaWiki version
//!   and code, the farm's extensions and skins and its wiki list: see
//!   [`wikikube_render::maintenance::WikiSchema`]);
//! - the installer for every wiki that deploy did not have, and for every wiki when no
//!   finished deploy recorded fingerprints (the first deploy). The installer Job probes the
//!   database first and only updates a wiki whose tables exist, so a farm moved to wikikube
//!   with its databases is never installed over.
//!
//! Schema changes go first because MediaWiki's new code may need them from its first request
//! (Wikimedia applies schema changes before the code that uses them); MediaWiki's schema
//! changes keep the previous code working, which is why the running release can stay as it is
//! meanwhile, and why a rollback does not undo them.
//!
//! The database is shared by the environment's clusters, so the Jobs run once, in the first
//! cluster; the others wait for them. The Jobs run one after the other: two schema changes on
//! one server at once would compete for its locks. A failed Job stops the deploy: the report
//! names the wiki and shows the script's last lines, nothing of the new releases was applied,
//! and the history records the failure.
//!
//! This module decides and runs; it does not build Jobs (`render` does) or delete them (their
//! `ttlSecondsAfterFinished` does).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;

use wikikube_render::maintenance::{JobKind, JobSettings, Maintenance};
use wikikube_render::Rendered;

use crate::history::{Record, State};
use crate::jobs::{self, JobOptions, Outcome};
use crate::progress::Progress;
use crate::{Error, Target};

/// A default bound on one wiki's schema Job: an hour, long enough for update.php on a large
/// wiki, short enough that a stuck migration does not hold the deploy lock for a day.
pub const DEFAULT_DEADLINE_SECONDS: u32 = 3600;

/// What a deploy needs to run schema Jobs.
#[derive(Clone, Debug)]
pub struct Schema {
    /// The Job template, from the render.
    pub template: Maintenance,
    /// Who runs the Jobs, their deadline, and how long they are kept.
    pub settings: JobSettings,
    /// How the Jobs are watched.
    pub jobs: JobOptions,
}

impl Schema {
    /// Schema Jobs for a rendered Kubernetes environment, run by `user`, each stopped after
    /// `deadline_seconds` ([`DEFAULT_DEADLINE_SECONDS`] is the CLI's default); `None` when the
    /// environment has no maintenance template (a local one).
    pub fn of(rendered: &Rendered, user: &str, deadline_seconds: u32) -> Option<Schema> {
        Some(Schema {
            template: rendered.maintenance.clone()?,
            settings: JobSettings {
                user: user.to_string(),
                deadline_seconds: Some(deadline_seconds),
                ..JobSettings::default()
            },
            jobs: JobOptions::default(),
        })
    }
}

/// One wiki's schema Job to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Work {
    /// The wiki.
    pub wiki: String,
    /// Update or install.
    pub kind: JobKind,
}

/// Every wiki's fingerprint, as a record keeps them.
pub fn fingerprints(template: &Maintenance) -> BTreeMap<String, String> {
    template
        .wikis
        .iter()
        .map(|(wiki, schema)| (wiki.clone(), schema.fingerprint.clone()))
        .collect()
}

/// What revision `revision` must run, given the records before it: compared with the newest
/// finished deploy that recorded fingerprints.
pub fn work(template: &Maintenance, records: &[Record], revision: u64) -> Vec<Work> {
    let previous = records.iter().rev().find(|record| {
        record.state == State::Done && record.revision < revision && !record.schema.is_empty()
    });
    template
        .wikis
        .iter()
        .filter_map(|(wiki, schema)| {
            let kind = match previous.map(|record| record.schema.get(wiki)) {
                None | Some(None) => JobKind::Install,
                Some(Some(before)) if *before != schema.fingerprint => JobKind::Update,
                Some(Some(_)) => return None,
            };
            Some(Work {
                wiki: wiki.clone(),
                kind,
            })
        })
        .collect()
}

/// Runs `work` in `target`, one Job after the other; the first failure stops it.
pub(crate) async fn run(
    target: &Target,
    namespace: &str,
    schema: &Schema,
    work: &[Work],
    revision: u64,
    abort: &AtomicBool,
    progress: &dyn Progress,
) -> Result<(), Error> {
    if work.is_empty() {
        progress.event(&target.name, None, "schema: no wiki changed");
        return Ok(());
    }
    progress.event(
        &target.name,
        None,
        &format!("schema: {} Job(s) before any new code runs", work.len()),
    );
    let id = format!("{revision}{}", jobs::run_id());
    for item in work {
        if abort.load(Ordering::Relaxed) {
            return Err(Error::Aborted);
        }
        let (job, script) = match item.kind {
            JobKind::Install => (
                schema
                    .template
                    .install_job(&item.wiki, &schema.settings, &id),
                "install.php",
            ),
            _ => (
                Some(
                    schema
                        .template
                        .update_job(&item.wiki, &schema.settings, &id),
                ),
                "update.php",
            ),
        };
        let Some(job) = job else { continue };
        let report = jobs::run(
            target,
            namespace,
            &job,
            &schema.jobs,
            progress,
            &|_: &str| {},
        )
        .await?;
        if report.outcome != Outcome::Succeeded {
            return Err(Error::Schema(Box::new(crate::SchemaFailure {
                wiki: item.wiki.clone(),
                script: script.into(),
                job: report.job,
                outcome: report.outcome,
                tail: report.tail,
            })));
        }
        progress.event(
            &target.name,
            None,
            &format!(
                "schema: {} {} ({:.1} s)",
                item.wiki,
                match item.kind {
                    JobKind::Install => "installed (or updated, when its tables existed)",
                    _ => "updated",
                },
                report.seconds
            ),
        );
    }
    Ok(())
}

/// The other clusters' wait for the first cluster's schema Jobs.
pub(crate) struct Gate {
    sender: tokio::sync::watch::Sender<Option<bool>>,
}

impl Gate {
    /// A gate that is closed when there are schema Jobs to wait for, open otherwise.
    pub(crate) fn new(closed: bool) -> Gate {
        let (sender, _) = tokio::sync::watch::channel((!closed).then_some(true));
        Gate { sender }
    }

    /// Opens the gate (`ok`: the Jobs succeeded), once; later calls change nothing.
    pub(crate) fn open(&self, ok: bool) {
        self.sender.send_if_modified(|state| {
            if state.is_none() {
                *state = Some(ok);
                true
            } else {
                false
            }
        });
    }

    /// Waits until the gate opens; `Aborted` if the Jobs failed or any cluster did.
    pub(crate) async fn wait(&self, abort: &AtomicBool) -> Result<(), Error> {
        let mut receiver = self.sender.subscribe();
        loop {
            if let Some(ok) = *receiver.borrow_and_update() {
                return if ok { Ok(()) } else { Err(Error::Aborted) };
            }
            if abort.load(Ordering::Relaxed) {
                return Err(Error::Aborted);
            }
            // The abort flag is not a channel: look at it now and then.
            tokio::select! {
                _ = receiver.changed() => {}
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
}
