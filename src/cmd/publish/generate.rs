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
    let mut unique: Vec<Arc<str>> = Vec::with_capacity(spec.unique() as usize);
    let mut out = Vec::with_capacity(sends);
    for resend in is_resend {
        let line = if resend {
            let earlier = rng.random_range(0..unique.len());
            Arc::clone(&unique[earlier])
        } else {
            let line: Arc<str> = event_line(spec, unique.len() as u64, &mut rng).into();
            unique.push(Arc::clone(&line));
            line
        };
        out.push(line);
    }
    out
}

/// The `n`-th unique event.
fn event_line(spec: &LoadSpec, n: u64, rng: &mut impl Rng) -> String {
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
    line.extend((0..fill).map(|_| alphanumeric(rng)));
    line.push_str("\"}}");
    line
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
    fn uuid4_ids_are_version_4() {
        let mut spec = spec(20, 0.0, 9);
        spec.ids = IdKind::Uuid4;
        for id in ids(&generate(&spec)) {
            let id = uuid::Uuid::parse_str(&id).expect("a UUID");
            assert_eq!(id.get_version_num(), 4);
        }
    }
}
