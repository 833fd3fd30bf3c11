//! `logagg export` (issue 13): NDJSON that `logagg publish` takes; a
//! round trip into another server copies every event exactly, a second
//! import stores nothing new, and the selections (`--topic`, `--since`,
//! `--until`) and bad flags behave.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::common::{TestApp, key};

/// Runs `logagg ARGS`: exit status, stdout, stderr.
async fn logagg(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("running logagg");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Events whose content exercises the round trip: big numbers, escapes,
/// nesting, three topics.
fn events() -> Vec<Value> {
    (0..300)
        .map(|i| {
            let topic = ["a.x", "a.y", "b"][i % 3];
            json!({
                "topic": topic,
                "event_id": format!("id-{i}"),
                "timestamp": format!("2025-10-25T12:{:02}:00+02:00", i % 60),
                "source": "src \u{e9}",
                "payload": {"n": i, "big": 123456789012345678901234567890_u128.to_string(),
                            "text": "tab\tquote\" \u{1F600}", "nested": {"list": [1, 2.5, null]}},
            })
        })
        .collect()
}

/// Every stored event as published (without `seq` and `received_at`), by key.
async fn contents(app: &TestApp) -> BTreeMap<(String, String), Value> {
    app.api
        .all_events(None)
        .await
        .into_iter()
        .map(|mut event| {
            let object = event.as_object_mut().expect("an object");
            object.remove("seq");
            object.remove("received_at");
            (key(&event), event)
        })
        .collect()
}

#[tokio::test]
async fn an_export_re_imports_into_another_server_exactly_and_idempotently() {
    let source = TestApp::spawn().await;
    source.api.publish_ok(&Value::Array(events())).await;
    let (ok, ndjson, stderr) = logagg(&["export", "--url", &source.api.base]).await;
    assert!(ok, "{stderr}");
    assert_eq!(ndjson.lines().count(), 300, "{stderr}");
    assert!(stderr.contains("exported 300 events"), "{stderr}");

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("export.ndjson");
    std::fs::write(&file, &ndjson).expect("writing the export");
    let file = file.to_str().expect("a UTF-8 path");
    let target = TestApp::spawn().await;
    for round in 0..2 {
        let (ok, _, stderr) = logagg(&["publish", "--url", &target.api.base, file]).await;
        assert!(ok, "import {round}: {stderr}");
    }
    assert_eq!(contents(&target).await, contents(&source).await);
    let counters = target.api.counters().await;
    assert_eq!(
        (
            counters.unique_processed,
            counters.duplicate_dropped,
            counters.conflicts
        ),
        (300, 300, 0),
        "the second import stored nothing new and conflicted with nothing"
    );
}

#[tokio::test]
async fn an_export_selects_by_topic_pattern_and_time_of_receipt() {
    let app = TestApp::spawn().await;
    app.api.publish_ok(&Value::Array(events())).await;
    let url = app.api.base.as_str();
    let count = async |extra: &[&str]| {
        let mut args = vec!["export", "--url", url];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = logagg(&args).await;
        assert!(ok, "{extra:?}: {stderr}");
        stdout.lines().count()
    };
    assert_eq!(count(&["--topic", "a.*"]).await, 200);
    assert_eq!(count(&["--topic", "b"]).await, 100);
    assert_eq!(count(&["--topic", "c.>"]).await, 0);
    assert_eq!(count(&["--since", "2000-01-01T00:00:00Z"]).await, 300);
    assert_eq!(count(&["--since", "2999-01-01T00:00:00Z"]).await, 0);
    assert_eq!(count(&["--until", "2000-01-01T00:00:00Z"]).await, 0);

    for (bad, flag) in [
        (&["--topic", "a.>.b"][..], "--topic"),
        (&["--since", "yesterday"][..], "--since"),
        (
            &[
                "--since",
                "2026-01-02T00:00:00Z",
                "--until",
                "2026-01-01T00:00:00Z",
            ][..],
            "--since",
        ),
    ] {
        let mut args = vec!["export", "--url", url];
        args.extend_from_slice(bad);
        let (ok, stdout, stderr) = logagg(&args).await;
        assert!(!ok && stdout.is_empty(), "{bad:?} was accepted");
        assert!(stderr.contains(flag), "{bad:?}: {stderr}");
    }
}
