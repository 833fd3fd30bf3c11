//! Dedup: every `(topic, event_id)` is stored exactly once, whatever mix of
//! retries, batches, concurrent clients and body encodings delivers it, and
//! receipts, `/stats` and `/events` agree on what happened.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::common::{Api, Counters, Rng, TestApp, event, gzip, key, ndjson};
use serde_json::{Value, json};

/// Upper bound on a whole concurrent phase of a test.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

fn receipt(received: u64, unique: u64, duplicates: u64, conflicts: u64) -> Value {
    json!({"received": received, "unique": unique, "duplicates": duplicates, "conflicts": conflicts})
}

pub(crate) fn counters(received: u64, unique: u64, duplicates: u64, conflicts: u64) -> Counters {
    Counters {
        received,
        unique_processed: unique,
        duplicate_dropped: duplicates,
        conflicts,
    }
}

/// Stored events with the per-commit `received_at` removed, so two servers'
/// stores can be compared.
fn without_received_at(events: Vec<Value>) -> Vec<Value> {
    events
        .into_iter()
        .map(|mut event| {
            event
                .as_object_mut()
                .expect("stored event is an object")
                .remove("received_at");
            event
        })
        .collect()
}

#[tokio::test]
async fn an_event_sent_twice_is_stored_once_and_the_retry_is_a_duplicate() {
    let app = TestApp::spawn().await;
    let first = app.api.publish_ok(&event("auth.login", "e1")).await;
    assert_eq!(first, receipt(1, 1, 0, 0));
    let retry = app.api.publish_ok(&event("auth.login", "e1")).await;
    assert_eq!(retry, receipt(1, 0, 1, 0));

    assert_eq!(app.api.counters().await, counters(2, 1, 1, 0));
    let stored = app.api.all_events(None).await;
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["seq"], 1);
}

#[tokio::test]
async fn duplicates_inside_one_batch_are_stored_once() {
    let app = TestApp::spawn().await;
    let batch = json!([
        event("t", "1"),
        event("t", "2"),
        event("t", "1"),
        event("t", "1"),
        event("t", "2"),
    ]);
    assert_eq!(app.api.publish_ok(&batch).await, receipt(5, 2, 3, 0));
    assert_eq!(app.api.counters().await, counters(5, 2, 3, 0));
    let stored: Vec<_> = app.api.all_events(None).await.iter().map(key).collect();
    assert_eq!(
        stored,
        [("t".into(), "1".into()), ("t".into(), "2".into())],
        "first copies, in request order"
    );
}

#[tokio::test]
async fn duplicates_across_batches_are_stored_once() {
    let app = TestApp::spawn().await;
    let first = json!([event("t", "1"), event("t", "2"), event("t", "3")]);
    let second = json!([event("t", "3"), event("t", "4"), event("t", "1")]);
    assert_eq!(app.api.publish_ok(&first).await, receipt(3, 3, 0, 0));
    assert_eq!(app.api.publish_ok(&second).await, receipt(3, 1, 2, 0));
    assert_eq!(app.api.publish_ok(&first).await, receipt(3, 0, 3, 0));

    assert_eq!(app.api.counters().await, counters(9, 4, 5, 0));
    let ids: Vec<_> = app
        .api
        .all_events(None)
        .await
        .iter()
        .map(|e| key(e).1)
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4"]);
}

#[tokio::test]
async fn the_same_event_id_in_two_topics_is_two_events() {
    let app = TestApp::spawn().await;
    let receipt_ = app
        .api
        .publish_ok(&json!([event("a", "shared"), event("b", "shared")]))
        .await;
    assert_eq!(receipt_, receipt(2, 2, 0, 0));
    for topic in ["a", "b"] {
        let (status, stored) = app.api.get(&format!("/events/{topic}/shared")).await;
        assert_eq!(status, 200, "{topic}: {stored}");
        assert_eq!(stored["topic"], topic);
    }
    assert_eq!(app.api.counters().await, counters(2, 2, 0, 0));
}

#[tokio::test]
async fn a_duplicate_with_different_content_is_a_conflict_and_the_first_copy_wins() {
    let app = TestApp::spawn().await;
    let original = json!({
        "topic": "orders", "event_id": "o-1", "timestamp": "2025-10-25T12:30:00Z",
        "source": "shop", "payload": {"total": 10},
    });
    assert_eq!(app.api.publish_ok(&original).await, receipt(1, 1, 0, 0));

    // Each changed field makes a conflict; a copy that differs only in
    // payload formatting or key order is a plain duplicate.
    let mut changed_payload = original.clone();
    changed_payload["payload"] = json!({"total": 99});
    let mut changed_source = original.clone();
    changed_source["source"] = json!("other-shop");
    let mut changed_timestamp = original.clone();
    changed_timestamp["timestamp"] = json!("2025-10-25T12:30:01Z");
    for (name, copy) in [
        ("changed payload", changed_payload),
        ("changed source", changed_source),
        ("changed timestamp", changed_timestamp),
    ] {
        let answer = app.api.publish_ok(&copy).await;
        assert_eq!(answer, receipt(1, 0, 1, 1), "{name}");
    }
    let reformatted = r#"{"payload": { "total" : 10 }, "source":"shop", "event_id":"o-1",
        "timestamp":"2025-10-25T12:30:00Z", "topic":"orders"}"#;
    let response = app.api.publish_raw("application/json", reformatted).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.expect("receipt");
    assert_eq!(answer, receipt(1, 0, 1, 0), "reformatted copy");

    assert_eq!(app.api.counters().await, counters(5, 1, 4, 3));
    let (status, stored) = app.api.get("/events/orders/o-1").await;
    assert_eq!(status, 200);
    for field in ["timestamp", "source", "payload"] {
        assert_eq!(stored[field], original[field], "{field} of the first copy");
    }
}

#[tokio::test]
async fn a_conflict_inside_one_batch_keeps_the_first_copy() {
    let app = TestApp::spawn().await;
    let mut second = event("t", "1");
    second["payload"] = json!({"version": 2});
    let batch = json!([event("t", "1"), second]);
    assert_eq!(app.api.publish_ok(&batch).await, receipt(2, 1, 1, 1));
    let (_, stored) = app.api.get("/events/t/1").await;
    assert_eq!(stored["payload"], event("t", "1")["payload"]);
    assert_eq!(app.api.counters().await, counters(2, 1, 1, 1));
}

/// Issue 11, defect 4: payloads that differ only in an integer beyond 64
/// bits were compared as `serde_json::Value`, rounded to the same `f64`,
/// and the conflict counted as a plain duplicate.
#[tokio::test]
async fn payloads_differing_only_beyond_64_bits_are_a_conflict() {
    let app = TestApp::spawn().await;
    let body = |payload: &str| {
        format!(
            r#"{{"topic":"big","event_id":"1","timestamp":"2025-10-25T12:30:00Z","source":"s","payload":{payload}}}"#
        )
    };
    let publish = async |payload: &str| {
        let response = app.api.publish_raw("application/json", body(payload)).await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.expect("receipt")
    };
    assert_eq!(
        publish(r#"{"n":18446744073709551616}"#).await,
        receipt(1, 1, 0, 0)
    );
    assert_eq!(
        publish(r#"{"n":18446744073709551617}"#).await,
        receipt(1, 0, 1, 1),
        "one more than 2^64 is other content"
    );
    assert_eq!(
        publish(r#"{ "n" : 18446744073709551616.0 }"#).await,
        receipt(1, 0, 1, 0),
        "the same number, written otherwise, is the same content"
    );
    assert_eq!(app.api.counters().await, counters(3, 1, 2, 1));
}

/// 4,000 distinct events plus 1,000 extra copies, shuffled, so copies land in
/// the same batch, in other batches of the same client, and in other clients.
pub(crate) fn load_with_duplicates(rng: &mut Rng) -> Vec<Value> {
    let unique: Vec<Value> = (0..4_000)
        .map(|i| event(&format!("load.t{}", i % 7), &format!("id-{i}")))
        .collect();
    let mut all = unique.clone();
    for _ in 0..1_000 {
        all.push(unique[rng.random_range(0..unique.len())].clone());
    }
    all.shuffle(rng);
    all
}

/// Publishes `events` as a mix of single events and batches of up to 40,
/// and returns the sum of the receipts.
pub(crate) async fn publish_mixed(api: Api, events: Vec<Value>, mut rng: Rng) -> [u64; 4] {
    let mut totals = [0; 4];
    let mut rest = events.as_slice();
    while !rest.is_empty() {
        let size = rng.random_range(1..=40).min(rest.len());
        let (chunk, tail) = rest.split_at(size);
        rest = tail;
        let body = match chunk {
            [single] if rng.random_bool(0.5) => single.clone(),
            _ => json!(chunk),
        };
        let answer = api.publish_ok(&body).await;
        for (total, field) in
            totals
                .iter_mut()
                .zip(["received", "unique", "duplicates", "conflicts"])
        {
            *total += answer[field].as_u64().expect("receipt count");
        }
    }
    totals
}

#[tokio::test]
async fn five_thousand_events_with_twenty_percent_duplicates_from_eight_clients_store_four_thousand()
 {
    let app = TestApp::spawn().await;
    let mut rng = Rng::seed_from_u64(0x10_6A66);
    let events = load_with_duplicates(&mut rng);
    let expected_keys: BTreeSet<_> = events.iter().map(key).collect();
    assert_eq!(expected_keys.len(), 4_000);

    let clients = events
        .chunks(events.len().div_ceil(8))
        .enumerate()
        .map(|(i, chunk)| {
            let api = app.api.separate_client();
            let rng = Rng::seed_from_u64(i as u64);
            tokio::spawn(publish_mixed(api, chunk.to_vec(), rng))
        });
    let results = tokio::time::timeout(
        PHASE_TIMEOUT,
        futures_util::future::join_all(clients.collect::<Vec<_>>()),
    )
    .await
    .expect("publishers finish in time");
    let mut totals = [0; 4];
    for result in results {
        let client = result.expect("publisher task did not panic");
        for (total, part) in totals.iter_mut().zip(client) {
            *total += part;
        }
    }
    assert_eq!(totals, [5_000, 4_000, 1_000, 0], "sum of receipts");
    assert_eq!(app.api.counters().await, counters(5_000, 4_000, 1_000, 0));

    let stored = app.api.all_events_paged(None, 333).await;
    let mut seen = BTreeMap::new();
    for event in &stored {
        *seen.entry(key(event)).or_insert(0) += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "keys stored more than once: {repeated:?}"
    );
    assert_eq!(stored.len(), 4_000);
    assert_eq!(seen.into_keys().collect::<BTreeSet<_>>(), expected_keys);
    let seqs: Vec<u64> = stored
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "pages come back in strictly increasing seq order"
    );
    let stats = app.api.stats().await;
    assert_eq!(stats["topics"].as_array().expect("topics").len(), 7);
}

#[tokio::test]
async fn fifty_concurrent_clients_publishing_the_same_event_store_it_once() {
    let app = TestApp::spawn().await;
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            let api = app.api.separate_client();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                api.publish_ok(&event("race", "the-one")).await
            })
        })
        .collect();
    let receipts = tokio::time::timeout(PHASE_TIMEOUT, futures_util::future::join_all(clients))
        .await
        .expect("publishers finish in time");
    let mut totals = [0; 4];
    for answer in receipts {
        let answer = answer.expect("publisher task did not panic");
        for (total, field) in
            totals
                .iter_mut()
                .zip(["received", "unique", "duplicates", "conflicts"])
        {
            *total += answer[field].as_u64().expect("receipt count");
        }
    }
    assert_eq!(totals, [50, 1, 49, 0], "sum of receipts");
    assert_eq!(app.api.counters().await, counters(50, 1, 49, 0));
    assert_eq!(app.api.all_events(None).await.len(), 1);
}

/// A set with duplicates and a conflict, and its JSON-array reference store.
fn encoding_sample() -> Vec<Value> {
    let mut conflicting = event("enc.b", "2");
    conflicting["payload"] = json!({"other": true});
    vec![
        event("enc.a", "1"),
        event("enc.b", "2"),
        event("enc.a", "1"),
        json!({
            "topic": "enc.a", "event_id": "ünï 3", "timestamp": "2025-10-25T12:30:00",
            "source": "s", "payload": {"text": "日本語\n🎉", "big": 12345678901234567890u64},
        }),
        conflicting,
        event("enc.c", "4"),
    ]
}

#[tokio::test]
async fn ndjson_and_gzip_bodies_store_the_same_as_json() {
    let events = encoding_sample();
    let json_body = serde_json::to_vec(&events).expect("serialize");
    let ndjson_body = ndjson(&events).into_bytes();
    let cases: [(&str, &str, Option<&str>, Vec<u8>); 5] = [
        ("json array", "application/json", None, json_body.clone()),
        ("ndjson", "application/x-ndjson", None, ndjson_body.clone()),
        (
            "gzip json array",
            "application/json",
            Some("gzip"),
            gzip(&json_body),
        ),
        (
            "gzip ndjson",
            "application/x-ndjson",
            Some("gzip"),
            gzip(&ndjson_body),
        ),
        (
            "ndjson with CRLF and blank lines",
            "application/x-ndjson; charset=utf-8",
            None,
            ndjson(&events).replace('\n', "\r\n\r\n").into_bytes(),
        ),
    ];

    let mut reference: Option<(Value, Counters, Vec<Value>)> = None;
    for (name, content_type, encoding, body) in cases {
        let mut app = TestApp::spawn().await;
        let response = app.api.publish_encoded(content_type, encoding, body).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 200, "{name}: {text}");
        let answer: Value = serde_json::from_str(&text).expect("receipt");
        assert_eq!(answer, receipt(6, 4, 2, 1), "{name}");
        let outcome = (
            answer,
            app.api.counters().await,
            without_received_at(app.api.all_events(None).await),
        );
        match &reference {
            None => reference = Some(outcome),
            Some(expected) => assert_eq!(&outcome, expected, "{name} stores as JSON does"),
        }
        app.stop().await;
    }
}

#[tokio::test]
async fn the_same_events_in_another_encoding_are_duplicates_not_conflicts() {
    let app = TestApp::spawn().await;
    let events: Vec<Value> = (0..5).map(|i| event("enc", &i.to_string())).collect();
    app.api.publish_ok(&json!(events)).await;
    let ndjson_body = ndjson(&events);
    for (name, content_type, encoding, body) in [
        (
            "ndjson",
            "application/x-ndjson",
            None,
            ndjson_body.clone().into_bytes(),
        ),
        (
            "gzip ndjson",
            "application/x-ndjson",
            Some("gzip"),
            gzip(ndjson_body.as_bytes()),
        ),
    ] {
        let response = app.api.publish_encoded(content_type, encoding, body).await;
        assert_eq!(response.status(), 200, "{name}");
        let answer: Value = response.json().await.expect("receipt");
        assert_eq!(answer, receipt(5, 0, 5, 0), "{name}");
    }
    assert_eq!(app.api.counters().await, counters(15, 5, 10, 0));
}

/// RFC 1952: a gzip file is a series of members, and concatenated members
/// decompress to the concatenation (what `cat a.gz b.gz` or a streaming
/// compressor that restarts produces).
#[tokio::test]
async fn a_gzip_body_of_several_members_is_read_whole() {
    let app = TestApp::spawn().await;
    let events: Vec<Value> = (0..6).map(|i| event("multi", &i.to_string())).collect();
    let mut body = gzip(ndjson(&events[..3]).as_bytes());
    body.extend(gzip(ndjson(&events[3..]).as_bytes()));
    let response = app
        .api
        .publish_encoded("application/x-ndjson", Some("gzip"), body)
        .await;
    let status = response.status();
    let text = response.text().await.expect("body");
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).expect("receipt");
    assert_eq!(answer, receipt(6, 6, 0, 0), "every member's events count");
    assert_eq!(app.api.all_events(None).await.len(), 6);
}
