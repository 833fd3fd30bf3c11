//! Durability, against the real binary: what was acknowledged survives a
//! clean restart and a SIGKILL, exactly once; requests are never half
//! stored; counters stay consistent with the events; and SIGTERM answers
//! the publishes already in flight before the process exits 0.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Api, ChildServer, Counters, event, key};
use serde_json::{Value, json};

/// Upper bound on a whole phase (publishers running, or a restart check).
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) type Key = (String, String);

/// How one publish request ended.
#[derive(Debug)]
pub(crate) enum Answer {
    /// 200: the events are durable.
    Acked,
    /// Any other status: never expected in these tests.
    Status(u16, String),
    /// No answer: refused, reset or closed at the connection level.
    /// `connect` is true when no connection was made at all.
    Transport { connect: bool, message: String },
}

/// One publish request and its answer.
#[derive(Debug)]
pub(crate) struct Attempt {
    pub(crate) events: Vec<Value>,
    pub(crate) answer: Answer,
    /// When the answer (or failure) arrived.
    pub(crate) finished: Instant,
}

pub(crate) async fn attempt(api: &Api, events: Vec<Value>) -> Attempt {
    let answer = match api
        .http
        .post(api.url("/publish"))
        .json(&events)
        .send()
        .await
    {
        Ok(response) if response.status() == 200 => match response.text().await {
            Ok(_) => Answer::Acked,
            Err(e) => Answer::Transport {
                connect: false,
                message: format!("reading the 200 body: {e}"),
            },
        },
        Ok(response) => {
            let status = response.status().as_u16();
            Answer::Status(status, response.text().await.unwrap_or_default())
        }
        Err(e) => {
            assert!(!e.is_timeout(), "a publish timed out: the server hung: {e}");
            Answer::Transport {
                connect: e.is_connect(),
                message: format!("{e:?}"),
            }
        }
    };
    Attempt {
        events,
        answer,
        finished: Instant::now(),
    }
}

/// A publisher that sends fresh batches (and now and then resends an earlier
/// one, as a retrying client would) until `stop` is set, or until its first
/// failure when `stop_on_failure`.
pub(crate) async fn publisher(
    api: Api,
    name: String,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    stop_on_failure: bool,
) -> Vec<Attempt> {
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut batch = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let events = if batch % 4 == 3 {
            // A retry of the batch sent two requests ago, acked or not.
            attempts[attempts.len() - 2].events.clone()
        } else {
            let size = 1 + (batch * 7) % 40;
            (0..size)
                .map(|i| {
                    event(
                        &format!("dur.{}", batch % 3),
                        &format!("{name}-b{batch}-{i}"),
                    )
                })
                .collect()
        };
        batch += 1;
        let done = attempt(&api, events).await;
        let failed = !matches!(done.answer, Answer::Acked);
        if !failed {
            acked.fetch_add(1, Ordering::SeqCst);
        }
        attempts.push(done);
        if failed && stop_on_failure {
            break;
        }
        if failed {
            // The server is down; do not spin.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    attempts
}

/// Runs `count` publishers until `acks_before_signal` requests were acked,
/// then sends `signal` and returns the exit status, every attempt, and when
/// the signal was sent.
async fn publish_then_signal(
    server: ChildServer,
    prefix: &str,
    count: usize,
    acks_before_signal: usize,
    signal: &str,
    stop_on_failure: bool,
) -> (std::process::ExitStatus, Vec<Attempt>, Instant) {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let publishers: Vec<_> = (0..count)
        .map(|i| {
            tokio::spawn(publisher(
                server.api.separate_client(),
                format!("{prefix}-p{i}"),
                Arc::clone(&stop),
                Arc::clone(&acked),
                stop_on_failure,
            ))
        })
        .collect();
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while acked.load(Ordering::SeqCst) < acks_before_signal {
        assert!(Instant::now() < deadline, "publishers made no progress");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let signalled = Instant::now();
    let status = tokio::time::timeout(PHASE_TIMEOUT, server.signal_and_wait(signal))
        .await
        .expect("the server exits in time");
    stop.store(true, Ordering::SeqCst);
    let mut attempts = Vec::new();
    for publisher in publishers {
        let done = tokio::time::timeout(PHASE_TIMEOUT, publisher)
            .await
            .expect("publishers stop in time")
            .expect("publisher task did not panic");
        attempts.extend(done);
    }
    summarize(signal, &attempts, signalled);
    (status, attempts, signalled)
}

/// One line per run on stderr (shown for failing tests or `--nocapture`).
fn summarize(signal: &str, attempts: &[Attempt], signalled: Instant) {
    let after = |a: &&Attempt| a.finished > signalled;
    let acked = attempts
        .iter()
        .filter(|a| matches!(a.answer, Answer::Acked));
    let cut: Vec<&str> = attempts
        .iter()
        .filter_map(|a| match &a.answer {
            Answer::Transport {
                connect: false,
                message,
            } => Some(message.as_str()),
            _ => None,
        })
        .collect();
    eprintln!(
        "SIG{signal}: {} requests, {} acked ({} of them after the signal), {} cut off mid-request: {cut:?}",
        attempts.len(),
        acked.clone().count(),
        acked.filter(after).count(),
        cut.len(),
    );
}

/// What a restarted server must show, given every attempt so far: every
/// acked event stored exactly once, every request either whole or absent,
/// nothing stored that was never sent, and counters that agree with the
/// events.
async fn check_store(api: &Api, attempts: &[Attempt]) -> BTreeMap<Key, Value> {
    let stored_list = api.all_events(None).await;
    let mut stored = BTreeMap::new();
    for event in &stored_list {
        let previous = stored.insert(key(event), event.clone());
        assert!(previous.is_none(), "stored twice: {event}");
    }
    let sent: BTreeSet<Key> = attempts
        .iter()
        .flat_map(|a| a.events.iter().map(key))
        .collect();
    for key in stored.keys() {
        assert!(sent.contains(key), "stored but never sent: {key:?}");
    }
    for attempt in attempts {
        let present = attempt
            .events
            .iter()
            .filter(|e| stored.contains_key(&key(e)))
            .count();
        match &attempt.answer {
            Answer::Acked => assert_eq!(
                present,
                attempt.events.len(),
                "a 200 was answered but events are missing: {:?}",
                attempt.events.iter().map(key).collect::<Vec<_>>()
            ),
            Answer::Status(status, body) => {
                panic!("a publish got {status} instead of 200 or no answer: {body}")
            }
            Answer::Transport { .. } => assert!(
                present == 0 || present == attempt.events.len(),
                "an unacknowledged request was half stored ({present} of {})",
                attempt.events.len()
            ),
        }
    }
    let counters = api.counters().await;
    assert_eq!(
        counters.received,
        counters.unique_processed + counters.duplicate_dropped,
        "{counters:?}"
    );
    assert_eq!(
        counters.unique_processed,
        stored.len() as u64,
        "unique_processed agrees with the stored events: {counters:?}"
    );
    assert_eq!(counters.conflicts, 0, "{counters:?}");
    stored
}

#[tokio::test]
async fn after_sigterm_and_a_restart_events_and_counters_are_intact_and_resends_are_duplicates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ChildServer::start(dir.path()).await;
    let events: Vec<Value> = (0..240)
        .map(|i| event(&format!("restart.{}", i % 3), &format!("r-{i}")))
        .collect();
    let requests: Vec<Value> = events
        .chunks(40)
        .map(|chunk| json!(chunk))
        .chain(events[..5].iter().cloned())
        .collect();
    for request in &requests {
        server.api.publish_ok(request).await;
    }
    let before_events = server.api.all_events(None).await;
    let (_, before_topics) = server.api.get("/topics").await;
    let before = server.api.counters().await;
    assert_eq!(
        before,
        Counters {
            received: 245,
            unique_processed: 240,
            duplicate_dropped: 5,
            conflicts: 0
        }
    );

    let status = server.signal_and_wait("TERM").await;
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0: {status}");

    let server = ChildServer::start(dir.path()).await;
    assert_eq!(server.api.counters().await, before, "counters survive");
    assert_eq!(
        server.api.all_events(None).await,
        before_events,
        "events survive, with their seq and received_at"
    );
    assert_eq!(server.api.get("/topics").await.1, before_topics);

    for request in &requests {
        let answer = server.api.publish_ok(request).await;
        let count = answer["received"].as_u64().expect("received");
        assert_eq!(
            answer,
            json!({"received": count, "unique": 0, "duplicates": count, "conflicts": 0}),
            "everything resent after the restart is a duplicate"
        );
    }
    assert_eq!(
        server.api.counters().await,
        Counters {
            received: 490,
            unique_processed: 240,
            duplicate_dropped: 250,
            conflicts: 0
        }
    );
    assert_eq!(server.api.all_events(None).await, before_events);
    let answer = server.api.publish_ok(&event("restart.new", "n-1")).await;
    assert_eq!(answer["unique"], 1);
    let (_, stored) = server.api.get("/events/restart.new/n-1").await;
    assert_eq!(stored["seq"], 241, "seq continues after the restart");

    let status = server.signal_and_wait("TERM").await;
    assert_eq!(status.code(), Some(0), "second SIGTERM exits 0: {status}");
}

// Multi-threaded so that publishers keep sending while the test thread
// signals the server: the kill must land mid-stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sigkill_mid_stream_every_acknowledged_event_is_stored_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut attempts = Vec::new();
    let mut in_flight_at_kill = 0;
    for round in 0..3 {
        let server = ChildServer::start(dir.path()).await;
        if round > 0 {
            check_store(&server.api, &attempts).await;
        }
        let (status, done, _) = publish_then_signal(
            server,
            &format!("kill{round}"),
            4,
            30 + round * 25,
            "KILL",
            false,
        )
        .await;
        assert!(!status.success(), "SIGKILL is not a clean exit: {status}");
        in_flight_at_kill += done
            .iter()
            .filter(|a| matches!(a.answer, Answer::Transport { connect: false, .. }))
            .count();
        attempts.extend(done);
    }
    assert!(
        in_flight_at_kill > 0,
        "no request was cut off by a kill; the test did not exercise a crash mid-request"
    );

    let server = ChildServer::start(dir.path()).await;
    check_store(&server.api, &attempts).await;

    // The publishers retry everything that was not acknowledged (and, being
    // unsure, everything else too): afterwards every event is stored once.
    for attempt in &attempts {
        server.api.publish_ok(&json!(attempt.events)).await;
    }
    let sent: BTreeSet<Key> = attempts
        .iter()
        .flat_map(|a| a.events.iter().map(key))
        .collect();
    let stored = check_store(&server.api, &attempts).await;
    assert_eq!(stored.into_keys().collect::<BTreeSet<_>>(), sent);
    let counters = server.api.counters().await;
    assert_eq!(counters.unique_processed, sent.len() as u64);
    assert!(counters.duplicate_dropped > 0, "{counters:?}");

    let status = server.signal_and_wait("TERM").await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_answers_in_flight_publishes_before_exiting() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = ChildServer::start(dir.path()).await;
    let (status, attempts, signalled) =
        publish_then_signal(server, "term", 8, 8, "TERM", true).await;
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0: {status}");

    // Every publish got a 200 or failed at the connection level; none got
    // another status (check_store panics on one).
    let answered_after_signal = attempts
        .iter()
        .filter(|a| matches!(a.answer, Answer::Acked) && a.finished > signalled)
        .count();
    assert!(
        answered_after_signal > 0,
        "no publish was in flight at SIGTERM; the test did not exercise shutdown"
    );

    let server = ChildServer::start(dir.path()).await;
    check_store(&server.api, &attempts).await;
    let status = server.signal_and_wait("TERM").await;
    assert_eq!(status.code(), Some(0));
}

/// Issue 14: the keydir (the in-memory dedup index) is snapshotted to a file
/// while commits go on. A SIGKILL in the middle of writing a snapshot must
/// cost nothing: after the restart every acknowledged event is there once,
/// and every resend is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_sigkill_during_a_snapshot_of_the_index_acknowledged_events_and_duplicates_hold() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unfinished = dir.path().join("keydir.snapshot.tmp");
    // Snapshots as often as the store allows (every eighth of growth, here
    // every few commits), so one is under way much of the time.
    let args = ["--index-snapshot-keys", "1"];
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut killed_mid_snapshot = 0;
    for round in 0..6 {
        let server = ChildServer::start_with(dir.path(), &args).await;
        if round > 0 {
            check_store(&server.api, &attempts).await;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let publishers: Vec<_> = (0..4)
            .map(|i| {
                tokio::spawn(publisher(
                    server.api.separate_client(),
                    format!("snap{round}-p{i}"),
                    Arc::clone(&stop),
                    Arc::clone(&acked),
                    false,
                ))
            })
            .collect();
        let deadline = Instant::now() + PHASE_TIMEOUT;
        // Some acks first, then the first moment a snapshot is under way.
        while acked.load(Ordering::SeqCst) < 20 || !unfinished.exists() {
            assert!(Instant::now() < deadline, "no snapshot was seen under way");
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let status = server.kill_now();
        assert!(!status.success(), "SIGKILL is not a clean exit: {status}");
        if unfinished.exists() {
            killed_mid_snapshot += 1;
        }
        stop.store(true, Ordering::SeqCst);
        for publisher in publishers {
            let done = tokio::time::timeout(PHASE_TIMEOUT, publisher)
                .await
                .expect("publishers stop in time")
                .expect("publisher task did not panic");
            attempts.extend(done);
        }
        if killed_mid_snapshot >= 2 {
            break;
        }
    }
    eprintln!("{killed_mid_snapshot} kill(s) landed while a snapshot was being written");
    assert!(
        killed_mid_snapshot > 0,
        "no kill landed while a snapshot was being written"
    );

    // (The restarted server may start a snapshot of its own right away, so
    // whether the unfinished file is there says nothing here.)
    let server = ChildServer::start_with(dir.path(), &args).await;
    let before = check_store(&server.api, &attempts).await;
    // Everything again: the acknowledged part must all be duplicates.
    let counters = server.api.counters().await;
    for attempt in &attempts {
        if matches!(attempt.answer, Answer::Acked) {
            let answer = server.api.publish_ok(&json!(attempt.events)).await;
            assert_eq!(
                answer["unique"], 0,
                "a resent acknowledged request: {answer}"
            );
        }
    }
    let after = server.api.counters().await;
    assert_eq!(after.unique_processed, counters.unique_processed);
    assert_eq!(check_store(&server.api, &attempts).await, before);
    let status = server.signal_and_wait("TERM").await;
    assert_eq!(status.code(), Some(0));
}
