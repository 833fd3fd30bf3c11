//! `logagg publish`: the publisher and load generator.
//!
//! It sends NDJSON events (from files or stdin) or a synthetic load
//! (`--generate`) to `POST /publish` in batches, over several kept-alive
//! connections, optionally paced, and delivers each request at least once:
//! whatever may succeed later is retried ([`sender`]). Re-sending is safe
//! because the server drops duplicates, and that is also why the run stops
//! at the first request that fails for good: publishing the same input
//! again after a fix costs nothing but duplicates.
//!
//! The run: prepare the source (the generated load is built in full here,
//! so generating never competes with sending), read `/stats` for
//! `--verify`, start the clock, keep `--concurrency` requests in flight
//! until the source runs dry, then print the [summary](report::Summary).
//! The exit code is 0 only when every event was acknowledged (and, with
//! `--verify`, the server's counters agree).

mod generate;
mod report;
mod sender;
mod source;

use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::builder::BoolishValueParser;
use clap::{ArgGroup, Args};
use serde::Deserialize;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use generate::IdKind;
use generate::LoadSpec;
use report::{Progress, Summary, Tally, Verification};
use sender::{RetryPolicy, Sender};
use source::{Batcher, Source};

/// Timestamps of a seeded load start here, so that a seed alone fixes every
/// byte of every event: 2025-01-01T00:00:00Z.
const SEEDED_START_MILLIS: i64 = 1_735_689_600_000;

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
    pub url: String,

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
}

/// The server's counters that `--verify` compares.
#[derive(Debug, Clone, Copy, Deserialize)]
struct Counters {
    received: u64,
    unique_processed: u64,
    duplicate_dropped: u64,
}

/// Why a run stopped before its input ran dry.
enum Stop {
    /// The input could not be read (or a line is not JSON).
    Input(anyhow::Error),
    /// A request failed for good; the message names its events.
    Failed(String),
}

/// How a run ended, before the verdict.
struct Run {
    tally: Tally,
    stopped: Option<Stop>,
    /// Events that were planned but never sent (known for generated loads).
    not_sent: u64,
}

/// Publishes everything and prints the summary.
///
/// # Errors
/// When the input cannot be read, a request fails for good, or `--verify`
/// finds the server's counters off; the summary is printed first.
pub async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(random_seed);
    let policy = RetryPolicy {
        max_attempts: args.max_attempts.get(),
        timeout: args.timeout,
        backoff_base: args.backoff_base,
        backoff_max: args.backoff_max,
    };
    let sender = Arc::new(Sender::new(
        &args.url,
        policy,
        args.concurrency.get(),
        seed ^ 0x6a69_7474_6572, // a jitter stream apart from the load's
    )?);
    let (source, seed) = match args.generate {
        Some(sends) => (prepare_load(&args, sends, seed), Some(seed)),
        None => (
            Source::read_ndjson(
                &args.files,
                args.batch_size.get(),
                2 * args.concurrency.get(),
            )?,
            None,
        ),
    };
    let before = match args.verify {
        true => Some(counters(&sender, &args.url, "before").await?),
        false => None,
    };

    let started = Instant::now();
    let run = publish(source, &sender, &args).await?;
    let elapsed = started.elapsed();

    let verification = match before {
        Some(before) => {
            let after = counters(&sender, &args.url, "after").await?;
            Some(verify(before, after, &run.tally))
        }
        None => None,
    };
    let unacknowledged = run.tally.failed + run.not_sent;
    let summary = Summary::new(run.tally, run.not_sent, elapsed, seed, verification);
    summary.print(args.json)?;

    match run.stopped {
        Some(Stop::Input(error)) => return Err(error.context("reading the input")),
        Some(Stop::Failed(failure)) => {
            anyhow::bail!("{unacknowledged} event(s) not acknowledged: {failure}")
        }
        None => {}
    }
    if let Some(verification) = summary.verify.filter(|v| !v.ok) {
        anyhow::bail!(
            "--verify failed: {} (is another publisher writing to this server? --verify is \
             only exact when this publisher is the only one)",
            verification.problems.join("; ")
        );
    }
    Ok(())
}

/// Builds the whole synthetic load into requests.
fn prepare_load(args: &PublishArgs, sends: u64, seed: u64) -> Source {
    let start_millis = match args.seed {
        Some(_) => SEEDED_START_MILLIS,
        None => chrono::Utc::now().timestamp_millis(),
    };
    let spec = LoadSpec {
        sends,
        topics: args.topics.get(),
        payload_bytes: args.payload_bytes,
        duplicate_rate: args.duplicate_rate,
        ids: args.ids,
        seed,
        start_millis,
    };
    let began = std::time::Instant::now();
    let lines = generate::generate(&spec);
    let mut batcher = Batcher::new(args.batch_size.get(), None, 0);
    let mut requests: Vec<_> = lines
        .iter()
        .filter_map(|line| batcher.push(line, None))
        .collect();
    requests.extend(batcher.finish().0);
    tracing::debug!(
        sends,
        unique = spec.unique(),
        requests = requests.len(),
        took = ?began.elapsed(),
        "synthetic load prepared"
    );
    Source::Prepared(requests.into_iter())
}

/// Keeps up to `--concurrency` requests in flight until the source runs dry
/// or a request fails for good, then waits for those in flight.
async fn publish(
    mut source: Source,
    sender: &Arc<Sender>,
    args: &PublishArgs,
) -> anyhow::Result<Run> {
    let mut progress = Progress::new(source.remaining_events());
    let mut tally = Tally::default();
    let mut pacer = Pacer::new(args.rate);
    let mut in_flight = JoinSet::new();
    let mut ticker = tokio::time::interval(report::PROGRESS_TICK);
    let mut stopped: Option<Stop> = None;
    let mut exhausted = false;
    while !(exhausted || stopped.is_some()) || !in_flight.is_empty() {
        let may_send = !exhausted && stopped.is_none() && in_flight.len() < args.concurrency.get();
        tokio::select! {
            Some(joined) = in_flight.join_next() => {
                let delivery = joined.context("a request task panicked")?;
                tally.record(&delivery);
                if let Err(failure) = &delivery.outcome
                    && stopped.is_none()
                {
                    stopped = Some(Stop::Failed(failure.describe(&delivery)));
                }
            }
            next = source.next(), if may_send => match next {
                Some(Ok(request)) => {
                    tally.dispatched(request.events);
                    let send_at = pacer.slot(request.events);
                    in_flight.spawn(Arc::clone(sender).deliver(request, send_at));
                }
                Some(Err(error)) => stopped = Some(Stop::Input(error)),
                None => exhausted = true,
            },
            _ = ticker.tick() => progress.show(&tally),
        }
    }
    progress.finish();
    Ok(Run {
        not_sent: source.remaining_events().unwrap_or(0),
        tally,
        stopped,
    })
}

/// Spaces sends so that events go out at `--rate` on average.
struct Pacer {
    per_event: Option<Duration>,
    next: Instant,
}

impl Pacer {
    /// Unused time banked at most, so that a stall is not followed by a burst.
    const SLACK: Duration = Duration::from_millis(100);

    fn new(rate: Option<f64>) -> Self {
        Self {
            per_event: rate.map(|rate| Duration::from_secs_f64(1.0 / rate)),
            next: Instant::now(),
        }
    }

    /// When a request of `events` events may go.
    fn slot(&mut self, events: usize) -> Instant {
        let now = Instant::now();
        let Some(per_event) = self.per_event else {
            return now;
        };
        let earliest = now.checked_sub(Self::SLACK).unwrap_or(now);
        self.next = self.next.max(earliest);
        let at = self.next;
        self.next += per_event.saturating_mul(u32::try_from(events).unwrap_or(u32::MAX));
        at
    }
}

/// `/stats` counters, for `--verify`.
async fn counters(sender: &Sender, base: &str, when: &str) -> anyhow::Result<Counters> {
    let url = format!("{}/stats", base.trim_end_matches('/'));
    let reading = async {
        let response = sender.client().get(&url).send().await?.error_for_status()?;
        response.json::<Counters>().await
    };
    reading
        .await
        .with_context(|| format!("reading {url} {when} publishing (for --verify)"))
}

/// Compares how the server's counters moved with what the receipts say.
///
/// Exact unless some attempt went unanswered: the server may have stored
/// such a request before its answer was lost, and the retry then counted
/// its events again as duplicates. So the server's `received` may exceed
/// the acknowledged events by up to `tally.unanswered`, and that excess
/// splits between `unique_processed` and `duplicate_dropped`.
fn verify(before: Counters, after: Counters, tally: &Tally) -> Verification {
    let moved = |name: &str, after: u64, before: u64| {
        after
            .checked_sub(before)
            .ok_or_else(|| format!("the server's {name} went down from {before} to {after}"))
    };
    let deltas = (
        moved("received", after.received, before.received),
        moved(
            "unique_processed",
            after.unique_processed,
            before.unique_processed,
        ),
        moved(
            "duplicate_dropped",
            after.duplicate_dropped,
            before.duplicate_dropped,
        ),
    );
    let mut problems = Vec::new();
    let (received, unique, duplicates) = match deltas {
        (Ok(r), Ok(u), Ok(d)) => (r, u, d),
        (r, u, d) => {
            problems.extend([r.err(), u.err(), d.err()].into_iter().flatten());
            (0, 0, 0)
        }
    };
    if problems.is_empty() {
        let acked = &tally.acked;
        let slack = tally.unanswered;
        for (name, moved, said) in [
            ("received", received, acked.received),
            ("unique_processed", unique, acked.unique),
            ("duplicate_dropped", duplicates, acked.duplicates),
        ] {
            if !(said..=said + slack).contains(&moved) {
                let allowance = match slack {
                    0 => String::new(),
                    n => format!(" (+ up to {n} unanswered)"),
                };
                problems.push(format!(
                    "the server's {name} moved by {moved}, the acknowledgements say {said}{allowance}"
                ));
            }
        }
    }
    Verification {
        ok: problems.is_empty(),
        received,
        unique_processed: unique,
        duplicate_dropped: duplicates,
        unanswered: tally.unanswered,
        problems,
    }
}

/// A seed for runs without `--seed`, from the OS-seeded hasher keys.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// `30s`, `500ms`, `2m`, or a bare number of seconds (`1.5`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 500ms, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit {unit:?}; use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a positive number of events per second"
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
    use sender::Receipt;

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn rates_and_shares_are_checked() {
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        assert!(parse_rate("0").is_err());
        assert_eq!(parse_share("0.2"), Ok(0.2));
        assert!(parse_share("1").is_err());
        assert!(parse_generate("0").is_err());
        assert!(parse_generate("10000001").is_err());
    }

    #[test]
    fn a_paced_run_spaces_its_requests() {
        let mut pacer = Pacer::new(Some(1000.0));
        let first = pacer.slot(10);
        let second = pacer.slot(10);
        assert_eq!(second - first, Duration::from_millis(10));
        let mut unpaced = Pacer::new(None);
        assert!(unpaced.slot(10) <= Instant::now());
    }

    fn counters(received: u64, unique_processed: u64, duplicate_dropped: u64) -> Counters {
        Counters {
            received,
            unique_processed,
            duplicate_dropped,
        }
    }

    fn tally(received: u64, unique: u64, unanswered: u64) -> Tally {
        Tally {
            acked: Receipt {
                received,
                unique,
                duplicates: received - unique,
                conflicts: 0,
            },
            unanswered,
            ..Tally::default()
        }
    }

    #[test]
    fn verify_is_exact_without_unanswered_attempts() {
        let before = counters(10, 8, 2);
        assert!(verify(before, counters(110, 88, 22), &tally(100, 80, 0)).ok);
        let off = verify(before, counters(111, 89, 22), &tally(100, 80, 0));
        assert!(!off.ok);
        assert!(off.problems[0].contains("received moved by 101"), "{off:?}");
        assert!(!verify(before, counters(5, 5, 0), &tally(0, 0, 0)).ok);
    }

    #[test]
    fn verify_allows_what_unanswered_attempts_may_have_stored() {
        let before = counters(0, 0, 0);
        // 10 events stored, the answer lost, the retry counted 10 duplicates.
        assert!(verify(before, counters(20, 10, 10), &tally(10, 0, 10)).ok);
        assert!(!verify(before, counters(21, 11, 10), &tally(10, 0, 10)).ok);
    }
}
