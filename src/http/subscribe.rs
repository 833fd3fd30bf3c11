//! `GET /subscribe`: follow a topic pattern as Server-Sent Events.
//!
//! A stream first replays the stored events after its cursor, then follows
//! new commits. It never holds events of its own: it reads the store one page
//! at a time, waiting on the commit watch when caught up. A slow subscriber
//! therefore falls behind without losing anything and without slowing
//! publishers, and a subscriber that never reads holds at most one page
//! (hyper stops polling the stream once the socket is full).
//!
//! Each SSE message has `id: <seq>` and the event, shaped as in `/events`, in
//! `data:`. Reconnecting with `Last-Event-ID` resumes right after that `seq`.
//! Streams end when shutdown begins, so graceful shutdown never waits on them.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiQuery;
use super::{ApiError, AppState};
use crate::event::TopicPattern;
use crate::store::{EventQuery, StoredEvent};

/// Bounds on subscribers, from `ServeConfig`.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeLimits {
    /// Streams open at once; more get 503.
    pub subscribers_max: usize,
    /// Events read from the store per page, so the most one stream holds.
    pub page_events: usize,
    /// Interval of keep-alive comments on an idle stream.
    pub keep_alive: Duration,
}

impl SubscribeLimits {
    pub const DEFAULT: Self = Self {
        subscribers_max: 1_024,
        page_events: 256,
        keep_alive: Duration::from_secs(15),
    };
}

/// Counts open streams against `subscribers_max`.
#[derive(Clone)]
pub(crate) struct Registry {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Registry {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    pub(crate) fn connected(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

#[derive(Debug, Deserialize)]
pub struct SubscribeParams {
    topic: Option<String>,
    from: Option<String>,
}

pub async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<SubscribeParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let pattern = params
        .topic
        .ok_or_else(|| ApiError::Unprocessable("topic is required (a topic pattern)".to_owned()))
        .and_then(|raw| {
            TopicPattern::parse(&raw, &state.limits.fields)
                .map_err(|reason| ApiError::Unprocessable(format!("pattern {raw:?} {reason}")))
        })?;
    let cursor = start_cursor(&headers, params.from.as_deref(), *state.committed.borrow())?;
    let Ok(slot) = Arc::clone(&state.subscribers.slots).try_acquire_owned() else {
        return Err(ApiError::Unavailable {
            detail: format!(
                "{} subscribers are connected, the most this server allows",
                state.subscribers.max
            ),
            retry_after: Duration::from_secs(5),
        });
    };
    tracing::debug!(%pattern, cursor, "subscriber connected");
    let keep_alive = KeepAlive::new().interval(state.limits.subscribe.keep_alive);
    let shutdown = state.shutdown.clone();
    let follow = Follow {
        state,
        pattern,
        cursor,
        buffer: VecDeque::new(),
        _slot: slot,
    };
    let events = stream::unfold(follow, Follow::next).take_until(shutdown.cancelled_owned());
    Ok(Sse::new(events).keep_alive(keep_alive))
}

/// Where a stream starts: after `Last-Event-ID` when reconnecting, else after
/// `from` (a `seq`, or `now` for only new events), else from the beginning.
fn start_cursor(headers: &HeaderMap, from: Option<&str>, committed: u64) -> Result<u64, ApiError> {
    if let Some(last) = headers.get("last-event-id") {
        return last
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                ApiError::BadRequest(format!("Last-Event-ID {last:?} is not a seq number"))
            });
    }
    match from {
        None => Ok(0),
        Some("now") => Ok(committed),
        Some(seq) => seq.parse().map_err(|_| {
            ApiError::BadRequest(format!("from must be a seq number or \"now\", got {seq:?}"))
        }),
    }
}

/// One stream's position. Dropping it frees its subscriber slot.
struct Follow {
    state: AppState,
    pattern: TopicPattern,
    /// The newest `seq` read from the store (matching or not).
    cursor: u64,
    /// Matching events read but not yet sent; at most one page.
    buffer: VecDeque<StoredEvent>,
    _slot: OwnedSemaphorePermit,
}

impl Follow {
    /// The next message, reading a page or waiting for a commit as needed.
    /// `None` ends the stream: the consumer is gone or the store failed; the
    /// client reconnects with `Last-Event-ID` and loses nothing.
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Self)> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                let message = SseEvent::default()
                    .id(event.seq.to_string())
                    .json_data(&event)
                    .expect("stored events always serialize");
                self.state.metrics.events_delivered.inc();
                return Some((Ok(message), self));
            }
            let page_full = self.read_page().await?;
            if self.buffer.is_empty() && !page_full {
                let cursor = self.cursor;
                let mut committed = self.state.committed.clone();
                committed.wait_for(|seq| *seq > cursor).await.ok()?;
            }
        }
    }

    /// Reads the next page after the cursor into the buffer; returns whether
    /// the page came back full (more may be waiting).
    async fn read_page(&mut self) -> Option<bool> {
        let limit = self.state.limits.subscribe.page_events;
        let query = EventQuery {
            topic: self.pattern.exact().map(str::to_owned),
            after: self.cursor,
            limit,
        };
        let page = match self.state.read(move |store| store.events(&query)).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, pattern = %self.pattern, "ending subscriber stream");
                return None;
            }
        };
        let full = page.len() == limit;
        if let Some(last) = page.last() {
            self.cursor = last.seq;
        }
        let pattern = &self.pattern;
        self.buffer.extend(
            page.into_iter()
                .filter(|event| pattern.matches(&event.topic)),
        );
        Some(full)
    }
}
