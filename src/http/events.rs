//! Reads of stored events: `GET /events`, `GET /events/{topic}/{event_id}`
//! and `GET /topics`.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::error::ApiQuery;
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
    /// Present when events after the cursor (of the topic asked for, or of
    /// any topic) were deleted by retention: the newest `seq` deleted. The
    /// page holds what is still stored; the reader has skipped the expired
    /// events between `after` and this `seq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    expired_through: Option<u64>,
}

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
    Ok(Json(Page {
        events,
        next_after,
        expired_through: (expired_through > after).then_some(expired_through),
    }))
}

pub async fn one(
    State(state): State<AppState>,
    Path((topic, event_id)): Path<(String, String)>,
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

pub async fn topics(State(state): State<AppState>) -> Result<Json<Topics>, ApiError> {
    let topics = state.store.topics().await?;
    Ok(Json(Topics { topics }))
}
