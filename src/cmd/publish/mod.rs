//! `logagg publish`: the publisher and load generator.
//!
//! It sends NDJSON events (from files or stdin) or a synthetic load
//! (`--generate`) to `POST /publish` in batches, over several kept-alive
//! connections, optionally paced, and delivers each request at least once:
//! whatever may succeed later is retried (`sender`). Re-sending is safe
//! because the server drops duplicates, and that is also why the run stops
//! at the first request that fails for good: publishing the same input
//! again after a fix costs nothing but duplicates.
//!
//! The run: prepare the source (the generated load is built in full here,
//! so generating never competes with sending), read `/stats` for
//! `--verify`, start the clock, keep `--concurrency` requests in flight
//! until the source runs dry, then print the summary (`report::Summary`).
//! The exit code is 0 only when every event was acknowledged (and, with
//! `--verify`, the server's counters agree).

mod args;
mod generate;
mod report;
mod sender;
mod source;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use args::PublishArgs;
pub use generate::IdKind;
use generate::LoadSpec;
use report::{Progress, Summary, Tally};
use sender::{RetryPolicy, Sender};
use source::{Batcher, Source};

/// Timestamps of a seeded load start here, so that a seed alone fixes every
/// byte of every event: 2025-01-01T00:00:00Z.
const SEEDED_START_MILLIS: i64 = 1_735_689_600_000;

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
    /// Events of the input never sent because the run stopped early;
    /// `None` when unknown (input read as it is sent).
    not_sent: Option<u64>,
}

/// Publishes everything and prints the summary.
///
/// # Errors
/// When the input cannot be read, a request fails for good, or `--verify`
/// finds the server's counters off (the summary is printed first), or when
/// nothing could start (bad `--url`, missing file, `/stats` unreadable).
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
        args.auth.headers()?,
        &args.tls,
        policy,
        args.concurrency.get(),
        seed ^ 0x6a69_7474_6572, // a jitter stream apart from the load's
    )?);
    let (source, seed) = match args.generate {
        Some(sends) => (prepare_load(&args, sends, seed), Some(seed)),
        None => {
            let ahead = 2 * args.concurrency.get();
            let source = Source::read_ndjson(&args.files, args.batch_size.get(), ahead)?;
            (source, None)
        }
    };
    let before = match args.verify {
        true => Some(verify::counters(&sender, &args.url, "before").await?),
        false => None,
    };

    let started = Instant::now();
    let run = publish(source, &sender, &args).await?;
    let elapsed = started.elapsed();

    let (verification, unverifiable) = match before {
        Some(before) => match verify::counters(&sender, &args.url, "after").await {
            Ok(after) => (Some(verify::verify(before, after, &run.tally)), None),
            Err(error) => (None, Some(error)),
        },
        None => (None, None),
    };
    let failed = run.tally.failed;
    let summary = Summary::new(run.tally, run.not_sent, elapsed, seed, verification);
    summary.print(args.json)?;
    verdict(run.stopped, failed, run.not_sent, unverifiable, &summary)
}

/// The run's error, if any: why it stopped, else why `--verify` failed.
fn verdict(
    stopped: Option<Stop>,
    failed: u64,
    not_sent: Option<u64>,
    unverifiable: Option<anyhow::Error>,
    summary: &Summary,
) -> anyhow::Result<()> {
    match stopped {
        Some(Stop::Input(error)) => return Err(error.context("reading the input")),
        Some(Stop::Failed(failure)) => {
            let rest = match not_sent {
                Some(0) => String::new(),
                Some(count) => format!(" and {count} not sent"),
                None => " and the rest of the input not sent".to_owned(),
            };
            anyhow::bail!("{failed} event(s) not acknowledged{rest}: {failure}")
        }
        None => {}
    }
    if let Some(error) = unverifiable {
        return Err(error);
    }
    if let Some(verification) = summary.verify.as_ref().filter(|v| !v.ok) {
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
        payload_words: args.payload_words,
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
        not_sent: if exhausted {
            Some(0)
        } else {
            source.remaining_events()
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_run_spaces_its_requests() {
        let mut pacer = Pacer::new(Some(1000.0));
        let first = pacer.slot(10);
        let second = pacer.slot(10);
        assert_eq!(second - first, Duration::from_millis(10));
        let mut unpaced = Pacer::new(None);
        assert!(unpaced.slot(10) <= Instant::now());
    }
}
