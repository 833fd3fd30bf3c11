//! CLI errors that say what to do (issue 15): a command pointed at
//! something that is not logagg (publish, health, subscribe) fails at once
//! with a hint to check `--url`
//! instead of retrying and pasting the page; an invalid environment
//! variable is named; `subscribe --from now` works as the API's `from=now`.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::common::{TestApp, event};

/// A web server that is not logagg: every request gets `status` and an
/// HTML page; `requests` counts them.
struct NotLogagg {
    url: String,
    requests: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl NotLogagg {
    async fn start(status: StatusCode) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let app = axum::Router::new().fallback(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                (
                    status,
                    Html("<html><body><h1>Welcome to nginx!</h1></body></html>"),
                )
                    .into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the stub");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the stub serves");
        });
        Self {
            url,
            requests,
            _task: task,
        }
    }
}

/// Runs `logagg ARGS` with `env` and `stdin`; (success, stdout, stderr).
async fn run(args: &[&str], env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"));
    command
        .args(args)
        .env_remove("LOGAGG_URL")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawning logagg");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    pipe.write_all(stdin.as_bytes())
        .await
        .expect("writing stdin");
    drop(pipe);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("logagg ends within 60 s (it must not retry a page that is not logagg)")
        .expect("running logagg");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn publish_and_health_pointed_at_a_web_page_fail_at_once_with_a_hint() {
    let line = format!("{}\n", event("auth.login", "1"));
    for status in [StatusCode::NOT_FOUND, StatusCode::INTERNAL_SERVER_ERROR] {
        let stub = NotLogagg::start(status).await;
        let (ok, _, stderr) = run(&["publish", "--url", &stub.url, "-"], &[], &line).await;
        assert!(!ok, "{status}: {stderr}");
        assert!(
            stderr.contains("an HTML page, not an answer from logagg; check --url"),
            "{status}: {stderr}"
        );
        assert!(
            !stderr.contains("nginx"),
            "the page is not pasted: {stderr}"
        );
        assert_eq!(
            stub.requests.load(Ordering::SeqCst),
            1,
            "{status}: not retried"
        );
    }
    // A 200 page is not a health answer either.
    for status in [StatusCode::OK, StatusCode::NOT_FOUND] {
        let stub = NotLogagg::start(status).await;
        let (ok, stdout, stderr) = run(&["health", "--url", &stub.url], &[], "").await;
        assert!(!ok, "{status}: {stdout}");
        assert!(stderr.contains("check --url"), "{status}: {stderr}");
        assert!(!stderr.contains("nginx"), "{stderr}");
    }
}

/// `logagg subscribe` at a web page, whatever its status (a 200 page is
/// no event stream): one request, a hint, and not the page.
#[tokio::test]
async fn subscribe_pointed_at_a_web_page_fails_at_once_with_a_hint() {
    for status in [
        StatusCode::OK,
        StatusCode::NOT_FOUND,
        StatusCode::BAD_GATEWAY,
    ] {
        let stub = NotLogagg::start(status).await;
        let (ok, _, stderr) = run(&["subscribe", "a.>", "--url", &stub.url], &[], "").await;
        assert!(!ok, "{status}: {stderr}");
        assert!(
            stderr.contains("an HTML page, not an answer from logagg; check --url"),
            "{status}: {stderr}"
        );
        assert!(!stderr.contains("nginx"), "{stderr}");
        assert_eq!(
            stub.requests.load(Ordering::SeqCst),
            1,
            "{status}: not retried"
        );
    }
}

#[tokio::test]
async fn an_invalid_environment_variable_is_named() {
    let (ok, _, stderr) = run(&["health"], &[("LOGAGG_HEALTH_TIMEOUT", "soon")], "").await;
    assert!(!ok);
    assert!(
        stderr.contains(
            "'--timeout <TIMEOUT>' (from the environment variable LOGAGG_HEALTH_TIMEOUT)"
        ),
        "{stderr}"
    );
    // Typed on the command line, the flag is what is named.
    let (ok, _, stderr) = run(
        &["health", "--timeout", "soon"],
        &[("LOGAGG_HEALTH_TIMEOUT", "soon")],
        "",
    )
    .await;
    assert!(!ok);
    assert!(!stderr.contains("environment variable"), "{stderr}");
    let (ok, _, stderr) = run(&["stats"], &[("LOGAGG_URL", "localhost:8080")], "").await;
    assert!(!ok);
    assert!(stderr.contains("LOGAGG_URL"), "{stderr}");
}

#[tokio::test]
async fn subscribe_from_now_skips_what_is_stored() {
    let app = TestApp::spawn().await;
    app.api
        .publish_ok(&json!([event("a", "old-1"), event("a", "old-2")]))
        .await;
    let subscriber = tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
        .args(["subscribe", ">", "--from", "now", "--count", "1"])
        .args(["--url", &app.api.base])
        .kill_on_drop(true)
        .output();
    let subscriber = tokio::spawn(subscriber);
    // Publish until the subscriber, once it has started, prints one.
    let mut published = 0;
    let output = loop {
        if subscriber.is_finished() {
            break subscriber.await.expect("join").expect("running logagg");
        }
        assert!(published < 600, "the subscriber printed nothing");
        app.api
            .publish_ok(&json!([event("a", &format!("new-{published}"))]))
            .await;
        published += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(output.status.success(), "{stdout}");
    let printed: Value = serde_json::from_str(stdout.trim()).expect("one event");
    assert!(
        printed["event_id"]
            .as_str()
            .expect("id")
            .starts_with("new-"),
        "{printed}"
    );
}
