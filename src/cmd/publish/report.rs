//! What a run tells its user: the running [`Tally`], the progress shown while
//! it runs, and the [`Summary`] at the end (text, or one JSON object).
//!
//! Progress goes to stderr: a bar when stderr is a terminal, otherwise a
//! plain line every few seconds. The summary goes to stdout.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::sender::Delivery;
use crate::api::Receipt;

/// How often the bar is redrawn.
pub(crate) const PROGRESS_TICK: Duration = Duration::from_millis(250);

/// The longest latency the summary tells apart: an hour, in microseconds.
const LATENCY_MICROS_MAX: u64 = 3_600_000_000;

/// How often a plain progress line is printed when stderr is not a terminal.
const PLAIN_LINE_EVERY: Duration = Duration::from_secs(5);

/// Running totals, updated as requests finish.
#[derive(Debug)]
pub(crate) struct Tally {
    pub requests: u64,
    /// Events handed to the sender (each counted once, however many tries).
    pub sent: u64,
    /// Events the server acknowledged, with its receipts summed.
    pub acked: Receipt,
    /// Attempts after the first, over all requests.
    pub retries: u64,
    /// Events of requests that failed for good.
    pub failed: u64,
    /// See [`Delivery::unanswered_events`].
    pub unanswered: u64,
    /// One sample per acknowledged request, first send to 200, in
    /// microseconds: a fixed-size histogram (three significant digits), so
    /// a run of millions of requests does not keep every sample.
    pub latencies: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            requests: 0,
            sent: 0,
            acked: Receipt::default(),
            retries: 0,
            failed: 0,
            unanswered: 0,
            // 1 µs to an hour at three significant digits (~350 KB). The
            // range is fixed: `saturating_record` clamps before it would
            // resize, so an auto-resizing histogram would clamp everything
            // to its initial tiny range.
            latencies: Histogram::new_with_bounds(1, LATENCY_MICROS_MAX, 3)
                .expect("1 µs to an hour at 3 significant digits is a valid histogram"),
        }
    }
}

impl Tally {
    /// Adds one acknowledged request's latency, clamped into the
    /// histogram's range.
    fn record_latency(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latencies.saturating_record(micros);
    }

    pub(crate) fn dispatched(&mut self, events: usize) {
        self.requests += 1;
        self.sent += events as u64;
    }

    pub(crate) fn record(&mut self, delivery: &Delivery) {
        self.retries += u64::from(delivery.attempts - 1);
        self.unanswered += delivery.unanswered_events;
        match &delivery.outcome {
            Ok(acked) => {
                self.acked.add(&acked.receipt);
                self.record_latency(acked.latency);
            }
            Err(_) => self.failed += delivery.request.events as u64,
        }
    }
}

/// The server's counters moving as the acknowledgements say, or not.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Verification {
    pub ok: bool,
    /// How far the server's `received`, `unique_processed` and
    /// `duplicate_dropped` moved during the run.
    pub received: u64,
    pub unique_processed: u64,
    pub duplicate_dropped: u64,
    /// Events of attempts that went unanswered: the counters may run ahead
    /// of the acknowledgements by up to this many.
    pub unanswered: u64,
    /// Empty when `ok`.
    pub problems: Vec<String>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The end-of-run report; its JSON form is what `--json` prints.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    /// Events handed to the server (re-sends of `--generate` included).
    pub sent: u64,
    /// Events of the input never sent because the run stopped early; null
    /// when unknown (NDJSON input is read as it is sent).
    pub not_sent: Option<u64>,
    pub requests: u64,
    pub acknowledged: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub retries: u64,
    /// Events of requests that failed for good.
    pub failures: u64,
    pub elapsed_seconds: f64,
    /// Acknowledged events per second of the run.
    pub events_per_second: f64,
    pub requests_per_second: f64,
    /// Per acknowledged request, from its first send to its 200.
    pub latency_ms: Option<Latency>,
    /// The seed of `--generate`, to reproduce the load.
    pub seed: Option<u64>,
    pub verify: Option<Verification>,
}

impl Summary {
    pub(crate) fn new(
        tally: Tally,
        not_sent: Option<u64>,
        elapsed: Duration,
        seed: Option<u64>,
        verify: Option<Verification>,
    ) -> Self {
        let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
        Self {
            sent: tally.sent,
            not_sent,
            requests: tally.requests,
            acknowledged: tally.acked.received,
            unique: tally.acked.unique,
            duplicates: tally.acked.duplicates,
            conflicts: tally.acked.conflicts,
            retries: tally.retries,
            failures: tally.failed,
            elapsed_seconds: round(elapsed.as_secs_f64(), 3),
            events_per_second: round(tally.acked.received as f64 / seconds, 1),
            requests_per_second: round(tally.latencies.len() as f64 / seconds, 1),
            latency_ms: latency(&tally.latencies),
            seed,
            verify,
        }
    }

    /// Prints the summary on stdout: one JSON object, or aligned text.
    ///
    /// # Errors
    /// When stdout cannot be written.
    pub(crate) fn print(&self, json: bool) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        if json {
            serde_json::to_writer(&mut out, self).context("writing the summary")?;
            writeln!(out).context("writing the summary")?;
        } else {
            out.write_all(self.to_text().as_bytes())
                .context("writing the summary")?;
        }
        out.flush().context("writing the summary")
    }

    fn to_text(&self) -> String {
        let mut lines = vec![
            format!(
                "sent          {} events in {} requests",
                self.sent, self.requests
            ),
            format!("acknowledged  {}", self.acknowledged),
            format!("unique        {}", self.unique),
            format!(
                "duplicates    {} ({} with other content)",
                self.duplicates, self.conflicts
            ),
            format!("retries       {}", self.retries),
            format!("failures      {}", self.failures),
            format!(
                "throughput    {:.0} events/s, {:.0} requests/s over {:.2} s",
                self.events_per_second, self.requests_per_second, self.elapsed_seconds
            ),
        ];
        match self.not_sent {
            Some(0) => {}
            Some(count) => lines.insert(1, format!("not sent      {count}")),
            None => lines.insert(1, "not sent      the rest of the input".to_owned()),
        }
        if let Some(latency) = self.latency_ms {
            lines.push(format!(
                "latency       p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                latency.p50, latency.p99, latency.max
            ));
        }
        if let Some(seed) = self.seed {
            lines.push(format!("seed          {seed}"));
        }
        if let Some(verify) = &self.verify {
            let verdict = if verify.ok { "ok" } else { "FAILED" };
            let mut line = format!(
                "verify        {verdict}: the server's received +{}, unique_processed +{}, duplicate_dropped +{}",
                verify.received, verify.unique_processed, verify.duplicate_dropped
            );
            if verify.unanswered > 0 {
                line.push_str(&format!(
                    " (allowing for {} events of unanswered attempts)",
                    verify.unanswered
                ));
            }
            lines.push(line);
        }
        lines.iter().map(|line| format!("{line}\n")).collect()
    }
}

/// Percentiles of the recorded latencies, within the histogram's precision
/// (three significant digits).
fn latency(samples: &Histogram<u64>) -> Option<Latency> {
    if samples.is_empty() {
        return None;
    }
    let ms = |micros: u64| round(micros as f64 / 1000.0, 3);
    Some(Latency {
        p50: ms(samples.value_at_quantile(0.50)),
        p99: ms(samples.value_at_quantile(0.99)),
        max: ms(samples.max()),
    })
}

/// `value` to `decimals` places, so the JSON shows no float noise.
fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10_f64.powi(decimals);
    (value * scale).round() / scale
}

/// Progress on stderr while the run goes on.
pub(crate) struct Progress {
    bar: ProgressBar,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// A bar counting acknowledged events, out of `planned` when known.
    pub(crate) fn new(planned: Option<u64>) -> Self {
        let (bar, template) = match planned {
            Some(total) => (
                ProgressBar::new(total),
                "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} acknowledged, {msg}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {elapsed_precise} {pos} acknowledged, {msg}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .expect("the template is valid")
            .progress_chars("=> ");
        bar.set_style(style);
        let now = Instant::now();
        Self {
            bar,
            started: now,
            last_line: now,
        }
    }

    /// Shows `tally`: redraws the bar, or prints a plain line when one is due.
    pub(crate) fn show(&mut self, tally: &Tally) {
        let acked = tally.acked.received;
        let rate = acked as f64 / self.started.elapsed().as_secs_f64().max(f64::EPSILON);
        let message = format!(
            "{rate:.0} events/s, {} duplicates, {} retries, {} failed",
            tally.acked.duplicates, tally.retries, tally.failed
        );
        if !self.bar.is_hidden() {
            self.bar.set_position(acked);
            self.bar.set_message(message);
            return;
        }
        if self.last_line.elapsed() >= PLAIN_LINE_EVERY {
            self.last_line = Instant::now();
            eprintln!("publish: {acked} events acknowledged, {message}");
        }
    }

    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tally's histogram after recording these latencies the way a run
    /// does.
    fn histogram(millis: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut tally = Tally::default();
        for ms in millis {
            tally.record_latency(Duration::from_millis(ms));
        }
        tally.latencies
    }

    #[test]
    fn percentiles_are_within_the_histogram_precision() {
        let close = |actual: f64, expected: f64| (actual - expected).abs() <= expected / 1000.0;
        let many = latency(&histogram((1..=100).rev())).expect("some");
        assert!(close(many.p50, 50.0), "{many:?}");
        assert!(close(many.p99, 99.0), "{many:?}");
        assert!(close(many.max, 100.0), "{many:?}");
        assert!(latency(&histogram([])).is_none());
        let one = latency(&histogram([7])).expect("one");
        assert!(close(one.p50, 7.0) && close(one.max, 7.0), "{one:?}");
        // Past the range: clamped to an hour, not dropped.
        let huge = latency(&histogram([10 * 3_600_000])).expect("one");
        assert!(close(huge.max, 3_600_000.0), "{huge:?}");
    }
}
