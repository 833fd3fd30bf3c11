//! `GET /openapi.json`: the OpenAPI 3.1 document of this API, generated
//! from the code by utoipa: each handler's `#[utoipa::path]` (route,
//! parameters, bodies, answers), the wire types' `ToSchema` and the
//! parameter structs' `IntoParams`. Every operation also gets the problem
//! document (RFC 9457) as its `default` answer: any error status may carry
//! one. The route is open whatever the tokens: it describes the API and
//! holds no data.
//!
//! [`ROUTES`] lists the router's routes; the test
//! `openapi::every_route_of_the_router_is_in_the_document` checks it
//! against `http/mod.rs` and against the document.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::ApiError;
use super::publish::{EventIn, EventsIn};
use super::query::{ApiQuery, NoParams};
use crate::api::{Counters, FieldError, Health, Problem, Receipt, Stats, TopicSummary};
use crate::store::StoredEvent;

/// Every `(method, path)` the router serves, `/openapi.json` included.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("post", "/publish"),
    ("post", "/publish/{topic}"),
    ("post", "/v1/logs"),
    ("post", "/loki/api/v1/push"),
    ("get", "/events"),
    ("get", "/events/{topic}/{event_id}"),
    ("get", "/topics"),
    ("get", "/subscribe"),
    ("get", "/stats"),
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "logagg",
        description = "A pub-sub log aggregator with an idempotent consumer: publish events \
            with at-least-once delivery, read each (topic, event_id) exactly once."
    ),
    paths(
        super::dashboard::page,
        super::publish::publish,
        super::publish::publish_raw,
        super::otlp::export_logs,
        super::loki::push,
        super::events::list,
        super::events::one,
        super::events::topics,
        super::subscribe::subscribe,
        super::stats::stats,
        super::stats::health,
        super::stats::metrics,
        document,
    ),
    components(schemas(
        EventIn, EventsIn, Receipt, Counters, FieldError, Problem, TopicSummary, Stats, Health,
        StoredEvent, super::events::Page, super::events::Next, super::events::Topics,
        super::events::Order
    )),
    modifiers(&Problems, &BearerTokens),
    tags(
        (name = "ingest", description = "Writing events (a `publish` token when tokens are configured)"),
        (name = "read", description = "Reading events (a `read` token when tokens are configured)"),
        (name = "operate", description = "Health, metrics, the dashboard and this document"),
    )
)]
pub struct ApiDoc;

/// Adds the problem document as every operation's `default` answer.
struct Problems;

impl Modify for Problems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let problem = ResponseBuilder::new()
            .description("An error: an RFC 9457 problem document")
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "Problem",
                    ))))
                    .build(),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                operation
                    .responses
                    .responses
                    .entry("default".to_owned())
                    .or_insert_with(|| RefOr::T(problem.clone()));
            }
        }
    }
}

/// Declares the bearer tokens (`--auth-tokens`): optional, as a server
/// without tokens takes none.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from --auth-tokens, when the server has one: publish scope for \
                         ingest, read for reading (admin for both)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, rendered once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
});

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "operate",
    responses((status = 200, description = "This document", body = Object)))]
pub async fn document(
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
) -> Result<impl IntoResponse, ApiError> {
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    ))
}
