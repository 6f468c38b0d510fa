//! The chunk table: what each chunk maps, how many pins it has, which operation owns it.
//!
//! Pure bookkeeping, always used under the ledger's one lock. It never waits, never calls a
//! [`Mapper`](super::Mapper) and never calls into a backing, so holding the lock around it
//! is always short. The waiting and the calls out live in `ledger.rs`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::backing::{Backing, BackingId};
use super::error::{Op, PinHolder, Stuck};

/// Index of a chunk in the window.
pub(super) type ChunkIdx = usize;

/// The index of chunk number `n` (a window offset divided by the chunk size).
///
/// Callers pass offsets inside the window, and `LedgerConfig::validate` checked that the
/// window's chunk count (at most `MAX_CHUNKS`) fits `usize`, so this cannot fail. Were it
/// to, the saturated index lies beyond the table and indexing panics, instead of a
/// truncated index naming some other chunk.
pub(super) fn chunk_idx(n: u64) -> ChunkIdx {
    usize::try_from(n).unwrap_or(ChunkIdx::MAX)
}

/// Identity of a pin, unique for the life of a ledger: a control socket can keep
/// [`PinGuard`](super::PinGuard)s in a map under this key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PinId(pub u64);

impl fmt::Display for PinId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pin#{}", self.0)
    }
}

/// Identity of a drain: one operation's ownership of a set of chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct DrainId(u64);

/// One live mapping: the extent of one successful `map` call. It owns the map-time
/// reference on its backing.
pub(super) struct Mapping {
    pub(super) first: ChunkIdx,
    pub(super) chunks: usize,
    pub(super) backing: Arc<dyn Backing>,
    pub(super) backing_id: BackingId,
    pub(super) file_offset: u64,
    pub(super) writable: bool,
}

impl Mapping {
    pub(super) fn chunk_range(&self) -> Range<ChunkIdx> {
        self.first..self.first + self.chunks
    }
}

/// One chunk of the window.
#[derive(Default)]
pub(super) struct Chunk {
    /// First chunk of the mapping that covers this one.
    pub(super) mapping: Option<ChunkIdx>,
    /// In-flight accesses (never mapping references).
    pub(super) pins: u32,
    /// The operation that owns the chunk: while set, the chunk is draining or in
    /// transition, and no pin or other operation may start on it.
    pub(super) drain: Option<DrainId>,
}

/// A map in progress: the backing and file range it will map once the frontend answers.
pub(super) struct PendingMap {
    pub(super) backing: BackingId,
    pub(super) file: Range<u64>,
}

/// A file range of a backing whose pages are being changed (truncate, punch-hole).
#[derive(Clone, Copy)]
pub(super) struct ChangedRange {
    pub(super) backing: BackingId,
    pub(super) from: u64,
    pub(super) end: Option<u64>,
}

impl ChangedRange {
    pub(super) fn overlaps(&self, backing: BackingId, file: &Range<u64>) -> bool {
        self.backing == backing
            && file.end > self.from
            && self.end.is_none_or(|end| file.start < end)
    }
}

pub(super) struct Drain {
    pub(super) op: Op,
    pub(super) chunks: Vec<ChunkIdx>,
    pub(super) pending: Option<PendingMap>,
    pub(super) changed_range: Option<ChangedRange>,
}

/// The per-backing record that exists exactly while the backing has a mapping.
pub(super) struct BackingEntry {
    pub(super) mappings: usize,
    /// The "has mappings" reference, taken on 0 -> 1 and dropped on 1 -> 0.
    pub(super) has_mappings: Arc<dyn Backing>,
}

pub(super) struct PinRecord {
    pub(super) holder: String,
    pub(super) window: Range<u64>,
    pub(super) chunks: Range<ChunkIdx>,
    pub(super) since: Instant,
}

/// A mapping chosen for release: enough to call `Mapper::unmap` without the lock.
#[derive(Clone, Copy, Debug)]
pub(super) struct Victim {
    pub(super) first: ChunkIdx,
    pub(super) window_offset: u64,
    pub(super) len: u64,
}

/// What an operation is waiting for.
#[derive(Default)]
pub(super) struct Blocked {
    pub(super) chunks: Vec<ChunkIdx>,
    pub(super) drains: Vec<DrainId>,
}

impl Blocked {
    pub(super) fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.drains.is_empty()
    }
}

pub(super) struct Table {
    pub(super) chunk_size: u64,
    pub(super) chunks: Vec<Chunk>,
    pub(super) mappings: BTreeMap<ChunkIdx, Mapping>,
    pub(super) backings: HashMap<BackingId, BackingEntry>,
    pub(super) drains: BTreeMap<DrainId, Drain>,
    pub(super) pins: BTreeMap<PinId, PinRecord>,
    next_id: u64,
}

impl Table {
    pub(super) fn new(chunk_size: u64, chunks: usize) -> Self {
        Table {
            chunk_size,
            chunks: (0..chunks).map(|_| Chunk::default()).collect(),
            mappings: BTreeMap::new(),
            backings: HashMap::new(),
            drains: BTreeMap::new(),
            pins: BTreeMap::new(),
            next_id: 1,
        }
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Window offset of chunk `c`.
    pub(super) fn offset_of(&self, c: ChunkIdx) -> u64 {
        c as u64 * self.chunk_size
    }

    /// The chunks touched by a (validated, non-empty) window byte range.
    pub(super) fn chunks_covering(&self, window: &Range<u64>) -> Range<ChunkIdx> {
        // Both ends are inside the window, whose chunk count fits in usize.
        let start = chunk_idx(window.start / self.chunk_size);
        let end = chunk_idx(window.end.div_ceil(self.chunk_size));
        start..end
    }

    pub(super) fn victim(&self, m: &Mapping) -> Victim {
        Victim {
            first: m.first,
            window_offset: self.offset_of(m.first),
            len: m.chunks as u64 * self.chunk_size,
        }
    }

    /// First chunks of the mappings that intersect `range`, in window order.
    pub(super) fn intersecting(&self, range: Range<ChunkIdx>) -> Vec<ChunkIdx> {
        let mut firsts: Vec<ChunkIdx> = Vec::new();
        for c in range {
            if let Some(first) = self.chunks[c].mapping
                && firsts.last() != Some(&first)
            {
                firsts.push(first);
            }
        }
        firsts
    }

    /// `range` grown to whole mappings: the chunks a map over `range` must own.
    pub(super) fn extent_of(&self, range: Range<ChunkIdx>) -> Vec<ChunkIdx> {
        let mut start = range.start;
        let mut end = range.end;
        for first in self.intersecting(range) {
            let m = &self.mappings[&first];
            start = start.min(m.first);
            end = end.max(m.first + m.chunks);
        }
        (start..end).collect()
    }

    /// Whether the mapping covering exactly `range` maps `file_offset` of `backing` with at
    /// least the access asked for, and no operation owns it.
    pub(super) fn is_same_mapping(
        &self,
        range: &Range<ChunkIdx>,
        backing: BackingId,
        file_offset: u64,
        writable: bool,
    ) -> bool {
        let Some(m) = self.mappings.get(&range.start) else {
            return false;
        };
        m.chunk_range() == *range
            && m.backing_id == backing
            && m.file_offset == file_offset
            && (m.writable || !writable)
            && range.clone().all(|c| self.chunks[c].drain.is_none())
    }

    /// Every chunk of every mapping of `backing` (all backings when `None`).
    pub(super) fn chunks_of(&self, backing: Option<BackingId>) -> Vec<ChunkIdx> {
        self.mappings
            .values()
            .filter(|m| backing.is_none_or(|b| m.backing_id == b))
            .flat_map(Mapping::chunk_range)
            .collect()
    }

    /// Chunks of `backing` whose file bytes overlap `from..end` (`end` `None`: no end).
    pub(super) fn chunks_of_file_range(&self, range: &ChangedRange) -> Vec<ChunkIdx> {
        let cs = self.chunk_size;
        let mut out = Vec::new();
        for m in self
            .mappings
            .values()
            .filter(|m| m.backing_id == range.backing)
        {
            for (i, c) in m.chunk_range().enumerate() {
                // Mapped file ranges were checked not to overflow at map time.
                let start = m.file_offset + i as u64 * cs;
                if range.overlaps(range.backing, &(start..start + cs)) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// The chunks among `chunks` that some operation owns.
    pub(super) fn draining_among(&self, chunks: &[ChunkIdx]) -> Vec<ChunkIdx> {
        chunks
            .iter()
            .copied()
            .filter(|&c| self.chunks[c].drain.is_some())
            .collect()
    }

    /// The chunks among `chunks` that hold pins.
    pub(super) fn pinned_among(&self, chunks: &[ChunkIdx]) -> Vec<ChunkIdx> {
        chunks
            .iter()
            .copied()
            .filter(|&c| self.chunks[c].pins > 0)
            .collect()
    }

    /// Chunks owned by maps in progress of `backing` (of any backing when `None`) whose
    /// file range overlaps `changed` (when given).
    pub(super) fn pending_map_chunks(
        &self,
        backing: Option<BackingId>,
        changed: Option<&ChangedRange>,
    ) -> Vec<ChunkIdx> {
        self.drains
            .values()
            .filter(|drain| {
                drain.pending.as_ref().is_some_and(|p| {
                    backing.is_none_or(|b| p.backing == b)
                        && changed.is_none_or(|d| d.overlaps(p.backing, &p.file))
                })
            })
            .flat_map(|drain| drain.chunks.iter().copied())
            .collect()
    }

    /// Held file-range guards that a map of `file` of `backing` must wait for.
    pub(super) fn file_drains_blocking(
        &self,
        backing: BackingId,
        file: &Range<u64>,
    ) -> Vec<DrainId> {
        self.drains
            .iter()
            .filter(|(_, drain)| {
                drain
                    .changed_range
                    .is_some_and(|d| d.overlaps(backing, file))
            })
            .map(|(&id, _)| id)
            .collect()
    }

    /// Makes `op` the owner of `chunks` (which must all be free of drains).
    pub(super) fn mark_draining(
        &mut self,
        op: Op,
        chunks: Vec<ChunkIdx>,
        pending: Option<PendingMap>,
        changed_range: Option<ChangedRange>,
    ) -> DrainId {
        let id = DrainId(self.next_id());
        for &c in &chunks {
            debug_assert!(
                self.chunks[c].drain.is_none(),
                "chunk {c} marked draining twice"
            );
            self.chunks[c].drain = Some(id);
        }
        self.drains.insert(
            id,
            Drain {
                op,
                chunks,
                pending,
                changed_range,
            },
        );
        id
    }

    /// Ends a drain: its chunks reopen. Harmless if it already ended.
    pub(super) fn reopen(&mut self, id: DrainId) {
        if let Some(drain) = self.drains.remove(&id) {
            for c in drain.chunks {
                if self.chunks[c].drain == Some(id) {
                    self.chunks[c].drain = None;
                }
            }
        }
    }

    /// The chunks of a drain that are still pinned.
    pub(super) fn pinned_in_drain(&self, id: DrainId) -> Vec<ChunkIdx> {
        self.drains
            .get(&id)
            .map(|drain| self.pinned_among(&drain.chunks))
            .unwrap_or_default()
    }

    /// The mappings that lie in a drain, in window order.
    pub(super) fn victims_in_drain(&self, id: DrainId) -> Vec<Victim> {
        let Some(drain) = self.drains.get(&id) else {
            return Vec::new();
        };
        let mut firsts: Vec<ChunkIdx> = drain
            .chunks
            .iter()
            .filter_map(|&c| self.chunks[c].mapping)
            .collect();
        firsts.sort_unstable();
        firsts.dedup();
        firsts
            .iter()
            .map(|f| self.victim(&self.mappings[f]))
            .collect()
    }

    /// Records a new mapping; takes the "has mappings" reference on 0 -> 1.
    pub(super) fn insert_mapping(&mut self, m: Mapping) {
        for c in m.chunk_range() {
            debug_assert!(self.chunks[c].mapping.is_none(), "chunk {c} mapped twice");
            self.chunks[c].mapping = Some(m.first);
        }
        self.backings
            .entry(m.backing_id)
            .and_modify(|e| e.mappings += 1)
            .or_insert_with(|| BackingEntry {
                mappings: 1,
                has_mappings: Arc::clone(&m.backing),
            });
        self.mappings.insert(m.first, m);
    }

    /// Forgets the mapping starting at chunk `first` and returns the references it held
    /// (its map-time reference, and the "has mappings" reference on 1 -> 0), for the caller
    /// to drop once the lock is released.
    pub(super) fn remove_mapping(&mut self, first: ChunkIdx) -> Vec<Arc<dyn Backing>> {
        let Some(m) = self.mappings.remove(&first) else {
            return Vec::new();
        };
        for c in m.chunk_range() {
            self.chunks[c].mapping = None;
        }
        let mut refs = vec![m.backing];
        if let Some(entry) = self.backings.get_mut(&m.backing_id) {
            entry.mappings -= 1;
            if entry.mappings == 0
                && let Some(entry) = self.backings.remove(&m.backing_id)
            {
                refs.push(entry.has_mappings);
            }
        }
        refs
    }

    pub(super) fn register_pin(
        &mut self,
        holder: &str,
        window: Range<u64>,
        chunks: Range<ChunkIdx>,
    ) -> PinId {
        let id = PinId(self.next_id());
        for c in chunks.clone() {
            self.chunks[c].pins += 1;
        }
        self.pins.insert(
            id,
            PinRecord {
                holder: holder.to_owned(),
                window,
                chunks,
                since: Instant::now(),
            },
        );
        id
    }

    pub(super) fn unregister_pin(&mut self, id: PinId) {
        if let Some(pin) = self.pins.remove(&id) {
            for c in pin.chunks {
                self.chunks[c].pins -= 1;
            }
        }
    }

    /// What `blocked` still waits for, with the pin holders, for the timeout report.
    pub(super) fn stuck(&self, blocked: &Blocked, now: Instant) -> Vec<Stuck> {
        let mut out = Vec::new();
        for &c in &blocked.chunks {
            let holders = self
                .pins
                .iter()
                .filter(|(_, p)| p.chunks.contains(&c))
                .map(|(&pin, p)| PinHolder {
                    pin,
                    holder: p.holder.clone(),
                    held_for: now.saturating_duration_since(p.since),
                })
                .collect();
            out.push(Stuck::Chunk {
                window_offset: self.offset_of(c),
                pins: self.chunks[c].pins,
                holders,
                draining_for: self.chunks[c]
                    .drain
                    .and_then(|id| self.drains.get(&id))
                    .map(|drain| drain.op),
            });
        }
        for id in &blocked.drains {
            if let Some(d) = self.drains.get(id).and_then(|drain| drain.changed_range) {
                out.push(Stuck::FileRange {
                    backing: d.backing,
                    from: d.from,
                    end: d.end,
                });
            }
        }
        out
    }

    /// Checks that the table is consistent with itself. Used by the tests after every step.
    pub(super) fn check_invariants(&self) -> Result<(), String> {
        let mut per_backing: HashMap<BackingId, usize> = HashMap::new();
        for (&first, m) in &self.mappings {
            if first != m.first || m.chunks == 0 || m.first + m.chunks > self.chunks.len() {
                return Err(format!("mapping at chunk {first} has a bad extent"));
            }
            if m.backing.id() != m.backing_id {
                return Err(format!("mapping at chunk {first} holds the wrong backing"));
            }
            if m.writable && !m.backing.writable() {
                return Err(format!(
                    "mapping at chunk {first} is writable, its backing is not"
                ));
            }
            *per_backing.entry(m.backing_id).or_default() += 1;
        }
        let mut pins = vec![0u32; self.chunks.len()];
        for p in self.pins.values() {
            for c in p.chunks.clone() {
                pins[c] += 1;
            }
        }
        for (c, chunk) in self.chunks.iter().enumerate() {
            if let Some(first) = chunk.mapping {
                let ok = self
                    .mappings
                    .get(&first)
                    .is_some_and(|m| m.chunk_range().contains(&c));
                if !ok {
                    return Err(format!("chunk {c} points at no mapping covering it"));
                }
            } else if self
                .mappings
                .range(..=c)
                .next_back()
                .is_some_and(|(_, m)| m.chunk_range().contains(&c))
            {
                return Err(format!("chunk {c} is inside a mapping but does not say so"));
            }
            if chunk.pins != pins[c] {
                return Err(format!(
                    "chunk {c} counts {} pins, {} held",
                    chunk.pins, pins[c]
                ));
            }
            if chunk.pins > 0 && chunk.mapping.is_none() {
                return Err(format!("chunk {c} is pinned but not mapped"));
            }
            let owned = |id| {
                self.drains
                    .get(&id)
                    .is_some_and(|cl| cl.chunks.contains(&c))
            };
            if chunk.drain.is_some_and(|id| !owned(id)) {
                return Err(format!("chunk {c} is owned by an unknown drain"));
            }
        }
        for (id, drain) in &self.drains {
            if drain
                .chunks
                .iter()
                .any(|&c| self.chunks[c].drain != Some(*id))
            {
                return Err(format!("{id:?} lost one of its chunks"));
            }
        }
        if per_backing.len() != self.backings.len() {
            return Err("a backing without mappings still holds its reference".into());
        }
        for (b, n) in per_backing {
            match self.backings.get(&b) {
                Some(e) if e.mappings == n && e.has_mappings.id() == b => {}
                _ => {
                    return Err(format!(
                        "backing {b} has {n} mappings, its record disagrees"
                    ));
                }
            }
        }
        Ok(())
    }
}
