//! `wikikube explain`: the merged value of a key, the file and line that set it, and what it
//! overrode. Private values show as `<redacted>`.

use serde::Serialize;

use crate::error::nearest;
use crate::resolve::ResolvedSite;
use crate::schema::ReleaseName;
use crate::tree::{DisplayValue, Node, Value};

/// The answer to "where does this value come from?".
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Explanation {
    /// The key as asked.
    pub key: String,
    /// What the key was read in: `site` or `deployment mw-web, release canary`.
    pub scope: String,
    /// The merged value, as TOML, or `<redacted>`.
    pub value: String,
    /// Where it was set.
    pub set_by: Provenance,
    /// The values it overrode, most recent first.
    pub overridden: Vec<Provenance>,
}

/// One value and where it was written.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Provenance {
    /// The value as TOML, or `<redacted>`.
    pub value: String,
    /// The layer (`site`, `datacenter eqiad`...).
    pub layer: String,
    /// `file:line:column`.
    pub location: String,
}

/// Why a key cannot be explained.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// No such key in the merged values.
    #[error("no value `{key}` in this environment{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownKey {
        /// The key asked for.
        key: String,
        /// The nearest existing key.
        suggestion: Option<String>,
    },
    /// No such deployment.
    #[error("no deployment `{0}` in this environment")]
    UnknownDeployment(String),
    /// The deployment has no such release.
    #[error("deployment `{0}` has no release `{1}`")]
    UnknownRelease(String, ReleaseName),
}

/// Explains `key` for the whole site, or for one release of a deployment when `deployment` is
/// given (`release` defaults to main).
pub fn explain(
    site: &ResolvedSite,
    key: &str,
    deployment: Option<&str>,
    release: Option<ReleaseName>,
) -> Result<Explanation, ExplainError> {
    let (tree, scope) = match deployment {
        Some(name) => {
            let found = site
                .deployment(name)
                .ok_or_else(|| ExplainError::UnknownDeployment(name.to_string()))?;
            let release = release.unwrap_or(ReleaseName::Main);
            let resolved = found
                .release(release)
                .ok_or_else(|| ExplainError::UnknownRelease(name.to_string(), release))?;
            (
                &resolved.tree,
                format!("deployment {name}, release {release}"),
            )
        }
        None => (&site.tree, "site".to_string()),
    };
    let node = tree
        .get_path(key.split('.'))
        .ok_or_else(|| ExplainError::UnknownKey {
            key: key.to_string(),
            suggestion: {
                let mut keys = Vec::new();
                collect_keys(tree, "", &mut keys);
                nearest(key, keys.iter().map(String::as_str)).map(str::to_string)
            },
        })?;
    Ok(Explanation {
        key: key.to_string(),
        scope,
        value: DisplayValue(node).to_string(),
        set_by: provenance(node),
        overridden: node.overridden.iter().map(provenance).collect(),
    })
}

fn provenance(node: &Node) -> Provenance {
    Provenance {
        value: DisplayValue(node).to_string(),
        layer: node.origin.layer.to_string(),
        location: node.origin.to_string(),
    }
}

fn collect_keys(node: &Node, prefix: &str, keys: &mut Vec<String>) {
    if let Value::Table(table) = &node.value {
        for (key, child) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            collect_keys(child, &path, keys);
            keys.push(path);
        }
    }
}
