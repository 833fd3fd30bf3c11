//! TLS for the commands that talk to a server: `https://` URLs are
//! verified against the system's root certificates plus the CA given with
//! `--ca-cert`, and a certificate that does not verify is said plainly.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::client::BaseUrl;

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
    /// An HTTP client for the server at `url`, set up by `configure`:
    /// for an `https://` URL it trusts the system's roots and `--ca-cert`
    /// (or `--ca-cert` alone where the system has no roots, as in the
    /// container image); for `http://` it loads no roots at all.
    ///
    /// # Errors
    /// When `--ca-cert` cannot be read or holds no certificate, or the
    /// client cannot be built (an https URL, no system roots, no
    /// `--ca-cert`).
    pub fn client(
        &self,
        url: &BaseUrl,
        configure: impl Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> anyhow::Result<reqwest::Client> {
        let extra = self.ca_certificates()?;
        if url.endpoint("/").scheme() != "https" {
            // TLS goes unused; loading the system's roots could only fail.
            return configure(reqwest::Client::builder().tls_certs_only(extra))
                .build()
                .context("building the HTTP client");
        }
        let with_system = extra.iter().cloned().fold(
            reqwest::Client::builder(),
            reqwest::ClientBuilder::add_root_certificate,
        );
        match configure(with_system).build() {
            Ok(client) => Ok(client),
            Err(error) if !extra.is_empty() => {
                tracing::debug!(
                    error = &error as &dyn std::error::Error,
                    "the system's root certificates are unusable; trusting --ca-cert alone"
                );
                configure(reqwest::Client::builder().tls_certs_only(extra))
                    .build()
                    .context("building the HTTP client")
            }
            Err(error) => Err(error).context(
                "building the HTTP client (this system has no usable root certificates; \
                 pass the server's CA with --ca-cert FILE)",
            ),
        }
    }

    /// The certificates of `--ca-cert`, none without it.
    fn ca_certificates(&self) -> anyhow::Result<Vec<reqwest::Certificate>> {
        let Some(path) = &self.ca_cert else {
            return Ok(Vec::new());
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
        Ok(certificates)
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
