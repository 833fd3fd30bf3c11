//! The foreign ingest formats over HTTP: OTLP logs (`/v1/logs`), the Loki
//! push API (`/loki/api/v1/push`) and shippers' raw records
//! (`/publish/{topic}`), with bodies built here in exactly the shapes the
//! protocols and the shippers' docs give. What each stores, what a retry
//! of the same body does (nothing), and how each answers bad input (the
//! specified error or a counted partial rejection, and a healthy server).
//! The real clients are in `clients.rs`.

use std::num::NonZeroUsize;

use logagg::decode::loki::proto as loki;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtlpValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::{Value, json};

use crate::common::{Api, TestApp, gzip};

impl Api {
    /// POST raw bytes to `path` with a content type and optional encoding.
    pub async fn post(
        &self,
        path: &str,
        content_type: Option<&str>,
        encoding: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self.http.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// POST and expect `status`; returns the body.
    pub async fn post_expect(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
        status: u16,
    ) -> bytes::Bytes {
        let response = self.post(path, content_type, None, body).await;
        let got = response.status().as_u16();
        let body = response.bytes().await.expect("response body");
        assert_eq!(
            got,
            status,
            "POST {path}: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(OtlpValue::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn otlp_request(service: Option<&str>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: service
                    .map(|s| vec![kv("service.name", s)])
                    .unwrap_or_default(),
                ..Resource::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..ScopeLogs::default()
            }],
            ..ResourceLogs::default()
        }],
    }
}

fn otlp_record(body: &str, time: u64) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        severity_number: 9,
        body: Some(AnyValue {
            value: Some(OtlpValue::StringValue(body.into())),
        }),
        ..LogRecord::default()
    }
}

/// Every stored event's payload `body`/`line`/`message`, sorted.
async fn stored(api: &Api, topic: &str, field: &str) -> Vec<String> {
    let mut values: Vec<String> = api
        .all_events(Some(topic))
        .await
        .iter()
        .map(|e| {
            e["payload"][field]
                .as_str()
                .unwrap_or_else(|| panic!("no {field} in {e}"))
                .to_owned()
        })
        .collect();
    values.sort();
    values
}

/// A bad request: name, content type, body, expected status and problem slug.
type BadCase = (
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

async fn assert_healthy(api: &Api) {
    let (status, body) = api.get("/health").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn otlp_protobuf_is_stored_once_and_a_resent_batch_is_all_duplicates() {
    let app = TestApp::spawn().await;
    let request = otlp_request(
        Some("checkout"),
        vec![otlp_record("a", 1_000), otlp_record("b", 2_000)],
    );
    for _ in 0..2 {
        let body = app
            .api
            .post_expect(
                "/v1/logs",
                Some("application/x-protobuf"),
                request.encode_to_vec(),
                200,
            )
            .await;
        let response = ExportLogsServiceResponse::decode(body).expect("a protobuf response");
        assert_eq!(response.partial_success, None, "fully accepted");
    }
    assert_eq!(stored(&app.api, "checkout", "body").await, ["a", "b"]);
    let counters = app.api.counters().await;
    assert_eq!((counters.received, counters.unique_processed), (4, 2));
}

#[tokio::test]
async fn otlp_json_and_gzip_answer_in_json_and_count_partial_rejections() {
    let app = TestApp::spawn().await;
    let body = json!({"resourceLogs": [
        {"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
         "scopeLogs": [{"logRecords": [
            {"timeUnixNano": "1761395400000000000", "body": {"stringValue": "kept"},
             "attributes": [{"key": "ratio", "value": {"doubleValue": "NaN"}},
                            {"key": "blob", "value": {"bytesValue": "AP8="}}]},
            {"body": {"stringValue": "no time at all"}}]}]},
        {"resource": {"attributes": []},
         "scopeLogs": [{"logRecords": [{"timeUnixNano": "1", "body": {"stringValue": "no service"}}]}]}
    ]});
    let response = app
        .api
        .post(
            "/v1/logs",
            Some("application/json"),
            Some("gzip"),
            gzip(body.to_string().as_bytes()),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let answer: Value = response.json().await.expect("JSON answer");
    assert_eq!(answer["partialSuccess"]["rejectedLogRecords"], "2");
    let message = answer["partialSuccess"]["errorMessage"]
        .as_str()
        .expect("message");
    assert!(message.contains("record 1 timestamp"), "{message}");
    assert!(message.contains("record 2 topic"), "{message}");
    let events = app.api.all_events(Some("web")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["payload"]["attributes"],
        json!({"ratio": "NaN", "blob": "AP8="})
    );
    assert_eq!(events[0]["timestamp"], "2025-10-25T12:30:00.000000000Z");
}

#[tokio::test]
async fn otlp_bad_input_gets_its_status_and_the_server_stays_healthy() {
    let app = TestApp::spawn_with(|config| {
        config.body_bytes_max = NonZeroUsize::new(4096).expect("positive");
        config.request_events_max = NonZeroUsize::new(5).expect("positive");
    })
    .await;
    let api = &app.api;
    let loki_body = r#"{"streams":[{"stream":{"job":"a"},"values":[["1","x"]]}]}"#;
    let cases: Vec<BadCase> = vec![
        (
            "protobuf that does not decode",
            Some("application/x-protobuf"),
            vec![0xff; 16],
            400,
            "bad-request",
        ),
        (
            "JSON that is not OTLP (a Loki push)",
            Some("application/json"),
            loki_body.into(),
            400,
            "bad-request",
        ),
        (
            "not JSON",
            Some("application/json"),
            b"{\"resourceLogs\": [".to_vec(),
            400,
            "bad-request",
        ),
        (
            "no content type",
            None,
            b"{}".to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            "text",
            Some("text/plain"),
            b"hello".to_vec(),
            415,
            "unsupported-media-type",
        ),
        (
            "over the body limit",
            Some("application/x-protobuf"),
            vec![0; 5000],
            413,
            "too-large",
        ),
        (
            "over the record limit",
            Some("application/x-protobuf"),
            otlp_request(Some("s"), vec![otlp_record("a", 1); 6]).encode_to_vec(),
            413,
            "too-large",
        ),
    ];
    for (name, content_type, body, status, problem) in cases {
        let response = api.post("/v1/logs", content_type, None, body).await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{name}"
        );
        let problem_doc: Value = response.json().await.expect("problem JSON");
        assert_eq!(
            problem_doc["type"],
            format!("urn:logagg:problem:{problem}"),
            "{name}"
        );
    }
    let gzip_bomb = gzip(&vec![b' '; 100_000]);
    let response = api
        .post(
            "/v1/logs",
            Some("application/json"),
            Some("gzip"),
            gzip_bomb,
        )
        .await;
    assert_eq!(response.status(), 413, "gzip bomb");
    // An empty export is a success with nothing stored.
    api.post_expect("/v1/logs", Some("application/json"), "{}", 200)
        .await;
    assert_eq!(api.counters().await.received, 0);
    assert_healthy(api).await;
}

fn snappy(bytes: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(bytes)
        .expect("compressing a Vec")
}

fn loki_push(labels: &str, lines: &[(i64, &str)]) -> Vec<u8> {
    loki::PushRequest {
        streams: vec![loki::StreamAdapter {
            labels: labels.into(),
            entries: lines
                .iter()
                .map(|(seconds, line)| loki::EntryAdapter {
                    timestamp: Some(loki::Timestamp {
                        seconds: *seconds,
                        nanos: 0,
                    }),
                    line: (*line).into(),
                    structured_metadata: vec![loki::LabelPairAdapter {
                        name: "pod".into(),
                        value: "p-1".into(),
                    }],
                })
                .collect(),
            hash: 0,
        }],
    }
    .encode_to_vec()
}

#[tokio::test]
async fn loki_snappy_protobuf_and_json_store_once_and_answer_204() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    let body = snappy(&loki_push(
        r#"{service_name="api", env="prod"}"#,
        &[(1_761_395_400, "GET / 200"), (1_761_395_401, "GET /x 404")],
    ));
    for _ in 0..2 {
        api.post_expect(
            "/loki/api/v1/push",
            Some("application/x-protobuf"),
            body.clone(),
            204,
        )
        .await;
    }
    // The same first entry as JSON (what Promtail's JSON mode sends) is a
    // duplicate too: same labels, time and line.
    let json_push = json!({"streams": [{"stream": {"env": "prod", "service_name": "api"},
        "values": [["1761395400000000000", "GET / 200", {"pod": "p-1"}], ["1761395402000000000", "GET /y 500", {"pod": "p-2"}]]}]});
    let response = api
        .post(
            "/loki/api/v1/push",
            Some("application/json"),
            Some("gzip"),
            gzip(json_push.to_string().as_bytes()),
        )
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        stored(api, "api", "line").await,
        ["GET / 200", "GET /x 404", "GET /y 500"]
    );
    let events = api.all_events(Some("api")).await;
    assert_eq!(
        events[0]["payload"]["labels"],
        json!({"env": "prod", "service_name": "api"})
    );
    assert_eq!(
        events[0]["payload"]["structured_metadata"],
        json!({"pod": "p-1"})
    );
    assert_eq!(events[0]["timestamp"], "2025-10-25T12:30:00.000000000Z");
    let counters = api.counters().await;
    assert_eq!(
        (
            counters.received,
            counters.unique_processed,
            counters.conflicts
        ),
        (6, 3, 0)
    );
}

#[tokio::test]
async fn loki_bad_input_gets_its_status_and_the_server_stays_healthy() {
    let app = TestApp::spawn_with(|config| {
        config.body_bytes_max = NonZeroUsize::new(4096).expect("positive");
    })
    .await;
    let api = &app.api;
    let good = snappy(&loki_push("{job=\"a\"}", &[(1, "x")]));
    let otlp_json = r#"{"resourceLogs":[]}"#;
    let cases: Vec<BadCase> = vec![
        (
            "truncated snappy block",
            Some("application/x-protobuf"),
            good[..good.len() - 2].to_vec(),
            400,
            "bad-request",
        ),
        (
            "protobuf not snappy-compressed",
            Some("application/x-protobuf"),
            loki_push("{job=\"a\"}", &[(1, "x")]),
            400,
            "bad-request",
        ),
        (
            "snappy of garbage",
            Some("application/x-protobuf"),
            snappy(&[0xff; 8]),
            400,
            "bad-request",
        ),
        (
            "a malformed label set",
            Some("application/x-protobuf"),
            snappy(&loki_push("job=a", &[(1, "x")])),
            400,
            "bad-request",
        ),
        (
            "JSON that is not Loki (OTLP)",
            Some("application/json"),
            otlp_json.into(),
            400,
            "bad-request",
        ),
        (
            "a stream with no service label",
            Some("application/json"),
            br#"{"streams":[{"stream":{"env":"x"},"values":[["1","x"]]}]}"#.to_vec(),
            422,
            "invalid-events",
        ),
        (
            "no entries",
            Some("application/json"),
            br#"{"streams":[]}"#.to_vec(),
            422,
            "unprocessable",
        ),
        (
            "a snappy block that claims to be huge",
            Some("application/x-protobuf"),
            // A varint length of 2^20 then nothing.
            vec![0x80, 0x80, 0x40],
            413,
            "too-large",
        ),
        (
            "text",
            Some("text/plain"),
            b"x".to_vec(),
            415,
            "unsupported-media-type",
        ),
    ];
    for (name, content_type, body, status, problem) in cases {
        let response = api
            .post("/loki/api/v1/push", content_type, None, body)
            .await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        let problem_doc: Value = response.json().await.expect("problem JSON");
        assert_eq!(
            problem_doc["type"],
            format!("urn:logagg:problem:{problem}"),
            "{name}"
        );
    }
    // Without a Content-Type, Loki reads snappy protobuf, and so do we.
    api.post_expect("/loki/api/v1/push", None, good, 204).await;
    assert_eq!(api.counters().await.unique_processed, 1);
    assert_healthy(api).await;
}

#[tokio::test]
async fn fluent_bit_http_output_bodies_are_stored_with_their_date() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    // `format json` (the default json_date_key "date", json_date_format
    // "double"): one JSON array per flush, Content-Type application/json.
    let json_format = r#"[{"date":1761395400.25,"log":"GET /index 200","stream":"stdout"},
                          {"date":1761395401.5,"log":"GET /missing 404","stream":"stdout"}]"#;
    // `format json_lines`: NDJSON, Content-Type application/x-ndjson.
    let json_lines = "{\"date\":1761395402.0,\"log\":\"POST /login 302\"}\n{\"date\":1761395403.125,\"log\":\"GET / 200\"}\n";
    // `format json_stream`: records back to back.
    let json_stream = r#"{"date":1761395404,"log":"a"}{"date":1761395405,"log":"b"}"#;
    let path = "/publish/web.access?time_field=date";
    for (content_type, body) in [
        ("application/json", json_format),
        ("application/x-ndjson", json_lines),
        ("application/json", json_stream),
    ] {
        let receipt: Value =
            serde_json::from_slice(&api.post_expect(path, Some(content_type), body, 200).await)
                .expect("receipt");
        assert_eq!(receipt["duplicates"], 0, "{body}");
        // Fluent Bit retries a failed chunk as it was: all duplicates.
        let receipt: Value =
            serde_json::from_slice(&api.post_expect(path, Some(content_type), body, 200).await)
                .expect("receipt");
        assert_eq!(receipt["unique"], 0, "{body}");
    }
    let events = api.all_events(Some("web.access")).await;
    assert_eq!(events.len(), 6);
    assert_eq!(events[0]["timestamp"], "2025-10-25T12:30:00.250000000Z");
    assert_eq!(events[0]["payload"]["log"], "GET /index 200");
    assert_eq!(events[4]["timestamp"], "2025-10-25T12:30:04.000000000Z");
    // Neither a source field nor a header nor a User-Agent: "http".
    assert_eq!(events[0]["source"], "http");
}

#[tokio::test]
async fn vector_http_sink_bodies_are_stored_with_their_fields() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    // `encoding.codec = "json"`: a JSON array of events; with
    // `framing.method = "newline_delimited"`: NDJSON. Vector's log events
    // carry message, timestamp (RFC 3339), host and source_type.
    let array = r#"[{"host":"web-1","message":"GET / 200","source_type":"file","timestamp":"2025-10-25T12:30:00.123456Z"},
                    {"host":"web-2","message":"GET /a 500","source_type":"file","timestamp":"2025-10-25T12:30:01Z"}]"#;
    let ndjson = "{\"host\":\"web-1\",\"message\":\"GET /b 200\",\"source_type\":\"file\",\"timestamp\":\"2025-10-25T12:30:02Z\"}\n";
    let path = "/publish/web?time_field=timestamp&source_field=host";
    api.post_expect(path, Some("application/json"), array, 200)
        .await;
    let response = api
        .post(
            path,
            Some("application/x-ndjson"),
            Some("gzip"),
            gzip(ndjson.as_bytes()),
        )
        .await;
    assert_eq!(response.status(), 200);
    let events = api.all_events(Some("web")).await;
    let summary: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["timestamp"].as_str().expect("timestamp"),
                e["source"].as_str().expect("source"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("2025-10-25T12:30:00.123456Z", "web-1"),
            ("2025-10-25T12:30:01Z", "web-2"),
            ("2025-10-25T12:30:02Z", "web-1"),
        ]
    );
}

#[tokio::test]
async fn text_lines_and_named_ids_work_and_bad_records_are_listed() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    let response = api
        .http
        .post(api.url("/publish/app.text"))
        .header("content-type", "text/plain; charset=utf-8")
        .header("x-logagg-source", "cron-1")
        .body("job started\n\njob done\n")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    let events = api.all_events(Some("app.text")).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["payload"], json!({"message": "job started"}));
    assert_eq!(events[0]["source"], "cron-1");

    // Fluent Bit sends `User-Agent: Fluent-Bit`, Vector `Vector/<version>`.
    let response = api
        .http
        .post(api.url("/publish/app.text"))
        .header("content-type", "text/plain")
        .header("user-agent", "Vector/0.48.0 (x86_64-unknown-linux-gnu)")
        .body("from vector")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 200);
    assert_eq!(
        api.all_events(Some("app.text")).await[2]["source"],
        "Vector"
    );

    let path = "/publish/orders?id_field=order_id";
    api.post_expect(
        path,
        Some("application/json"),
        r#"{"order_id":"o-1","total":5}"#,
        200,
    )
    .await;
    assert_eq!(
        api.get("/events/orders/o-1").await.1["payload"]["total"],
        5,
        "the named field is the event id"
    );
    let body = api
        .post_expect(
            path,
            Some("application/json"),
            r#"[{"order_id":"o-2"},{"total":1},"text"]"#,
            422,
        )
        .await;
    let problem: Value = serde_json::from_slice(&body).expect("problem");
    let errors: Vec<(u64, Value)> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| (e["index"].as_u64().expect("index"), e["field"].clone()))
        .collect();
    assert_eq!(errors, [(1, json!("event_id")), (2, Value::Null)]);
    for (path, status) in [
        ("/publish/a%20b", 422),
        ("/publish/t?unknown=1", 400),
        ("/publish/t?id_field=x", 422),
    ] {
        let response = api.post(path, Some("text/plain"), None, "line").await;
        assert_eq!(response.status().as_u16(), status, "{path}");
    }
    assert_eq!(api.counters().await.unique_processed, 4);
    assert_healthy(api).await;
}

#[tokio::test]
async fn ingest_metrics_are_labelled_by_route_template() {
    let app = TestApp::spawn().await;
    let api = &app.api;
    api.post_expect("/publish/t.one", Some("text/plain"), "x", 200)
        .await;
    api.post_expect("/publish/t.two", Some("text/plain"), "y", 200)
        .await;
    api.post_expect("/v1/logs", Some("application/json"), "{}", 200)
        .await;
    let metrics = api.get_raw("/metrics").await.text().await.expect("metrics");
    let line = |route: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with("logagg_http_requests_total")
                    && l.contains(&format!("route=\"{route}\""))
            })
            .unwrap_or_else(|| panic!("no request counter for {route} in:\n{metrics}"))
            .to_owned()
    };
    assert!(
        line("/publish/{topic}").ends_with(" 2"),
        "{}",
        line("/publish/{topic}")
    );
    assert!(line("/v1/logs").ends_with(" 1"));
    assert!(!metrics.contains("t.one"), "raw paths never become labels");
}
