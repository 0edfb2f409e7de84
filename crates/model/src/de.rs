//! Deserializes typed values out of a merged [`Node`] tree, so that every error points at the
//! file, line and key that caused it.
//!
//! This is hand-written because no crate deserializes from a tree whose nodes come from several
//! files: `toml`'s own deserializer knows one document only, and `serde_path_to_error` gives a
//! path but no position or list of valid keys. Serde's derived code reports unknown keys through
//! [`serde::de::Error::unknown_field`] with the list of known ones, which is how a misspelling
//! gets its nearest valid key.

use std::fmt;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use crate::error::{nearest, one_of, Error, ErrorKind};
use crate::origin::Origin;
use crate::tree::{Node, Value};

/// Deserializes `T` from `node`, whose dotted key is `path` (empty for the root).
pub fn from_node<T: DeserializeOwned>(node: &Node, path: &str) -> Result<T, Error> {
    T::deserialize(NodeDeserializer {
        node,
        path: path.to_string(),
    })
    .map_err(|error| error.into_error(node, path))
}

/// An error on its way out of serde: it learns its position from the innermost node that sees it.
#[derive(Debug)]
pub(crate) struct DeError(Box<DeErrorInner>);

#[derive(Debug)]
struct DeErrorInner {
    kind: ErrorKind,
    message: String,
    help: Option<String>,
    missing_field: Option<&'static str>,
    located: Option<(Origin, String)>,
}

impl DeError {
    fn new(kind: ErrorKind, message: String) -> Self {
        DeError(Box::new(DeErrorInner {
            kind,
            message,
            help: None,
            missing_field: None,
            located: None,
        }))
    }

    fn locate(mut self, node: &Node, path: &str) -> Self {
        if self.0.located.is_none() {
            let key = match self.0.missing_field {
                Some(field) if path.is_empty() => field.to_string(),
                Some(field) => format!("{path}.{field}"),
                None => path.to_string(),
            };
            self.0.located = Some((node.origin.clone(), key));
        }
        self
    }

    fn into_error(self, node: &Node, path: &str) -> Error {
        let located = *self.locate(node, path).0;
        let (origin, key) = located.located.expect("located above");
        Error {
            kind: located.kind,
            origin,
            key,
            message: located.message,
            help: located.help,
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        DeError::new(ErrorKind::InvalidValue, message.to_string())
    }

    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        DeError::new(
            ErrorKind::WrongType,
            format!("expected {expected}, found {unexpected}"),
        )
    }

    fn invalid_value(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        DeError::new(
            ErrorKind::InvalidValue,
            format!("expected {expected}, found {unexpected}"),
        )
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut error = DeError::new(
            ErrorKind::UnknownKey,
            format!(
                "unknown key `{field}`; the keys allowed here are {}",
                one_of(expected)
            ),
        );
        if let Some(near) = nearest(field, expected.iter().copied()) {
            error.0.help = Some(format!("did you mean `{near}`?"));
        }
        error
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut error = DeError::new(
            ErrorKind::InvalidValue,
            format!(
                "`{variant}` is not allowed here; expected {}",
                one_of(expected)
            ),
        );
        if let Some(near) = nearest(variant, expected.iter().copied()) {
            error.0.help = Some(format!("did you mean `{near}`?"));
        }
        error
    }

    fn missing_field(field: &'static str) -> Self {
        let mut error = DeError::new(
            ErrorKind::MissingKey,
            format!("the required key `{field}` is missing from this table"),
        );
        error.0.missing_field = Some(field);
        error
    }
}

struct NodeDeserializer<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDeserializer<'a> {
    fn child(&self, key: &str, node: &'a Node) -> Self {
        let path = if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        };
        NodeDeserializer { node, path }
    }

    fn wrong_type(&self, expected: &str) -> DeError {
        DeError::new(
            ErrorKind::WrongType,
            format!("expected {expected}, found {}", self.node.value.type_name()),
        )
        .locate(self.node, &self.path)
    }

    fn integer(&self, bounds: (i128, i128)) -> Result<i128, DeError> {
        match self.node.value {
            Value::Integer(number) => {
                let number = i128::from(number);
                if number < bounds.0 || number > bounds.1 {
                    let expected = if bounds.0 == 0 {
                        format!("a whole number from 0 to {}", bounds.1)
                    } else {
                        format!("a whole number from {} to {}", bounds.0, bounds.1)
                    };
                    Err(DeError::new(
                        ErrorKind::InvalidValue,
                        format!("expected {expected}, found {number}"),
                    )
                    .locate(self.node, &self.path))
                } else {
                    Ok(number)
                }
            }
            _ => Err(self.wrong_type("an integer")),
        }
    }
}

macro_rules! deserialize_integer {
    ($($method:ident $visit:ident $type:ty),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                let number = self.integer((<$type>::MIN as i128, <$type>::MAX as i128))?;
                visitor
                    .$visit(number as $type)
                    .map_err(|error: DeError| error.locate(self.node, &self.path))
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for NodeDeserializer<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::String(text) => visitor.visit_str(text),
            Value::Integer(number) => visitor.visit_i64(*number),
            Value::Float(number) => visitor.visit_f64(*number),
            Value::Boolean(flag) => visitor.visit_bool(*flag),
            Value::Array(_) => return self.deserialize_seq(visitor),
            Value::Table(_) => return self.deserialize_map(visitor),
        };
        result.map_err(|error: DeError| error.locate(self.node, &self.path))
    }

    deserialize_integer! {
        deserialize_u8 visit_u8 u8,
        deserialize_u16 visit_u16 u16,
        deserialize_u32 visit_u32 u32,
        deserialize_u64 visit_u64 u64,
        deserialize_i8 visit_i8 i8,
        deserialize_i16 visit_i16 i16,
        deserialize_i32 visit_i32 i32,
        deserialize_i64 visit_i64 i64,
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let number = match self.node.value {
            Value::Float(number) => number,
            Value::Integer(number) => number as f64,
            _ => return Err(self.wrong_type("a number")),
        };
        visitor
            .visit_f64(number)
            .map_err(|error: DeError| error.locate(self.node, &self.path))
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Boolean(flag) => visitor
                .visit_bool(flag)
                .map_err(|error: DeError| error.locate(self.node, &self.path)),
            _ => Err(self.wrong_type("`true` or `false`")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(text) => visitor
                .visit_str(text)
                .map_err(|error: DeError| error.locate(self.node, &self.path)),
            _ => Err(self.wrong_type("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Array(items) => {
                let access = SeqAccess {
                    items: items.iter().enumerate(),
                    parent: &self,
                };
                visitor
                    .visit_seq(access)
                    .map_err(|error: DeError| error.locate(self.node, &self.path))
            }
            _ => Err(self.wrong_type("an array")),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Table(table) => {
                let access = MapAccess {
                    entries: table.iter(),
                    pending: None,
                    parent: &self,
                };
                visitor
                    .visit_map(access)
                    .map_err(|error: DeError| error.locate(self.node, &self.path))
            }
            _ => Err(self.wrong_type("a table")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::String(text) => {
                let variant: de::value::StrDeserializer<'_, DeError> =
                    text.as_str().into_deserializer();
                visitor
                    .visit_enum(variant)
                    .map_err(|error: DeError| error.locate(self.node, &self.path))
            }
            _ => Err(self.wrong_type("a string naming one of the choices")),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct tuple tuple_struct
    }
}

struct SeqAccess<'a, 'p, I> {
    items: I,
    parent: &'p NodeDeserializer<'a>,
}

impl<'de, 'a, I> de::SeqAccess<'de> for SeqAccess<'a, '_, I>
where
    I: Iterator<Item = (usize, &'a Node)>,
{
    type Error = DeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some((index, node)) => {
                let path = format!("{}[{index}]", self.parent.path);
                seed.deserialize(NodeDeserializer {
                    node,
                    path: path.clone(),
                })
                .map(Some)
                .map_err(|error: DeError| error.locate(node, &path))
            }
            None => Ok(None),
        }
    }
}

struct MapAccess<'a, 'p, I> {
    entries: I,
    pending: Option<(&'a str, &'a Node)>,
    parent: &'p NodeDeserializer<'a>,
}

impl<'de, 'a, I> de::MapAccess<'de> for MapAccess<'a, '_, I>
where
    I: Iterator<Item = (&'a String, &'a Node)>,
{
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, node)) => {
                self.pending = Some((key, node));
                let child = self.parent.child(key, node);
                let key_deserializer: de::value::StrDeserializer<'_, DeError> =
                    key.as_str().into_deserializer();
                // An unknown key is reported here, at the key's own position.
                seed.deserialize(key_deserializer)
                    .map(Some)
                    .map_err(|error: DeError| error.locate(child.node, &child.path))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let (key, node) = self
            .pending
            .take()
            .expect("serde asks for a value only after its key");
        let child = self.parent.child(key, node);
        // Errors raised after a value was read (a custom check in a Deserialize impl) are still
        // this value's errors.
        seed.deserialize(NodeDeserializer {
            node: child.node,
            path: child.path.clone(),
        })
        .map_err(|error: DeError| error.locate(child.node, &child.path))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::origin::Layer;
    use crate::tree::parse_file;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Php {
        workers: u32,
        #[serde(default)]
        opcache_mb: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Root {
        php: Php,
    }

    fn load(text: &str) -> Result<Root, Error> {
        let node = parse_file(text, "site.toml", Layer::Site).unwrap();
        from_node(&node, "")
    }

    #[test]
    fn reads_typed_values() {
        let root = load("[php]\nworkers = 8\nopcache_mb = 500\n").unwrap();
        assert_eq!(root.php.workers, 8);
        assert_eq!(root.php.opcache_mb, Some(500));
    }

    #[test]
    fn unknown_key_names_position_and_nearest_key() {
        let error = load("[php]\nworkers = 8\nopcach_mb = 500\n").unwrap_err();
        assert_eq!(error.kind, ErrorKind::UnknownKey);
        assert_eq!(error.key, "php.opcach_mb");
        assert_eq!((error.origin.line, error.origin.column), (3, 1));
        assert_eq!(error.help.as_deref(), Some("did you mean `opcache_mb`?"));
    }

    #[test]
    fn negative_count_is_out_of_range() {
        let error = load("[php]\nworkers = -1\n").unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidValue);
        assert_eq!(error.key, "php.workers");
        assert!(error.message.contains("from 0 to"), "{}", error.message);
        assert_eq!(error.origin.line, 2);
    }

    #[test]
    fn wrong_type_says_what_was_expected() {
        let error = load("[php]\nworkers = \"eight\"\n").unwrap_err();
        assert_eq!(error.kind, ErrorKind::WrongType);
        assert_eq!(error.message, "expected an integer, found a string");
    }

    #[test]
    fn missing_key_points_at_its_table() {
        let error = load("[php]\nopcache_mb = 1\n").unwrap_err();
        assert_eq!(error.kind, ErrorKind::MissingKey);
        assert_eq!(error.key, "php.workers");
        assert_eq!(error.origin.line, 1);
    }
}
