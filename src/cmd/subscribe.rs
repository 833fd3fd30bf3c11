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
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;

/// Settings of `logagg subscribe`.
#[derive(Debug, Clone, Args)]
pub struct SubscribeArgs {
    /// Topic pattern: an exact topic, `*` for one dot-separated token, `>`
    /// as the last token for one or more (`auth.*`, `auth.>`, `>`).
    pub pattern: String,

    /// Start after this seq (0: from the first stored event). Ignored when
    /// the cursor file holds a seq.
    #[arg(long, env = "LOGAGG_FROM", default_value_t = 0)]
    pub from: u64,

    /// Base URL of the server.
    #[arg(long, env = "LOGAGG_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// Keep the last printed seq in this file and resume from it on start.
    #[arg(long, env = "LOGAGG_CURSOR_FILE")]
    pub cursor_file: Option<PathBuf>,

    /// Exit after printing this many events.
    #[arg(long, env = "LOGAGG_COUNT")]
    pub count: Option<u64>,

    /// Longest wait between reconnection attempts, in milliseconds.
    #[arg(long, env = "LOGAGG_RECONNECT_MAX_MS", default_value_t = 5_000)]
    pub reconnect_max_ms: u64,
}

/// First wait before reconnecting; doubles up to `--reconnect-max-ms`.
const RECONNECT_MIN: Duration = Duration::from_millis(100);

/// Follows the pattern until the count is reached or a signal arrives.
///
/// # Errors
/// When the server rejects the subscription (a 4xx, e.g. a malformed
/// pattern), or stdout or the cursor file cannot be written.
pub async fn run(args: SubscribeArgs) -> anyhow::Result<()> {
    let mut cursor = match &args.cursor_file {
        Some(path) => read_cursor(path)?.unwrap_or(args.from),
        None => args.from,
    };
    let mut follower = Follower {
        args: &args,
        client: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?,
        printed: 0,
    };
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            wait_for_signal().await;
            stop.cancel();
        }
    });
    let mut backoff = RECONNECT_MIN;
    loop {
        let session = follower.follow(&mut cursor);
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
        backoff = (backoff * 2).min(Duration::from_millis(args.reconnect_max_ms.max(1)));
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
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

struct Follower<'a> {
    args: &'a SubscribeArgs,
    client: reqwest::Client,
    printed: u64,
}

impl Follower<'_> {
    /// One connection: prints events after `cursor` until the stream ends.
    async fn follow(&mut self, cursor: &mut u64) -> Result<Session, Failure> {
        let url = format!("{}/subscribe", self.args.url.trim_end_matches('/'));
        let response = self
            .client
            .get(&url)
            .query(&[("topic", self.args.pattern.as_str())])
            .header("last-event-id", cursor.to_string())
            .header("accept", "text/event-stream")
            .send()
            .await
            .with_context(|| format!("connecting to {url}"))
            .map_err(Failure::Retry)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let detail = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|p| p["detail"].as_str().map(str::to_owned))
                .unwrap_or(body);
            let error = anyhow::anyhow!("{url} answered {status}: {detail}");
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
        let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout());
        while let Some(chunk) = stream.next().await {
            let chunk = chunk
                .context("reading the stream")
                .map_err(Failure::Retry)?;
            let mut advanced = false;
            for message in parser.feed(&chunk) {
                let Some(seq) = message.id.and_then(|id| id.parse::<u64>().ok()) else {
                    continue;
                };
                if seq <= *cursor {
                    continue; // Already printed; never repeat.
                }
                writeln!(stdout, "{}", message.data)
                    .context("writing to stdout")
                    .map_err(Failure::Fatal)?;
                *cursor = seq;
                self.printed += 1;
                received_any = true;
                advanced = true;
                if self.args.count.is_some_and(|count| self.printed >= count) {
                    break;
                }
            }
            if advanced {
                stdout
                    .flush()
                    .context("writing to stdout")
                    .map_err(Failure::Fatal)?;
                if let Some(path) = &self.args.cursor_file {
                    write_cursor(path, *cursor).map_err(Failure::Fatal)?;
                }
            }
            if self.args.count.is_some_and(|count| self.printed >= count) {
                return Ok(Session::Done);
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

/// One dispatched SSE message.
#[derive(Debug, PartialEq, Eq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub data: String,
}

/// An incremental parser for the `text/event-stream` format: feed it bytes
/// as they arrive, get whole messages back. Comments (keep-alives) and
/// fields other than `id` and `data` are skipped.
#[derive(Debug, Default)]
pub struct SseParser {
    pending: Vec<u8>,
    id: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Adds `bytes` and returns the messages they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        self.pending.extend_from_slice(bytes);
        let mut messages = Vec::new();
        let mut consumed = 0;
        while let Some(end) = self.pending[consumed..].iter().position(|b| *b == b'\n') {
            let raw = &self.pending[consumed..consumed + end];
            consumed += end + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = String::from_utf8_lossy(raw);
            if line.is_empty() {
                if !self.data.is_empty() {
                    let data = if self.data.len() == 1 {
                        self.data.pop().unwrap_or_default()
                    } else {
                        self.data.join("\n")
                    };
                    self.data.clear();
                    messages.push(SseMessage {
                        id: self.id.take(),
                        data,
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => self.id = Some(value.to_owned()),
                "data" => self.data.push(value.to_owned()),
                _ => {}
            }
        }
        self.pending.drain(..consumed);
        messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_handles_split_chunks_comments_and_crlf() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b": keep-alive\n\nid: 7\nda").is_empty());
        let messages = parser.feed(b"ta: {\"a\":1}\r\n\r\nid: 8\ndata: x\n\n");
        assert_eq!(
            messages,
            [
                SseMessage {
                    id: Some("7".into()),
                    data: "{\"a\":1}".into()
                },
                SseMessage {
                    id: Some("8".into()),
                    data: "x".into()
                },
            ]
        );
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
