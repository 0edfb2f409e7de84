//! A local farm's media store, as backup, restore and import copy a wiki's files out of it and
//! back: the media volume (a directory on this machine) or the local Swift (its object API).
//!
//! Both stores speak the backup's layout (`wikikube-backup`): a wiki's `public` tree (originals,
//! old versions under `archive/`, thumbnails under `thumb/`) and its `deleted` tree. In Swift
//! those are MediaWiki's containers `DBNAME-local-public`, `-thumb`, `-transcoded` and
//! `-deleted`, so a backup of a farm on a volume restores into a farm on Swift and back.
//!
//! Replacing a wiki's media is as safe as each store allows. On the volume the new tree is
//! copied beside the live one and renamed into place. Swift has no rename: every object of the
//! backup is uploaded first (overwriting the live object of that name) and only when all have
//! been stored are the live objects the backup lacks deleted, so a copy that stops halfway has
//! lost nothing the wiki had.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use wikikube_model::{MediaStorage, ResolvedSite, SwiftValues, SWIFT_KEY};

use crate::{podman, Error};

/// A wiki's two media trees, under the media volume and under a wiki's backup.
pub(crate) const PARTS: [Part; 2] = [Part::Public, Part::Deleted];

/// One of a wiki's media trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Part {
    /// What the wiki serves: originals, old versions, thumbnails.
    Public,
    /// Deleted files, never served.
    Deleted,
}

impl Part {
    /// The directory's name, under the volume and in a backup.
    pub(crate) fn dir(self) -> &'static str {
        match self {
            Part::Public => "public",
            Part::Deleted => "deleted",
        }
    }
}

/// Where the farm keeps media.
pub(crate) enum MediaStore {
    /// The media volume's directory, or `None` before any pod made the volume (no media yet).
    Volume(Option<PathBuf>),
    /// The local Swift.
    Swift(Swift),
}

impl MediaStore {
    /// The site's store. For Swift, a token is fetched at once, so a Swift that does not
    /// answer is an error before anything changes.
    pub(crate) fn of(site: &ResolvedSite) -> Result<MediaStore, Error> {
        let media = site
            .media()
            .ok_or_else(|| Error::Inconsistent("the site has no release".into()))?;
        if media.storage == MediaStorage::Swift {
            let key = site
                .secrets
                .expose()
                .get(SWIFT_KEY)
                .cloned()
                .ok_or_else(|| {
                    Error::Backup(format!(
                        "the private values have no `{SWIFT_KEY}` to reach Swift with"
                    ))
                })?;
            return Ok(MediaStore::Swift(Swift::connect(&media.swift, &key)?));
        }
        let volume = wikikube_render::naming::media(site);
        if !podman::exists(&["volume", "exists", &volume])? {
            return Ok(MediaStore::Volume(None));
        }
        let mountpoint =
            podman::run(&["volume", "inspect", "--format", "{{.Mountpoint}}", &volume])?;
        Ok(MediaStore::Volume(Some(PathBuf::from(mountpoint.trim()))))
    }

    /// Copies the wiki's `part` into `to` (created), in the backup's layout.
    pub(crate) fn export(&self, wiki: &str, part: Part, to: &Path) -> Result<(), Error> {
        match self {
            MediaStore::Volume(None) => Ok(()),
            MediaStore::Volume(Some(volume)) => {
                wikikube_backup::copy_tree(&volume.join(part.dir()).join(wiki), to)?;
                Ok(())
            }
            MediaStore::Swift(swift) => {
                std::fs::create_dir_all(to).map_err(Error::io(to))?;
                for zone in Zone::of(part) {
                    let container = zone.container(wiki);
                    for name in swift.list(&container)? {
                        // An object name becomes a path under the backup: one that would
                        // climb out of it is refused rather than written.
                        let path = Path::new(&name);
                        if name.is_empty()
                            || !path.components().all(|c| matches!(c, Component::Normal(_)))
                        {
                            return Err(Error::Backup(format!(
                                "Swift container {container} holds an object named `{name}`, \
                                 which is no path under a backup; nothing more was copied"
                            )));
                        }
                        let file = to.join(zone.prefix).join(path);
                        swift.download(&container, &name, &file)?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Makes the wiki's `part` the tree `from` (in the backup's layout); returns the number of
    /// files it holds. A store that does not exist yet (no volume) is left alone.
    pub(crate) fn replace(&self, wiki: &str, part: Part, from: &Path) -> Result<usize, Error> {
        match self {
            MediaStore::Volume(None) => Ok(0),
            MediaStore::Volume(Some(volume)) => {
                let files = files_under(from)?.len();
                crate::backup::replace_dir(from, &volume.join(part.dir()).join(wiki))?;
                Ok(files)
            }
            MediaStore::Swift(swift) => {
                let files = files_under(from)?;
                let zones = Zone::of(part);
                // Everything of the backup stored first; the live objects it lacks are deleted
                // only when every upload has succeeded.
                // Per zone: its container, whether it is known to exist, the objects stored.
                let mut kept: Vec<(String, bool, BTreeSet<String>)> = zones
                    .iter()
                    .map(|zone| (zone.container(wiki), false, BTreeSet::new()))
                    .collect();
                let mut stored = 0;
                for name in &files {
                    let Some(index) = Zone::index_for(&zones, name) else {
                        continue;
                    };
                    let zone = &zones[index];
                    let object = &name[zone.prefix.len()..];
                    let (container, ensured, objects) = &mut kept[index];
                    if !*ensured {
                        swift.ensure_container(container, zone.public)?;
                        *ensured = true;
                    }
                    swift.upload(container, object, &from.join(name))?;
                    objects.insert(object.to_string());
                    stored += 1;
                }
                for (container, _, objects) in &kept {
                    for live in swift.list(container)? {
                        if !objects.contains(&live) {
                            swift.delete(container, &live)?;
                        }
                    }
                }
                Ok(stored)
            }
        }
    }
}

/// The relative paths (with `/`) of every file under `dir`, or none when it does not exist.
fn files_under(dir: &Path) -> Result<Vec<String>, Error> {
    Ok(wikikube_backup::list_files(dir, "")?
        .into_iter()
        .map(|entry| entry.path)
        .collect())
}

/// One of MediaWiki's zones in Swift, and where its files sit in a backup's part.
struct Zone {
    /// The container's suffix after the wiki's name.
    suffix: &'static str,
    /// The path of its files in the part's tree (`thumb/`), empty for the part's own root.
    prefix: &'static str,
    /// World-readable (MediaWiki makes the public, thumb and transcoded zones so).
    public: bool,
}

impl Zone {
    /// The zones of a part: in `public`, thumbnails and transcoded media have their own
    /// containers and sit under `thumb/` and `transcoded/` in the tree, as on a volume. The
    /// temp zone (upload stash, chunks) is neither backed up nor restored, as on a volume
    /// nothing keeps it either.
    fn of(part: Part) -> Vec<Zone> {
        match part {
            Part::Public => vec![
                Zone {
                    suffix: "local-thumb",
                    prefix: "thumb/",
                    public: true,
                },
                Zone {
                    suffix: "local-transcoded",
                    prefix: "transcoded/",
                    public: true,
                },
                Zone {
                    suffix: "local-public",
                    prefix: "",
                    public: true,
                },
            ],
            Part::Deleted => vec![Zone {
                suffix: "local-deleted",
                prefix: "",
                public: false,
            }],
        }
    }

    fn container(&self, wiki: &str) -> String {
        format!("{wiki}-{}", self.suffix)
    }

    /// The zone a file of the tree belongs to (the first whose prefix it has; the root zone
    /// last), or none for what no zone keeps (`temp/`, `lockdir/` of a volume's tree).
    fn index_for(zones: &[Zone], name: &str) -> Option<usize> {
        if name.starts_with("temp/") || name.starts_with("lockdir/") {
            return None;
        }
        zones.iter().position(|zone| name.starts_with(zone.prefix))
    }
}

/// Characters kept as they are in an object's URL path: letters, digits, `-._~` and the `/`
/// that Swift's object names use as MediaWiki's directories.
const OBJECT_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The local Swift's object API, with a token of the wikis' user from tempauth (Swift's v1
/// auth, what MediaWiki's SwiftFileBackend uses too).
pub(crate) struct Swift {
    agent: ureq::Agent,
    /// The account's storage URL as this machine reaches it.
    storage: String,
    token: String,
    /// `account:user`, given read and write access on the containers a restore creates, as
    /// MediaWiki does.
    user: String,
}

impl Swift {
    fn connect(values: &SwiftValues, key: &str) -> Result<Swift, Error> {
        let user = format!("{}:{}", values.account, values.user);
        let auth_url = reachable(&values.auth_url)?;
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout_read(Duration::from_secs(120))
            // A connection per request: with kept-alive connections an upload (after a container
            // HEAD) read an empty status line, as from a connection Swift's proxy had closed,
            // and an upload with its body is not retried. Connections to a local Swift are
            // cheap; the end-to-end test's restore passes this way.
            .max_idle_connections(0)
            .build();
        let response = agent
            .get(&format!("{}/v1.0", auth_url.trim_end_matches('/')))
            .set("X-Auth-User", &user)
            .set("X-Auth-Key", key)
            .call()
            .map_err(|error| swift_error(&format!("authenticating as {user}"), error))?;
        let token = response
            .header("X-Auth-Token")
            .ok_or_else(|| Error::Backup(format!("Swift gave {user} no token")))?
            .to_string();
        Ok(Swift {
            agent,
            storage: reachable(&values.effective_storage_url())?,
            token,
            user,
        })
    }

    fn url(&self, container: &str, object: Option<&str>) -> String {
        let mut url = format!(
            "{}/{}",
            self.storage,
            utf8_percent_encode(container, OBJECT_PATH)
        );
        if let Some(object) = object {
            url.push('/');
            url.extend(utf8_percent_encode(object, OBJECT_PATH));
        }
        url
    }

    /// Every object name in `container`, page by page; none when it does not exist.
    fn list(&self, container: &str) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = Vec::new();
        loop {
            let mut request = self
                .agent
                .get(&self.url(container, None))
                .set("X-Auth-Token", &self.token)
                .query("format", "json")
                .query("limit", "10000");
            if let Some(last) = names.last() {
                request = request.query("marker", last);
            }
            let page: Vec<serde_json::Value> = match request.call() {
                Ok(response) => response.into_json().map_err(|error| {
                    Error::Backup(format!("listing Swift container {container}: {error}"))
                })?,
                Err(ureq::Error::Status(404, _)) => return Ok(names),
                Err(error) => {
                    return Err(swift_error(
                        &format!("listing container {container}"),
                        error,
                    ))
                }
            };
            if page.is_empty() {
                return Ok(names);
            }
            names.extend(
                page.iter()
                    .filter_map(|entry| entry["name"].as_str().map(str::to_string)),
            );
        }
    }

    fn download(&self, container: &str, object: &str, to: &Path) -> Result<(), Error> {
        let what = format!("reading {container}/{object}");
        let response = self
            .agent
            .get(&self.url(container, Some(object)))
            .set("X-Auth-Token", &self.token)
            .call()
            .map_err(|error| swift_error(&what, error))?;
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
        }
        let mut file = std::fs::File::create(to).map_err(Error::io(to))?;
        std::io::copy(&mut response.into_reader(), &mut file)
            .map_err(|error| Error::Backup(format!("{what}: {error}")))?;
        Ok(())
    }

    /// Stores a file as an object; Swift takes its content type from the name's extension,
    /// as it did for MediaWiki's upload. MediaWiki's own `sha1base36` metadata is not set:
    /// the backend adds it the first time it needs an object's hash.
    fn upload(&self, container: &str, object: &str, from: &Path) -> Result<(), Error> {
        let file = std::fs::File::open(from).map_err(Error::io(from))?;
        let length = file.metadata().map_err(Error::io(from))?.len();
        self.agent
            .put(&self.url(container, Some(object)))
            .set("X-Auth-Token", &self.token)
            .set("Content-Length", &length.to_string())
            .send(file)
            .map_err(|error| swift_error(&format!("storing {container}/{object}"), error))?;
        Ok(())
    }

    fn delete(&self, container: &str, object: &str) -> Result<(), Error> {
        match self
            .agent
            .delete(&self.url(container, Some(object)))
            .set("X-Auth-Token", &self.token)
            .call()
        {
            Ok(_) | Err(ureq::Error::Status(404, _)) => Ok(()),
            Err(error) => Err(swift_error(
                &format!("deleting {container}/{object}"),
                error,
            )),
        }
    }

    /// Creates `container` when it does not exist, with the access MediaWiki gives its
    /// containers: world-readable for public zones, the wikis' user only otherwise.
    fn ensure_container(&self, container: &str, public: bool) -> Result<(), Error> {
        let url = self.url(container, None);
        match self
            .agent
            .head(&url)
            .set("X-Auth-Token", &self.token)
            .call()
        {
            Ok(_) => return Ok(()),
            Err(ureq::Error::Status(404, _)) => {}
            Err(error) => {
                return Err(swift_error(
                    &format!("looking for container {container}"),
                    error,
                ))
            }
        }
        let read = if public {
            format!(".r:*,{}", self.user)
        } else {
            self.user.clone()
        };
        self.agent
            .put(&url)
            .set("X-Auth-Token", &self.token)
            .set("X-Container-Read", &read)
            .set("X-Container-Write", &self.user)
            .call()
            .map_err(|error| swift_error(&format!("creating container {container}"), error))?;
        Ok(())
    }
}

/// A URL of the local Swift as this machine reaches it: `host.containers.internal` (how pods
/// reach the host) is podman's gateway address, where `wikikube up` publishes Swift.
fn reachable(url: &str) -> Result<String, Error> {
    const POD_HOST: &str = "://host.containers.internal";
    if !url.contains(POD_HOST) {
        return Ok(url.trim_end_matches('/').to_string());
    }
    let gateway = podman::gateway()?;
    Ok(url
        .replacen(POD_HOST, &format!("://{gateway}"), 1)
        .trim_end_matches('/')
        .to_string())
}

fn swift_error(what: &str, error: ureq::Error) -> Error {
    match error {
        ureq::Error::Status(status, response) => {
            let body = response.into_string().unwrap_or_default();
            Error::Backup(format!(
                "Swift refused {what}: {status} {}",
                body.trim().chars().take(200).collect::<String>()
            ))
        }
        ureq::Error::Transport(transport) => Error::Backup(format!(
            "Swift did not answer {what}: {transport} (is the farm up? `wikikube status`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_go_to_the_zone_of_their_path() {
        let zones = Zone::of(Part::Public);
        let zone_of = |name: &str| Zone::index_for(&zones, name).map(|i| zones[i].suffix);
        assert_eq!(zone_of("a/ab/Photo.png"), Some("local-public"));
        assert_eq!(
            zone_of("archive/a/ab/20240101!Photo.png"),
            Some("local-public")
        );
        assert_eq!(
            zone_of("thumb/a/ab/Photo.png/50px-Photo.png"),
            Some("local-thumb")
        );
        assert_eq!(
            zone_of("transcoded/a/ab/V.webm/V.webm.360p.webm"),
            Some("local-transcoded")
        );
        assert_eq!(zone_of("temp/chunk"), None);
        assert_eq!(zone_of("lockdir/x"), None);
        // A file named like a zone's directory but not in it stays in the public zone.
        assert_eq!(zone_of("thumbnail.png"), Some("local-public"));
        let deleted = Zone::of(Part::Deleted);
        assert_eq!(deleted[0].container("dewiki"), "dewiki-local-deleted");
        assert!(!deleted[0].public);
    }

    #[test]
    fn object_names_are_escaped_but_keep_their_slashes() {
        let swift = Swift {
            agent: ureq::agent(),
            storage: "http://10.88.0.1:8080/v1/AUTH_wikis".into(),
            token: String::new(),
            user: "wikis:mediawiki".into(),
        };
        assert_eq!(
            swift.url("dewiki-local-public", Some("a/ab/Straße & Weg?.png")),
            "http://10.88.0.1:8080/v1/AUTH_wikis/dewiki-local-public/a/ab/Stra%C3%9Fe%20%26%20Weg%3F.png"
        );
    }
}
