//! `logagg health`: exit 0 when a server answers `GET /health` with 200.
//! Meant for container health checks (the image has no curl).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// Settings of `logagg health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Base URL of the server [default: from --listen, else
    /// http://127.0.0.1:8080].
    #[arg(long, env = "LOGAGG_URL")]
    pub url: Option<String>,

    /// The server's listen address, used when --url is not given (a wildcard
    /// address becomes loopback). Shares `serve`'s variable, so a container
    /// that moves the port keeps a working health check.
    #[arg(long, env = "LOGAGG_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Give up after this many seconds.
    #[arg(long, env = "LOGAGG_HEALTH_TIMEOUT_SECS", default_value_t = 5)]
    pub timeout_secs: u64,
}

/// # Errors
/// When the server cannot be reached or does not answer 200.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let url = format!("{}/health", base_url(&args).trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()
        .context("building the HTTP client")?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("reaching {url} (is the server running?)"))?;
    let status = response.status();
    if status.is_success() {
        println!("healthy: {url} answered {status}");
        Ok(())
    } else {
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("unhealthy: {url} answered {status}: {}", body.trim())
    }
}

/// `--url`, else the loopback form of `--listen`, else the default port.
fn base_url(args: &HealthArgs) -> String {
    if let Some(url) = &args.url {
        return url.clone();
    }
    let Some(listen) = args.listen else {
        return "http://127.0.0.1:8080".to_owned();
    };
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(url: Option<&str>, listen: Option<&str>) -> String {
        base_url(&HealthArgs {
            url: url.map(str::to_owned),
            listen: listen.map(|l| l.parse().expect("test address")),
            timeout_secs: 1,
        })
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
