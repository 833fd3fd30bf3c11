//! Full-text search, `GET /events?q=` (issue 15): opt-in per topic pattern
//! (`serve --search`), over the payload's values, combined with the other
//! filters; a 400 where the index is not complete; `unsearched_through`
//! for events stored before their topics were indexed; the index follows
//! expiry.

use serde_json::{Value, json};

use std::time::Duration;

use crate::common::TestApp;
use logagg::event::{FieldLimits, TopicPattern};
use logagg::retention::Keep;

fn pattern(text: &str) -> TopicPattern {
    TopicPattern::parse(text, &FieldLimits::default()).expect(text)
}

fn order(topic: &str, id: usize, source: &str, text: &str) -> Value {
    json!({
        "topic": topic,
        "event_id": format!("o{id}"),
        "timestamp": "2025-10-25T12:30:00Z",
        "source": source,
        "payload": {"level": "info", "message": text, "order": {"id": format!("ORD-{id}"), "total": id * 10}},
    })
}

fn seqs(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events in {page}"))
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

/// `orders.>` indexed; seqs 1-6 are orders, 7 is an unindexed audit event
/// that says the same words.
async fn app_with_orders() -> TestApp {
    let app = TestApp::spawn_with(|config| config.search = vec![pattern("orders.>")]).await;
    app.api
        .publish_ok(&json!([
            order("orders.eu", 1, "shop", "Payment timeout after 3s"),
            order("orders.us", 2, "shop", "paid in full"),
            order("orders.eu", 3, "refunds", "Refund failed: TIMEOUT"),
            order("orders.eu.b2b", 4, "shop", "Zahlung übermittelt"),
            order("orders.us", 5, "shop", "timeouts are counted"),
            order("orders.eu", 6, "shop", "say \"hello\" (or not)"),
            order("audit.x", 7, "shop", "Payment timeout after 3s"),
        ]))
        .await;
    app
}

#[tokio::test]
async fn q_finds_payload_words_phrases_and_prefixes_within_the_indexed_topics() {
    let app = app_with_orders().await;
    let cases: &[(&str, &[u64])] = &[
        // A word, in any case; not part of a longer word.
        ("topic=orders.%3E&q=timeout", &[1, 3]),
        ("topic=orders.%3E&q=TimeOut", &[1, 3]),
        // A prefix.
        ("topic=orders.%3E&q=timeout*", &[1, 3, 5]),
        // Every word must occur.
        ("topic=orders.%3E&q=timeout%20refund", &[3]),
        // A term with punctuation is a phrase of its words.
        ("topic=orders.%3E&q=ORD-4", &[4]),
        ("topic=orders.%3E&q=4-ORD", &[]),
        // Numbers are values too; diacritics do not matter.
        ("topic=orders.%3E&q=30", &[3]),
        ("topic=orders.%3E&q=ubermittelt", &[4]),
        // Keys are not indexed: every payload has "level" and "message".
        ("topic=orders.%3E&q=message", &[]),
        // Quotes and parentheses are text, not operators.
        ("topic=orders.%3E&q=%22hello%22%20(or", &[6]),
        // Combined with the other filters.
        ("topic=orders.eu&q=timeout", &[1, 3]),
        ("topic=orders.*&q=timeout*", &[1, 3, 5]),
        ("topic=orders.%3E&q=timeout&source=refunds", &[3]),
        ("topic=orders.%3E&q=timeout*&after=1&before=5", &[3]),
        ("topic=orders.%3E&q=timeout*&order=desc", &[5, 3, 1]),
    ];
    for (query, expected) in cases {
        let (status, page) = app.api.get(&format!("/events?{query}")).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(seqs(&page), *expected, "{query}: {page}");
        assert!(page.get("unsearched_through").is_none(), "{query}: {page}");
    }
    // Paging through many matches, a full page at a time.
    let (_, page) = app
        .api
        .get("/events?topic=orders.%3E&q=timeout*&limit=2")
        .await;
    assert_eq!((seqs(&page), &page["next_after"]), (vec![1, 3], &json!(3)));
    let (_, page) = app
        .api
        .get("/events?topic=orders.%3E&q=timeout*&limit=2&after=3")
        .await;
    assert_eq!(seqs(&page), [5], "{page}");
}

#[tokio::test]
async fn q_is_refused_where_the_index_is_not_complete_or_the_query_is_empty() {
    let app = app_with_orders().await;
    for (query, says) in [
        // audit.x is not indexed: its match (seq 7) would be missed.
        (
            "topic=audit.x&q=timeout",
            "q searches only the topics this server indexes (orders.>), and topic \"audit.x\"",
        ),
        ("q=timeout", "and every topic is not within one of them"),
        ("topic=orders&q=timeout", "topic \"orders\""),
        ("topic=orders.%3E&q=", "q must hold at least one word"),
        ("topic=orders.%3E&q=--%20*", "has no letter or digit"),
        ("topic=orders.%3E&qq=timeout", "qq"),
    ] {
        let (status, problem) = app.api.get(&format!("/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {problem}");
        let detail = problem["detail"].as_str().expect("detail");
        assert!(detail.contains(says), "{query}: {detail}");
    }
    // A server that indexes nothing says how to turn search on.
    let plain = TestApp::spawn().await;
    let (status, problem) = plain.api.get("/events?q=timeout").await;
    assert_eq!(status, 400, "{problem}");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(
        detail.contains("start it with --search PATTERN"),
        "{detail}"
    );
}

#[tokio::test]
async fn events_stored_before_their_topic_was_indexed_are_reported_not_silently_missed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_path_buf();
    {
        let mut app = TestApp::spawn_with(|config| config.data_dir = data_dir.clone()).await;
        app.api
            .publish_ok(&json!([
                order("orders.eu", 1, "shop", "timeout"),
                order("orders.eu", 2, "shop", "timeout"),
            ]))
            .await;
        app.stop().await;
    }
    let restart = |search: Vec<TopicPattern>| {
        let data_dir = data_dir.clone();
        TestApp::spawn_with(move |config| {
            config.data_dir = data_dir;
            config.search = search;
        })
    };
    let mut app = restart(vec![pattern("orders.>")]).await;
    app.api
        .publish_ok(&json!([order("orders.eu", 3, "shop", "timeout")]))
        .await;
    let (_, page) = app.api.get("/events?topic=orders.eu&q=timeout").await;
    assert_eq!(seqs(&page), [3], "{page}");
    assert_eq!(page["unsearched_through"], 2, "{page}");
    // A reader past the unindexed events is not told again.
    let (_, page) = app
        .api
        .get("/events?topic=orders.eu&q=timeout&after=2")
        .await;
    assert_eq!(seqs(&page), [3], "{page}");
    assert!(page.get("unsearched_through").is_none(), "{page}");
    // Newest first, on the page that reaches the old end.
    let (_, page) = app
        .api
        .get("/events?topic=orders.eu&q=timeout&order=desc")
        .await;
    assert_eq!(
        (seqs(&page), &page["unsearched_through"]),
        (vec![3], &json!(2))
    );
    app.stop().await;

    // The pattern is remembered with where it began, across restarts.
    let mut app = restart(vec![pattern("orders.>")]).await;
    let (_, page) = app.api.get("/events?topic=orders.eu&q=timeout").await;
    assert_eq!(
        (seqs(&page), &page["unsearched_through"]),
        (vec![3], &json!(2))
    );
    app.stop().await;

    // Left out once, then given again: what was stored meanwhile was not
    // indexed, so the pattern starts afresh.
    let mut app = restart(Vec::new()).await;
    app.api
        .publish_ok(&json!([order("orders.eu", 4, "shop", "timeout")]))
        .await;
    app.stop().await;
    let app = restart(vec![pattern("orders.>")]).await;
    app.api
        .publish_ok(&json!([order("orders.eu", 5, "shop", "timeout")]))
        .await;
    let (_, page) = app.api.get("/events?topic=orders.eu&q=timeout").await;
    // Seq 3 was indexed in the earlier period and is still found.
    assert_eq!(
        (seqs(&page), &page["unsearched_through"]),
        (vec![3, 5], &json!(4))
    );
}

#[tokio::test]
async fn expired_events_leave_the_results_and_newer_ones_stay_searchable() {
    let app = TestApp::spawn_with(|config| {
        config.search = vec![pattern(">")];
        config.retain_for = Keep::For(Duration::from_millis(300));
        config.expire_interval = Duration::from_millis(100);
    })
    .await;
    app.api
        .publish_ok(&json!([
            order("orders.eu", 1, "shop", "timeout"),
            order("audit.x", 2, "shop", "timeout"),
        ]))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, page) = app.api.get("/events?q=timeout").await;
        if page["expired_through"] == 2 {
            assert_eq!(seqs(&page), Vec::<u64>::new(), "{page}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never expired: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.api
        .publish_ok(&json!([order("orders.eu", 3, "shop", "timeout")]))
        .await;
    let (_, page) = app.api.get("/events?q=timeout&after=2").await;
    assert_eq!(seqs(&page), [3], "{page}");
}
