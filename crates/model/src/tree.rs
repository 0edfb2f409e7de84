//! A tree of values read from the site's TOML files, where every node remembers its origin and
//! the values it overrode.
//!
//! The `toml` crate can deserialize straight into typed structs, but then positions and layering
//! are lost. We first read each file into this tree (keeping spans), merge the trees of all layers
//! (keeping what each value replaced), and only then deserialize the merged tree into typed values
//! with [`crate::de`], whose errors point back into the right file.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::{Error, ErrorKind};
use crate::origin::{Layer, LineIndex, Origin};

/// A table: keys in sorted order, so everything built from it is deterministic.
pub type Table = BTreeMap<String, Node>;

/// A value in the merged tree.
#[derive(Clone, Debug)]
pub enum Value {
    /// A string (TOML datetimes are kept as their text).
    String(String),
    /// A signed integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Boolean(bool),
    /// An array; arrays replace each other whole when layers merge.
    Array(Vec<Node>),
    /// A table; tables merge key by key.
    Table(Table),
}

impl Value {
    /// How the value's type is called in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }
}

/// A value with its origin and the values it overrode, most recent first.
#[derive(Clone, Debug)]
pub struct Node {
    /// The value itself.
    pub value: Value,
    /// Where the key (or, for array items, the value) was written.
    pub origin: Origin,
    /// The values this one replaced when layers merged, most recent first.
    pub overridden: Vec<Node>,
}

impl Node {
    /// A table node with no entries, for layers that are built rather than read.
    pub fn empty_table(origin: Origin) -> Node {
        Node {
            value: Value::Table(Table::new()),
            origin,
            overridden: Vec::new(),
        }
    }

    /// The entries of a table node.
    pub fn as_table(&self) -> Option<&Table> {
        match &self.value {
            Value::Table(table) => Some(table),
            _ => None,
        }
    }

    /// The entries of a table node, mutably.
    pub fn as_table_mut(&mut self) -> Option<&mut Table> {
        match &mut self.value {
            Value::Table(table) => Some(table),
            _ => None,
        }
    }

    /// The node at a dotted path below this one (`php.workers`), if there is one.
    pub fn get_path<'a, I, S>(&self, path: I) -> Option<&Node>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str> + 'a,
    {
        let mut node = self;
        for segment in path {
            node = node.as_table()?.get(segment.as_ref())?;
        }
        Some(node)
    }

    /// Whether this value, or anything inside it, comes from a private layer.
    pub fn is_private(&self) -> bool {
        self.origin.layer.is_private()
            || match &self.value {
                Value::Array(items) => items.iter().any(Node::is_private),
                Value::Table(table) => table.values().any(Node::is_private),
                _ => false,
            }
    }

    /// Merges `top` into `self`: tables merge key by key, anything else replaces the value and
    /// remembers what it replaced.
    pub fn merge(&mut self, top: Node) {
        match (&mut self.value, top.value) {
            (Value::Table(base), Value::Table(top_table)) => {
                for (key, top_child) in top_table {
                    match base.get_mut(&key) {
                        Some(base_child) => base_child.merge(top_child),
                        None => {
                            base.insert(key, top_child);
                        }
                    }
                }
            }
            (_, top_value) => {
                let mut replaced = std::mem::replace(
                    self,
                    Node {
                        value: top_value,
                        origin: top.origin,
                        overridden: top.overridden,
                    },
                );
                let older = std::mem::take(&mut replaced.overridden);
                self.overridden.push(replaced);
                self.overridden.extend(older);
            }
        }
    }
}

/// Shows a value the way it would be written in TOML, or `<redacted>` for private values.
pub struct DisplayValue<'a>(pub &'a Node);

impl fmt::Display for DisplayValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_private() {
            return f.write_str("<redacted>");
        }
        match &self.0.value {
            Value::String(text) => write!(f, "{text:?}"),
            Value::Integer(number) => write!(f, "{number}"),
            Value::Float(number) => write!(f, "{number}"),
            Value::Boolean(flag) => write!(f, "{flag}"),
            Value::Array(items) => {
                f.write_str("[")?;
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{}", DisplayValue(item))?;
                }
                f.write_str("]")
            }
            Value::Table(table) => {
                f.write_str("{ ")?;
                for (index, (key, item)) in table.iter().enumerate() {
                    if index > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key} = {}", DisplayValue(item))?;
                }
                f.write_str(" }")
            }
        }
    }
}

/// Reads one TOML file into a tree. `file` is the name shown in messages.
pub fn parse_file(text: &str, file: &str, layer: Layer) -> Result<Node, Error> {
    let file: Arc<str> = Arc::from(file);
    let layer = Arc::new(layer);
    let lines = LineIndex::new(text);
    let origin_at = |offset: usize| {
        let (line, column) = lines.position(text, offset);
        Origin {
            layer: layer.clone(),
            file: file.clone(),
            line,
            column,
        }
    };
    if text.trim().is_empty() {
        return Err(Error::new(
            ErrorKind::EmptyFile,
            origin_at(0),
            String::new(),
            "the file is empty; a site file needs at least one table such as [site]".into(),
        ));
    }
    let table = DeTable::parse(text).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        Error::new(
            ErrorKind::Syntax,
            origin_at(offset),
            String::new(),
            format!("this is not valid TOML: {}", error.message().trim_end()),
        )
    })?;
    let converter = Converter { origin_at };
    converter.table(table.get_ref(), origin_at(0))
}

struct Converter<F> {
    origin_at: F,
}

impl<F: Fn(usize) -> Origin> Converter<F> {
    fn table(&self, table: &DeTable<'_>, origin: Origin) -> Result<Node, Error> {
        let mut entries = Table::new();
        for (key, value) in table {
            let origin = (self.origin_at)(key.span().start);
            let node = self.value(value, origin)?;
            entries.insert(key.get_ref().to_string(), node);
        }
        Ok(Node {
            value: Value::Table(entries),
            origin,
            overridden: Vec::new(),
        })
    }

    fn value(&self, value: &Spanned<DeValue<'_>>, origin: Origin) -> Result<Node, Error> {
        let value = match value.get_ref() {
            DeValue::String(text) => Value::String(text.to_string()),
            DeValue::Integer(integer) => {
                match i64::from_str_radix(integer.as_str(), integer.radix()) {
                    Ok(number) => Value::Integer(number),
                    Err(_) => {
                        return Err(Error::new(
                            ErrorKind::Syntax,
                            origin,
                            String::new(),
                            format!("the integer {integer} does not fit in 64 bits"),
                        ))
                    }
                }
            }
            DeValue::Float(float) => match float.as_str().replace('_', "").parse::<f64>() {
                Ok(number) => Value::Float(number),
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Syntax,
                        origin,
                        String::new(),
                        format!("{} is not a float", float.as_str()),
                    ))
                }
            },
            DeValue::Boolean(flag) => Value::Boolean(*flag),
            DeValue::Datetime(datetime) => Value::String(datetime.to_string()),
            DeValue::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| self.value(item, (self.origin_at)(item.span().start)))
                    .collect::<Result<_, _>>()?,
            ),
            DeValue::Table(table) => return self.table(table, origin),
        };
        Ok(Node {
            value,
            origin,
            overridden: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, layer: Layer) -> Node {
        parse_file(text, "test.toml", layer).unwrap()
    }

    #[test]
    fn keys_keep_their_line_and_column() {
        let tree = parse(
            "[php]\nworkers = 8\n\n[wikis.enwiki]\n  language = \"en\"\n",
            Layer::Site,
        );
        let workers = tree.get_path(["php", "workers"]).unwrap();
        assert_eq!((workers.origin.line, workers.origin.column), (2, 1));
        let language = tree.get_path(["wikis", "enwiki", "language"]).unwrap();
        assert_eq!((language.origin.line, language.origin.column), (5, 3));
    }

    #[test]
    fn merging_replaces_scalars_and_keeps_what_they_replaced() {
        let mut base = parse("[php]\nworkers = 8\nopcache_mb = 500\n", Layer::Defaults);
        base.merge(parse("[php]\nworkers = 4\n", Layer::Site));
        base.merge(parse(
            "[php]\nworkers = 2\n",
            Layer::Environment("local".into()),
        ));
        let workers = base.get_path(["php", "workers"]).unwrap();
        assert!(matches!(workers.value, Value::Integer(2)));
        let replaced: Vec<_> = workers
            .overridden
            .iter()
            .map(|node| (*node.origin.layer).clone())
            .collect();
        assert_eq!(replaced, [Layer::Site, Layer::Defaults]);
        let opcache = base.get_path(["php", "opcache_mb"]).unwrap();
        assert!(matches!(opcache.value, Value::Integer(500)));
        assert!(opcache.overridden.is_empty());
    }

    #[test]
    fn arrays_replace_whole() {
        let mut base = parse("domains = [\"a\", \"b\"]\n", Layer::Site);
        base.merge(parse("domains = [\"c\"]\n", Layer::Environment("e".into())));
        let domains = base.get_path(["domains"]).unwrap();
        assert_eq!(DisplayValue(domains).to_string(), "[\"c\"]");
    }

    #[test]
    fn private_values_are_redacted() {
        let tree = parse(
            "[secrets]\nkey = \"hunter2\"\n",
            Layer::Private("local".into()),
        );
        let shown = DisplayValue(tree.get_path(["secrets"]).unwrap()).to_string();
        assert_eq!(shown, "<redacted>");
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let error = parse_file("[php]\nworkers = = 8\n", "bad.toml", Layer::Site).unwrap_err();
        assert_eq!(error.origin.line, 2);
        assert!(error.to_string().starts_with("bad.toml:2:"), "{error}");
    }
}
