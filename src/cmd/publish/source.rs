//! Where the events come from, cut into requests.
//!
//! A [`Source`] yields [`Request`]s: NDJSON bodies of at most `--batch-size`
//! events, each knowing where its events came from (`file:line`, or their
//! place in the generated load) so that an error can point at the input.
//! NDJSON inputs are read on a thread of their own while sending goes on,
//! never more than a few requests ahead; the generated load is prepared in
//! full before the clock starts.
//!
//! Lines are checked to be JSON here, so a broken line is reported with its
//! `file:line` before it is sent; whether an event is *valid* is the
//! server's call, and a rejection names the event's line too.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use tokio::sync::mpsc;

/// A request is cut before its body would pass this size, whatever the batch
/// size: half the server's default body limit, so large events still fit.
const BODY_BYTES_TARGET: usize = 8 * 1024 * 1024;

/// One `POST /publish`: an NDJSON body and where its events came from.
#[derive(Debug)]
pub(crate) struct Request {
    /// One event per line, each line ending in `\n`.
    pub body: Bytes,
    /// Position of the request's first event among all events of the run
    /// (0-based, in send order).
    pub first_event: u64,
    /// Events in the body.
    pub events: usize,
    pub origin: Origin,
}

/// Where a request's events came from.
#[derive(Debug)]
pub(crate) enum Origin {
    /// The synthetic load of `--generate`.
    Generated,
    /// Lines of one NDJSON input: its name (`<stdin>` for `-`) and the
    /// 1-based line number of each event.
    Lines { input: Arc<str>, lines: Vec<u64> },
}

impl Request {
    /// "event 17 (events.ndjson:18)" for the request's `index`-th event.
    pub(crate) fn describe_event(&self, index: usize) -> String {
        let position = self.first_event + index as u64;
        match &self.origin {
            Origin::Generated => format!("event {position} (generated)"),
            Origin::Lines { input, lines } => match lines.get(index) {
                Some(line) => format!("event {position} ({input}:{line})"),
                None => format!("event {position} ({input})"),
            },
        }
    }

    /// "events 0-99 (events.ndjson:1-104)": the whole request.
    pub(crate) fn describe(&self) -> String {
        if self.events == 1 {
            return self.describe_event(0);
        }
        let last = self.first_event + self.events as u64 - 1;
        let place = match &self.origin {
            Origin::Generated => "generated".to_owned(),
            Origin::Lines { input, lines } => match (lines.first(), lines.last()) {
                (Some(first), Some(last)) => format!("{input}:{first}-{last}"),
                _ => input.to_string(),
            },
        };
        format!("events {}-{last} ({place})", self.first_event)
    }
}

/// Gathers event lines into requests.
#[derive(Debug)]
pub(crate) struct Batcher {
    events_max: usize,
    /// The input's name, or `None` for generated events.
    input: Option<Arc<str>>,
    body: Vec<u8>,
    lines: Vec<u64>,
    events: usize,
    next_event: u64,
}

impl Batcher {
    /// A batcher whose first event is the run's `first_event`-th.
    pub(crate) fn new(events_max: usize, input: Option<Arc<str>>, first_event: u64) -> Self {
        Self {
            events_max,
            input,
            body: Vec::new(),
            lines: Vec::new(),
            events: 0,
            next_event: first_event,
        }
    }

    /// Adds one event (`line_number` is its input line, if any); returns a
    /// request when one is complete.
    pub(crate) fn push(&mut self, line: &str, line_number: Option<u64>) -> Option<Request> {
        // Cutting before an event that would overflow the body leaves one
        // event behind, so with `events_max > 1` the cut below cannot also
        // happen; with `events_max == 1` the batch is always empty here.
        let mut complete = None;
        if self.events > 0 && self.body.len() + line.len() + 1 > BODY_BYTES_TARGET {
            complete = self.take();
        }
        self.body.extend_from_slice(line.as_bytes());
        self.body.push(b'\n');
        self.lines.extend(line_number);
        self.events += 1;
        if self.events >= self.events_max {
            debug_assert!(complete.is_none(), "at most one request per push");
            complete = self.take();
        }
        complete
    }

    /// The request holding what is left, if anything.
    pub(crate) fn finish(mut self) -> (Option<Request>, u64) {
        let request = self.take();
        (request, self.next_event)
    }

    fn take(&mut self) -> Option<Request> {
        if self.events == 0 {
            return None;
        }
        let origin = match &self.input {
            None => Origin::Generated,
            Some(input) => Origin::Lines {
                input: Arc::clone(input),
                lines: std::mem::take(&mut self.lines),
            },
        };
        let request = Request {
            body: Bytes::from(std::mem::take(&mut self.body)),
            first_event: self.next_event,
            events: self.events,
            origin,
        };
        self.next_event += self.events as u64;
        self.events = 0;
        Some(request)
    }
}

/// The requests of a run, in send order.
pub(crate) enum Source {
    /// Built before sending started.
    Prepared(std::vec::IntoIter<Request>),
    /// Read by the input thread while sending goes on; an `Err` is the
    /// input's first problem and its last item.
    Reading(mpsc::Receiver<anyhow::Result<Request>>),
}

impl Source {
    /// Starts reading `inputs` (`-` is stdin) on a thread of its own,
    /// staying at most `ahead` requests ahead of the sending.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub(crate) fn read_ndjson(
        paths: &[PathBuf],
        events_max: usize,
        ahead: usize,
    ) -> anyhow::Result<Self> {
        // Every file is opened now, so a wrong path fails before anything
        // is sent.
        let inputs = paths
            .iter()
            .map(|path| Input::open(path))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (sender, receiver) = mpsc::channel(ahead.max(1));
        // A plain thread rather than `spawn_blocking`: one blocked on a
        // silent stdin must not keep the runtime from shutting down.
        std::thread::Builder::new()
            .name("logagg-publish-input".to_owned())
            .spawn(move || {
                if let Err(error) = read_inputs(inputs, events_max, &sender) {
                    // A closed channel means sending stopped; nobody to tell.
                    let _ = sender.blocking_send(Err(error));
                }
            })
            .context("starting the input reader thread")?;
        Ok(Self::Reading(receiver))
    }

    /// The next request, `None` once the input is exhausted.
    pub(crate) async fn next(&mut self) -> Option<anyhow::Result<Request>> {
        match self {
            Self::Prepared(requests) => requests.next().map(Ok),
            Self::Reading(receiver) => receiver.recv().await,
        }
    }

    /// Events still to come, when known in advance.
    pub(crate) fn remaining_events(&self) -> Option<u64> {
        match self {
            Self::Prepared(requests) => {
                Some(requests.as_slice().iter().map(|r| r.events as u64).sum())
            }
            Self::Reading(_) => None,
        }
    }
}

/// One NDJSON input.
enum Input {
    Stdin,
    File { name: Arc<str>, file: File },
}

impl Input {
    fn open(path: &Path) -> anyhow::Result<Self> {
        if path.as_os_str() == "-" {
            return Ok(Self::Stdin);
        }
        let file = File::open(path)
            .with_context(|| format!("opening {} (check the path)", path.display()))?;
        Ok(Self::File {
            name: path.display().to_string().into(),
            file,
        })
    }
}

/// Reads every input in turn into requests for `sender`. Returns early,
/// without error, when the receiving side has stopped.
fn read_inputs(
    inputs: Vec<Input>,
    events_max: usize,
    sender: &mpsc::Sender<anyhow::Result<Request>>,
) -> anyhow::Result<()> {
    let mut next_event = 0;
    for input in inputs {
        let (name, mut reader): (Arc<str>, Box<dyn BufRead>) = match input {
            Input::Stdin => ("<stdin>".into(), Box::new(std::io::stdin().lock())),
            Input::File { name, file } => (name, Box::new(BufReader::with_capacity(1 << 16, file))),
        };
        let mut batcher = Batcher::new(events_max, Some(Arc::clone(&name)), next_event);
        let mut buffer = Vec::new();
        let mut number = 0;
        loop {
            buffer.clear();
            let read = reader
                .read_until(b'\n', &mut buffer)
                .with_context(|| format!("reading {name}"))?;
            if read == 0 {
                break;
            }
            number += 1;
            let line =
                event_line(&buffer).map_err(|problem| anyhow!("{name}:{number}: {problem}"))?;
            let Some(line) = line else { continue };
            if let Some(request) = batcher.push(line, Some(number))
                && sender.blocking_send(Ok(request)).is_err()
            {
                return Ok(());
            }
        }
        let (rest, next) = batcher.finish();
        next_event = next;
        if let Some(request) = rest
            && sender.blocking_send(Ok(request)).is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

/// The event on one input line, `None` for a blank line.
///
/// # Errors
/// When the line is not UTF-8 or not JSON.
fn event_line(raw: &[u8]) -> Result<Option<&str>, String> {
    let line = std::str::from_utf8(raw)
        .map_err(|e| format!("not UTF-8 ({e})"))?
        .trim();
    if line.is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<serde::de::IgnoredAny>(line)
        .map_err(|e| format!("not valid JSON ({e}); fix the line and publish again"))?;
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_into_requests_of_batch_size() {
        let mut batcher = Batcher::new(2, Some("in".into()), 10);
        assert!(batcher.push("{}", Some(1)).is_none());
        let first = batcher.push("[]", Some(3)).expect("a full batch");
        assert_eq!(&first.body[..], b"{}\n[]\n");
        assert_eq!(first.first_event, 10);
        assert_eq!(first.describe(), "events 10-11 (in:1-3)");
        assert_eq!(first.describe_event(1), "event 11 (in:3)");
        assert!(batcher.push("1", Some(4)).is_none());
        let (rest, next) = batcher.finish();
        let rest = rest.expect("the rest");
        assert_eq!((rest.first_event, rest.events, next), (12, 1, 13));
        assert_eq!(rest.describe(), "event 12 (in:4)");
    }

    #[test]
    fn a_request_is_cut_before_its_body_grows_too_large() {
        let big = "x".repeat(BODY_BYTES_TARGET / 2);
        let mut batcher = Batcher::new(100, None, 0);
        assert!(batcher.push(&big, None).is_none());
        let first = batcher.push(&big, None).expect("cut before the second");
        assert_eq!(first.events, 1);
        assert_eq!(first.describe(), "event 0 (generated)");
        let (rest, _) = batcher.finish();
        assert_eq!(rest.expect("second").first_event, 1);
    }

    #[test]
    fn blank_lines_are_skipped_and_broken_ones_named() {
        assert_eq!(event_line(b"  \r\n"), Ok(None));
        assert_eq!(event_line(b" {\"a\":1}\r\n"), Ok(Some("{\"a\":1}")));
        let broken = event_line(b"{\"a\":").expect_err("not JSON");
        assert!(broken.starts_with("not valid JSON"), "{broken}");
        assert!(
            event_line(b"\xff")
                .expect_err("not UTF-8")
                .starts_with("not UTF-8")
        );
    }
}
