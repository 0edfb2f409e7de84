//! `wikikube`: the command line. It parses arguments, calls one library entry point per command,
//! prints the outcome (for people, or JSON for machines) and maps it to an exit code. Everything
//! else lives in the library crates: `model`, `render`, `image`, `local`, `deploy`, `release`.

// The argument structs' doc comments are clap's --help text, written for a terminal: `[images]`
// there is a TOML table and `<redacted>` what the output prints, not a link or an HTML tag.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Exit codes, documented in `--help`.
pub mod exit {
    /// Success (for `diff`: no difference).
    pub const OK: u8 = 0;
    /// A mistake in the site files, a failed build or deploy, or another error.
    pub const FAILURE: u8 = 1;
    /// The command line is wrong (reported by clap).
    pub const USAGE: u8 = 2;
    /// The rendered objects break lint rules that were not allowed.
    pub const LINT: u8 = 3;
    /// `wikikube diff` or `release --diff-only` found differences (a failed diff is 1).
    pub const DIFFERENCES: u8 = 4;
}

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  a mistake in the site files, or a failed command (the message says which file and line)
  2  wrong command-line usage
  3  rendered objects break lint rules (see `wikikube render --help`)
  4  `wikikube diff` (or `release --diff-only`) found differences (0: none)

A site is a directory with site.toml, environments/ and private/; see docs/site-format.md.";

/// Builds, configures, runs and deploys a MediaWiki wiki farm on Kubernetes.
#[derive(Parser)]
#[command(name = "wikikube", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Up(commands::local::UpArgs),
    Down(commands::local::DownArgs),
    Status(commands::local::StatusArgs),
    Logs(commands::local::LogsArgs),
    Script(commands::script::ScriptArgs),
    Backup(commands::backup::BackupArgs),
    Restore(commands::backup::RestoreArgs),
    Import(commands::backup::ImportArgs),
    Build(commands::build::BuildArgs),
    Render(commands::render::RenderArgs),
    Explain(commands::explain::ExplainArgs),
    Diff(commands::diff::DiffArgs),
    Deploy(commands::deploy::DeployArgs),
    Release(commands::release::ReleaseArgs),
    Rollback(commands::rollback::RollbackArgs),
    History(commands::history::HistoryArgs),
    Train(commands::train::TrainArgs),
}

/// Where the site is and which environment to load: shared by every command that reads a site.
#[derive(Args, Clone, Debug)]
pub struct SiteArgs {
    /// The environment: a datacenter such as `eqiad`, or `local`.
    #[arg(long = "env", short = 'e', value_name = "ENV")]
    pub environment: String,
    /// The directory config management writes private values into [default: SITE_DIR/private].
    #[arg(long, value_name = "DIR")]
    pub private_dir: Option<PathBuf>,
}

impl SiteArgs {
    /// Loads `site_dir` for the chosen environment.
    pub fn load(
        &self,
        site_dir: &std::path::Path,
    ) -> Result<wikikube_model::ResolvedSite, wikikube_model::Error> {
        let options = wikikube_model::LoadOptions {
            private_dir: self.private_dir.clone(),
        };
        wikikube_model::load(site_dir, &self.environment, &options)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => commands::local::up(&args),
        Command::Down(args) => commands::local::down(&args),
        Command::Status(args) => commands::local::status(&args),
        Command::Logs(args) => commands::local::logs(&args),
        Command::Script(args) => commands::script::run(&args),
        Command::Backup(args) => commands::backup::backup(&args),
        Command::Restore(args) => commands::backup::restore(&args),
        Command::Import(args) => commands::backup::import(&args),
        Command::Build(args) => commands::build::run(&args),
        Command::Render(args) => commands::render::run(&args),
        Command::Explain(args) => commands::explain::run(&args),
        Command::Diff(args) => commands::diff::run(&args),
        Command::Deploy(args) => commands::deploy::run(&args),
        Command::Release(args) => commands::release::run(&args),
        Command::Rollback(args) => commands::rollback::run(&args),
        Command::History(args) => commands::history::run(&args),
        Command::Train(args) => commands::train::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            let code = match error.downcast_ref::<wikikube_render::RenderError>() {
                Some(wikikube_render::RenderError::Lint(_)) => exit::LINT,
                _ => exit::FAILURE,
            };
            ExitCode::from(code)
        }
    }
}
