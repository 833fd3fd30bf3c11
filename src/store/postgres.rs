//! The PostgreSQL store: one database that several `logagg serve` replicas
//! share, with the same contract as the embedded store (see the parent
//! module). This is the only file that names `tokio_postgres`.
//!
//! The schema, created and versioned at open (`logagg_schema` holds the
//! version; a newer one is refused):
//!
//! - `events`: one row per stored event, `seq` the primary key,
//!   `UNIQUE (topic, event_id)` the dedup set. Keys use the `"C"` collation:
//!   byte order, as SQLite sorts, and no locale work in the index.
//! - `counters` and `topic_counts`: one row per replica (per topic), summed
//!   on read, so replicas never update the same counter row. Opening a
//!   replica folds every row into replica 0's, so rows do not pile up as
//!   replicas come and go. `counters.stored_bytes` is the running sum of
//!   the stored events' bytes ([`super::event_bytes`]): each append adds
//!   its new events', each expiry takes off what it deleted, in their
//!   transactions; it is what `--retain-bytes` bounds, since a table's
//!   files do not shrink when rows are deleted (autovacuum makes the space
//!   reusable; only `VACUUM FULL` gives it back).
//! - `expired_keys`: the key of each event retention deleted, `UNIQUE
//!   (topic, event_id)`, kept for the dedup horizon: an append's stored
//!   copies include them (with no content: a copy is a duplicate), so the
//!   dedup promise outlives the payload. `seq_floor` holds the newest `seq`
//!   expired, so the next `seq` (the greatest of it and the stored ones)
//!   is never one used before. Expiry runs under the append lock
//!   (`expire`), in transactions of a bounded size. Schema 2 adds these to
//!   schema 1 in place (`IF NOT EXISTS`); schema 3 adds
//!   `counters.stored_bytes` and counts the stored events' bytes into it
//!   once, in the transaction that upgrades ([`count_stored_bytes`]).
//!
//! # Commit-ordered `seq` across replicas
//!
//! Every append takes one transaction-scoped advisory lock
//! ([`APPEND_LOCK`]) before anything else, and holds it to its commit.
//! PostgreSQL releases transaction locks only after the commit is visible
//! to every new snapshot (`CommitTransaction` in
//! `src/backend/access/transam/xact.c` ends the transaction in the proc
//! array "_before_ releasing locks we hold and _after_
//! RecordTransactionCommit"), so the next append, in whichever replica,
//! reads the newest committed `seq` (`previous`), numbers its new events
//! `previous + 1 ...` and commits before anyone else can number theirs. A
//! reader that has seen `seq = c` therefore never later finds a smaller
//! `seq` appear. The lock costs one wait per commit, not per event: group
//! commit makes each lock hold carry many requests. docs/decisions/0001
//! has the alternatives.
//!
//! Under the lock, which key is new is known before the insert: one query
//! reads the stored copies of the keys in the batch, the rest of the
//! classification (duplicates inside the batch, conflicts via
//! [`Event::same_content`]) happens here, and only new events are
//! inserted, so `seq` has no gaps. The unique constraint stays the last
//! word: a writer that bypassed the lock would make the insert fail, and
//! the whole append roll back.
//!
//! # Durability and round trips
//!
//! Each append is one transaction with `synchronous_commit = on` (the
//! commit waits for its WAL flush, whatever the server's default), in two
//! round trips of pipelined statements: the lock, the newest `seq` and the
//! stored copies; then the insert, the counters, `NOTIFY` and `COMMIT`.
//!
//! # Other replicas' commits
//!
//! The append sends `NOTIFY logagg_commits, '<last seq>'`, which PostgreSQL
//! delivers only once the transaction has committed. A task of this store
//! LISTENs on a connection of its own and keeps [`Store::foreign_commits`]
//! at the newest `seq` anyone committed; when the connection drops it
//! reconnects, and after each LISTEN it reads the newest `seq` again, so a
//! commit made while it was away is not missed.
//!
//! # Connections and failures
//!
//! The consumer's appends have a connection of their own (one at a time);
//! reads share a pool of `--store-pool-size`. Both reconnect by themselves.
//! An error that means the server cannot be reached or is restarting
//! becomes [`StoreError::Unavailable`] (503 + `Retry-After`), and a
//! connection that failed mid-transaction is discarded, never reused.

use std::collections::HashMap;
use std::fmt;
use std::future::poll_fn;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{
    ClientWrapper, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use serde_json::value::RawValue;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{AsyncMessage, IsolationLevel, NoTls, Row};

use super::{
    Commit, CommitTime, Counters, EventPage, EventQuery, Outcome, PageFill, PageStatements, Store,
    StoreError, StoreStats, StoredEvent, TopicSummary,
};
use crate::event::Event;
use crate::retention::{ExpireReport, RetentionPolicy};

/// The schema this build writes, kept in `logagg_schema`.
const SCHEMA_VERSION: i32 = 3;

/// The first schema whose `counters` keep `stored_bytes`: opening an older
/// one counts the stored events' bytes once (see [`migrate`]).
const SCHEMA_STORED_BYTES: i32 = 3;

/// Serializes schema set-up among replicas starting at once.
const SCHEMA_LOCK: i64 = 0x6c6f_6761_6767_0001;
/// Serializes appends: held from before the newest `seq` is read until the
/// commit (see the module docs).
const APPEND_LOCK: i64 = 0x6c6f_6761_6767_0002;

/// The channel each commit notifies, with its newest `seq` as payload.
const CHANNEL: &str = "logagg_commits";

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    seq         bigint PRIMARY KEY,
    topic       text COLLATE "C" NOT NULL,
    event_id    text COLLATE "C" NOT NULL,
    timestamp   text   NOT NULL,
    source      text   NOT NULL,
    payload     text   NOT NULL,
    received_at bigint NOT NULL,
    UNIQUE (topic, event_id)
);
CREATE INDEX IF NOT EXISTS events_by_topic ON events (topic, seq);
CREATE TABLE IF NOT EXISTS counters (
    replica           bigint PRIMARY KEY,
    received          bigint NOT NULL,
    unique_processed  bigint NOT NULL,
    duplicate_dropped bigint NOT NULL,
    conflicts         bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS topic_counts (
    topic    text COLLATE "C" NOT NULL,
    replica  bigint NOT NULL,
    events   bigint NOT NULL,
    last_seq bigint NOT NULL,
    PRIMARY KEY (topic, replica)
);
CREATE SEQUENCE IF NOT EXISTS replicas;
CREATE TABLE IF NOT EXISTS expired_keys (
    seq         bigint PRIMARY KEY,
    topic       text COLLATE "C" NOT NULL,
    event_id    text COLLATE "C" NOT NULL,
    received_at bigint NOT NULL,
    UNIQUE (topic, event_id)
);
CREATE TABLE IF NOT EXISTS seq_floor (
    id  int PRIMARY KEY CHECK (id = 0),
    seq bigint NOT NULL
);
ALTER TABLE counters ADD COLUMN IF NOT EXISTS expired bigint NOT NULL DEFAULT 0;
ALTER TABLE topic_counts ADD COLUMN IF NOT EXISTS expired_through bigint NOT NULL DEFAULT 0;
ALTER TABLE counters ADD COLUMN IF NOT EXISTS stored_bytes bigint NOT NULL DEFAULT 0;
"#;

/// Folds every replica's counter rows into replica 0's. Run at open, under
/// the append lock, so no append is between reading and deleting them.
const FOLD_COUNTERS: &str = "
INSERT INTO counters
    (replica, received, unique_processed, duplicate_dropped, conflicts, expired, stored_bytes)
SELECT 0, coalesce(sum(received), 0), coalesce(sum(unique_processed), 0),
       coalesce(sum(duplicate_dropped), 0), coalesce(sum(conflicts), 0),
       coalesce(sum(expired), 0), coalesce(sum(stored_bytes), 0)
FROM counters
ON CONFLICT (replica) DO UPDATE SET
    received = excluded.received, unique_processed = excluded.unique_processed,
    duplicate_dropped = excluded.duplicate_dropped, conflicts = excluded.conflicts,
    expired = excluded.expired, stored_bytes = excluded.stored_bytes;
DELETE FROM counters WHERE replica <> 0;
INSERT INTO topic_counts (topic, replica, events, last_seq, expired_through)
SELECT topic, 0, sum(events), max(last_seq), max(expired_through) FROM topic_counts GROUP BY topic
ON CONFLICT (topic, replica) DO UPDATE SET
    events = excluded.events, last_seq = excluded.last_seq,
    expired_through = excluded.expired_through;
DELETE FROM topic_counts WHERE replica <> 0;
";

/// Opens an append's transaction. The commit waits for its WAL flush
/// whatever the server's default. Two timeouts keep one stuck replica from
/// stopping the others: waiting for the append lock gives up after 10 s
/// (that append is answered 503), and a holder that goes silent inside its
/// transaction for 10 s (a frozen process, a lost network) has its session
/// ended by the server, which releases the lock.
const BEGIN_APPEND: &str = "BEGIN ISOLATION LEVEL READ COMMITTED;
SET LOCAL synchronous_commit = on;
SET LOCAL lock_timeout = '10s';
SET LOCAL idle_in_transaction_session_timeout = '10s'";

/// Waits for [`APPEND_LOCK`]. The newest `seq` is read by the *next*
/// statement: in READ COMMITTED each statement takes its snapshot when it
/// starts, so only a statement that starts after the lock is granted sees
/// the previous holder's commit.
const TAKE_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// The newest `seq` ever committed: of the stored events, or of the
/// expired ones (`seq_floor`), so that expiring the newest events never
/// lets a `seq` be used twice.
const LAST_SEQ: &str = "SELECT greatest(
    (SELECT coalesce(max(seq), 0) FROM events), (SELECT coalesce(max(seq), 0) FROM seq_floor))";

/// The stored copies of the given keys (pairs at the same index).
/// An expired event's key comes back with no content.
const STORED_COPIES: &str = "
SELECT topic, event_id, timestamp, source, payload FROM events
WHERE (topic, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
UNION ALL
SELECT topic, event_id, NULL, NULL, NULL FROM expired_keys
WHERE (topic, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))";

const INSERT_EVENTS: &str = "
INSERT INTO events (seq, topic, event_id, timestamp, source, payload, received_at)
SELECT seq, topic, event_id, timestamp, source, payload,
    GREATEST($7, (SELECT received_at FROM events ORDER BY seq DESC LIMIT 1))
FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
    AS fresh (seq, topic, event_id, timestamp, source, payload)";

const ADD_COUNTERS: &str = "
INSERT INTO counters (replica, received, unique_processed, duplicate_dropped, conflicts, stored_bytes)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (replica) DO UPDATE SET
    received = counters.received + excluded.received,
    unique_processed = counters.unique_processed + excluded.unique_processed,
    duplicate_dropped = counters.duplicate_dropped + excluded.duplicate_dropped,
    conflicts = counters.conflicts + excluded.conflicts,
    stored_bytes = counters.stored_bytes + excluded.stored_bytes";

/// The stored events' bytes ([`super::event_bytes`]), summed over the
/// replicas' rows. Only appends and expiry change it, both under
/// [`APPEND_LOCK`], so read under the lock it is exact.
const STORED_BYTES: &str = "SELECT coalesce(sum(stored_bytes), 0)::int8 FROM counters";

const ADD_TOPIC_COUNTS: &str = "
INSERT INTO topic_counts (topic, replica, events, last_seq)
SELECT topic, $1, events, last_seq FROM unnest($2::text[], $3::int8[], $4::int8[])
    AS added (topic, events, last_seq)
ON CONFLICT (topic, replica) DO UPDATE SET
    events = topic_counts.events + excluded.events,
    last_seq = greatest(topic_counts.last_seq, excluded.last_seq)";

const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// The statements a page of `/events` runs: each reads one index range in
/// order, never sorts and never scans the table (the test
/// `postgres::every_events_statement_reads_an_index_range` checks their
/// plans, see [`PostgresStore::read_statements`]).
const PAGE_ALL_ASC: &str = "SELECT seq, topic, event_id, timestamp, source, payload, received_at FROM events WHERE seq > $1 AND seq < $2 ORDER BY seq LIMIT $3";
const PAGE_ALL_DESC: &str = "SELECT seq, topic, event_id, timestamp, source, payload, received_at FROM events WHERE seq > $1 AND seq < $2 ORDER BY seq DESC LIMIT $3";
/// One topic's range, written as a range of `(topic, seq)` pairs, which
/// only `events_by_topic` can serve in order. With `topic = $4 AND seq >
/// $1` instead, the planner may read the primary key and filter by topic
/// (it believes rows of a topic are spread evenly over `seq`): for a topic
/// that went quiet, a generic plan read 101,000 rows of a 401,000-row table
/// to find none (15 ms), where this reads none.
const PAGE_TOPIC_ASC: &str = "SELECT seq, topic, event_id, timestamp, source, payload, received_at FROM events WHERE (topic, seq) > ($4, $1) AND (topic, seq) < ($4, $2) ORDER BY topic, seq LIMIT $3";
const PAGE_TOPIC_DESC: &str = "SELECT seq, topic, event_id, timestamp, source, payload, received_at FROM events WHERE (topic, seq) > ($4, $1) AND (topic, seq) < ($4, $2) ORDER BY topic DESC, seq DESC LIMIT $3";
const PAGES: PageStatements = PageStatements {
    all: [PAGE_ALL_ASC, PAGE_ALL_DESC],
    topic: [PAGE_TOPIC_ASC, PAGE_TOPIC_DESC],
};
/// A probe of the binary search for a commit time.
const SEQ_AT_OR_AFTER: &str =
    "SELECT seq, received_at FROM events WHERE seq >= $1 ORDER BY seq LIMIT 1";
/// One event by its key.
const EVENT_BY_KEY: &str = "SELECT seq, topic, event_id, timestamp, source, payload, received_at FROM events WHERE topic = $1 AND event_id = $2";

/// Rows read per statement of a page at the least.
const CHUNK_MIN: usize = 128;

const TOPICS: &str = "
SELECT topic, sum(events)::int8, max(last_seq), max(expired_through)
FROM topic_counts GROUP BY topic ORDER BY topic";

/// Counters, topics and the newest `seq` in one statement, so from one
/// snapshot.
const STATS: &str = "
WITH topics AS (
    SELECT topic, sum(events)::int8 AS events, max(last_seq) AS last_seq,
           max(expired_through) AS expired_through
    FROM topic_counts GROUP BY topic
)
SELECT coalesce(sum(received), 0)::int8, coalesce(sum(unique_processed), 0)::int8,
       coalesce(sum(duplicate_dropped), 0)::int8, coalesce(sum(conflicts), 0)::int8,
       greatest((SELECT coalesce(max(seq), 0) FROM events),
                (SELECT coalesce(max(seq), 0) FROM seq_floor)),
       (SELECT array_agg(topic ORDER BY topic) FROM topics),
       (SELECT array_agg(events ORDER BY topic) FROM topics),
       (SELECT array_agg(last_seq ORDER BY topic) FROM topics),
       (SELECT array_agg(expired_through ORDER BY topic) FROM topics),
       coalesce(sum(expired), 0)::int8
FROM counters";

/// Connecting to a server that does not answer gives up after this, unless
/// the URL sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Unacknowledged data on a connection for this long means the server is
/// gone (Linux `TCP_USER_TIMEOUT`), unless the URL sets `tcp_user_timeout`.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read waits for a free pooled connection before it is
/// answered 503.
const POOL_WAIT: Duration = Duration::from_secs(5);
/// `/health` reports the store unavailable when it gets no answer in this
/// time.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// The LISTEN task reads the newest `seq` this often even without a
/// notification: a liveness check of its connection, and a bound on the
/// delay should a notification ever not arrive.
const LISTEN_REFRESH: Duration = Duration::from_secs(5);
/// Reconnecting the LISTEN connection backs off from the first to the
/// second.
const LISTEN_RETRY: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// A PostgreSQL connection URL, parsed. Shown without its password.
#[derive(Clone)]
pub struct PostgresUrl {
    config: Box<tokio_postgres::Config>,
}

impl PostgresUrl {
    /// Parses a `postgres://` or `postgresql://` URL (libpq syntax; query
    /// parameters such as `connect_timeout` or `application_name` apply).
    ///
    /// # Errors
    /// A message naming what is wrong, without the password.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: tokio_postgres::Config = text.parse().map_err(|e| {
            format!("not a valid PostgreSQL URL ({e}); e.g. postgres://user:password@host:5432/db")
        })?;
        if config.get_hosts().is_empty() {
            return Err("the PostgreSQL URL names no host".to_owned());
        }
        Ok(Self {
            config: Box::new(config),
        })
    }

    /// The driver's configuration, with this store's defaults where the URL
    /// sets nothing.
    fn connect_config(&self) -> tokio_postgres::Config {
        let mut config = (*self.config).clone();
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("logagg");
        }
        config
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("postgres://")?;
        if let Some(user) = self.config.get_user() {
            write!(f, "{user}@")?;
        }
        let ports = self.config.get_ports();
        for (i, host) in self.config.get_hosts().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match host {
                tokio_postgres::config::Host::Tcp(name) => f.write_str(name)?,
                tokio_postgres::config::Host::Unix(path) => write!(f, "{}", path.display())?,
            }
            if let Some(port) = ports.get(i).or(ports.first()) {
                write!(f, ":{port}")?;
            }
        }
        if let Some(db) = self.config.get_dbname() {
            write!(f, "/{db}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// The PostgreSQL implementation of [`Store`]. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The consumer's connection (appends run one at a time).
    writer: Pool,
    readers: Pool,
    /// This process's row in `counters` and `topic_counts`.
    replica: i64,
    /// The newest `seq` committed by anyone, kept by the LISTEN task.
    newest: Arc<watch::Sender<u64>>,
    listener: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PostgresStore {
    /// The statements that read events, each with example arguments, for a
    /// test to show their plans: `(name, sql, arguments)`.
    #[doc(hidden)]
    pub fn read_statements() -> Vec<(&'static str, &'static str, &'static str)> {
        const RANGE: &str = "1000, 9223372036854775807, 128";
        vec![
            ("page_all_asc", PAGE_ALL_ASC, RANGE),
            ("page_all_desc", PAGE_ALL_DESC, RANGE),
            (
                "page_topic_asc",
                PAGE_TOPIC_ASC,
                "1000, 9223372036854775807, 128, 'load.3'",
            ),
            (
                "page_topic_desc",
                PAGE_TOPIC_DESC,
                "1000, 9223372036854775807, 128, 'load.3'",
            ),
            ("seq_at_or_after", SEQ_AT_OR_AFTER, "5000"),
            ("event_by_key", EVENT_BY_KEY, "'load.3', 'e-17'"),
        ]
    }

    /// Connects, creates or migrates the schema, takes a replica id and
    /// starts following other replicas' commits.
    ///
    /// # Errors
    /// When the server cannot be reached, or the database holds a newer
    /// schema than this build knows.
    pub async fn open(url: &PostgresUrl, pool_size: NonZeroUsize) -> Result<Self, StoreError> {
        let config = url.connect_config();
        let connect_error = StoreError::Connect;
        let writer = pool(&config, 1).map_err(|e| connect_error(e.into()))?;
        let readers = pool(&config, pool_size.get()).map_err(|e| connect_error(e.into()))?;
        let mut client = writer.get().await.map_err(|error| match error {
            // The driver's error says what failed; deadpool's wrapper only
            // repeats it.
            PoolError::Backend(error) => connect_error(error.into()),
            other => connect_error(other.into()),
        })?;
        warn_about_settings(&client).await.map_err(store_error)?;
        let (replica, last_seq) = migrate(&mut client).await?;
        drop(client);
        let newest = Arc::new(watch::Sender::new(last_seq));
        let listener = tokio::spawn(listen(config, Arc::clone(&newest)));
        tracing::info!(replica, last_seq, database = %url, "PostgreSQL store open");
        Ok(Self {
            inner: Arc::new(Inner {
                writer,
                readers,
                replica,
                newest,
                listener,
            }),
        })
    }

    async fn reader(&self) -> Result<Object, StoreError> {
        self.inner.readers.get().await.map_err(pool_error)
    }
}

fn pool(
    config: &tokio_postgres::Config,
    size: usize,
) -> Result<Pool, deadpool_postgres::BuildError> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            // A connection the server closed is noticed by its driver and
            // replaced at checkout; one that dies mid-append is discarded
            // there (see `append`).
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(POOL_WAIT))
        .create_timeout(Some(
            config
                .get_connect_timeout()
                .copied()
                .unwrap_or(CONNECT_TIMEOUT),
        ))
        .recycle_timeout(Some(POOL_WAIT))
        .runtime(Runtime::Tokio1)
        .build()
}

/// Logs the server settings that weaken what this store promises.
async fn warn_about_settings(client: &ClientWrapper) -> Result<(), tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('fsync'), current_setting('server_encoding')",
            &[],
        )
        .await?;
    let (fsync, encoding): (&str, &str) = (row.try_get(0)?, row.try_get(1)?);
    if fsync != "on" {
        tracing::warn!(
            fsync,
            "the PostgreSQL server runs with fsync off: a crash of its machine can lose acknowledged events"
        );
    }
    if encoding != "UTF8" {
        tracing::warn!(
            encoding,
            "the database is not UTF8: events with characters it cannot hold will fail to commit"
        );
    }
    Ok(())
}

/// Creates or checks the schema, folds the counter rows, and returns this
/// replica's id and the newest `seq`.
async fn migrate(client: &mut ClientWrapper) -> Result<(i64, u64), StoreError> {
    let tx = client.transaction().await.map_err(store_error)?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({SCHEMA_LOCK});
         CREATE TABLE IF NOT EXISTS logagg_schema (
             id      int PRIMARY KEY CHECK (id = 0),
             version int NOT NULL
         );"
    ))
    .await
    .map_err(store_error)?;
    let found: Option<i32> = tx
        .query_opt("SELECT version FROM logagg_schema", &[])
        .await
        .and_then(|row| row.map(|row| row.try_get(0)).transpose())
        .map_err(store_error)?;
    if let Some(found) = found
        && found > SCHEMA_VERSION
    {
        return Err(StoreError::SchemaTooNew {
            found: found.into(),
            supported: SCHEMA_VERSION.into(),
        });
    }
    tx.batch_execute(SCHEMA).await.map_err(store_error)?;
    tx.execute(
        "INSERT INTO logagg_schema (id, version) VALUES (0, $1)
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        &[&SCHEMA_VERSION],
    )
    .await
    .map_err(store_error)?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({APPEND_LOCK}); {FOLD_COUNTERS}"
    ))
    .await
    .map_err(store_error)?;
    if found.is_some_and(|found| found < SCHEMA_STORED_BYTES) {
        count_stored_bytes(&tx).await.map_err(store_error)?;
    }
    let replica: i64 = tx
        .query_one("SELECT nextval('replicas')", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(store_error)?;
    let last_seq = tx
        .query_one(LAST_SEQ, &[])
        .await
        .and_then(|row| count(&row, 0))
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok((replica, last_seq))
}

/// The upgrade to schema 3: sets `counters.stored_bytes` (which an older
/// build did not keep) to the bytes of the events stored now, read from
/// every row once. Run in [`migrate`]'s transaction, under the append lock
/// and after the counter rows are folded into replica 0's, so no append
/// or expiry of this schema falls between the count and its commit, and
/// the one row holds the whole sum. A replica of an older build still
/// running would append without counting: stop those first (as for any
/// schema change).
async fn count_stored_bytes(
    tx: &tokio_postgres::Transaction<'_>,
) -> Result<(), tokio_postgres::Error> {
    let bytes = super::event_bytes_sql(|column| format!("octet_length({column})"));
    tx.execute(
        format!(
            "INSERT INTO counters (replica, received, unique_processed, duplicate_dropped,
                                       conflicts, stored_bytes)
                 SELECT 0, 0, 0, 0, 0, coalesce(sum({bytes}), 0)::int8 FROM events
                 ON CONFLICT (replica) DO UPDATE SET stored_bytes = excluded.stored_bytes"
        )
        .as_str(),
        &[],
    )
    .await?;
    let row = tx.query_one(STORED_BYTES, &[]).await?;
    tracing::info!(
        stored_bytes = row.try_get::<_, i64>(0)?,
        "schema upgraded to 3: counted the bytes of the stored events"
    );
    Ok(())
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn append(
        &self,
        events: Arc<[Event]>,
        received_at: CommitTime,
    ) -> Result<Commit, StoreError> {
        let client = self.inner.writer.get().await.map_err(pool_error)?;
        match append(&client, self.inner.replica, &events, received_at).await {
            Ok(commit) => Ok(commit),
            Err(error) => {
                // It may be mid-transaction or broken: never reuse it.
                drop(Object::take(client));
                Err(store_error(error))
            }
        }
    }

    /// The filters as index ranges: one statement over the `seq` range
    /// (the primary key; the commit-time range turned into `seq` bounds by
    /// binary search) or, for a topic or a pattern's few topics, one per
    /// topic over `(topic, seq)`, merged here by `seq`; read in chunks,
    /// each row checked by [`EventQuery::admits`] for the filters SQL does
    /// not hold, at most [`SCAN_BUDGET`](super::SCAN_BUDGET) rows per page. A statement per
    /// topic rather than `topic = ANY(...)`: PostgreSQL reads an `ANY`
    /// over several topics as a bitmap of every matching row in the range,
    /// then sorts them, so its cost would grow with the store.
    async fn events(&self, query: EventQuery) -> Result<EventPage, StoreError> {
        if query.text.is_some() {
            return Err(StoreError::Database(
                "the PostgreSQL store keeps no full-text index".into(),
            ));
        }
        let client = self.reader().await?;
        // Each statement below takes a snapshot of its own, later ones
        // seeing more commits than earlier ones: so the page ends at the
        // newest `seq` committed before any of them. Commits become
        // visible in `seq` order (decision 0001), so every statement sees
        // every event up to it, and none sees a topic's events beyond it
        // while another topic's stop short of it.
        let newest: i64 = {
            let statement = client.prepare_cached(LAST_SEQ).await.map_err(store_error)?;
            client
                .query_one(&statement, &[])
                .await
                .and_then(|row| row.try_get(0))
                .map_err(store_error)?
        };
        let topics = match &query.topic {
            Some(pattern) if pattern.exact().is_none() => {
                let statement = client.prepare_cached(TOPICS).await.map_err(store_error)?;
                let rows = client.query(&statement, &[]).await.map_err(store_error)?;
                let names: Result<Vec<String>, _> = rows.iter().map(|row| row.try_get(0)).collect();
                query.index_topics(names.map_err(store_error)?)
            }
            _ => query.index_topics(std::iter::empty()),
        };
        let (sql, topics) = query.page_plan(topics, &PAGES);
        let statement = client.prepare_cached(sql).await.map_err(store_error)?;
        let (mut low, mut high) = (to_sql(query.after), query.before.map_or(i64::MAX, to_sql));
        high = high.min(newest.saturating_add(1));
        if let Some(since) = query.received.since {
            low = low.max(first_seq_received_from(&client, since).await? - 1);
        }
        if let Some(until) = query.received.until {
            high = high.min(first_seq_received_from(&client, until).await?);
        }
        if low.saturating_add(1) >= high || topics.is_empty() {
            return Ok(EventPage::default());
        }
        // Whether `a` comes before `b` in the page's order.
        let before = |a: i64, b: i64| if query.newest_first { a > b } else { a < b };
        let mut fill = PageFill::new(&query);
        loop {
            let (budget, wanted) = fill.room();
            let chunk = wanted.max(CHUNK_MIN).min(budget);
            let chunk_sql = i64::try_from(chunk).unwrap_or(i64::MAX);
            // Each topic's next rows; `complete` is the position up to which
            // every topic's rows are all here: the last row of each topic
            // whose chunk came back full (the others hold the rest of
            // their range).
            let mut rows = Vec::new();
            let mut complete: Option<i64> = None;
            for topic in &topics {
                let mut params: Vec<&(dyn ToSql + Sync)> = vec![&low, &high, &chunk_sql];
                if let Some(topic) = topic {
                    params.push(topic);
                }
                let fetched = client
                    .query(&statement, &params)
                    .await
                    .map_err(store_error)?;
                if fetched.len() == chunk
                    && let Some(last) = fetched.last()
                {
                    let last: i64 = last.try_get(0).map_err(store_error)?;
                    complete =
                        Some(complete.map_or(last, |c| if before(last, c) { last } else { c }));
                }
                rows.extend(fetched);
            }
            let mut events = rows
                .iter()
                .map(stored_event)
                .collect::<Result<Vec<_>, _>>()?;
            events.retain(|e| complete.is_none_or(|c| !before(c, to_sql(e.seq))));
            events.sort_unstable_by(|a, b| {
                if query.newest_first {
                    b.seq.cmp(&a.seq)
                } else {
                    a.seq.cmp(&b.seq)
                }
            });
            for event in events {
                if fill.offer(event) {
                    return Ok(fill.finish());
                }
            }
            // Nothing more in the range, or go on from where every topic's
            // rows were complete.
            let Some(complete) = complete else {
                return Ok(fill.finish());
            };
            if query.newest_first {
                high = complete;
            } else {
                low = complete;
            }
        }
    }

    async fn event(&self, topic: &str, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        let client = self.reader().await?;
        let statement = client
            .prepare_cached(EVENT_BY_KEY)
            .await
            .map_err(store_error)?;
        let row = client
            .query_opt(&statement, &[&topic, &event_id])
            .await
            .map_err(store_error)?;
        row.as_ref().map(stored_event).transpose()
    }

    async fn topics(&self) -> Result<Vec<TopicSummary>, StoreError> {
        let client = self.reader().await?;
        let statement = client.prepare_cached(TOPICS).await.map_err(store_error)?;
        let rows = client.query(&statement, &[]).await.map_err(store_error)?;
        rows.iter()
            .map(|row| {
                Ok(TopicSummary {
                    topic: row.try_get(0)?,
                    events: count(row, 1)?,
                    last_seq: count(row, 2)?,
                    expired_through: count(row, 3)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(store_error)
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let client = self.reader().await?;
        let statement = client.prepare_cached(STATS).await.map_err(store_error)?;
        let row = client
            .query_one(&statement, &[])
            .await
            .map_err(store_error)?;
        read_stats(&row).map_err(store_error)
    }

    async fn expired_through(&self, topic: Option<&str>) -> Result<u64, StoreError> {
        let client = self.reader().await?;
        let row = match topic {
            Some(topic) => client
                .query_one(
                    "SELECT coalesce(max(expired_through), 0) FROM topic_counts WHERE topic = $1",
                    &[&topic],
                )
                .await,
            None => {
                client
                    .query_one(
                        "SELECT coalesce(max(expired_through), 0) FROM topic_counts",
                        &[],
                    )
                    .await
            }
        }
        .map_err(store_error)?;
        count(&row, 0).map_err(store_error)
    }

    async fn expire(
        &self,
        policy: &RetentionPolicy,
        now: CommitTime,
        budget: usize,
    ) -> Result<ExpireReport, StoreError> {
        let mut client = self.inner.writer.get().await.map_err(pool_error)?;
        match expire(&mut client, self.inner.replica, policy, now, budget).await {
            Ok(report) => Ok(report),
            Err(error) => {
                drop(Object::take(client));
                Err(store_error(error))
            }
        }
    }

    async fn last_seq(&self) -> Result<u64, StoreError> {
        let client = self.reader().await?;
        let statement = client.prepare_cached(LAST_SEQ).await.map_err(store_error)?;
        let row = client
            .query_one(&statement, &[])
            .await
            .map_err(store_error)?;
        count(&row, 0).map_err(store_error)
    }

    async fn size_bytes(&self) -> Result<u64, StoreError> {
        let client = self.reader().await?;
        let row = client
            .query_one(
                "SELECT (pg_total_relation_size('events') + pg_total_relation_size('counters')
                         + pg_total_relation_size('topic_counts')
                         + pg_total_relation_size('expired_keys'))::int8",
                &[],
            )
            .await
            .map_err(store_error)?;
        count(&row, 0).map_err(store_error)
    }

    async fn check(&self) -> Result<(), StoreError> {
        let probe = async {
            let client = self.reader().await?;
            client.simple_query("SELECT 1").await.map_err(store_error)?;
            Ok(())
        };
        tokio::time::timeout(CHECK_TIMEOUT, probe)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "the database did not answer within {CHECK_TIMEOUT:?}"
                )))
            })
    }

    fn foreign_commits(&self) -> Option<watch::Receiver<u64>> {
        Some(self.inner.newest.subscribe())
    }
}

/// One expiry transaction, as the embedded store's (see `Store::expire`),
/// under the append lock, so that no append classifies its keys while
/// events move to `expired_keys`, and no other replica's expiry or append
/// changes `stored_bytes` between this one reading and updating it: two
/// replicas expiring at once take turns, and the second sees what the
/// first deleted. The counters of this replica's rows are updated in it.
async fn expire(
    client: &mut ClientWrapper,
    replica: i64,
    policy: &RetentionPolicy,
    now: CommitTime,
    budget: usize,
) -> Result<ExpireReport, tokio_postgres::Error> {
    let cutoff = |keep: Duration| {
        now.0
            .saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX))
    };
    // READ COMMITTED whatever the server's default, as appends: each
    // statement after the lock then sees what the previous holder
    // committed, `stored_bytes` included.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?;
    tx.batch_execute(&format!(
        "SET LOCAL synchronous_commit = on; SET LOCAL lock_timeout = '10s';
         SELECT pg_advisory_xact_lock({APPEND_LOCK})"
    ))
    .await?;
    let topics: Vec<String> = tx
        .query(
            "SELECT topic FROM topic_counts GROUP BY topic HAVING sum(events) > 0 ORDER BY topic",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut left = budget;
    let mut gone = Gone::default();
    for topic in &topics {
        if left == 0 {
            break;
        }
        let Some(keep) = policy.keep(topic).duration() else {
            continue;
        };
        let cutoff = cutoff(keep);
        let rows = tx
            .query(
                "SELECT seq, received_at FROM events WHERE topic = $1 ORDER BY seq LIMIT $2",
                &[topic, &to_sql(left as u64)],
            )
            .await?;
        let mut last = None;
        for row in &rows {
            if row.try_get::<_, i64>(1)? >= cutoff {
                break;
            }
            last = Some(row.try_get(0)?);
        }
        if let Some(last) = last {
            let step = expire_through(&tx, replica, Some(topic), last).await?;
            left -= step.events as usize;
            gone.add(step);
        }
    }
    if let Some(bytes_max) = policy.bytes_max
        && left > 0
    {
        let step = expire_oldest_over(&tx, replica, to_sql(bytes_max), gone.bytes, left).await?;
        left -= step.events as usize;
        gone.add(step);
    }
    let mut forgotten = 0;
    if let Some(horizon) = policy.dedup_horizon.duration()
        && left > 0
    {
        let cutoff = cutoff(horizon);
        let rows = tx
            .query(
                "SELECT seq, received_at FROM expired_keys ORDER BY seq LIMIT $1",
                &[&to_sql(left as u64)],
            )
            .await?;
        let mut last = None;
        for row in &rows {
            if row.try_get::<_, i64>(1)? >= cutoff {
                break;
            }
            forgotten += 1;
            last = Some(row.try_get::<_, i64>(0)?);
        }
        if let Some(last) = last {
            tx.execute("DELETE FROM expired_keys WHERE seq <= $1", &[&last])
                .await?;
            left -= forgotten as usize;
        }
    }
    if gone.events > 0 {
        tx.execute(
            "INSERT INTO seq_floor (id, seq) VALUES (0, $1)
             ON CONFLICT (id) DO UPDATE SET seq = greatest(seq_floor.seq, excluded.seq)",
            &[&gone.through],
        )
        .await?;
        tx.execute(
            "INSERT INTO counters
                 (replica, received, unique_processed, duplicate_dropped, conflicts, expired,
                  stored_bytes)
             VALUES ($1, 0, 0, 0, 0, $2, $3)
             ON CONFLICT (replica) DO UPDATE SET
                 expired = counters.expired + excluded.expired,
                 stored_bytes = counters.stored_bytes + excluded.stored_bytes",
            &[&replica, &to_sql(gone.events), &-gone.bytes],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(ExpireReport {
        expired: gone.events,
        forgotten,
        more: left == 0,
        // Its limit counts events only.
        keys_fill_limit: false,
    })
}

/// What an expiry transaction has deleted so far.
#[derive(Debug, Default, Clone, Copy)]
struct Gone {
    events: u64,
    /// Their bytes ([`super::event_bytes`]).
    bytes: i64,
    /// The highest `seq` among them.
    through: i64,
}

impl Gone {
    fn add(&mut self, step: Self) {
        self.events += step.events;
        self.bytes += step.bytes;
        self.through = self.through.max(step.through);
    }
}

/// The `--retain-bytes` part of an expiry transaction: while the stored
/// events' bytes (`counters.stored_bytes`, less `freed`, what this
/// transaction deleted already) exceed `bytes_max`, expires the oldest
/// events across all topics (lowest `seq` first, so each topic still holds
/// a suffix of its history), at most `budget`, keeping their keys as
/// expiry by age does. The count is exact, so one step takes exactly the
/// oldest events whose bytes cover the excess: no more, and no fewer
/// unless the budget runs out first.
async fn expire_oldest_over(
    tx: &tokio_postgres::Transaction<'_>,
    replica: i64,
    bytes_max: i64,
    freed: i64,
    budget: usize,
) -> Result<Gone, tokio_postgres::Error> {
    let stored: i64 = tx.query_one(STORED_BYTES, &[]).await?.try_get(0)?;
    let excess = stored - freed - bytes_max;
    if excess <= 0 {
        return Ok(Gone::default());
    }
    let bytes = super::event_bytes_sql(|column| format!("octet_length({column})"));
    let rows = tx
        .query(
            format!("SELECT seq, {bytes}::int8 FROM events ORDER BY seq LIMIT $1").as_str(),
            &[&to_sql(budget as u64)],
        )
        .await?;
    let (mut covered, mut last) = (0_i64, None);
    for row in &rows {
        if covered >= excess {
            break;
        }
        covered += row.try_get::<_, i64>(1)?;
        last = Some(row.try_get(0)?);
    }
    match last {
        Some(last) => expire_through(tx, replica, None, last).await,
        None => Ok(Gone::default()),
    }
}

/// Deletes the stored events with `seq <= through`, of `topic` or of all
/// topics, moving their keys to `expired_keys` and taking them off this
/// replica's `topic_counts` (raising `expired_through`), in one statement.
/// Returns how many went, their bytes and their highest `seq`.
async fn expire_through(
    tx: &tokio_postgres::Transaction<'_>,
    replica: i64,
    topic: Option<&str>,
    through: i64,
) -> Result<Gone, tokio_postgres::Error> {
    let bytes = super::event_bytes_sql(|column| format!("octet_length({column})"));
    // Separate statements rather than `$3 IS NULL OR topic = $3`, so the
    // one for a topic reads the `(topic, seq)` index.
    let of_topic = if topic.is_some() {
        "AND topic = $3::text"
    } else {
        ""
    };
    // Data-modifying `WITH` parts run once, to completion, whether or not
    // the final SELECT reads them.
    let sql = format!(
        "WITH gone AS (
             DELETE FROM events WHERE seq <= $2::int8 {of_topic}
             RETURNING seq, topic, event_id, received_at, {bytes} AS bytes
         ), kept AS (
             INSERT INTO expired_keys (seq, topic, event_id, received_at)
             SELECT seq, topic, event_id, received_at FROM gone
         ), counted AS (
             INSERT INTO topic_counts (topic, replica, events, last_seq, expired_through)
             SELECT topic, $1::int8, -count(*), 0, max(seq) FROM gone GROUP BY topic
             ON CONFLICT (topic, replica) DO UPDATE SET
                 events = topic_counts.events + excluded.events,
                 expired_through = greatest(topic_counts.expired_through,
                                            excluded.expired_through)
         )
         SELECT count(*)::int8, coalesce(sum(bytes), 0)::int8, coalesce(max(seq), 0)
         FROM gone"
    );
    let row = match topic {
        Some(topic) => {
            tx.query_one(sql.as_str(), &[&replica, &through, &topic])
                .await?
        }
        None => tx.query_one(sql.as_str(), &[&replica, &through]).await?,
    };
    Ok(Gone {
        events: count(&row, 0)?,
        bytes: row.try_get(1)?,
        through: row.try_get(2)?,
    })
}

/// One append: the transaction described in the module docs.
async fn append(
    client: &ClientWrapper,
    replica: i64,
    events: &[Event],
    received_at: CommitTime,
) -> Result<Commit, tokio_postgres::Error> {
    let (take_lock, last_seq, stored_copies, insert, add_counters, add_topics, notify) = tokio::try_join!(
        client.prepare_cached(TAKE_LOCK),
        client.prepare_cached(LAST_SEQ),
        client.prepare_cached(STORED_COPIES),
        client.prepare_cached(INSERT_EVENTS),
        client.prepare_cached(ADD_COUNTERS),
        client.prepare_cached(ADD_TOPIC_COUNTS),
        client.prepare_cached(NOTIFY),
    )?;
    let topics: Vec<&str> = events.iter().map(|e| e.topic.as_str()).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();

    // Round trip 1, pipelined: BEGIN and the lock, then (snapshots taken
    // after the lock is granted) the newest seq and the stored copies.
    let lock_params: [&(dyn ToSql + Sync); 1] = [&APPEND_LOCK];
    let key_params: [&(dyn ToSql + Sync); 2] = [&topics, &ids];
    // Every statement is awaited (`join!`, not `try_join!`) and the
    // errors taken in statement order: after one fails the rest fail too
    // ("current transaction is aborted"), and the first is the cause.
    let (begin, lock, previous, stored) = tokio::join!(
        client.batch_execute(BEGIN_APPEND),
        client.execute(&take_lock, &lock_params),
        client.query_one(&last_seq, &[]),
        client.query(&stored_copies, &key_params),
    );
    begin?;
    lock?;
    let previous = count(&previous?, 0)?;
    let stored = stored?;
    let plan = Plan::new(events, previous, &stored)?;
    let last = plan.last();

    // Round trip 2, pipelined, ending in the commit. Should any statement
    // fail, the transaction is aborted and COMMIT rolls it back.
    let fresh = &plan.fresh;
    let insert_params: [&(dyn ToSql + Sync); 7] = [
        &fresh.seqs,
        &fresh.topics,
        &fresh.ids,
        &fresh.timestamps,
        &fresh.sources,
        &fresh.payloads,
        &received_at.0,
    ];
    let counters = [
        plan.counters.received,
        plan.counters.unique_processed,
        plan.counters.duplicate_dropped,
        plan.counters.conflicts,
    ]
    .map(to_sql);
    let counter_params: [&(dyn ToSql + Sync); 6] = [
        &replica,
        &counters[0],
        &counters[1],
        &counters[2],
        &counters[3],
        &plan.bytes,
    ];
    let (topic_names, topic_events, topic_last): (Vec<&str>, Vec<i64>, Vec<i64>) = plan
        .topics
        .iter()
        .map(|(topic, (events, last))| (*topic, *events, *last))
        .collect();
    let topic_params: [&(dyn ToSql + Sync); 4] =
        [&replica, &topic_names, &topic_events, &topic_last];
    let payload = last.to_string();
    let notify_params: [&(dyn ToSql + Sync); 2] = [&CHANNEL, &payload];
    let (inserted, counted, topics_counted, notified, committed) = tokio::join!(
        client.execute(&insert, &insert_params),
        client.execute(&add_counters, &counter_params),
        client.execute(&add_topics, &topic_params),
        async {
            if last > previous {
                client.execute(&notify, &notify_params).await
            } else {
                Ok(0)
            }
        },
        client.batch_execute("COMMIT"),
    );
    inserted?;
    counted?;
    topics_counted?;
    notified?;
    committed?;
    Ok(Commit {
        outcomes: plan.outcomes,
        previous,
        last,
    })
}

/// What an append will do, decided under the lock from the stored copies of
/// its keys.
struct Plan<'a> {
    outcomes: Vec<Outcome>,
    fresh: Fresh<'a>,
    counters: Counters,
    /// Per topic: new events and the newest `seq`.
    topics: HashMap<&'a str, (i64, i64)>,
    /// The new events' bytes, for `counters.stored_bytes`.
    bytes: i64,
    previous: u64,
}

/// The new events as columns, for one `INSERT ... SELECT FROM unnest`.
#[derive(Default)]
struct Fresh<'a> {
    seqs: Vec<i64>,
    topics: Vec<&'a str>,
    ids: Vec<&'a str>,
    timestamps: Vec<&'a str>,
    sources: Vec<&'a str>,
    payloads: Vec<&'a str>,
}

impl<'a> Plan<'a> {
    /// Classifies each event as SQLite's append does: the first copy of a
    /// key wins, whether it is stored already or earlier in this batch; a
    /// later copy is a duplicate, and also a conflict when its content
    /// differs. New keys get `previous + 1, previous + 2, ...` in order.
    fn new(
        events: &'a [Event],
        previous: u64,
        stored: &[Row],
    ) -> Result<Self, tokio_postgres::Error> {
        // An expired key has no content (`None`): a copy of it is a
        // duplicate, whatever it holds.
        type Content<'r> = Option<(&'r str, &'r str, &'r str)>;
        let mut copies: HashMap<(&str, &str), Content<'_>> = HashMap::with_capacity(stored.len());
        for row in stored {
            let payload: Option<&str> = row.try_get(4)?;
            let content = match payload {
                Some(payload) => Some((row.try_get(2)?, row.try_get(3)?, payload)),
                None => None,
            };
            copies.insert((row.try_get(0)?, row.try_get(1)?), content);
        }
        let mut first_in_batch: HashMap<(&str, &str), &Event> = HashMap::new();
        let mut plan = Plan {
            outcomes: Vec::with_capacity(events.len()),
            fresh: Fresh::default(),
            counters: Counters {
                received: events.len() as u64,
                ..Counters::default()
            },
            topics: HashMap::new(),
            bytes: 0,
            previous,
        };
        for event in events {
            let key = (event.topic.as_str(), event.event_id.as_str());
            let same = if let Some(&content) = copies.get(&key) {
                content.is_none_or(|(timestamp, source, payload)| {
                    event.same_content(timestamp, source, payload)
                })
            } else if let Some(first) = first_in_batch.get(&key) {
                event.same_content(&first.timestamp, &first.source, first.payload.get())
            } else {
                first_in_batch.insert(key, event);
                let seq = plan.push_fresh(event);
                plan.outcomes.push(Outcome::Stored { seq });
                continue;
            };
            plan.counters.duplicate_dropped += 1;
            plan.outcomes.push(if same {
                Outcome::Duplicate
            } else {
                plan.counters.conflicts += 1;
                Outcome::Conflict
            });
        }
        Ok(plan)
    }

    fn push_fresh(&mut self, event: &'a Event) -> u64 {
        self.counters.unique_processed += 1;
        let seq = self.previous + self.counters.unique_processed;
        let fresh = &mut self.fresh;
        fresh.seqs.push(to_sql(seq));
        fresh.topics.push(event.topic.as_str());
        fresh.ids.push(event.event_id.as_str());
        fresh.timestamps.push(&event.timestamp);
        fresh.sources.push(&event.source);
        fresh.payloads.push(event.payload.get());
        self.bytes += to_sql(super::event_bytes(event));
        let entry = self.topics.entry(event.topic.as_str()).or_default();
        entry.0 += 1;
        entry.1 = to_sql(seq);
        seq
    }

    fn last(&self) -> u64 {
        self.previous + self.counters.unique_processed
    }
}

/// Follows the commit notifications until the store is dropped (which
/// aborts this task), reconnecting whenever the connection is lost.
async fn listen(config: tokio_postgres::Config, newest: Arc<watch::Sender<u64>>) {
    let mut backoff = LISTEN_RETRY.0;
    loop {
        let error = follow_commits(&config, &newest, &mut backoff).await;
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            retry_in = ?backoff,
            "lost the connection that follows other replicas' commits; reconnecting"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(LISTEN_RETRY.1);
    }
}

/// One LISTEN connection's life: returns why it ended. Resets `backoff`
/// once listening.
async fn follow_commits(
    config: &tokio_postgres::Config,
    newest: &watch::Sender<u64>,
    backoff: &mut Duration,
) -> StoreError {
    let (client, mut connection) = match config.connect(NoTls).await {
        Ok(connected) => connected,
        Err(error) => return store_error(error),
    };
    // Driving the connection yields the notifications.
    let notifications = async {
        loop {
            match poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(notification))) => {
                    match notification.payload().parse::<u64>() {
                        Ok(seq) => advance(newest, seq),
                        Err(_) => tracing::warn!(
                            payload = notification.payload(),
                            "ignoring a notification on {CHANNEL} that is not a seq"
                        ),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return store_error(error),
                None => {
                    return StoreError::Unavailable("the LISTEN connection closed".to_owned());
                }
            }
        }
    };
    let refresh = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(store_error)?;
        *backoff = LISTEN_RETRY.0;
        loop {
            // Also right after LISTEN: commits made while this connection
            // was not listening were never notified to it.
            let row = client.query_one(LAST_SEQ, &[]).await.map_err(store_error)?;
            advance(newest, count(&row, 0).map_err(store_error)?);
            tokio::time::sleep(LISTEN_REFRESH).await;
        }
    };
    tokio::select! {
        error = notifications => error,
        result = refresh => {
            let Err(error): Result<std::convert::Infallible, StoreError> = result;
            error
        }
    }
}

fn advance(newest: &watch::Sender<u64>, seq: u64) {
    newest.send_if_modified(|current| {
        let moved = seq > *current;
        *current = (*current).max(seq);
        moved
    });
}

fn read_stats(row: &Row) -> Result<StoreStats, tokio_postgres::Error> {
    let names: Option<Vec<String>> = row.try_get(5)?;
    let events: Option<Vec<i64>> = row.try_get(6)?;
    let last: Option<Vec<i64>> = row.try_get(7)?;
    let expired_through: Option<Vec<i64>> = row.try_get(8)?;
    let topics = names
        .unwrap_or_default()
        .into_iter()
        .zip(events.unwrap_or_default())
        .zip(last.unwrap_or_default())
        .zip(expired_through.unwrap_or_default())
        .map(
            |(((topic, events), last_seq), expired_through)| TopicSummary {
                topic,
                events: from_sql(events),
                last_seq: from_sql(last_seq),
                expired_through: from_sql(expired_through),
            },
        )
        .collect();
    let counters = Counters {
        received: count(row, 0)?,
        unique_processed: count(row, 1)?,
        duplicate_dropped: count(row, 2)?,
        conflicts: count(row, 3)?,
    };
    Ok(StoreStats {
        counters,
        topics,
        last_seq: count(row, 4)?,
        stored: counters.unique_processed - count(row, 9)?,
        expired: count(row, 9)?,
    })
}

/// The smallest `seq` from which on every event has `received_at >= at`: a
/// binary search over `seq` (`received_at` never decreases with it), each
/// probe one primary-key lookup. See the embedded store's twin.
async fn first_seq_received_from(client: &Object, at: i64) -> Result<i64, StoreError> {
    let probe = client
        .prepare_cached(SEQ_AT_OR_AFTER)
        .await
        .map_err(store_error)?;
    let newest = client
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM events")
        .await
        .map_err(store_error)?;
    let newest: i64 = client
        .query_one(&newest, &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(store_error)?;
    let (mut low, mut high) = (1_i64, newest + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        let row = client
            .query_opt(&probe, &[&middle])
            .await
            .map_err(store_error)?;
        match row.map(|r| (r.try_get::<_, i64>(0), r.try_get::<_, i64>(1))) {
            Some((Ok(seq), Ok(received))) if received < at => low = seq + 1,
            Some((Err(e), _) | (_, Err(e))) => return Err(store_error(e)),
            _ => high = middle,
        }
    }
    Ok(low)
}

fn stored_event(row: &Row) -> Result<StoredEvent, StoreError> {
    let read = || -> Result<StoredEvent, Box<dyn std::error::Error + Send + Sync>> {
        let payload: String = row.try_get(5)?;
        Ok(StoredEvent {
            seq: count(row, 0)?,
            topic: row.try_get(1)?,
            event_id: row.try_get(2)?,
            timestamp: row.try_get(3)?,
            source: row.try_get(4)?,
            payload: RawValue::from_string(payload)?,
            received_at: CommitTime(row.try_get(6)?).to_rfc3339(),
        })
    };
    read().map_err(StoreError::Database)
}

/// Reads a count or `seq` column, which this module only ever writes as a
/// non-negative `int8`.
fn count(row: &Row, index: usize) -> Result<u64, tokio_postgres::Error> {
    row.try_get::<_, i64>(index).map(from_sql)
}

fn from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Clamps a count or a client-supplied `seq` into `int8`.
fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) => store_error(error),
        PoolError::Timeout(kind) => StoreError::Unavailable(format!(
            "no database connection within the pool's {kind:?} timeout"
        )),
        PoolError::Closed => StoreError::Unavailable("the connection pool is closed".to_owned()),
        other => StoreError::Database(Box::new(other)),
    }
}

/// Sorts a driver error: the server cannot be reached or is restarting
/// (worth a retry: 503), the disk is full, or anything else.
fn store_error(error: tokio_postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        let code = db.code();
        if *code == SqlState::DISK_FULL {
            return StoreError::DiskFull;
        }
        let unavailable = code.code().starts_with("08") // connection exception
            || code.code().starts_with("28") // authorization, on reconnect
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
                // The append lock stayed taken past `lock_timeout`.
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                // A primary that became a standby (failover).
                SqlState::READ_ONLY_SQL_TRANSACTION,
            ]
            .contains(code);
        let reason = format!("{} {}: {}", db.severity(), code.code(), db.message());
        if unavailable {
            return StoreError::Unavailable(reason);
        }
        // The message carries the server's words: they are what an
        // operator needs in the log line, and `db error` alone says nothing.
        return StoreError::Database(reason.into());
    }
    let io = std::error::Error::source(&error).is_some_and(|source| source.is::<std::io::Error>());
    if error.is_closed() || io || error.to_string() == "timeout waiting for server" {
        let reason = match std::error::Error::source(&error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        };
        return StoreError::Unavailable(reason);
    }
    StoreError::Database(Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_without_their_password() {
        let url = PostgresUrl::parse("postgres://logagg:s3cret@db.example:6543/events")
            .expect("valid URL");
        assert_eq!(url.to_string(), "postgres://logagg@db.example:6543/events");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(PostgresUrl::parse("postgres://x:y@host:notaport/db").is_err());
    }
}
