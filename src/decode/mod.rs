//! Ingest formats: each decoder turns a request body into validated
//! [`Event`]s, or says precisely what is wrong with it.
//!
//! Decoders are pure functions of bytes and [`DecodeLimits`]: they know
//! nothing of HTTP (the handlers pick a decoder by route and content type,
//! read the body within its size limit, and map [`DecodeError`] to a status)
//! and nothing of the queue or the store. That keeps every format on one
//! shared ingest path, and lets each be unit-tested and fuzzed on bytes.
//!
//! - [`publish`]: logagg's own events, as one JSON object, a JSON array, or
//!   NDJSON.

pub mod publish;

use std::io::Read;

use crate::event::{Event, FieldError, FieldLimits};

/// Bounds every decoder applies.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Most events in one request.
    pub request_events_max: usize,
    /// Deepest JSON nesting of one event (the event object is level 1, its
    /// payload level 2).
    pub json_depth_max: usize,
    pub fields: FieldLimits,
}

/// Why a body could not become events. Each variant's doc names the HTTP
/// status it becomes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// 400: the bytes are not what they claim to be (not UTF-8, not JSON,
    /// not gzip, truncated).
    #[error("{0}")]
    Malformed(String),
    /// 422: well-formed, but events break the rules; every bad field of
    /// every event is listed (up to [`ERRORS_LISTED_MAX`]).
    #[error("{} invalid field(s)", .0.len())]
    Invalid(Vec<FieldError>),
    /// 422: well-formed, but the request cannot be taken as a whole (no
    /// events, nested too deep).
    #[error("{0}")]
    Unprocessable(String),
    /// 413: more events, or more bytes once decompressed, than allowed.
    #[error("{0}")]
    TooLarge(String),
}

/// Most field errors listed in one problem document; a batch of 10,000 bad
/// events should not become a multi-megabyte answer.
pub const ERRORS_LISTED_MAX: usize = 1_000;

/// Decompresses a gzip body, refusing more than `max` bytes of output (so a
/// small gzip bomb is refused too).
///
/// A body may hold several gzip members (RFC 1952), which decompress to
/// their concatenation; stopping after the first would drop the rest of the
/// events without a word.
///
/// # Errors
/// [`DecodeError::Malformed`] for a broken stream, [`DecodeError::TooLarge`]
/// past `max`.
pub fn gunzip(bytes: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    let mut plain = Vec::with_capacity(bytes.len().saturating_mul(4).min(max + 1));
    flate2::read::MultiGzDecoder::new(bytes)
        .take(max as u64 + 1)
        .read_to_end(&mut plain)
        .map_err(|e| DecodeError::Malformed(format!("body is not valid gzip: {e}")))?;
    if plain.len() > max {
        return Err(DecodeError::TooLarge(format!(
            "request body is larger than {max} bytes once decompressed"
        )));
    }
    Ok(plain)
}

/// Checks the number of events against the limit, and that there is one.
fn check_count(count: usize, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if count == 0 {
        return Err(DecodeError::Unprocessable(
            "request holds no events".to_owned(),
        ));
    }
    if count > limits.request_events_max {
        return Err(DecodeError::TooLarge(format!(
            "request holds {count} events; the limit is {} per request",
            limits.request_events_max
        )));
    }
    Ok(())
}

/// Collects per-event results into the events, or every problem found.
fn all_or_nothing(
    results: impl Iterator<Item = Result<Event, Vec<FieldError>>>,
) -> Result<Vec<Event>, DecodeError> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(event) => events.push(event),
            Err(mut bad) => errors.append(&mut bad),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        errors.truncate(ERRORS_LISTED_MAX);
        Err(DecodeError::Invalid(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).expect("writing to a Vec");
        encoder.finish().expect("finishing into a Vec")
    }

    #[test]
    fn gunzip_joins_members_and_refuses_bombs() {
        let mut two = gzip(b"ab");
        two.extend(gzip(b"cd"));
        assert_eq!(gunzip(&two, 10), Ok(b"abcd".to_vec()));
        let bomb = gzip(&[b'x'; 10_000]);
        assert!(matches!(
            gunzip(&bomb, 9_999),
            Err(DecodeError::TooLarge(_))
        ));
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(DecodeError::Malformed(_))
        ));
    }
}
