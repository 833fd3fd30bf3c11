//! The durable store: the one place events, the dedup set and the counters
//! live.
//!
//! [`Store`] is one trait with an implementation per backend (the embedded
//! SQLite store, and PostgreSQL for several replicas); nothing above this
//! module knows which one it has. It is deliberately narrow:
//! [`Store::append`] for the ingest consumer and a handful of reads for the
//! HTTP layer. A duplicate is an [`Outcome`], not an error.
//!
//! # The contract every implementation keeps
//!
//! - **Durable, atomic commits.** `append` returns `Ok` only once its
//!   transaction is committed with the configured durability; one call is
//!   one transaction, all or nothing.
//! - **Exact dedup.** The `(topic, event_id)` uniqueness is decided against
//!   durable state, never against a cache that could have forgotten a key.
//!   An in-memory index may speed lookups up, but every hit is verified
//!   against the stored key, and a miss counts as "new" only when the index
//!   provably holds every stored key (built from durable state at open,
//!   checked against a durable count, updated only after a commit).
//! - **Commit-ordered `seq`.** Each stored event gets a `seq` larger than
//!   every `seq` committed before it, so a reader that has seen `seq = c`
//!   never later finds an event with `seq < c` appear. [`Commit`] reports
//!   the range a commit covers, which is how the live tail stays gapless
//!   (also across replicas that share a store).
//! - **`received_at` never decreases with `seq`**, so a time range of
//!   commits is a range of `seq` (see [`EventQuery`]).
//! - **Counters committed with the events**, so they always agree with what
//!   is stored, across any crash or restart; [`Store::stats`] reads them and
//!   the newest `seq` from one consistent snapshot.
//! - **Cheap open.** Opening never scans the events.
//! - **Expiry keeps the dedup promise.** [`Store::expire`] deletes expired
//!   events (see [`crate::retention`]) in transactions of a bounded size,
//!   each updating the counters with its deletes; an expired event's key
//!   stays in the dedup set until the dedup horizon passes, so a retry of
//!   it is still a duplicate. `unique_processed` never goes down.
//!
//! Methods are async: a backend with a blocking driver (SQLite) runs its
//! work on the blocking pool, within a bound of its own, so callers never
//! block the runtime and never need `spawn_blocking` themselves.
//!
//! [`open`] opens the store a [`StoreConfig`] names: the embedded SQLite
//! store ([`SqliteStore`]), or, with the `postgres` cargo feature (on by
//! default), a PostgreSQL database that several replicas share
//! (`PostgresStore`).

mod keydir;
mod lock;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

use std::fmt;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::watch;

pub use crate::api::{Counters, TopicSummary};
use crate::event::{Event, TopicPattern};
use crate::retention::{ExpireReport, RetentionPolicy};
use crate::search::{IndexedPattern, TextQuery};

#[cfg(feature = "postgres")]
pub use postgres::{PostgresStore, PostgresUrl};
pub use sqlite::{Backup, SNAPSHOT_KEYS_DEFAULT, SqliteOptions, SqliteStore};

/// Which store `serve` uses (`--store`).
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The embedded SQLite store in the data directory (`sqlite`, the
    /// default).
    Embedded,
    /// A PostgreSQL database (`postgres://...`), which several replicas may
    /// share.
    #[cfg(feature = "postgres")]
    Postgres(PostgresUrl),
}

impl StoreLocation {
    /// `sqlite`, or a `postgres://` / `postgresql://` URL.
    ///
    /// # Errors
    /// A message for clap to show beside `--store`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "sqlite" {
            return Ok(Self::Embedded);
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            return PostgresUrl::parse(text).map(Self::Postgres);
            #[cfg(not(feature = "postgres"))]
            return Err("this logagg was built without PostgreSQL support (cargo feature `postgres`); use `sqlite`".to_owned());
        }
        Err("expected `sqlite` or a URL such as postgres://user:password@host:5432/db".to_owned())
    }
}

/// Passwords never show: a PostgreSQL URL prints without its password.
impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embedded => f.write_str("sqlite"),
            #[cfg(feature = "postgres")]
            Self::Postgres(url) => url.fmt(f),
        }
    }
}

/// What [`open`] needs, from `ServeConfig`.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub location: StoreLocation,
    /// Where the embedded store keeps its file.
    pub data_dir: PathBuf,
    /// The embedded store's settings, durability among them. PostgreSQL
    /// commits always wait for their WAL flush (`synchronous_commit = on`).
    pub embedded: SqliteOptions,
    /// Read connections to a database server (the consumer has one more of
    /// its own, and one more follows other replicas' commits).
    pub pool_size: NonZeroUsize,
}

impl StoreConfig {
    /// Where the store is, and what to check when it cannot be opened.
    pub fn describe(&self) -> String {
        match &self.location {
            StoreLocation::Embedded => format!(
                "in {} (check --data-dir and its permissions)",
                self.data_dir.display()
            ),
            #[cfg(feature = "postgres")]
            StoreLocation::Postgres(url) => {
                format!("at {url} (check --store, and that the database is up and reachable)")
            }
        }
    }
}

/// Opens (creating or migrating its schema if needed) the store `config`
/// names.
///
/// # Errors
/// When the store cannot be reached or opened, or holds a newer schema than
/// this build knows.
pub async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    match &config.location {
        StoreLocation::Embedded => {
            let (data_dir, options) = (config.data_dir.clone(), config.embedded.clone());
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir, &options))
                .await
                .map_err(|join_error| StoreError::Database(Box::new(join_error)))??;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "postgres")]
        StoreLocation::Postgres(url) => {
            Ok(Arc::new(PostgresStore::open(url, config.pool_size).await?))
        }
    }
}

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

/// A stored event as readers see it: the event as sent plus `seq` and
/// `received_at`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredEvent {
    pub seq: u64,
    pub topic: String,
    pub event_id: String,
    pub timestamp: String,
    pub source: String,
    /// A JSON object, byte for byte as published.
    #[schema(value_type = Object)]
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

/// A page request over stored events in `seq` order: every filter is
/// optional and they combine (all must hold).
///
/// How each is served, so that a page costs the same on a store of any
/// size: `seq` bounds (`after`, `before`) and the `received_at` range are a
/// range of the events' `seq` key (`received_at` never decreases with
/// `seq`, see [`Store::append`], so a time range is a `seq` range, found by
/// binary search); a topic pattern is resolved against the topic list
/// first and read through the `(topic, seq)` index of each matching topic,
/// merged by `seq`. `source`, the event `timestamp` range and a pattern
/// matching more than [`PATTERN_TOPICS_MAX`] topics are checked row by row
/// on that range, at most [`SCAN_BUDGET`] rows per page: a page may then
/// come back short with a cursor to go on from ([`EventPage::next`]).
/// A text query is served by the full-text index (the embedded store's,
/// see [`crate::search`]), which yields the matching events in `seq`
/// order within the `seq` range; the other filters are then checked row
/// by row as above.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only topics this pattern matches (an exact topic when it has no
    /// wildcard); all topics when `None`.
    pub topic: Option<TopicPattern>,
    /// Only events with `seq > after`.
    pub after: u64,
    /// Only events with `seq < before`.
    pub before: Option<u64>,
    /// Only events committed in this range (`received_at`).
    pub received: TimeRange,
    /// Only events whose own `timestamp` is in this range.
    pub timestamp: TimeRange,
    /// Only events from this source.
    pub source: Option<String>,
    /// Only events whose payload matches this text query. Only stores
    /// with a text index take it ([`Store::text_index`] not empty), and
    /// only for topics it covers ([`crate::search::search_from`]): the
    /// HTTP layer checks both first.
    pub text: Option<TextQuery>,
    /// Newest first: the page starts at the upper bound.
    pub newest_first: bool,
    /// At most this many events.
    pub limit: usize,
}

/// A half-open range of instants, milliseconds since the Unix epoch:
/// `since <= t < until`; an absent bound is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl TimeRange {
    pub fn contains(&self, millis: i64) -> bool {
        self.since.is_none_or(|s| millis >= s) && self.until.is_none_or(|u| millis < u)
    }

    pub fn is_open(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }
}

/// Most rows a page examines for the filters that no index serves
/// (`source`, the event `timestamp`, a pattern over many topics), so a page
/// with a rare match costs a bounded read instead of a scan of the store.
pub const SCAN_BUDGET: usize = 10_000;

/// Most topics a pattern is read through, one index range each; a pattern
/// matching more is checked row by row on the `seq` range instead.
pub const PATTERN_TOPICS_MAX: usize = 64;

impl EventQuery {
    /// Whether `event` passes the filters that are checked row by row. The
    /// topic is checked here too, so a backend may read more topics than
    /// the pattern matches.
    pub fn admits(&self, event: &StoredEvent) -> bool {
        self.topic.as_ref().is_none_or(|p| p.matches(&event.topic))
            && self.source.as_ref().is_none_or(|s| *s == event.source)
            && (self.timestamp.is_open()
                || event_millis(&event.timestamp).is_some_and(|t| self.timestamp.contains(t)))
    }

    /// The stored topics this query reads through their index, or `None`
    /// when it reads every topic's rows (no pattern, or one matching more
    /// than [`PATTERN_TOPICS_MAX`] topics).
    pub fn index_topics(&self, stored: impl IntoIterator<Item = String>) -> Option<Vec<String>> {
        let pattern = self.topic.as_ref()?;
        if let Some(exact) = pattern.exact() {
            return Some(vec![exact.to_owned()]);
        }
        let matching: Vec<String> = stored
            .into_iter()
            .filter(|t| pattern.matches(t))
            .take(PATTERN_TOPICS_MAX + 1)
            .collect();
        (matching.len() <= PATTERN_TOPICS_MAX).then_some(matching)
    }
}

/// An event's own `timestamp` (stored as sent: RFC 3339, UTC when it has
/// no offset) in milliseconds, or `None` when it does not parse.
pub fn event_millis(timestamp: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(timestamp) {
        return Some(t.timestamp_millis());
    }
    timestamp
        .parse::<chrono::NaiveDateTime>()
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// One page of [`Store::events`].
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    /// In `seq` order, or newest first when asked.
    pub events: Vec<StoredEvent>,
    /// Where the next page starts (its `after`, or its `before` newest
    /// first) when more may match: the page is full, or it stopped at
    /// [`SCAN_BUDGET`]. `None` when the range holds nothing more now.
    pub next: Option<u64>,
}

/// The four statements a backend reads a page with, in its own SQL: over
/// every topic's rows by `seq`, or over one topic's `(topic, seq)` range;
/// each oldest first and newest first.
pub(crate) struct PageStatements {
    pub all: [&'static str; 2],
    pub topic: [&'static str; 2],
}

impl EventQuery {
    /// The statement a page runs, and the topics to run it for: once over
    /// every topic (`None`) when `index_topics` is `None`, else once per
    /// topic; ascending or descending as the query asks.
    pub(crate) fn page_plan(
        &self,
        index_topics: Option<Vec<String>>,
        statements: &PageStatements,
    ) -> (&'static str, Vec<Option<String>>) {
        let order = usize::from(self.newest_first);
        match index_topics {
            None => (statements.all[order], vec![None]),
            Some(topics) => (
                statements.topic[order],
                topics.into_iter().map(Some).collect(),
            ),
        }
    }
}

/// A page being filled from events offered in the query's order: the
/// filters checked row by row, the limit and the [`SCAN_BUDGET`], shared by
/// both backends.
pub(crate) struct PageFill<'q> {
    query: &'q EventQuery,
    page: EventPage,
    examined: usize,
}

impl<'q> PageFill<'q> {
    pub(crate) fn new(query: &'q EventQuery) -> Self {
        Self {
            query,
            page: EventPage::default(),
            examined: 0,
        }
    }

    /// Rows that may still be examined, and events still wanted: at least
    /// one of each while the page is not done. (The embedded store reads
    /// row by row and does not ask.)
    #[cfg(feature = "postgres")]
    pub(crate) fn room(&self) -> (usize, usize) {
        (
            SCAN_BUDGET - self.examined,
            self.query.limit - self.page.events.len(),
        )
    }

    /// Examines the next event; `true` once the page is done (full, or at
    /// the budget), its cursor at that event.
    pub(crate) fn offer(&mut self, event: StoredEvent) -> bool {
        let seq = event.seq;
        self.examined += 1;
        if self.query.admits(&event) {
            self.page.events.push(event);
        }
        let done = self.page.events.len() >= self.query.limit || self.examined >= SCAN_BUDGET;
        if done {
            self.page.next = Some(seq);
        }
        done
    }

    /// The page: with a cursor when [`offer`](Self::offer) said it was
    /// done, else without (the range holds nothing more now).
    pub(crate) fn finish(self) -> EventPage {
        self.page
    }
}

/// Merges per-topic streams (each in the query's order) into one page:
/// the shared scan both backends run over the rows their indexes give.
/// `streams` yield `Result<StoredEvent, E>`.
pub(crate) fn merge_page<E>(
    query: &EventQuery,
    mut streams: Vec<impl Iterator<Item = Result<StoredEvent, E>>>,
) -> Result<EventPage, E> {
    let mut heads: Vec<Option<StoredEvent>> = Vec::with_capacity(streams.len());
    for stream in &mut streams {
        heads.push(stream.next().transpose()?);
    }
    let mut fill = PageFill::new(query);
    loop {
        let pick = heads
            .iter()
            .enumerate()
            .filter_map(|(i, head)| head.as_ref().map(|e| (i, e.seq)))
            .reduce(|a, b| {
                let b_first = if query.newest_first {
                    b.1 > a.1
                } else {
                    b.1 < a.1
                };
                if b_first { b } else { a }
            });
        let Some((index, _)) = pick else {
            return Ok(fill.finish());
        };
        let event = heads[index].take().expect("picked a present head");
        heads[index] = streams[index].next().transpose()?;
        if fill.offer(event) {
            return Ok(fill.finish());
        }
    }
}

/// Bytes each stored event counts for beyond its fields, in
/// [`event_bytes`].
pub(crate) const EVENT_OVERHEAD_BYTES: u64 = 16;

/// The fields an event's bytes are the lengths of, as `events` columns.
const EVENT_BYTE_COLUMNS: [&str; 5] = ["topic", "event_id", "timestamp", "source", "payload"];

/// What one event weighs for `--retain-bytes`, the same on every store:
/// the UTF-8 lengths of its topic, event id, timestamp, source and payload
/// (as sent), plus [`EVENT_OVERHEAD_BYTES`]. The embedded store aims its
/// expiry steps with it (as SQL, [`event_bytes_sql`]); PostgreSQL keeps a
/// running sum of it, which is what its limit bounds.
#[cfg_attr(
    all(not(feature = "postgres"), not(test)),
    expect(
        dead_code,
        reason = "only PostgreSQL counts the bytes of what it appends"
    )
)]
pub(crate) fn event_bytes(event: &Event) -> u64 {
    [
        event.topic.as_str(),
        event.event_id.as_str(),
        &event.timestamp,
        &event.source,
        event.payload.get(),
    ]
    .iter()
    .map(|field| field.len() as u64)
    .sum::<u64>()
        + EVENT_OVERHEAD_BYTES
}

/// [`event_bytes`] as an SQL expression over an `events` row, given how
/// the backend's SQL measures one column in bytes (`octets("payload")`).
pub(crate) fn event_bytes_sql(octets: impl Fn(&str) -> String) -> String {
    let fields: Vec<String> = EVENT_BYTE_COLUMNS.iter().map(|c| octets(c)).collect();
    format!("({} + {EVENT_OVERHEAD_BYTES})", fields.join(" + "))
}

/// What one [`Store::append`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// One per event, in the order given.
    pub outcomes: Vec<Outcome>,
    /// The newest `seq` committed before this commit: the events stored by
    /// it are exactly those with `previous < seq <= last`.
    pub previous: u64,
    /// The newest `seq` after this commit; equal to `previous` when it
    /// stored only duplicates.
    pub last: u64,
}

/// The counters, topics and newest `seq`, read from one consistent snapshot
/// of the store (so `last_seq` never lags `unique_processed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    pub counters: Counters,
    pub topics: Vec<TopicSummary>,
    pub last_seq: u64,
    /// Events stored now: `unique_processed` less `expired`.
    pub stored: u64,
    /// Events deleted by retention, committed with the deletes.
    pub expired: u64,
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
    /// A database server did not accept a connection when the store was
    /// opened.
    #[error("the database did not accept a connection")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("store schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    /// An older schema that this build converts only on request.
    #[error(
        "the store in {data_dir} has schema version {found}, which this build converts but does not open; run `logagg migrate --data-dir {data_dir}` with the server stopped, then start it again",
        data_dir = .data_dir.display()
    )]
    NeedsMigration { data_dir: PathBuf, found: i64 },
    /// Another process has the embedded store's data directory open.
    #[error(
        "the data directory is in use by another logagg ({holder}, holding the lock {lock}); stop it first, or give this one another --data-dir",
        lock = .lock.display()
    )]
    Locked { lock: PathBuf, holder: String },
    #[error("disk is full")]
    DiskFull,
    /// The store cannot be reached right now (a database server that is
    /// down or unreachable); worth retrying later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("database error")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The durable store behind the API. See the module docs for the contract.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends `events` in order in one transaction, stamped `received_at`
    /// (or the newest stored event's `received_at` when that is later, so
    /// that `received_at` never decreases with `seq` even when the clock
    /// steps back or replicas' clocks differ),
    /// assigning increasing `seq` to new keys, and updates the counters in
    /// that same transaction. When it returns `Ok`, the transaction is
    /// committed with the configured durability.
    ///
    /// Only the ingest consumer calls this, one call at a time.
    ///
    /// # Errors
    /// Nothing of the call is stored when it fails.
    async fn append(
        &self,
        events: Arc<[Event]>,
        received_at: CommitTime,
    ) -> Result<Commit, StoreError>;

    /// A page of the stored events `query` selects, in `seq` order (or
    /// newest first); see [`EventQuery`] for what each filter costs.
    async fn events(&self, query: EventQuery) -> Result<EventPage, StoreError>;

    /// One event by its key, or `None` when it was never stored.
    async fn event(&self, topic: &str, event_id: &str) -> Result<Option<StoredEvent>, StoreError>;

    /// Every topic with its event count and newest `seq`, by name.
    async fn topics(&self) -> Result<Vec<TopicSummary>, StoreError>;

    /// Counters, topics and the newest `seq` from one snapshot.
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// The `seq` of the newest stored event, 0 when empty.
    async fn last_seq(&self) -> Result<u64, StoreError>;

    /// Bytes the store occupies on disk.
    async fn size_bytes(&self) -> Result<u64, StoreError>;

    /// Succeeds while the store can serve reads and take writes.
    async fn check(&self) -> Result<(), StoreError>;

    /// The newest `seq` that retention has deleted, of `topic` or of any
    /// topic; 0 when none. A reader whose cursor is below it has missed
    /// expired events. Read it *after* the page it qualifies: an expiry
    /// that deleted rows the page lacks then shows in it.
    async fn expired_through(&self, topic: Option<&str>) -> Result<u64, StoreError>;

    /// Applies `policy` as of `now`, at most `budget` rows per call: deletes
    /// expired events (oldest first within each topic, keeping their keys
    /// for the dedup horizon) and forgets keys past the horizon, in
    /// transactions that commit the counters with the deletes. With
    /// `policy.bytes_max`, it also expires the oldest events of all topics
    /// while the store is over it: the embedded store while its database's
    /// used bytes are, PostgreSQL while its running sum of the stored
    /// events' bytes (`event_bytes`) is.
    /// Returns whether more is left to do.
    ///
    /// # Errors
    /// When the store fails; what is not committed stays as it was.
    async fn expire(
        &self,
        policy: &RetentionPolicy,
        now: CommitTime,
        budget: usize,
    ) -> Result<ExpireReport, StoreError>;

    /// The topic patterns whose events this store indexes for full-text
    /// search, each with the first `seq` stored since it has been (fixed
    /// when the store is opened); empty when it indexes nothing or has no
    /// text index.
    fn text_index(&self) -> Vec<IndexedPattern> {
        Vec::new()
    }

    /// The newest `seq` committed by *other* writers sharing this store
    /// (other replicas over one database), for the live tail to catch up
    /// on. `None` when this process's consumer is the only writer, as with
    /// the embedded store: it announces every commit itself.
    fn foreign_commits(&self) -> Option<watch::Receiver<u64>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FieldLimits, WireEvent};

    #[test]
    fn an_event_weighs_its_fields_bytes_as_sent_plus_a_fixed_overhead() {
        let json = r#"{"topic":"auth.login","event_id":"é1","timestamp":"2025-01-01T00:00:00Z","source":"svc","payload":{"a": 1}}"#;
        let wire: WireEvent<'_> = serde_json::from_str(json).expect("test JSON");
        let event = Event::from_wire(&wire, 0, &FieldLimits::default()).expect("valid");
        // 10 + 3 (é is two bytes) + 20 + 3 + 8 (the payload as sent, its
        // space included) + 16.
        assert_eq!(event_bytes(&event), 60);
        assert_eq!(
            event_bytes_sql(|c| format!("len({c})")),
            "(len(topic) + len(event_id) + len(timestamp) + len(source) + len(payload) + 16)"
        );
    }
}
