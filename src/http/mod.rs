//! The HTTP API: the router, the state every handler shares, and the limits
//! that bound each request.
//!
//! Handlers only translate: they parse and validate requests into domain
//! types, call the ingest path or the store, and render answers or
//! [`ApiError`]s. Every request gets an `x-request-id` (kept when the client
//! sends one) that its trace span and any error log line carry; server
//! errors are logged once, by the `log_errors` middleware, never where they
//! are made.

mod dashboard;
mod error;
mod events;
mod ingest;
mod listener;
mod loki;
mod otlp;
mod publish;
mod stats;
mod subscribe;
pub mod tls;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use error::{ApiError, InternalError};
pub use events::ListParams;
pub use listener::{ConnectionLimits, serve};
pub use subscribe::{SubscribeLimits, SubscribeParams};

use crate::decode::{DecodeLimits, FormatMapping};
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
        }
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

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .merge(ingest_routes())
        .route("/events", get(events::list))
        .route("/events/{topic}/{event_id}", get(events::one))
        .route("/topics", get(events::topics))
        .route("/subscribe", get(subscribe::subscribe))
        .route("/stats", get(stats::stats))
        .route("/health", get(stats::health))
        .route("/metrics", get(stats::metrics))
        // Innermost first: a panic becomes a 500 that is logged with its
        // route, then counted.
        .route_layer(CatchPanicLayer::custom(panic_response))
        .route_layer(axum::middleware::from_fn(log_errors))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            crate::metrics::track_requests,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
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
        uri = %request.uri(),
        request_id = id,
    )
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
