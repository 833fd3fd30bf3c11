//! `/metrics` passes `promtool check metrics` (Debian's `prometheus`
//! package; `.ci/setup/45-promtool.sh` installs it), and speaks both
//! exposition formats: OpenMetrics to a scraper that asks for it, the
//! classic text format to everyone else.

use std::process::Stdio;

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::common::{TestApp, event, skip};

/// `promtool` on the `PATH`, else Debian's.
fn promtool() -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|path| path.is_file())
    });
    on_path.or_else(|| {
        let debian = std::path::PathBuf::from("/usr/bin/promtool");
        debian.is_file().then_some(debian)
    })
}

#[tokio::test]
async fn metrics_pass_promtool_check_metrics() {
    let Some(promtool) = promtool() else {
        skip(
            "metrics_pass_promtool_check_metrics",
            "promtool is not installed (Debian package prometheus)",
        );
        return;
    };
    let app = TestApp::spawn().await;
    // Something in every metric: new, duplicate and conflicting events,
    // reads, a 404 and a subscriber's delivery.
    let mut changed = event("a", "1");
    changed["payload"] = json!({"other": true});
    app.api
        .publish_ok(&json!([
            event("a", "1"),
            event("a", "1"),
            changed,
            event("b", "2")
        ]))
        .await;
    let _ = app.api.get("/events?limit=5").await;
    let _ = app.api.get("/events/a/missing").await;
    let response = app.api.get_raw("/metrics").await;
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.expect("metrics");

    let mut child = tokio::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running promtool");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(text.as_bytes()).await.expect("writing");
    drop(stdin);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("promtool ends within 60 s")
        .expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool check metrics:\n{report}\non:\n{text}"
    );
    assert_eq!(report.trim(), "", "promtool has remarks on:\n{text}");
}

#[tokio::test]
async fn metrics_are_openmetrics_only_for_a_scraper_that_asks() {
    let app = TestApp::spawn().await;
    app.api.publish_ok(&json!([event("a", "1")])).await;
    let response = app
        .api
        .http
        .get(app.api.url("/metrics"))
        // What Prometheus sends.
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let open = response.text().await.expect("metrics");
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        open.contains("# TYPE logagg_events_received counter\n"),
        "{open}"
    );
    let text = app
        .api
        .get_raw("/metrics")
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        text.contains("# TYPE logagg_events_received_total counter\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"), "{text}");
}
