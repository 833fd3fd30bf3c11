//! Decodes one publish body many times: the request-parsing cost on its
//! own, for a profiler. Instruction counts under callgrind do not depend on
//! what else the machine is doing, so this is how the decode path is
//! measured here (docs/performance.md, "Decoding a publish body"):
//!
//! ```sh
//! cargo build --release --example decode_profile
//! valgrind --tool=callgrind --callgrind-out-file=decode.cg \
//!     target/release/examples/decode_profile ndjson 1000 20
//! callgrind_annotate --inclusive=yes decode.cg | head -40
//! ```
//!
//! Arguments: `json` or `ndjson`, events per body, and rounds.

use std::hint::black_box;

use logagg::decode::DecodeLimits;
use logagg::decode::publish::{Format, decode};
use logagg::event::FieldLimits;

fn main() {
    let mut args = std::env::args().skip(1);
    let format = match args.next().as_deref() {
        Some("json") => Format::Json,
        _ => Format::Ndjson,
    };
    let events: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20);
    let lines: Vec<String> = (0..events)
        .map(|n| {
            format!(
                r#"{{"topic":"load.{}","event_id":"0193f0c4-1b2a-7c3d-8e4f-{n:012x}","timestamp":"2025-01-01T00:00:00.{:03}Z","source":"logagg-publish","payload":{{"n":{n},"fill":"{}"}}}}"#,
                n % 4,
                n % 1000,
                "abcdefghij".repeat(4)
            )
        })
        .collect();
    let body = match format {
        Format::Json => format!("[{}]", lines.join(",")),
        Format::Ndjson => lines.join("\n"),
    };
    let limits = DecodeLimits {
        request_events_max: events.max(1),
        json_depth_max: 32,
        fields: FieldLimits::default(),
    };
    let mut decoded = 0;
    for _ in 0..rounds {
        decoded += black_box(decode(black_box(body.as_bytes()), format, &limits))
            .expect("the body is valid")
            .len();
    }
    println!(
        "{decoded} events decoded from {} bytes per body",
        body.len()
    );
}
