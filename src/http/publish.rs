//! `POST /publish`: logagg's own format (one event, a JSON array, or
//! NDJSON), and `POST /publish/{topic}`: log shippers' records for one
//! topic, both through the shared ingest path. The answer waits for the
//! durable commit.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;

use super::error::ApiPath;
use super::ingest::{BodyCodec, body_format, ingest};
use super::query::{ApiQuery, NoParams};
use super::{ApiError, AppState};
use crate::api::Receipt;
use crate::decode::publish::{Format, decode};
use crate::decode::raw::{self, RawOptions};

/// Events in logagg's own format; answers once they are durable.
#[utoipa::path(post, path = "/publish", tag = "ingest",
    request_body(content(
        (EventsIn = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses((status = 200, description = "Committed: what became of the events", body = Receipt)))]
pub async fn publish(
    State(state): State<AppState>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Receipt>, ApiError> {
    let format = body_format(
        &headers,
        Format::from_media_type,
        None,
        "use application/json (an event or an array of events) \
         or application/x-ndjson (one event per line)",
    )?;
    let limits = state.limits.decode;
    let ingested = ingest(&state, &headers, body, BodyCodec::Plain, move |bytes| {
        decode(bytes, format, &limits).map(Into::into)
    })
    .await?;
    Ok(Json(ingested.receipt))
}

/// What `POST /publish/{topic}` may say about its records.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    /// The record field holding its event id (else a hash of the record).
    id_field: Option<String>,
    /// The record field holding its time (else the arrival time).
    time_field: Option<String>,
    /// The record field holding its source (else the request's).
    source_field: Option<String>,
}

/// The header naming the source of a shipper's records.
pub const SOURCE_HEADER: &str = "x-logagg-source";

/// `POST /publish/{topic}`: records from a log shipper (JSON objects in any
/// layout, or text lines) into one topic, through the shared ingest path.
/// Answers with the same receipt as `/publish`, after the commit.
#[utoipa::path(post, path = "/publish/{topic}", tag = "ingest",
    params(("topic" = String, Path, description = "The topic every record goes to"), RawQuery,
           ("x-logagg-source" = Option<String>, Header, description = "The records' source")),
    request_body(content(
        (Object = "application/json"),
        (String = "application/x-ndjson"),
        (String = "text/plain"),
    )),
    responses((status = 200, description = "Committed: what became of the records", body = Receipt)))]
pub async fn publish_raw(
    State(state): State<AppState>,
    ApiPath(topic): ApiPath<String>,
    ApiQuery(query): ApiQuery<RawQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Receipt>, ApiError> {
    let format = body_format(
        &headers,
        raw::Format::from_media_type,
        None,
        "use application/json (objects, arrays of them, or NDJSON), \
         application/x-ndjson or text/plain (one record per line)",
    )?;
    let options = RawOptions {
        topic,
        id_field: query.id_field,
        time_field: query.time_field,
        source_field: query.source_field,
        source: request_source(&headers),
        received: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    };
    let limits = state.limits.decode;
    let ingested = ingest(&state, &headers, body, BodyCodec::Plain, move |bytes| {
        raw::decode(bytes, format, &options, &limits).map(Into::into)
    })
    .await?;
    Ok(Json(ingested.receipt))
}

/// The source of records that do not name theirs: the `X-Logagg-Source`
/// header, else the product of the `User-Agent` (`Fluent-Bit`,
/// `Vector/0.48.0` gives `Vector`), else `http`.
fn request_source(headers: &HeaderMap) -> String {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(source) = header(SOURCE_HEADER) {
        return source.to_owned();
    }
    header(axum::http::header::USER_AGENT.as_str())
        .and_then(|agent| agent.split(['/', ' ']).next())
        .filter(|product| !product.is_empty())
        .unwrap_or("http")
        .to_owned()
}

/// An event as published to `POST /publish`.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // A schema only: publishes are decoded by `decode::publish`.
pub struct EventIn {
    /// 1-255 bytes, no whitespace or control characters, no `*` or `>`.
    #[schema(min_length = 1, max_length = 255)]
    topic: String,
    /// 1-255 bytes; unique within its topic.
    #[schema(min_length = 1, max_length = 255)]
    event_id: String,
    /// RFC 3339; UTC without an offset.
    timestamp: String,
    #[schema(min_length = 1, max_length = 255)]
    source: String,
    /// A JSON object.
    #[schema(value_type = Object)]
    payload: serde_json::Value,
}

/// The body of `POST /publish` as JSON: one event or an array of events.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // A schema only.
pub enum EventsIn {
    One(EventIn),
    Many(Vec<EventIn>),
}
