//! Full-text search over payloads (`GET /events?q=`, `logagg events
//! --grep`): what a query means, what text of an event is indexed, and
//! which topics are.
//!
//! Indexing costs ingest speed, so it is opt-in per topic pattern
//! (`serve --search PATTERN`, repeatable): an event is indexed when it is
//! stored while its topic matches one of them. The store remembers since
//! which `seq` each pattern has been indexed ([`IndexedPattern`]), so a
//! search over events stored before that says so instead of silently
//! finding nothing in them.
//!
//! What is indexed is the payload's values (strings and numbers, at any
//! depth), not its keys: keys such as `"level"` repeat in every event and
//! would only make the index bigger. Text is cut into tokens of letters
//! and digits, lowercased and without diacritics (SQLite FTS5's
//! `unicode61` tokenizer).

use crate::event::TopicPattern;

/// Most bytes of a `q`.
pub const QUERY_BYTES_MAX: usize = 256;
/// Most terms (whitespace-separated words) of a `q`.
pub const QUERY_TERMS_MAX: usize = 16;

/// A text query: an event matches when its payload's values hold every
/// term. A term is a word of the query, such as `timeout` or `ORD-1234`:
/// its tokens (`ord`, `1234`) must occur one after the other, in any case.
/// A term ending in `*` matches any word its last token begins (`time*`
/// matches `timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextQuery {
    terms: Vec<Term>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    text: String,
    prefix: bool,
}

impl TextQuery {
    /// Parses `q`.
    ///
    /// # Errors
    /// A short reason when `q` is empty or too long, has too many terms, or
    /// a term has no letter or digit to search for.
    pub fn parse(q: &str) -> Result<Self, String> {
        if q.len() > QUERY_BYTES_MAX {
            return Err(format!(
                "must be at most {QUERY_BYTES_MAX} bytes, got {}",
                q.len()
            ));
        }
        let words: Vec<&str> = q.split_whitespace().collect();
        if words.is_empty() {
            return Err("must hold at least one word to search for".to_owned());
        }
        if words.len() > QUERY_TERMS_MAX {
            return Err(format!(
                "may hold at most {QUERY_TERMS_MAX} words, got {}",
                words.len()
            ));
        }
        let terms = words
            .into_iter()
            .map(|word| {
                let (text, prefix) = match word.strip_suffix('*') {
                    Some(stem) => (stem, true),
                    None => (word, false),
                };
                if !text.chars().any(char::is_alphanumeric) {
                    return Err(format!(
                        "word {word:?} has no letter or digit to search for"
                    ));
                }
                Ok(Term {
                    text: text.to_owned(),
                    prefix,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { terms })
    }

    /// The query in SQLite FTS5's syntax: each term a quoted phrase (so no
    /// character of it is an operator), `*` after a prefix term, all of
    /// them required.
    pub fn to_fts5(&self) -> String {
        let mut query = String::new();
        for term in &self.terms {
            if !query.is_empty() {
                query.push(' ');
            }
            query.push('"');
            query.push_str(&term.text.replace('"', "\"\""));
            query.push('"');
            if term.prefix {
                query.push_str(" *");
            }
        }
        query
    }
}

/// The text the index holds for a payload: its string and number values,
/// at any depth, one per line. Empty when the payload is not JSON (never
/// the case for a stored event).
pub fn payload_text(payload: &str) -> String {
    fn collect(value: &serde_json::Value, text: &mut String) {
        match value {
            serde_json::Value::String(s) => {
                text.push_str(s);
                text.push('\n');
            }
            serde_json::Value::Number(n) => {
                text.push_str(&n.to_string());
                text.push('\n');
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, text)),
            serde_json::Value::Object(fields) => fields.values().for_each(|v| collect(v, text)),
            serde_json::Value::Bool(_) | serde_json::Value::Null => {}
        }
    }
    let mut text = String::new();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(payload) {
        collect(&value, &mut text);
    }
    text
}

/// A topic pattern whose events are indexed, and the first `seq` stored
/// since it has been: events of its topics stored before `from_seq` may
/// be missing from the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPattern {
    pub pattern: TopicPattern,
    pub from_seq: u64,
}

/// Where a search of the topics `topic` selects (every topic when `None`)
/// is complete from: the `from_seq` of the indexed pattern that covers
/// them and has been indexed longest. `None` when no single indexed
/// pattern covers them all, so a search could miss events that were
/// never indexed.
pub fn search_from(indexed: &[IndexedPattern], topic: Option<&TopicPattern>) -> Option<u64> {
    let everything = TopicPattern::everything();
    let topic = topic.unwrap_or(&everything);
    indexed
        .iter()
        .filter(|p| p.pattern.covers(topic))
        .map(|p| p.from_seq)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::FieldLimits;

    #[test]
    fn terms_become_quoted_phrases_with_prefixes_marked() {
        let query = TextQuery::parse("  ORD-1234 time*  say\"hi\" ").expect("a query");
        assert_eq!(query.to_fts5(), r#""ORD-1234" "time" * "say""hi""""#);
    }

    #[test]
    fn queries_without_anything_to_search_for_are_refused() {
        for (q, reason) in [
            ("", "at least one word"),
            ("   ", "at least one word"),
            ("-- *", "no letter or digit"),
            (&"a ".repeat(17), "at most 16 words"),
            (&"a".repeat(257), "at most 256 bytes"),
        ] {
            let error = TextQuery::parse(q).expect_err(q);
            assert!(error.contains(reason), "{q:?}: {error}");
        }
    }

    #[test]
    fn the_indexed_text_is_the_payloads_values() {
        let text = payload_text(
            r#"{"level":"error","order":{"id":"ORD-7","lines":[3,"x"]},"ok":true,"n":null}"#,
        );
        assert_eq!(text, "error\nORD-7\n3\nx\n");
    }

    #[test]
    fn a_search_is_complete_from_the_longest_indexed_covering_pattern() {
        let limits = FieldLimits::default();
        let pattern = |p: &str| TopicPattern::parse(p, &limits).expect(p);
        let indexed = [
            IndexedPattern {
                pattern: pattern("orders.>"),
                from_seq: 40,
            },
            IndexedPattern {
                pattern: pattern("orders.eu"),
                from_seq: 7,
            },
        ];
        assert_eq!(search_from(&indexed, Some(&pattern("orders.eu"))), Some(7));
        assert_eq!(search_from(&indexed, Some(&pattern("orders.*"))), Some(40));
        assert_eq!(search_from(&indexed, Some(&pattern("billing.x"))), None);
        assert_eq!(search_from(&indexed, None), None);
        let everything = [IndexedPattern {
            pattern: pattern(">"),
            from_seq: 1,
        }];
        assert_eq!(search_from(&everything, None), Some(1));
    }
}
