//! The reading commands `logagg events`, `topics` and `stats` against a
//! real server: NDJSON/JSON when piped (as here), aligned tables with
//! `--table`, paging, patterns, `--limit` and `--follow` (issue 15).

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{TestApp, closed_port, event};

/// Runs `logagg ARGS --url <app>` and returns its stdout, asserting success.
async fn logagg(app: &TestApp, args: &[&str]) -> String {
    let (ok, stdout, stderr) = logagg_status(app, args).await;
    assert!(ok, "logagg {args:?} failed: {stderr}");
    stdout
}

async fn logagg_status(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
        .args(args)
        .args(["--url", &app.api.base])
        .env_remove("LOGAGG_URL")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the command ends within 60 s")
        .expect("running logagg");
    (
        output.status.success(),
        String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    )
}

fn seqs(ndjson: &str) -> Vec<u64> {
    ndjson
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("one event per line");
            event["seq"].as_u64().expect("seq")
        })
        .collect()
}

/// 25 events: `auth.login` 0, 3, 6, ...; `auth.logout` 1, 4, ...; `billing.paid` 2, 5, ...
async fn app_with_events() -> TestApp {
    let app = TestApp::spawn().await;
    let topics = ["auth.login", "auth.logout", "billing.paid"];
    let batch: Vec<Value> = (0..25)
        .map(|i| event(topics[i % 3], &format!("e{i}")))
        .collect();
    app.api.publish_ok(&json!(batch)).await;
    app
}

#[tokio::test]
async fn events_pages_through_everything_as_ndjson_when_piped() {
    let app = app_with_events().await;
    // Pages of 4 events: the command follows next_after to the end.
    let all = logagg(&app, &["events", "--page-size", "4"]).await;
    assert_eq!(seqs(&all), (1..=25).collect::<Vec<_>>());
    // Each line is the event exactly as the API answers it.
    let api = app.api.all_events(None).await;
    let first: Value = serde_json::from_str(all.lines().next().expect("a line")).expect("JSON");
    assert_eq!(first, api[0]);

    let exact = logagg(&app, &["events", "auth.login", "--page-size", "3"]).await;
    assert_eq!(seqs(&exact), [1, 4, 7, 10, 13, 16, 19, 22, 25]);
    let pattern = logagg(
        &app,
        &["events", "auth.*", "--after", "20", "--page-size", "2"],
    )
    .await;
    assert_eq!(seqs(&pattern), [22, 23, 25]);
    let limited = logagg(&app, &["events", ">", "--after", "5", "--limit", "3"]).await;
    assert_eq!(seqs(&limited), [6, 7, 8]);
}

#[tokio::test]
async fn events_filters_by_time_and_source_on_the_server() {
    let app = app_with_events().await;
    let mut other = event("auth.login", "from-cron");
    other["source"] = json!("cron");
    app.api.publish_ok(&json!([other])).await;

    let cron = logagg(&app, &["events", "auth.>", "--source", "cron"]).await;
    assert_eq!(seqs(&cron), [26]);
    let recent = logagg(&app, &["events", "--since", "10m", "--page-size", "7"]).await;
    assert_eq!(seqs(&recent), (1..=26).collect::<Vec<_>>());
    let old = logagg(&app, &["events", "--until", "10m"]).await;
    assert_eq!(seqs(&old), Vec::<u64>::new());
    let future = logagg(&app, &["events", "--since", "2999-01-01T00:00:00Z"]).await;
    assert_eq!(seqs(&future), Vec::<u64>::new());

    let (ok, _, stderr) = logagg_status(&app, &["events", "--since", "yesterday"]).await;
    assert!(!ok);
    assert!(stderr.contains("expected an RFC 3339 instant"), "{stderr}");
    let (ok, _, stderr) = logagg_status(&app, &["events", "--until", "1m", "--follow"]).await;
    assert!(!ok);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[tokio::test]
async fn events_grep_searches_payloads_on_the_server_and_says_what_it_could_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_path_buf();
    let said = |i: usize, text: &str| {
        let mut e = event("orders.eu", &format!("o{i}"));
        e["payload"] = json!({ "message": text });
        e
    };
    {
        let mut before = TestApp::spawn_with(|config| config.data_dir = data_dir.clone()).await;
        before.api.publish_ok(&json!([said(1, "timeout")])).await;
        before.stop().await;
    }
    let app = TestApp::spawn_with(|config| {
        config.data_dir = data_dir;
        config.search = vec![
            logagg::event::TopicPattern::parse("orders.>", &Default::default()).expect("pattern"),
        ];
    })
    .await;
    app.api
        .publish_ok(&json!([
            said(2, "Gateway TIMEOUT"),
            said(3, "paid"),
            said(4, "timeout again"),
        ]))
        .await;
    let (ok, stdout, stderr) = logagg_status(
        &app,
        &[
            "events",
            "orders.eu",
            "--grep",
            "timeout",
            "--page-size",
            "1",
        ],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(seqs(&stdout), [2, 4]);
    assert_eq!(
        stderr
            .matches("note: events up to seq 1 were stored before their topics were indexed")
            .count(),
        1,
        "{stderr}"
    );
    // A topic the server does not index: its answer, in one line.
    let (ok, _, stderr) = logagg_status(&app, &["events", "--grep", "timeout"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("q searches only the topics this server indexes (orders.>)"),
        "{stderr}"
    );
    let (ok, _, stderr) =
        logagg_status(&app, &["events", "orders.eu", "--grep", "x", "--follow"]).await;
    assert!(!ok);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[tokio::test]
async fn events_as_a_table_are_aligned_with_a_header() {
    let app = app_with_events().await;
    let table = logagg(&app, &["events", "billing.paid", "--table", "--limit", "2"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("SEQ  TIMESTAMP"), "{table}");
    assert!(lines[0].ends_with("EVENT ID  PAYLOAD"), "{table}");
    let payload_column = lines[0].find("PAYLOAD").expect("payload column");
    for line in &lines[1..] {
        assert!(line.contains("billing.paid"), "{table}");
        assert_eq!(line.find('{'), Some(payload_column), "aligned: {table}");
    }
    assert!(lines[1].starts_with("  3  "), "{table}");
}

#[tokio::test]
async fn events_for_a_topic_never_published_says_so_on_stderr() {
    let app = app_with_events().await;
    let (ok, stdout, stderr) = logagg_status(&app, &["events", "auth.logn"]).await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.contains(r#"topic "auth.logn" has never been published to (similar: auth.login"#),
        "{stderr}"
    );
    let (ok, _, stderr) = logagg_status(&app, &["events", "auth.>.x"]).await;
    assert!(!ok);
    assert!(
        stderr.starts_with("error: pattern \"auth.>.x\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn events_follow_goes_on_with_new_events_after_the_stored_ones() {
    let app = app_with_events().await;
    let follow = tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
        .args([
            "events",
            "billing.*",
            "--after",
            "20",
            "--follow",
            "--limit",
            "3",
        ])
        .args(["--url", &app.api.base])
        .kill_on_drop(true)
        .output();
    let follow = tokio::spawn(follow);
    // Stored: 21 and 24 match; the third comes from the live stream (or
    // from the store, if the command has not reached /subscribe yet: the
    // cursor hands over either way).
    app.api
        .publish_ok(&json!([
            event("auth.login", "late-1"),
            event("billing.paid", "late-2")
        ]))
        .await;
    let output = tokio::time::timeout(Duration::from_secs(60), follow)
        .await
        .expect("follow stops at --limit within 60 s")
        .expect("join")
        .expect("running logagg");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(output.status.success(), "{stdout}");
    assert_eq!(seqs(&stdout), [21, 24, 27]);
}

#[tokio::test]
async fn topics_and_stats_print_json_when_piped_and_tables_when_asked() {
    let app = app_with_events().await;
    let topics: Value = serde_json::from_str(&logagg(&app, &["topics"]).await).expect("JSON");
    assert_eq!(topics, app.api.get("/topics").await.1);

    let table = logagg(&app, &["topics", "--table"]).await;
    assert_eq!(
        table,
        "TOPIC         EVENTS  LAST SEQ\n\
         auth.login         9        25\n\
         auth.logout        8        23\n\
         billing.paid       8        24\n\
         3 topic(s), 25 event(s)\n"
    );

    let stats: Value =
        serde_json::from_str(&logagg(&app, &["stats", "--json"]).await).expect("JSON");
    assert_eq!(stats["received"], 25);
    assert_eq!(stats["unique_processed"], 25);
    let table = logagg(&app, &["stats", "--table"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "received               25  events", "{table}");
    assert_eq!(
        lines[2], "duplicates dropped      0  events (0.0% of received)",
        "{table}"
    );
}

#[tokio::test]
async fn reading_commands_name_the_url_when_the_server_is_not_there() {
    let app = TestApp::spawn().await;
    for command in ["events", "topics", "stats"] {
        let url = format!("http://127.0.0.1:{}", closed_port());
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
            .args([command, "--url", &url])
            .output()
            .await
            .expect("running logagg");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success());
        assert!(
            stderr.contains(&url) && stderr.contains("check --url"),
            "{command}: {stderr}"
        );
    }
    drop(app);
}
