//! `POST /publish`: read the body within its limits, parse it as one event, a
//! JSON array of events, or NDJSON, validate every event, and hand the request
//! to the ingest queue. The answer waits for the durable commit.
//!
//! A request is all-or-nothing: any bad event rejects the whole request
//! before it reaches the queue, and the problem lists every bad field.

use std::io::Read;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use serde_json::value::RawValue;

use super::{ApiError, AppState, Limits};
use crate::event::{Event, FieldError, WireEvent, nesting_exceeds};
use crate::ingest::Receipt;

/// Most field errors listed in one problem document; a batch of 10,000 bad
/// events should not become a multi-megabyte answer.
const ERRORS_LISTED_MAX: usize = 1_000;

/// How the body lays out its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    /// One event object, or an array of them.
    Json,
    /// One event object per line; blank lines are skipped.
    Ndjson,
}

pub async fn publish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Receipt>, ApiError> {
    let format = body_format(&headers)?;
    let gzipped = content_encoding_is_gzip(&headers)?;
    let bytes = read_body(body, &headers, gzipped, state.limits.body_bytes_max).await?;
    let events = parse_events(&bytes, format, &state.limits)?;
    let receipt = state.ingest.submit(events).await?;
    Ok(Json(receipt))
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    const EXPECTED: &str = "use application/json (an event or an array of events) \
                            or application/x-ndjson (one event per line)";
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "missing Content-Type; {EXPECTED}"
        )));
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyFormat::Json),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
            Ok(BodyFormat::Ndjson)
        }
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {value:?} is not accepted; {EXPECTED}"
        ))),
    }
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

/// Reads the whole body, refusing more than `max` bytes both on the wire and
/// after decompression (so a small gzip bomb is refused too).
///
/// Decompression is done here rather than by a tower layer so that a bad
/// stream or an oversized result gets the same problem+json answers as
/// everything else.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    gzipped: bool,
    max: usize,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::TooLarge(format!("request body is larger than {max} bytes"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, max).await.map_err(|error| {
        let inner = error.into_inner();
        if inner
            .downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            too_large()
        } else {
            ApiError::BadRequest(format!("reading the request body failed: {inner}"))
        }
    })?;
    if !gzipped {
        return Ok(bytes.into());
    }
    let mut plain = Vec::with_capacity((bytes.len() * 4).min(max + 1));
    // A gzip body may hold several members (RFC 1952), which decompress to
    // their concatenation; `GzDecoder` would stop after the first and drop
    // the rest of the events without a word.
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .take(max as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid gzip: {e}")))?;
    if plain.len() > max {
        return Err(ApiError::TooLarge(format!(
            "request body is larger than {max} bytes once decompressed"
        )));
    }
    Ok(plain)
}

/// Parses and validates every event of the body.
///
/// # Errors
/// 400 for bytes that are not UTF-8 or not JSON; 413 for too many events;
/// 422 for no events, too-deep nesting, or any invalid event (all listed).
fn parse_events(body: &[u8], format: BodyFormat, limits: &Limits) -> Result<Vec<Event>, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::BadRequest(format!("body is not valid UTF-8: {e}")))?;
    let raw_events = match format {
        BodyFormat::Json => split_json(text, limits)?,
        BodyFormat::Ndjson => split_ndjson(text, limits)?,
    };
    if raw_events.is_empty() {
        return Err(ApiError::Unprocessable(
            "request holds no events".to_owned(),
        ));
    }
    if raw_events.len() > limits.request_events_max {
        return Err(ApiError::TooLarge(format!(
            "request holds {} events; the limit is {} per request",
            raw_events.len(),
            limits.request_events_max
        )));
    }
    let mut events = Vec::with_capacity(raw_events.len());
    let mut errors = Vec::new();
    for (index, raw) in raw_events.into_iter().enumerate() {
        match validate(raw, index, limits) {
            Ok(event) => events.push(event),
            Err(mut bad) => errors.append(&mut bad),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        errors.truncate(ERRORS_LISTED_MAX);
        Err(ApiError::InvalidEvents(errors))
    }
}

fn validate(raw: &RawValue, index: usize, limits: &Limits) -> Result<Event, Vec<FieldError>> {
    let whole = |message: String| {
        vec![FieldError {
            index,
            field: None,
            message,
        }]
    };
    if !raw.get().starts_with('{') {
        return Err(whole("event must be a JSON object".to_owned()));
    }
    let wire: WireEvent<'_> =
        serde_json::from_str(raw.get()).map_err(|e| whole(format!("event is not usable: {e}")))?;
    Event::from_wire(&wire, index, &limits.fields)
}

/// A JSON body: one event object, or an array of them.
fn split_json<'a>(text: &'a str, limits: &Limits) -> Result<Vec<&'a RawValue>, ApiError> {
    let is_array = text.trim_start().starts_with('[');
    // The array around the events is one more level.
    let depth_max = limits.json_depth_max + usize::from(is_array);
    check_depth(text, depth_max, limits)?;
    let invalid =
        |e: serde_json::Error| ApiError::BadRequest(format!("body is not valid JSON: {e}"));
    if is_array {
        serde_json::from_str(text).map_err(invalid)
    } else {
        let event: &RawValue = serde_json::from_str(text).map_err(invalid)?;
        Ok(vec![event])
    }
}

/// An NDJSON body: one event per non-blank line.
fn split_ndjson<'a>(text: &'a str, limits: &Limits) -> Result<Vec<&'a RawValue>, ApiError> {
    let mut events = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        check_depth(line, limits.json_depth_max, limits)?;
        let event = serde_json::from_str(line).map_err(|e| {
            ApiError::BadRequest(format!("line {} is not valid JSON: {e}", number + 1))
        })?;
        events.push(event);
    }
    Ok(events)
}

fn check_depth(text: &str, depth_max: usize, limits: &Limits) -> Result<(), ApiError> {
    if nesting_exceeds(text.as_bytes(), depth_max) {
        return Err(ApiError::Unprocessable(format!(
            "JSON nests deeper than {} levels per event",
            limits.json_depth_max
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldLimits;
    use crate::http::SubscribeLimits;

    const LIMITS: Limits = Limits {
        body_bytes_max: 1 << 20,
        request_events_max: 3,
        json_depth_max: 4,
        fields: FieldLimits {
            field_bytes_max: 255,
        },
        subscribe: SubscribeLimits::DEFAULT,
    };

    fn event(id: &str) -> String {
        format!(
            r#"{{"topic":"t","event_id":"{id}","timestamp":"2025-01-01T00:00:00Z","source":"s","payload":{{}}}}"#
        )
    }

    fn problem(body: &str, format: BodyFormat) -> ApiError {
        parse_events(body.as_bytes(), format, &LIMITS).expect_err("should be rejected")
    }

    #[test]
    fn single_array_and_ndjson_bodies_parse() {
        let single = parse_events(event("a").as_bytes(), BodyFormat::Json, &LIMITS);
        assert_eq!(single.expect("single").len(), 1);
        let array = format!("[{},{}]", event("a"), event("b"));
        assert_eq!(
            parse_events(array.as_bytes(), BodyFormat::Json, &LIMITS)
                .expect("array")
                .len(),
            2
        );
        let ndjson = format!("{}\n\n{}\r\n", event("a"), event("b"));
        assert_eq!(
            parse_events(ndjson.as_bytes(), BodyFormat::Ndjson, &LIMITS)
                .expect("ndjson")
                .len(),
            2
        );
    }

    #[test]
    fn bad_bodies_get_the_right_problem() {
        assert!(matches!(
            problem("{\"topic\":", BodyFormat::Json),
            ApiError::BadRequest(_)
        ));
        assert!(matches!(
            problem("[]", BodyFormat::Json),
            ApiError::Unprocessable(_)
        ));
        assert!(matches!(
            problem("", BodyFormat::Ndjson),
            ApiError::Unprocessable(_)
        ));
        let many = format!("[{0},{0},{0},{0}]", event("a"));
        assert!(matches!(
            problem(&many, BodyFormat::Json),
            ApiError::TooLarge(_)
        ));
        let deep = r#"{"topic":"t","payload":{"a":{"b":{"c":{}}}}}"#;
        assert!(matches!(
            problem(deep, BodyFormat::Json),
            ApiError::Unprocessable(_)
        ));
        let ndjson = format!("{}\nnot json\n", event("a"));
        match problem(&ndjson, BodyFormat::Ndjson) {
            ApiError::BadRequest(detail) => assert!(detail.starts_with("line 2"), "{detail}"),
            other => panic!("unexpected {other:?}"),
        }
        let not_utf8 = parse_events(b"[\xff]", BodyFormat::Json, &LIMITS);
        assert!(matches!(not_utf8, Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn every_bad_event_is_listed_with_its_index() {
        let body = format!("[{}, 5, {{\"topic\":\"t\"}}]", event("a"));
        let ApiError::InvalidEvents(errors) = problem(&body, BodyFormat::Json) else {
            panic!("expected a validation problem");
        };
        assert_eq!(errors[0].index, 1);
        assert_eq!(errors[0].field, None);
        assert!(errors[1..].iter().all(|e| e.index == 2));
        assert_eq!(
            errors.len(),
            1 + 4,
            "event 2 misses four fields: {errors:?}"
        );
    }
}
