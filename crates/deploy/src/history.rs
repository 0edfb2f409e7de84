//! History: a record of every deploy and rollback, kept in each cluster, and the full objects of
//! the last few revisions, so that `rollback` can re-apply them.
//!
//! - Records live in the ConfigMap [`HISTORY`] (key `records.json`), at most [`KEEP_RECORDS`],
//!   each a few hundred bytes: who, when, images, a hash of the objects, state, failure.
//! - Full revisions live in one Secret each, [`REVISION_PREFIX`]`N`, as gzip-compressed JSON.
//!   A Secret, not a ConfigMap, because they hold the site's Secret with its values; compressed,
//!   because a farm's objects are mostly repetitive config text (a few KiB compressed, where the
//!   API's object limit is 1 MiB). Only the newest [`KEEP_REVISIONS`] are kept; older records
//!   stay as summaries.
//!
//! A record's [`State`] is written before each step of a deploy, so an interrupted deploy is
//! never "pending" without saying where it stopped: the next `deploy` refuses to start over it
//! and asks for `--resume` (go on from that state) or `rollback` (go back to the last good one).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::apply::{self, Mode, ObjectRef};
use crate::plan::Step;
use crate::Error;

/// The ConfigMap of the records.
pub const HISTORY: &str = "wikikube-history";
/// The name prefix of the revision Secrets.
pub const REVISION_PREFIX: &str = "wikikube-revision-";
/// How many records are kept.
pub const KEEP_RECORDS: usize = 100;
/// How many full revisions are kept.
pub const KEEP_REVISIONS: usize = 5;
/// How many done revisions' versioned ConfigMaps and Secrets stay by default (`deploy.toml`'s
/// `[retention] config_revisions`).
pub const DEFAULT_CONFIG_REVISIONS: usize = 3;
/// The largest compressed revision accepted, well under the API's 1 MiB per object.
pub const MAX_REVISION_BYTES: usize = 768 * 1024;

/// Where a deploy stands. Each is written before the step that follows it begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Recorded; shared objects and debug releases are being applied.
    Started,
    /// The canaries are applied; their rollout, smoke checks and soak are running.
    CanaryApplied,
    /// The canaries passed the gate; main is next.
    CanaryHealthy,
    /// main is applied; its rollout and the prune are running.
    MainApplied,
    /// Everything is out. Terminal.
    Done,
    /// It failed and what it touched was put back. Terminal.
    RolledBack,
}

impl State {
    /// Whether nothing more will happen to this deploy.
    pub fn is_terminal(self) -> bool {
        matches!(self, State::Done | State::RolledBack)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = serde_json::to_value(self).expect("states serialize");
        f.write_str(text.as_str().unwrap_or_default())
    }
}

/// What a revision was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Action {
    /// `wikikube deploy`.
    Deploy,
    /// `wikikube rollback`, re-applying an earlier revision.
    Rollback {
        /// The revision re-applied.
        to: u64,
    },
}

/// One deploy or rollback in one cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 1, 2, 3... per namespace.
    pub revision: u64,
    /// Deploy or rollback.
    pub action: Action,
    /// Who ran it.
    pub user: String,
    /// When it started.
    pub started: Timestamp,
    /// When its state last changed.
    pub updated: Timestamp,
    /// Where it stands.
    pub state: State,
    /// The images of every Deployment: name -> images of its containers.
    pub images: BTreeMap<String, Vec<String>>,
    /// sha256 of the objects applied (values included), shortened: equal hashes, equal deploys.
    pub values_hash: String,
    /// Why it failed, naming the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Whether the full objects are still stored (only the newest revisions keep them).
    pub stored: bool,
    /// Each wiki's schema fingerprint at this revision (none for a rollback, or a deploy
    /// without schema Jobs): what the next deploy compares with ([`crate::schema`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub schema: BTreeMap<String, String>,
}

impl Record {
    /// A new record for `steps`.
    pub fn new(revision: u64, action: Action, user: &str, steps: &[Step]) -> Record {
        let now = Timestamp::now();
        Record {
            revision,
            action,
            user: user.to_string(),
            started: now,
            updated: now,
            state: State::Started,
            images: images(steps),
            values_hash: values_hash(steps),
            failure: None,
            stored: true,
            schema: BTreeMap::new(),
        }
    }
}

/// The versioned (immutable, content-named) ConfigMaps and Secrets among `steps`.
pub fn versioned(steps: &[Step]) -> Vec<ObjectRef> {
    steps
        .iter()
        .filter(|step| step.body.get("immutable") == Some(&serde_json::Value::Bool(true)))
        .map(|step| step.object.clone())
        .collect()
}

/// The versioned objects of the newest `count` done revisions in `records`: what a prune keeps
/// besides the objects going live. Read from the stored revisions, so `count` is bounded by
/// [`KEEP_REVISIONS`]: a version only a summary record remembers is one no rollback can reach.
pub async fn retained(
    client: &kube::Client,
    namespace: &str,
    records: &[Record],
    count: usize,
) -> Result<Vec<ObjectRef>, Error> {
    let mut retained = Vec::new();
    let newest_done = records
        .iter()
        .rev()
        .filter(|record| record.state == State::Done && record.stored)
        .take(count);
    for record in newest_done {
        if let Some(steps) = load_revision(client, namespace, record.revision).await? {
            retained.extend(versioned(&steps));
        }
    }
    Ok(retained)
}

/// The images of every Deployment in `steps`.
pub fn images(steps: &[Step]) -> BTreeMap<String, Vec<String>> {
    steps
        .iter()
        .filter(|step| step.object.kind == wikikube_render::ObjectKind::Deployment)
        .map(|step| {
            let images = step
                .body
                .pointer("/spec/template/spec/containers")
                .and_then(|containers| containers.as_array())
                .into_iter()
                .flatten()
                .filter_map(|container| container["image"].as_str().map(str::to_string))
                .collect();
            (step.object.name.clone(), images)
        })
        .collect()
}

/// A short hash of the objects.
pub fn values_hash(steps: &[Step]) -> String {
    let mut hasher = Sha256::new();
    for step in steps {
        hasher.update(serde_json::to_vec(&step.body).expect("objects serialize"));
        hasher.update([0]);
    }
    hasher.finalize()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn history_ref() -> ObjectRef {
    ObjectRef {
        kind: wikikube_render::ObjectKind::ConfigMap,
        name: HISTORY.into(),
    }
}

fn revision_ref(revision: u64) -> ObjectRef {
    ObjectRef {
        kind: wikikube_render::ObjectKind::Secret,
        name: format!("{REVISION_PREFIX}{revision}"),
    }
}

fn managed_meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_string(),
            "wikikube".to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

/// Every record, oldest first; none when there is no history yet.
pub async fn read(client: &kube::Client, namespace: &str) -> Result<Vec<Record>, Error> {
    let Some(object) = apply::get(client, namespace, &history_ref()).await? else {
        return Ok(Vec::new());
    };
    let text = object
        .data
        .pointer("/data/records.json")
        .and_then(|text| text.as_str())
        .unwrap_or("[]");
    serde_json::from_str(text).map_err(|error| Error::Corrupt {
        what: format!("ConfigMap/{HISTORY}"),
        message: error.to_string(),
    })
}

/// Writes the records, the newest [`KEEP_RECORDS`] of them.
pub async fn write(
    client: &kube::Client,
    namespace: &str,
    records: &[Record],
) -> Result<(), Error> {
    let start = records.len().saturating_sub(KEEP_RECORDS);
    let text = serde_json::to_string(&records[start..]).expect("records serialize");
    let map = ConfigMap {
        metadata: managed_meta(HISTORY, namespace),
        data: Some(BTreeMap::from([("records.json".to_string(), text)])),
        ..ConfigMap::default()
    };
    let body = serde_json::to_value(&map).expect("ConfigMaps serialize");
    apply::apply_value(client, namespace, &history_ref(), &body, Mode::Apply).await?;
    Ok(())
}

/// Adds or replaces (by revision) one record.
pub async fn save(client: &kube::Client, namespace: &str, record: &Record) -> Result<(), Error> {
    let mut records = read(client, namespace).await?;
    let mut record = record.clone();
    record.updated = Timestamp::now();
    match records.iter_mut().find(|r| r.revision == record.revision) {
        Some(existing) => *existing = record,
        None => records.push(record),
    }
    write(client, namespace, &records).await
}

/// Compresses a revision's steps.
pub fn compress(steps: &[Step]) -> Result<Vec<u8>, Error> {
    let json = serde_json::to_vec(steps).expect("steps serialize");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&json).expect("writing to memory");
    let bytes = encoder.finish().expect("writing to memory");
    if bytes.len() > MAX_REVISION_BYTES {
        return Err(Error::RevisionTooLarge { bytes: bytes.len() });
    }
    Ok(bytes)
}

/// Reverses [`compress`].
pub fn decompress(bytes: &[u8]) -> Result<Vec<Step>, Error> {
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut json)
        .map_err(|error| Error::Corrupt {
            what: "a revision".into(),
            message: error.to_string(),
        })?;
    serde_json::from_slice(&json).map_err(|error| Error::Corrupt {
        what: "a revision".into(),
        message: error.to_string(),
    })
}

/// Stores a revision's full objects.
pub async fn store_revision(
    client: &kube::Client,
    namespace: &str,
    revision: u64,
    steps: &[Step],
) -> Result<(), Error> {
    let reference = revision_ref(revision);
    let secret = Secret {
        metadata: managed_meta(&reference.name, namespace),
        type_: Some("wikikube.org/revision".into()),
        data: Some(BTreeMap::from([(
            "steps.json.gz".to_string(),
            ByteString(compress(steps)?),
        )])),
        ..Secret::default()
    };
    let body = serde_json::to_value(&secret).expect("Secrets serialize");
    apply::apply_value(client, namespace, &reference, &body, Mode::Apply).await?;
    Ok(())
}

/// A stored revision's objects, or `None` when it is no longer stored.
pub async fn load_revision(
    client: &kube::Client,
    namespace: &str,
    revision: u64,
) -> Result<Option<Vec<Step>>, Error> {
    let Some(object) = apply::get(client, namespace, &revision_ref(revision)).await? else {
        return Ok(None);
    };
    let encoded = object
        .data
        .pointer("/data/steps.json.gz")
        .and_then(|text| text.as_str())
        .unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|error| Error::Corrupt {
            what: format!("Secret/{REVISION_PREFIX}{revision}"),
            message: error.to_string(),
        })?;
    decompress(&bytes).map(Some)
}

/// Deletes the full objects of all but the newest [`KEEP_REVISIONS`] revisions, keeping the
/// newest `done` one whatever its age (it is what a rollback goes back to), and marks their
/// records as summaries.
pub async fn prune_revisions(client: &kube::Client, namespace: &str) -> Result<(), Error> {
    let mut records = read(client, namespace).await?;
    let newest_done = records
        .iter()
        .rev()
        .find(|record| record.state == State::Done)
        .map(|record| record.revision);
    let count = records.len();
    let mut changed = false;
    for (index, record) in records.iter_mut().enumerate() {
        let old = index + KEEP_REVISIONS < count;
        if record.stored && old && Some(record.revision) != newest_done {
            apply::delete(client, namespace, &revision_ref(record.revision)).await?;
            record.stored = false;
            changed = true;
        }
    }
    if changed {
        write(client, namespace, &records).await?;
    }
    Ok(())
}

/// A failure as a record keeps it: at most [`MAX_FAILURE_CHARS`] characters, its beginning
/// (what failed) and its end (the last output) kept, so that a hundred records stay small.
pub fn short_failure(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= MAX_FAILURE_CHARS {
        return text.to_string();
    }
    let head: String = chars[..MAX_FAILURE_CHARS / 4].iter().collect();
    let tail: String = chars[chars.len() - MAX_FAILURE_CHARS * 3 / 4..]
        .iter()
        .collect();
    format!("{head}\n[...]\n{tail}")
}

/// The longest failure text a record keeps.
pub const MAX_FAILURE_CHARS: usize = 3000;

/// The newest `done` record before `revision`.
pub fn last_done(records: &[Record], revision: u64) -> Option<&Record> {
    records
        .iter()
        .rev()
        .find(|record| record.state == State::Done && record.revision < revision)
}
