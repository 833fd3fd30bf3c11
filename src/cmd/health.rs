//! `logagg health`: exit 0 when a server answers `GET /health` with 200
//! (also when it says it is degraded, as on a full disk, which it prints).
//! Meant for container health checks (the image has no curl).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::client::{self, BaseUrl, TokenArgs};
use super::tls::{TlsArgs, untrusted_certificate};
use crate::api::Health;
use crate::config::parse_duration;

/// Settings of `logagg health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Base URL of the server [default: from --listen, else
    /// http://127.0.0.1:8080].
    #[arg(long, env = "LOGAGG_URL")]
    pub url: Option<BaseUrl>,

    /// The server's listen address, used when --url is not given (a wildcard
    /// address becomes loopback). Shares `serve`'s variable, so a container
    /// that moves the port keeps a working health check.
    #[arg(long, env = "LOGAGG_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Give up after this long (e.g. 5s, 500ms).
    #[arg(long, env = "LOGAGG_HEALTH_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    #[command(flatten)]
    pub auth: TokenArgs,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// # Errors
/// When the server cannot be reached or does not answer 200.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let url = base_url(&args).endpoint("/health");
    let headers = args.auth.headers()?;
    let sent_token = !headers.is_empty();
    let client = args.tls.client(&base_url(&args), |builder| {
        builder
            .timeout(args.timeout)
            .default_headers(headers.clone())
    })?;
    let response = match client.get(url.clone()).send().await {
        Ok(response) => response,
        Err(error) => match untrusted_certificate(&error) {
            Some(untrusted) => anyhow::bail!("unhealthy: {url}: {untrusted}"),
            None => {
                return Err(error)
                    .with_context(|| format!("reaching {url} (is the server running?)"));
            }
        },
    };
    let status = response.status();
    if let Some(denied) = client::denied(status, response.headers(), sent_token) {
        // Up, but this command may not ask (`serve --health-access read`).
        anyhow::bail!("{url}: {denied}")
    }
    let foreign = client::foreign_answer(response.headers());
    let body = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    if !status.is_success() {
        match foreign {
            Some(what) => {
                anyhow::bail!("{url} answered {status} with {what}, {}", client::CHECK_URL)
            }
            None => anyhow::bail!(
                "unhealthy: {url} answered {status}: {}",
                client::problem(&body).summary()
            ),
        }
    }
    // A 200 that is not logagg's health document is some other service.
    let Ok(health) = serde_json::from_slice::<Health>(&body) else {
        let what = foreign.unwrap_or_else(|| "a body that is not logagg's".to_owned());
        anyhow::bail!("{url} answered {status} with {what}, {}", client::CHECK_URL);
    };
    // A degraded server (a full disk) still serves reads: healthy for a
    // container check, but said, so it shows in `docker inspect`.
    match health.detail.filter(|_| health.status == "degraded") {
        Some(detail) => println!("degraded: {url} answered {status}: {detail}"),
        None => println!("healthy: {url} answered {status}"),
    }
    Ok(())
}

/// `--url`, else the loopback form of `--listen`, else the default port.
fn base_url(args: &HealthArgs) -> BaseUrl {
    if let Some(url) = &args.url {
        return url.clone();
    }
    BaseUrl::local(
        args.listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(url: Option<&str>, listen: Option<&str>) -> String {
        base_url(&HealthArgs {
            url: url.map(|u| u.parse().expect("test URL")),
            listen: listen.map(|l| l.parse().expect("test address")),
            timeout: Duration::from_secs(1),
            auth: TokenArgs {
                token: None,
                token_file: None,
            },
            tls: TlsArgs::default(),
        })
        .to_string()
    }

    #[test]
    fn the_url_comes_from_url_then_listen_then_the_default() {
        assert_eq!(url(None, None), "http://127.0.0.1:8080");
        assert_eq!(url(None, Some("0.0.0.0:9000")), "http://127.0.0.1:9000");
        assert_eq!(url(None, Some("[::]:9000")), "http://[::1]:9000");
        assert_eq!(url(None, Some("10.1.2.3:7")), "http://10.1.2.3:7");
        assert_eq!(url(Some("http://h:1"), Some("0.0.0.0:9000")), "http://h:1");
    }
}
