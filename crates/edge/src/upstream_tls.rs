//! TLS to edge-mode backends: one rustls client config per `[edge.backends.NAME.tls]`, its
//! trusted certificates re-read when their file changes.
//!
//! The main use is the edge in front of the cakes, whose `tls` containers present a
//! self-signed certificate: the file then lists exactly that certificate, and it is its own
//! trust anchor. webpki accepts such a certificate when it is not marked as a CA; one that is
//! (what `openssl req -x509` makes by default) webpki refuses as an end entity whatever the
//! roots, so the `Verifier` accepts it too, but only when it is byte for byte one of the listed
//! certificates (its dates have been checked by then, and its name is checked after).

use crate::certificates::{stamp, Stamp};
use crate::config::{Edge, UpstreamTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Why a backend's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    /// The CA file is missing, unreadable, not PEM, or lists no usable certificate.
    #[error("edge.backends.{backend}.tls.ca: {path}: {message}")]
    Ca {
        /// The backend whose settings name the file.
        backend: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the settings or the server name.
    #[error("edge.backends.{backend}.tls: {message}")]
    Settings {
        /// The backend.
        backend: String,
        /// What rustls said.
        message: String,
    },
}

/// What a connection to a TLS backend needs: the client config and the name to verify.
#[derive(Debug, Clone)]
pub struct Client {
    /// TLS 1.2+, ALPN `http/1.1`, verifying against the backend's CA file.
    pub config: Arc<rustls::ClientConfig>,
    /// SNI and the name the certificate must be valid for.
    pub server_name: ServerName<'static>,
}

#[derive(Debug)]
struct Entry {
    client: Client,
    stamp: Stamp,
    /// A backend using these settings, for the errors of later re-reads.
    backend: String,
}

/// The client configs of every TLS backend of the config in force, shared by all threads.
///
/// Looked up only when a new upstream connection is made (and by health checks), never per
/// request, so the lock is not on the request path.
#[derive(Debug, Default)]
pub struct UpstreamTlsStore {
    entries: RwLock<HashMap<UpstreamTls, Arc<Entry>>>,
}

impl UpstreamTlsStore {
    /// Loads the settings of every TLS backend of `edge`, keeping already loaded ones whose
    /// file has not changed. On error nothing changes, so that a config reload can be refused
    /// as a whole. Settings only the old config used stay until [`retain`](Self::retain), for
    /// the requests still routed by it.
    pub fn prepare(&self, edge: &Edge) -> Result<(), UpstreamTlsError> {
        let current = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut next = current.clone();
        for (name, backend) in &edge.backends {
            let Some(tls) = &backend.tls else { continue };
            match next.get(tls) {
                Some(e) if e.stamp == stamp(Path::new(&tls.ca)) => {}
                _ => {
                    next.insert(tls.clone(), Arc::new(load(name, tls)?));
                }
            }
        }
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    /// Forgets the settings that no backend of `edge` uses (all of them without `[edge]`).
    pub fn retain(&self, edge: Option<&Edge>) {
        let used = |tls: &UpstreamTls| {
            edge.is_some_and(|e| e.backends.values().any(|b| b.tls.as_ref() == Some(tls)))
        };
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|tls, _| used(tls));
    }

    /// Re-reads the CA files that changed. A file that cannot be used any more keeps its old
    /// certificates in use; the errors are returned for the log.
    pub fn reload_if_changed(&self) -> (usize, Vec<UpstreamTlsError>) {
        let current = self
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (mut reloaded, mut errors) = (0, Vec::new());
        for (tls, entry) in &current {
            if entry.stamp == stamp(Path::new(&tls.ca)) {
                continue;
            }
            match load(&entry.backend, tls) {
                Ok(new) => {
                    reloaded += 1;
                    self.entries
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(tls.clone(), Arc::new(new));
                }
                Err(e) => {
                    // Not retried every interval with the same complaint: only once the file
                    // changes again.
                    let kept = Entry {
                        client: entry.client.clone(),
                        stamp: stamp(Path::new(&tls.ca)),
                        backend: entry.backend.clone(),
                    };
                    self.entries
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(tls.clone(), Arc::new(kept));
                    errors.push(e);
                }
            }
        }
        (reloaded, errors)
    }

    /// The client for these settings, if [`prepare`](Self::prepare) loaded them.
    pub fn client(&self, tls: &UpstreamTls) -> Option<Client> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(tls)
            .map(|e| e.client.clone())
    }
}

fn load(backend: &str, tls: &UpstreamTls) -> Result<Entry, UpstreamTlsError> {
    let path = Path::new(&tls.ca);
    // Taken before reading, so that a write racing the read causes another re-read.
    let stamp = stamp(path);
    let ca_err = |message: String| UpstreamTlsError::Ca {
        backend: backend.to_owned(),
        path: path.to_owned(),
        message,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| ca_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| ca_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(ca_err("no CERTIFICATE in PEM file".into()));
    }
    let mut roots = RootCertStore::empty();
    for (i, c) in certs.iter().enumerate() {
        roots
            .add(c.clone())
            .map_err(|e| ca_err(format!("certificate {}: {e}", i + 1)))?;
    }
    let settings_err = |message: String| UpstreamTlsError::Settings {
        backend: backend.to_owned(),
        message,
    };
    let server_name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| settings_err(format!("server_name {:?}: {e}", tls.server_name)))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| settings_err(e.to_string()))?;
    let verifier = Arc::new(Verifier {
        webpki,
        pinned: certs,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| settings_err(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Entry {
        client: Client {
            config: Arc::new(config),
            server_name,
        },
        stamp,
        backend: backend.to_owned(),
    })
}

/// webpki's verification against the listed certificates, plus exact-match trust in a listed
/// self-signed certificate that carries the CA flag (see the module documentation).
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let error = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        // webpki checks the dates before the CA flag, so this error means the dates are fine.
        let ca_as_end_entity = matches!(
            &error,
            rustls::Error::InvalidCertificate(CertificateError::Other(o))
                if matches!(o.0.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity))
        );
        if ca_as_end_entity
            && self
                .pinned
                .iter()
                .any(|p| p.as_ref() == end_entity.as_ref())
        {
            verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        Err(error)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
