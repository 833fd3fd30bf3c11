//! Load for the ingest formats: sends the same number of records of about
//! the same size through one ingest path of a running server and prints
//! one JSON line with the rate, for `scripts/bench.sh formats`.
//!
//! ```sh
//! cargo run --release --example formats_load -- URL FORMAT [RECORDS] [BATCH] [CONCURRENCY]
//! ```
//!
//! FORMAT is one of `publish` (logagg's events as NDJSON), `raw` (shipper
//! NDJSON to `/publish/{topic}`), `otlp-protobuf`, `otlp-json`,
//! `loki-protobuf` (snappy) and `loki-json`. Every record is distinct (no
//! duplicates), carries a ~100-byte message, and spreads over 8 topics;
//! `/publish` events get 128-bit ids that look random, like the content
//! hashes the other paths compute.
//! Bodies are built before the clock starts, so the rate is the server's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use logagg::decode::loki::proto as loki;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtlpValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::json;

const TOPICS: usize = 8;
/// 2025-10-25T12:30:00Z in nanoseconds.
const START_NANOS: u64 = 1_761_395_400_000_000_000;

/// A 128-bit hex id that looks random, like the content hashes the other
/// formats get, so every path pays the same B-tree cost for its ids.
fn random_looking_id(i: usize) -> String {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    format!("{:016x}{:016x}", mix(i as u64), mix(!(i as u64)))
}

fn message(i: usize) -> String {
    format!("GET /api/orders/{i:08} 200 {}", "x".repeat(70))
}

/// One request: path, content type, body.
type Request = (String, &'static str, Vec<u8>);

fn build(format: &str, first: usize, count: usize) -> Request {
    let records = first..first + count;
    let topic = |i: usize| format!("svc{}", i % TOPICS);
    let nanos = |i: usize| START_NANOS + i as u64 * 1_000;
    match format {
        "publish" => {
            let body: String = records
                .map(|i| {
                    let ts = logagg::decode::rfc3339_from_unix_nanos(nanos(i));
                    format!(
                        "{}\n",
                        json!({"topic": topic(i), "event_id": random_looking_id(i), "timestamp": ts,
                               "source": topic(i), "payload": {"message": message(i), "level": "info"}})
                    )
                })
                .collect();
            ("/publish".into(), "application/x-ndjson", body.into_bytes())
        }
        "raw" => {
            // One topic per request, as a shipper's sink has.
            let body: String = records
                .map(|i| {
                    let ts = logagg::decode::rfc3339_from_unix_nanos(nanos(i));
                    format!(
                        "{}\n",
                        json!({"timestamp": ts, "message": message(i), "level": "info"})
                    )
                })
                .collect();
            (
                format!("/publish/{}?time_field=timestamp", topic(first / count)),
                "application/x-ndjson",
                body.into_bytes(),
            )
        }
        "otlp-protobuf" | "otlp-json" => {
            let request = ExportLogsServiceRequest {
                resource_logs: (0..TOPICS)
                    .map(|t| ResourceLogs {
                        resource: Some(Resource {
                            attributes: vec![string_kv("service.name", &format!("svc{t}"))],
                            ..Resource::default()
                        }),
                        scope_logs: vec![ScopeLogs {
                            log_records: records
                                .clone()
                                .filter(|i| i % TOPICS == t)
                                .map(|i| LogRecord {
                                    time_unix_nano: nanos(i),
                                    severity_number: 9,
                                    severity_text: "INFO".into(),
                                    body: Some(AnyValue {
                                        value: Some(OtlpValue::StringValue(message(i))),
                                    }),
                                    ..LogRecord::default()
                                })
                                .collect(),
                            ..ScopeLogs::default()
                        }],
                        ..ResourceLogs::default()
                    })
                    .collect(),
            };
            if format == "otlp-protobuf" {
                (
                    "/v1/logs".into(),
                    "application/x-protobuf",
                    request.encode_to_vec(),
                )
            } else {
                (
                    "/v1/logs".into(),
                    "application/json",
                    otlp_json(&request).into_bytes(),
                )
            }
        }
        "loki-protobuf" => {
            let push = loki::PushRequest {
                streams: (0..TOPICS)
                    .map(|t| loki::StreamAdapter {
                        labels: format!("{{service_name=\"svc{t}\", env=\"bench\"}}"),
                        entries: records
                            .clone()
                            .filter(|i| i % TOPICS == t)
                            .map(|i| loki::EntryAdapter {
                                timestamp: Some(loki::Timestamp {
                                    seconds: (nanos(i) / 1_000_000_000) as i64,
                                    nanos: (nanos(i) % 1_000_000_000) as i32,
                                }),
                                line: message(i),
                                structured_metadata: Vec::new(),
                            })
                            .collect(),
                        hash: 0,
                    })
                    .collect(),
            };
            let body = snap::raw::Encoder::new()
                .compress_vec(&push.encode_to_vec())
                .expect("compressing");
            ("/loki/api/v1/push".into(), "application/x-protobuf", body)
        }
        "loki-json" => {
            let streams: Vec<_> = (0..TOPICS)
                .map(|t| {
                    json!({"stream": {"service_name": format!("svc{t}"), "env": "bench"},
                           "values": records.clone().filter(|i| i % TOPICS == t)
                               .map(|i| json!([nanos(i).to_string(), message(i)])).collect::<Vec<_>>()})
                })
                .collect();
            (
                "/loki/api/v1/push".into(),
                "application/json",
                json!({ "streams": streams }).to_string().into_bytes(),
            )
        }
        other => panic!("unknown format {other:?}"),
    }
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(OtlpValue::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// The request in OTLP/JSON, as the exporters write it.
fn otlp_json(request: &ExportLogsServiceRequest) -> String {
    let resource_logs: Vec<_> = request
        .resource_logs
        .iter()
        .map(|r| {
            let service = match r.resource.as_ref().and_then(|r| r.attributes[0].value.as_ref()) {
                Some(AnyValue {
                    value: Some(OtlpValue::StringValue(s)),
                }) => s.clone(),
                _ => String::new(),
            };
            let records: Vec<_> = r.scope_logs[0]
                .log_records
                .iter()
                .map(|l| {
                    let body = match &l.body {
                        Some(AnyValue {
                            value: Some(OtlpValue::StringValue(s)),
                        }) => s.clone(),
                        _ => String::new(),
                    };
                    json!({"timeUnixNano": l.time_unix_nano.to_string(), "severityNumber": 9,
                           "severityText": "INFO", "body": {"stringValue": body}})
                })
                .collect();
            json!({"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                   "scopeLogs": [{"logRecords": records}]})
        })
        .collect();
    json!({ "resourceLogs": resource_logs }).to_string()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: formats_load URL FORMAT [RECORDS] [BATCH] [CONCURRENCY]";
    let url = args.get(1).expect(usage).trim_end_matches('/').to_owned();
    let format = args.get(2).expect(usage).clone();
    let number =
        |i: usize, default: usize| args.get(i).map_or(default, |a| a.parse().expect(usage));
    let (records, batch, concurrency) = (number(3, 200_000), number(4, 1_000), number(5, 8));
    let requests: Vec<Request> = (0..records.div_ceil(batch))
        .map(|n| build(&format, n * batch, batch.min(records - n * batch)))
        .collect();
    let body_bytes: usize = requests.iter().map(|r| r.2.len()).sum();
    let requests = Arc::new(std::sync::Mutex::new(requests.into_iter()));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (requests, client, url) = (Arc::clone(&requests), client.clone(), url.clone());
            tokio::spawn(async move {
                loop {
                    let next = requests.lock().expect("not poisoned").next();
                    let Some((path, content_type, body)) = next else {
                        return;
                    };
                    loop {
                        let response = client
                            .post(format!("{url}{path}"))
                            .header("content-type", content_type)
                            .body(body.clone())
                            .send()
                            .await
                            .expect("the server answers");
                        match response.status().as_u16() {
                            200..=299 => break,
                            503 => tokio::time::sleep(Duration::from_millis(100)).await,
                            status => panic!(
                                "{path}: {status}: {}",
                                response.text().await.unwrap_or_default()
                            ),
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker panicked");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({"format": format, "records": records, "seconds": seconds,
               "records_per_second": records as f64 / seconds,
               "record_bytes": body_bytes / records})
    );
}
