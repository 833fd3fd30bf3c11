//! The embedded store: one SQLite database file in the data directory.
//!
//! This is the only file that names `rusqlite`. The schema:
//!
//! - `events`: one row per stored event; `seq` is the rowid, so it is
//!   assigned in commit order and never reused (rows are never deleted).
//!   `UNIQUE (topic, event_id)` is the dedup set: the database, not memory,
//!   decides what is a duplicate, so the set is as large as the disk and
//!   survives any restart.
//! - `topics`: per-topic event count and newest `seq`;
//! - `counters`: one row with the ingest counters.
//!
//! `topics` and `counters` are updated in the same transaction as `events`, so
//! opening the store reads a few rows and never scans the events.
//!
//! Durability: WAL mode, `synchronous=FULL` by default (the WAL is fsynced on
//! every commit), `NORMAL` on request. One write connection, owned behind a
//! mutex that only the ingest consumer takes; readers use their own
//! connections, which WAL lets run beside the writer without blocking it.
//!
//! Every call runs on tokio's blocking pool. Reads are bounded by
//! [`READERS_MAX`] permits, one per read connection: a read that finds them
//! all busy waits for one, rather than opening connection after connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use super::{
    Commit, CommitTime, Counters, EventQuery, Outcome, Store, StoreError, StoreStats, StoredEvent,
    SyncMode, TopicSummary,
};
use crate::event::Event;

/// The schema this build writes, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY,
    topic       TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    timestamp   TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (topic, event_id)
);
CREATE INDEX IF NOT EXISTS events_by_topic ON events (topic, seq);
CREATE TABLE IF NOT EXISTS topics (
    topic    TEXT    PRIMARY KEY,
    events   INTEGER NOT NULL,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (
    id                INTEGER PRIMARY KEY CHECK (id = 0),
    received          INTEGER NOT NULL,
    unique_processed  INTEGER NOT NULL,
    duplicate_dropped INTEGER NOT NULL,
    conflicts         INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters VALUES (0, 0, 0, 0, 0);
";

const INSERT_EVENT: &str = "INSERT INTO events
    (topic, event_id, timestamp, source, payload, received_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
    ON CONFLICT (topic, event_id) DO NOTHING";

const SELECT_CONTENT: &str =
    "SELECT timestamp, source, payload FROM events WHERE topic = ?1 AND event_id = ?2";

const EVENT_COLUMNS: &str = "seq, topic, event_id, timestamp, source, payload, received_at";

/// Page cache of the write connection. The dedup index is what random
/// (uuid4) ids touch; beyond this the OS page cache serves it.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// Page cache of each read connection.
const READER_CACHE_KIB: i64 = 4 * 1024;
/// WAL pages after which a commit also checkpoints (copies the WAL back into
/// the database). SQLite's default of 1,000 (4 MiB) checkpoints after nearly
/// every large commit when ids are random, since each new uuid4 key dirties
/// its own index page; 16,384 (64 MiB) lets a page written by many commits be
/// copied back once. Measured in docs/performance.md.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 16_384;
/// Read connections, and so reads running at once; opened as needed and
/// kept open.
const READERS_MAX: usize = 4;
/// How long a connection waits on a lock held by another (only checkpoints
/// and schema set-up contend).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const DB_FILE: &str = "logagg.db";

/// The SQLite implementation of [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Writer>,
    /// Idle read connections; at most [`READERS_MAX`] exist.
    readers: Mutex<Vec<Connection>>,
    /// One permit per read connection.
    read_slots: Arc<Semaphore>,
}

/// The write connection and the newest `seq` it has committed.
struct Writer {
    conn: Connection,
    last_seq: u64,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`. Blocking: call it
    /// before the server starts, or from the blocking pool.
    ///
    /// # Errors
    /// When the directory or database cannot be created or opened, or holds
    /// a newer schema than this build knows.
    pub fn open(data_dir: &Path, sync: SyncMode) -> Result<Self, StoreError> {
        let path = data_dir.join(DB_FILE);
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| open_error(e.into()))?;
        let conn = Connection::open(&path).map_err(|e| open_error(e.into()))?;
        configure_writer(&conn, sync).map_err(|e| open_error(e.into()))?;
        migrate(&conn)?;
        let last_seq = conn
            .query_row("SELECT coalesce(max(seq), 0) FROM events", [], |row| {
                count(row, 0)
            })
            .map_err(database_error)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(Writer { conn, last_seq }),
                readers: Mutex::new(Vec::new()),
                read_slots: Arc::new(Semaphore::new(READERS_MAX)),
            }),
        })
    }

    /// Runs `query` on a read connection on the blocking pool, once one of
    /// the [`READERS_MAX`] is free.
    async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.read_slots)
            .acquire_owned()
            .await
            .expect("the read semaphore is never closed");
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let _permit = permit;
            inner.read(query)
        })
        .await
    }
}

impl Inner {
    /// Runs `query` on an idle read connection, opening one when none is
    /// idle (the caller holds a permit, so at most [`READERS_MAX`] exist).
    fn read<T>(
        &self,
        query: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let idle = self.readers.lock().expect("reader pool lock").pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path).map_err(database_error)?,
        };
        let result = query(&conn).map_err(database_error);
        self.readers.lock().expect("reader pool lock").push(conn);
        result
    }
}

/// Runs blocking store work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join_error| StoreError::Database(Box::new(join_error)))?
}

fn configure_writer(conn: &Connection, sync: SyncMode) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer, and a commit is one append + fsync.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode WAL refused (got {mode})"
        )));
    }
    let synchronous = match sync {
        SyncMode::Full => "FULL",
        SyncMode::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Statements are few and reused for every commit.
    conn.set_prepared_statement_cache_capacity(16);
    Ok(())
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(database_error)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version == SCHEMA_VERSION {
        // Nothing to do, so write nothing: setting `user_version` appends a
        // frame to the WAL even when the value is unchanged, and on a full
        // disk that made the server refuse to start (issue 11). Opening an
        // existing store only reads.
        return Ok(());
    }
    conn.execute_batch(SCHEMA).map_err(database_error)?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(database_error)
}

fn database_error(error: rusqlite::Error) -> StoreError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::DiskFull,
        _ => StoreError::Database(Box::new(error)),
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn append(
        &self,
        events: Arc<[Event]>,
        received_at: CommitTime,
    ) -> Result<Commit, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut writer = inner.writer.lock().expect("writer lock");
            let previous = writer.last_seq;
            let outcomes =
                append(&mut writer.conn, &events, received_at).map_err(database_error)?;
            let last = outcomes
                .iter()
                .rev()
                .find_map(|outcome| match outcome {
                    Outcome::Stored { seq } => Some(*seq),
                    Outcome::Duplicate | Outcome::Conflict => None,
                })
                .unwrap_or(previous);
            writer.last_seq = last;
            Ok(Commit {
                outcomes,
                previous,
                last,
            })
        })
        .await
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<StoredEvent>, StoreError> {
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let after = to_sql(query.after);
        self.read(move |conn| match &query.topic {
            Some(topic) => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE topic = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                stmt.query_map(params![topic, after, limit], stored_event)?
                    .collect()
            }
            None => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                stmt.query_map(params![after, limit], stored_event)?.collect()
            }
        })
        .await
    }

    async fn event(&self, topic: &str, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let (topic, event_id) = (topic.to_owned(), event_id.to_owned());
        self.read(move |conn| {
            let sql =
                format!("SELECT {EVENT_COLUMNS} FROM events WHERE topic = ?1 AND event_id = ?2");
            conn.prepare_cached(&sql)?
                .query_row(params![topic, event_id], stored_event)
                .optional()
        })
        .await
    }

    async fn topics(&self) -> Result<Vec<TopicSummary>, StoreError> {
        self.read(read_topics).await
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.read(|conn| {
            // One read transaction: WAL gives it one snapshot for all three.
            let tx = conn.unchecked_transaction()?;
            let stats = StoreStats {
                counters: read_counters(&tx)?,
                topics: read_topics(&tx)?,
                last_seq: read_last_seq(&tx)?,
            };
            tx.commit()?;
            Ok(stats)
        })
        .await
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        self.read(read_last_seq).await
    }

    async fn size_bytes(&self) -> Result<u64, StoreError> {
        let mut total = 0;
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.inner.path.clone().into_os_string();
            path.push(suffix);
            match tokio::fs::metadata(&path).await {
                Ok(meta) => total += meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::Database(Box::new(e))),
            }
        }
        Ok(total)
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.read(|conn| conn.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}

fn read_topics(conn: &Connection) -> rusqlite::Result<Vec<TopicSummary>> {
    let mut stmt =
        conn.prepare_cached("SELECT topic, events, last_seq FROM topics ORDER BY topic")?;
    stmt.query_map([], |row| {
        Ok(TopicSummary {
            topic: row.get(0)?,
            events: count(row, 1)?,
            last_seq: count(row, 2)?,
        })
    })?
    .collect()
}

fn read_counters(conn: &Connection) -> rusqlite::Result<Counters> {
    conn.prepare_cached(
        "SELECT received, unique_processed, duplicate_dropped, conflicts FROM counters",
    )?
    .query_row([], |row| {
        Ok(Counters {
            received: count(row, 0)?,
            unique_processed: count(row, 1)?,
            duplicate_dropped: count(row, 2)?,
            conflicts: count(row, 3)?,
        })
    })
}

fn read_last_seq(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT coalesce(max(seq), 0) FROM events", [], |row| {
        count(row, 0)
    })
}

/// The write transaction: insert each event, classify the ones the unique
/// constraint turned away, then update the per-topic and global counters.
fn append(
    conn: &mut Connection,
    events: &[Event],
    received_at: CommitTime,
) -> rusqlite::Result<Vec<Outcome>> {
    // IMMEDIATE takes the write lock up front, so a checkpoint cannot make
    // the transaction fail half-way with SQLITE_BUSY.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut outcomes = Vec::with_capacity(events.len());
    let mut topics: HashMap<&str, (u64, u64)> = HashMap::new();
    {
        let mut insert = tx.prepare_cached(INSERT_EVENT)?;
        let mut stored_content = tx.prepare_cached(SELECT_CONTENT)?;
        for event in events {
            let (topic, event_id) = (event.topic.as_str(), event.event_id.as_str());
            let inserted = insert.execute(params![
                topic,
                event_id,
                event.timestamp,
                event.source,
                event.payload.get(),
                received_at.0,
            ])?;
            if inserted == 1 {
                let seq = seq_from_sql(tx.last_insert_rowid());
                let entry = topics.entry(topic).or_default();
                entry.0 += 1;
                entry.1 = seq;
                outcomes.push(Outcome::Stored { seq });
                continue;
            }
            // The constraint turned it away: only now read the stored copy,
            // so unique events cost one statement each.
            let same = stored_content.query_row(params![topic, event_id], |row| {
                Ok(event.same_content(
                    row.get_ref(0)?.as_str()?,
                    row.get_ref(1)?.as_str()?,
                    row.get_ref(2)?.as_str()?,
                ))
            })?;
            outcomes.push(if same {
                Outcome::Duplicate
            } else {
                Outcome::Conflict
            });
        }
        let mut upsert_topic = tx.prepare_cached(
            "INSERT INTO topics (topic, events, last_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (topic) DO UPDATE SET
                events = events + excluded.events, last_seq = excluded.last_seq",
        )?;
        for (topic, (count, last_seq)) in &topics {
            upsert_topic.execute(params![topic, to_sql(*count), to_sql(*last_seq)])?;
        }
        let unique: u64 = topics.values().map(|(count, _)| count).sum();
        let conflicts = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Conflict))
            .count() as u64;
        let received = events.len() as u64;
        tx.prepare_cached(
            "UPDATE counters SET received = received + ?1,
                unique_processed = unique_processed + ?2,
                duplicate_dropped = duplicate_dropped + ?3,
                conflicts = conflicts + ?4",
        )?
        .execute(params![
            to_sql(received),
            to_sql(unique),
            to_sql(received - unique),
            to_sql(conflicts)
        ])?;
    }
    tx.commit()?;
    Ok(outcomes)
}

fn stored_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let payload: String = row.get(5)?;
    let payload = RawValue::from_string(payload).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, e.into())
    })?;
    let received_at: i64 = row.get(6)?;
    Ok(StoredEvent {
        seq: seq_from_sql(row.get(0)?),
        topic: row.get(1)?,
        event_id: row.get(2)?,
        timestamp: row.get(3)?,
        source: row.get(4)?,
        payload,
        received_at: CommitTime(received_at).to_rfc3339(),
    })
}

/// `seq` is a rowid: positive and far below `i64::MAX`.
fn seq_from_sql(rowid: i64) -> u64 {
    u64::try_from(rowid).expect("rowids assigned by SQLite are positive")
}

/// Clamps a count or a client-supplied `seq` into SQLite's integer range.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Reads a count or `seq` column, which this module only ever writes as a
/// non-negative integer.
fn count(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    u64::try_from(value).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Integer, e.into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FieldLimits, WireEvent};

    fn event(topic: &str, id: &str, payload: &str) -> Event {
        let json = format!(
            r#"{{"topic":"{topic}","event_id":"{id}","timestamp":"2025-01-01T00:00:00Z","source":"s","payload":{payload}}}"#
        );
        let wire: WireEvent<'_> = serde_json::from_str(&json).expect("test JSON");
        Event::from_wire(&wire, 0, &FieldLimits::default()).expect("valid test event")
    }

    fn batch(events: &[Event]) -> Arc<[Event]> {
        events.to_vec().into()
    }

    #[tokio::test]
    async fn append_classifies_new_duplicate_and_conflict() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path(), SyncMode::Full).expect("open");
        let (a, a_again, a_changed, b) = (
            event("t", "1", "{}"),
            event("t", "1", "{ }"),
            event("t", "1", r#"{"x":1}"#),
            event("u", "1", "{}"),
        );
        let commit = store
            .append(batch(&[a, a_again, a_changed, b]), CommitTime(0))
            .await
            .expect("append");
        assert_eq!(
            commit,
            Commit {
                outcomes: vec![
                    Outcome::Stored { seq: 1 },
                    Outcome::Duplicate,
                    Outcome::Conflict,
                    Outcome::Stored { seq: 2 }
                ],
                previous: 0,
                last: 2,
            }
        );
        let stats = store.stats().await.expect("stats");
        assert_eq!(
            stats.counters,
            Counters {
                received: 4,
                unique_processed: 2,
                duplicate_dropped: 2,
                conflicts: 1
            }
        );
        assert_eq!(stats.last_seq, 2);
        assert_eq!(stats.topics.len(), 2);
        assert_eq!((stats.topics[0].events, stats.topics[0].last_seq), (1, 1));
    }

    #[tokio::test]
    async fn reopening_keeps_events_counters_and_the_seq_range() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store = SqliteStore::open(dir.path(), SyncMode::Full).expect("open");
            store
                .append(batch(&[event("t", "1", "{}")]), CommitTime(0))
                .await
                .expect("append");
        }
        let store = SqliteStore::open(dir.path(), SyncMode::Full).expect("reopen");
        let commit = store
            .append(
                batch(&[event("t", "1", "{}"), event("t", "2", "{}")]),
                CommitTime(0),
            )
            .await
            .expect("append");
        assert_eq!(
            (commit.outcomes, commit.previous, commit.last),
            (vec![Outcome::Duplicate, Outcome::Stored { seq: 2 }], 1, 2)
        );
        assert_eq!(store.last_seq().await.expect("last seq"), 2);
        assert_eq!(store.stats().await.expect("stats").counters.received, 3);
    }
}
