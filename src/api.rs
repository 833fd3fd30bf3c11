//! The JSON documents of the HTTP API, defined once for the server that
//! writes them and the clients (the CLI commands, the tests) that read them.
//!
//! Every type here is plain data: it derives both `Serialize` and
//! `Deserialize`, and reading is lenient where a newer server may add fields
//! (unknown fields are ignored; fields a client can live without default).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// What a committed publish request did: the body of a 200 from
/// `POST /publish`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    pub received: u64,
    pub unique: u64,
    /// Events whose key was already stored (conflicts included), dropped.
    pub duplicates: u64,
    /// Duplicates whose content differed from the stored copy.
    #[serde(default)]
    pub conflicts: u64,
}

impl Receipt {
    /// Adds another receipt's counts to this one.
    pub fn add(&mut self, other: &Self) {
        self.received += other.received;
        self.unique += other.unique;
        self.duplicates += other.duplicates;
        self.conflicts += other.conflicts;
    }
}

/// The ingest counters, as committed with the events: part of `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counters {
    pub received: u64,
    pub unique_processed: u64,
    pub duplicate_dropped: u64,
    /// Duplicates whose content differed from the stored copy (a subset of
    /// `duplicate_dropped`).
    #[serde(default)]
    pub conflicts: u64,
}

/// What is wrong with one field of one event in a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Position of the event in the request (0-based; for NDJSON, the n-th
    /// event, not counting blank lines).
    pub index: usize,
    /// The field, or `None` when the event as a whole is wrong.
    #[schema(value_type = Option<String>)]
    pub field: Option<Cow<'static, str>>,
    pub message: String,
}

impl FieldError {
    /// A problem with one named field.
    pub fn field(index: usize, field: &'static str, message: impl Into<String>) -> Self {
        Self {
            index,
            field: Some(Cow::Borrowed(field)),
            message: message.into(),
        }
    }

    /// A problem with the event as a whole.
    pub fn whole(index: usize, message: impl Into<String>) -> Self {
        Self {
            index,
            field: None,
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document: the body of every error answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A stable URI naming the kind of problem (`urn:logagg:problem:<slug>`).
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub detail: String,
    /// For validation problems: every bad field of every event.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// `title: detail`, or whichever of the two is present.
    pub fn summary(&self) -> String {
        match (self.title.is_empty(), self.detail.is_empty()) {
            (false, false) => format!("{}: {}", self.title, self.detail),
            (false, true) => self.title.clone(),
            (true, false) => self.detail.clone(),
            (true, true) => "no details given".to_owned(),
        }
    }
}

/// One topic with its number of stored events and the `seq` of the newest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopicSummary {
    pub topic: String,
    /// Events stored now (expired ones are not counted).
    pub events: u64,
    pub last_seq: u64,
    /// The newest `seq` of this topic that retention has deleted; absent
    /// (0) while none has expired. Every event of the topic up to it is
    /// gone, every one after it is stored.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub expired_through: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// The body of `GET /stats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stats {
    #[serde(flatten)]
    pub counters: Counters,
    /// Topic names, sorted.
    pub topics: Vec<String>,
    /// The `seq` of the newest stored event, from the same snapshot as the
    /// counters.
    pub last_seq: u64,
    /// Events stored now: `unique_processed` less `expired` (from the same
    /// snapshot).
    #[serde(default)]
    pub stored: u64,
    /// Events deleted by retention so far; `unique_processed` does not go
    /// down when events expire.
    #[serde(default)]
    pub expired: u64,
    pub uptime_seconds: u64,
    pub queue_depth_events: u64,
    pub queue_capacity_events: u64,
    pub subscribers: u64,
    pub events_delivered: u64,
    /// Whether commits are failing for a full disk (publishes get 507;
    /// reads go on). Set by the first refused commit, cleared by the next
    /// one that succeeds.
    #[serde(default)]
    pub disk_full: bool,
    /// Whether key records alone fill `--retain-bytes` (embedded store):
    /// the last expiry round ended over the limit with no event left, so
    /// every event expires at the next round after it is stored. Cleared
    /// by a round that ends under the limit.
    #[serde(default)]
    pub keys_fill_size_limit: bool,
}

/// The body of `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` while it serves reads but cannot store events.
    pub status: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disk_full: bool,
    /// Key records alone fill `--retain-bytes`: events are stored but
    /// expire at once (see `Stats::keys_fill_size_limit`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keys_fill_size_limit: bool,
    /// What is wrong and what it means, when degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_read_leniently_and_summarise() {
        let problem: Problem = serde_json::from_str(
            r#"{"title":"Events failed validation","detail":"1 problem(s)","extra":1,
                "errors":[{"index":2,"field":"topic","message":"is required"}]}"#,
        )
        .expect("a problem");
        assert_eq!(problem.summary(), "Events failed validation: 1 problem(s)");
        assert_eq!(problem.errors[0].field.as_deref(), Some("topic"));
        assert_eq!(Problem::default().summary(), "no details given");
    }

    #[test]
    fn a_receipt_without_conflicts_still_reads() {
        let receipt: Receipt =
            serde_json::from_str(r#"{"received":2,"unique":1,"duplicates":1}"#).expect("receipt");
        assert_eq!(receipt.conflicts, 0);
    }
}
