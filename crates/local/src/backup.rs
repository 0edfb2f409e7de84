//! `wikikube backup` and `wikikube restore` for a local farm: each wiki's database dumped from
//! the farm's MariaDB (`mariadb-dump --single-transaction`, a consistent snapshot while the wiki
//! keeps serving) and its media copied from the media volume, in the format of
//! `wikikube-backup`.
//!
//! A restore checks every file of the backup against the manifest and refuses to replace a wiki
//! that has newer edits than the backup (unless forced) before it changes anything. The database
//! is loaded into a scratch database first and swapped in with one `RENAME TABLE`, and the media
//! are copied beside the live directory and renamed into place, so a dump that does not load
//! leaves the wiki as it was.

use std::path::Path;
use std::process::{Command, Stdio};

use wikikube_backup::{list_files, Manifest, WikiBackup, DATABASE_DUMP, FORMAT, MEDIA};
use wikikube_model::{ResolvedSite, DATABASE_PASSWORD};

use crate::media::{MediaStore, PARTS};
use crate::{podman, Error};

/// What a restore did with one wiki.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Restored {
    /// The wiki.
    pub wiki: String,
    /// Revisions now in its database.
    pub revisions: u64,
    /// Media files put back.
    pub media_files: usize,
}

/// Writes a backup of `wikis` (every wiki of the site when empty) into `dir`, which must be
/// empty or new. The manifest is written last, so a backup that stopped halfway has none.
pub fn backup(site: &ResolvedSite, dir: &Path, wikis: &[String]) -> Result<Manifest, Error> {
    let wikis = chosen(site, wikis)?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .map_err(Error::io(dir))?
            .next()
            .is_some()
    {
        return Err(Error::Backup(format!(
            "{} is not empty: back up into a new directory, so no earlier backup is mixed in",
            dir.display()
        )));
    }
    let media = MediaStore::of(site)?;
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    let database = Database::of(site)?;
    let mut manifest = Manifest {
        format: FORMAT,
        site: site.spec.site.name.clone(),
        environment: site.environment_name.clone(),
        created_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or_default(),
        wikis: Default::default(),
    };
    for wiki in wikis {
        let wiki_dir = dir.join(&wiki);
        std::fs::create_dir_all(&wiki_dir).map_err(Error::io(&wiki_dir))?;
        let dump = wiki_dir.join(DATABASE_DUMP);
        database.dump(&wiki, &dump)?;
        let (latest_edit, revisions) = database.edits(&wiki)?.unwrap_or((None, 0));
        for part in PARTS {
            media.export(&wiki, part, &wiki_dir.join(MEDIA).join(part.dir()))?;
        }
        let files = list_files(dir, &wiki)?;
        manifest.wikis.insert(
            wiki.clone(),
            WikiBackup {
                version: site.spec.wikis[&wiki].version.clone(),
                latest_edit,
                revisions,
                files,
            },
        );
    }
    manifest.write(dir)?;
    Ok(manifest)
}

/// Restores `wikis` (every wiki of the backup when empty) from the backup in `dir`. Refuses,
/// before changing anything, a damaged backup, a wiki the site does not have, and a wiki with
/// newer edits than the backup unless `force`.
pub fn restore(
    site: &ResolvedSite,
    dir: &Path,
    wikis: &[String],
    force: bool,
) -> Result<Vec<Restored>, Error> {
    let manifest = Manifest::read(dir)?;
    let wikis: Vec<String> = if wikis.is_empty() {
        manifest.wikis.keys().cloned().collect()
    } else {
        wikis.to_vec()
    };
    let database = Database::of(site)?;
    // Every check for every wiki first: a restore of several wikis either starts with all of
    // them sound or touches none.
    for wiki in &wikis {
        crate::script::check_wiki(site, wiki)?;
        let part = manifest.wiki(wiki)?;
        manifest.verify(dir, wiki)?;
        if force {
            continue;
        }
        if let Some((Some(live), _)) = database.edits(wiki)? {
            if part.latest_edit.as_deref() < Some(live.as_str()) {
                return Err(Error::NewerData {
                    wiki: wiki.clone(),
                    live,
                    backup: part.latest_edit.clone().unwrap_or_else(|| "none".into()),
                });
            }
        }
    }
    let media = MediaStore::of(site)?;
    let mut restored = Vec::new();
    for wiki in &wikis {
        database.load(wiki, &dir.join(wiki).join(DATABASE_DUMP))?;
        let mut media_files = 0;
        for part in PARTS {
            media_files +=
                media.replace(wiki, part, &dir.join(wiki).join(MEDIA).join(part.dir()))?;
        }
        let revisions = database.edits(wiki)?.map_or(0, |(_, count)| count);
        restored.push(Restored {
            wiki: wiki.clone(),
            revisions,
            media_files,
        });
    }
    Ok(restored)
}

/// The site's wikis named in `wikis`, or all of them.
fn chosen(site: &ResolvedSite, wikis: &[String]) -> Result<Vec<String>, Error> {
    if wikis.is_empty() {
        return Ok(site.spec.wikis.keys().cloned().collect());
    }
    for wiki in wikis {
        crate::script::check_wiki(site, wiki)?;
    }
    Ok(wikis.to_vec())
}

/// Puts a copy of `from` at `to`: copied beside it, then renamed into place, the old directory
/// removed last, and handed to the pods' user.
pub(crate) fn replace_dir(from: &Path, to: &Path) -> Result<(), Error> {
    let parent = to.parent().unwrap_or(to);
    std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
    let name = to.file_name().unwrap_or_default().to_string_lossy();
    let incoming = parent.join(format!(".{name}.restoring"));
    let outgoing = parent.join(format!(".{name}.replaced"));
    for leftover in [&incoming, &outgoing] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(Error::io(leftover))?;
        }
    }
    wikikube_backup::copy_tree(from, &incoming)?;
    crate::state::give_tree_to_pods(&incoming);
    crate::state::give_tree_to_pods(parent);
    if to.exists() {
        std::fs::rename(to, &outgoing).map_err(Error::io(to))?;
    }
    std::fs::rename(&incoming, to).map_err(Error::io(to))?;
    if outgoing.exists() {
        std::fs::remove_dir_all(&outgoing).map_err(Error::io(&outgoing))?;
    }
    Ok(())
}

/// The local MariaDB, reached with the mariadb client programs inside its own container (the
/// host has none), as the wikis' user.
pub(crate) struct Database {
    container: String,
    user: String,
    password: String,
}

impl Database {
    pub(crate) fn of(site: &ResolvedSite) -> Result<Database, Error> {
        let pod = wikikube_render::naming::mariadb(site);
        let container = format!("{pod}-mariadb");
        let running = podman::output(&[
            "container",
            "inspect",
            "--format",
            "{{.State.Running}}",
            &container,
        ])?;
        if String::from_utf8_lossy(&running.stdout).trim() != "true" {
            return Err(Error::NotRunning(pod));
        }
        let user = site
            .deployments
            .iter()
            .flat_map(|deployment| &deployment.releases)
            .map(|release| release.values.database.user.clone())
            .next()
            .ok_or_else(|| Error::Inconsistent("the site has no release".into()))?;
        let password = site
            .secrets
            .expose()
            .get(DATABASE_PASSWORD)
            .cloned()
            .ok_or_else(|| {
                Error::Backup(format!(
                    "the private values have no `{DATABASE_PASSWORD}` to reach the database with"
                ))
            })?;
        Ok(Database {
            container,
            user,
            password,
        })
    }

    /// A client program in the container, its options file (with the password) from a file
    /// the command writes first, so the password is on no command line.
    fn client(&self, program: &str, args: &str) -> Command {
        let options = format!(
            "[client]\nhost=127.0.0.1\nport=3306\nuser={}\npassword=\"{}\"\n",
            self.user,
            self.password.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let script = format!(
            "set -e; umask 077; options=$(mktemp); trap 'rm -f \"$options\"' EXIT; \
             printf '%s' \"$WIKIKUBE_CLIENT_OPTIONS\" > \"$options\"; \
             {program} --defaults-extra-file=\"$options\" {args}"
        );
        let mut command = podman::command();
        // The options travel in the exec's environment, which only root on this machine sees.
        command.args([
            "exec",
            "-i",
            "--env",
            "WIKIKUBE_CLIENT_OPTIONS",
            &self.container,
            "sh",
            "-c",
            &script,
        ]);
        command.env("WIKIKUBE_CLIENT_OPTIONS", options);
        command
    }

    /// Runs a client command, writing `input` to its standard input when given; returns what
    /// it printed on standard output (unless the caller sent that elsewhere) or its error.
    fn run(&self, mut command: Command, what: &str, input: Option<&[u8]>) -> Result<String, Error> {
        let failed = |source: std::io::Error| Error::Backup(format!("{what}: {source}"));
        if input.is_some() {
            command.stdin(Stdio::piped());
        }
        let mut child = command.stderr(Stdio::piped()).spawn().map_err(failed)?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin.write_all(input).map_err(failed)?;
        }
        let output = child.wait_with_output().map_err(failed)?;
        if !output.status.success() {
            return Err(Error::Backup(format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).to_string())
    }

    /// One SQL statement's result rows, tab-separated, without column names.
    fn query(&self, sql: &str, what: &str) -> Result<String, Error> {
        let mut command = self.client("mariadb", "--batch --skip-column-names");
        command.stdout(Stdio::piped());
        self.run(command, what, Some(sql.as_bytes()))
    }

    /// The wiki's latest revision timestamp and revision count, or `None` when its database
    /// does not exist.
    pub(crate) fn edits(&self, wiki: &str) -> Result<Option<(Option<String>, u64)>, Error> {
        let exists = self.query(
            &format!(
                "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{wiki}' \
                 AND table_name = 'revision';"
            ),
            &format!("looking for {wiki}'s revisions"),
        )?;
        if exists.trim() == "0" {
            return Ok(None);
        }
        let row = self.query(
            &format!("SELECT MAX(rev_timestamp), COUNT(*) FROM `{wiki}`.revision;"),
            &format!("counting {wiki}'s revisions"),
        )?;
        let mut fields = row.trim().split('\t');
        let latest = fields
            .next()
            .filter(|value| *value != "NULL")
            .map(str::to_string);
        let count = fields.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        Ok(Some((latest, count)))
    }

    /// `mariadb-dump` of one wiki's database into `file`.
    fn dump(&self, wiki: &str, file: &Path) -> Result<(), Error> {
        let out = std::fs::File::create(file).map_err(Error::io(file))?;
        let mut command = self.client(
            "mariadb-dump",
            &format!(
                "--single-transaction --quick --hex-blob --default-character-set=binary \
                 --skip-dump-date '{wiki}'"
            ),
        );
        command.stdin(Stdio::null()).stdout(out);
        self.run(command, &format!("dumping {wiki}'s database"), None)?;
        Ok(())
    }

    /// Loads `dump` as the wiki's database: into a scratch database first (a dump that does not
    /// load leaves the wiki as it was, and the database's message is returned), then every
    /// table moved into the wiki's database with one atomic `RENAME TABLE`.
    pub(crate) fn load(&self, wiki: &str, dump: &Path) -> Result<(), Error> {
        let scratch = format!("{wiki}__restore");
        self.query(
            &format!("DROP DATABASE IF EXISTS `{scratch}`; CREATE DATABASE `{scratch}`;"),
            &format!("preparing to restore {wiki}"),
        )?;
        let input = std::fs::File::open(dump).map_err(Error::io(dump))?;
        let mut command = self.client(
            "mariadb",
            &format!("--default-character-set=binary '{scratch}'"),
        );
        command.stdin(input).stdout(Stdio::null());
        if let Err(error) = self.run(command, &format!("loading {}", dump.display()), None) {
            let _ = self.query(&format!("DROP DATABASE `{scratch}`;"), "cleaning up");
            return Err(error);
        }
        let tables = self.query(
            &format!(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = \
                 '{scratch}';"
            ),
            &format!("listing {wiki}'s restored tables"),
        )?;
        // IDs the wiki handed out since the backup (revisions, text rows, log entries) must
        // not be handed out again: caches keep what they read by such IDs, and a new edit with
        // a reused revision ID would be shown with the text of the one it replaced. Each
        // counter of the restored tables starts above the live one (MariaDB keeps the larger
        // of the two when the restored rows go higher).
        let counters = self.query(
            &format!(
                "SELECT table_name, auto_increment FROM information_schema.tables WHERE \
                 table_schema = '{wiki}' AND auto_increment IS NOT NULL;"
            ),
            &format!("reading {wiki}'s ID counters"),
        )?;
        let raise: String = counters
            .lines()
            .filter_map(|line| line.split_once('\t'))
            .map(|(table, next)| {
                format!("ALTER TABLE IF EXISTS `{scratch}`.`{table}` AUTO_INCREMENT = {next};")
            })
            .collect();
        if !raise.is_empty() {
            self.query(
                &raise,
                &format!("keeping {wiki}'s new IDs above its old ones"),
            )?;
        }
        let replaced = format!("{wiki}__replaced");
        let live = self.query(
            &format!(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = '{wiki}';"
            ),
            &format!("listing {wiki}'s tables"),
        )?;
        // One RENAME TABLE moves the live tables out and the restored ones in: MariaDB runs it
        // atomically, so a reader sees the old wiki or the restored one, never a mix.
        let renames: Vec<String> = live
            .lines()
            .filter(|name| !name.is_empty())
            .map(|name| format!("`{wiki}`.`{name}` TO `{replaced}`.`{name}`"))
            .chain(
                tables
                    .lines()
                    .filter(|name| !name.is_empty())
                    .map(|name| format!("`{scratch}`.`{name}` TO `{wiki}`.`{name}`")),
            )
            .collect();
        let mut sql = format!(
            "CREATE DATABASE IF NOT EXISTS `{wiki}`; DROP DATABASE IF EXISTS `{replaced}`; \
             CREATE DATABASE `{replaced}`;"
        );
        if !renames.is_empty() {
            sql.push_str(&format!("RENAME TABLE {};", renames.join(", ")));
        }
        sql.push_str(&format!(
            "DROP DATABASE `{scratch}`; DROP DATABASE `{replaced}`;"
        ));
        self.query(&sql, &format!("putting {wiki}'s restored tables in place"))?;
        Ok(())
    }
}
