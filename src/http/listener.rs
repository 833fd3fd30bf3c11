//! The accept loop: serves the router over HTTP/1.1 with every connection
//! bounded in number and in time, and shuts down gracefully.
//!
//! Each connection is in one of three phases, and each phase but the last
//! has a deadline (issue 11, defect 1):
//!
//! - **idle**: no request in progress and no byte of the next one; closed
//!   after [`ConnectionLimits::idle_timeout`] (from the accept, or from the
//!   end of the previous response).
//! - **head**: from the first byte of a request to its complete head;
//!   closed after [`ConnectionLimits::header_timeout`], so a slowloris
//!   client sending a byte now and then is closed too.
//! - **busy**: from the complete head to the end of the response. Not
//!   bounded here: a publish waits for its commit and a `/subscribe`
//!   stream lasts as long as its client. Only the request *body* has a
//!   deadline, [`ConnectionLimits::body_timeout`] from the head: a handler
//!   reading a body that has not all arrived by then gets an error, which
//!   the ingest path answers with 408 (`ApiError::RequestTimeout`).
//!
//! At most [`ConnectionLimits::connections_max`] connections are open at
//! once. Past it a new connection is accepted, sent a 503 problem document
//! if its socket takes it without waiting (plain HTTP only), and closed at
//! once, and
//! `logagg_connections_rejected_total` counts it. Accept errors (such as
//! running out of file descriptors) pause the loop briefly instead of
//! spinning.
//!
//! With TLS (`--tls-cert`), each connection's handshake must finish within
//! the header timeout; then it is served as above, over the TLS stream.
//!
//! Every answer is a problem document, also those written below the
//! router: the 503 past the cap, and hyper's own answers to requests its
//! parser rejects, which [`Watched`] rewrites (see there).
//!
//! Shutdown: when the token is cancelled the listener closes (new
//! connections are refused), every connection finishes its request in
//! progress and closes (`/subscribe` streams end on the same token), and
//! [`serve`] returns once all are closed.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::DeadlineBody;
use tower_service::Service;

use crate::api::Problem;
use crate::metrics::Metrics;

/// How long the accept loop pauses after an accept error (out of file
/// descriptors, out of memory), so that it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The detail of the 503 a connection past the cap gets.
const REJECTED_DETAIL: &str =
    "the server has as many connections open as it allows (--connections-max); retry later";

/// What hyper's parser answers on its own, without calling the router,
/// rewritten as problem documents: status, slug, title and detail.
const PARSER_PROBLEMS: [(u16, &str, &str, &str); 3] = [
    (
        400,
        "bad-request",
        "Malformed request",
        "the request line or a header is malformed: percent-encode the target \
         (a space as %20, '\"' as %22, '<' as %3C, '>' as %3E), and send at most one \
         Content-Length, a number",
    ),
    (
        414,
        "uri-too-long",
        "URI too long",
        "the request target is longer than the server reads; shorten the path and query",
    ),
    (
        431,
        "headers-too-large",
        "Request header fields too large",
        "the request line and headers are larger than the server reads; send fewer or smaller headers",
    ),
];

/// A whole HTTP/1.1 answer carrying a problem document, closing the
/// connection, for the answers written below the router.
fn raw_problem(status: u16, slug: &str, title: &str, detail: &str) -> Vec<u8> {
    let problem = Problem {
        kind: format!("urn:logagg:problem:{slug}"),
        title: title.to_owned(),
        status,
        detail: detail.to_owned(),
        errors: Vec::new(),
    };
    let body = serde_json::to_vec(&problem).expect("problem documents always serialize");
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|status| status.canonical_reason())
        .unwrap_or("Error");
    let mut answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/problem+json\r\n\
         x-content-type-options: nosniff\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

/// Bounds on connections, from `ServeConfig`.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more are closed at once.
    pub connections_max: usize,
    /// Time from the first byte of a request to its complete head.
    pub header_timeout: Duration,
    /// Time from a request's complete head to the end of its body.
    pub body_timeout: Duration,
    /// Time a connection may stay open with no request in progress.
    pub idle_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then waits
/// for every open connection to finish its request in progress and close.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    // Also the bound of `acquire_many` below.
    let connections_max = limits.connections_max.min(u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(connections_max));
    let rejected = raw_problem(503, "unavailable", "Service unavailable", REJECTED_DETAIL);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "accepting a connection failed; pausing briefly"
                );
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connections_rejected.inc();
            tracing::debug!(%peer, "connection refused: --connections-max reached");
            // Never waits: a socket that cannot take the answer at once
            // is closed without it (and so is a TLS one, which cannot take
            // plain text).
            if tls.is_none() {
                let _ = stream.try_write(&rejected);
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, metrics, shutdown) = (router.clone(), Arc::clone(&metrics), shutdown.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            metrics.connections_open.inc();
            match tls {
                None => serve_connection(stream, peer, router, limits, shutdown).await,
                // The handshake counts as reading the first head.
                Some(tls) => {
                    match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, peer, router, limits, shutdown).await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, error = &error as &dyn std::error::Error, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            metrics.connections_open.dec();
            drop(slot);
        });
    }
    // Closing the listener refuses new connections from here on.
    drop(listener);
    let all = u32::try_from(connections_max).expect("capped to u32 above");
    let _every_connection_closed = slots.acquire_many(all).await;
}

/// Serves one connection until it closes, times out, or shuts down.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
        replacement: None,
    });
    let service = hyper::service::service_fn({
        let activity = Arc::clone(&activity);
        move |request: hyper::Request<Incoming>| {
            let guard = activity.begin_request();
            let request: Request =
                request.map(|body| Body::new(DeadlineBody::new(limits.body_timeout, body)));
            let mut router = router.clone();
            async move {
                let response = router.call(request).await?;
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        body,
                        _guard: guard,
                    })
                }))
            }
        }
    });
    // Our own deadlines replace hyper's header timer, which would also
    // close a connection idle for longer than the header timeout.
    let connection = http1::Builder::new()
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let mut draining = false;
    loop {
        let deadline = activity.deadline(&limits);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, error = &error as &dyn std::error::Error, "connection ended with an error");
                }
                return;
            }
            () = shutdown.cancelled(), if !draining => {
                // Finishes the request in progress, then closes.
                connection.as_mut().graceful_shutdown();
                draining = true;
            }
            () = sleep_until(deadline) => {
                if let Some(phase) = activity.expired(&limits) {
                    tracing::debug!(%peer, phase, "connection closed: it timed out");
                    return;
                }
            }
            () = activity.changed.notified() => {}
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Where a connection is in its life; see the module docs.
#[derive(Debug, Clone, Copy)]
enum Phase {
    Idle { since: Instant },
    Head { since: Instant },
    Busy { requests: usize },
}

/// A connection's phase, shared by its socket, its service and its task.
struct Activity {
    phase: Mutex<Phase>,
    /// Wakes the connection's task when a deadline may have moved.
    changed: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Idle {
                since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn update(&self, step: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().expect("phase lock");
        *phase = step(*phase);
        drop(phase);
        self.changed.notify_one();
    }

    /// Bytes arrived: an idle connection starts reading a request head.
    fn read(&self) {
        let mut phase = self.phase.lock().expect("phase lock");
        if let Phase::Idle { .. } = *phase {
            *phase = Phase::Head {
                since: Instant::now(),
            };
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// A request's head is complete; its guard ends it when dropped.
    fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.update(|phase| match phase {
            Phase::Busy { requests } => Phase::Busy {
                requests: requests + 1,
            },
            Phase::Idle { .. } | Phase::Head { .. } => Phase::Busy { requests: 1 },
        });
        RequestGuard(Arc::clone(self))
    }

    fn is_busy(&self) -> bool {
        matches!(*self.phase.lock().expect("phase lock"), Phase::Busy { .. })
    }

    fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        match *self.phase.lock().expect("phase lock") {
            Phase::Idle { since } => Some(since + limits.idle_timeout),
            Phase::Head { since } => Some(since + limits.header_timeout),
            Phase::Busy { .. } => None,
        }
    }

    /// The phase whose deadline has passed, if any.
    fn expired(&self, limits: &ConnectionLimits) -> Option<&'static str> {
        let now = Instant::now();
        match *self.phase.lock().expect("phase lock") {
            Phase::Idle { since } if now >= since + limits.idle_timeout => Some("idle"),
            Phase::Head { since } if now >= since + limits.header_timeout => Some("head"),
            _ => None,
        }
    }
}

/// Ends its request (the connection turns idle) when the response body is
/// dropped: sent in full, or abandoned.
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.update(|phase| match phase {
            Phase::Busy { requests } if requests > 1 => Phase::Busy {
                requests: requests - 1,
            },
            _ => Phase::Idle {
                since: Instant::now(),
            },
        });
    }
}

/// A response body that holds its request's guard.
struct Tracked {
    body: Body,
    _guard: RequestGuard,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A socket that tells its connection's [`Activity`] when bytes arrive,
/// and rewrites hyper's own error answers as problem documents.
///
/// hyper answers a request its parser rejects (a target with a space or
/// `"` in it, a target or head over its limits, a malformed
/// `Content-Length`) by itself, with an empty 400, 414 or 431, and closes
/// the connection; the router never sees the request. Such an answer is
/// recognised as a bare head (status 4xx, `content-length: 0`, nothing
/// after the blank line) written while no request is in progress, and
/// replaced by [`PARSER_PROBLEMS`]. A response of ours cannot be mistaken
/// for it: every one is written while its request is in progress, and
/// none of our bodies holds a raw CRLF (JSON escapes them).
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    /// An answer being written in place of hyper's, and how much of it
    /// is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Starts replacing `written` (what hyper is writing) when it is one of
    /// hyper's own error answers.
    fn intercept(&mut self, written: &[u8]) {
        if self.replacement.is_some() || self.activity.is_busy() {
            return;
        }
        let Some(head) = written.strip_prefix(b"HTTP/1.1 4") else {
            return;
        };
        let bare = written.len() < 512
            && written.ends_with(b"\r\n\r\n")
            && memchr::memmem::find(written, b"\r\n\r\n") == Some(written.len() - 4)
            && memchr::memmem::find(written, b"\ncontent-length: 0\r\n").is_some();
        let status = std::str::from_utf8(head.get(..2).unwrap_or_default())
            .ok()
            .and_then(|code| code.parse::<u16>().ok())
            .map(|code| 400 + code);
        let problem = PARSER_PROBLEMS
            .iter()
            .find(|(code, ..)| Some(*code) == status);
        if let (true, Some(&(status, slug, title, detail))) = (bare, problem) {
            self.replacement = Some((raw_problem(status, slug, title, detail), 0));
        }
    }

    /// Writes the rest of the replacement, if any: `Some` once there is
    /// nothing left to write (or it failed), `None` without a replacement.
    fn poll_replacement(
        &mut self,
        cx: &mut Context<'_>,
        claimed: usize,
    ) -> Option<Poll<io::Result<usize>>> {
        let (answer, written) = self.replacement.as_mut()?;
        while *written < answer.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]) {
                Poll::Ready(Ok(0)) => return Some(Poll::Ready(Ok(0))),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(error)) => return Some(Poll::Ready(Err(error))),
                Poll::Pending => return Some(Poll::Pending),
            }
        }
        // hyper's own bytes are dropped, as if written.
        Some(Poll::Ready(Ok(claimed)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.intercept(buf);
        if let Some(polled) = self.poll_replacement(cx, buf.len()) {
            return polled;
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(Poll::Pending) = self.poll_replacement(cx, 0) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(Poll::Pending) = self.poll_replacement(cx, 0) {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(first) = bufs.iter().find(|buf| !buf.is_empty()) {
            let whole: usize = bufs.iter().map(|buf| buf.len()).sum();
            if whole == first.len() {
                self.intercept(first);
            }
        }
        let claimed = bufs.iter().map(|buf| buf.len()).sum();
        if let Some(polled) = self.poll_replacement(cx, claimed) {
            return polled;
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_below_the_router_are_whole_problem_documents() {
        for (status, slug, title, detail) in
            std::iter::once((503, "unavailable", "Service unavailable", REJECTED_DETAIL))
                .chain(PARSER_PROBLEMS)
        {
            let answer = raw_problem(status, slug, title, detail);
            let text = String::from_utf8(answer).expect("ASCII");
            let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(
                head.contains(&format!("content-length: {}", body.len())),
                "{head}"
            );
            let problem: serde_json::Value = serde_json::from_str(body).expect("JSON");
            assert_eq!(problem["status"], status);
            assert_eq!(problem["detail"], detail);
        }
    }
}
