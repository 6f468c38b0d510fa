//! Introspection: counters, the live mappings and pins, and a readable chunk table.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::backing::BackingId;
use super::ledger::Ledger;
use super::offset::{FileOffset, WindowOffset};
use super::table::PinId;
use super::table::{ChunkIdx, Table};

/// Event counters, bumped without the table lock.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) maps: AtomicU64,
    pub(super) remaps: AtomicU64,
    pub(super) already_mapped: AtomicU64,
    pub(super) unmaps: AtomicU64,
    pub(super) pins: AtomicU64,
    pub(super) pin_refusals: AtomicU64,
    pub(super) drains: AtomicU64,
    pub(super) file_range_releases: AtomicU64,
    pub(super) waits: AtomicU64,
    pub(super) wait_nanos: AtomicU64,
    pub(super) timeouts: AtomicU64,
    pub(super) mapper_errors: AtomicU64,
    pub(super) map_refusals: AtomicU64,
    pub(super) resize_refusals: AtomicU64,
}

/// A snapshot of the ledger's counters and live state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LedgerStats {
    /// Mappings made (first maps and remaps).
    pub maps: u64,
    /// Of those, maps that replaced at least one earlier mapping.
    pub remaps: u64,
    /// Maps that found the same mapping in place and did nothing.
    pub already_mapped: u64,
    /// Mappings released (unmapped, references dropped).
    pub unmaps: u64,
    /// Pins granted.
    pub pins: u64,
    /// Pins refused (not mapped, draining, beyond end of file, size unknown).
    pub pin_refusals: u64,
    /// Operations that drained at least one mapped chunk.
    pub drains: u64,
    /// Calls of `release_file_range` with a non-empty range.
    pub file_range_releases: u64,
    /// Operations that had to wait.
    pub waits: u64,
    /// Time spent waiting, all operations together.
    pub wait_time: Duration,
    /// Waits that ran out of budget.
    pub timeouts: u64,
    /// Mapper calls that failed.
    pub mapper_errors: u64,
    /// Of those, maps the frontend refused or that could not be sent as asked (a range
    /// it will not map, see [`super::extent`]); the guest got EIO.
    pub map_refusals: u64,
    /// File size changes refused because a live mapping could not have followed them.
    pub resize_refusals: u64,
    /// Live mappings now.
    pub live_mappings: usize,
    /// Chunks mapped now.
    pub mapped_chunks: usize,
    /// Pins held now.
    pub live_pins: usize,
    /// Chunks with at least one pin now.
    pub pinned_chunks: usize,
    /// Chunks owned by an operation now (draining or in transition).
    pub draining_chunks: usize,
    /// Backings holding a "has mappings" reference now.
    pub backings_with_mappings: usize,
}

/// One live mapping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MappingInfo {
    /// Where it starts in the window.
    pub window_offset: WindowOffset,
    /// Its length (whole chunks).
    pub len: u64,
    /// What it maps.
    pub backing: BackingId,
    /// Where it starts in the backing.
    pub file_offset: FileOffset,
    /// Whether the guest may write through it.
    pub writable: bool,
    /// Pins on its chunks, added up.
    pub pins: u64,
    /// Whether any of its chunks is draining or in transition.
    pub draining: bool,
}

/// One pin held now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinInfo {
    /// Its identity.
    pub id: PinId,
    /// Who took it.
    pub holder: String,
    /// First window byte pinned.
    pub window_offset: u64,
    /// Bytes pinned.
    pub len: u64,
    /// How long it has been held.
    pub held_for: Duration,
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Ledger {
    /// Counters and a summary of the live state.
    pub fn stats(&self) -> LedgerStats {
        let c = &self.inner.stats;
        let table = self.inner.lock();
        LedgerStats {
            maps: load(&c.maps),
            remaps: load(&c.remaps),
            already_mapped: load(&c.already_mapped),
            unmaps: load(&c.unmaps),
            pins: load(&c.pins),
            pin_refusals: load(&c.pin_refusals),
            drains: load(&c.drains),
            file_range_releases: load(&c.file_range_releases),
            waits: load(&c.waits),
            wait_time: Duration::from_nanos(load(&c.wait_nanos)),
            timeouts: load(&c.timeouts),
            mapper_errors: load(&c.mapper_errors),
            map_refusals: load(&c.map_refusals),
            resize_refusals: load(&c.resize_refusals),
            live_mappings: table.mappings.len(),
            mapped_chunks: table.chunks.iter().filter(|c| c.mapping.is_some()).count(),
            live_pins: table.pins.len(),
            pinned_chunks: table.chunks.iter().filter(|c| c.pins > 0).count(),
            draining_chunks: table.chunks.iter().filter(|c| c.drain.is_some()).count(),
            backings_with_mappings: table.backings.len(),
        }
    }

    /// Every live mapping, in window order.
    pub fn mappings(&self) -> Vec<MappingInfo> {
        let table = self.inner.lock();
        table
            .mappings
            .values()
            .map(|m| {
                let v = table.victim(m);
                let chunks = &table.chunks[m.chunk_range()];
                MappingInfo {
                    window_offset: WindowOffset(v.window_offset),
                    len: v.len,
                    backing: m.backing_id,
                    file_offset: FileOffset(m.file_offset),
                    writable: m.writable,
                    pins: chunks.iter().map(|c| u64::from(c.pins)).sum(),
                    draining: chunks.iter().any(|c| c.drain.is_some()),
                }
            })
            .collect()
    }

    /// How many live mappings `backing` has.
    pub fn mappings_of(&self, backing: BackingId) -> usize {
        let table = self.inner.lock();
        table.backings.get(&backing).map_or(0, |e| e.mappings)
    }

    /// Whether `backing` has a live mapping (and so the ledger holds its "has mappings"
    /// reference).
    pub fn has_mappings(&self, backing: BackingId) -> bool {
        self.inner.lock().backings.contains_key(&backing)
    }

    /// Every pin held now.
    pub fn pins(&self) -> Vec<PinInfo> {
        let now = Instant::now();
        let table = self.inner.lock();
        table
            .pins
            .iter()
            .map(|(&id, p)| PinInfo {
                id,
                holder: p.holder.clone(),
                window_offset: p.window.start,
                len: p.window.end - p.window.start,
                held_for: now.saturating_duration_since(p.since),
            })
            .collect()
    }

    /// Checks the chunk table against itself: every chunk agrees with its mapping, pin
    /// counts match the pins held, no unmapped chunk is pinned, drains own their chunks,
    /// and each backing's record matches its mappings. For tests and debugging.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.inner.lock().check_invariants()
    }

    /// The chunk table in words, one line per mapping or run of free chunks, then the pins
    /// and the operations in progress.
    pub fn dump(&self) -> String {
        let now = Instant::now();
        let table = self.inner.lock();
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "dax ledger: window {:#x} in {} chunk(s) of {:#x}; {} mapping(s), {} pin(s), {} operation(s) in progress",
            table.chunks.len() as u64 * table.chunk_size,
            table.chunks.len(),
            table.chunk_size,
            table.mappings.len(),
            table.pins.len(),
            table.drains.len(),
        );
        let mut c = 0;
        while c < table.chunks.len() {
            c = match table.chunks[c].mapping.and_then(|f| table.mappings.get(&f)) {
                Some(m) => {
                    let range = m.chunk_range();
                    let _ = writeln!(
                        out,
                        "  {}  mapped  backing {} file {:#x} {}{}",
                        span(&table, range.start, range.end),
                        m.backing_id,
                        m.file_offset,
                        if m.writable { "rw" } else { "ro" },
                        chunk_notes(&table, range.start, range.end),
                    );
                    range.end
                }
                None => {
                    let drain = table.chunks[c].drain;
                    let end = (c..table.chunks.len())
                        .find(|&e| {
                            table.chunks[e].mapping.is_some() || table.chunks[e].drain != drain
                        })
                        .unwrap_or(table.chunks.len());
                    let _ = writeln!(
                        out,
                        "  {}  free{}",
                        span(&table, c, end),
                        chunk_notes(&table, c, end)
                    );
                    end
                }
            };
        }
        if !table.pins.is_empty() {
            out.push_str("pins:\n");
            for (id, p) in &table.pins {
                let _ = writeln!(
                    out,
                    "  {id} by {:?} on {:#x}..{:#x}, held {:?}",
                    p.holder,
                    p.window.start,
                    p.window.end,
                    now.saturating_duration_since(p.since)
                );
            }
        }
        if !table.drains.is_empty() {
            out.push_str("in progress:\n");
            for drain in table.drains.values() {
                let _ = write!(out, "  {} on {} chunk(s)", drain.op, drain.chunks.len());
                if let Some(p) = &drain.pending {
                    let _ = write!(
                        out,
                        ", mapping backing {} file {:#x}..{:#x}",
                        p.backing, p.file.start, p.file.end
                    );
                }
                if let Some(d) = &drain.changed_range {
                    let _ = write!(out, ", holding backing {} file {:#x}..", d.backing, d.from);
                    if let Some(end) = d.end {
                        let _ = write!(out, "{end:#x}");
                    }
                }
                out.push('\n');
            }
        }
        out
    }
}

fn span(table: &Table, start: ChunkIdx, end: ChunkIdx) -> String {
    let chunks = if end - start == 1 {
        format!("chunk {start}")
    } else {
        format!("chunks {start}-{}", end - 1)
    };
    format!(
        "{:#010x}..{:#010x} {chunks:<14}",
        table.offset_of(start),
        table.offset_of(end)
    )
}

/// Pins and draining marks of chunks `start..end`, for the dump.
fn chunk_notes(table: &Table, start: ChunkIdx, end: ChunkIdx) -> String {
    let mut notes = String::new();
    let pinned: Vec<(ChunkIdx, u32)> = (start..end)
        .filter(|&c| table.chunks[c].pins > 0)
        .map(|c| (c, table.chunks[c].pins))
        .collect();
    if !pinned.is_empty() {
        notes.push_str("  pinned:");
        for (c, n) in pinned.iter().take(8) {
            let _ = write!(notes, " {c}x{n}");
        }
        if pinned.len() > 8 {
            let _ = write!(notes, " (+{} more)", pinned.len() - 8);
        }
    }
    let mut ops: Vec<String> = (start..end)
        .filter_map(|c| table.chunks[c].drain)
        .filter_map(|id| table.drains.get(&id))
        .map(|drain| drain.op.to_string())
        .collect();
    ops.dedup();
    if !ops.is_empty() {
        let _ = write!(notes, "  draining for {}", ops.join(", "));
    }
    notes
}
