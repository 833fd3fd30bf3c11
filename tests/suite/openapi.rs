//! `GET /openapi.json` (issue 15): an OpenAPI 3.1 document that covers
//! every route of the router, that is open whatever the tokens, and that a
//! live server keeps: schemathesis (PyPI, in the venv of
//! `.ci/setup/40-python-clients.sh`) sends generated requests to every
//! operation and checks each answer against it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::common::{ChildServer, TestApp, skip};
use logagg::http::openapi::ROUTES;

/// `(method, path)` of every `.route("PATH", METHOD(handler))` in the
/// router's source, so that a route added there without being listed (and
/// documented) fails this test.
fn routes_in_router_source() -> BTreeSet<(String, String)> {
    let source = include_str!("../../src/http/mod.rs");
    let mut routes = BTreeSet::new();
    for piece in source.split(".route(\"").skip(1) {
        let (path, rest) = piece.split_once('"').expect("a quoted path");
        let method = rest
            .trim_start_matches([',', ' ', '\n'])
            .split('(')
            .next()
            .expect("a method router");
        routes.insert((method.to_owned(), path.to_owned()));
    }
    routes
}

#[tokio::test]
async fn every_route_of_the_router_is_in_the_document() {
    let listed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        routes_in_router_source(),
        listed,
        "ROUTES and http/mod.rs differ"
    );

    let app = TestApp::spawn().await;
    let response = app.api.get_raw("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.expect("JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            documented.insert((method.clone(), path.clone()));
            let operation = &item[method];
            assert!(
                operation["responses"]["default"]["content"]["application/problem+json"]
                    .is_object(),
                "{method} {path} does not document its problem answers"
            );
        }
    }
    assert_eq!(documented, listed);

    // Parameters, bodies and the wire types come from the code.
    let events = &document["paths"]["/events"]["get"];
    let names: Vec<&str> = events["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "topic",
            "after",
            "before",
            "limit",
            "order",
            "since",
            "until",
            "timestamp_since",
            "timestamp_until",
            "source",
            "q"
        ]
    );
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    for schema in [
        "Problem",
        "StoredEvent",
        "Page",
        "Receipt",
        "Stats",
        "Health",
        "EventIn",
    ] {
        assert!(schemas.contains_key(schema), "no schema {schema}");
    }
    assert!(
        document["paths"]["/publish"]["post"]["requestBody"]["content"]["application/x-ndjson"]
            .is_object()
    );
}

#[tokio::test]
async fn the_document_is_open_when_tokens_are_required() {
    let app = TestApp::spawn_with(|config| {
        let path = config.data_dir.join("tokens");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef read\n").expect("tokens file");
        config.auth_tokens = Some(path);
    })
    .await;
    assert_eq!(app.api.get_raw("/openapi.json").await.status(), 200);
    assert_eq!(app.api.get_raw("/topics").await.status(), 401);
}

/// schemathesis on PATH, else in the test venv beside `LOGAGG_TEST_PYTHON`
/// (or its default place), or why there is none.
fn schemathesis() -> Result<PathBuf, String> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("schemathesis"))
            .find(|candidate| candidate.is_file())
    });
    let in_venv = std::env::var_os("LOGAGG_TEST_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            Some(PathBuf::from(home).join(".cache/logagg/py-clients/bin/python"))
        })
        .and_then(|python| Some(python.parent()?.join("schemathesis")))
        .filter(|candidate| candidate.is_file());
    on_path.or(in_venv).ok_or_else(|| {
        "schemathesis is neither on PATH nor in the test venv; run .ci/setup/40-python-clients.sh"
            .to_owned()
    })
}

/// Generated requests, 20 per operation and phase, against a real server
/// (with full-text search on every topic):
/// no 5xx, and every answer's status, content type, headers and body as
/// the document says. Left out: `/subscribe`, whose answer is a stream that
/// does not end; and the checks that the document's schemas decide exactly
/// which requests the server accepts (`positive_data_acceptance`,
/// `negative_data_rejection`), which JSON Schema cannot say (limits in
/// bytes, not characters; RFC 3339 and the OTLP and Loki bodies are
/// checked beyond their shape).
#[tokio::test]
async fn schemathesis_finds_no_server_error_and_every_answer_conforms() {
    let test = "schemathesis_finds_no_server_error_and_every_answer_conforms";
    let schemathesis = match schemathesis() {
        Ok(path) => path,
        Err(reason) => return skip(test, &reason),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // Every topic indexed, so that generated `q`s reach the text index.
    let server = ChildServer::start_with(dir.path(), &["--search", ">"]).await;
    let run = tokio::process::Command::new(&schemathesis)
        .arg("run")
        .arg(server.api.url("/openapi.json"))
        .args(["--checks", "all"])
        .args([
            "--exclude-checks",
            "positive_data_acceptance,negative_data_rejection",
        ])
        .args(["--max-examples", "20", "--request-timeout", "10"])
        .args(["--exclude-path", "/subscribe", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis ends within 5 minutes")
        .expect("running schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}
