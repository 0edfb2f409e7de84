//! Installing each wiki's database on first start: MediaWiki's own installer, run in the app
//! container for every wiki whose SQLite file does not exist yet, so a second `up` (or a
//! restart) never installs twice and never touches existing data.

use wikikube_model::ResolvedSite;

use crate::{podman, Error};
use wikikube_render::machine::DATA_DIR;

/// The private value holding the wikis' administrator password.
pub const ADMIN_PASSWORD: &str = "admin_password";

/// The name of the administrator account the installer creates.
pub const ADMIN_USER: &str = "Admin";

/// Installs every wiki that has no database yet, through `container`. Returns the wikis
/// installed now.
pub fn install_missing(site: &ResolvedSite, container: &str) -> Result<Vec<String>, Error> {
    let mut installed = Vec::new();
    for (dbname, wiki) in &site.spec.wikis {
        let database = format!("{DATA_DIR}/{dbname}.sqlite");
        if podman::exists(&["exec", container, "test", "-s", &database])? {
            continue;
        }
        let sitename = match wiki.settings.get("wgSitename") {
            Some(wikikube_model::SettingValue::String(name)) => name.clone(),
            _ => dbname.clone(),
        };
        let server = format!("https://{}", wiki.domains[0]);
        let confpath = format!("/tmp/install-{dbname}");
        let password_file = format!(
            "{}/{ADMIN_PASSWORD}",
            wikikube_render::config::paths::SECRETS_DIR
        );
        // The installer runs from the wiki's version directly, not through the farm's entry
        // point: that one names the farm's LocalSettings.php, and the installer refuses to run
        // where settings exist. It writes its own LocalSettings.php to a scratch directory.
        let installer = format!(
            "{}/maintenance/install.php",
            wikikube_render::config::paths::code_dir(&wiki.version)
        );
        let skins = site.spec.skins.join(",");
        let mut all: Vec<&str> = vec![
            "exec",
            container,
            "sh",
            "-c",
            "mkdir -p \"$1\" && exec php \"$2\" --dbtype=sqlite --dbpath=\"$3\" \
             --dbname=\"$4\" --server=\"$5\" --scriptpath=/w --lang=\"$6\" --passfile=\"$7\" \
             --confpath=\"$1\" --skins=\"$8\" \"$9\" \"${10}\"",
            "install",
        ];
        all.extend([
            confpath.as_str(),
            installer.as_str(),
            DATA_DIR,
            dbname.as_str(),
            server.as_str(),
            wiki.language.as_str(),
            password_file.as_str(),
            skins.as_str(),
            sitename.as_str(),
            ADMIN_USER,
        ]);
        let output = podman::output(&all)?;
        if !output.status.success() {
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return Err(Error::Install {
                wiki: dbname.clone(),
                output: tail(&text, 40),
            });
        }
        installed.push(dbname.clone());
    }
    Ok(installed)
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
