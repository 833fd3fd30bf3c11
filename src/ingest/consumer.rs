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
use super::{IngestError, Job, Receipt};
use crate::event::Event;
use crate::metrics::Metrics;
use crate::store::{Outcome, Store};

/// Starts the consumer thread. It returns once every sender of `jobs` is
/// dropped and the queue is drained, so joining it is the last step of
/// shutdown before the store closes.
///
/// `committed` is advanced to the newest committed `seq` after each commit.
///
/// # Errors
/// When the OS refuses to start a thread.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    jobs: mpsc::UnboundedReceiver<Job>,
    policy: BatchPolicy,
    committed: watch::Sender<u64>,
    metrics: Arc<Metrics>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("logagg-consumer".to_owned())
        .spawn(move || run(store.as_ref(), jobs, policy, &committed, &metrics))
}

fn run(
    store: &dyn Store,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    policy: BatchPolicy,
    committed: &watch::Sender<u64>,
    metrics: &Metrics,
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
        commit(store, batch.into_items(), committed, metrics);
    }
    tracing::debug!("ingest queue closed; consumer stopped");
}

/// Appends every job's events in one transaction and answers each job.
fn commit(store: &dyn Store, jobs: Vec<Job>, committed: &watch::Sender<u64>, metrics: &Metrics) {
    let events: Vec<&Event> = jobs.iter().flat_map(|job| job.events.iter()).collect();
    let span = tracing::debug_span!("commit", requests = jobs.len(), events = events.len());
    let _entered = span.enter();
    let started = Instant::now();
    let outcomes = match store.append(&events) {
        Ok(outcomes) => outcomes,
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "commit failed; answering its requests with an error"
            );
            let error = Arc::new(error);
            for job in jobs {
                // A closed reply means the client went away; nothing to do.
                let _ = job.reply.send(Err(IngestError::Commit(Arc::clone(&error))));
            }
            return;
        }
    };
    let duration = started.elapsed();
    assert_eq!(outcomes.len(), events.len(), "one outcome per event");
    let last_seq = outcomes.iter().rev().find_map(|outcome| match outcome {
        Outcome::Stored { seq } => Some(*seq),
        _ => None,
    });
    log_duplicates(&events, &outcomes);
    drop(events);
    metrics.record_commit(&Receipt::tally(&outcomes), duration);

    let mut rest = outcomes.as_slice();
    for job in jobs {
        let (own, tail) = rest.split_at(job.events.len());
        rest = tail;
        tracing::trace!(waited = ?job.enqueued.elapsed(), "request committed");
        let _ = job.reply.send(Ok(Receipt::tally(own)));
    }
    if let Some(seq) = last_seq {
        committed.send_replace(seq);
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
