//! Retention (issue 13) on the embedded store: expiry by age of receipt and
//! by topic pattern, the dedup horizon (an expired event re-sent is a
//! duplicate; past a finite horizon it is stored again), budgets, the
//! steady-state size bound, the size limit (`--retain-bytes`: oldest
//! first across topics), the wiring through `serve` and `/stats`, and the
//! refusals of bad retention flags. [`on_postgres`]: `--retain-bytes` on
//! PostgreSQL.
//!
//! Most checks call [`Store::expire`] with a chosen `now` and events
//! stamped with chosen commit times, so nothing here waits for a clock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use logagg::event::{Event, FieldLimits, TopicPattern, WireEvent};
use logagg::retention::{ByteSize, ExpireReport, Keep, RetainRule, RetentionPolicy};
use logagg::store::{
    self, CommitTime, EventQuery, Outcome, SqliteOptions, Store, StoreConfig, StoreLocation,
    SyncMode,
};

use crate::common::{TestApp, padded_batch};

#[cfg(feature = "postgres")]
mod on_postgres;

const SECOND: i64 = 1_000;

fn event(topic: &str, id: &str, pad: usize) -> Event {
    let json = format!(
        r#"{{"topic":"{topic}","event_id":"{id}","timestamp":"2025-01-01T00:00:00Z","source":"s","payload":{{"pad":"{}"}}}}"#,
        "p".repeat(pad)
    );
    let wire: WireEvent<'_> = serde_json::from_str(&json).expect("test JSON");
    Event::from_wire(&wire, 0, &FieldLimits::default()).expect("valid test event")
}

fn events(topic: &str, prefix: &str, count: usize, pad: usize) -> Vec<Event> {
    (0..count)
        .map(|i| event(topic, &format!("{prefix}-{i}"), pad))
        .collect()
}

async fn open(dir: &Path, hash_bits: u32) -> Arc<dyn Store> {
    store::open(&StoreConfig {
        location: StoreLocation::Embedded,
        data_dir: dir.to_path_buf(),
        embedded: SqliteOptions {
            hash_bits,
            // Snapshots often, so reopening goes through them.
            snapshot_keys: 50,
            ..SqliteOptions::new(SyncMode::Full)
        },
        pool_size: 2.try_into().expect("non-zero"),
    })
    .await
    .expect("the store opens")
}

/// Appends `events` as one commit received at `at` milliseconds.
async fn append_at(store: &dyn Store, events: &[Event], at: i64) -> Vec<Outcome> {
    store
        .append(events.to_vec().into(), CommitTime(at))
        .await
        .expect("append")
        .outcomes
}

fn policy(default: &str, rules: &[&str], horizon: &str) -> RetentionPolicy {
    RetentionPolicy {
        rules: rules
            .iter()
            .map(|rule| RetainRule::parse(rule).expect("rule"))
            .collect(),
        default: Keep::parse(default).expect("duration"),
        dedup_horizon: Keep::parse(horizon).expect("duration"),
        bytes_max: None,
    }
}

/// Expires until nothing is left to do, 1_000 rows per call.
async fn expire_all(store: &dyn Store, policy: &RetentionPolicy, now: i64) -> ExpireReport {
    crate::common::expire_all(store, policy, now, 1_000).await
}

async fn stored_ids(store: &dyn Store, topic: Option<&str>) -> Vec<String> {
    let page = store
        .events(EventQuery {
            topic: topic
                .map(|t| TopicPattern::parse(t, &FieldLimits::default()).expect("a valid topic")),
            limit: 100_000,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    page.events.into_iter().map(|e| e.event_id).collect()
}

#[tokio::test]
async fn expired_events_are_deleted_but_a_retry_of_one_is_still_a_duplicate() {
    // 2 bits of hash: every dedup answer rests on verifying the stored
    // row, or, once the event is gone, its dedup record.
    for hash_bits in [64, 2] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), hash_bits).await;
        let old = events("a", "old", 30, 10);
        let new = events("a", "new", 5, 10);
        append_at(&*store, &old, 0).await;
        append_at(&*store, &new, 10 * SECOND).await;
        let keep_5s = policy("5s", &[], "forever");

        // Nothing is 5 s old at 4 s.
        assert_eq!(expire_all(&*store, &keep_5s, 4 * SECOND).await.expired, 0);
        let report = expire_all(&*store, &keep_5s, 12 * SECOND).await;
        assert_eq!((report.expired, report.forgotten), (30, 0));
        let expected: Vec<String> = (0..5).map(|i| format!("new-{i}")).collect();
        assert_eq!(stored_ids(&*store, None).await, expected);
        assert_eq!(stored_ids(&*store, Some("a")).await, expected);
        assert!(store.event("a", "old-3").await.expect("lookup").is_none());

        let stats = store.stats().await.expect("stats");
        assert_eq!(stats.counters.unique_processed, 35);
        assert_eq!((stats.stored, stats.expired), (5, 30));
        assert_eq!(stats.topics[0].events, 5);

        // A late retry of expired events, even with other content, and of
        // a stored one: duplicates all, nothing stored.
        let mut retry = old[..10].to_vec();
        retry.push(event("a", "old-11", 99));
        retry.push(new[0].clone());
        let outcomes = append_at(&*store, &retry, 13 * SECOND).await;
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Duplicate),
            "{hash_bits} bits: {outcomes:?}"
        );
        // And after a restart (the keydir from its snapshot and the keys).
        drop(store);
        let store = open(dir.path(), hash_bits).await;
        let outcomes = append_at(&*store, &old[20..], 14 * SECOND).await;
        assert!(outcomes.iter().all(|o| *o == Outcome::Duplicate));
        let stats = store.stats().await.expect("stats");
        assert_eq!(stats.counters.unique_processed, 35);
        assert_eq!(stats.counters.duplicate_dropped, 22);
        assert_eq!((stats.stored, stats.expired), (5, 30));
    }
}

#[tokio::test]
async fn the_first_matching_pattern_decides_how_long_a_topic_is_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), 64).await;
    for topic in ["audit.login", "debug.x", "other", "debug.x.y"] {
        append_at(&*store, &events(topic, topic, 3, 1), 0).await;
    }
    let policy = policy("10s", &["audit.>=forever", "debug.*=1s"], "forever");
    expire_all(&*store, &policy, 5 * SECOND).await;
    let topics = store.topics().await.expect("topics");
    let counts: Vec<(&str, u64)> = topics
        .iter()
        .map(|t| (t.topic.as_str(), t.events))
        .collect();
    // `debug.*` is one token: `debug.x.y` falls to the default.
    assert_eq!(
        counts,
        [
            ("audit.login", 3),
            ("debug.x", 0),
            ("debug.x.y", 3),
            ("other", 3)
        ]
    );
    expire_all(&*store, &policy, 365 * 86_400 * SECOND).await;
    let remaining = stored_ids(&*store, None).await;
    assert_eq!(
        remaining,
        ["audit.login-0", "audit.login-1", "audit.login-2"]
    );
}

#[tokio::test]
async fn each_call_expires_at_most_its_budget_and_says_when_more_is_left() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), 64).await;
    append_at(&*store, &events("t", "e", 2_500, 1), 0).await;
    let policy = policy("1s", &[], "forever");
    let mut reports = Vec::new();
    loop {
        let report = store
            .expire(&policy, CommitTime(2 * SECOND), 1_000)
            .await
            .expect("expire");
        reports.push((report.expired, report.more));
        if !report.more {
            break;
        }
    }
    assert_eq!(reports, [(1_000, true), (1_000, true), (500, false)]);
    assert_eq!(store.stats().await.expect("stats").stored, 0);
}

#[tokio::test]
async fn past_a_finite_horizon_a_retry_is_stored_again_as_a_new_event() {
    for hash_bits in [64, 2] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), hash_bits).await;
        let first = events("t", "e", 100, 1);
        append_at(&*store, &first, 0).await;
        append_at(&*store, &events("t", "late", 100, 1), 30 * SECOND).await;
        let policy = policy("10s", &[], "20s");

        // Expired at 15 s, still remembered: a duplicate.
        let report = expire_all(&*store, &policy, 15 * SECOND).await;
        assert_eq!((report.expired, report.forgotten), (100, 0));
        assert!(
            append_at(&*store, &first[..1], 15 * SECOND)
                .await
                .iter()
                .all(|o| *o == Outcome::Duplicate)
        );
        // Forgotten at 25 s: the retry is new, with a new seq.
        let report = expire_all(&*store, &policy, 25 * SECOND).await;
        assert_eq!((report.expired, report.forgotten), (0, 100));
        let outcomes = append_at(&*store, &first[..1], 25 * SECOND).await;
        assert_eq!(outcomes, [Outcome::Stored { seq: 201 }], "{hash_bits} bits");
        // The forgotten keys are gone for good, across a restart too (the
        // store checks its index against its key count at open).
        drop(store);
        let store = open(dir.path(), hash_bits).await;
        let outcomes = append_at(&*store, &first[..3], 26 * SECOND).await;
        assert_eq!(
            outcomes,
            [
                Outcome::Duplicate,
                Outcome::Stored { seq: 202 },
                Outcome::Stored { seq: 203 }
            ]
        );
        let stats = store.stats().await.expect("stats");
        assert_eq!(stats.counters.unique_processed, 203);
        assert_eq!((stats.stored, stats.expired), (103, 100));
    }
}

/// The logical size of the database (what the file holds once the WAL is
/// checkpointed), read on a connection of the test's own.
fn database_bytes(dir: &Path) -> u64 {
    let db = rusqlite::Connection::open(dir.join("logagg.db")).expect("open db");
    let pages: i64 = db
        .query_row("PRAGMA page_count", [], |row| row.get(0))
        .expect("page_count");
    let page: i64 = db
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .expect("page_size");
    u64::try_from(pages * page).expect("a size")
}

/// The database's used bytes (pages less free pages), as `--retain-bytes`
/// measures them, read on a connection of the test's own.
fn used_bytes(dir: &Path) -> u64 {
    let db = rusqlite::Connection::open(dir.join("logagg.db")).expect("open db");
    let used: i64 = db
        .query_row(
            "SELECT (p.page_count - f.freelist_count) * s.page_size
             FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s",
            [],
            |row| row.get(0),
        )
        .expect("used bytes");
    u64::try_from(used).expect("a size")
}

#[tokio::test]
async fn over_the_size_limit_the_oldest_events_of_all_topics_expire_first() {
    for hash_bits in [64, 2] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = open(dir.path(), hash_bits).await;
        // 600 events of ~1 KiB, three topics interleaved, in 6 commits.
        let all: Vec<Event> = (0..600)
            .map(|i| event(["a", "b", "c"][i % 3], &format!("e-{i}"), 1_000))
            .collect();
        for (n, chunk) in all.chunks(100).enumerate() {
            append_at(&*store, chunk, i64::try_from(n).expect("small") * SECOND).await;
        }
        let before = used_bytes(dir.path());
        let limit = before / 2;
        let mut by_size = RetentionPolicy::forever();
        by_size.bytes_max = Some(limit);
        // Budgets of 1,000 rows: the excess needs fewer, in one or more
        // transactions; no age limit, so only the size decides.
        let report = expire_all(&*store, &by_size, 0).await;
        let after = used_bytes(dir.path());
        assert!(
            after <= limit,
            "{hash_bits} bits: {after} bytes used, limit {limit} (from {before})"
        );
        let stats = store.stats().await.expect("stats");
        assert_eq!(stats.expired, report.expired);
        assert_eq!(stats.stored + stats.expired, 600);
        // No more went than needed: it stops within an eighth of the
        // limit (pages come free a few rows at a time).
        assert!(
            after > limit - limit / 8,
            "{hash_bits} bits: {after} bytes used, limit {limit}: too much expired"
        );
        assert!((150..550).contains(&stats.stored), "{}", stats.stored);
        // And the file gave the space back: at most an eighth is kept free
        // (of the pages in the database, WAL included; one page of slack).
        let pages = database_bytes(dir.path());
        assert!(
            pages <= after * 8 / 7 + 4_096,
            "{hash_bits} bits: {pages} bytes of pages for {after} used"
        );
        // Oldest first: what is left is the newest events, seqs without a
        // hole up to 600, and each topic's expired_through is below its
        // oldest stored event.
        crate::common::assert_only_the_newest_are_left(&*store, &stats, 600).await;
        // A retry of expired events is a duplicate; under the limit
        // nothing more expires.
        let outcomes = append_at(&*store, &all[..50], 10 * SECOND).await;
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Duplicate),
            "{hash_bits} bits: {outcomes:?}"
        );
        assert_eq!(expire_all(&*store, &by_size, 0).await.expired, 0);
        assert_eq!(
            store
                .stats()
                .await
                .expect("stats")
                .counters
                .unique_processed,
            600
        );
    }
}

#[tokio::test]
async fn a_server_with_a_size_limit_expires_the_oldest_in_the_background() {
    let limit = 300 * 1024;
    let app = TestApp::spawn_with(|config| {
        config.retain_bytes = Some(ByteSize::parse("300KiB").expect("a size"));
        config.expire_interval = Duration::from_millis(50);
    })
    .await;
    let data_dir = app.config.data_dir.clone();
    // ~1 MB published in all, more than three times the limit.
    let mut batches = Vec::new();
    for n in 0..10 {
        let batch = padded_batch("t", &format!("b{n}"), 100, 1_000);
        app.api.publish_ok(&batch).await;
        batches.push(batch);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let stats = app.api.stats().await;
        if stats["expired"].as_u64() > Some(0) && used_bytes(&data_dir) <= limit {
            break stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not under the limit: {} bytes used, {stats}",
            used_bytes(&data_dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stats["unique_processed"], 1_000);
    // The first batch went first, and a retry of it is a duplicate.
    let receipt = app.api.publish_ok(&batches[0]).await;
    assert_eq!(receipt["duplicates"], 100, "{receipt}");
    let stored = app.api.all_events(None).await;
    assert!(
        stored.iter().all(|e| !e["event_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("b0-"))),
        "{stored:?}"
    );
    assert_eq!(app.api.stats().await["unique_processed"], 1_000);
}

/// With the default `forever` horizon, expired events' key records stay
/// inside `--retain-bytes`; once they alone fill it, every event expires at
/// the next round. The server says so in `/health` and `/stats`.
#[tokio::test]
async fn key_records_that_alone_fill_the_size_limit_are_reported() {
    let app = TestApp::spawn_with(|config| {
        config.retain_bytes = Some(ByteSize::parse("256KiB").expect("a size"));
        config.expire_interval = Duration::from_millis(50);
    })
    .await;
    let (_, health) = app.api.get("/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    // 4,000 events with 100-byte ids: ~1 MB of key records (the id is in
    // `expired_keys` and its unique index).
    let prefix = "k".repeat(95);
    for n in 0..20 {
        let batch = padded_batch("t", &format!("{prefix}{n:02}"), 200, 1);
        app.api.publish_ok(&batch).await;
    }
    // Every event expires (the last ones at the round after they come),
    // and the round that finds nothing left to expire says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let stats = app.api.stats().await;
        if stats["expired"] == 4_000 && stats["keys_fill_size_limit"] == true {
            break stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reported: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (stats["stored"].as_u64(), stats["unique_processed"].as_u64()),
        (Some(0), Some(4_000))
    );
    let (status, health) = app.api.get("/health").await;
    assert_eq!(
        (status, &health["status"]),
        (200, &"degraded".into()),
        "{health}"
    );
    assert_eq!(health["keys_fill_size_limit"], true, "{health}");
    let detail = health["detail"].as_str().expect("a detail");
    assert!(
        detail.contains("--retain-bytes") && detail.contains("--dedup-horizon"),
        "{detail}"
    );
}

#[tokio::test]
async fn under_steady_ingest_and_expiry_the_database_stops_growing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(dir.path(), 64).await;
    // One round a second: 200 events of ~1 KiB each; kept 10 s, keys 20 s.
    let policy = policy("10s", &[], "20s");
    let rounds: u32 = 100;
    let mut sizes = Vec::new();
    for round in 0..rounds {
        let at = i64::from(round) * SECOND;
        append_at(&*store, &events("t", &format!("r{round}"), 200, 1_000), at).await;
        expire_all(&*store, &policy, at).await;
        sizes.push(database_bytes(dir.path()));
    }
    let auto_vacuum: i64 = rusqlite::Connection::open(dir.path().join("logagg.db"))
        .expect("open db")
        .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
        .expect("auto_vacuum");
    assert_eq!(
        auto_vacuum, 2,
        "a new store is made with incremental vacuum"
    );
    // The window fills by round 20; after that, the size holds.
    let settled = *sizes[25..40].iter().max().expect("sizes");
    let late = *sizes[60..].iter().max().expect("sizes");
    let ingested = u64::from(rounds) * 200 * 1_000;
    assert!(
        late <= settled + settled / 5,
        "still growing: {settled} bytes at rounds 25-40, {late} later; all: {sizes:?}"
    );
    assert!(
        late < ingested / 4,
        "{late} bytes hold more than the window ({ingested} bytes ingested)"
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.counters.unique_processed, 20_000);
    assert!(stats.stored <= 2_200, "{} stored", stats.stored);
}

#[tokio::test]
async fn a_server_expires_in_the_background_and_stats_show_it() {
    let app = TestApp::spawn_with(|config| {
        config.retain_for = Keep::For(Duration::from_millis(300));
        config.retain = vec![RetainRule::parse("keep.>=forever").expect("rule")];
        config.expire_interval = Duration::from_millis(50);
    })
    .await;
    let batch = padded_batch("t", "e", 20, 10);
    app.api.publish_ok(&batch).await;
    app.api
        .publish_ok(&padded_batch("keep.me", "k", 5, 10))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let stats = app.api.stats().await;
        if stats["expired"] == 20 {
            break stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing expired: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(stats["unique_processed"], 25);
    assert_eq!(stats["stored"], 5);
    // The retry of an expired event is a duplicate, through HTTP too.
    let receipt = app.api.publish_ok(&batch).await;
    assert_eq!(
        (receipt["unique"].as_u64(), receipt["duplicates"].as_u64()),
        (Some(0), Some(20))
    );
    assert_eq!(app.api.stats().await["unique_processed"], 25);
    let stored = app.api.all_events(None).await;
    assert!(stored.iter().all(|e| e["topic"] == "keep.me"), "{stored:?}");
}

/// The same through a server over PostgreSQL: expiry in the background,
/// `/stats`, and a retry of an expired event answered as a duplicate.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_server_over_postgres_expires_and_keeps_the_dedup_promise() {
    let test = "a_server_over_postgres_expires_and_keeps_the_dedup_promise";
    let Some(postgres) = crate::postgres::Postgres::shared(test) else {
        return;
    };
    let database = postgres.database().await;
    let app = TestApp::spawn_with(|config| {
        config.store = StoreLocation::parse(&database.url).expect("a URL");
        config.retain_for = Keep::For(Duration::from_millis(300));
        config.expire_interval = Duration::from_millis(50);
    })
    .await;
    let batch = padded_batch("t", "e", 20, 10);
    app.api.publish_ok(&batch).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while app.api.stats().await["expired"] != 20 {
        assert!(tokio::time::Instant::now() < deadline, "nothing expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let receipt = app.api.publish_ok(&batch).await;
    assert_eq!(receipt["duplicates"], 20, "{receipt}");
    let stats = app.api.stats().await;
    assert_eq!(
        (stats["unique_processed"].as_u64(), stats["stored"].as_u64()),
        (Some(20), Some(0))
    );
    let (_, page) = app.api.get("/events?after=0").await;
    assert_eq!(page["expired_through"], 20, "{page}");
}

#[test]
fn bad_retention_flags_are_refused_with_one_line_naming_the_flag() {
    for (args, says) in [
        (&["--retain-for", "soon"][..], "--retain-for"),
        (&["--retain-for", "0s"][..], "--retain-for"),
        (&["--retain", "audit.>"][..], "--retain"),
        (&["--retain", "audit.>.x=1d"][..], "--retain"),
        (&["--retain-bytes", "lots"][..], "--retain-bytes"),
        (&["--retain-bytes", "0MB"][..], "--retain-bytes"),
        (
            &["--dedup-horizon", "1d", "--retain-for", "7d"][..],
            "--dedup-horizon",
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .expect("running logagg serve");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        // Nothing was created: the check comes before the store opens.
        assert!(!dir.path().join("logagg.db").exists(), "{args:?}");
    }
}

/// A server over a store where 10 events of `t` expired (seqs 1-10), 5
/// are stored (11-15), and `u` (16-17) lost nothing. The expiry is done on
/// the store with a chosen clock and the server keeps everything, so
/// nothing expires while the test reads.
async fn server_with_expired_events() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = open(dir.path(), 64).await;
        append_at(&*store, &events("t", "old", 10, 1), 0).await;
        append_at(&*store, &events("t", "new", 5, 1), 10 * SECOND).await;
        append_at(&*store, &events("u", "kept", 2, 1), 0).await;
        let report = expire_all(
            &*store,
            &policy("5s", &["u=forever"], "forever"),
            6 * SECOND,
        )
        .await;
        assert_eq!(report.expired, 10);
    }
    let data_dir = dir.path().to_path_buf();
    let app = TestApp::spawn_with(|config| config.data_dir = data_dir).await;
    (app, dir)
}

#[tokio::test]
async fn a_reader_behind_the_horizon_is_told_what_expired() {
    let (app, _dir) = server_with_expired_events().await;
    let page = |path: &'static str| {
        let api = app.api.clone();
        async move {
            let (status, body) = api.get(path).await;
            assert_eq!(status, 200, "{path}: {body}");
            let seqs: Vec<u64> = body["events"]
                .as_array()
                .expect("events")
                .iter()
                .map(|e| e["seq"].as_u64().expect("seq"))
                .collect();
            (seqs, body["expired_through"].as_u64())
        }
    };
    assert_eq!(
        page("/events?after=0").await,
        (vec![11, 12, 13, 14, 15, 16, 17], Some(10))
    );
    assert_eq!(
        page("/events?topic=t&after=4").await,
        (vec![11, 12, 13, 14, 15], Some(10))
    );
    assert_eq!(page("/events?after=10").await.1, None);
    // `u` lost nothing: no warning for it.
    assert_eq!(page("/events?topic=u&after=0").await, (vec![16, 17], None));
    let (_, topics) = app.api.get("/topics").await;
    assert_eq!(topics["topics"][0]["expired_through"], 10, "{topics}");
    assert_eq!(topics["topics"][0]["events"], 5, "{topics}");
}

/// The raw text of a `/subscribe` stream up to and including `until`.
async fn stream_text(app: &TestApp, query: &str, until: &str) -> String {
    use futures_util::StreamExt;
    let response = app
        .api
        .http
        .get(app.api.url(&format!("/subscribe?{query}")))
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .expect("GET /subscribe");
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains(until) {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .unwrap_or_else(|_| panic!("{query}: no {until:?} in time; got {text:?}"))
            .expect("the stream goes on")
            .expect("reading the stream");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[tokio::test]
async fn a_subscriber_resuming_from_an_expired_seq_is_told_before_it_goes_on() {
    let (app, _dir) = server_with_expired_events().await;
    let expired = "event: expired\ndata: {\"after\":2,\"expired_through\":10}\n\n";
    for (query, last) in [("topic=t&from=2", 15), ("topic=>&from=2", 17)] {
        let text = stream_text(&app, query, &format!("id: {last}\n")).await;
        assert!(text.starts_with(expired), "{query}: {text:?}");
        let ids: Vec<&str> = text.lines().filter(|l| l.starts_with("id: ")).collect();
        let expected: Vec<String> = (11..=last).map(|seq| format!("id: {seq}")).collect();
        assert_eq!(ids, expected, "{query}");
        assert_eq!(text.matches("event: expired").count(), 1, "{query}");
    }
    // From a stored seq, or on a topic that lost nothing: no such message.
    let text = stream_text(&app, "topic=t&from=10", "id: 15\n").await;
    assert!(!text.contains("expired"), "{text:?}");
    let text = stream_text(&app, "topic=u&from=0", "id: 17\n").await;
    assert!(!text.contains("expired"), "{text:?}");
}

#[tokio::test]
async fn a_schema_2_store_is_upgraded_in_place_and_keeps_its_events() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let store = open(dir.path(), 64).await;
        append_at(&*store, &events("t", "e", 10, 1), 0).await;
    }
    // Back to what a schema-2 build wrote.
    let db = rusqlite::Connection::open(dir.path().join("logagg.db")).expect("open db");
    db.execute_batch(
        "DROP TABLE event_text;
         DROP TABLE text_index;
         ALTER TABLE topics DROP COLUMN text_indexed;
         DROP TABLE expired_keys;
         ALTER TABLE topics DROP COLUMN expired_through;
         ALTER TABLE counters DROP COLUMN expired;
         ALTER TABLE counters DROP COLUMN expired_through;
         PRAGMA user_version = 2;",
    )
    .expect("downgrade");
    drop(db);
    let store = open(dir.path(), 64).await;
    assert_eq!(stored_ids(&*store, None).await.len(), 10);
    let report = expire_all(&*store, &policy("1s", &[], "forever"), 5 * SECOND).await;
    assert_eq!(report.expired, 10);
    assert!(
        append_at(&*store, &events("t", "e", 10, 1), 6 * SECOND)
            .await
            .iter()
            .all(|o| *o == Outcome::Duplicate)
    );
    let version: i64 = rusqlite::Connection::open(dir.path().join("logagg.db"))
        .expect("open db")
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version");
    assert_eq!(version, 4);
}

#[tokio::test]
async fn the_subscribe_command_says_when_it_skipped_expired_events() {
    let (app, _dir) = server_with_expired_events().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
        .args(["subscribe", "t", "--from", "2", "--count", "5", "--url"])
        .arg(&app.api.base)
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("running logagg subscribe");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    assert!(
        stderr.contains(r#"expired events after seq 2: {"after":2,"expired_through":10}"#),
        "{stderr}"
    );
}
