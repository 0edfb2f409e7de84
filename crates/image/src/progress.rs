//! Progress while building (a spinner per image on a terminal, one line per step in a log),
//! and the final table.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use crate::build::Report;

/// Progress on stderr: spinners, one per image, when stderr is a terminal; otherwise one
/// line per step, so a first build's minutes show in a log too. Silent when not wanted.
pub struct Progress {
    multi: Option<MultiProgress>,
    bars: BTreeMap<String, ProgressBar>,
    /// Line mode: when the build started, and the last step printed per image.
    lines: Option<(Instant, BTreeMap<String, String>)>,
}

impl Progress {
    /// Shows progress when `enabled`.
    pub fn new(enabled: bool) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        Progress {
            multi: (enabled && terminal).then(MultiProgress::new),
            bars: BTreeMap::new(),
            lines: (enabled && !terminal).then(|| (Instant::now(), BTreeMap::new())),
        }
    }

    /// Prints `what` for `image` in line mode, once per change.
    fn line(&mut self, image: &str, what: &str) {
        if let Some((start, last)) = &mut self.lines {
            if last.get(image).map(String::as_str) != Some(what) {
                eprintln!("[{:>6.1}s] {image}: {what}", start.elapsed().as_secs_f64());
                last.insert(image.to_string(), what.to_string());
            }
        }
    }

    fn bar(&mut self, image: &str) -> Option<&ProgressBar> {
        let multi = self.multi.as_ref()?;
        Some(self.bars.entry(image.to_string()).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:>14} {msg} [{elapsed}]")
                    .expect("a valid template"),
            );
            bar.set_prefix(image.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        }))
    }

    /// `image` is now working on `what`.
    pub fn step(&mut self, image: &str, what: &str) {
        self.line(image, what);
        if let Some(bar) = self.bar(image) {
            bar.set_message(what.to_string());
        }
    }

    /// `image` is done.
    pub fn done(&mut self, image: &str, digest: &str) {
        self.line(image, &format!("done {digest}"));
        if let Some(bar) = self.bar(image) {
            bar.finish_with_message(digest.to_string());
        }
    }

    /// Stops every bar.
    pub fn finish(&mut self) {
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.finish();
            }
        }
    }
}

/// The final table: image, digest, size, layers reused/built, groups built as deltas on the
/// recorded base / rebased (started again whole), time.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "{:<16} {:<73} {:>10} {:>14} {:>15} {:>8}\n",
        "IMAGE", "DIGEST", "SIZE", "REUSED/BUILT", "DELTAS/REBASED", "TIME"
    );
    for image in &report.images {
        out.push_str(&format!(
            "{:<16} {:<73} {:>10} {:>14} {:>15} {:>7.1}s\n",
            image.image,
            image.digest,
            human(image.size),
            format!("{}/{}", image.reused, image.built),
            format!("{}/{}", image.deltas, image.rebased),
            image.seconds
        ));
    }
    out
}

/// The JSON form: a list of `{image, digest, size, reused, built, deltas, rebased, base,
/// layers: [{name, digest, reused, part, ...}]}`.
pub fn json(report: &Report) -> serde_json::Value {
    serde_json::to_value(&report.images).expect("the report serializes")
}

fn human(bytes: u64) -> String {
    let mb = bytes as f64 / 1_000_000.0;
    if mb >= 1.0 {
        format!("{mb:.1} MB")
    } else {
        format!("{:.1} kB", bytes as f64 / 1000.0)
    }
}
