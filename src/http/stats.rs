//! Operator endpoints: `GET /stats`, `GET /health` and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;

use super::query::{ApiQuery, NoParams};
use super::{ApiError, AppState};
use crate::api::{Health, Stats};
use crate::metrics::Exposition;

/// The counters, topics and `last_seq` come from one snapshot of the store
/// (committed with the events, so they agree with each other and with what
/// `/events` shows); the rest is live process state.
#[utoipa::path(get, path = "/stats", tag = "read",
    responses((status = 200, description = "Counters and live state", body = Stats)))]
pub async fn stats(
    State(state): State<AppState>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
) -> Result<Json<Stats>, ApiError> {
    let stored = state.store.stats().await?;
    Ok(Json(Stats {
        counters: stored.counters,
        topics: stored.topics.into_iter().map(|t| t.topic).collect(),
        last_seq: stored.last_seq,
        stored: stored.stored,
        expired: stored.expired,
        uptime_seconds: state.started.elapsed().as_secs(),
        queue_depth_events: state.ingest.depth() as u64,
        queue_capacity_events: state.ingest.capacity() as u64,
        subscribers: state.subscribers.connected() as u64,
        events_delivered: state.metrics.events_delivered.get(),
        disk_full: state.ingest.disk_full(),
        keys_fill_size_limit: state.retention.keys_fill_limit(),
    }))
}

/// 200 while the store answers and the consumer runs; 503 once shutdown has
/// begun or either is gone.
///
/// A full disk is still 200, with `status: degraded`: the server serves
/// every read and answers publishes at once with 507 + `Retry-After`, and
/// restarting it would not make room, so a load balancer or orchestrator
/// should keep it in rotation (and alert) rather than take it out or
/// restart it (docs/architecture.md). So are key records that alone fill
/// `--retain-bytes` (every event then expires at once): serving goes on,
/// and what helps is a larger limit or a finite `--dedup-horizon`.
#[utoipa::path(get, path = "/health", tag = "operate",
    responses((status = 200, description = "Serving (`ok`, or `degraded` on a full disk or when key records fill `--retain-bytes`)", body = Health),
              (status = 503, description = "Shutting down, or the store or consumer is gone",
               body = crate::api::Problem, content_type = "application/problem+json")))]
pub async fn health(
    State(state): State<AppState>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
) -> Result<Json<Health>, ApiError> {
    let unavailable = |detail: &str| ApiError::Unavailable {
        detail: detail.to_owned(),
        retry_after: std::time::Duration::from_secs(1),
    };
    if state.shutdown.is_cancelled() {
        return Err(unavailable("server is shutting down"));
    }
    if state.ingest.is_closed() {
        return Err(unavailable("ingest consumer has stopped"));
    }
    state.store.check().await?;
    if state.ingest.disk_full() {
        return Ok(Json(Health {
            status: "degraded".to_owned(),
            disk_full: true,
            keys_fill_size_limit: false,
            detail: Some(
                "the disk is full: publishes get 507 until there is room (writing then resumes by itself); reads go on"
                    .to_owned(),
            ),
        }));
    }
    if state.retention.keys_fill_limit() {
        return Ok(Json(Health {
            status: "degraded".to_owned(),
            disk_full: false,
            keys_fill_size_limit: true,
            detail: Some(
                "key records (and tables) alone fill --retain-bytes, with no event left to expire: every event expires as soon as expiry runs; raise the limit or set a finite --dedup-horizon"
                    .to_owned(),
            ),
        }));
    }
    Ok(Json(Health {
        status: "ok".to_owned(),
        disk_full: false,
        keys_fill_size_limit: false,
        detail: None,
    }))
}

/// The metrics in the format the scraper asks for (OpenMetrics, else the
/// classic text format; see [`Exposition`]).
#[utoipa::path(get, path = "/metrics", tag = "operate",
    responses((status = 200, description = "Prometheus text format 0.0.4, or OpenMetrics when Accept asks for it",
               content((String = "text/plain; version=0.0.4; charset=utf-8"),
                       (String = "application/openmetrics-text; version=1.0.0; charset=utf-8")))))]
pub async fn metrics(
    State(state): State<AppState>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let size = state.store.size_bytes().await?;
    let metrics = &state.metrics;
    metrics.store_size.set(size);
    metrics.queue_depth.set(state.ingest.depth() as i64);
    metrics
        .subscribers
        .set(state.subscribers.connected() as i64);
    let format = Exposition::negotiate(
        headers
            .get(header::ACCEPT)
            .and_then(|accept| accept.to_str().ok()),
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        metrics.render(format),
    ))
}
