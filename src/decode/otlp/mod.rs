//! OpenTelemetry logs as OTLP/HTTP sends them: an `ExportLogsServiceRequest`
//! in binary protobuf or in OTLP/JSON, with the published message types of
//! the `opentelemetry-proto` crate (prost code generated upstream, so the
//! build needs no `protoc`). OTLP/JSON is read by [`json`] into the same
//! messages.
//!
//! Each log record becomes one event ([`OtlpMapping`] says which attributes
//! name it):
//!
//! - `topic`: the resource attribute `topic_attribute` (default
//!   `service.name`), made a valid topic by [`Topic::sanitize`];
//! - `event_id`: the record's `log.record.uid` attribute when it has one,
//!   else a hash of resource, scope and record ([`RecordHash`]), so an
//!   exporter's retry of the same batch is a duplicate;
//! - `timestamp`: the record's time, else its observed time (RFC 3339, UTC,
//!   nanoseconds);
//! - `source`: the resource attribute `source_attribute` (default
//!   `service.name`), else the topic;
//! - `payload`: body, severity, attributes, trace and span ids, event name,
//!   and the resource's and scope's attributes, as JSON (see [`any_value`]).
//!
//! OTLP accepts part of a request: a record that cannot become an event (no
//! service, no time, a bad `log.record.uid`) is rejected alone and counted
//! for the response's `partial_success`; the rest is stored. A body that
//! does not decode is rejected whole (400).

mod json;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtlpValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::id::{Occurrences, RecordHash, hex};
use super::{DecodeError, DecodeLimits, Decoded, Encoding, rfc3339_from_unix_nanos};
use crate::event::{Event, EventParts, FieldError, Topic, nesting_exceeds};

/// The attribute a record may carry its own unique id in (OpenTelemetry
/// semantic conventions).
pub const RECORD_UID_ATTRIBUTE: &str = "log.record.uid";

/// Domain tag of the record hash; change it when the hashed fields change.
const HASH_DOMAIN: &str = "logagg/otlp/1";

/// Which resource attributes name a record's topic and source.
#[derive(Debug, Clone)]
pub struct OtlpMapping {
    pub topic_attribute: String,
    pub source_attribute: String,
}

/// Decodes an `ExportLogsServiceRequest` into events and per-record
/// rejections.
///
/// # Errors
/// [`DecodeError::Malformed`] for a body that is not the message in its
/// encoding; [`DecodeError::TooLarge`] for more records than the limit.
pub fn decode(
    body: &[u8],
    encoding: Encoding,
    mapping: &OtlpMapping,
    limits: &DecodeLimits,
) -> Result<Decoded, DecodeError> {
    let request = parse(body, encoding)?;
    let count: usize = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .map(|s| s.log_records.len())
        .sum();
    if count > limits.request_events_max {
        return Err(DecodeError::TooLarge(format!(
            "request holds {count} log records; the limit is {} per request",
            limits.request_events_max
        )));
    }
    let mut decoded = Decoded::default();
    decoded.events.reserve(count);
    let mut occurrences = Occurrences::default();
    let mut index = 0;
    for resource_logs in &request.resource_logs {
        let resource = ResourceContext::new(resource_logs, mapping, limits);
        for scope_logs in &resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref();
            let scope_hash = resource.scope_hash(scope);
            let scope_json = scope
                .and_then(scope_json)
                .map(|json| serde_json::value::to_raw_value(&json).expect("JSON values serialize"));
            for record in &scope_logs.log_records {
                let context = RecordContext {
                    resource: &resource,
                    scope_hash: &scope_hash,
                    scope_json: scope_json.as_deref(),
                };
                match map_record(record, &context, &mut occurrences, index, limits) {
                    Ok(event) => decoded.events.push(event),
                    Err(errors) => decoded.reject(errors),
                }
                index += 1;
            }
        }
    }
    Ok(decoded)
}

fn parse(body: &[u8], encoding: Encoding) -> Result<ExportLogsServiceRequest, DecodeError> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body).map_err(|e| {
            DecodeError::Malformed(format!(
                "body is not a protobuf ExportLogsServiceRequest: {e}"
            ))
        }),
        Encoding::Json => json::parse(body).map_err(|e| {
            DecodeError::Malformed(format!(
                "body is not an OTLP/JSON ExportLogsServiceRequest: {e}"
            ))
        }),
    }
}

/// What every record of one resource shares.
struct ResourceContext {
    /// The topic, or why the resource has none.
    topic: Result<String, String>,
    source: Option<String>,
    /// The resource's attributes as JSON, when it has any.
    attributes: Option<Box<RawValue>>,
    /// The hash fed with the resource, ready for scope and record.
    hash: RecordHash,
}

impl ResourceContext {
    fn new(resource_logs: &ResourceLogs, mapping: &OtlpMapping, limits: &DecodeLimits) -> Self {
        let resource = resource_logs.resource.as_ref();
        let attributes = resource.map_or(&[][..], |r| &r.attributes);
        let topic = match string_attribute(attributes, &mapping.topic_attribute) {
            Some(name) => Topic::sanitize(name, &limits.fields).ok_or_else(|| {
                format!("resource attribute {:?} is empty", mapping.topic_attribute)
            }),
            None => Err(format!(
                "resource has no string attribute {:?} to name the topic",
                mapping.topic_attribute
            )),
        };
        let source = string_attribute(attributes, &mapping.source_attribute)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let mut hash = RecordHash::new(HASH_DOMAIN);
        hash.field(&resource.map(Resource::encode_to_vec).unwrap_or_default());
        Self {
            topic,
            source,
            attributes: (!attributes.is_empty()).then(|| {
                serde_json::value::to_raw_value(&key_values(attributes))
                    .expect("JSON values serialize")
            }),
            hash,
        }
    }

    fn scope_hash(&self, scope: Option<&InstrumentationScope>) -> RecordHash {
        let mut hash = self.hash.clone();
        hash.field(
            &scope
                .map(InstrumentationScope::encode_to_vec)
                .unwrap_or_default(),
        );
        hash
    }
}

/// What one record is mapped with.
struct RecordContext<'a> {
    resource: &'a ResourceContext,
    scope_hash: &'a RecordHash,
    scope_json: Option<&'a RawValue>,
}

fn map_record(
    record: &LogRecord,
    context: &RecordContext<'_>,
    occurrences: &mut Occurrences,
    index: usize,
    limits: &DecodeLimits,
) -> Result<Event, Vec<FieldError>> {
    let resource = context.resource;
    let topic = resource
        .topic
        .clone()
        .map_err(|message| vec![FieldError::field(index, "topic", message)])?;
    let nanos = match (record.time_unix_nano, record.observed_time_unix_nano) {
        (0, 0) => {
            return Err(vec![FieldError::field(
                index,
                "timestamp",
                "record has neither timeUnixNano nor observedTimeUnixNano",
            )]);
        }
        (0, observed) => observed,
        (time, _) => time,
    };
    let event_id = match record
        .attributes
        .iter()
        .find(|kv| kv.key == RECORD_UID_ATTRIBUTE)
    {
        Some(uid) => match uid.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(OtlpValue::StringValue(uid)) => uid.clone(),
            _ => {
                return Err(vec![FieldError::field(
                    index,
                    "event_id",
                    format!("attribute {RECORD_UID_ATTRIBUTE:?} must be a string"),
                )]);
            }
        },
        None => {
            let mut hash = context.scope_hash.clone();
            hash.field(&record.encode_to_vec());
            occurrences.id(hash.finish())
        }
    };
    let payload = payload(record, resource.attributes.as_deref(), context.scope_json);
    // The payload is the event's second level; deeper attributes are
    // refused as /publish refuses them.
    if nesting_exceeds(
        payload.get().as_bytes(),
        limits.json_depth_max.saturating_sub(1),
    ) {
        return Err(vec![FieldError::field(
            index,
            "payload",
            format!(
                "body or attributes nest deeper than {} levels",
                limits.json_depth_max
            ),
        )]);
    }
    Event::from_parts(
        EventParts {
            source: resource.source.clone().unwrap_or_else(|| topic.clone()),
            topic,
            event_id,
            timestamp: rfc3339_from_unix_nanos(nanos),
            payload,
        },
        index,
        &limits.fields,
    )
}

/// The record as a JSON object; empty fields are left out.
fn payload(
    record: &LogRecord,
    resource: Option<&RawValue>,
    scope: Option<&RawValue>,
) -> Box<RawValue> {
    /// Serialized in one pass, the resource's and scope's JSON spliced in
    /// as computed once for all their records.
    #[derive(serde::Serialize)]
    struct Payload<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        severity_number: Option<i32>,
        #[serde(skip_serializing_if = "str::is_empty")]
        severity_text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        attributes: Option<Value>,
        #[serde(skip_serializing_if = "str::is_empty")]
        event_name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        trace_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        span_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        flags: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        observed_timestamp: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        dropped_attributes_count: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        resource: Option<&'a RawValue>,
        #[serde(skip_serializing_if = "Option::is_none")]
        scope: Option<&'a RawValue>,
    }
    let nonzero = |n: u32| (n != 0).then_some(n);
    let payload = Payload {
        body: record.body.as_ref().map(any_value),
        severity_number: (record.severity_number != 0).then_some(record.severity_number),
        severity_text: &record.severity_text,
        attributes: (!record.attributes.is_empty()).then(|| key_values(&record.attributes)),
        event_name: &record.event_name,
        // Ids of the wrong length or all zeroes are invalid: the record is
        // not associated with a trace (OTLP).
        trace_id: valid_id(&record.trace_id, 16),
        span_id: valid_id(&record.span_id, 8),
        flags: nonzero(record.flags),
        observed_timestamp: (record.observed_time_unix_nano != 0)
            .then(|| rfc3339_from_unix_nanos(record.observed_time_unix_nano)),
        dropped_attributes_count: nonzero(record.dropped_attributes_count),
        resource,
        scope,
    };
    serde_json::value::to_raw_value(&payload).expect("JSON values serialize")
}

fn valid_id(bytes: &[u8], len: usize) -> Option<String> {
    (bytes.len() == len && bytes.iter().any(|&b| b != 0)).then(|| hex(bytes))
}

/// The scope's name, version and attributes, when it has any.
fn scope_json(scope: &InstrumentationScope) -> Option<Value> {
    let mut json = Map::new();
    if !scope.name.is_empty() {
        json.insert("name".into(), scope.name.clone().into());
    }
    if !scope.version.is_empty() {
        json.insert("version".into(), scope.version.clone().into());
    }
    if !scope.attributes.is_empty() {
        json.insert("attributes".into(), key_values(&scope.attributes));
    }
    (!json.is_empty()).then_some(Value::Object(json))
}

fn string_attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            OtlpValue::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// Attributes as a JSON object; a key repeated (which OTLP forbids) keeps
/// its last value.
fn key_values(attributes: &[KeyValue]) -> Value {
    Value::Object(
        attributes
            .iter()
            .map(|kv| {
                let value = kv.value.as_ref().map_or(Value::Null, any_value);
                (kv.key.clone(), value)
            })
            .collect(),
    )
}

/// An attribute value of any OTLP kind as JSON: strings, booleans and
/// integers as themselves (64-bit integers stay exact in the stored text),
/// finite doubles as numbers and NaN, Infinity and -Infinity as those
/// strings (as the protobuf JSON mapping writes them; JSON has no such
/// numbers), bytes as base64, arrays and key-value lists as arrays and
/// objects, an empty value as `null`, and a string-table index (profiles
/// only) as `{"string_value_strindex": n}`.
pub fn any_value(value: &AnyValue) -> Value {
    match &value.value {
        None => Value::Null,
        Some(OtlpValue::StringValue(s)) => s.clone().into(),
        Some(OtlpValue::BoolValue(b)) => (*b).into(),
        Some(OtlpValue::IntValue(i)) => (*i).into(),
        Some(OtlpValue::DoubleValue(d)) => match serde_json::Number::from_f64(*d) {
            Some(number) => Value::Number(number),
            None if d.is_nan() => "NaN".into(),
            None if *d > 0.0 => "Infinity".into(),
            None => "-Infinity".into(),
        },
        Some(OtlpValue::BytesValue(bytes)) => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into()
        }
        Some(OtlpValue::ArrayValue(array)) => {
            Value::Array(array.values.iter().map(any_value).collect())
        }
        Some(OtlpValue::KvlistValue(list)) => key_values(&list.values),
        // An index into a string table that only OTLP profiles have: kept
        // as it came, marked, since logs have no table to resolve it in.
        Some(OtlpValue::StringValueStrindex(index)) => json!({ "string_value_strindex": index }),
    }
}

/// The `ExportLogsServiceResponse` for a request whose records were taken
/// but for `rejected`: `partial_success` is set only when some were
/// rejected, with a message naming the first reasons.
pub fn response(
    rejected_count: u64,
    rejected: &[FieldError],
) -> opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse {
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsPartialSuccess, ExportLogsServiceResponse,
    };
    const REASONS_LISTED_MAX: usize = 5;
    let partial_success = (rejected_count > 0).then(|| {
        let reasons: Vec<String> = rejected
            .iter()
            .take(REASONS_LISTED_MAX)
            .map(|e| match &e.field {
                Some(field) => format!("record {} {field}: {}", e.index, e.message),
                None => format!("record {}: {}", e.index, e.message),
            })
            .collect();
        ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(rejected_count).unwrap_or(i64::MAX),
            error_message: format!(
                "{rejected_count} log record(s) rejected; {}",
                reasons.join("; ")
            ),
        }
    });
    ExportLogsServiceResponse { partial_success }
}

/// The response in OTLP/JSON: `{}` on full success, else `partialSuccess`
/// with the count as a string (int64 in the protobuf JSON mapping).
pub fn response_json(
    response: &opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse,
) -> Value {
    match &response.partial_success {
        None => json!({}),
        Some(partial) => json!({
            "partialSuccess": {
                "rejectedLogRecords": partial.rejected_log_records.to_string(),
                "errorMessage": partial.error_message,
            }
        }),
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::ScopeLogs;

    use super::*;
    use crate::event::FieldLimits;

    const LIMITS: DecodeLimits = DecodeLimits {
        request_events_max: 100,
        json_depth_max: 8,
        fields: FieldLimits {
            field_bytes_max: 255,
        },
    };

    fn mapping() -> OtlpMapping {
        OtlpMapping {
            topic_attribute: "service.name".into(),
            source_attribute: "service.name".into(),
        }
    }

    fn kv(key: &str, value: OtlpValue) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..KeyValue::default()
        }
    }

    fn string(s: &str) -> OtlpValue {
        OtlpValue::StringValue(s.into())
    }

    fn record(body: &str, time: u64) -> LogRecord {
        LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time + 5,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(string(body)),
            }),
            trace_id: vec![0xab; 16],
            span_id: vec![0; 8],
            ..LogRecord::default()
        }
    }

    fn request(service: Option<&str>, records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        let attributes = service
            .map(|s| vec![kv("service.name", string(s))])
            .unwrap_or_default();
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes,
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.module".into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    fn decode_proto(request: &ExportLogsServiceRequest) -> Decoded {
        decode(
            &request.encode_to_vec(),
            Encoding::Protobuf,
            &mapping(),
            &LIMITS,
        )
        .expect("decodes")
    }

    fn payload_of(event: &Event) -> Value {
        serde_json::from_str(event.payload.get()).expect("payload is JSON")
    }

    #[test]
    fn records_map_to_events() {
        let time = 1_761_395_400_123_456_789;
        let decoded = decode_proto(&request(Some("check out"), vec![record("hello", time)]));
        assert_eq!(decoded.rejected_count, 0);
        let event = &decoded.events[0];
        assert_eq!(event.topic.as_str(), "check_out");
        assert_eq!(event.source, "check out");
        assert_eq!(event.timestamp, "2025-10-25T12:30:00.123456789Z");
        assert_eq!(event.event_id.as_str().len(), 32);
        let payload = payload_of(event);
        assert_eq!(payload["body"], "hello");
        assert_eq!(payload["severity_text"], "INFO");
        assert_eq!(payload["severity_number"], 9);
        assert_eq!(payload["trace_id"], "ab".repeat(16));
        assert!(
            payload.get("span_id").is_none(),
            "all-zero span id is invalid"
        );
        assert_eq!(payload["resource"]["service.name"], "check out");
        assert_eq!(payload["scope"]["name"], "app.module");
        assert_eq!(
            payload["observed_timestamp"],
            "2025-10-25T12:30:00.123456794Z"
        );
    }

    #[test]
    fn the_same_batch_gets_the_same_ids_and_equal_records_differ() {
        let batch = request(
            Some("svc"),
            vec![record("a", 1), record("b", 1), record("a", 1)],
        );
        let ids = |decoded: Decoded| -> Vec<String> {
            decoded
                .events
                .iter()
                .map(|e| e.event_id.as_str().to_owned())
                .collect()
        };
        let first = ids(decode_proto(&batch));
        assert_eq!(first, ids(decode_proto(&batch)), "a retry hashes the same");
        assert_eq!(first[2], format!("{}-1", first[0]));
        assert_ne!(first[0], first[1]);
        let json = format!(
            r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},
              "scopeLogs":[{{"scope":{{"name":"app.module"}},"logRecords":[{}]}}]}}]}}"#,
            ["a", "b", "a"]
                .map(|body| format!(
                    r#"{{"timeUnixNano":"1","observedTimeUnixNano":"6","severityNumber":9,"severityText":"INFO",
                        "body":{{"stringValue":"{body}"}},"traceId":"{}","spanId":"0000000000000000"}}"#,
                    "AB".repeat(16)
                ))
                .join(",")
        );
        let from_json = decode(json.as_bytes(), Encoding::Json, &mapping(), &LIMITS).expect("json");
        assert_eq!(first, ids(from_json), "protobuf and JSON hash alike");
        let other = request(Some("svc2"), vec![record("a", 1)]);
        assert_ne!(first[0], ids(decode_proto(&other))[0], "resource counts");
    }

    #[test]
    fn record_uid_is_the_event_id() {
        let mut with_uid = record("x", 1);
        with_uid
            .attributes
            .push(kv(RECORD_UID_ATTRIBUTE, string("01JABCDEF")));
        let mut bad_uid = record("y", 1);
        bad_uid
            .attributes
            .push(kv(RECORD_UID_ATTRIBUTE, OtlpValue::IntValue(3)));
        let decoded = decode_proto(&request(Some("svc"), vec![with_uid, bad_uid]));
        assert_eq!(decoded.events[0].event_id.as_str(), "01JABCDEF");
        assert_eq!(decoded.rejected_count, 1);
        assert_eq!(decoded.rejected[0].index, 1);
    }

    #[test]
    fn records_without_service_or_time_are_rejected_alone() {
        let decoded = decode_proto(&request(None, vec![record("a", 1), record("b", 2)]));
        assert_eq!(decoded.events.len(), 0);
        assert_eq!(decoded.rejected_count, 2);
        assert_eq!(decoded.rejected[0].field.as_deref(), Some("topic"));

        let mut timeless = record("b", 0);
        timeless.observed_time_unix_nano = 0;
        let mut observed_only = record("c", 0);
        observed_only.observed_time_unix_nano = 7;
        let decoded = decode_proto(&request(
            Some("svc"),
            vec![record("a", 1), timeless, observed_only],
        ));
        assert_eq!(decoded.events.len(), 2);
        assert_eq!(
            decoded.events[1].timestamp,
            "1970-01-01T00:00:00.000000007Z"
        );
        assert_eq!(decoded.rejected_count, 1);
        assert_eq!(decoded.rejected[0].index, 1);
        assert_eq!(decoded.rejected[0].field.as_deref(), Some("timestamp"));
        let response = response(decoded.rejected_count, &decoded.rejected);
        let partial = response.partial_success.expect("partial success set");
        assert_eq!(partial.rejected_log_records, 1);
        assert!(partial.error_message.contains("record 1 timestamp"));
        assert_eq!(
            response_json(&ExportLogsServiceResponse::default()),
            json!({})
        );
    }

    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;

    #[test]
    fn every_attribute_kind_becomes_valid_json() {
        let mut rec = record("x", 1);
        rec.attributes = vec![
            kv("s", string("v")),
            kv("b", OtlpValue::BoolValue(true)),
            kv("i", OtlpValue::IntValue(i64::MIN)),
            kv("d", OtlpValue::DoubleValue(1.5)),
            kv("nan", OtlpValue::DoubleValue(f64::NAN)),
            kv("inf", OtlpValue::DoubleValue(f64::INFINITY)),
            kv("ninf", OtlpValue::DoubleValue(f64::NEG_INFINITY)),
            kv("bytes", OtlpValue::BytesValue(vec![0, 255, 1])),
            kv(
                "array",
                OtlpValue::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(OtlpValue::IntValue(1)),
                        },
                        AnyValue { value: None },
                    ],
                }),
            ),
            kv(
                "map",
                OtlpValue::KvlistValue(KeyValueList {
                    values: vec![kv("k", string("v"))],
                }),
            ),
            KeyValue {
                key: "empty".into(),
                value: None,
                ..KeyValue::default()
            },
        ];
        let decoded = decode_proto(&request(Some("svc"), vec![rec]));
        let attributes = &payload_of(&decoded.events[0])["attributes"];
        assert_eq!(
            attributes,
            &json!({
                "s": "v", "b": true, "i": i64::MIN, "d": 1.5, "nan": "NaN",
                "inf": "Infinity", "ninf": "-Infinity", "bytes": "AP8B",
                "array": [1, null], "map": {"k": "v"}, "empty": null,
            })
        );
    }

    #[test]
    fn otlp_json_follows_its_own_rules() {
        let body = br#"{"resourceLogs":[{"resource":{"attributes":[
            {"key":"service.name","value":{"stringValue":"web"}}]},
          "scopeLogs":[{"scope":{"name":"s"},"logRecords":[{
            "timeUnixNano":"1761395400000000000","severityNumber":17,
            "severityText":"ERROR","traceId":"5B8EFFF798038103D269B633813FC60C",
            "spanId":"EEE19B7EC3C1B174","body":{"stringValue":"boom"},
            "attributes":[{"key":"n","value":{"intValue":"9007199254740993"}},
                          {"key":"d","value":{"doubleValue":2.5}},
                          {"key":"b","value":{"bytesValue":"AP8="}}],
            "unknownField":true}]}]}]}"#;
        let decoded = decode(body, Encoding::Json, &mapping(), &LIMITS).expect("valid");
        let event = &decoded.events[0];
        assert_eq!(event.topic.as_str(), "web");
        assert_eq!(event.timestamp, "2025-10-25T12:30:00.000000000Z");
        let payload = payload_of(event);
        assert_eq!(payload["trace_id"], "5b8efff798038103d269b633813fc60c");
        assert_eq!(payload["span_id"], "eee19b7ec3c1b174");
        assert_eq!(payload["severity_number"], 17);
        assert_eq!(payload["attributes"]["n"], 9_007_199_254_740_993_i64);
        assert_eq!(payload["attributes"]["b"], "AP8=");
        assert!(
            event.payload.get().contains("9007199254740993"),
            "int64 stays exact"
        );
        let empty = decode(b"{}", Encoding::Json, &mapping(), &LIMITS).expect("empty");
        assert!(empty.events.is_empty());
    }

    #[test]
    fn bodies_that_are_not_otlp_are_malformed() {
        for (body, encoding) in [
            (&b"\xff\xff\xff"[..], Encoding::Protobuf),
            (b"{\"resourceLogs\": 5}", Encoding::Json),
            (b"{\"streams\": []", Encoding::Json),
            (b"{\"streams\": []}", Encoding::Json),
            (b"not json", Encoding::Json),
            (
                br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":"x"}]}]}]}"#,
                Encoding::Json,
            ),
        ] {
            assert!(
                matches!(
                    decode(body, encoding, &mapping(), &LIMITS),
                    Err(DecodeError::Malformed(_))
                ),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let many = request(Some("s"), vec![record("a", 1); 101]);
        assert!(matches!(
            decode(
                &many.encode_to_vec(),
                Encoding::Protobuf,
                &mapping(),
                &LIMITS
            ),
            Err(DecodeError::TooLarge(_))
        ));
    }

    #[test]
    fn deeply_nested_bodies_are_rejected_per_record() {
        let mut value = AnyValue {
            value: Some(string("leaf")),
        };
        for _ in 0..10 {
            value = AnyValue {
                value: Some(OtlpValue::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        key: "k".into(),
                        value: Some(value),
                        ..KeyValue::default()
                    }],
                })),
            };
        }
        let mut deep = record("x", 1);
        deep.body = Some(value);
        let decoded = decode_proto(&request(Some("svc"), vec![deep, record("ok", 1)]));
        assert_eq!(decoded.events.len(), 1);
        assert_eq!(decoded.rejected_count, 1);
        assert_eq!(decoded.rejected[0].field.as_deref(), Some("payload"));
    }
}
