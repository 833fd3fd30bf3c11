//! Reads of stored events: `GET /events`, `GET /events/{topic}/{event_id}`
//! and `GET /topics`.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::error::ApiQuery;
use super::{ApiError, AppState, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX};
use crate::event::Topic;
use crate::store::{EventQuery, StoredEvent, TopicSummary};

#[derive(Debug, Deserialize)]
pub struct ListParams {
    topic: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
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
    let limit = params.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {PAGE_LIMIT_MAX}, got {limit}"
        )));
    }
    let topic = match params.topic {
        Some(topic) => Some(
            Topic::parse(topic, &state.limits.decode.fields)
                .map_err(|reason| ApiError::BadRequest(format!("topic {reason}")))?,
        ),
        None => None,
    };
    let query = EventQuery {
        topic: topic.map(|t| t.as_str().to_owned()),
        after: params.after.unwrap_or(0),
        limit,
    };
    let events = state.store.events(query).await?;
    let next_after = (events.len() == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(Page { events, next_after }))
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
