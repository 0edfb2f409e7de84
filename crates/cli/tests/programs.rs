//! Every external program the project runs comes from a Debian package that
//! scripts/install-packages installs, or from Debian's required set that every machine has.
//!
//! A program missing from the list passes on a developer's machine that happens to have it
//! and fails on a newcomer's: catatonit, which podman needs for its pause image but only
//! recommends, was found that way. The test reads the program names from the sources, so a
//! program newly run with `Command::new` is checked without anyone remembering to list it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Programs that the code runs through another program, so no `Command::new` names them:
/// (program, why).
const INDIRECT: &[(&str, &str)] = &[
    ("catatonit", "podman builds its pause image with it"),
    ("runc", "the OCI runtime podman is configured with"),
    (
        "newuidmap",
        "mmdebstrap's unshare mode and rootless podman map users with it",
    ),
    (
        "dpkg-deb",
        "the image builder reads each .deb's fields with it",
    ),
    (
        "apt-get",
        "the image builder reads the Debian archive with it",
    ),
    ("php-fpm8.2", "render's tests run the rendered pool"),
    ("apache2", "render's tests run the rendered vhosts"),
    ("memcached", "the mcrouter tests route to it"),
];

/// Programs named in the sources: the string literal given to `Command::new` or to the
/// crates' `require` checks.
fn programs_in(dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                programs_in(&path, found);
            }
            continue;
        }
        if !name.ends_with(".rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for marker in ["Command::new(\"", "require(\""] {
            for piece in text.split(marker).skip(1) {
                let program = piece.split('"').next().unwrap_or_default();
                if !program.is_empty() && !program.contains(['{', ' ']) {
                    found.insert(program.rsplit('/').next().unwrap().to_string());
                }
            }
        }
    }
}

fn listed_packages() -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace().join("scripts/packages.txt")).unwrap();
    text.lines()
        .map(|line| line.split('#').next().unwrap().trim().to_string())
        .filter(|line| !line.is_empty())
        .collect()
}

/// The Debian package that owns `program` on this machine: the first copy on PATH that a
/// package installed (a copy from elsewhere, such as a pyenv shim, is passed over).
fn package_of(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .filter(|candidate| candidate.is_file())
        .find_map(|candidate| owner(&candidate))
}

fn owner(path: &Path) -> Option<String> {
    // dpkg knows a path as the package installed it: through alternatives to the real file,
    // and /bin, /sbin as they were before /usr was merged.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let unmerged = PathBuf::from(real.to_string_lossy().replacen("/usr", "", 1));
    [path.to_path_buf(), real, unmerged]
        .into_iter()
        .find_map(|candidate| {
            let output = Command::new("dpkg")
                .arg("-S")
                .arg(&candidate)
                .output()
                .ok()?;
            output.status.success().then(|| {
                let text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.split(':')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
        })
}

fn is_required(package: &str) -> bool {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f", "${Priority} ${Essential}", package])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    text.starts_with("required") || text.ends_with("yes")
}

/// Whether `package` is listed, or a dependency of a listed package (apt installs those).
fn installed_by_the_script(package: &str, listed: &BTreeSet<String>) -> bool {
    if listed.contains(package) || is_required(package) {
        return true;
    }
    let output = Command::new("apt-cache")
        .args([
            "rdepends",
            "--installed",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
        ])
        .arg(package)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .any(|line| listed.contains(line))
}

#[test]
fn every_program_the_project_runs_is_installed_by_scripts_install_packages() {
    let mut programs = BTreeSet::new();
    programs_in(&workspace().join("crates"), &mut programs);
    // Commands of the test programs themselves and of the shell are not Debian tools.
    for own in ["sh", "kill", "cp", "edge", "mcrouter", "wikikube"] {
        programs.remove(own);
    }
    assert!(
        programs.contains("mmdebstrap") && programs.contains("podman"),
        "the scan found too little: {programs:?}"
    );
    programs.extend(INDIRECT.iter().map(|(p, _)| p.to_string()));
    let listed = listed_packages();
    let mut problems = Vec::new();
    for program in &programs {
        match package_of(program) {
            None => problems.push(format!(
                "{program}: not installed here (run scripts/install-packages; if it still \
                 is missing, add its package to scripts/packages.txt)"
            )),
            Some(package) if !installed_by_the_script(&package, &listed) => problems.push(
                format!("{program}: from the package `{package}`, which scripts/packages.txt does not bring in"),
            ),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
