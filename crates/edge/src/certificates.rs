//! TLS certificates chosen by SNI, reloaded from their files without a restart.
//!
//! rustls' own `ResolvesServerCertUsingSni` takes exact names only and cannot be swapped while
//! connections are using it, so this resolver is written here: a map behind a lock that a
//! reload replaces whole, with `*.domain` wildcards and a default certificate.

use crate::config::{Certificate, TlsVersion};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A PEM file could not be read or has no usable item.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The config lists no certificate.
    #[error("no certificate configured")]
    Empty,
}

/// What a file looked like when loaded (modification time and length): a change to either
/// means reload. Also used for the upstream CA files.
pub(crate) type Stamp = (Option<SystemTime>, u64);

pub(crate) fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path)
        .map(|m| (m.modified().ok(), m.len()))
        .unwrap_or((None, 0))
}

#[derive(Debug)]
struct Loaded {
    config: Vec<Certificate>,
    stamps: Vec<Stamp>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

fn load_one(c: &Certificate) -> Result<Arc<CertifiedKey>, CertificateError> {
    let file_err = |path: &str, message: String| CertificateError::File {
        path: PathBuf::from(path),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
        .map_err(|e| file_err(&c.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&c.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(&c.cert, "no CERTIFICATE in PEM file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&c.key).map_err(|e| file_err(&c.key, e.to_string()))?;
    let signer = rustls::crypto::aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|e| file_err(&c.key, e.to_string()))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match()
        .map_err(|e| file_err(&c.key, format!("key does not match {}: {e}", c.cert)))?;
    Ok(Arc::new(ck))
}

fn load_all(config: &[Certificate]) -> Result<Loaded, CertificateError> {
    // Stamps are taken before reading, so a write racing the read triggers another reload.
    let stamps = config
        .iter()
        .flat_map(|c| [stamp(Path::new(&c.cert)), stamp(Path::new(&c.key))])
        .collect();
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    for c in config {
        let key = load_one(c)?;
        default.get_or_insert_with(|| key.clone());
        for name in &c.names {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(domain) => wildcard.entry(domain.to_owned()),
                None => exact.entry(name),
            }
            .or_insert_with(|| key.clone());
        }
    }
    Ok(Loaded {
        config: config.to_vec(),
        stamps,
        exact,
        wildcard,
        default: default.ok_or(CertificateError::Empty)?,
    })
}

/// The certificates in use; the TLS acceptor asks it for each handshake.
#[derive(Debug)]
pub struct CertStore {
    loaded: RwLock<Arc<Loaded>>,
}

impl CertStore {
    /// Loads every certificate; fails on the first bad file.
    pub fn load(config: &[Certificate]) -> Result<Self, CertificateError> {
        Ok(CertStore {
            loaded: RwLock::new(Arc::new(load_all(config)?)),
        })
    }

    fn current(&self) -> Arc<Loaded> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the value is whole.
        self.loaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reloads when `config` differs from the loaded one or a file changed since it was loaded.
    /// Returns whether it reloaded. On error the old certificates stay in use.
    pub fn reload_if_changed(&self, config: &[Certificate]) -> Result<bool, CertificateError> {
        let cur = self.current();
        let unchanged = cur.config == config
            && config
                .iter()
                .flat_map(|c| [stamp(Path::new(&c.cert)), stamp(Path::new(&c.key))])
                .eq(cur.stamps.iter().copied());
        if unchanged {
            return Ok(false);
        }
        let new = Arc::new(load_all(config)?);
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(true)
    }

    /// The certificate for a server name (or the default one).
    pub fn for_name(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let cur = self.current();
        let Some(name) = name.map(str::to_ascii_lowercase) else {
            return cur.default.clone();
        };
        if let Some(k) = cur.exact.get(&name) {
            return k.clone();
        }
        name.split_once('.')
            .and_then(|(_, domain)| cur.wildcard.get(domain))
            .unwrap_or(&cur.default)
            .clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.for_name(hello.server_name()))
    }
}

/// The suites the edge offers, in its order of preference: AEAD only, with forward secrecy,
/// AES-128-GCM first, as in Mozilla's "intermediate" server configuration (its
/// recommendation for general-purpose servers).
/// AES-128 is as strong as the key exchange and certificates around it (X25519 and P-256
/// give 128-bit security), and its TLS 1.3 suite hashes with SHA-256, which CPUs with SHA
/// extensions do in hardware; SHA-384 (AES-256's suite) has none (the extensions cover
/// SHA-256 only) and was 9 % of the CPU of new connections (docs/benchmarks.md, issue 17).
const CIPHER_SUITES: &[rustls::SupportedCipherSuite] = {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    &[
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
};

/// The rustls server config: our resolver, ALPN `h2` then `http/1.1`, TLS 1.2 and/or 1.3.
pub fn server_config(
    store: Arc<CertStore>,
    min: TlsVersion,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: CIPHER_SUITES.to_vec(),
        ..rustls::crypto::aws_lc_rs::default_provider()
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    // Our suite order rather than the client's: a client that prefers a weaker suite does not
    // get to choose it (testssl.sh rates this HIGH otherwise).
    cfg.ignore_client_order = true;
    // Stateless session tickets (the session encrypted with a key that lives in this process
    // and rotates every 6 hours), as haproxy's and nginx's defaults, rather than rustls's
    // default session cache: that holds 256 sessions, two per connection, so a few hundred
    // clients push every earlier client out and its next connection pays a full handshake.
    cfg.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}
