//! Authentication (issue 11): bearer tokens with scopes from
//! `--auth-tokens`, the 401 and 403 answers, what the server logs, and the
//! client commands that send a token.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{ChildServer, TestApp, event};

const PUBLISHER: &str = "publisher-9f2c4e1a7b3d5608";
const READER: &str = "reader-1d7e3a9c5b2f4680";
const ADMIN: &str = "admin-6b8d0f2a4c1e3579";
/// Well-formed, but in no tokens file.
const STRANGER: &str = "stranger-0a1b2c3d4e5f6789";

/// A tokens file with one token per scope, in `dir`.
fn tokens_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens");
    let text = format!(
        "# logagg tokens: TOKEN SCOPE[,SCOPE...]\n\n{PUBLISHER} publish\n{READER} read\n{ADMIN} admin\n"
    );
    std::fs::write(&path, text).expect("writing the tokens file");
    path
}

/// A server in this process requiring the tokens of [`tokens_file`].
async fn server_with_tokens(adjust: impl FnOnce(&mut logagg::config::ServeConfig)) -> TestApp {
    TestApp::spawn_with(|config| {
        config.auth_tokens = Some(tokens_file(&config.data_dir));
        adjust(config);
    })
    .await
}

/// One request of the table: method, path, content type and body.
struct Call {
    method: Method,
    path: &'static str,
    content_type: &'static str,
    body: String,
}

impl Call {
    fn get(path: &'static str) -> Self {
        Self {
            method: Method::GET,
            path,
            content_type: "",
            body: String::new(),
        }
    }

    fn post(path: &'static str, content_type: &'static str, body: String) -> Self {
        Self {
            method: Method::POST,
            path,
            content_type,
            body,
        }
    }

    async fn send(&self, app: &TestApp, token: Option<&str>) -> reqwest::Response {
        let mut request = app
            .api
            .http
            .request(self.method.clone(), app.api.url(self.path))
            .body(self.body.clone());
        if !self.content_type.is_empty() {
            request = request.header("content-type", self.content_type);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} {}: {e}", self.method, self.path))
    }
}

/// Every route, with the scope it needs (`None`: open to anyone).
fn routes() -> Vec<(Call, Option<&'static str>)> {
    let otlp = json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "checkout"}}]},
        "scopeLogs": [{"logRecords": [{"timeUnixNano": "1761395400000000000",
                                      "body": {"stringValue": "paid"}}]}]}]});
    let loki = json!({"streams": [{"stream": {"service_name": "billing"},
                                  "values": [["1761395400000000000", "paid"]]}]});
    vec![
        (
            Call::post(
                "/publish",
                "application/json",
                event("auth.login", "1").to_string(),
            ),
            Some("publish"),
        ),
        (
            Call::post("/publish/app.logs", "text/plain", "a line\n".to_owned()),
            Some("publish"),
        ),
        (
            Call::post("/v1/logs", "application/json", otlp.to_string()),
            Some("publish"),
        ),
        (
            Call::post("/loki/api/v1/push", "application/json", loki.to_string()),
            Some("publish"),
        ),
        (Call::get("/events"), Some("read")),
        (Call::get("/events/auth.login/1"), Some("read")),
        (Call::get("/topics"), Some("read")),
        (Call::get("/stats"), Some("read")),
        (Call::get("/subscribe?topic=auth.*&from=0"), Some("read")),
        (Call::get("/metrics"), Some("read")),
        (Call::get("/health"), None),
        (Call::get("/"), None),
    ]
}

#[tokio::test]
async fn each_scope_reaches_its_routes_and_nothing_else() {
    let app = server_with_tokens(|_| {}).await;
    // The admin publishes first, so that the reads find something.
    app.api
        .http
        .post(app.api.url("/publish"))
        .bearer_auth(ADMIN)
        .json(&event("auth.login", "1"))
        .send()
        .await
        .expect("publish");
    for (token, scopes) in [
        (None, &[][..]),
        (Some(STRANGER), &[]),
        (Some(PUBLISHER), &["publish"]),
        (Some(READER), &["read"]),
        (Some(ADMIN), &["publish", "read"]),
    ] {
        for (call, needs) in routes() {
            let response = call.send(&app, token).await;
            let status = response.status().as_u16();
            let name = format!("{} {} with {token:?}", call.method, call.path);
            let allowed = needs.is_none_or(|scope| scopes.contains(&scope));
            if allowed {
                assert!(
                    (200..300).contains(&status),
                    "{name}: {status} {}",
                    response.text().await.unwrap_or_default()
                );
                continue;
            }
            let want = if scopes.is_empty() { 401 } else { 403 };
            assert_eq!(status, want, "{name}");
            assert!(
                response.headers().contains_key("www-authenticate"),
                "{name}: no challenge"
            );
        }
    }
}

#[tokio::test]
async fn refusals_are_problem_documents_with_an_rfc_6750_challenge() {
    let app = server_with_tokens(|_| {}).await;
    let stats = Call::get("/stats");
    for (token, status, challenge, kind, says) in [
        (
            None,
            401,
            r#"Bearer realm="logagg""#,
            "unauthorized",
            "requires a bearer token",
        ),
        (
            Some(STRANGER),
            401,
            r#"Bearer realm="logagg", error="invalid_token""#,
            "unauthorized",
            "not one this server knows",
        ),
        (
            Some(PUBLISHER),
            403,
            r#"Bearer realm="logagg", error="insufficient_scope", scope="read""#,
            "forbidden",
            "lacks the read scope",
        ),
    ] {
        let response = stats.send(&app, token).await;
        assert_eq!(response.status().as_u16(), status, "{token:?}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("www-authenticate"), challenge, "{token:?}");
        assert_eq!(header("content-type"), "application/problem+json");
        let body: Value = response.json().await.expect("a problem document");
        assert_eq!(body["type"], format!("urn:logagg:problem:{kind}"));
        assert_eq!(body["status"], status);
        let detail = body["detail"].as_str().expect("a detail");
        assert!(detail.contains(says), "{detail}");
        for secret in [STRANGER, PUBLISHER] {
            assert!(
                !body.to_string().contains(secret),
                "the answer echoes a token"
            );
        }
    }
    // Another scheme is not a bearer token.
    let basic = app
        .api
        .http
        .get(app.api.url("/stats"))
        .header("authorization", format!("Basic {READER}"))
        .send()
        .await
        .expect("GET /stats");
    assert_eq!(basic.status(), 401);
    let body: Value = basic.json().await.expect("problem");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("must be one `Bearer TOKEN`")),
        "{body}"
    );
}

#[tokio::test]
async fn health_and_metrics_follow_their_access_flags() {
    use logagg::http::auth::RouteAccess;
    let app = server_with_tokens(|config| {
        config.health_access = RouteAccess::Read;
        config.metrics_access = RouteAccess::Open;
    })
    .await;
    assert_eq!(Call::get("/health").send(&app, None).await.status(), 401);
    assert_eq!(
        Call::get("/health").send(&app, Some(READER)).await.status(),
        200
    );
    assert_eq!(Call::get("/metrics").send(&app, None).await.status(), 200);
    // Unknown paths stay 404 for anyone (there is nothing to protect).
    assert_eq!(Call::get("/nowhere").send(&app, None).await.status(), 404);
}

#[tokio::test]
async fn without_a_tokens_file_every_route_is_open() {
    let app = TestApp::spawn().await;
    for (call, _) in routes() {
        let status = call.send(&app, None).await.status();
        assert!(
            status.is_success(),
            "{} {}: {status}",
            call.method,
            call.path
        );
    }
}

/// The comparison is constant-time by construction: every configured
/// digest is compared with `subtle`'s `ct_eq`, and the loop never stops
/// early. A code fact, checked on the source (timing tests are too noisy
/// to mean anything here).
#[test]
fn tokens_are_compared_in_constant_time() {
    let source = include_str!("../../src/http/auth.rs");
    let start = source.find("fn scopes_of(").expect("auth.rs has scopes_of");
    let body = &source[start..start + source[start..].find("\n    }\n").expect("its end")];
    assert!(body.contains(".ct_eq(&presented)"), "{body}");
    for early_exit in ["break", "return", "==", "find(", "position(", "any("] {
        assert!(!body.contains(early_exit), "scopes_of uses {early_exit}");
    }
    assert!(source.contains("use subtle::ConstantTimeEq;"));
}

#[tokio::test]
async fn tokens_never_appear_in_the_servers_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = tokens_file(dir.path());
    let data = dir.path().join("data");
    let (server, log) = ChildServer::start_logged(
        &data,
        &["--auth-tokens", tokens.to_str().expect("UTF-8 path")],
    )
    .await;
    let api = &server.api;
    let publish = |token: &'static str| {
        api.http
            .post(api.url("/publish"))
            .bearer_auth(token)
            .json(&event("auth.login", token))
            .send()
    };
    assert_eq!(publish(PUBLISHER).await.expect("publish").status(), 200);
    assert_eq!(publish(READER).await.expect("publish").status(), 403);
    assert_eq!(publish(STRANGER).await.expect("publish").status(), 401);
    for token in [READER, ADMIN, PUBLISHER, STRANGER] {
        api.http
            .get(api.url("/stats"))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /stats");
    }
    // A token in the URL (RFC 6750's access_token, which the server
    // refuses) is logged without its value.
    for name in ["access_token", "Token"] {
        let refused = api
            .http
            .get(api.url(&format!("/stats?{name}={ADMIN}&x=1")))
            .send()
            .await
            .expect("GET /stats");
        assert_eq!(refused.status(), 401);
    }
    // A server error is logged with its request: make sure that path is
    // taken too (a request the router does not know, with a token).
    api.http
        .get(api.url("/nowhere"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("GET /nowhere");
    server.signal_and_wait("TERM").await;
    let text = log.text();
    assert!(
        text.contains("finished processing request"),
        "the trace-level log holds the requests: {text}"
    );
    for token in [PUBLISHER, READER, ADMIN, STRANGER] {
        assert!(!text.contains(token), "the log holds a token");
    }
    assert!(
        text.contains("/stats?access_token=REDACTED&x=1"),
        "the request with a token in its URL is logged, redacted: {text}"
    );
    for line in text.lines() {
        assert!(
            !line.to_ascii_lowercase().contains("authorization"),
            "the log holds an Authorization header: {line}"
        );
    }
}

/// Runs `logagg serve` that is expected to fail at once; its stderr.
fn serve_fails(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
        .arg("serve")
        .args(args)
        .env("LOGAGG_LISTEN", "127.0.0.1:0")
        .env("LOGAGG_DATA_DIR", dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .output()
        .expect("running logagg serve");
    assert!(!output.status.success(), "serve {args:?} started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_tokens_file_stops_the_server_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = "s3cret-0123456789abcdef";
    for (text, line, says) in [
        (
            format!("# ok\n{READER} read\n{secret} write\n"),
            3,
            "unknown scope \"write\"",
        ),
        (format!("{secret}\n"), 1, "needs its scopes"),
        ("short read\n".to_owned(), 1, "shorter than 16 characters"),
        ("# nothing\n".to_owned(), 0, "holds no tokens"),
    ] {
        let path = dir.path().join("tokens");
        std::fs::write(&path, &text).expect("write");
        let path = path.to_str().expect("UTF-8 path");
        let stderr = serve_fails(&["--auth-tokens", path]);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        let expected = match line {
            0 => format!("error: {path} holds no tokens"),
            n => format!("error: tokens file {path}:{n}: "),
        };
        assert!(stderr.starts_with(&expected), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains(secret), "the error echoes a token");
    }
    let missing = serve_fails(&["--auth-tokens", "/nonexistent/tokens"]);
    assert_eq!(missing.lines().count(), 1, "{missing}");
    assert!(
        missing.starts_with("error: reading the tokens file /nonexistent/tokens: "),
        "{missing}"
    );
}

#[tokio::test]
async fn a_server_open_beyond_loopback_says_so_loudly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, log) =
        ChildServer::start_logged(&dir.path().join("data"), &["--listen", "0.0.0.0:0"]).await;
    let (loopback, loopback_log) = ChildServer::start_logged(&dir.path().join("d2"), &[]).await;
    drop((server, loopback));
    let warning = log
        .text()
        .lines()
        .find(|line| line.contains("AUTHENTICATION IS OFF"))
        .map(str::to_owned)
        .expect("a warning when open beyond loopback");
    assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
    assert!(warning.contains("--auth-tokens"), "{warning}");
    assert!(!loopback_log.text().contains("AUTHENTICATION IS OFF"));
}

#[tokio::test]
async fn a_tokens_file_others_may_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = tokens_file(dir.path());
    let path = tokens.to_str().expect("UTF-8 path");
    let warned = |log: &crate::common::ServerLog| log.text().contains("`chmod 600` it");
    for (mode, warning) in [(0o644, true), (0o600, false)] {
        std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let data = dir.path().join(format!("data-{mode:o}"));
        let (server, log) = ChildServer::start_logged(&data, &["--auth-tokens", path]).await;
        drop(server);
        assert_eq!(warned(&log), warning, "mode {mode:o}");
    }
}

/// What a client command printed and how it exited.
struct Ran {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `logagg ARGS` with `env` (and no token from the test's own
/// environment), stdin from `input`, within a minute.
async fn logagg(args: &[&str], env: &[(&str, &str)], input: &str) -> Ran {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_logagg"));
    command
        .args(args)
        .env_remove("LOGAGG_TOKEN")
        .env_remove("LOGAGG_TOKEN_FILE")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("spawning logagg");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(input.as_bytes()).await.expect("stdin");
    drop(stdin);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("logagg {args:?} did not finish"))
        .expect("waiting for logagg");
    Ran {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// How many requests to `route` the server answered with `status`, from
/// its `/metrics` (read with the admin token).
async fn answered(app: &TestApp, route: &str, status: u16) -> u64 {
    let text = Call::get("/metrics")
        .send(app, Some(ADMIN))
        .await
        .text()
        .await
        .expect("metrics");
    text.lines()
        .filter(|line| line.starts_with("logagg_http_requests_total{"))
        .filter(|line| {
            line.contains(&format!("route=\"{route}\""))
                && line.contains(&format!("status=\"{status}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn publish_sends_its_token_and_a_refusal_is_one_line_without_retries() {
    let app = server_with_tokens(|_| {}).await;
    let url = app.api.base.clone();
    let input = format!("{}\n", event("cli.publish", "1"));
    let publish = |extra: &'static [&'static str]| {
        let mut args = vec!["publish", "--url", &url, "--concurrency", "1", "-"];
        args.extend_from_slice(extra);
        logagg_owned(args, input.clone())
    };
    for (extra, says) in [
        (
            &[][..],
            "the server requires a bearer token (401 Unauthorized): pass --token",
        ),
        (
            &["--token", STRANGER][..],
            "the server refused the token (401 Unauthorized)",
        ),
        (
            &["--token", READER][..],
            "the token lacks the publish scope (403 Forbidden)",
        ),
    ] {
        let ran = publish(extra).await;
        assert!(!ran.success, "{extra:?}: {}", ran.stdout);
        assert_eq!(ran.stderr.lines().count(), 1, "{extra:?}: {}", ran.stderr);
        assert!(ran.stderr.contains(says), "{extra:?}: {}", ran.stderr);
        assert!(ran.stderr.contains("not stored"), "{}", ran.stderr);
    }
    // One attempt each: a refused token is never retried.
    assert_eq!(answered(&app, "/publish", 401).await, 2);
    assert_eq!(answered(&app, "/publish", 403).await, 1);

    let ran = publish(&["--token", PUBLISHER]).await;
    assert!(ran.success, "{}", ran.stderr);
    // --verify reads /stats, which needs read too.
    let ran = publish(&["--token", PUBLISHER, "--verify"]).await;
    assert!(!ran.success);
    assert!(
        ran.stderr
            .contains("(for --verify): the token lacks the read scope"),
        "{}",
        ran.stderr
    );
    let ran = publish(&["--token", ADMIN, "--verify"]).await;
    assert!(ran.success, "{}", ran.stderr);
}

/// [`logagg`] with owned arguments, for closures.
async fn logagg_owned(args: Vec<&str>, input: String) -> Ran {
    logagg(&args, &[], &input).await
}

#[tokio::test]
async fn subscribe_and_health_send_their_token_from_a_flag_a_file_or_the_environment() {
    use logagg::http::auth::RouteAccess;
    let app = server_with_tokens(|config| config.health_access = RouteAccess::Read).await;
    let url = app.api.base.as_str();
    let stored = Call::post(
        "/publish",
        "application/json",
        event("cli.subscribe", "1").to_string(),
    )
    .send(&app, Some(PUBLISHER))
    .await;
    assert_eq!(stored.status(), 200);
    let dir = tempfile::tempdir().expect("temp dir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{READER}\n")).expect("write");
    let token_file = token_file.to_str().expect("UTF-8 path");

    let subscribe = ["subscribe", "cli.*", "--url", url, "--count", "1"];
    let ran = logagg(&subscribe, &[], "").await;
    assert!(!ran.success);
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("requires a bearer token"),
        "{}",
        ran.stderr
    );
    let ran = logagg(&subscribe, &[("LOGAGG_TOKEN", PUBLISHER)], "").await;
    assert!(
        ran.stderr.contains("lacks the read scope"),
        "{}",
        ran.stderr
    );
    let ran = logagg(&subscribe, &[("LOGAGG_TOKEN", READER)], "").await;
    assert!(ran.success, "{}", ran.stderr);
    let printed: Value = serde_json::from_str(ran.stdout.trim()).expect("one event");
    assert_eq!(printed["event_id"], "1");
    let with_file = [&subscribe[..], &["--token-file", token_file]].concat();
    assert!(logagg(&with_file, &[], "").await.success);

    let health = ["health", "--url", url];
    let ran = logagg(&health, &[], "").await;
    assert!(!ran.success);
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("requires a bearer token"),
        "{}",
        ran.stderr
    );
    let with_token = [&health[..], &["--token", READER]].concat();
    let ran = logagg(&with_token, &[], "").await;
    assert!(ran.success, "{}", ran.stderr);
    assert!(ran.stdout.starts_with("healthy"), "{}", ran.stdout);
    let both = [&with_token[..], &["--token-file", token_file]].concat();
    let ran = logagg(&both, &[], "").await;
    assert!(
        !ran.success,
        "--token and --token-file together are refused"
    );
}

/// The commands that read (`events`, `topics`, `stats`, `export`) take the
/// same token arguments as `subscribe`; a refusal is one line saying which
/// credential is wrong, and a read token gets the data.
#[tokio::test]
async fn reading_commands_send_their_token_and_a_refusal_is_one_line() {
    let app = server_with_tokens(|_| {}).await;
    let url = app.api.base.as_str();
    let stored = Call::post(
        "/publish",
        "application/json",
        event("cli.read", "1").to_string(),
    )
    .send(&app, Some(PUBLISHER))
    .await;
    assert_eq!(stored.status(), 200);

    for command in [
        &["events", "cli.read", "--json"][..],
        &["topics", "--json"],
        &["stats", "--json"],
        &["export"],
    ] {
        let args = [command, &["--url", url]].concat();
        let refusals = [
            (None, "requires a bearer token"),
            (Some(PUBLISHER), "lacks the read scope"),
            (
                Some("an-unknown-token-of-enough-length"),
                "refused the token",
            ),
        ];
        for (token, expected) in refusals {
            let env: Vec<(&str, &str)> = token.map(|t| ("LOGAGG_TOKEN", t)).into_iter().collect();
            let ran = logagg(&args, &env, "").await;
            assert!(!ran.success, "{command:?} with {token:?}");
            assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
            assert!(ran.stderr.contains(expected), "{command:?}: {}", ran.stderr);
        }
        let ran = logagg(&args, &[("LOGAGG_TOKEN", READER)], "").await;
        assert!(ran.success, "{command:?}: {}", ran.stderr);
        assert!(
            ran.stdout.contains("cli.read"),
            "{command:?}: {}",
            ran.stdout
        );
    }
}
