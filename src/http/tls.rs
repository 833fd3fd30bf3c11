//! HTTPS: the server's rustls configuration, read from PEM files
//! (`--tls-cert`, `--tls-key`), with the aws-lc-rs crypto provider.
//!
//! Only the handshake is here; `http::listener` runs it on each accepted
//! connection (within the header timeout) before serving HTTP/1.1 over it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the certificate chain {} (a PEM file of CERTIFICATE blocks)", .path.display())]
    Certificates {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{} holds no certificate (expected PEM CERTIFICATE blocks)", .0.display())]
    NoCertificate(PathBuf),
    #[error("reading the private key {} (a PEM file with one PRIVATE KEY block)", .path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error(
        "the certificate and key do not make a TLS configuration (does the key belong to the certificate?)"
    )]
    Config(#[source] rustls::Error),
}

/// The acceptor for `cert` (a PEM chain, the server's own certificate
/// first) and `key` (its PEM private key): TLS 1.2 and 1.3, HTTP/1.1 by
/// ALPN, no client certificates.
///
/// # Errors
/// When a file cannot be read or parsed, or the key does not fit.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certificates = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|source| TlsError::Certificates {
            path: cert.to_path_buf(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_path_buf(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
