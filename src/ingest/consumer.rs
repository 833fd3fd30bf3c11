//! The consumer: the single writer that turns queued requests into commits.
//!
//! It runs on a thread of its own (SQLite calls block) and owns the only
//! path to [`Store::append`]. Each round it blocks for one job, then takes
//! whatever else is already waiting, within the [`BatchPolicy`], and commits
//! all of it in one transaction. Batches form by themselves: while one commit
//! is in its fsync, the next requests queue up and ride the next commit
//! together (group commit), so no timer is needed to batch under load and no
//! delay is added when idle.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, watch};

use super::batch::{Batch, BatchPolicy};
use super::tail::{Framer, Tail};
use super::{IngestError, Job, Receipt};
use crate::event::Event;
use crate::metrics::Metrics;
use crate::store::{CommitTime, EventView, Outcome, Store};

/// Starts the consumer thread. It returns once every sender of `jobs` is
/// dropped and the queue is drained, so joining it is the last step of
/// shutdown before the store closes.
///
/// After each commit the consumer extends the `tail` (while anyone watches
/// it) and then advances `committed` to the newest committed `seq`.
///
/// # Errors
/// When the OS refuses to start a thread.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    jobs: mpsc::UnboundedReceiver<Job>,
    policy: BatchPolicy,
    committed: watch::Sender<u64>,
    tail: Arc<Tail>,
    metrics: Arc<Metrics>,
) -> std::io::Result<JoinHandle<()>> {
    let followers = Followers {
        committed,
        tail,
        metrics,
    };
    std::thread::Builder::new()
        .name("logagg-consumer".to_owned())
        .spawn(move || run(store.as_ref(), jobs, policy, &followers))
}

/// Who learns of each commit besides the requests in it.
struct Followers {
    committed: watch::Sender<u64>,
    tail: Arc<Tail>,
    metrics: Arc<Metrics>,
}

fn run(
    store: &dyn Store,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    policy: BatchPolicy,
    followers: &Followers,
) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.blocking_recv() {
                Some(job) => job,
                None => break,
            },
        };
        let mut batch = Batch::new(policy);
        let events = first.events.len();
        batch.push(first, events);
        while !batch.is_full() {
            match jobs.try_recv() {
                Ok(job) if batch.accepts(job.events.len()) => {
                    let events = job.events.len();
                    batch.push(job, events);
                }
                Ok(job) => {
                    carried = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        commit(store, batch.into_items(), followers);
    }
    tracing::debug!("ingest queue closed; consumer stopped");
}

/// Appends every job's events in one transaction and answers each job.
fn commit(store: &dyn Store, jobs: Vec<Job>, followers: &Followers) {
    // The events stay borrowed until the followers have seen them; the reply
    // channels are consumed before that, so the two part ways here. Each
    // request's room in the queue is released when `requests` drops.
    let mut requests = Vec::with_capacity(jobs.len());
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        replies.push((job.reply, job.enqueued, job.events.len()));
        requests.push((job.events, job.room));
    }
    let events: Vec<&Event> = requests.iter().flat_map(|(events, _)| events).collect();
    let span = tracing::debug_span!("commit", requests = replies.len(), events = events.len());
    let _entered = span.enter();
    let started = Instant::now();
    let received_at = CommitTime::now();
    let outcomes = match store.append(&events, received_at) {
        Ok(outcomes) => outcomes,
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "commit failed; answering its requests with an error"
            );
            let error = Arc::new(error);
            for (reply, _, _) in replies {
                // A closed reply means the client went away; nothing to do.
                let _ = reply.send(Err(IngestError::Commit(Arc::clone(&error))));
            }
            return;
        }
    };
    let duration = started.elapsed();
    assert_eq!(outcomes.len(), events.len(), "one outcome per event");
    log_duplicates(&events, &outcomes);
    followers
        .metrics
        .record_commit(&Receipt::tally(&outcomes), duration);

    let mut rest = outcomes.as_slice();
    for (reply, enqueued, count) in replies {
        let (own, tail) = rest.split_at(count);
        rest = tail;
        tracing::trace!(waited = ?enqueued.elapsed(), "request committed");
        let _ = reply.send(Ok(Receipt::tally(own)));
    }
    // Answers first, then subscribers: they are not waiting on a reply.
    followers.advance(&events, &outcomes, received_at);
}

impl Followers {
    /// Extends the tail with the newly stored events (framed once, here) and
    /// then moves the commit watch, so a woken subscriber finds them.
    fn advance(&self, events: &[&Event], outcomes: &[Outcome], received_at: CommitTime) {
        let previous = *self.committed.borrow();
        let stored = events
            .iter()
            .zip(outcomes)
            .filter_map(|(event, outcome)| match outcome {
                Outcome::Stored { seq } => Some((*seq, *event)),
                Outcome::Duplicate | Outcome::Conflict => None,
            });
        let last = stored.clone().next_back().map_or(previous, |(seq, _)| seq);
        if self.tail.is_watched() {
            let received_at = received_at.to_rfc3339();
            let mut framer = Framer::default();
            for (seq, event) in stored {
                framer.push(&EventView {
                    seq,
                    topic: event.topic.as_str(),
                    event_id: event.event_id.as_str(),
                    timestamp: &event.timestamp,
                    source: &event.source,
                    payload: &event.payload,
                    received_at: &received_at,
                });
            }
            self.tail.extend(previous, last, framer.finish());
        } else {
            self.tail.clear();
        }
        if last != previous {
            self.committed.send_replace(last);
        }
    }
}

fn log_duplicates(events: &[&Event], outcomes: &[Outcome]) {
    for (event, outcome) in events.iter().zip(outcomes) {
        let (topic, event_id) = (event.topic.as_str(), event.event_id.as_str());
        match outcome {
            Outcome::Stored { .. } => {}
            Outcome::Duplicate => tracing::debug!(topic, event_id, "duplicate dropped"),
            Outcome::Conflict => tracing::warn!(
                topic,
                event_id,
                "duplicate with different content dropped; the first stored copy wins"
            ),
        }
    }
}
