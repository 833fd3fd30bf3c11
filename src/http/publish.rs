//! `POST /publish`: logagg's own format (one event, a JSON array, or
//! NDJSON) through the shared ingest path. The answer waits for the durable
//! commit.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;

use super::ingest::{ingest, media_type};
use super::{ApiError, AppState};
use crate::api::Receipt;
use crate::decode::publish::{Format, decode};

pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Receipt>, ApiError> {
    let format = body_format(&headers)?;
    let limits = state.limits.decode;
    let receipt = ingest(&state, &headers, body, move |bytes| {
        decode(bytes, format, &limits)
    })
    .await?;
    Ok(Json(receipt))
}

fn body_format(headers: &HeaderMap) -> Result<Format, ApiError> {
    const EXPECTED: &str = "use application/json (an event or an array of events) \
                            or application/x-ndjson (one event per line)";
    let Some(essence) = media_type(headers) else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "missing Content-Type; {EXPECTED}"
        )));
    };
    Format::from_media_type(&essence).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "Content-Type {essence:?} is not accepted; {EXPECTED}"
        ))
    })
}
