//! Retention: how long events are kept ([`RetentionPolicy`], from
//! `--retain-for`, `--retain`, `--retain-bytes` and `--dedup-horizon`).
//! The store applies a policy ([`crate::store::Store::expire`]); the
//! background task that asks it to is [`crate::expiry`], above the store,
//! so this module, which the store reads, imports nothing of it.
//!
//! An event expires by the time it was *received* (`received_at`, stamped
//! by this server at commit), never by its own `timestamp`: that one comes
//! from the publisher's clock, which may be wrong, skewed or set on
//! purpose, and would let one publisher make events vanish early or stay
//! forever. Within a topic, events expire in `seq` order: an event goes
//! once it and every older event of its topic are past their retention, so
//! what a topic still holds is always its newest events, without holes.
//!
//! With a size limit (`--retain-bytes`), the oldest events across all
//! topics (lowest `seq` first) also expire while the store's measure of
//! its size exceeds it: the embedded database's used bytes (key records
//! included), or on PostgreSQL the running sum of the stored events' bytes
//! ([`crate::store`]'s `event_bytes`, the same definition the embedded
//! store aims its steps with). Lowest `seq` first keeps the same suffix
//! property in every topic.
//!
//! Expiry deletes the payload but keeps the event's key as a compact dedup
//! record, for the dedup horizon (default forever): a late retry of an
//! expired event is answered as a duplicate, never stored again. Once an
//! expired event is older than a finite horizon its key is forgotten too,
//! and a retry after that is stored again, as a new event with a new `seq`.
//!
use std::time::Duration;

use crate::event::{FieldLimits, TopicPattern};

/// How long something is kept: for a duration, or forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Forever,
    For(Duration),
}

impl Keep {
    /// `forever`, or a positive duration with a unit (`7d`, `12h`, `90m`).
    ///
    /// # Errors
    /// A message for clap to show beside the flag.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("forever") {
            return Ok(Self::Forever);
        }
        match humantime::parse_duration(text) {
            Ok(Duration::ZERO) => Err("must be longer than zero (or `forever`)".to_owned()),
            Ok(duration) => Ok(Self::For(duration)),
            Err(e) => Err(format!(
                "{text:?} is not a duration ({e}); e.g. 7d, 12h, 90m, or `forever`"
            )),
        }
    }

    /// The duration, `None` for forever.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Self::Forever => None,
            Self::For(duration) => Some(duration),
        }
    }
}

impl std::fmt::Display for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Forever => f.write_str("forever"),
            Self::For(duration) => humantime::format_duration(*duration).fmt(f),
        }
    }
}

/// A number of bytes, as `--retain-bytes` takes it: an integer with an
/// optional unit, decimal (`KB`, `MB`, `GB`, `TB`: powers of 1000) or binary
/// (`KiB`, `MiB`, `GiB`, `TiB`: powers of 1024); `B` or none for bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `50GiB`, `500 MB`, `1048576` (units case-insensitive).
    ///
    /// # Errors
    /// A message for clap to show beside the flag.
    pub fn parse(text: &str) -> Result<Self, String> {
        const UNITS: [(&str, u64); 9] = [
            ("b", 1),
            ("kb", 1_000),
            ("mb", 1_000_000),
            ("gb", 1_000_000_000),
            ("tb", 1_000_000_000_000),
            ("kib", 1 << 10),
            ("mib", 1 << 20),
            ("gib", 1 << 30),
            ("tib", 1 << 40),
        ];
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let multiplier = if unit.is_empty() {
            Some(1)
        } else {
            UNITS.iter().find(|(name, _)| *name == unit).map(|u| u.1)
        };
        let (Ok(number), Some(multiplier)) = (number.parse::<u64>(), multiplier) else {
            return Err(format!(
                "{text:?} is not a size; e.g. 50GiB, 500MB, 1048576 (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        };
        match number.checked_mul(multiplier) {
            Some(0) => Err("must be more than zero bytes".to_owned()),
            Some(bytes) => Ok(Self(bytes)),
            None => Err(format!("{text:?} is too large")),
        }
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// One `--retain PATTERN=DURATION` override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainRule {
    pub pattern: TopicPattern,
    pub keep: Keep,
}

impl RetainRule {
    /// `PATTERN=DURATION`, e.g. `audit.>=365d` or `debug.*=forever`. The
    /// split is at the last `=`, since a topic may hold `=` but a duration
    /// never does.
    ///
    /// # Errors
    /// A message for clap to show beside `--retain`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((pattern, keep)) = text.rsplit_once('=') else {
            return Err(format!(
                "{text:?} is not PATTERN=DURATION; e.g. 'audit.>=365d'"
            ));
        };
        let pattern = TopicPattern::parse(pattern.trim(), &FieldLimits::default())
            .map_err(|reason| format!("pattern {pattern:?} {reason}"))?;
        Ok(Self {
            pattern,
            keep: Keep::parse(keep)?,
        })
    }
}

/// What to keep, for how long: the rules in the order given, then the
/// default; and how long an expired event's key is still remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Overrides; the first whose pattern matches a topic decides.
    pub rules: Vec<RetainRule>,
    /// For topics no rule matches.
    pub default: Keep,
    /// How long after it was received an expired event's key is kept.
    pub dedup_horizon: Keep,
    /// `--retain-bytes`: while the store's size exceeds this, its oldest
    /// events expire, whatever their age. The embedded store measures its
    /// database's used bytes; PostgreSQL the stored events' bytes.
    pub bytes_max: Option<u64>,
}

impl RetentionPolicy {
    /// Keep everything, forever: what a server does without retention flags.
    pub fn forever() -> Self {
        Self {
            rules: Vec::new(),
            default: Keep::Forever,
            dedup_horizon: Keep::Forever,
            bytes_max: None,
        }
    }

    /// How long `topic`'s events are kept: the first matching rule's
    /// duration, else the default.
    pub fn keep(&self, topic: &str) -> Keep {
        self.rules
            .iter()
            .find(|rule| rule.pattern.matches(topic))
            .map_or(self.default, |rule| rule.keep)
    }

    /// Whether any event can ever expire.
    pub fn expires_anything(&self) -> bool {
        self.default != Keep::Forever
            || self.rules.iter().any(|r| r.keep != Keep::Forever)
            || self.bytes_max.is_some()
    }
}

/// What one [`crate::store::Store::expire`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireReport {
    /// Events whose payload was deleted (their keys kept).
    pub expired: u64,
    /// Keys of expired events forgotten, being past the dedup horizon.
    pub forgotten: u64,
    /// Whether the budget ran out with more left to do: call again soon.
    pub more: bool,
    /// Over `--retain-bytes` with no event left to expire: what fills the
    /// limit is key records and tables, so every event expires at the next
    /// call after it is stored. Only the embedded store, whose limit counts
    /// key records, reports it.
    pub keys_fill_limit: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_or_as_forever() {
        assert_eq!(
            Keep::parse("7d"),
            Ok(Keep::For(Duration::from_secs(7 * 86_400)))
        );
        assert_eq!(Keep::parse(" forever "), Ok(Keep::Forever));
        for bad in ["", "7", "0s", "soon", "-1d"] {
            assert!(Keep::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_first_matching_rule_decides_then_the_default() {
        let policy = RetentionPolicy {
            rules: vec![
                RetainRule::parse("audit.>=365d").expect("rule"),
                RetainRule::parse("audit.login=1d").expect("rule"),
                RetainRule::parse("debug.*=forever").expect("rule"),
            ],
            default: Keep::parse("7d").expect("duration"),
            dedup_horizon: Keep::Forever,
            bytes_max: None,
        };
        let days = |n: u64| Keep::For(Duration::from_secs(n * 86_400));
        assert_eq!(policy.keep("audit.login"), days(365));
        assert_eq!(policy.keep("debug.x"), Keep::Forever);
        assert_eq!(policy.keep("debug"), days(7));
        assert!(policy.expires_anything());
        assert!(!RetentionPolicy::forever().expires_anything());
    }

    #[test]
    fn sizes_parse_with_decimal_or_binary_units() {
        for (text, bytes) in [
            ("50GiB", 50 << 30),
            ("500MB", 500_000_000),
            (" 2 kib ", 2_048),
            ("1048576", 1 << 20),
            ("7B", 7),
            ("3TB", 3_000_000_000_000),
        ] {
            assert_eq!(ByteSize::parse(text), Ok(ByteSize(bytes)), "{text:?}");
        }
        for bad in ["", "GiB", "0MB", "1.5GB", "-1MB", "5 XB", "99999999999TiB"] {
            assert!(ByteSize::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        for (bad, says) in [
            ("audit.>", "PATTERN=DURATION"),
            ("audit.>.x=1d", "pattern"),
            ("=1d", "pattern"),
            ("audit.>=often", "duration"),
        ] {
            let error = RetainRule::parse(bad).expect_err(bad);
            assert!(error.contains(says), "{bad:?}: {error}");
        }
        // A topic may hold `=`; the split is at the last one.
        let rule = RetainRule::parse("a=b=1h").expect("rule");
        assert!(rule.pattern.matches("a=b"));
    }
}
