//! Reads of stored events: `GET /events`, `GET /events/{topic}/{event_id}`
//! and `GET /topics`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::ApiPath;
use super::query::{ApiQuery, NoParams};
use super::{ApiError, AppState, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};
use crate::event::{FieldLimits, Topic};
use crate::store::{EventQuery, StoredEvent, TopicSummary};

/// The query string of `GET /events`, as it arrived.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    topic: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

impl ListParams {
    /// Checks the parameters and makes the store query: a pure function, so
    /// that the fuzz target `query` runs exactly what the handler runs.
    ///
    /// # Errors
    /// 400 for a `limit` outside 1..=[`PAGE_LIMIT_MAX`] or a malformed topic.
    pub fn into_query(self, fields: &FieldLimits) -> Result<EventQuery, ApiError> {
        let limit = self.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
        if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "limit must be between 1 and {PAGE_LIMIT_MAX}, got {limit}"
            )));
        }
        let topic = match self.topic {
            Some(topic) => Some(
                Topic::parse(topic, fields)
                    .map_err(|reason| ApiError::BadRequest(format!("topic {reason}")))?,
            ),
            None => None,
        };
        Ok(EventQuery {
            topic: topic.map(|t| t.as_str().to_owned()),
            after: self.after.unwrap_or(0),
            limit,
        })
    }
}

#[derive(Serialize)]
pub struct Page {
    events: Vec<StoredEvent>,
    /// The `after` of the next page when this one came back full; `null`
    /// when there was nothing more to read (poll again with the last `seq`).
    next_after: Option<u64>,
    /// With a `topic` filter: whether that topic has ever been published
    /// to, so that an empty page for a misspelled topic says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    topic_known: Option<bool>,
    /// For an unknown topic: stored topics with a close name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    similar_topics: Vec<String>,
    /// Present when events after the cursor (of the topic asked for, or of
    /// any topic) were deleted by retention: the newest `seq` deleted. The
    /// page holds what is still stored; the reader has skipped the expired
    /// events between `after` and this `seq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    expired_through: Option<u64>,
}

/// Most names `similar_topics` lists.
const SIMILAR_TOPICS_MAX: usize = 5;

pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page>, ApiError> {
    let query = params.into_query(&state.limits.decode.fields)?;
    let (limit, after, topic) = (query.limit, query.after, query.topic.clone());
    let events = state.store.events(query).await?;
    // After the page (see `Store::expired_through`).
    let expired_through = state.store.expired_through(topic.as_deref()).await?;
    let next_after = (events.len() == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    let mut page = Page {
        topic_known: topic.as_ref().map(|_| true),
        events,
        next_after,
        similar_topics: Vec::new(),
        expired_through: (expired_through > after).then_some(expired_through),
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

#[derive(Serialize)]
pub struct Topics {
    topics: Vec<TopicSummary>,
}

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
