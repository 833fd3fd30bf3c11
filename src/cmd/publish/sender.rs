//! Delivering one request at least once: POST it, retry whatever may succeed
//! later, and report what became of it.
//!
//! Retried: connection errors, timeouts, and every 5xx (503 among them),
//! after an exponential backoff with full jitter, and never sooner than the
//! server's `Retry-After`. Never retried: a 4xx or any other answer that a
//! second try cannot change (a 401 or 403 among them: a missing, unknown
//! or under-scoped token stays so). Retrying is safe because the server drops
//! duplicates; it is needed because only a 200 means "stored".
//!
//! One [`reqwest::Client`] serves the whole run, so connections are kept
//! alive and reused; bodies are shared [`Bytes`], so a retry copies nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use tokio::time::Instant;

use super::source::Request;
use crate::api::{Problem, Receipt};
use crate::cmd::client::{self, BaseUrl};
use crate::cmd::tls::{TlsArgs, untrusted_certificate};

/// The longest `Retry-After` honoured; a server asking for more is waited
/// on for this long (the attempt count still bounds the run).
const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

/// Field problems quoted in an error message; the rest are counted.
const FIELD_PROBLEMS_QUOTED: usize = 5;

/// When to retry and how long to wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts per request, the first included; at least 1.
    pub max_attempts: u32,
    /// How long one attempt may take, connecting and reading included.
    pub timeout: Duration,
    /// The backoff ceiling before the first retry; it doubles per retry.
    pub backoff_base: Duration,
    /// The backoff ceiling never grows past this.
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 = after the first attempt):
    /// full jitter, `unit × min(max, base × 2^(retry-1))` with `unit` drawn
    /// from `[0, 1)`, added to the server's `Retry-After` when it sent one.
    fn backoff(&self, retry: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let doubling = 2_u32.saturating_pow(retry.saturating_sub(1));
        let ceiling = self
            .backoff_base
            .saturating_mul(doubling)
            .min(self.backoff_max);
        let jitter = ceiling.mul_f64(unit);
        match retry_after {
            // The jitter on top keeps publishers told the same time from
            // coming back all at once.
            Some(after) => after.min(RETRY_AFTER_MAX) + jitter,
            None => jitter,
        }
    }
}

/// What became of one request.
#[derive(Debug)]
pub(crate) struct Delivery {
    pub request: Request,
    /// Attempts made, the first included.
    pub attempts: u32,
    /// Events of attempts that ended without an answer after the request
    /// may have reached the server (timeouts, connections dropped
    /// mid-request). The server may have stored them, so its counters may
    /// run ahead of the acknowledgements by up to this many.
    pub unanswered_events: u64,
    pub outcome: Result<Acked, Failure>,
}

/// A request the server acknowledged.
#[derive(Debug)]
pub(crate) struct Acked {
    pub receipt: Receipt,
    /// From the first attempt's send to the 200, retries included.
    pub latency: Duration,
}

/// A request that was not acknowledged and will not be.
#[derive(Debug)]
pub(crate) enum Failure {
    /// An answer that retrying cannot change: a 4xx, a redirect, or a 200
    /// that is not a receipt.
    Rejected {
        status: StatusCode,
        problem: Problem,
    },
    /// Every attempt failed in a way worth retrying; `last` says how the
    /// last one did.
    GaveUp { last: String },
    /// A 401 or 403: the token is missing, unknown or lacks the publish
    /// scope; the line says which.
    Denied(String),
}

impl Failure {
    /// One line naming the request's events, their input lines and what the
    /// server said.
    pub(crate) fn describe(&self, delivery: &Delivery) -> String {
        let request = &delivery.request;
        match self {
            Self::Rejected { status, problem } => {
                let mut message = format!(
                    "the server answered {status} to {}: {}",
                    request.describe(),
                    problem.summary()
                );
                for field in problem.errors.iter().take(FIELD_PROBLEMS_QUOTED) {
                    message.push_str(&format!("; {}", request.describe_event(field.index)));
                    if let Some(name) = &field.field {
                        message.push_str(&format!(" {name}"));
                    }
                    message.push_str(&format!(": {}", field.message));
                }
                if let Some(more) = problem.errors.len().checked_sub(FIELD_PROBLEMS_QUOTED)
                    && more > 0
                {
                    message.push_str(&format!("; and {more} more"));
                }
                message.push_str(
                    "; fix that and publish again (what the server already stored counts as duplicates, never twice)",
                );
                message
            }
            Self::Denied(reason) => format!("{reason}; {} not stored", request.describe()),
            Self::GaveUp { last } => format!(
                "gave up on {} after {} attempt(s), the last: {last}; publish again later \
                 (what the server already stored counts as duplicates, never twice)",
                request.describe(),
                delivery.attempts
            ),
        }
    }
}

/// What one attempt came to.
enum Attempt {
    Acked(Receipt),
    Failed(Failure),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
        /// The request may have reached the server without an answer.
        unanswered: bool,
    },
}

/// Sends requests to one server; shared by every request of the run.
pub(crate) struct Sender {
    client: reqwest::Client,
    publish_url: reqwest::Url,
    /// Whether requests carry a bearer token, for the message of a 401.
    sent_token: bool,
    policy: RetryPolicy,
    /// Only touched between retries, so the lock is never contended.
    jitter: Mutex<ChaCha8Rng>,
}

impl Sender {
    /// A sender for `POST {base}/publish` keeping up to `connections`
    /// connections alive, sending `headers` (the bearer token) with every
    /// request.
    ///
    /// # Errors
    /// When the client cannot be built (or `--ca-cert` read).
    pub(crate) fn new(
        base: &BaseUrl,
        headers: HeaderMap,
        tls: &TlsArgs,
        policy: RetryPolicy,
        connections: usize,
        jitter_seed: u64,
    ) -> anyhow::Result<Self> {
        let publish_url = base.endpoint("/publish");
        let sent_token = !headers.is_empty();
        let client = tls.client(base, |builder| {
            builder
                .default_headers(headers.clone())
                .timeout(policy.timeout)
                .pool_max_idle_per_host(connections)
                // A redirect would turn the POST into something else; say so.
                .redirect(reqwest::redirect::Policy::none())
                .tcp_nodelay(true)
                .user_agent(concat!("logagg-publish/", env!("CARGO_PKG_VERSION")))
        })?;
        Ok(Self {
            client,
            publish_url,
            sent_token,
            policy,
            jitter: Mutex::new(ChaCha8Rng::seed_from_u64(jitter_seed)),
        })
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Whether requests carry a bearer token.
    pub(crate) fn sent_token(&self) -> bool {
        self.sent_token
    }

    /// Sends `request` once `send_at` has come, retrying as the module docs
    /// say, and reports the outcome. Never fails: a failure is an outcome.
    pub(crate) async fn deliver(self: Arc<Self>, request: Request, send_at: Instant) -> Delivery {
        tokio::time::sleep_until(send_at).await;
        let started = Instant::now();
        let mut unanswered_events = 0;
        let mut attempts = 1;
        let outcome = loop {
            let (reason, retry_after) = match self.attempt(&request).await {
                Attempt::Acked(receipt) => {
                    let latency = started.elapsed();
                    break Ok(Acked { receipt, latency });
                }
                Attempt::Failed(failure) => break Err(failure),
                Attempt::Retry {
                    reason,
                    retry_after,
                    unanswered,
                } => {
                    if unanswered {
                        unanswered_events += request.events as u64;
                    }
                    (reason, retry_after)
                }
            };
            if attempts >= self.policy.max_attempts {
                break Err(Failure::GaveUp { last: reason });
            }
            tracing::debug!(attempt = attempts, reason, "retrying a request");
            let unit = self.jitter.lock().expect("jitter lock").random::<f64>();
            tokio::time::sleep(self.policy.backoff(attempts, retry_after, unit)).await;
            attempts += 1;
        };
        Delivery {
            request,
            attempts,
            unanswered_events,
            outcome,
        }
    }

    async fn attempt(&self, request: &Request) -> Attempt {
        let sent = self
            .client
            .post(self.publish_url.clone())
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(request.body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                if let Some(untrusted) = untrusted_certificate(&error) {
                    // Retrying cannot make a certificate trusted.
                    return Attempt::Failed(Failure::GaveUp { last: untrusted });
                }
                return Attempt::Retry {
                    reason: self.transport_error(&error),
                    retry_after: None,
                    // A refused connection never carried the request.
                    unanswered: !error.is_connect(),
                };
            }
        };
        let status = response.status();
        if let Some(denied) = client::denied(status, response.headers(), self.sent_token) {
            return Attempt::Failed(Failure::Denied(denied));
        }
        let retry_after = retry_after(response.headers());
        let foreign = client::foreign_answer(response.headers());
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => {
                return Attempt::Retry {
                    reason: format!("{status}, then {}", self.transport_error(&error)),
                    retry_after,
                    unanswered: true,
                };
            }
        };
        if status == StatusCode::OK {
            // A receipt must cover every event of the request; one that does
            // not cannot count as their acknowledgement.
            let detail = match serde_json::from_slice::<Receipt>(&body) {
                Ok(receipt) if receipt.received == request.events as u64 => {
                    return Attempt::Acked(receipt);
                }
                Ok(receipt) => format!(
                    "the receipt counts {} received events, the request held {}",
                    receipt.received, request.events
                ),
                Err(error) => {
                    format!(
                        "the answer is not a logagg receipt ({error}); is --url a logagg server?"
                    )
                }
            };
            return Attempt::Failed(Failure::Rejected {
                status,
                problem: Problem {
                    detail,
                    ..Problem::default()
                },
            });
        }
        if let Some(what) = foreign {
            return foreign_error(status, &what, retry_after);
        }
        let problem = client::problem(&body);
        if status.is_server_error() {
            return Attempt::Retry {
                reason: format!("{status}: {}", problem.summary()),
                retry_after,
                // A gateway timing out may have passed the request on.
                unanswered: matches!(
                    status,
                    StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
                ),
            };
        }
        Attempt::Failed(Failure::Rejected { status, problem })
    }

    /// One line for an error without an answer: what failed and its root
    /// cause.
    fn transport_error(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("no answer within {:?} (--timeout)", self.policy.timeout);
        }
        let mut cause: &dyn std::error::Error = error;
        while let Some(source) = cause.source() {
            cause = source;
        }
        if error.is_connect() {
            format!(
                "cannot connect to {} ({cause}); is the server running?",
                self.publish_url
            )
        } else {
            format!("connection failed ({cause})")
        }
    }
}

/// An error answer that is not logagg's (an HTML page, a proxy's text):
/// refused at once with a hint to check `--url`, as retrying cannot change
/// what answers there; except a gateway error, which a proxy in front of a
/// restarting logagg sends, and which is retried.
fn foreign_error(status: StatusCode, what: &str, retry_after: Option<Duration>) -> Attempt {
    if matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    ) {
        return Attempt::Retry {
            reason: format!("{status} with {what} (from a proxy in front of logagg?)"),
            retry_after,
            unanswered: status != StatusCode::SERVICE_UNAVAILABLE,
        };
    }
    Attempt::Failed(Failure::Rejected {
        status,
        problem: Problem {
            detail: format!("{what}, {}", client::CHECK_URL),
            ..Problem::default()
        },
    })
}

/// `Retry-After` as delay-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (date.with_timezone(&Utc) - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        timeout: Duration::from_secs(1),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
    };

    #[test]
    fn backoff_doubles_up_to_its_cap_with_full_jitter() {
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(POLICY.backoff(1, None, 0.999_999)), 99);
        assert_eq!(ms(POLICY.backoff(2, None, 0.999_999)), 199);
        assert_eq!(ms(POLICY.backoff(3, None, 0.5)), 200);
        assert_eq!(ms(POLICY.backoff(9, None, 0.999_999)), 499);
        assert_eq!(ms(POLICY.backoff(40, None, 0.0)), 0);
    }

    #[test]
    fn retry_after_is_a_floor() {
        let after = Some(Duration::from_secs(1));
        assert_eq!(POLICY.backoff(1, after, 0.0), Duration::from_secs(1));
        assert_eq!(POLICY.backoff(1, after, 0.5), Duration::from_millis(1050));
        let huge = Some(Duration::from_secs(86_400));
        assert_eq!(POLICY.backoff(1, huge, 0.0), RETRY_AFTER_MAX);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a past date");
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
