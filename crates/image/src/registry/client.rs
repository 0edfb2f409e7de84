//! One registry over HTTP: where it is, how to trust its certificate, and how to authenticate
//! to it (HTTP Basic, or a bearer token from its token service, as the distribution spec's
//! `WWW-Authenticate` challenge says).
//!
//! Written on ureq rather than a registry client crate: the requests of a push are few and
//! short, and the client crates pull in an async runtime this crate has no other use for.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::auth::{self, Credentials};
use crate::error::{Error, Result};

/// How to reach registries: credentials, certificates, time limits.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Auth files to read credentials from, in order ([`auth::default_files`] by default).
    pub auth_files: Vec<PathBuf>,
    /// Extra CA certificates (PEM) to trust, besides the public roots (`--registry-ca`).
    pub ca_files: Vec<PathBuf>,
    /// Directories of per-registry CA certificates, `DIR/HOST:PORT/*.crt`, the layout podman
    /// and docker read (`/etc/containers/certs.d`, `/etc/docker/certs.d`).
    pub certs_dirs: Vec<PathBuf>,
    /// The bound on connecting and on every read and write of a request.
    pub timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let mut certs_dirs = vec![
            PathBuf::from("/etc/containers/certs.d"),
            PathBuf::from("/etc/docker/certs.d"),
        ];
        if let Some(home) = std::env::var_os("HOME") {
            certs_dirs.push(PathBuf::from(home).join(".config/containers/certs.d"));
        }
        ClientOptions {
            auth_files: auth::default_files(),
            ca_files: Vec::new(),
            certs_dirs,
            // A layer of a few hundred MB on a slow link takes minutes; what this bounds is a
            // peer that stops answering, so it is per read and write, not per request.
            timeout: Duration::from_secs(60),
        }
    }
}

/// Where a registry is: `[http://|https://]HOST[:PORT][/PREFIX]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// `https` or `http`.
    pub scheme: &'static str,
    /// `host:port`, as in image references.
    pub host: String,
    /// A path prefix for repositories (`team`), possibly empty.
    pub prefix: String,
}

impl Location {
    /// Parses a registry as the user writes it. Without a scheme, a loopback host is plain
    /// HTTP unless a CA is given for it (what podman and docker assume for `localhost`), and
    /// any other host is HTTPS.
    pub fn parse(registry: &str, tls_configured: bool) -> Result<Location> {
        let (scheme, rest) = if let Some(rest) = registry.strip_prefix("https://") {
            (Some("https"), rest)
        } else if let Some(rest) = registry.strip_prefix("http://") {
            (Some("http"), rest)
        } else {
            (None, registry)
        };
        let rest = rest.trim_end_matches('/');
        let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
            return Err(Error::Registry {
                url: registry.to_string(),
                message: "not a registry: expected HOST[:PORT][/PREFIX]".into(),
            });
        }
        let loopback =
            host.starts_with("localhost") || host.starts_with("127.") || host.starts_with("[::1]");
        let scheme = scheme.unwrap_or(if loopback && !tls_configured {
            "http"
        } else {
            "https"
        });
        Ok(Location {
            scheme,
            host: host.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        })
    }

    /// The repository of `name` (`wikikube/app`) under the prefix.
    pub fn repository(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

/// A request body that can be sent again (after an authentication challenge).
pub enum Body<'a> {
    /// No body.
    Empty,
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A file, wrapped by a function (to count or check what is sent).
    File(
        &'a Path,
        &'a dyn Fn(std::fs::File) -> Box<dyn Read + Send + 'a>,
    ),
}

/// How the registry wants to be authenticated, learned from its first challenge.
#[derive(Clone, Debug)]
enum Scheme {
    Anonymous,
    Basic,
    Bearer { realm: String, service: String },
}

/// A client for one registry.
pub struct Client {
    /// Where it is.
    pub location: Location,
    agent: ureq::Agent,
    credentials: Option<Credentials>,
    auth_files: Vec<PathBuf>,
    scheme: Mutex<Option<Scheme>>,
    tokens: Mutex<BTreeMap<String, String>>,
}

/// What came back: status, headers we use, and the body when asked for.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The body (read only for small answers).
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

impl Client {
    /// A client for `registry` (`[scheme://]host[:port][/prefix]`).
    pub fn new(registry: &str, options: &ClientOptions) -> Result<Client> {
        let location = Location::parse(registry, !options.ca_files.is_empty())?;
        let mut builder = ureq::AgentBuilder::new()
            .timeout_connect(options.timeout)
            .timeout_read(options.timeout)
            .timeout_write(options.timeout)
            // Distribution answers uploads with 202/201 and a Location to follow by hand;
            // blob downloads may redirect to storage, which ureq follows.
            .redirects(4);
        if location.scheme == "https" {
            builder = builder.tls_config(Arc::new(tls_config(&location.host, options)?));
        }
        let repository_key = if location.prefix.is_empty() {
            location.host.clone()
        } else {
            format!("{}/{}", location.host, location.prefix)
        };
        let credentials =
            auth::find(&options.auth_files, &repository_key).map_err(|e| Error::Registry {
                url: registry.to_string(),
                message: e.to_string(),
            })?;
        Ok(Client {
            location,
            agent: builder.build(),
            credentials,
            auth_files: options.auth_files.clone(),
            scheme: Mutex::new(None),
            tokens: Mutex::new(BTreeMap::new()),
        })
    }

    /// `scheme://host/v2/` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}://{}/v2/{}",
            self.location.scheme,
            self.location.host,
            path.trim_start_matches('/')
        )
    }

    /// An absolute URL for a `Location` header, which may be relative.
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else {
            format!(
                "{}://{}/{}",
                self.location.scheme,
                self.location.host,
                location.trim_start_matches('/')
            )
        }
    }

    /// Sends a request, authenticating as the registry asks. `scopes` are the repository
    /// scopes a token must carry (`repository:wikikube/app:pull,push`). Any status is a
    /// [`Reply`]; only a failure to talk at all, or a refused authentication, is an error.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        scopes: &[String],
        headers: &[(&str, &str)],
        body: Body<'_>,
        read_body: bool,
    ) -> Result<Reply> {
        let mut authorization = self.authorization(scopes)?;
        for attempt in 0..2 {
            let mut request = self.agent.request(method, url);
            for (name, value) in headers {
                request = request.set(name, value);
            }
            if let Some(value) = &authorization {
                request = request.set("Authorization", value);
            }
            let result = match &body {
                Body::Empty if method == "POST" || method == "PUT" => request.send_bytes(&[]),
                Body::Empty => request.call(),
                Body::Bytes(bytes) => request.send_bytes(bytes),
                Body::File(path, wrap) => {
                    let file = std::fs::File::open(path).map_err(Error::io(*path))?;
                    let len = file.metadata().map_err(Error::io(*path))?.len();
                    request
                        .set("Content-Length", &len.to_string())
                        .send(wrap(file))
                }
            };
            let response = match result {
                Ok(response) => response,
                Err(ureq::Error::Status(_, response)) => response,
                Err(ureq::Error::Transport(transport)) => {
                    return Err(Error::Registry {
                        url: url.to_string(),
                        message: transport.to_string(),
                    })
                }
            };
            let reply = into_reply(response, read_body)?;
            if reply.status != 401 {
                return Ok(reply);
            }
            if attempt == 1 || !self.learn(&reply)? {
                return Err(self.refused(&reply));
            }
            authorization = self.authorization(scopes)?;
            if authorization.is_none() {
                return Err(self.refused(&reply));
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Asks `/v2/` once, so that the way to authenticate is known before a request with a
    /// large body is sent (a blob sent only to be answered 401 would be sent twice).
    pub fn ping(&self) -> Result<()> {
        let url = self.url("");
        let reply = self.send("GET", &url, &[], &[], Body::Empty, false)?;
        match reply.status {
            200 => Ok(()),
            // A registry that answers /v2/ with 404 is not one.
            status => Err(Error::Registry {
                url,
                message: format!("HTTP {status}: not an OCI distribution registry"),
            }),
        }
    }

    /// Remembers the challenge of a 401; false when it brings nothing new.
    fn learn(&self, reply: &Reply) -> Result<bool> {
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        let learned = parse_challenge(challenge);
        let mut scheme = self.scheme.lock().expect("not poisoned");
        let new = match (&*scheme, &learned) {
            (Some(Scheme::Basic), Scheme::Basic) => false,
            (Some(Scheme::Bearer { .. }), Scheme::Bearer { .. }) => {
                // A token may have expired: drop them and ask again once.
                self.tokens.lock().expect("not poisoned").clear();
                true
            }
            _ => true,
        };
        *scheme = Some(learned);
        Ok(new)
    }

    /// The Authorization header for the scheme learned so far.
    fn authorization(&self, scopes: &[String]) -> Result<Option<String>> {
        let scheme = self.scheme.lock().expect("not poisoned").clone();
        match scheme {
            None | Some(Scheme::Anonymous) => Ok(None),
            Some(Scheme::Basic) => Ok(self.credentials.as_ref().map(Credentials::basic)),
            Some(Scheme::Bearer { realm, service }) => {
                let key = scopes.join(" ");
                if let Some(token) = self.tokens.lock().expect("not poisoned").get(&key) {
                    return Ok(Some(format!("Bearer {token}")));
                }
                let mut url = format!("{realm}?service={}", encode(&service));
                for scope in scopes {
                    url.push_str(&format!("&scope={}", encode(scope)));
                }
                let mut request = self.agent.get(&url);
                if let Some(credentials) = &self.credentials {
                    request = request.set("Authorization", &credentials.basic());
                }
                let response = match request.call() {
                    Ok(response) => response,
                    Err(ureq::Error::Status(401 | 403, _)) => {
                        return Err(Error::RegistryRefused {
                            registry: self.location.host.clone(),
                            reason: self.refusal_reason(),
                        })
                    }
                    Err(e) => {
                        return Err(Error::Registry {
                            url: realm,
                            message: e.to_string(),
                        })
                    }
                };
                let json: serde_json::Value =
                    response.into_json().map_err(|e| Error::Registry {
                        url: realm.clone(),
                        message: format!("the token service's answer is not JSON: {e}"),
                    })?;
                let token = json
                    .get("token")
                    .or_else(|| json.get("access_token"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| Error::Registry {
                        url: realm.clone(),
                        message: "the token service's answer has no token".into(),
                    })?
                    .to_string();
                self.tokens
                    .lock()
                    .expect("not poisoned")
                    .insert(key, token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn refusal_reason(&self) -> String {
        match &self.credentials {
            Some(credentials) => format!(
                "it did not accept the credentials of user `{}` from {}; log in again with `podman login {}`",
                credentials.username,
                credentials.file.display(),
                self.location.host
            ),
            None => {
                let files = self
                    .auth_files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "it requires credentials and none were found for it (looked in: {files}); log in with `podman login {host}` or `docker login {host}`, or point REGISTRY_AUTH_FILE at an auth.json that has them",
                    host = self.location.host,
                    files = if files.is_empty() { "no auth file".into() } else { files }
                )
            }
        }
    }

    fn refused(&self, reply: &Reply) -> Error {
        let _ = reply;
        Error::RegistryRefused {
            registry: self.location.host.clone(),
            reason: self.refusal_reason(),
        }
    }
}

fn into_reply(response: ureq::Response, read_body: bool) -> Result<Reply> {
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            let value = response.header(&name)?.to_string();
            Some((name.to_ascii_lowercase(), value))
        })
        .collect();
    let mut body = Vec::new();
    // Error documents are small and say what went wrong; read them too.
    if read_body || status >= 400 {
        // Bounded: answers we read are manifests, indexes and error documents.
        let url = response.get_url().to_string();
        response
            .into_reader()
            .take(16 << 20)
            .read_to_end(&mut body)
            .map_err(|e| Error::Registry {
                url,
                message: e.to_string(),
            })?;
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// `Basic realm=...` or `Bearer realm="...",service="...",scope="..."`.
fn parse_challenge(header: &str) -> Scheme {
    let (kind, params) = header.split_once(' ').unwrap_or((header, ""));
    if kind.eq_ignore_ascii_case("basic") {
        return Scheme::Basic;
    }
    if !kind.eq_ignore_ascii_case("bearer") {
        return Scheme::Anonymous;
    }
    let mut realm = String::new();
    let mut service = String::new();
    // Parameters are `key="value"` separated by commas; values hold no quotes.
    let mut rest = params;
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            quoted.split_once('"').unwrap_or((quoted, ""))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        match key {
            "realm" => realm = value.to_string(),
            "service" => service = value.to_string(),
            _ => {}
        }
        rest = next;
    }
    Scheme::Bearer { realm, service }
}

/// Percent-encoding of a query value (scopes hold `:` and `,`).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The TLS settings for `host`: the public roots, the given CA files, and the host's
/// directory in each certs.d.
fn tls_config(host: &str, options: &ClientOptions) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut files = options.ca_files.clone();
    for dir in &options.certs_dirs {
        let dir = dir.join(host);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "crt"))
                .collect();
            found.sort();
            files.extend(found);
        }
    }
    for file in &files {
        let bytes = std::fs::read(file).map_err(Error::io(file))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            let cert = cert.map_err(|e| Error::Config {
                path: file.clone(),
                message: format!("not a PEM certificate: {e}"),
            })?;
            roots.add(cert).map_err(|e| Error::Config {
                path: file.clone(),
                message: format!("not a usable CA certificate: {e}"),
            })?;
            added += 1;
        }
        if added == 0 {
            return Err(Error::Config {
                path: file.clone(),
                message: "holds no PEM certificate".into(),
            });
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            path: PathBuf::from("<tls>"),
            message: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_follow_what_podman_assumes() {
        let local = Location::parse("127.0.0.1:5000", false).unwrap();
        assert_eq!(
            (local.scheme, local.host.as_str()),
            ("http", "127.0.0.1:5000")
        );
        assert_eq!(
            Location::parse("127.0.0.1:5000", true).unwrap().scheme,
            "https"
        );
        let remote = Location::parse("registry.test/team/", false).unwrap();
        assert_eq!(
            (remote.scheme, remote.host.as_str(), remote.prefix.as_str()),
            ("https", "registry.test", "team")
        );
        assert_eq!(remote.repository("wikikube/app"), "team/wikikube/app");
        assert_eq!(
            Location::parse("http://reg.test", false).unwrap().scheme,
            "http"
        );
        assert!(Location::parse("user@reg.test", false).is_err());
    }

    #[test]
    fn challenges_are_parsed() {
        assert!(matches!(
            parse_challenge("Basic realm=\"r\""),
            Scheme::Basic
        ));
        match parse_challenge(
            "Bearer realm=\"https://auth.test/token\",service=\"reg.test\",scope=\"repository:a:pull\"",
        ) {
            Scheme::Bearer { realm, service } => {
                assert_eq!(realm, "https://auth.test/token");
                assert_eq!(service, "reg.test");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
