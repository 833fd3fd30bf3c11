//! `/subscribe` (Server-Sent Events) and `logagg subscribe`: catch-up then
//! live, resume with `Last-Event-ID`, patterns, limits, shutdown, fan-out,
//! and the cursor file across restarts of the client.

use std::collections::BTreeSet;
use std::ops::ControlFlow;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Api, TestApp, event, padded_batch};
use futures_util::StreamExt;
use logagg::cmd::subscribe::SseParser;
use serde_json::{Value, json};

/// How long a test waits for events it expects before failing.
const WAIT: Duration = Duration::from_secs(60);

/// One open SSE connection, read message by message.
pub(crate) struct Stream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: SseParser,
    ready: std::collections::VecDeque<Value>,
}

impl Stream {
    pub(crate) async fn open(api: &Api, pattern: &str, last_event_id: Option<u64>) -> Self {
        Self::open_with(api, &[("topic", pattern)], last_event_id).await
    }

    async fn open_with(api: &Api, query: &[(&str, &str)], last_event_id: Option<u64>) -> Self {
        let mut request = api
            .http
            .get(api.url("/subscribe"))
            .query(query)
            // The shared client has a whole-request timeout; a stream must
            // outlive it, so each read below has its own timeout instead.
            .timeout(Duration::from_secs(3600));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.expect("GET /subscribe");
        assert_eq!(response.status(), 200, "subscribe with {query:?}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            body: Box::pin(response.bytes_stream()),
            parser: SseParser::default(),
            ready: Default::default(),
        }
    }

    /// The next event, or `None` when the server ended the stream.
    pub(crate) async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let chunk = tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("an event or the end of the stream in time")?
                .expect("reading the stream");
            let ready = &mut self.ready;
            let flow: ControlFlow<()> = self.parser.feed(&chunk, |message| {
                let event: Value = serde_json::from_str(message.data).expect("data is JSON");
                assert_eq!(
                    message.id,
                    Some(event["seq"].to_string().as_str()),
                    "id is the seq"
                );
                ready.push_back(event);
                ControlFlow::Continue(())
            });
            assert!(flow.is_continue());
        }
    }

    pub(crate) async fn take(&mut self, count: usize) -> Vec<Value> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.next().await.expect("stream ended early"));
        }
        events
    }
}

pub(crate) fn seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

fn batch(topic: &str, ids: std::ops::Range<u32>) -> Value {
    json!(
        ids.map(|i| event(topic, &i.to_string()))
            .collect::<Vec<_>>()
    )
}

#[tokio::test]
async fn catch_up_then_live_delivers_everything_once_in_order() {
    let app = TestApp::spawn().await;
    app.api.publish_ok(&batch("a", 0..10)).await;
    let mut stream = Stream::open(&app.api, "a", None).await;
    let stored = stream.take(10).await;
    assert_eq!(seqs(&stored), (1..=10).collect::<Vec<_>>());

    app.api.publish_ok(&batch("a", 10..20)).await;
    // Duplicates of delivered events must never show up again.
    app.api.publish_ok(&batch("a", 0..20)).await;
    app.api.publish_ok(&batch("a", 20..21)).await;
    let live = stream.take(11).await;
    assert_eq!(seqs(&live), (11..=21).collect::<Vec<_>>());
    assert_eq!(live[0]["event_id"], "10");
    assert_eq!(live[0]["payload"], json!({"id": "10"}));
}

#[tokio::test]
async fn reconnecting_with_last_event_id_resumes_without_gap_or_repeat() {
    let app = TestApp::spawn().await;
    app.api.publish_ok(&batch("a", 0..30)).await;
    let mut first = Stream::open(&app.api, "a", None).await;
    let head = first.take(12).await;
    drop(first);
    let mut second = Stream::open(&app.api, "a", Some(12)).await;
    let tail = second.take(18).await;
    let all: Vec<u64> = seqs(&head).into_iter().chain(seqs(&tail)).collect();
    assert_eq!(all, (1..=30).collect::<Vec<_>>());
}

#[tokio::test]
async fn from_parameter_and_now_choose_the_start() {
    let app = TestApp::spawn().await;
    app.api.publish_ok(&batch("a", 0..5)).await;
    let mut stream = Stream::open_with(&app.api, &[("topic", "a"), ("from", "3")], None).await;
    assert_eq!(seqs(&stream.take(2).await), [4, 5]);

    let mut live_only = Stream::open_with(&app.api, &[("topic", "a"), ("from", "now")], None).await;
    app.api.publish_ok(&batch("a", 5..6)).await;
    assert_eq!(seqs(&live_only.take(1).await), [6]);
}

#[tokio::test]
async fn patterns_receive_exactly_their_topics() {
    let app = TestApp::spawn().await;
    let topics = [
        "auth",
        "auth.login",
        "auth.logout",
        "auth.a.b",
        "billing.login",
        "authz.x",
    ];
    let cases: [(&str, &[&str]); 6] = [
        ("auth.login", &["auth.login"]),
        ("auth.*", &["auth.login", "auth.logout"]),
        ("auth.>", &["auth.login", "auth.logout", "auth.a.b"]),
        ("*.login", &["auth.login", "billing.login"]),
        (">", &topics),
        ("auth", &["auth"]),
    ];
    let mut streams = Vec::new();
    for (pattern, _) in &cases {
        streams.push(Stream::open(&app.api, pattern, None).await);
    }
    // Two rounds with duplicates of round one in between; then a marker per
    // topic so every stream knows when it has seen everything.
    for round in 0..2 {
        let events: Vec<Value> = topics
            .iter()
            .map(|t| event(t, &round.to_string()))
            .collect();
        app.api.publish_ok(&json!(events)).await;
        app.api
            .publish_ok(&json!(
                topics.iter().map(|t| event(t, "0")).collect::<Vec<_>>()
            ))
            .await;
    }
    for ((pattern, expected), stream) in cases.iter().zip(&mut streams) {
        let received = stream.take(expected.len() * 2).await;
        let mut seen = BTreeSet::new();
        for event in &received {
            let topic = event["topic"].as_str().expect("topic");
            assert!(expected.contains(&topic), "{pattern} received {topic}");
            let key = (
                topic.to_owned(),
                event["event_id"].as_str().expect("id").to_owned(),
            );
            assert!(seen.insert(key.clone()), "{pattern} received {key:?} twice");
        }
        let expected_keys: BTreeSet<_> = expected
            .iter()
            .flat_map(|t| ["0", "1"].map(|id| (t.to_string(), id.to_owned())))
            .collect();
        assert_eq!(seen, expected_keys, "{pattern}");
        assert!(
            seqs(&received).windows(2).all(|w| w[0] < w[1]),
            "{pattern} in seq order"
        );
    }
}

/// Issue 11, defect 5: `a..b` could be published, but no pattern could name
/// it (`a..b` was refused for its empty token). Tokens may be empty in
/// patterns as in topics; `*` and `>` match empty tokens too.
#[tokio::test]
async fn topics_with_empty_tokens_can_be_followed_exactly_and_by_wildcards() {
    let app = TestApp::spawn().await;
    let cases: [(&str, &[&str]); 4] = [
        ("a..b", &["a..b"]),
        ("a.*.b", &["a..b", "a.x.b"]),
        ("a.>", &["a..b", "a.x.b", "a.", "a.b"]),
        ("*.a", &[".a"]),
    ];
    let mut streams = Vec::new();
    for (pattern, _) in &cases {
        streams.push(Stream::open(&app.api, pattern, None).await);
    }
    let topics = ["a..b", "a.x.b", "a.", ".a", "a.b", "a"];
    let events: Vec<Value> = topics.iter().map(|t| event(t, "1")).collect();
    app.api.publish_ok(&json!(events)).await;
    // A marker every pattern matches: what comes before it is everything.
    let marker = |topic| event(topic, "marker");
    app.api
        .publish_ok(&json!([marker("a..b"), marker(".a")]))
        .await;
    for ((pattern, expected), stream) in cases.iter().zip(&mut streams) {
        let received = stream.take(expected.len()).await;
        let topics: Vec<&str> = received
            .iter()
            .map(|e| e["topic"].as_str().expect("topic"))
            .collect();
        assert_eq!(topics, *expected, "{pattern}");
        let next = stream.next().await.expect("the marker");
        assert_eq!(next["event_id"], "marker", "{pattern}: nothing else");
    }
    let stored = app.api.all_events(Some("a..b")).await;
    assert_eq!(stored.len(), 2, "/events names the topic too");
}

#[tokio::test]
async fn bad_subscriptions_get_problem_documents() {
    let app = TestApp::spawn().await;
    let cases = [
        ("/subscribe", 422),
        ("/subscribe?topic=auth.%3E%3E", 422),
        ("/subscribe?topic=%3E.auth", 422),
        ("/subscribe?topic=au*", 422),
        ("/subscribe?topic=a&from=-1", 400),
        ("/subscribe?topic=a&from=soon", 400),
    ];
    for (path, expected) in cases {
        let (status, body) = app.api.get(path).await;
        assert_eq!(status, expected, "{path}: {body}");
        assert_eq!(body["status"], expected, "{path}: problem document");
    }
    let response = app
        .api
        .http
        .get(app.api.url("/subscribe?topic=a"))
        .header("last-event-id", "abc")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn subscribers_past_the_limit_get_503_with_retry_after() {
    let app = TestApp::spawn_with(|config| {
        config.subscribers_max = std::num::NonZeroUsize::new(2).expect("non-zero");
    })
    .await;
    let _first = Stream::open(&app.api, "a", None).await;
    let second = Stream::open(&app.api, "a", None).await;
    let response = app.api.get_raw("/subscribe?topic=a").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    drop(second);
    // The slot frees once the server notices the closed connection.
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = app.api.stats().await;
        if stats["subscribers"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _third = Stream::open(&app.api, "a", None).await;
}

#[tokio::test]
async fn shutdown_ends_streams_instead_of_waiting_on_them() {
    let mut app = TestApp::spawn().await;
    let mut stream = Stream::open(&app.api, ">", None).await;
    app.api.publish_ok(&batch("a", 0..1)).await;
    assert_eq!(seqs(&stream.take(1).await), [1]);
    // stop() fails the test if graceful shutdown hangs.
    app.stop().await;
    assert!(stream.next().await.is_none(), "stream ends on shutdown");
}

#[tokio::test]
async fn stats_count_subscribers_and_deliveries() {
    let app = TestApp::spawn().await;
    let mut stream = Stream::open(&app.api, "a", None).await;
    app.api.publish_ok(&batch("a", 0..3)).await;
    stream.take(3).await;
    let stats = app.api.stats().await;
    assert_eq!(stats["subscribers"], 1);
    assert_eq!(stats["events_delivered"], 3);
}

/// Many subscribers with different patterns while several publishers send:
/// each receives every matching event, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_subscribers_each_receive_every_matching_event() {
    const SUBSCRIBERS: usize = 100;
    const EVENTS: u32 = 10_000;
    const TOPICS: u32 = 10;
    const PUBLISHERS: u32 = 4;
    let app = TestApp::spawn().await;

    let mut followers = Vec::new();
    for i in 0..SUBSCRIBERS {
        let (pattern, expected) = match i % 3 {
            0 => (">".to_owned(), EVENTS as usize),
            1 => (
                format!("t{}.x", i % TOPICS as usize),
                (EVENTS / TOPICS) as usize,
            ),
            _ => (
                format!("t{}.*", i % TOPICS as usize),
                (EVENTS / TOPICS) as usize,
            ),
        };
        let mut stream = Stream::open(&app.api, &pattern, None).await;
        followers.push(tokio::spawn(async move {
            let events = stream.take(expected).await;
            (pattern, events)
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let api = app.api.clone();
        publishers.push(tokio::spawn(async move {
            let per_publisher = EVENTS / PUBLISHERS;
            for chunk in (0..per_publisher).collect::<Vec<_>>().chunks(250) {
                let events: Vec<Value> = chunk
                    .iter()
                    .map(|i| {
                        let n = p * per_publisher + i;
                        event(&format!("t{}.x", n % TOPICS), &n.to_string())
                    })
                    .collect();
                api.publish_ok(&json!(events)).await;
            }
        }));
    }
    for publisher in publishers {
        publisher.await.expect("publisher");
    }
    for follower in followers {
        let (pattern, events) = follower.await.expect("subscriber");
        let ids: BTreeSet<&str> = events
            .iter()
            .map(|e| e["event_id"].as_str().expect("id"))
            .collect();
        assert_eq!(ids.len(), events.len(), "{pattern}: no event twice");
        assert!(
            seqs(&events).windows(2).all(|w| w[0] < w[1]),
            "{pattern}: seq order"
        );
        if pattern != ">" {
            let topic = pattern.replace('*', "x");
            assert!(
                events.iter().all(|e| e["topic"] == topic.as_str()),
                "{pattern}: only its topic"
            );
        }
    }
}

/// A subscriber that never reads holds at most a page and a socket buffer:
/// publishing far more than that does not grow the server's memory with it.
#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_grow_server_memory() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let server = crate::common::ChildServer::start(dir.path()).await;
    let pid = server.child.id();
    let addr = server.api.base.trim_start_matches("http://").to_owned();
    let mut stuck = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stuck
        .write_all(b"GET /subscribe?topic=%3E HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("send request");

    let before = rss_kib(pid);
    // 20,000 events of 16 KiB: 320 MiB the stuck stream would hold if it
    // buffered what it cannot send.
    for chunk in 0..100 {
        let events = padded_batch("big", &chunk.to_string(), 200, 16 * 1024);
        server.api.publish_ok(&events).await;
    }
    let after = rss_kib(pid);
    let grown_mib = after.saturating_sub(before) / 1024;
    eprintln!("server RSS {before} KiB -> {after} KiB");
    assert!(
        grown_mib < 200,
        "server RSS grew by {grown_mib} MiB ({before} KiB -> {after} KiB)"
    );
    let (status, _) = server.api.get("/health").await;
    assert_eq!(status, 200);
    drop(stuck);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// `logagg subscribe --cursor-file`, stopped and restarted: the two outputs
/// together hold every event exactly once.
#[tokio::test]
async fn subscribe_command_resumes_from_its_cursor_file() {
    let app = TestApp::spawn().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let cursor = dir.path().join("cursor");
    let start = |output: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_logagg"))
            .args(["subscribe", "t.>", "--url", &app.api.base, "--cursor-file"])
            .arg(&cursor)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(output).expect("output file"))
            .spawn()
            .expect("spawning logagg subscribe")
    };
    let first_out = dir.path().join("first.ndjson");
    let second_out = dir.path().join("second.ndjson");

    let mut first = start(&first_out);
    app.api.publish_ok(&batch("t.a", 0..300)).await;
    app.api.publish_ok(&batch("other", 0..50)).await;
    wait_for_lines(&first_out, 300).await;
    terminate(&mut first);

    app.api.publish_ok(&batch("t.b", 0..200)).await;
    app.api.publish_ok(&batch("t.a", 0..300)).await; // duplicates: never printed
    let mut second = start(&second_out);
    app.api.publish_ok(&batch("t.c", 0..100)).await;
    wait_for_lines(&second_out, 300).await;
    terminate(&mut second);

    let mut keys = Vec::new();
    for path in [&first_out, &second_out] {
        for line in std::fs::read_to_string(path).expect("output").lines() {
            let event: Value = serde_json::from_str(line).expect("each line is an event");
            keys.push(format!(
                "{}/{}",
                event["topic"].as_str().expect("topic"),
                event["event_id"].as_str().expect("id")
            ));
        }
    }
    let unique: BTreeSet<_> = keys.iter().collect();
    assert_eq!(keys.len(), 600, "every matching event printed");
    assert_eq!(unique.len(), 600, "no event printed twice");
    assert!(keys.iter().all(|k| k.starts_with("t.")));
}

async fn wait_for_lines(path: &std::path::Path, count: usize) {
    let deadline = Instant::now() + WAIT;
    loop {
        let lines = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {lines} of {count} lines",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn terminate(child: &mut std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "subscribe exits 0 on SIGTERM: {status}");
}

/// A subscriber that stops reading while more than the in-memory tail is
/// committed (16 MiB of recent frames) resumes from the store when it reads
/// again: every event, in order, once.
#[tokio::test]
async fn a_subscriber_left_behind_by_the_tail_catches_up_from_the_store() {
    let app = TestApp::spawn().await;
    let mut stream = Stream::open(&app.api, ">", None).await;
    app.api.publish_ok(&batch("a", 0..1)).await;
    assert_eq!(seqs(&stream.take(1).await), [1]);

    // 2,000 events of 16 KiB: 32 MiB, twice what the tail keeps.
    for chunk in 0..20 {
        let events = padded_batch("a", &format!("big-{chunk}"), 100, 16 * 1024);
        app.api.publish_ok(&events).await;
    }
    let rest = stream.take(2_000).await;
    assert_eq!(seqs(&rest), (2..=2_001).collect::<Vec<_>>());
    assert_eq!(
        rest[1_999]["payload"]["pad"].as_str().map(str::len),
        Some(16 * 1024)
    );
}

/// CPU time (user and system) the process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a command name")
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Subscribers to a quiet topic and to a quiet pattern, resumed from far
/// behind the in-memory tail, read the store once and then wait: they used
/// to wake for every newer commit, find their cursor behind the tail again
/// and read the store again, keeping the server busy with nothing to send.
#[tokio::test]
async fn a_quiet_subscription_resumed_from_far_back_waits_instead_of_spinning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = crate::common::ChildServer::start(dir.path()).await;
    let pid = server.child.id();
    server.api.publish_ok(&batch("quiet", 0..1)).await;
    server.api.publish_ok(&batch("q.one", 0..1)).await;
    // 2,000 events of 16 KiB in another topic: twice what the tail keeps.
    for chunk in 0..20 {
        let events = padded_batch("busy", &format!("big-{chunk}"), 100, 16 * 1024);
        server.api.publish_ok(&events).await;
    }
    let mut exact =
        Stream::open_with(&server.api, &[("topic", "quiet"), ("from", "0")], None).await;
    let mut pattern =
        Stream::open_with(&server.api, &[("topic", "q.*"), ("from", "0")], None).await;
    assert_eq!(seqs(&exact.take(1).await), [1]);
    assert_eq!(seqs(&pattern.take(1).await), [2]);
    // Settled: nothing to send, so nearly no CPU. Spinning, the server
    // used a third of a core or more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_ticks(pid) - before;
    assert!(used < 30, "the idle server used {used} ticks of CPU in 3 s");
    // And they still deliver what comes next.
    server.api.publish_ok(&batch("quiet", 1..2)).await;
    server.api.publish_ok(&batch("q.two", 0..1)).await;
    assert_eq!(seqs(&exact.take(1).await), [2_003]);
    assert_eq!(seqs(&pattern.take(1).await), [2_004]);
}
