//! The cost of telling a duplicate from a conflict: `Event::same_content`
//! on a copy whose payload bytes differ from the stored copy (key order and
//! whitespace), against the comparison it replaced (both payloads parsed as
//! `serde_json::Value`, which rounds integers beyond 64 bits). It runs for
//! every duplicate whose bytes differ; byte-identical copies (what a
//! retrying publisher sends) return before any parsing, also measured.
//!
//! Run: `cargo bench --bench same_content`
//! (`-- --quick` for a rough figure in seconds)

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use logagg::event::{Event, FieldLimits, WireEvent};
use serde_json::Value;

fn event(payload: &str) -> Event {
    let json = format!(
        r#"{{"topic":"t","event_id":"1","timestamp":"2025-10-25T12:30:00Z","source":"s","payload":{payload}}}"#
    );
    let wire: WireEvent<'_> = serde_json::from_str(&json).expect("bench JSON is valid");
    Event::from_wire(&wire, 0, &FieldLimits::default()).expect("bench event is valid")
}

/// About 150 bytes: a typical log payload.
const SMALL: &str = r#"{"user":"ana","action":"login","ok":true,"ms":12.5,"ip":"10.0.0.7","attempt":3,"tags":["web","eu"],"id":123456789012}"#;
const SMALL_REORDERED: &str = r#"{ "id": 123456789012, "tags": ["web", "eu"], "attempt": 3, "ip": "10.0.0.7", "ms": 12.5, "ok": true, "action": "login", "user": "ana" }"#;

/// About 1.5 KiB, three levels deep.
fn large(reordered: bool) -> String {
    let items: Vec<String> = (0..20)
        .map(|i| {
            if reordered {
                format!(r#"{{ "n": {i}, "name": "item-{i}", "price": {i}.25, "meta": {{ "b": false, "a": null }} }}"#)
            } else {
                format!(r#"{{"meta":{{"a":null,"b":false}},"price":{i}.25,"name":"item-{i}","n":{i}}}"#)
            }
        })
        .collect();
    format!(r#"{{"order":"o-1","items":[{}]}}"#, items.join(","))
}

/// About 1 MiB, 30 levels deep: the cost must stay linear in the size.
fn deep(spaced: bool) -> String {
    let (open, close) = if spaced {
        (r#"{ "k" : "#, " }")
    } else {
        (r#"{"k":"#, "}")
    };
    format!(
        r#"{}{{"pad":"{}"}}{}"#,
        open.repeat(30),
        "x".repeat(1 << 20),
        close.repeat(30)
    )
}

fn lossy_value(a: &str, b: &str) -> bool {
    serde_json::from_str::<Value>(a).ok() == serde_json::from_str::<Value>(b).ok()
}

fn same_content(c: &mut Criterion) {
    let mut group = c.benchmark_group("same_content");
    let (large, large_reordered) = (large(false), large(true));
    let (deep, deep_spaced) = (deep(false), deep(true));
    for (name, stored, copy) in [
        ("small", SMALL, SMALL_REORDERED),
        ("large", large.as_str(), large_reordered.as_str()),
        ("deep_1mib", deep.as_str(), deep_spaced.as_str()),
    ] {
        let sent = event(copy);
        assert!(sent.same_content("2025-10-25T12:30:00Z", "s", stored));
        group.bench_function(format!("{name}/exact"), |b| {
            b.iter(|| sent.same_content("2025-10-25T12:30:00Z", "s", black_box(stored)));
        });
        group.bench_function(format!("{name}/value_lossy"), |b| {
            b.iter(|| lossy_value(black_box(copy), black_box(stored)));
        });
        let identical = event(stored);
        group.bench_function(format!("{name}/identical_bytes"), |b| {
            b.iter(|| identical.same_content("2025-10-25T12:30:00Z", "s", black_box(stored)));
        });
    }
    group.finish();
}

criterion_group!(benches, same_content);
criterion_main!(benches);
