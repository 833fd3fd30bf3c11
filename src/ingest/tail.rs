//! The tail: the most recently committed events, already framed as
//! Server-Sent Events, kept in memory for live subscribers.
//!
//! Without it every subscriber queried the store and serialized each event
//! itself after every commit: with 100 subscribers on two cores, publishing
//! fell to 1% of its rate (docs/performance.md). With it, the consumer frames
//! each new event once, and a subscriber that is caught up copies frames out
//! of memory. The store stays the source of truth: a subscriber whose cursor
//! is older than the tail reads the store, as before, so nothing is lost when
//! it falls behind; the tail only saves work.
//!
//! Invariant: the tail holds *every* event with `after < seq <= covered`, in
//! `seq` order. The consumer keeps it only while someone subscribes
//! ([`Tail::watch`]); otherwise it is empty and costs nothing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::{BufMut, Bytes, BytesMut};

use crate::store::EventView;

/// Bounds on what the tail holds; the oldest entries go first.
#[derive(Debug, Clone, Copy)]
pub struct TailLimits {
    pub events_max: usize,
    pub bytes_max: usize,
}

impl TailLimits {
    pub const DEFAULT: Self = Self {
        events_max: 65_536,
        bytes_max: 16 * 1024 * 1024,
    };
}

/// One committed event as a ready-to-send SSE frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub seq: u64,
    pub topic: Box<str>,
    /// `id: <seq>\ndata: <event JSON>\n\n`.
    pub bytes: Bytes,
}

impl Frame {
    /// Frames one stored event.
    pub fn new(event: &EventView<'_>) -> Self {
        let mut bytes = BytesMut::with_capacity(96 + event.payload.get().len());
        bytes.put_slice(b"id: ");
        bytes.put_slice(event.seq.to_string().as_bytes());
        bytes.put_slice(b"\ndata: ");
        let mut writer = bytes.writer();
        // Compact JSON has no newline, so the event is one `data:` line.
        serde_json::to_writer(&mut writer, event).expect("events serialize to memory");
        let mut bytes = writer.into_inner();
        bytes.put_slice(b"\n\n");
        Self {
            seq: event.seq,
            topic: event.topic.into(),
            bytes: bytes.freeze(),
        }
    }
}

/// What [`Tail::read`] found.
#[derive(Debug)]
pub enum TailRead {
    /// The cursor is older than the tail: read the store instead.
    Behind,
    /// Matching frames after the cursor (possibly none), and the cursor to
    /// continue from.
    Frames { frames: Vec<Bytes>, cursor: u64 },
}

#[derive(Debug, Default)]
struct Ring {
    /// `(after, covered)` while the tail holds anything.
    range: Option<(u64, u64)>,
    frames: VecDeque<Frame>,
    bytes: usize,
}

/// The shared tail; see the module docs.
#[derive(Debug)]
pub struct Tail {
    ring: RwLock<Ring>,
    limits: TailLimits,
    watchers: Arc<AtomicUsize>,
}

/// Keeps the tail filled while held; one per subscriber.
#[derive(Debug)]
pub struct Watch(Arc<AtomicUsize>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Tail {
    pub fn new(limits: TailLimits) -> Self {
        Self {
            ring: RwLock::default(),
            limits,
            watchers: Arc::default(),
        }
    }

    /// Asks the consumer to keep the tail until the guard is dropped.
    pub fn watch(&self) -> Watch {
        self.watchers.fetch_add(1, Ordering::Relaxed);
        Watch(Arc::clone(&self.watchers))
    }

    /// Whether anyone subscribes, so the consumer should frame new events.
    pub fn is_watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// Adds one commit's new events. `previous` is the newest `seq` committed
    /// before this commit and `last` the newest after it (equal when the
    /// commit stored only duplicates). Called by the consumer only, after the
    /// commit and before it advances the commit watch.
    pub fn extend(&self, previous: u64, last: u64, frames: Vec<Frame>) {
        let mut ring = self.ring.write().expect("tail lock");
        match ring.range {
            Some((after, covered)) if covered == previous => ring.range = Some((after, last)),
            // Empty, or a commit went by unrecorded: start afresh so the
            // invariant holds.
            _ => {
                ring.frames.clear();
                ring.bytes = 0;
                ring.range = Some((previous, last));
            }
        }
        for frame in frames {
            ring.bytes += frame.bytes.len();
            ring.frames.push_back(frame);
        }
        while ring.frames.len() > self.limits.events_max || ring.bytes > self.limits.bytes_max {
            let oldest = ring
                .frames
                .pop_front()
                .expect("over a limit means not empty");
            ring.bytes -= oldest.bytes.len();
            if let Some((after, _)) = ring.range.as_mut() {
                *after = oldest.seq;
            }
        }
    }

    /// Empties the tail (nobody watches).
    pub fn clear(&self) {
        let mut ring = self.ring.write().expect("tail lock");
        *ring = Ring::default();
    }

    /// Up to `max` events after `cursor`, keeping those whose topic passes
    /// `wanted`.
    pub fn read(&self, cursor: u64, max: usize, wanted: impl Fn(&str) -> bool) -> TailRead {
        let ring = self.ring.read().expect("tail lock");
        let Some((after, covered)) = ring.range else {
            return TailRead::Behind;
        };
        if cursor < after {
            return TailRead::Behind;
        }
        let start = ring.frames.partition_point(|frame| frame.seq <= cursor);
        let mut frames = Vec::new();
        // Past the last frame the tail still vouches for everything up to
        // `covered` (a commit of duplicates adds no frame).
        let mut next = cursor.max(covered);
        let mut last_examined = cursor;
        for (examined, frame) in ring.frames.range(start..).enumerate() {
            if examined == max {
                next = last_examined;
                break;
            }
            last_examined = frame.seq;
            if wanted(&frame.topic) {
                frames.push(frame.bytes.clone());
            }
        }
        TailRead::Frames {
            frames,
            cursor: next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn frame(seq: u64, topic: &str) -> Frame {
        let payload = RawValue::from_string("{}".to_owned()).expect("json");
        Frame::new(&EventView {
            seq,
            topic,
            event_id: "e",
            timestamp: "t",
            source: "s",
            payload: &payload,
            received_at: "r",
        })
    }

    fn seqs(read: TailRead) -> (Vec<String>, u64) {
        match read {
            TailRead::Behind => panic!("expected frames"),
            TailRead::Frames { frames, cursor } => (
                frames
                    .iter()
                    .map(|f| {
                        String::from_utf8_lossy(f)
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect(),
                cursor,
            ),
        }
    }

    #[test]
    fn frames_are_one_sse_message_each() {
        let frame = frame(7, "a");
        assert_eq!(
            &frame.bytes[..],
            br#"id: 7
data: {"seq":7,"topic":"a","event_id":"e","timestamp":"t","source":"s","payload":{},"received_at":"r"}

"#
        );
    }

    #[test]
    fn reads_follow_the_cursor_and_the_filter() {
        let tail = Tail::new(TailLimits::DEFAULT);
        assert!(matches!(tail.read(0, 10, |_| true), TailRead::Behind));
        tail.extend(10, 13, vec![frame(11, "a"), frame(12, "b"), frame(13, "a")]);
        assert!(matches!(tail.read(9, 10, |_| true), TailRead::Behind));
        assert_eq!(
            seqs(tail.read(10, 10, |t| t == "a")),
            (vec!["id: 11".into(), "id: 13".into()], 13)
        );
        assert_eq!(
            seqs(tail.read(11, 1, |_| true)),
            (vec!["id: 12".into()], 12)
        );
        assert_eq!(seqs(tail.read(13, 10, |_| true)), (vec![], 13));
        // A commit of duplicates only moves nothing but keeps coverage.
        tail.extend(13, 13, vec![]);
        tail.extend(13, 14, vec![frame(14, "a")]);
        assert_eq!(
            seqs(tail.read(13, 10, |_| true)),
            (vec!["id: 14".into()], 14)
        );
    }

    #[test]
    fn a_gap_restarts_the_tail() {
        let tail = Tail::new(TailLimits::DEFAULT);
        tail.extend(0, 2, vec![frame(1, "a"), frame(2, "a")]);
        tail.extend(5, 6, vec![frame(6, "a")]);
        assert!(matches!(tail.read(2, 10, |_| true), TailRead::Behind));
        assert_eq!(seqs(tail.read(5, 10, |_| true)), (vec!["id: 6".into()], 6));
    }

    #[test]
    fn the_oldest_frames_are_evicted_past_the_limit() {
        let tail = Tail::new(TailLimits {
            events_max: 2,
            bytes_max: usize::MAX,
        });
        tail.extend(0, 3, vec![frame(1, "a"), frame(2, "a"), frame(3, "a")]);
        assert!(matches!(tail.read(0, 10, |_| true), TailRead::Behind));
        assert_eq!(seqs(tail.read(1, 10, |_| true)).0.len(), 2);
        tail.clear();
        assert!(matches!(tail.read(3, 10, |_| true), TailRead::Behind));
    }
}
