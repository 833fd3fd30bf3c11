//! The keydir: the embedded store's in-memory index from the hash of each
//! stored key `(topic, event_id)` to its `seq`, and its snapshot file.
//!
//! It answers one question fast: which stored events *might* have this key?
//! Each answer is a short list of candidate `seq`s that the caller must
//! check against the stored rows, so a hash collision costs one more read
//! and never a wrong answer. What makes a miss trustworthy is completeness,
//! which the store guarantees, not this module: the keydir is built from the
//! durable `(seq, hash)` pairs at open, checked against the durable count of
//! keys, and then only ever given keys whose commit has succeeded.
//!
//! # Layout
//!
//! 256 shards (picked by the top 8 bits of the hash), each an open-addressing
//! table with linear probing of 8-byte slots: a 24-bit tag from the low bits
//! of the hash and a 40-bit `seq`; 0 is an empty slot (`seq` starts at 1).
//! The tag also places the slot, so a shard can grow without the full hash.
//! A shard doubles when it is 3/4 full, so a key costs 10.7 to 21.3 bytes,
//! plus, for the moment one shard grows, its old table (1/256 of the whole):
//! shards are grown one at a time, which also keeps each pause short.
//!
//! The hash width is a parameter ([`KeyDir::new`]): a test can keep only a
//! few bits of each hash and so make nearly every key collide with another.
//!
//! # Snapshot
//!
//! [`write_snapshot`] copies the shards one at a time (each under a brief
//! read lock) into a file, written to a temporary name, fsynced, and renamed
//! into place; [`read_snapshot`] loads it back, checking its CRC-32 and that
//! it belongs to this store and hash width. A snapshot covers every key with
//! `seq <= covered_seq` and perhaps some newer ones (copied after
//! `covered_seq` was read), so the store replays the keys after
//! `covered_seq` with [`KeyDir::insert`], which ignores a pair it already
//! holds.

use std::fs::File;
use std::hash::Hasher;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::RwLock;

use siphasher::sip::SipHasher13;

/// Bits of `seq` in a slot: seqs up to about 1.1 × 10^12.
const SEQ_BITS: u32 = 40;
/// The largest `seq` the keydir can hold.
pub(crate) const SEQ_MAX: u64 = (1 << SEQ_BITS) - 1;
/// Bits of the hash kept in a slot, which also place it in its shard.
const TAG_BITS: u32 = 64 - SEQ_BITS;
const SHARD_BITS: u32 = 8;
const SHARDS: usize = 1 << SHARD_BITS;
/// Slots of a shard when its first key arrives.
const SHARD_SLOTS_MIN: usize = 16;
/// Slots of a shard at most: its tag bits place at most this many.
const SHARD_SLOTS_MAX: usize = 1 << TAG_BITS;

/// The hash of a key, keyed per store (SipHash-1-3 with 128 random bits kept
/// in the database), so no publisher can choose ids that collide on purpose.
#[derive(Clone)]
pub(crate) struct KeyHasher {
    key: [u8; 16],
}

impl KeyHasher {
    pub(crate) fn new(key: [u8; 16]) -> Self {
        Self { key }
    }

    pub(crate) fn key(&self) -> [u8; 16] {
        self.key
    }

    /// The full 64-bit hash of `(topic, event_id)`; the topic's length goes
    /// first, so no two keys hash the same bytes.
    pub(crate) fn hash(&self, topic: &str, event_id: &str) -> u64 {
        let mut hasher = SipHasher13::new_with_key(&self.key);
        hasher.write_u64(topic.len() as u64);
        hasher.write(topic.as_bytes());
        hasher.write(event_id.as_bytes());
        hasher.finish()
    }
}

/// The most keys the store may hold: its shards then stay below 3/4 full at
/// their largest size (2^24 slots each), however the hashes fall.
pub(crate) const KEYS_MAX: u64 = 3_000_000_000;

/// Hash → candidate `seq`s. See the module docs.
pub(crate) struct KeyDir {
    /// The hash bits kept: the rest of each hash is zeroed before use.
    mask: u64,
    hash_bits: u32,
    shards: Box<[Shard]>,
    len: u64,
}

#[derive(Default)]
struct Shard {
    /// Empty, or a power of two of at least [`SHARD_SLOTS_MIN`] slots.
    slots: Vec<u64>,
    len: usize,
}

impl KeyDir {
    /// An empty keydir keeping the low `hash_bits` (1 to 64) of each hash.
    ///
    /// # Panics
    /// When `hash_bits` is out of range.
    pub(crate) fn new(hash_bits: u32) -> Self {
        assert!(
            (1..=64).contains(&hash_bits),
            "hash width {hash_bits} is not 1 to 64 bits"
        );
        Self {
            mask: u64::MAX >> (64 - hash_bits),
            hash_bits,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            len: 0,
        }
    }

    /// An empty keydir sized for `keys` keys, so loading them does not grow
    /// any shard.
    pub(crate) fn with_capacity(hash_bits: u32, keys: u64) -> Self {
        let mut keydir = Self::new(hash_bits);
        if keys > 0 {
            // The fullest of 256 shards holds a few standard deviations
            // more than the mean.
            let mean = keys as f64 / SHARDS as f64;
            let most = mean + 4.0 * mean.sqrt() + 1.0;
            let slots = ((most * 4.0 / 3.0).ceil() as usize)
                .next_power_of_two()
                .clamp(SHARD_SLOTS_MIN, SHARD_SLOTS_MAX);
            for shard in keydir.shards.iter_mut() {
                shard.slots = vec![0; slots];
            }
        }
        keydir
    }

    /// Distinct `(hash, seq)` pairs held.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Bytes of slot tables allocated.
    pub(crate) fn memory_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.slots.len() * 8).sum()
    }

    /// The `seq` of every held pair whose hash may equal `hash`: all the
    /// pairs with this hash, and rarely (1 in 2^24 per slot probed) another.
    pub(crate) fn candidates(&self, hash: u64) -> Candidates<'_> {
        let (shard, tag) = self.place(hash);
        let slots = &self.shards[shard].slots;
        Candidates {
            slots,
            position: home(tag, slots.len()),
            tag,
            remaining: slots.len(),
        }
    }

    /// Adds the pair; false when it is already held.
    ///
    /// # Panics
    /// When `seq` is 0 or above [`SEQ_MAX`], or a shard is full at its
    /// largest size: the store keeps below [`SEQ_MAX`] and [`KEYS_MAX`].
    pub(crate) fn insert(&mut self, hash: u64, seq: u64) -> bool {
        assert!((1..=SEQ_MAX).contains(&seq), "seq {seq} out of range");
        let (shard, tag) = self.place(hash);
        let added = self.shards[shard].insert(tag << SEQ_BITS | seq);
        self.len += u64::from(added);
        added
    }

    /// Removes the pair (a key forgotten past the dedup horizon); false when
    /// it is not held.
    pub(crate) fn remove(&mut self, hash: u64, seq: u64) -> bool {
        let (shard, tag) = self.place(hash);
        let removed = self.shards[shard].remove(tag << SEQ_BITS | seq);
        self.len -= u64::from(removed);
        removed
    }

    /// Adds many pairs (as [`KeyDir::insert`]), sorted first by where
    /// they go: the table is then walked once in order instead of touched
    /// at random, which is what makes loading millions of keys fast (a
    /// random slot of a large table is a cache and TLB miss each).
    pub(crate) fn insert_all(&mut self, pairs: &mut [(u64, u64)]) {
        pairs.sort_unstable_by_key(|&(hash, _)| {
            let (shard, tag) = self.place(hash);
            (shard as u64) << TAG_BITS | tag
        });
        for &(hash, seq) in pairs.iter() {
            self.insert(hash, seq);
        }
    }

    /// Shard and tag of `hash`, after masking it to the kept width.
    fn place(&self, hash: u64) -> (usize, u64) {
        let hash = hash & self.mask;
        let shard = (hash >> (64 - SHARD_BITS)) as usize;
        (shard, hash & ((1 << TAG_BITS) - 1))
    }
}

/// The slot a tag starts probing from in a table of `slots` (a power of two).
fn home(tag: u64, slots: usize) -> usize {
    if slots == 0 {
        return 0;
    }
    (tag >> (TAG_BITS - slots.trailing_zeros())) as usize
}

impl Shard {
    fn insert(&mut self, entry: u64) -> bool {
        if (self.len + 1) * 4 > self.slots.len() * 3 && self.slots.len() < SHARD_SLOTS_MAX {
            self.grow();
        }
        assert!(
            self.len < self.slots.len(),
            "a keydir shard is full: the store holds more than KEYS_MAX keys"
        );
        let mask = self.slots.len() - 1;
        let mut position = home(entry >> SEQ_BITS, self.slots.len());
        loop {
            match self.slots[position] {
                0 => {
                    self.slots[position] = entry;
                    self.len += 1;
                    return true;
                }
                held if held == entry => return false,
                _ => position = (position + 1) & mask,
            }
        }
    }

    /// Empties the slot of `entry` and shifts the rest of its probe run
    /// back over the hole where their home slot allows (no tombstones), so
    /// every run stays unbroken and lookups still stop at the first empty
    /// slot.
    fn remove(&mut self, entry: u64) -> bool {
        let size = self.slots.len();
        if size == 0 {
            return false;
        }
        let mask = size - 1;
        let mut position = home(entry >> SEQ_BITS, size);
        let mut probed = 0;
        loop {
            match self.slots[position] {
                0 => return false,
                held if held == entry => break,
                _ if probed == size => return false,
                _ => {
                    position = (position + 1) & mask;
                    probed += 1;
                }
            }
        }
        let mut hole = position;
        let mut next = (hole + 1) & mask;
        while next != position {
            let held = self.slots[next];
            if held == 0 {
                break;
            }
            // `held` may fill the hole when the hole lies between its home
            // and where it is now.
            let from_home = next.wrapping_sub(home(held >> SEQ_BITS, size)) & mask;
            let from_hole = next.wrapping_sub(hole) & mask;
            if from_home >= from_hole {
                self.slots[hole] = held;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.slots[hole] = 0;
        self.len -= 1;
        true
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(SHARD_SLOTS_MIN);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        let mask = size - 1;
        for entry in old.into_iter().filter(|&entry| entry != 0) {
            let mut position = home(entry >> SEQ_BITS, size);
            while self.slots[position] != 0 {
                position = (position + 1) & mask;
            }
            self.slots[position] = entry;
        }
    }
}

/// The candidate `seq`s of one hash, in probe order.
pub(crate) struct Candidates<'a> {
    slots: &'a [u64],
    position: usize,
    tag: u64,
    /// Slots left to probe: a full table has no empty slot to stop at.
    remaining: usize,
}

impl Iterator for Candidates<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        while self.remaining > 0 {
            let entry = self.slots[self.position];
            if entry == 0 {
                return None;
            }
            self.position = (self.position + 1) & (self.slots.len() - 1);
            self.remaining -= 1;
            if entry >> SEQ_BITS == self.tag {
                return Some(entry & SEQ_MAX);
            }
        }
        None
    }
}

/// What a snapshot says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotHeader {
    /// The store's hash key: a snapshot of another store is refused.
    pub hash_key: [u8; 16],
    pub hash_bits: u32,
    /// Every key with `seq <= covered_seq` is in the snapshot.
    pub covered_seq: u64,
    /// The full hash of the key stored at `covered_seq` (0 when none), for
    /// the store to check the snapshot against its history.
    pub covered_hash: u64,
}

const MAGIC: &[u8; 8] = b"LGAGKDIR";
const FORMAT_VERSION: u32 = 1;
/// Slots converted per write or read call.
const CHUNK_SLOTS: usize = 64 * 1024;

/// Writes a snapshot of `keydir` to `path`, atomically: to `path` + `.tmp`,
/// fsynced, then renamed over `path` and the directory fsynced. Each shard
/// is copied under a brief read lock, so commits go on meanwhile; the
/// caller must have read `header.covered_seq` *before* calling, so that
/// every key up to it is already in the keydir.
///
/// # Errors
/// Any I/O error; `path` is then left as it was.
pub(crate) fn write_snapshot(
    path: &Path,
    header: &SnapshotHeader,
    keydir: &RwLock<KeyDir>,
) -> io::Result<()> {
    let temporary = temporary_path(path);
    let file = File::create(&temporary)?;
    let mut out = Checksummed::new(BufWriter::with_capacity(1 << 20, file));
    out.write_all(MAGIC)?;
    out.write_all(&FORMAT_VERSION.to_le_bytes())?;
    out.write_all(&header.hash_bits.to_le_bytes())?;
    out.write_all(&header.hash_key)?;
    out.write_all(&header.covered_seq.to_le_bytes())?;
    out.write_all(&header.covered_hash.to_le_bytes())?;
    out.write_all(&(SHARDS as u32).to_le_bytes())?;
    let mut copy: Vec<u64> = Vec::new();
    let mut bytes: Vec<u8> = Vec::with_capacity(CHUNK_SLOTS * 8);
    for shard in 0..SHARDS {
        {
            let keydir = keydir.read().expect("keydir lock");
            assert_eq!(
                keydir.hash_bits, header.hash_bits,
                "snapshot of another width"
            );
            copy.clear();
            copy.extend_from_slice(&keydir.shards[shard].slots);
        }
        out.write_all(&(copy.len() as u64).to_le_bytes())?;
        for chunk in copy.chunks(CHUNK_SLOTS) {
            bytes.clear();
            bytes.extend(chunk.iter().flat_map(|slot| slot.to_le_bytes()));
            out.write_all(&bytes)?;
        }
    }
    let crc = out.crc.clone().finalize();
    let mut file = out
        .inner
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    file.write_all(&crc.to_le_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    sync_directory(path)
}

/// Reads the snapshot at `path`: `Ok(None)` when there is none.
///
/// # Errors
/// `InvalidData` when it is damaged, of another format, another store
/// (`hash_key`) or another hash width; other I/O errors as they come.
pub(crate) fn read_snapshot(
    path: &Path,
    hash_key: [u8; 16],
    hash_bits: u32,
) -> io::Result<Option<(SnapshotHeader, KeyDir)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut input = Checksummed::new(BufReader::with_capacity(1 << 20, file));
    let mut magic = [0; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC || input.u32()? != FORMAT_VERSION {
        return Err(invalid("not a keydir snapshot of this format"));
    }
    let header = SnapshotHeader {
        hash_bits: input.u32()?,
        hash_key: {
            let mut key = [0; 16];
            input.read_exact(&mut key)?;
            key
        },
        covered_seq: input.u64()?,
        covered_hash: input.u64()?,
    };
    if header.hash_key != hash_key {
        return Err(invalid("the snapshot belongs to another store"));
    }
    if header.hash_bits != hash_bits {
        return Err(invalid("the snapshot has another hash width"));
    }
    if input.u32()? as usize != SHARDS {
        return Err(invalid("the snapshot has another number of shards"));
    }
    let mut keydir = KeyDir::new(hash_bits);
    let mut bytes = vec![0; CHUNK_SLOTS * 8];
    for shard in keydir.shards.iter_mut() {
        let slots = usize::try_from(input.u64()?).unwrap_or(usize::MAX);
        let valid_size = slots == 0
            || (slots.is_power_of_two() && (SHARD_SLOTS_MIN..=SHARD_SLOTS_MAX).contains(&slots));
        if !valid_size {
            return Err(invalid("a shard of the snapshot has an impossible size"));
        }
        shard.slots.reserve_exact(slots);
        while shard.slots.len() < slots {
            let take = (slots - shard.slots.len()).min(CHUNK_SLOTS);
            input.read_exact(&mut bytes[..take * 8])?;
            shard.slots.extend(
                bytes[..take * 8]
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8-byte chunk"))),
            );
        }
        shard.len = shard.slots.iter().filter(|&&slot| slot != 0).count();
        keydir.len += shard.len as u64;
    }
    let computed = input.crc.clone().finalize();
    let mut stored = [0; 4];
    input.inner.read_exact(&mut stored)?;
    if u32::from_le_bytes(stored) != computed {
        return Err(invalid("the snapshot's checksum does not match"));
    }
    if input.inner.read(&mut [0])? != 0 {
        return Err(invalid("the snapshot has trailing bytes"));
    }
    Ok(Some((header, keydir)))
}

/// Where [`write_snapshot`] writes before the rename.
pub(crate) fn temporary_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    name.into()
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Makes a rename in `path`'s directory durable.
fn sync_directory(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// A reader or writer that keeps a CRC-32 of the bytes through it.
struct Checksummed<T> {
    inner: T,
    crc: crc32fast::Hasher,
}

impl<T> Checksummed<T> {
    fn new(inner: T) -> Self {
        Self {
            inner,
            crc: crc32fast::Hasher::new(),
        }
    }
}

impl<T: Read> Checksummed<T> {
    fn u32(&mut self) -> io::Result<u32> {
        let mut bytes = [0; 4];
        self.read_exact(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn u64(&mut self) -> io::Result<u64> {
        let mut bytes = [0; 8];
        self.read_exact(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
}

impl<T: Read> Read for Checksummed<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.crc.update(&buf[..read]);
        Ok(read)
    }
}

impl<T: Write> Write for Checksummed<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.crc.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use proptest::prelude::*;

    use super::*;

    fn candidates(keydir: &KeyDir, hash: u64) -> BTreeSet<u64> {
        keydir.candidates(hash).collect()
    }

    #[test]
    fn every_inserted_pair_is_a_candidate_of_its_hash() {
        let hasher = KeyHasher::new([7; 16]);
        let mut keydir = KeyDir::new(64);
        let hashes: Vec<u64> = (0..50_000)
            .map(|i| hasher.hash("t", &i.to_string()))
            .collect();
        for (seq, &hash) in (1..).zip(&hashes) {
            assert!(keydir.insert(hash, seq));
        }
        assert_eq!(keydir.len(), 50_000);
        for (seq, &hash) in (1..).zip(&hashes) {
            assert!(candidates(&keydir, hash).contains(&seq), "seq {seq}");
        }
        // A full 64-bit hash leaves nearly no false candidates.
        let strangers = (0..10_000)
            .filter(|i| keydir.candidates(hasher.hash("u", &i.to_string())).count() > 0)
            .count();
        assert!(strangers < 5, "{strangers} unknown keys had candidates");
        // 50,000 keys fit in 10.7 to 21.3 bytes each.
        let per_key = keydir.memory_bytes() as f64 / 50_000.0;
        assert!((10.0..=22.0).contains(&per_key), "{per_key} bytes per key");
    }

    #[test]
    fn inserting_in_bulk_holds_the_same_pairs_as_one_by_one() {
        let hasher = KeyHasher::new([9; 16]);
        let mut pairs: Vec<(u64, u64)> = (1..=20_000u64)
            .map(|seq| (hasher.hash("t", &(seq % 15_000).to_string()), seq))
            .collect();
        let mut one_by_one = KeyDir::new(64);
        for &(hash, seq) in &pairs {
            one_by_one.insert(hash, seq);
        }
        let mut bulk = KeyDir::new(64);
        bulk.insert_all(&mut pairs.clone());
        bulk.insert_all(&mut pairs);
        assert_eq!(bulk.len(), one_by_one.len());
        for &(hash, seq) in &pairs {
            assert!(candidates(&bulk, hash).contains(&seq));
        }
    }

    #[test]
    fn inserting_a_held_pair_again_changes_nothing() {
        let mut keydir = KeyDir::new(64);
        assert!(keydir.insert(42, 1));
        assert!(!keydir.insert(42, 1));
        assert!(keydir.insert(42, 2));
        assert_eq!(keydir.len(), 2);
        assert_eq!(candidates(&keydir, 42), BTreeSet::from([1, 2]));
    }

    #[test]
    fn a_sized_keydir_does_not_grow_while_loading() {
        let mut keydir = KeyDir::with_capacity(64, 100_000);
        let before = keydir.memory_bytes();
        let hasher = KeyHasher::new([1; 16]);
        for seq in 1..=100_000u64 {
            keydir.insert(hasher.hash("t", &seq.to_string()), seq);
        }
        assert_eq!(keydir.memory_bytes(), before);
    }

    #[test]
    fn a_tiny_hash_width_makes_keys_collide_but_loses_none() {
        let mut keydir = KeyDir::new(2);
        for seq in 1..=100u64 {
            keydir.insert(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15), seq);
        }
        // Four hash values in all: each key shares its hash with ~25 others.
        let all: BTreeSet<u64> = (0..4).flat_map(|h| candidates(&keydir, h)).collect();
        assert_eq!(all, (1..=100).collect());
        assert!(candidates(&keydir, 0).len() >= 10);
    }

    #[test]
    fn a_snapshot_reads_back_as_it_was_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("keydir.snapshot");
        let hasher = KeyHasher::new([3; 16]);
        let mut keydir = KeyDir::new(64);
        for seq in 1..=20_000u64 {
            keydir.insert(hasher.hash("t", &seq.to_string()), seq);
        }
        let header = SnapshotHeader {
            hash_key: hasher.key(),
            hash_bits: 64,
            covered_seq: 20_000,
            covered_hash: hasher.hash("t", "20000"),
        };
        let keydir = RwLock::new(keydir);
        write_snapshot(&path, &header, &keydir).expect("write");
        assert!(!temporary_path(&path).exists());
        let (read_header, read) = read_snapshot(&path, hasher.key(), 64)
            .expect("read")
            .expect("present");
        assert_eq!(read_header, header);
        let keydir = keydir.read().expect("lock");
        assert_eq!(read.len(), keydir.len());
        for (a, b) in read.shards.iter().zip(keydir.shards.iter()) {
            assert_eq!(a.slots, b.slots);
        }

        // Another store's key, another width, a flipped byte, a cut file.
        let error = |r: io::Result<Option<(SnapshotHeader, KeyDir)>>| r.err().map(|e| e.kind());
        assert_eq!(
            error(read_snapshot(&path, [4; 16], 64)),
            Some(io::ErrorKind::InvalidData)
        );
        assert_eq!(
            error(read_snapshot(&path, hasher.key(), 63)),
            Some(io::ErrorKind::InvalidData)
        );
        let mut bytes = std::fs::read(&path).expect("read file");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(&path, &bytes).expect("write file");
        assert_eq!(
            error(read_snapshot(&path, hasher.key(), 64)),
            Some(io::ErrorKind::InvalidData)
        );
        bytes[middle] ^= 0x10;
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("write file");
        assert!(read_snapshot(&path, hasher.key(), 64).is_err());
        assert!(
            read_snapshot(&dir.path().join("none"), hasher.key(), 64)
                .expect("no file is no error")
                .is_none()
        );
    }

    proptest! {
        /// Against a plain map of hash -> seqs, for any width: the keydir's
        /// candidates of a hash always include every seq inserted with it.
        #[test]
        fn candidates_include_every_pair_of_the_hash(
            bits in 1u32..=64,
            pairs in prop::collection::vec((any::<u64>(), 1u64..=SEQ_MAX), 1..400),
        ) {
            let mut keydir = KeyDir::new(bits);
            let mask = u64::MAX >> (64 - bits);
            let mut model: HashMap<u64, BTreeSet<u64>> = HashMap::new();
            for &(hash, seq) in &pairs {
                let fresh = model.entry(hash & mask).or_default().insert(seq);
                prop_assert_eq!(keydir.insert(hash, seq), fresh);
            }
            prop_assert_eq!(keydir.len(), model.values().map(|s| s.len() as u64).sum::<u64>());
            for (hash, seqs) in &model {
                let found = candidates(&keydir, *hash);
                prop_assert!(found.is_superset(seqs), "{:?} not in {:?}", seqs, found);
            }
        }

        /// Removing pairs (forgotten keys) leaves every other pair findable
        /// and the removed ones gone, however the probe runs overlap.
        #[test]
        fn removing_pairs_keeps_every_other_pair_findable(
            bits in 1u32..=64,
            pairs in prop::collection::vec((any::<u64>(), 1u64..=SEQ_MAX), 1..400),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..300),
        ) {
            let mut keydir = KeyDir::new(bits);
            let mask = u64::MAX >> (64 - bits);
            let mut model: BTreeSet<(u64, u64)> = BTreeSet::new();
            for &(hash, seq) in &pairs {
                keydir.insert(hash, seq);
                model.insert((hash & mask, seq));
            }
            for index in removals {
                let &(hash, seq) = index.get(&pairs);
                let held = model.remove(&(hash & mask, seq));
                prop_assert_eq!(keydir.remove(hash, seq), held);
            }
            prop_assert_eq!(keydir.len(), model.len() as u64);
            for &(hash, seq) in &model {
                prop_assert!(candidates(&keydir, hash).contains(&seq));
            }
            for &(hash, seq) in &pairs {
                // Gone, unless another held pair (whose hash may share the
                // tag) has the same seq.
                if !model.iter().any(|&(_, held)| held == seq) {
                    prop_assert!(!candidates(&keydir, hash).contains(&seq));
                }
            }
        }
    }
}
