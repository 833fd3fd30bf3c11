//! `logagg export`: the stored events as NDJSON on stdout, one event per
//! line exactly as `logagg publish` reads it (`topic`, `event_id`,
//! `timestamp`, `source`, `payload`), so that publishing the output into
//! another server copies the events, and publishing it again stores nothing
//! new: the keys are the same, so every copy is a duplicate.
//!
//! It pages `GET /events` in `seq` order, the server filtering by topic
//! pattern and by `received_at` (`--since`, `--until`: the server's own
//! clock, as retention uses), writing each page before it asks for the
//! next, so memory stays at one page whatever the store holds; on a
//! terminal, stderr shows a spinner with the count so far. Events the
//! server had already expired are reported on stderr, never silently
//! skipped.

use std::io::Write;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::client::{self, BaseUrl, TokenArgs};
use super::tls::TlsArgs;
use crate::event::{FieldLimits, TopicPattern};

/// Events per page asked of the server (its most).
const PAGE_EVENTS: usize = 10_000;

/// Settings of `logagg export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Only topics this pattern matches (`auth.*`, `auth.>`, an exact
    /// topic); every topic without it.
    #[arg(long, env = "LOGAGG_EXPORT_TOPIC", value_parser = parse_pattern)]
    pub topic: Option<String>,

    /// Only events received at or after this time (RFC 3339, e.g.
    /// 2026-11-30T00:00:00Z).
    #[arg(long, env = "LOGAGG_EXPORT_SINCE", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,

    /// Only events received before this time (RFC 3339).
    #[arg(long, env = "LOGAGG_EXPORT_UNTIL", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,

    /// Base URL of the server.
    #[arg(long, env = "LOGAGG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: BaseUrl,

    /// The token needs the read scope.
    #[command(flatten)]
    pub auth: TokenArgs,

    #[command(flatten)]
    pub tls: TlsArgs,
}

fn parse_pattern(text: &str) -> Result<String, String> {
    TopicPattern::parse(text, &FieldLimits::default())
        .map(|_| text.trim().to_owned())
        .map_err(|reason| format!("pattern {text:?} {reason}; e.g. auth.*, auth.>"))
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|time| time.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time ({e}); e.g. 2026-11-30T00:00:00Z"))
}

/// One page of `GET /events`, as much of it as export needs.
#[derive(Deserialize)]
struct Page {
    events: Vec<Stored>,
    next_after: Option<u64>,
    #[serde(default)]
    expired_through: Option<u64>,
}

/// A stored event: what publish takes, plus `seq`.
#[derive(Deserialize)]
struct Stored {
    seq: u64,
    topic: String,
    event_id: String,
    timestamp: String,
    source: String,
    payload: Box<RawValue>,
}

/// One line of the output: the event as it was published.
#[derive(Serialize)]
struct Exported<'a> {
    topic: &'a str,
    event_id: &'a str,
    timestamp: &'a str,
    source: &'a str,
    payload: &'a RawValue,
}

impl Stored {
    fn exported(&self) -> Exported<'_> {
        Exported {
            topic: &self.topic,
            event_id: &self.event_id,
            timestamp: &self.timestamp,
            source: &self.source,
            payload: &self.payload,
        }
    }
}

/// # Errors
/// When the server cannot be read or answers with an error, or stdout
/// cannot be written.
pub async fn run(args: ExportArgs) -> anyhow::Result<()> {
    if let (Some(since), Some(until)) = (args.since, args.until)
        && since >= until
    {
        anyhow::bail!("--since ({since}) must be before --until ({until})");
    }
    let headers = args.auth.headers()?;
    let sent_token = !headers.is_empty();
    let http = args.tls.client(&args.url, |builder| {
        builder.default_headers(headers.clone())
    })?;
    let url = args.url.endpoint("/events");
    let mut stdout = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let (mut after, mut written, mut told_expired) = (0_u64, 0_u64, 0_u64);
    // Hidden unless stderr is a terminal.
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} events exported, {msg}")
            .expect("the template is valid"),
    );
    loop {
        let mut query = vec![
            ("after", after.to_string()),
            ("limit", PAGE_EVENTS.to_string()),
        ];
        if let Some(topic) = &args.topic {
            query.push(("topic", topic.clone()));
        }
        for (name, time) in [("since", args.since), ("until", args.until)] {
            if let Some(time) = time {
                query.push((name, time.to_rfc3339_opts(SecondsFormat::Millis, true)));
            }
        }
        let response = http
            .get(url.clone())
            .query(&query)
            .send()
            .await
            .with_context(|| format!("reading {url} (check --url)"))?;
        let status = response.status();
        if let Some(denied) = client::denied(status, response.headers(), sent_token) {
            anyhow::bail!("{url}: {denied}");
        }
        let body = response.bytes().await.context("reading a page")?;
        if !status.is_success() {
            anyhow::bail!(
                "{url} answered {status}: {}",
                client::problem(&body).summary()
            );
        }
        let page: Page = serde_json::from_slice(&body).context("reading a page of events")?;
        if let Some(expired) = page.expired_through.filter(|&e| e > told_expired) {
            progress.suspend(|| {
                eprintln!(
                    "note: events with seq {}..={expired} had expired on the server before this export; they are not in it",
                    after + 1
                );
            });
            told_expired = expired;
        }
        for stored in &page.events {
            serde_json::to_writer(&mut stdout, &stored.exported()).context("writing to stdout")?;
            stdout.write_all(b"\n").context("writing to stdout")?;
            written += 1;
            after = stored.seq;
        }
        stdout.flush().context("writing to stdout")?;
        progress.set_position(written);
        progress.set_message(format!("through seq {after}"));
        match page.next_after {
            Some(next) => after = next,
            None => break,
        }
    }
    progress.finish_and_clear();
    eprintln!("exported {written} events (through seq {after})");
    Ok(())
}
