//! The one error type of the model: a mistake in the site's files, with where and what.

use std::fmt;

use crate::origin::Origin;

/// What kind of mistake was found. Tests and tools match on this; people read the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A file the site needs does not exist or cannot be read.
    MissingFile,
    /// A file exists but holds nothing.
    EmptyFile,
    /// The file is not valid TOML.
    Syntax,
    /// A key that the format does not know (often a misspelling).
    UnknownKey,
    /// A key the format needs is absent.
    MissingKey,
    /// A value of the wrong type (a string where a number belongs).
    WrongType,
    /// A value of the right type that is out of range or not one of the allowed choices.
    InvalidValue,
    /// A wiki names a MediaWiki version that `versions` does not define.
    UndefinedVersion,
    /// Two wikis claim the same domain.
    DuplicateDomain,
    /// The environment asked for does not exist in the site.
    UnknownEnvironment,
    /// A key in a file where it does not belong (secrets outside the private file, for example).
    MisplacedKey,
    /// Any other rule between values (for example a release name that does not exist).
    Inconsistent,
}

/// A mistake in the site's files: which file, line, column and key, what was expected, and a hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// What kind of mistake.
    pub kind: ErrorKind,
    /// Where it is. Line 0 means the file as a whole (a missing or unreadable file).
    pub origin: Origin,
    /// The dotted key the mistake is about (`deployments.mw-web.replicas`), empty for the file.
    pub key: String,
    /// What is wrong and what was expected, as a sentence.
    pub message: String,
    /// A suggestion, such as the nearest valid key for a misspelling.
    pub help: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, origin: Origin, key: String, message: String) -> Self {
        Error {
            kind,
            origin,
            key,
            message,
            help: None,
        }
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.origin.line == 0 {
            write!(f, "{}: ", self.origin.file)?;
        } else {
            write!(f, "{}: ", self.origin)?;
        }
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// The valid name nearest to a misspelt one, if any is close enough to be a likely typo.
pub(crate) fn nearest<'a>(
    wrong: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(wrong, candidate), candidate))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// `a`, `b` or `c`: a list of choices for a message.
pub(crate) fn one_of<S: AsRef<str>>(choices: &[S]) -> String {
    let quoted: Vec<String> = choices
        .iter()
        .map(|choice| format!("`{}`", choice.as_ref()))
        .collect();
    match quoted.len() {
        0 => "nothing".to_string(),
        1 => quoted[0].clone(),
        count => format!(
            "{} or {}",
            quoted[..count - 1].join(", "),
            quoted[count - 1]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_finds_typos_and_ignores_unrelated_words() {
        let keys = ["replicas", "php", "memcached", "releases"];
        assert_eq!(nearest("replcas", keys), Some("replicas"));
        assert_eq!(nearest("memcache", keys), Some("memcached"));
        assert_eq!(nearest("zebra", keys), None);
    }

    #[test]
    fn choices_read_as_a_sentence() {
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
        assert_eq!(one_of(&["a"]), "`a`");
    }
}
