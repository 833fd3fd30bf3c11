//! Other writers' commits, brought into the tail: when several replicas
//! share one store, each replica's consumer announces only its own commits,
//! and [`catch_up`] announces everyone else's, read back from the store.
//!
//! It follows the store's watch of the newest `seq` committed by anyone
//! ([`Store::foreign_commits`]). When that moves past the tail, it reads the
//! missing events a page at a time and announces each page with exactly the
//! range it read, so the tail's invariant (every event of its range, in
//! order) holds: a full page covers up to its last event; a short page
//! covers up to the notified `seq` too, since that commit was visible
//! before the page was read and a short page holds everything visible.
//! When nobody subscribes it reads nothing and only moves the tail's newest
//! `seq` on, which is what wakes subscribers and places `from=now`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Framer, Tail};
use crate::store::{EventQuery, Store, StoreError};

/// Events read from the store per page.
const PAGE_EVENTS: usize = 1_024;

/// How long to wait after a failed read before trying again; subscribers
/// meanwhile read the store themselves.
const RETRY: Duration = Duration::from_secs(1);

/// Announces to `tail` the commits that `foreign` reports, until `shutdown`
/// is cancelled or the store drops the watch.
pub async fn catch_up(
    tail: Arc<Tail>,
    store: Arc<dyn Store>,
    mut foreign: watch::Receiver<u64>,
    shutdown: CancellationToken,
) {
    loop {
        let target = *foreign.borrow_and_update();
        let caught_up = tokio::select! {
            result = follow(&tail, store.as_ref(), target) => result,
            () = shutdown.cancelled() => return,
        };
        if let Err(error) = caught_up {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "could not read other replicas' commits; retrying"
            );
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                () = shutdown.cancelled() => return,
            }
            continue;
        }
        tokio::select! {
            changed = foreign.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = shutdown.cancelled() => return,
        }
    }
}

/// Brings the tail up to `target`, a `seq` known to be committed.
async fn follow(tail: &Tail, store: &dyn Store, target: u64) -> Result<(), StoreError> {
    loop {
        let after = tail.newest();
        if after >= target {
            return Ok(());
        }
        if !tail.is_wanted() {
            tail.advance(target);
            return Ok(());
        }
        let page = store
            .events(EventQuery {
                after,
                limit: PAGE_EVENTS,
                ..EventQuery::default()
            })
            .await?;
        let read_to = page.events.last().map_or(after, |event| event.seq);
        let covered = match page.next {
            None => read_to.max(target),
            Some(next) => next,
        };
        let page = page.events;
        tail.announce(after, covered, || {
            let mut framer = Framer::default();
            for event in &page {
                framer.push(&event.view());
            }
            framer.finish()
        });
    }
}
