//! `logagg serve`: wires the store, the ingest consumer and the HTTP API
//! together, and owns the shutdown sequence.
//!
//! Shutdown, in order: a signal cancels the token; health turns 503 and
//! `/subscribe` streams end; HTTP stops accepting and finishes in-flight
//! requests (publishes among them wait for their commit); dropping the last
//! ingest handle lets the consumer commit what is queued and exit; the store
//! closes.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ShutdownSignal;
use super::client::BaseUrl;
use crate::config::ServeConfig;
use crate::http::{self, AppState};
use crate::ingest::{Ingest, consumer};
use crate::metrics::Metrics;
use crate::retention;
use crate::store::{self, StoreError};
use crate::tail::{self, Tail, TailLimits};

/// How long shutdown waits, in all, for in-flight requests and then for the
/// consumer to commit what is queued, before giving up on them. Anything
/// not yet acknowledged is the publisher's to retry, so giving up loses
/// nothing that was promised.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs the server until SIGTERM or SIGINT.
///
/// # Errors
/// When the configuration is invalid, the store cannot be opened or the
/// address cannot be bound.
pub async fn run(config: ServeConfig) -> anyhow::Result<()> {
    let signal = ShutdownSignal::install().context("installing signal handlers")?;
    let server = Server::bind(&config).await?;
    tracing::info!(
        address = %server.local_addr(),
        dashboard = %BaseUrl::local(server.local_addr()).endpoint("/"),
        store = %config.store,
        data_dir = %config.data_dir.display(),
        sync = ?config.sync,
        "logagg listening"
    );
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
        let store_config = config.store();
        let store = store::open(&store_config)
            .await
            .map_err(|error| match error {
                // Its message says what to do.
                StoreError::NeedsMigration { .. } => anyhow::Error::new(error),
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
        );
        let catch_up = state.store.foreign_commits().map(|foreign| {
            tokio::spawn(tail::catch_up(
                Arc::clone(&state.tail),
                Arc::clone(&state.store),
                foreign,
                state.shutdown.clone(),
            ))
        });
        let retention = retention::spawn(
            Arc::clone(&state.store),
            config.retention(),
            config.expire_interval,
            state.shutdown.clone(),
        );
        Ok(Self {
            listener,
            state,
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
            consumer,
            catch_up,
            retention,
        } = self;
        let token = state.shutdown.clone();
        let app = http::router(state);
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(token.clone().cancelled_owned())
            .into_future();
        tokio::pin!(serve);
        let served = tokio::select! {
            result = &mut serve => Some(result),
            () = token.cancelled() => None,
        };
        // Shutdown has begun (serving only ends on it, or on an error): one
        // deadline for everything that follows.
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let served = match served {
            Some(result) => Some(result),
            None => tokio::time::timeout_at(deadline, serve).await.ok(),
        };
        match served {
            Some(result) => result.context("serving HTTP")?,
            None => tracing::warn!(
                grace = ?SHUTDOWN_GRACE,
                "in-flight requests did not finish in time; they were not acknowledged"
            ),
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
