//! `ServeConfig`: the server's settings as typed fields, each a flag with a
//! `LOGAGG_*` environment variable, checked once before anything starts.
//!
//! Defaults live in one place, the clap attributes below: the tests' config
//! ([`ServeConfig::for_tests`]) is those same defaults, read with every
//! environment variable ignored. Values are parsed into their real types at
//! the edge (`Duration`, `NonZeroUsize`, `SocketAddr`), so a bad value is a
//! one-line error naming its flag before the server starts.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, FromArgMatches};

use crate::decode::loki::LokiMapping;
use crate::decode::otlp::OtlpMapping;
use crate::decode::{DecodeLimits, FormatMapping};
use crate::event::{FieldLimits, TopicPattern};
use crate::http::auth::{Access, RouteAccess, Tokens, TokensError};
use crate::http::cors::{CorsOrigins, parse_origin};
use crate::http::{ConnectionLimits, Limits, SubscribeLimits};
use crate::ingest::QueueConfig;
use crate::ingest::batch::BatchPolicy;
use crate::retention::{ByteSize, Keep, RetainRule, RetentionPolicy};
use crate::store::{SNAPSHOT_KEYS_DEFAULT, SqliteOptions, StoreConfig, StoreLocation, SyncMode};

/// serde_json refuses to parse deeper than 128 levels; our own limit must
/// stay below it (plus one for a batch's array) to give the clearer error.
const JSON_DEPTH_CEILING: usize = 120;

/// Settings of `logagg serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "LOGAGG_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Directory holding the database (created if missing); the embedded
    /// store's only.
    #[arg(long, env = "LOGAGG_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Where events are stored: `sqlite` (the embedded store in --data-dir)
    /// or a PostgreSQL URL, postgres://user:password@host:5432/db, which
    /// several replicas may share (see docs/architecture.md).
    #[arg(
        long,
        env = "LOGAGG_STORE",
        default_value = "sqlite",
        value_parser = StoreLocation::parse,
        hide_env_values = true
    )]
    pub store: StoreLocation,

    /// Read connections to a PostgreSQL store; the consumer has one more of
    /// its own, and one more follows other replicas' commits.
    #[arg(long, env = "LOGAGG_STORE_POOL_SIZE", default_value = "8")]
    pub store_pool_size: NonZeroUsize,

    /// Durability of each commit of the embedded store: `full` survives
    /// power loss, `normal` only process crashes (see
    /// docs/architecture.md). PostgreSQL commits always wait for their WAL
    /// flush.
    #[arg(long, env = "LOGAGG_SYNC", value_enum, default_value_t = SyncMode::Full)]
    pub sync: SyncMode,

    /// Events that may wait in the ingest queue (or be in a commit) at once.
    #[arg(long, env = "LOGAGG_QUEUE_CAPACITY", default_value = "100000")]
    pub queue_capacity: NonZeroUsize,

    /// How long a publish may wait for room in a full queue before it gets
    /// 503 with Retry-After (e.g. 500ms, 2s).
    #[arg(long, env = "LOGAGG_QUEUE_WAIT", default_value = "500ms", value_parser = parse_duration)]
    pub queue_wait: Duration,

    /// Soft cap on events per commit; a single larger request still commits
    /// whole.
    #[arg(long, env = "LOGAGG_BATCH_EVENTS_MAX", default_value = "20000")]
    pub batch_events_max: NonZeroUsize,

    /// Largest publish body in bytes, on the wire and after gzip.
    #[arg(long, env = "LOGAGG_BODY_BYTES_MAX", default_value = "16777216")]
    pub body_bytes_max: NonZeroUsize,

    /// Most events in one publish request.
    #[arg(long, env = "LOGAGG_REQUEST_EVENTS_MAX", default_value = "10000")]
    pub request_events_max: NonZeroUsize,

    /// Longest topic, event_id and source, in bytes.
    #[arg(long, env = "LOGAGG_FIELD_BYTES_MAX", default_value = "255")]
    pub field_bytes_max: NonZeroUsize,

    /// Deepest JSON nesting of one event (the event is level 1, its payload
    /// level 2); at most 120.
    #[arg(long, env = "LOGAGG_JSON_DEPTH_MAX", default_value = "32", value_parser = parse_json_depth)]
    pub json_depth_max: NonZeroUsize,

    /// Most /subscribe streams open at once.
    #[arg(long, env = "LOGAGG_SUBSCRIBERS_MAX", default_value = "1024")]
    pub subscribers_max: NonZeroUsize,

    /// Interval of keep-alive comments on an idle /subscribe stream (e.g.
    /// 15s).
    #[arg(long, env = "LOGAGG_KEEP_ALIVE", default_value = "15s", value_parser = parse_positive_duration)]
    pub keep_alive: Duration,

    /// New keys between two snapshots of the in-memory dedup index, at the
    /// least (a snapshot also waits for the keys to grow by an eighth). A
    /// restart loads the latest snapshot and replays the keys after it.
    #[arg(long, env = "LOGAGG_INDEX_SNAPSHOT_KEYS", default_value_t = SNAPSHOT_KEYS_DEFAULT, value_parser = clap::value_parser!(u64).range(1..))]
    pub index_snapshot_keys: u64,

    /// Bits of each key hash the dedup index keeps (1-64). Fewer bits make
    /// keys collide, which costs reads but never changes an answer; for
    /// tests.
    #[arg(long, env = "LOGAGG_INDEX_HASH_BITS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=64), hide = true)]
    pub index_hash_bits: u32,
    /// OTLP logs (POST /v1/logs): the resource attribute naming each
    /// record's topic (whitespace, control characters, '*' and '>' become
    /// '_'); records whose resource lacks it are rejected.
    #[arg(
        long,
        env = "LOGAGG_OTLP_TOPIC_ATTRIBUTE",
        default_value = "service.name"
    )]
    pub otlp_topic_attribute: String,

    /// OTLP logs: the resource attribute naming each record's source (else
    /// the record's topic).
    #[arg(
        long,
        env = "LOGAGG_OTLP_SOURCE_ATTRIBUTE",
        default_value = "service.name"
    )]
    pub otlp_source_attribute: String,

    /// Loki pushes (POST /loki/api/v1/push): the stream labels naming each
    /// entry's topic and source, first present wins (comma-separated).
    #[arg(
        long,
        env = "LOGAGG_LOKI_TOPIC_LABELS",
        default_value = "service_name,job",
        value_delimiter = ','
    )]
    pub loki_topic_labels: Vec<String>,

    // ---- Authentication and CORS (src/http/auth.rs, src/http/cors.rs) --
    /// Require bearer tokens: a file with one `TOKEN SCOPE[,SCOPE...]` per
    /// line (scopes: publish, read, admin; `#` comments). Without it every
    /// route is open.
    #[arg(long, env = "LOGAGG_AUTH_TOKENS", value_name = "FILE")]
    pub auth_tokens: Option<PathBuf>,

    /// With --auth-tokens: who may GET /health, `open` (anyone, for load
    /// balancers and container checks) or `read` (a read token).
    #[arg(long, env = "LOGAGG_HEALTH_ACCESS", value_enum, default_value_t = RouteAccess::Open)]
    pub health_access: RouteAccess,

    /// With --auth-tokens: who may GET /metrics, `read` (a read token, which
    /// Prometheus sends with `authorization: credentials_file`) or `open`.
    #[arg(long, env = "LOGAGG_METRICS_ACCESS", value_enum, default_value_t = RouteAccess::Read)]
    pub metrics_access: RouteAccess,

    /// Let web pages of this origin call the API from a browser
    /// (`https://ops.example.com`; `*` for any); repeat the flag, or
    /// separate with commas, for several. Off without it.
    #[arg(long = "cors-origin", env = "LOGAGG_CORS_ORIGINS", value_name = "ORIGIN", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_origins: Vec<String>,
    // ---- end of Authentication and CORS --------------------------------

    // Connections (issue 11): how many may be open, and how long each may
    // take. Long-lived /subscribe streams are not cut by any of these.
    /// Connections open at once (also kept below the open-files limit);
    /// past it a new connection gets a 503 and is closed at once.
    #[arg(long, env = "LOGAGG_CONNECTIONS_MAX", default_value = "10000")]
    pub connections_max: NonZeroUsize,

    /// Time a client has to send a request's head (request line and
    /// headers), from its first byte; then the connection is closed.
    #[arg(long, env = "LOGAGG_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub header_timeout: Duration,

    /// Time a client has to send a request's body, from the end of its
    /// head; a body still arriving then gets 408.
    #[arg(long, env = "LOGAGG_BODY_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub body_timeout: Duration,

    /// Time a connection may stay open with no request in progress (a
    /// kept-alive connection between requests); then it is closed.
    #[arg(long, env = "LOGAGG_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub idle_timeout: Duration,

    // TLS (issue 11): HTTPS when both files are given.
    /// PEM file of the server's certificate chain (its own certificate
    /// first); with --tls-key, the server speaks HTTPS only.
    #[arg(long, env = "LOGAGG_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file of the private key of --tls-cert.
    #[arg(long, env = "LOGAGG_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    // --- Retention (issue 13; docs/architecture.md "Retention and the dedup horizon") ---
    /// How long events are kept, counted from when this server received
    /// them (not their own timestamp): e.g. 7d, 12h, or `forever`. An
    /// expired event's key is still remembered (see --dedup-horizon).
    #[arg(long, env = "LOGAGG_RETAIN_FOR", default_value = "forever", value_parser = Keep::parse)]
    pub retain_for: Keep,

    /// Retention of the topics a pattern matches, as PATTERN=DURATION
    /// (e.g. 'audit.>=365d', 'debug.*=1d', 'keep.>=forever'); repeatable,
    /// the first matching pattern wins, else --retain-for. Patterns as
    /// /subscribe has them. (LOGAGG_RETAIN holds one.)
    #[arg(long = "retain", env = "LOGAGG_RETAIN", value_parser = RetainRule::parse)]
    pub retain: Vec<RetainRule>,

    /// How long after it was received an expired event's key is still
    /// remembered, so that a retry of it is a duplicate: `forever` (the
    /// default), or a duration at least as long as every retention. A retry
    /// received after that is stored again, as a new event.
    #[arg(long, env = "LOGAGG_DEDUP_HORIZON", default_value = "forever", value_parser = Keep::parse)]
    pub dedup_horizon: Keep,

    /// How often expiry looks for expired events (e.g. 30s).
    #[arg(long, env = "LOGAGG_EXPIRE_INTERVAL", default_value = "10s", value_parser = parse_positive_duration)]
    pub expire_interval: Duration,

    /// Most bytes the store may hold (e.g. 50GiB, 500MB): beyond it the
    /// oldest events of all topics expire, whatever their age, keeping their
    /// keys as --retain-for does. On the embedded store it bounds the
    /// database's used pages: events and key records (also those of expired
    /// events); the WAL (up to 64 MiB) and free pages come on top. On
    /// PostgreSQL it bounds the stored events' data, each event counted as
    /// the bytes of its topic, id, timestamp, source and payload plus 16,
    /// not the database's files: those do not shrink when events expire
    /// (autovacuum makes the space reusable), and row overhead, indexes and
    /// expired keys come on top. Default: no limit.
    #[arg(long, env = "LOGAGG_RETAIN_BYTES", value_name = "SIZE", value_parser = ByteSize::parse)]
    pub retain_bytes: Option<ByteSize>,
    // --- end of retention ---
    /// Index the payloads of the topics this pattern matches for full-text
    /// search (`GET /events?q=`, `logagg events --grep`); repeatable.
    /// Patterns as /subscribe has them (`'>'` indexes every topic). Events
    /// are indexed as they are stored, from the first start with the
    /// pattern on: earlier ones are not. Costs ingest speed (see
    /// docs/performance.md). Embedded store only. (LOGAGG_SEARCH holds
    /// one.)
    #[arg(long = "search", env = "LOGAGG_SEARCH", value_name = "PATTERN", value_parser = parse_search_pattern)]
    pub search: Vec<TopicPattern>,
}

/// A `--search` pattern.
fn parse_search_pattern(text: &str) -> Result<TopicPattern, String> {
    TopicPattern::parse(text.trim(), &FieldLimits::default())
        .map_err(|reason| format!("pattern {text:?} {reason}; e.g. 'orders.>'"))
}

/// Settings that are each valid but do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "--dedup-horizon ({horizon}) must be at least as long as every retention (--retain-for, --retain), here {retention}: a key must outlive its event"
    )]
    HorizonShorterThanRetention { horizon: Keep, retention: Keep },
    #[error(
        "--request-events-max ({request}) must not exceed --queue-capacity ({queue}): such a request could never be queued"
    )]
    RequestLargerThanQueue { request: usize, queue: usize },
    #[error(
        "--tls-cert and --tls-key go together: give both (PEM files) for HTTPS, or neither for plain HTTP"
    )]
    TlsHalfConfigured,
    #[error(
        "--search works with the embedded store only: the PostgreSQL store keeps no full-text index"
    )]
    SearchOnPostgres,
}

impl ServeConfig {
    /// The defaults of every flag, with no environment variable read.
    pub fn defaults() -> Self {
        let command = Self::augment_args(clap::Command::new("serve"))
            .mut_args(|arg| arg.env(None::<&'static str>));
        let matches = command
            .try_get_matches_from(["serve"])
            .expect("every flag of serve has a default");
        Self::from_arg_matches(&matches).expect("the defaults parse")
    }

    /// A configuration for tests: the defaults, an ephemeral port on
    /// loopback, and the given data directory.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            ..Self::defaults()
        }
    }

    /// Checks the settings against each other.
    ///
    /// # Errors
    /// The first pair of settings that do not fit, naming the flags.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.request_events_max > self.queue_capacity {
            return Err(ConfigError::RequestLargerThanQueue {
                request: self.request_events_max.get(),
                queue: self.queue_capacity.get(),
            });
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::TlsHalfConfigured);
        }
        if !self.search.is_empty() && !matches!(self.store, StoreLocation::Embedded) {
            return Err(ConfigError::SearchOnPostgres);
        }
        self.validate_retention()
    }

    fn validate_retention(&self) -> Result<(), ConfigError> {
        let policy = self.retention();
        if let Keep::For(horizon) = policy.dedup_horizon {
            let longest = std::iter::once(policy.default)
                .chain(policy.rules.iter().map(|rule| rule.keep))
                .filter_map(Keep::duration)
                .max();
            if let Some(longest) = longest.filter(|&longest| longest > horizon) {
                return Err(ConfigError::HorizonShorterThanRetention {
                    horizon: policy.dedup_horizon,
                    retention: Keep::For(longest),
                });
            }
        }
        Ok(())
    }

    /// What `--retain-for`, `--retain`, `--retain-bytes` and `--dedup-horizon` say.
    pub fn retention(&self) -> RetentionPolicy {
        RetentionPolicy {
            rules: self.retain.clone(),
            default: self.retain_for,
            dedup_horizon: self.dedup_horizon,
            bytes_max: self.retain_bytes.map(|size| size.0),
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            body_bytes_max: self.body_bytes_max.get(),
            decode: DecodeLimits {
                request_events_max: self.request_events_max.get(),
                json_depth_max: self.json_depth_max.get(),
                fields: FieldLimits {
                    field_bytes_max: self.field_bytes_max.get(),
                },
            },
            subscribe: SubscribeLimits {
                subscribers_max: self.subscribers_max.get(),
                keep_alive: self.keep_alive,
                ..SubscribeLimits::DEFAULT
            },
        }
    }

    /// The connection bounds, as configured (`serve` lowers the cap to fit
    /// the open-files limit).
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            connections_max: self.connections_max.get(),
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            idle_timeout: self.idle_timeout,
        }
    }

    pub fn format_mapping(&self) -> FormatMapping {
        FormatMapping {
            otlp: OtlpMapping {
                topic_attribute: self.otlp_topic_attribute.clone(),
                source_attribute: self.otlp_source_attribute.clone(),
            },
            loki: LokiMapping {
                topic_labels: self.loki_topic_labels.clone(),
            },
        }
    }

    pub fn store(&self) -> StoreConfig {
        StoreConfig {
            location: self.store.clone(),
            data_dir: self.data_dir.clone(),
            embedded: self.store_options(),
            pool_size: self.store_pool_size,
        }
    }

    pub fn queue(&self) -> QueueConfig {
        QueueConfig {
            capacity_events: self.queue_capacity.get(),
            wait: self.queue_wait,
        }
    }

    pub fn store_options(&self) -> SqliteOptions {
        SqliteOptions {
            sync: self.sync,
            snapshot_keys: self.index_snapshot_keys,
            hash_bits: self.index_hash_bits,
            search: self.search.clone(),
        }
    }

    /// Who may call what: the tokens of `--auth-tokens`, read now, and the
    /// access rules of `/health` and `/metrics`.
    ///
    /// # Errors
    /// When the tokens file cannot be read or is malformed (naming its
    /// line, never a token).
    pub fn access(&self) -> Result<Access, TokensError> {
        let tokens = self.auth_tokens.as_deref().map(Tokens::load).transpose()?;
        Ok(Access::new(tokens, self.health_access, self.metrics_access))
    }

    pub fn cors(&self) -> CorsOrigins {
        CorsOrigins::new(&self.cors_origins)
    }

    pub fn batch_policy(&self) -> BatchPolicy {
        BatchPolicy {
            events_max: self.batch_events_max.get(),
        }
    }
}

/// A duration with a unit: `500ms`, `15s`, `2m`, `1h 30m`.
///
/// # Errors
/// A message with an example, for clap to show beside the flag.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration ({e}); e.g. 500ms, 15s, 2m"))
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be longer than zero".to_owned()),
        duration => Ok(duration),
    }
}

fn parse_json_depth(text: &str) -> Result<NonZeroUsize, String> {
    match text.trim().parse::<NonZeroUsize>() {
        Ok(depth) if depth.get() <= JSON_DEPTH_CEILING => Ok(depth),
        _ => Err(format!(
            "{text:?} is not a depth from 1 to {JSON_DEPTH_CEILING}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: ServeConfig,
    }

    #[test]
    fn the_defaults_are_valid_and_typed() {
        let config = ServeConfig::for_tests("d".into());
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.queue_wait, Duration::from_millis(500));
        assert_eq!(config.keep_alive, Duration::from_secs(15));
        assert_eq!(config.queue_capacity.get(), 100_000);
        assert_eq!(config.listen.port(), 0);
        let connections = config.connection_limits();
        assert_eq!(connections.connections_max, 10_000);
        assert_eq!(connections.header_timeout, Duration::from_secs(10));
        assert_eq!(connections.body_timeout, Duration::from_secs(30));
        assert_eq!(connections.idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn a_request_larger_than_the_queue_is_refused() {
        let mut config = ServeConfig::for_tests("d".into());
        config.queue_capacity = NonZeroUsize::new(10).expect("non-zero");
        let error = config.validate().expect_err("invalid");
        assert!(
            error.to_string().contains("--request-events-max"),
            "{error}"
        );
    }

    #[test]
    fn a_certificate_without_a_key_is_refused() {
        let mut config = ServeConfig::for_tests("d".into());
        config.tls_cert = Some("cert.pem".into());
        assert_eq!(config.validate(), Err(ConfigError::TlsHalfConfigured));
        config.tls_key = Some("key.pem".into());
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn bad_values_are_refused_at_parse_time() {
        for args in [
            ["t", "--body-bytes-max", "0"],
            ["t", "--queue-wait", "soon"],
            ["t", "--keep-alive", "0s"],
            ["t", "--header-timeout", "0s"],
            ["t", "--idle-timeout", "soon"],
            ["t", "--connections-max", "0"],
            ["t", "--json-depth-max", "121"],
            ["t", "--store", "mysql://db/logagg"],
            ["t", "--store", "postgres://u:p@db:notaport/logagg"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        let cli = Cli::try_parse_from(["t", "--queue-wait", "2s", "--keep-alive", "1m"])
            .expect("valid flags");
        assert_eq!(cli.config.queue_wait, Duration::from_secs(2));
        assert_eq!(cli.config.keep_alive, Duration::from_secs(60));
    }

    #[test]
    fn the_store_is_the_embedded_one_unless_a_url_is_given() {
        let config = ServeConfig::for_tests("d".into());
        assert!(matches!(config.store, StoreLocation::Embedded));
        #[cfg(feature = "postgres")]
        {
            let cli = Cli::try_parse_from(["t", "--store", "postgres://u:secret@db:5432/logagg"])
                .expect("a PostgreSQL URL");
            assert!(matches!(cli.config.store, StoreLocation::Postgres(_)));
            assert_eq!(cli.config.store.to_string(), "postgres://u@db:5432/logagg");
            assert!(!format!("{:?}", cli.config).contains("secret"));
        }
    }
}
