//! Progress while a deploy runs: one line per cluster that says which phase it is in and what
//! it waits for. The deploy logic only emits events; how they show is the caller's choice.

use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::plan::Phase;

/// Hears what a deploy does.
pub trait Progress: Send + Sync {
    /// Something happened in `cluster`, during `phase` when there is one.
    fn event(&self, cluster: &str, phase: Option<Phase>, message: &str);
}

/// Hears nothing.
pub struct Quiet;

impl Progress for Quiet {
    fn event(&self, _: &str, _: Option<Phase>, _: &str) {}
}

/// Keeps every event as a line, for tests and logs.
#[derive(Default)]
pub struct Log {
    lines: Mutex<Vec<String>>,
}

impl Log {
    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("not poisoned").clone()
    }
}

impl Progress for Log {
    fn event(&self, cluster: &str, phase: Option<Phase>, message: &str) {
        let line = match phase {
            Some(phase) => format!("{cluster} {phase}: {message}"),
            None => format!("{cluster}: {message}"),
        };
        self.lines.lock().expect("not poisoned").push(line);
    }
}

/// A spinner per cluster on standard error (indicatif hides them when it is not a terminal,
/// and then prints nothing, so piped output stays clean).
pub struct Bars {
    multi: MultiProgress,
    bars: Vec<(String, ProgressBar)>,
}

impl Bars {
    /// One spinner for each cluster.
    pub fn new(clusters: &[String]) -> Bars {
        let multi = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
            .expect("the template is valid");
        let bars = clusters
            .iter()
            .map(|cluster| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(cluster.clone());
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                (cluster.clone(), bar)
            })
            .collect();
        Bars { multi, bars }
    }

    /// Stops the spinners, leaving their last lines.
    pub fn finish(&self) {
        for (_, bar) in &self.bars {
            bar.finish();
        }
        let _ = self.multi.clear();
    }
}

impl Progress for Bars {
    fn event(&self, cluster: &str, phase: Option<Phase>, message: &str) {
        let text = match phase {
            Some(phase) => format!("[{phase}] {message}"),
            None => message.to_string(),
        };
        if let Some((_, bar)) = self.bars.iter().find(|(name, _)| name == cluster) {
            bar.set_message(text.clone());
        }
        // A kept line as well, so the story is on screen after the spinners are gone.
        let _ = self.multi.println(format!("{cluster}: {text}"));
    }
}
