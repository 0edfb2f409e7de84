//! One module per subcommand; each has its arguments and a `run` function.

pub mod backup;
pub mod build;
pub mod deploy;
pub mod diff;
pub mod explain;
pub mod history;
pub mod local;
pub mod release;
pub mod render;
pub mod rollback;
pub mod script;
pub mod train;

use std::io::Write;

/// Writes command output to stdout. A closed pipe (`wikikube render ... | head`) is a normal way
/// for a reader to stop, not an error.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
