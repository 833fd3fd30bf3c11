//! Records from log shippers, for a topic the request names
//! (`POST /publish/{topic}`): whatever JSON objects a shipper's generic
//! HTTP output sends (one object, an array of them, NDJSON, or several of
//! those back to back), or plain text, one record per line.
//!
//! Each record becomes one event ([`RawOptions`] says how):
//!
//! - `topic`: the one in the URL;
//! - `event_id`: the record's `id_field` when the request names one, else a
//!   hash of the record's bytes as sent (so a retried request, which a
//!   shipper resends byte for byte, is a duplicate);
//! - `timestamp`: the record's `time_field` when named (an RFC 3339 string,
//!   or a number of seconds, milliseconds, microseconds or nanoseconds since
//!   1970, told apart by size), else the time the request arrived (which is
//!   *not* part of the id: a retry arrives later);
//! - `source`: the record's `source_field` when named, else the request's
//!   (a header, see the HTTP handler);
//! - `payload`: the JSON object as sent, or `{"message": line}` for text.
//!
//! A request is all-or-nothing, as on `/publish`: every bad record is
//! listed and nothing is stored.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::id::{Occurrences, RecordHash};
use super::{DecodeError, DecodeLimits, all_or_nothing, check_count, rfc3339_from_unix_nanos};
use crate::event::{Event, EventParts, FieldError, Topic, nesting_exceeds};

/// Domain tag of the record hash; change it when the hashed fields change.
const HASH_DOMAIN: &str = "logagg/raw/1";

/// How the body lays out its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON objects: one, an array, NDJSON, or any sequence of those.
    Json,
    /// One record per non-blank line of UTF-8 text.
    Text,
}

impl Format {
    /// The format of a media type (`Content-Type` without parameters,
    /// lowercase), if it is one this endpoint takes.
    pub fn from_media_type(essence: &str) -> Option<Self> {
        match essence {
            "application/json"
            | "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/json-lines"
            | "application/x-json-stream"
            | "application/stream+json" => Some(Self::Json),
            "text/plain" => Some(Self::Text),
            _ => None,
        }
    }
}

/// What the request says about its records.
#[derive(Debug, Clone, Default)]
pub struct RawOptions {
    /// The topic from the URL, not yet validated.
    pub topic: String,
    /// The record field holding its event id.
    pub id_field: Option<String>,
    /// The record field holding its time.
    pub time_field: Option<String>,
    /// The record field holding its source.
    pub source_field: Option<String>,
    /// The source of records without a `source_field`.
    pub source: String,
    /// When the request arrived, RFC 3339: the time of records without a
    /// `time_field`.
    pub received: String,
}

/// Decodes a shipper's body into events.
///
/// # Errors
/// [`DecodeError::Malformed`] for bytes that are not UTF-8 or not JSON;
/// [`DecodeError::TooLarge`] for too many records;
/// [`DecodeError::Unprocessable`] for none, an invalid topic, nesting too
/// deep, or a field named for text records;
/// [`DecodeError::Invalid`] for records that cannot become events (all
/// listed).
pub fn decode(
    body: &[u8],
    format: Format,
    options: &RawOptions,
    limits: &DecodeLimits,
) -> Result<Vec<Event>, DecodeError> {
    let topic = Topic::parse(options.topic.clone(), &limits.fields)
        .map_err(|reason| DecodeError::Unprocessable(format!("topic in the URL {reason}")))?;
    let text = std::str::from_utf8(body)
        .map_err(|e| DecodeError::Malformed(format!("body is not valid UTF-8: {e}")))?;
    let records = match format {
        Format::Json => split_json(text, limits)?,
        Format::Text => {
            if options.id_field.is_some()
                || options.time_field.is_some()
                || options.source_field.is_some()
            {
                return Err(DecodeError::Unprocessable(
                    "id_field, time_field and source_field need JSON records; text lines have no fields"
                        .to_owned(),
                ));
            }
            text.lines()
                .map(|line| line.strip_suffix('\r').unwrap_or(line))
                .filter(|line| !line.trim().is_empty())
                .map(Record::Line)
                .collect()
        }
    };
    check_count(records.len(), limits)?;
    let mut occurrences = Occurrences::default();
    all_or_nothing(records.into_iter().enumerate().map(|(index, record)| {
        map_record(record, index, &topic, options, &mut occurrences, limits)
    }))
}

/// One record as sent.
enum Record<'a> {
    Json(&'a RawValue),
    Line(&'a str),
}

/// Splits a JSON body into records: each top-level object is one, each
/// top-level array holds some.
fn split_json<'a>(text: &'a str, limits: &DecodeLimits) -> Result<Vec<Record<'a>>, DecodeError> {
    // A record is an event's payload (level 2), inside at most one array:
    // bound the parser's recursion before it runs; each record's own depth
    // is checked exactly once split.
    if nesting_exceeds(text.as_bytes(), limits.json_depth_max) {
        return Err(too_deep(limits));
    }
    let mut records = Vec::new();
    let values = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    for value in values {
        let value =
            value.map_err(|e| DecodeError::Malformed(format!("body is not valid JSON: {e}")))?;
        if value.get().starts_with('[') {
            let array: Vec<&RawValue> = serde_json::from_str(value.get())
                .map_err(|e| DecodeError::Malformed(format!("body is not valid JSON: {e}")))?;
            records.extend(array.into_iter().map(Record::Json));
        } else {
            records.push(Record::Json(value));
        }
    }
    Ok(records)
}

fn too_deep(limits: &DecodeLimits) -> DecodeError {
    DecodeError::Unprocessable(format!(
        "JSON nests deeper than {} levels per event (a record is the payload, level 2)",
        limits.json_depth_max
    ))
}

/// The raw values of the fields a request names (id, time, source), read
/// from one record in one pass that skips every other field.
struct NamedFields<'n>([Option<&'n str>; 3]);

impl<'de> serde::de::DeserializeSeed<'de> for NamedFields<'_> {
    type Value = [Option<&'de RawValue>; 3];

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NamedFields<'_> {
    type Value = [Option<&'de RawValue>; 3];

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = [None; 3];
        while let Some(Key(key)) = map.next_key()? {
            if self.0.iter().any(|name| *name == Some(&*key)) {
                let value: &RawValue = map.next_value()?;
                for (slot, name) in found.iter_mut().zip(self.0) {
                    if name == Some(&*key) {
                        *slot = Some(value);
                    }
                }
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// An object key, borrowed from the body unless it has escapes.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(v.to_owned().into()))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

fn map_record(
    record: Record<'_>,
    index: usize,
    topic: &Topic,
    options: &RawOptions,
    occurrences: &mut Occurrences,
    limits: &DecodeLimits,
) -> Result<Event, Vec<FieldError>> {
    let (bytes, payload, fields) = match record {
        Record::Line(line) => {
            #[derive(serde::Serialize)]
            struct Line<'a> {
                message: &'a str,
            }
            let payload = serde_json::value::to_raw_value(&Line { message: line })
                .expect("a string serializes");
            (line, payload, [None; 3])
        }
        Record::Json(raw) => {
            let text = raw.get();
            if !text.starts_with('{') {
                return Err(vec![FieldError::whole(
                    index,
                    "record must be a JSON object",
                )]);
            }
            if nesting_exceeds(text.as_bytes(), limits.json_depth_max.saturating_sub(1)) {
                return Err(vec![FieldError::whole(index, too_deep(limits).to_string())]);
            }
            let names = [
                &options.id_field,
                &options.time_field,
                &options.source_field,
            ]
            .map(Option::as_deref);
            let fields = if names.iter().any(Option::is_some) {
                use serde::de::DeserializeSeed;
                NamedFields(names)
                    .deserialize(&mut serde_json::Deserializer::from_str(text))
                    .map_err(|e| {
                        vec![FieldError::whole(
                            index,
                            format!("record is not usable: {e}"),
                        )]
                    })?
            } else {
                [None; 3]
            };
            (text, raw.to_owned(), fields)
        }
    };
    let mut errors = Vec::new();
    let mut named = |slot: usize,
                     field: &Option<String>,
                     name: &'static str,
                     read: fn(&RawValue) -> Result<String, String>| {
        let field = field.as_deref()?;
        let value = fields[slot]
            .ok_or_else(|| format!("record has no field {field:?}"))
            .and_then(|raw| read(raw).map_err(|e| format!("field {field:?} {e}")));
        value
            .map_err(|message| errors.push(FieldError::field(index, name, message)))
            .ok()
    };
    let event_id = named(0, &options.id_field, "event_id", read_id);
    let timestamp = named(1, &options.time_field, "timestamp", read_time);
    let source = named(2, &options.source_field, "source", read_string);
    if !errors.is_empty() {
        return Err(errors);
    }
    let event_id = event_id.unwrap_or_else(|| {
        let mut hash = RecordHash::new(HASH_DOMAIN);
        hash.field(bytes.as_bytes());
        occurrences.id(hash.finish())
    });
    Event::from_parts(
        EventParts {
            topic: topic.as_str().to_owned(),
            event_id,
            timestamp: timestamp.unwrap_or_else(|| options.received.clone()),
            source: source.unwrap_or_else(|| options.source.clone()),
            payload,
        },
        index,
        &limits.fields,
    )
}

fn read_string(raw: &RawValue) -> Result<String, String> {
    String::deserialize(raw).map_err(|_| "must be a string".to_owned())
}

/// An id: a string, or a number taken as its text.
fn read_id(raw: &RawValue) -> Result<String, String> {
    match raw.get().as_bytes().first() {
        Some(b'"') => read_string(raw),
        Some(b'-' | b'0'..=b'9') => Ok(raw.get().to_owned()),
        _ => Err("must be a string or a number".to_owned()),
    }
}

/// A time: an RFC 3339 string (checked when the event is built), or a
/// number since 1970 whose size tells its unit: below 10^11 seconds (until
/// the year 5138), below 10^14 milliseconds, below 10^17 microseconds,
/// else nanoseconds. Decimal fractions are read exactly, down to the
/// nanosecond (a float would turn `.25` s into `.249999872`).
fn read_time(raw: &RawValue) -> Result<String, String> {
    let text = raw.get();
    if text.starts_with('"') {
        return read_string(raw);
    }
    let not_a_time = || "must be an RFC 3339 string or a non-negative number since 1970".to_owned();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        // Exponents and signs: no shipper writes times so.
        return Err(not_a_time());
    }
    let whole: u64 = whole
        .parse()
        .map_err(|_| "is too far in the future".to_owned())?;
    let unit_nanos: u64 = match whole {
        w if w < 100_000_000_000 => 1_000_000_000,
        w if w < 100_000_000_000_000 => 1_000_000,
        w if w < 100_000_000_000_000_000 => 1_000,
        _ => 1,
    };
    // The fraction's digits that still count at nanosecond resolution.
    let mut fraction_nanos = 0u64;
    let mut scale = unit_nanos;
    for digit in fraction.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        fraction_nanos += u64::from(digit - b'0') * scale;
    }
    whole
        .checked_mul(unit_nanos)
        .and_then(|nanos| nanos.checked_add(fraction_nanos))
        .map(rfc3339_from_unix_nanos)
        .ok_or_else(|| "is too far in the future".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldLimits;

    const LIMITS: DecodeLimits = DecodeLimits {
        request_events_max: 10,
        json_depth_max: 4,
        fields: FieldLimits {
            field_bytes_max: 255,
        },
    };

    fn options() -> RawOptions {
        RawOptions {
            topic: "web.access".into(),
            source: "Fluent-Bit".into(),
            received: "2025-10-25T12:30:00.5Z".into(),
            ..RawOptions::default()
        }
    }

    fn decode_ok(body: &str, format: Format, options: &RawOptions) -> Vec<Event> {
        decode(body.as_bytes(), format, options, &LIMITS).expect("valid")
    }

    #[test]
    fn every_json_layout_gives_its_records() {
        let one = r#"{"log":"a"}"#;
        let layouts = [
            r#"{"log":"a"}"#.to_owned(),
            format!("[{one},{{\"log\":\"b\"}}]"),
            format!("{one}\n{{\"log\":\"b\"}}\n\n"),
            format!("[{one}]\n[{{\"log\":\"b\"}},{{\"log\":\"c\"}}]"),
        ];
        let counts: Vec<usize> = layouts
            .iter()
            .map(|body| decode_ok(body, Format::Json, &options()).len())
            .collect();
        assert_eq!(counts, [1, 2, 2, 3]);
        let event = &decode_ok(one, Format::Json, &options())[0];
        assert_eq!(event.topic.as_str(), "web.access");
        assert_eq!(event.timestamp, "2025-10-25T12:30:00.5Z");
        assert_eq!(event.source, "Fluent-Bit");
        assert_eq!(event.payload.get(), one);
    }

    #[test]
    fn ids_hash_the_record_not_the_arrival() {
        let body = r#"[{"log":"a"},{"log":"b"},{"log":"a"}]"#;
        let first = decode_ok(body, Format::Json, &options());
        let later = RawOptions {
            received: "2030-01-01T00:00:00Z".into(),
            ..options()
        };
        let retry = decode_ok(body, Format::Json, &later);
        let ids = |events: &[Event]| -> Vec<String> {
            events
                .iter()
                .map(|e| e.event_id.as_str().to_owned())
                .collect()
        };
        assert_eq!(ids(&first), ids(&retry));
        assert_eq!(ids(&first)[2], format!("{}-1", ids(&first)[0]));
        let lines = decode_ok("GET /a 200\r\n\nGET /b 500\n", Format::Text, &options());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].payload.get(), r#"{"message":"GET /a 200"}"#);
    }

    #[test]
    fn named_fields_give_id_time_and_source() {
        let named = RawOptions {
            id_field: Some("uid".into()),
            time_field: Some("date".into()),
            source_field: Some("host".into()),
            ..options()
        };
        let body = r#"[{"uid":"u1","date":1761395400.25,"host":"h1"},
                       {"uid":7,"date":"2025-10-25T12:30:00+02:00","host":"h2"},
                       {"uid":"u3","date":1761395400250,"host":"h3"},
                       {"uid":"u4","date":1761395400000000001,"host":"h4"},
                       {"uid":"u5","d\u0061te":"2025-10-25T12:30:00Z","host":"h5","x":[{}]}]"#;
        let events = decode_ok(body, Format::Json, &named);
        assert_eq!(events[0].event_id.as_str(), "u1");
        assert_eq!(events[0].timestamp, "2025-10-25T12:30:00.250000000Z");
        assert_eq!(events[0].source, "h1");
        assert_eq!(events[1].event_id.as_str(), "7");
        assert_eq!(events[1].timestamp, "2025-10-25T12:30:00+02:00");
        assert_eq!(events[2].timestamp, "2025-10-25T12:30:00.250000000Z");
        assert_eq!(events[3].timestamp, "2025-10-25T12:30:00.000000001Z");
        assert_eq!(
            events[4].timestamp, "2025-10-25T12:30:00Z",
            "escaped keys match"
        );
    }

    #[test]
    fn bad_records_are_listed() {
        let named = RawOptions {
            id_field: Some("uid".into()),
            time_field: Some("date".into()),
            ..options()
        };
        let body = r#"[{"date":1}, {"uid":"a","date":"yesterday"}, 5, {"uid":null,"date":-1}]"#;
        let Err(DecodeError::Invalid(errors)) =
            decode(body.as_bytes(), Format::Json, &named, &LIMITS)
        else {
            panic!("expected invalid records");
        };
        let found: Vec<_> = errors
            .iter()
            .map(|e| (e.index, e.field.as_deref()))
            .collect();
        assert_eq!(
            found,
            [
                (0, Some("event_id")),
                (1, Some("timestamp")),
                (2, None),
                (3, Some("event_id")),
                (3, Some("timestamp")),
            ]
        );
    }

    #[test]
    fn bad_bodies_get_the_right_problem() {
        let problem = |body: &str, format, options: &RawOptions| {
            decode(body.as_bytes(), format, options, &LIMITS).expect_err("rejected")
        };
        assert!(matches!(
            problem("{", Format::Json, &options()),
            DecodeError::Malformed(_)
        ));
        assert!(matches!(
            problem("[]", Format::Json, &options()),
            DecodeError::Unprocessable(_)
        ));
        assert!(matches!(
            problem("\n\n", Format::Text, &options()),
            DecodeError::Unprocessable(_)
        ));
        let bad_topic = RawOptions {
            topic: "a b".into(),
            ..options()
        };
        assert!(matches!(
            problem("x", Format::Text, &bad_topic),
            DecodeError::Unprocessable(_)
        ));
        let with_field = RawOptions {
            id_field: Some("id".into()),
            ..options()
        };
        assert!(matches!(
            problem("x", Format::Text, &with_field),
            DecodeError::Unprocessable(_)
        ));
        assert!(matches!(
            problem(r#"{"a":{"b":{"c":{"d":{}}}}}"#, Format::Json, &options()),
            DecodeError::Unprocessable(_)
        ));
        assert!(matches!(
            problem(r#"{"a":{"b":{"c":{}}}}"#, Format::Json, &options()),
            DecodeError::Invalid(_)
        ));
        let eleven = "x\n".repeat(11);
        assert!(matches!(
            problem(&eleven, Format::Text, &options()),
            DecodeError::TooLarge(_)
        ));
    }
}
