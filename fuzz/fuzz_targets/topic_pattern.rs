//! The pattern matcher (`event::TopicPattern`): `parse` accepts exactly the
//! well-formed patterns, `matches` agrees with a plain token-by-token
//! reference, and every valid topic is a pattern naming exactly itself.
//!
//! Input: the pattern, a newline, the topic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use logagg::event::{FieldLimits, Topic, TopicPattern};

const FIELDS: FieldLimits = FieldLimits {
    field_bytes_max: 255,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some((pattern, topic)) = text.split_once('\n') else {
        return;
    };
    let parsed = TopicPattern::parse(pattern, &FIELDS);
    assert_eq!(
        parsed.is_ok(),
        well_formed(pattern),
        "{pattern:?}: {parsed:?}"
    );
    if Topic::parse(topic.to_owned(), &FIELDS).is_err() {
        return;
    }
    if let Ok(parsed) = &parsed {
        assert_eq!(
            parsed.matches(topic),
            reference_match(pattern, topic),
            "{pattern:?} ~ {topic:?}"
        );
    }
    let itself = TopicPattern::parse(topic, &FIELDS).expect("every topic is a pattern");
    assert_eq!(itself.exact(), Some(topic));
    assert!(itself.matches(topic));
    assert_eq!(itself.matches(pattern), pattern == topic);
});

/// The pattern rules, read plainly: 1 to 255 bytes; tokens between dots;
/// `*` and `>` only as whole tokens, `>` only last; otherwise what a topic
/// may hold (no whitespace or control characters).
fn well_formed(pattern: &str) -> bool {
    if pattern.is_empty() || pattern.len() > FIELDS.field_bytes_max {
        return false;
    }
    let tokens: Vec<&str> = pattern.split('.').collect();
    tokens.iter().enumerate().all(|(i, token)| match *token {
        "*" => true,
        ">" => i + 1 == tokens.len(),
        literal => !literal
            .chars()
            .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control()),
    })
}

fn reference_match(pattern: &str, topic: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let topic: Vec<&str> = topic.split('.').collect();
    let token = |(p, t): (&&str, &&str)| *p == "*" || p == t;
    match pattern.split_last() {
        Some((&">", head)) => topic.len() > head.len() && head.iter().zip(&topic).all(token),
        _ => pattern.len() == topic.len() && pattern.iter().zip(&topic).all(token),
    }
}
