//! `logagg serve`: wires the store, the ingest consumer and the HTTP API
//! together, and owns the shutdown sequence.
//!
//! Connections are bounded in number and in time by `http::serve` (see
//! `http::listener`); at start the soft open-files limit is raised to the
//! hard one, and the connection cap kept below it, so that running out of
//! file descriptors refuses connections instead of failing accepts.
//!
//! Shutdown, in order: a signal cancels the token; health turns 503 and
//! `/subscribe` streams end; HTTP stops accepting and finishes in-flight
//! requests (publishes among them wait for their commit); dropping the last
//! ingest handle lets the consumer commit what is queued and exit; the store
//! closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::ShutdownSignal;
use super::client::BaseUrl;
use crate::config::ServeConfig;
use crate::expiry;
use crate::http::{self, AppState, ConnectionLimits};
use crate::ingest::{Ingest, consumer};
use crate::metrics::Metrics;
use crate::store::{self, StoreError};
use crate::tail::{self, Tail, TailLimits};

/// How long shutdown waits, in all, for in-flight requests and then for the
/// consumer to commit what is queued, before giving up on them. Anything
/// not yet acknowledged is the publisher's to retry, so giving up loses
/// nothing that was promised.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// File descriptors kept for everything but client connections (the
/// store's files, its read connections, the blocking pool's work): the
/// connection cap stays this far below the open-files limit.
const FDS_RESERVED: u64 = 256;

/// Runs the server until SIGTERM or SIGINT.
///
/// # Errors
/// When the configuration is invalid, the store cannot be opened or the
/// address cannot be bound.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let signal = ShutdownSignal::install().context("installing signal handlers")?;
    let server = Server::bind(&config).await?;
    let mut dashboard = BaseUrl::local(server.local_addr()).endpoint("/");
    if server.tls.is_some() {
        dashboard
            .set_scheme("https")
            .expect("http and https URLs are alike");
    }
    tracing::info!(
        address = %server.local_addr(),
        authentication = if server.state.access.requires_tokens() { "bearer tokens" } else { "off" },
        dashboard = %dashboard,
        tls = server.tls.is_some(),
        store = %config.store,
        data_dir = %config.data_dir.display(),
        sync = ?config.sync,
        connections_max = server.connections.connections_max,
        open_files_max = server.open_files_max,
        "logagg listening"
    );
    server.state.access.warn_if_exposed(server.local_addr());
    let token = server.shutdown_token();
    tokio::spawn(async move {
        signal.recv().await;
        tracing::info!("signal received; shutting down");
        token.cancel();
    });
    server.run().await
}

/// A bound, ready server: the store is open, the consumer runs, the listener
/// is bound (so the port is known before [`Server::run`]).
pub struct Server {
    listener: TcpListener,
    state: AppState,
    /// Set when the server speaks HTTPS.
    tls: Option<TlsAcceptor>,
    connections: ConnectionLimits,
    /// The soft open-files limit after raising it, when known.
    open_files_max: Option<u64>,
    consumer: JoinHandle<()>,
    /// Announces other replicas' commits to the tail, for a shared store.
    catch_up: Option<JoinHandle<()>>,
    /// Expires old events, when retention is configured.
    retention: Option<JoinHandle<()>>,
}

impl Server {
    /// Opens the store, starts the consumer and binds the listener.
    ///
    /// # Errors
    /// See [`run`].
    pub async fn bind(config: &ServeConfig) -> anyhow::Result<Self> {
        config.validate()?;
        // Before the store: a bad tokens file is a one-line error at once.
        let access = config.access()?;
        let store_config = config.store();
        let store = store::open(&store_config)
            .await
            .map_err(|error| match error {
                // Their messages say what to do.
                StoreError::NeedsMigration { .. } | StoreError::Locked { .. } => {
                    anyhow::Error::new(error)
                }
                other => anyhow::Error::new(other)
                    .context(format!("opening the store {}", store_config.describe())),
            })?;
        let last_seq = store.last_seq().await.context("reading the newest seq")?;
        let tail = Arc::new(Tail::new(TailLimits::DEFAULT, last_seq));
        let metrics = Arc::new(Metrics::new());
        let (ingest, jobs) = Ingest::new(config.queue());
        let consumer = consumer::spawn(
            Arc::clone(&store),
            jobs,
            config.batch_policy(),
            Arc::clone(&tail),
            Arc::clone(&metrics),
        );
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(http::tls::acceptor(cert, key)?),
            _ => None,
        };
        let open_files_max = raise_open_files_limit();
        let connections = fit_connections(config.connection_limits(), open_files_max);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {} (is another server using it?)", config.listen))?;
        let state = AppState::new(
            store,
            ingest,
            config.limits(),
            config.format_mapping(),
            metrics,
            tail,
        )
        .with_access(access)
        .with_cors(config.cors());
        let catch_up = state.store.foreign_commits().map(|foreign| {
            tokio::spawn(tail::catch_up(
                Arc::clone(&state.tail),
                Arc::clone(&state.store),
                foreign,
                state.shutdown.clone(),
            ))
        });
        let retention = expiry::spawn(
            Arc::clone(&state.store),
            config.retention(),
            config.expire_interval,
            state.retention.clone(),
            state.shutdown.clone(),
        );
        Ok(Self {
            listener,
            state,
            tls,
            connections,
            open_files_max,
            consumer,
            catch_up,
            retention,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Cancelling this token starts the shutdown sequence.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.state.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then shuts down in the
    /// order the module docs give, within `SHUTDOWN_GRACE` in all.
    ///
    /// # Errors
    /// When serving fails or the consumer panicked.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self {
            listener,
            state,
            tls,
            connections,
            open_files_max: _,
            consumer,
            catch_up,
            retention,
        } = self;
        let token = state.shutdown.clone();
        let metrics = Arc::clone(&state.metrics);
        let app = http::router(state);
        let serve = http::serve(listener, app, connections, tls, metrics, token.clone());
        tokio::pin!(serve);
        // Serving ends only once shutdown has begun.
        let served = tokio::select! {
            () = &mut serve => true,
            () = token.cancelled() => false,
        };
        // One deadline for everything that follows.
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        if !served && tokio::time::timeout_at(deadline, serve).await.is_err() {
            tracing::warn!(
                grace = ?SHUTDOWN_GRACE,
                "in-flight requests did not finish in time; they were not acknowledged"
            );
        }
        // Every ingest handle is gone with the router: the consumer commits
        // what is left, answers it, and returns.
        match tokio::time::timeout_at(deadline, consumer).await {
            Ok(Ok(())) => {}
            Ok(Err(join_error)) if join_error.is_panic() => {
                anyhow::bail!("the ingest consumer panicked")
            }
            Ok(Err(join_error)) => return Err(join_error).context("joining the ingest consumer"),
            Err(_) => tracing::warn!("the ingest consumer did not stop in time"),
        }
        // It stops on the shutdown token.
        if let Some(catch_up) = catch_up
            && let Err(join_error) = catch_up.await
            && join_error.is_panic()
        {
            anyhow::bail!("the task announcing other replicas' commits panicked");
        }
        // It stops on the shutdown token too, between two transactions.
        if let Some(retention) = retention
            && let Err(join_error) = retention.await
            && join_error.is_panic()
        {
            anyhow::bail!("the retention task panicked");
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// Raises the soft open-files limit to the hard one; returns the soft limit
/// in force, or `None` when it cannot be read.
fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "could not read or raise the open-files limit (RLIMIT_NOFILE)"
            );
            None
        }
    }
}

/// `limits` with the connection cap lowered, if needed, to leave
/// [`FDS_RESERVED`] descriptors of `open_files_max` free.
fn fit_connections(limits: ConnectionLimits, open_files_max: Option<u64>) -> ConnectionLimits {
    let Some(open_files_max) = open_files_max else {
        return limits;
    };
    let room = open_files_max.saturating_sub(FDS_RESERVED).max(1);
    let room = usize::try_from(room).unwrap_or(usize::MAX);
    if limits.connections_max > room {
        tracing::warn!(
            connections_max = limits.connections_max,
            open_files_max,
            lowered_to = room,
            "--connections-max does not fit the open-files limit (ulimit -n); lowered"
        );
    }
    ConnectionLimits {
        connections_max: limits.connections_max.min(room),
        ..limits
    }
}
