//! `POST /loki/api/v1/push`: the Loki push API (snappy-compressed protobuf,
//! or JSON optionally gzip) through the shared ingest path. Answers 204, as
//! Loki does, once every entry is committed; a request is all-or-nothing.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::ingest::{BodyCodec, ingest, media_type};
use super::{ApiError, AppState};
use crate::decode::loki::{Encoding, decode};

pub async fn push(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let encoding = body_encoding(&headers)?;
    // Loki's protobuf body is always one snappy block; JSON is plain.
    let codec = match encoding {
        Encoding::Protobuf => BodyCodec::Snappy,
        Encoding::Json => BodyCodec::Plain,
    };
    let limits = state.limits.decode;
    let mapping = state.mapping.loki.clone();
    ingest(&state, &headers, body, codec, move |bytes| {
        decode(bytes, encoding, &mapping, &limits).map(Into::into)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn body_encoding(headers: &HeaderMap) -> Result<Encoding, ApiError> {
    const EXPECTED: &str =
        "use application/x-protobuf (snappy-compressed PushRequest) or application/json";
    // Loki takes a push without Content-Type as protobuf, as Promtail's
    // oldest versions sent it.
    let essence = media_type(headers).unwrap_or_else(|| "application/x-protobuf".to_owned());
    Encoding::from_media_type(&essence).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "Content-Type {essence:?} is not accepted; {EXPECTED}"
        ))
    })
}
