//! The retention part of the store contract (`Store::expire`), on every
//! store: expiry by age of receipt keeps each expired key, so a retry is a
//! duplicate, also after a reopen; the counters, topics and
//! `expired_through` agree with what is left; a `seq` is never used twice,
//! even when the newest events expire; past a finite dedup horizon a retry
//! is stored again; over a size limit (`--retain-bytes`) the oldest events
//! of all topics go first, and no more once under it, also after a reopen.

use std::time::Duration;

use logagg::event::{FieldLimits, TopicPattern};
use logagg::retention::{ExpireReport, Keep, RetentionPolicy};
use logagg::store::{CommitTime, EventQuery, Outcome, Store};

use super::{Fixture, event};

const SECOND: i64 = 1_000;

fn keep(default: Duration, horizon: Keep) -> RetentionPolicy {
    RetentionPolicy {
        rules: Vec::new(),
        default: Keep::For(default),
        dedup_horizon: horizon,
        bytes_max: None,
    }
}

async fn append_at(store: &dyn Store, prefix: &str, count: usize, at: i64) -> Vec<Outcome> {
    let events: Vec<_> = (0..count)
        .map(|i| event("a", &format!("{prefix}-{i}"), "{}"))
        .collect();
    store
        .append(events.into(), CommitTime(at))
        .await
        .expect("append")
        .outcomes
}

/// Expires until nothing is left to do, 7 rows per call.
async fn expire_all(store: &dyn Store, policy: &RetentionPolicy, now: i64) -> ExpireReport {
    crate::common::expire_all(store, policy, now, 7).await
}

pub(super) async fn expired_keys_stay_duplicates_and_seqs_are_never_reused(fixture: Fixture) {
    let store = fixture.open().await;
    append_at(&*store, "old", 10, 0).await;
    append_at(&*store, "new", 5, 10 * SECOND).await;
    let policy = keep(Duration::from_secs(5), Keep::Forever);
    // Budgets of 7 rows: several transactions.
    assert_eq!(expire_all(&*store, &policy, 12 * SECOND).await.expired, 10);
    let page = store
        .events(EventQuery {
            topic: Some(TopicPattern::parse("a", &FieldLimits::default()).expect("a topic")),
            limit: 100,
            ..EventQuery::default()
        })
        .await
        .expect("events");
    let seqs: Vec<u64> = page.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [11, 12, 13, 14, 15]);
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.counters.unique_processed, 15);
    assert_eq!((stats.stored, stats.expired), (5, 10));
    assert_eq!(
        (stats.topics[0].events, stats.topics[0].expired_through),
        (5, 10)
    );
    assert_eq!(store.expired_through(Some("a")).await.expect("read"), 10);
    assert_eq!(store.expired_through(Some("b")).await.expect("read"), 0);
    assert_eq!(store.expired_through(None).await.expect("read"), 10);
    assert!(store.event("a", "old-1").await.expect("lookup").is_none());
    let retry = append_at(&*store, "old", 10, 13 * SECOND).await;
    assert!(retry.iter().all(|o| *o == Outcome::Duplicate), "{retry:?}");

    // Everything expires, the newest included: the next seq still follows
    // the newest ever used, and the keys are still known after a reopen.
    assert_eq!(expire_all(&*store, &policy, 60 * SECOND).await.expired, 5);
    drop(store);
    let store = fixture.open().await;
    assert_eq!(store.last_seq().await.expect("last seq"), 15);
    let outcomes = append_at(&*store, "new", 6, 61 * SECOND).await;
    assert_eq!(&outcomes[..5], [Outcome::Duplicate; 5]);
    assert_eq!(outcomes[5], Outcome::Stored { seq: 16 });
    let stats = store.stats().await.expect("stats");
    assert_eq!((stats.stored, stats.expired, stats.last_seq), (1, 15, 16));
}

pub(super) async fn past_the_horizon_a_retry_is_stored_again(fixture: Fixture) {
    let store = fixture.open().await;
    append_at(&*store, "e", 10, 0).await;
    let policy = keep(Duration::from_secs(10), Keep::For(Duration::from_secs(20)));
    let report = expire_all(&*store, &policy, 15 * SECOND).await;
    assert_eq!((report.expired, report.forgotten), (10, 0));
    assert_eq!(
        append_at(&*store, "e", 1, 15 * SECOND).await,
        [Outcome::Duplicate]
    );
    let report = expire_all(&*store, &policy, 25 * SECOND).await;
    assert_eq!((report.expired, report.forgotten), (0, 10));
    assert_eq!(
        append_at(&*store, "e", 2, 25 * SECOND).await,
        [Outcome::Stored { seq: 11 }, Outcome::Stored { seq: 12 }]
    );
}

pub(super) async fn over_a_size_limit_the_oldest_events_of_all_topics_expire_first(
    fixture: Fixture,
) {
    let store = fixture.open().await;
    // 600 events of ~1 KiB, three topics interleaved, in 6 commits: some
    // 650 KB of events (the embedded store measures more: pages, keys).
    let pad = "p".repeat(1_000);
    let all: Vec<_> = (0..600)
        .map(|i| {
            let payload = format!(r#"{{"pad":"{pad}"}}"#);
            event(["a", "b", "c"][i % 3], &format!("e-{i}"), &payload)
        })
        .collect();
    for (n, chunk) in all.chunks(100).enumerate() {
        let at = i64::try_from(n).expect("small") * SECOND;
        store
            .append(chunk.to_vec().into(), CommitTime(at))
            .await
            .expect("append");
    }
    let mut by_size = RetentionPolicy::forever();
    by_size.bytes_max = Some(300 * 1024);
    // Budgets of 7 rows: many transactions; no age limit, so only the
    // size decides.
    let report = expire_all(&*store, &by_size, 0).await;
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.expired, report.expired);
    assert_eq!(
        stats.stored + stats.expired,
        stats.counters.unique_processed
    );
    assert_eq!(stats.counters.unique_processed, 600);
    assert!(
        (100..400).contains(&stats.stored),
        "{} stored",
        stats.stored
    );
    // Oldest first: the newest events are left, seqs without a hole up to
    // 600, and each topic's expired_through is just below its oldest.
    crate::common::assert_only_the_newest_are_left(&*store, &stats, 600).await;
    // A retry of an expired event is a duplicate, also after a reopen;
    // under the limit nothing more expires.
    let outcomes = store
        .append(all[..30].to_vec().into(), CommitTime(10 * SECOND))
        .await
        .expect("append")
        .outcomes;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Duplicate),
        "{outcomes:?}"
    );
    drop(store);
    let store = fixture.open().await;
    assert_eq!(expire_all(&*store, &by_size, 0).await.expired, 0);
    let outcomes = store
        .append(all[30..60].to_vec().into(), CommitTime(11 * SECOND))
        .await
        .expect("append")
        .outcomes;
    assert!(
        outcomes.iter().all(|o| *o == Outcome::Duplicate),
        "{outcomes:?}"
    );
    let after = store.stats().await.expect("stats");
    assert_eq!((after.stored, after.expired), (stats.stored, stats.expired));
    assert_eq!(after.counters.unique_processed, 600);
}
