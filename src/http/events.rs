//! Reads of stored events: `GET /events`, `GET /events/{topic}/{event_id}`
//! and `GET /topics`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::{ApiPath, ApiQuery};
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
}

pub async fn list(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page>, ApiError> {
    let query = params.into_query(&state.limits.decode.fields)?;
    let limit = query.limit;
    let events = state.store.events(query).await?;
    let next_after = (events.len() == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(Page { events, next_after }))
}

pub async fn one(
    State(state): State<AppState>,
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

pub async fn topics(State(state): State<AppState>) -> Result<Json<Topics>, ApiError> {
    let topics = state.store.topics().await?;
    Ok(Json(Topics { topics }))
}
