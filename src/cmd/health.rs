//! `logagg health`: exit 0 when a server answers `GET /health` with 200.
//! Meant for container health checks (the image has no curl).

use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// Settings of `logagg health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Base URL of the server.
    #[arg(long, env = "LOGAGG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Give up after this many seconds.
    #[arg(long, env = "LOGAGG_HEALTH_TIMEOUT_SECS", default_value_t = 5)]
    pub timeout_secs: u64,
}

/// # Errors
/// When the server cannot be reached or does not answer 200.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let url = format!("{}/health", args.url.trim_end_matches('/'));
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
