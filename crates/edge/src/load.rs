//! Reading the config file, with errors that name the file, line, column and key.

use crate::config::{Config, ValidationError};
use std::path::{Path, PathBuf};

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read")]
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
    #[error("{path}")]
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[listen]
address = "127.0.0.1:8443"

[[tls.certificates]]
names = ["wiki.example"]
cert = "c.pem"
key = "k.pem"

[pod]
upstream = "127.0.0.1:8080"
"#;

    /// The error and its causes, as the binary prints them.
    fn err(text: &str) -> String {
        let error = parse_str(text, Path::new("/etc/edge.toml")).unwrap_err();
        let mut out = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            out.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        out
    }

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse_str(GOOD, Path::new("x")).unwrap();
        assert_eq!(c.listen.drain_seconds, 7);
        assert_eq!(c.mode(), Some(crate::config::Mode::Pod));
        // Round trip: what render writes, edge reads back the same.
        let text = toml::to_string(&c).unwrap();
        assert_eq!(parse_str(&text, Path::new("x")).unwrap(), c);
    }

    #[test]
    fn unknown_key_names_file_line_column_and_key() {
        let e = err(&GOOD.replace("upstream =", "upstreams ="));
        assert!(
            e.starts_with("/etc/edge.toml:11:1: pod.upstreams: unknown field `upstreams`"),
            "{e}"
        );
        assert!(e.contains("expected one of `upstream`"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key_and_what_was_expected() {
        let e = err(&GOOD.replace("key = \"k.pem\"", "key = 3"));
        assert!(
            e.starts_with("/etc/edge.toml:8:7: tls.certificates[0].key:"),
            "{e}"
        );
        assert!(e.contains("expected a string"), "{e}");
    }

    #[test]
    fn invalid_values_are_named() {
        let e = err(&GOOD.replace("127.0.0.1:8080", "localhost"));
        assert!(e.contains("pod.upstream: expected HOST:PORT"), "{e}");
        let e = err(&format!("{GOOD}\n[edge]\nbackends = {{}}\nroutes = []\n"));
        assert!(e.contains("exactly one of the [pod] and [edge]"), "{e}");
    }

    #[test]
    fn edge_references_are_checked() {
        let text = GOOD.replace(
            "[pod]\nupstream = \"127.0.0.1:8080\"",
            r#"[edge.backends.web]
addresses = ["10.0.0.1:80"]
[edge.debug]
backends = ["mwdebug"]
[[edge.routes]]
hosts = ["*"]
backend = "web"
split = { backend = "nxt", default_percent = 120 }
"#,
        );
        let e = err(&text);
        assert!(
            e.contains("edge.debug.backends: unknown backend \"mwdebug\", expected one of: web"),
            "{e}"
        );
        assert!(
            e.contains("edge.routes[0].split.backend: unknown backend \"nxt\""),
            "{e}"
        );
        assert!(
            e.contains("edge.routes[0].split.default_percent: expected 0 to 100"),
            "{e}"
        );
    }

    const EDGE_TLS: &str = r#"[edge.backends.web]
addresses = ["10.0.0.1:8443"]
tls = { ca = "/etc/edge/cake.pem", server_name = "wiki.example" }
health = { path = "/healthz" }
[[edge.routes]]
hosts = ["*"]
backend = "web"
"#;

    fn edge_tls(tls: &str) -> String {
        GOOD.replace(
            "[pod]\nupstream = \"127.0.0.1:8080\"",
            &EDGE_TLS.replace(
                "{ ca = \"/etc/edge/cake.pem\", server_name = \"wiki.example\" }",
                tls,
            ),
        )
    }

    #[test]
    fn upstream_tls_round_trips() {
        let text = edge_tls(r#"{ ca = "/etc/edge/cake.pem", server_name = "wiki.example" }"#);
        let c = parse_str(&text, Path::new("x")).unwrap();
        let tls = c.edge.as_ref().unwrap().backends["web"]
            .tls
            .clone()
            .unwrap();
        assert_eq!(
            tls,
            crate::config::UpstreamTls {
                ca: "/etc/edge/cake.pem".into(),
                server_name: "wiki.example".into()
            }
        );
        let written = toml::to_string(&c).unwrap();
        assert_eq!(parse_str(&written, Path::new("x")).unwrap(), c);
        // Absent stays absent when written back.
        let plain = parse_str(GOOD, Path::new("x")).unwrap();
        assert!(!toml::to_string(&plain).unwrap().contains("tls ="));
    }

    #[test]
    fn upstream_tls_is_validated() {
        let e = err(&edge_tls(r#"{ ca = "", server_name = "10.0.0.1" }"#));
        assert!(
            e.contains("edge.backends.web.tls.ca: expected the path of a PEM file"),
            "{e}"
        );
        assert!(
            e.contains("edge.backends.web.tls.server_name: expected a DNS name, got \"10.0.0.1\""),
            "{e}"
        );
        let e = err(&edge_tls(r#"{ ca = "a.pem", server_name = "" }"#));
        assert!(e.contains("tls.server_name: expected a DNS name"), "{e}");
        let e = err(&edge_tls(
            r#"{ ca = "a.pem", server_name = "wiki.example", sni = "x" }"#,
        ));
        assert!(
            e.contains("edge.backends.web.tls.sni: unknown field `sni`"),
            "{e}"
        );
        let e = err(&edge_tls(r#"{ ca = "a.pem" }"#));
        assert!(e.contains("missing field `server_name`"), "{e}");
    }

    #[test]
    fn dns_names() {
        use crate::config::is_dns_name;
        for good in [
            "wiki.example",
            "mw-web.default.svc",
            "localhost",
            "a.b.c.",
            "x1.y2",
        ] {
            assert!(is_dns_name(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "-a.example",
            "a-.example",
            "a..b",
            "wiki example",
            "*.wiki.example",
            "10.0.0.1",
            "::1",
            "under_score.example",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_name(bad), "{bad}");
        }
    }
}
