//! `logagg subscribe`: follow a topic pattern and print each event as one
//! JSON line on stdout.
//!
//! It reads the server's `/subscribe` Server-Sent Events stream and, when the
//! connection drops or the server restarts, reconnects with backoff and
//! resumes after the last `seq` it printed (`Last-Event-ID`), so within one
//! run nothing is missed or repeated. With `--cursor-file` that `seq` also
//! survives the process: it is written (atomically, by rename) after each
//! chunk of printed events, so a restarted subscriber resumes where the last
//! one stopped. After SIGTERM/SIGINT the cursor matches the output exactly; a
//! SIGKILL between printing and saving can repeat the last few lines on
//! restart, which downstream consumers can drop by `seq`.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

use super::ShutdownSignal;
use super::client::{self, BaseUrl, TokenArgs};
use super::tls::{TlsArgs, untrusted_certificate};
use crate::config::parse_duration;

/// Settings of `logagg subscribe`.
#[derive(Debug, Clone, Args)]
pub struct SubscribeArgs {
    /// Topic pattern: an exact topic, `*` for one dot-separated token, `>`
    /// as the last token for one or more (`auth.*`, `auth.>`, `>`).
    pub pattern: String,

    /// Start after this seq (0: from the first stored event), or `now`
    /// for only events committed from now on, as the API's `from=now`.
    /// Ignored when the cursor file holds a seq.
    #[arg(long, env = "LOGAGG_FROM", default_value = "0")]
    pub from: Start,

    /// Base URL of the server.
    #[arg(long, env = "LOGAGG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: BaseUrl,

    /// Keep the last printed seq in this file and resume from it on start.
    #[arg(long, env = "LOGAGG_CURSOR_FILE")]
    pub cursor_file: Option<PathBuf>,

    /// Exit after printing this many events.
    #[arg(long, env = "LOGAGG_COUNT")]
    pub count: Option<u64>,

    /// Longest wait between reconnection attempts (e.g. 5s, 500ms).
    #[arg(long, env = "LOGAGG_RECONNECT_MAX", default_value = "5s", value_parser = parse_duration)]
    pub reconnect_max: Duration,

    #[command(flatten)]
    pub auth: TokenArgs,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Where a subscription starts: after a `seq`, or after the newest event
/// committed when it starts (`now`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    After(u64),
    Now,
}

impl std::str::FromStr for Start {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "now" => Ok(Self::Now),
            seq => seq
                .parse()
                .map(Self::After)
                .map_err(|_| format!("{text:?} is neither a seq number nor \"now\"")),
        }
    }
}

/// First wait before reconnecting; doubles up to `--reconnect-max`.
const RECONNECT_MIN: Duration = Duration::from_millis(100);

/// Follows the pattern until the count is reached or a signal arrives.
///
/// # Errors
/// When the server rejects the subscription (a 4xx, e.g. a malformed
/// pattern), or stdout or the cursor file cannot be written.
pub async fn run(args: SubscribeArgs) -> anyhow::Result<()> {
    let saved = match &args.cursor_file {
        Some(path) => read_cursor(path)?,
        None => None,
    };
    let headers = args.auth.headers()?;
    let sent_token = !headers.is_empty();
    let client = args.tls.client(&args.url, |builder| {
        builder
            .connect_timeout(Duration::from_secs(5))
            .default_headers(headers.clone())
    })?;
    let mut cursor = match (saved, args.from) {
        (Some(seq), _) | (None, Start::After(seq)) => seq,
        (None, Start::Now) => newest_seq(&client, &args.url).await?,
    };
    let mut subscriber = Subscriber {
        args: &args,
        sent_token,
        client,
        printed: 0,
    };
    let signal = ShutdownSignal::install().context("installing signal handlers")?;
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            signal.recv().await;
            stop.cancel();
        }
    });
    let mut backoff = RECONNECT_MIN;
    loop {
        let session = subscriber.follow(&mut cursor);
        let outcome = tokio::select! {
            outcome = session => outcome,
            () = stop.cancelled() => return Ok(()),
        };
        match outcome {
            Ok(Session::Done) => return Ok(()),
            Ok(Session::Dropped { received_any }) => {
                if received_any {
                    backoff = RECONNECT_MIN;
                }
                tracing::info!(cursor, retry_in = ?backoff, "stream ended; reconnecting");
            }
            Err(Failure::Fatal(error)) => return Err(error),
            Err(Failure::Retry(error)) => {
                tracing::warn!(cursor, retry_in = ?backoff, "{error:#}");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return Ok(()),
        }
        backoff = (backoff * 2).min(args.reconnect_max.max(RECONNECT_MIN));
    }
}

/// The newest committed `seq`, where `--from now` starts: resolved once,
/// so that a reconnection resumes after it instead of from a later "now"
/// (which would skip what was committed while disconnected).
async fn newest_seq(http: &reqwest::Client, url: &BaseUrl) -> anyhow::Result<u64> {
    let endpoint = url.endpoint("/stats");
    let response =
        http.get(endpoint.clone()).send().await.with_context(|| {
            format!("reaching {endpoint} for --from now (is the server running?)")
        })?;
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!(
            "{endpoint} answered {status}: {}",
            client::problem(&body).summary()
        );
    }
    serde_json::from_slice::<crate::api::Stats>(&body)
        .map(|stats| stats.last_seq)
        .map_err(|error| {
            anyhow::anyhow!(
                "{endpoint} did not answer as logagg does ({error}); {}",
                client::CHECK_URL
            )
        })
}

enum Session {
    /// `--count` events printed.
    Done,
    /// The server closed the stream (e.g. it is shutting down).
    Dropped { received_any: bool },
}

enum Failure {
    /// Worth reconnecting: network errors, 5xx, 503.
    Retry(anyhow::Error),
    /// Not worth it: the server rejected the request, or local output failed.
    Fatal(anyhow::Error),
}

/// One run's connection to the server, and what it has printed.
struct Subscriber<'a> {
    args: &'a SubscribeArgs,
    client: reqwest::Client,
    /// Whether requests carry a bearer token, for the message of a 401.
    sent_token: bool,
    printed: u64,
}

impl Subscriber<'_> {
    /// One connection: prints events after `cursor` until the stream ends.
    async fn follow(&mut self, cursor: &mut u64) -> Result<Session, Failure> {
        let url = self.args.url.endpoint("/subscribe");
        let response = self
            .client
            .get(url.clone())
            .query(&[("topic", self.args.pattern.as_str())])
            .header("last-event-id", cursor.to_string())
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|error| match untrusted_certificate(&error) {
                // Retrying cannot make a certificate trusted.
                Some(untrusted) => Failure::Fatal(anyhow::anyhow!("{url}: {untrusted}")),
                None => Failure::Retry(
                    anyhow::Error::new(error).context(format!("connecting to {url}")),
                ),
            })?;
        let status = response.status();
        if let Some(denied) = client::denied(status, response.headers(), self.sent_token) {
            return Err(Failure::Fatal(anyhow::anyhow!("{url}: {denied}")));
        }
        // Something that is not logagg (a web page, another service):
        // retrying cannot help, and its page is not worth printing.
        let foreign = if status.is_success() {
            client::unexpected_body(response.headers(), "text/event-stream")
        } else {
            client::foreign_answer(response.headers())
        };
        if let Some(what) = foreign {
            return Err(Failure::Fatal(anyhow::anyhow!(
                "{url} answered {status} with {what}, {}",
                client::CHECK_URL
            )));
        }
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            let problem = client::problem(&body);
            let error = anyhow::anyhow!("{url} answered {status}: {}", problem.summary());
            return Err(if status.is_client_error() {
                Failure::Fatal(error)
            } else {
                Failure::Retry(error)
            });
        }
        tracing::debug!(cursor = *cursor, "subscribed");
        let mut parser = SseParser::default();
        let mut stream = response.bytes_stream();
        let mut received_any = false;
        // Flushed once per network chunk, not per line: at tens of thousands
        // of events a second, a write call per line is most of the cost.
        let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .context("reading the stream")
                .map_err(Failure::Retry)?;
            let mut advanced = false;
            let flow = parser.feed(&chunk, |message| {
                if message.event == Some("expired") {
                    // Retention deleted events after the cursor: say so,
                    // then go on with what is stored.
                    eprintln!(
                        "note: the server had already expired events after seq {}: {}",
                        *cursor, message.data
                    );
                    return ControlFlow::Continue(());
                }
                let Some(seq) = message.id.and_then(|id| id.parse::<u64>().ok()) else {
                    return ControlFlow::Continue(());
                };
                if seq <= *cursor {
                    return ControlFlow::Continue(()); // Already printed; never repeat.
                }
                if let Err(error) = stdout
                    .write_all(message.data.as_bytes())
                    .and_then(|()| stdout.write_all(b"\n"))
                {
                    return ControlFlow::Break(Err(error));
                }
                *cursor = seq;
                self.printed += 1;
                advanced = true;
                if self.args.count.is_some_and(|count| self.printed >= count) {
                    return ControlFlow::Break(Ok(()));
                }
                ControlFlow::Continue(())
            });
            received_any |= advanced;
            if advanced {
                stdout
                    .flush()
                    .context("writing to stdout")
                    .map_err(Failure::Fatal)?;
                if let Some(path) = &self.args.cursor_file {
                    write_cursor(path, *cursor).map_err(Failure::Fatal)?;
                }
            }
            match flow {
                ControlFlow::Continue(()) => {}
                ControlFlow::Break(Ok(())) => return Ok(Session::Done),
                ControlFlow::Break(Err(error)) => {
                    return Err(Failure::Fatal(
                        anyhow::Error::new(error).context("writing to stdout"),
                    ));
                }
            }
        }
        Ok(Session::Dropped { received_any })
    }
}

fn read_cursor(path: &Path) -> anyhow::Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            text.trim().parse().map(Some).with_context(|| {
                format!("cursor file {} does not hold a seq number", path.display())
            })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading cursor file {}", path.display())),
    }
}

/// Replaces the cursor file atomically: a crash leaves the old or the new
/// seq, never a torn one.
fn write_cursor(path: &Path, seq: u64) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, format!("{seq}\n"))
        .and_then(|()| std::fs::rename(&temporary, path))
        .with_context(|| format!("writing cursor file {}", path.display()))
}

/// One dispatched SSE message, borrowed from the parser until the next one.
#[derive(Debug, PartialEq, Eq)]
pub struct SseMessage<'a> {
    pub id: Option<&'a str>,
    /// The message's `event:` type, when it has one (the server's
    /// `expired` notice); events themselves have none.
    pub event: Option<&'a str>,
    pub data: &'a str,
}

/// An incremental parser for the `text/event-stream` format: feed it bytes
/// as they arrive and it hands each completed message to a callback.
/// Comments (keep-alives) and fields other than `id`, `event` and `data`
/// are skipped; lines end in LF or CRLF.
///
/// It runs once per delivered event in every subscriber, so it neither
/// allocates per message nor copies a line more than once: lines are found
/// with `memchr`, and only the unfinished end of a chunk is kept. That is why
/// it is ours rather than a crate's: the kept SSE parsers (such as
/// `eventsource-stream`) build an owned event with a `String` per field for
/// every message, and with 100 subscribers on one machine the parsing was
/// the largest cost of the whole fan-out benchmark (docs/performance.md).
#[derive(Debug, Default)]
pub struct SseParser {
    /// The unfinished last line of the bytes fed so far.
    partial: Vec<u8>,
    /// The last `id:` seen (`has_id`): as in browsers' `lastEventId`, it
    /// stays until the server sends another.
    id: String,
    has_id: bool,
    /// The message's `data:` lines, joined by `\n`.
    data: Vec<u8>,
    has_data: bool,
    /// The message's `event:` type, reset after each message.
    event: String,
    has_event: bool,
}

impl SseParser {
    /// Feeds `bytes`, calling `on_message` for each message they complete.
    /// Stops at the first `Break` and returns it; the rest of `bytes` is
    /// dropped, so stop only when done with the stream.
    pub fn feed<B>(
        &mut self,
        mut bytes: &[u8],
        mut on_message: impl FnMut(SseMessage<'_>) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            let (line, rest) = (&bytes[..end], &bytes[end + 1..]);
            bytes = rest;
            let flow = if self.partial.is_empty() {
                self.line(line, &mut on_message)
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                let flow = self.line(&whole, &mut on_message);
                whole.clear();
                self.partial = whole; // Keeps its capacity.
                flow
            };
            flow?;
        }
        self.partial.extend_from_slice(bytes);
        ControlFlow::Continue(())
    }

    fn line<B>(
        &mut self,
        line: &[u8],
        on_message: &mut impl FnMut(SseMessage<'_>) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return self.dispatch(on_message);
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(0) => return ControlFlow::Continue(()), // A comment.
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
                self.has_event = true;
            }
            // As in browsers, an id containing NUL is ignored.
            b"id" if !value.contains(&0) => {
                self.id.clear();
                self.id.push_str(&String::from_utf8_lossy(value));
                self.has_id = true;
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    /// A blank line ends a message; one without data is not dispatched.
    fn dispatch<B>(
        &mut self,
        on_message: &mut impl FnMut(SseMessage<'_>) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        if !self.has_data {
            self.has_event = false;
            return ControlFlow::Continue(());
        }
        if std::str::from_utf8(&self.data).is_err() {
            // The stream is UTF-8 by definition; decode as browsers do.
            self.data = String::from_utf8_lossy(&self.data)
                .into_owned()
                .into_bytes();
        }
        let flow = on_message(SseMessage {
            id: self.has_id.then_some(self.id.as_str()),
            event: self.has_event.then_some(self.event.as_str()),
            data: std::str::from_utf8(&self.data).unwrap_or_default(),
        });
        self.data.clear();
        self.has_data = false;
        self.has_event = false;
        flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds chunks one by one; the messages as `(id, data)`.
    fn parse(chunks: &[&[u8]]) -> Vec<(Option<String>, String)> {
        let mut parser = SseParser::default();
        let mut messages = Vec::new();
        for chunk in chunks {
            let flow: ControlFlow<()> = parser.feed(chunk, |message| {
                messages.push((message.id.map(str::to_owned), message.data.to_owned()));
                ControlFlow::Continue(())
            });
            assert!(flow.is_continue());
        }
        messages
    }

    #[test]
    fn parser_handles_split_chunks_comments_and_crlf() {
        let messages = parse(&[
            b": keep-alive\n\nid: 7\nda",
            b"ta: {\"a\":1}\r\n\r\nid: 8\ndata: x\n",
            b"\n",
        ]);
        assert_eq!(
            messages,
            [
                (Some("7".into()), "{\"a\":1}".into()),
                (Some("8".into()), "x".into()),
            ]
        );
    }

    #[test]
    fn parser_joins_data_lines_and_skips_other_fields() {
        let messages =
            parse(&[b"event: x\ndata\ndata: a\ndata:b\nretry: 5\n\nid: 9\n\ndata: c\n\n"]);
        // `data` with no colon is an empty line of data; an id alone sends
        // nothing, but the id stays for the messages after it.
        assert_eq!(
            messages,
            [(None, "\na\nb".into()), (Some("9".into()), "c".into())]
        );
    }

    #[test]
    fn the_event_type_is_kept_for_its_own_message_only() {
        let mut parser = SseParser::default();
        let mut seen = Vec::new();
        let flow: ControlFlow<()> = parser.feed(
            b"event: expired\ndata: {\"after\":2}\n\nid: 11\ndata: e\n\nevent: x\n\ndata: f\n\n",
            |message| {
                seen.push((message.event.map(str::to_owned), message.data.to_owned()));
                ControlFlow::Continue(())
            },
        );
        assert!(flow.is_continue());
        assert_eq!(
            seen,
            [
                (Some("expired".to_owned()), r#"{"after":2}"#.to_owned()),
                (None, "e".to_owned()),
                (None, "f".to_owned()),
            ]
        );
    }

    #[test]
    fn parser_splits_anywhere_and_replaces_invalid_utf8() {
        let stream = b"id: 1\ndata: \xff\xfe ok\n\nid: 2\ndata: {}\n\n";
        let whole = parse(&[stream]);
        assert_eq!(
            whole,
            [
                (Some("1".into()), "\u{fffd}\u{fffd} ok".into()),
                (Some("2".into()), "{}".into())
            ]
        );
        for cut in 1..stream.len() {
            assert_eq!(
                parse(&[&stream[..cut], &stream[cut..]]),
                whole,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn parser_stops_at_break() {
        let mut parser = SseParser::default();
        let mut seen = 0;
        let flow = parser.feed(b"data: a\n\ndata: b\n\n", |_| {
            seen += 1;
            ControlFlow::Break("done")
        });
        assert_eq!((flow, seen), (ControlFlow::Break("done"), 1));
    }

    #[test]
    fn cursor_file_round_trips() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cursor");
        assert_eq!(read_cursor(&path).expect("absent is fine"), None);
        write_cursor(&path, 42).expect("write");
        assert_eq!(read_cursor(&path).expect("read"), Some(42));
        std::fs::write(&path, "garbage").expect("write");
        assert!(read_cursor(&path).is_err());
    }
}
