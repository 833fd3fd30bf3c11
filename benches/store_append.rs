//! The store's append path alone: no HTTP, no queue. `scripts/bench.sh`
//! compares the server's batch publish rate against this on the same event
//! shape (1,000 events per transaction, 20% duplicates, uuid4 ids, 8 topics,
//! 100-byte payloads, `synchronous=FULL`).
//!
//! Run: `cargo bench --bench store_append`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use logagg::event::{Event, FieldLimits, WireEvent};
use logagg::store::{CommitTime, SqliteStore, Store, SyncMode};

const BATCH: usize = 1_000;
const DUPLICATE_RATE: f64 = 0.2;
const TOPICS: usize = 8;

/// A small deterministic generator, so runs compare like with like.
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A random (version 4 shaped) UUID string.
    fn uuid4(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
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
fn batch(ids: &mut Ids, sent: &mut Vec<Event>) -> Vec<Event> {
    let mut events = Vec::with_capacity(BATCH);
    for _ in 0..BATCH {
        let resend = !sent.is_empty() && (ids.next() % 1_000) < (DUPLICATE_RATE * 1_000.0) as u64;
        if resend {
            let pick = (ids.next() % sent.len() as u64) as usize;
            events.push(sent[pick].clone());
        } else {
            let topic = (ids.next() % TOPICS as u64) as usize;
            let event = event(topic, &ids.uuid4());
            sent.push(event.clone());
            events.push(event);
        }
    }
    events
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_append");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);
    for sync in [SyncMode::Full, SyncMode::Normal] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(dir.path(), sync).expect("open store");
        let mut ids = Ids(42);
        let mut sent = Vec::new();
        group.bench_function(
            format!("batch_1000_dup20_uuid4_sync_{sync:?}").to_lowercase(),
            |b| {
                b.iter_batched(
                    || batch(&mut ids, &mut sent),
                    |events| {
                        let refs: Vec<&Event> = events.iter().collect();
                        black_box(store.append(&refs, CommitTime::now()).expect("append"))
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
