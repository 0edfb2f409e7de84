//! Where a value came from: the layer, the file and the position in it.

use std::fmt;
use std::sync::Arc;

/// One layer of values, lowest first in the order they are merged.
///
/// The order of the variants is the merge order: a value from a later layer overrides one from an
/// earlier layer. Deployment and release are not layers of files but scopes inside every file;
/// see [`crate::resolve`] for how the two combine.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    /// The defaults built into wikikube (`defaults.toml` in the model crate).
    Defaults,
    /// The site's own `site.toml`.
    Site,
    /// An environment file, `environments/<environment>.toml`.
    Environment(String),
    /// A datacenter file inside an environment, `environments/<environment>/<datacenter>.toml`.
    Datacenter(String),
    /// The private values that config management writes; never printed.
    Private(String),
}

impl Layer {
    /// Whether values from this layer must never be shown.
    pub fn is_private(&self) -> bool {
        matches!(self, Layer::Private(_))
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Defaults => f.write_str("built-in defaults"),
            Layer::Site => f.write_str("site"),
            Layer::Environment(name) => write!(f, "environment {name}"),
            Layer::Datacenter(name) => write!(f, "datacenter {name}"),
            Layer::Private(name) => write!(f, "private values for {name}"),
        }
    }
}

/// The position of a key or value in one of the site's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The layer the file belongs to.
    pub layer: Arc<Layer>,
    /// The file as the user would type it (relative to the site directory where possible).
    pub file: Arc<str>,
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Turns byte offsets into line and column numbers for one file.
pub(crate) struct LineIndex {
    line_starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(at, _)| at + 1));
        LineIndex { line_starts }
    }

    /// The 1-based line and character column of a byte offset.
    pub(crate) fn position(&self, text: &str, offset: usize) -> (u32, u32) {
        let offset = offset.min(text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let column = text
            .get(start..offset)
            .map_or(offset - start, |prefix| prefix.chars().count());
        (line as u32 + 1, column as u32 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nwiki = \"ü\"\nb = 2";
        let index = LineIndex::new(text);
        assert_eq!(index.position(text, 0), (1, 1));
        assert_eq!(index.position(text, 6), (2, 1));
        let b = text.find("b =").unwrap();
        assert_eq!(index.position(text, b), (3, 1));
        let after_u = text.find('ü').unwrap() + 'ü'.len_utf8();
        assert_eq!(index.position(text, after_u), (2, 10));
    }
}
