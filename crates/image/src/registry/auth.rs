//! Registry credentials from the places podman and docker keep them, never printed.
//!
//! The files are read in the order podman reads them (containers-auth.json(5)):
//! `$REGISTRY_AUTH_FILE`, `${XDG_RUNTIME_DIR}/containers/auth.json`, then docker's
//! `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. Each is a JSON object
//! `{"auths": {"KEY": {"auth": base64("user:password")}}}` where KEY is `host[:port]`,
//! optionally followed by a repository namespace (`host:port/team`) for per-namespace
//! credentials, or docker's legacy `https://host/v1/`. The most specific key that matches the
//! repository wins within a file; the first file with a match wins overall, as in podman.
//!
//! Credential helpers (`credHelpers`, `credsStore`) are not run: they are programs of the
//! user's desktop, and a build machine keeps its credentials in a file.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

/// A user name and password for one registry. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
    /// The file they were read from (named in errors).
    pub file: PathBuf,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .field("file", &self.file)
            .finish()
    }
}

impl Credentials {
    /// The value of an `Authorization: Basic` header.
    pub fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// The auth files to read, in order; only those that exist are read.
pub fn default_files() -> Vec<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let mut files = Vec::new();
    if let Some(file) = var("REGISTRY_AUTH_FILE") {
        files.push(PathBuf::from(file));
    }
    if let Some(dir) = var("XDG_RUNTIME_DIR") {
        files.push(PathBuf::from(dir).join("containers/auth.json"));
    }
    if let Some(dir) = var("DOCKER_CONFIG") {
        files.push(PathBuf::from(dir).join("config.json"));
    } else if let Some(home) = var("HOME") {
        files.push(PathBuf::from(home).join(".docker/config.json"));
    }
    files
}

#[derive(Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, AuthEntry>,
}

#[derive(Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `host[:port][/namespace]` of an auth file key, without docker's scheme and `/v1/`.
fn normalize(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.trim_end_matches('/');
    key.strip_suffix("/v1")
        .or_else(|| key.strip_suffix("/v2"))
        .unwrap_or(key)
        .to_string()
}

/// The credentials for `repository` (`host:port/path/name`) in `files`: the first file that
/// has a key matching it, and in it the longest matching key. A file that cannot be read or
/// parsed is an error naming it (a broken auth file must not silently mean "no credentials").
pub fn find(files: &[PathBuf], repository: &str) -> Result<Option<Credentials>, AuthFileError> {
    for file in files {
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(AuthFileError {
                    file: file.clone(),
                    reason: e.to_string(),
                })
            }
        };
        let parsed: AuthFile = serde_json::from_slice(&bytes).map_err(|e| AuthFileError {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        if let Some(found) = best_match(file, &parsed, repository)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

fn best_match(
    file: &Path,
    parsed: &AuthFile,
    repository: &str,
) -> Result<Option<Credentials>, AuthFileError> {
    let mut best: Option<(usize, &AuthEntry)> = None;
    for (key, entry) in &parsed.auths {
        let key = normalize(key);
        let matches = repository == key
            || repository
                .strip_prefix(key.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        if matches && best.is_none_or(|(len, _)| key.len() > len) {
            best = Some((key.len(), entry));
        }
    }
    let Some((_, entry)) = best else {
        return Ok(None);
    };
    let (username, password) = match (&entry.auth, &entry.username, &entry.password) {
        (Some(auth), _, _) if !auth.is_empty() => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((user, password)) => (user.to_string(), password.to_string()),
                None => {
                    return Err(AuthFileError {
                        file: file.to_path_buf(),
                        reason: "an `auth` value is not base64 of `user:password`".into(),
                    })
                }
            }
        }
        (_, Some(user), Some(password)) => (user.clone(), password.clone()),
        _ => return Ok(None),
    };
    Ok(Some(Credentials {
        username,
        password,
        file: file.to_path_buf(),
    }))
}

/// An auth file that exists but cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("registry credentials file {file}: {reason}")]
pub struct AuthFileError {
    /// The file.
    pub file: PathBuf,
    /// What is wrong with it (never its content).
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_most_specific_key_of_the_first_file_with_a_match_wins() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let podman = file(
            dir.path(),
            "auth.json",
            &format!(
                r#"{{"auths": {{"reg.test:5000": {{"auth": "{}"}},
                    "reg.test:5000/team": {{"auth": "{}"}}}}}}"#,
                b64("all:one"),
                b64("team:two")
            ),
        );
        let docker = file(
            dir.path(),
            "config.json",
            &format!(
                r#"{{"auths": {{"https://other.test/v1/": {{"auth": "{}"}}}}, "credsStore": "desktop"}}"#,
                b64("legacy:three")
            ),
        );
        let missing = dir.path().join("missing.json");
        let files = [missing, podman, docker.clone()];
        let team = find(&files, "reg.test:5000/team/wikikube/app")
            .unwrap()
            .unwrap();
        assert_eq!(
            (team.username.as_str(), team.password.as_str()),
            ("team", "two")
        );
        let all = find(&files, "reg.test:5000/wikikube/app").unwrap().unwrap();
        assert_eq!(all.username, "all");
        // `reg.test:50001` is another registry, not a longer port.
        assert!(find(&files, "reg.test:50001/wikikube/app")
            .unwrap()
            .is_none());
        let legacy = find(&files, "other.test/wikikube/app").unwrap().unwrap();
        assert_eq!(
            (legacy.username.as_str(), legacy.file.as_path()),
            ("legacy", docker.as_path())
        );
        assert!(
            !format!("{legacy:?}").contains("three"),
            "Debug shows no password"
        );
    }

    #[test]
    fn a_broken_file_is_named_and_its_content_is_not_shown() {
        let dir = tempfile::tempdir().unwrap();
        let broken = file(
            dir.path(),
            "auth.json",
            r#"{"auths": {"r": {"auth": "c2VjcmV0"}}}"#,
        );
        let error = find(&[broken], "r/x").unwrap_err().to_string();
        assert!(error.contains("auth.json"), "{error}");
        assert!(
            !error.contains("c2VjcmV0") && !error.contains("secret"),
            "{error}"
        );
    }
}
