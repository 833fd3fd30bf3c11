//! The background task that applies the retention policy: it calls
//! [`Store::expire`] with a budget of [`EXPIRE_BATCH_ROWS`] rows per
//! transaction and pauses between transactions, so the ingest consumer,
//! which shares the store's single writer, never waits for more than one
//! small transaction. What the policy means is in [`crate::retention`].
//! What it finds that an operator must act on, it keeps in
//! [`RetentionStatus`] for `/health` and `/stats`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// What the last round of expiry found, shared with the HTTP layer. Cheap
/// to clone.
#[derive(Debug, Clone, Default)]
pub struct RetentionStatus {
    keys_fill_limit: Arc<AtomicBool>,
}

impl RetentionStatus {
    /// Whether the last round ended over `--retain-bytes` with no event
    /// left to expire (see [`ExpireReport::keys_fill_limit`]): events are
    /// then accepted but expire at the next round. Cleared by a round that
    /// ends under the limit.
    pub fn keys_fill_limit(&self) -> bool {
        self.keys_fill_limit.load(Ordering::Relaxed)
    }

    /// Records a finished round; logs when the state changes.
    fn round_done(&self, keys_fill_limit: bool) {
        let was = self
            .keys_fill_limit
            .swap(keys_fill_limit, Ordering::Relaxed);
        if keys_fill_limit && !was {
            tracing::warn!(
                "key records alone fill --retain-bytes: every event now expires as soon as expiry runs; raise the limit or set a finite --dedup-horizon"
            );
        } else if was && !keys_fill_limit {
            tracing::info!("the store is back under --retain-bytes with events kept");
        }
    }
}

/// Starts the task applying `policy` every `interval` until `shutdown`,
/// keeping `status`; `None` when the policy never expires anything.
pub fn spawn(
    store: Arc<dyn Store>,
    policy: RetentionPolicy,
    interval: Duration,
    status: RetentionStatus,
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
                        total.keys_fill_limit |= report.keys_fill_limit;
                        if !report.more {
                            status.round_done(total.keys_fill_limit);
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
