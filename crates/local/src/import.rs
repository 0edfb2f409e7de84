//! `wikikube import`: an existing wiki, from another MediaWiki's SQL dump and images directory,
//! into a wiki of the local farm.
//!
//! The dump loads into a scratch database and replaces the wiki's tables at once (as a restore
//! does, [`crate::backup`]), so a dump that does not load leaves the wiki as it was and the
//! error is MariaDB's own. Then the images directory (MediaWiki's `images/`, hashed
//! subdirectories and `thumb/`) becomes the wiki's media, `update.php` brings the schema to the
//! wiki's MediaWiki version (a dump of an older MediaWiki is upgraded), and the site statistics
//! and recent changes are rebuilt from the imported pages.

use std::io::Read;
use std::path::Path;

use wikikube_model::ResolvedSite;
use wikikube_render::maintenance::ScriptRequest;

use crate::backup::Database;
use crate::media::{MediaStore, Part};
use crate::Error;

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// The wiki.
    pub wiki: String,
    /// Revisions in its database after the import.
    pub revisions: u64,
    /// Files copied into its media.
    pub media_files: usize,
}

/// Imports `dump` (SQL, or SQL compressed with gzip when its name ends in `.gz`) and, when given,
/// `images` into `wiki`. A wiki that has more than the one revision its installation made is
/// refused unless `force`, so an import never overwrites pages by accident.
pub fn import(
    site: &ResolvedSite,
    wiki: &str,
    dump: &Path,
    images: Option<&Path>,
    force: bool,
) -> Result<Imported, Error> {
    crate::script::check_wiki(site, wiki)?;
    // Where the images go, known before anything changes.
    let media = match images {
        Some(images) if !images.is_dir() => {
            return Err(Error::Backup(format!(
                "{} is not a directory: --images takes MediaWiki's images/ directory",
                images.display()
            )));
        }
        Some(_) => Some(MediaStore::of(site)?),
        None => None,
    };
    let database = Database::of(site)?;
    if !force {
        if let Some((_, revisions)) = database.edits(wiki)? {
            if revisions > 1 {
                return Err(Error::Backup(format!(
                    "wiki {wiki} already has {revisions} revisions; nothing was imported. Import \
                     into a new wiki, or pass --force to replace its pages"
                )));
            }
        }
    }
    let scratch = tempfile::tempdir().map_err(Error::io(&std::env::temp_dir()))?;
    let sql = if dump.extension().is_some_and(|ext| ext == "gz") {
        let plain = scratch.path().join("dump.sql");
        let file = std::fs::File::open(dump).map_err(Error::io(dump))?;
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(file)
            .read_to_end(&mut text)
            .map_err(Error::io(dump))?;
        std::fs::write(&plain, text).map_err(Error::io(&plain))?;
        plain
    } else {
        dump.to_path_buf()
    };
    database.load(wiki, &sql)?;
    drop(scratch);

    let mut media_files = 0;
    if let (Some(images), Some(media)) = (images, media) {
        media_files = media.replace(wiki, Part::Public, images)?;
    }
    for request in [
        ScriptRequest::update(wiki),
        ScriptRequest {
            wiki: wiki.to_string(),
            script: "initSiteStats.php".into(),
            arguments: vec!["--update".into()],
        },
        ScriptRequest {
            wiki: wiki.to_string(),
            script: "rebuildrecentchanges.php".into(),
            arguments: Vec::new(),
        },
    ] {
        let output = crate::script::output(site, &request)?;
        if !output.status.success() {
            return Err(Error::Backup(format!(
                "{} for {wiki} failed after the import:\n{}{}",
                request.script,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )));
        }
    }
    let revisions = database.edits(wiki)?.map_or(0, |(_, count)| count);
    Ok(Imported {
        wiki: wiki.to_string(),
        revisions,
        media_files,
    })
}
