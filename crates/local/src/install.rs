//! Installing each wiki's database on first start: MediaWiki's own installer, run in the app
//! container for every wiki whose database does not exist yet, so a second `up` (or a restart)
//! never installs twice and never touches existing data.
//!
//! The database is where the release's values say: MariaDB (the farm's own MariaDB pod, or any
//! server the environment names) or, when chosen explicitly, SQLite files on the data volume.

use std::time::{Duration, Instant};

use wikikube_model::{DatabaseEngine, DatabaseValues, ResolvedSite, WikiSpec};

use crate::{podman, Error};
use wikikube_render::config::paths::SECRETS_DIR;
use wikikube_render::machine::DATA_DIR;

use wikikube_render::maintenance::DATABASE_PROBE as PROBE;
pub use wikikube_render::maintenance::{ADMIN_PASSWORD, ADMIN_USER};

/// How long a database server that was just started may take to accept connections.
const DATABASE_START: Duration = Duration::from_secs(90);

/// Installs every wiki that has no database yet, through `container`. Returns the wikis
/// installed now.
pub fn install_missing(site: &ResolvedSite, container: &str) -> Result<Vec<String>, Error> {
    let database = site.database().cloned();
    let mut missing = Vec::new();
    for (dbname, wiki) in &site.spec.wikis {
        let installed = match &database {
            Some(database) if database.engine == DatabaseEngine::Mysql => {
                mysql_installed(container, database, dbname, wiki)?
            }
            _ => sqlite_exists(container, dbname)?,
        };
        if !installed {
            missing.push((dbname, wiki));
        }
    }
    if let Some(database) = database
        .as_ref()
        .filter(|d| d.engine == DatabaseEngine::Mysql)
    {
        // Wikis that MariaDB lacks but that have SQLite files from an earlier farm: installing
        // them afresh would hide their pages behind empty wikis. Stop, and change nothing.
        let mut in_sqlite = Vec::new();
        for (dbname, _) in &missing {
            if sqlite_exists(container, dbname)? {
                in_sqlite.push((*dbname).clone());
            }
        }
        if !in_sqlite.is_empty() {
            return Err(Error::DataInSqlite {
                wikis: in_sqlite,
                volume: wikikube_render::naming::wiki_data(site),
                server: database.server_of(None),
            });
        }
    }
    let mut installed = Vec::new();
    for (dbname, _) in missing {
        install(site, container, dbname)?;
        installed.push(dbname.clone());
    }
    Ok(installed)
}

fn sqlite_exists(container: &str, dbname: &str) -> Result<bool, Error> {
    let database = format!("{DATA_DIR}/{dbname}.sqlite");
    podman::exists(&["exec", container, "test", "-s", &database])
}

/// Whether MariaDB holds the wiki's tables, waiting for a server that is still starting.
fn mysql_installed(
    container: &str,
    database: &DatabaseValues,
    dbname: &str,
    wiki: &WikiSpec,
) -> Result<bool, Error> {
    let server = database.server_of(wiki.section.as_deref());
    let password_file = format!("{SECRETS_DIR}/{}", wikikube_model::DATABASE_PASSWORD);
    let started = Instant::now();
    loop {
        let output = podman::output(&[
            "exec",
            container,
            "php",
            "-r",
            PROBE,
            "--",
            &server,
            &database.user,
            &password_file,
            dbname,
        ])?;
        let detail = String::from_utf8_lossy(&output.stderr).trim().to_string();
        match output.status.code() {
            Some(0) => return Ok(true),
            Some(1) => return Ok(false),
            Some(3) => {
                return Err(Error::DatabaseRefused {
                    server,
                    user: database.user.clone(),
                    detail,
                })
            }
            _ if started.elapsed() < DATABASE_START => {
                std::thread::sleep(Duration::from_millis(500))
            }
            _ => {
                return Err(Error::DatabaseUnreachable {
                    server,
                    seconds: DATABASE_START.as_secs(),
                    detail,
                })
            }
        }
    }
}

fn install(site: &ResolvedSite, container: &str, dbname: &str) -> Result<(), Error> {
    // The installer writes its own LocalSettings.php, which the farm does not use, to a
    // scratch directory.
    let confpath = format!("/tmp/install-{dbname}");
    let mut all: Vec<String> = [
        "exec",
        container,
        "sh",
        "-c",
        "confpath=$1; shift; mkdir -p \"$confpath\" && exec \"$@\" --confpath=\"$confpath\"",
        "install",
        &confpath,
    ]
    .map(str::to_string)
    .to_vec();
    all.extend(wikikube_render::maintenance::installer(
        site, dbname, DATA_DIR,
    ));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let output = podman::output(&all)?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(Error::Install {
            wiki: dbname.to_string(),
            output: tail(&text, 40),
        });
    }
    Ok(())
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
