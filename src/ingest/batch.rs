//! The batching policy of the consumer, as a pure type.
//!
//! A batch is what one transaction commits: whole requests, never a part of
//! one, taken in arrival order until the next request would push the batch
//! past `events_max`. A single request larger than `events_max` still forms a
//! batch of its own (the per-request limit keeps it bounded), because
//! splitting it would break the all-or-nothing promise.

/// How much one transaction may hold.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Soft cap on events per transaction; see the module docs.
    pub events_max: usize,
}

/// Requests gathered for one transaction, with their event count.
#[derive(Debug)]
pub struct Batch<T> {
    policy: BatchPolicy,
    items: Vec<T>,
    events: usize,
}

impl<T> Batch<T> {
    pub fn new(policy: BatchPolicy) -> Self {
        Self {
            policy,
            items: Vec::new(),
            events: 0,
        }
    }

    /// Whether a request of `events` events may join this batch.
    pub fn accepts(&self, events: usize) -> bool {
        self.items.is_empty() || self.events + events <= self.policy.events_max
    }

    /// Adds a request that [`accepts`](Self::accepts) allowed.
    ///
    /// # Panics
    /// When the request does not fit: the caller must ask first.
    pub fn push(&mut self, item: T, events: usize) {
        assert!(self.accepts(events), "request pushed into a full batch");
        self.items.push(item);
        self.events += events;
    }

    /// Whether no further request, however small, can join.
    pub fn is_full(&self) -> bool {
        !self.items.is_empty() && self.events >= self.policy.events_max
    }

    pub fn events(&self) -> usize {
        self.events
    }

    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: BatchPolicy = BatchPolicy { events_max: 10 };

    #[test]
    fn requests_join_until_the_cap() {
        let mut batch = Batch::new(POLICY);
        batch.push('a', 4);
        assert!(batch.accepts(6));
        batch.push('b', 6);
        assert!(batch.is_full());
        assert!(!batch.accepts(1));
        assert_eq!(batch.events(), 10);
        assert_eq!(batch.into_items(), ['a', 'b']);
    }

    #[test]
    fn a_request_that_would_overflow_waits_for_the_next_batch() {
        let mut batch = Batch::new(POLICY);
        batch.push('a', 7);
        assert!(!batch.accepts(4));
        assert!(!batch.is_full());
    }

    #[test]
    fn an_oversized_request_is_never_split() {
        let mut batch = Batch::new(POLICY);
        assert!(batch.accepts(25));
        batch.push('a', 25);
        assert!(batch.is_full());
    }

    #[test]
    #[should_panic(expected = "full batch")]
    fn pushing_past_the_cap_is_a_bug() {
        let mut batch = Batch::new(POLICY);
        batch.push('a', 7);
        batch.push('b', 7);
    }
}
