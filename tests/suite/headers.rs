//! Security headers and CORS (issue 11): `X-Content-Type-Options: nosniff`
//! on every answer, and cross-origin access that is off unless
//! `--cors-origin` allows an origin.

use reqwest::Method;
use reqwest::header::HeaderMap;

use crate::common::{TestApp, event};

const READER: &str = "reader-3e5a7c9b1d0f2468";
const ALLOWED: &str = "https://ops.example.com";

/// A server requiring [`READER`] for reads, allowing `origins` (if any).
async fn server(origins: &[&str]) -> TestApp {
    let origins: Vec<String> = origins.iter().map(|o| (*o).to_owned()).collect();
    TestApp::spawn_with(|config| {
        let path = config.data_dir.join("tokens");
        std::fs::write(&path, format!("{READER} read\n")).expect("tokens file");
        config.auth_tokens = Some(path);
        config.cors_origins = origins;
    })
    .await
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[tokio::test]
async fn every_answer_says_nosniff() {
    let app = server(&[]).await;
    let http = &app.api.http;
    let url = |path: &str| app.api.url(path);
    for (what, request) in [
        ("200", http.get(url("/stats")).bearer_auth(READER)),
        ("the page", http.get(url("/"))),
        ("401", http.get(url("/stats"))),
        ("404", http.get(url("/nowhere"))),
        ("405", http.delete(url("/health"))),
        (
            "400",
            http.get(url("/events?limit=many")).bearer_auth(READER),
        ),
        (
            "an event stream",
            http.get(url("/subscribe?topic=a")).bearer_auth(READER),
        ),
    ] {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            header(response.headers(), "x-content-type-options"),
            "nosniff",
            "{what}: {}",
            response.status()
        );
    }
}

/// A preflight from `origin` for a GET with a bearer token.
async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.api
        .http
        .request(Method::OPTIONS, app.api.url("/events"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("OPTIONS /events")
}

/// A GET of `/stats` from `origin`, with or without the token.
async fn get_from(app: &TestApp, origin: &str, token: bool) -> reqwest::Response {
    let mut request = app
        .api
        .http
        .get(app.api.url("/stats"))
        .header("origin", origin);
    if token {
        request = request.bearer_auth(READER);
    }
    request.send().await.expect("GET /stats")
}

#[tokio::test]
async fn cross_origin_access_is_off_by_default() {
    let app = server(&[]).await;
    let response = preflight(&app, ALLOWED).await;
    assert!(!response.status().is_success(), "{}", response.status());
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        ""
    );
    let response = get_from(&app, ALLOWED, true).await;
    assert_eq!(
        response.status(),
        200,
        "the server answers; the browser hides it"
    );
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        ""
    );
}

#[tokio::test]
async fn an_allowed_origin_may_send_a_token_and_read_the_answers() {
    let app = server(&[ALLOWED, "http://localhost:3000"]).await;
    // The preflight needs no token, and allows the Authorization header.
    let response = preflight(&app, ALLOWED).await;
    assert!(response.status().is_success(), "{}", response.status());
    let headers = response.headers();
    assert_eq!(header(headers, "access-control-allow-origin"), ALLOWED);
    assert!(header(headers, "access-control-allow-headers").contains("authorization"));
    assert!(header(headers, "access-control-allow-methods").contains("get"));
    assert_eq!(header(headers, "access-control-allow-credentials"), "");
    // The actual request, and a refusal the page can read.
    let response = get_from(&app, ALLOWED, true).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        ALLOWED
    );
    assert!(header(response.headers(), "vary").contains("origin"));
    let refused = get_from(&app, ALLOWED, false).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(
        header(refused.headers(), "access-control-allow-origin"),
        ALLOWED
    );
    assert!(
        header(refused.headers(), "access-control-expose-headers").contains("www-authenticate")
    );
    // Another origin gets nothing, before or after.
    let other = "https://evil.example";
    assert_eq!(
        header(
            preflight(&app, other).await.headers(),
            "access-control-allow-origin"
        ),
        ""
    );
    assert_eq!(
        header(
            get_from(&app, other, true).await.headers(),
            "access-control-allow-origin"
        ),
        ""
    );
}

#[tokio::test]
async fn a_star_allows_every_origin_without_credentials() {
    let app = server(&["*"]).await;
    let response = preflight(&app, "https://anywhere.example").await;
    assert!(response.status().is_success());
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        "*"
    );
    assert!(header(response.headers(), "access-control-allow-headers").contains("authorization"));
    let published = app
        .api
        .http
        .post(app.api.url("/publish"))
        .header("origin", "https://anywhere.example")
        .json(&event("cors.test", "1"))
        .send()
        .await
        .expect("POST /publish");
    assert_eq!(
        published.status(),
        401,
        "CORS opens no route: tokens still apply"
    );
    assert_eq!(
        header(published.headers(), "access-control-allow-origin"),
        "*"
    );
}

#[test]
fn a_malformed_origin_is_refused_at_startup() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_logagg"))
        .args([
            "serve",
            "--cors-origin",
            "https://ops.example.com/dashboard",
        ])
        .env("LOGAGG_LISTEN", "127.0.0.1:0")
        .output()
        .expect("running logagg serve");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--cors-origin"), "{stderr}");
    assert!(stderr.contains("scheme://host[:port]"), "{stderr}");
}
