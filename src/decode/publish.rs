//! logagg's own format: one event as a JSON object, a JSON array of events,
//! or NDJSON (one event per line, blank lines skipped).
//!
//! A request is all-or-nothing: one bad event rejects it, and the error
//! lists every bad field of every event. Nesting depth is measured before
//! any parsing, so a hostile body never reaches the parser's recursion
//! limit.

use serde_json::value::RawValue;

use super::{DecodeError, DecodeLimits, all_or_nothing, check_count};
use crate::event::{Event, FieldError, WireItem, nesting_exceeds};

/// How the body lays out its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One event object, or an array of them.
    Json,
    /// One event object per line; blank lines are skipped.
    Ndjson,
}

impl Format {
    /// The format of a media type (`Content-Type` without parameters,
    /// lowercase), if it is one of ours.
    pub fn from_media_type(essence: &str) -> Option<Self> {
        match essence {
            "application/json" => Some(Self::Json),
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(Self::Ndjson)
            }
            _ => None,
        }
    }
}

/// Parses and validates every event of the body.
///
/// Valid bodies are read in one pass: each event is deserialized straight
/// into its [`WireItem`], string fields borrowed from the body. Only a body
/// that breaks a rule inside an event object (a field of the wrong kind is
/// fine; a repeated field is not) is read again the slow way, one event at
/// a time, so that the error can name the event.
///
/// # Errors
/// [`DecodeError::Malformed`] for bytes that are not UTF-8 or not JSON;
/// [`DecodeError::TooLarge`] for too many events;
/// [`DecodeError::Unprocessable`] for no events or too-deep nesting;
/// [`DecodeError::Invalid`] for any invalid event (all listed).
pub fn decode(
    body: &[u8],
    format: Format,
    limits: &DecodeLimits,
) -> Result<Vec<Event>, DecodeError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| DecodeError::Malformed(format!("body is not valid UTF-8: {e}")))?;
    let items = match format {
        Format::Json => read_json(text, limits)?,
        Format::Ndjson => read_ndjson(text, limits)?,
    };
    let Some(items) = items else {
        return decode_per_event(text, format, limits);
    };
    check_count(items.len(), limits)?;
    all_or_nothing(
        items
            .iter()
            .enumerate()
            .map(|(index, item)| validate(item, index, limits)),
    )
}

fn validate(
    item: &WireItem<'_>,
    index: usize,
    limits: &DecodeLimits,
) -> Result<Event, Vec<FieldError>> {
    match item {
        WireItem::Event(wire) => Event::from_wire(wire, index, &limits.fields),
        WireItem::Other(_) => Err(vec![FieldError::whole(
            index,
            "event must be a JSON object",
        )]),
    }
}

/// Whether a parse failed on the JSON itself (malformed: the request is
/// refused whole) rather than on what an event object holds.
fn is_syntax(error: &serde_json::Error) -> bool {
    !matches!(error.classify(), serde_json::error::Category::Data)
}

/// A JSON body in one pass: `None` when an event object breaks a rule that
/// needs the per-event pass to report.
fn read_json<'a>(
    text: &'a str,
    limits: &DecodeLimits,
) -> Result<Option<Vec<WireItem<'a>>>, DecodeError> {
    let is_array = text.trim_start().starts_with('[');
    // The array around the events is one more level.
    check_depth(text, limits.json_depth_max + usize::from(is_array), limits)?;
    let parsed = if is_array {
        serde_json::from_str(text)
    } else {
        serde_json::from_str(text).map(|item| vec![item])
    };
    match parsed {
        Ok(items) => Ok(Some(items)),
        Err(e) if is_syntax(&e) => Err(not_json(text, &e)),
        Err(_) => Ok(None),
    }
}

/// An NDJSON body in one pass over its lines; `None` as for [`read_json`].
fn read_ndjson<'a>(
    text: &'a str,
    limits: &DecodeLimits,
) -> Result<Option<Vec<WireItem<'a>>>, DecodeError> {
    let mut items = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        check_depth(line, limits.json_depth_max, limits)?;
        match serde_json::from_str(line) {
            Ok(item) => items.push(item),
            Err(e) if is_syntax(&e) => {
                return Err(DecodeError::Malformed(format!(
                    "line {} is not valid JSON: {e}",
                    number + 1
                )));
            }
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(items))
}

/// The slow path, for bodies the one pass could not read: split the body
/// into raw events, then read each alone so that a failure names its event.
fn decode_per_event(
    text: &str,
    format: Format,
    limits: &DecodeLimits,
) -> Result<Vec<Event>, DecodeError> {
    let raw_events = match format {
        Format::Json => split_json(text, limits)?,
        Format::Ndjson => split_ndjson(text, limits)?,
    };
    check_count(raw_events.len(), limits)?;
    all_or_nothing(raw_events.into_iter().enumerate().map(|(index, raw)| {
        let item: WireItem<'_> = serde_json::from_str(raw.get()).map_err(|e| {
            vec![FieldError::whole(
                index,
                format!("event is not usable: {e}"),
            )]
        })?;
        validate(&item, index, limits)
    }))
}

/// A JSON body: one event object, or an array of them.
fn split_json<'a>(text: &'a str, limits: &DecodeLimits) -> Result<Vec<&'a RawValue>, DecodeError> {
    let is_array = text.trim_start().starts_with('[');
    // The array around the events is one more level.
    let depth_max = limits.json_depth_max + usize::from(is_array);
    check_depth(text, depth_max, limits)?;
    let invalid = |e: serde_json::Error| not_json(text, &e);
    if is_array {
        serde_json::from_str(text).map_err(invalid)
    } else {
        let event: &RawValue = serde_json::from_str(text).map_err(invalid)?;
        Ok(vec![event])
    }
}

/// The error for a `Content-Type: application/json` body that is not JSON,
/// with a hint when it is NDJSON (one JSON value per line) sent under the
/// wrong type, the usual mistake with `curl -d @events.ndjson`.
fn not_json(text: &str, error: &serde_json::Error) -> DecodeError {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let ndjson = error.to_string().starts_with("trailing characters")
        && lines
            .next()
            .is_some_and(|first| serde_json::from_str::<&RawValue>(first).is_ok())
        && lines.next().is_some();
    let hint = if ndjson {
        "; it looks like NDJSON (one event per line): send it with \
         Content-Type: application/x-ndjson"
    } else {
        ""
    };
    DecodeError::Malformed(format!("body is not valid JSON: {error}{hint}"))
}

/// An NDJSON body: one event per non-blank line.
fn split_ndjson<'a>(
    text: &'a str,
    limits: &DecodeLimits,
) -> Result<Vec<&'a RawValue>, DecodeError> {
    let mut events = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        check_depth(line, limits.json_depth_max, limits)?;
        let event = serde_json::from_str(line).map_err(|e| {
            DecodeError::Malformed(format!("line {} is not valid JSON: {e}", number + 1))
        })?;
        events.push(event);
    }
    Ok(events)
}

fn check_depth(text: &str, depth_max: usize, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if nesting_exceeds(text.as_bytes(), depth_max) {
        return Err(DecodeError::Unprocessable(format!(
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

    const LIMITS: DecodeLimits = DecodeLimits {
        request_events_max: 3,
        json_depth_max: 4,
        fields: FieldLimits {
            field_bytes_max: 255,
        },
    };

    fn event(id: &str) -> String {
        format!(
            r#"{{"topic":"t","event_id":"{id}","timestamp":"2025-01-01T00:00:00Z","source":"s","payload":{{}}}}"#
        )
    }

    fn problem(body: &str, format: Format) -> DecodeError {
        decode(body.as_bytes(), format, &LIMITS).expect_err("should be rejected")
    }

    #[test]
    fn single_array_and_ndjson_bodies_parse() {
        let single = decode(event("a").as_bytes(), Format::Json, &LIMITS);
        assert_eq!(single.expect("single").len(), 1);
        let array = format!("[{},{}]", event("a"), event("b"));
        assert_eq!(
            decode(array.as_bytes(), Format::Json, &LIMITS)
                .expect("array")
                .len(),
            2
        );
        let ndjson = format!("{}\n\n{}\r\n", event("a"), event("b"));
        assert_eq!(
            decode(ndjson.as_bytes(), Format::Ndjson, &LIMITS)
                .expect("ndjson")
                .len(),
            2
        );
    }

    #[test]
    fn bad_bodies_get_the_right_problem() {
        assert!(matches!(
            problem("{\"topic\":", Format::Json),
            DecodeError::Malformed(_)
        ));
        assert!(matches!(
            problem("[]", Format::Json),
            DecodeError::Unprocessable(_)
        ));
        assert!(matches!(
            problem("", Format::Ndjson),
            DecodeError::Unprocessable(_)
        ));
        let many = format!("[{0},{0},{0},{0}]", event("a"));
        assert!(matches!(
            problem(&many, Format::Json),
            DecodeError::TooLarge(_)
        ));
        let deep = r#"{"topic":"t","payload":{"a":{"b":{"c":{}}}}}"#;
        assert!(matches!(
            problem(deep, Format::Json),
            DecodeError::Unprocessable(_)
        ));
        let ndjson = format!("{}\nnot json\n", event("a"));
        match problem(&ndjson, Format::Ndjson) {
            DecodeError::Malformed(detail) => assert!(detail.starts_with("line 2"), "{detail}"),
            other => panic!("unexpected {other:?}"),
        }
        let not_utf8 = decode(b"[\xff]", Format::Json, &LIMITS);
        assert!(matches!(not_utf8, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn every_bad_event_is_listed_with_its_index() {
        let body = format!("[{}, 5, {{\"topic\":\"t\"}}]", event("a"));
        let DecodeError::Invalid(errors) = problem(&body, Format::Json) else {
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

    #[test]
    fn escaped_strings_and_every_kind_of_wrong_field_read_in_one_pass() {
        let body = r#"{"topic":"a\u002eb","event_id":"e\n","timestamp":"2025-01-01T00:00:00Z","source":{"x":[1]},"payload":{}}"#;
        let DecodeError::Invalid(errors) = problem(body, Format::Json) else {
            panic!("expected a validation problem");
        };
        // The escaped topic decoded to "a.b" and passed; the id holds a
        // control character; the source is an object.
        let fields: Vec<_> = errors
            .iter()
            .map(|e| (e.field.as_deref(), e.message.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                (Some("event_id"), "must not contain control characters"),
                (Some("source"), "must be a string, got an object"),
            ]
        );
        let fixed = body.replace(r#"\n"#, "").replace(r#"{"x":[1]}"#, r#""s""#);
        let events = decode(fixed.as_bytes(), Format::Json, &LIMITS).expect("valid");
        assert_eq!(events[0].topic.as_str(), "a.b");
    }

    #[test]
    fn a_repeated_field_names_its_event_in_every_format() {
        let repeated = r#"{"topic":"t","topic":"u","event_id":"e","timestamp":"2025-01-01T00:00:00Z","source":"s","payload":{}}"#;
        for (body, format) in [
            (format!("[{},{repeated}]", event("a")), Format::Json),
            (format!("{}\n{repeated}", event("a")), Format::Ndjson),
        ] {
            let DecodeError::Invalid(errors) = problem(&body, format) else {
                panic!("expected a validation problem for {format:?}");
            };
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!((errors[0].index, errors[0].field.clone()), (1, None));
            assert!(
                errors[0].message.contains("duplicate field `topic`"),
                "{errors:?}"
            );
        }
    }
}
