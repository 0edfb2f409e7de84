//! Passwords read from where the config says they are kept, and compared without leaking them.

use std::fmt;
use std::sync::Arc;

use crate::config::SecretRef;

/// A password. Its `Debug` never shows it, and nothing in the proxy prints or logs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Arc<[u8]>);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Password {
    /// The password's bytes, to send to a server.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether `given` is this password, in time that depends only on the lengths, so a client
    /// cannot find the password a byte at a time by timing wrong guesses.
    pub fn matches(&self, given: &[u8]) -> bool {
        let mine = self.as_bytes();
        let mut diff = u8::from(mine.len() != given.len());
        for (i, &b) in given.iter().enumerate() {
            diff |= b ^ mine.get(i % mine.len().max(1)).copied().unwrap_or(0);
        }
        diff == 0
    }

    /// A password held in memory (tests, and callers with their own secret store).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Password {
        Password(bytes.into().into())
    }
}

/// Why a password could not be read. Never holds the password itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("{field}: cannot read the password file {}", path.display())]
    File {
        /// The config field that names the file.
        field: String,
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The environment variable is unset or not UTF-8.
    #[error("{field}: the environment variable {name} is not set")]
    Env {
        /// The config field that names the variable.
        field: String,
        /// The variable.
        name: String,
    },
    /// The password is empty, which Redis would take as no password at all.
    #[error("{field}: the password in the {reference} is empty")]
    Empty {
        /// The config field.
        field: String,
        /// Where it was read.
        reference: SecretRef,
    },
}

/// Reads the password `reference` points at; `field` names the config field in errors.
pub fn read(field: &str, reference: &SecretRef) -> Result<Password, SecretError> {
    let mut bytes = match reference {
        SecretRef::File(path) => std::fs::read(path).map_err(|source| SecretError::File {
            field: field.to_string(),
            path: path.clone(),
            source,
        })?,
        SecretRef::Env(name) => std::env::var_os(name)
            .map(|v| v.into_encoded_bytes())
            .ok_or_else(|| SecretError::Env {
                field: field.to_string(),
                name: name.clone(),
            })?,
    };
    // Files written by `echo` or editors end in a newline that is not part of the password.
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(SecretError::Empty {
            field: field.to_string(),
            reference: reference.clone(),
        });
    }
    Ok(Password(bytes.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_bytes() {
        let p = Password::new("s3cret");
        assert!(p.matches(b"s3cret"));
        for wrong in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"x"] {
            assert!(!p.matches(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn debug_hides_it() {
        assert!(!format!("{:?}", Password::new("s3cret")).contains("s3cret"));
    }

    #[test]
    fn file_loses_its_trailing_newline() {
        let path = std::env::temp_dir().join(format!("redis-proxy-pw-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let p = read("client_password", &SecretRef::File(path.clone())).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(p.matches(b"s3cret"));
        let err = read("client_password", &SecretRef::File(path)).unwrap_err();
        assert!(err.to_string().starts_with("client_password: cannot read"));
    }
}
