//! Real clients against logagg: the OpenTelemetry Python SDK through its
//! OTLP/HTTP exporters (protobuf and JSON), a Loki client for Python
//! (`loki-logger-handler`), and syslog-ng with its `http()` destination,
//! each as a child process. What they logged must be stored, once each,
//! also when a request is retried after logagg committed it: a
//! [`FaultProxy`] in front of logagg answers 503 + `Retry-After` to a
//! request logagg has already committed, the worst case for a retry, and
//! the syslog-ng test kills and restarts logagg under it.
//!
//! The Python clients come from `tests/clients/requirements.txt`, in the
//! venv that `.ci/setup/40-python-clients.sh` makes (its python in
//! `LOGAGG_TEST_PYTHON`); syslog-ng from Debian's `syslog-ng-core` and
//! `syslog-ng-mod-http` (`.ci/setup/41-syslog-ng.sh`). Without them the
//! tests skip, unless `LOGAGG_REQUIRE_ALL=1`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::common::{Api, ChildServer, TestApp, closed_port, skip};

/// Longest a client script may run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(90);

/// A reverse proxy in front of logagg that answers `503` with
/// `Retry-After: 1` to the first `faults` requests that logagg answered
/// with a 2xx: the request is committed, but its client is told to retry.
pub struct FaultProxy {
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
    _task: tokio::task::JoinHandle<()>,
}

struct ProxyState {
    upstream: String,
    faults_left: AtomicUsize,
    injected: AtomicUsize,
    forwarded: AtomicUsize,
    http: reqwest::Client,
}

impl FaultProxy {
    pub async fn start(upstream: &Api, faults: usize) -> Self {
        let state = Arc::new(ProxyState {
            upstream: upstream.base.clone(),
            faults_left: AtomicUsize::new(faults),
            injected: AtomicUsize::new(0),
            forwarded: AtomicUsize::new(0),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("building a reqwest client"),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the proxy serves");
        });
        Self {
            addr,
            state,
            _task: task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.state.injected.load(Ordering::SeqCst)
    }

    /// Requests forwarded to logagg so far.
    pub fn forwarded(&self) -> usize {
        self.state.forwarded.load(Ordering::SeqCst)
    }
}

async fn forward(
    State(state): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = state
        .http
        .request(method, format!("{}{path}", state.upstream))
        .body(body);
    for (name, value) in &headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "connection" | "transfer-encoding"
        ) {
            request = request.header(name, value);
        }
    }
    let upstream = match request.send().await {
        Ok(response) => response,
        Err(error) => {
            return (StatusCode::BAD_GATEWAY, format!("upstream failed: {error}")).into_response();
        }
    };
    state.forwarded.fetch_add(1, Ordering::SeqCst);
    let status = upstream.status();
    if status.is_success()
        && state
            .faults_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        state.injected.fetch_add(1, Ordering::SeqCst);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("retry-after", "1")],
            "injected fault: logagg committed this request; retry it",
        )
            .into_response();
    }
    let mut response = Response::builder().status(status.as_u16());
    for (name, value) in upstream.headers() {
        if !matches!(
            name.as_str(),
            "content-length" | "connection" | "transfer-encoding"
        ) {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    let bytes = upstream.bytes().await.unwrap_or_default();
    response
        .body(axum::body::Body::from(bytes))
        .expect("a valid response")
}

/// The venv python with the client packages, or why there is none.
fn python_with_clients() -> Result<PathBuf, String> {
    let python = std::env::var_os("LOGAGG_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            Some(PathBuf::from(home).join(".cache/logagg/py-clients/bin/python"))
        })
        .ok_or("neither LOGAGG_TEST_PYTHON nor HOME is set")?;
    let imports = "import opentelemetry.sdk._logs, opentelemetry.exporter.otlp.proto.http._log_exporter, \
                   opentelemetry.exporter.otlp.json.http._log_exporter, loki_logger_handler";
    let output = std::process::Command::new(&python)
        .args(["-c", imports])
        .output()
        .map_err(|e| {
            format!(
                "{} cannot run ({e}); run .ci/setup/40-python-clients.sh",
                python.display()
            )
        })?;
    if !output.status.success() {
        return Err(format!(
            "{} lacks the client packages ({}); run .ci/setup/40-python-clients.sh",
            python.display(),
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    Ok(python)
}

/// Runs `tests/clients/<script>` with `args`; returns its exit success and
/// the JSON object it printed.
async fn run_client(python: &Path, script: &str, args: &[&str]) -> (bool, Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let child = tokio::process::Command::new(python)
        .arg(&script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawning a client script");
    let output = tokio::time::timeout(CLIENT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} did not finish in {CLIENT_TIMEOUT:?}", script.display()))
        .expect("waiting for the client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{} printed no report ({e}); stdout: {stdout}; stderr: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), report)
}

/// Stored events of `topic`, keyed by a payload field, asserting none is
/// stored twice.
async fn stored_by(
    api: &Api,
    topic: &str,
    key: impl Fn(&Value) -> String,
) -> BTreeMap<String, Value> {
    let mut stored = BTreeMap::new();
    for event in api.all_events(Some(topic)).await {
        let k = key(&event);
        assert!(
            stored.insert(k.clone(), event).is_none(),
            "{k:?} is stored twice"
        );
    }
    stored
}

fn logged_messages(report: &Value) -> Vec<(String, String, u64)> {
    report["logged"]
        .as_array()
        .expect("the report lists what was logged")
        .iter()
        .map(|l| {
            (
                l["message"].as_str().expect("message").to_owned(),
                l["level"].as_str().expect("level").to_owned(),
                l["seq"].as_u64().expect("seq"),
            )
        })
        .collect()
}

/// Checks that the events of `topic` are the OTel records of `report`.
async fn assert_otel_stored(api: &Api, topic: &str, run: &str, report: &Value) {
    let stored = stored_by(api, topic, |e| {
        e["payload"]["body"].as_str().expect("body").to_owned()
    })
    .await;
    let logged = logged_messages(report);
    assert_eq!(stored.len(), logged.len(), "{topic}: {stored:?}");
    for (message, level, seq) in logged {
        let event = stored
            .get(&message)
            .unwrap_or_else(|| panic!("{message:?} was not stored"));
        let payload = &event["payload"];
        let severity = if level == "WARNING" { "WARN" } else { "INFO" };
        assert_eq!(payload["severity_text"], severity, "{event}");
        assert_eq!(payload["attributes"]["seq"], seq, "{event}");
        assert_eq!(
            payload["attributes"]["tags"][1],
            format!("t{seq}"),
            "{event}"
        );
        let nothing = &payload["attributes"]["nothing"];
        if seq == 0 {
            assert_eq!(nothing, "NaN", "NaN stays valid JSON: {event}");
        }
        assert_eq!(payload["resource"]["run"], run, "{event}");
        assert_eq!(event["source"], topic.replace('_', " "), "{event}");
        assert!(
            event["timestamp"]
                .as_str()
                .expect("timestamp")
                .ends_with('Z')
        );
    }
}

#[tokio::test]
async fn the_opentelemetry_python_sdk_logs_to_logagg_over_protobuf_and_json() {
    let python = match python_with_clients() {
        Ok(python) => python,
        Err(reason) => return skip("the OpenTelemetry Python SDK test", &reason),
    };
    let app = TestApp::spawn().await;
    let endpoint = app.api.url("/v1/logs");
    for protocol in ["protobuf", "json"] {
        let run = format!("otel-{protocol}");
        let (ok, report) =
            run_client(&python, "otel_logs.py", &[&endpoint, protocol, &run, "120"]).await;
        assert!(ok, "{protocol} export failed: {report}");
        assert_eq!(report["retries"], 0, "{report}");
        assert_otel_stored(&app.api, &format!("otel_{protocol}"), &run, &report).await;
    }
    let counters = app.api.counters().await;
    assert_eq!(
        (counters.unique_processed, counters.duplicate_dropped),
        (240, 0)
    );
}

#[tokio::test]
async fn an_otlp_export_retried_after_its_commit_is_stored_once() {
    let python = match python_with_clients() {
        Ok(python) => python,
        Err(reason) => return skip("the OpenTelemetry Python SDK retry test", &reason),
    };
    let app = TestApp::spawn().await;
    for protocol in ["protobuf", "json"] {
        let proxy = FaultProxy::start(&app.api, 1).await;
        let run = format!("otel-retry-{protocol}");
        // 40 records: one batch (the processor exports up to 50 at once).
        let (ok, report) = run_client(
            &python,
            "otel_logs.py",
            &[&proxy.url("/v1/logs"), protocol, &run, "40"],
        )
        .await;
        assert!(ok, "{protocol} export failed: {report}");
        assert_eq!(proxy.injected(), 1);
        assert!(
            report["retries"].as_u64() >= Some(1),
            "the exporter retried: {report}"
        );
        assert_otel_stored(&app.api, &format!("otel_{protocol}"), &run, &report).await;
    }
    let counters = app.api.counters().await;
    assert_eq!(counters.unique_processed, 80);
    assert_eq!(
        counters.duplicate_dropped, 80,
        "each retry was all duplicates"
    );
    assert_eq!(counters.conflicts, 0, "a retry carries the same content");
}

async fn assert_loki_stored(api: &Api, topic: &str, run: &str, report: &Value) {
    let stored = stored_by(api, topic, |e| {
        let line: Value = serde_json::from_str(e["payload"]["line"].as_str().expect("line"))
            .expect("the handler's lines are JSON");
        line["message"].as_str().expect("message").to_owned()
    })
    .await;
    let logged = logged_messages(report);
    assert_eq!(stored.len(), logged.len(), "{topic}");
    for (message, level, seq) in logged {
        let event = stored
            .get(&message)
            .unwrap_or_else(|| panic!("{message:?} was not stored"));
        let payload = &event["payload"];
        assert_eq!(payload["labels"]["run"], run, "{event}");
        assert_eq!(
            payload["structured_metadata"]["seq"],
            seq.to_string(),
            "{event}"
        );
        let line: Value =
            serde_json::from_str(payload["line"].as_str().expect("line")).expect("JSON line");
        assert_eq!(line["level"], level, "{event}");
    }
}

#[tokio::test]
async fn a_loki_python_client_pushes_to_logagg_and_a_retry_is_stored_once() {
    let python = match python_with_clients() {
        Ok(python) => python,
        Err(reason) => return skip("the Loki client test", &reason),
    };
    let app = TestApp::spawn().await;
    let endpoint = app.api.url("/loki/api/v1/push");
    for mode in ["plain", "gzip"] {
        let run = format!("loki-{mode}");
        let (ok, report) =
            run_client(&python, "loki_push.py", &[&endpoint, mode, &run, "50"]).await;
        assert!(ok, "{mode} push failed: {report}");
        assert_loki_stored(&app.api, &format!("loki_{mode}"), &run, &report).await;
    }
    let proxy = FaultProxy::start(&app.api, 1).await;
    let (ok, report) = run_client(
        &python,
        "loki_push.py",
        &[&proxy.url("/loki/api/v1/push"), "gzip", "loki-retry", "50"],
    )
    .await;
    assert!(ok, "the retried push failed: {report}");
    assert_eq!(
        (proxy.injected(), proxy.forwarded()),
        (1, 2),
        "one fault, one retry"
    );
    let stored = stored_by(&app.api, "loki_gzip", |e| {
        e["event_id"].as_str().expect("id").to_owned()
    })
    .await;
    assert_eq!(stored.len(), 100);
    let counters = app.api.counters().await;
    assert_eq!(counters.unique_processed, 150);
    assert_eq!(
        counters.duplicate_dropped, 50,
        "the retry was all duplicates"
    );
    assert_eq!(counters.conflicts, 0);
}

/// syslog-ng as a child process, with its own config, persist file and
/// control socket in a temp dir, following one input file.
struct SyslogNg {
    child: tokio::process::Child,
    input: PathBuf,
    log: PathBuf,
}

/// The configuration the README documents, with a file source the test
/// feeds and short timers.
fn syslog_ng_config(input: &Path, url: &str) -> String {
    format!(
        r#"@version: 3.38
# $UNIQID: a per-message id that survives restarts (the counter lives in
# the persist file); it is the event id, so a resent message is a duplicate.
options {{ use-uniqid(yes); frac-digits(6); ts-format(iso); stats-freq(0); }};
source s_test {{ file("{input}" follow-freq(0.1) flags(no-parse)); }};
destination d_logagg {{
  http(
    url("{url}/publish/syslog?id_field=id&time_field=time&source_field=host")
    method("POST")
    headers("Content-Type: application/x-ndjson")
    body("$(format-json id=$UNIQID time=$ISODATE host=$HOST program=$PROGRAM message=$MESSAGE)")
    delimiter("\n")
    batch-lines(20)
    batch-timeout(200)
    time-reopen(1)
    retries(1000)
    response-action(429 => retry, 503 => retry)
  );
}};
log {{ source(s_test); destination(d_logagg); }};
"#,
        input = input.display()
    )
}

impl SyslogNg {
    /// Starts syslog-ng shipping to `url`, or says why it cannot run.
    async fn start(dir: &Path, url: &str) -> Result<Self, String> {
        let binary = ["/usr/sbin/syslog-ng", "/usr/local/sbin/syslog-ng"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or("syslog-ng is not installed (Debian: syslog-ng-core, syslog-ng-mod-http)")?;
        let input = dir.join("input.log");
        std::fs::File::create(&input).expect("creating the input file");
        let config = dir.join("syslog-ng.conf");
        std::fs::write(&config, syslog_ng_config(&input, url)).expect("writing the config");
        let check = std::process::Command::new(&binary)
            .arg("--syntax-only")
            .arg("-f")
            .arg(&config)
            .output()
            .map_err(|e| format!("running {}: {e}", binary.display()))?;
        if !check.status.success() {
            return Err(format!(
                "syslog-ng refuses the config (is syslog-ng-mod-http installed?): {}",
                String::from_utf8_lossy(&check.stderr)
            ));
        }
        let log = dir.join("syslog-ng.out");
        let child = tokio::process::Command::new(&binary)
            .arg("-F")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .arg("-R")
            .arg(dir.join("syslog-ng.persist"))
            .arg("-p")
            .arg(dir.join("syslog-ng.pid"))
            .arg("-c")
            .arg(dir.join("syslog-ng.ctl"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(dir.join("syslog-ng.err")).expect("log file"))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting syslog-ng: {e}"))?;
        Ok(Self { child, input, log })
    }

    /// Appends lines to the file syslog-ng follows.
    fn feed(&self, lines: impl IntoIterator<Item = String>) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.input)
            .expect("opening the input file");
        for line in lines {
            writeln!(file, "{line}").expect("appending a line");
        }
        file.flush().expect("flushing the input file");
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SyslogNg {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Waits until `topic` holds `count` events; panics with syslog-ng's log
/// after 60 s.
async fn wait_for_events(api: &Api, topic: &str, count: usize, syslog_ng: &SyslogNg) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = api.get("/topics").await;
        assert_eq!(status, 200, "{body}");
        let stored = body["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .find(|t| t["topic"] == topic)
            .and_then(|t| t["events"].as_u64())
            .unwrap_or(0);
        if stored as usize >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} holds {stored} of {count} events after 60 s; syslog-ng said:\n{}",
            syslog_ng.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn lines(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
    range.map(|i| format!("syslog line {i:04} from the test"))
}

async fn assert_lines_stored_once(api: &Api, count: usize) {
    let stored = stored_by(api, "syslog", |e| {
        e["payload"]["message"]
            .as_str()
            .expect("message")
            .to_owned()
    })
    .await;
    let expected: Vec<String> = lines(0..count).collect();
    assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), expected);
    for event in stored.values() {
        assert_eq!(
            event["event_id"], event["payload"]["id"],
            "$UNIQID is the id"
        );
        assert_eq!(
            event["timestamp"], event["payload"]["time"],
            "$ISODATE is the time"
        );
    }
}

#[tokio::test]
async fn syslog_ng_ships_lines_once_each_across_logagg_restarts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let port = closed_port();
    let listen = format!("127.0.0.1:{port}");
    let serve_args = ["--listen", listen.as_str()];
    let mut server = ChildServer::start_with(&data, &serve_args).await;
    let syslog_ng = match SyslogNg::start(dir.path(), &format!("http://{listen}")).await {
        Ok(syslog_ng) => syslog_ng,
        Err(reason) => return skip("the syslog-ng test", &reason),
    };
    syslog_ng.feed(lines(0..40));
    wait_for_events(&server.api, "syslog", 40, &syslog_ng).await;

    // Killed while lines arrive: what syslog-ng sent to the dead server it
    // sends again, what was committed before the kill becomes a duplicate.
    syslog_ng.feed(lines(40..70));
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.signal_and_wait("KILL").await;
    syslog_ng.feed(lines(70..100));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server = ChildServer::start_with(&data, &serve_args).await;
    wait_for_events(&server.api, "syslog", 100, &syslog_ng).await;

    // A graceful restart while lines arrive.
    syslog_ng.feed(lines(100..130));
    server.signal_and_wait("TERM").await;
    server = ChildServer::start_with(&data, &serve_args).await;
    wait_for_events(&server.api, "syslog", 130, &syslog_ng).await;

    assert_lines_stored_once(&server.api, 130).await;
    let counters = server.api.counters().await;
    assert_eq!(counters.unique_processed, 130);
    assert_eq!(
        counters.conflicts, 0,
        "a resent message is the same message"
    );
    eprintln!(
        "syslog-ng across restarts: received {}, duplicates {}",
        counters.received, counters.duplicate_dropped
    );
}

#[tokio::test]
async fn syslog_ng_retries_a_503_and_the_resent_batch_is_a_duplicate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = TestApp::spawn().await;
    let proxy = FaultProxy::start(&app.api, 1).await;
    let syslog_ng = match SyslogNg::start(dir.path(), &format!("http://{}", proxy.addr)).await {
        Ok(syslog_ng) => syslog_ng,
        Err(reason) => return skip("the syslog-ng retry test", &reason),
    };
    syslog_ng.feed(lines(0..20));
    wait_for_events(&app.api, "syslog", 20, &syslog_ng).await;
    syslog_ng.feed(lines(20..30));
    wait_for_events(&app.api, "syslog", 30, &syslog_ng).await;
    assert_eq!(proxy.injected(), 1);
    // The batch told 503 came again: its lines are duplicates.
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.api.counters().await.duplicate_dropped == 0 {
        assert!(
            Instant::now() < deadline,
            "syslog-ng never resent:\n{}",
            syslog_ng.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_lines_stored_once(&app.api, 30).await;
    let counters = app.api.counters().await;
    assert_eq!(counters.conflicts, 0);
    assert!(counters.duplicate_dropped >= 1);
}
