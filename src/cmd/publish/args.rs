//! The command line of `logagg publish`: one clap struct, every flag with a
//! `LOGAGG_*` environment variable, values checked as they are parsed.

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgGroup, Args};

use super::generate::{self, IdKind};
use crate::cmd::client::{BaseUrl, TokenArgs};
use crate::cmd::tls::TlsArgs;
use crate::config::parse_duration;

/// The slowest `--rate`: one event every 1000 seconds.
const RATE_MIN: f64 = 0.001;

/// Settings of `logagg publish`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("input").required(true).args(["files", "generate"])))]
pub struct PublishArgs {
    /// NDJSON files to publish, one event per line (blank lines are
    /// skipped); `-` reads standard input.
    #[arg(value_name = "FILE", conflicts_with = "generate")]
    pub files: Vec<PathBuf>,

    /// Base URL of the server.
    #[arg(long, env = "LOGAGG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: BaseUrl,

    /// Events per request. A request is also cut before its body passes
    /// 8 MiB.
    #[arg(long, env = "LOGAGG_PUBLISH_BATCH_SIZE", default_value = "100")]
    pub batch_size: NonZeroUsize,

    /// Requests in flight at once (and kept-alive connections).
    #[arg(long, env = "LOGAGG_PUBLISH_CONCURRENCY", default_value = "8")]
    pub concurrency: NonZeroUsize,

    /// Send at most this many events per second, evenly spaced. Without
    /// it, as fast as the server acknowledges.
    #[arg(long, env = "LOGAGG_PUBLISH_RATE", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Attempts per request, the first included, before giving up on it.
    /// Connection errors, timeouts and 5xx answers are retried; 4xx never.
    #[arg(long, env = "LOGAGG_PUBLISH_MAX_ATTEMPTS", default_value = "8")]
    pub max_attempts: NonZeroU32,

    /// Longest wait for one attempt's complete answer (e.g. 30s, 500ms).
    #[arg(long, env = "LOGAGG_PUBLISH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Backoff before the first retry, at most: the wait is drawn at random
    /// up to a ceiling that starts here and doubles per retry ("full
    /// jitter"), on top of any Retry-After the server asks for.
    #[arg(long, env = "LOGAGG_PUBLISH_BACKOFF_BASE", default_value = "100ms", value_parser = parse_duration)]
    pub backoff_base: Duration,

    /// The backoff ceiling stops doubling here.
    #[arg(long, env = "LOGAGG_PUBLISH_BACKOFF_MAX", default_value = "10s", value_parser = parse_duration)]
    pub backoff_max: Duration,

    /// Print the summary on stdout as one JSON object instead of text.
    #[arg(long, env = "LOGAGG_PUBLISH_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,

    /// Read the server's /stats before and after the run, and fail unless
    /// its received, unique_processed and duplicate_dropped moved by
    /// exactly what the acknowledgements say. Only exact when this publisher
    /// is the only one writing to the server. (When an attempt went
    /// unanswered, e.g. timed out, the server may have stored it anyway, so
    /// the counters may then run ahead by up to those events.)
    #[arg(long, env = "LOGAGG_PUBLISH_VERIFY", value_parser = BoolishValueParser::new())]
    pub verify: bool,

    /// Send N synthetic events instead of reading input. They are built in
    /// memory before sending starts (about --payload-bytes + 170 bytes
    /// each); at most 10,000,000.
    #[arg(long, env = "LOGAGG_PUBLISH_GENERATE", value_name = "N", value_parser = parse_generate, help_heading = "Synthetic load")]
    pub generate: Option<u64>,

    /// Topics the synthetic events spread over, at random: load.0, load.1, …
    #[arg(
        long,
        env = "LOGAGG_PUBLISH_TOPICS",
        default_value = "4",
        help_heading = "Synthetic load"
    )]
    pub topics: NonZeroUsize,

    /// Size of each synthetic payload's JSON text, in bytes (at least about
    /// 20).
    #[arg(
        long,
        env = "LOGAGG_PUBLISH_PAYLOAD_BYTES",
        default_value_t = 64,
        help_heading = "Synthetic load"
    )]
    pub payload_bytes: usize,

    /// Fill each synthetic payload with words (from a fixed vocabulary of
    /// 4,096, a few very common and most rare, as in log messages) instead
    /// of random characters: a load for full-text search (`serve
    /// --search`).
    #[arg(
        long,
        env = "LOGAGG_PUBLISH_PAYLOAD_WORDS",
        help_heading = "Synthetic load"
    )]
    pub payload_words: bool,

    /// Share of the N sends that re-send an earlier event byte for byte, as
    /// a publisher retrying after a lost acknowledgement would: exactly
    /// round(N × rate) of them, so N − round(N × rate) events are unique.
    #[arg(long, env = "LOGAGG_PUBLISH_DUPLICATE_RATE", default_value_t = 0.0, value_parser = parse_share, help_heading = "Synthetic load")]
    pub duplicate_rate: f64,

    /// Event ids: uuid7 (time-ordered) or uuid4 (random).
    #[arg(long, env = "LOGAGG_PUBLISH_IDS", value_enum, default_value_t = IdKind::Uuid7, help_heading = "Synthetic load")]
    pub ids: IdKind,

    /// Seed of the synthetic load. The same seed and settings give the same
    /// events byte for byte (timestamps then start at 2025-01-01T00:00:00Z
    /// instead of now). Without it, a random seed, printed in the summary.
    #[arg(long, env = "LOGAGG_PUBLISH_SEED", help_heading = "Synthetic load")]
    pub seed: Option<u64>,

    /// The token needs the publish scope (and read, for --verify).
    #[command(flatten)]
    pub auth: TokenArgs,

    #[command(flatten)]
    pub tls: TlsArgs,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if (RATE_MIN..=f64::MAX).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a number of events per second (at least {RATE_MIN})"
        )),
    }
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(share) if (0.0..1.0).contains(&share) => Ok(share),
        _ => Err(format!(
            "{text:?} is not a share from 0 up to (not including) 1"
        )),
    }
}

fn parse_generate(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(n) if (1..=generate::EVENTS_MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not an event count from 1 to {}",
            generate::EVENTS_MAX
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1.5").is_err(), "a unit is required");
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn rates_and_shares_are_checked() {
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("1e-30").is_err());
        assert_eq!(parse_share("0.2"), Ok(0.2));
        assert!(parse_share("1").is_err());
        assert!(parse_generate("0").is_err());
        assert!(parse_generate("10000001").is_err());
    }
}
