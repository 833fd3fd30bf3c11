//! Test harness shared by the integration test binaries.
//!
//! [`TestApp`] starts a real server in-process on `127.0.0.1:0` with its own
//! temporary data directory; [`ChildServer`] runs the built binary as a child
//! process, for tests that kill or restart it. Every call has a timeout so a
//! bug fails the test instead of hanging it. Logs stay quiet unless
//! `TEST_LOG` is set.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub use logagg::api::Counters;
use logagg::cmd::serve::Server;
use logagg::config::ServeConfig;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Upper bound on any single request a test makes.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

static TRACING: Once = Once::new();

fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "debug".into()),
                )
                .with_test_writer()
                .init();
        }
    });
}

/// An HTTP client for one server, with a method per endpoint.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("building a reqwest client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POST /publish with a JSON body (one event or an array).
    pub async fn publish(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/publish"))
            .json(body)
            .send()
            .await
            .expect("POST /publish")
    }

    /// POST /publish with raw bytes and a content type.
    pub async fn publish_raw(
        &self,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(self.url("/publish"))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST /publish")
    }

    /// POST /publish and return the 200 receipt.
    pub async fn publish_ok(&self, body: &Value) -> Value {
        let response = self.publish(body).await;
        let status = response.status();
        let text = response.text().await.expect("publish body");
        assert_eq!(status, 200, "publish failed: {text}");
        serde_json::from_str(&text).expect("receipt is JSON")
    }

    /// GET a path and return the response as it came.
    pub async fn get_raw(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// GET a path and return status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.get_raw(path).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub async fn stats(&self) -> Value {
        let (status, body) = self.get("/stats").await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Every stored event, following `next_after` through all pages.
    pub async fn all_events(&self, topic: Option<&str>) -> Vec<Value> {
        self.all_events_paged(topic, 10_000).await
    }
}

/// A valid event.
pub fn event(topic: &str, event_id: &str) -> Value {
    json!({
        "topic": topic,
        "event_id": event_id,
        "timestamp": "2025-10-25T12:30:00Z",
        "source": "test",
        "payload": {"id": event_id},
    })
}

/// A batch of `count` valid events in `topic`, ids `{prefix}-0`, …, each
/// with a payload padded to about `pad_bytes`.
pub fn padded_batch(topic: &str, prefix: &str, count: usize, pad_bytes: usize) -> Value {
    let pad = "p".repeat(pad_bytes);
    Value::Array(
        (0..count)
            .map(|i| {
                let mut e = event(topic, &format!("{prefix}-{i}"));
                e["payload"] = json!({ "pad": pad });
                e
            })
            .collect(),
    )
}

/// A server running in this process.
pub struct TestApp {
    pub api: Api,
    pub addr: SocketAddr,
    pub config: ServeConfig,
    /// Kept alive for the server's lifetime unless the test passes its own.
    _dir: Option<tempfile::TempDir>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// A fresh server with the test configuration.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A fresh server whose test configuration `adjust` may change.
    pub async fn spawn_with(adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ServeConfig::for_tests(dir.path().to_path_buf());
        adjust(&mut config);
        Self::start(config, Some(dir)).await
    }

    async fn start(config: ServeConfig, dir: Option<tempfile::TempDir>) -> Self {
        init_tracing();
        let server = Server::bind(&config).await.expect("server binds");
        let addr = server.local_addr();
        let shutdown = server.shutdown_token();
        let task = tokio::spawn(server.run());
        Self {
            api: Api::new(addr),
            addr,
            config,
            _dir: dir,
            shutdown,
            task: Some(task),
        }
    }

    /// Graceful shutdown, as on SIGTERM; waits until it has completed.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("shutdown finishes in time")
                .expect("server task did not panic")
                .expect("server shut down cleanly");
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The built `logagg` binary running `serve` as a child process.
pub struct ChildServer {
    pub child: Child,
    pub api: Api,
}

impl ChildServer {
    /// Starts `logagg serve` on an ephemeral loopback port, reads the bound
    /// address back from its log, and waits for /health.
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(data_dir, &[]).await
    }

    /// As [`start`](Self::start), with extra `serve` arguments.
    pub async fn start_with(data_dir: &Path, args: &[&str]) -> Self {
        let rust_log = if std::env::var_os("TEST_LOG").is_some() {
            "debug"
        } else {
            "warn,logagg=info"
        };
        Self::spawn(data_dir, args, rust_log, None).await
    }

    /// As [`start_with`](Self::start_with), logging at every level
    /// (`RUST_LOG=trace`) and keeping every line the server logs, for tests
    /// of what it logs.
    pub async fn start_logged(data_dir: &Path, args: &[&str]) -> (Self, ServerLog) {
        let log = ServerLog::default();
        let server = Self::spawn(data_dir, args, "trace", Some(log.clone())).await;
        (server, log)
    }

    async fn spawn(data_dir: &Path, args: &[&str], rust_log: &str, log: Option<ServerLog>) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_logagg"))
            .arg("serve")
            .args(args)
            .env("LOGAGG_LISTEN", "127.0.0.1:0")
            .env("LOGAGG_DATA_DIR", data_dir)
            .env("LOGAGG_LOG_FORMAT", "json")
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning logagg serve");
        let stderr = child.stderr.take().expect("stderr is piped");
        let addr = listening_address(stderr, log);
        let server = Self {
            child,
            api: Api::new(addr),
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self.api.http.get(self.api.url("/health")).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "server did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL at once (no `kill` process in between) and waits for the
    /// exit.
    pub fn kill_now(mut self) -> std::process::ExitStatus {
        self.child.kill().expect("sending SIGKILL");
        self.child.wait().expect("waiting for child")
    }

    /// Sends `signal` (e.g. "TERM", "KILL") and waits for the process to exit.
    pub async fn signal_and_wait(mut self, signal: &str) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for child") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after {signal}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line a child server logged so far (see
/// [`ChildServer::start_logged`]).
#[derive(Debug, Clone, Default)]
pub struct ServerLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl ServerLog {
    /// The lines logged so far, joined by newlines.
    pub fn text(&self) -> String {
        self.0.lock().expect("log lock").join("\n")
    }
}

/// Reads a child server's JSON log lines until the one that names its bound
/// address, then keeps draining the pipe on a thread (echoing it when
/// `TEST_LOG` is set, keeping it in `log` when given) so the child never
/// blocks on a full pipe.
///
/// # Panics
/// When the child exits or stays silent for 30 s without listening.
fn listening_address(stderr: std::process::ChildStderr, log: Option<ServerLog>) -> SocketAddr {
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let echo = std::env::var_os("TEST_LOG").is_some();
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(log) = &log {
                log.0.lock().expect("log lock").push(line.clone());
            }
            if echo {
                eprintln!("server: {line}");
            }
            let Some(sender) = &found else { continue };
            let logged: Value = serde_json::from_str(&line).unwrap_or_default();
            if logged["fields"]["message"] == "logagg listening"
                && let Some(addr) = logged["fields"]["address"].as_str()
                && let Ok(addr) = addr.parse::<SocketAddr>()
            {
                let _ = sender.send(addr);
                found = None;
            } else if !echo && logged["level"] != "INFO" {
                eprintln!("server: {line}");
            }
        }
    });
    address
        .recv_timeout(Duration::from_secs(30))
        .expect("the server starts listening within 30 s (its log is above)")
}

/// A port that nothing listens on: bound, read back, and closed again.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Whether every test that needs a real outside component (Docker, a tmpfs
/// mount, PostgreSQL, a Python client, a browser, ...) must run: set
/// `LOGAGG_REQUIRE_ALL=1` (CI does) and a missing component fails the test
/// instead of skipping it.
pub fn components_required() -> bool {
    std::env::var("LOGAGG_REQUIRE_ALL").is_ok_and(|value| value == "1")
}

/// Says why a test cannot run here and returns, so the caller can skip;
/// panics instead when [`components_required`].
pub fn skip(test: &str, reason: &str) {
    if components_required() {
        panic!("{test}: {reason}, and LOGAGG_REQUIRE_ALL=1 requires it to run");
    }
    // Straight to stderr: the test harness captures only the print macros,
    // and a skip should be seen in every run.
    let _ = writeln!(
        std::io::stderr(),
        "skipping {test}: {reason} (LOGAGG_REQUIRE_ALL=1 makes this a failure)"
    );
}

impl Api {
    /// A second client to the same server with its own connection pool, so
    /// that concurrent tasks really use separate connections.
    pub fn separate_client(&self) -> Self {
        Self {
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .expect("building a reqwest client"),
        }
    }

    /// POST /publish with raw bytes, a content type and an optional
    /// `Content-Encoding`; a transport failure is returned, not a panic.
    pub async fn try_publish_encoded(
        &self,
        content_type: &str,
        encoding: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut request = self
            .http
            .post(self.url("/publish"))
            .header("content-type", content_type)
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        request.send().await
    }

    /// POST /publish with raw bytes, a content type and an optional
    /// `Content-Encoding`.
    pub async fn publish_encoded(
        &self,
        content_type: &str,
        encoding: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.try_publish_encoded(content_type, encoding, body)
            .await
            .expect("POST /publish")
    }

    /// The committed ingest counters from `/stats`.
    pub async fn counters(&self) -> Counters {
        let stats = self.stats().await;
        serde_json::from_value(stats.clone())
            .unwrap_or_else(|e| panic!("/stats lacks the counters ({e}): {stats}"))
    }

    /// Every stored event, read in pages of `limit` through `next_after`.
    pub async fn all_events_paged(&self, topic: Option<&str>, limit: usize) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let mut path = format!("/events?limit={limit}&after={after}");
            if let Some(topic) = topic {
                path.push_str(&format!("&topic={topic}"));
            }
            let (status, body) = self.get(&path).await;
            assert_eq!(status, 200, "{path}: {body}");
            let page = body["events"].as_array().expect("events array");
            assert!(page.len() <= limit, "{path}: page longer than its limit");
            events.extend(page.iter().cloned());
            match body["next_after"].as_u64() {
                Some(next) => after = next,
                None => return events,
            }
        }
    }
}

/// The dedup key of an event (as sent or as stored).
pub fn key(event: &Value) -> (String, String) {
    let field = |name: &str| {
        event[name]
            .as_str()
            .unwrap_or_else(|| panic!("event has no string {name:?}: {event}"))
            .to_owned()
    };
    (field("topic"), field("event_id"))
}

/// `bytes` compressed as one gzip member.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("writing to a Vec");
    encoder
        .finish()
        .expect("finishing a gzip stream into a Vec")
}

/// Events as NDJSON, one per line.
pub fn ndjson(events: &[Value]) -> String {
    events.iter().map(|event| format!("{event}\n")).collect()
}

/// A seeded generator, so load tests are reproducible.
pub type Rng = rand::rngs::ChaCha8Rng;

/// Calls `Store::expire` with `budget` rows a call until nothing is left
/// to do; the reports added up.
pub async fn expire_all(
    store: &dyn logagg::store::Store,
    policy: &logagg::retention::RetentionPolicy,
    now: i64,
    budget: usize,
) -> logagg::retention::ExpireReport {
    let mut total = logagg::retention::ExpireReport::default();
    loop {
        let report = store
            .expire(policy, logagg::store::CommitTime(now), budget)
            .await
            .expect("expire");
        total.expired += report.expired;
        total.forgotten += report.forgotten;
        if !report.more {
            return total;
        }
    }
}

/// After expiry by size over `last` events in three interleaved topics:
/// exactly the newest are left, `seq`s without a hole up to `last`; the
/// store's `expired_through` is just below them, and each topic's is below
/// its oldest stored event by less than one round of the three topics.
pub async fn assert_only_the_newest_are_left(
    store: &dyn logagg::store::Store,
    stats: &logagg::store::StoreStats,
    last: u64,
) {
    let page = store
        .events(logagg::store::EventQuery {
            limit: 10_000,
            ..logagg::store::EventQuery::default()
        })
        .await
        .expect("events")
        .events;
    let first = last + 1 - stats.stored;
    let seqs: Vec<u64> = page.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (first..=last).collect::<Vec<_>>());
    assert_eq!(store.expired_through(None).await.expect("read"), first - 1);
    for topic in &stats.topics {
        let oldest = page
            .iter()
            .find(|e| e.topic == topic.topic)
            .expect("each topic keeps events");
        assert!(topic.expired_through < oldest.seq, "{topic:?}");
        assert!(topic.expired_through + 3 >= oldest.seq, "{topic:?}");
    }
}
