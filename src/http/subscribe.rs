//! `GET /subscribe`: follow a topic pattern as Server-Sent Events.
//!
//! A stream first replays the stored events after its cursor, then follows
//! new commits. It never holds events of its own: each step it copies the
//! frames after its cursor out of the [tail](crate::tail) (recent
//! commits, framed once by the consumer) or, when its cursor is older than
//! the tail, reads one page from the store; when caught up it waits on the
//! commit watch. A slow subscriber therefore falls behind without losing
//! anything and without slowing publishers, and a subscriber that never reads
//! holds at most one page (hyper stops polling the stream once the socket is
//! full).
//!
//! Each SSE message has `id: <seq>` and the event, shaped as in `/events`, in
//! `data:`. Reconnecting with `Last-Event-ID` resumes right after that `seq`.
//!
//! When a page read from the store follows a cursor below the newest `seq`
//! that retention deleted from a matching topic, the stream first sends an
//! `expired` message (`event: expired`, no `id:`, `data:
//! {"after":C,"expired_through":N}`): the subscriber skipped the expired
//! events between its cursor and `N`, and goes on with what is stored. It
//! is sent once per such range, never silently skipped.
//!
//! Streams end when shutdown begins, so graceful shutdown never waits on them.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, stream};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::query::ApiQuery;
use super::{ApiError, AppState};
use crate::event::{FieldLimits, TopicPattern};
use crate::store::EventQuery;
use crate::tail::{Interest, TailRead, write_frame};

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

/// The query string of `GET /subscribe`, as it arrived.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscribeParams {
    /// The topic pattern to follow (`auth.*`, `auth.>`, `>`); required.
    #[param(required = true, min_length = 1, max_length = 255)]
    topic: Option<String>,
    /// Start after this `seq` (default 0), or `now`.
    from: Option<String>,
}

impl SubscribeParams {
    /// The pattern to follow and the cursor to start after, given the
    /// request's `Last-Event-ID` and the newest committed `seq`: a pure
    /// function, so that the fuzz target `query` runs exactly what the
    /// handler runs.
    ///
    /// # Errors
    /// 422 for a missing or malformed pattern; 400 for a bad `from` or
    /// `Last-Event-ID`.
    pub fn into_start(
        self,
        last_event_id: Option<&HeaderValue>,
        committed: u64,
        fields: &FieldLimits,
    ) -> Result<(TopicPattern, u64), ApiError> {
        let pattern = self
            .topic
            .ok_or_else(|| {
                ApiError::Unprocessable("topic is required (a topic pattern)".to_owned())
            })
            .and_then(|raw| {
                TopicPattern::parse(&raw, fields)
                    .map_err(|reason| ApiError::Unprocessable(format!("pattern {raw:?} {reason}")))
            })?;
        let cursor = start_cursor(last_event_id, self.from.as_deref(), committed)?;
        Ok((pattern, cursor))
    }
}

/// Server-Sent Events: stored events after the cursor, then live ones.
#[utoipa::path(get, path = "/subscribe", tag = "read",
    params(SubscribeParams,
           ("last-event-id" = Option<String>, Header, description = "Resume after this `seq` (wins over `from`)")),
    responses((status = 200, description = "An SSE stream; each event's `id:` is its `seq`, `data:` the event as in `/events`",
               body = String, content_type = "text/event-stream")))]
pub async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<SubscribeParams>,
) -> Result<Response, ApiError> {
    let (pattern, cursor) = params.into_start(
        headers.get("last-event-id"),
        state.tail.newest(),
        &state.limits.decode.fields,
    )?;
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
    let shutdown = state.shutdown.clone();
    let subscription = Subscription {
        _interest: state.tail.interest(),
        state,
        pattern,
        cursor,
        _slot: slot,
        told_expired: 0,
    };
    let chunks = stream::unfold(subscription, Subscription::next)
        .flat_map(stream::iter)
        .take_until(shutdown.cancelled_owned())
        .map(Ok::<_, Infallible>);
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

/// Where a stream starts: after `Last-Event-ID` when reconnecting, else after
/// `from` (a `seq`, or `now` for only new events), else from the beginning.
fn start_cursor(
    last_event_id: Option<&HeaderValue>,
    from: Option<&str>,
    committed: u64,
) -> Result<u64, ApiError> {
    if let Some(last) = last_event_id {
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
struct Subscription {
    state: AppState,
    pattern: TopicPattern,
    /// The newest `seq` examined (matching or not).
    cursor: u64,
    _slot: OwnedSemaphorePermit,
    /// Keeps the consumer filling the tail while this stream lives.
    _interest: Interest,
    /// The newest expired `seq` this stream has already told of.
    told_expired: u64,
}

/// Sent on an idle stream so proxies and clients see it is alive.
const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

impl Subscription {
    /// The next chunks to send: the frames of up to one page of matching
    /// events, or a keep-alive comment after an idle interval. `None` ends
    /// the stream: the consumer is gone or the store failed; the client
    /// reconnects with `Last-Event-ID` and loses nothing.
    async fn next(mut self) -> Option<(Vec<Bytes>, Self)> {
        loop {
            let (chunks, events, full) = self.read().await?;
            // An `expired` message is sent even when no event follows it.
            if events > 0 || chunks.iter().any(|chunk| !chunk.is_empty()) {
                self.state.metrics.events_delivered.inc_by(events as u64);
                return Some((chunks, self));
            }
            if full {
                continue; // A page of other topics; more may follow at once.
            }
            let cursor = self.cursor;
            let mut committed = self.state.tail.commits();
            let keep_alive = self.state.limits.subscribe.keep_alive;
            match tokio::time::timeout(keep_alive, committed.wait_for(|seq| *seq > cursor)).await {
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return None,
                Err(_) => return Some((vec![Bytes::from_static(KEEP_ALIVE)], self)),
            }
        }
    }

    /// The frames after the cursor from the tail, or from one store page
    /// when the cursor is older than the tail: the buffers to send, how many
    /// events they hold, and whether more may be waiting right away.
    async fn read(&mut self) -> Option<(Vec<Bytes>, usize, bool)> {
        let page = self.state.limits.subscribe.page_events;
        let pattern = &self.pattern;
        match self
            .state
            .tail
            .read(self.cursor, page, |topic| pattern.matches(topic))
        {
            TailRead::Frames {
                chunks,
                events,
                cursor,
            } => {
                let full = cursor < self.state.tail.newest();
                self.cursor = cursor;
                Some((chunks, events, full))
            }
            TailRead::Behind => self.read_store(page).await,
        }
    }

    async fn read_store(&mut self, limit: usize) -> Option<(Vec<Bytes>, usize, bool)> {
        // Every `seq` up to here is committed, so the read below sees it.
        let committed = self.state.tail.newest();
        // The pattern through the store's indexes (one range per matching
        // topic), as `/events` reads it.
        let query = EventQuery {
            topic: Some(self.pattern.clone()),
            after: self.cursor,
            limit,
            ..EventQuery::default()
        };
        let page = match self.state.store.events(query).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, pattern = %self.pattern, "ending subscriber stream");
                return None;
            }
        };
        let after = self.cursor;
        // Where the read leaves off: the page's cursor when more may
        // follow; else everything committed before it. The cursor must
        // pass the newest commit even when its last match is older, or
        // the stream would wake for each newer commit, find it behind the
        // tail again and read the store again, forever (a quiet topic,
        // resumed from far back, kept a core busy that way).
        let (cursor, full) = match page.next {
            Some(next) => (next, true),
            None => (
                page.events
                    .last()
                    .map_or(committed, |e| e.seq.max(committed)),
                false,
            ),
        };
        self.cursor = self.cursor.max(cursor);
        let page = page.events;
        let mut frames = BytesMut::new();
        let mut events = 0;
        // After the page (see `Store::expired_through`).
        match self.expired_through().await {
            Ok(expired) if expired > after.max(self.told_expired) => {
                frames.extend_from_slice(
                    format!(
                        "event: expired\ndata: {{\"after\":{after},\"expired_through\":{expired}}}\n\n"
                    )
                    .as_bytes(),
                );
                self.told_expired = expired;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, pattern = %self.pattern, "ending subscriber stream");
                return None;
            }
        }
        for event in page.iter().filter(|e| self.pattern.matches(&e.topic)) {
            write_frame(&mut frames, &event.view());
            events += 1;
        }
        Some((vec![frames.freeze()], events, full))
    }

    /// The newest `seq` deleted by retention from a topic this stream's
    /// pattern matches.
    async fn expired_through(&self) -> Result<u64, crate::store::StoreError> {
        if let Some(topic) = self.pattern.exact() {
            return self.state.store.expired_through(Some(topic)).await;
        }
        if self.state.store.expired_through(None).await? == 0 {
            return Ok(0); // Nothing ever expired: no need to list topics.
        }
        let topics = self.state.store.topics().await?;
        Ok(topics
            .iter()
            .filter(|t| self.pattern.matches(&t.topic))
            .map(|t| t.expired_through)
            .max()
            .unwrap_or(0))
    }
}
