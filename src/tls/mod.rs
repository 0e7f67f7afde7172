//! TLS with rustls: listeners and the admin port serve it from PEM files that are reloaded when
//! they change ([`live`], [`server`]), and upstreams are reached over `https://`, with mutual TLS
//! when asked ([`client`]).
//!
//! One crypto provider, ring, is compiled in and installed once at start ([`install_provider`]);
//! every config here is built with it explicitly. PEM is read with rustls' own `pki_types` reader.

pub mod client;
pub mod live;
pub mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::config::TlsFiles;

pub use live::LiveCert;

/// Why a certificate, key or CA file cannot be used. Messages name the config key and the file,
/// never any key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} {path}: cannot read")]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key} {path}: {reason}")]
    Invalid {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("no root certificates found on this system; name the CA to trust with {hint}")]
    NoSystemRoots { hint: &'static str },
    #[error("{0}")]
    ServerName(String),
    #[error("cannot set up TLS")]
    Setup(#[source] rustls::Error),
}

/// The config keys that name a certificate and its key, for messages.
#[derive(Debug, Clone, Copy)]
pub struct PairKeys {
    pub cert: &'static str,
    pub key: &'static str,
}

/// A listener's or the admin port's own certificate.
pub const SERVING_KEYS: PairKeys = PairKeys {
    cert: "tls_cert",
    key: "tls_key",
};

/// The client certificate a listener shows its upstream.
pub const UPSTREAM_CLIENT_KEYS: PairKeys = PairKeys {
    cert: "upstream_client_cert",
    key: "upstream_client_key",
};

/// Installs ring as the process's crypto provider. Called at the start of every command that
/// uses TLS; later calls change nothing.
pub fn install_provider() {
    // An error means a provider is installed already; only ring is compiled in, so it is ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The process's crypto provider (ring), installed on first use.
pub fn provider() -> Arc<CryptoProvider> {
    install_provider();
    CryptoProvider::get_default()
        .cloned()
        // Installed just above; `get_default` only fails before any install.
        .expect("a crypto provider is installed")
}

/// A certificate file and its key file as read from disk, to fingerprint and then parse.
pub(crate) struct PairBytes {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl PairBytes {
    pub(crate) fn read(files: &TlsFiles, keys: PairKeys) -> Result<PairBytes, TlsError> {
        Ok(PairBytes {
            cert: read(keys.cert, &files.cert)?,
            key: read(keys.key, &files.key)?,
        })
    }

    pub(crate) fn fingerprint(&self) -> crate::watch::Fingerprint {
        crate::watch::Fingerprint::of([self.cert.as_slice(), self.key.as_slice()])
    }

    /// Parses the chain and the key and checks that they belong together.
    pub(crate) fn certified_key(
        &self,
        files: &TlsFiles,
        keys: PairKeys,
    ) -> Result<CertifiedKey, TlsError> {
        let chain = certificates(keys.cert, &files.cert, &self.cert)?;
        let invalid_key = |reason: String| TlsError::Invalid {
            key: keys.key,
            path: files.key.clone(),
            reason,
        };
        // The PEM reader's own messages may quote the file's lines: say what was wrong instead.
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| {
            invalid_key(match e {
                pem::Error::NoItemsFound => {
                    "holds no private key (PEM: PKCS#8, PKCS#1 or SEC1)".into()
                }
                _ => "is not a readable PEM private key".into(),
            })
        })?;
        CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => invalid_key(format!(
                "does not match the certificate in {}",
                files.cert.display()
            )),
            rustls::Error::InvalidCertificate(e) => TlsError::Invalid {
                key: keys.cert,
                path: files.cert.clone(),
                reason: format!("the first certificate cannot be parsed: {e}"),
            },
            e => invalid_key(format!("cannot be used: {e}")),
        })
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file, in order; at least one.
fn certificates(
    key: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        key,
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("is not a readable PEM file: {e}")))?;
    if chain.is_empty() {
        return Err(invalid(
            "holds no certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(chain)
}

/// The certificates of a CA bundle (PEM) as trust roots.
pub(crate) fn read_roots(
    key: &'static str,
    path: &Path,
) -> Result<rustls::RootCertStore, TlsError> {
    let certs = certificates(key, path, &read(key, path)?)?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::Invalid {
            key,
            path: path.to_owned(),
            reason: "holds no usable CA certificate".into(),
        });
    }
    Ok(roots)
}

/// The system's trust roots (the files OpenSSL would use, `$SSL_CERT_FILE` included).
/// `hint` names the setting that gives a CA instead, for the error.
pub(crate) fn system_roots(hint: &'static str) -> Result<rustls::RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!(error = %e, "skipped a system root certificate source");
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(TlsError::NoSystemRoots { hint });
    }
    Ok(roots)
}

/// Lowercase hex of the SHA-256 of a certificate, the way operators compare certificates
/// (`openssl x509 -noout -fingerprint -sha256`, without the colons).
pub(crate) fn cert_sha256(der: &[u8]) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(der);
    let mut out = String::with_capacity(64);
    for b in digest {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}
