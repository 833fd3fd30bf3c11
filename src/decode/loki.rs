//! The Loki push API (`POST /loki/api/v1/push`), as Promtail, Grafana
//! Alloy, Fluent Bit, Vector and the Loki client libraries send it: JSON,
//! or protobuf (`PushRequest` of Loki's `pkg/push/push.proto`) compressed
//! as one snappy block. The HTTP layer undoes the snappy block; this module
//! decodes the message.
//!
//! The protobuf messages are written out by hand below with prost's derive
//! (five small messages, field numbers from `push.proto`): generating them
//! would need `protoc` at build time or generated code to keep in step, for
//! no gain.
//!
//! Each entry becomes one event ([`LokiMapping`] says which labels name
//! it):
//!
//! - `topic`: the first of `topic_labels` (default `service_name`, then
//!   `job`) that the stream has, made a valid topic by
//!   [`Topic::sanitize`];
//! - `event_id`: a hash of (labels, timestamp, line): the triple by which
//!   Loki itself drops a repeated entry, so a client's retry is a
//!   duplicate (structured metadata is not part of it, as in Loki);
//! - `timestamp`: the entry's, in RFC 3339 with nanoseconds;
//! - `source`: the topic label's value;
//! - `payload`: `{"line", "labels", "structured_metadata"}`.
//!
//! Loki has no partial success: a request is all-or-nothing, as on
//! `/publish`, and every bad entry is listed.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::id::{Occurrences, RecordHash};
use super::{
    DecodeError, DecodeLimits, Encoding, all_or_nothing, check_count, rfc3339_from_unix_nanos,
};
use crate::event::{Event, EventParts, FieldError, Topic};

/// Domain tag of the entry hash; change it when the hashed fields change.
const HASH_DOMAIN: &str = "logagg/loki/1";

/// `PushRequest` and the messages inside it, as in Loki's `push.proto`.
pub mod proto {
    /// The body of a protobuf push (before snappy compression).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }

    /// One stream: its label set in Prometheus text form
    /// (`{job="api", env="prod"}`) and its entries.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        /// Set by Loki internally; clients leave it 0.
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// Which labels name an entry's topic: the first one present.
#[derive(Debug, Clone)]
pub struct LokiMapping {
    pub topic_labels: Vec<String>,
}

/// A stream's labels, with what every entry of it shares computed once.
struct StreamLabels {
    labels: BTreeMap<String, String>,
    /// The labels as a JSON object, for the payload.
    json: Box<RawValue>,
    /// The canonical label set, for the hash.
    canonical: String,
}

impl StreamLabels {
    fn new(labels: BTreeMap<String, String>) -> Self {
        Self {
            json: serde_json::value::to_raw_value(&labels).expect("string maps serialize"),
            canonical: label_set(&labels),
            labels,
        }
    }
}

/// One entry before mapping, whichever encoding it came in.
struct Entry<'a> {
    stream: &'a StreamLabels,
    /// Unix nanoseconds.
    nanos: Result<u64, String>,
    line: &'a str,
    metadata: BTreeMap<&'a str, &'a str>,
}

/// Decodes a push request (already out of its snappy block) into events.
///
/// # Errors
/// [`DecodeError::Malformed`] for a body that is not a push request;
/// [`DecodeError::TooLarge`] for too many entries;
/// [`DecodeError::Unprocessable`] for none;
/// [`DecodeError::Invalid`] listing every entry that cannot become an event
/// (nothing is stored then).
pub fn decode(
    body: &[u8],
    encoding: Encoding,
    mapping: &LokiMapping,
    limits: &DecodeLimits,
) -> Result<Vec<Event>, DecodeError> {
    match encoding {
        Encoding::Protobuf => decode_protobuf(body, mapping, limits),
        Encoding::Json => decode_json(body, mapping, limits),
    }
}

fn decode_protobuf(
    body: &[u8],
    mapping: &LokiMapping,
    limits: &DecodeLimits,
) -> Result<Vec<Event>, DecodeError> {
    use prost::Message;
    let request = proto::PushRequest::decode(body).map_err(|e| {
        DecodeError::Malformed(format!("body is not a protobuf Loki PushRequest: {e}"))
    })?;
    check_count(
        request.streams.iter().map(|s| s.entries.len()).sum(),
        limits,
    )?;
    let streams = request
        .streams
        .iter()
        .enumerate()
        .map(|(i, stream)| {
            parse_label_set(&stream.labels)
                .map(StreamLabels::new)
                .map_err(|e| {
                    DecodeError::Malformed(format!("stream {i} has a malformed label set: {e}"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let entries = request
        .streams
        .iter()
        .zip(&streams)
        .flat_map(|(stream, labels)| {
            stream.entries.iter().map(move |entry| Entry {
                stream: labels,
                nanos: entry
                    .timestamp
                    .ok_or_else(|| "entry has no timestamp".to_owned())
                    .and_then(timestamp_nanos),
                line: &entry.line,
                metadata: entry
                    .structured_metadata
                    .iter()
                    .map(|pair| (pair.name.as_str(), pair.value.as_str()))
                    .collect(),
            })
        });
    map_entries(entries, mapping, limits)
}

/// The JSON push body. Timestamps are strings of Unix nanoseconds; an
/// entry is `[ts, line]` or `[ts, line, {structured metadata}]`.
#[derive(Deserialize)]
struct JsonPush<'a> {
    #[serde(borrow)]
    streams: Vec<JsonStream<'a>>,
}

#[derive(Deserialize)]
struct JsonStream<'a> {
    #[serde(default)]
    stream: BTreeMap<String, String>,
    #[serde(borrow)]
    values: Vec<JsonEntry<'a>>,
}

#[derive(Deserialize)]
struct JsonEntry<'a>(
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(borrow)] std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    Option<BTreeMap<std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>>>,
);

fn decode_json(
    body: &[u8],
    mapping: &LokiMapping,
    limits: &DecodeLimits,
) -> Result<Vec<Event>, DecodeError> {
    let mut push: JsonPush<'_> = serde_json::from_slice(body).map_err(|e| {
        DecodeError::Malformed(format!(
            "body is not a Loki push request ({{\"streams\": [{{\"stream\": {{...}}, \"values\": [[\"<unix ns>\", \"<line>\"]]}}]}}): {e}"
        ))
    })?;
    check_count(push.streams.iter().map(|s| s.values.len()).sum(), limits)?;
    let labels: Vec<StreamLabels> = push
        .streams
        .iter_mut()
        .map(|stream| StreamLabels::new(std::mem::take(&mut stream.stream)))
        .collect();
    let entries = push
        .streams
        .iter()
        .zip(&labels)
        .flat_map(|(stream, labels)| {
            stream
                .values
                .iter()
                .map(move |JsonEntry(ts, line, metadata)| Entry {
                    stream: labels,
                    nanos: ts
                        .parse::<u64>()
                        .map_err(|_| format!("{ts:?} is not a Unix time in nanoseconds")),
                    line,
                    metadata: metadata
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.as_ref(), v.as_ref()))
                        .collect(),
                })
        });
    map_entries(entries, mapping, limits)
}

fn timestamp_nanos(timestamp: proto::Timestamp) -> Result<u64, String> {
    let seconds = u64::try_from(timestamp.seconds);
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000);
    match (seconds, nanos) {
        (Ok(seconds), Some(nanos)) => seconds
            .checked_mul(1_000_000_000)
            .and_then(|s| s.checked_add(u64::from(nanos)))
            .ok_or_else(|| "timestamp is out of range".to_owned()),
        _ => Err(format!(
            "timestamp {}s {}ns is not a time after 1970",
            timestamp.seconds, timestamp.nanos
        )),
    }
}

fn map_entries<'a>(
    entries: impl Iterator<Item = Entry<'a>>,
    mapping: &LokiMapping,
    limits: &DecodeLimits,
) -> Result<Vec<Event>, DecodeError> {
    let mut occurrences = Occurrences::default();
    all_or_nothing(
        entries
            .enumerate()
            .map(|(index, entry)| map_entry(&entry, index, mapping, &mut occurrences, limits)),
    )
}

fn map_entry(
    entry: &Entry<'_>,
    index: usize,
    mapping: &LokiMapping,
    occurrences: &mut Occurrences,
    limits: &DecodeLimits,
) -> Result<Event, Vec<FieldError>> {
    let mut errors = Vec::new();
    let service = mapping
        .topic_labels
        .iter()
        .find_map(|label| entry.stream.labels.get(label).filter(|v| !v.is_empty()));
    let topic = match service {
        Some(service) => Topic::sanitize(service, &limits.fields),
        None => None,
    };
    if topic.is_none() {
        errors.push(FieldError::field(
            index,
            "topic",
            format!(
                "stream has none of the labels {:?} to name the topic",
                mapping.topic_labels
            ),
        ));
    }
    let nanos = entry
        .nanos
        .as_ref()
        .map_err(|message| errors.push(FieldError::field(index, "timestamp", message.clone())))
        .ok()
        .copied();
    let (Some(topic), Some(service), Some(nanos)) = (topic, service, nanos) else {
        return Err(errors);
    };
    let mut hash = RecordHash::new(HASH_DOMAIN);
    hash.field(entry.stream.canonical.as_bytes())
        .field(&nanos.to_le_bytes())
        .field(entry.line.as_bytes());
    #[derive(serde::Serialize)]
    struct Payload<'a> {
        line: &'a str,
        labels: &'a RawValue,
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        structured_metadata: &'a BTreeMap<&'a str, &'a str>,
    }
    let payload = serde_json::value::to_raw_value(&Payload {
        line: entry.line,
        labels: &entry.stream.json,
        structured_metadata: &entry.metadata,
    })
    .expect("strings serialize");
    Event::from_parts(
        EventParts {
            topic,
            event_id: occurrences.id(hash.finish()),
            timestamp: rfc3339_from_unix_nanos(nanos),
            source: service.clone(),
            payload,
        },
        index,
        &limits.fields,
    )
}

/// The canonical text of a label set: sorted by name, values quoted with
/// Go's escapes, as Prometheus and Loki print it (`{a="1", b="x\"y"}`).
pub fn label_set(labels: &BTreeMap<String, String>) -> String {
    let mut text = String::from("{");
    for (i, (name, value)) in labels.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(name);
        text.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => text.push_str("\\\\"),
                '"' => text.push_str("\\\""),
                '\n' => text.push_str("\\n"),
                c => text.push(c),
            }
        }
        text.push('"');
    }
    text.push('}');
    text
}

/// Parses a label set in Prometheus text form: `{name="value", ...}`,
/// values with `\\`, `\"` and `\n` escapes, whitespace around tokens.
///
/// # Errors
/// A short reason naming what was expected.
pub fn parse_label_set(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text
        .trim()
        .strip_prefix('{')
        .ok_or("expected '{'")?
        .trim_start();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            if !after.trim().is_empty() {
                return Err("unexpected text after '}'".to_owned());
            }
            return Ok(labels);
        }
        let name_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(rest.len());
        if name_len == 0 {
            return Err(format!("expected a label name at {rest:?}"));
        }
        let name = &rest[..name_len];
        rest = rest[name_len..]
            .trim_start()
            .strip_prefix('=')
            .ok_or_else(|| format!("expected '=' after label {name:?}"))?
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("expected '\"' to open the value of {name:?}"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("the value of {name:?} is not closed")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("the value of {name:?} is not closed")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.insert(name.to_owned(), value);
        rest = rest[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.starts_with('}') {
            return Err(format!("expected ',' or '}}' after the value of {name:?}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::proto::*;
    use super::*;
    use crate::event::FieldLimits;

    const LIMITS: DecodeLimits = DecodeLimits {
        request_events_max: 10,
        json_depth_max: 8,
        fields: FieldLimits {
            field_bytes_max: 255,
        },
    };

    fn mapping() -> LokiMapping {
        LokiMapping {
            topic_labels: vec!["service_name".into(), "job".into()],
        }
    }

    fn json(body: &str) -> Result<Vec<Event>, DecodeError> {
        decode(body.as_bytes(), Encoding::Json, &mapping(), &LIMITS)
    }

    fn entry(seconds: i64, nanos: i32, line: &str) -> EntryAdapter {
        EntryAdapter {
            timestamp: Some(Timestamp { seconds, nanos }),
            line: line.into(),
            structured_metadata: vec![LabelPairAdapter {
                name: "trace_id".into(),
                value: "abc".into(),
            }],
        }
    }

    fn push(labels: &str, entries: Vec<EntryAdapter>) -> Vec<u8> {
        PushRequest {
            streams: vec![StreamAdapter {
                labels: labels.into(),
                entries,
                hash: 0,
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn json_pushes_map_to_events() {
        let events = json(
            r#"{"streams":[{"stream":{"job":"api","env":"prod"},"values":[
                ["1761395400000000001","GET / 200"],
                ["1761395400000000002","GET /x 404",{"trace_id":"abc"}]]}]}"#,
        )
        .expect("valid");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].topic.as_str(), "api");
        assert_eq!(events[0].source, "api");
        assert_eq!(events[0].timestamp, "2025-10-25T12:30:00.000000001Z");
        let payload: serde_json::Value =
            serde_json::from_str(events[1].payload.get()).expect("json");
        assert_eq!(payload["line"], "GET /x 404");
        assert_eq!(payload["labels"]["env"], "prod");
        assert_eq!(payload["structured_metadata"]["trace_id"], "abc");
    }

    #[test]
    fn protobuf_and_json_give_the_same_ids() {
        let from_proto = decode(
            &push(
                r#"{service_name="web", env="a \"b\""}"#,
                vec![entry(1_761_395_400, 5, "hello")],
            ),
            Encoding::Protobuf,
            &mapping(),
            &LIMITS,
        )
        .expect("valid");
        let from_json = json(
            r#"{"streams":[{"stream":{"env":"a \"b\"","service_name":"web"},
                "values":[["1761395400000000005","hello"]]}]}"#,
        )
        .expect("valid");
        assert_eq!(from_proto[0].topic.as_str(), "web");
        assert_eq!(from_proto[0].event_id, from_json[0].event_id);
        assert_eq!(from_proto[0].timestamp, from_json[0].timestamp);
    }

    #[test]
    fn equal_entries_of_one_push_are_both_kept() {
        let events = json(
            r#"{"streams":[{"stream":{"job":"a"},"values":[["1","x"],["1","x"],["2","x"]]}]}"#,
        )
        .expect("valid");
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids[1], format!("{}-1", ids[0]));
        assert_ne!(ids[0], ids[2]);
    }

    #[test]
    fn label_sets_parse_and_print_canonically() {
        let labels = parse_label_set(r#" { job = "api", a="x\\y\"z\n" } "#).expect("valid");
        assert_eq!(labels["job"], "api");
        assert_eq!(labels["a"], "x\\y\"z\n");
        assert_eq!(label_set(&labels), r#"{a="x\\y\"z\n", job="api"}"#);
        assert_eq!(parse_label_set("{}").expect("empty").len(), 0);
        for bad in [
            "",
            "job=\"a\"",
            "{job}",
            "{job=\"a}",
            "{job=\"a\" x}",
            "{=\"a\"}",
            "{a=\"b\"} x",
        ] {
            assert!(parse_label_set(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_pushes_get_the_right_problem() {
        let malformed = |body: &[u8], encoding| {
            matches!(
                decode(body, encoding, &mapping(), &LIMITS),
                Err(DecodeError::Malformed(_))
            )
        };
        assert!(malformed(b"\x0a\xff", Encoding::Protobuf));
        assert!(malformed(
            &push("job=\"x\"", vec![entry(1, 0, "l")]),
            Encoding::Protobuf
        ));
        assert!(malformed(b"{\"resourceLogs\":[]}", Encoding::Json));
        assert!(malformed(
            b"{\"streams\":[{\"stream\":{},\"values\":[[1,\"x\"]]}]}",
            Encoding::Json
        ));
        assert!(matches!(
            json(r#"{"streams":[]}"#),
            Err(DecodeError::Unprocessable(_))
        ));
        let many = format!(
            r#"{{"streams":[{{"stream":{{"job":"a"}},"values":[{}]}}]}}"#,
            [r#"["1","x"]"#; 11].join(",")
        );
        assert!(matches!(json(&many), Err(DecodeError::TooLarge(_))));
        let Err(DecodeError::Invalid(errors)) = json(
            r#"{"streams":[{"stream":{"env":"x"},"values":[["1","a"]]},
                           {"stream":{"job":"b"},"values":[["soon","b"]]}]}"#,
        ) else {
            panic!("expected invalid entries");
        };
        let fields: Vec<_> = errors
            .iter()
            .map(|e| (e.index, e.field.as_deref()))
            .collect();
        assert_eq!(fields, [(0, Some("topic")), (1, Some("timestamp"))]);
        let Err(DecodeError::Invalid(errors)) = decode(
            &push(
                "{job=\"a\"}",
                vec![entry(-1, 0, "l"), entry(1, 2_000_000_000, "l")],
            ),
            Encoding::Protobuf,
            &mapping(),
            &LIMITS,
        ) else {
            panic!("expected invalid timestamps");
        };
        assert_eq!(errors.len(), 2);
    }
}
