//! OTLP/JSON: the protobuf JSON mapping as OTLP restricts it, read into the
//! same prost messages as binary protobuf, so both encodings map (and hash)
//! alike.
//!
//! The rules (OTLP specification, "JSON Protobuf Encoding"): keys are
//! lowerCamelCase; `traceId` and `spanId` are hex strings, not base64;
//! enums are integers; 64-bit integers may be strings or numbers; doubles
//! may be numbers or the strings `"NaN"`, `"Infinity"`, `"-Infinity"`
//! (which the OpenTelemetry exporters send); `bytesValue` is base64; a
//! `null` is the field's default; unknown fields are ignored.
//!
//! We read it with our own serde types rather than the `with-serde`
//! feature of `opentelemetry-proto`, which refuses `"NaN"` in `doubleValue`
//! (and so a batch from the Python JSON exporter holding a NaN attribute).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtlpValue;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// Parses an OTLP/JSON `ExportLogsServiceRequest`.
///
/// # Errors
/// serde_json's error, with its line and column, or the top-level field
/// of a JSON object that has no `resourceLogs`.
pub fn parse(body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    let request: Request = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let Some(resource_logs) = request.resource_logs else {
        // Unknown fields are ignored, but an object of nothing else is a
        // body sent to the wrong place (a Loki push, a logagg event), not
        // an empty export; `{}` is one.
        let fields: std::collections::BTreeMap<String, serde::de::IgnoredAny> =
            serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if let Some(field) = fields.keys().next() {
            return Err(format!(
                "it has no \"resourceLogs\" but {field:?}; is this the right endpoint?"
            ));
        }
        return Ok(ExportLogsServiceRequest::default());
    };
    Ok(ExportLogsServiceRequest {
        resource_logs: resource_logs.into_iter().map(Into::into).collect(),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    #[serde(default)]
    resource_logs: Option<Vec<JsonResourceLogs>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonResourceLogs {
    #[serde(default)]
    resource: Option<JsonResource>,
    #[serde(default, deserialize_with = "nullable")]
    scope_logs: Vec<JsonScopeLogs>,
    #[serde(default, deserialize_with = "nullable")]
    schema_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonResource {
    #[serde(default, deserialize_with = "nullable")]
    attributes: Vec<JsonKeyValue>,
    #[serde(default, deserialize_with = "integer")]
    dropped_attributes_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonScopeLogs {
    #[serde(default)]
    scope: Option<JsonScope>,
    #[serde(default, deserialize_with = "nullable")]
    log_records: Vec<JsonLogRecord>,
    #[serde(default, deserialize_with = "nullable")]
    schema_url: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonScope {
    #[serde(default, deserialize_with = "nullable")]
    name: String,
    #[serde(default, deserialize_with = "nullable")]
    version: String,
    #[serde(default, deserialize_with = "nullable")]
    attributes: Vec<JsonKeyValue>,
    #[serde(default, deserialize_with = "integer")]
    dropped_attributes_count: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonLogRecord {
    #[serde(default, deserialize_with = "integer")]
    time_unix_nano: u64,
    #[serde(default, deserialize_with = "integer")]
    observed_time_unix_nano: u64,
    #[serde(default, deserialize_with = "integer")]
    severity_number: i32,
    #[serde(default, deserialize_with = "nullable")]
    severity_text: String,
    #[serde(default)]
    body: Option<JsonAnyValue>,
    #[serde(default, deserialize_with = "nullable")]
    attributes: Vec<JsonKeyValue>,
    #[serde(default, deserialize_with = "integer")]
    dropped_attributes_count: u32,
    #[serde(default, deserialize_with = "integer")]
    flags: u32,
    #[serde(default, deserialize_with = "hex_id")]
    trace_id: Vec<u8>,
    #[serde(default, deserialize_with = "hex_id")]
    span_id: Vec<u8>,
    #[serde(default, deserialize_with = "nullable")]
    event_name: String,
}

#[derive(Deserialize)]
struct JsonKeyValue {
    #[serde(default, deserialize_with = "nullable")]
    key: String,
    #[serde(default)]
    value: Option<JsonAnyValue>,
}

/// A oneof: at most one field is set; an object with none is the empty
/// value.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonAnyValue {
    #[serde(default)]
    string_value: Option<String>,
    #[serde(default)]
    bool_value: Option<bool>,
    #[serde(default, deserialize_with = "optional_integer")]
    int_value: Option<i64>,
    #[serde(default, deserialize_with = "optional_double")]
    double_value: Option<f64>,
    #[serde(default)]
    array_value: Option<JsonValues<JsonAnyValue>>,
    #[serde(default)]
    kvlist_value: Option<JsonValues<JsonKeyValue>>,
    #[serde(default, deserialize_with = "optional_base64")]
    bytes_value: Option<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct JsonValues<T> {
    #[serde(default = "Vec::new", deserialize_with = "nullable")]
    values: Vec<T>,
}

impl From<JsonResourceLogs> for ResourceLogs {
    fn from(json: JsonResourceLogs) -> Self {
        Self {
            resource: json.resource.map(|r| Resource {
                attributes: key_values(r.attributes),
                dropped_attributes_count: r.dropped_attributes_count,
                ..Resource::default()
            }),
            scope_logs: json.scope_logs.into_iter().map(Into::into).collect(),
            schema_url: json.schema_url,
        }
    }
}

impl From<JsonScopeLogs> for ScopeLogs {
    fn from(json: JsonScopeLogs) -> Self {
        Self {
            scope: json.scope.map(|s| InstrumentationScope {
                name: s.name,
                version: s.version,
                attributes: key_values(s.attributes),
                dropped_attributes_count: s.dropped_attributes_count,
            }),
            log_records: json.log_records.into_iter().map(Into::into).collect(),
            schema_url: json.schema_url,
        }
    }
}

impl From<JsonLogRecord> for LogRecord {
    fn from(json: JsonLogRecord) -> Self {
        Self {
            time_unix_nano: json.time_unix_nano,
            observed_time_unix_nano: json.observed_time_unix_nano,
            severity_number: json.severity_number,
            severity_text: json.severity_text,
            body: json.body.map(Into::into),
            attributes: key_values(json.attributes),
            dropped_attributes_count: json.dropped_attributes_count,
            flags: json.flags,
            trace_id: json.trace_id,
            span_id: json.span_id,
            event_name: json.event_name,
        }
    }
}

fn key_values(json: Vec<JsonKeyValue>) -> Vec<KeyValue> {
    json.into_iter().map(Into::into).collect()
}

impl From<JsonKeyValue> for KeyValue {
    fn from(json: JsonKeyValue) -> Self {
        Self {
            key: json.key,
            value: json.value.map(Into::into),
            ..Self::default()
        }
    }
}

impl From<JsonAnyValue> for AnyValue {
    fn from(json: JsonAnyValue) -> Self {
        let value = if let Some(s) = json.string_value {
            Some(OtlpValue::StringValue(s))
        } else if let Some(b) = json.bool_value {
            Some(OtlpValue::BoolValue(b))
        } else if let Some(i) = json.int_value {
            Some(OtlpValue::IntValue(i))
        } else if let Some(d) = json.double_value {
            Some(OtlpValue::DoubleValue(d))
        } else if let Some(array) = json.array_value {
            Some(OtlpValue::ArrayValue(ArrayValue {
                values: array.values.into_iter().map(Into::into).collect(),
            }))
        } else if let Some(list) = json.kvlist_value {
            Some(OtlpValue::KvlistValue(KeyValueList {
                values: key_values(list.values),
            }))
        } else {
            json.bytes_value.map(OtlpValue::BytesValue)
        };
        Self { value }
    }
}

/// A field whose `null` means its default.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// An integer written as a number or a decimal string; `null` is 0.
fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + TryFrom<u64> + TryFrom<i64> + Default,
{
    Ok(optional_integer(deserializer)?.unwrap_or_default())
}

fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + TryFrom<u64> + TryFrom<i64>,
{
    struct IntegerVisitor<T>(PhantomData<T>);

    impl<T> Visitor<'_> for IntegerVisitor<T>
    where
        T: FromStr + TryFrom<u64> + TryFrom<i64>,
    {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer, as a number or a string")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            T::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("integer {v} is out of range")))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            T::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("integer {v} is out of range")))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.parse()
                .map(Some)
                .map_err(|_| E::custom(format!("{v:?} is not an integer in range")))
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    deserializer.deserialize_any(IntegerVisitor(PhantomData))
}

/// A double: a number, a numeric string, or `"NaN"`, `"Infinity"`,
/// `"-Infinity"`.
fn optional_double<'de, D>(deserializer: D) -> Result<Option<f64>, D::Error>
where
    D: Deserializer<'de>,
{
    struct DoubleVisitor;

    impl Visitor<'_> for DoubleVisitor {
        type Value = Option<f64>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number, or \"NaN\", \"Infinity\" or \"-Infinity\"")
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v as f64))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                "NaN" => Ok(Some(f64::NAN)),
                "Infinity" => Ok(Some(f64::INFINITY)),
                "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
                // Rust would also take "inf" and "nan"; the mapping does not.
                _ if v
                    .bytes()
                    .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E') =>
                {
                    Err(E::custom(format!("{v:?} is not a double")))
                }
                _ => v
                    .parse()
                    .map(Some)
                    .map_err(|_| E::custom(format!("{v:?} is not a double"))),
            }
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    deserializer.deserialize_any(DoubleVisitor)
}

fn optional_base64<'de, D>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error>
where
    D: Deserializer<'de>,
{
    use base64::Engine;
    let Some(text) = Option::<String>::deserialize(deserializer)? else {
        return Ok(None);
    };
    // The protobuf JSON mapping accepts both alphabets, padded or not.
    let engine = if text.contains(['-', '_']) {
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD
    };
    engine
        .decode(text.trim_end_matches('='))
        .map(Some)
        .map_err(|e| de::Error::custom(format!("bytesValue is not base64: {e}")))
}

/// A trace or span id in hex (either case). A value that is not hex is an
/// invalid id, which OTLP says to treat as absent: the record is taken, not
/// associated with a trace.
fn hex_id<'de, D>(deserializer: D) -> Result<Vec<u8>, D::Error>
where
    D: Deserializer<'de>,
{
    let text: String = nullable(deserializer)?;
    let digit = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut bytes = Vec::with_capacity(text.len() / 2);
    for pair in text.as_bytes().chunks(2) {
        match (
            pair.first().copied().and_then(digit),
            pair.get(1).copied().and_then(digit),
        ) {
            (Some(high), Some(low)) => bytes.push(high << 4 | low),
            _ => return Ok(Vec::new()),
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(json: &str) -> Option<OtlpValue> {
        let value: JsonAnyValue = serde_json::from_str(json).expect("parses");
        AnyValue::from(value).value
    }

    #[test]
    fn every_any_value_kind_parses() {
        assert_eq!(
            any(r#"{"stringValue":"s"}"#),
            Some(OtlpValue::StringValue("s".into()))
        );
        assert_eq!(
            any(r#"{"boolValue":false}"#),
            Some(OtlpValue::BoolValue(false))
        );
        assert_eq!(
            any(r#"{"intValue":"-9223372036854775808"}"#),
            Some(OtlpValue::IntValue(i64::MIN))
        );
        assert_eq!(any(r#"{"intValue":42}"#), Some(OtlpValue::IntValue(42)));
        assert_eq!(
            any(r#"{"doubleValue":1.5}"#),
            Some(OtlpValue::DoubleValue(1.5))
        );
        assert_eq!(
            any(r#"{"doubleValue":"2.5"}"#),
            Some(OtlpValue::DoubleValue(2.5))
        );
        assert_eq!(
            any(r#"{"doubleValue":"-Infinity"}"#),
            Some(OtlpValue::DoubleValue(f64::NEG_INFINITY))
        );
        assert!(matches!(
            any(r#"{"doubleValue":"NaN"}"#),
            Some(OtlpValue::DoubleValue(d)) if d.is_nan()
        ));
        assert_eq!(
            any(r#"{"bytesValue":"AP8="}"#),
            Some(OtlpValue::BytesValue(vec![0, 255]))
        );
        assert_eq!(
            any(r#"{"bytesValue":"AP8"}"#),
            Some(OtlpValue::BytesValue(vec![0, 255]))
        );
        assert_eq!(any("{}"), None);
        assert_eq!(any(r#"{"stringValue":null}"#), None);
        assert_eq!(
            any(
                r#"{"kvlistValue":{"values":[{"key":"k","value":{"arrayValue":{"values":[{"intValue":"1"}]}}}]}}"#
            ),
            Some(OtlpValue::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(AnyValue {
                        value: Some(OtlpValue::ArrayValue(ArrayValue {
                            values: vec![AnyValue {
                                value: Some(OtlpValue::IntValue(1))
                            }]
                        }))
                    }),
                    ..KeyValue::default()
                }]
            }))
        );
        for bad in [
            r#"{"intValue":"1.5"}"#,
            r#"{"intValue":"9223372036854775808"}"#,
            r#"{"doubleValue":"nan"}"#,
            r#"{"doubleValue":"inf"}"#,
            r#"{"bytesValue":"***"}"#,
            r#"{"boolValue":"yes"}"#,
        ] {
            assert!(serde_json::from_str::<JsonAnyValue>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_hex_and_bad_ones_are_absent() {
        let record = |json: &str| -> LogRecord {
            serde_json::from_str::<JsonLogRecord>(json)
                .expect("parses")
                .into()
        };
        let good =
            record(r#"{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174"}"#);
        assert_eq!(good.trace_id.len(), 16);
        assert_eq!(
            good.span_id,
            [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]
        );
        let bad =
            record(r#"{"traceId":"zz","spanId":"abc","timeUnixNano":null,"severityText":null}"#);
        assert!(bad.trace_id.is_empty());
        assert!(bad.span_id.is_empty());
        assert_eq!(bad.time_unix_nano, 0);
        let times = record(
            r#"{"timeUnixNano":"18446744073709551615","observedTimeUnixNano":7,"severityNumber":9}"#,
        );
        assert_eq!(times.time_unix_nano, u64::MAX);
        assert_eq!(times.observed_time_unix_nano, 7);
        assert_eq!(times.severity_number, 9);
    }
}
