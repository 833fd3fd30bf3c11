//! The HTTP API: the router, the state every handler shares, and the limits
//! that bound each request.
//!
//! Handlers only translate: they parse and validate requests into domain
//! types, call the ingest queue or the store, and render answers or
//! [`ApiError`]s. Reads hit the store through `spawn_blocking`, so a slow
//! query never stalls the runtime.

mod error;
mod events;
mod publish;
mod stats;
mod subscribe;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use subscribe::SubscribeLimits;

use crate::event::FieldLimits;
use crate::ingest::Ingest;
use crate::ingest::tail::Tail;
use crate::metrics::Metrics;
use crate::store::Store;

/// Most events `GET /events` returns in one page.
pub const PAGE_LIMIT_MAX: usize = 10_000;
/// Page size of `GET /events` without `limit`.
pub const PAGE_LIMIT_DEFAULT: usize = 100;

/// Bounds on what one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, before and after gzip decompression.
    pub body_bytes_max: usize,
    /// Most events in one publish request.
    pub request_events_max: usize,
    /// Deepest JSON nesting of one event (the event object is level 1, its
    /// payload level 2).
    pub json_depth_max: usize,
    pub fields: FieldLimits,
    pub subscribe: SubscribeLimits,
}

/// What every handler shares. Cheap to clone: handles only.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub ingest: Ingest,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// The newest committed `seq`, advanced by the ingest consumer.
    pub committed: watch::Receiver<u64>,
    /// Recent commits framed for subscribers, filled by the consumer.
    pub tail: Arc<Tail>,
    /// Cancelled when the server begins shutting down.
    pub shutdown: CancellationToken,
    pub started: Instant,
    pub(crate) subscribers: subscribe::Registry,
}

impl AppState {
    /// State for a server that has not begun shutting down.
    pub fn new(
        store: Arc<dyn Store>,
        ingest: Ingest,
        limits: Limits,
        metrics: Arc<Metrics>,
        committed: watch::Receiver<u64>,
        tail: Arc<Tail>,
    ) -> Self {
        Self {
            store,
            ingest,
            limits,
            metrics,
            committed,
            tail,
            shutdown: CancellationToken::new(),
            started: Instant::now(),
            subscribers: subscribe::Registry::new(limits.subscribe.subscribers_max),
        }
    }

    /// Runs a blocking store call on the blocking pool.
    async fn read<T, F>(&self, query: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || query(store.as_ref()))
            .await
            .map_err(|e| ApiError::Internal(Box::new(e)))?
            .map_err(ApiError::from)
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/publish", post(publish::publish))
        .route("/events", get(events::list))
        .route("/events/{topic}/{event_id}", get(events::one))
        .route("/topics", get(events::topics))
        .route("/subscribe", get(subscribe::subscribe))
        .route("/stats", get(stats::stats))
        .route("/health", get(stats::health))
        .route("/metrics", get(stats::metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics),
            crate::metrics::track_requests,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".into()).into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no resource at {}", uri.path()))
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
