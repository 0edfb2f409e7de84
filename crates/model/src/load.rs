//! Finding and reading the files of a site: which files make up each layer for an environment.
//!
//! ```text
//! SITE/site.toml                                  the site layer (required)
//! SITE/environments/<env>.toml                    an environment layer (local.toml, production.toml)
//! SITE/environments/<env>/<datacenter>.toml       a datacenter layer inside that environment
//! PRIVATE/<datacenter or env>.toml                private values (PRIVATE defaults to SITE/private)
//! ```
//! `--env eqiad` picks `environments/production/eqiad.toml` (with `environments/production.toml`
//! below it) or a lone `environments/eqiad.toml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{nearest, one_of, Error, ErrorKind};
use crate::origin::{Layer, Origin};
use crate::tree::{parse_file, Node};

/// The built-in defaults, the lowest layer.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// Where the built-in defaults appear to come from in messages.
pub const DEFAULTS_FILE: &str = "<built-in>/defaults.toml";

/// One file of one layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerFile {
    /// The layer it makes.
    pub layer: Layer,
    /// Its path (the built-in defaults have [`DEFAULTS_FILE`]).
    pub path: PathBuf,
}

/// Where to find files besides the site directory.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// The directory config management writes private values into; `SITE/private` by default.
    pub private_dir: Option<PathBuf>,
}

/// The files that make up `environment`'s layers, lowest first.
pub fn layer_files(
    site_dir: &Path,
    environment: &str,
    options: &LoadOptions,
) -> Result<Vec<LayerFile>, Error> {
    let site_file = site_dir.join("site.toml");
    not_a_file(&site_file)?;
    if !site_file.is_file() {
        return Err(missing_file(
            &site_file,
            "every site has a site.toml; is this the right directory?",
        ));
    }
    // The name becomes part of file paths (environments/NAME.toml, private/NAME.toml): a name
    // with a separator or a dot would reach outside those directories.
    if environment.is_empty()
        || !environment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(unknown_environment(
            site_dir,
            environment,
            format!(
                "`{environment}` is not an environment name: use letters, digits, `-` and `_` \
                 (a datacenter is chosen by its own name, such as `eqiad`, not `production/eqiad`)"
            ),
        ));
    }
    let mut files = vec![
        LayerFile {
            layer: Layer::Defaults,
            path: PathBuf::from(DEFAULTS_FILE),
        },
        LayerFile {
            layer: Layer::Site,
            path: site_file,
        },
    ];
    let environments = site_dir.join("environments");
    let direct = environments.join(format!("{environment}.toml"));
    not_a_file(&direct)?;
    let nested = find_datacenter(&environments, environment);
    if let (Some((parent, datacenter_file)), true) = (&nested, direct.is_file()) {
        return Err(Error::new(
            ErrorKind::UnknownEnvironment,
            whole_file(&direct, Layer::Environment(environment.to_string())),
            String::new(),
            format!(
                "`{environment}` is both an environment (this file) and a datacenter of \
                 environment `{parent}` ({}): `--env {environment}` would be ambiguous",
                datacenter_file.display()
            ),
        )
        .with_help("rename one of them"));
    }
    match nested {
        Some((parent, datacenter_file)) => {
            let parent_file = environments.join(format!("{parent}.toml"));
            if parent_file.is_file() {
                files.push(LayerFile {
                    layer: Layer::Environment(parent.clone()),
                    path: parent_file,
                });
            }
            files.push(LayerFile {
                layer: Layer::Datacenter(environment.to_string()),
                path: datacenter_file,
            });
        }
        None if direct.is_file() => {
            let datacenters = list_environments(site_dir)
                .into_iter()
                .filter(|name| name.starts_with(&format!("{environment}/")))
                .collect::<Vec<_>>();
            if !datacenters.is_empty() {
                return Err(unknown_environment(
                    site_dir,
                    environment,
                    format!(
                        "environment `{environment}` has datacenters; pick one of {}",
                        one_of(
                            &datacenters
                                .iter()
                                .map(|name| name.rsplit('/').next().unwrap_or(name))
                                .collect::<Vec<_>>()
                        )
                    ),
                ));
            }
            files.push(LayerFile {
                layer: Layer::Environment(environment.to_string()),
                path: direct,
            });
        }
        None => {
            let message = format!(
                "there is no environment `{environment}`: neither environments/{environment}.toml \
                 nor environments/*/{environment}.toml exists"
            );
            return Err(unknown_environment(site_dir, environment, message));
        }
    }
    let private_dir = options
        .private_dir
        .clone()
        .unwrap_or_else(|| site_dir.join("private"));
    let private_file = private_dir.join(format!("{environment}.toml"));
    not_a_file(&private_file)?;
    if !private_file.is_file() {
        return Err(missing_file(
            &private_file,
            "config management writes the private values (secrets) of each environment here; \
             pass --private-dir if they live elsewhere",
        ));
    }
    files.push(LayerFile {
        layer: Layer::Private(environment.to_string()),
        path: private_file,
    });
    Ok(files)
}

/// Reads and parses one layer file into a tree.
pub fn read_layer(file: &LayerFile) -> Result<Node, Error> {
    if file.layer == Layer::Defaults {
        return parse_file(DEFAULTS, DEFAULTS_FILE, Layer::Defaults);
    }
    let bytes = std::fs::read(&file.path)
        .map_err(|error| missing_file(&file.path, &format!("it cannot be read: {error}")))?;
    let text = String::from_utf8(bytes).map_err(|error| {
        let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&byte| byte == b'\n').count() + 1;
        let column = valid
            .rsplit(|&byte| byte == b'\n')
            .next()
            .map_or(0, <[u8]>::len)
            + 1;
        Error::new(
            ErrorKind::Syntax,
            Origin {
                layer: Arc::new(file.layer.clone()),
                file: Arc::from(file.path.display().to_string()),
                line: u32::try_from(line).unwrap_or(u32::MAX),
                column: u32::try_from(column).unwrap_or(u32::MAX),
            },
            String::new(),
            "this file is not UTF-8 text: TOML files must be UTF-8 (was it saved as Latin-1 or \
             UTF-16?)"
                .into(),
        )
    })?;
    parse_file(&text, &file.path.display().to_string(), file.layer.clone())
}

/// Every environment a site defines, as `--env` accepts them, sorted.
pub fn list_environments(site_dir: &Path) -> Vec<String> {
    let environments = site_dir.join("environments");
    let mut names = Vec::new();
    for entry in read_dir_sorted(&environments) {
        if entry.is_dir() {
            let parent = file_stem(&entry);
            for nested in read_dir_sorted(&entry) {
                if nested.extension().is_some_and(|ext| ext == "toml") {
                    names.push(format!("{parent}/{}", file_stem(&nested)));
                }
            }
        } else if entry.extension().is_some_and(|ext| ext == "toml") {
            names.push(file_stem(&entry));
        }
    }
    names.sort();
    names
}

/// The names `--env` accepts: datacenters by their own name, and environments without datacenters.
pub fn selectable_environments(site_dir: &Path) -> Vec<String> {
    let all = list_environments(site_dir);
    let mut names: Vec<String> = all
        .iter()
        .filter_map(|name| {
            name.split_once('/')
                .map(|(_, datacenter)| datacenter.to_string())
        })
        .collect();
    names.extend(
        all.iter()
            .filter(|name| !name.contains('/'))
            .filter(|name| {
                !all.iter()
                    .any(|other| other.starts_with(&format!("{name}/")))
            })
            .cloned(),
    );
    names.sort();
    names.dedup();
    names
}

fn find_datacenter(environments: &Path, datacenter: &str) -> Option<(String, PathBuf)> {
    read_dir_sorted(environments)
        .into_iter()
        .filter(|entry| entry.is_dir())
        .find_map(|entry| {
            let file = entry.join(format!("{datacenter}.toml"));
            file.is_file().then(|| (file_stem(&entry), file))
        })
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    entries
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn whole_file(path: &Path, layer: Layer) -> Origin {
    Origin {
        layer: Arc::new(layer),
        file: Arc::from(path.display().to_string()),
        line: 0,
        column: 0,
    }
}

/// A directory, socket or other non-file where a TOML file is expected is named as such, not
/// reported as missing or as an unknown name.
fn not_a_file(path: &Path) -> Result<(), Error> {
    match std::fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => Err(Error::new(
            ErrorKind::MissingFile,
            whole_file(path, Layer::Site),
            String::new(),
            format!(
                "this is a {}, not a file",
                if metadata.is_dir() {
                    "directory"
                } else {
                    "special file"
                }
            ),
        )
        .with_help("a TOML file is expected here")),
        _ => Ok(()),
    }
}

fn missing_file(path: &Path, why: &str) -> Error {
    Error::new(
        ErrorKind::MissingFile,
        whole_file(path, Layer::Site),
        String::new(),
        "this file is missing".to_string(),
    )
    .with_help(why)
}

fn unknown_environment(site_dir: &Path, environment: &str, message: String) -> Error {
    let known = selectable_environments(site_dir);
    let mut error = Error::new(
        ErrorKind::UnknownEnvironment,
        whole_file(&site_dir.join("environments"), Layer::Site),
        String::new(),
        message,
    );
    error.help = Some(
        match nearest(environment, known.iter().map(String::as_str)) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("the environments are {}", one_of(&known)),
        },
    );
    error
}
