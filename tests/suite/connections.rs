//! Connections are bounded in number and in time (issue 11, defect 1),
//! tested with the connections that broke it: idle connections past the
//! cap, a slowloris head, a body that never arrives, a kept-alive
//! connection left idle; and a `/subscribe` stream outlives every timeout.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TestApp, event};
use crate::subscribe::Stream;

/// Longest a test waits for the server to close a connection.
const WAIT: Duration = Duration::from_secs(30);

async fn spawn_with_timeouts(adjust: impl FnOnce(&mut logagg::config::ServeConfig)) -> TestApp {
    TestApp::spawn_with(|config| {
        config.header_timeout = Duration::from_secs(60);
        config.body_timeout = Duration::from_secs(60);
        config.idle_timeout = Duration::from_secs(60);
        adjust(config);
    })
    .await
}

/// Reads until the server closes the connection (or resets it); returns
/// what arrived, or panics after [`WAIT`].
pub(crate) async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = [0; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server did not close the connection within {WAIT:?}"
    );
    received
}

/// One response read off `stream` (head and `Content-Length` body): the
/// status, the head, and the body.
pub(crate) async fn read_response(stream: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut received = Vec::new();
    let mut buf = [0; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("reading a response");
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| {
            value.trim().parse().expect("a numeric Content-Length")
        });
    let mut body = received[head_end..].to_vec();
    while body.len() < length {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("the body in time")
            .expect("reading a body");
        assert!(n > 0, "closed in the middle of a body");
        body.extend_from_slice(&buf[..n]);
    }
    let status = head[9..12].parse().expect("a status code");
    (status, head, body)
}

/// The problem document of an answer read off a socket, checked to have
/// the problem content type and a detail.
pub(crate) fn problem(head: &str, body: &[u8]) -> Value {
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    let problem: Value = serde_json::from_slice(body).expect("a JSON problem document");
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{problem}"
    );
    problem
}

#[tokio::test]
async fn idle_connections_past_the_cap_are_refused_and_free_their_slots_when_they_time_out() {
    let app = spawn_with_timeouts(|config| {
        config.connections_max = NonZeroUsize::new(4).expect("non-zero");
        config.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(app.addr).await.expect("connecting"));
    }
    // The server counts a connection once its task has started: wait for it.
    let deadline = Instant::now() + WAIT;
    let mut refused = loop {
        let mut extra = TcpStream::connect(app.addr).await.expect("connecting");
        let answer = read_to_close(&mut extra).await;
        if !answer.is_empty() {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "a fifth connection was never refused"
        );
    };
    let text = String::from_utf8_lossy(&refused).to_lowercase();
    assert!(text.starts_with("http/1.1 503"), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let problem = problem(head, body.as_bytes());
    assert_eq!(problem["status"], 503);
    refused.clear();

    // The idle ones time out, and a new client is served again.
    for mut stream in idle {
        read_to_close(&mut stream).await;
    }
    let (status, _) = app.api.get("/health").await;
    assert_eq!(status, 200);
    let metrics = app
        .api
        .get_raw("/metrics")
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.lines().any(
            |line| line.starts_with("logagg_connections_rejected_total ") && !line.ends_with(" 0")
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_slowloris_head_is_closed_after_the_header_timeout() {
    let app = spawn_with_timeouts(|config| config.header_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connecting");
    let head = format!(
        "GET /health HTTP/1.1\r\nhost: x\r\nx-slow: {}",
        "a".repeat(10_000)
    );
    let deadline = Instant::now() + WAIT;
    let mut buf = [0; 64];
    for byte in head.bytes() {
        assert!(
            Instant::now() < deadline,
            "a slowloris head was held for {WAIT:?}"
        );
        if stream.write_all(&[byte]).await.is_err() {
            return;
        }
        // A byte every 250 ms, watching for the server to close.
        match tokio::time::timeout(Duration::from_millis(250), stream.read(&mut buf)).await {
            Err(_elapsed) => {}
            Ok(Ok(0) | Err(_)) => return,
            Ok(Ok(n)) => panic!("an answer to an unfinished head: {:?}", &buf[..n]),
        }
    }
    panic!("the whole slowloris head was read");
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408_after_the_body_timeout() {
    let app = spawn_with_timeouts(|config| config.body_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connecting");
    stream
        .write_all(
            b"POST /publish HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"topic\":",
        )
        .await
        .expect("sending a head and part of a body");
    let (status, head, body) = read_response(&mut stream).await;
    assert_eq!(status, 408, "{head}");
    let problem = problem(&head, &body);
    assert_eq!(problem["type"], "urn:logagg:problem:request-timeout");
    read_to_close(&mut stream).await;
    assert_eq!(app.api.counters().await.received, 0);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_with_timeouts(|config| config.idle_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connecting");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("sending a request");
    let (status, head, _) = read_response(&mut stream).await;
    assert_eq!(status, 200, "{head}");
    assert!(!head.contains("connection: close"), "kept alive: {head}");
    let after = read_to_close(&mut stream).await;
    assert!(after.is_empty(), "{:?}", String::from_utf8_lossy(&after));
}

#[tokio::test]
async fn a_subscribe_stream_outlives_every_connection_timeout() {
    let short = Duration::from_millis(500);
    let app = spawn_with_timeouts(|config| {
        config.header_timeout = short;
        config.body_timeout = short;
        config.idle_timeout = short;
        config.keep_alive = Duration::from_secs(3600);
    })
    .await;
    let mut stream = Stream::open(&app.api, "slow.>", None).await;
    // Several times every timeout, with nothing sent either way.
    tokio::time::sleep(short * 6).await;
    app.api.publish_ok(&event("slow.one", "1")).await;
    let delivered = stream.next().await.expect("the stream is still open");
    assert_eq!(delivered["event_id"], "1");
}
