//! Prometheus metrics: every metric the server exports, in one struct.
//!
//! Names carry the `logagg_` prefix and their unit; counters end in `_total`.
//! Labels are bounded: HTTP metrics are labelled by route template (axum's
//! `MatchedPath`) and status code, never by raw path, topic or id.
//!
//! Each server owns its own [`Metrics`] (no global recorder), so several
//! servers in one test process do not mix their numbers. Gauges that mirror
//! state owned elsewhere (queue depth, store size, subscribers) are set when
//! `/metrics` is scraped, not on the hot path.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::api::Receipt;

/// Labels of the HTTP request metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Route template such as `/events/{topic}/{event_id}`, or `unmatched`.
    pub route: String,
    pub method: String,
    pub status: u16,
}

/// All metrics of one server.
pub struct Metrics {
    registry: Registry,
    pub events_received: Counter,
    pub events_unique: Counter,
    pub events_duplicate: Counter,
    pub events_conflict: Counter,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Family<RequestLabels, Histogram>,
    pub commit_batch_events: Histogram,
    pub commit_duration: Histogram,
    pub queue_depth: Gauge,
    pub store_size: Gauge<u64, AtomicU64>,
    pub subscribers: Gauge,
    pub events_delivered: Counter,
    /// Open HTTP connections.
    pub connections_open: Gauge,
    /// Connections closed at once because `--connections-max` were open.
    pub connections_rejected: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("logagg");
        let events_received = Counter::default();
        let events_unique = Counter::default();
        let events_duplicate = Counter::default();
        let events_conflict = Counter::default();
        registry.register(
            "events_received",
            "Events in committed publish requests",
            events_received.clone(),
        );
        registry.register(
            "events_unique",
            "Events stored for the first time",
            events_unique.clone(),
        );
        registry.register(
            "events_duplicate",
            "Events dropped because their key was already stored",
            events_duplicate.clone(),
        );
        registry.register(
            "events_conflict",
            "Duplicates whose content differed from the stored copy",
            events_conflict.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        // 0.1 ms .. ~3 s: a publish answer is a commit away.
        let request_duration = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        registry.register_with_unit(
            "http_request_duration",
            "Time from request to response; for POST /publish, to the durable ack",
            Unit::Seconds,
            request_duration.clone(),
        );
        let commit_batch_events = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        registry.register(
            "commit_batch_events",
            "Events per committed transaction",
            commit_batch_events.clone(),
        );
        let commit_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register_with_unit(
            "commit_duration",
            "Time to append and commit one transaction, fsync included",
            Unit::Seconds,
            commit_duration.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth_events",
            "Events queued or being committed",
            queue_depth.clone(),
        );
        let store_size = Gauge::<u64, AtomicU64>::default();
        registry.register_with_unit(
            "store_size",
            "Size of the store on disk",
            Unit::Bytes,
            store_size.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "subscribers",
            "Connected /subscribe streams",
            subscribers.clone(),
        );
        let events_delivered = Counter::default();
        registry.register(
            "events_delivered",
            "Events sent to subscribers",
            events_delivered.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Open HTTP connections",
            connections_open.clone(),
        );
        let connections_rejected = Counter::default();
        registry.register(
            "connections_rejected",
            "Connections closed on arrival because --connections-max were open",
            connections_rejected.clone(),
        );
        Self {
            registry,
            events_received,
            events_unique,
            events_duplicate,
            events_conflict,
            requests,
            request_duration,
            commit_batch_events,
            commit_duration,
            queue_depth,
            store_size,
            subscribers,
            events_delivered,
            connections_open,
            connections_rejected,
        }
    }

    /// Records one committed transaction.
    pub fn record_commit(&self, receipt: &Receipt, duration: Duration) {
        self.events_received.inc_by(receipt.received);
        self.events_unique.inc_by(receipt.unique);
        self.events_duplicate.inc_by(receipt.duplicates);
        self.events_conflict.inc_by(receipt.conflicts);
        self.commit_batch_events.observe(receipt.received as f64);
        self.commit_duration.observe(duration.as_secs_f64());
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self, format: Exposition) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        match format {
            Exposition::OpenMetrics => text,
            Exposition::Text => openmetrics_to_text(&text),
        }
    }
}

/// The two formats `/metrics` answers in, chosen by the request's `Accept`
/// as Prometheus' own clients do: OpenMetrics for a scraper that asks for
/// it (Prometheus does), else the classic text format 0.0.4, which `curl`,
/// `promtool check metrics` and older scrapers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    OpenMetrics,
    Text,
}

impl Exposition {
    /// OpenMetrics when `accept` names `application/openmetrics-text`.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let asks = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';');
                let media = parts.next().unwrap_or_default().trim();
                // `q=0` means "not this one".
                let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00"));
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if asks { Self::OpenMetrics } else { Self::Text }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The classic text format of what `prometheus_client` encodes as
/// OpenMetrics. For our metrics (counters, gauges, histograms, no exemplars
/// or `_created`) the two differ only in the metadata: a counter family is
/// named with its `_total` suffix, there are no `# UNIT` lines and no
/// `# EOF`. The samples are the same lines.
fn openmetrics_to_text(openmetrics: &str) -> String {
    let counters: Vec<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let metadata = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match metadata {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(&name) {
                    "_total"
                } else {
                    ""
                };
                text.push_str(&format!("{prefix}{name}{suffix} {tail}"));
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Middleware: counts and times every routed request by route template,
/// method and status. Installed with `route_layer`, so only matched routes
/// are counted and the route label stays bounded.
pub async fn track_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        _ => "other",
    }
    .to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RequestLabels {
        route,
        method,
        status: response.status().as_u16(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .request_duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_format_names_counters_with_total_and_drops_units_and_eof() {
        let metrics = Metrics::new();
        metrics.events_received.inc();
        let text = metrics.render(Exposition::Text);
        assert!(text.contains("# HELP logagg_events_received_total Events in committed"));
        assert!(text.contains(
            "# TYPE logagg_events_received_total counter\nlogagg_events_received_total 1\n"
        ));
        assert!(text.contains("# TYPE logagg_queue_depth_events gauge\n"));
        assert!(
            !text.contains("# UNIT") && !text.contains("# EOF"),
            "{text}"
        );
        let open = metrics.render(Exposition::OpenMetrics);
        assert!(
            open.ends_with("# EOF\n") && open.contains("# TYPE logagg_events_received counter")
        );
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(
            Exposition::negotiate(Some(prometheus)),
            Exposition::OpenMetrics
        );
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("application/openmetrics-text;q=0"),
        ] {
            assert_eq!(
                Exposition::negotiate(accept),
                Exposition::Text,
                "{accept:?}"
            );
        }
    }
}
