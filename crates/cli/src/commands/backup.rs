//! `wikikube backup` and `wikikube restore`: the wikis' databases and media, to a directory and
//! back, with a manifest of SHA-256s (format in `wikikube-backup`); `wikikube import`: a wiki
//! from another MediaWiki's dump. Locally through the farm's containers (`wikikube_local`); a
//! cluster's backup as a Job onto the site's backups volume (`wikikube_render::backup`, run by
//! `wikikube_deploy::jobs`).

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
    /// The environment. In a Kubernetes environment backups, restores and imports run as Jobs
    /// on the site's backups volume.
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
    /// The site in the chosen environment, local or Kubernetes.
    fn load(&self) -> anyhow::Result<wikikube_model::ResolvedSite> {
        let options = wikikube_model::LoadOptions {
            private_dir: self.private_dir.clone(),
        };
        Ok(wikikube_model::load(
            &self.site_dir,
            &self.environment,
            &options,
        )?)
    }
}

/// Write a backup of the wikis: each one's database (a consistent `mariadb-dump
/// --single-transaction`, taken while the wiki serves) and media (uploads, thumbnails, deleted
/// files), with a manifest of every file's size and SHA-256.
///
/// Locally the farm must be running (`wikikube up`) and the backup goes to --to. In a Kubernetes
/// environment the backup runs as a Job in the environment's first cluster (or --cluster) and
/// goes onto the site's backups volume (`SITE-backups`), named after the Job; the oldest beyond
/// [backup] keep are deleted. --schedule prints the CronJob for a schedule instead; set
/// [backup] schedule in the site to have deploy keep one. The manifest is written last: a
/// backup that stopped halfway has none and is never restored from.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  wikikube backup --to /srv/backups/farm-2026-12-01\n  \
                        wikikube backup --env eqiad --wiki enwiki\n  \
                        wikikube backup --env eqiad --schedule '17 3 * * *' > cronjob.yaml"
)]
pub struct BackupArgs {
    #[command(flatten)]
    site: BackupSite,
    #[command(flatten)]
    choice: WikiChoice,
    /// A new (or empty) directory for the backup (local environments).
    #[arg(long, value_name = "DIR")]
    to: Option<PathBuf>,
    /// The cluster to run the backup Job in [default: the environment's first] (clusters only).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// Stop the backup Job after this many seconds (clusters only).
    #[arg(long, value_name = "SECONDS")]
    deadline: Option<u32>,
    /// Print the CronJob that takes a backup of every wiki on this cron schedule (five fields,
    /// UTC, or a macro such as @daily) as YAML, and run nothing (clusters only).
    #[arg(long, value_name = "CRON", conflicts_with_all = ["to", "cluster", "deadline", "wikis"])]
    schedule: Option<String>,
    /// Print the manifest (locally) or the Job's report (in a cluster) as JSON.
    #[arg(long)]
    json: bool,
}

/// Writes the backup.
pub fn backup(args: &BackupArgs) -> anyhow::Result<u8> {
    let site = args.site.load()?;
    if site.environment.kind != wikikube_model::EnvironmentKind::Local {
        return backup_in_cluster(&site, args);
    }
    if args.schedule.is_some() || args.cluster.is_some() || args.deadline.is_some() {
        bail!(
            "--schedule, --cluster and --deadline are for Kubernetes environments; on one \
             machine, schedule `wikikube backup --to DIR` with cron or a systemd timer"
        );
    }
    let Some(to) = &args.to else {
        bail!("a local backup needs a directory: --to DIR (a new or empty one)");
    };
    let manifest = wikikube_local::backup::backup(&site, to, &args.choice.wikis)?;
    if args.json {
        super::print(&format!("{}\n", serde_json::to_string_pretty(&manifest)?))?;
        return Ok(exit::OK);
    }
    let mut text = format!("backup of {} in {}\n", manifest.site, to.display());
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

/// A cluster's backup: the CronJob for `--schedule`, or one Job run to its end.
fn backup_in_cluster(site: &wikikube_model::ResolvedSite, args: &BackupArgs) -> anyhow::Result<u8> {
    let backups = &cluster_backups(site, "back up with")?;
    if let Some(schedule) = &args.schedule {
        wikikube_model::validate::check_cron(schedule).map_err(|problem| {
            anyhow::anyhow!(
                "`{schedule}` is not a cron schedule: {problem}; write five fields, minute hour \
                 day-of-month month day-of-week (`17 3 * * *`, UTC), or a macro such as @daily"
            )
        })?;
        let cron_job = wikikube_render::Object::CronJob(backups.cron_job(schedule.trim()));
        super::print(&format!("---\n{}", wikikube_render::object_yaml(&cron_job)))?;
        return Ok(exit::OK);
    }
    if args.to.is_some() {
        bail!(
            "a cluster's backups go onto the site's backups volume ({}), not to a directory \
             here: leave out --to",
            wikikube_render::naming::backups(site)
        );
    }
    known_wikis(backups, &args.choice.wikis)?;
    let job = backups.job(
        &args.choice.wikis,
        &job_settings(args.deadline),
        &wikikube_deploy::jobs::run_id(),
    );
    let volume = wikikube_render::naming::backups(site);
    let run = run_job(site, args.cluster.as_deref(), &job, args.json)?;
    let summary = format!(
        "backup {} of {} on volume {volume} in cluster {} ({:.0} s)",
        run.report.job, site.spec.site.name, run.report.cluster, run.report.seconds
    );
    let extra = serde_json::json!({ "backup": run.report.job, "volume": volume });
    run.finish(site, args.json, extra, &summary, "dump")
}

/// The backups of a Kubernetes environment as rendered, or an error saying there is nothing to
/// `action` (`restore into`): no MariaDB/MySQL databases or no enabled main release.
fn cluster_backups(
    site: &wikikube_model::ResolvedSite,
    action: &str,
) -> anyhow::Result<wikikube_render::backup::Backups> {
    let rendered = wikikube_render::render(site, &wikikube_render::RenderOptions::default())?;
    rendered.backups.ok_or_else(|| {
        anyhow::anyhow!(
            "environment {} has no MariaDB/MySQL databases and enabled main release to {action}",
            site.environment_name
        )
    })
}

/// Refuses a wiki the farm does not have, before any cluster is reached.
fn known_wikis(backups: &wikikube_render::backup::Backups, wikis: &[String]) -> anyhow::Result<()> {
    let known: Vec<&str> = backups.wikis().collect();
    if let Some(unknown) = wikis.iter().find(|wiki| !known.contains(&wiki.as_str())) {
        bail!(
            "the farm has no wiki {unknown}; its wikis: {}",
            known.join(", ")
        );
    }
    Ok(())
}

/// How a backup or restore Job runs: by `$USER`, stopped after `deadline` seconds if given.
fn job_settings(deadline: Option<u32>) -> wikikube_render::maintenance::JobSettings {
    wikikube_render::maintenance::JobSettings {
        user: std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        deadline_seconds: deadline,
        ..wikikube_render::maintenance::JobSettings::default()
    }
}

/// A backup or restore Job that ran to its end, with its `app` container's output.
struct JobRun {
    report: wikikube_deploy::jobs::JobReport,
    lines: Vec<String>,
}

impl JobRun {
    fn succeeded(&self) -> bool {
        self.report.outcome == wikikube_deploy::jobs::Outcome::Succeeded
    }

    fn output_text(&self) -> String {
        self.lines.iter().map(|line| format!("{line}\n")).collect()
    }

    /// Prints the outcome and returns the exit code: with `json`, the Job's report with the
    /// `extra` fields and the output; otherwise the output and `summary` when the Job
    /// succeeded, or what failed (on standard error, naming where `first_step`'s output is).
    fn finish(
        &self,
        site: &wikikube_model::ResolvedSite,
        json: bool,
        extra: serde_json::Value,
        summary: &str,
        first_step: &str,
    ) -> anyhow::Result<u8> {
        if json {
            let mut value = serde_json::to_value(&self.report)?;
            if let (Some(object), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra)
            {
                object.extend(extra);
            }
            value["output"] = serde_json::json!(self.lines);
            super::print(&format!("{}\n", serde_json::to_string_pretty(&value)?))?;
        } else if self.succeeded() {
            super::print(&format!("{}{summary}\n", self.output_text()))?;
        } else {
            self.report_failure(&site.spec.site.namespace, first_step);
        }
        Ok(if self.succeeded() {
            exit::OK
        } else {
            exit::FAILURE
        })
    }

    /// The output and what failed on standard error, with where the first step's output is.
    fn report_failure(&self, namespace: &str, first_step: &str) {
        for line in &self.lines {
            eprintln!("{line}");
        }
        eprintln!(
            "{}: Job {} {}; the {first_step} step's output: kubectl logs -n {namespace} job/{} -c {first_step}",
            self.report.cluster, self.report.job, self.report.outcome, self.report.job
        );
    }
}

/// Runs `job` in the environment's first cluster (or `cluster`) to its end, following its
/// `app` container; progress on standard error unless `quiet`.
fn run_job(
    site: &wikikube_model::ResolvedSite,
    cluster: Option<&str>,
    job: &wikikube_deploy::jobs::Job,
    quiet: bool,
) -> anyhow::Result<JobRun> {
    let cluster = super::script::one_cluster(site, cluster)?;
    let runtime = wikikube_deploy::runtime()?;
    let targets = runtime.block_on(wikikube_deploy::connect(std::slice::from_ref(cluster)))?;
    let options = wikikube_deploy::jobs::JobOptions::default();
    let lines = std::sync::Mutex::new(Vec::new());
    let output = |line: &str| lines.lock().expect("not poisoned").push(line.to_string());
    let progress: &dyn wikikube_deploy::progress::Progress = if quiet {
        &wikikube_deploy::progress::Quiet
    } else {
        &super::script::Lines
    };
    let report = runtime.block_on(wikikube_deploy::jobs::run(
        &targets[0],
        &site.spec.site.namespace,
        job,
        &options,
        progress,
        &output,
    ))?;
    Ok(JobRun {
        report,
        lines: lines.into_inner().expect("not poisoned"),
    })
}

/// Restore wikis from a backup: every file is checked against the manifest first, and a wiki
/// with edits newer than the backup is refused unless --force; nothing changes when a check
/// fails.
///
/// The database is loaded beside the wiki's and swapped in at once; the media directories are
/// copied beside the live ones and renamed into place. Locally the farm must be running and
/// --from is a backup directory. In a Kubernetes environment --from is the name of a backup on
/// the site's backups volume (`wikikube backup --env ENV` prints it; `mwbackup-...`), and the
/// restore runs as a Job in the environment's first cluster (or --cluster): its `check` step
/// verifies the files, its `app` step loads the databases and copies the media back.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  wikikube restore --from /srv/backups/farm-2026-12-01 --wiki enwiki\n  \
                        wikikube restore --env eqiad --from mwbackup-all-20261201-031700-ab12"
)]
pub struct RestoreArgs {
    #[command(flatten)]
    site: BackupSite,
    #[command(flatten)]
    choice: WikiChoice,
    /// The backup: a directory with its manifest.json (local environments), or a backup's name
    /// on the site's backups volume (clusters).
    #[arg(long, value_name = "DIR|NAME")]
    from: PathBuf,
    /// Replace wikis that have edits newer than the backup.
    #[arg(long)]
    force: bool,
    /// The cluster to run the restore Job in [default: the environment's first] (clusters only).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// Stop the restore Job after this many seconds (clusters only).
    #[arg(long, value_name = "SECONDS")]
    deadline: Option<u32>,
    /// Print what was restored (locally) or the Job's report (in a cluster) as JSON.
    #[arg(long)]
    json: bool,
}

/// Restores.
pub fn restore(args: &RestoreArgs) -> anyhow::Result<u8> {
    let site = args.site.load()?;
    if site.environment.kind != wikikube_model::EnvironmentKind::Local {
        return restore_in_cluster(&site, args);
    }
    if args.cluster.is_some() || args.deadline.is_some() {
        bail!("--cluster and --deadline are for Kubernetes environments");
    }
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

/// A cluster's restore: one Job, run to its end.
fn restore_in_cluster(
    site: &wikikube_model::ResolvedSite,
    args: &RestoreArgs,
) -> anyhow::Result<u8> {
    let backups = &cluster_backups(site, "restore into")?;
    let volume = wikikube_render::naming::backups(site);
    let name = args.from.to_string_lossy();
    if !wikikube_render::backup::valid_backup_name(&name) {
        bail!(
            "in a Kubernetes environment --from is the name of a backup on the volume {volume} \
             (such as mwbackup-all-20261201-031700-ab12, as `wikikube backup --env {}` prints \
             it), not `{name}`",
            site.environment_name
        );
    }
    known_wikis(backups, &args.choice.wikis)?;
    let job = backups.restore_job(
        &name,
        &args.choice.wikis,
        args.force,
        &job_settings(args.deadline),
        &wikikube_deploy::jobs::run_id(),
    );
    let run = run_job(site, args.cluster.as_deref(), &job, args.json)?;
    let summary = format!(
        "restored from backup {name} on volume {volume} in cluster {} ({:.0} s)",
        run.report.cluster, run.report.seconds
    );
    let extra = serde_json::json!({ "backup": name, "volume": volume });
    run.finish(site, args.json, extra, &summary, "check")
}

/// Load an existing wiki from another MediaWiki's SQL dump (and its images/ directory) into a
/// wiki of the farm, then upgrade its schema to the wiki's MediaWiki version with update.php and
/// rebuild its site statistics and recent changes.
///
/// A dump that does not load is refused with MariaDB's message and the wiki stays as it was. A
/// wiki with pages beyond its installation's first revision is refused unless --force.
///
/// --xml takes an XML dump instead (Special:Export, dumpBackup.php; local environments): its
/// pages are added with MediaWiki's importDump.php, beside the wiki's own, and the statistics
/// and recent changes rebuilt.
///
/// Locally the farm must be running, and --sql and --images are a file and a directory on this
/// machine. In a Kubernetes environment the import runs as a Job in the environment's first
/// cluster (or --cluster), which downloads them itself: --sql is an http(s) URL of the dump
/// and --images one of a tar (or .tar.gz) of the images/ directory; the Job keeps them on the
/// site's backups volume as a backup named after it (`mwimport-...`), checks them as a restore
/// does, loads the database, copies the media (when the site keeps them on a volume) and runs
/// update.php and the rebuilds.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("dump").required(true).args(["sql", "xml"])))]
#[command(
    after_help = "Examples:\n  wikikube import dewiki --sql dewiki.sql.gz --images /srv/old-wiki/images\n  \
                        wikikube import dewiki --xml pages-export.xml.gz\n  \
                        wikikube import dewiki --env eqiad --sql https://dumps.example.org/dewiki.sql.gz \\\n    \
                        --images https://dumps.example.org/dewiki-images.tar.gz"
)]
pub struct ImportArgs {
    /// The wiki to load into (its database name, `enwiki`).
    wiki: String,
    #[command(flatten)]
    site: BackupSite,
    /// The SQL dump of the wiki's database (`mysqldump DB`), plain or gzip-compressed (`.gz`):
    /// a file locally, an http(s) URL the cluster can reach in a Kubernetes environment.
    #[arg(long, value_name = "DUMP|URL")]
    sql: Option<PathBuf>,
    /// An XML dump of pages (Special:Export, dumpBackup.php), plain or `.gz`, added to the
    /// wiki's pages with importDump.php (local environments).
    #[arg(long, value_name = "DUMP", conflicts_with_all = ["images", "force"])]
    xml: Option<PathBuf>,
    /// The wiki's images/ directory (uploads in MediaWiki's hashed layout) locally; in a
    /// Kubernetes environment an http(s) URL of a tar or .tar.gz of it.
    #[arg(long, value_name = "DIR|URL")]
    images: Option<PathBuf>,
    /// Replace a wiki that already has pages.
    #[arg(long)]
    force: bool,
    /// The cluster to run the import Job in [default: the environment's first] (clusters only).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// Stop the import Job after this many seconds (clusters only).
    #[arg(long, value_name = "SECONDS")]
    deadline: Option<u32>,
    /// Print what was imported as JSON.
    #[arg(long)]
    json: bool,
}

/// Imports.
pub fn import(args: &ImportArgs) -> anyhow::Result<u8> {
    let site = args.site.load()?;
    if site.environment.kind != wikikube_model::EnvironmentKind::Local {
        return import_in_cluster(&site, args);
    }
    if args.cluster.is_some() || args.deadline.is_some() {
        bail!("--cluster and --deadline are for Kubernetes environments");
    }
    let imported = match (&args.sql, &args.xml) {
        (Some(sql), _) => wikikube_local::import::import(
            &site,
            &args.wiki,
            sql,
            args.images.as_deref(),
            args.force,
        )?,
        (None, Some(xml)) => wikikube_local::import::import_xml(&site, &args.wiki, xml)?,
        (None, None) => bail!("--sql or --xml names the dump"),
    };
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

/// A URL a cluster's Job can download, or an error saying what --sql or --images takes there.
fn cluster_url(option: &str, value: &std::path::Path) -> anyhow::Result<String> {
    let text = value.to_string_lossy();
    if (text.starts_with("https://") || text.starts_with("http://"))
        && !text.contains(char::is_whitespace)
    {
        return Ok(text.into_owned());
    }
    bail!(
        "in a Kubernetes environment {option} is an http(s) URL that the cluster can reach (the \
         import Job downloads it), not `{text}`: put the file on a web server or object store \
         first, or import into a local environment"
    )
}

/// A cluster's import: one Job, run to its end.
fn import_in_cluster(site: &wikikube_model::ResolvedSite, args: &ImportArgs) -> anyhow::Result<u8> {
    let backups = &cluster_backups(site, "import into")?;
    known_wikis(backups, std::slice::from_ref(&args.wiki))?;
    let Some(sql) = &args.sql else {
        bail!(
            "in a Kubernetes environment an import takes a SQL dump (--sql URL); XML dumps \
             (--xml) are imported in local environments"
        );
    };
    let sql = cluster_url("--sql", sql)?;
    let images = args
        .images
        .as_deref()
        .map(|images| cluster_url("--images", images))
        .transpose()?;
    let in_swift = site
        .media()
        .is_some_and(|media| media.storage == wikikube_model::MediaStorage::Swift);
    if images.is_some() && in_swift {
        bail!(
            "environment {} keeps media in Swift, and a cluster's import copies images only to a \
             media volume; nothing was imported. Import the images with MediaWiki's \
             importImages.php (`wikikube script`), or import into a local environment on Swift",
            site.environment_name
        );
    }
    let job = backups.import_job(
        &args.wiki,
        &sql,
        images.as_deref(),
        args.force,
        &job_settings(args.deadline),
        &wikikube_deploy::jobs::run_id(),
    );
    let run = run_job(site, args.cluster.as_deref(), &job, args.json)?;
    let name = job.metadata.name.clone().unwrap_or_default();
    let volume = wikikube_render::naming::backups(site);
    let summary = format!(
        "imported {} in cluster {} ({:.0} s): schema updated, statistics and recent changes \
         rebuilt; the dump is kept as backup {name} on volume {volume}",
        args.wiki, run.report.cluster, run.report.seconds
    );
    let extra = serde_json::json!({ "wiki": args.wiki, "backup": name, "volume": volume });
    run.finish(site, args.json, extra, &summary, "fetch")
}
