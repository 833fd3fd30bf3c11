//! `logagg events`: print stored events in `seq` order, paging through
//! `GET /events` until the end (or `--limit`), then with `--follow` go on
//! with new ones from `GET /subscribe`, resuming after the last `seq`
//! printed, so nothing is skipped or repeated between the two.
//!
//! A table on a terminal (one line per event, the payload shortened); else
//! NDJSON, each line the event exactly as the API answered it (payload
//! bytes included), the format `logagg subscribe` prints. A progress bar
//! goes to stderr for a large export (stdout not a terminal, stderr one).
//!
//! The pattern, `--since`/`--until`, `--source` and `--grep` are `/events`
//! filters, applied by the server through its indexes (`--grep` is its
//! full-text `q`); while following, the server filters the pattern and
//! this command the source.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::read::{Output, ReadArgs, get_json, shorten, thousands};
use super::subscribe::SseParser;
use crate::api::Stats;
use crate::event::{FieldLimits, TopicPattern};

/// Settings of `logagg events`.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Topic or topic pattern (`auth.login`, `auth.*`, `auth.>`); every
    /// topic when absent. The server reads the index of each matching topic.
    pub pattern: Option<String>,

    /// Start after this seq (0: from the first stored event).
    #[arg(long, default_value_t = 0)]
    pub after: u64,

    /// Only events committed at or after this instant: RFC 3339
    /// (`2025-10-25T12:00:00Z`) or an age (`15m`, `2h`, `1d`: that long ago).
    #[arg(long, value_parser = parse_instant)]
    pub since: Option<String>,

    /// Only events committed before this instant (same forms as --since);
    /// not with --follow.
    #[arg(long, value_parser = parse_instant, conflicts_with = "follow")]
    pub until: Option<String>,

    /// Only events from this source.
    #[arg(long)]
    pub source: Option<String>,

    /// Only events whose payload values hold every word of TEXT
    /// (full-text, case-insensitive; `ORD-7` as a phrase, `time*` as a
    /// prefix). The server must index the topics searched (`serve
    /// --search`); not with --follow.
    #[arg(long, value_name = "TEXT", conflicts_with = "follow")]
    pub grep: Option<String>,

    /// Stop after printing this many events.
    #[arg(long)]
    pub limit: Option<u64>,

    /// After the stored events, go on printing new ones as they are
    /// committed (until Ctrl-C or --limit).
    #[arg(long)]
    pub follow: bool,

    /// Events asked for per request (1-10000).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub page_size: u64,

    #[command(flatten)]
    pub read: ReadArgs,
}

/// An instant for the server: RFC 3339 as given, or an age (`15m`) turned
/// into the RFC 3339 instant that long before now.
fn parse_instant(text: &str) -> Result<String, String> {
    if chrono::DateTime::parse_from_rfc3339(text).is_ok() {
        return Ok(text.to_owned());
    }
    let age = humantime::parse_duration(text).map_err(|_| {
        format!("expected an RFC 3339 instant (2025-10-25T12:00:00Z) or an age (15m, 2h, 1d), got {text:?}")
    })?;
    let age = chrono::Duration::from_std(age).map_err(|_| format!("{text:?} is too long ago"))?;
    let at = chrono::Utc::now()
        .checked_sub_signed(age)
        .ok_or_else(|| format!("{text:?} is too long ago"))?;
    Ok(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// Reads a page of at least this many events ahead shows a progress bar.
const PROGRESS_EVENTS_MIN: u64 = 10_000;

/// Longest wait between reconnection attempts while following.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// # Errors
/// For a malformed pattern, a server that cannot be reached or refuses the
/// request, or stdout that cannot be written.
pub async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let pattern = match &args.pattern {
        Some(raw) => Some(
            TopicPattern::parse(raw, &FieldLimits::default())
                .map_err(|reason| anyhow::anyhow!("pattern {raw:?} {reason}"))?,
        ),
        None => None,
    };
    let mut reader = Reader {
        http: args.read.client()?,
        output: args.read.output(),
        stdout: std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock()),
        rows: RowFormat::default(),
        printed: 0,
        cursor: args.after,
        args: &args,
        pattern: pattern.as_ref(),
    };
    reader.stored().await?;
    if args.follow && !reader.done() {
        reader.follow().await?;
    }
    Ok(())
}

/// A page of `GET /events`, each event kept as the bytes the server sent.
#[derive(Deserialize)]
struct Page {
    events: Vec<Box<RawValue>>,
    next_after: Option<u64>,
    #[serde(default)]
    topic_known: Option<bool>,
    #[serde(default)]
    similar_topics: Vec<String>,
    #[serde(default)]
    unsearched_through: Option<u64>,
}

/// The fields of an event this command shows.
#[derive(Deserialize)]
struct Row<'a> {
    seq: u64,
    #[serde(borrow)]
    topic: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    event_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    timestamp: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    source: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

struct Reader<'a, W: Write> {
    args: &'a EventsArgs,
    pattern: Option<&'a TopicPattern>,
    http: reqwest::Client,
    output: Output,
    stdout: W,
    rows: RowFormat,
    printed: u64,
    /// The newest `seq` read (printed or not).
    cursor: u64,
}

impl<W: Write> Reader<'_, W> {
    fn done(&self) -> bool {
        self.args.limit.is_some_and(|limit| self.printed >= limit)
    }

    /// Pages through the stored events after the cursor.
    async fn stored(&mut self) -> anyhow::Result<()> {
        let exact = self
            .pattern
            .and_then(TopicPattern::exact)
            .map(str::to_owned);
        let progress = self.progress().await;
        let mut warned_unsearched = false;
        while !self.done() {
            let mut limit = self.args.page_size;
            if let Some(total) = self.args.limit {
                limit = limit.min(total - self.printed);
            }
            let mut query = vec![
                ("after", self.cursor.to_string()),
                ("limit", limit.to_string()),
            ];
            let filters = [
                ("topic", self.pattern.map(ToString::to_string)),
                ("since", self.args.since.clone()),
                ("until", self.args.until.clone()),
                ("source", self.args.source.clone()),
                ("q", self.args.grep.clone()),
            ];
            query.extend(filters.into_iter().filter_map(|(n, v)| v.map(|v| (n, v))));
            let page: Page = get_json(&self.http, &self.args.read.url, "/events", &query).await?;
            if page.topic_known == Some(false) {
                let similar = if page.similar_topics.is_empty() {
                    String::new()
                } else {
                    format!(" (similar: {})", page.similar_topics.join(", "))
                };
                progress.suspend(|| {
                    eprintln!(
                        "note: topic {:?} has never been published to{similar}",
                        exact.as_deref().unwrap_or_default()
                    );
                });
            }
            if let Some(through) = page.unsearched_through.filter(|_| !warned_unsearched) {
                warned_unsearched = true;
                progress.suspend(|| {
                    eprintln!(
                        "note: events up to seq {through} were stored before their topics were indexed for search (serve --search) and are not searched"
                    );
                });
            }
            let raw: Vec<&str> = page.events.iter().map(|e| e.get()).collect();
            progress.suspend(|| self.print(&raw))?;
            // A short page can still have a cursor past its last event (the
            // server examines a bounded number of rows per page).
            let Some(next) = page.next_after else {
                break;
            };
            self.cursor = self.cursor.max(next);
            progress.set_position(self.cursor);
        }
        progress.finish_and_clear();
        Ok(())
    }

    /// A progress bar on stderr for a large export, else a hidden one.
    async fn progress(&self) -> ProgressBar {
        let export = self.output == Output::Json && !std::io::stdout().is_terminal();
        if !export || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let url = &self.args.read.url;
        let Ok(stats) = get_json::<Stats>(&self.http, url, "/stats", &[]).await else {
            return ProgressBar::hidden(); // The first page will say what is wrong.
        };
        if stats.last_seq.saturating_sub(self.cursor) < PROGRESS_EVENTS_MIN {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(stats.last_seq);
        bar.set_position(self.cursor);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] seq {pos}/{len}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar
    }

    /// Prints the events of `raw` that match, up to the limit, and moves the
    /// cursor past them.
    fn print(&mut self, raw: &[&str]) -> anyhow::Result<()> {
        let mut rows = Vec::with_capacity(raw.len());
        for text in raw {
            if self.done() {
                break;
            }
            let row: Row<'_> = serde_json::from_str(text).with_context(|| {
                format!(
                    "{} answered an event without its fields",
                    self.args.read.url
                )
            })?;
            if row.seq <= self.cursor {
                continue; // Already read; never repeat (a reconnection).
            }
            self.cursor = row.seq;
            if self.pattern.is_none_or(|p| p.matches(&row.topic))
                && self.args.source.as_deref().is_none_or(|s| s == row.source)
            {
                self.printed += 1;
                rows.push((row, *text));
            }
        }
        let text = match self.output {
            Output::Json => {
                let mut text = String::new();
                for (_, raw) in &rows {
                    text.push_str(raw);
                    text.push('\n');
                }
                text
            }
            Output::Table => self.rows.render(rows.iter().map(|(row, _)| row)),
        };
        self.stdout
            .write_all(text.as_bytes())
            .and_then(|()| self.stdout.flush())
            .context("writing to stdout")
    }

    /// Follows new events from `/subscribe`, reconnecting after the cursor
    /// when the stream ends, until the limit or Ctrl-C.
    async fn follow(&mut self) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.follow_once().await {
                Ok(true) => return Ok(()),
                Ok(false) => backoff = Duration::from_millis(100),
                Err(Follow::Fatal(error)) => return Err(error),
                Err(Follow::Retry(error)) => tracing::warn!("{error:#}; reconnecting"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RECONNECT_MAX);
        }
    }

    /// One `/subscribe` connection; `Ok(true)` once the limit is reached,
    /// `Ok(false)` when the server ended the stream.
    async fn follow_once(&mut self) -> Result<bool, Follow> {
        let url = self.args.read.url.endpoint("/subscribe");
        let topic = self
            .pattern
            .map_or_else(|| ">".to_owned(), ToString::to_string);
        let response = self
            .http
            .get(url.clone())
            .query(&[("topic", topic)])
            .header("last-event-id", self.cursor.to_string())
            .header("accept", "text/event-stream")
            .send()
            .await
            .with_context(|| format!("connecting to {url}"))
            .map_err(Follow::Retry)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            let error = anyhow::anyhow!(
                "{url} answered {status}: {}",
                super::client::problem(&body).summary()
            );
            return Err(if status.is_client_error() {
                Follow::Fatal(error)
            } else {
                Follow::Retry(error)
            });
        }
        let mut parser = SseParser::default();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.context("reading the stream").map_err(Follow::Retry)?;
            let mut events: Vec<String> = Vec::new();
            let _: ControlFlow<()> = parser.feed(&chunk, |message| {
                events.push(message.data.to_owned());
                ControlFlow::Continue(())
            });
            let raw: Vec<&str> = events.iter().map(String::as_str).collect();
            self.print(&raw).map_err(Follow::Fatal)?;
            if self.done() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

enum Follow {
    Retry(anyhow::Error),
    Fatal(anyhow::Error),
}

/// Column widths of the event table: they only grow, so the columns of
/// later pages (and of followed events) line up with the first.
#[derive(Debug, Default)]
struct RowFormat {
    /// SEQ, TIMESTAMP, TOPIC, SOURCE, EVENT ID.
    widths: [usize; 5],
    header_printed: bool,
}

/// Widest a shortened column gets.
const TOPIC_WIDTH_MAX: usize = 32;
const SOURCE_WIDTH_MAX: usize = 20;
const EVENT_ID_WIDTH_MAX: usize = 24;
const PAYLOAD_WIDTH_MAX: usize = 120;

impl RowFormat {
    /// The lines of `rows`, after the header when none was printed yet.
    fn render<'r, 'a: 'r>(&mut self, rows: impl Iterator<Item = &'r Row<'a>>) -> String {
        let header = ["SEQ", "TIMESTAMP", "TOPIC", "SOURCE", "EVENT ID"];
        let cells: Vec<[String; 6]> = rows
            .map(|row| {
                [
                    thousands(row.seq),
                    row.timestamp.to_string(),
                    shorten(&row.topic, TOPIC_WIDTH_MAX),
                    shorten(&row.source, SOURCE_WIDTH_MAX),
                    shorten(&row.event_id, EVENT_ID_WIDTH_MAX),
                    shorten(row.payload.get(), PAYLOAD_WIDTH_MAX),
                ]
            })
            .collect();
        for (column, width) in self.widths.iter_mut().enumerate() {
            *width = (*width).max(header[column].len());
            for row in &cells {
                *width = (*width).max(row[column].chars().count());
            }
        }
        let mut text = String::new();
        if !self.header_printed && !cells.is_empty() {
            self.header_printed = true;
            let mut line = header.map(str::to_owned).to_vec();
            line.push("PAYLOAD".to_owned());
            self.line(&mut text, &line);
        }
        for row in &cells {
            self.line(&mut text, row);
        }
        text
    }

    /// One line: SEQ right-aligned, the rest left-aligned, the payload last.
    fn line(&self, text: &mut String, cells: &[String]) {
        for (column, cell) in cells.iter().enumerate() {
            let Some(width) = self.widths.get(column) else {
                text.push_str(cell);
                break;
            };
            let pad = " ".repeat(width - cell.chars().count());
            if column == 0 {
                text.push_str(&pad);
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&pad);
            }
            text.push_str("  ");
        }
        let end = text.trim_end().len();
        text.truncate(end);
        text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(text: &str) -> Row<'_> {
        serde_json::from_str(text).expect("a row")
    }

    #[test]
    fn event_rows_align_and_keep_their_widths_across_pages() {
        let mut format = RowFormat::default();
        let first = row(
            r#"{"seq":1,"topic":"auth.login","event_id":"a1","timestamp":"2026-01-01T00:00:00Z","source":"svc","payload":{"user":"ana"},"received_at":"x"}"#,
        );
        let second = row(
            r#"{"seq":1234,"topic":"b","event_id":"b2","timestamp":"t","source":"s","payload":{}}"#,
        );
        let text = format.render([first, second].iter());
        assert_eq!(
            text,
            "  SEQ  TIMESTAMP             TOPIC       SOURCE  EVENT ID  PAYLOAD\n    \
                 1  2026-01-01T00:00:00Z  auth.login  svc     a1        {\"user\":\"ana\"}\n\
             1,234  t                     b           s       b2        {}\n"
        );
        let later = row(
            r#"{"seq":5,"topic":"c","event_id":"c","timestamp":"t","source":"s","payload":{}}"#,
        );
        assert_eq!(
            format.render([later].iter()),
            "    5  t                     c           s       c         {}\n"
        );
    }
}
