//! Several replicas over one PostgreSQL database: the built binary, run as
//! child processes with `--store postgres://...`, against a real server
//! ([`crate::postgres`]). Dedup, counters and commit order hold across
//! replicas; subscribers on any replica see every replica's commits, also
//! after reconnecting elsewhere; a killed replica, a crashed database and a
//! stopped one lose nothing acknowledged, and replicas recover by
//! themselves.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use serde_json::{Value, json};

use crate::common::{Api, ChildServer, Rng, event, key};
use crate::dedup::{counters, load_with_duplicates, publish_mixed};
use crate::durability::{Answer, Attempt, Key, publisher};
use crate::postgres::Postgres;
use crate::subscribe::{Stream, seqs};

/// Upper bound on a whole phase of a test.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

/// `logagg serve` replicas on one database, each with a data directory it
/// does not use.
struct Replicas {
    servers: Vec<ChildServer>,
    _dirs: Vec<tempfile::TempDir>,
}

impl Replicas {
    /// `count` replicas on a fresh database of the shared cluster, or
    /// `None` (after saying why) without PostgreSQL.
    async fn on_shared_cluster(test: &str, count: usize) -> Option<Self> {
        let postgres = Postgres::shared(test)?;
        let db = postgres.database().await;
        Some(Self::start(&db.url, count).await)
    }

    async fn start(url: &str, count: usize) -> Self {
        let mut servers = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..count {
            let dir = tempfile::tempdir().expect("temp dir");
            servers.push(
                ChildServer::start_with(dir.path(), &["--store", url, "--store-pool-size", "4"])
                    .await,
            );
            dirs.push(dir);
        }
        Self {
            servers,
            _dirs: dirs,
        }
    }

    fn api(&self, replica: usize) -> Api {
        self.servers[replica].api.separate_client()
    }
}

fn totals(receipts: impl IntoIterator<Item = [u64; 4]>) -> [u64; 4] {
    receipts.into_iter().fold([0; 4], |mut sum, receipt| {
        for (total, part) in sum.iter_mut().zip(receipt) {
            *total += part;
        }
        sum
    })
}

/// The stored events' keys, asserting each is stored once and `seq` runs
/// 1, 2, 3, ... with no gap.
async fn stored_keys_in_order(api: &Api) -> Vec<Key> {
    let stored = api.all_events_paged(None, 500).await;
    let expected: Vec<u64> = (1..=stored.len() as u64).collect();
    assert_eq!(
        seqs(&stored),
        expected,
        "seq runs 1, 2, 3, ... without a gap"
    );
    let keys: Vec<Key> = stored.iter().map(key).collect();
    let unique: BTreeSet<&Key> = keys.iter().collect();
    assert_eq!(unique.len(), keys.len(), "no key is stored twice");
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_events_with_twenty_percent_duplicates_over_three_replicas_store_four_thousand()
 {
    let test = "five_thousand_events_with_twenty_percent_duplicates_over_three_replicas";
    let Some(replicas) = Replicas::on_shared_cluster(test, 3).await else {
        return;
    };
    let mut rng = Rng::seed_from_u64(0x10_6A67);
    let events = load_with_duplicates(&mut rng);
    let expected: BTreeSet<Key> = events.iter().map(key).collect();

    let clients: Vec<_> = events
        .chunks(events.len().div_ceil(9))
        .enumerate()
        .map(|(i, chunk)| {
            let api = replicas.api(i % 3);
            tokio::spawn(publish_mixed(
                api,
                chunk.to_vec(),
                Rng::seed_from_u64(i as u64),
            ))
        })
        .collect();
    let receipts = tokio::time::timeout(PHASE_TIMEOUT, futures_util::future::join_all(clients))
        .await
        .expect("publishers finish in time")
        .into_iter()
        .map(|r| r.expect("publisher task did not panic"));
    assert_eq!(
        totals(receipts),
        [5_000, 4_000, 1_000, 0],
        "sum of receipts"
    );

    for replica in &replicas.servers {
        assert_eq!(
            replica.api.counters().await,
            counters(5_000, 4_000, 1_000, 0),
            "every replica reports the shared counters"
        );
    }
    let keys = stored_keys_in_order(&replicas.api(2)).await;
    assert_eq!(keys.into_iter().collect::<BTreeSet<_>>(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_sending_one_event_to_three_replicas_at_once_store_it_once() {
    let test = "fifty_clients_sending_one_event_to_three_replicas_at_once_store_it_once";
    let Some(replicas) = Replicas::on_shared_cluster(test, 3).await else {
        return;
    };
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let api = replicas.api(i % 3);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                let receipt = api.publish_ok(&event("race", "the-one")).await;
                ["received", "unique", "duplicates", "conflicts"]
                    .map(|field| receipt[field].as_u64().expect("receipt count"))
            })
        })
        .collect();
    let receipts = tokio::time::timeout(PHASE_TIMEOUT, futures_util::future::join_all(clients))
        .await
        .expect("publishers finish in time")
        .into_iter()
        .map(|r| r.expect("publisher task did not panic"));
    assert_eq!(totals(receipts), [50, 1, 49, 0], "sum of receipts");
    assert_eq!(
        replicas.servers[1].api.counters().await,
        counters(50, 1, 49, 0)
    );
    assert_eq!(stored_keys_in_order(&replicas.api(0)).await.len(), 1);
}

/// Publishers on each replica (two per replica, durability's retrying
/// kind) until `stop` is set.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Attempt>>>,
}

impl Load {
    fn start(replicas: &Replicas, prefix: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let tasks = (0..replicas.servers.len() * 2)
            .map(|i| {
                tokio::spawn(publisher(
                    replicas.api(i % replicas.servers.len()),
                    format!("{prefix}-p{i}"),
                    Arc::clone(&stop),
                    Arc::clone(&acked),
                    false,
                ))
            })
            .collect();
        Self { stop, acked, tasks }
    }

    /// Waits until `more` further requests have been acknowledged.
    async fn until_acked(&self, more: usize) {
        let target = self.acked.load(Ordering::SeqCst) + more;
        let deadline = Instant::now() + PHASE_TIMEOUT;
        while self.acked.load(Ordering::SeqCst) < target {
            assert!(Instant::now() < deadline, "publishers made no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) -> Vec<Attempt> {
        self.stop.store(true, Ordering::SeqCst);
        let mut attempts = Vec::new();
        for task in self.tasks {
            let done = tokio::time::timeout(PHASE_TIMEOUT, task)
                .await
                .expect("publishers stop in time")
                .expect("publisher task did not panic");
            attempts.extend(done);
        }
        attempts
    }
}

/// Checks the stored events against every attempt: each acknowledged
/// request is stored whole, every other one whole or not at all, nothing
/// is stored that was never sent, each key once, and the counters agree.
/// `allowed` says which answers other than 200 the test expects.
async fn check_store(api: &Api, attempts: &[Attempt], allowed: impl Fn(&Answer) -> bool) {
    let stored: BTreeSet<Key> = stored_keys_in_order(api).await.into_iter().collect();
    let sent: BTreeSet<Key> = attempts
        .iter()
        .flat_map(|a| a.events.iter().map(key))
        .collect();
    assert!(stored.is_subset(&sent), "stored but never sent");
    for attempt in attempts {
        let present = attempt
            .events
            .iter()
            .filter(|e| stored.contains(&key(e)))
            .count();
        match &attempt.answer {
            Answer::Acked => assert_eq!(
                present,
                attempt.events.len(),
                "a 200 was answered but events are missing"
            ),
            other => {
                assert!(allowed(other), "unexpected answer: {other:?}");
                assert!(
                    present == 0 || present == attempt.events.len(),
                    "an unacknowledged request was half stored ({present} of {})",
                    attempt.events.len()
                );
            }
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
        "{counters:?}"
    );
    assert_eq!(counters.conflicts, 0, "{counters:?}");
}

/// What a publisher does about every request it is unsure of: sends it
/// again (here through `api`) until it is acknowledged. Afterwards every
/// key sent is stored exactly once.
async fn retry_unacknowledged(api: &Api, attempts: &[Attempt]) {
    for attempt in attempts {
        if !matches!(attempt.answer, Answer::Acked) {
            api.publish_ok(&json!(attempt.events)).await;
        }
    }
    let sent: BTreeSet<Key> = attempts
        .iter()
        .flat_map(|a| a.events.iter().map(key))
        .collect();
    let stored: BTreeSet<Key> = stored_keys_in_order(api).await.into_iter().collect();
    assert_eq!(stored, sent, "after the retries every key is stored once");
    let counters = api.counters().await;
    assert_eq!(counters.unique_processed, sent.len() as u64, "{counters:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_load_loses_nothing_acknowledged_and_the_others_take_the_retries() {
    let test = "a_replica_killed_mid_load_loses_nothing_acknowledged";
    let Some(mut replicas) = Replicas::on_shared_cluster(test, 3).await else {
        return;
    };
    let load = Load::start(&replicas, "kill");
    load.until_acked(60).await;
    let killed = replicas.servers.remove(0);
    let status = tokio::time::timeout(PHASE_TIMEOUT, killed.signal_and_wait("KILL"))
        .await
        .expect("the replica exits in time");
    assert!(!status.success(), "SIGKILL is not a clean exit: {status}");
    // The other replicas carry on.
    load.until_acked(60).await;
    let attempts = load.stop().await;
    let refused = attempts
        .iter()
        .filter(|a| matches!(a.answer, Answer::Transport { .. }))
        .count();
    assert!(refused > 0, "the killed replica's publishers noticed");

    let survivor = replicas.api(0);
    check_store(&survivor, &attempts, |answer| {
        matches!(answer, Answer::Transport { .. })
    })
    .await;
    retry_unacknowledged(&survivor, &attempts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_crash_mid_load_loses_nothing_acknowledged_and_replicas_recover_by_themselves() {
    let test = "a_database_crash_mid_load_loses_nothing_acknowledged";
    let Some(postgres) = Postgres::start(test) else {
        return;
    };
    let db = postgres.database().await;
    let replicas = Replicas::start(&db.url, 3).await;
    let watching = Arc::new(AtomicBool::new(true));
    let health = tokio::spawn(watch_health(
        (0..3).map(|i| replicas.api(i)).collect(),
        Arc::clone(&watching),
    ));
    let load = Load::start(&replicas, "crash");
    load.until_acked(60).await;
    let postgres = Arc::new(postgres);
    let crashed = Arc::clone(&postgres);
    tokio::task::spawn_blocking(move || crashed.restart_immediately())
        .await
        .expect("restarting PostgreSQL");
    // No replica was restarted: they reconnect by themselves.
    load.until_acked(90).await;
    let attempts = load.stop().await;
    watching.store(false, Ordering::SeqCst);
    let unhealthy = health.await.expect("health watcher did not panic");

    let unavailable = attempts
        .iter()
        .filter(|a| matches!(&a.answer, Answer::Status(503, _)))
        .count();
    assert!(
        unavailable > 0,
        "no publish got 503 while the database was down"
    );
    assert!(
        unhealthy
            .iter()
            .any(|(status, body)| *status == 503 && body.contains("unavailable")),
        "no /health answered 503 with the reason: {unhealthy:?}"
    );
    for replica in 0..3 {
        let (status, body) = replicas.api(replica).get("/health").await;
        assert_eq!(status, 200, "replica {replica} recovered: {body}");
    }
    let api = replicas.api(1);
    check_store(&api, &attempts, |answer| {
        matches!(answer, Answer::Status(503, _))
    })
    .await;
    retry_unacknowledged(&api, &attempts).await;
}

/// Polls every replica's `/health` until `watching` is cleared; returns
/// each answer that was not 200.
async fn watch_health(apis: Vec<Api>, watching: Arc<AtomicBool>) -> Vec<(u16, String)> {
    let mut unhealthy = Vec::new();
    while watching.load(Ordering::SeqCst) {
        for api in &apis {
            let (status, body) = api.get("/health").await;
            if status != 200 {
                unhealthy.push((status, body.to_string()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unhealthy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_database_is_down_replicas_answer_503_with_the_reason_and_recover_by_themselves()
{
    let test = "while_the_database_is_down_replicas_answer_503";
    let Some(postgres) = Postgres::start(test) else {
        return;
    };
    let db = postgres.database().await;
    let replicas = Replicas::start(&db.url, 2).await;
    let (a, b) = (replicas.api(0), replicas.api(1));
    a.publish_ok(&event("down", "before")).await;

    postgres.stop();
    for api in [&a, &b] {
        let response = api.get_raw("/health").await;
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        let problem: Value = response.json().await.expect("problem document");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("store unavailable"), "{problem}");
    }
    let response = a.publish(&event("down", "during")).await;
    assert_eq!(response.status(), 503, "never a 500, never a 200");
    assert!(response.headers().contains_key("retry-after"));
    let problem: Value = response.json().await.expect("problem document");
    assert_eq!(
        problem["type"], "urn:logagg:problem:unavailable",
        "{problem}"
    );
    assert_eq!(a.get("/events").await.0, 503);
    assert_eq!(b.get("/stats").await.0, 503);

    postgres.start_again();
    for api in [&a, &b] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.get("/health").await.0 != 200 {
            assert!(Instant::now() < deadline, "a replica did not recover");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Each replica's LISTEN connection is back too: a subscriber on A sees
    // what B stores now.
    let mut stream = Stream::open(&a, ">", Some(1)).await;
    b.publish_ok(&event("down", "after")).await;
    let after = stream.next().await.expect("an event");
    assert_eq!(
        (after["seq"].as_u64(), key(&after).1.as_str()),
        (Some(2), "after")
    );
    assert_eq!(
        a.get("/events/down/during").await.0,
        404,
        "the 503 stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_replica_sees_every_replicas_commits_in_order_and_resumes_on_another() {
    let test = "a_subscriber_on_one_replica_sees_every_replicas_commits";
    let Some(replicas) = Replicas::on_shared_cluster(test, 3).await else {
        return;
    };
    let (a, b, c) = (replicas.api(0), replicas.api(1), replicas.api(2));
    let mut on_a = Stream::open(&a, ">", None).await;
    for i in 0..20 {
        let target = if i % 2 == 0 { &b } else { &c };
        let batch: Vec<Value> = (0..10)
            .map(|j| event(&format!("x.{}", j % 3), &format!("{i}-{j}")))
            .collect();
        target.publish_ok(&json!(batch)).await;
    }
    let first = on_a.take(120).await;
    assert_eq!(seqs(&first), (1..=120).collect::<Vec<_>>());
    drop(on_a);

    let mut on_c = Stream::open(&c, ">", Some(120)).await;
    let rest = on_c.take(80).await;
    assert_eq!(seqs(&rest), (121..=200).collect::<Vec<_>>());
    for (i, target) in [&a, &b].into_iter().enumerate() {
        target
            .publish_ok(&json!([event("x.live", &format!("live-{i}"))]))
            .await;
    }
    let live = on_c.take(2).await;
    assert_eq!(seqs(&live), [201, 202]);

    let delivered: Vec<Key> = first.iter().chain(&rest).chain(&live).map(key).collect();
    assert_eq!(
        delivered,
        stored_keys_in_order(&b).await,
        "in store order, each once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interleaved_commits_from_two_replicas_never_let_a_reader_or_a_subscriber_skip() {
    let test = "interleaved_commits_from_two_replicas_never_let_a_reader_or_a_subscriber_skip";
    let Some(replicas) = Replicas::on_shared_cluster(test, 2).await else {
        return;
    };
    let mut subscriber = Stream::open(&replicas.api(0), ">", None).await;

    // Four writers per replica, batches of 1 to 25 events, so that groups
    // from the two replicas commit interleaved.
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let api = replicas.api(w % 2);
            tokio::spawn(async move {
                for b in 0..40 {
                    let size = 1 + (w * 7 + b * 11) % 25;
                    let batch: Vec<Value> = (0..size)
                        .map(|i| event(&format!("r{}", w % 2), &format!("w{w}-b{b}-{i}")))
                        .collect();
                    api.publish_ok(&json!(batch)).await;
                }
            })
        })
        .collect();
    // A reader paging as fast as it can, alternating replicas, as a client
    // behind a load balancer would; it stops once writers are done and it
    // has reached the newest seq.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let apis = [replicas.api(0), replicas.api(1)];
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut seen: Vec<Value> = Vec::new();
            let mut after = 0;
            for page in 0.. {
                let finished = done.load(Ordering::SeqCst);
                let (status, body) = apis[page % 2]
                    .get(&format!("/events?after={after}&limit=50"))
                    .await;
                assert_eq!(status, 200, "{body}");
                let events = body["events"].as_array().expect("events").clone();
                if let Some(last) = events.last() {
                    after = last["seq"].as_u64().expect("seq");
                }
                let empty = events.is_empty();
                seen.extend(events);
                if finished && empty {
                    return seen;
                }
            }
            unreachable!("the loop returns")
        })
    };
    for writer in writers {
        tokio::time::timeout(PHASE_TIMEOUT, writer)
            .await
            .expect("writers finish in time")
            .expect("writer did not panic");
    }
    done.store(true, Ordering::SeqCst);
    let paged = tokio::time::timeout(PHASE_TIMEOUT, reader)
        .await
        .expect("the reader finishes in time")
        .expect("reader did not panic");

    let stored = stored_keys_in_order(&replicas.api(1)).await;
    let expected: usize = (0..8)
        .map(|w| (0..40).map(|b| 1 + (w * 7 + b * 11) % 25).sum::<usize>())
        .sum();
    assert_eq!(stored.len(), expected);
    let switches = stored.windows(2).filter(|w| w[0].0 != w[1].0).count();
    assert!(
        switches > 20,
        "commits of the two replicas interleaved only {switches} times"
    );
    let paged: Vec<Key> = paged.iter().map(key).collect();
    assert_eq!(paged.len(), stored.len(), "the reader skipped events");
    assert_eq!(paged, stored, "the reader saw every event, in order");
    // Until the newest seq: a subscriber that skipped one still gets there.
    let mut followed = Vec::new();
    while followed
        .last()
        .is_none_or(|e: &Value| e["seq"].as_u64() < Some(expected as u64))
    {
        followed.push(subscriber.next().await.expect("the stream stays open"));
    }
    let followed: Vec<Key> = followed.iter().map(key).collect();
    assert_eq!(followed, stored, "the subscriber saw every event, in order");
}

/// Sends `signal` (e.g. "STOP", "CONT") to a child process.
fn signal(server: &ChildServer, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), server.child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// The backend holding the append lock while idle inside its transaction
/// for over 300 ms: a replica that stopped between the two round trips of
/// an append.
async fn stalled_lock_holder(client: &tokio_postgres::Client) -> Option<i32> {
    client
        .query_opt(
            "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE l.locktype = 'advisory' AND l.granted
               AND a.state = 'idle in transaction'
               AND now() - a.state_change > interval '300 ms'",
            &[],
        )
        .await
        .expect("reading pg_locks")
        .map(|row| row.get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_frozen_while_holding_the_append_lock_holds_the_others_up_for_seconds_only() {
    let test = "a_replica_frozen_while_holding_the_append_lock";
    let Some(postgres) = Postgres::shared(test) else {
        return;
    };
    let db = postgres.database().await;
    let replicas = Replicas::start(&db.url, 2).await;
    let load = Load::start(&replicas, "frozen");
    load.until_acked(40).await;
    let watcher = postgres.client(&db.name).await;

    // Freeze replica 0 until it happens to stop while holding the lock.
    let frozen = &replicas.servers[0];
    let mut holder = None;
    for _ in 0..100 {
        signal(frozen, "STOP");
        tokio::time::sleep(Duration::from_millis(400)).await;
        holder = stalled_lock_holder(&watcher).await;
        if holder.is_some() {
            break;
        }
        signal(frozen, "CONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        holder.is_some(),
        "replica 0 never stopped while holding the lock"
    );
    let frozen_at = Instant::now();

    // The server ends the silent session after 10 s; replica 1 carries on.
    load.until_acked(20).await;
    let held_up = frozen_at.elapsed();
    assert!(
        held_up < Duration::from_secs(20),
        "replica 1 was held up for {held_up:?}"
    );
    assert_eq!(stalled_lock_holder(&watcher).await, None);

    // Thawed, replica 0 finds its connection gone, answers that append 503
    // and reconnects.
    signal(frozen, "CONT");
    let api = replicas.api(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = api.publish(&event("thawed", "t")).await;
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 503, "never a 500");
        assert!(Instant::now() < deadline, "replica 0 did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut attempts = load.stop().await;
    attempts.push(Attempt {
        events: vec![event("thawed", "t")],
        answer: Answer::Acked,
        finished: Instant::now(),
    });
    check_store(&replicas.api(1), &attempts, |answer| {
        matches!(answer, Answer::Status(503, _))
    })
    .await;
    retry_unacknowledged(&replicas.api(1), &attempts).await;
}

/// `docker-compose.postgres.yml` is valid Compose (`config` parses and
/// resolves it) and wires what the README says: PostgreSQL, three replicas
/// on it, the balancer over all three, and the publisher through the
/// balancer. Running it needs images from a registry or the local builds of
/// `scripts/compose-demo.sh`, which runs it for real but is too slow for CI
/// (the README says what it printed).
#[test]
fn the_postgres_compose_file_is_valid_and_wires_three_replicas_behind_a_balancer() {
    let test = "the_postgres_compose_file_is_valid";
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = root.join("docker-compose.postgres.yml");
    let candidates: [&[&str]; 2] = [&["docker", "compose"], &["docker-compose"]];
    let Some(compose) = candidates.into_iter().find(|compose| {
        std::process::Command::new(compose[0])
            .args(&compose[1..])
            .arg("version")
            .output()
            .is_ok_and(|output| output.status.success())
    }) else {
        crate::common::skip(test, "neither `docker compose` nor `docker-compose` works");
        return;
    };
    let config = |extra: &[&str]| {
        let output = std::process::Command::new(compose[0])
            .args(&compose[1..])
            .arg("-f")
            .arg(&file)
            .arg("config")
            .args(extra)
            .env_remove("LOGAGG_PORT")
            .output()
            .expect("running compose config");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "compose config failed: {}{stdout}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let services: BTreeSet<String> = config(&["--services"]).lines().map(str::to_owned).collect();
    let expected = [
        "postgres",
        "replica-1",
        "replica-2",
        "replica-3",
        "balancer",
        "publisher",
    ];
    assert_eq!(services, expected.map(str::to_owned).into_iter().collect());
    let resolved = config(&[]);
    assert_eq!(
        resolved
            .matches("LOGAGG_STORE: postgres://logagg:logagg@postgres:5432/logagg")
            .count(),
        3,
        "each replica uses the database: {resolved}"
    );
    assert!(
        resolved.contains("--url=http://balancer:8080"),
        "{resolved}"
    );
    assert!(resolved.contains("127.0.0.1:8080:8080"), "{resolved}");
    let balancer = std::fs::read_to_string(root.join("deploy/haproxy.cfg")).expect("haproxy.cfg");
    for replica in 1..=3 {
        let line = format!("server replica-{replica} replica-{replica}:8080");
        assert!(balancer.contains(&line), "the balancer lacks {line:?}");
    }
}

#[test]
fn a_replica_whose_database_cannot_be_reached_exits_with_one_clear_line() {
    let url = format!(
        "postgres://logagg:hunter2@127.0.0.1:{}/logagg?connect_timeout=2",
        crate::common::closed_port()
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store", &url])
        .env("RUST_LOG", "off")
        .output()
        .expect("running logagg serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let expected = format!(
        "opening the store at {} (check --store, and that the database is up and reachable)",
        url.replace(":hunter2", "")
            .replace("?connect_timeout=2", "")
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}
