//! A private apt session over the site's Debian sources: what versions the archive serves
//! today, with their SHA-256, and downloading exact versions into the package cache.
//!
//! apt itself does the network work and checks every index against the archive's signed
//! Release file; this module only points it at a directory of its own (`APT_CONFIG`), so the
//! build machine's apt state and configuration are neither read nor changed, and then reads
//! the index files apt fetched.
//!
//! It does not resolve dependencies: which packages a rootfs holds is mmdebstrap's answer
//! ([`super::debian`]); this module answers "is `name=version` still served, and with what
//! hash" and "what is the newest version of `name`".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cache::Cache;
use crate::error::{Error, Result};

/// One binary package version as an index lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Available {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `sha256:<hex>` of the .deb, from the signed index.
    pub sha256: String,
    /// Size of the .deb in bytes.
    pub size: u64,
    /// The suite (codename) that serves it (`bookworm-security`).
    pub suite: String,
    /// Whether it comes from a security suite.
    pub security: bool,
}

/// An apt session with its own configuration, lists and download directory.
pub struct Apt {
    dir: tempfile::TempDir,
    config: PathBuf,
    /// Every version of every package the sources serve: name -> versions.
    index: BTreeMap<String, Vec<Available>>,
}

impl Apt {
    /// Fetches the indexes of `sources` (apt source lines) for the build machine's
    /// architecture. Needs the network (or file:// mirrors).
    pub fn open(sources: &[String]) -> Result<Apt> {
        crate::tools::require("apt-get", "apt", "read the Debian archive's package lists")?;
        let dir = tempfile::Builder::new()
            .prefix("wikikube-apt-")
            .tempdir()
            .map_err(Error::io(std::env::temp_dir()))?;
        let root = dir.path();
        for sub in [
            "etc/apt.conf.d",
            "etc/preferences.d",
            "etc/sources.list.d",
            "lists/partial",
            "archives/partial",
            "download",
        ] {
            let path = root.join(sub);
            std::fs::create_dir_all(&path).map_err(Error::io(&path))?;
        }
        let status = root.join("status");
        std::fs::write(&status, "").map_err(Error::io(&status))?;
        let list = root.join("etc/sources.list");
        std::fs::write(&list, sources.join("\n") + "\n").map_err(Error::io(&list))?;
        let config = root.join("apt.conf");
        let root_text = root.display();
        // Read instead of /etc/apt/apt.conf (APT_CONFIG), so nothing of the build machine's apt
        // settings applies but its trusted keys.
        let text = format!(
            "Dir \"{root_text}/\";\n\
             Dir::Etc \"{root_text}/etc/\";\n\
             Dir::Etc::TrustedParts \"/etc/apt/trusted.gpg.d/\";\n\
             Dir::Etc::Trusted \"/etc/apt/trusted.gpg\";\n\
             Dir::State \"{root_text}/\";\n\
             Dir::State::Lists \"{root_text}/lists/\";\n\
             Dir::State::status \"{status}\";\n\
             Dir::Cache \"{root_text}/\";\n\
             Dir::Cache::Archives \"{root_text}/archives/\";\n\
             Debug::NoLocking \"true\";\n\
             APT::Sandbox::User \"root\";\n\
             APT::Install-Recommends \"false\";\n\
             Acquire::Languages \"none\";\n\
             Acquire::Retries \"3\";\n",
            status = status.display()
        );
        std::fs::write(&config, text).map_err(Error::io(&config))?;
        let mut apt = Apt {
            dir,
            config,
            index: BTreeMap::new(),
        };
        // Any source that fails is an error: a lock checked against part of the archive would
        // call packages gone that are only unreachable.
        apt.run("apt-get", &["-q", "update", "--error-on=any"])?;
        apt.read_indexes()?;
        Ok(apt)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("APT_CONFIG", &self.config)
            .env("LC_ALL", "C.UTF-8");
        command
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let output = self
            .command(program)
            .args(args)
            .output()
            .map_err(Error::io(program))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        Err(Error::Apt {
            action: format!("{program} {}", args.join(" ")),
            output: format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
        })
    }

    /// Reads every Packages index apt fetched, through apt's own decompression.
    fn read_indexes(&mut self) -> Result<()> {
        let targets = self.run(
            "apt-get",
            &[
                "indextargets",
                "--format",
                "$(FILENAME)\t$(CODENAME)\t$(LABEL)",
                "Created-By: Packages",
            ],
        )?;
        for line in targets.lines().filter(|l| !l.trim().is_empty()) {
            let mut fields = line.split('\t');
            let (Some(file), Some(codename), label) =
                (fields.next(), fields.next(), fields.next().unwrap_or(""))
            else {
                continue;
            };
            if !Path::new(file).exists() {
                // An optional index the mirror does not have.
                continue;
            }
            let security = codename.ends_with("-security") || label.contains("Security");
            let text = self.run("/usr/lib/apt/apt-helper", &["cat-file", file])?;
            for stanza in stanzas(&text) {
                let field = |name: &str| stanza.get(name).cloned().unwrap_or_default();
                let entry = Available {
                    name: field("Package"),
                    version: field("Version"),
                    sha256: format!("sha256:{}", field("SHA256")),
                    size: field("Size").parse().unwrap_or(0),
                    suite: codename.to_string(),
                    security,
                };
                if entry.name.is_empty() || entry.version.is_empty() {
                    continue;
                }
                self.index
                    .entry(entry.name.clone())
                    .or_default()
                    .push(entry);
            }
        }
        Ok(())
    }

    /// `name=version` if an index serves it.
    pub fn find(&self, name: &str, version: &str) -> Option<&Available> {
        self.index.get(name)?.iter().find(|a| a.version == version)
    }

    /// The newest version of `name` any index serves (apt's candidate without pins).
    pub fn newest(&self, name: &str) -> Option<&Available> {
        self.index
            .get(name)?
            .iter()
            .max_by(|a, b| compare_versions(&a.version, &b.version))
    }

    /// Downloads exact versions, checks each .deb against the index's SHA-256, and adds it to
    /// the package cache. Returns nothing new: the cache holds them by hash afterwards.
    pub fn download(&self, cache: &Cache, wanted: &[&Available]) -> Result<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        let dir = self.dir.path().join("download");
        // One apt call for the whole set: apt fetches in parallel and checks each file
        // against the signed index before it lands in `dir`.
        let mut command = self.command("apt-get");
        command.current_dir(&dir).arg("-q").arg("download");
        for entry in wanted {
            command.arg(format!("{}={}", entry.name, entry.version));
        }
        let output = command.output().map_err(Error::io("apt-get"))?;
        if !output.status.success() {
            return Err(Error::Apt {
                action: "apt-get download".into(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        for entry in std::fs::read_dir(&dir).map_err(Error::io(&dir))? {
            let path = entry.map_err(Error::io(&dir))?.path();
            cache.adopt_deb(&path)?;
        }
        for entry in wanted {
            if !cache.deb_path(&entry.sha256).exists() {
                return Err(Error::Apt {
                    action: format!("apt-get download {}={}", entry.name, entry.version),
                    output: format!(
                        "the downloaded file does not have the index's hash {}",
                        entry.sha256
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Debian's version order (`1.0-1 < 1.0-1+deb12u1 < 1:0.9`).
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    match (
        a.parse::<debversion::Version>(),
        b.parse::<debversion::Version>(),
    ) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        // A version Debian would not accept sorts by its text, after every valid one.
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// The stanzas of a deb822 file (Packages, a .deb's control), as field -> value; continuation
/// lines are kept with their newlines.
///
/// Written here rather than taken from a crate: the format is "Field: value" lines in
/// blank-line separated paragraphs, and a build reads about 60,000 of them for a few fields,
/// so a loop over lines is all it takes (the deb822 crates keep a lossless syntax tree).
pub fn stanzas(text: &str) -> impl Iterator<Item = BTreeMap<String, String>> + '_ {
    text.split("\n\n").filter_map(|paragraph| {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut last: Option<String> = None;
        for line in paragraph.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = last.as_ref().and_then(|name| fields.get_mut(name)) {
                    value.push('\n');
                    value.push_str(line);
                }
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                fields.insert(name.to_string(), value.trim().to_string());
                last = Some(name.to_string());
            }
        }
        (!fields.is_empty()).then_some(fields)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stanzas_with_continuation_lines() {
        let text = "Package: a\nVersion: 1\nDescription: one\n two\n\nPackage: b\nVersion: 2\n";
        let all: Vec<_> = stanzas(text).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0]["Description"], "one\n two");
        assert_eq!(all[1]["Version"], "2");
    }

    #[test]
    fn orders_versions_as_debian_does() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("1.5.2-6+deb12u1", "1.5.2-6+deb12u3"), Less);
        assert_eq!(compare_versions("1:2.38", "2.39"), Greater);
        assert_eq!(compare_versions("1.0~rc1", "1.0"), Less);
        assert_eq!(compare_versions("3.23+nmu1", "3.23+nmu1"), Equal);
    }
}
