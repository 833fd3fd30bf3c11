use logagg::decode::*;
use logagg::event::FieldLimits;
use std::time::Instant;

fn main() {
    let limits = DecodeLimits {
        request_events_max: 10_000,
        json_depth_max: 32,
        fields: FieldLimits {
            field_bytes_max: 255,
        },
    };
    let n = 1000;
    let msg = |i: usize| format!("GET /api/orders/{i:08} 200 {}", "x".repeat(70));
    // publish ndjson
    let publish: String = (0..n).map(|i| format!("{{\"topic\":\"svc{}\",\"event_id\":\"{:032x}\",\"timestamp\":\"2025-10-25T12:30:00.000001000Z\",\"source\":\"svc\",\"payload\":{{\"message\":\"{}\",\"level\":\"info\"}}}}\n", i%8, i*7919, msg(i))).collect();
    let raw: String = (0..n).map(|i| format!("{{\"timestamp\":\"2025-10-25T12:30:00.000001000Z\",\"message\":\"{}\",\"level\":\"info\"}}\n", msg(i))).collect();
    let loki_json = format!(
        "{{\"streams\":[{{\"stream\":{{\"service_name\":\"svc\",\"env\":\"b\"}},\"values\":[{}]}}]}}",
        (0..n)
            .map(|i| format!("[\"{}\",\"{}\"]", 1761395400000000000u64 + i as u64, msg(i)))
            .collect::<Vec<_>>()
            .join(",")
    );
    let otlp_json = format!("{{\"resourceLogs\":[{{\"resource\":{{\"attributes\":[{{\"key\":\"service.name\",\"value\":{{\"stringValue\":\"svc\"}}}}]}},\"scopeLogs\":[{{\"logRecords\":[{}]}}]}}]}}", (0..n).map(|i| format!("{{\"timeUnixNano\":\"{}\",\"severityNumber\":9,\"severityText\":\"INFO\",\"body\":{{\"stringValue\":\"{}\"}}}}", 1761395400000000000u64 + i as u64, msg(i))).collect::<Vec<_>>().join(","));
    let mapping = otlp::OtlpMapping {
        topic_attribute: "service.name".into(),
        source_attribute: "service.name".into(),
    };
    let lmap = loki::LokiMapping {
        topic_labels: vec!["service_name".into()],
    };
    let opts = raw::RawOptions {
        topic: "t".into(),
        time_field: Some("timestamp".into()),
        source: "s".into(),
        received: "2025-10-25T12:30:00Z".into(),
        ..Default::default()
    };
    let opts_plain = raw::RawOptions {
        topic: "t".into(),
        source: "s".into(),
        received: "2025-10-25T12:30:00Z".into(),
        ..Default::default()
    };
    let reps = 50;
    let time = |name: &str, f: &dyn Fn() -> usize| {
        let t = Instant::now();
        let mut c = 0;
        for _ in 0..reps {
            c += f();
        }
        println!(
            "{name:14} {:6.2} us/record",
            t.elapsed().as_secs_f64() * 1e6 / c as f64
        );
    };
    time("publish", &|| {
        publish::decode(publish.as_bytes(), publish::Format::Ndjson, &limits)
            .unwrap()
            .len()
    });
    time("raw+time", &|| {
        raw::decode(raw.as_bytes(), raw::Format::Json, &opts, &limits)
            .unwrap()
            .len()
    });
    time("raw", &|| {
        raw::decode(raw.as_bytes(), raw::Format::Json, &opts_plain, &limits)
            .unwrap()
            .len()
    });
    time("loki-json", &|| {
        loki::decode(loki_json.as_bytes(), loki::Encoding::Json, &lmap, &limits)
            .unwrap()
            .len()
    });
    time("otlp-json", &|| {
        otlp::decode(
            otlp_json.as_bytes(),
            otlp::Encoding::Json,
            &mapping,
            &limits,
        )
        .unwrap()
        .events
        .len()
    });
    let t = Instant::now();
    for i in 0..100_000u64 {
        std::hint::black_box(rfc3339_from_unix_nanos(i));
    }
    println!(
        "rfc3339 format {:6.2} us",
        t.elapsed().as_secs_f64() * 1e6 / 1e5
    );
    let t = Instant::now();
    for _ in 0..100_000 {
        let mut h = id::RecordHash::new("x");
        h.field(&[7u8; 200]);
        std::hint::black_box(h.finish());
    }
    println!(
        "sha256 200B    {:6.2} us",
        t.elapsed().as_secs_f64() * 1e6 / 1e5
    );
}
