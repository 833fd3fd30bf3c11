//! TLS for the commands that talk to a server: `https://` URLs are
//! verified against the system's root certificates plus the CA given with
//! `--ca-cert`, and a certificate that does not verify is said plainly.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

/// The TLS flag every client command shares.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// PEM file of CA certificates to trust for an https:// URL, besides
    /// the system's (e.g. the CA, or the self-signed certificate, of a
    /// server started with --tls-cert).
    #[arg(long, env = "LOGAGG_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

impl TlsArgs {
    /// An HTTP client builder that trusts the system's roots and
    /// `--ca-cert`.
    ///
    /// # Errors
    /// When `--ca-cert` cannot be read or holds no certificate.
    pub fn client_builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        let builder = reqwest::Client::builder();
        let Some(path) = &self.ca_cert else {
            return Ok(builder);
        };
        let pem = std::fs::read(path)
            .with_context(|| format!("reading --ca-cert {} (check the path)", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
            format!(
                "--ca-cert {}: not a PEM file of certificates",
                path.display()
            )
        })?;
        anyhow::ensure!(
            !certificates.is_empty(),
            "--ca-cert {}: no CERTIFICATE block in it",
            path.display()
        );
        Ok(certificates
            .into_iter()
            .fold(builder, reqwest::ClientBuilder::add_root_certificate))
    }
}

/// A sentence for a request that failed because the server's certificate
/// did not verify, or `None` for any other failure.
pub fn untrusted_certificate(error: &reqwest::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(mut error) = cause {
        // The TLS stream reports rustls' error inside io::Errors, whose
        // source() skips what they wrap.
        loop {
            if let Some(tokio_rustls::rustls::Error::InvalidCertificate(why)) = error.downcast_ref()
            {
                return Some(format!(
                    "the server's TLS certificate is not trusted ({why:?}); pass the CA that \
                     signed it with --ca-cert FILE, or check the URL's host name"
                ));
            }
            match error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
            {
                Some(inner) => error = inner,
                None => break,
            }
        }
        cause = error.source();
    }
    None
}
