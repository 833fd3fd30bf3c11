//! Model-based test: random sequences of publish requests against a real
//! server end in the same state as a simple in-memory model of the design
//! (a map keyed by `(topic, event_id)`, first write wins): the same stored
//! keys in the same commit order, the first-committed content of each key
//! byte for byte, the same receipts, counters and per-topic counts. It runs
//! on every store, each case on a fresh one.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Backend, Fixture};
use crate::common::{Api, Counters, TestApp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Upper bound on one whole case: start a server, publish, read back.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

const TOPICS: [&str; 2] = ["m.a", "m.b"];
const IDS: [&str; 3] = ["1", "2", "3"];

/// Content variants of an event: the same key sent with one of these is a
/// duplicate of the same variant and a conflict with any other.
const CONTENTS: [(&str, &str, &str); 4] = [
    ("2025-10-25T12:30:00Z", "svc", r#"{"v":0}"#),
    ("2025-10-25T12:30:00Z", "svc", r#"{"v":1}"#),
    ("2025-10-25T12:30:00Z", "other", r#"{"v":0}"#),
    ("2025-10-25T12:30:01Z", "svc", r#"{"v":0}"#),
];

/// One event of a generated request.
#[derive(Debug, Clone)]
struct Sent {
    topic: usize,
    id: usize,
    content: usize,
    /// Send the payload with extra whitespace: the same content, other bytes.
    spaced: bool,
}

impl Sent {
    fn key(&self) -> (String, String) {
        (TOPICS[self.topic].to_owned(), IDS[self.id].to_owned())
    }

    /// The payload exactly as sent.
    fn payload(&self) -> String {
        let payload = CONTENTS[self.content].2;
        if self.spaced {
            payload.replace(':', " : ").replace('{', "{ ")
        } else {
            payload.to_owned()
        }
    }

    fn to_json(&self) -> String {
        let (timestamp, source, _) = CONTENTS[self.content];
        format!(
            r#"{{"topic":"{}","event_id":"{}","timestamp":"{timestamp}","source":"{source}","payload":{}}}"#,
            TOPICS[self.topic],
            IDS[self.id],
            self.payload()
        )
    }
}

/// How a request lays out its events.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// A bare object (only for one event; otherwise an array).
    Single,
    Array,
    Ndjson,
}

#[derive(Debug, Clone)]
struct Request {
    events: Vec<Sent>,
    layout: Layout,
}

impl Request {
    fn body(&self) -> (&'static str, String) {
        let events: Vec<String> = self.events.iter().map(Sent::to_json).collect();
        match (self.layout, events.as_slice()) {
            (Layout::Single, [one]) => ("application/json", one.clone()),
            (Layout::Single | Layout::Array, _) => {
                ("application/json", format!("[{}]", events.join(",")))
            }
            (Layout::Ndjson, _) => ("application/x-ndjson", events.join("\n")),
        }
    }
}

fn sent() -> impl Strategy<Value = Sent> {
    (
        0..TOPICS.len(),
        0..IDS.len(),
        0..CONTENTS.len(),
        any::<bool>(),
    )
        .prop_map(|(topic, id, content, spaced)| Sent {
            topic,
            id,
            content,
            spaced,
        })
}

fn request() -> impl Strategy<Value = Request> {
    let layout = prop_oneof![
        Just(Layout::Single),
        Just(Layout::Array),
        Just(Layout::Ndjson)
    ];
    (prop::collection::vec(sent(), 1..=5), layout)
        .prop_map(|(events, layout)| Request { events, layout })
}

/// A receipt, as the server sends it and as the model predicts it.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
struct Receipt {
    received: u64,
    unique: u64,
    duplicates: u64,
    conflicts: u64,
}

/// The design, in memory: the first copy of a key wins; a later copy is a
/// duplicate, and a conflict too when its content differs (payloads compared
/// as JSON values, so whitespace does not count).
#[derive(Debug, Default)]
struct Model {
    /// Each key's first-committed event, as sent.
    stored: BTreeMap<(String, String), Sent>,
    /// Keys in commit order (= `seq` order).
    order: Vec<(String, String)>,
    counters: Counters,
}

impl Model {
    fn publish(&mut self, request: &Request) -> Receipt {
        let mut receipt = Receipt::default();
        for event in &request.events {
            receipt.received += 1;
            match self.stored.get(&event.key()) {
                None => {
                    receipt.unique += 1;
                    self.stored.insert(event.key(), event.clone());
                    self.order.push(event.key());
                }
                Some(first) => {
                    receipt.duplicates += 1;
                    if first.content != event.content {
                        receipt.conflicts += 1;
                    }
                }
            }
        }
        self.counters.received += receipt.received;
        self.counters.unique_processed += receipt.unique;
        self.counters.duplicate_dropped += receipt.duplicates;
        self.counters.conflicts += receipt.conflicts;
        receipt
    }
}

/// A stored event with its payload as the raw text the server returns.
#[derive(Debug, Deserialize)]
struct Stored {
    topic: String,
    event_id: String,
    timestamp: String,
    source: String,
    payload: Box<RawValue>,
}

#[derive(Deserialize)]
struct Page {
    events: Vec<Stored>,
}

async fn stored_events(api: &Api) -> Vec<Stored> {
    // The model holds at most |TOPICS| x |IDS| keys: one page is all of it.
    let text = api
        .get_raw("/events?limit=100")
        .await
        .text()
        .await
        .expect("events body");
    serde_json::from_str::<Page>(&text)
        .expect("a page of events")
        .events
}

/// Runs `requests` against a fresh server on `backend` (on the embedded
/// store, one whose dedup index keeps `hash_bits` of each key hash) and
/// compares with the model.
async fn check(
    backend: Backend,
    requests: Vec<Request>,
    hash_bits: u32,
) -> Result<(), TestCaseError> {
    let test = "random_publish_sequences_leave_the_same_state_as_the_model";
    let Some(fixture) = Fixture::new(backend, test).await else {
        return Ok(());
    };
    let mut app = TestApp::spawn_with(|config| {
        config.store = fixture.location();
        config.index_hash_bits = hash_bits;
    })
    .await;
    let mut model = Model::default();
    for (i, request) in requests.iter().enumerate() {
        let (content_type, body) = request.body();
        let response = app.api.publish_raw(content_type, body).await;
        prop_assert_eq!(response.status(), 200, "request {}", i);
        let receipt: Receipt = response.json().await.expect("receipt");
        prop_assert_eq!(receipt, model.publish(request), "receipt of request {}", i);
    }

    prop_assert_eq!(app.api.counters().await, model.counters);
    let stored = stored_events(&app.api).await;
    let keys: Vec<_> = stored
        .iter()
        .map(|e| (e.topic.clone(), e.event_id.clone()))
        .collect();
    prop_assert_eq!(&keys, &model.order, "stored keys in seq order");
    for event in &stored {
        let first = &model.stored[&(event.topic.clone(), event.event_id.clone())];
        let (timestamp, source, _) = CONTENTS[first.content];
        let content = (
            event.timestamp.as_str(),
            event.source.as_str(),
            event.payload.get(),
        );
        let expected = (timestamp, source, first.payload());
        prop_assert_eq!(
            content,
            (expected.0, expected.1, expected.2.as_str()),
            "first-committed content of {:?}",
            (&event.topic, &event.event_id)
        );
    }
    let (status, topics) = app.api.get("/topics").await;
    prop_assert_eq!(status, 200);
    for topic in TOPICS {
        let expected = model.order.iter().filter(|(t, _)| t == topic).count() as u64;
        let listed = topics["topics"]
            .as_array()
            .expect("topics list")
            .iter()
            .find(|t| t["topic"] == topic)
            .map_or(0, |t| t["events"].as_u64().expect("events count"));
        prop_assert_eq!(listed, expected, "events in topic {}", topic);
    }
    app.stop().await;
    Ok(())
}

/// Runs one case on `backend` on a runtime of its own.
fn run_case(backend: Backend, requests: Vec<Request>, hash_bits: u32) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        tokio::time::timeout(CASE_TIMEOUT, check(backend, requests, hash_bits))
            .await
            .map_err(|_| TestCaseError::fail("case timed out"))?
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    })]

    /// On the embedded store with 64-bit key hashes, and with 1 or 2 bits,
    /// where nearly every key collides with another and only the
    /// verification against the stored rows tells them apart.
    #[test]
    fn random_publish_sequences_leave_the_same_state_as_the_model_on_sqlite(
        requests in prop::collection::vec(request(), 1..=12),
        hash_bits in prop_oneof![Just(64u32), Just(1), Just(2)],
    ) {
        run_case(Backend::Sqlite, requests, hash_bits)?;
    }

    #[cfg(feature = "postgres")]
    #[test]
    fn random_publish_sequences_leave_the_same_state_as_the_model_on_postgres(
        requests in prop::collection::vec(request(), 1..=12)
    ) {
        run_case(Backend::Postgres, requests, 64)?;
    }
}
