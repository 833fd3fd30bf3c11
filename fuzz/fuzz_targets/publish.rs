//! Event parsing and validation: `decode::publish::decode` on JSON (one
//! event or an array) and NDJSON bodies, optionally through
//! `decode::gunzip`, as the ingest path runs them.
//!
//! The first byte picks the path: bit 0 NDJSON instead of JSON, bit 1 gzip
//! first. Besides not panicking, what decoding promises must hold: an
//! accepted request has 1 to `request_events_max` events, each of which
//! passes validation again, is the same content as itself (also with its
//! payload's whitespace removed), and has a topic that is a pattern naming
//! it; a rejected one lists at most `ERRORS_LISTED_MAX` problems.

#![no_main]

use libfuzzer_sys::fuzz_target;
use logagg::decode::publish::{Format, decode};
use logagg::decode::{DecodeError, DecodeLimits, ERRORS_LISTED_MAX, gunzip};
use logagg::event::{Event, EventId, FieldLimits, Topic, TopicPattern};

const LIMITS: DecodeLimits = DecodeLimits {
    request_events_max: 100,
    json_depth_max: 32,
    fields: FieldLimits {
        field_bytes_max: 255,
    },
};

/// Decompressed bytes allowed, as `--body-bytes-max` does on the server.
const BODY_BYTES_MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let plain;
    let body = if mode & 2 != 0 {
        match gunzip(body, BODY_BYTES_MAX) {
            Ok(bytes) => {
                assert!(bytes.len() <= BODY_BYTES_MAX);
                plain = bytes;
                plain.as_slice()
            }
            Err(DecodeError::Malformed(_) | DecodeError::TooLarge(_)) => return,
            Err(other) => panic!("gunzip failed with {other:?}"),
        }
    } else {
        body
    };
    let format = if mode & 1 == 0 {
        Format::Json
    } else {
        Format::Ndjson
    };
    match decode(body, format, &LIMITS) {
        Ok(events) => {
            assert!((1..=LIMITS.request_events_max).contains(&events.len()));
            events.iter().for_each(check);
        }
        Err(DecodeError::Invalid(errors)) => {
            assert!(!errors.is_empty() && errors.len() <= ERRORS_LISTED_MAX);
        }
        Err(_) => {}
    }
});

fn check(event: &Event) {
    let fields = &LIMITS.fields;
    Topic::parse(event.topic.as_str().to_owned(), fields).expect("a decoded topic is valid");
    EventId::parse(event.event_id.as_str().to_owned(), fields).expect("a decoded id is valid");
    assert!((1..=fields.field_bytes_max).contains(&event.source.len()));
    let payload = event.payload.get();
    assert!(payload.starts_with('{'));
    assert!(event.same_content(&event.timestamp, &event.source, payload));
    assert!(event.same_content(
        &event.timestamp,
        &event.source,
        &without_whitespace(payload)
    ));
    let pattern = TopicPattern::parse(event.topic.as_str(), fields).expect("a topic is a pattern");
    assert_eq!(pattern.exact(), Some(event.topic.as_str()));
    assert!(pattern.matches(event.topic.as_str()));
}

/// `json` with the whitespace between tokens removed (not inside strings).
fn without_whitespace(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if matches!(c, ' ' | '\t' | '\n' | '\r') {
            continue;
        }
        out.push(c);
    }
    out
}
