//! `POST /loki/api/v1/push`: the Loki push API (snappy-compressed protobuf,
//! or JSON optionally gzip) through the shared ingest path. Answers 204, as
//! Loki does, once every entry is committed; a request is all-or-nothing.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};

use super::ingest::{BodyCodec, body_format, ingest};
use super::query::{ApiQuery, NoParams};
use super::{ApiError, AppState};
use crate::decode::Encoding;
use crate::decode::loki::decode;

/// The Loki push API; answers 204 once every entry is committed.
#[utoipa::path(post, path = "/loki/api/v1/push", tag = "ingest",
    request_body(content(
        (Vec<u8> = "application/x-protobuf"),
        (Object = "application/json"),
    )),
    responses((status = 204, description = "Committed")))]
pub async fn push(
    State(state): State<AppState>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    // Loki takes a push without Content-Type as protobuf, as Promtail's
    // oldest versions sent it.
    let encoding = body_format(
        &headers,
        Encoding::from_media_type,
        Some(Encoding::Protobuf),
        "use application/x-protobuf (snappy-compressed PushRequest) or application/json",
    )?;
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
