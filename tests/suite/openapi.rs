//! `GET /openapi.json` (issue 15): an OpenAPI 3.1 document that covers
//! every route of the router, and that is open whatever the tokens.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::common::TestApp;
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
            "source"
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
