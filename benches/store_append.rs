//! The store's append path alone: no HTTP, no queue. `scripts/bench.sh`
//! compares the server's batch publish rate against this on the same event
//! shape (1,000 events per transaction, 20% duplicates, uuid4 ids, 8 topics,
//! 100-byte payloads, `synchronous=FULL`).
//!
//! Run: `cargo bench --bench store_append`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use logagg::event::{Event, FieldLimits, WireEvent};
use logagg::store::{CommitTime, SqliteOptions, SqliteStore, Store, SyncMode};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};

const BATCH: usize = 1_000;
const DUPLICATE_RATE: f64 = 0.2;
const TOPICS: usize = 8;

/// A random (version 4) UUID from the seeded generator, so runs compare
/// like with like.
fn uuid4(rng: &mut ChaCha8Rng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

fn event(topic: usize, id: &str) -> Event {
    let json = format!(
        r#"{{"topic":"bench.t{topic}","event_id":"{id}","timestamp":"2025-10-25T12:30:00Z","source":"bench","payload":{{"pad":"{}"}}}}"#,
        "x".repeat(90)
    );
    let wire: WireEvent<'_> = serde_json::from_str(&json).expect("bench JSON is valid");
    Event::from_wire(&wire, 0, &FieldLimits::default()).expect("bench event is valid")
}

/// One request's worth: 80% new events, 20% re-sends of earlier ones.
fn batch(rng: &mut ChaCha8Rng, sent: &mut Vec<Event>) -> Arc<[Event]> {
    let mut events = Vec::with_capacity(BATCH);
    for _ in 0..BATCH {
        let resend = !sent.is_empty() && rng.random_bool(DUPLICATE_RATE);
        if resend {
            let pick = rng.random_range(0..sent.len());
            events.push(sent[pick].clone());
        } else {
            let topic = rng.random_range(0..TOPICS);
            let event = event(topic, &uuid4(rng));
            sent.push(event.clone());
            events.push(event);
        }
    }
    events.into()
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_append");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
    for sync in [SyncMode::Full, SyncMode::Normal] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path(), &SqliteOptions::new(sync)).expect("open store");
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut sent = Vec::new();
        group.bench_function(
            format!("batch_1000_dup20_uuid4_sync_{sync:?}").to_lowercase(),
            |b| {
                b.iter_batched(
                    || batch(&mut rng, &mut sent),
                    |events| {
                        let commit = runtime.block_on(store.append(events, CommitTime::now()));
                        black_box(commit.expect("append"))
                    },
                    BatchSize::LargeInput,
                );
            },
        );
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
