//! TLS on the listener (`--tls-cert`, `--tls-key`): HTTPS and WSS through
//! tokio-rustls, with ring as the one crypto provider (no aws-lc-rs, no C
//! build). PEM files are read with rustls-pki-types' own parser.
//!
//! The acceptor speaks HTTP/1.1 only (ALPN `http/1.1`): the WebSocket
//! upgrade is HTTP/1.1. The handshake runs inside `--handshake-timeout`
//! (tokio-rustls has no timeout of its own); see [`super::Server::run`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up; each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {path}: {reason}; --tls-cert wants a PEM file with the certificate chain")]
    Cert { path: PathBuf, reason: String },
    #[error("no certificate in {0}; --tls-cert wants a PEM file with `-----BEGIN CERTIFICATE-----` blocks")]
    NoCert(PathBuf),
    #[error("cannot read the TLS private key {path}: {reason}; --tls-key wants a PEM file with one PKCS#8, PKCS#1 or SEC1 private key")]
    Key { path: PathBuf, reason: String },
    #[error("the TLS key {key} does not go with the certificate {cert} ({reason}); give the key the certificate was issued for")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// Makes ring the process's crypto provider (once; later calls are no-ops).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The acceptor for `cert` and `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    install_provider();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.to_path_buf()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mismatch = |e: rustls::Error| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason: e.to_string(),
    };
    // `with_single_cert` checks that the key is a usable signing key and
    // that it matches the certificate's public key.
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
