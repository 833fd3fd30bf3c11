//! Reads of stored events: `GET /events`, `GET /events/{topic}/{event_id}`
//! and `GET /topics`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiPath;
use super::query::{ApiQuery, NoParams};
use super::{ApiError, AppState, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};
use crate::event::{FieldLimits, TopicPattern};
use crate::search::{TextQuery, search_from};
use crate::store::{EventQuery, StoredEvent, TimeRange, TopicSummary, event_millis};

/// The query string of `GET /events`, as it arrived. Every filter is
/// optional and they combine; see [`EventQuery`] for what each costs.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// A topic, or a pattern in the `/subscribe` syntax (`auth.*`, `auth.>`).
    #[param(min_length = 1, max_length = 255)]
    topic: Option<String>,
    /// Only events with `seq > after`.
    after: Option<u64>,
    /// Only events with `seq < before`.
    before: Option<u64>,
    /// At most this many events (default 100).
    #[param(minimum = 1, maximum = 10_000)]
    limit: Option<usize>,
    /// `asc` (oldest first, the default) or `desc` (newest first).
    order: Option<Order>,
    /// Only events committed at or after this instant (`received_at`;
    /// RFC 3339, UTC without an offset).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only events committed before this instant.
    #[param(format = DateTime)]
    until: Option<String>,
    /// Only events whose own `timestamp` is at or after this instant.
    #[param(format = DateTime)]
    timestamp_since: Option<String>,
    /// Only events whose own `timestamp` is before this instant.
    #[param(format = DateTime)]
    timestamp_until: Option<String>,
    /// Only events from this source.
    #[param(min_length = 1, max_length = 255)]
    source: Option<String>,
    /// Full-text search: only events whose payload values hold every word
    /// (case-insensitive; `ORD-7` as a phrase, `time*` as a prefix). Only
    /// over topics the server indexes (`serve --search`): `topic` must lie
    /// within one indexed pattern.
    #[param(min_length = 1, max_length = 256)]
    q: Option<String>,
}

/// The order of a page of `GET /events`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

impl ListParams {
    /// Checks the parameters and makes the store query: a pure function, so
    /// that the fuzz target `query` runs exactly what the handler runs.
    ///
    /// # Errors
    /// 400 for a `limit` outside 1..=[`PAGE_LIMIT_MAX`], a malformed topic
    /// pattern or source, or an instant that is not RFC 3339.
    pub fn into_query(self, fields: &FieldLimits) -> Result<EventQuery, ApiError> {
        let limit = self.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
        if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {PAGE_LIMIT_MAX}, got {limit}"
            )));
        }
        let topic = match self.topic {
            Some(topic) => Some(
                TopicPattern::parse(&topic, fields)
                    .map_err(|reason| ApiError::BadRequest(format!("topic {reason}")))?,
            ),
            None => None,
        };
        if let Some(source) = &self.source
            && (source.is_empty() || source.len() > fields.field_bytes_max)
        {
            return Err(ApiError::BadRequest(format!(
                "source must be 1-{} bytes",
                fields.field_bytes_max
            )));
        }
        let text = self
            .q
            .as_deref()
            .map(TextQuery::parse)
            .transpose()
            .map_err(|reason| ApiError::BadRequest(format!("q {reason}")))?;
        Ok(EventQuery {
            text,
            topic,
            after: self.after.unwrap_or(0),
            before: self.before,
            received: TimeRange {
                since: instant("since", self.since.as_deref())?,
                until: instant("until", self.until.as_deref())?,
            },
            timestamp: TimeRange {
                since: instant("timestamp_since", self.timestamp_since.as_deref())?,
                until: instant("timestamp_until", self.timestamp_until.as_deref())?,
            },
            source: self.source,
            newest_first: self.order == Some(Order::Desc),
            limit,
        })
    }
}

/// An instant parameter in milliseconds: RFC 3339, UTC when it has no
/// offset (as event timestamps are read).
fn instant(name: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|text| {
            event_millis(text).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{name} must be an RFC 3339 instant such as 2025-10-25T12:30:00Z, got {text:?}"
                ))
            })
        })
        .transpose()
}

/// A page of `GET /events`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Page {
    events: Vec<StoredEvent>,
    /// Where the next page starts, when more may match.
    #[serde(flatten)]
    next: Next,
    /// With an exact `topic`: whether that topic has ever been published
    /// to, so that an empty page for a misspelled topic says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    topic_known: Option<bool>,
    /// For an unknown topic: stored topics with a close name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    similar_topics: Vec<String>,
    /// Present when retention deleted events the reader would otherwise
    /// have read (of the topics `topic` selects, or of any topic): the
    /// newest `seq` deleted. Oldest first: events after the cursor were
    /// deleted, so the reader skipped those between `after` and this
    /// `seq`. Newest first: on the page that reaches the old end of what
    /// is stored, when older events were deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    expired_through: Option<u64>,
    /// With `q`, present when events the reader would otherwise have
    /// searched were stored before their topics were indexed (`serve
    /// --search`) and so cannot be found: every `seq` up to this one. Set
    /// as `expired_through` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    unsearched_through: Option<u64>,
}

/// The cursor of the next page: `next_after` oldest first, `next_before`
/// newest first. `null` when the range holds nothing more now (oldest
/// first: poll again with the last `seq`). A page can be short and still
/// have a cursor: filters that no index serves examine a bounded number
/// of rows per page.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Next {
    NextAfter(Option<u64>),
    NextBefore(Option<u64>),
}

/// Most names `similar_topics` lists.
const SIMILAR_TOPICS_MAX: usize = 5;

/// Stored events, filtered and paged by `seq`.
#[utoipa::path(get, path = "/events", tag = "read", params(ListParams),
    responses((status = 200, description = "A page of events", body = Page)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page>, ApiError> {
    let query = params.into_query(&state.limits.decode.fields)?;
    let (newest_first, after) = (query.newest_first, query.after);
    let unsearched = match &query.text {
        Some(_) => Some(searchable_from(&state, query.topic.as_ref())?.saturating_sub(1)),
        None => None,
    };
    let pattern = query.topic.clone();
    let topic = pattern.as_ref().and_then(|p| p.exact()).map(str::to_owned);
    let found = state.store.events(query).await?;
    // After the page (see `Store::expired_through`).
    let expired_through = expired_through(&state, pattern.as_ref()).await?;
    // Oldest first, the reader skipped expired events when any newer than
    // its cursor were deleted; newest first, when it has reached the old
    // end of what is stored and older events were deleted.
    let skipped = |through: u64| {
        if newest_first {
            through > 0 && found.next.is_none()
        } else {
            through > after
        }
    };
    let mut page = Page {
        topic_known: topic.as_ref().map(|_| true),
        events: found.events,
        next: if newest_first {
            Next::NextBefore(found.next)
        } else {
            Next::NextAfter(found.next)
        },
        similar_topics: Vec::new(),
        expired_through: skipped(expired_through).then_some(expired_through),
        unsearched_through: unsearched.filter(|&through| skipped(through)),
    };
    // Only an empty page asks whether its topic exists: one read of the
    // topic list (one row per topic, not per event).
    if let Some(topic) = topic.filter(|_| page.events.is_empty()) {
        let topics = state.store.topics().await?;
        if !topics.iter().any(|t| t.topic == topic) {
            page.topic_known = Some(false);
            page.similar_topics = similar(&topic, topics.into_iter().map(|t| t.topic));
        }
    }
    Ok(Json(page))
}

/// Where a text search of the topics `pattern` selects is complete from
/// (see [`search_from`]), or a 400 that says which topics can be searched.
fn searchable_from(state: &AppState, pattern: Option<&TopicPattern>) -> Result<u64, ApiError> {
    let indexed = state.store.text_index();
    if indexed.is_empty() {
        return Err(ApiError::BadRequest(
            "q (full-text search) needs topics indexed for it, and this server indexes none: start it with --search PATTERN (e.g. --search 'orders.>')".to_owned(),
        ));
    }
    search_from(&indexed, pattern).ok_or_else(|| {
        let patterns: Vec<String> = indexed.iter().map(|p| p.pattern.to_string()).collect();
        let asked = pattern.map_or_else(|| "every topic".to_owned(), |p| format!("topic {:?}", p.to_string()));
        ApiError::BadRequest(format!(
            "q searches only the topics this server indexes ({}), and {asked} is not within one of them: give a topic pattern inside one",
            patterns.join(", ")
        ))
    })
}

/// The newest `seq` retention deleted among the topics `pattern` selects
/// (every topic without one): one topic's own, or the newest of the
/// matching topics' (read from the topic list, one row per topic).
async fn expired_through(
    state: &AppState,
    pattern: Option<&TopicPattern>,
) -> Result<u64, ApiError> {
    match pattern {
        None => Ok(state.store.expired_through(None).await?),
        Some(pattern) => match pattern.exact() {
            Some(topic) => Ok(state.store.expired_through(Some(topic)).await?),
            None => Ok(state
                .store
                .topics()
                .await?
                .iter()
                .filter(|t| pattern.matches(&t.topic))
                .map(|t| t.expired_through)
                .max()
                .unwrap_or(0)),
        },
    }
}

/// Up to [`SIMILAR_TOPICS_MAX`] of `topics` close to `topic`, closest
/// first: a few letters apart (a typo), or one contains the other (`auth`
/// for `auth.login`).
fn similar(topic: &str, topics: impl Iterator<Item = String>) -> Vec<String> {
    let allowed = (topic.chars().count() / 3).max(1);
    let mut close: Vec<(usize, String)> = topics
        .filter_map(|candidate| {
            let distance = strsim::damerau_levenshtein(topic, &candidate);
            let related = candidate.contains(topic) || topic.contains(candidate.as_str());
            (distance <= allowed || related).then_some((distance, candidate))
        })
        .collect();
    close.sort();
    close
        .into_iter()
        .take(SIMILAR_TOPICS_MAX)
        .map(|(_, t)| t)
        .collect()
}

/// One event by its key: "was this processed?"
#[utoipa::path(get, path = "/events/{topic}/{event_id}", tag = "read",
    params(("topic" = String, Path, description = "The event's topic"),
           ("event_id" = String, Path, description = "The event's id")),
    responses((status = 200, description = "The stored event", body = StoredEvent),
              (status = 404, description = "Never stored", body = crate::api::Problem,
               content_type = "application/problem+json")))]
pub async fn one(
    State(state): State<AppState>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
    ApiPath((topic, event_id)): ApiPath<(String, String)>,
) -> Result<Json<StoredEvent>, ApiError> {
    let not_found = ApiError::NotFound(format!(
        "no event {event_id:?} in topic {topic:?} has been stored"
    ));
    let found = state.store.event(&topic, &event_id).await?;
    found.map(Json).ok_or(not_found)
}

/// The body of `GET /topics`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Topics {
    topics: Vec<TopicSummary>,
}

/// Every topic with its event count and newest `seq`.
#[utoipa::path(get, path = "/topics", tag = "read",
    responses((status = 200, description = "The topics, by name", body = Topics)))]
pub async fn topics(
    State(state): State<AppState>,
    ApiQuery(NoParams {}): ApiQuery<NoParams>,
) -> Result<Json<Topics>, ApiError> {
    let topics = state.store.topics().await?;
    Ok(Json(Topics { topics }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn similar_topics_are_typos_or_containing_names_closest_first() {
        let stored = ["auth.login", "auth.logout", "billing.paid", "auth"].map(String::from);
        assert_eq!(
            similar("auth.logn", stored.clone().into_iter()),
            ["auth.login", "auth.logout", "auth"]
        );
        assert_eq!(
            similar("billing.paid.eu", stored.clone().into_iter()),
            ["billing.paid"]
        );
        assert!(similar("orders", stored.into_iter()).is_empty());
    }
}
