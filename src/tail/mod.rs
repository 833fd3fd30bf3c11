//! The tail: what has been committed, for live subscribers. It holds the
//! newest committed `seq` (a watch that subscribers wait on) and the most
//! recently committed events, already framed as Server-Sent Events.
//!
//! Without the frames, every subscriber queried the store and serialized
//! each event itself after every commit: with 100 subscribers on two cores,
//! publishing fell to 1% of its rate (docs/performance.md). With them, each
//! new event is framed once, and a subscriber that is caught up copies
//! frames out of memory. The store stays the source of truth: a subscriber
//! whose cursor is older than the tail reads the store, so nothing is lost
//! when it falls behind; the tail only saves work.
//!
//! Commits reach the tail through [`Tail::announce`]: from the ingest
//! consumer for its own commits, and, when other replicas write to the same
//! store, from a task that reads their commits back from the store. A commit
//! is announced with the `seq` range it covers; announcing a range that is
//! already covered, in whole or in part, is harmless, so both sources may
//! race.
//!
//! Frames are written one after another into shared blocks of up to
//! [`BLOCK_BYTES`] (`frame.rs`), so a subscriber that wants a run of
//! consecutive frames (everyone following `>`) sends one slice of a block,
//! shared by all subscribers, instead of copying each frame. A short run is
//! copied instead, so a subscriber that stops reading never pins a block
//! much larger than what it has in flight.
//!
//! Invariant: the frames are *every* event with `after < seq <= covered`, in
//! `seq` order. They are kept only while someone subscribes (an
//! [`Interest`] is held); otherwise the ring is empty and costs nothing.

mod frame;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::watch;

pub use frame::{BLOCK_BYTES, Frame, Framer, write_frame};

/// Bounds on what the tail holds; the oldest frames go first.
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

/// Runs shorter than this are copied rather than shared, so what a reader
/// holds pins at most four times its own size.
const SHARE_MIN: usize = BLOCK_BYTES / 4;

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
    interested: Arc<AtomicUsize>,
    /// The newest committed `seq`.
    newest: watch::Sender<u64>,
}

/// Keeps the tail's frames filled while held; one per subscriber.
#[derive(Debug)]
pub struct Interest(Arc<AtomicUsize>);

impl Drop for Interest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Tail {
    /// An empty tail whose newest committed `seq` is `newest`.
    pub fn new(limits: TailLimits, newest: u64) -> Self {
        Self {
            ring: RwLock::default(),
            limits,
            interested: Arc::default(),
            newest: watch::Sender::new(newest),
        }
    }

    /// The newest committed `seq` announced so far.
    pub fn newest(&self) -> u64 {
        *self.newest.borrow()
    }

    /// A receiver of the newest committed `seq`, to wait for commits on.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.newest.subscribe()
    }

    /// Asks for frames to be kept until the guard is dropped.
    pub fn interest(&self) -> Interest {
        self.interested.fetch_add(1, Ordering::Relaxed);
        Interest(Arc::clone(&self.interested))
    }

    /// Whether anyone subscribes, so announced commits should be framed.
    pub fn is_wanted(&self) -> bool {
        self.interested.load(Ordering::Relaxed) > 0
    }

    /// Records a commit: the events with `previous < seq <= last`, framed by
    /// `frames` (called only while [`is_wanted`](Self::is_wanted)), then
    /// moves the newest committed `seq` on to `last`, waking subscribers,
    /// who then find the frames in place.
    pub fn announce(&self, previous: u64, last: u64, frames: impl FnOnce() -> Vec<Frame>) {
        if self.is_wanted() {
            self.extend(previous, last, frames());
        } else {
            self.clear();
        }
        self.newest.send_if_modified(|newest| {
            let advanced = last > *newest;
            *newest = (*newest).max(last);
            advanced
        });
    }

    /// Adds the frames of `previous < seq <= last`, skipping any the ring
    /// already covers.
    fn extend(&self, previous: u64, last: u64, frames: Vec<Frame>) {
        let mut ring = self.ring.write().expect("tail lock");
        let covered = match ring.range {
            Some((_, covered)) if last <= covered => return,
            Some((after, covered)) if previous <= covered => {
                ring.range = Some((after, last));
                covered
            }
            // Empty, or commits went by unrecorded: start afresh so the
            // invariant holds.
            _ => {
                ring.frames.clear();
                ring.bytes = 0;
                ring.range = Some((previous, last));
                previous
            }
        };
        for frame in frames.into_iter().filter(|frame| frame.seq > covered) {
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

    /// Empties the ring (nobody subscribes).
    fn clear(&self) {
        let mut ring = self.ring.write().expect("tail lock");
        if ring.range.is_some() {
            *ring = Ring::default();
        }
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

    use crate::store::EventView;

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
        let tail = Tail::new(TailLimits::DEFAULT, 0);
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
        let tail = Tail::new(TailLimits::DEFAULT, 0);
        tail.extend(0, 2, frames(&[(1, "a"), (2, "a")]));
        tail.extend(5, 6, frames(&[(6, "a")]));
        assert!(matches!(tail.read(2, 10, |_| true), TailRead::Behind));
        assert_eq!(seqs(tail.read(5, 10, |_| true)), (vec!["id: 6".into()], 6));
    }

    #[test]
    fn the_oldest_frames_are_evicted_past_the_limit() {
        let tail = Tail::new(
            TailLimits {
                events_max: 2,
                bytes_max: usize::MAX,
            },
            0,
        );
        tail.extend(0, 3, frames(&[(1, "a"), (2, "a"), (3, "a")]));
        assert!(matches!(tail.read(0, 10, |_| true), TailRead::Behind));
        assert_eq!(seqs(tail.read(1, 10, |_| true)).0.len(), 2);
        tail.clear();
        assert!(matches!(tail.read(3, 10, |_| true), TailRead::Behind));
    }

    #[test]
    fn overlapping_announcements_are_recorded_once() {
        let tail = Tail::new(TailLimits::DEFAULT, 0);
        let _interest = tail.interest();
        let mut commits = tail.commits();
        tail.announce(0, 2, || frames(&[(1, "a"), (2, "a")]));
        assert_eq!(*commits.borrow_and_update(), 2);
        // The same commit again, then one that overlaps it: each event once.
        tail.announce(0, 2, || frames(&[(1, "a"), (2, "a")]));
        tail.announce(1, 3, || frames(&[(2, "a"), (3, "a")]));
        assert_eq!(
            seqs(tail.read(0, 10, |_| true)),
            (vec!["id: 1".into(), "id: 2".into(), "id: 3".into()], 3)
        );
        // A late, older announcement never moves the newest seq back.
        tail.announce(1, 2, Vec::new);
        assert_eq!(tail.newest(), 3);
        assert!(commits.has_changed().expect("sender alive"));
    }

    #[test]
    fn nothing_is_framed_while_nobody_subscribes() {
        let tail = Tail::new(TailLimits::DEFAULT, 5);
        tail.announce(5, 6, || panic!("framed without a subscriber"));
        assert_eq!(tail.newest(), 6);
        let interest = tail.interest();
        tail.announce(6, 7, || frames(&[(7, "a")]));
        assert_eq!(seqs(tail.read(6, 10, |_| true)).0.len(), 1);
        drop(interest);
        tail.announce(7, 8, || panic!("framed without a subscriber"));
        assert!(matches!(tail.read(7, 10, |_| true), TailRead::Behind));
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
        let tail = Tail::new(TailLimits::DEFAULT, 0);
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
