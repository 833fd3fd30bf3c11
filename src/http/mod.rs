//! The HTTP API: the router, the state every handler shares, and the limits
//! that bound each request.
//!
//! Handlers only translate: they parse and validate requests into domain
//! types, call the ingest path or the store, and render answers or
//! [`ApiError`]s. Every request gets an `x-request-id` (kept when the client
//! sends one) that its trace span and any error log line carry; server
//! errors are logged once, by the `log_errors` middleware, never where they
//! are made. Routes are grouped by what they need ([`auth`]): the ingest
//! routes a `publish` token, the read routes a `read` token, when tokens
//! are configured.

pub mod auth;
pub mod cors;
mod dashboard;
mod error;
mod events;
mod ingest;
mod listener;
mod loki;
pub mod openapi;
mod otlp;
mod publish;
mod query;
mod stats;
mod subscribe;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use error::{ApiError, InternalError};
pub use events::ListParams;
pub use listener::{ConnectionLimits, serve};
pub use subscribe::{SubscribeLimits, SubscribeParams};

use self::auth::{Access, Scope};
use self::cors::CorsOrigins;
use crate::decode::{DecodeLimits, FormatMapping};
use crate::expiry::RetentionStatus;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tail::Tail;

/// Most events `GET /events` returns in one page.
pub const PAGE_LIMIT_MAX: usize = 10_000;
/// Page size of `GET /events` without `limit`.
pub const PAGE_LIMIT_DEFAULT: usize = 100;

/// The header carrying each request's id.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Bounds on what one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, before and after gzip decompression.
    pub body_bytes_max: usize,
    /// What the ingest decoders accept.
    pub decode: DecodeLimits,
    pub subscribe: SubscribeLimits,
}

/// What every handler shares. Cheap to clone: handles only.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingest: Ingest,
    pub limits: Limits,
    /// How foreign formats (OTLP, Loki) name their events' topic and
    /// source.
    pub mapping: Arc<FormatMapping>,
    pub metrics: Arc<Metrics>,
    /// The newest committed `seq` and the recent commits, for subscribers.
    pub tail: Arc<Tail>,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    pub started: Instant,
    pub(crate) subscribers: subscribe::Registry,
    /// Bodies being decoded on the blocking pool at once: one per core, so
    /// a burst of large requests queues here instead of taking every
    /// blocking thread.
    pub(crate) decode_slots: Arc<Semaphore>,
    /// Which token may call which route; read by [`router`] only.
    pub access: Access,
    /// Which other web origins may call the API from a browser; read by
    /// [`router`] only.
    pub cors: CorsOrigins,
    /// What the expiry task found, for `/health` and `/stats`.
    pub retention: RetentionStatus,
}

impl AppState {
    /// State for a server that has not begun shutting down.
    pub fn new(
        store: Arc<dyn Store>,
        ingest: Ingest,
        limits: Limits,
        mapping: FormatMapping,
        metrics: Arc<Metrics>,
        tail: Arc<Tail>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Self {
            store,
            ingest,
            limits,
            mapping: Arc::new(mapping),
            metrics,
            tail,
            shutdown: CancellationToken::new(),
            started: Instant::now(),
            subscribers: subscribe::Registry::new(limits.subscribe.subscribers_max),
            decode_slots: Arc::new(Semaphore::new(cores)),
            access: Access::open(),
            cors: CorsOrigins::Off,
            retention: RetentionStatus::default(),
        }
    }

    /// The same state, with `access` deciding who may call what (the
    /// default: everyone everything).
    #[must_use]
    pub fn with_access(self, access: Access) -> Self {
        Self { access, ..self }
    }

    /// The same state, letting `cors` call the API from a browser (the
    /// default: no other origin).
    #[must_use]
    pub fn with_cors(self, cors: CorsOrigins) -> Self {
        Self { cors, ..self }
    }
}

/// Every route that writes events: `/publish` and the foreign ingest
/// formats. One group, so that a layer covering publishing (such as an
/// authorization scope) covers every way in.
fn ingest_routes() -> Router<AppState> {
    Router::new()
        .route("/publish", post(publish::publish))
        .route("/publish/{topic}", post(publish::publish_raw))
        .route("/v1/logs", post(otlp::export_logs))
        .route("/loki/api/v1/push", post(loki::push))
}

/// Every route that reads what is stored or happening: one group, behind
/// the `read` scope.
fn read_routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(events::list))
        .route("/events/{topic}/{event_id}", get(events::one))
        .route("/topics", get(events::topics))
        .route("/subscribe", get(subscribe::subscribe))
        .route("/stats", get(stats::stats))
}

/// The whole API. The dashboard page is open (it is static; its requests
/// carry the reader's token); `/health` and `/metrics` are guarded as the
/// access rules say.
pub fn router(state: AppState) -> Router {
    let access = state.access.clone();
    let routes = Router::new()
        .route("/", get(dashboard::page))
        // Open whatever the tokens: it describes the API, holds no data.
        .route("/openapi.json", get(openapi::document))
        .merge(access.guard(ingest_routes(), Scope::Publish))
        .merge(access.guard(read_routes(), Scope::Read))
        .merge(access.guard_health(Router::new().route("/health", get(stats::health))))
        .merge(access.guard_metrics(Router::new().route("/metrics", get(stats::metrics))))
        // Innermost first: a panic becomes a 500 that is logged with its
        // route, then counted.
        .route_layer(CatchPanicLayer::custom(panic_response))
        .route_layer(axum::middleware::from_fn(log_errors))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            crate::metrics::track_requests,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Outside the routes: a preflight is answered before routing and
    // authentication, and every answer, refusals included, is marked.
    let routes = match state.cors.layer() {
        Some(cors) => routes.layer(cors),
        None => routes,
    };
    routes
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        // Every answer, errors included: no browser may guess that a JSON
        // or text answer is HTML or script.
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}

/// A handler panicked (a bug): an opaque 500 whose log line names the panic.
fn panic_response(panic: Box<dyn std::any::Any + Send>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    ApiError::Internal(format!("handler panicked: {message}").into()).into_response()
}

/// The span of one request: method, path and request id.
fn request_span(request: &Request) -> tracing::Span {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|id| id.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %logged_uri(request.uri()),
        request_id = id,
    )
}

/// Query parameters whose values never reach the log: a bearer token sent
/// in the URL (RFC 6750 §2.3's `access_token`, or a guess at `token`),
/// which the server refuses but would otherwise have logged.
const SECRET_PARAMS: [&str; 2] = ["access_token", "token"];

/// The request's URI as logged, with the values of [`SECRET_PARAMS`]
/// replaced by `REDACTED`.
fn logged_uri(uri: &axum::http::Uri) -> std::borrow::Cow<'_, str> {
    let Some(query) = uri.query() else {
        return std::borrow::Cow::Borrowed(uri.path());
    };
    let secret = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        SECRET_PARAMS
            .iter()
            .any(|secret| name.eq_ignore_ascii_case(secret))
    };
    if !query.split('&').any(secret) {
        return std::borrow::Cow::Owned(format!("{}?{query}", uri.path()));
    }
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret(pair) => format!("{name}=REDACTED"),
            _ => pair.to_owned(),
        })
        .collect();
    std::borrow::Cow::Owned(format!("{}?{}", uri.path(), redacted.join("&")))
}

/// Logs a server error once, with its chain, the route it happened on and
/// the request's id; the client already got an opaque 500.
async fn log_errors(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let id = request.headers().get(REQUEST_ID).cloned();
    let response = next.run(request).await;
    if let Some(InternalError(error)) = response.extensions().get::<InternalError>() {
        tracing::error!(
            error = error.as_ref() as &dyn std::error::Error,
            route = route.as_deref().unwrap_or("unmatched"),
            request_id = id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or(""),
            "request failed"
        );
    }
    response
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no resource at {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
