//! The synthetic load of `--generate`: a reproducible sequence of sends, some
//! of which are re-sends of earlier events.
//!
//! Everything is a pure function of [`LoadSpec`]: the same spec (seed
//! included) gives byte-identical sends in the same order. A re-send is the
//! very line that was sent before, as a publisher retrying after a lost
//! acknowledgement would send it, so the server sees a true duplicate, never
//! a conflict. Exactly `round(events × duplicate_rate)` sends are re-sends
//! (at most `events - 1`: the first send has nothing to repeat).

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::ChaCha8Rng;
use rand::{Rng, RngExt, SeedableRng};

/// Most events `--generate` builds: the bodies are built in memory before
/// sending starts (about `payload_bytes + 170` bytes per event).
pub(crate) const EVENTS_MAX: u64 = 10_000_000;

/// What the generated events carry in `source`.
const SOURCE: &str = "logagg-publish";

/// Payload bytes taken by the fixed part, `{"n":…,"fill":""}`, with a
/// seven-digit `n`; `--payload-bytes` below this gets the minimal payload.
const PAYLOAD_OVERHEAD: usize = 20;

/// How event ids are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdKind {
    /// Random (version 4) UUIDs: inserts land all over the dedup index.
    Uuid4,
    /// Time-ordered (version 7) UUIDs: inserts append to the dedup index.
    Uuid7,
}

/// Everything the generated sends depend on.
#[derive(Debug, Clone)]
pub(crate) struct LoadSpec {
    /// Sends in total, re-sends included.
    pub sends: u64,
    /// Topics `load.0` … `load.{topics-1}`; each event picks one at random.
    pub topics: usize,
    /// Approximate size of each payload object's JSON text.
    pub payload_bytes: usize,
    /// The fill is words of [`vocabulary`] rather than random characters.
    pub payload_words: bool,
    /// Share of sends that are re-sends, in `[0, 1)`.
    pub duplicate_rate: f64,
    pub ids: IdKind,
    pub seed: u64,
    /// Timestamp (and UUIDv7 time) of the first unique event, in Unix
    /// milliseconds; each next unique event is one millisecond later.
    pub start_millis: i64,
}

impl LoadSpec {
    /// How many sends repeat an earlier event.
    pub(crate) fn resends(&self) -> u64 {
        let wanted = (self.sends as f64 * self.duplicate_rate).round() as u64;
        wanted.min(self.sends.saturating_sub(1))
    }

    /// How many distinct events are sent.
    pub(crate) fn unique(&self) -> u64 {
        self.sends - self.resends()
    }
}

/// Builds every send, in order, each as one NDJSON line (no newline).
///
/// # Panics
/// When `spec.sends` is over [`EVENTS_MAX`] (the caller checks it).
pub(crate) fn generate(spec: &LoadSpec) -> Vec<Arc<str>> {
    assert!(spec.sends <= EVENTS_MAX, "checked when parsing --generate");
    let sends = spec.sends as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut is_resend = vec![false; sends];
    if sends > 1 {
        // Any position but the first may repeat an earlier event.
        for position in rand::seq::index::sample(&mut rng, sends - 1, spec.resends() as usize) {
            is_resend[position + 1] = true;
        }
    }
    let words = if spec.payload_words {
        vocabulary()
    } else {
        Vec::new()
    };
    let mut unique: Vec<Arc<str>> = Vec::with_capacity(spec.unique() as usize);
    let mut out = Vec::with_capacity(sends);
    for resend in is_resend {
        let line = if resend {
            let earlier = rng.random_range(0..unique.len());
            Arc::clone(&unique[earlier])
        } else {
            let line: Arc<str> = event_line(spec, &words, unique.len() as u64, &mut rng).into();
            unique.push(Arc::clone(&line));
            line
        };
        out.push(line);
    }
    out
}

/// The `n`-th unique event.
fn event_line(spec: &LoadSpec, words: &[String], n: u64, rng: &mut impl Rng) -> String {
    let millis = spec.start_millis.saturating_add(n as i64);
    let topic = rng.random_range(0..spec.topics);
    let event_id = match spec.ids {
        IdKind::Uuid4 => uuid::Builder::from_random_bytes(rng.random()).into_uuid(),
        IdKind::Uuid7 => {
            let unix_millis = u64::try_from(millis).unwrap_or_default();
            uuid::Builder::from_unix_timestamp_millis(unix_millis, &rng.random()).into_uuid()
        }
    };
    let timestamp = DateTime::<Utc>::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut line = String::with_capacity(150 + spec.payload_bytes);
    // Every piece is ASCII without quotes or backslashes, so no escaping.
    write!(
        line,
        r#"{{"topic":"load.{topic}","event_id":"{event_id}","timestamp":"{timestamp}","source":"{SOURCE}","payload":{{"n":{n},"fill":""#
    )
    .expect("writing to a String cannot fail");
    let fill = spec.payload_bytes.saturating_sub(PAYLOAD_OVERHEAD);
    if words.is_empty() {
        line.extend((0..fill).map(|_| alphanumeric(rng)));
    } else {
        let (start, end) = (line.len(), line.len() + fill);
        while line.len() < end {
            if line.len() > start {
                line.push(' ');
            }
            // Log-uniform ranks: word k is drawn about 1/k as often as the
            // first, as word frequencies in text are.
            let rank = (words.len() as f64).powf(rng.random::<f64>()) as usize - 1;
            line.push_str(&words[rank.min(words.len() - 1)]);
        }
    }
    line.push_str("\"}}");
    line
}

/// Words in a vocabulary of `--payload-words`.
pub(crate) const VOCABULARY_WORDS: usize = 4_096;

/// [`VOCABULARY_WORDS`] distinct lowercase words of 3 to 9 letters, the
/// same every time (whatever `--seed`), so that loads sent separately
/// share their words; the first are the most frequent.
pub(crate) fn vocabulary() -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x766f_6361_6275_6c61);
    let mut seen = std::collections::HashSet::new();
    let mut words = Vec::with_capacity(VOCABULARY_WORDS);
    while words.len() < VOCABULARY_WORDS {
        let length = rng.random_range(3..=9);
        let word: String = (0..length)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect();
        if seen.insert(word.clone()) {
            words.push(word);
        }
    }
    words
}

fn alphanumeric(rng: &mut impl Rng) -> char {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    char::from(CHARS[rng.random_range(0..CHARS.len())])
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn spec(sends: u64, duplicate_rate: f64, seed: u64) -> LoadSpec {
        LoadSpec {
            payload_words: false,
            sends,
            topics: 3,
            payload_bytes: 64,
            duplicate_rate,
            ids: IdKind::Uuid7,
            seed,
            start_millis: 1_735_689_600_000,
        }
    }

    fn ids(lines: &[Arc<str>]) -> Vec<String> {
        lines
            .iter()
            .map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
                value["event_id"].as_str().expect("id").to_owned()
            })
            .collect()
    }

    #[test]
    fn exactly_the_duplicate_rate_of_sends_are_resends() {
        for (sends, rate, resends) in [(5000, 0.2, 1000), (10, 0.0, 0), (1, 0.5, 0), (3, 0.99, 2)] {
            let lines = generate(&spec(sends, rate, 7));
            let distinct: HashSet<_> = lines.iter().collect();
            assert_eq!(lines.len() as u64, sends, "{sends} sends at {rate}");
            assert_eq!(
                distinct.len() as u64,
                sends - resends,
                "{sends} sends at {rate}"
            );
            let distinct_ids: HashSet<_> = ids(&lines).into_iter().collect();
            assert_eq!(
                distinct_ids.len(),
                distinct.len(),
                "a re-send is byte-identical"
            );
        }
    }

    #[test]
    fn a_resend_always_follows_its_original() {
        let lines = generate(&spec(1000, 0.5, 3));
        let mut seen = HashSet::new();
        let mut resends = 0;
        for line in &lines {
            if !seen.insert(line) {
                resends += 1;
            }
        }
        assert_eq!(resends, 500);
        // The first send is new by construction; every later repeat was
        // counted above only because its original came first.
        assert_eq!(seen.len(), 500);
    }

    #[test]
    fn same_seed_same_sends_other_seed_other_ids() {
        assert_eq!(generate(&spec(200, 0.1, 42)), generate(&spec(200, 0.1, 42)));
        let first: HashSet<_> = ids(&generate(&spec(200, 0.1, 42))).into_iter().collect();
        let other: HashSet<_> = ids(&generate(&spec(200, 0.1, 43))).into_iter().collect();
        assert!(first.is_disjoint(&other));
    }

    #[test]
    fn events_are_valid_with_the_asked_payload_size() {
        let lines = generate(&spec(50, 0.0, 1));
        let mut previous_id = String::new();
        for line in &lines {
            let event: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
            assert!(event["topic"].as_str().expect("topic").starts_with("load."));
            assert_eq!(event["source"], SOURCE);
            assert!(event["timestamp"].as_str().expect("ts").ends_with('Z'));
            let payload = serde_json::to_string(&event["payload"]).expect("payload");
            assert!(
                (60..=70).contains(&payload.len()),
                "payload of {} bytes: {payload}",
                payload.len()
            );
            let id = event["event_id"].as_str().expect("id").to_owned();
            assert!(id > previous_id, "uuid7 ids are time-ordered");
            previous_id = id;
        }
    }

    #[test]
    fn word_payloads_are_vocabulary_words_the_first_the_most_frequent() {
        let mut spec = spec(2_000, 0.0, 5);
        spec.payload_words = true;
        spec.payload_bytes = 120;
        let words = vocabulary();
        assert_eq!(words.len(), VOCABULARY_WORDS);
        assert_eq!(words, vocabulary(), "the same words every time");
        let mut counts = vec![0_usize; words.len()];
        for line in generate(&spec) {
            let event: serde_json::Value = serde_json::from_str(&line).expect("valid JSON");
            let payload = serde_json::to_string(&event["payload"]).expect("payload");
            // 120 less the digits `n` lacks of seven, plus up to a word.
            assert!((110..=135).contains(&payload.len()), "{payload}");
            for word in event["payload"]["fill"]
                .as_str()
                .expect("fill")
                .split_whitespace()
            {
                let rank = words
                    .iter()
                    .position(|w| w == word)
                    .expect("a vocabulary word");
                counts[rank] += 1;
            }
        }
        let (top, tail) = (
            counts[..16].iter().sum::<usize>(),
            counts[2048..].iter().sum::<usize>(),
        );
        // Log-uniform: the first 16 ranks and the last 2,048 each get a
        // third and a twelfth of the draws, about.
        assert!(top > 3 * tail, "first 16: {top}, last 2048: {tail}");
        assert!(tail > 0);
    }

    #[test]
    fn uuid4_ids_are_version_4() {
        let mut spec = spec(20, 0.0, 9);
        spec.ids = IdKind::Uuid4;
        for id in ids(&generate(&spec)) {
            let id = uuid::Uuid::parse_str(&id).expect("a UUID");
            assert_eq!(id.get_version_num(), 4);
        }
    }
}
