//! The train: which MediaWiki version each group of wikis runs, and moving a group from one
//! version to another.
//!
//! Wikimedia's weekly branch rides to the wikis group by group (testwikis, group0, group1,
//! group2), and a bad branch is rolled back by moving the groups back. Here the groups are the
//! site's `[[groups]]`; a wiki's version is its group's ([`wikikube_model`] fills it in), and the
//! rendered farm carries it in the wikiversions ConfigMap, not in an image. So a promotion to a
//! version the image already carries is a configuration change, rolled out like any other.
//!
//! This crate plans a move ([`promote`], [`rollback`]): the group, the versions, the wikis that
//! move, and the new text of the file that declares the group with its diff. It applies the move
//! to a loaded site in memory ([`Move::apply`]), so the caller renders and rolls out exactly
//! what the file will say, and writes the file ([`Move::write`]) only when the rollout went
//! well: a failed promotion leaves the file saying what runs. It checks that the app image built
//! last carries the version ([`check_carried`]). It does not render, deploy, run scripts or
//! print: the CLI orders those steps with `render`, `deploy` and `local`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use wikikube_model::ResolvedSite;

/// What can go wrong planning or writing a move.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The site has no group of that name.
    #[error("the site has no group `{group}`; its groups: {known}")]
    UnknownGroup {
        /// The name asked for.
        group: String,
        /// The groups there are, in train order.
        known: String,
    },
    /// The version is not one of the site's `[versions]`.
    #[error("MediaWiki `{version}` is not in the site's [versions] ({known}); add a [versions.\"{version}\"] table with its source, then build it: `wikikube build {site}`")]
    UnknownVersion {
        /// The version asked for.
        version: String,
        /// The versions there are.
        known: String,
        /// The site directory.
        site: String,
    },
    /// The group already runs that version.
    #[error("group `{group}` already runs MediaWiki {version}")]
    AlreadyThere {
        /// The group.
        group: String,
        /// Its version.
        version: String,
    },
    /// A rollback of a group that was never promoted (or whose last move was a rollback).
    #[error("group `{group}` has no previous version to go back to (`previous` is set by `wikikube train promote`); promote it to the version you want instead")]
    NothingToRollBack {
        /// The group.
        group: String,
    },
    /// The app image built last does not carry the version.
    #[error("{reason}: build it first with `wikikube build {site}` (a cluster: `wikikube release {site} --env ENV`), then promote")]
    NotCarried {
        /// Why the version is not known to be in the image.
        reason: String,
        /// The site directory.
        site: String,
    },
    /// The file that declares the groups could not be edited.
    #[error("{path}: {message}")]
    Edit {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The train as the site declares it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Status {
    /// Every version of `[versions]`, with the wikis that run it.
    pub versions: Vec<VersionStatus>,
    /// The groups in train order.
    pub groups: Vec<GroupStatus>,
    /// Wikis that no group holds (they state their own version).
    pub ungrouped: Vec<String>,
}

/// One version of the site.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct VersionStatus {
    /// Its name (`1.39.17-wmf.2`).
    pub name: String,
    /// Where its code comes from: a directory or a tarball.
    pub source: String,
    /// Its patch directory, if any.
    pub patches: Option<String>,
    /// The wikis that run it.
    pub wikis: Vec<String>,
}

/// One group of the train.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupStatus {
    /// Its name.
    pub name: String,
    /// The version its wikis run.
    pub version: String,
    /// The version it ran before its last promotion.
    pub previous: Option<String>,
    /// Its wikis.
    pub wikis: Vec<String>,
}

/// The train of a loaded site.
pub fn status(site: &ResolvedSite) -> Status {
    let spec = &site.spec;
    let wikis_of = |keep: &dyn Fn(&wikikube_model::WikiSpec) -> bool| -> Vec<String> {
        spec.wikis
            .iter()
            .filter(|(_, wiki)| keep(wiki))
            .map(|(dbname, _)| dbname.clone())
            .collect()
    };
    Status {
        versions: spec
            .versions
            .iter()
            .map(|(name, version)| VersionStatus {
                name: name.clone(),
                source: match &version.tarball {
                    Some(tarball) => format!("tarball {tarball}"),
                    None => version.code.clone(),
                },
                patches: version.patches.clone(),
                wikis: wikis_of(&|wiki| &wiki.version == name),
            })
            .collect(),
        groups: spec
            .groups
            .iter()
            .map(|group| GroupStatus {
                name: group.name.clone(),
                version: group.version.clone(),
                previous: group.previous.clone(),
                wikis: wikis_of(&|wiki| wiki.group.as_deref() == Some(&group.name)),
            })
            .collect(),
        ungrouped: wikis_of(&|wiki| wiki.group.is_none()),
    }
}

/// A planned move of one group to another version.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Move {
    /// The group.
    pub group: String,
    /// The version it runs now.
    pub from: String,
    /// The version it moves to.
    pub to: String,
    /// What the group's `previous` becomes: the version it left (a promotion) or none (a
    /// rollback).
    pub previous: Option<String>,
    /// The wikis that move.
    pub wikis: Vec<String>,
    /// The file that declares the group.
    pub file: PathBuf,
    /// The change to that file, as a unified diff.
    pub diff: String,
    /// The file's new text.
    #[serde(skip)]
    pub text: String,
}

/// Plans moving `group` to `version`: the group's `version` becomes `version` and its
/// `previous` the version it ran, so that [`rollback`] can move it back.
pub fn promote(site: &ResolvedSite, group: &str, version: &str) -> Result<Move, Error> {
    let current = find_group(site, group)?;
    if !site.spec.versions.contains_key(version) {
        return Err(unknown_version(site, version));
    }
    if current.version == version {
        return Err(Error::AlreadyThere {
            group: group.into(),
            version: version.into(),
        });
    }
    plan(site, group, version, Some(&current.version.clone()))
}

/// Plans moving `group` back to the version it ran before its last promotion; afterwards it
/// has no `previous`, so a second rollback is refused rather than undoing the first.
pub fn rollback(site: &ResolvedSite, group: &str) -> Result<Move, Error> {
    let current = find_group(site, group)?;
    let Some(previous) = current.previous.clone() else {
        return Err(Error::NothingToRollBack {
            group: group.into(),
        });
    };
    if !site.spec.versions.contains_key(&previous) {
        return Err(unknown_version(site, &previous));
    }
    plan(site, group, &previous, None)
}

fn unknown_version(site: &ResolvedSite, version: &str) -> Error {
    Error::UnknownVersion {
        version: version.into(),
        known: site
            .spec
            .versions
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        site: site.dir.display().to_string(),
    }
}

fn find_group<'a>(
    site: &'a ResolvedSite,
    group: &str,
) -> Result<&'a wikikube_model::GroupSpec, Error> {
    site.spec
        .groups
        .iter()
        .find(|g| g.name == group)
        .ok_or_else(|| Error::UnknownGroup {
            group: group.into(),
            known: if site.spec.groups.is_empty() {
                "none (declare them as [[groups]] in site.toml)".into()
            } else {
                site.spec
                    .groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
}

/// The move of `group` to `to`, with `previous` written (promotion) or removed (rollback).
fn plan(site: &ResolvedSite, group: &str, to: &str, previous: Option<&str>) -> Result<Move, Error> {
    let index = site
        .spec
        .groups
        .iter()
        .position(|g| g.name == group)
        .expect("found by find_group");
    let from = site.spec.groups[index].version.clone();
    let file = declaring_file(site, index)?;
    let old = std::fs::read_to_string(&file).map_err(|source| Error::Io {
        path: file.clone(),
        source,
    })?;
    let edit_error = |message: String| Error::Edit {
        path: file.clone(),
        message,
    };
    let mut document: toml_edit::DocumentMut = old
        .parse()
        .map_err(|error: toml_edit::TomlError| edit_error(error.to_string()))?;
    let tables = document
        .get_mut("groups")
        .and_then(|item| item.as_array_of_tables_mut())
        .ok_or_else(|| edit_error("has no [[groups]]".into()))?;
    let table = tables
        .iter_mut()
        .find(|table| table.get("name").and_then(|n| n.as_str()) == Some(group))
        .ok_or_else(|| edit_error(format!("no [[groups]] entry has name = \"{group}\"")))?;
    table["version"] = toml_edit::value(to);
    match previous {
        Some(previous) => {
            table["previous"] = toml_edit::value(previous);
            // The explanation goes with the value, so the file says why it is there.
            if let Some(mut key) = table.key_mut("previous") {
                key.leaf_decor_mut()
                    .set_prefix("# written by `wikikube train promote`, read by `rollback`\n");
            }
        }
        None => {
            table.remove("previous");
        }
    }
    let text = document.to_string();
    let name = std::path::absolute(&file).unwrap_or_else(|_| file.clone());
    let name = name
        .strip_prefix(&site.dir)
        .unwrap_or(&file)
        .display()
        .to_string();
    let diff = similar::TextDiff::from_lines(&old, &text)
        .unified_diff()
        .context_radius(2)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string();
    let wikis = site
        .spec
        .wikis
        .iter()
        .filter(|(_, wiki)| wiki.group.as_deref() == Some(group))
        .map(|(dbname, _)| dbname.clone())
        .collect();
    Ok(Move {
        group: group.into(),
        from,
        to: to.into(),
        previous: previous.map(str::to_string),
        wikis,
        file,
        diff,
        text,
    })
}

/// The file whose `[[groups]]` declares the group: the one its `version` came from.
fn declaring_file(site: &ResolvedSite, index: usize) -> Result<PathBuf, Error> {
    let groups = site.tree.get_path(["groups"]);
    let file = groups.map(|node| node.origin.file.to_string());
    let file = file.ok_or_else(|| Error::Edit {
        path: site.dir.join("site.toml"),
        message: format!("cannot tell which file declares groups[{index}]"),
    })?;
    Ok(PathBuf::from(file))
}

impl Move {
    /// Applies the move to a loaded site in memory: the group's version and `previous`, and
    /// the version of each of its wikis, as [`wikikube_model::load()`] would read the new file.
    pub fn apply(&self, site: &mut ResolvedSite) {
        for group in &mut site.spec.groups {
            if group.name == self.group {
                group.previous = self.previous.clone();
                group.version = self.to.clone();
            }
        }
        for dbname in &self.wikis {
            if let Some(wiki) = site.spec.wikis.get_mut(dbname) {
                wiki.version = self.to.clone();
            }
        }
    }

    /// Writes the file's new text, through a temporary file and a rename so that a reader
    /// never sees half of it.
    pub fn write(&self) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: self.file.clone(),
            source,
        };
        let temporary = self.file.with_extension("toml.train");
        std::fs::write(&temporary, &self.text).map_err(io)?;
        std::fs::rename(&temporary, &self.file).map_err(io)
    }
}

/// Checks that the app image of the site built last in `cache` carries `version`: a promotion
/// moves configuration only, so the image must have the version's code already.
pub fn check_carried(site: &ResolvedSite, cache: &Path, version: &str) -> Result<(), Error> {
    let not_carried = |reason: String| Error::NotCarried {
        reason,
        site: site.dir.display().to_string(),
    };
    let cache = wikikube_image::cache::Cache::open(cache)
        .map_err(|error| not_carried(format!("the image cache cannot be read ({error})")))?;
    match wikikube_image::incremental::carried_versions(&cache, &site.spec.site.name) {
        Some(carried) if carried.contains(version) => Ok(()),
        Some(carried) => Err(not_carried(format!(
            "the app image built last carries MediaWiki {}, not {version}",
            join(&carried)
        ))),
        None => Err(not_carried(format!(
            "no app image of `{}` was built with the cache at {}",
            site.spec.site.name,
            cache.root().display()
        ))),
    }
}

fn join(versions: &BTreeSet<String>) -> String {
    versions.iter().cloned().collect::<Vec<_>>().join(", ")
}
