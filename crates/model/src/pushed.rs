//! `pushed-images.toml`: what `wikikube build --push` published, so that every environment that
//! names those repositories runs exactly the pushed images, by digest.
//!
//! An environment names its images by repository and a tag (`[images] app =
//! "registry.farm.test/wikikube/app:2026-11-25"`); tags move, digests do not. After a push the
//! record maps each repository to the manifest digest just pushed, and [`crate::load()`] rewrites
//! every `images.*` value whose repository is in the record to `REPOSITORY@sha256:...`. A
//! repository the record does not know keeps its value as written. This module reads and writes
//! the record; it does not push (that is `image`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::origin::{Layer, Origin};
use crate::{Error, ErrorKind};

/// The record's file name, in the site directory.
pub const FILE: &str = "pushed-images.toml";

/// One pushed image.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PushedImage {
    /// The manifest digest (`sha256:...`).
    pub digest: String,
    /// The tag it was pushed under too (content-derived: the same build, the same tag).
    pub tag: String,
    /// The line of its table in the file, for `explain` (0: not read from a file).
    #[serde(skip)]
    pub line: u32,
}

/// The record: pushed images by repository (`HOST[:PORT]/PATH`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct PushedImages(pub BTreeMap<String, PushedImage>);

impl PushedImages {
    /// Reads the record of `site_dir`; none yet is an empty record.
    pub fn load(site_dir: &Path) -> Result<PushedImages, Error> {
        let path = site_dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PushedImages::default())
            }
            Err(error) => {
                return Err(Error::new(
                    ErrorKind::MissingFile,
                    origin(1, 1),
                    String::new(),
                    format!("cannot read {}: {error}", path.display()),
                ))
            }
        };
        let mut record: PushedImages = toml::from_str(&text).map_err(|error| {
            let (line, column) = error
                .span()
                .map(|span| line_column(&text, span.start))
                .unwrap_or((1, 1));
            Error::new(
                ErrorKind::Syntax,
                origin(line, column),
                String::new(),
                format!(
                    "{} (this file is written by `wikikube build --push`: a table per \
                     repository with `digest` and `tag`)",
                    error.message()
                ),
            )
        })?;
        for (repository, image) in &mut record.0 {
            let header = format!("[\"{repository}\"]");
            image.line = text
                .lines()
                .position(|line| line.trim() == header)
                .map_or(0, |index| u32::try_from(index + 1).unwrap_or(u32::MAX));
        }
        Ok(record)
    }

    /// Adds (or replaces) `pushed`, keeping the other repositories, and writes the record
    /// atomically: a failed write leaves the previous record whole.
    pub fn record(
        site_dir: &Path,
        pushed: impl IntoIterator<Item = (String, PushedImage)>,
    ) -> Result<PushedImages, Error> {
        let mut record = PushedImages::load(site_dir)?;
        record.0.extend(pushed);
        let mut text = String::from(
            "# Written by `wikikube build --push`: the manifest digest of each pushed repository.\n\
             # Environments that name these repositories in [images] run these digests.\n",
        );
        text.push_str(&toml::to_string(&record).expect("the record serializes"));
        let path = site_dir.join(FILE);
        let partial = site_dir.join(format!(".{FILE}.partial"));
        let write_error = |error: std::io::Error| {
            Error::new(
                ErrorKind::MissingFile,
                origin(1, 1),
                String::new(),
                format!("cannot write {}: {error}", path.display()),
            )
        };
        std::fs::write(&partial, text).map_err(write_error)?;
        std::fs::rename(&partial, &path).map_err(write_error)?;
        // Read back, so that the record knows the lines it was written at.
        PushedImages::load(site_dir)
    }

    /// `reference` by digest when its repository was pushed; `None` when it was not.
    pub fn pin(&self, reference: &str) -> Option<String> {
        self.pin_with_origin(reference).map(|(pinned, _)| pinned)
    }

    /// [`PushedImages::pin`], with where in the record the digest was written.
    pub fn pin_with_origin(&self, reference: &str) -> Option<(String, Origin)> {
        let repository = repository_of(reference);
        let pushed = self.0.get(repository)?;
        Some((
            format!("{repository}@{}", pushed.digest),
            origin(pushed.line.max(1), 1),
        ))
    }
}

/// The repository of an image reference: without its `@digest` and its `:tag` (a colon after
/// the last slash; one before it belongs to the registry's port).
pub fn repository_of(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let last_slash = without_digest.rfind('/').map_or(0, |index| index + 1);
    match without_digest[last_slash..].find(':') {
        Some(colon) => &without_digest[..last_slash + colon],
        None => without_digest,
    }
}

fn origin(line: u32, column: u32) -> Origin {
    Origin {
        layer: Arc::new(Layer::Site),
        file: Arc::from(FILE),
        line,
        column,
    }
}

fn line_column(text: &str, offset: usize) -> (u32, u32) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_lose_their_tag_and_digest_but_keep_the_registry_port() {
        assert_eq!(
            repository_of("registry.farm.test/wikikube/app:2026-11-25"),
            "registry.farm.test/wikikube/app"
        );
        assert_eq!(
            repository_of("127.0.0.1:5000/wikikube/app@sha256:00"),
            "127.0.0.1:5000/wikikube/app"
        );
        assert_eq!(
            repository_of("127.0.0.1:5000/wikikube/app"),
            "127.0.0.1:5000/wikikube/app"
        );
        assert_eq!(repository_of("debian:bookworm"), "debian");
    }

    #[test]
    fn a_record_pins_what_was_pushed_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            PushedImages::load(dir.path()).unwrap(),
            PushedImages::default()
        );
        let app = PushedImage {
            digest: format!("sha256:{}", "a".repeat(64)),
            tag: "build-1".into(),
            ..Default::default()
        };
        PushedImages::record(
            dir.path(),
            [("registry.farm.test/wikikube/app".to_string(), app.clone())],
        )
        .unwrap();
        let edge = PushedImage {
            digest: format!("sha256:{}", "b".repeat(64)),
            tag: "build-2".into(),
            ..Default::default()
        };
        let record = PushedImages::record(
            dir.path(),
            [("registry.farm.test/wikikube/edge".to_string(), edge)],
        )
        .unwrap();
        assert_eq!(record, PushedImages::load(dir.path()).unwrap());
        assert_eq!(record.0.len(), 2);
        assert_eq!(
            record.pin("registry.farm.test/wikikube/app:2026-11-25"),
            Some(format!("registry.farm.test/wikikube/app@{}", app.digest))
        );
        assert_eq!(record.pin("registry.farm.test/wikikube/mcrouter:x"), None);
    }

    #[test]
    fn a_broken_record_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "[\"r/app\"]\ndigest = \"sha256:00\"\ntga = \"x\"\n",
        )
        .unwrap();
        let error = PushedImages::load(dir.path()).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("pushed-images.toml:3"), "{text}");
        assert!(text.contains("tga"), "{text}");
    }
}
