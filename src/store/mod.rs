//! The durable store: the one place events, the dedup set and the counters
//! live.
//!
//! [`Store`] is deliberately narrow: [`Store::append`] for the ingest consumer
//! (the only writer) and a handful of reads for the HTTP layer. A duplicate is
//! an [`Outcome`], not an error. Implementations must enforce the
//! `(topic, event_id)` uniqueness in the database itself and update the
//! counters in the same transaction as the events, so that the counters always
//! agree with what is stored, across any crash or restart.
//!
//! All methods block; async callers use `spawn_blocking`.

mod sqlite;

use std::path::PathBuf;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::Event;

pub use sqlite::SqliteStore;

/// How hard a commit works to survive power loss. Process crashes lose nothing
/// acknowledged under either mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// fsync the log on every commit: an acknowledged event survives power loss.
    Full,
    /// fsync only at checkpoints: faster, but a power loss (not a process
    /// crash) can lose the last acknowledged commits.
    Normal,
}

/// What became of one event in [`Store::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First copy of its key: stored under this `seq`.
    Stored { seq: u64 },
    /// The key was already stored with the same content.
    Duplicate,
    /// The key was already stored with *different* content; the stored copy
    /// wins. Counted as a duplicate and, separately, as a conflict.
    Conflict,
}

/// Ingest counters, as committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub received: u64,
    pub unique_processed: u64,
    pub duplicate_dropped: u64,
    /// Duplicates whose content differed from the stored copy (a subset of
    /// `duplicate_dropped`).
    pub conflicts: u64,
}

/// A stored event as readers see it: the event as sent plus `seq` and
/// `received_at`.
#[derive(Debug, Clone, Serialize)]
pub struct StoredEvent {
    pub seq: u64,
    pub topic: String,
    pub event_id: String,
    pub timestamp: String,
    pub source: String,
    pub payload: Box<RawValue>,
    /// When the event was committed, RFC 3339 UTC with milliseconds.
    pub received_at: String,
}

impl StoredEvent {
    /// The JSON object readers get, built from borrowed parts.
    pub fn view(&self) -> EventView<'_> {
        EventView {
            seq: self.seq,
            topic: &self.topic,
            event_id: &self.event_id,
            timestamp: &self.timestamp,
            source: &self.source,
            payload: &self.payload,
            received_at: &self.received_at,
        }
    }
}

/// The JSON shape of a stored event, borrowed: what `/events` and
/// `/subscribe` send, built without copying the event.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EventView<'a> {
    pub seq: u64,
    pub topic: &'a str,
    pub event_id: &'a str,
    pub timestamp: &'a str,
    pub source: &'a str,
    pub payload: &'a RawValue,
    pub received_at: &'a str,
}

/// When a commit happened, as stored: milliseconds since the Unix epoch.
/// The consumer stamps each commit once; every event in it shares the stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitTime(pub i64);

impl CommitTime {
    pub fn now() -> Self {
        Self(chrono::Utc::now().timestamp_millis())
    }

    /// RFC 3339 UTC with milliseconds, as `received_at` shows it.
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

/// One topic with its number of stored events and the `seq` of the newest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSummary {
    pub topic: String,
    pub events: u64,
    pub last_seq: u64,
}

/// A page request over stored events in `seq` order.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this topic; all topics when `None`.
    pub topic: Option<String>,
    /// Only events with `seq > after`.
    pub after: u64,
    /// At most this many events.
    pub limit: usize,
}

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening store at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("store schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("disk is full")]
    DiskFull,
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The durable store behind the API. See the module docs for the contract.
pub trait Store: Send + Sync + 'static {
    /// Appends `events` in order in one transaction, stamped `received_at`,
    /// assigning increasing `seq` to new keys, and updates the counters in
    /// that same transaction.
    /// Returns one [`Outcome`] per event, in order. When it returns `Ok`, the
    /// transaction is committed with the configured [`SyncMode`].
    ///
    /// Only the ingest consumer calls this.
    ///
    /// # Errors
    /// Nothing of the call is stored when it fails.
    fn append(
        &self,
        events: &[&Event],
        received_at: CommitTime,
    ) -> Result<Vec<Outcome>, StoreError>;

    /// Stored events in `seq` order.
    fn events(&self, query: &EventQuery) -> Result<Vec<StoredEvent>, StoreError>;

    /// One event by its key, or `None` when it was never stored.
    fn event(&self, topic: &str, event_id: &str) -> Result<Option<StoredEvent>, StoreError>;

    /// Every topic with its event count and newest `seq`, by name.
    fn topics(&self) -> Result<Vec<TopicSummary>, StoreError>;

    /// The committed counters.
    fn counters(&self) -> Result<Counters, StoreError>;

    /// The `seq` of the newest stored event, 0 when empty.
    fn last_seq(&self) -> Result<u64, StoreError>;

    /// Bytes the store occupies on disk.
    fn size_bytes(&self) -> Result<u64, StoreError>;

    /// Succeeds while the store can serve reads.
    fn check(&self) -> Result<(), StoreError>;
}
