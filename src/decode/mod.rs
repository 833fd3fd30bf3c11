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
//! - [`otlp`]: OpenTelemetry logs (OTLP/HTTP, protobuf or JSON).
//! - [`loki`]: the Loki push API (JSON, or snappy-compressed protobuf).
//! - [`raw`]: records from log shippers (any JSON objects, NDJSON, or text
//!   lines) for a topic named in the URL.
//!
//! The foreign formats map each record to an event with a deterministic
//! `event_id` (the record's own id when it has one, else a hash of its
//! content, see [`id`]), so that a client's retry of the same batch is a
//! duplicate. [`Decoded`] carries the events and, for formats that accept
//! part of a request (OTLP's `partial_success`), the records rejected.

pub mod id;
pub mod loki;
pub mod otlp;
pub mod publish;
pub mod raw;

use std::io::Read;

use crate::event::{Event, FieldError, FieldLimits};

/// How a body is encoded, for the protocols that have both encodings (OTLP,
/// Loki). Loki's protobuf body is also one snappy block, which the HTTP
/// layer undoes before the decoder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Binary protobuf (`application/x-protobuf`).
    Protobuf,
    /// JSON (`application/json`).
    Json,
}

impl Encoding {
    /// The encoding of a media type (`Content-Type` without parameters,
    /// lowercase), if it is one of the two.
    pub fn from_media_type(essence: &str) -> Option<Self> {
        match essence {
            "application/x-protobuf" | "application/protobuf" => Some(Self::Protobuf),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// How the foreign formats name their events, from `ServeConfig`.
#[derive(Debug, Clone)]
pub struct FormatMapping {
    pub otlp: otlp::OtlpMapping,
    pub loki: loki::LokiMapping,
}

/// What a decoder made of a body: the events to store and, for formats
/// that may accept part of a request, what it rejected.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<Event>,
    /// Records that could not become events, however many there were.
    pub rejected_count: u64,
    /// Why, for the first [`ERRORS_LISTED_MAX`] of them.
    pub rejected: Vec<FieldError>,
}

impl Decoded {
    /// Records one rejection, keeping its reason while the list is short.
    fn reject(&mut self, mut errors: Vec<FieldError>) {
        self.rejected_count += 1;
        let room = ERRORS_LISTED_MAX.saturating_sub(self.rejected.len());
        errors.truncate(room);
        self.rejected.append(&mut errors);
    }
}

impl From<Vec<Event>> for Decoded {
    fn from(events: Vec<Event>) -> Self {
        Self {
            events,
            ..Self::default()
        }
    }
}

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

/// Decompresses a snappy block (the raw format, without stream framing, as
/// Loki's push API sends it), refusing more than `max` bytes of output
/// before allocating them (the block declares its length up front).
///
/// # Errors
/// [`DecodeError::Malformed`] for a truncated or corrupt block,
/// [`DecodeError::TooLarge`] past `max`.
pub fn unsnappy(bytes: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    let malformed =
        |e: snap::Error| DecodeError::Malformed(format!("body is not a valid snappy block: {e}"));
    let len = snap::raw::decompress_len(bytes).map_err(malformed)?;
    if len > max {
        return Err(DecodeError::TooLarge(format!(
            "request body is larger than {max} bytes once decompressed"
        )));
    }
    snap::raw::Decoder::new()
        .decompress_vec(bytes)
        .map_err(malformed)
}

/// A Unix time in nanoseconds as RFC 3339 in UTC with nine fractional
/// digits (`2025-10-25T12:30:00.000000001Z`); every `u64` fits (years 1970
/// to 2554, always four digits).
///
/// Written digit by digit: chrono's `format` interprets its pattern on
/// every call, which cost more than the rest of a record's mapping.
pub fn rfc3339_from_unix_nanos(nanos: u64) -> String {
    use chrono::{Datelike, Timelike};
    let subsec = (nanos % 1_000_000_000) as u32;
    let time = chrono::DateTime::from_timestamp((nanos / 1_000_000_000) as i64, subsec)
        .expect("every u64 of nanoseconds is a representable time")
        .naive_utc();
    let mut text = String::with_capacity(30);
    for (value, width, after) in [
        (time.year() as u32, 4, '-'),
        (time.month(), 2, '-'),
        (time.day(), 2, 'T'),
        (time.hour(), 2, ':'),
        (time.minute(), 2, ':'),
        (time.second(), 2, '.'),
        (subsec, 9, 'Z'),
    ] {
        for place in (0..width).rev() {
            let digit = value / 10u32.pow(place) % 10;
            text.push(char::from(b'0' + digit as u8));
        }
        text.push(after);
    }
    text
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
    fn unsnappy_refuses_truncated_blocks_and_bombs() {
        let block = snap::raw::Encoder::new()
            .compress_vec(&[b'x'; 1000])
            .expect("compressing");
        assert_eq!(unsnappy(&block, 1000), Ok(vec![b'x'; 1000]));
        assert!(matches!(
            unsnappy(&block, 999),
            Err(DecodeError::TooLarge(_))
        ));
        assert!(matches!(
            unsnappy(&block[..block.len() - 1], 1000),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(unsnappy(b"", 10), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn nanos_become_rfc3339_with_nine_digits() {
        assert_eq!(rfc3339_from_unix_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_from_unix_nanos(1_761_395_400_000_000_001),
            "2025-10-25T12:30:00.000000001Z"
        );
        assert!(rfc3339_from_unix_nanos(u64::MAX).starts_with("2554-"));
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
