//! Merging the layers of one environment and resolving the cake values of every release.
//!
//! Files merge in layer order (defaults < site < environment < datacenter < private). Inside the
//! merged tree, cake values have three scopes: global keys, `[deployments.NAME]` and
//! `[deployments.NAME.releases.RELEASE]`. A release's values are global < deployment < release,
//! so any deployment-scoped setting beats any global one, whichever file wrote it, and the
//! environment's deployment settings beat the site's deployment settings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::de::from_node;
use crate::error::{nearest, one_of, Error, ErrorKind};
use crate::load::{layer_files, read_layer, LayerFile, LoadOptions};
use crate::origin::Layer;
use crate::schema::{CakeValues, EnvironmentSpec, ReleaseName, SiteSpec};
use crate::tree::{Node, Table, Value};
use crate::validate::validate;

/// Keys of a file's top level that are not cake values.
const DEPLOYMENTS: &str = "deployments";
const ENVIRONMENT: &str = "environment";
const SECRETS: &str = "secrets";
const RELEASES: &str = "releases";

/// A site resolved for one environment: everything `render` needs, and the merged tree that
/// `explain` reads.
#[derive(Clone, Debug)]
pub struct ResolvedSite {
    /// The site directory, absolute.
    pub dir: PathBuf,
    /// The environment's name as given to `--env`.
    pub environment_name: String,
    /// `[environment]` of the environment's files.
    pub environment: EnvironmentSpec,
    /// The global structure: site, versions, extensions, skins, wikis.
    pub spec: SiteSpec,
    /// Every deployment, sorted by name.
    pub deployments: Vec<ResolvedDeployment>,
    /// The private values.
    pub secrets: Secrets,
    /// The files that were merged, lowest layer first.
    pub files: Vec<LayerFile>,
    /// The merged tree of all files, for `explain`.
    pub tree: Node,
}

/// One deployment (mw-web, mw-api-ext...) and its releases.
#[derive(Clone, Debug)]
pub struct ResolvedDeployment {
    /// Its name, also the name of its main Service.
    pub name: String,
    /// Its releases in [`ReleaseName::ALL`] order.
    pub releases: Vec<ResolvedRelease>,
}

/// One release of a deployment, with its merged cake values.
#[derive(Clone, Debug)]
pub struct ResolvedRelease {
    /// main, canary, debug or next.
    pub name: ReleaseName,
    /// The typed values.
    pub values: CakeValues,
    /// The merged tree of the values, for `explain`.
    pub tree: Node,
}

/// Private values (passwords, secret keys). They are never printed: `Debug` shows only the keys.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(BTreeMap<String, String>);

impl Secrets {
    /// The names and values, for writing into a Kubernetes Secret. Nothing else should call this.
    pub fn expose(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The names of the secrets.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|key| (key, "<redacted>")))
            .finish()
    }
}

impl ResolvedSite {
    /// A deployment by name.
    pub fn deployment(&self, name: &str) -> Option<&ResolvedDeployment> {
        self.deployments
            .iter()
            .find(|deployment| deployment.name == name)
    }

    /// Every release's image that `record` has pushed, by digest (see [`crate::pushed`]).
    pub fn pin_images(&mut self, record: &crate::pushed::PushedImages) {
        if record.0.is_empty() {
            return;
        }
        for release in self
            .deployments
            .iter_mut()
            .flat_map(|deployment| deployment.releases.iter_mut())
        {
            let images = &mut release.values.images;
            for (key, image) in [
                ("app", &mut images.app),
                ("webserver", &mut images.webserver),
                ("tls", &mut images.tls),
                ("mcrouter", &mut images.mcrouter),
                ("redis_proxy", &mut images.redis_proxy),
                ("memcached", &mut images.memcached),
                ("mariadb", &mut images.mariadb),
                ("swift", &mut images.swift),
                ("redis", &mut images.redis),
            ] {
                let Some((pinned, origin)) = record.pin_with_origin(image) else {
                    continue;
                };
                *image = pinned.clone();
                // `explain` then says the digest came from the record, over the tag the
                // environment wrote.
                let node = release
                    .tree
                    .as_table_mut()
                    .and_then(|table| table.get_mut("images"))
                    .and_then(|images| images.as_table_mut())
                    .and_then(|images| images.get_mut(key));
                if let Some(node) = node {
                    node.merge(crate::tree::Node {
                        value: crate::tree::Value::String(pinned),
                        origin,
                        overridden: Vec::new(),
                    });
                }
            }
        }
    }

    /// The database servers of the first enabled release: where installers and maintenance
    /// scripts that run beside the releases (not in one) find the wikis' databases. Releases
    /// may differ (a canary on a new server); the first enabled one is the main release of
    /// the first deployment.
    pub fn database(&self) -> Option<&crate::DatabaseValues> {
        self.deployments
            .iter()
            .flat_map(|deployment| deployment.releases.iter())
            .find(|release| release.values.enabled)
            .map(|release| &release.values.database)
    }

    /// The site's one media store: validation makes every release agree on `[media]`, so the
    /// first release's is every release's. `None` for a site without releases.
    pub fn media(&self) -> Option<&crate::MediaValues> {
        self.deployments
            .iter()
            .flat_map(|deployment| deployment.releases.iter())
            .map(|release| &release.values.media)
            .next()
    }
}

impl ResolvedDeployment {
    /// A release by name.
    pub fn release(&self, name: ReleaseName) -> Option<&ResolvedRelease> {
        self.releases.iter().find(|release| release.name == name)
    }
}

/// Loads the site in `site_dir` for `environment`: reads every layer, merges, resolves and
/// validates. The first mistake found is returned.
pub fn load(
    site_dir: &Path,
    environment: &str,
    options: &LoadOptions,
) -> Result<ResolvedSite, Error> {
    let files = layer_files(site_dir, environment, options)?;
    let layers = files
        .iter()
        .map(|file| read_layer(file).map(|tree| (file.layer.clone(), tree)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut site = resolve(site_dir, environment, files, layers)?;
    site.pin_images(&crate::pushed::PushedImages::load(site_dir)?);
    Ok(site)
}

/// Merges already-read layers (lowest first) and resolves them; [`load`] without the file reading.
pub fn resolve(
    site_dir: &Path,
    environment_name: &str,
    files: Vec<LayerFile>,
    layers: Vec<(Layer, Node)>,
) -> Result<ResolvedSite, Error> {
    let mut merged: Option<Node> = None;
    let mut declared: Option<Vec<String>> = None;
    for (layer, tree) in layers {
        check_placement(&layer, &tree)?;
        match &layer {
            Layer::Site => declared = Some(deployment_names(&tree)),
            Layer::Environment(_) | Layer::Datacenter(_) => {
                check_declared(&tree, declared.as_deref().unwrap_or_default())?
            }
            Layer::Defaults | Layer::Private(_) => {}
        }
        match merged.as_mut() {
            Some(base) => base.merge(tree),
            None => merged = Some(tree),
        }
    }
    let tree = merged.expect("the defaults layer is always present");
    let root = tree.as_table().expect("a TOML document is a table");
    let allowed = root_keys();
    if let Some((key, node)) = root
        .iter()
        .find(|(key, _)| !allowed.contains(&key.as_str()))
    {
        let error = Error::new(
            ErrorKind::UnknownKey,
            node.origin.clone(),
            key.clone(),
            String::new(),
        );
        return Err(widen_unknown_key(error, allowed));
    }

    let mut spec: SiteSpec = from_node(&subset(&tree, |key| SiteSpec::KEYS.contains(&key)), "")
        .map_err(|error| widen_unknown_key(error, root_keys()))?;
    crate::groups::assign(&mut spec, &tree)?;
    let environment = match root.get(ENVIRONMENT) {
        Some(node) => from_node::<EnvironmentSpec>(node, ENVIRONMENT)?,
        None => {
            return Err(Error::new(
                ErrorKind::MissingKey,
                tree.origin.clone(),
                ENVIRONMENT.into(),
                "no layer says what this environment is; its environment file needs an \
                 [environment] table with `kind` and `datacenter`"
                    .into(),
            ))
        }
    };
    let secrets = match root.get(SECRETS) {
        Some(node) => Secrets(from_node(node, SECRETS)?),
        None => Secrets::default(),
    };

    let global = subset(&tree, |key| CakeValues::KEYS.contains(&key));
    // Checked on its own so that a mistake in a global value is reported even without deployments.
    from_node::<CakeValues>(&global, "").map_err(|error| widen_unknown_key(error, root_keys()))?;

    let mut deployments = Vec::new();
    if let Some(node) = root.get(DEPLOYMENTS) {
        let table = expect_table(node, DEPLOYMENTS)?;
        for (name, deployment) in table {
            deployments.push(resolve_deployment(&global, name, deployment)?);
        }
    }

    // Every value deserialized, so each winning value has its key's type; one that lost to it
    // in a lower layer must have it too, or a mistake hides until the winner goes away.
    check_overridden_types(&tree, "")?;

    let site = ResolvedSite {
        // Absolute, so that paths relative to the site (patches, code) mean the same thing to a
        // build that runs tools in other directories.
        dir: std::path::absolute(site_dir).unwrap_or_else(|_| site_dir.to_path_buf()),
        environment_name: environment_name.to_string(),
        environment,
        spec,
        deployments,
        secrets,
        files,
        tree,
    };
    validate(&site)?;
    Ok(site)
}

fn resolve_deployment(
    global: &Node,
    name: &str,
    deployment: &Node,
) -> Result<ResolvedDeployment, Error> {
    let path = format!("{DEPLOYMENTS}.{name}");
    let table = expect_table(deployment, &path)?;
    let deployment_values = subset(deployment, |key| key != RELEASES);
    let mut release_nodes: BTreeMap<ReleaseName, &Node> = BTreeMap::new();
    match table.get(RELEASES) {
        Some(releases) => {
            let releases_path = format!("{path}.{RELEASES}");
            for (release, node) in expect_table(releases, &releases_path)? {
                let parsed = release.parse::<ReleaseName>().map_err(|message| {
                    let mut error = Error::new(
                        ErrorKind::InvalidValue,
                        node.origin.clone(),
                        format!("{releases_path}.{release}"),
                        message,
                    );
                    let names = ReleaseName::ALL.map(ReleaseName::as_str);
                    if let Some(near) = nearest(release, names) {
                        error.help = Some(format!("did you mean `{near}`?"));
                    }
                    error
                })?;
                release_nodes.insert(parsed, node);
            }
        }
        None => {
            // A deployment without [releases] has just its main release.
            release_nodes.insert(ReleaseName::Main, &EMPTY_RELEASE);
        }
    }
    let mut releases = Vec::new();
    for (release, node) in release_nodes {
        let release_path = format!("{path}.{RELEASES}.{release}");
        expect_table(node, &release_path)?;
        let mut merged = global.clone();
        merged.merge(deployment_values.clone());
        merged.merge(node.clone());
        let values = from_node::<CakeValues>(&merged, "").map_err(|error| {
            scope_error_key(error, &path, &deployment_values, &release_path, node)
        })?;
        releases.push(ResolvedRelease {
            name: release,
            values,
            tree: merged,
        });
    }
    Ok(ResolvedDeployment {
        name: name.to_string(),
        releases,
    })
}

static EMPTY_RELEASE: std::sync::LazyLock<Node> = std::sync::LazyLock::new(|| {
    Node::empty_table(crate::origin::Origin {
        layer: std::sync::Arc::new(Layer::Defaults),
        file: std::sync::Arc::from(crate::load::DEFAULTS_FILE),
        line: 0,
        column: 0,
    })
});

/// A copy of a table node with only the keys `keep` accepts.
fn subset(node: &Node, keep: impl Fn(&str) -> bool) -> Node {
    let table: Table = node
        .as_table()
        .map(|table| {
            table
                .iter()
                .filter(|(key, _)| keep(key))
                .map(|(key, child)| (key.clone(), child.clone()))
                .collect()
        })
        .unwrap_or_default();
    Node {
        value: Value::Table(table),
        origin: node.origin.clone(),
        overridden: Vec::new(),
    }
}

fn expect_table<'a>(node: &'a Node, path: &str) -> Result<&'a Table, Error> {
    node.as_table().ok_or_else(|| {
        Error::new(
            ErrorKind::WrongType,
            node.origin.clone(),
            path.to_string(),
            format!("expected a table, found {}", node.value.type_name()),
        )
    })
}

fn root_keys() -> Vec<&'static str> {
    let mut keys: Vec<&str> = SiteSpec::KEYS.to_vec();
    keys.extend([DEPLOYMENTS, ENVIRONMENT, SECRETS]);
    keys.extend(CakeValues::KEYS);
    keys
}

/// An unknown key at the top of a block was checked against part of the allowed keys only;
/// say every key that is allowed there.
fn widen_unknown_key(mut error: Error, allowed: Vec<&str>) -> Error {
    let top_level = !error.key.contains('.');
    if error.kind == ErrorKind::UnknownKey && top_level {
        let mut allowed = allowed;
        allowed.sort_unstable();
        error.message = format!(
            "unknown key `{}`; the keys allowed here are {}",
            error.key,
            one_of(&allowed)
        );
        error.help = nearest(&error.key, allowed.iter().copied())
            .map(|near| format!("did you mean `{near}`?"));
    }
    error
}

/// A release's values are checked after merging its scopes; name the key the way the user wrote
/// it, in the scope that set it.
fn scope_error_key(
    error: Error,
    deployment_path: &str,
    deployment_values: &Node,
    release_path: &str,
    release_node: &Node,
) -> Error {
    let segments: Vec<&str> = error
        .key
        .split('.')
        .map(|segment| segment.split('[').next().unwrap_or(segment))
        .collect();
    let (prefix, extra) = if release_node.get_path(segments.iter()).is_some() {
        (release_path.to_string(), vec![])
    } else if deployment_values.get_path(segments.iter()).is_some() {
        (deployment_path.to_string(), vec![RELEASES])
    } else {
        return widen_unknown_key(error, root_keys());
    };
    let mut widened = widen_unknown_key(error, {
        let mut keys = CakeValues::KEYS.to_vec();
        keys.extend(extra);
        keys
    });
    widened.key = format!("{prefix}.{}", widened.key);
    widened
}

/// Secrets come only from the private layer, and the private layer holds only secrets; the
/// environment table belongs to environment files.
/// The deployments a layer names.
fn deployment_names(tree: &Node) -> Vec<String> {
    tree.get_path([DEPLOYMENTS])
        .and_then(Node::as_table)
        .map(|table| table.keys().cloned().collect())
        .unwrap_or_default()
}

/// Environment and datacenter files adjust the deployments site.toml declares; a name it does
/// not declare is a misspelling until proven otherwise. A deployment that only some
/// environments run is declared in site.toml with `enabled = false` and enabled where it runs.
fn check_declared(tree: &Node, declared: &[String]) -> Result<(), Error> {
    let Some(table) = tree.get_path([DEPLOYMENTS]).and_then(Node::as_table) else {
        return Ok(());
    };
    for (name, node) in table {
        if declared.contains(name) {
            continue;
        }
        let mut error = Error::new(
            ErrorKind::Inconsistent,
            node.origin.clone(),
            format!("{DEPLOYMENTS}.{name}"),
            format!(
                "site.toml declares no deployment `{name}`; declared: {}",
                one_of(declared)
            ),
        );
        error.help = Some(match nearest(name, declared.iter().map(String::as_str)) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!(
                "a deployment that only some environments run is declared in site.toml with \
                 `[{DEPLOYMENTS}.{name}] enabled = false` and enabled in their files"
            ),
        });
        return Err(error);
    }
    Ok(())
}

/// Refuses a value whose type differs from the winning value of its key (integers and floats
/// count as one: TOML writes `5` where a float is meant).
fn check_overridden_types(node: &Node, path: &str) -> Result<(), Error> {
    let kind = |value: &Value| match value {
        Value::Float(_) => Value::Integer(0).type_name(),
        other => other.type_name(),
    };
    for lost in &node.overridden {
        if kind(&lost.value) != kind(&node.value) {
            return Err(Error::new(
                ErrorKind::WrongType,
                lost.origin.clone(),
                path.to_string(),
                format!(
                    "`{path}` takes {} (as {} sets it, which wins here), but this file sets {}: \
                     every layer's value must have the key's type",
                    node.value.type_name(),
                    node.origin,
                    lost.value.type_name()
                ),
            ));
        }
    }
    if let Value::Table(table) = &node.value {
        for (key, child) in table {
            let child_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            check_overridden_types(child, &child_path)?;
        }
    }
    Ok(())
}

fn check_placement(layer: &Layer, tree: &Node) -> Result<(), Error> {
    let Some(table) = tree.as_table() else {
        return Ok(());
    };
    for (key, node) in table {
        let misplaced = match layer {
            Layer::Private(_) => (key != SECRETS).then(|| {
                format!(
                    "a private values file may only hold [{SECRETS}]; `{key}` belongs in the \
                     site or environment files"
                )
            }),
            _ if key == SECRETS => Some(format!(
                "[{SECRETS}] may only be set in the private values file that config management \
                 writes, never in {layer} files"
            )),
            Layer::Defaults | Layer::Site if key == ENVIRONMENT => Some(format!(
                "[{ENVIRONMENT}] belongs in an environment file (environments/NAME.toml), not in \
                 the {layer} file"
            )),
            _ => None,
        };
        if let Some(message) = misplaced {
            return Err(Error::new(
                ErrorKind::MisplacedKey,
                node.origin.clone(),
                key.clone(),
                message,
            ));
        }
    }
    Ok(())
}
