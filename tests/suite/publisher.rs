//! `logagg publish`, run as the built binary: against a real server
//! ([`TestApp`]) for what gets stored, and against [`FakeServer`], which
//! fails on purpose, for retries, give-ups and error messages.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::TestApp;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Upper bound on one run of the binary.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What a run of `logagg publish` left behind.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn succeeded(&self) -> bool {
        self.code == Some(0)
    }

    /// The `--json` summary.
    fn summary(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("summary is not JSON ({e}): {}", self.stdout))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `logagg publish ARGS` (with `--url url`), feeding it `stdin`.
async fn publish(url: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"));
    command
        .arg("publish")
        .args(["--url", url])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawning logagg publish");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(text.as_bytes())
            .await
            .expect("writing stdin");
        // Dropping the pipe closes it: end of input.
    }
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .expect("logagg publish finishes in time")
        .expect("waiting for logagg publish");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// One valid event as an NDJSON line.
fn line(topic: &str, event_id: &str) -> String {
    crate::common::event(topic, event_id).to_string()
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("writing an input file");
    path.to_str().expect("a UTF-8 temp path").to_owned()
}

/// `(topic, event_id)` of every stored event, and the count.
async fn stored_keys(app: &TestApp) -> (BTreeSet<(String, String)>, usize) {
    let events = app.api.all_events(None).await;
    let keys = events
        .iter()
        .map(|e| {
            (
                e["topic"].as_str().expect("topic").to_owned(),
                e["event_id"].as_str().expect("event_id").to_owned(),
            )
        })
        .collect();
    (keys, events.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_load_with_duplicates_is_stored_once_and_verified() {
    let app = TestApp::spawn().await;
    let run = publish(
        &app.api.base,
        &[
            "--generate",
            "5000",
            "--duplicate-rate",
            "0.2",
            "--seed",
            "11",
            "--verify",
        ],
        None,
    )
    .await;
    assert!(run.succeeded(), "{run}");
    assert!(run.stdout.contains("verify        ok"), "{run}");

    let stats = app.api.stats().await;
    assert_eq!(stats["received"], 5000, "{stats}");
    assert_eq!(stats["unique_processed"], 4000, "{stats}");
    assert_eq!(stats["duplicate_dropped"], 1000, "{stats}");
    let (keys, count) = stored_keys(&app).await;
    assert_eq!((keys.len(), count), (4000, 4000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_summary_matches_the_servers_stats() {
    let app = TestApp::spawn().await;
    let run = publish(
        &app.api.base,
        &[
            "--generate",
            "2000",
            "--duplicate-rate",
            "0.3",
            "--topics",
            "3",
            "--batch-size",
            "50",
            "--concurrency",
            "4",
            "--json",
        ],
        None,
    )
    .await;
    assert!(run.succeeded(), "{run}");
    let summary = run.summary();
    let stats = app.api.stats().await;
    assert_eq!(summary["sent"], 2000, "{summary}");
    assert_eq!(summary["requests"], 40, "{summary}");
    assert_eq!(
        summary["acknowledged"], stats["received"],
        "{summary} {stats}"
    );
    assert_eq!(
        summary["unique"], stats["unique_processed"],
        "{summary} {stats}"
    );
    assert_eq!(
        summary["duplicates"], stats["duplicate_dropped"],
        "{summary} {stats}"
    );
    assert_eq!(summary["unique"], 1400, "{summary}");
    assert_eq!(
        (&summary["retries"], &summary["failures"]),
        (&json!(0), &json!(0))
    );
    assert_eq!(stats["topics"].as_array().expect("topics").len(), 3);
    let latency = &summary["latency_ms"];
    let ms = |key: &str| latency[key].as_f64().expect("a latency");
    assert!(
        ms("p50") <= ms("p99") && ms("p99") <= ms("max"),
        "{latency}"
    );
    // A round trip over loopback to an fsynced commit takes well over
    // 20 µs; a histogram that clamped every sample would say less.
    assert!(ms("p50") >= 0.02, "{latency}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_files_are_stored() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let first = write_file(
        dir.path(),
        "first.ndjson",
        &format!(
            "{}\n\n{}\r\n{}",
            line("a.x", "1"),
            line("a.x", "2"),
            line("b", "1")
        ),
    );
    let second = write_file(
        dir.path(),
        "second.ndjson",
        &format!("{}\n", line("a.x", "3")),
    );
    let run = publish(
        &app.api.base,
        &[&first, &second, "--batch-size", "2", "--json"],
        None,
    )
    .await;
    assert!(run.succeeded(), "{run}");
    assert_eq!(run.summary()["acknowledged"], 4, "{run}");
    let (keys, _) = stored_keys(&app).await;
    let expected: BTreeSet<_> = [("a.x", "1"), ("a.x", "2"), ("a.x", "3"), ("b", "1")]
        .into_iter()
        .map(|(t, id)| (t.to_owned(), id.to_owned()))
        .collect();
    assert_eq!(keys, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_from_stdin_is_stored() {
    let app = TestApp::spawn().await;
    let input: String = (0..250)
        .map(|i| line("piped", &i.to_string()) + "\n")
        .collect();
    let run = publish(&app.api.base, &["-", "--json"], Some(&input)).await;
    assert!(run.succeeded(), "{run}");
    assert_eq!(run.summary()["unique"], 250, "{run}");
    assert_eq!(app.api.stats().await["unique_processed"], 250);
    let (keys, _) = stored_keys(&app).await;
    assert!(keys.contains(&("piped".to_owned(), "249".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_sends_the_same_events() {
    let args = [
        "--generate",
        "500",
        "--duplicate-rate",
        "0.1",
        "--ids",
        "uuid4",
        "--seed",
        "2024",
    ];
    let mut stored = Vec::new();
    for _ in 0..2 {
        let app = TestApp::spawn().await;
        let run = publish(&app.api.base, &args, None).await;
        assert!(run.succeeded(), "{run}");
        let mut events: Vec<Value> = app
            .api
            .all_events(None)
            .await
            .into_iter()
            .map(|mut e| {
                // Server-assigned: commit order varies with concurrency.
                let object = e.as_object_mut().expect("an object");
                object.remove("seq");
                object.remove("received_at");
                e
            })
            .collect();
        events.sort_by_key(|e| e["event_id"].as_str().unwrap_or_default().to_owned());
        stored.push(events);
    }
    assert_eq!(stored[0].len(), 450);
    assert_eq!(stored[0], stored[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_json_is_named_by_file_and_line() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_file(
        dir.path(),
        "broken.ndjson",
        &format!("{}\n{{\"topic\": \n", line("t", "1")),
    );
    let run = publish(&app.api.base, &[&path], None).await;
    assert!(!run.succeeded(), "{run}");
    assert!(
        run.stderr.contains(&format!("{path}:2: not valid JSON")),
        "{run}"
    );
}

#[tokio::test]
async fn every_flag_has_an_environment_variable() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
        .args(["publish", "--help"])
        .output()
        .await
        .expect("running --help");
    let help = String::from_utf8_lossy(&output.stdout);
    // Each option's block runs from its `--flag` line to the next one.
    let mut blocks: Vec<(&str, String)> = Vec::new();
    for line in help.lines() {
        let text = line.trim_start();
        let indent = line.len() - text.len();
        if indent <= 6 && text.starts_with('-') {
            let flag = text.split_whitespace().next().unwrap_or_default();
            blocks.push((flag, String::new()));
        } else if let Some((_, block)) = blocks.last_mut() {
            block.push_str(line);
        }
    }
    let mut flags = 0;
    for (flag, block) in blocks.iter().filter(|(flag, _)| *flag != "-h,") {
        flags += 1;
        assert!(
            block.contains("[env: LOGAGG_"),
            "{flag} has no env var:\n{help}"
        );
    }
    assert!(flags >= 15, "found only {flags} flags:\n{help}");
    assert!(help.contains("Only exact when this publisher is the only one"));
}

// --- against a server that fails on purpose -------------------------------

/// What [`FakeServer`] does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 200 with a receipt counting every event as unique.
    Ok,
    /// 503 with `Retry-After: {0}` seconds.
    Unavailable(u64),
    /// 422 with a problem document naming the request's second event.
    Invalid,
    /// Reads the request and closes the connection without answering.
    Hangup,
    /// Answers 200, but only after a minute.
    Stall,
    /// 200 with a receipt that counts one event too few.
    Miscount,
}

/// The answers to give, and when each request came.
struct Script {
    answers: Vec<Answer>,
    /// The answer once `answers` is used up.
    then: Answer,
    seen: Vec<Instant>,
}

impl Script {
    fn next(&self) -> Answer {
        self.answers
            .get(self.seen.len())
            .copied()
            .unwrap_or(self.then)
    }

    /// Records a request and says how to answer it.
    fn take(&mut self) -> Answer {
        let answer = self.next();
        self.seen.push(Instant::now());
        answer
    }
}

type Shared = Arc<Mutex<Script>>;

/// A `POST /publish` that answers the n-th request with `answers[n]`, and
/// a `/stats` whose counters never move.
struct FakeServer {
    url: String,
    script: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    async fn start(answers: &[Answer], then: Answer) -> Self {
        let script = Arc::new(Mutex::new(Script {
            answers: answers.to_vec(),
            then,
            seen: Vec::new(),
        }));
        let listener = HangupListener {
            inner: TcpListener::bind("127.0.0.1:0").await.expect("binding"),
            script: Arc::clone(&script),
        };
        let addr = listener.inner.local_addr().expect("an address");
        let app = Router::new()
            .route("/publish", post(fake_publish))
            .route("/stats", get(fake_stats))
            .with_state(Arc::clone(&script));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake server runs");
        });
        Self {
            url: format!("http://{addr}"),
            script,
            task,
        }
    }

    /// When each request arrived, in order.
    fn requests(&self) -> Vec<Instant> {
        self.script.lock().expect("script lock").seen.clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_publish(State(script): State<Shared>, body: String) -> Response {
    let answer = script.lock().expect("script lock").take();
    let events = body.lines().filter(|l| !l.trim().is_empty()).count();
    let problem = |status: StatusCode, detail: &str, errors: Value| {
        let body = json!({
            "type": "urn:logagg:problem:test",
            "title": "Fake problem",
            "status": status.as_u16(),
            "detail": detail,
            "errors": errors,
        });
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
    };
    if answer == Answer::Stall {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    match answer {
        Answer::Ok | Answer::Stall => axum::Json(json!({
            "received": events, "unique": events, "duplicates": 0, "conflicts": 0
        }))
        .into_response(),
        Answer::Miscount => axum::Json(json!({
            "received": events - 1, "unique": events - 1, "duplicates": 0, "conflicts": 0
        }))
        .into_response(),
        Answer::Unavailable(seconds) => {
            let mut response =
                problem(StatusCode::SERVICE_UNAVAILABLE, "queue full", json!([])).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
            response
        }
        Answer::Invalid => problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "1 problem(s) in 1 event(s); nothing of this request was stored",
            json!([{"index": 1, "field": "topic", "message": "must not contain whitespace"}]),
        )
        .into_response(),
        Answer::Hangup => unreachable!("hang-ups are done by the listener"),
    }
}

async fn fake_stats() -> axum::Json<Value> {
    axum::Json(json!({"received": 0, "unique_processed": 0, "duplicate_dropped": 0}))
}

/// Hands connections to axum, except when the next answer is
/// [`Answer::Hangup`]: then it reads the request itself and closes the
/// socket without a word. The decision is made per connection, so tests
/// that hang up send one request at a time (`--concurrency 1`): after a
/// hang-up the publisher has to open a new connection for its retry.
struct HangupListener {
    inner: TcpListener,
    script: Shared,
}

impl axum::serve::Listener for HangupListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Ok((mut stream, addr)) = self.inner.accept().await else {
                continue;
            };
            let hang_up = self.script.lock().expect("script lock").next() == Answer::Hangup;
            if !hang_up {
                return (stream, addr);
            }
            let mut head = Vec::new();
            let mut buffer = [0_u8; 4096];
            let read_head = async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), read_head).await;
            self.script.lock().expect("script lock").take();
            drop(stream);
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_after_its_retry_after() {
    let server = FakeServer::start(&[Answer::Unavailable(1)], Answer::Ok).await;
    let run = publish(
        &server.url,
        &[
            "--generate",
            "10",
            "--batch-size",
            "10",
            "--concurrency",
            "1",
            "--json",
        ],
        None,
    )
    .await;
    assert!(run.succeeded(), "{run}");
    assert_eq!(run.summary()["retries"], 1, "{run}");
    assert_eq!(run.summary()["acknowledged"], 10, "{run}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1] - requests[0];
    assert!(waited >= Duration::from_secs(1), "retried after {waited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_retried() {
    let server = FakeServer::start(&[Answer::Hangup], Answer::Ok).await;
    let run = publish(
        &server.url,
        &[
            "--generate",
            "5",
            "--concurrency",
            "1",
            "--backoff-base",
            "10ms",
            "--json",
        ],
        None,
    )
    .await;
    assert!(run.succeeded(), "{run}");
    assert_eq!(run.summary()["retries"], 1, "{run}");
    assert_eq!(run.summary()["acknowledged"], 5, "{run}");
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_that_times_out_is_retried() {
    let server = FakeServer::start(&[Answer::Stall], Answer::Ok).await;
    let run = publish(
        &server.url,
        &[
            "--generate",
            "4",
            "--timeout",
            "2s",
            "--backoff-base",
            "10ms",
            "--json",
        ],
        None,
    )
    .await;
    assert!(run.succeeded(), "{run}");
    // A busy machine could make a later attempt time out too; what matters
    // is that the stalled one was retried.
    let retries = run.summary()["retries"].as_u64().expect("retries");
    assert!(retries >= 1, "{run}");
    assert_eq!(server.requests().len() as u64, 1 + retries);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_request_is_not_retried_and_its_event_line_is_named() {
    let server = FakeServer::start(&[], Answer::Invalid).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_file(
        dir.path(),
        "events.ndjson",
        &format!(
            "{}\n\n{}\n{}\n",
            line("t", "1"),
            line("t", "2"),
            line("t", "3")
        ),
    );
    let run = publish(&server.url, &[&path, "--max-attempts", "5"], None).await;
    assert!(!run.succeeded(), "{run}");
    assert_eq!(server.requests().len(), 1, "a 4xx is never retried");
    for expected in [
        "422",
        "nothing of this request was stored",
        &format!("event 1 ({path}:3) topic: must not contain whitespace"),
    ] {
        assert!(
            run.stderr.contains(expected),
            "missing {expected:?}:\n{run}"
        );
    }
    assert_eq!(run.stderr.trim().lines().count(), 1, "one line:\n{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stays_unavailable_is_given_up_on() {
    let server = FakeServer::start(&[], Answer::Unavailable(0)).await;
    let run = publish(
        &server.url,
        &[
            "--generate",
            "3",
            "--max-attempts",
            "3",
            "--backoff-base",
            "1ms",
            "--json",
        ],
        None,
    )
    .await;
    assert!(!run.succeeded(), "{run}");
    assert_eq!(server.requests().len(), 3);
    assert!(run.stderr.contains("after 3 attempt(s)"), "{run}");
    assert!(run.stderr.contains("503"), "{run}");
    let summary = run.summary();
    assert_eq!(
        (&summary["failures"], &summary["retries"]),
        (&json!(3), &json!(2))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_that_does_not_cover_the_request_is_not_an_acknowledgement() {
    let server = FakeServer::start(&[], Answer::Miscount).await;
    let run = publish(&server.url, &["--generate", "10", "--json"], None).await;
    assert!(!run.succeeded(), "{run}");
    assert_eq!(run.summary()["acknowledged"], 0, "{run}");
    assert!(
        run.stderr
            .contains("the receipt counts 9 received events, the request held 10"),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_when_the_counters_disagree_with_the_receipts() {
    // The fake's /stats never moves, as if the receipts came from elsewhere.
    let server = FakeServer::start(&[], Answer::Ok).await;
    let run = publish(&server.url, &["--generate", "10", "--verify"], None).await;
    assert!(!run.succeeded(), "{run}");
    for expected in [
        "--verify failed",
        "received moved by 0, the acknowledgements say 10",
        "only exact when this publisher is the only one",
    ] {
        assert!(
            run.stderr.contains(expected),
            "missing {expected:?}:\n{run}"
        );
    }
}
