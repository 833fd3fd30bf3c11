//! `ApiError`: every error the HTTP API answers with, rendered as an RFC 9457
//! `application/problem+json` document, plus the path extractor that rejects
//! bad path segments in that same shape. (Bad query strings get the same
//! shape from `http::query`.)
//!
//! Each problem has a stable `type` (`urn:logagg:problem:<slug>`) that
//! clients can match on; `docs/api.md` lists them. The client gets an opaque
//! 500 for an internal error; the error itself rides along in the
//! response's extensions as an [`InternalError`], for the middleware that
//! logs it once with the request's route and id (`http::log_errors`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::auth::Denial;
use crate::api::Problem;
use crate::decode::DecodeError;
use crate::event::FieldError;
use crate::ingest::IngestError;
use crate::store::StoreError;

/// The `Retry-After` of a 507: room rarely comes back within a second, and
/// publishers should not hammer a server that cannot store anything.
pub const DISK_FULL_RETRY_AFTER: Duration = Duration::from_secs(5);

/// An error answer. Each variant's doc names its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body or query is not what it claims to be (bad JSON, bad
    /// gzip, bad UTF-8, bad parameter).
    #[error("{0}")]
    BadRequest(String),
    /// 422: well-formed JSON whose events break the rules; every bad field
    /// of every event is listed.
    #[error("{} invalid field(s)", .0.len())]
    InvalidEvents(Vec<FieldError>),
    /// 422: a request that is well-formed but cannot be accepted as a whole
    /// (no events, nested too deep, malformed pattern).
    #[error("{0}")]
    Unprocessable(String),
    /// 401 or 403 + `WWW-Authenticate`: the bearer token is missing or
    /// unknown (401), or lacks the route's scope (403).
    #[error("{0}")]
    Denied(Denial),
    /// 404: no such resource.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413: the body, decompressed or not, or its event count, is over a limit.
    #[error("{0}")]
    TooLarge(String),
    /// 415: a content type or encoding the endpoint does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 408: the request body did not arrive within `--body-timeout`.
    #[error("{0}")]
    RequestTimeout(String),
    /// 503 + `Retry-After`: overloaded or shutting down; retry later.
    #[error("{detail}")]
    Unavailable {
        detail: String,
        retry_after: Duration,
    },
    /// 507 + `Retry-After`: the disk is full; nothing of the request was
    /// stored. Reads go on, and a retry succeeds once there is room.
    #[error("the server's disk is full; nothing of this request was stored, retry later")]
    DiskFull,
    /// 500: a bug or an I/O failure; logged, never detailed to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::InvalidEvents(_) | Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Denied(denial) => denial.status(),
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type's slug and title.
    fn kind(&self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest(_) => ("bad-request", "Malformed request"),
            Self::InvalidEvents(_) => ("invalid-events", "Events failed validation"),
            Self::Unprocessable(_) => ("unprocessable", "Request cannot be processed"),
            Self::Denied(denial) if denial.status() == StatusCode::FORBIDDEN => {
                ("forbidden", "Forbidden")
            }
            Self::Denied(_) => ("unauthorized", "Unauthorized"),
            Self::NotFound(_) => ("not-found", "Not found"),
            Self::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            Self::TooLarge(_) => ("too-large", "Request too large"),
            Self::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported media type"),
            Self::RequestTimeout(_) => ("request-timeout", "Request timeout"),
            Self::Unavailable { .. } => ("unavailable", "Service unavailable"),
            Self::DiskFull => ("disk-full", "Insufficient storage"),
            Self::Internal(_) => ("internal", "Internal server error"),
        }
    }
}

/// The error behind a 500, carried in the response's extensions to the
/// middleware that logs it.
#[derive(Debug, Clone)]
pub struct InternalError(pub Arc<dyn std::error::Error + Send + Sync>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (slug, title) = self.kind();
        let detail = match &self {
            Self::InvalidEvents(errors) => {
                let events = {
                    let mut indexes: Vec<usize> = errors.iter().map(|e| e.index).collect();
                    indexes.dedup();
                    indexes.len()
                };
                format!(
                    "{} problem(s) in {events} event(s); nothing of this request was stored",
                    errors.len()
                )
            }
            other => other.to_string(),
        };
        let retry_after = match &self {
            Self::Unavailable { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            Self::DiskFull => Some(DISK_FULL_RETRY_AFTER.as_secs()),
            _ => None,
        };
        let challenge = match &self {
            Self::Denied(denial) => Some(denial.challenge()),
            _ => None,
        };
        let (errors, internal) = match self {
            Self::InvalidEvents(errors) => (errors, None),
            Self::Internal(source) => (Vec::new(), Some(InternalError(Arc::from(source)))),
            _ => (Vec::new(), None),
        };
        let problem = Problem {
            kind: format!("urn:logagg:problem:{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            errors,
        };
        let body = serde_json::to_vec(&problem).expect("problem documents always serialize");
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            body,
        )
            .into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(internal) = internal {
            response.extensions_mut().insert(internal);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::DiskFull => Self::DiskFull,
            StoreError::Unavailable(_) => Self::Unavailable {
                detail: format!("{error}; retry later"),
                retry_after: Duration::from_secs(1),
            },
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(error: DecodeError) -> Self {
        match error {
            DecodeError::Malformed(detail) => Self::BadRequest(detail),
            DecodeError::Invalid(errors) => Self::InvalidEvents(errors),
            DecodeError::Unprocessable(detail) => Self::Unprocessable(detail),
            DecodeError::TooLarge(detail) => Self::TooLarge(detail),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(error: IngestError) -> Self {
        match error {
            IngestError::QueueFull(_) => Self::Unavailable {
                detail: format!("{error}; retry later"),
                retry_after: Duration::from_secs(1),
            },
            IngestError::ShuttingDown => Self::Unavailable {
                detail: error.to_string(),
                retry_after: Duration::from_secs(5),
            },
            IngestError::TooManyEvents { .. } => Self::TooLarge(error.to_string()),
            IngestError::Commit(source) => match source.as_ref() {
                StoreError::DiskFull => Self::DiskFull,
                StoreError::Unavailable(reason) => Self::Unavailable {
                    detail: format!(
                        "the store is unavailable ({reason}); nothing of this request was stored, retry later"
                    ),
                    retry_after: Duration::from_secs(1),
                },
                _ => Self::Internal(Box::new(IngestError::Commit(source))),
            },
        }
    }
}

/// `Path<T>` whose rejection is a 400 problem document (a 500 when the
/// route and the handler disagree, a bug).
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(rejection)) => {
                Err(ApiError::BadRequest(format!(
                    "{}; percent-encode path segments as UTF-8",
                    rejection.body_text()
                )))
            }
            Err(rejection) if rejection.status().is_server_error() => {
                Err(ApiError::Internal(rejection.body_text().into()))
            }
            Err(rejection) => Err(ApiError::BadRequest(rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn render(error: ApiError) -> (StatusCode, Option<HeaderValue>, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (
            status,
            retry_after,
            serde_json::from_slice(&body).expect("json"),
        )
    }

    #[tokio::test]
    async fn validation_problem_lists_every_field() {
        let errors = vec![
            FieldError::field(0, "topic", "is required"),
            FieldError::whole(2, "must be a JSON object"),
        ];
        let (status, _, body) = render(ApiError::InvalidEvents(errors)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["type"], "urn:logagg:problem:invalid-events");
        assert_eq!(body["status"], 422);
        assert_eq!(body["errors"][1]["index"], 2);
        assert_eq!(body["errors"][1]["field"], serde_json::Value::Null);
        assert_eq!(body["errors"][0]["field"], "topic");
    }

    #[tokio::test]
    async fn full_queue_is_503_with_retry_after() {
        let error = ApiError::from(IngestError::QueueFull(Duration::from_millis(500)));
        let (status, retry_after, body) = render(error).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(retry_after.expect("Retry-After"), "1");
        assert!(body.get("errors").is_none());
    }

    #[tokio::test]
    async fn a_full_disk_is_507_with_retry_after() {
        let error = ApiError::from(IngestError::Commit(Arc::new(StoreError::DiskFull)));
        let (status, retry_after, body) = render(error).await;
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
        assert_eq!(retry_after.expect("Retry-After"), "5");
        assert_eq!(body["type"], "urn:logagg:problem:disk-full");
    }

    #[tokio::test]
    async fn internal_errors_are_opaque_and_carried_for_logging() {
        let response = ApiError::Internal("secret path /x/y".into()).into_response();
        let carried = response
            .extensions()
            .get::<InternalError>()
            .expect("the error rides along for the logging middleware");
        assert_eq!(carried.0.to_string(), "secret path /x/y");
        let (status, _, body) = render(ApiError::Internal("secret path /x/y".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("secret"));
    }
}
