//! The consumer: this process's single writer, which turns queued requests
//! into commits.
//!
//! It runs as one task and owns this process's only path to
//! [`Store::append`]. Each round it waits for one job, then takes whatever
//! else is already waiting, within the [`BatchPolicy`], and commits all of it
//! in one transaction. Batches form by themselves: while one commit is in its
//! fsync, the next requests queue up and ride the next commit together (group
//! commit), so no timer is needed to batch under load and no delay is added
//! when idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::batch::{Batch, BatchPolicy};
use super::{IngestError, Job, Jobs, tally};
use crate::event::Event;
use crate::metrics::Metrics;
use crate::store::{Commit, CommitTime, EventView, Outcome, Store, StoreError};
use crate::tail::{Frame, Framer, Tail};

/// Starts the consumer task. It returns once every sender of `jobs` is
/// dropped and the queue is drained, so awaiting it is the last step of
/// shutdown before the store closes.
///
/// After each commit the consumer answers the requests in it, then
/// announces the commit to the `tail`.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    jobs: Jobs,
    policy: BatchPolicy,
    tail: Arc<Tail>,
    metrics: Arc<Metrics>,
) -> JoinHandle<()> {
    let consumer = Consumer {
        store,
        tail,
        metrics,
        disk_full: jobs.disk_full,
    };
    tokio::spawn(consumer.run(jobs.receiver, policy))
}

struct Consumer {
    store: Arc<dyn Store>,
    tail: Arc<Tail>,
    metrics: Arc<Metrics>,
    disk_full: Arc<AtomicBool>,
}

impl Consumer {
    async fn run(self, mut jobs: mpsc::UnboundedReceiver<Job>, policy: BatchPolicy) {
        let mut carried: Option<Job> = None;
        loop {
            let first = match carried.take() {
                Some(job) => job,
                None => match jobs.recv().await {
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
            let span = tracing::debug_span!("commit", events = batch.events());
            self.commit(batch.into_items()).instrument(span).await;
        }
        tracing::debug!("ingest queue closed; consumer stopped");
    }

    /// Appends every job's events in one transaction, answers each job, and
    /// announces the commit.
    async fn commit(&self, jobs: Vec<Job>) {
        // The events move into one shared batch for the store; each request
        // keeps its reply channel, and its room in the queue, released when
        // `rooms` drops at the end.
        let mut events = Vec::with_capacity(jobs.iter().map(|job| job.events.len()).sum());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut rooms = Vec::with_capacity(jobs.len());
        for job in jobs {
            replies.push((job.reply, job.events.len(), job.enqueued));
            rooms.push(job.room);
            events.extend(job.events);
        }
        let events: Arc<[Event]> = events.into();
        let started = Instant::now();
        let received_at = CommitTime::now();
        let commit = match self.store.append(Arc::clone(&events), received_at).await {
            Ok(commit) => {
                if self.disk_full.swap(false, Ordering::Relaxed) {
                    tracing::warn!("the disk has room again; commits resume");
                }
                commit
            }
            Err(error) => {
                if matches!(error, StoreError::DiskFull) {
                    if !self.disk_full.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            "the disk is full: publishes get 507 and store nothing until there is room; reads go on"
                        );
                    }
                } else {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "commit failed; answering its requests with an error"
                    );
                }
                let error = Arc::new(error);
                for (reply, _, _) in replies {
                    // A closed reply means the client went away; nothing to do.
                    let _ = reply.send(Err(IngestError::Commit(Arc::clone(&error))));
                }
                return;
            }
        };
        let duration = started.elapsed();
        assert_eq!(commit.outcomes.len(), events.len(), "one outcome per event");
        log_duplicates(&events, &commit.outcomes);
        self.metrics
            .record_commit(&tally(&commit.outcomes), duration);

        let mut rest = commit.outcomes.as_slice();
        for (reply, count, enqueued) in replies {
            let (own, others) = rest.split_at(count);
            rest = others;
            tracing::trace!(waited = ?enqueued.elapsed(), "request committed");
            let _ = reply.send(Ok(tally(own)));
        }
        // Answers first, then subscribers: they are not waiting on a reply.
        self.tail.announce(commit.previous, commit.last, || {
            frames(&events, &commit, received_at)
        });
        drop(rooms);
    }
}

/// The SSE frames of the events a commit stored.
fn frames(events: &[Event], commit: &Commit, received_at: CommitTime) -> Vec<Frame> {
    let received_at = received_at.to_rfc3339();
    let mut framer = Framer::default();
    for (event, outcome) in events.iter().zip(&commit.outcomes) {
        if let Outcome::Stored { seq } = *outcome {
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
    }
    framer.finish()
}

fn log_duplicates(events: &[Event], outcomes: &[Outcome]) {
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
