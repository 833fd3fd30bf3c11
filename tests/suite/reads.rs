//! Reads: `/events` paging and fidelity, `/events/{topic}/{id}`, `/topics`,
//! `/stats`, `/health`, `/metrics`.

use std::time::Duration;

use crate::common::{TestApp, event};
use serde_json::{Value, json};

#[tokio::test]
async fn stored_event_comes_back_exactly_as_sent() {
    let app = TestApp::spawn().await;
    let payload = r#"{"big":123456789012345678901234567890,"text":"日本語 🎉","nested":{"a":[1,2.5,null,true]}}"#;
    let body = format!(
        r#"{{"topic":"auth.login","event_id":"ünï-1","timestamp":"2025-10-25T12:30:00.123456789+05:30","source":"auth-svc","payload":{payload},"ignored_extra":1}}"#
    );
    let response = app.api.publish_raw("application/json", body).await;
    assert_eq!(response.status(), 200);

    let (status, stored) = app.api.get("/events/auth.login/%C3%BCn%C3%AF-1").await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["topic"], "auth.login");
    assert_eq!(stored["event_id"], "ünï-1");
    assert_eq!(stored["timestamp"], "2025-10-25T12:30:00.123456789+05:30");
    assert_eq!(stored["source"], "auth-svc");
    assert_eq!(stored["seq"], 1);
    assert!(
        stored["received_at"]
            .as_str()
            .expect("received_at")
            .ends_with('Z')
    );
    assert!(stored.get("ignored_extra").is_none());
    // The payload comes back byte for byte: the big integer is not rounded.
    let text = app
        .api
        .get_raw("/events?topic=auth.login")
        .await
        .text()
        .await
        .expect("body");
    assert!(text.contains(&format!(r#""payload":{payload}"#)), "{text}");
}

#[tokio::test]
async fn events_page_in_seq_order_with_a_cursor() {
    let app = TestApp::spawn().await;
    let batch: Vec<_> = (0..25)
        .map(|i| event(if i % 2 == 0 { "even" } else { "odd" }, &i.to_string()))
        .collect();
    app.api.publish_ok(&json!(batch)).await;

    let (_, first) = app.api.get("/events?limit=10").await;
    let seqs: Vec<u64> = first["events"]
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    assert_eq!(first["next_after"], 10);

    let (_, last) = app.api.get("/events?limit=10&after=20").await;
    assert_eq!(last["events"].as_array().expect("array").len(), 5);
    assert_eq!(last["next_after"], json!(null));

    let even = app.api.all_events(Some("even")).await;
    assert_eq!(even.len(), 13);
    assert!(even.iter().all(|e| e["topic"] == "even"));
    assert!(
        even.windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
}

/// The `seq`s of an `/events` answer.
fn seqs(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test]
async fn events_filter_by_pattern_source_and_time_newest_first_too() {
    let app = TestApp::spawn().await;
    let mut batch: Vec<Value> = ["auth.login", "auth.sso.ok", "billing.paid", "auth.logout"]
        .iter()
        .enumerate()
        .map(|(i, topic)| event(topic, &i.to_string()))
        .collect();
    batch[1]["source"] = json!("sso-svc");
    batch[3]["timestamp"] = json!("2030-01-01T00:00:00+02:00");
    app.api.publish_ok(&json!(batch)).await;

    let (_, page) = app.api.get("/events?topic=auth.*").await;
    assert_eq!(seqs(&page), [1, 4], "{page}");
    assert!(page.get("topic_known").is_none(), "{page}");
    let (_, page) = app.api.get("/events?topic=auth.>&source=sso-svc").await;
    assert_eq!(seqs(&page), [2], "{page}");
    let (_, page) = app
        .api
        .get("/events?timestamp_since=2029-12-31T22:00:00Z")
        .await;
    assert_eq!(seqs(&page), [4], "{page}");
    let (_, page) = app
        .api
        .get("/events?timestamp_until=2029-12-31T22:00:00Z&topic=auth.>")
        .await;
    assert_eq!(seqs(&page), [1, 2], "{page}");

    // Everything was committed in the last minute, nothing is yet to come.
    let now = chrono::Utc::now();
    let minute_ago = (now - chrono::Duration::minutes(1)).to_rfc3339();
    let later = (now + chrono::Duration::minutes(1)).to_rfc3339();
    let since = format!("/events?since={}", urlencode(&minute_ago));
    assert_eq!(seqs(&app.api.get(&since).await.1), [1, 2, 3, 4]);
    let until = format!("/events?until={}", urlencode(&minute_ago));
    assert_eq!(seqs(&app.api.get(&until).await.1), Vec::<u64>::new());
    let after_now = format!(
        "/events?since={}&until={}",
        urlencode(&later),
        urlencode(&later)
    );
    assert_eq!(seqs(&app.api.get(&after_now).await.1), Vec::<u64>::new());

    // Newest first, paged with next_before.
    let (_, page) = app.api.get("/events?order=desc&limit=3").await;
    assert_eq!(seqs(&page), [4, 3, 2], "{page}");
    assert_eq!(page["next_before"], 2, "{page}");
    assert!(page.get("next_after").is_none(), "{page}");
    let (_, page) = app.api.get("/events?order=desc&limit=3&before=2").await;
    assert_eq!(seqs(&page), [1], "{page}");
    assert_eq!(page["next_before"], json!(null), "{page}");

    for (bad, says) in [
        (
            "/events?since=yesterday",
            "since must be an RFC 3339 instant",
        ),
        (
            "/events?timestamp_until=1",
            "timestamp_until must be an RFC 3339",
        ),
        ("/events?order=up", "order"),
        (
            "/events?topic=auth.>.x",
            "topic may use '>' only as its last token",
        ),
        ("/events?source=", "source must be 1-"),
    ] {
        let (status, problem) = app.api.get(bad).await;
        assert_eq!(status, 400, "{bad}: {problem}");
        let detail = problem["detail"].as_str().expect("detail");
        assert!(detail.contains(says), "{bad}: {detail}");
    }
}

/// Percent-encodes the `+` and `:` of an RFC 3339 instant for a query.
fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn page_limits_are_enforced() {
    let app = TestApp::spawn().await;
    for bad in [
        "/events?limit=0",
        "/events?limit=10001",
        "/events?after=-1",
        "/events?limit=x",
        "/events?topic=a%20b",
    ] {
        let (status, body) = app.api.get(bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["status"], 400, "{bad}: problem document");
    }
    let (status, body) = app.api.get("/events").await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"events": [], "next_after": null}));
}

#[tokio::test]
async fn missing_event_is_404_problem() {
    let app = TestApp::spawn().await;
    let (status, body) = app.api.get("/events/nope/nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["type"], "urn:logagg:problem:not-found");
}

#[tokio::test]
async fn topics_count_stored_events_only() {
    let app = TestApp::spawn().await;
    app.api
        .publish_ok(&json!([
            event("a", "1"),
            event("a", "2"),
            event("a", "1"),
            event("b", "1")
        ]))
        .await;
    let (status, body) = app.api.get("/topics").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"topics": [
            {"topic": "a", "events": 2, "last_seq": 2},
            {"topic": "b", "events": 1, "last_seq": 3},
        ]})
    );
}

#[tokio::test]
async fn health_is_ok_while_running() {
    let app = TestApp::spawn().await;
    let (status, body) = app.api.get("/health").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_events() {
    let app = TestApp::spawn().await;
    app.api
        .publish_ok(&json!([event("a", "1"), event("a", "1"), event("a", "2")]))
        .await;
    let _ = app.api.get("/events/a/missing").await;
    let response = app.api.get_raw("/metrics").await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("body");

    let mut samples = std::collections::HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("numeric value in {line:?}"));
        assert!(name.starts_with("logagg_"), "unprefixed metric {name}");
        samples.insert(name.to_owned(), value);
    }
    assert_eq!(samples["logagg_events_received_total"], 3.0);
    assert_eq!(samples["logagg_events_unique_total"], 2.0);
    assert_eq!(samples["logagg_events_duplicate_total"], 1.0);
    assert_eq!(
        samples[r#"logagg_http_requests_total{route="/publish",method="POST",status="200"}"#],
        1.0
    );
    assert_eq!(
        samples[r#"logagg_http_requests_total{route="/events/{topic}/{event_id}",method="GET",status="404"}"#],
        1.0
    );
    assert_eq!(samples["logagg_commit_batch_events_count"], 1.0);
    assert!(samples["logagg_store_size_bytes"] > 0.0);
    assert_eq!(samples["logagg_queue_depth_events"], 0.0);
    assert!(!text.contains("missing"), "ids must never become labels");
}

#[tokio::test]
async fn health_command_exits_zero_only_for_a_healthy_server() {
    let app = TestApp::spawn().await;
    // tokio's Command: the server runs on this test's runtime, so blocking
    // it while the child asks the server would deadlock.
    let run = async |envs: Vec<(&'static str, String)>| {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
            .arg("health")
            .env_remove("LOGAGG_URL")
            .env_remove("LOGAGG_LISTEN")
            .envs(envs)
            .output()
            .await
            .expect("running logagg health");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // Derived from the server's own listen address, as in the container.
    let listen = format!("0.0.0.0:{}", app.addr.port());
    let (code, _) = run(vec![("LOGAGG_LISTEN", listen)]).await;
    assert_eq!(code, Some(0));
    let (code, _) = run(vec![("LOGAGG_URL", app.api.base.clone())]).await;
    assert_eq!(code, Some(0));

    let closed = crate::common::closed_port();
    let (code, stderr) = run(vec![("LOGAGG_URL", format!("http://127.0.0.1:{closed}"))]).await;
    assert_eq!(code, Some(1));
    assert_eq!(stderr.trim().lines().count(), 1, "one-line error: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}

/// Issue 11, defect 6: `/stats` read its counters and `last_seq` in separate
/// statements, so under load `last_seq` lagged `unique_processed`. Every
/// answer must be one snapshot: with the embedded store `seq` has no gaps,
/// so `last_seq == unique_processed` always, and the counters add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stats_answer_is_one_snapshot_while_publishers_commit() {
    let app = TestApp::spawn().await;
    let publishers: Vec<_> = (0..4)
        .map(|client| {
            let api = app.api.separate_client();
            tokio::spawn(async move {
                for round in 0..150 {
                    // Each batch repeats one of its events: duplicates move
                    // the counters without moving `last_seq`.
                    let mut batch: Vec<Value> = (0..20)
                        .map(|i| event(&format!("t{i}"), &format!("{client}-{round}-{i}")))
                        .collect();
                    batch.push(batch[0].clone());
                    api.publish_ok(&json!(batch)).await;
                }
            })
        })
        .collect();
    let poller = app.api.separate_client();
    let mut polls = 0;
    let mut inconsistent = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !publishers.iter().all(tokio::task::JoinHandle::is_finished) {
        assert!(tokio::time::Instant::now() < deadline, "publishers finish");
        let stats = poller.stats().await;
        polls += 1;
        let count = |name: &str| stats[name].as_u64().expect("a count");
        let (received, unique, duplicates, last_seq) = (
            count("received"),
            count("unique_processed"),
            count("duplicate_dropped"),
            count("last_seq"),
        );
        if last_seq != unique || received != unique + duplicates {
            inconsistent.push(stats);
        }
    }
    for publisher in publishers {
        publisher.await.expect("publisher did not panic");
    }
    assert!(polls >= 20, "only {polls} polls overlapped the publishing");
    assert!(
        inconsistent.is_empty(),
        "{} of {polls} /stats answers mixed two states, e.g. {}",
        inconsistent.len(),
        inconsistent[0]
    );
    let stats = app.api.stats().await;
    assert_eq!(
        (
            stats["unique_processed"].as_u64(),
            stats["last_seq"].as_u64()
        ),
        (Some(12_000), Some(12_000))
    );
}

/// Issue 15: a misspelled parameter used to be ignored, so `?topc=auth.login`
/// silently answered with every topic.
#[tokio::test]
async fn unknown_query_parameters_are_named_on_every_endpoint() {
    let app = TestApp::spawn().await;
    app.api.publish_ok(&json!([event("auth.login", "1")])).await;

    let response = app.api.get_raw("/events?topc=auth.login&limit=5").await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.expect("problem");
    let detail = problem["detail"].as_str().expect("detail");
    assert!(
        detail.contains(r#""topc" (did you mean "topic"?)"#),
        "{detail}"
    );
    assert!(
        detail.contains(
            "topic, after, before, limit, order, since, until, timestamp_since, timestamp_until, source"
        ),
        "{detail}"
    );

    // Endpoints that take no parameters say so; those that take some list them.
    for (path, accepted) in [
        ("/topics?x=1", "takes no query parameters"),
        ("/stats?x=1", "takes no query parameters"),
        ("/health?x=1", "takes no query parameters"),
        ("/metrics?x=1", "takes no query parameters"),
        ("/events/auth.login/1?x=1", "takes no query parameters"),
        ("/subscribe?topic=a&form=now", "did you mean \"from\"?"),
    ] {
        let (status, problem) = app.api.get(path).await;
        assert_eq!(status, 400, "{path}: {problem}");
        let detail = problem["detail"].as_str().expect("detail");
        assert!(detail.contains(accepted), "{path}: {detail}");
    }
    for (path, content_type) in [
        ("/publish?x=1", "application/json"),
        ("/publish/app?id_feld=id", "application/json"),
        ("/v1/logs?x=1", "application/json"),
        ("/loki/api/v1/push?x=1", "application/json"),
    ] {
        let response = app
            .api
            .http
            .post(app.api.url(path))
            .header("content-type", content_type)
            .body("{}")
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 400, "{path}");
        let problem: Value = response.json().await.expect("problem");
        assert!(
            problem["detail"]
                .as_str()
                .expect("detail")
                .starts_with("unknown query parameter(s)"),
            "{path}: {problem}"
        );
    }
    // Nothing was stored by any of them.
    assert_eq!(app.api.stats().await["received"], 1);
}

#[tokio::test]
async fn an_empty_page_for_a_topic_never_published_says_so() {
    let app = TestApp::spawn().await;
    app.api
        .publish_ok(&json!([
            event("auth.login", "1"),
            event("auth.logout", "2")
        ]))
        .await;

    let (status, page) = app.api.get("/events?topic=auth.logn").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["topic_known"], false);
    assert_eq!(page["similar_topics"], json!(["auth.login", "auth.logout"]));

    // A known topic says so, whether the page is full or past its end.
    let (_, page) = app.api.get("/events?topic=auth.login").await;
    assert_eq!(page["topic_known"], true);
    assert_eq!(page["events"].as_array().expect("events").len(), 1);
    let (_, page) = app.api.get("/events?topic=auth.login&after=99").await;
    assert_eq!(page["topic_known"], true);
    assert!(page.get("similar_topics").is_none(), "{page}");
    // Without a topic filter there is nothing to know.
    let (_, page) = app.api.get("/events").await;
    assert!(page.get("topic_known").is_none(), "{page}");
}
