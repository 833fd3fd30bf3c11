//! logagg: a pub-sub log aggregator with an idempotent consumer.
//!
//! Publishers send events over HTTP with at-least-once delivery; logagg
//! stores each `(topic, event_id)` exactly once, durably, and answers a
//! publish only once its events are committed. The map of the system:
//!
//! - [`event`]: the wire shape of an event and the validated [`event::Event`],
//!   plus topic names and subscription patterns.
//! - [`http`]: the axum router; handlers parse requests into domain types,
//!   hand publishes to the ingest queue and read everything else from the
//!   store. Errors are RFC 9457 problem documents ([`http::ApiError`]).
//! - [`ingest`]: the bounded queue between publish handlers and the single
//!   consumer thread, which commits many requests per transaction (group
//!   commit) and answers each after the commit, then feeds the in-memory
//!   tail that live subscribers read. Its module docs hold the protocol and
//!   the guarantees.
//! - [`store`]: the `Store` trait and its SQLite implementation; the unique
//!   constraint on `(topic, event_id)` is the dedup set, and counters are
//!   committed with the events.
//! - [`metrics`]: Prometheus metrics, one struct per server.
//! - [`config`]: `ServeConfig`, every server setting as a flag with a
//!   `LOGAGG_*` environment variable.
//! - [`cmd`]: the subcommands; `cmd::serve` wires everything and owns the
//!   shutdown sequence.

pub mod cmd;
pub mod config;
pub mod event;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod store;
