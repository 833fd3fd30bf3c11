//! The background task that applies the retention policy: it calls
//! [`Store::expire`] with a budget of [`EXPIRE_BATCH_ROWS`] rows per
//! transaction and pauses between transactions, so the ingest consumer,
//! which shares the store's single writer, never waits for more than one
//! small transaction. What the policy means is in [`crate::retention`].

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::retention::{ExpireReport, RetentionPolicy};
use crate::store::{CommitTime, Store};

/// Rows expired (or keys forgotten) per transaction at most.
pub const EXPIRE_BATCH_ROWS: usize = 1_000;

/// The pause between two expiry transactions while there is more to do:
/// room for the consumer's commits.
const PAUSE_BETWEEN_BATCHES: Duration = Duration::from_millis(5);

/// Starts the task applying `policy` every `interval` until `shutdown`;
/// `None` when the policy never expires anything.
pub fn spawn(
    store: Arc<dyn Store>,
    policy: RetentionPolicy,
    interval: Duration,
    shutdown: CancellationToken,
) -> Option<JoinHandle<()>> {
    if !policy.expires_anything() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let mut total = ExpireReport::default();
            loop {
                if shutdown.is_cancelled() {
                    return;
                }
                match store
                    .expire(&policy, CommitTime::now(), EXPIRE_BATCH_ROWS)
                    .await
                {
                    Ok(report) => {
                        total.expired += report.expired;
                        total.forgotten += report.forgotten;
                        if !report.more {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            error = &error as &dyn std::error::Error,
                            "expiring old events failed; the next round tries again"
                        );
                        break;
                    }
                }
                tokio::time::sleep(PAUSE_BETWEEN_BATCHES).await;
            }
            if total.expired > 0 || total.forgotten > 0 {
                tracing::info!(
                    expired = total.expired,
                    forgotten = total.forgotten,
                    "retention applied"
                );
            }
        }
    }))
}
