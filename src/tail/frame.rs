//! Server-Sent Events framing of committed events: each event becomes one
//! `id: <seq>` / `data: <event JSON>` message, written once into shared
//! blocks by the [`Framer`] so that many subscribers can send slices of the
//! same bytes.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::store::EventView;

/// The size at which a block of frames is closed and a new one begun.
pub const BLOCK_BYTES: usize = 64 * 1024;

/// One committed event as a ready-to-send SSE frame ([`write_frame`]), at
/// `range` in a block shared with its neighbours.
#[derive(Debug, Clone)]
pub struct Frame {
    pub(super) seq: u64,
    pub(super) topic: Box<str>,
    pub(super) block: Bytes,
    pub(super) range: Range<usize>,
}

impl Frame {
    /// The frame's bytes.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> Bytes {
        self.block.slice(self.range.clone())
    }

    pub(super) fn len(&self) -> usize {
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
