//! The one ingest path every ingest endpoint shares: read the body within
//! its limit, decompress and decode it (off the async threads when it is
//! large), and hand the events to the queue. The answer waits for the
//! durable commit.
//!
//! Handlers only pick the decoder (and the format's own compression, such
//! as the snappy block of a Loki push) and render the answer in their
//! protocol's shape; limits, errors, metrics and the durability promise are
//! the same for all of them.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;

use super::{ApiError, AppState};
use crate::api::Receipt;
use crate::decode::{self, DecodeError, Decoded};
use crate::event::FieldError;

/// Bodies up to this size are decoded on the async thread that read them:
/// parsing a few events costs less than a trip to the blocking pool.
/// Larger (or compressed) ones go to the blocking pool, bounded by
/// `AppState::decode_slots`.
const INLINE_DECODE_BYTES_MAX: usize = 16 * 1024;

/// Compression that is part of a format rather than announced by
/// `Content-Encoding`; undone after any `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyCodec {
    Plain,
    /// One snappy block (Loki's protobuf push).
    Snappy,
}

/// What came of a request whose accepted events are committed.
#[derive(Debug)]
pub(super) struct Ingested {
    pub receipt: Receipt,
    /// Records the decoder rejected (formats with partial success only).
    pub rejected_count: u64,
    pub rejected: Vec<FieldError>,
}

/// Reads, decompresses, decodes and submits one request; resolves once its
/// events are committed. A request whose decoder accepted no events (all
/// rejected, or an empty OTLP export) is answered without a commit.
///
/// # Errors
/// 415 for an unknown `Content-Encoding`, 413/400/408 for the body, the
/// decoder's errors, and the queue's (503, 507, ...).
pub(super) async fn ingest<D>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    codec: BodyCodec,
    decode: D,
) -> Result<Ingested, ApiError>
where
    D: FnOnce(&[u8]) -> Result<Decoded, DecodeError> + Send + 'static,
{
    let gzipped = content_encoding_is_gzip(headers)?;
    let max = state.limits.body_bytes_max;
    let bytes = read_body(body, headers, max).await?;
    let decoded = if !gzipped && codec == BodyCodec::Plain && bytes.len() <= INLINE_DECODE_BYTES_MAX
    {
        decode(&bytes)?
    } else {
        let _slot = Arc::clone(&state.decode_slots)
            .acquire_owned()
            .await
            .expect("the decode semaphore is never closed");
        tokio::task::spawn_blocking(move || {
            let plain = if gzipped {
                decode::gunzip(&bytes, max)?
            } else {
                bytes.into()
            };
            let plain = match codec {
                BodyCodec::Plain => plain,
                BodyCodec::Snappy => decode::unsnappy(&plain, max)?,
            };
            decode(&plain)
        })
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))??
    };
    let receipt = if decoded.events.is_empty() {
        Receipt::default()
    } else {
        state.ingest.submit(decoded.events).await?
    };
    Ok(Ingested {
        receipt,
        rejected_count: decoded.rejected_count,
        rejected: decoded.rejected,
    })
}

fn content_encoding_is_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    match value
        .to_str()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "identity" => Ok(false),
        "gzip" | "x-gzip" => Ok(true),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Encoding {value:?} is not accepted; use gzip or none"
        ))),
    }
}

/// The body format that `Content-Type` names, as `parse` reads its media
/// type (lowercase, without parameters). Without a `Content-Type` the
/// format is `missing`, when the protocol has a default.
///
/// # Errors
/// 415 naming what was sent (or that nothing was) and `expected`.
pub(super) fn body_format<F>(
    headers: &HeaderMap,
    parse: fn(&str) -> Option<F>,
    missing: Option<F>,
    expected: &str,
) -> Result<F, ApiError> {
    let Some(essence) = media_type(headers) else {
        return missing.ok_or_else(|| {
            ApiError::UnsupportedMediaType(format!("missing Content-Type; {expected}"))
        });
    };
    parse(&essence).ok_or_else(|| {
        ApiError::UnsupportedMediaType(format!(
            "Content-Type {essence:?} is not accepted; {expected}"
        ))
    })
}

/// The media type of `Content-Type`, lowercase and without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?;
    Some(
        value
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Reads the whole body, refusing more than `max` bytes on the wire.
async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::TooLarge(format!("request body is larger than {max} bytes"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, max).await.map_err(|error| {
        let inner = error.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            too_large()
        } else if caused_by::<tower_http::timeout::TimeoutError>(inner.as_ref()) {
            ApiError::RequestTimeout(
                "the request body did not arrive in time (--body-timeout); nothing of this request was stored, send it again".to_owned(),
            )
        } else {
            ApiError::BadRequest(format!("reading the request body failed: {inner}"))
        }
    })
}

/// Whether `error`, or an error in its chain of sources, is an `E`.
fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<E>() {
            return true;
        }
        next = error.source();
    }
    false
}
