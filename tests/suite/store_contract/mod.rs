//! The store contract (the module docs of `src/store/mod.rs`), checked
//! against every store through the `Store` trait: the embedded SQLite store,
//! the same with a 2-bit key hash (nearly every key collides, so every
//! dedup answer rests on verifying the stored row), and PostgreSQL (a real
//! server, see [`crate::postgres`]). Each check is
//! written once, as an `async fn(Fixture)`, and [`contract_tests!`] makes
//! one test per store of it, so a failure names its store
//! (`store_contract::postgres::...`). [`model`] checks whole servers against
//! an in-memory model of the design, on both stores too.

mod model;
mod retention;

use std::sync::Arc;
use std::time::Duration;

use crate::dedup::counters;
use logagg::event::{Event, FieldLimits, TopicPattern, WireEvent};
use logagg::store::{
    self, Commit, CommitTime, EventQuery, Outcome, SqliteOptions, Store, StoreConfig, StoreError,
    StoreLocation, SyncMode, TimeRange,
};

#[cfg(feature = "postgres")]
use crate::postgres::Postgres;

/// The stores the contract is checked on.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    /// The embedded store keeping 2 bits of each key hash.
    SqliteColliding,
    #[cfg(feature = "postgres")]
    Postgres,
}

/// One test's store: where it lives, to open it as often as the test needs.
pub struct Fixture {
    dir: tempfile::TempDir,
    location: StoreLocation,
    /// Bits of each key hash the embedded store keeps.
    hash_bits: u32,
    /// The cluster and database name, for PostgreSQL.
    #[cfg(feature = "postgres")]
    database: Option<(&'static Postgres, String)>,
}

impl Fixture {
    /// A fresh, empty store on `backend`, or `None` (after saying why) when
    /// that store cannot run here.
    #[cfg_attr(
        not(feature = "postgres"),
        expect(unused_variables, reason = "only PostgreSQL can be missing")
    )]
    pub async fn new(backend: Backend, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite | Backend::SqliteColliding => Some(Self {
                dir,
                location: StoreLocation::Embedded,
                hash_bits: match backend {
                    Backend::SqliteColliding => 2,
                    _ => 64,
                },
                #[cfg(feature = "postgres")]
                database: None,
            }),
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let postgres = Postgres::shared(test)?;
                let database = postgres.database().await;
                Some(Self {
                    dir,
                    location: StoreLocation::parse(&database.url).expect("a valid URL"),
                    hash_bits: 64,
                    database: Some((postgres, database.name)),
                })
            }
        }
    }

    pub fn location(&self) -> StoreLocation {
        self.location.clone()
    }

    fn config(&self) -> StoreConfig {
        StoreConfig {
            location: self.location(),
            data_dir: self.dir.path().to_path_buf(),
            embedded: SqliteOptions {
                hash_bits: self.hash_bits,
                ..SqliteOptions::new(SyncMode::Full)
            },
            pool_size: 4.try_into().expect("non-zero"),
        }
    }

    pub async fn try_open(&self) -> Result<Arc<dyn Store>, StoreError> {
        tokio::time::timeout(Duration::from_secs(30), store::open(&self.config()))
            .await
            .expect("the store opens in time")
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        self.try_open().await.expect("the store opens")
    }

    /// Writes `version` as the store's schema version, as a newer build
    /// would have.
    async fn set_schema_version(&self, version: i64) {
        #[cfg(feature = "postgres")]
        if let Some((postgres, name)) = &self.database {
            postgres
                .execute(
                    name,
                    &format!("UPDATE logagg_schema SET version = {version}"),
                )
                .await;
            return;
        }
        let db = rusqlite::Connection::open(self.dir.path().join("logagg.db")).expect("open db");
        db.pragma_update(None, "user_version", version)
            .expect("set user_version");
    }
}

/// One `#[tokio::test]` per store for each contract check.
macro_rules! contract_tests {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $check() {
                    if let Some(fixture) =
                        super::Fixture::new(super::Backend::Sqlite, stringify!($check)).await
                    {
                        super::$check(fixture).await;
                    }
                }
            )*
        }
        mod sqlite_colliding {
            $(
                #[tokio::test]
                async fn $check() {
                    if let Some(fixture) =
                        super::Fixture::new(super::Backend::SqliteColliding, stringify!($check))
                            .await
                    {
                        super::$check(fixture).await;
                    }
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test]
                async fn $check() {
                    if let Some(fixture) =
                        super::Fixture::new(super::Backend::Postgres, stringify!($check)).await
                    {
                        super::$check(fixture).await;
                    }
                }
            )*
        }
    };
}

contract_tests!(
    an_append_classifies_new_duplicate_and_conflicting_events,
    a_copy_of_a_stored_key_is_checked_against_the_stored_copy,
    a_commit_of_only_duplicates_stores_nothing_and_keeps_the_range,
    reopening_keeps_events_counters_and_the_seq_range,
    events_page_by_seq_and_topic_and_come_back_as_sent,
    events_filter_by_pattern_time_source_and_timestamp_in_either_order,
    a_pattern_over_uneven_topics_pages_in_seq_order_both_ways,
    received_at_never_decreases_when_the_clock_steps_back,
    topics_are_listed_in_byte_order_with_counts_and_newest_seq,
    stats_are_one_snapshot_while_appends_commit,
    a_newer_schema_is_refused_with_a_clear_message,
    the_store_reports_its_health_and_size,
    expired_keys_stay_duplicates_and_seqs_are_never_reused,
    past_the_horizon_a_retry_is_stored_again,
    over_a_size_limit_the_oldest_events_of_all_topics_expire_first,
);

use retention::{
    expired_keys_stay_duplicates_and_seqs_are_never_reused,
    over_a_size_limit_the_oldest_events_of_all_topics_expire_first,
    past_the_horizon_a_retry_is_stored_again,
};

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

async fn append(store: &dyn Store, events: &[Event]) -> Commit {
    tokio::time::timeout(
        Duration::from_secs(30),
        store.append(batch(events), CommitTime(0)),
    )
    .await
    .expect("append finishes in time")
    .expect("append")
}

async fn an_append_classifies_new_duplicate_and_conflicting_events(fixture: Fixture) {
    let store = fixture.open().await;
    let (a, a_again, a_changed, b) = (
        event("t", "1", "{}"),
        event("t", "1", "{ }"),
        event("t", "1", r#"{"x":1}"#),
        event("u", "1", "{}"),
    );
    let commit = append(store.as_ref(), &[a, a_again, a_changed, b]).await;
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
    assert_eq!(stats.counters, counters(4, 2, 2, 1));
    assert_eq!(stats.last_seq, 2);
    let topics: Vec<_> = stats
        .topics
        .iter()
        .map(|t| (t.topic.as_str(), t.events, t.last_seq))
        .collect();
    assert_eq!(topics, [("t", 1, 1), ("u", 1, 2)]);
}

async fn a_copy_of_a_stored_key_is_checked_against_the_stored_copy(fixture: Fixture) {
    let store = fixture.open().await;
    append(store.as_ref(), &[event("t", "1", r#"{"v":1}"#)]).await;
    // Later copies compare with the stored copy, not with each other: the
    // first here conflicts, the second (same as stored) does not, even
    // though it differs from the copy before it.
    let commit = append(
        store.as_ref(),
        &[
            event("t", "1", r#"{"v":2}"#),
            event("t", "1", r#"{ "v" : 1 }"#),
            event("t", "2", "{}"),
        ],
    )
    .await;
    assert_eq!(
        (commit.outcomes, commit.previous, commit.last),
        (
            vec![
                Outcome::Conflict,
                Outcome::Duplicate,
                Outcome::Stored { seq: 2 }
            ],
            1,
            2
        )
    );
    let stored = store.event("t", "1").await.expect("read").expect("stored");
    assert_eq!(stored.payload.get(), r#"{"v":1}"#, "the first copy wins");
    assert_eq!(
        store.stats().await.expect("stats").counters,
        counters(4, 2, 2, 1)
    );
}

async fn a_commit_of_only_duplicates_stores_nothing_and_keeps_the_range(fixture: Fixture) {
    let store = fixture.open().await;
    append(
        store.as_ref(),
        &[event("t", "1", "{}"), event("t", "2", "{}")],
    )
    .await;
    let commit = append(
        store.as_ref(),
        &[event("t", "2", "{}"), event("t", "1", "{}")],
    )
    .await;
    assert_eq!(
        commit,
        Commit {
            outcomes: vec![Outcome::Duplicate, Outcome::Duplicate],
            previous: 2,
            last: 2,
        }
    );
    assert_eq!(store.last_seq().await.expect("last seq"), 2);
    assert_eq!(
        store.stats().await.expect("stats").counters,
        counters(4, 2, 2, 0)
    );
}

async fn reopening_keeps_events_counters_and_the_seq_range(fixture: Fixture) {
    {
        let store = fixture.open().await;
        append(store.as_ref(), &[event("t", "1", "{}")]).await;
    }
    let store = fixture.open().await;
    let commit = append(
        store.as_ref(),
        &[event("t", "1", "{}"), event("t", "2", "{}")],
    )
    .await;
    assert_eq!(
        (commit.outcomes, commit.previous, commit.last),
        (vec![Outcome::Duplicate, Outcome::Stored { seq: 2 }], 1, 2)
    );
    assert_eq!(store.last_seq().await.expect("last seq"), 2);
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.counters, counters(3, 2, 1, 0));
    assert_eq!(
        (
            stats.topics.len(),
            stats.topics[0].events,
            stats.topics[0].last_seq
        ),
        (1, 2, 2)
    );
}

async fn events_page_by_seq_and_topic_and_come_back_as_sent(fixture: Fixture) {
    let store = fixture.open().await;
    let payload = r#"{ "text" : "日本語 🎉", "n": 12345678901234567890, "f": 2.50 }"#;
    let events: Vec<Event> = (1..=6)
        .map(|i| {
            let topic = if i % 2 == 0 { "even" } else { "odd" };
            event(topic, &i.to_string(), payload)
        })
        .collect();
    store
        .append(batch(&events), CommitTime(1_234))
        .await
        .expect("append");

    let page = |topic: Option<&str>, after, limit| {
        let store = Arc::clone(&store);
        let topic =
            topic.map(|t| TopicPattern::parse(t, &FieldLimits::default()).expect("a topic"));
        async move {
            store
                .events(EventQuery {
                    topic,
                    after,
                    limit,
                    ..EventQuery::default()
                })
                .await
                .expect("events")
                .events
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(None, 0, 4).await, [1, 2, 3, 4]);
    assert_eq!(page(None, 4, 4).await, [5, 6]);
    assert_eq!(page(Some("even"), 2, 10).await, [4, 6]);
    assert_eq!(page(Some("odd"), 0, 1).await, [1]);
    assert_eq!(page(Some("none"), 0, 10).await, Vec::<u64>::new());
    assert_eq!(page(None, u64::MAX, 10).await, Vec::<u64>::new());

    let stored = store
        .event("odd", "3")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        (
            stored.seq,
            stored.topic.as_str(),
            stored.event_id.as_str(),
            stored.timestamp.as_str(),
            stored.source.as_str(),
            stored.payload.get(),
            stored.received_at.as_str(),
        ),
        (
            3,
            "odd",
            "3",
            "2025-01-01T00:00:00Z",
            "s",
            payload,
            "1970-01-01T00:00:01.234Z"
        )
    );
    assert!(store.event("odd", "2").await.expect("read").is_none());
}

/// An event with its own timestamp and source.
fn sourced(topic: &str, id: &str, timestamp: &str, source: &str) -> Event {
    let json = format!(
        r#"{{"topic":"{topic}","event_id":"{id}","timestamp":"{timestamp}","source":"{source}","payload":{{}}}}"#
    );
    let wire: WireEvent<'_> = serde_json::from_str(&json).expect("test JSON");
    Event::from_wire(&wire, 0, &FieldLimits::default()).expect("valid test event")
}

/// The `seq`s of a page, and its cursor.
async fn seqs(store: &dyn Store, query: EventQuery) -> (Vec<u64>, Option<u64>) {
    let page = store.events(query).await.expect("events");
    (page.events.iter().map(|e| e.seq).collect(), page.next)
}

async fn events_filter_by_pattern_time_source_and_timestamp_in_either_order(fixture: Fixture) {
    let store = fixture.open().await;
    let pattern = |p: &str| Some(TopicPattern::parse(p, &FieldLimits::default()).expect("pattern"));
    // Three commits at 1000, 2000 and 3000 ms; seq 1..=9.
    let topics = ["auth.login", "auth.sso.ok", "billing.paid"];
    for (commit, at) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        let events: Vec<Event> = topics
            .iter()
            .enumerate()
            .map(|(i, topic)| {
                let n = commit * 3 + i + 1;
                let source = if n % 2 == 0 { "even" } else { "odd" };
                sourced(
                    topic,
                    &n.to_string(),
                    &format!("2025-01-0{n}T00:00:00+01:00"),
                    source,
                )
            })
            .collect();
        store
            .append(batch(&events), CommitTime(at))
            .await
            .expect("append");
    }
    let query = |limit| EventQuery {
        limit,
        ..EventQuery::default()
    };
    let (all, _) = seqs(&*store, query(100)).await;
    assert_eq!(all, (1..=9).collect::<Vec<_>>());

    // Patterns: one token, the rest, and one matching every topic.
    let by = |p: &str| EventQuery {
        topic: pattern(p),
        ..query(100)
    };
    assert_eq!(seqs(&*store, by("auth.*")).await, (vec![1, 4, 7], None));
    assert_eq!(
        seqs(&*store, by("auth.>")).await,
        (vec![1, 2, 4, 5, 7, 8], None)
    );
    assert_eq!(seqs(&*store, by("*.paid")).await, (vec![3, 6, 9], None));
    assert_eq!(seqs(&*store, by(">")).await.0, all);
    assert_eq!(seqs(&*store, by("nothing.>")).await, (vec![], None));

    // received_at: [since, until) is a seq range.
    let received = |since, until| EventQuery {
        received: TimeRange { since, until },
        ..query(100)
    };
    assert_eq!(
        seqs(&*store, received(Some(2_000), None)).await.0,
        [4, 5, 6, 7, 8, 9]
    );
    assert_eq!(
        seqs(&*store, received(Some(1_500), Some(3_000))).await.0,
        [4, 5, 6]
    );
    assert_eq!(
        seqs(&*store, received(None, Some(1_000))).await.0,
        Vec::<u64>::new()
    );
    assert_eq!(
        seqs(&*store, received(Some(3_001), None)).await.0,
        Vec::<u64>::new()
    );

    // Source and the event's own timestamp (given at +01:00, compared as instants).
    let day = |d: u32| {
        chrono::NaiveDate::from_ymd_opt(2025, 1, d)
            .expect("a date")
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_millis()
            - 3_600_000
    };
    let filtered = EventQuery {
        topic: pattern("auth.>"),
        source: Some("even".to_owned()),
        timestamp: TimeRange {
            since: Some(day(3)),
            until: Some(day(9)),
        },
        ..query(100)
    };
    assert_eq!(seqs(&*store, filtered.clone()).await, (vec![4, 8], None));

    // Newest first, paged with `before`; oldest first, paged with `after`.
    let newest = EventQuery {
        newest_first: true,
        topic: pattern("auth.>"),
        ..query(4)
    };
    assert_eq!(
        seqs(&*store, newest.clone()).await,
        (vec![8, 7, 5, 4], Some(4))
    );
    let older = EventQuery {
        before: Some(4),
        ..newest.clone()
    };
    assert_eq!(seqs(&*store, older).await, (vec![2, 1], None));
    let first = EventQuery {
        after: 2,
        before: Some(8),
        ..query(2)
    };
    assert_eq!(seqs(&*store, first).await, (vec![3, 4], Some(4)));
    let desc_range = EventQuery {
        newest_first: true,
        received: TimeRange {
            since: Some(2_000),
            until: Some(3_000),
        },
        ..query(10)
    };
    assert_eq!(seqs(&*store, desc_range).await, (vec![6, 5, 4], None));
}

/// A pattern's topics are read one index range each and merged: with
/// topics of very different sizes, bursts, and pages larger and smaller
/// than what a backend reads per statement, every page is the next events
/// in `seq` order (or newest first), none skipped or repeated.
async fn a_pattern_over_uneven_topics_pages_in_seq_order_both_ways(fixture: Fixture) {
    let store = fixture.open().await;
    // x.big: most events; x.burst: 400 in a row in the middle; x.rare:
    // every 97th; y.other: matched by no pattern below.
    let mut events = Vec::new();
    for n in 0..2_000 {
        let topic = match n {
            _ if n % 97 == 0 => "x.rare",
            800..1_200 => "x.burst",
            _ if n % 5 == 0 => "y.other",
            _ => "x.big",
        };
        let source = if n % 3 == 0 { "three" } else { "other" };
        events.push(sourced(
            topic,
            &n.to_string(),
            "2025-01-01T00:00:00Z",
            source,
        ));
    }
    for chunk in events.chunks(500) {
        append(&*store, chunk).await;
    }
    let expected: Vec<u64> = (1..=2_000)
        .filter(|seq| !events[(seq - 1) as usize].topic.as_str().starts_with('y'))
        .collect();
    let pattern = TopicPattern::parse("x.*", &FieldLimits::default()).expect("pattern");
    for (limit, newest_first, source) in [
        (7, false, None),
        (100, false, None),
        (1_000, false, None),
        (7, true, None),
        (300, true, None),
        (50, false, Some("three")),
        (50, true, Some("three")),
    ] {
        let mut read = Vec::new();
        let mut cursor = None;
        loop {
            let query = EventQuery {
                topic: Some(pattern.clone()),
                after: if newest_first { 0 } else { cursor.unwrap_or(0) },
                before: if newest_first { cursor } else { None },
                newest_first,
                source: source.map(str::to_owned),
                limit,
                ..EventQuery::default()
            };
            let page = store.events(query).await.expect("events");
            assert!(page.events.len() <= limit);
            read.extend(page.events.iter().map(|e| e.seq));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let mut want: Vec<u64> = expected
            .iter()
            .copied()
            .filter(|seq| source.is_none() || (seq - 1) % 3 == 0)
            .collect();
        if newest_first {
            want.reverse();
        }
        assert_eq!(
            read, want,
            "limit {limit}, newest first {newest_first}, source {source:?}"
        );
    }
}

async fn received_at_never_decreases_when_the_clock_steps_back(fixture: Fixture) {
    let store = fixture.open().await;
    store
        .append(batch(&[event("t", "1", "{}")]), CommitTime(5_000))
        .await
        .expect("append");
    store
        .append(batch(&[event("t", "2", "{}")]), CommitTime(4_000))
        .await
        .expect("append");
    let page = store
        .events(EventQuery {
            limit: 10,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let stamps: Vec<&str> = page.events.iter().map(|e| e.received_at.as_str()).collect();
    assert_eq!(
        stamps,
        ["1970-01-01T00:00:05.000Z", "1970-01-01T00:00:05.000Z"]
    );
    let since = EventQuery {
        received: TimeRange {
            since: Some(5_000),
            until: None,
        },
        limit: 10,
        ..EventQuery::default()
    };
    assert_eq!(seqs(&*store, since).await.0, [1, 2]);
}

async fn topics_are_listed_in_byte_order_with_counts_and_newest_seq(fixture: Fixture) {
    let store = fixture.open().await;
    let names = ["b", "a", "B", "é", "a.b", "a", "b"];
    let events: Vec<Event> = names
        .iter()
        .enumerate()
        .map(|(i, topic)| event(topic, &i.to_string(), "{}"))
        .collect();
    append(store.as_ref(), &events).await;
    let topics: Vec<_> = store
        .topics()
        .await
        .expect("topics")
        .into_iter()
        .map(|t| (t.topic, t.events, t.last_seq))
        .collect();
    let expected = [
        ("B", 1, 3),
        ("a", 2, 6),
        ("a.b", 1, 5),
        ("b", 2, 7),
        ("é", 1, 4),
    ];
    assert_eq!(
        topics,
        expected.map(|(topic, events, last)| (topic.to_owned(), events, last))
    );
}

async fn stats_are_one_snapshot_while_appends_commit(fixture: Fixture) {
    let store = fixture.open().await;
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for round in 0..150 {
                let events: Vec<Event> = (0..6)
                    .map(|i| {
                        // Every other event repeats one of the round before.
                        let id = if i % 2 == 0 {
                            round * 6 + i
                        } else {
                            round.max(1) * 6 - i
                        };
                        event(&format!("s.{}", i % 3), &id.to_string(), "{}")
                    })
                    .collect();
                append(store.as_ref(), &events).await;
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let stats = store.stats().await.expect("stats");
        let c = &stats.counters;
        assert_eq!(
            c.received,
            c.unique_processed + c.duplicate_dropped,
            "{stats:?}"
        );
        assert_eq!(c.unique_processed, stats.last_seq, "{stats:?}");
        let per_topic: u64 = stats.topics.iter().map(|t| t.events).sum();
        assert_eq!(per_topic, c.unique_processed, "{stats:?}");
        reads += 1;
    }
    writer.await.expect("writer did not panic");
    assert!(reads > 1, "stats were read while appends ran");
}

async fn a_newer_schema_is_refused_with_a_clear_message(fixture: Fixture) {
    drop(fixture.open().await);
    fixture.set_schema_version(99).await;
    let error = match fixture.try_open().await {
        Ok(_) => panic!("a store with a newer schema opened"),
        Err(error) => error,
    };
    assert!(
        matches!(error, StoreError::SchemaTooNew { found: 99, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("newer than this build"),
        "{error}"
    );
}

async fn the_store_reports_its_health_and_size(fixture: Fixture) {
    let store = fixture.open().await;
    store.check().await.expect("a fresh store is healthy");
    append(store.as_ref(), &[event("t", "1", "{}")]).await;
    assert!(store.size_bytes().await.expect("size") > 0);
}
