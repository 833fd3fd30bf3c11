//! logagg: a pub-sub log aggregator with an idempotent consumer.
//!
//! Publishers send events over HTTP with at-least-once delivery; logagg
//! stores each `(topic, event_id)` exactly once, durably, and answers a
//! publish only once its events are committed. The map of the system:
//!
//! - [`api`]: the JSON documents of the HTTP API (receipts, counters, problem
//!   documents, stats), defined once for the server and its clients.
//! - [`event`]: the wire shape of an event and the validated [`event::Event`],
//!   plus topic names and subscription patterns.
//! - [`decode`]: the ingest formats, each turning a request body into
//!   validated events (or a precise error), knowing nothing of HTTP.
//! - [`http`]: the axum router; handlers pick a decoder and hand its events
//!   to the ingest queue through one shared path, and read everything else
//!   from the store. Errors are RFC 9457 problem documents
//!   ([`http::ApiError`]). `GET /` is the dashboard, a static page that
//!   reads the same API from the browser. [`http::auth`] guards each group
//!   of routes with a bearer-token scope when `--auth-tokens` is given.
//!   [`http::serve`] is the accept loop: connections bounded in number and
//!   time, optionally over TLS ([`http::tls`]).
//!   [`http::openapi`] generates the OpenAPI 3.1 document of every route
//!   from the handlers' attributes and the wire types.
//! - [`ingest`]: the bounded queue between publish handlers and the single
//!   consumer task, which commits many requests per transaction (group
//!   commit) and answers each after the commit, then announces it to the
//!   tail. Its module docs hold the protocol and the guarantees.
//! - [`tail`]: the newest committed `seq` that subscribers wait on, and the
//!   recent commits framed as Server-Sent Events for them; with a shared
//!   store, `tail::catch_up` brings in other replicas' commits.
//! - [`store`]: the `Store` trait and its two implementations. The embedded
//!   SQLite store appends events by `seq` and dedups through an in-memory
//!   index of every stored key's hash (the keydir), each hit verified
//!   against the stored row; the PostgreSQL store (cargo feature
//!   `postgres`, on by default), which several replicas share, dedups by
//!   its unique constraint on `(topic, event_id)`. Counters are committed
//!   with the events.
//! - [`retention`]: how long events are kept (by age of receipt, per topic
//!   pattern, by size), keeping each expired event's key for the dedup
//!   horizon; the store reads it. [`expiry`] is the background task, above
//!   the store, that applies it in small transactions.
//! - [`search`]: full-text search over payloads (`/events?q=`): the query
//!   syntax, the text indexed, and which topics are (`--search`); the
//!   embedded store keeps the index.
//! - [`metrics`]: Prometheus metrics, one struct per server.
//! - [`config`]: `ServeConfig`, every server setting as a flag with a
//!   `LOGAGG_*` environment variable.
//! - [`cmd`]: the subcommands; `cmd::serve` wires everything and owns the
//!   shutdown sequence; `cmd::backup` copies a running embedded store and
//!   `cmd::export` writes stored events as NDJSON that `publish` re-imports.

pub mod api;
pub mod cmd;
pub mod config;
pub mod decode;
pub mod event;
pub mod expiry;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod retention;
pub mod search;
pub mod store;
pub mod tail;
