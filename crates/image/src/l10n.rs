//! The l10n cache: MediaWiki's `maintenance/rebuildLocalisationCache.php`, run at build time
//! inside the image's own root filesystem (php from base-php, the version's code with its
//! extensions and patches), under bubblewrap so nothing of the build machine is seen.
//!
//! The cache is written with `LCStoreStaticArray` (`$wgLocalisationCacheConf['store'] =
//! 'array'`): plain PHP arrays that opcache keeps in shared memory, which is what Wikimedia
//! runs, and which `var_export` writes the same way every time. Only the languages of the
//! site's wikis (and `en`) are built: all 400+ would take minutes and most are never used.
//! The config layer must set `store = 'array'`, `storeDirectory = "$IP/cache/l10n"` and
//! `manualRecache = true` to use it.

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};
use crate::layer::{Contents, Data, Entry, Kind};

/// Whether a code path can change the l10n cache: message files, language code, extension
/// and skin manifests. A patch that touches none of these leaves the cache as it was.
pub fn is_input(path: &str) -> bool {
    path.contains("/i18n/")
        || path.contains("/languages/")
        || path.ends_with("/extension.json")
        || path.ends_with("/skin.json")
        || path.contains("/includes/language/")
        || path.contains("/includes/cache/localisation/")
}

/// The language of a file of the cache: `de` for `.../cache/l10n/de.l10n.php`, the name
/// `LCStoreStaticArray` gives each language's file.
pub fn language_of(path: &str) -> Option<&str> {
    path.rsplit('/').next()?.strip_suffix(".l10n.php")
}

/// Splits an l10n cache into one part per group of `groups` (from [`crate::plan::groups`] over
/// `languages`): each language's files go with its group; files of no listed language (none are
/// known today) go with the group of `en`, or the first.
pub fn split(all: &Contents, languages: &[String], groups: &[crate::plan::Group]) -> Vec<Contents> {
    let home = groups
        .iter()
        .position(|g| g.items.iter().any(|l| l == "en"))
        .unwrap_or(0);
    let mut parts = vec![Contents::default(); groups.len()];
    for entry in all.entries() {
        if matches!(entry.kind, Kind::Dir) {
            // Parents are added with each file.
            continue;
        }
        let number = match language_of(&entry.path) {
            Some(l) if languages.iter().any(|x| x == l) => groups
                .iter()
                .position(|g| g.items.iter().any(|x| x == l))
                .unwrap_or(home),
            _ => home,
        };
        if let Some(part) = parts.get_mut(number) {
            part.add(entry.clone());
        }
    }
    parts
}

/// Builds the l10n cache of `version` and returns it as a layer.
///
/// `php_root` is the unpacked base-php rootfs; `code` holds the version's code, extensions and
/// patched files (later entries replace earlier ones); `work` is a scratch directory.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename the list
pub fn build(
    php_root: &Path,
    code: &[&Contents],
    version: &str,
    extensions: &[String],
    skins: &[String],
    languages: &[String],
    work: &Path,
) -> Result<Contents> {
    crate::tools::require("bwrap", "bubblewrap", "build the l10n cache")?;
    let prefix = crate::code::image_dir(version);
    let tree = work.join("code");
    // Materialise the merged code tree: hard links to the unpacked files (no copying), the
    // patched files written out.
    for contents in code {
        for entry in contents.entries() {
            let Some(rel) = entry.path.strip_prefix(&prefix) else {
                continue;
            };
            let dest = tree.join(rel.trim_start_matches('/'));
            let fail = Error::io(&dest);
            match &entry.kind {
                Kind::Dir => std::fs::create_dir_all(&dest).map_err(fail)?,
                Kind::File(data) => {
                    let _ = std::fs::remove_file(&dest);
                    match data {
                        Data::Path(source) => std::fs::hard_link(source, &dest)
                            .or_else(|_| std::fs::copy(source, &dest).map(|_| ()))
                            .map_err(fail)?,
                        Data::Bytes(bytes) => std::fs::write(&dest, bytes).map_err(fail)?,
                        Data::TarSlice { .. } => {}
                    }
                }
                Kind::Whiteout => {
                    let _ = std::fs::remove_file(&dest);
                }
                Kind::Symlink(_) | Kind::Hardlink(_) => {}
            }
        }
    }
    let out = work.join("l10n");
    std::fs::create_dir_all(&out).map_err(Error::io(&out))?;
    std::fs::create_dir_all(tree.join("cache/l10n")).map_err(Error::io(&tree))?;
    let settings = work.join("LocalSettings.php");
    std::fs::write(&settings, local_settings(extensions, skins)).map_err(Error::io(&settings))?;

    let image_code = format!("/{prefix}");
    let mut command = Command::new("bwrap");
    for dir in ["usr", "etc", "var"] {
        command
            .arg("--ro-bind")
            .arg(php_root.join(dir))
            .arg(format!("/{dir}"));
    }
    for link in ["bin", "sbin", "lib", "lib64"] {
        if php_root.join(link).is_symlink() {
            command.args(["--symlink", &format!("usr/{link}"), &format!("/{link}")]);
        }
    }
    command
        .args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"])
        .arg("--ro-bind")
        .arg(&tree)
        .arg(&image_code)
        .arg("--bind")
        .arg(&out)
        .arg(format!("{image_code}/cache/l10n"))
        .arg("--ro-bind")
        .arg(&settings)
        .arg("/tmp/LocalSettings.php")
        .args(["--unshare-all", "--die-with-parent", "--clearenv"])
        .args([
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
            "--setenv",
            "LC_ALL",
            "C.UTF-8",
        ])
        .args(["--chdir", &image_code])
        .args([
            "php",
            "maintenance/rebuildLocalisationCache.php",
            "--conf",
            "/tmp/LocalSettings.php",
        ])
        .args([
            "--force",
            "--no-database",
            "--skip-message-purge",
            "--no-progress",
        ])
        .arg(format!("--lang={}", languages.join(",")))
        .arg(format!("--outdir={image_code}/cache/l10n"))
        .arg("--store-class=LCStoreStaticArray");
    let output = command.output().map_err(Error::io("bwrap"))?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let failed = !output.status.success()
        || text.contains("PHP Fatal error")
        || text.contains("PHP Parse error");
    if failed {
        return Err(Error::L10n {
            version: version.into(),
            status: output
                .status
                .code()
                .map_or("signal".into(), |c| c.to_string()),
            output: text,
        });
    }
    let mut layer = Contents::default();
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .map_err(Error::io(&out))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .map_err(Error::io(&out))?;
    names.sort();
    for path in names {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
        layer.add(Entry::file(
            format!("{prefix}/cache/l10n/{name}"),
            Data::Bytes(bytes),
            false,
        ));
    }
    if layer.is_empty() {
        return Err(Error::L10n {
            version: version.into(),
            status: "0".into(),
            output: text,
        });
    }
    Ok(layer)
}

/// Just enough settings for MediaWiki to start and load the extensions and skins.
fn local_settings(extensions: &[String], skins: &[String]) -> String {
    let list = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("'{}'", n.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "<?php\n\
         $wgSitename = 'l10n';\n$wgServer = 'http://localhost';\n$wgScriptPath = '';\n\
         $wgDBtype = 'sqlite';\n$wgDBname = 'l10n';\n$wgSQLiteDataDir = '/tmp';\n\
         $wgCacheDirectory = '/tmp';\n$wgMainCacheType = CACHE_NONE;\n\
         $wgLocalisationCacheConf['store'] = 'array';\n\
         $wgLocalisationCacheConf['storeDirectory'] = \"$IP/cache/l10n\";\n\
         wfLoadExtensions( [ {} ] );\nwfLoadSkins( [ {} ] );\n",
        list(extensions),
        list(skins)
    )
}
