//! Events: the wire shape publishers send and the validated domain type the
//! rest of the system works with.
//!
//! Parse, don't validate: [`WireEvent`] is whatever JSON object arrived, with
//! every field still raw; [`Event::from_wire`] checks each field against the
//! rules in `DESIGN.md` and reports *every* problem at once, so a publisher can
//! fix a batch in one round. Nothing past `http/` ever sees an unvalidated
//! event.
//!
//! Fields are kept exactly as sent: the timestamp string is checked but not
//! rewritten, and the payload stays as the raw JSON text (big integers, key
//! order and unicode escapes intact).

mod exact;

use std::borrow::Cow;
use std::fmt;

use serde::de::Visitor;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use crate::api::FieldError;

/// Limits applied while validating events; configured once in `ServeConfig`.
#[derive(Debug, Clone, Copy)]
pub struct FieldLimits {
    /// Longest `topic`, `event_id` and `source`, in bytes of UTF-8.
    pub field_bytes_max: usize,
}

impl Default for FieldLimits {
    fn default() -> Self {
        Self {
            field_bytes_max: 255,
        }
    }
}

/// One event as it arrived: a JSON object whose fields are not validated
/// yet. The string fields are read once, as [`WireField`]s (borrowed from
/// the body when they hold no escapes); the payload stays raw JSON.
///
/// Unknown fields are ignored, as `DESIGN.md` promises.
///
/// A field is `None` only when absent; an explicit `null` is a
/// [`WireField::Other`] so the error can say "got null" rather than "is
/// required".
#[derive(Debug, Deserialize)]
pub struct WireEvent<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    topic: Option<WireField<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    event_id: Option<WireField<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    timestamp: Option<WireField<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    source: Option<WireField<'a>>,
    #[serde(borrow, default, deserialize_with = "present")]
    payload: Option<&'a RawValue>,
}

fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// A field that should be a string, as it arrived: the string, or the kind
/// of the other JSON value found instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireField<'a> {
    Str(Cow<'a, str>),
    /// "a number", "null", ...: what was there instead of a string.
    Other(&'static str),
}

impl<'de> Deserialize<'de> for WireField<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FieldVisitor)
    }
}

/// Reads any JSON value: a string is kept, anything else is named (and its
/// contents skipped).
struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = WireField<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(WireField::Str(Cow::Borrowed(text)))
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(WireField::Str(Cow::Owned(text.to_owned())))
    }

    fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(WireField::Str(Cow::Owned(text)))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(WireField::Other("a boolean"))
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(WireField::Other("a number"))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(WireField::Other("a number"))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(WireField::Other("a number"))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(WireField::Other("null"))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(WireField::Other("an array"))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        Ok(WireField::Other("an object"))
    }
}

/// One element of a batch: an event object, read in the same pass as the
/// batch, or the kind of the value that stands where an event should be.
#[derive(Debug)]
pub enum WireItem<'a> {
    Event(WireEvent<'a>),
    /// Not a JSON object: "an array", "a string", ...
    Other(&'static str),
}

impl<'de> Deserialize<'de> for WireItem<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

/// An object becomes a [`WireEvent`]; anything else is named, as
/// [`FieldVisitor`] names it.
struct ItemVisitor;

impl ItemVisitor {
    fn not_an_event(field: WireField<'_>) -> WireItem<'_> {
        match field {
            WireField::Str(_) => WireItem::Other("a string"),
            WireField::Other(kind) => WireItem::Other(kind),
        }
    }
}

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = WireItem<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        WireEvent::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            .map(WireItem::Event)
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        FieldVisitor
            .visit_borrowed_str(text)
            .map(Self::not_an_event)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
        FieldVisitor.visit_str(text).map(Self::not_an_event)
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Self::Value, E> {
        FieldVisitor.visit_bool(value).map(Self::not_an_event)
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Self::Value, E> {
        FieldVisitor.visit_i64(value).map(Self::not_an_event)
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Self::Value, E> {
        FieldVisitor.visit_u64(value).map(Self::not_an_event)
    }

    fn visit_f64<E: serde::de::Error>(self, value: f64) -> Result<Self::Value, E> {
        FieldVisitor.visit_f64(value).map(Self::not_an_event)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        FieldVisitor.visit_unit().map(Self::not_an_event)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        FieldVisitor.visit_seq(seq).map(Self::not_an_event)
    }
}

/// A topic name: 1 to `field_bytes_max` bytes, no whitespace, no control
/// characters, and neither `*` nor `>` (they are reserved for patterns).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Topic(String);

impl Topic {
    /// Checks `name` against the topic rules.
    ///
    /// # Errors
    /// A short reason, suitable for a `FieldError` message.
    pub fn parse(name: String, limits: &FieldLimits) -> Result<Self, String> {
        Self::check(&name, limits)?;
        Ok(Self(name))
    }

    fn check(name: &str, limits: &FieldLimits) -> Result<(), String> {
        check_length(name, limits)?;
        match name
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '*' || *c == '>')
        {
            Some(c) => Err(format!(
                "must not contain whitespace, control characters, '*' or '>' (found {c:?})"
            )),
            None => Ok(()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Makes a topic of any name from another system (a service name, a
    /// label value): each whitespace or control character, `*` and `>`
    /// becomes `_`, and the name is cut to `field_bytes_max` bytes at a
    /// character boundary. `None` when nothing is left.
    pub fn sanitize(name: &str, limits: &FieldLimits) -> Option<String> {
        let mut topic = String::with_capacity(name.len().min(limits.field_bytes_max));
        for c in name.chars() {
            let c = if c.is_whitespace() || c.is_control() || c == '*' || c == '>' {
                '_'
            } else {
                c
            };
            if topic.len() + c.len_utf8() > limits.field_bytes_max {
                break;
            }
            topic.push(c);
        }
        (!topic.is_empty()).then_some(topic)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An event id: 1 to `field_bytes_max` bytes, no control characters. Unique
/// within its topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// Checks `id` against the event id rules.
    ///
    /// # Errors
    /// A short reason, suitable for a `FieldError` message.
    pub fn parse(id: String, limits: &FieldLimits) -> Result<Self, String> {
        Self::check(&id, limits)?;
        Ok(Self(id))
    }

    fn check(id: &str, limits: &FieldLimits) -> Result<(), String> {
        check_length(id, limits)?;
        if id.chars().any(char::is_control) {
            return Err("must not contain control characters".to_owned());
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A subscription pattern over dot-separated topic tokens: an exact topic,
/// `*` for exactly one token, `>` (last only) for one or more trailing
/// tokens. `auth.*` matches `auth.login` but not `auth` or `auth.a.b`;
/// `auth.>` matches both `auth.login` and `auth.a.b`; `>` matches everything.
///
/// Tokens are whatever lies between dots, and may be empty, exactly as in
/// topics (`a..b` has the three tokens `a`, `` and `b`): every topic is a
/// pattern that matches itself and nothing else, `*` matches an empty token
/// too (`a.*.b` matches `a..b`), and `>` matches empty trailing tokens
/// (`a.>` matches `a.`). Issue 11 found topics with empty tokens that no
/// pattern could name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    pattern: String,
    wildcard: bool,
}

/// `>` alone: every topic. Checked first, since a subscriber to everything
/// tests each event delivered to it.
const EVERYTHING: &str = ">";

impl TopicPattern {
    /// Parses a pattern.
    ///
    /// # Errors
    /// A short reason when the pattern is empty or too long, `>` is not
    /// last, a wildcard is mixed with other characters in one token, or a
    /// character is not allowed in topics.
    pub fn parse(pattern: &str, limits: &FieldLimits) -> Result<Self, String> {
        check_length(pattern, limits)?;
        let tokens: Vec<&str> = pattern.split('.').collect();
        for (i, token) in tokens.iter().enumerate() {
            match *token {
                ">" if i + 1 != tokens.len() => {
                    return Err("may use '>' only as its last token".to_owned());
                }
                "*" | ">" => {}
                literal => {
                    if let Some(c) = literal
                        .chars()
                        .find(|c| c.is_whitespace() || c.is_control() || *c == '*' || *c == '>')
                    {
                        return Err(format!(
                            "token {literal:?} contains {c:?}; wildcards must be whole tokens"
                        ));
                    }
                }
            }
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            wildcard: tokens.iter().any(|t| *t == "*" || *t == ">"),
        })
    }

    /// `>`: every topic.
    pub fn everything() -> Self {
        Self {
            pattern: EVERYTHING.to_owned(),
            wildcard: true,
        }
    }

    /// The topic itself when the pattern has no wildcard.
    pub fn exact(&self) -> Option<&str> {
        (!self.wildcard).then_some(self.pattern.as_str())
    }

    /// The text every matching topic starts with: the pattern up to its
    /// first wildcard token (`auth.` for `auth.*.x`; empty for `*.x`).
    pub fn literal_prefix(&self) -> String {
        let mut prefix = String::new();
        for token in self.pattern.split('.') {
            if token == "*" || token == ">" {
                return prefix;
            }
            prefix.push_str(token);
            prefix.push('.');
        }
        self.pattern.clone()
    }

    /// Whether every topic `other` matches, this pattern matches too
    /// (`auth.>` covers `auth.*` and `auth.login`; `auth.*` does not cover
    /// `auth.>`, which also matches `auth.a.b`).
    pub fn covers(&self, other: &TopicPattern) -> bool {
        if !self.wildcard {
            return !other.wildcard && self.pattern == other.pattern;
        }
        let mut theirs = other.pattern.split('.');
        for token in self.pattern.split('.') {
            match (token, theirs.next()) {
                (_, None) => return false,
                (">", Some(_)) => return true,
                ("*", Some(their)) if their != ">" => {}
                (literal, Some(their)) if literal != "*" && literal == their => {}
                _ => return false,
            }
        }
        theirs.next().is_none()
    }

    pub fn matches(&self, topic: &str) -> bool {
        if !self.wildcard {
            return self.pattern == topic;
        }
        if self.pattern == EVERYTHING {
            return !topic.is_empty();
        }
        let mut topic_tokens = topic.split('.');
        for token in self.pattern.split('.') {
            match (token, topic_tokens.next()) {
                (">", Some(_)) => return true,
                (_, None) => return false,
                ("*", Some(_)) => {}
                (literal, Some(actual)) if literal == actual => {}
                _ => return false,
            }
        }
        topic_tokens.next().is_none()
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// The fields of an event before validation, as an ingest format maps them
/// from its own record (see [`Event::from_parts`]).
#[derive(Debug)]
pub struct EventParts {
    pub topic: String,
    pub event_id: String,
    pub timestamp: String,
    pub source: String,
    /// Must be a JSON object.
    pub payload: Box<RawValue>,
}

/// A validated event, ready for the ingest queue.
#[derive(Debug, Clone)]
pub struct Event {
    pub topic: Topic,
    pub event_id: EventId,
    /// RFC 3339 / ISO 8601, exactly as sent (checked, never rewritten).
    pub timestamp: String,
    pub source: String,
    /// A JSON object, as the raw text that was sent.
    pub payload: Box<RawValue>,
}

impl Event {
    /// Validates every field of `wire`, the event at position `index`.
    ///
    /// # Errors
    /// Every problem found, one `FieldError` per bad field.
    pub fn from_wire(
        wire: &WireEvent<'_>,
        index: usize,
        limits: &FieldLimits,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut field = |name: &'static str,
                         wire: Option<&WireField<'_>>,
                         check: &dyn Fn(&str) -> Result<(), String>| {
            string_field(wire)
                .and_then(|s| check(s).map(|()| s.to_owned()))
                .map_err(|message| errors.push(FieldError::field(index, name, message)))
                .ok()
        };
        let topic = field("topic", wire.topic.as_ref(), &|s| Topic::check(s, limits));
        let event_id = field("event_id", wire.event_id.as_ref(), &|s| {
            EventId::check(s, limits)
        });
        let timestamp = field("timestamp", wire.timestamp.as_ref(), &check_timestamp);
        let source = field("source", wire.source.as_ref(), &|s| check_source(s, limits));
        let payload = match wire.payload {
            Some(raw) if raw.get().starts_with('{') => Some(raw.to_owned()),
            Some(raw) => {
                errors.push(FieldError::field(
                    index,
                    "payload",
                    format!("must be a JSON object, got {}", json_kind(raw)),
                ));
                None
            }
            None => {
                errors.push(FieldError::field(index, "payload", "is required"));
                None
            }
        };
        match (topic, event_id, timestamp, source, payload) {
            (Some(topic), Some(event_id), Some(timestamp), Some(source), Some(payload))
                if errors.is_empty() =>
            {
                Ok(Self {
                    // Both were checked by the closures above.
                    topic: Topic(topic),
                    event_id: EventId(event_id),
                    timestamp,
                    source,
                    payload,
                })
            }
            _ => Err(errors),
        }
    }

    /// Validates an event that an ingest format mapped from its own record
    /// (`topic`, `event_id` and `timestamp` computed, `payload` built as a
    /// JSON object), by the same rules as [`Event::from_wire`].
    ///
    /// # Errors
    /// Every problem found, one `FieldError` per bad field.
    pub fn from_parts(
        parts: EventParts,
        index: usize,
        limits: &FieldLimits,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut check = |name: &'static str, result: Result<(), String>| {
            if let Err(message) = result {
                errors.push(FieldError::field(index, name, message));
            }
        };
        check("topic", Topic::check(&parts.topic, limits));
        check("event_id", EventId::check(&parts.event_id, limits));
        check("timestamp", check_timestamp(&parts.timestamp));
        check("source", check_length(&parts.source, limits));
        if !parts.payload.get().starts_with('{') {
            check(
                "payload",
                Err(format!(
                    "must be a JSON object, got {}",
                    json_kind(&parts.payload)
                )),
            );
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            topic: Topic(parts.topic),
            event_id: EventId(parts.event_id),
            timestamp: parts.timestamp,
            source: parts.source,
            payload: parts.payload,
        })
    }

    /// Whether `other` carries the same content as `self`: same key and same
    /// timestamp, source and payload. Payloads are compared as JSON values,
    /// exactly: whitespace, key order and string escapes do not count, and
    /// numbers are equal when their decimal values are, however many digits
    /// they have (see `src/event/exact.rs`).
    pub fn same_content(&self, timestamp: &str, source: &str, payload: &str) -> bool {
        self.timestamp == timestamp
            && self.source == source
            && (self.payload.get() == payload || exact::same_json(self.payload.get(), payload))
    }
}

fn string_field<'w>(wire: Option<&'w WireField<'_>>) -> Result<&'w str, String> {
    match wire {
        None => Err("is required".to_owned()),
        Some(WireField::Str(text)) => Ok(text),
        Some(WireField::Other(kind)) => Err(format!("must be a string, got {kind}")),
    }
}

fn check_length(value: &str, limits: &FieldLimits) -> Result<(), String> {
    match value.len() {
        0 => Err("must not be empty".to_owned()),
        n if n > limits.field_bytes_max => Err(format!(
            "is {n} bytes long; the limit is {} bytes",
            limits.field_bytes_max
        )),
        _ => Ok(()),
    }
}

/// Any text of the allowed length but the NUL character, which no
/// PostgreSQL `text` can hold (so every store takes the same events).
fn check_source(value: &str, limits: &FieldLimits) -> Result<(), String> {
    check_length(value, limits)?;
    if value.contains('\0') {
        return Err("must not contain the NUL character (\\u0000)".to_owned());
    }
    Ok(())
}

/// Accepts RFC 3339 (`2025-10-25T12:30:00Z`, `…+02:00`, fractional seconds)
/// and the same without an offset, which is taken as UTC.
fn check_timestamp(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if chrono::DateTime::parse_from_rfc3339(value).is_ok()
        || chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
    {
        return Ok(());
    }
    Err(format!(
        "{value:?} is not an RFC 3339 timestamp (expected e.g. 2025-10-25T12:30:00Z)"
    ))
}

fn json_kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

/// The deepest nesting of arrays and objects in `json`, stopping early once it
/// passes `max`. Runs before any parsing so that a hostile body cannot reach
/// the parser's recursion limit; strings are skipped so brackets inside them
/// do not count.
pub fn nesting_exceeds(json: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(json: &str) -> Result<Event, Vec<FieldError>> {
        let wire: WireEvent<'_> = serde_json::from_str(json).expect("test JSON is valid");
        Event::from_wire(&wire, 3, &FieldLimits::default())
    }

    fn messages(json: &str) -> Vec<(Option<String>, String)> {
        validate(json)
            .expect_err("event should be rejected")
            .into_iter()
            .map(|e| {
                assert_eq!(e.index, 3);
                (e.field.map(String::from), e.message)
            })
            .collect()
    }

    const GOOD: &str = r#"{"topic":"auth.login","event_id":"e1","timestamp":"2025-10-25T12:30:00Z","source":"auth","payload":{"n":12345678901234567890123}}"#;

    #[test]
    fn valid_event_keeps_fields_as_sent() {
        let event = validate(GOOD).expect("valid");
        assert_eq!(event.topic.as_str(), "auth.login");
        assert_eq!(event.timestamp, "2025-10-25T12:30:00Z");
        assert_eq!(event.payload.get(), r#"{"n":12345678901234567890123}"#);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let errors = messages(
            r#"{"topic":"a b","event_id":"","timestamp":"yesterday","source":7,"payload":[1]}"#,
        );
        let fields: Vec<_> = errors
            .iter()
            .map(|(f, _)| f.as_deref().expect("field named"))
            .collect();
        assert_eq!(
            fields,
            ["topic", "event_id", "timestamp", "source", "payload"]
        );
    }

    #[test]
    fn null_fields_say_null() {
        let errors = messages(
            r#"{"topic":null,"event_id":"e","timestamp":"2025-10-25T12:30:00Z","source":"s","payload":null}"#,
        );
        assert_eq!(
            errors,
            [
                (Some("topic".into()), "must be a string, got null".into()),
                (
                    Some("payload".into()),
                    "must be a JSON object, got null".into()
                ),
            ]
        );
    }

    #[test]
    fn missing_fields_are_required() {
        let errors = messages("{}");
        assert_eq!(errors.len(), 5);
        assert!(errors.iter().all(|(_, m)| m == "is required"), "{errors:?}");
    }

    #[test]
    fn topic_rejects_pattern_characters_and_control_characters() {
        let limits = FieldLimits::default();
        for bad in ["auth.*", "auth.>", "a\tb", "a\u{7}b", ""] {
            assert!(Topic::parse(bad.to_owned(), &limits).is_err(), "{bad:?}");
        }
        assert!(Topic::parse("auth.login-ok_1".to_owned(), &limits).is_ok());
    }

    #[test]
    fn sanitized_names_are_valid_topics() {
        let limits = FieldLimits { field_bytes_max: 8 };
        let cases = [
            ("checkout", Some("checkout")),
            ("my service", Some("my_servi")),
            ("a*b>c\tdé", Some("a_b_c_d")),
            ("ééééé", Some("éééé")),
            ("", None),
        ];
        for (name, expected) in cases {
            let topic = Topic::sanitize(name, &limits);
            assert_eq!(topic.as_deref(), expected, "{name:?}");
            if let Some(topic) = topic {
                assert!(Topic::parse(topic, &limits).is_ok(), "{name:?}");
            }
        }
    }

    #[test]
    fn a_source_may_hold_anything_but_nul() {
        let with_source = |source: &str| GOOD.replace(r#""auth""#, source);
        assert_eq!(
            messages(&with_source(r#""a\u0000b""#)),
            [(
                Some("source".into()),
                "must not contain the NUL character (\\u0000)".into()
            )]
        );
        let event = validate(&with_source(r#""tab\there ✓""#)).expect("valid");
        assert_eq!(event.source, "tab\there ✓");
    }

    #[test]
    fn field_length_limit_counts_bytes() {
        let limits = FieldLimits { field_bytes_max: 4 };
        assert!(EventId::parse("éé".to_owned(), &limits).is_ok());
        assert!(EventId::parse("ééé".to_owned(), &limits).is_err());
    }

    #[test]
    fn timestamps_with_and_without_offset_are_accepted() {
        for good in [
            "2025-10-25T12:30:00Z",
            "2025-10-25T12:30:00.123456+02:00",
            "2025-10-25T12:30:00",
            "2025-10-25T12:30:00.5",
        ] {
            assert!(check_timestamp(good).is_ok(), "{good}");
        }
        for bad in ["", "2025-10-25", "2025-13-01T00:00:00Z", "12:30", "now"] {
            assert!(check_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_match_tokens() {
        let limits = FieldLimits::default();
        let cases = [
            ("auth.login", "auth.login", true),
            ("auth.login", "auth.logout", false),
            ("auth.*", "auth.login", true),
            ("auth.*", "auth", false),
            ("auth.*", "auth.a.b", false),
            ("auth.>", "auth.login", true),
            ("auth.>", "auth.a.b", true),
            ("auth.>", "auth", false),
            ("auth.>", "authz.x", false),
            ("*.login", "auth.login", true),
            ("*.login", "auth.logout", false),
            (">", "anything.at.all", true),
            ("*", "one", true),
            ("*", "one.two", false),
        ];
        for (pattern, topic, expected) in cases {
            let parsed = TopicPattern::parse(pattern, &limits).expect(pattern);
            assert_eq!(parsed.matches(topic), expected, "{pattern} ~ {topic}");
        }
        assert_eq!(
            TopicPattern::parse("auth.login", &limits)
                .expect("exact")
                .exact(),
            Some("auth.login")
        );
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        let limits = FieldLimits::default();
        for bad in ["", ">.auth", "au*", "a>.b", "a b", "a.**", "a.>>", "*.>.x"] {
            assert!(TopicPattern::parse(bad, &limits).is_err(), "{bad:?}");
        }
    }

    /// Issue 11, defect 5: `a..b` could be published, but the pattern
    /// `a..b` was refused ("has an empty token"), so nothing could follow
    /// exactly that topic.
    #[test]
    fn topics_with_empty_tokens_can_be_named_by_patterns() {
        let limits = FieldLimits::default();
        let cases = [
            ("a..b", "a..b", true),
            ("a..b", "a.b", false),
            ("a.*.b", "a..b", true),
            ("a.>", "a..b", true),
            ("a.>", "a.", true),
            ("a.*", "a.", true),
            ("*.a", ".a", true),
            (".", ".", true),
            (".", "..", false),
            ("*.*", ".", true),
            (">", ".", true),
            ("a.", "a", false),
        ];
        for (pattern, topic, expected) in cases {
            assert!(Topic::parse(topic.to_owned(), &limits).is_ok(), "{topic}");
            let parsed = TopicPattern::parse(pattern, &limits).expect(pattern);
            assert_eq!(parsed.matches(topic), expected, "{pattern} ~ {topic}");
        }
    }

    /// Token by token, the plainest reading of the pattern rules: the
    /// property tests hold `TopicPattern` to it.
    fn reference_match(pattern: &str, topic: &str) -> bool {
        let pattern: Vec<&str> = pattern.split('.').collect();
        let topic: Vec<&str> = topic.split('.').collect();
        let token = |(p, t): (&&str, &&str)| *p == "*" || p == t;
        match pattern.split_last() {
            Some((&">", head)) => topic.len() > head.len() && head.iter().zip(&topic).all(token),
            _ => pattern.len() == topic.len() && pattern.iter().zip(&topic).all(token),
        }
    }

    /// Every topic over `a`, `b` and `.` of 1 to 7 characters.
    fn small_topics() -> Vec<String> {
        let mut all = vec![String::new()];
        let mut topics = Vec::new();
        for _ in 0..7 {
            all = all
                .iter()
                .flat_map(|t| ["a", "b", "."].map(|c| format!("{t}{c}")))
                .collect();
            topics.extend(all.iter().cloned());
        }
        topics
    }

    #[test]
    fn a_pattern_covers_the_patterns_whose_topics_it_all_matches() {
        let limits = FieldLimits::default();
        let cases = [
            (">", "auth.*", true),
            (">", ">", true),
            ("auth.>", "auth.*", true),
            ("auth.>", "auth.login", true),
            ("auth.>", "auth.*.x.>", true),
            ("auth.>", "auth", false),
            ("auth.*", "auth.login", true),
            ("auth.*", "auth.>", false),
            ("auth.*", "auth.a.b", false),
            ("*.login", "auth.login", true),
            ("*.login", "*.*", false),
            ("auth.login", "auth.login", true),
            ("auth.login", "auth.*", false),
            ("auth.*", ">", false),
            ("*", "*", true),
        ];
        for (p, q, expected) in cases {
            let (p, q) = (
                TopicPattern::parse(p, &limits).expect(p),
                TopicPattern::parse(q, &limits).expect(q),
            );
            assert_eq!(p.covers(&q), expected, "{p} covers {q}");
        }
    }

    proptest::proptest! {
        #[test]
        fn patterns_match_as_the_reference_does(
            pattern in "[ab*>.]{1,8}",
            topic in "[ab.]{1,8}",
        ) {
            let limits = FieldLimits::default();
            let tokens: Vec<&str> = pattern.split('.').collect();
            let well_formed = tokens.iter().enumerate().all(|(i, token)| match *token {
                "*" => true,
                ">" => i + 1 == tokens.len(),
                literal => !literal.contains(['*', '>']),
            });
            match TopicPattern::parse(&pattern, &limits) {
                Ok(parsed) => proptest::prop_assert_eq!(
                    parsed.matches(&topic),
                    reference_match(&pattern, &topic),
                    "{} ~ {}", pattern, topic
                ),
                Err(reason) => proptest::prop_assert!(!well_formed, "{:?} refused: {}", pattern, reason),
            }
            proptest::prop_assert_eq!(TopicPattern::parse(&pattern, &limits).is_ok(), well_formed);
        }

        /// `covers` is sound: when `p` covers `q`, no topic matches `q`
        /// but not `p` (checked over every topic of up to 7 characters).
        #[test]
        fn a_covering_pattern_matches_every_topic_the_covered_one_does(
            p in "[ab*>.]{1,5}",
            q in "[ab*>.]{1,5}",
        ) {
            let limits = FieldLimits::default();
            if let (Ok(p), Ok(q)) = (TopicPattern::parse(&p, &limits), TopicPattern::parse(&q, &limits))
                && p.covers(&q)
            {
                for topic in small_topics() {
                    proptest::prop_assert!(!q.matches(&topic) || p.matches(&topic),
                        "{} covers {} but {} matches only the latter", p, q, topic);
                }
            }
        }

        #[test]
        fn every_topic_is_a_pattern_naming_exactly_itself(
            topic in "[ab.]{1,8}",
            other in "[ab.]{1,8}",
        ) {
            let limits = FieldLimits::default();
            Topic::parse(topic.clone(), &limits).expect("a valid topic");
            let pattern = TopicPattern::parse(&topic, &limits).expect("every topic is a pattern");
            proptest::prop_assert_eq!(pattern.exact(), Some(topic.as_str()));
            proptest::prop_assert_eq!(pattern.matches(&other), other == topic);
        }
    }

    #[test]
    fn nesting_is_measured_outside_strings() {
        assert!(!nesting_exceeds(br#"{"a":{"b":[1]}}"#, 3));
        assert!(nesting_exceeds(br#"{"a":{"b":[[1]]}}"#, 3));
        assert!(!nesting_exceeds(br#"{"a":"[[[[[[\"[["}"#, 1));
    }

    #[test]
    fn same_content_ignores_payload_formatting_only() {
        let event = validate(GOOD).expect("valid");
        let ts = "2025-10-25T12:30:00Z";
        assert!(event.same_content(ts, "auth", r#"{ "n": 12345678901234567890123 }"#));
        assert!(!event.same_content(ts, "auth", r#"{"n":1}"#));
        assert!(!event.same_content(ts, "other", r#"{"n":12345678901234567890123}"#));
        // Issue 11, defect 4: beyond 64 bits, serde_json::Value rounded
        // both to the same f64 and called this conflict a duplicate.
        assert!(!event.same_content(ts, "auth", r#"{"n":12345678901234567890124}"#));
    }
}
