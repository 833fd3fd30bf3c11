//! `ServeConfig`: the server's settings as typed fields, each a flag with a
//! `LOGAGG_*` environment variable, checked once before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::event::FieldLimits;
use crate::http::{Limits, SubscribeLimits};
use crate::ingest::QueueConfig;
use crate::ingest::batch::BatchPolicy;
use crate::store::SyncMode;

/// serde_json refuses to parse deeper than 128 levels; our own limit must
/// stay below it (plus one for a batch's array) to give the clearer error.
const JSON_DEPTH_CEILING: usize = 120;

/// Settings of `logagg serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "LOGAGG_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Directory holding the database (created if missing).
    #[arg(long, env = "LOGAGG_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Durability of each commit: `full` survives power loss, `normal` only
    /// process crashes (see docs/architecture.md).
    #[arg(long, env = "LOGAGG_SYNC", value_enum, default_value_t = SyncMode::Full)]
    pub sync: SyncMode,

    /// Events that may wait in the ingest queue (or be in a commit) at once.
    #[arg(long, env = "LOGAGG_QUEUE_CAPACITY", default_value_t = 100_000)]
    pub queue_capacity: usize,

    /// How long a publish may wait for room in a full queue before it gets
    /// 503 with Retry-After, in milliseconds.
    #[arg(long, env = "LOGAGG_QUEUE_WAIT_MS", default_value_t = 500)]
    pub queue_wait_ms: u64,

    /// Soft cap on events per commit; a single larger request still commits
    /// whole.
    #[arg(long, env = "LOGAGG_BATCH_EVENTS_MAX", default_value_t = 20_000)]
    pub batch_events_max: usize,

    /// Largest publish body in bytes, on the wire and after gzip.
    #[arg(long, env = "LOGAGG_BODY_BYTES_MAX", default_value_t = 16 * 1024 * 1024)]
    pub body_bytes_max: usize,

    /// Most events in one publish request.
    #[arg(long, env = "LOGAGG_REQUEST_EVENTS_MAX", default_value_t = 10_000)]
    pub request_events_max: usize,

    /// Longest topic, event_id and source, in bytes.
    #[arg(long, env = "LOGAGG_FIELD_BYTES_MAX", default_value_t = 255)]
    pub field_bytes_max: usize,

    /// Deepest JSON nesting of one event (the event is level 1, its payload
    /// level 2).
    #[arg(long, env = "LOGAGG_JSON_DEPTH_MAX", default_value_t = 32)]
    pub json_depth_max: usize,

    /// Most /subscribe streams open at once.
    #[arg(long, env = "LOGAGG_SUBSCRIBERS_MAX", default_value_t = SubscribeLimits::DEFAULT.subscribers_max)]
    pub subscribers_max: usize,

    /// Seconds between keep-alive comments on an idle /subscribe stream.
    #[arg(long, env = "LOGAGG_KEEP_ALIVE_SECS", default_value_t = SubscribeLimits::DEFAULT.keep_alive.as_secs())]
    pub keep_alive_secs: u64,
}

impl ServeConfig {
    /// A configuration for tests: an ephemeral port on loopback, the given
    /// data directory, defaults for the rest.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            sync: SyncMode::Full,
            queue_capacity: 100_000,
            queue_wait_ms: 500,
            batch_events_max: 20_000,
            body_bytes_max: 16 * 1024 * 1024,
            request_events_max: 10_000,
            field_bytes_max: 255,
            json_depth_max: 32,
            subscribers_max: SubscribeLimits::DEFAULT.subscribers_max,
            keep_alive_secs: SubscribeLimits::DEFAULT.keep_alive.as_secs(),
        }
    }

    /// Checks the settings against each other.
    ///
    /// # Errors
    /// A message naming the flag to change.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("--queue-capacity", self.queue_capacity),
            ("--batch-events-max", self.batch_events_max),
            ("--body-bytes-max", self.body_bytes_max),
            ("--request-events-max", self.request_events_max),
            ("--field-bytes-max", self.field_bytes_max),
            ("--json-depth-max", self.json_depth_max),
            ("--subscribers-max", self.subscribers_max),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(format!("{flag} must be at least 1"));
        }
        if self.request_events_max > self.queue_capacity {
            return Err(format!(
                "--request-events-max ({}) must not exceed --queue-capacity ({}): such a request could never be queued",
                self.request_events_max, self.queue_capacity
            ));
        }
        if self.json_depth_max > JSON_DEPTH_CEILING {
            return Err(format!(
                "--json-depth-max must be at most {JSON_DEPTH_CEILING}"
            ));
        }
        if self.keep_alive_secs == 0 {
            return Err("--keep-alive-secs must be at least 1".to_owned());
        }
        Ok(())
    }

    pub fn limits(&self) -> Limits {
        Limits {
            body_bytes_max: self.body_bytes_max,
            request_events_max: self.request_events_max,
            json_depth_max: self.json_depth_max,
            fields: FieldLimits {
                field_bytes_max: self.field_bytes_max,
            },
            subscribe: SubscribeLimits {
                subscribers_max: self.subscribers_max,
                keep_alive: Duration::from_secs(self.keep_alive_secs),
                ..SubscribeLimits::DEFAULT
            },
        }
    }

    pub fn queue(&self) -> QueueConfig {
        QueueConfig {
            capacity_events: self.queue_capacity,
            wait: Duration::from_millis(self.queue_wait_ms),
        }
    }

    pub fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            events_max: self.batch_events_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_config_is_valid() {
        assert_eq!(ServeConfig::for_tests("d".into()).validate(), Ok(()));
    }

    #[test]
    fn a_request_larger_than_the_queue_is_refused() {
        let mut config = ServeConfig::for_tests("d".into());
        config.queue_capacity = 10;
        let error = config.validate().expect_err("invalid");
        assert!(error.contains("--request-events-max"), "{error}");
    }

    #[test]
    fn zero_limits_are_refused() {
        let mut config = ServeConfig::for_tests("d".into());
        config.body_bytes_max = 0;
        assert_eq!(
            config.validate(),
            Err("--body-bytes-max must be at least 1".to_owned())
        );
    }
}
