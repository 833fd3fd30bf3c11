//! The query strings of `GET /events` and `GET /subscribe` (and the
//! `Last-Event-ID` header), through the same deserializer the handlers'
//! extractor uses and the same checks (`ListParams::into_query`,
//! `SubscribeParams::into_start`).
//!
//! Input: a mode byte (bit 0: /subscribe instead of /events; bit 1: send a
//! `Last-Event-ID`), then the query string, then after the first newline the
//! header value. Besides not panicking: an accepted `/events` query has a
//! page limit within bounds and a valid topic; an accepted subscription has
//! a pattern that prints back as sent; every refusal renders as a 4xx
//! problem document.

#![no_main]

use axum::extract::Query;
use axum::http::{HeaderValue, Uri};
use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;
use logagg::event::FieldLimits;
use logagg::http::{ApiError, ListParams, PAGE_LIMIT_MAX, SubscribeParams};

const FIELDS: FieldLimits = FieldLimits {
    field_bytes_max: 255,
};

/// The newest committed `seq` that `from=now` starts after.
const COMMITTED: u64 = 42;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (query, last_event_id) = text.split_once('\n').unwrap_or((text, ""));
    // Only what the HTTP parser lets through reaches the handlers.
    let Ok(uri) = Uri::try_from(format!("/x?{query}")) else {
        return;
    };
    if mode & 1 == 0 {
        let Ok(Query(params)) = Query::<ListParams>::try_from_uri(&uri) else {
            return;
        };
        match params.into_query(&FIELDS) {
            Ok(query) => {
                assert!((1..=PAGE_LIMIT_MAX).contains(&query.limit));
                if let Some(pattern) = query.topic {
                    let again = logagg::event::TopicPattern::parse(&pattern.to_string(), &FIELDS);
                    assert_eq!(again.as_ref(), Ok(&pattern));
                }
            }
            Err(error) => assert_client_error(error),
        }
    } else {
        let Ok(Query(params)) = Query::<SubscribeParams>::try_from_uri(&uri) else {
            return;
        };
        let header = if mode & 2 != 0 {
            match HeaderValue::from_str(last_event_id) {
                Ok(value) => Some(value),
                Err(_) => return,
            }
        } else {
            None
        };
        match params.into_start(header.as_ref(), COMMITTED, &FIELDS) {
            Ok((pattern, _cursor)) => {
                let again = logagg::event::TopicPattern::parse(&pattern.to_string(), &FIELDS);
                assert_eq!(again.as_ref(), Ok(&pattern));
            }
            Err(error) => assert_client_error(error),
        }
    }
});

fn assert_client_error(error: ApiError) {
    let response = error.into_response();
    assert!(response.status().is_client_error(), "{}", response.status());
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}
