//! The embedded store: one SQLite database file in the data directory, and
//! an in-memory index of its keys (the keydir) with a snapshot file beside it.
//!
//! This is the only file that names `rusqlite`. The schema (version 4):
//!
//! - `events`: one row per stored event, keyed by `seq` alone, which the
//!   consumer assigns (the newest ever + 1, kept in `counters`, so a `seq`
//!   is never reused even when rows are deleted). Every insert lands at the
//!   end of the table, whatever the ids look like.
//! - `keys`: `(seq, hash)` for every stored key, appended in the same
//!   transaction: the durable list the keydir is built from, which
//!   outlives an event's row when retention deletes it.
//! - `expired_keys`: `(seq, topic, event_id, received_at)` of each expired
//!   event, written in the transaction that deletes its `events` row: the
//!   compact dedup record a keydir hit is verified against once the event
//!   is gone, kept until the dedup horizon passes (then it and its `keys`
//!   row are deleted, and its pair leaves the keydir).
//! - `topics`: per-topic count of stored events, newest `seq`, and the
//!   newest `seq` expired;
//! - `counters`: one row with the ingest counters, the newest `seq` ever
//!   assigned, the number of `keys` rows, the events expired and the
//!   newest `seq` expired;
//! - `meta`: the random key of the key hash;
//! - `event_text`: the full-text index (FTS5, contentless: it holds the
//!   tokens, not the text) of the payload values of events whose topic
//!   matched a `--search` pattern when they were stored, keyed by `seq`
//!   and deleted with the event; `topics.text_indexed` marks the topics
//!   that have rows in it, so expiry of the others never touches it;
//! - `text_index`: each `--search` pattern and the first `seq` stored
//!   since it has been indexed ([`crate::search::IndexedPattern`]).
//!
//! Versions 3 and 4 only add to the one before (tables and columns), so a
//! version-2 or -3 store is upgraded in place at open, in one short
//! transaction.
//!
//! Space: a new database is created with `auto_vacuum = INCREMENTAL`, and
//! after expiry deletes rows the free pages beyond an eighth of the file
//! are given back to the file system (`PRAGMA incremental_vacuum`). A
//! database created before version 3 has `auto_vacuum = NONE` (SQLite can
//! change that only by rewriting the whole file with `VACUUM`): its free
//! pages are reused by new events, so the file stops growing, but it does
//! not shrink.
//!
//! Dedup: the keydir ([`super::keydir`]) maps the hash of each stored key to
//! its `seq`. An event's hash gives a few candidate rows, each read and
//! compared by its full `(topic, event_id)`: a hash collision costs one more
//! read, never a wrong answer. A key with no verified candidate is new,
//! which is right only because the keydir holds every stored key: it is
//! built at open from the durable `keys` (a snapshot file plus the keys
//! after it), checked against the durable count, and given a commit's keys
//! only once that commit has succeeded. Repeats within one commit are found
//! by their full key in a map of the commit's own keys.
//!
//! `topics` and `counters` are updated in the same transaction as `events`.
//! Opening reads a few rows, the snapshot and the keys after it, never the
//! events.
//!
//! Durability: WAL mode, `synchronous=FULL` by default (the WAL is fsynced on
//! every commit), `NORMAL` on request. One write connection, owned behind a
//! mutex that only the ingest consumer takes; readers use their own
//! connections, which WAL lets run beside the writer without blocking it.
//! A thread of its own writes a snapshot of the keydir every
//! [`SqliteOptions::snapshot_keys`] new keys while commits go on.
//!
//! An open store holds its data directory's lock (`logagg.lock`, see
//! `store::lock`), so a second server or a migration on the same directory
//! refuses to start instead of sharing the files.
//!
//! Every call runs on tokio's blocking pool. Reads are bounded by
//! [`READERS_MAX`] permits, one per read connection: a read that finds them
//! all busy waits for one, rather than opening connection after connection.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use super::keydir::{self, KEYS_MAX, KeyDir, KeyHasher, SEQ_MAX, SnapshotHeader};
use super::lock::DataDirLock;
use super::{
    Commit, CommitTime, Counters, EventPage, EventQuery, Outcome, Store, StoreError, StoreStats,
    StoredEvent, SyncMode, TopicSummary,
};
use crate::event::{Event, TopicPattern};
use crate::retention::{ExpireReport, RetentionPolicy};
use crate::search::{IndexedPattern, payload_text};

/// The schema this build writes, kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = "
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    topic       TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    timestamp   TEXT    NOT NULL,
    source      TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX events_by_topic ON events (topic, seq);
CREATE TABLE keys (
    seq  INTEGER PRIMARY KEY,
    hash INTEGER NOT NULL
);
CREATE TABLE topics (
    topic    TEXT    PRIMARY KEY,
    events   INTEGER NOT NULL,
    last_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE counters (
    id                INTEGER PRIMARY KEY CHECK (id = 0),
    received          INTEGER NOT NULL,
    unique_processed  INTEGER NOT NULL,
    duplicate_dropped INTEGER NOT NULL,
    conflicts         INTEGER NOT NULL,
    last_seq          INTEGER NOT NULL,
    keys              INTEGER NOT NULL
);
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
";

/// What version 3 adds to version 2; a new database gets it right after
/// [`SCHEMA`].
const UPGRADE_TO_3: &str = "
CREATE TABLE expired_keys (
    seq         INTEGER PRIMARY KEY,
    topic       TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    received_at INTEGER NOT NULL
);
ALTER TABLE topics ADD COLUMN expired_through INTEGER NOT NULL DEFAULT 0;
ALTER TABLE counters ADD COLUMN expired INTEGER NOT NULL DEFAULT 0;
ALTER TABLE counters ADD COLUMN expired_through INTEGER NOT NULL DEFAULT 0;
";

/// What version 4 adds to version 3: the full-text index, contentless
/// (it keeps the tokens, not the text, which `events` already holds) with
/// rows deletable by `rowid` alone.
const UPGRADE_TO_4: &str = "
CREATE VIRTUAL TABLE event_text USING fts5(body, content='', contentless_delete=1);
CREATE TABLE text_index (
    pattern  TEXT    PRIMARY KEY,
    from_seq INTEGER NOT NULL
) WITHOUT ROWID;
ALTER TABLE topics ADD COLUMN text_indexed INTEGER NOT NULL DEFAULT 0;
";

/// The additions that bring version `n - 1` to `n`, from version 3 on.
const UPGRADES: [(i64, &str); 2] = [(3, UPGRADE_TO_3), (4, UPGRADE_TO_4)];

const INSERT_EVENT: &str = "INSERT INTO events
    (seq, topic, event_id, timestamp, source, payload, received_at)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

const INSERT_KEY: &str = "INSERT INTO keys (seq, hash) VALUES (?1, ?2)";

/// A candidate's key and content, to verify a keydir hit.
const SELECT_STORED_KEY: &str =
    "SELECT topic, event_id, timestamp, source, payload FROM events WHERE seq = ?1";

/// A candidate's key when its event has expired.
const SELECT_EXPIRED_KEY: &str = "SELECT topic, event_id FROM expired_keys WHERE seq = ?1";

const EVENT_COLUMNS: &str = "seq, topic, event_id, timestamp, source, payload, received_at";

/// The `meta` row holding the 16 random bytes that key the key hash.
const META_HASH_KEY: &str = "key_hash_key";

/// Page cache of the write connection. It holds the ends of the tables
/// that commits append to and the rows that duplicates are verified
/// against; beyond it the OS page cache serves.
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// Page cache of each read connection.
const READER_CACHE_KIB: i64 = 4 * 1024;
/// WAL pages after which a commit also checkpoints (copies the WAL back into
/// the database): 16,384 pages (64 MiB) instead of SQLite's 1,000, so a page
/// written by many commits is copied back once. Measured in
/// docs/performance.md.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 16_384;
/// Read connections, and so reads running at once; opened as needed and
/// kept open.
const READERS_MAX: usize = 4;
/// How long a connection waits on a lock held by another (only checkpoints
/// and schema set-up contend).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const DB_FILE: &str = "logagg.db";
/// The keydir snapshot, beside the database.
const SNAPSHOT_FILE: &str = "keydir.snapshot";

/// New keys between two snapshots of the keydir, by default: a restart
/// replays at most about this many keys from the database (~0.15 s per
/// million here, on top of reading the snapshot).
pub const SNAPSHOT_KEYS_DEFAULT: u64 = 1_000_000;

/// A snapshot waits for the keys to grow by at least 1/this.
const SNAPSHOT_GROWTH_DIVISOR: u64 = 8;

/// How [`SqliteStore::open`] sets the store up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    pub sync: SyncMode,
    /// New keys between two snapshots of the keydir (at least 1), at the
    /// least: a snapshot also waits for the keys to grow by an eighth.
    pub snapshot_keys: u64,
    /// Bits of each key hash the keydir keeps, 1 to 64. Fewer bits make
    /// keys collide (each collision costs a read, never an answer), which
    /// tests use to exercise verification; 64 otherwise.
    pub hash_bits: u32,
    /// Topic patterns whose events are indexed for full-text search
    /// (`--search`).
    pub search: Vec<TopicPattern>,
}

impl SqliteOptions {
    /// The defaults with this durability.
    pub fn new(sync: SyncMode) -> Self {
        Self {
            sync,
            snapshot_keys: SNAPSHOT_KEYS_DEFAULT,
            hash_bits: 64,
            search: Vec::new(),
        }
    }
}

/// The SQLite implementation of [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    snapshot_path: PathBuf,
    options: SqliteOptions,
    hasher: KeyHasher,
    /// Every stored key's hash and `seq`. Written only by the consumer,
    /// after a commit; read by it, by key lookups and by the snapshot.
    keydir: Arc<RwLock<KeyDir>>,
    writer: Mutex<Writer>,
    /// `options.search`, each with the first `seq` stored since it has
    /// been indexed; fixed at open.
    text_index: Vec<IndexedPattern>,
    /// The snapshot being written, if any; joined before the next one
    /// starts and when the store is dropped.
    snapshot: Mutex<Option<JoinHandle<()>>>,
    /// Idle read connections; at most [`READERS_MAX`] exist.
    readers: Mutex<Vec<Connection>>,
    /// One permit per read connection.
    read_slots: Arc<Semaphore>,
    /// The data directory's lock, held for the store's life. Last, so that
    /// it is released only after every connection has closed and the
    /// snapshot thread has been joined.
    _lock: DataDirLock,
}

/// The write connection and what it knows of the committed state.
struct Writer {
    conn: Connection,
    /// The newest `seq` ever committed.
    last_seq: u64,
    /// The full hash of the key stored at `last_seq` (0 when none).
    last_hash: u64,
    /// Rows in `keys`.
    keys: u64,
    /// `keys` when the last snapshot began.
    keys_at_snapshot: u64,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir` and loads its
    /// keydir. Blocking: call it before the server starts, or from the
    /// blocking pool.
    ///
    /// # Errors
    /// When the directory or database cannot be created or opened, is in use
    /// by another process ([`StoreError::Locked`]), holds a
    /// newer schema than this build knows or an older one that needs
    /// `logagg migrate`, or its keys disagree with its counters.
    pub fn open(data_dir: &Path, options: &SqliteOptions) -> Result<Self, StoreError> {
        assert!(
            (1..=64).contains(&options.hash_bits) && options.snapshot_keys > 0,
            "invalid store options: {options:?}"
        );
        let path = data_dir.join(DB_FILE);
        let open_error = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| open_error(e.into()))?;
        let lock = DataDirLock::acquire(data_dir)?;
        let conn = Connection::open(&path).map_err(|e| open_error(e.into()))?;
        configure_writer(&conn, options.sync).map_err(|e| open_error(e.into()))?;
        prepare_schema(&conn, data_dir)?;
        let hasher = KeyHasher::new(read_hash_key(&conn).map_err(|e| open_error(e.into()))?);
        let durable = DurableKeys::read(&conn).map_err(database_error)?;
        let text_index =
            record_text_index(&conn, &options.search, durable.last_seq).map_err(database_error)?;
        let snapshot_path = data_dir.join(SNAPSHOT_FILE);
        let (keydir, replayed) =
            load_keydir(&conn, &snapshot_path, &hasher, options, &durable).map_err(open_error)?;
        let writer = Writer {
            conn,
            last_seq: durable.last_seq,
            last_hash: durable.last_hash,
            keys: durable.keys,
            keys_at_snapshot: durable.keys - replayed,
        };
        let store = Self {
            inner: Arc::new(Inner {
                path,
                snapshot_path,
                options: options.clone(),
                hasher,
                keydir: Arc::new(RwLock::new(keydir)),
                writer: Mutex::new(writer),
                text_index,
                snapshot: Mutex::new(None),
                readers: Mutex::new(Vec::new()),
                read_slots: Arc::new(Semaphore::new(READERS_MAX)),
                _lock: lock,
            }),
        };
        {
            let mut writer = store.inner.writer.lock().expect("writer lock");
            store.inner.snapshot_if_due(&mut writer);
        }
        Ok(store)
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
    /// idle.
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

    /// Commits `events` and then gives their new keys to the keydir.
    fn append(
        &self,
        writer: &mut Writer,
        events: &[Event],
        received_at: CommitTime,
    ) -> Result<Commit, StoreError> {
        let room = events.len() as u64;
        if writer.keys + room > KEYS_MAX || writer.last_seq + room > SEQ_MAX {
            return Err(StoreError::Database(
                format!("the store is full: it holds at most {KEYS_MAX} keys").into(),
            ));
        }
        let previous = writer.last_seq;
        let appended = append(
            &mut writer.conn,
            &self.keydir,
            &self.hasher,
            &self.options.search,
            events,
            received_at,
            (writer.last_seq, writer.keys),
        )
        .map_err(database_error)?;
        // Committed: only now may the keydir answer for these keys.
        if let Some(&(hash, seq)) = appended.new_keys.last() {
            let mut keydir = self.keydir.write().expect("keydir lock");
            for &(hash, seq) in &appended.new_keys {
                keydir.insert(hash, seq);
            }
            drop(keydir);
            writer.last_seq = seq;
            writer.last_hash = hash;
            writer.keys += appended.new_keys.len() as u64;
        }
        self.snapshot_if_due(writer);
        Ok(Commit {
            outcomes: appended.outcomes,
            previous,
            last: writer.last_seq,
        })
    }

    /// Applies `policy` as of `now` in one transaction of at most `budget`
    /// rows; once it has committed, takes the forgotten keys out of the
    /// keydir and gives free pages beyond an eighth back to the file system.
    fn expire(
        &self,
        writer: &mut Writer,
        policy: &RetentionPolicy,
        now: CommitTime,
        budget: usize,
    ) -> Result<ExpireReport, StoreError> {
        let done = expire(&mut writer.conn, policy, now, budget).map_err(database_error)?;
        if !done.forgotten.is_empty() {
            // Committed: the keys are gone from the database, so the keydir
            // may let them go (it still holds every stored key).
            let mut keydir = self.keydir.write().expect("keydir lock");
            for &(hash, seq) in &done.forgotten {
                keydir.remove(hash, seq);
            }
            drop(keydir);
            writer.keys -= done.forgotten.len() as u64;
        }
        // Every call, not only those that deleted something: one call gives
        // back at most `VACUUM_PAGES_MAX` pages, so a large purge (one by
        // `--retain-bytes` in particular) leaves the rest to later rounds.
        give_back_space(&writer.conn).map_err(database_error)?;
        Ok(done.report)
    }

    /// Starts a snapshot of the keydir when enough keys were added since
    /// the last one began and none is being written. Enough is
    /// [`SqliteOptions::snapshot_keys`], and at least an eighth of the keys
    /// the last one held: a snapshot costs ~13 bytes per key held, so this
    /// bounds what snapshots write per new key (~100 bytes) however large
    /// the store grows, and a restart replays at most ~1/9 of the keys.
    fn snapshot_if_due(&self, writer: &mut Writer) {
        let interval = self
            .options
            .snapshot_keys
            .max(writer.keys_at_snapshot / SNAPSHOT_GROWTH_DIVISOR);
        // Keys forgotten past the dedup horizon make `keys` go down.
        if writer.keys.saturating_sub(writer.keys_at_snapshot) < interval {
            return;
        }
        let mut running = self.snapshot.lock().expect("snapshot lock");
        if running.as_ref().is_some_and(|job| !job.is_finished()) {
            return;
        }
        if let Some(job) = running.take() {
            report_snapshot_panic(job);
        }
        // Every key up to `last_seq` is in the keydir now, so the snapshot,
        // which copies it later, covers them all.
        let job = SnapshotJob {
            path: self.snapshot_path.clone(),
            header: SnapshotHeader {
                hash_key: self.hasher.key(),
                hash_bits: self.options.hash_bits,
                covered_seq: writer.last_seq,
                covered_hash: writer.last_hash,
            },
            keydir: Arc::clone(&self.keydir),
            // Under `--sync normal` the newest commits may not be on disk
            // yet; a snapshot must never cover a commit that could be lost.
            sync_first: (self.options.sync == SyncMode::Normal).then(|| self.path.clone()),
        };
        match std::thread::Builder::new()
            .name("logagg-snapshot".into())
            .spawn(move || job.run())
        {
            Ok(handle) => {
                writer.keys_at_snapshot = writer.keys;
                *running = Some(handle);
            }
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                "could not start a keydir snapshot; the next commit tries again"
            ),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let running = self.snapshot.get_mut().expect("snapshot lock").take();
        if let Some(job) = running {
            report_snapshot_panic(job);
        }
    }
}

fn report_snapshot_panic(job: JoinHandle<()>) {
    if job.join().is_err() {
        tracing::error!("the keydir snapshot thread panicked");
    }
}

/// One snapshot of the keydir, written on a thread of its own.
struct SnapshotJob {
    path: PathBuf,
    header: SnapshotHeader,
    keydir: Arc<RwLock<KeyDir>>,
    /// The database to fsync (with its WAL) before writing, when commits
    /// are not fsynced each.
    sync_first: Option<PathBuf>,
}

impl SnapshotJob {
    fn run(self) {
        let started = Instant::now();
        let result = self
            .sync_first
            .as_deref()
            .map_or(Ok(()), sync_database)
            .and_then(|()| keydir::write_snapshot(&self.path, &self.header, &self.keydir));
        match result {
            Ok(()) => tracing::debug!(
                covered_seq = self.header.covered_seq,
                elapsed = ?started.elapsed(),
                "keydir snapshot written"
            ),
            // Only startup time is at stake: the next open replays more.
            Err(error) => tracing::warn!(
                error = &error as &dyn std::error::Error,
                "writing a keydir snapshot failed; the next one tries again"
            ),
        }
    }
}

/// fsyncs the database file and its WAL, so every commit made so far
/// survives a power loss.
fn sync_database(path: &Path) -> std::io::Result<()> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    for file in [path.as_os_str(), wal.as_os_str()] {
        match std::fs::File::open(file) {
            Ok(file) => file.sync_all()?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What [`SqliteStore::migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The schema version found; the current one when there was nothing to
    /// do.
    pub from_version: i64,
    pub to_version: i64,
    /// Events converted.
    pub events: u64,
    /// Where the database as it was is kept, when it was converted.
    pub old_copy: Option<PathBuf>,
}

/// Where a migration builds the new database before it replaces the old.
const MIGRATING_FILE: &str = "logagg.db.migrating";
/// Where a migration keeps the old database.
const OLD_COPY_FILE: &str = "logagg.v1.db";

impl SqliteStore {
    /// Converts the store in `data_dir` to this build's schema: schema 1
    /// (dedup by a unique index on `(topic, event_id)`) to 4 (the keydir,
    /// the expired keys and the text index); schemas 2 and 3 are upgraded
    /// in place, as opening them would.
    /// The new database is built beside the old one and renamed over it at
    /// the end, so a crash at any point leaves one complete database; the old
    /// one is kept as `logagg.v1.db`. Needs the server stopped, and free
    /// space for a second copy. Blocking.
    ///
    /// # Errors
    /// When there is no store, it is in use (its data directory locked by a
    /// server, see [`StoreError::Locked`]), its schema is unknown, or an
    /// I/O or database error stops the copy (the old database is then
    /// unchanged).
    pub fn migrate(data_dir: &Path) -> Result<Migration, StoreError> {
        let path = data_dir.join(DB_FILE);
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            return Err(fail("there is no store here".into()));
        }
        let _lock = DataDirLock::acquire(data_dir)?;
        let version = release_old(&path).map_err(fail)?;
        if version == 2 || version == 3 {
            // An upgrade in place; opening the store would do the same.
            Connection::open(&path)
                .and_then(|conn| {
                    conn.busy_timeout(BUSY_TIMEOUT)?;
                    upgrade(&conn, version)
                })
                .map_err(|e| fail(e.into()))?;
            return Ok(Migration {
                from_version: version,
                to_version: SCHEMA_VERSION,
                events: 0,
                old_copy: None,
            });
        }
        if version == SCHEMA_VERSION {
            return Ok(Migration {
                from_version: version,
                to_version: SCHEMA_VERSION,
                events: 0,
                old_copy: None,
            });
        }
        if version != 1 {
            return Err(fail(
                format!("schema version {version} cannot be migrated").into(),
            ));
        }
        let new_path = data_dir.join(MIGRATING_FILE);
        let _ = std::fs::remove_file(&new_path);
        let mut hash_key = [0; 16];
        getrandom::fill(&mut hash_key)
            .map_err(|e| fail(format!("no random bytes for the key hash: {e}").into()))?;
        let events =
            copy_from_v1(&new_path, &path, KeyHasher::new(hash_key)).map_err(|e| fail(e.into()))?;
        std::fs::File::open(&new_path)
            .and_then(|file| file.sync_all())
            .map_err(|e| fail(e.into()))?;
        let old_copy = data_dir.join(OLD_COPY_FILE);
        swap_in(&path, &new_path, &old_copy).map_err(|e| fail(e.into()))?;
        remove_durably(&data_dir.join(SNAPSHOT_FILE)).map_err(|e| fail(e.into()))?;
        Ok(Migration {
            from_version: version,
            to_version: SCHEMA_VERSION,
            events,
            old_copy: Some(old_copy),
        })
    }
}

/// What [`SqliteStore::backup`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The database file written.
    pub path: PathBuf,
    pub bytes: u64,
    /// Events in it, and the newest `seq` ever committed before it began.
    pub stored: u64,
    pub last_seq: u64,
}

impl SqliteStore {
    /// Copies the store in `data_dir` into `dest_dir` (created; it must be
    /// empty or absent), while a server may go on writing to it: one read
    /// transaction of SQLite's `VACUUM INTO` on a connection of its own,
    /// opened read-only, so the copy holds exactly the commits made before
    /// it began, and every one of them. Takes no lock of the server's.
    /// The copy is written under a temporary name, fsynced, checked with
    /// `PRAGMA integrity_check`, then renamed into place; `logagg serve
    /// --data-dir DEST` opens it (rebuilding its dedup index from the
    /// stored keys). Blocking.
    ///
    /// # Errors
    /// When there is no store, `dest_dir` holds anything, or reading,
    /// writing or checking the copy fails (nothing is left in `dest_dir`
    /// under the final name then).
    pub fn backup(data_dir: &Path, dest_dir: &Path) -> Result<Backup, StoreError> {
        let source = data_dir.join(DB_FILE);
        let fail = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: data_dir.join(DB_FILE),
            source,
        };
        if !source.exists() {
            return Err(fail("there is no store here (check --data-dir)".into()));
        }
        match std::fs::read_dir(dest_dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(fail(
                        format!(
                            "{} is not empty; back up into a new or empty directory",
                            dest_dir.display()
                        )
                        .into(),
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dest_dir).map_err(|e| fail(e.into()))?;
            }
            Err(e) => return Err(fail(e.into())),
        }
        let temporary = dest_dir.join(format!("{DB_FILE}.partial"));
        let path = dest_dir.join(DB_FILE);
        let copy = || -> Result<(u64, u64), Box<dyn std::error::Error + Send + Sync>> {
            let conn = Connection::open_with_flags(
                &source,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            let version = user_version(&conn)?;
            if version != SCHEMA_VERSION {
                return Err(format!(
                    "the store has schema version {version}; this build backs up version {SCHEMA_VERSION} (start it with this build's `logagg serve` once first)"
                )
                .into());
            }
            conn.execute("VACUUM INTO ?1", [temporary.to_string_lossy()])?;
            drop(conn);
            std::fs::File::open(&temporary)?.sync_all()?;
            let copy = Connection::open(&temporary)?;
            let check: String = copy.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
            if check != "ok" {
                return Err(format!("the copy fails its integrity check: {check}").into());
            }
            let counted = copy.query_row(
                "SELECT unique_processed - expired, last_seq FROM counters",
                [],
                |row| Ok((count(row, 0)?, count(row, 1)?)),
            )?;
            Ok(counted)
        };
        let (stored, last_seq) = match copy() {
            Ok(counted) => counted,
            Err(error) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(fail(error));
            }
        };
        std::fs::rename(&temporary, &path).map_err(|e| fail(e.into()))?;
        std::fs::File::open(dest_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| fail(e.into()))?;
        let bytes = std::fs::metadata(&path).map_err(|e| fail(e.into()))?.len();
        Ok(Backup {
            path,
            bytes,
            stored,
            last_seq,
        })
    }
}

/// Checks that no one else has the database at `path` open and leaves it
/// in rollback-journal mode, its WAL merged and gone, so it is one
/// self-contained file; returns its schema version.
fn release_old(path: &Path) -> Result<i64, Box<dyn std::error::Error + Send + Sync>> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(1))?;
    let version = user_version(&conn)?;
    if version >= 2 {
        return Ok(version);
    }
    // Leaving WAL mode needs every other connection closed.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))
        .map_err(|e| format!("the store is in use; stop the server first ({e})"))?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err("the store is in use; stop the server first".into());
    }
    Ok(version)
}

/// Builds the schema-2 database at `new_path` from the schema-1 one at
/// `old_path`; returns how many events it copied.
fn copy_from_v1(new_path: &Path, old_path: &Path, hasher: KeyHasher) -> rusqlite::Result<u64> {
    let conn = Connection::open(new_path)?;
    // A crash leaves a file the next attempt deletes: no journal needed,
    // and the file is fsynced before it replaces anything.
    conn.pragma_update(None, "journal_mode", "OFF")?;
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.pragma_update(None, "cache_size", -256 * 1024)?;
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    conn.execute_batch(SCHEMA)?;
    conn.execute("ATTACH DATABASE ?1 AS v1", [old_path.to_string_lossy()])?;
    let tx = conn.unchecked_transaction()?;
    // The index is built once at the end, not row by row.
    tx.execute_batch(
        "DROP INDEX events_by_topic;
         INSERT INTO events (seq, topic, event_id, timestamp, source, payload, received_at)
             SELECT seq, topic, event_id, timestamp, source, payload, received_at
             FROM v1.events ORDER BY seq;
         CREATE INDEX events_by_topic ON events (topic, seq);
         INSERT INTO topics (topic, events, last_seq)
             SELECT topic, events, last_seq FROM v1.topics;",
    )?;
    let mut events = 0;
    {
        let mut read = tx.prepare("SELECT seq, topic, event_id FROM events ORDER BY seq")?;
        let mut insert = tx.prepare(INSERT_KEY)?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let hash = hasher.hash(row.get_ref(1)?.as_str()?, row.get_ref(2)?.as_str()?);
            insert.execute(params![seq, hash as i64])?;
            events += 1;
        }
    }
    tx.execute(
        "INSERT INTO counters
         SELECT 0, received, unique_processed, duplicate_dropped, conflicts,
                (SELECT coalesce(max(seq), 0) FROM events), ?1
         FROM v1.counters",
        [to_sql(events)],
    )?;
    tx.execute(
        "INSERT INTO meta (name, value) VALUES (?1, ?2)",
        params![META_HASH_KEY, &hasher.key()[..]],
    )?;
    add_upgrades(&tx, 2)?;
    tx.commit()?;
    conn.execute("DETACH DATABASE v1", [])?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    debug_assert!(mode.eq_ignore_ascii_case("wal"));
    Ok(events)
}

/// Keeps the old database as `old_copy` (a second name for the same file)
/// and renames the new one over `path`: at every moment `path` is one whole
/// database, the old or the new.
fn swap_in(path: &Path, new_path: &Path, old_copy: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(old_copy) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::hard_link(path, old_copy)?;
    std::fs::rename(new_path, path)?;
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
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
    // Possible only in a new database, before the first table and before
    // WAL mode; setting it on an existing one would try to write (and fail
    // on a full disk) for nothing.
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))?;
    if tables == 0 {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
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

/// Creates the schema in a new database; accepts the current one; refuses
/// others with what to do about it.
fn prepare_schema(conn: &Connection, data_dir: &Path) -> Result<(), StoreError> {
    let version = user_version(conn).map_err(database_error)?;
    match version {
        SCHEMA_VERSION => Ok(()),
        0 => create_schema(conn, data_dir),
        2 | 3 => upgrade(conn, version).map_err(database_error),
        found if found > SCHEMA_VERSION => Err(StoreError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        }),
        found => Err(StoreError::NeedsMigration {
            data_dir: data_dir.to_path_buf(),
            found,
        }),
    }
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// The schema, counters and a new hash key, in one transaction.
fn create_schema(conn: &Connection, data_dir: &Path) -> Result<(), StoreError> {
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .map_err(database_error)?;
    if tables > 0 {
        return Err(StoreError::Open {
            path: data_dir.join(DB_FILE),
            source: "the file holds tables but no logagg schema version".into(),
        });
    }
    let mut hash_key = [0; 16];
    getrandom::fill(&mut hash_key).map_err(|e| StoreError::Open {
        path: data_dir.join(DB_FILE),
        source: format!("no random bytes for the key hash: {e}").into(),
    })?;
    let create = || -> rusqlite::Result<()> {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(SCHEMA)?;
        tx.execute("INSERT INTO counters VALUES (0, 0, 0, 0, 0, 0, 0)", [])?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES (?1, ?2)",
            params![META_HASH_KEY, &hash_key[..]],
        )?;
        add_upgrades(&tx, 2)?;
        tx.commit()
    };
    create().map_err(database_error)
}

/// Brings a database of version `from` (2 or later) to this build's, in
/// one transaction: tables and columns added, no rows read.
fn upgrade(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    let tx = conn.unchecked_transaction()?;
    add_upgrades(&tx, from)?;
    tx.commit()
}

/// The additions of every version after `from`, and the version number,
/// in the transaction `tx` has open.
fn add_upgrades(tx: &rusqlite::Transaction<'_>, from: i64) -> rusqlite::Result<()> {
    for (version, sql) in UPGRADES {
        if version > from {
            tx.execute_batch(sql)?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
}

/// Brings `text_index` in line with the `--search` patterns: a pattern
/// new to it is indexed from the next `seq` on (`last_seq + 1`); one no
/// longer given is dropped, so that if it comes back it starts afresh
/// (the events stored meanwhile were not indexed). Returns the patterns
/// with their first indexed `seq`.
fn record_text_index(
    conn: &Connection,
    search: &[TopicPattern],
    last_seq: u64,
) -> rusqlite::Result<Vec<IndexedPattern>> {
    let tx = conn.unchecked_transaction()?;
    let recorded: HashMap<String, u64> = tx
        .prepare("SELECT pattern, from_seq FROM text_index")?
        .query_map([], |row| Ok((row.get(0)?, count(row, 1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut indexed = Vec::with_capacity(search.len());
    for pattern in search {
        let from_seq = match recorded.get(&pattern.to_string()) {
            Some(&from_seq) => from_seq,
            None => {
                tx.execute(
                    "INSERT INTO text_index (pattern, from_seq) VALUES (?1, ?2)",
                    params![pattern.to_string(), to_sql(last_seq + 1)],
                )?;
                last_seq + 1
            }
        };
        indexed.push(IndexedPattern {
            pattern: pattern.clone(),
            from_seq,
        });
    }
    for gone in recorded
        .keys()
        .filter(|p| !search.iter().any(|s| s.to_string() == **p))
    {
        tx.execute("DELETE FROM text_index WHERE pattern = ?1", [gone])?;
    }
    tx.commit()?;
    Ok(indexed)
}

fn read_hash_key(conn: &Connection) -> rusqlite::Result<[u8; 16]> {
    let value: Vec<u8> = conn.query_row(
        "SELECT value FROM meta WHERE name = ?1",
        [META_HASH_KEY],
        |row| row.get(0),
    )?;
    value.try_into().map_err(|value: Vec<u8>| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Blob,
            format!("the key hash key is {} bytes, not 16", value.len()).into(),
        )
    })
}

/// What the database says of its keys, from one snapshot of it.
struct DurableKeys {
    last_seq: u64,
    /// Hash of the key at `last_seq`, 0 when there is none.
    last_hash: u64,
    /// Rows in `keys`, by the counters.
    keys: u64,
}

impl DurableKeys {
    fn read(conn: &Connection) -> rusqlite::Result<Self> {
        let tx = conn.unchecked_transaction()?;
        let (last_seq, keys) = tx.query_row("SELECT last_seq, keys FROM counters", [], |row| {
            Ok((count(row, 0)?, count(row, 1)?))
        })?;
        let last_hash = stored_hash(&tx, last_seq)?.unwrap_or(0);
        tx.commit()?;
        Ok(Self {
            last_seq,
            last_hash,
            keys,
        })
    }
}

fn stored_hash(conn: &Connection, seq: u64) -> rusqlite::Result<Option<u64>> {
    conn.prepare_cached("SELECT hash FROM keys WHERE seq = ?1")?
        .query_row([to_sql(seq)], |row| row.get::<_, i64>(0))
        .optional()
        .map(|hash| hash.map(|h| h as u64))
}

/// Builds the keydir: the snapshot, when it fits the database, plus the
/// keys after it; else every key. Returns it and how many keys came from
/// the database.
///
/// # Errors
/// When the database cannot be read, or its keys disagree with its
/// counters even when rebuilt from scratch.
fn load_keydir(
    conn: &Connection,
    snapshot_path: &Path,
    hasher: &KeyHasher,
    options: &SqliteOptions,
    durable: &DurableKeys,
) -> Result<(KeyDir, u64), Box<dyn std::error::Error + Send + Sync>> {
    let started = Instant::now();
    let _ = std::fs::remove_file(keydir::temporary_path(snapshot_path));
    let snapshot = match keydir::read_snapshot(snapshot_path, hasher.key(), options.hash_bits) {
        Ok(Some((header, keydir))) if snapshot_fits(conn, &header, durable)? => {
            Some((header.covered_seq, keydir))
        }
        Ok(Some(_)) => {
            tracing::warn!("the keydir snapshot does not match the database; rebuilding the index");
            None
        }
        Ok(None) => None,
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "the keydir snapshot cannot be used; rebuilding the index"
            );
            None
        }
    };
    if snapshot.is_none() {
        // A snapshot that does not fit must never be read again: new
        // commits could make it look as if it fit.
        remove_durably(snapshot_path)?;
    }
    let from_snapshot = snapshot.is_some();
    let (covered_seq, mut keydir) =
        snapshot.unwrap_or_else(|| (0, KeyDir::with_capacity(options.hash_bits, durable.keys)));
    let mut replayed = replay_keys(conn, &mut keydir, covered_seq)?;
    if keydir.len() != durable.keys && from_snapshot {
        tracing::warn!(
            held = keydir.len(),
            keys = durable.keys,
            "the keydir snapshot and the database disagree; rebuilding the index"
        );
        remove_durably(snapshot_path)?;
        keydir = KeyDir::with_capacity(options.hash_bits, durable.keys);
        replayed = replay_keys(conn, &mut keydir, 0)?;
    }
    if keydir.len() != durable.keys {
        return Err(format!(
            "the database holds {} distinct keys but its counters say {}",
            keydir.len(),
            durable.keys
        )
        .into());
    }
    tracing::info!(
        keys = keydir.len(),
        memory_bytes = keydir.memory_bytes(),
        from_snapshot,
        replayed,
        elapsed = ?started.elapsed(),
        "dedup index loaded"
    );
    Ok((keydir, replayed))
}

/// Whether a snapshot is of this database's history: it covers no commit
/// the database lacks, and its newest key is the one stored at that `seq`.
fn snapshot_fits(
    conn: &Connection,
    header: &SnapshotHeader,
    durable: &DurableKeys,
) -> rusqlite::Result<bool> {
    if header.covered_seq > durable.last_seq {
        return Ok(false);
    }
    let stored = stored_hash(conn, header.covered_seq)?.unwrap_or(0);
    Ok(stored == header.covered_hash)
}

/// Keys read from the database before they go into the keydir together
/// (sorted by where they go): 64 MiB at most.
const REPLAY_CHUNK_KEYS: usize = 4 << 20;

/// Inserts every `(hash, seq)` with `seq > after` into `keydir`; returns
/// how many rows were read.
fn replay_keys(conn: &Connection, keydir: &mut KeyDir, after: u64) -> rusqlite::Result<u64> {
    let mut statement = conn.prepare("SELECT seq, hash FROM keys WHERE seq > ?1 ORDER BY seq")?;
    let mut rows = statement.query([to_sql(after)])?;
    let mut read = 0;
    let mut chunk: Vec<(u64, u64)> = Vec::new();
    while let Some(row) = rows.next()? {
        let seq = seq_from_sql(row.get(0)?);
        let hash: i64 = row.get(1)?;
        chunk.push((hash as u64, seq));
        read += 1;
        if chunk.len() == REPLAY_CHUNK_KEYS {
            keydir.insert_all(&mut chunk);
            chunk.clear();
        }
    }
    keydir.insert_all(&mut chunk);
    Ok(read)
}

fn remove_durably(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => match path.parent() {
            Some(dir) => std::fs::File::open(dir)?.sync_all(),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
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
            inner.append(&mut writer, &events, received_at)
        })
        .await
    }

    async fn events(&self, query: EventQuery) -> Result<EventPage, StoreError> {
        self.read(move |conn| {
            // One read transaction: the bounds and the rows from one snapshot.
            let tx = conn.unchecked_transaction()?;
            let page = read_page(&tx, &query)?;
            tx.commit()?;
            Ok(page)
        })
        .await
    }

    async fn event(&self, topic: &str, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let hash = self.inner.hasher.hash(topic, event_id);
        let candidates: Vec<u64> = self
            .inner
            .keydir
            .read()
            .expect("keydir lock")
            .candidates(hash)
            .collect();
        if candidates.is_empty() {
            return Ok(None);
        }
        let (topic, event_id) = (topic.to_owned(), event_id.to_owned());
        self.read(move |conn| {
            let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?1");
            let mut stmt = conn.prepare_cached(&sql)?;
            for seq in candidates {
                let found = stmt.query_row([to_sql(seq)], stored_event).optional()?;
                if let Some(event) = found.filter(|e| e.topic == topic && e.event_id == event_id) {
                    return Ok(Some(event));
                }
            }
            Ok(None)
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
            let (stored, expired) = tx
                .prepare_cached("SELECT unique_processed - expired, expired FROM counters")?
                .query_row([], |row| Ok((count(row, 0)?, count(row, 1)?)))?;
            let stats = StoreStats {
                counters: read_counters(&tx)?,
                topics: read_topics(&tx)?,
                last_seq: read_last_seq(&tx)?,
                stored,
                expired,
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
        let mut files: Vec<PathBuf> = ["", "-wal", "-shm"]
            .iter()
            .map(|suffix| {
                let mut path = self.inner.path.clone().into_os_string();
                path.push(suffix);
                path.into()
            })
            .collect();
        files.push(self.inner.snapshot_path.clone());
        for path in files {
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

    async fn expired_through(&self, topic: Option<&str>) -> Result<u64, StoreError> {
        let topic = topic.map(str::to_owned);
        self.read(move |conn| match topic {
            Some(topic) => conn
                .prepare_cached("SELECT expired_through FROM topics WHERE topic = ?1")?
                .query_row([topic], |row| count(row, 0))
                .optional()
                .map(Option::unwrap_or_default),
            None => conn
                .prepare_cached("SELECT expired_through FROM counters")?
                .query_row([], |row| count(row, 0)),
        })
        .await
    }

    async fn expire(
        &self,
        policy: &RetentionPolicy,
        now: CommitTime,
        budget: usize,
    ) -> Result<ExpireReport, StoreError> {
        let inner = Arc::clone(&self.inner);
        let policy = policy.clone();
        blocking(move || {
            let mut writer = inner.writer.lock().expect("writer lock");
            inner.expire(&mut writer, &policy, now, budget)
        })
        .await
    }

    fn text_index(&self) -> Vec<IndexedPattern> {
        self.inner.text_index.clone()
    }
}

/// The statements a page of `/events` runs: every one reads an index range
/// (the test `every_events_statement_reads_an_index_range` checks their
/// plans).
const SEQ_AT_OR_AFTER: &str =
    "SELECT seq, received_at FROM events WHERE seq >= ?1 ORDER BY seq LIMIT 1";
const TOPICS_FROM: &str = "SELECT topic FROM topics WHERE topic >= ?1 ORDER BY topic";
const PAGE_ALL_ASC: &str = "SELECT seq, topic, event_id, timestamp, source, payload, received_at FROM events WHERE seq > ?1 AND seq < ?2 ORDER BY seq";
const PAGE_ALL_DESC: &str = "SELECT seq, topic, event_id, timestamp, source, payload, received_at FROM events WHERE seq > ?1 AND seq < ?2 ORDER BY seq DESC";
const PAGE_TOPIC_ASC: &str = "SELECT seq, topic, event_id, timestamp, source, payload, received_at FROM events WHERE topic = ?3 AND seq > ?1 AND seq < ?2 ORDER BY seq";
const PAGE_TOPIC_DESC: &str = "SELECT seq, topic, event_id, timestamp, source, payload, received_at FROM events WHERE topic = ?3 AND seq > ?1 AND seq < ?2 ORDER BY seq DESC";
const PAGES: super::PageStatements = super::PageStatements {
    all: [PAGE_ALL_ASC, PAGE_ALL_DESC],
    topic: [PAGE_TOPIC_ASC, PAGE_TOPIC_DESC],
};
/// A text query: the index yields matching `seq`s in order within the
/// range, each event then read by its `seq`.
const PAGE_TEXT_ASC: &str = "SELECT e.seq, e.topic, e.event_id, e.timestamp, e.source, e.payload, e.received_at FROM event_text JOIN events e ON e.seq = event_text.rowid WHERE event_text MATCH ?3 AND event_text.rowid > ?1 AND event_text.rowid < ?2 ORDER BY event_text.rowid";
const PAGE_TEXT_DESC: &str = "SELECT e.seq, e.topic, e.event_id, e.timestamp, e.source, e.payload, e.received_at FROM event_text JOIN events e ON e.seq = event_text.rowid WHERE event_text MATCH ?3 AND event_text.rowid > ?1 AND event_text.rowid < ?2 ORDER BY event_text.rowid DESC";

/// One page of `query`, in the transaction `conn` has open.
fn read_page(conn: &Connection, query: &EventQuery) -> rusqlite::Result<EventPage> {
    // The seq range: exclusive bounds, narrowed by the received_at range.
    let mut low = to_sql(query.after);
    let mut high = query.before.map_or(i64::MAX, to_sql);
    if let Some(since) = query.received.since {
        low = low.max(first_seq_received_from(conn, since)? - 1);
    }
    if let Some(until) = query.received.until {
        high = high.min(first_seq_received_from(conn, until)?);
    }
    if low.saturating_add(1) >= high {
        return Ok(EventPage::default());
    }
    if let Some(text) = &query.text {
        let sql = if query.newest_first {
            PAGE_TEXT_DESC
        } else {
            PAGE_TEXT_ASC
        };
        let mut statement = conn.prepare_cached(sql)?;
        let rows = statement.query(params![low, high, text.to_fts5()])?;
        return super::merge_page(query, vec![rows.mapped(stored_event)]);
    }
    let topics = match &query.topic {
        Some(pattern) if pattern.exact().is_none() => {
            query.index_topics(topics_from(conn, &pattern.literal_prefix())?)
        }
        _ => query.index_topics(std::iter::empty()),
    };
    let (sql, topics) = query.page_plan(topics, &PAGES);
    let mut statements = Vec::with_capacity(topics.len());
    for _ in &topics {
        statements.push(conn.prepare_cached(sql)?);
    }
    let mut streams = Vec::with_capacity(topics.len());
    for (statement, topic) in statements.iter_mut().zip(&topics) {
        let rows = match topic {
            Some(topic) => statement.query(params![low, high, topic])?,
            None => statement.query(params![low, high])?,
        };
        streams.push(rows.mapped(stored_event));
    }
    super::merge_page(query, streams)
}

/// The smallest `seq` from which on every event has `received_at >= at`
/// (one past the newest when none has): a binary search over `seq`, valid
/// because `received_at` never decreases with `seq`. Each probe is one
/// lookup by `seq`, so the whole costs O(log² n) page reads at worst.
fn first_seq_received_from(conn: &Connection, at: i64) -> rusqlite::Result<i64> {
    let mut probe = conn.prepare_cached(SEQ_AT_OR_AFTER)?;
    let mut first_row_from = |seq: i64| -> rusqlite::Result<Option<(i64, i64)>> {
        probe
            .query_row([seq], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()
    };
    // Invariant: rows with seq < low are before `at`; the row found from
    // `high` on (if any) is at or after it.
    let (mut low, mut high) = (1_i64, to_sql(read_last_seq(conn)?) + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        match first_row_from(middle)? {
            Some((seq, received)) if received < at => low = seq + 1,
            _ => high = middle,
        }
    }
    Ok(low)
}

/// Stored topics from `prefix` on, in name order, for as long as they
/// start with it: a range of the `topics` table's key.
fn topics_from(conn: &Connection, prefix: &str) -> rusqlite::Result<Vec<String>> {
    let mut statement = conn.prepare_cached(TOPICS_FROM)?;
    let rows = statement.query_map([prefix], |row| row.get::<_, String>(0))?;
    let mut topics = Vec::new();
    for topic in rows {
        let topic = topic?;
        if !topic.starts_with(prefix) {
            break;
        }
        topics.push(topic);
    }
    Ok(topics)
}

fn read_topics(conn: &Connection) -> rusqlite::Result<Vec<TopicSummary>> {
    let mut stmt = conn.prepare_cached(
        "SELECT topic, events, last_seq, expired_through FROM topics ORDER BY topic",
    )?;
    stmt.query_map([], |row| {
        Ok(TopicSummary {
            topic: row.get(0)?,
            events: count(row, 1)?,
            last_seq: count(row, 2)?,
            expired_through: count(row, 3)?,
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
    conn.prepare_cached("SELECT last_seq FROM counters")?
        .query_row([], |row| count(row, 0))
}

/// What one write transaction did.
struct Appended {
    outcomes: Vec<Outcome>,
    /// `(hash, seq)` of each key it stored, in `seq` order.
    new_keys: Vec<(u64, u64)>,
}

/// The write transaction: classify each event against the keys of this
/// commit and, through the keydir, the stored ones; append the new ones
/// with their keys; update the per-topic and global counters.
/// `(last_seq, keys)` is the committed state it starts from.
///
/// Classifying needs nothing this transaction writes (repeats within it are
/// found in memory, earlier keys in committed rows), so the whole batch is
/// classified first and the new events are then inserted many rows per
/// statement.
fn append(
    conn: &mut Connection,
    keydir: &RwLock<KeyDir>,
    hasher: &KeyHasher,
    search: &[TopicPattern],
    events: &[Event],
    received_at: CommitTime,
    (last_seq, keys): (u64, u64),
) -> rusqlite::Result<Appended> {
    // IMMEDIATE takes the write lock up front, so a checkpoint cannot make
    // the transaction fail half-way with SQLITE_BUSY.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // `received_at` never decreases with `seq` (the store contract), even
    // when the clock steps back: one read of the table's last row.
    let newest: Option<i64> = tx
        .prepare_cached("SELECT received_at FROM events ORDER BY seq DESC LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?;
    let received_at = CommitTime(newest.map_or(received_at.0, |n| n.max(received_at.0)));
    let mut outcomes = Vec::with_capacity(events.len());
    // The events to store: index in `events`, and hash.
    let mut fresh: Vec<(usize, u64)> = Vec::new();
    // This commit's stored keys, by their full text: the first copy's index.
    let mut in_commit: HashMap<(&str, &str), usize, FastHash> = HashMap::default();
    let mut topics: HashMap<&str, (u64, u64), FastHash> = HashMap::default();
    {
        let mut stored_key = tx.prepare_cached(SELECT_STORED_KEY)?;
        let mut expired_key = tx.prepare_cached(SELECT_EXPIRED_KEY)?;
        let keydir = keydir.read().expect("keydir lock");
        for (index, event) in events.iter().enumerate() {
            let key = (event.topic.as_str(), event.event_id.as_str());
            if let Some(&first) = in_commit.get(&key) {
                let first = &events[first];
                let same = event.same_content(&first.timestamp, &first.source, first.payload.get());
                outcomes.push(repeat(same));
                continue;
            }
            let hash = hasher.hash(key.0, key.1);
            if let Some(same) =
                stored_copy(&mut stored_key, &mut expired_key, &keydir, hash, event)?
            {
                outcomes.push(repeat(same));
                continue;
            }
            in_commit.insert(key, index);
            fresh.push((index, hash));
            let seq = last_seq + fresh.len() as u64;
            let entry = topics.entry(key.0).or_default();
            entry.0 += 1;
            entry.1 = seq;
            outcomes.push(Outcome::Stored { seq });
        }
    }
    insert_fresh(&tx, events, &fresh, last_seq, received_at)?;
    let indexed = if search.is_empty() {
        HashMap::default()
    } else {
        index_text(&tx, search, events, &fresh, last_seq)?
    };
    {
        let mut upsert_topic = tx.prepare_cached(
            "INSERT INTO topics (topic, events, last_seq, text_indexed) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (topic) DO UPDATE SET
                events = events + excluded.events, last_seq = excluded.last_seq,
                text_indexed = max(text_indexed, excluded.text_indexed)",
        )?;
        for (topic, (count, last_seq)) in &topics {
            let text_indexed = indexed.get(topic).copied().unwrap_or(false);
            upsert_topic.execute(params![
                topic,
                to_sql(*count),
                to_sql(*last_seq),
                text_indexed
            ])?;
        }
        let unique = fresh.len() as u64;
        let conflicts = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Conflict))
            .count() as u64;
        let received = events.len() as u64;
        tx.prepare_cached(
            "UPDATE counters SET received = received + ?1,
                unique_processed = unique_processed + ?2,
                duplicate_dropped = duplicate_dropped + ?3,
                conflicts = conflicts + ?4,
                last_seq = ?5,
                keys = ?6",
        )?
        .execute(params![
            to_sql(received),
            to_sql(unique),
            to_sql(received - unique),
            to_sql(conflicts),
            to_sql(last_seq + unique),
            to_sql(keys + unique),
        ])?;
    }
    tx.commit()?;
    let new_keys = (last_seq + 1..)
        .zip(&fresh)
        .map(|(seq, &(_, hash))| (hash, seq))
        .collect();
    Ok(Appended { outcomes, new_keys })
}

/// What one expiry transaction did.
struct Expired {
    report: ExpireReport,
    /// `(hash, seq)` of each key forgotten past the dedup horizon.
    forgotten: Vec<(u64, u64)>,
}

/// The expiry transaction: for each topic whose retention is finite, moves
/// the key of each of its oldest events received before the cutoff into
/// `expired_keys` and deletes the event (in `seq` order, stopping at the
/// first one to keep, so a topic never has holes); then, over
/// `--retain-bytes`, the oldest events of all topics; then forgets the
/// expired keys received before the dedup horizon; then commits the
/// counters with it all. At most `budget` rows in all.
fn expire(
    conn: &mut Connection,
    policy: &RetentionPolicy,
    now: CommitTime,
    budget: usize,
) -> rusqlite::Result<Expired> {
    let cutoff = |keep: Duration| {
        now.0
            .saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
    };
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut left = budget;
    let (mut expired, mut expired_through) = (0_u64, 0_u64);
    let (mut still_over, mut keys_fill_limit) = (false, false);
    let topics: Vec<(String, bool)> = tx
        .prepare_cached("SELECT topic, text_indexed FROM topics WHERE events > 0 ORDER BY topic")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (topic, text_indexed) in &topics {
        if left == 0 {
            break;
        }
        let Some(keep) = policy.keep(topic).duration() else {
            continue;
        };
        let cutoff = cutoff(keep);
        let (count, last) = {
            let mut oldest = tx.prepare_cached(
                "SELECT seq, received_at FROM events WHERE topic = ?1 ORDER BY seq LIMIT ?2",
            )?;
            let mut rows = oldest.query(params![topic, to_sql(left as u64)])?;
            let (mut count, mut last) = (0_u64, 0_u64);
            while let Some(row) = rows.next()? {
                if row.get::<_, i64>(1)? >= cutoff {
                    break;
                }
                count += 1;
                last = seq_from_sql(row.get(0)?);
            }
            (count, last)
        };
        if count == 0 {
            continue;
        }
        let range = params![topic, to_sql(last)];
        tx.prepare_cached(
            "INSERT INTO expired_keys (seq, topic, event_id, received_at)
             SELECT seq, topic, event_id, received_at FROM events
             WHERE topic = ?1 AND seq <= ?2",
        )?
        .execute(range)?;
        if *text_indexed {
            tx.prepare_cached(
                "DELETE FROM event_text WHERE rowid IN
                 (SELECT seq FROM events WHERE topic = ?1 AND seq <= ?2)",
            )?
            .execute(range)?;
        }
        tx.prepare_cached("DELETE FROM events WHERE topic = ?1 AND seq <= ?2")?
            .execute(range)?;
        tx.prepare_cached(
            "UPDATE topics SET events = events - ?2, expired_through = ?3 WHERE topic = ?1",
        )?
        .execute(params![topic, to_sql(count), to_sql(last)])?;
        left -= count as usize;
        expired += count;
        expired_through = expired_through.max(last);
    }
    if let Some(bytes_max) = policy.bytes_max
        && left > 0
    {
        let (count, last, size) = expire_oldest_over(&tx, bytes_max, left)?;
        still_over = size == SizeAfter::Over;
        keys_fill_limit = size == SizeAfter::OverWithoutEvents;
        left -= count as usize;
        expired += count;
        expired_through = expired_through.max(last);
    }
    let mut forgotten = Vec::new();
    if let Some(horizon) = policy.dedup_horizon.duration()
        && left > 0
    {
        let cutoff = cutoff(horizon);
        {
            let mut oldest = tx.prepare_cached(
                "SELECT x.seq, x.received_at, k.hash FROM expired_keys x
                 JOIN keys k ON k.seq = x.seq ORDER BY x.seq LIMIT ?1",
            )?;
            let mut rows = oldest.query([to_sql(left as u64)])?;
            while let Some(row) = rows.next()? {
                if row.get::<_, i64>(1)? >= cutoff {
                    break;
                }
                forgotten.push((row.get::<_, i64>(2)? as u64, seq_from_sql(row.get(0)?)));
            }
        }
        if let Some(&(_, last)) = forgotten.last() {
            tx.prepare_cached("DELETE FROM expired_keys WHERE seq <= ?1")?
                .execute([to_sql(last)])?;
            let mut delete_key = tx.prepare_cached("DELETE FROM keys WHERE seq = ?1")?;
            for &(_, seq) in &forgotten {
                delete_key.execute([to_sql(seq)])?;
            }
            left -= forgotten.len();
        }
    }
    tx.prepare_cached(
        "UPDATE counters SET expired = expired + ?1,
            expired_through = max(expired_through, ?2), keys = keys - ?3",
    )?
    .execute(params![
        to_sql(expired),
        to_sql(expired_through),
        to_sql(forgotten.len() as u64)
    ])?;
    tx.commit()?;
    Ok(Expired {
        report: ExpireReport {
            expired,
            forgotten: forgotten.len() as u64,
            more: left == 0 || still_over,
            keys_fill_limit,
        },
        forgotten,
    })
}

/// The database's used bytes: its pages less the free ones, times the page
/// size. Read in the transaction, so it counts the transaction's own
/// deletes. Used bytes rather than the file's size: the file keeps the free
/// pages (an eighth is kept on purpose, and a store made before schema 3
/// never shrinks), and those hold no events.
fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT (p.page_count - f.freelist_count) * s.page_size
         FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s",
        [],
        |row| count(row, 0),
    )
}

/// The `--retain-bytes` part of an expiry transaction: while the used bytes
/// exceed `bytes_max`, expires the oldest events across all topics (lowest
/// `seq` first, so each topic still holds a suffix of its history), at most
/// `budget` in all, keeping their keys in `expired_keys` as expiry by age
/// does. Each step takes the oldest events whose rows add up to half the
/// excess, deletes them and measures again: a row costs more than its
/// length on its page, so aiming at the whole excess would overshoot;
/// halving ends within a few rows of the limit in some ten steps.
/// Returns how many expired, the highest `seq` among them, and where that
/// left the used bytes.
fn expire_oldest_over(
    tx: &rusqlite::Transaction<'_>,
    bytes_max: u64,
    budget: usize,
) -> rusqlite::Result<(u64, u64, SizeAfter)> {
    let (mut taken, mut last) = (0_u64, 0_u64);
    loop {
        let used = used_bytes(tx)?;
        if used <= bytes_max {
            return Ok((taken, last, SizeAfter::Under));
        }
        let left = budget - taken as usize;
        if left == 0 {
            return Ok((taken, last, SizeAfter::Over));
        }
        let mut aim = (used - bytes_max).div_ceil(2);
        let mut step = 0_u64;
        {
            let bytes = super::event_bytes_sql(|column| format!("length(CAST({column} AS BLOB))"));
            let mut oldest = tx.prepare_cached(&format!(
                "SELECT seq, {bytes} FROM events ORDER BY seq LIMIT ?1"
            ))?;
            let mut rows = oldest.query([to_sql(left as u64)])?;
            while aim > 0
                && let Some(row) = rows.next()?
            {
                step += 1;
                last = seq_from_sql(row.get(0)?);
                aim = aim.saturating_sub(count(row, 1)?);
            }
        }
        if step == 0 {
            // Nothing stored is left to expire: the rest is keys and tables.
            return Ok((taken, last, SizeAfter::OverWithoutEvents));
        }
        expire_through(tx, last)?;
        taken += step;
    }
}

/// Where the `--retain-bytes` part of an expiry transaction left the
/// database's used bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizeAfter {
    /// At or under the limit.
    Under,
    /// Still over, with events left: the budget ran out.
    Over,
    /// Still over with no event left: key records and tables fill it.
    OverWithoutEvents,
}

/// Moves the keys of every stored event with `seq <= last` (of all topics)
/// to `expired_keys`, updates their topics, and deletes them.
fn expire_through(tx: &rusqlite::Transaction<'_>, last: u64) -> rusqlite::Result<()> {
    let through = [to_sql(last)];
    tx.prepare_cached(
        "INSERT INTO expired_keys (seq, topic, event_id, received_at)
         SELECT seq, topic, event_id, received_at FROM events WHERE seq <= ?1",
    )?
    .execute(through)?;
    {
        let mut per_topic = tx.prepare_cached(
            "SELECT topic, count(*), max(seq) FROM events WHERE seq <= ?1 GROUP BY topic",
        )?;
        let mut update = tx.prepare_cached(
            "UPDATE topics SET events = events - ?2, expired_through = max(expired_through, ?3)
             WHERE topic = ?1",
        )?;
        let mut rows = per_topic.query(through)?;
        while let Some(row) = rows.next()? {
            update.execute(params![
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?
            ])?;
        }
    }
    tx.prepare_cached(
        "DELETE FROM event_text WHERE rowid IN
         (SELECT seq FROM events WHERE seq <= ?1 AND topic IN
            (SELECT topic FROM topics WHERE text_indexed))",
    )?
    .execute(through)?;
    tx.prepare_cached("DELETE FROM events WHERE seq <= ?1")?
        .execute(through)?;
    Ok(())
}

/// Free pages given back per expiry transaction at most (16 MiB of 4 KiB
/// pages), so that giving them back is as short as the transaction.
const VACUUM_PAGES_MAX: i64 = 4_096;

/// Gives the free pages beyond an eighth of the file back to the file
/// system. The eighth stays free for new events to reuse, so a steady
/// state does not shrink and regrow the file at every purge. Does nothing
/// on a database made with `auto_vacuum = NONE` (created before schema 3).
fn give_back_space(conn: &Connection) -> rusqlite::Result<()> {
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
    // Giving back k pages leaves free - k of pages - k, an eighth when
    // k = (8 free - pages) / 7.
    let excess = (8 * free - pages + 6) / 7;
    if excess > 0 {
        // The pragma yields a row per page it frees and frees the next one
        // only when stepped again: step it to the end (`execute_batch`
        // steps once, giving back a single page).
        let mut vacuum = conn.prepare(&format!(
            "PRAGMA incremental_vacuum({})",
            excess.min(VACUUM_PAGES_MAX)
        ))?;
        let mut pages = vacuum.query([])?;
        while pages.next()?.is_some() {}
    }
    Ok(())
}

/// Hashing for the maps of one commit: fast, seeded per process, never
/// persisted.
type FastHash = foldhash::fast::RandomState;

/// Rows per multi-row `INSERT`: SQLite then keeps its cursors open from row
/// to row instead of seeking from the root for each.
const ROWS_PER_INSERT: usize = 64;

/// Inserts the `fresh` events and their keys, `seq` from `last_seq + 1` on:
/// full chunks of [`ROWS_PER_INSERT`] rows per statement, the rest one by
/// one.
fn insert_fresh(
    tx: &rusqlite::Transaction<'_>,
    events: &[Event],
    fresh: &[(usize, u64)],
    last_seq: u64,
    received_at: CommitTime,
) -> rusqlite::Result<()> {
    let rows = (last_seq + 1..)
        .zip(fresh)
        .map(|(seq, &(index, hash))| Row {
            seq,
            event: &events[index],
            hash,
            received_at,
        });
    let full = fresh.len() - fresh.len() % ROWS_PER_INSERT;
    let mut insert_events = tx.prepare_cached(&multi_row(INSERT_EVENT, ROWS_PER_INSERT))?;
    let mut insert_keys = tx.prepare_cached(&multi_row(INSERT_KEY, ROWS_PER_INSERT))?;
    let mut insert_event = tx.prepare_cached(INSERT_EVENT)?;
    let mut insert_key = tx.prepare_cached(INSERT_KEY)?;
    for (position, row) in rows.enumerate() {
        if position < full {
            let offset = position % ROWS_PER_INSERT;
            row.bind(&mut insert_events, &mut insert_keys, offset)?;
            if offset == ROWS_PER_INSERT - 1 {
                insert_events.raw_execute()?;
                insert_keys.raw_execute()?;
            }
        } else {
            row.bind(&mut insert_event, &mut insert_key, 0)?;
            insert_event.raw_execute()?;
            insert_key.raw_execute()?;
        }
    }
    Ok(())
}

/// Adds the payload text of each `fresh` event whose topic a `search`
/// pattern matches to the full-text index, under its `seq`. Returns, for
/// each topic of the fresh events, whether it is indexed.
fn index_text<'e>(
    tx: &rusqlite::Transaction<'_>,
    search: &[TopicPattern],
    events: &'e [Event],
    fresh: &[(usize, u64)],
    last_seq: u64,
) -> rusqlite::Result<HashMap<&'e str, bool, FastHash>> {
    let mut indexed: HashMap<&str, bool, FastHash> = HashMap::default();
    let mut insert = tx.prepare_cached("INSERT INTO event_text (rowid, body) VALUES (?1, ?2)")?;
    for (seq, &(index, _)) in (last_seq + 1..).zip(fresh) {
        let event = &events[index];
        let topic = event.topic.as_str();
        let wanted = *indexed
            .entry(topic)
            .or_insert_with(|| search.iter().any(|p| p.matches(topic)));
        if wanted {
            insert.execute(params![to_sql(seq), payload_text(event.payload.get())])?;
        }
    }
    Ok(indexed)
}

/// One new event's row in `events` and in `keys`.
struct Row<'a> {
    seq: u64,
    event: &'a Event,
    hash: u64,
    received_at: CommitTime,
}

impl Row<'_> {
    /// Binds this row as the `offset`-th row of the two inserts.
    fn bind(
        &self,
        insert_event: &mut rusqlite::Statement<'_>,
        insert_key: &mut rusqlite::Statement<'_>,
        offset: usize,
    ) -> rusqlite::Result<()> {
        let (at, seq) = (offset * 7, to_sql(self.seq));
        insert_event.raw_bind_parameter(at + 1, seq)?;
        insert_event.raw_bind_parameter(at + 2, self.event.topic.as_str())?;
        insert_event.raw_bind_parameter(at + 3, self.event.event_id.as_str())?;
        insert_event.raw_bind_parameter(at + 4, self.event.timestamp.as_str())?;
        insert_event.raw_bind_parameter(at + 5, self.event.source.as_str())?;
        insert_event.raw_bind_parameter(at + 6, self.event.payload.get())?;
        insert_event.raw_bind_parameter(at + 7, self.received_at.0)?;
        insert_key.raw_bind_parameter(offset * 2 + 1, seq)?;
        insert_key.raw_bind_parameter(offset * 2 + 2, self.hash as i64)?;
        Ok(())
    }
}

/// `insert` (an `INSERT ... VALUES (?1, ..., ?n)`) for `rows` rows, with
/// anonymous parameters numbered in order.
fn multi_row(insert: &str, rows: usize) -> String {
    let (head, values) = insert.split_once("VALUES").expect("an INSERT with VALUES");
    let columns = values.matches('?').count();
    let row = format!("({})", vec!["?"; columns].join(", "));
    format!("{head}VALUES {}", vec![row; rows].join(", "))
}

/// A later copy of a stored key: a duplicate, and a conflict too when its
/// content differs.
fn repeat(same_content: bool) -> Outcome {
    if same_content {
        Outcome::Duplicate
    } else {
        Outcome::Conflict
    }
}

/// Verifies the keydir's candidates for `event`'s key against the stored
/// rows: `Some(same content)` when one of them holds that key, `None` when
/// none does (the key is new). An expired event's key is verified against
/// its dedup record, which holds no content: a copy of it is a duplicate
/// (`Some(true)`), whatever it holds.
fn stored_copy(
    stored_key: &mut rusqlite::CachedStatement<'_>,
    expired_key: &mut rusqlite::CachedStatement<'_>,
    keydir: &KeyDir,
    hash: u64,
    event: &Event,
) -> rusqlite::Result<Option<bool>> {
    for seq in keydir.candidates(hash) {
        let row = stored_key
            .query_row([to_sql(seq)], |row| {
                let same_key = row.get_ref(0)?.as_str()? == event.topic.as_str()
                    && row.get_ref(1)?.as_str()? == event.event_id.as_str();
                if !same_key {
                    return Ok(None);
                }
                Ok(Some(event.same_content(
                    row.get_ref(2)?.as_str()?,
                    row.get_ref(3)?.as_str()?,
                    row.get_ref(4)?.as_str()?,
                )))
            })
            .optional()?;
        match row {
            Some(Some(same)) => return Ok(Some(same)),
            Some(None) => continue,
            // No event at this seq: it may have expired.
            None => {}
        }
        let expired = expired_key
            .query_row([to_sql(seq)], |row| {
                Ok(row.get_ref(0)?.as_str()? == event.topic.as_str()
                    && row.get_ref(1)?.as_str()? == event.event_id.as_str())
            })
            .optional()?;
        if expired == Some(true) {
            return Ok(Some(true));
        }
    }
    Ok(None)
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

/// `seq` is a rowid this module wrote: positive and far below `i64::MAX`.
fn seq_from_sql(rowid: i64) -> u64 {
    u64::try_from(rowid).expect("seqs written by the store are positive")
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
    use std::collections::BTreeMap;

    use proptest::prelude::*;

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

    /// The plan SQLite picks for `sql`, one line per step.
    fn plan(conn: &Connection, sql: &str) -> String {
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("a statement to explain");
        let count = statement.parameter_count();
        let values: Vec<i64> = vec![1; count];
        let rows = statement
            .query_map(rusqlite::params_from_iter(values), |row| {
                row.get::<_, String>(3)
            })
            .expect("a plan");
        rows.map(|r| r.expect("a plan step"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn every_events_statement_reads_an_index_range() {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = Connection::open(dir.path().join("plan.db")).expect("a database");
        conn.execute_batch(SCHEMA).expect("the schema");
        for (_, upgrade) in UPGRADES {
            conn.execute_batch(upgrade).expect("the upgrades");
        }
        let expected = [
            (
                SEQ_AT_OR_AFTER,
                "SEARCH events USING INTEGER PRIMARY KEY (rowid>?)",
            ),
            (TOPICS_FROM, "SEARCH topics USING PRIMARY KEY (topic>?)"),
            (
                PAGE_ALL_ASC,
                "SEARCH events USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
            ),
            (
                PAGE_ALL_DESC,
                "SEARCH events USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)",
            ),
            (
                PAGE_TOPIC_ASC,
                "SEARCH events USING INDEX events_by_topic (topic=? AND seq>? AND seq<?)",
            ),
            (
                PAGE_TOPIC_DESC,
                "SEARCH events USING INDEX events_by_topic (topic=? AND seq>? AND seq<?)",
            ),
            // FTS5's plan: `M` a full-text match, `>` and `<` the rowid
            // (seq) range, 64 the rowid order served by the index (192:
            // descending; no sort step follows); then one lookup by seq per
            // match.
            (
                PAGE_TEXT_ASC,
                "SCAN event_text VIRTUAL TABLE INDEX 64:M1><; SEARCH e USING INTEGER PRIMARY KEY (rowid=?)",
            ),
            (
                PAGE_TEXT_DESC,
                "SCAN event_text VIRTUAL TABLE INDEX 192:M1><; SEARCH e USING INTEGER PRIMARY KEY (rowid=?)",
            ),
        ];
        for (sql, step) in expected {
            let plan = plan(&conn, sql);
            // One index range, no sort, no full scan.
            assert_eq!(plan, step, "plan of {sql}");
        }
    }

    /// The index rows of expired events are deleted with them, by either
    /// kind of expiry, not merely hidden by the join with `events`; a topic
    /// that was never indexed is expired without touching the index.
    #[tokio::test]
    async fn expiry_deletes_the_index_rows_of_the_events_it_deletes() {
        use crate::retention::{Keep, RetainRule};
        let dir = tempfile::tempdir().expect("temp dir");
        let limits = FieldLimits::default();
        let store = open(
            dir.path(),
            SqliteOptions {
                search: vec![TopicPattern::parse("t.>", &limits).expect("a pattern")],
                ..SqliteOptions::new(SyncMode::Normal)
            },
        );
        let needles = |topic: &str, from: usize| -> Arc<[Event]> {
            (from..from + 10)
                .map(|i| event(topic, &i.to_string(), r#"{"w":"needle"}"#))
                .collect::<Vec<_>>()
                .into()
        };
        for topic in ["t.a", "t.b", "u"] {
            store
                .append(needles(topic, 0), CommitTime(1_000))
                .await
                .expect("append");
        }
        let db = Connection::open(dir.path().join(DB_FILE)).expect("a read connection");
        let indexed = || -> i64 {
            db.query_row(
                "SELECT count(*) FROM event_text WHERE event_text MATCH 'needle'",
                [],
                |row| row.get(0),
            )
            .expect("count")
        };
        let flagged = || -> Vec<String> {
            db.prepare("SELECT topic FROM topics WHERE text_indexed ORDER BY topic")
                .and_then(|mut s| s.query_map([], |row| row.get(0))?.collect())
                .expect("flags")
        };
        assert_eq!(
            (indexed(), flagged()),
            (20, vec!["t.a".into(), "t.b".into()])
        );
        // By age, one topic.
        let policy = RetentionPolicy {
            rules: vec![RetainRule {
                pattern: TopicPattern::parse("t.a", &limits).expect("a pattern"),
                keep: Keep::For(Duration::from_secs(1)),
            }],
            default: Keep::Forever,
            dedup_horizon: Keep::Forever,
            bytes_max: None,
        };
        let report = store
            .expire(&policy, CommitTime(10_000), 1_000)
            .await
            .expect("expire");
        assert_eq!(report.expired, 10);
        assert_eq!(indexed(), 10);
        // By size, every topic.
        let policy = RetentionPolicy {
            rules: Vec::new(),
            default: Keep::Forever,
            dedup_horizon: Keep::Forever,
            bytes_max: Some(1),
        };
        let report = store
            .expire(&policy, CommitTime(10_000), 1_000)
            .await
            .expect("expire");
        assert_eq!(report.expired, 20);
        assert_eq!(indexed(), 0);
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity check");
        assert_eq!(check, "ok");
        db.execute(
            "INSERT INTO event_text (event_text) VALUES ('integrity-check')",
            [],
        )
        .expect("the full-text index is consistent");
    }

    /// Whatever text `q` holds, a query it parses into is valid FTS5: it
    /// finds its words or nothing, never a syntax error (which would be a
    /// 500 for the reader).
    #[test]
    fn every_text_query_that_parses_runs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(
            dir.path(),
            &SqliteOptions {
                search: vec![TopicPattern::everything()],
                ..SqliteOptions::new(SyncMode::Normal)
            },
        )
        .expect("open");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime");
        runtime
            .block_on(store.append(
                batch(&[event("t", "1", r#"{"m":"naïve café ² ٣ ⅷ a*b \"q\" x-y"}"#)]),
                CommitTime(0),
            ))
            .expect("append");
        let search = |q: &str| {
            let Ok(text) = crate::search::TextQuery::parse(q) else {
                return Ok(0);
            };
            let query = EventQuery {
                text: Some(text),
                limit: 10,
                ..EventQuery::default()
            };
            runtime
                .block_on(store.events(query))
                .map(|p| p.events.len())
        };
        for (q, found) in [
            ("naive", 1),
            ("CAFÉ", 1),
            ("x-y", 1),
            ("a*b", 1),
            ("\"q\"", 1),
            ("y-x", 0),
        ] {
            assert_eq!(search(q).expect(q), found, "{q}");
        }
        proptest!(ProptestConfig::with_cases(500), |(q in "\\PC{0,40}")| {
            prop_assert!(search(&q).is_ok(), "{:?}: {:?}", q, search(&q));
        });
        for q in [
            "²",
            "٣",
            "ⅷ",
            "\u{301}a",
            "a\u{200b}b",
            "NEAR(a b)",
            "a OR b",
            "-a",
            "^a",
            "a:b",
            "{a}",
        ] {
            assert!(search(q).is_ok(), "{q}: {:?}", search(q));
        }
    }

    #[tokio::test]
    async fn a_rare_match_comes_back_in_short_pages_with_a_cursor() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), SqliteOptions::new(SyncMode::Normal));
        let rows = super::super::SCAN_BUDGET + 50;
        store
            .append(numbered("t", 0..rows), CommitTime(0))
            .await
            .expect("append");
        let query = |after| EventQuery {
            after,
            source: Some("elsewhere".to_owned()),
            limit: 10,
            ..EventQuery::default()
        };
        let first = store.events(query(0)).await.expect("a page");
        let budget = super::super::SCAN_BUDGET as u64;
        assert_eq!((first.events.len(), first.next), (0, Some(budget)));
        let second = store.events(query(budget)).await.expect("a page");
        assert_eq!((second.events.len(), second.next), (0, None));
    }

    fn numbered(topic: &str, ids: std::ops::Range<usize>) -> Arc<[Event]> {
        ids.map(|i| event(topic, &i.to_string(), "{}"))
            .collect::<Vec<_>>()
            .into()
    }

    fn options(hash_bits: u32, snapshot_keys: u64) -> SqliteOptions {
        SqliteOptions {
            sync: SyncMode::Full,
            snapshot_keys,
            hash_bits,
            search: Vec::new(),
        }
    }

    fn open(dir: &Path, options: SqliteOptions) -> SqliteStore {
        SqliteStore::open(dir, &options).expect("open")
    }

    async fn all_new(store: &SqliteStore, events: Arc<[Event]>) -> bool {
        let commit = store.append(events, CommitTime(0)).await.expect("append");
        commit
            .outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Stored { .. }))
    }

    async fn all_duplicates(store: &SqliteStore, events: Arc<[Event]>) -> bool {
        let commit = store.append(events, CommitTime(0)).await.expect("append");
        commit.outcomes.iter().all(|o| *o == Outcome::Duplicate) && commit.previous == commit.last
    }

    #[tokio::test]
    async fn append_classifies_new_duplicate_and_conflict_at_any_hash_width() {
        for hash_bits in [64, 1] {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = open(dir.path(), options(hash_bits, 1_000));
            let (a, a_again, a_changed, b) = (
                event("t", "1", "{}"),
                event("t", "1", "{ }"),
                event("t", "1", r#"{"x":1}"#),
                event("u", "1", "{}"),
            );
            let first = store
                .append(
                    batch(&[a.clone(), a_again.clone(), b.clone()]),
                    CommitTime(0),
                )
                .await
                .expect("append");
            assert_eq!(
                first,
                Commit {
                    outcomes: vec![
                        Outcome::Stored { seq: 1 },
                        Outcome::Duplicate,
                        Outcome::Stored { seq: 2 }
                    ],
                    previous: 0,
                    last: 2,
                },
                "{hash_bits} bits"
            );
            // The same keys in a later commit go through the keydir.
            let second = store
                .append(batch(&[a_changed, b, a_again]), CommitTime(0))
                .await
                .expect("append");
            assert_eq!(
                second,
                Commit {
                    outcomes: vec![Outcome::Conflict, Outcome::Duplicate, Outcome::Duplicate],
                    previous: 2,
                    last: 2,
                },
                "{hash_bits} bits"
            );
            let stats = store.stats().await.expect("stats");
            assert_eq!(
                stats.counters,
                Counters {
                    received: 6,
                    unique_processed: 2,
                    duplicate_dropped: 4,
                    conflicts: 1
                }
            );
            assert_eq!(stats.last_seq, 2);
            assert_eq!(stats.topics.len(), 2);
            assert_eq!((stats.topics[0].events, stats.topics[0].last_seq), (1, 1));
        }
    }

    #[tokio::test]
    async fn reopening_keeps_events_counters_and_the_seq_range() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let store = open(dir.path(), options(64, 1_000));
            assert!(all_new(&store, batch(&[event("t", "1", "{}")])).await);
        }
        let store = open(dir.path(), options(64, 1_000));
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

    #[tokio::test]
    async fn a_lookup_by_key_finds_only_that_key_when_every_hash_collides() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), options(1, 1_000));
        assert!(all_new(&store, numbered("a", 0..50)).await);
        assert!(all_new(&store, numbered("b", 0..50)).await);
        for (topic, id) in [("a", "7"), ("b", "7"), ("b", "49")] {
            let found = store
                .event(topic, id)
                .await
                .expect("lookup")
                .expect("found");
            assert_eq!((found.topic.as_str(), found.event_id.as_str()), (topic, id));
        }
        assert!(store.event("a", "50").await.expect("lookup").is_none());
        assert!(store.event("c", "7").await.expect("lookup").is_none());
    }

    #[tokio::test]
    async fn reopening_loads_the_snapshot_and_replays_the_keys_after_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let snapshot = dir.path().join(SNAPSHOT_FILE);
        {
            let store = open(dir.path(), options(64, 100));
            for chunk in 0..5 {
                assert!(all_new(&store, numbered("t", chunk * 60..chunk * 60 + 60)).await);
            }
        }
        // Dropping the store waited for the snapshot being written.
        let (header, _) = keydir::read_snapshot(&snapshot, read_key(dir.path()), 64)
            .expect("readable")
            .expect("a snapshot was written");
        assert!((100..=300).contains(&header.covered_seq), "{header:?}");
        let store = open(dir.path(), options(64, 100));
        assert!(all_duplicates(&store, numbered("t", 0..300)).await);
        assert!(all_new(&store, numbered("t", 300..310)).await);
    }

    fn read_key(dir: &Path) -> [u8; 16] {
        let conn = Connection::open(dir.join(DB_FILE)).expect("open");
        read_hash_key(&conn).expect("hash key")
    }

    #[tokio::test]
    async fn a_damaged_snapshot_is_ignored_and_the_keydir_rebuilt() {
        let dir = tempfile::tempdir().expect("temp dir");
        let snapshot = dir.path().join(SNAPSHOT_FILE);
        {
            let store = open(dir.path(), options(64, 10));
            assert!(all_new(&store, numbered("t", 0..100)).await);
        }
        let mut bytes = std::fs::read(&snapshot).expect("a snapshot was written");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&snapshot, &bytes).expect("damage it");
        let store = open(dir.path(), options(64, 1_000));
        assert!(!snapshot.exists(), "the damaged snapshot is removed");
        assert!(all_duplicates(&store, numbered("t", 0..100)).await);
    }

    #[tokio::test]
    async fn a_snapshot_newer_than_the_database_is_not_used() {
        let dir = tempfile::tempdir().expect("temp dir");
        let snapshot = dir.path().join(SNAPSHOT_FILE);
        let old_db = dir.path().join("old.db");
        {
            let store = open(dir.path(), options(64, 1_000_000));
            assert!(all_new(&store, numbered("t", 0..50)).await);
        }
        std::fs::copy(dir.path().join(DB_FILE), &old_db).expect("copy");
        let mut next = 50;
        {
            // Commit until a snapshot covers more than the 50 (the one
            // taken at open covers exactly those).
            let store = open(dir.path(), options(64, 10));
            let key = read_key(dir.path());
            loop {
                assert!(all_new(&store, numbered("t", next..next + 10)).await);
                next += 10;
                let covered = keydir::read_snapshot(&snapshot, key, 64)
                    .ok()
                    .flatten()
                    .map_or(0, |(header, _)| header.covered_seq);
                if covered > 50 {
                    break;
                }
                assert!(next < 1_000, "no snapshot beyond seq 50 was written");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // The database goes back to 50 events (a lost commit, a restored
        // copy); the snapshot covers more.
        std::fs::copy(&old_db, dir.path().join(DB_FILE)).expect("restore");
        let store = open(dir.path(), options(64, 1_000_000));
        assert!(
            !snapshot.exists(),
            "the snapshot from the future is removed"
        );
        assert!(all_duplicates(&store, numbered("t", 0..50)).await);
        // Seqs 51.. are taken again, by other keys than the snapshot knew.
        assert!(all_new(&store, numbered("u", 0..120)).await);
        assert!(all_new(&store, numbered("t", 50..next)).await);
    }

    /// Schema version 1, as the builds before the keydir wrote it.
    const SCHEMA_V1: &str = "
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, event_id TEXT NOT NULL,
            timestamp TEXT NOT NULL, source TEXT NOT NULL, payload TEXT NOT NULL,
            received_at INTEGER NOT NULL, UNIQUE (topic, event_id));
        CREATE INDEX events_by_topic ON events (topic, seq);
        CREATE TABLE topics (topic TEXT PRIMARY KEY, events INTEGER NOT NULL,
            last_seq INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE counters (id INTEGER PRIMARY KEY CHECK (id = 0), received INTEGER NOT NULL,
            unique_processed INTEGER NOT NULL, duplicate_dropped INTEGER NOT NULL,
            conflicts INTEGER NOT NULL);
        INSERT INTO counters VALUES (0, 5, 3, 2, 1);
        INSERT INTO events VALUES
            (1, 'a', '1', '2025-01-01T00:00:00Z', 's', '{}', 1000),
            (2, 'b', '1', '2025-01-01T00:00:00Z', 's', '{}', 1000),
            (3, 'a', '2', '2025-01-01T00:00:00Z', 's', '{}', 2000);
        INSERT INTO topics VALUES ('a', 2, 3), ('b', 1, 2);
        PRAGMA journal_mode = WAL;
        PRAGMA user_version = 1;
    ";

    #[tokio::test]
    async fn a_schema_1_store_is_refused_until_migrated_and_keeps_everything() {
        let dir = tempfile::tempdir().expect("temp dir");
        Connection::open(dir.path().join(DB_FILE))
            .and_then(|conn| conn.execute_batch(SCHEMA_V1))
            .expect("a schema 1 store");
        let refused = SqliteStore::open(dir.path(), &options(64, 1_000)).err();
        assert!(
            matches!(refused, Some(StoreError::NeedsMigration { found: 1, .. })),
            "{refused:?}"
        );
        let message = refused.expect("refused").to_string();
        assert!(message.contains("logagg migrate --data-dir"), "{message}");

        let migration = SqliteStore::migrate(dir.path()).expect("migrate");
        assert_eq!((migration.from_version, migration.events), (1, 3));
        assert!(migration.old_copy.expect("kept").exists());
        let again = SqliteStore::migrate(dir.path()).expect("migrate again");
        assert_eq!((again.from_version, again.old_copy), (SCHEMA_VERSION, None));

        let store = open(dir.path(), options(64, 1_000));
        let stats = store.stats().await.expect("stats");
        assert_eq!(
            (
                stats.counters.received,
                stats.counters.conflicts,
                stats.last_seq
            ),
            (5, 1, 3)
        );
        assert_eq!(stats.topics.len(), 2);
        let found = store.event("a", "2").await.expect("lookup").expect("found");
        assert_eq!(
            (found.seq, found.received_at.as_str()),
            (3, "1970-01-01T00:00:02.000Z")
        );
        let commit = store
            .append(
                batch(&[
                    event("a", "1", "{}"),
                    event("b", "1", "{}"),
                    event("b", "2", "{}"),
                ]),
                CommitTime(0),
            )
            .await
            .expect("append");
        assert_eq!(
            commit.outcomes,
            vec![
                Outcome::Duplicate,
                Outcome::Duplicate,
                Outcome::Stored { seq: 4 }
            ]
        );
    }

    /// One step of the model test.
    #[derive(Debug, Clone)]
    enum Step {
        /// Events as (topic, id, content) indexes.
        Append(Vec<(usize, usize, usize)>),
        /// Close the store and open it again (with a snapshot, when one
        /// was due).
        Reopen,
    }

    const TOPICS: [&str; 2] = ["m.a", "m.b"];
    const PAYLOADS: [&str; 3] = ["{}", r#"{"v":1}"#, r#"{ "v" : 1 }"#];

    fn model_event((topic, id, content): (usize, usize, usize)) -> Event {
        event(TOPICS[topic], &id.to_string(), PAYLOADS[content])
    }

    /// The first-stored content of each key, and the keys in `seq` order.
    #[derive(Default)]
    struct Model {
        stored: BTreeMap<(usize, usize), usize>,
        order: Vec<(usize, usize)>,
        counters: Counters,
    }

    impl Model {
        fn append(&mut self, events: &[(usize, usize, usize)]) -> Commit {
            let previous = self.order.len() as u64;
            let outcomes = events
                .iter()
                .map(|&(topic, id, content)| {
                    self.counters.received += 1;
                    match self.stored.get(&(topic, id)) {
                        None => {
                            self.stored.insert((topic, id), content);
                            self.order.push((topic, id));
                            self.counters.unique_processed += 1;
                            Outcome::Stored {
                                seq: self.order.len() as u64,
                            }
                        }
                        Some(&first) => {
                            self.counters.duplicate_dropped += 1;
                            // Payloads 1 and 2 are the same JSON value.
                            if first == content
                                || first.min(content) == 1 && first.max(content) == 2
                            {
                                Outcome::Duplicate
                            } else {
                                self.counters.conflicts += 1;
                                Outcome::Conflict
                            }
                        }
                    }
                })
                .collect();
            Commit {
                outcomes,
                previous,
                last: self.order.len() as u64,
            }
        }
    }

    fn step() -> impl Strategy<Value = Step> {
        let event = (0..TOPICS.len(), 0..6usize, 0..PAYLOADS.len());
        prop_oneof![
            4 => prop::collection::vec(event, 1..8).prop_map(Step::Append),
            1 => Just(Step::Reopen),
        ]
    }

    async fn check_against_model(
        options: SqliteOptions,
        steps: Vec<Step>,
    ) -> Result<(), TestCaseError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = open(dir.path(), options.clone());
        let mut model = Model::default();
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Append(events) => {
                    let sent: Vec<Event> = events.iter().copied().map(model_event).collect();
                    let commit = store
                        .append(batch(&sent), CommitTime(0))
                        .await
                        .expect("append");
                    prop_assert_eq!(commit, model.append(events), "step {}", i);
                }
                Step::Reopen => {
                    drop(store);
                    store = open(dir.path(), options.clone());
                }
            }
        }
        let stats = store.stats().await.expect("stats");
        prop_assert_eq!(&stats.counters, &model.counters);
        prop_assert_eq!(stats.last_seq, model.order.len() as u64);
        let events = store
            .events(EventQuery {
                limit: 100,
                ..EventQuery::default()
            })
            .await
            .expect("events");
        let keys: Vec<(String, String)> = events
            .events
            .iter()
            .map(|e| (e.topic.clone(), e.event_id.clone()))
            .collect();
        let expected: Vec<(String, String)> = model
            .order
            .iter()
            .map(|&(topic, id)| (TOPICS[topic].to_owned(), id.to_string()))
            .collect();
        prop_assert_eq!(keys, expected);
        for (topic, name) in TOPICS.iter().enumerate() {
            for id in 0..6 {
                let found = store.event(name, &id.to_string()).await.expect("lookup");
                let content = found.map(|e| e.payload.get().to_owned());
                let expected = model
                    .stored
                    .get(&(topic, id))
                    .map(|&c| PAYLOADS[c].to_owned());
                prop_assert_eq!(content, expected, "lookup of {:?}", (topic, id));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The store against a plain map, first write wins; with hash widths
        /// down to 1 bit (every key collides), snapshots after every few
        /// keys, reopens between commits, and with or without the text index.
        #[test]
        fn the_store_agrees_with_a_plain_model(
            hash_bits in prop_oneof![Just(1u32), Just(2), Just(64)],
            snapshot_keys in prop_oneof![Just(1u64), Just(4), Just(1_000)],
            normal in any::<bool>(),
            indexed in any::<bool>(),
            steps in prop::collection::vec(step(), 1..16),
        ) {
            let options = SqliteOptions {
                sync: if normal { SyncMode::Normal } else { SyncMode::Full },
                snapshot_keys,
                hash_bits,
                search: if indexed { vec![TopicPattern::everything()] } else { Vec::new() },
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(check_against_model(options, steps))?;
        }
    }
}
