//! The ingest queue and its consumer: how a validated request becomes durable.
//!
//! # Protocol
//!
//! 1. A publish handler calls [`Ingest::submit`] with a request's events. It
//!    first reserves room for them in the bounded queue (counted in events);
//!    when no room frees up within `queue_wait`, it fails with
//!    [`IngestError::QueueFull`] and the client gets 503 + `Retry-After`.
//! 2. The request travels as one job with a oneshot reply channel.
//! 3. The [`consumer`] (one task, the only writer of this process) takes
//!    every job that is waiting, up to the [batch policy](batch), and appends
//!    them in one store transaction: one commit, one fsync for many requests.
//! 4. Only after the commit does it answer each job with its [`Receipt`];
//!    then it announces the commit to the [tail](crate::tail) (which frames
//!    the new events while anyone subscribes, and wakes subscribers), and
//!    only then drops the jobs, releasing their room in the queue.
//!
//! # Guarantees
//!
//! - A `submit` that returns `Ok` means every event of the request is
//!   committed. An `Err` or a dropped future means nothing is promised: the
//!   client retries and dedup makes the retry safe.
//! - A request is never split across transactions.
//! - Commit order is queue order, so `seq` follows acknowledgement order.
//!
//! # A full disk
//!
//! A commit that fails because the disk is full stores nothing, and its
//! requests get [`IngestError::Commit`] with [`StoreError::DiskFull`] (507).
//! The consumer remembers the condition until a commit succeeds again, for
//! `/health` and `/stats` ([`Ingest::disk_full`]); it does not stop
//! committing: every new request tries again, so writing resumes by itself
//! as soon as there is room (the 507's `Retry-After` paces the publishers).
//!
//! # Shutdown
//!
//! The consumer runs until every [`Ingest`] handle is dropped; it then commits
//! what is still queued, answers those requests, and exits. `cmd::serve` joins
//! it before closing the store.

pub mod batch;
pub mod consumer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

pub use crate::api::Receipt;
use crate::event::Event;
use crate::store::{Outcome, StoreError};

/// Queue settings, from `ServeConfig`.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// Events that may wait for or be in a commit at once.
    pub capacity_events: usize,
    /// How long a request may wait for room before it gets 503.
    pub wait: Duration,
}

/// The receipt of a request whose events had these outcomes.
fn tally(outcomes: &[Outcome]) -> Receipt {
    let mut receipt = Receipt {
        received: outcomes.len() as u64,
        ..Receipt::default()
    };
    for outcome in outcomes {
        match outcome {
            Outcome::Stored { .. } => receipt.unique += 1,
            Outcome::Duplicate => receipt.duplicates += 1,
            Outcome::Conflict => {
                receipt.duplicates += 1;
                receipt.conflicts += 1;
            }
        }
    }
    receipt
}

/// Why a request was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IngestError {
    #[error("ingest queue stayed full for {0:?}")]
    QueueFull(Duration),
    #[error("request holds {count} events; the queue holds at most {capacity}")]
    TooManyEvents { count: usize, capacity: usize },
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("commit failed")]
    Commit(#[source] Arc<StoreError>),
}

/// One request waiting for its commit.
pub(crate) struct Job {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Receipt, IngestError>>,
    /// The request's room in the queue, released once its commit has been
    /// answered and announced.
    room: OwnedSemaphorePermit,
    enqueued: Instant,
}

/// The handle publish handlers submit to. Cheap to clone; the consumer stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Ingest {
    jobs: mpsc::UnboundedSender<Job>,
    /// One permit per event of room; the channel itself is unbounded because
    /// this semaphore bounds it.
    room: Arc<Semaphore>,
    config: QueueConfig,
    /// Set by the consumer while commits fail for a full disk.
    disk_full: Arc<AtomicBool>,
}

/// The consumer's end of the queue.
pub(crate) struct Jobs {
    pub(crate) receiver: mpsc::UnboundedReceiver<Job>,
    /// Shared with every [`Ingest`] handle: the consumer sets it when a
    /// commit fails for a full disk and clears it when one succeeds.
    pub(crate) disk_full: Arc<AtomicBool>,
}

impl Ingest {
    /// Creates the queue; its other end goes to [`consumer::spawn`].
    pub(crate) fn new(config: QueueConfig) -> (Self, Jobs) {
        let (jobs, receiver) = mpsc::unbounded_channel();
        let disk_full = Arc::new(AtomicBool::new(false));
        let ingest = Self {
            jobs,
            room: Arc::new(Semaphore::new(config.capacity_events)),
            config,
            disk_full: Arc::clone(&disk_full),
        };
        (
            ingest,
            Jobs {
                receiver,
                disk_full,
            },
        )
    }

    /// Whether the last commit failed because the disk is full (and none
    /// has succeeded since): publishes get 507 until there is room again.
    pub fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::Relaxed)
    }

    /// Queues `events` as one request and resolves once the transaction that
    /// holds all of them has committed (never before: the answer is a
    /// durable acknowledgement).
    ///
    /// # Errors
    /// [`IngestError::QueueFull`] when no room frees up within the configured
    /// wait; [`IngestError::Commit`] when the transaction failed (nothing of
    /// the request is stored); [`IngestError::ShuttingDown`] when the consumer
    /// is gone.
    pub async fn submit(&self, events: Vec<Event>) -> Result<Receipt, IngestError> {
        let count = events.len();
        let too_many = IngestError::TooManyEvents {
            count,
            capacity: self.config.capacity_events,
        };
        if count > self.config.capacity_events {
            return Err(too_many);
        }
        let permits = u32::try_from(count).map_err(|_| too_many)?;
        let room = tokio::time::timeout(
            self.config.wait,
            Arc::clone(&self.room).acquire_many_owned(permits),
        )
        .await
        .map_err(|_| IngestError::QueueFull(self.config.wait))?
        .map_err(|_| IngestError::ShuttingDown)?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            events,
            reply,
            room,
            enqueued: Instant::now(),
        };
        self.jobs.send(job).map_err(|_| IngestError::ShuttingDown)?;
        answer.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// Events queued or being committed right now.
    pub fn depth(&self) -> usize {
        self.config.capacity_events - self.room.available_permits()
    }

    /// Whether the consumer has stopped (it only does when shutting down,
    /// or after a bug made it panic).
    pub fn is_closed(&self) -> bool {
        self.jobs.is_closed()
    }

    pub fn capacity(&self) -> usize {
        self.config.capacity_events
    }
}
