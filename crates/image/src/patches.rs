//! Security patches: an ordered directory of unified diffs per version, applied with GNU patch
//! to copies of just the files they touch. The layer holds the patched files (and whiteouts for
//! deleted ones), so a changed patch rebuilds one small layer.
//!
//! GNU patch rather than a Rust diff crate: it is what the patches are written and tested
//! with (fuzz, offsets, git-style headers), and its verdict (`Hunk #2 FAILED at 40.`) is the
//! message a patch author knows.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::layer::{Contents, Data, Entry, Kind};

/// The patch files of a directory, in name order (`*.patch`, `*.diff`; a README is ignored).
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut patches = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let path = entry.map_err(Error::io(dir))?.path();
        let ext = path.extension().and_then(|e| e.to_str());
        if matches!(ext, Some("patch" | "diff")) && path.is_file() {
            patches.push(path);
        }
    }
    patches.sort();
    Ok(patches)
}

/// The files a patch touches, relative to the code root (`-p1`: `a/` and `b/` stripped).
pub fn targets(text: &str) -> Vec<String> {
    let mut targets = BTreeSet::new();
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.windows(2) {
        let (Some(old), Some(new)) = (pair[0].strip_prefix("--- "), pair[1].strip_prefix("+++ "))
        else {
            continue;
        };
        for name in [old, new] {
            let name = name.split('\t').next().unwrap_or(name).trim();
            if name == "/dev/null" {
                continue;
            }
            if let Some((_, rest)) = name.split_once('/') {
                targets.insert(rest.to_string());
            }
        }
    }
    targets.into_iter().collect()
}

/// Applies `patches` in order to the code in `code` (entries under `prefix`), working in
/// `work`; returns the changed files as a layer.
pub fn apply(patches: &[PathBuf], code: &Contents, prefix: &str, work: &Path) -> Result<Contents> {
    crate::tools::require("patch", "patch", "apply security patches")?;
    let tree = work.join("tree");
    std::fs::create_dir_all(&tree).map_err(Error::io(&tree))?;
    let mut touched: BTreeSet<String> = BTreeSet::new();
    for patch in patches {
        let text = std::fs::read_to_string(patch).map_err(Error::io(patch))?;
        for target in targets(&text) {
            if !touched.insert(target.clone()) {
                continue;
            }
            let dest = tree.join(&target);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(Error::io(parent))?;
            }
            if let Some(Entry {
                kind: Kind::File(data),
                ..
            }) = code.get(&format!("{prefix}/{target}"))
            {
                match data {
                    Data::Path(source) => {
                        std::fs::copy(source, &dest).map_err(Error::io(source))?;
                    }
                    Data::Bytes(bytes) => std::fs::write(&dest, bytes).map_err(Error::io(&dest))?,
                    Data::TarSlice { .. } => {}
                }
            }
        }
        let rejects = work.join("rejects");
        let output = Command::new("patch")
            .arg("-p1")
            .args([
                "--batch",
                "--forward",
                "--no-backup-if-mismatch",
                "--quoting-style=literal",
            ])
            .arg("-d")
            .arg(&tree)
            .arg("-r")
            .arg(&rejects)
            .arg("-i")
            .arg(patch)
            .env("LC_ALL", "C")
            .output()
            .map_err(Error::io("patch"))?;
        if !output.status.success() {
            return Err(failure(patch, &output, &rejects));
        }
    }
    let mut layer = Contents::default();
    for target in touched {
        let path = tree.join(&target);
        let name = format!("{prefix}/{target}");
        if path.is_file() {
            let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
            let mode = code.get(&name).map_or(0o644, |e| e.mode);
            layer.add(Entry {
                mode,
                ..Entry::file(name, Data::Bytes(bytes), false)
            });
        } else {
            layer.add(Entry {
                kind: Kind::Whiteout,
                ..Entry::dir(name)
            });
        }
    }
    Ok(layer)
}

/// The error for a patch that failed: the file and hunks patch named, and the rejected hunks.
fn failure(patch: &Path, output: &std::process::Output, rejects: &Path) -> Error {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut current = String::new();
    let mut file = String::new();
    let mut hunks = Vec::new();
    for line in stdout.lines().chain(stderr.lines()) {
        if let Some(name) = line.strip_prefix("patching file ") {
            current = name.trim().to_string();
        } else if (line.contains("FAILED") && !line.contains("saving rejects"))
            || line.contains("can't find file")
            || line.contains("malformed")
        {
            if file.is_empty() {
                file.clone_from(&current);
            }
            hunks.push(line.trim().to_string());
        }
    }
    if hunks.is_empty() {
        hunks.push(format!("{}{}", stdout.trim(), stderr.trim()));
    }
    let rejected = std::fs::read_to_string(rejects).unwrap_or_default();
    Error::Patch {
        patch: patch.to_path_buf(),
        file,
        hunks: hunks.join(" "),
        rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::targets;

    #[test]
    fn targets_strip_one_component_and_ignore_dev_null() {
        let text =
            "diff --git a/x b/x\n--- a/includes/A.php\t2024\n+++ b/includes/A.php\n@@ -1 +1 @@\n\
                    --- /dev/null\n+++ b/new.txt\n";
        assert_eq!(
            targets(text),
            vec!["includes/A.php".to_string(), "new.txt".to_string()]
        );
    }
}
