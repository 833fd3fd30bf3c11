//! Bad input: every malformed, invalid, oversized or misaddressed request is
//! refused with the right status and an RFC 9457 problem document, stores
//! nothing (a request is all-or-nothing), and leaves the server healthy.

use std::num::NonZeroUsize;

use crate::common::{Counters, TestApp, gzip};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

/// Limits lowered so each can be crossed with a small body.
const FIELD_BYTES_MAX: usize = 32;
const BODY_BYTES_MAX: usize = 64 * 1024;
const REQUEST_EVENTS_MAX: usize = 10;
const JSON_DEPTH_MAX: usize = 8;

async fn spawn_with_low_limits() -> TestApp {
    let limit = |value: usize| NonZeroUsize::new(value).expect("test limits are positive");
    TestApp::spawn_with(|config| {
        config.field_bytes_max = limit(FIELD_BYTES_MAX);
        config.body_bytes_max = limit(BODY_BYTES_MAX);
        config.request_events_max = limit(REQUEST_EVENTS_MAX);
        config.json_depth_max = limit(JSON_DEPTH_MAX);
    })
    .await
}

/// A valid event, with `changes` applied (a `null` change removes the field).
fn good_with(changes: Value) -> Value {
    let mut event = json!({
        "topic": "bad.input", "event_id": "e-1", "timestamp": "2025-10-25T12:30:00Z",
        "source": "test", "payload": {"ok": true},
    });
    for (field, value) in changes.as_object().expect("changes is an object") {
        if value.is_null() {
            event.as_object_mut().expect("object").remove(field);
        } else {
            event[field] = value.clone();
        }
    }
    event
}

fn good() -> Value {
    good_with(json!({}))
}

/// `count` valid events with distinct ids.
fn good_batch(count: usize) -> Vec<Value> {
    (0..count)
        .map(|i| good_with(json!({"event_id": format!("e-{i}")})))
        .collect()
}

/// An event whose payload nests `levels` objects deep: `levels + 1` levels in
/// all, counting the event itself.
fn nested_payload(levels: usize) -> String {
    format!(
        r#"{{"topic":"t","event_id":"deep","timestamp":"2025-10-25T12:30:00Z","source":"s","payload":{}1{}}}"#,
        r#"{"a":"#.repeat(levels),
        "}".repeat(levels)
    )
}

/// One bad request and what the server must answer.
struct Case {
    name: String,
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    encoding: Option<&'static str>,
    body: Vec<u8>,
    /// Send the body without a `Content-Length` (chunked).
    streamed: bool,
    status: u16,
    /// The slug of the problem `type`.
    problem: &'static str,
    /// For validation problems, the `(index, field)` of every listed error.
    errors: Option<Vec<(u64, Option<&'static str>)>>,
}

impl Case {
    /// A JSON `POST /publish` expected to fail with `status`.
    fn post(
        name: impl Into<String>,
        body: impl Into<Vec<u8>>,
        status: u16,
        problem: &'static str,
    ) -> Self {
        Self {
            name: name.into(),
            method: Method::POST,
            path: "/publish",
            content_type: Some("application/json"),
            encoding: None,
            body: body.into(),
            streamed: false,
            status,
            problem,
            errors: None,
        }
    }

    /// A JSON event (or array) that fails validation with these errors.
    fn invalid(
        name: impl Into<String>,
        body: &Value,
        errors: &[(u64, Option<&'static str>)],
    ) -> Self {
        Self {
            errors: Some(errors.to_vec()),
            ..Self::post(name, body.to_string(), 422, "invalid-events")
        }
    }

    fn content_type(self, content_type: Option<&'static str>) -> Self {
        Self {
            content_type,
            ..self
        }
    }

    fn encoding(self, encoding: &'static str) -> Self {
        Self {
            encoding: Some(encoding),
            ..self
        }
    }

    fn streamed(self) -> Self {
        Self {
            streamed: true,
            ..self
        }
    }

    fn request(
        name: &str,
        method: Method,
        path: &'static str,
        status: u16,
        problem: &'static str,
    ) -> Self {
        Self {
            method,
            path,
            content_type: None,
            ..Self::post(name, Vec::new(), status, problem)
        }
    }
}

fn field_cases() -> Vec<Case> {
    let long = "x".repeat(FIELD_BYTES_MAX + 1);
    // Two-byte characters: the limit counts bytes, not characters.
    let long_multibyte = "é".repeat(FIELD_BYTES_MAX / 2 + 1);
    let mut cases = vec![
        Case::invalid(
            "wrong type: topic is a number",
            &good_with(json!({"topic": 5})),
            &[(0, Some("topic"))],
        ),
        Case::invalid(
            "wrong type: event_id is an object",
            &good_with(json!({"event_id": {"id": 1}})),
            &[(0, Some("event_id"))],
        ),
        Case::invalid(
            "wrong type: source is an array",
            &good_with(json!({"source": ["s"]})),
            &[(0, Some("source"))],
        ),
        Case::invalid(
            "wrong type: timestamp is a number",
            &good_with(json!({"timestamp": 1_761_395_400})),
            &[(0, Some("timestamp"))],
        ),
        Case::invalid(
            "wrong type: topic is a boolean",
            &good_with(json!({"topic": true})),
            &[(0, Some("topic"))],
        ),
        Case::invalid(
            "missing topic",
            &good_with(json!({"topic": null})),
            &[(0, Some("topic"))],
        ),
        Case::invalid(
            "missing payload",
            &good_with(json!({"payload": null})),
            &[(0, Some("payload"))],
        ),
        Case::invalid(
            "missing every field",
            &json!({"unrelated": 1}),
            &[
                (0, Some("topic")),
                (0, Some("event_id")),
                (0, Some("timestamp")),
                (0, Some("source")),
                (0, Some("payload")),
            ],
        ),
        Case {
            errors: Some(vec![(0, Some("topic"))]),
            ..Case::post(
                "explicit null topic",
                r#"{"topic":null,"event_id":"e","timestamp":"2025-10-25T12:30:00Z","source":"s","payload":{}}"#,
                422,
                "invalid-events",
            )
        },
        Case::invalid(
            "empty topic",
            &good_with(json!({"topic": ""})),
            &[(0, Some("topic"))],
        ),
        Case::invalid(
            "empty event_id",
            &good_with(json!({"event_id": ""})),
            &[(0, Some("event_id"))],
        ),
        Case::invalid(
            "empty source",
            &good_with(json!({"source": ""})),
            &[(0, Some("source"))],
        ),
        Case::invalid(
            "empty timestamp",
            &good_with(json!({"timestamp": ""})),
            &[(0, Some("timestamp"))],
        ),
        Case::invalid(
            "over-long topic",
            &good_with(json!({"topic": long})),
            &[(0, Some("topic"))],
        ),
        Case::invalid(
            "over-long event_id",
            &good_with(json!({"event_id": long})),
            &[(0, Some("event_id"))],
        ),
        Case::invalid(
            "over-long source",
            &good_with(json!({"source": long})),
            &[(0, Some("source"))],
        ),
        Case::invalid(
            "over-long event_id in bytes, not characters",
            &good_with(json!({"event_id": long_multibyte})),
            &[(0, Some("event_id"))],
        ),
        Case::invalid(
            "topic with a space",
            &good_with(json!({"topic": "a b"})),
            &[(0, Some("topic"))],
        ),
        Case::invalid(
            "topic with a wildcard",
            &good_with(json!({"topic": "auth.*"})),
            &[(0, Some("topic"))],
        ),
        Case::invalid(
            "topic with a tail wildcard",
            &good_with(json!({"topic": "auth.>"})),
            &[(0, Some("topic"))],
        ),
        Case::invalid(
            "event_id with a control character",
            &good_with(json!({"event_id": "a\u{0}b"})),
            &[(0, Some("event_id"))],
        ),
        Case::invalid(
            "payload is an array",
            &good_with(json!({"payload": [1, 2]})),
            &[(0, Some("payload"))],
        ),
        Case::invalid(
            "payload is a string",
            &good_with(json!({"payload": "{}"})),
            &[(0, Some("payload"))],
        ),
        Case::invalid(
            "payload is a number",
            &good_with(json!({"payload": 5})),
            &[(0, Some("payload"))],
        ),
        Case {
            errors: Some(vec![(0, Some("payload"))]),
            ..Case::post(
                "payload is null",
                r#"{"topic":"t","event_id":"e","timestamp":"2025-10-25T12:30:00Z","source":"s","payload":null}"#,
                422,
                "invalid-events",
            )
        },
        Case::invalid("event is a number", &json!(5), &[(0, None)]),
        Case::invalid("event is a string", &json!("event"), &[(0, None)]),
        Case::invalid("event is null", &Value::Null, &[(0, None)]),
        // serde_json cannot build an object with a repeated key.
        Case {
            errors: Some(vec![(0, None)]),
            ..Case::post(
                "an event field appears twice",
                r#"{"topic":"t","topic":"u","event_id":"e","timestamp":"2025-10-25T12:30:00Z","source":"s","payload":{}}"#,
                422,
                "invalid-events",
            )
        },
        Case::invalid(
            "one bad event in a batch of good ones rejects all",
            &json!(
                [
                    good_batch(3),
                    vec![good_with(json!({"event_id": "e-9", "topic": 5}))],
                    good_batch(1)
                ]
                .concat()
            ),
            &[(3, Some("topic"))],
        ),
        Case::invalid(
            "several bad events are all listed",
            &json!([
                good(),
                7,
                good_with(json!({"event_id": "e-2", "source": ""})),
                good_with(json!({"event_id": "e-3", "payload": []}))
            ]),
            &[(1, None), (2, Some("source")), (3, Some("payload"))],
        ),
    ];
    for timestamp in [
        "yesterday",
        "2025-10-25",
        "12:30:00",
        "2025-13-01T00:00:00Z",
        "2025-02-30T00:00:00Z",
        "2025-10-25T25:00:00Z",
        "2025-10-25 12:30:00Z junk",
    ] {
        cases.push(Case::invalid(
            format!("bad timestamp {timestamp:?}"),
            &good_with(json!({"timestamp": timestamp})),
            &[(0, Some("timestamp"))],
        ));
    }
    cases
}

fn body_cases() -> Vec<Case> {
    let ndjson_with_bad_line = format!("{}\nnot json\n", good());
    let ndjson_with_bad_event = format!(
        "{}\n{}\n",
        good(),
        good_with(json!({"event_id": "e-2", "timestamp": "now"}))
    );
    let too_many = json!(good_batch(REQUEST_EVENTS_MAX + 1)).to_string();
    let too_many_ndjson: String = good_batch(REQUEST_EVENTS_MAX + 1)
        .iter()
        .map(|e| format!("{e}\n"))
        .collect();
    let huge = good_with(json!({"payload": {"pad": "x".repeat(BODY_BYTES_MAX)}})).to_string();
    // Decompresses to 32 times the limit, from a body far under it.
    let bomb = gzip(&vec![b' '; BODY_BYTES_MAX * 32]);
    assert!(bomb.len() < BODY_BYTES_MAX / 8, "the bomb must be small");
    let mut gzip_then_garbage = gzip(good().to_string().as_bytes());
    gzip_then_garbage.extend_from_slice(b"garbage after the gzip member");
    let mut truncated_gzip = gzip(good().to_string().as_bytes());
    truncated_gzip.truncate(truncated_gzip.len() / 2);
    let mut not_utf8 = br#"{"topic":"t","event_id":"caf"#.to_vec();
    not_utf8.extend_from_slice(b"\xe9\xff");
    not_utf8
        .extend_from_slice(br#"","timestamp":"2025-10-25T12:30:00Z","source":"s","payload":{}}"#);
    let deep_array = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    vec![
        Case::post("not JSON", "hello, server", 400, "bad-request"),
        Case::post("empty JSON body", "", 400, "bad-request"),
        Case::post("whitespace-only JSON body", " \n\t ", 400, "bad-request"),
        Case::post(
            "truncated JSON",
            r#"{"topic":"t","event_id":"#,
            400,
            "bad-request",
        ),
        Case::post(
            "truncated array",
            format!("[{},", good()),
            400,
            "bad-request",
        ),
        Case::post(
            "trailing garbage after the event",
            format!("{} x", good()),
            400,
            "bad-request",
        ),
        Case::post(
            "two events without an array",
            format!("{}{}", good(), good()),
            400,
            "bad-request",
        ),
        Case::post("single quotes", "{'topic':'t'}", 400, "bad-request"),
        Case::post("invalid UTF-8", not_utf8.clone(), 400, "bad-request"),
        Case::post(
            "invalid UTF-8 in NDJSON",
            not_utf8.clone(),
            400,
            "bad-request",
        )
        .content_type(Some("application/x-ndjson")),
        Case::post(
            "invalid UTF-8 inside gzip",
            gzip(&not_utf8),
            400,
            "bad-request",
        )
        .encoding("gzip"),
        Case::post("empty array", "[]", 422, "unprocessable"),
        Case::post("empty NDJSON body", "\n\n", 422, "unprocessable")
            .content_type(Some("application/x-ndjson")),
        Case::post(
            "NDJSON with a line that is not JSON",
            ndjson_with_bad_line,
            400,
            "bad-request",
        )
        .content_type(Some("application/x-ndjson")),
        Case {
            errors: Some(vec![(1, Some("timestamp"))]),
            ..Case::post(
                "NDJSON with one invalid event",
                ndjson_with_bad_event,
                422,
                "invalid-events",
            )
            .content_type(Some("application/x-ndjson"))
        },
        Case::post(
            "5,000 levels of nested payload",
            nested_payload(5_000),
            422,
            "unprocessable",
        ),
        Case::post(
            "5,000 levels of nested arrays",
            deep_array.clone(),
            422,
            "unprocessable",
        ),
        Case::post(
            "5,000 levels in NDJSON",
            nested_payload(5_000),
            422,
            "unprocessable",
        )
        .content_type(Some("application/x-ndjson")),
        Case::post(
            "5,000 levels inside gzip",
            gzip(nested_payload(5_000).as_bytes()),
            422,
            "unprocessable",
        )
        .encoding("gzip"),
        Case::post(
            "payload one level deeper than the limit",
            nested_payload(JSON_DEPTH_MAX),
            422,
            "unprocessable",
        ),
        Case::post("too many events in an array", too_many, 413, "too-large"),
        Case::post(
            "too many events in NDJSON",
            too_many_ndjson,
            413,
            "too-large",
        )
        .content_type(Some("application/x-ndjson")),
        Case::post("body over the limit", huge.clone(), 413, "too-large"),
        Case::post(
            "body over the limit without Content-Length",
            huge,
            413,
            "too-large",
        )
        .streamed(),
        Case::post("gzip bomb", bomb, 413, "too-large").encoding("gzip"),
        Case::post(
            "gzip header on a body that is not gzip",
            good().to_string(),
            400,
            "bad-request",
        )
        .encoding("gzip"),
        Case::post("truncated gzip", truncated_gzip, 400, "bad-request").encoding("gzip"),
        Case::post(
            "gzip followed by garbage",
            gzip_then_garbage,
            400,
            "bad-request",
        )
        .encoding("gzip"),
        Case::post(
            "unsupported Content-Encoding br",
            good().to_string(),
            415,
            "unsupported-media-type",
        )
        .encoding("br"),
        Case::post(
            "unsupported Content-Encoding deflate",
            good().to_string(),
            415,
            "unsupported-media-type",
        )
        .encoding("deflate"),
        Case::post(
            "wrong content type text/plain",
            good().to_string(),
            415,
            "unsupported-media-type",
        )
        .content_type(Some("text/plain")),
        Case::post(
            "wrong content type form",
            "topic=t",
            415,
            "unsupported-media-type",
        )
        .content_type(Some("application/x-www-form-urlencoded")),
        Case::post(
            "missing content type",
            good().to_string(),
            415,
            "unsupported-media-type",
        )
        .content_type(None),
        Case::request("unknown path", Method::GET, "/nope", 404, "not-found"),
        Case::request(
            "publish to an unknown path (/publish/{topic} takes one segment)",
            Method::POST,
            "/publish/extra/more",
            404,
            "not-found",
        ),
        Case::request(
            "a path segment that is not UTF-8",
            Method::GET,
            "/events/%ff/x",
            400,
            "bad-request",
        ),
        Case::request(
            "a raw publish topic that is not UTF-8",
            Method::POST,
            "/publish/a%ff%fe",
            400,
            "bad-request",
        ),
        Case::request(
            "wrong method GET /publish",
            Method::GET,
            "/publish",
            405,
            "method-not-allowed",
        ),
        Case::request(
            "wrong method PUT /publish",
            Method::PUT,
            "/publish",
            405,
            "method-not-allowed",
        ),
        Case::request(
            "wrong method DELETE /events",
            Method::DELETE,
            "/events",
            405,
            "method-not-allowed",
        ),
        Case::request(
            "wrong method POST /stats",
            Method::POST,
            "/stats",
            405,
            "method-not-allowed",
        ),
    ]
}

async fn send(app: &TestApp, case: &Case) -> reqwest::Response {
    let mut request = app
        .api
        .http
        .request(case.method.clone(), app.api.url(case.path));
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(encoding) = case.encoding {
        request = request.header("content-encoding", encoding);
    }
    request = if case.streamed {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            case.body.chunks(4096).map(|c| Ok(c.to_vec())).collect();
        request.body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
    } else {
        request.body(case.body.clone())
    };
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: request failed: {e}", case.name))
}

/// Asserts the answer is the expected RFC 9457 problem document.
async fn check_problem(case: &Case, response: reqwest::Response) {
    let name = &case.name;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("(not text)").to_owned());
    let text = response.text().await.expect("problem body");
    assert_eq!(status, case.status, "{name}: status; body {text}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/problem+json"),
        "{name}: content type"
    );
    let problem: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{name}: problem is not JSON ({e}): {text}"));
    assert_eq!(
        problem["type"],
        format!("urn:logagg:problem:{}", case.problem),
        "{name}: problem type in {problem}"
    );
    assert_eq!(problem["status"], case.status, "{name}: problem status");
    for member in ["title", "detail"] {
        assert!(
            problem[member].as_str().is_some_and(|s| !s.is_empty()),
            "{name}: problem {member} in {problem}"
        );
    }
    match &case.errors {
        None => assert!(
            problem.get("errors").is_none(),
            "{name}: only validation problems list errors: {problem}"
        ),
        Some(expected) => {
            let errors = problem["errors"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: errors list in {problem}"));
            let listed: Vec<(u64, Option<&str>)> = errors
                .iter()
                .map(|e| {
                    assert!(
                        e["message"].as_str().is_some_and(|m| !m.is_empty()),
                        "{name}: error message in {e}"
                    );
                    (
                        e["index"]
                            .as_u64()
                            .unwrap_or_else(|| panic!("{name}: index in {e}")),
                        e["field"].as_str(),
                    )
                })
                .collect();
            let expected: Vec<(u64, Option<&str>)> = expected.to_vec();
            assert_eq!(listed, expected, "{name}: (index, field) of each error");
        }
    }
}

async fn assert_nothing_stored(app: &TestApp, name: &str) {
    assert_eq!(
        app.api.counters().await,
        Counters::default(),
        "{name}: counters after a refused request"
    );
    let (status, page) = app.api.get("/events").await;
    assert_eq!(status, 200, "{name}: {page}");
    assert_eq!(page["events"], json!([]), "{name}: stored events");
}

async fn run(cases: Vec<Case>) {
    let app = spawn_with_low_limits().await;
    for case in &cases {
        let response = send(&app, case).await;
        check_problem(case, response).await;
        assert_nothing_stored(&app, &case.name).await;
    }
    let (status, body) = app.api.get("/health").await;
    assert_eq!(status, 200, "server healthy after the bad input: {body}");
    // And it still takes good input.
    app.api.publish_ok(&good()).await;
}

#[tokio::test]
async fn bad_events_are_refused_with_every_bad_field_listed_and_nothing_stored() {
    run(field_cases()).await;
}

#[tokio::test]
async fn bad_bodies_headers_and_routes_get_the_right_problem_and_store_nothing() {
    run(body_cases()).await;
}

#[tokio::test]
async fn method_not_allowed_names_the_allowed_methods() {
    let app = TestApp::spawn().await;
    let response = app.api.get_raw("/publish").await;
    assert_eq!(response.status(), 405);
    let allow = response
        .headers()
        .get("allow")
        .map(|v| v.to_str().expect("ascii").to_owned());
    assert_eq!(
        allow.as_deref(),
        Some("POST"),
        "RFC 9110: a 405 carries Allow"
    );
}

#[tokio::test]
async fn a_million_levels_of_nesting_is_refused_without_crashing() {
    let app = TestApp::spawn().await;
    let body = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    let response = app.api.publish_raw("application/json", body).await;
    assert_eq!(response.status(), 422);
    let (status, _) = app.api.get("/health").await;
    assert_eq!(status, 200);
    assert_nothing_stored(&app, "a million levels").await;
}

#[tokio::test]
async fn input_exactly_at_each_limit_is_accepted() {
    let app = spawn_with_low_limits().await;
    let at_limit = "x".repeat(FIELD_BYTES_MAX);
    let cases: Vec<(&str, String)> = vec![
        (
            "topic at the length limit",
            good_with(json!({"topic": at_limit})).to_string(),
        ),
        (
            "event_id at the length limit",
            good_with(json!({"event_id": at_limit})).to_string(),
        ),
        (
            "source at the length limit",
            good_with(json!({"source": at_limit})).to_string(),
        ),
        (
            "payload at the depth limit",
            nested_payload(JSON_DEPTH_MAX - 1),
        ),
        (
            "batch at the depth limit",
            format!("[{}]", nested_payload(JSON_DEPTH_MAX - 1)),
        ),
        (
            "batch at the event limit",
            json!(good_batch(REQUEST_EVENTS_MAX)).to_string(),
        ),
        ("body at the size limit", body_of_exactly(BODY_BYTES_MAX)),
    ];
    for (name, body) in cases {
        let response = app.api.publish_raw("application/json", body).await;
        let status = response.status();
        let text = response.text().await.expect("body");
        assert_eq!(status, 200, "{name}: {text}");
    }
}

/// A single valid event whose JSON is exactly `bytes` long.
fn body_of_exactly(bytes: usize) -> String {
    let empty = good_with(json!({"event_id": "exact", "payload": {"pad": ""}})).to_string();
    let padded = good_with(
        json!({"event_id": "exact", "payload": {"pad": "x".repeat(bytes - empty.len())}}),
    )
    .to_string();
    assert_eq!(padded.len(), bytes);
    padded
}

/// A publisher that sent a body far over the default limit must learn so
/// from a 413, not from a reset connection it would take as "retry".
#[tokio::test]
async fn a_body_far_over_the_default_limit_gets_413_not_a_reset() {
    let app = TestApp::spawn().await;
    let size = 2 * app.config.body_bytes_max.get();
    let body = vec![b' '; size];
    let response = app.api.publish_raw("application/json", body.clone()).await;
    assert_eq!(response.status(), 413, "with Content-Length");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let response = app
        .api
        .http
        .post(app.api.url("/publish"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("a chunked upload is answered, not reset");
    assert_eq!(response.status(), 413, "chunked");
    assert_nothing_stored(&app, "body far over the limit").await;
}

/// Issue 15: `curl -d @events.ndjson -H 'content-type: application/json'`
/// is the usual mistake; the problem says which type to send.
#[tokio::test]
async fn ndjson_sent_as_json_gets_a_hint_to_use_x_ndjson() {
    let app = TestApp::spawn().await;
    let ndjson = format!(
        "{}\n{}\n",
        crate::common::event("a", "1"),
        crate::common::event("a", "2")
    );
    let response = app.api.publish_raw("application/json", ndjson).await;
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().await.expect("problem");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(
        detail.ends_with("it looks like NDJSON (one event per line): send it with Content-Type: application/x-ndjson"),
        "{detail}"
    );
    // Plain garbage gets no such hint.
    let response = app
        .api
        .publish_raw("application/json", "{\"a\": 1} oops")
        .await;
    let problem: Value = response.json().await.expect("problem");
    assert!(
        !problem["detail"]
            .as_str()
            .expect("detail")
            .contains("NDJSON"),
        "{problem}"
    );
}

/// Requests hyper's parser rejects before the router sees them (issue 11,
/// defect 3): each still gets a problem document, then the connection
/// closes.
#[tokio::test]
async fn requests_the_http_parser_rejects_get_problem_documents() {
    use crate::connections::{problem, read_response, read_to_close};
    use tokio::io::AsyncWriteExt;

    let app = TestApp::spawn().await;
    let long_target = format!("/events?topic={}", "a".repeat(70_000));
    let many_headers: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "an unescaped > in the query, as curl sends auth.>",
            "GET /subscribe?topic=auth.>&from=0 HTTP/1.1\r\nhost: x\r\n\r\n".to_owned(),
            400,
            "bad-request",
        ),
        (
            "a quote in the query",
            "GET /events?topic=\"a\" HTTP/1.1\r\nhost: x\r\n\r\n".to_owned(),
            400,
            "bad-request",
        ),
        (
            "a space in the target",
            "GET /events?topic=a b HTTP/1.1\r\nhost: x\r\n\r\n".to_owned(),
            400,
            "bad-request",
        ),
        (
            "a Content-Length that is not a number",
            "POST /publish HTTP/1.1\r\nhost: x\r\ncontent-length: ten\r\n\r\n".to_owned(),
            400,
            "bad-request",
        ),
        (
            "two different Content-Lengths",
            "POST /publish HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n{"
                .to_owned(),
            400,
            "bad-request",
        ),
        (
            "more headers than the parser takes",
            format!("GET /health HTTP/1.1\r\nhost: x\r\n{many_headers}\r\n"),
            431,
            "headers-too-large",
        ),
        (
            "a target over the parser's limit",
            format!("GET {long_target} HTTP/1.1\r\nhost: x\r\n\r\n"),
            414,
            "uri-too-long",
        ),
    ];
    for (name, request, status, slug) in cases {
        let mut stream = tokio::net::TcpStream::connect(app.addr)
            .await
            .expect("connecting");
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("{name}: sending: {e}"));
        let (got, head, body) = read_response(&mut stream).await;
        assert_eq!(got, status, "{name}: {head}");
        let problem = problem(&head, &body);
        assert_eq!(
            problem["type"],
            format!("urn:logagg:problem:{slug}"),
            "{name}"
        );
        assert_eq!(problem["status"], status, "{name}");
        read_to_close(&mut stream).await;
    }
    let (status, _) = app.api.get("/health").await;
    assert_eq!(status, 200);
}

/// The README's subscribe example works as written: `>` sent as `%3E`.
#[tokio::test]
async fn a_pattern_with_an_escaped_greater_than_sign_subscribes() {
    let app = TestApp::spawn().await;
    app.api
        .publish_ok(&crate::common::event("auth.login", "e-1"))
        .await;
    let response = app
        .api
        .http
        .get(app.api.url("/subscribe?topic=auth.%3E&from=0"))
        .timeout(std::time::Duration::from_secs(3600))
        .send()
        .await
        .expect("GET /subscribe");
    assert_eq!(response.status(), 200);
    let mut body = Box::pin(response.bytes_stream());
    let mut received = String::new();
    while !received.contains("\"event_id\":\"e-1\"") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), body.next())
            .await
            .expect("the stored event in time")
            .expect("the stream is open")
            .expect("reading the stream");
        received.push_str(&String::from_utf8_lossy(&chunk));
    }
}
