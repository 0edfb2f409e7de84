//! `wikikube import`: an existing wiki, from another MediaWiki's SQL dump and images directory,
//! into a wiki of the local farm.
//!
//! The dump loads into a scratch database and replaces the wiki's tables at once (as a restore
//! does, [`crate::backup`]), so a dump that does not load leaves the wiki as it was and the
//! error is MariaDB's own. Then the images directory (MediaWiki's `images/`, hashed
//! subdirectories and `thumb/`) becomes the wiki's media, `update.php` brings the schema to the
//! wiki's MediaWiki version (a dump of an older MediaWiki is upgraded), and the site statistics
//! and recent changes are rebuilt from the imported pages. An XML dump goes through MediaWiki's
//! own `importDump.php` instead ([`import_xml`]).

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
    let sql = uncompressed(dump, scratch.path())?;
    database.load(wiki, &sql)?;
    drop(scratch);

    let mut media_files = 0;
    if let (Some(images), Some(media)) = (images, media) {
        media_files = media.replace(wiki, Part::Public, images)?;
    }
    rebuild(site, wiki, true)?;
    let revisions = database.edits(wiki)?.map_or(0, |(_, count)| count);
    Ok(Imported {
        wiki: wiki.to_string(),
        revisions,
        media_files,
    })
}

/// Imports the pages of an XML dump (`dumpBackup.php`, Special:Export; plain or `.gz`) into
/// `wiki` with MediaWiki's `importDump.php`, which adds their revisions to the wiki's history
/// (a page that exists keeps its own revisions beside the imported ones), then rebuilds the
/// site statistics and recent changes. Nothing is replaced, so no `--force` is needed.
pub fn import_xml(site: &ResolvedSite, wiki: &str, dump: &Path) -> Result<Imported, Error> {
    crate::script::check_wiki(site, wiki)?;
    let database = Database::of(site)?;
    let scratch = tempfile::tempdir().map_err(Error::io(&std::env::temp_dir()))?;
    let xml = uncompressed(dump, scratch.path())?;
    let input = std::fs::File::open(&xml).map_err(Error::io(&xml))?;
    let request = ScriptRequest {
        wiki: wiki.to_string(),
        script: "importDump.php".into(),
        arguments: Vec::new(),
    };
    let output = crate::script::output_with_input(site, &request, input)?;
    if !output.status.success() {
        return Err(Error::Backup(format!(
            "importDump.php could not import {} into {wiki}:\n{}{}",
            dump.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    drop(scratch);
    rebuild(site, wiki, false)?;
    let revisions = database.edits(wiki)?.map_or(0, |(_, count)| count);
    Ok(Imported {
        wiki: wiki.to_string(),
        revisions,
        media_files: 0,
    })
}

/// `dump` itself, or its gunzipped copy in `scratch` when its name ends in `.gz`.
fn uncompressed(dump: &Path, scratch: &Path) -> Result<std::path::PathBuf, Error> {
    if dump.extension().is_none_or(|ext| ext != "gz") {
        return Ok(dump.to_path_buf());
    }
    let plain = scratch.join("dump");
    let file = std::fs::File::open(dump).map_err(Error::io(dump))?;
    let mut out = std::fs::File::create(&plain).map_err(Error::io(&plain))?;
    std::io::copy(&mut flate2::read::GzDecoder::new(file), &mut out).map_err(Error::io(dump))?;
    Ok(plain)
}

/// What runs after an import: after a SQL dump `replaced` the wiki's tables,
/// [`ScriptRequest::after_import`] (schema, caches, rebuilds); after an XML import only the
/// rebuilds of the statistics and recent changes.
fn rebuild(site: &ResolvedSite, wiki: &str, replaced: bool) -> Result<(), Error> {
    let requests = if replaced {
        ScriptRequest::after_import(wiki)
    } else {
        ScriptRequest::rebuilds(wiki).to_vec()
    };
    for request in requests {
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
    Ok(())
}
