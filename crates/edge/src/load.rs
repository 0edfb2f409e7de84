//! Reading the config file, with errors that name the file, line, column and key.

use crate::config::{Config, ValidationError};
use std::path::{Path, PathBuf};

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not fit the schema.
    #[error("{path}:{line}:{column}: {key}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// 1-based column of the problem (0 when unknown).
        column: usize,
        /// Dotted path of the key concerned (`.` for the top level).
        key: String,
        /// What was found and what was expected, as serde/toml say it.
        message: String,
    },
    /// The file parsed but its values do not fit together.
    #[error("{path}: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The problems.
        source: ValidationError,
    },
}

/// Reads, parses and validates a config file.
pub fn load_file(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_str(&text, path)
}

/// Parses and validates config text; `path` is only used in errors.
pub fn parse_str(text: &str, path: &Path) -> Result<Config, LoadError> {
    let parse_error = |e: toml::de::Error, key: String| {
        let (line, column) = e
            .span()
            .map(|s| line_column(text, s.start))
            .unwrap_or((0, 0));
        LoadError::Parse {
            path: path.to_owned(),
            line,
            column,
            key,
            message: e.message().trim().to_owned(),
        }
    };
    let de = toml::de::Deserializer::parse(text).map_err(|e| parse_error(e, ".".into()))?;
    // serde_path_to_error adds the dotted key path, which toml's own error lacks for type
    // mismatches deep in the tree.
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        parse_error(e.into_inner(), key)
    })?;
    config.validate().map_err(|source| LoadError::Invalid {
        path: path.to_owned(),
        source,
    })?;
    Ok(config)
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
