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
//! Frames are written one after another into shared blocks of up to
//! [`BLOCK_BYTES`], so a subscriber that wants a run of consecutive frames
//! (everyone following `>`) sends one slice of a block, shared by all
//! subscribers, instead of copying each frame. A short run is copied
//! instead, so a subscriber that stops reading never pins a block much
//! larger than what it has in flight.
//!
//! Invariant: the tail holds *every* event with `after < seq <= covered`, in
//! `seq` order. The consumer keeps it only while someone subscribes
//! ([`Tail::watch`]); otherwise it is empty and costs nothing.

use std::collections::VecDeque;
use std::ops::Range;
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

/// The size at which a block of frames is closed and a new one begun.
pub const BLOCK_BYTES: usize = 64 * 1024;

/// Runs shorter than this are copied rather than shared, so what a reader
/// holds pins at most four times its own size.
const SHARE_MIN: usize = BLOCK_BYTES / 4;

/// One committed event as a ready-to-send SSE frame ([`write_frame`]), at
/// `range` in a block shared with its neighbours.
#[derive(Debug, Clone)]
pub struct Frame {
    seq: u64,
    topic: Box<str>,
    block: Bytes,
    range: Range<usize>,
}

impl Frame {
    /// The frame's bytes.
    #[cfg(test)]
    fn bytes(&self) -> Bytes {
        self.block.slice(self.range.clone())
    }

    fn len(&self) -> usize {
        self.range.len()
    }
}

/// Appends `event` to `buf` as one SSE message: `id: <seq>\ndata: <event
/// JSON>\n\n`, the JSON shaped as in `/events`.
pub fn write_frame(buf: &mut BytesMut, event: &EventView<'_>) {
    buf.reserve(96 + event.payload.get().len());
    buf.put_slice(b"id: ");
    buf.put_slice(event.seq.to_string().as_bytes());
    buf.put_slice(b"\ndata: ");
    // Compact JSON has no newline, so the event is one `data:` line.
    serde_json::to_writer((&mut *buf).writer(), event).expect("events serialize to memory");
    buf.put_slice(b"\n\n");
}

/// Frames events in order into blocks of about [`BLOCK_BYTES`].
#[derive(Debug, Default)]
pub struct Framer {
    block: BytesMut,
    /// `(seq, topic, range)` of the frames in `block`.
    open: Vec<(u64, Box<str>, Range<usize>)>,
    frames: Vec<Frame>,
}

impl Framer {
    /// Appends one event's frame.
    pub fn push(&mut self, event: &EventView<'_>) {
        let start = self.block.len();
        write_frame(&mut self.block, event);
        let end = self.block.len();
        self.open.push((event.seq, event.topic.into(), start..end));
        if end >= BLOCK_BYTES {
            self.close_block();
        }
    }

    /// The frames pushed so far, in order.
    pub fn finish(mut self) -> Vec<Frame> {
        self.close_block();
        self.frames
    }

    fn close_block(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let block = std::mem::take(&mut self.block).freeze();
        self.frames
            .extend(self.open.drain(..).map(|(seq, topic, range)| Frame {
                seq,
                topic,
                block: block.clone(),
                range,
            }));
    }
}

/// What [`Tail::read`] found.
#[derive(Debug)]
pub enum TailRead {
    /// The cursor is older than the tail: read the store instead.
    Behind,
    /// The matching frames after the cursor (`events` of them, possibly
    /// none) in as few buffers as may be shared, and the cursor to continue
    /// from.
    Frames {
        chunks: Vec<Bytes>,
        events: usize,
        cursor: u64,
    },
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
            ring.bytes += frame.len();
            ring.frames.push_back(frame);
        }
        while ring.frames.len() > self.limits.events_max || ring.bytes > self.limits.bytes_max {
            let oldest = ring
                .frames
                .pop_front()
                .expect("over a limit means not empty");
            ring.bytes -= oldest.len();
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
        let mut chunks = Chunks::default();
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
                chunks.push(frame);
            }
        }
        let (chunks, events) = chunks.finish();
        TailRead::Frames {
            chunks,
            events,
            cursor: next,
        }
    }
}

/// Gathers frames for one reader: consecutive frames of one block become a
/// single shared slice when long enough, and short runs are copied.
#[derive(Default)]
struct Chunks<'a> {
    done: Vec<Bytes>,
    copied: BytesMut,
    run: Option<(&'a Bytes, Range<usize>)>,
    events: usize,
}

impl<'a> Chunks<'a> {
    fn push(&mut self, frame: &'a Frame) {
        self.events += 1;
        if let Some((block, run)) = &mut self.run
            && block.as_ptr() == frame.block.as_ptr()
            && run.end == frame.range.start
        {
            run.end = frame.range.end;
            return;
        }
        self.end_run();
        self.run = Some((&frame.block, frame.range.clone()));
    }

    fn end_run(&mut self) {
        let Some((block, run)) = self.run.take() else {
            return;
        };
        if run.len() < SHARE_MIN {
            self.copied.put_slice(&block[run]);
            return;
        }
        if !self.copied.is_empty() {
            self.done.push(self.copied.split().freeze());
        }
        self.done.push(block.slice(run));
    }

    fn finish(mut self) -> (Vec<Bytes>, usize) {
        self.end_run();
        if !self.copied.is_empty() {
            self.done.push(self.copied.freeze());
        }
        (self.done, self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    /// Frames `(seq, topic)` pairs, each event with `payload_bytes` of payload.
    fn framed(events: &[(u64, &str)], payload_bytes: usize) -> Vec<Frame> {
        let payload =
            RawValue::from_string(format!("\"{}\"", "x".repeat(payload_bytes))).expect("json");
        let mut framer = Framer::default();
        for &(seq, topic) in events {
            framer.push(&EventView {
                seq,
                topic,
                event_id: "e",
                timestamp: "t",
                source: "s",
                payload: &payload,
                received_at: "r",
            });
        }
        framer.finish()
    }

    fn frames(events: &[(u64, &str)]) -> Vec<Frame> {
        framed(events, 0)
    }

    /// The `id:` lines of what a read returned, and its cursor.
    fn seqs(read: TailRead) -> (Vec<String>, u64) {
        match read {
            TailRead::Behind => panic!("expected frames"),
            TailRead::Frames {
                chunks,
                events,
                cursor,
            } => {
                let ids: Vec<String> = chunks
                    .iter()
                    .flat_map(|chunk| {
                        String::from_utf8_lossy(chunk)
                            .lines()
                            .filter(|line| line.starts_with("id: "))
                            .map(str::to_owned)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                assert_eq!(ids.len(), events, "events counts the frames");
                (ids, cursor)
            }
        }
    }

    #[test]
    fn frames_are_one_sse_message_each() {
        let frames = frames(&[(7, "a"), (8, "b")]);
        assert_eq!(
            &frames[0].bytes()[..],
            br#"id: 7
data: {"seq":7,"topic":"a","event_id":"e","timestamp":"t","source":"s","payload":"","received_at":"r"}

"#
        );
        assert!(
            frames[1]
                .bytes()
                .starts_with(b"id: 8\ndata: {\"seq\":8,\"topic\":\"b\"")
        );
    }

    #[test]
    fn reads_follow_the_cursor_and_the_filter() {
        let tail = Tail::new(TailLimits::DEFAULT);
        assert!(matches!(tail.read(0, 10, |_| true), TailRead::Behind));
        tail.extend(10, 13, frames(&[(11, "a"), (12, "b"), (13, "a")]));
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
        tail.extend(13, 14, frames(&[(14, "a")]));
        assert_eq!(
            seqs(tail.read(13, 10, |_| true)),
            (vec!["id: 14".into()], 14)
        );
    }

    #[test]
    fn a_gap_restarts_the_tail() {
        let tail = Tail::new(TailLimits::DEFAULT);
        tail.extend(0, 2, frames(&[(1, "a"), (2, "a")]));
        tail.extend(5, 6, frames(&[(6, "a")]));
        assert!(matches!(tail.read(2, 10, |_| true), TailRead::Behind));
        assert_eq!(seqs(tail.read(5, 10, |_| true)), (vec!["id: 6".into()], 6));
    }

    #[test]
    fn the_oldest_frames_are_evicted_past_the_limit() {
        let tail = Tail::new(TailLimits {
            events_max: 2,
            bytes_max: usize::MAX,
        });
        tail.extend(0, 3, frames(&[(1, "a"), (2, "a"), (3, "a")]));
        assert!(matches!(tail.read(0, 10, |_| true), TailRead::Behind));
        assert_eq!(seqs(tail.read(1, 10, |_| true)).0.len(), 2);
        tail.clear();
        assert!(matches!(tail.read(3, 10, |_| true), TailRead::Behind));
    }

    #[test]
    fn long_runs_are_shared_and_short_ones_copied() {
        // 600 frames of about 400 bytes: four blocks.
        let events: Vec<(u64, &str)> = (1..=600)
            .map(|seq| (seq, if seq % 2 == 0 { "even" } else { "odd" }))
            .collect();
        let frames = framed(&events, 300);
        let blocks = frames
            .windows(2)
            .filter(|pair| pair[0].block.as_ptr() != pair[1].block.as_ptr())
            .count()
            + 1;
        assert_eq!(blocks, 4, "blocks close at BLOCK_BYTES");
        let whole: Vec<u8> = frames.iter().flat_map(|f| f.bytes().to_vec()).collect();
        let first = frames[0].bytes();
        let tail = Tail::new(TailLimits::DEFAULT);
        tail.extend(0, 600, frames.clone());

        // Everything: one slice per block, the first one not copied.
        let TailRead::Frames { chunks, events, .. } = tail.read(0, 1_000, |_| true) else {
            panic!("expected frames");
        };
        assert_eq!(events, 600);
        assert!(chunks.len() <= blocks, "{} chunks", chunks.len());
        assert_eq!(chunks[0].as_ptr(), first.as_ptr(), "shared, not copied");
        assert_eq!(chunks.concat(), whole);

        // Every other frame: runs of one frame, copied into one buffer.
        let TailRead::Frames { chunks, events, .. } = tail.read(0, 1_000, |t| t == "even") else {
            panic!("expected frames");
        };
        assert_eq!((events, chunks.len()), (300, 1));
        let evens: Vec<u8> = frames
            .iter()
            .filter(|f| f.seq % 2 == 0)
            .flat_map(|f| f.bytes().to_vec())
            .collect();
        assert_eq!(chunks[0], evens);
    }
}
