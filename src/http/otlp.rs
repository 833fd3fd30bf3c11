//! `POST /v1/logs`: OTLP/HTTP logs (protobuf or JSON, optionally gzip)
//! through the shared ingest path. The answer waits for the durable commit
//! of every accepted record, and is an `ExportLogsServiceResponse` in the
//! request's encoding whose `partial_success` counts the records rejected.
//!
//! Errors are problem documents like everywhere else in the API (OTLP asks
//! for a `google.rpc.Status`; its clients act on the status code and
//! `Retry-After` alone): 400 for a body that does not decode, 413 past a
//! limit, 415 for another content type, 503 + `Retry-After` under
//! backpressure, which OTLP exporters retry.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prost::Message;

use super::ingest::{BodyCodec, body_format, ingest};
use super::query::{ApiQuery, NoParams};
use super::{ApiError, AppState};
use crate::decode::Encoding;
use crate::decode::otlp::{decode, response, response_json};

/// OTLP/HTTP logs; answers once the records are committed.
#[utoipa::path(post, path = "/v1/logs", tag = "ingest",
    request_body(content(
        (Vec<u8> = "application/x-protobuf"),
        (Object = "application/json"),
    )),
    responses((status = 200, description = "Committed: an ExportLogsServiceResponse in the request's encoding",
               content((Vec<u8> = "application/x-protobuf"), (Object = "application/json")))))]
pub async fn export_logs(
    State(state): State<AppState>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let encoding = body_format(
        &headers,
        Encoding::from_media_type,
        None,
        "use application/x-protobuf or application/json (OTLP/HTTP)",
    )?;
    let limits = state.limits.decode;
    let mapping = state.mapping.otlp.clone();
    let ingested = ingest(&state, &headers, body, BodyCodec::Plain, move |bytes| {
        decode(bytes, encoding, &mapping, &limits)
    })
    .await?;
    let answer = response(ingested.rejected_count, &ingested.rejected);
    Ok(match encoding {
        Encoding::Protobuf => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-protobuf"),
            )],
            answer.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => axum::Json(response_json(&answer)).into_response(),
    })
}
