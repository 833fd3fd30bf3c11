//! `--verify`: the server's `/stats` counters, read before and after the
//! run, against what the receipts say.

use anyhow::Context;

use super::report::{Tally, Verification};
use super::sender::Sender;
use crate::api::Counters;
use crate::cmd::client::{self, BaseUrl};

/// `/stats` counters, for `--verify`.
pub(crate) async fn counters(
    sender: &Sender,
    base: &BaseUrl,
    when: &str,
) -> anyhow::Result<Counters> {
    let url = base.endpoint("/stats");
    let context = || format!("reading {url} {when} publishing (for --verify)");
    let response = sender
        .client()
        .get(url.clone())
        .send()
        .await
        .with_context(context)?;
    if let Some(denied) = client::denied(response.status(), response.headers(), sender.sent_token())
    {
        return Err(anyhow::anyhow!("{denied}").context(context()));
    }
    let reading = async { response.error_for_status()?.json::<Counters>().await };
    reading.await.with_context(context)
}

/// Compares how the server's counters moved with what the receipts say.
///
/// Exact unless some attempt went unanswered: the server may have stored
/// such a request before its answer was lost, and the retry then counted
/// its events again as duplicates. So the server's `received` may exceed
/// the acknowledged events by up to `tally.unanswered`, and that excess
/// splits between `unique_processed` and `duplicate_dropped`.
pub(crate) fn verify(before: Counters, after: Counters, tally: &Tally) -> Verification {
    let moved = |name: &str, after: u64, before: u64| {
        after
            .checked_sub(before)
            .ok_or_else(|| format!("the server's {name} went down from {before} to {after}"))
    };
    let deltas = (
        moved("received", after.received, before.received),
        moved(
            "unique_processed",
            after.unique_processed,
            before.unique_processed,
        ),
        moved(
            "duplicate_dropped",
            after.duplicate_dropped,
            before.duplicate_dropped,
        ),
    );
    let mut problems = Vec::new();
    let (received, unique, duplicates) = match deltas {
        (Ok(r), Ok(u), Ok(d)) => (r, u, d),
        (r, u, d) => {
            problems.extend([r.err(), u.err(), d.err()].into_iter().flatten());
            (0, 0, 0)
        }
    };
    if problems.is_empty() {
        let acked = &tally.acked;
        let slack = tally.unanswered;
        for (name, moved, said) in [
            ("received", received, acked.received),
            ("unique_processed", unique, acked.unique),
            ("duplicate_dropped", duplicates, acked.duplicates),
        ] {
            if !(said..=said + slack).contains(&moved) {
                let allowance = match slack {
                    0 => String::new(),
                    n => format!(" (+ up to {n} unanswered)"),
                };
                problems.push(format!(
                    "the server's {name} moved by {moved}, the acknowledgements say {said}{allowance}"
                ));
            }
        }
    }
    Verification {
        ok: problems.is_empty(),
        received,
        unique_processed: unique,
        duplicate_dropped: duplicates,
        unanswered: tally.unanswered,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Receipt;

    fn counters(received: u64, unique_processed: u64, duplicate_dropped: u64) -> Counters {
        Counters {
            received,
            unique_processed,
            duplicate_dropped,
            conflicts: 0,
        }
    }

    fn tally(received: u64, unique: u64, unanswered: u64) -> Tally {
        Tally {
            acked: Receipt {
                received,
                unique,
                duplicates: received - unique,
                conflicts: 0,
            },
            unanswered,
            ..Tally::default()
        }
    }

    #[test]
    fn verify_is_exact_without_unanswered_attempts() {
        let before = counters(10, 8, 2);
        assert!(verify(before, counters(110, 88, 22), &tally(100, 80, 0)).ok);
        let off = verify(before, counters(111, 89, 22), &tally(100, 80, 0));
        assert!(!off.ok);
        assert!(off.problems[0].contains("received moved by 101"), "{off:?}");
        assert!(!verify(before, counters(5, 5, 0), &tally(0, 0, 0)).ok);
    }

    #[test]
    fn verify_allows_what_unanswered_attempts_may_have_stored() {
        let before = counters(0, 0, 0);
        // 10 events stored, the answer lost, the retry counted 10 duplicates.
        assert!(verify(before, counters(20, 10, 10), &tally(10, 0, 10)).ok);
        assert!(!verify(before, counters(21, 11, 10), &tally(10, 0, 10)).ok);
    }
}
