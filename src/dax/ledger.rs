//! The ledger's operations: the waits, the drains and the calls to the [`Mapper`].
//!
//! Every operation follows one pattern. Under the table lock it works out which chunks it
//! needs; if another operation's drain holds any of them it parks (bounded) and looks
//! again; then it marks them all draining at once (a *drain*: no new pin, no other
//! operation). It parks again until their pins are gone. Then it drops the lock and calls
//! the mapper, takes the lock again to record the result, and reopens the chunks. A drain
//! takes its chunks whole or not at all, so two operations never hold part of what the
//! other needs; and no lock is held across a wait or a mapper call, so other chunks stay
//! usable throughout.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::backing::{Backing, BackingId};
use super::config::{LedgerConfig, PAGE_SIZE};
use super::error::{Field, LedgerError, MapperCall, Op};
use super::guard::{FileRangeGuard, PinGuard};
use super::info::Counters;
use super::mapper::{Mapper, MapperError};
use super::offset::{FileOffset, WindowOffset};
use super::state::Inner;
use super::sync::{Condvar, Mutex, MutexGuard};
use super::table::{
    Blocked, ChangedRange, ChunkIdx, DrainId, Mapping, PendingMap, Table, Victim, chunk_idx,
};
use super::wait::Waiter;

/// What [`Ledger::map`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapOutcome {
    /// The range is now mapped; `replaced` earlier mappings were released first.
    Mapped {
        /// How many mappings the new one replaced (0 for a first map).
        replaced: usize,
    },
    /// The same file range was already mapped there with at least this access: nothing
    /// was done (the guest's read -> write upgrade of a range mapped writable up front).
    AlreadyMapped,
}

/// What [`Ledger::unmap`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmapOutcome {
    /// How many mappings were released (chunks of the range that were not mapped are
    /// skipped).
    pub released: usize,
}

/// What [`Ledger::pin`] does when a chunk is draining or in transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinWait {
    /// Fail at once with [`LedgerError::Draining`].
    Fail,
    /// Wait, within the ledger's budget, for the chunk to reopen.
    Wait,
}

/// The window's chunk table and the one owner of every mapping's life. See the module
/// documentation for the rules it keeps.
pub struct Ledger {
    pub(super) inner: Arc<Inner>,
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.inner.lock();
        f.debug_struct("Ledger")
            .field("window_size", &self.inner.config.window_size)
            .field("chunk_size", &self.inner.config.chunk_size)
            .field("mappings", &table.mappings.len())
            .field("pins", &table.pins.len())
            .finish()
    }
}

/// The backing bytes a pin would reach, checked against the backing's size.
struct EofCheck {
    backing: Arc<dyn Backing>,
    id: BackingId,
    file_end: u64,
}

impl Ledger {
    /// A ledger for a window shaped by `config`, mapping through `mapper`.
    pub fn new(config: LedgerConfig, mapper: Arc<dyn Mapper>) -> Result<Ledger, LedgerError> {
        let chunks = config.validate()?;
        let table = Table::new(config.chunk_size, chunks);
        Ok(Ledger {
            inner: Arc::new(Inner {
                config,
                mapper,
                table: Mutex::new(table),
                cond: Condvar::new(),
                stats: Counters::default(),
                stopping: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// Size of the window in bytes.
    pub fn window_size(&self) -> u64 {
        self.inner.config.window_size
    }

    /// Size of one chunk in bytes.
    pub fn chunk_size(&self) -> u64 {
        self.inner.config.chunk_size
    }

    /// The configuration the ledger was built with.
    pub fn config(&self) -> &LedgerConfig {
        &self.inner.config
    }

    fn check_window(&self, offset: u64, len: u64) -> Result<Range<u64>, LedgerError> {
        if len == 0 {
            return Err(LedgerError::EmptyRange { offset });
        }
        let end = offset.checked_add(len).ok_or(LedgerError::Overflow {
            what: Field::WindowOffset,
            offset,
            len,
        })?;
        let window = self.window_size();
        if end > window {
            return Err(LedgerError::OutOfWindow {
                offset,
                len,
                window,
            });
        }
        Ok(offset..end)
    }

    fn check_chunks(&self, offset: u64, len: u64) -> Result<Range<ChunkIdx>, LedgerError> {
        let cs = self.chunk_size();
        for (what, value) in [(Field::WindowOffset, offset), (Field::Length, len)] {
            if !value.is_multiple_of(cs) {
                return Err(LedgerError::Misaligned {
                    what,
                    value,
                    align: cs,
                });
            }
        }
        let window = self.check_window(offset, len)?;
        // Inside the window, whose chunk count fits in usize.
        Ok(chunk_idx(window.start / cs)..chunk_idx(window.end / cs))
    }

    /// Maps `len` bytes of `backing` from `file_offset` at `window_offset`.
    ///
    /// `window_offset` and `len` are whole chunks, `file_offset` is page aligned, and the
    /// range lies inside the window. If the same file range of the same backing is already
    /// mapped there exactly, with at least the access asked for, nothing happens
    /// ([`MapOutcome::AlreadyMapped`]). Otherwise every mapping that intersects the range
    /// is released whole first — drained, waited for, unmapped, its references dropped —
    /// and the new mapping takes the map-time reference `backing` (and the backing's "has
    /// mappings" reference if it had none). If the frontend refuses the new map, its chunks
    /// are left free and the error is returned. Waits (bounded) while the chunks, or an
    /// overlapping file range of the backing, are draining.
    ///
    /// The two offsets have distinct types, so they cannot be swapped:
    ///
    /// ```compile_fail,E0308
    /// # use std::sync::Arc;
    /// # use vhost_dax::dax::{Backing, FileOffset, Ledger, WindowOffset};
    /// # fn swapped(ledger: &Ledger, backing: Arc<dyn Backing>) {
    /// ledger.map(FileOffset(0), 2 << 20, backing, WindowOffset(0), true);
    /// # }
    /// ```
    pub fn map(
        &self,
        window_offset: WindowOffset,
        len: u64,
        backing: Arc<dyn Backing>,
        file_offset: FileOffset,
        writable: bool,
    ) -> Result<MapOutcome, LedgerError> {
        let waiter = Waiter::new(&self.inner, Op::Map);
        self.map_with(waiter, window_offset, len, backing, file_offset, writable)
    }

    /// As [`Ledger::map`], but never waits: where `map` would wait (for chunks or a file
    /// range in another operation's hands, for pins on a mapping it replaces) it fails
    /// with [`LedgerError::WouldWait`] and nothing has changed. For a caller that must not
    /// block (a queue's own thread), which then does the map where it may wait.
    pub fn try_map(
        &self,
        window_offset: WindowOffset,
        len: u64,
        backing: Arc<dyn Backing>,
        file_offset: FileOffset,
        writable: bool,
    ) -> Result<MapOutcome, LedgerError> {
        let waiter = Waiter::never(&self.inner, Op::Map);
        self.map_with(waiter, window_offset, len, backing, file_offset, writable)
    }

    fn map_with(
        &self,
        mut waiter: Waiter<'_>,
        window_offset: WindowOffset,
        len: u64,
        backing: Arc<dyn Backing>,
        file_offset: FileOffset,
        writable: bool,
    ) -> Result<MapOutcome, LedgerError> {
        let (window_offset, file_offset) = (window_offset.raw(), file_offset.raw());
        let range = self.check_chunks(window_offset, len)?;
        if !file_offset.is_multiple_of(PAGE_SIZE) {
            return Err(LedgerError::Misaligned {
                what: Field::FileOffset,
                value: file_offset,
                align: PAGE_SIZE,
            });
        }
        let file_end = file_offset.checked_add(len).ok_or(LedgerError::Overflow {
            what: Field::FileOffset,
            offset: file_offset,
            len,
        })?;
        let backing_id = backing.id();
        if writable && !backing.writable() {
            return Err(LedgerError::ReadOnlyBacking {
                backing: backing_id,
            });
        }
        let inner = &*self.inner;
        let file = file_offset..file_end;
        let mut table = inner.lock();
        let drain = loop {
            if table.is_same_mapping(&range, backing_id, file_offset, writable) {
                Inner::bump(&inner.stats.already_mapped);
                return Ok(MapOutcome::AlreadyMapped);
            }
            let set = table.extent_of(range.clone());
            let blocked = Blocked {
                chunks: table.draining_among(&set),
                drains: table.file_drains_blocking(backing_id, &file),
            };
            if blocked.is_empty() {
                let pending = PendingMap {
                    backing: backing_id,
                    file: file.clone(),
                };
                break table.mark_draining(Op::Map, set, Some(pending), None);
            }
            table = waiter.park(table, &blocked)?;
        };
        let victims = table.victims_in_drain(drain);
        if !victims.is_empty() {
            Inner::bump(&inner.stats.drains);
            table = self.drain_pins(table, &mut waiter, drain)?;
        }
        drop(table);
        let (_, failed) = self.release(&victims);
        if let Some(e) = failed {
            inner.reopen(drain);
            return Err(e);
        }
        let result = inner.mapper.map(
            WindowOffset(window_offset),
            len,
            backing.fd(),
            FileOffset(file_offset),
            writable,
        );
        let mut table = inner.lock();
        let outcome = match result {
            Ok(()) => {
                table.insert_mapping(Mapping {
                    first: range.start,
                    chunks: range.len(),
                    backing,
                    backing_id,
                    file_offset,
                    writable,
                });
                Inner::bump(&inner.stats.maps);
                log::debug!(
                    "dax ledger: mapped {window_offset:#x}+{len:#x} to backing {backing_id} \
                     file {file_offset:#x} {}, replacing {}",
                    if writable { "rw" } else { "ro" },
                    victims.len()
                );
                if !victims.is_empty() {
                    Inner::bump(&inner.stats.remaps);
                }
                Ok(MapOutcome::Mapped {
                    replaced: victims.len(),
                })
            }
            Err(source) => {
                Inner::bump(&inner.stats.mapper_errors);
                if matches!(
                    source,
                    MapperError::Refused { .. }
                        | MapperError::Unsupported { .. }
                        | MapperError::Unmappable { .. }
                ) {
                    Inner::bump(&inner.stats.map_refusals);
                }
                // A refusal is the frontend's answer, which the caller reports (a guest
                // can ask again and again); a broken channel is ours to shout about.
                let level = match source {
                    MapperError::Refused { .. }
                    | MapperError::Unsupported { .. }
                    | MapperError::Unmappable { .. } => log::Level::Debug,
                    _ => log::Level::Error,
                };
                log::log!(
                    level,
                    "dax ledger: the frontend failed to map {window_offset:#x}+{len:#x} \
                     (backing {backing_id}): {source}"
                );
                Err(LedgerError::Mapper {
                    call: MapperCall::Map,
                    window_offset,
                    len,
                    source,
                })
            }
        };
        table.reopen(drain);
        drop(table);
        inner.cond.notify_all();
        outcome
    }

    /// Releases every mapping inside `window_offset..+len` (whole chunks): the guest's
    /// REMOVEMAPPING, or the owner's eviction of a range.
    ///
    /// Each mapping that intersects the range must lie entirely inside it, otherwise
    /// [`LedgerError::PartialMapping`] and nothing changes. Chunks that are not mapped are
    /// skipped. Each mapping is released the first way: drained, its pins waited out
    /// (bounded), unmapped through the mapper with its exact range, and only then are its
    /// references dropped. A mapping whose unmap the frontend fails stays, with its
    /// references; the others are still released and the first error is returned.
    pub fn unmap(&self, window_offset: u64, len: u64) -> Result<UnmapOutcome, LedgerError> {
        let waiter = Waiter::new(&self.inner, Op::Unmap);
        self.unmap_with(waiter, window_offset, len)
    }

    /// As [`Ledger::unmap`], but never waits: where `unmap` would wait (for chunks in
    /// another operation's hands, for pins) it fails with [`LedgerError::WouldWait`] and
    /// nothing has changed (see [`Ledger::try_map`]).
    pub fn try_unmap(&self, window_offset: u64, len: u64) -> Result<UnmapOutcome, LedgerError> {
        let waiter = Waiter::never(&self.inner, Op::Unmap);
        self.unmap_with(waiter, window_offset, len)
    }

    fn unmap_with(
        &self,
        mut waiter: Waiter<'_>,
        window_offset: u64,
        len: u64,
    ) -> Result<UnmapOutcome, LedgerError> {
        let range = self.check_chunks(window_offset, len)?;
        let all: Vec<ChunkIdx> = range.clone().collect();
        let inner = &*self.inner;
        let mut table = inner.lock();
        let drain = loop {
            let blocked = Blocked {
                chunks: table.draining_among(&all),
                drains: Vec::new(),
            };
            if blocked.is_empty() {
                let mut set = Vec::new();
                for first in table.intersecting(range.clone()) {
                    let m = &table.mappings[&first];
                    let extent = m.chunk_range();
                    if extent.start < range.start || extent.end > range.end {
                        let v = table.victim(m);
                        return Err(LedgerError::PartialMapping {
                            offset: window_offset,
                            len,
                            mapping_offset: v.window_offset,
                            mapping_len: v.len,
                        });
                    }
                    set.extend(extent);
                }
                if set.is_empty() {
                    return Ok(UnmapOutcome { released: 0 });
                }
                break table.mark_draining(Op::Unmap, set, None, None);
            }
            table = waiter.park(table, &blocked)?;
        };
        let released = self.release_drained(table, &mut waiter, drain)?;
        Ok(UnmapOutcome { released })
    }

    /// Pins `window_offset..+len` (any bytes inside the window) for an access that does not
    /// go through the guest's page tables: a request whose buffers lie in the window, our
    /// own I/O on it, the VMM's DMA. `holder` names who pins, for the logs.
    ///
    /// Refused at once if a chunk of the range is not mapped. If one is draining or in
    /// transition, fails or waits (bounded), as `wait` says. Refused if any pinned byte maps
    /// a file byte at or beyond its backing's current end of file. The guard unpins on drop.
    pub fn pin(
        &self,
        window_offset: u64,
        len: u64,
        holder: &str,
        wait: PinWait,
    ) -> Result<PinGuard, LedgerError> {
        let window = self.check_window(window_offset, len)?;
        let inner = &*self.inner;
        let mut waiter = Waiter::new(inner, Op::Pin);
        let mut table = inner.lock();
        let chunks = table.chunks_covering(&window);
        let (id, checks) = loop {
            let mut blocked = Blocked::default();
            for c in chunks.clone() {
                let chunk = &table.chunks[c];
                if chunk.drain.is_some() {
                    blocked.chunks.push(c);
                } else if chunk.mapping.is_none() {
                    Inner::bump(&inner.stats.pin_refusals);
                    return Err(LedgerError::NotMapped {
                        offset: table.offset_of(c),
                    });
                }
            }
            if blocked.is_empty() {
                let id = table.register_pin(holder, window.clone(), chunks.clone());
                break (id, Self::eof_checks(&table, &window, chunks));
            }
            match (wait, blocked.chunks.first()) {
                (PinWait::Fail, Some(&c)) => {
                    let op = table.chunks[c]
                        .drain
                        .and_then(|id| table.drains.get(&id))
                        .map_or(Op::Pin, |drain| drain.op);
                    Inner::bump(&inner.stats.pin_refusals);
                    return Err(LedgerError::Draining {
                        offset: table.offset_of(c),
                        op,
                    });
                }
                (PinWait::Fail, None) | (PinWait::Wait, _) => {
                    table = waiter.park(table, &blocked)?
                }
            }
        };
        drop(table);
        // The pin is registered: from here no drain can complete under it, so the sizes
        // read now cannot shrink until it is dropped. Refusing drops the guard (unpins).
        let guard = PinGuard {
            inner: Arc::clone(&self.inner),
            id,
            window,
        };
        for check in &checks {
            let eof = check.backing.size().map_err(|source| {
                Inner::bump(&inner.stats.pin_refusals);
                LedgerError::BackingSize {
                    backing: check.id,
                    source,
                }
            })?;
            if check.file_end > eof {
                Inner::bump(&inner.stats.pin_refusals);
                return Err(LedgerError::BeyondEof {
                    backing: check.id,
                    file_end: check.file_end,
                    eof,
                });
            }
        }
        Inner::bump(&inner.stats.pins);
        Ok(guard)
    }

    /// For each backing a pin reaches, the end of the file bytes it reaches.
    fn eof_checks(table: &Table, window: &Range<u64>, chunks: Range<ChunkIdx>) -> Vec<EofCheck> {
        let mut checks: Vec<EofCheck> = Vec::new();
        for first in table.intersecting(chunks) {
            let m = &table.mappings[&first];
            let v = table.victim(m);
            let part_end = window.end.min(v.window_offset + v.len);
            // Mapped file ranges were checked not to overflow at map time.
            let file_end = m.file_offset + (part_end - v.window_offset);
            match checks.iter_mut().find(|c| c.id == m.backing_id) {
                Some(check) => check.file_end = check.file_end.max(file_end),
                None => checks.push(EofCheck {
                    backing: Arc::clone(&m.backing),
                    id: m.backing_id,
                    file_end,
                }),
            }
        }
        checks
    }

    /// Holds the file bytes `from..from + len` of `backing` (`len` `None`: to the end of the
    /// file and beyond) still while the caller changes them: truncate, punch-hole,
    /// zero-range. The second kind of release.
    ///
    /// Every chunk mapping an overlapping file range of `backing` is drained and its pins
    /// waited out (bounded); maps of `backing` in progress over an overlapping file range
    /// are waited for. While the returned guard lives, new pins on those chunks fail or
    /// wait, and new maps of an overlapping file range of `backing` wait. **The mappings
    /// stay**: the guest keeps using them below its own end of file, and reuses them if
    /// the file grows again; what keeps the host safe is that a pin beyond the end of file
    /// is refused. Two guards over the same chunks are serialised (the second waits).
    pub fn release_file_range(
        &self,
        backing: BackingId,
        from: u64,
        len: Option<u64>,
    ) -> Result<FileRangeGuard, LedgerError> {
        let end = match len {
            Some(len) => Some(from.checked_add(len).ok_or(LedgerError::Overflow {
                what: Field::FileOffset,
                offset: from,
                len,
            })?),
            None => None,
        };
        let inner = &*self.inner;
        let mut guard = FileRangeGuard {
            inner: Arc::clone(&self.inner),
            drain: None,
            backing,
            from,
            end,
            drained: Vec::new(),
        };
        if len == Some(0) {
            return Ok(guard);
        }
        Inner::bump(&inner.stats.file_range_releases);
        let drain = ChangedRange { backing, from, end };
        let mut waiter = Waiter::new(inner, Op::ReleaseFileRange);
        let mut table = inner.lock();
        let drain = loop {
            let set = table.chunks_of_file_range(&drain);
            let mut blocked = Blocked {
                chunks: table.draining_among(&set),
                drains: Vec::new(),
            };
            blocked
                .chunks
                .extend(table.pending_map_chunks(Some(backing), Some(&drain)));
            if blocked.is_empty() {
                guard.drained = set.iter().map(|&c| table.offset_of(c)).collect();
                break table.mark_draining(Op::ReleaseFileRange, set, None, Some(drain));
            }
            table = waiter.park(table, &blocked)?;
        };
        if !guard.drained.is_empty() {
            Inner::bump(&inner.stats.drains);
            table = self.drain_pins(table, &mut waiter, drain)?;
        }
        drop(table);
        guard.drain = Some(drain);
        Ok(guard)
    }

    /// Whether the mapper maps only whole pages inside a file (see [`super::extent`]).
    pub fn maps_within_file(&self) -> bool {
        self.inner.mapper.maps_within_file()
    }

    /// Before the file of `backing` is resized to `new_size` through us: fails with
    /// [`LedgerError::Unfollowable`] (nothing changed) if a live mapping of it could not
    /// show every byte of the file afterwards (see [`super::extent`]).
    pub fn check_resize(&self, backing: BackingId, new_size: u64) -> Result<(), LedgerError> {
        for (window_offset, _, file_offset, _) in self.live_of(backing) {
            if !self
                .inner
                .mapper
                .follows_resize(window_offset, file_offset, new_size)
            {
                Inner::bump(&self.inner.stats.resize_refusals);
                return Err(LedgerError::Unfollowable {
                    backing,
                    new_size,
                    window_offset: window_offset.raw(),
                });
            }
        }
        Ok(())
    }

    /// After the file of `backing` grew: lets the mapper add what it can now map to the
    /// live mappings of it. Failures are logged; the mappings stay as they were.
    pub fn file_grew(&self, backing: BackingId) {
        for (window_offset, len, file_offset, file) in self.live_of(backing) {
            if let Err(e) = self
                .inner
                .mapper
                .extend(window_offset, len, file.fd(), file_offset)
            {
                log::warn!(
                    "dax ledger: could not extend {window_offset}+{len:#x} of backing \
                     {backing} after its file grew: {e}"
                );
            }
        }
    }

    /// `(window_offset, len, file_offset, backing)` of every live mapping of `backing`.
    fn live_of(
        &self,
        backing: BackingId,
    ) -> Vec<(WindowOffset, u64, FileOffset, Arc<dyn Backing>)> {
        let table = self.inner.lock();
        if !table.backings.contains_key(&backing) {
            return Vec::new();
        }
        table
            .mappings
            .values()
            .filter(|m| m.backing_id == backing)
            .map(|m| {
                let v = table.victim(m);
                (
                    WindowOffset(v.window_offset),
                    v.len,
                    FileOffset(m.file_offset),
                    m.backing.clone(),
                )
            })
            .collect()
    }

    /// The device is shutting down: every map, unmap, pin and file-range release that
    /// waits (or would wait) from now on fails with [`LedgerError::Stopping`], changing
    /// nothing — a truncate parked on a VMM's pin must not go ahead once shutdown drops
    /// that pin. The shutdown's own release ([`Ledger::reset`]) still waits.
    pub fn stop_waiting(&self) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Under the lock, so no waiter checks the flag and then sleeps through this.
        let _table = self.inner.lock();
        self.inner.cond.notify_all();
    }

    /// Releases every mapping of `backing` the first way (inode eviction). Returns how many
    /// were released. Maps of `backing` in progress are waited for and released too.
    pub fn release_backing(&self, backing: BackingId) -> Result<usize, LedgerError> {
        self.release_all(Op::ReleaseBacking, Some(backing))
    }

    /// Releases every mapping the first way: device reset, FUSE_DESTROY, disconnect,
    /// shutdown. Returns how many were released. Waits (bounded) for every pin; if the
    /// budget runs out, nothing is released.
    pub fn reset(&self) -> Result<usize, LedgerError> {
        self.release_all(Op::Reset, None)
    }

    fn release_all(&self, op: Op, backing: Option<BackingId>) -> Result<usize, LedgerError> {
        let inner = &*self.inner;
        let mut waiter = Waiter::new(inner, op);
        let mut table = inner.lock();
        let drain = loop {
            let set = table.chunks_of(backing);
            let mut blocked = Blocked {
                chunks: table.draining_among(&set),
                drains: Vec::new(),
            };
            blocked
                .chunks
                .extend(table.pending_map_chunks(backing, None));
            if blocked.is_empty() {
                if set.is_empty() {
                    return Ok(0);
                }
                break table.mark_draining(op, set, None, None);
            }
            table = waiter.park(table, &blocked)?;
        };
        self.release_drained(table, &mut waiter, drain)
    }

    /// Waits (bounded) for the pins of a drain's chunks to drain. On timeout the drain is
    /// ended and nothing else changes.
    fn drain_pins<'g>(
        &self,
        mut table: MutexGuard<'g, Table>,
        waiter: &mut Waiter<'_>,
        drain: DrainId,
    ) -> Result<MutexGuard<'g, Table>, LedgerError> {
        loop {
            let pinned = table.pinned_in_drain(drain);
            if pinned.is_empty() {
                return Ok(table);
            }
            let blocked = Blocked {
                chunks: pinned,
                drains: Vec::new(),
            };
            match waiter.park(table, &blocked) {
                Ok(t) => table = t,
                Err(e) => {
                    self.inner.reopen(drain);
                    return Err(e);
                }
            }
        }
    }

    /// Drains, unmaps and forgets the mappings in a drain, then ends it.
    fn release_drained(
        &self,
        table: MutexGuard<'_, Table>,
        waiter: &mut Waiter<'_>,
        drain: DrainId,
    ) -> Result<usize, LedgerError> {
        let victims = table.victims_in_drain(drain);
        let table = if victims.is_empty() {
            table
        } else {
            Inner::bump(&self.inner.stats.drains);
            self.drain_pins(table, waiter, drain)?
        };
        drop(table);
        let (released, failed) = self.release(&victims);
        self.inner.reopen(drain);
        match failed {
            Some(e) => Err(e),
            None => Ok(released),
        }
    }

    /// Unmaps the drained mappings of a drain one by one (no lock held during the mapper call),
    /// and drops the references of each one the frontend let go of. Returns how many were
    /// released and the first failure.
    fn release(&self, victims: &[Victim]) -> (usize, Option<LedgerError>) {
        let inner = &*self.inner;
        let mut released = 0;
        let mut failed = None;
        let mut refs: Vec<Arc<dyn Backing>> = Vec::new();
        for v in victims {
            match inner.mapper.unmap(v.window_offset, v.len) {
                Ok(()) => {}
                Err(MapperError::Disconnected) => log::info!(
                    "dax ledger: {:#x}+{:#x} went with the disconnected frontend",
                    v.window_offset,
                    v.len
                ),
                Err(source) => {
                    Inner::bump(&inner.stats.mapper_errors);
                    log::error!(
                        "dax ledger: the frontend failed to unmap {:#x}+{:#x}: {source}; \
                         the mapping and its references stay",
                        v.window_offset,
                        v.len
                    );
                    failed.get_or_insert(LedgerError::Mapper {
                        call: MapperCall::Unmap,
                        window_offset: v.window_offset,
                        len: v.len,
                        source,
                    });
                    continue;
                }
            }
            refs.extend(inner.lock().remove_mapping(v.first));
            Inner::bump(&inner.stats.unmaps);
            log::debug!("dax ledger: released {:#x}+{:#x}", v.window_offset, v.len);
            released += 1;
        }
        // Dropping the last reference may close a file: done here, with no lock held.
        drop(refs);
        (released, failed)
    }
}
