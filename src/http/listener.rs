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
//! if its socket takes it without waiting, and closed at once, and
//! `logagg_connections_rejected_total` counts it. Accept errors (such as
//! running out of file descriptors) pause the loop briefly instead of
//! spinning.
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
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::DeadlineBody;
use tower_service::Service;

use crate::metrics::Metrics;

/// How long the accept loop pauses after an accept error (out of file
/// descriptors, out of memory), so that it does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What a connection past the cap gets, when its socket takes it at once.
const REJECTED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/problem+json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 161\r\n\
\r\n\
{\"type\":\"urn:logagg:problem:unavailable\",\"title\":\"Service unavailable\",\"status\":503,\"detail\":\"the server has as many connections open as it allows; retry later\"}";

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
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.connections_max));
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
            // is closed without it.
            let _ = stream.try_write(REJECTED_RESPONSE);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, metrics, shutdown) = (router.clone(), Arc::clone(&metrics), shutdown.clone());
        tokio::spawn(async move {
            metrics.connections_open.inc();
            serve_connection(stream, peer, router, limits, shutdown).await;
            metrics.connections_open.dec();
            drop(slot);
        });
    }
    // Closing the listener refuses new connections from here on.
    drop(listener);
    let all = u32::try_from(limits.connections_max).unwrap_or(u32::MAX);
    let _every_connection_closed = slots.acquire_many(all).await;
}

/// Serves one connection until it closes, times out, or shuts down.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: Arc::clone(&activity),
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

/// A socket that tells its connection's [`Activity`] when bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
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
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
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
    fn the_rejection_announces_its_exact_body_length() {
        let text = std::str::from_utf8(REJECTED_RESPONSE).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let problem: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(problem["status"], 503);
    }
}
