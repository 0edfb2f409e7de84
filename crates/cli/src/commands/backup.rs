//! `wikikube backup` and `wikikube restore`: the wikis' databases and media, to a directory and
//! back, with a manifest of SHA-256s (format in `wikikube-backup`); `wikikube import`: a wiki
//! from another MediaWiki's dump.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use crate::exit;

/// Where the site is, for backup, restore and import.
#[derive(Args, Debug)]
pub struct BackupSite {
    /// The site directory.
    #[arg(value_name = "SITE_DIR", default_value = ".")]
    site_dir: PathBuf,
    /// The environment: a local one (backing up, restoring and importing a cluster's wikis is
    /// not built yet).
    #[arg(long = "env", short = 'e', value_name = "ENV", default_value = "local")]
    environment: String,
    /// The directory config management writes private values into [default: SITE_DIR/private].
    #[arg(long, value_name = "DIR")]
    private_dir: Option<PathBuf>,
}

/// The wikis a backup or restore covers.
#[derive(Args, Debug)]
pub struct WikiChoice {
    /// One wiki (repeatable); every wiki when left out.
    #[arg(long = "wiki", short = 'w', value_name = "WIKI")]
    wikis: Vec<String>,
}

impl BackupSite {
    fn load(&self) -> anyhow::Result<wikikube_model::ResolvedSite> {
        let options = wikikube_model::LoadOptions {
            private_dir: self.private_dir.clone(),
        };
        let site = wikikube_model::load(&self.site_dir, &self.environment, &options)?;
        if site.environment.kind != wikikube_model::EnvironmentKind::Local {
            bail!(
                "environment {} is a Kubernetes environment: backing up, restoring and importing \
                 a cluster's wikis (as Jobs, with a CronJob for schedules) is not built yet; use \
                 a local environment, or the database servers' own tools",
                self.environment
            );
        }
        Ok(site)
    }
}

/// Write a backup of the wikis: each one's database (a consistent `mariadb-dump
/// --single-transaction`, taken while the wiki serves) and media (uploads, thumbnails, deleted
/// files), with a manifest of every file's size and SHA-256.
///
/// The local farm must be running (`wikikube up`). The manifest is written last: a backup that
/// stopped halfway has none and is never restored from.
#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    site: BackupSite,
    #[command(flatten)]
    choice: WikiChoice,
    /// A new (or empty) directory for the backup.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Print the manifest as JSON.
    #[arg(long)]
    json: bool,
}

/// Writes the backup.
pub fn backup(args: &BackupArgs) -> anyhow::Result<u8> {
    let site = args.site.load()?;
    let manifest = wikikube_local::backup::backup(&site, &args.to, &args.choice.wikis)?;
    if args.json {
        super::print(&format!("{}\n", serde_json::to_string_pretty(&manifest)?))?;
        return Ok(exit::OK);
    }
    let mut text = format!("backup of {} in {}\n", manifest.site, args.to.display());
    for (wiki, part) in &manifest.wikis {
        text.push_str(&format!(
            "  {wiki:<14} MediaWiki {:<16} {:>5} revisions, latest {}, {} files, {} bytes\n",
            part.version,
            part.revisions,
            part.latest_edit.as_deref().unwrap_or("none"),
            part.files.len(),
            part.bytes()
        ));
    }
    super::print(&text)?;
    Ok(exit::OK)
}

/// Restore wikis from a backup: every file is checked against the manifest first, and a wiki
/// with edits newer than the backup is refused unless --force; nothing changes when a check
/// fails.
///
/// The database is loaded beside the wiki's and swapped in at once; the media directories are
/// copied beside the live ones and renamed into place. The local farm must be running.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    site: BackupSite,
    #[command(flatten)]
    choice: WikiChoice,
    /// The backup directory (with its manifest.json).
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// Replace wikis that have edits newer than the backup.
    #[arg(long)]
    force: bool,
    /// Print what was restored as JSON.
    #[arg(long)]
    json: bool,
}

/// Restores.
pub fn restore(args: &RestoreArgs) -> anyhow::Result<u8> {
    let site = args.site.load()?;
    let restored =
        wikikube_local::backup::restore(&site, &args.from, &args.choice.wikis, args.force)?;
    if args.json {
        super::print(&format!("{}\n", serde_json::to_string_pretty(&restored)?))?;
        return Ok(exit::OK);
    }
    let mut text = String::new();
    for wiki in &restored {
        text.push_str(&format!(
            "restored {}: {} revisions, {} media files\n",
            wiki.wiki, wiki.revisions, wiki.media_files
        ));
    }
    super::print(&text)?;
    Ok(exit::OK)
}

/// Load an existing wiki from another MediaWiki's SQL dump (and its images/ directory) into a
/// wiki of the farm, then upgrade its schema to the wiki's MediaWiki version with update.php and
/// rebuild its site statistics and recent changes.
///
/// A dump that does not load is refused with MariaDB's message and the wiki stays as it was. A
/// wiki with pages beyond its installation's first revision is refused unless --force. The
/// local farm must be running.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The wiki to load into (its database name, `enwiki`).
    wiki: String,
    #[command(flatten)]
    site: BackupSite,
    /// The SQL dump of the wiki's database (`mysqldump DB`), plain or gzip-compressed (`.gz`).
    #[arg(long, value_name = "DUMP")]
    sql: PathBuf,
    /// The wiki's images/ directory (uploads in MediaWiki's hashed layout).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Replace a wiki that already has pages.
    #[arg(long)]
    force: bool,
    /// Print what was imported as JSON.
    #[arg(long)]
    json: bool,
}

/// Imports.
pub fn import(args: &ImportArgs) -> anyhow::Result<u8> {
    let site = args.site.load()?;
    let imported = wikikube_local::import::import(
        &site,
        &args.wiki,
        &args.sql,
        args.images.as_deref(),
        args.force,
    )?;
    if args.json {
        super::print(&format!("{}\n", serde_json::to_string_pretty(&imported)?))?;
    } else {
        super::print(&format!(
            "imported {}: {} revisions, {} media files; schema updated, statistics and recent \
             changes rebuilt\n",
            imported.wiki, imported.revisions, imported.media_files
        ))?;
    }
    Ok(exit::OK)
}
