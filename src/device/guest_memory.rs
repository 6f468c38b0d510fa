//! What a connection does about guest memory its frontend may pull away.
//!
//! Each memory table a frontend sends (SET_MEM_TABLE, ADD/REM_MEM_REG) is looked at once:
//! regions backed by a memfd sealed against shrinking (`F_SEAL_SHRINK`) are safe; every
//! other region (an unsealed memfd, a file, hugetlbfs, a DAX mapping QEMU 11.1 adds to the
//! table) is registered with the SIGBUS handler of [`crate::sys::sigbus`], and the table
//! says which regions those are. If the frontend shrinks such a file and a request then
//! touches the cut part, the handler maps a zero page there so the access completes, and
//! the device, checking after each request ([`MemoryGuard::check`]), finds the fault,
//! logs which region it was, stops serving and drops the connection: its view of guest
//! memory is no longer the guest's. The listener then takes the next frontend; other
//! devices of the process never notice.
//!
//! Rings get the same care: vhost-user-backend 0.24 checks only that each ring's *start*
//! address (SET_VRING_ADDR) lies in guest memory, and never calls virtio-queue's
//! `Queue::is_valid`; every later access is bounds-checked by vm-memory, so a ring that
//! straddles the end of memory cannot fault, but the device would serve requests whose
//! completions it then cannot write. [`MemoryGuard::ring_inside`] checks the whole ring
//! (virtio 1.2 §2.7: descriptor table, available and used rings at the queue's size)
//! before each pop; a queue whose ring is not wholly inside guest memory serves nothing, and the
//! first kick says why.
//!
//! A table stays registered for as long as anybody else (a request in flight, the
//! vhost-user handler) still holds it, so a range is never unregistered while it may be
//! touched, and never registered after it was unmapped (the registration holds the table).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use vhost_user_backend::ShutdownHandle;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::sys::sigbus::{self, GuardedRange};

/// One region registered with the handler.
struct Range {
    guard: Option<GuardedRange>,
    gpa: u64,
    len: u64,
    host: usize,
    why: &'static str,
}

/// A table and its registered ranges (dropped before the table, which keeps them mapped).
struct Table {
    ranges: Vec<Arc<Range>>,
    memory: Arc<GuestMemoryMmap>,
}

impl Table {
    /// Nobody but us holds the table: its ranges can no longer be touched.
    fn unused(&self) -> bool {
        Arc::strong_count(&self.memory) == 1
    }
}

/// Tables of ended connections that requests still held at the end; dropped once unused.
static LINGERING: Mutex<Vec<Table>> = Mutex::new(Vec::new());

fn prune_lingering() {
    LINGERING
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|t| !t.unused());
}

/// One connection's guest-memory guard. Cheap to clone (shared state).
#[derive(Clone)]
pub struct MemoryGuard {
    inner: Arc<Inner>,
}

struct Inner {
    device: &'static str,
    state: Mutex<State>,
    broken: AtomicBool,
    /// [`sigbus::faults`] when last checked.
    seen: AtomicU64,
    /// Queues (bit per index, up to 64) whose ring outside memory was already reported.
    bad_rings: AtomicU64,
}

#[derive(Default)]
struct State {
    tables: Vec<Table>,
    /// Registered ranges by host address and length, shared by tables that share a region.
    ranges: HashMap<(usize, u64), Weak<Range>>,
    shutdown: Option<ShutdownHandle>,
    tables_seen: u64,
}

impl MemoryGuard {
    /// A guard for a new connection of `device` ("fs", "pmem").
    pub fn new(device: &'static str) -> Self {
        MemoryGuard {
            inner: Arc::new(Inner {
                device,
                state: Mutex::new(State::default()),
                broken: AtomicBool::new(false),
                seen: AtomicU64::new(sigbus::faults()),
                bad_rings: AtomicU64::new(0),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection to end if a fault is found (given once the connection is accepted).
    pub fn set_shutdown(&self, handle: Option<ShutdownHandle>) {
        let Some(handle) = handle else { return };
        if self.inner.broken.load(Ordering::SeqCst) {
            handle.shutdown();
        }
        self.state().shutdown = Some(handle);
    }

    /// Takes a new memory table: reads each region's seals, registers the regions that can
    /// shrink under us, and logs those not registered before (at info for the first table
    /// of the connection, at debug for later ones: QEMU 11.1 adds each DAX mapping to the
    /// table, a file that cannot be sealed).
    pub fn table(&self, memory: Arc<GuestMemoryMmap>) {
        prune_lingering();
        let mut state = self.state();
        state.tables_seen += 1;
        let first = state.tables_seen == 1;
        let mut ranges = Vec::new();
        let (mut sealed, mut unsealed) = (0usize, Vec::new());
        for region in memory.iter() {
            let Some(backing) = region.file_offset() else {
                continue;
            };
            let host = region.as_ptr() as usize;
            let key = (host, region.len());
            // Registered with an earlier table: the same mapping, no seals to read again
            // (QEMU 11.1 sends a table per DAX mapping, of up to 509 regions).
            if let Some(range) = state.ranges.get(&key).and_then(Weak::upgrade) {
                ranges.push(range);
                continue;
            }
            // A seal keeps a file from shrinking, not from being short already: a region
            // the frontend declared past its file's end faults there, sealed or not.
            let past_end = backing
                .file()
                .metadata()
                .ok()
                .filter(|m| m.file_type().is_file())
                .is_some_and(|m| backing.start().saturating_add(region.len()) > m.len());
            let why = if past_end {
                "declared past the end of its file"
            } else {
                match sigbus::seals(backing.file()) {
                    Ok(Some(seals)) if seals & libc::F_SEAL_SHRINK != 0 => {
                        sealed += 1;
                        continue;
                    }
                    Ok(Some(_)) => "a memfd or tmpfs file not sealed against shrinking",
                    Ok(None) => "a file that cannot be sealed",
                    Err(_) => "a file whose seals cannot be read",
                }
            };
            if past_end {
                log::warn!(
                    "{}: guest memory at {:#x} ({} bytes) reaches past the end of its file: \
                     a request there ends the connection",
                    self.inner.device,
                    region.start_addr().0,
                    region.len()
                );
            }
            let guard = usize::try_from(region.len())
                .ok()
                .and_then(|len| GuardedRange::register(host, len));
            let range = Arc::new(Range {
                guard,
                gpa: region.start_addr().0,
                len: region.len(),
                host,
                why,
            });
            if range.guard.is_none() {
                log::warn!(
                    "{}: guest memory at {:#x} ({} bytes) is {why} and cannot be guarded \
                     (no free slot, or the handler is not installed): a frontend that \
                     shrinks it would end the process",
                    self.inner.device,
                    range.gpa,
                    range.len
                );
            }
            state.ranges.insert(key, Arc::downgrade(&range));
            unsealed.push(format!("{:#x}+{:#x} ({why})", range.gpa, range.len));
            ranges.push(range);
        }
        if !unsealed.is_empty() {
            let level = if first {
                log::Level::Info
            } else {
                log::Level::Debug
            };
            log::log!(
                level,
                "{}: memory table: {sealed} region(s) sealed against shrinking; not sealed: {}. \
                 A frontend that shrinks those under a request ends its connection",
                self.inner.device,
                unsealed.join(", ")
            );
        } else if first {
            log::debug!(
                "{}: memory table: all {sealed} region(s) sealed against shrinking",
                self.inner.device
            );
        }
        // Only now are the tables nobody uses any more let go: a region the new table
        // shares with them stays registered throughout (its range was shared above).
        let new = Table { ranges, memory };
        state.tables.retain(|t| !t.unused());
        state.tables.push(new);
        state.ranges.retain(|_, r| r.strong_count() > 0);
    }

    /// Whether the connection is broken: a fault was repaired in one of its regions (the
    /// first call to see it logs the region and ends the connection). Cheap when no fault
    /// happened anywhere since the last call: one atomic load.
    pub fn check(&self) -> bool {
        if self.inner.broken.load(Ordering::SeqCst) {
            return true;
        }
        // Loads only, on the path every request takes: no cache line written per request.
        let now = sigbus::faults();
        if self.inner.seen.load(Ordering::SeqCst) == now {
            return false;
        }
        self.inner.seen.store(now, Ordering::SeqCst);
        let mut state = self.state();
        let hit = state
            .tables
            .iter()
            .flat_map(|t| t.ranges.iter())
            .find_map(|r| Some((r.clone(), r.guard.as_ref()?.fault()?)));
        let Some((range, addr)) = hit else {
            return false;
        };
        if self.inner.broken.swap(true, Ordering::SeqCst) {
            return true;
        }
        log::error!(
            "{}: the frontend cut guest memory under the device: the region at guest \
             address {:#x} ({} bytes, {}) faulted at guest address {:#x}, past the end of \
             its file (shrunk after the memory table was sent). The device serves nothing \
             more and drops the connection",
            self.inner.device,
            range.gpa,
            range.len,
            range.why,
            range.gpa + (addr - range.host) as u64
        );
        if let Some(handle) = state.shutdown.take() {
            handle.shutdown();
        }
        true
    }

    /// Whether the rings of queue number `queue` (`q`) lie wholly inside `mem`; the first
    /// look at a queue whose rings do not (until they do again) logs which ring and where.
    /// Called under the vring's lock right before each pop, so a SET_VRING_ADDR cannot
    /// come between the check and the pop.
    pub fn ring_inside(&self, queue: usize, q: &Queue, mem: &GuestMemoryMmap) -> bool {
        let size = u64::from(q.size());
        let rings = [
            ("descriptor table", q.desc_table(), 16),
            ("available ring", q.avail_ring(), 2),
            ("used ring", q.used_ring(), 8),
        ];
        let bit = u32::try_from(queue)
            .ok()
            .and_then(|q| 1u64.checked_shl(q))
            .unwrap_or(0);
        // virtio 1.2 §2.7: 16 bytes per descriptor; flags, idx, the entries and
        // used_event/avail_event (2 bytes each) around the available and used rings.
        let outside = rings.iter().find_map(|&(name, start, entry)| {
            let len = if entry == 16 {
                16 * size
            } else {
                6 + entry * size
            };
            let len_usize = usize::try_from(len).ok()?;
            (!mem.check_range(GuestAddress(start), len_usize)).then_some((name, start, len))
        });
        let Some((name, start, len)) = outside else {
            self.inner.bad_rings.fetch_and(!bit, Ordering::SeqCst);
            return true;
        };
        if self.inner.bad_rings.fetch_or(bit, Ordering::SeqCst) & bit == 0 {
            log::error!(
                "{}: queue {queue} serves nothing: its {name} ({len} bytes at guest address \
                 {start:#x}, queue size {size}) is not wholly inside guest memory \
                 (SET_VRING_ADDR placed it across the end of a region)",
                self.inner.device
            );
        }
        false
    }

    /// The connection has ended: tables nobody holds any more are unregistered and
    /// unmapped; the rest wait until the requests holding them are gone.
    pub fn end(&self) {
        let tables = std::mem::take(&mut self.state().tables);
        let mut lingering = LINGERING.lock().unwrap_or_else(|p| p.into_inner());
        lingering.extend(tables);
        lingering.retain(|t| !t.unused());
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let tables = std::mem::take(&mut state.tables);
        LINGERING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(tables.into_iter().filter(|t| !t.unused()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{FileOffset, GuestRegionMmap};

    fn region(gpa: u64, len: usize, sealed: bool) -> Arc<GuestRegionMmap> {
        let file = crate::sys::memfd("guard-test", len as u64).unwrap();
        if sealed {
            sigbus::add_seals(&file, libc::F_SEAL_SHRINK).unwrap();
        }
        Arc::new(
            GuestRegionMmap::from_range(GuestAddress(gpa), len, Some(FileOffset::new(file, 0)))
                .unwrap(),
        )
    }

    fn registered(guard: &MemoryGuard, r: &GuestRegionMmap) -> Option<Weak<Range>> {
        let key = (r.as_ptr() as usize, r.len());
        guard.state().ranges.get(&key).cloned()
    }

    #[test]
    fn a_region_the_next_table_keeps_stays_registered_through_the_change() {
        let guard = MemoryGuard::new("test");
        let kept = region(0, 0x10000, false);
        let a = Arc::new(GuestMemoryMmap::from_arc_regions(vec![kept.clone()]).unwrap());
        guard.table(a.clone());
        let first = registered(&guard, &kept).expect("an unsealed region is registered");
        // ADD_MEM_REG: a new table sharing the region, the old one let go by the handler.
        let b = Arc::new(a.insert_region(region(0x100000, 0x10000, false)).unwrap());
        drop(a);
        guard.table(b.clone());
        assert!(
            first.upgrade().is_some(),
            "the shared region was unregistered and registered again"
        );
        assert_eq!(guard.state().tables.len(), 1, "the unused table was let go");
        drop(b);
        guard.end();
        assert!(
            first.upgrade().is_none(),
            "unregistered once no table holds it"
        );
    }

    #[test]
    fn a_sealed_region_is_not_registered() {
        let guard = MemoryGuard::new("test");
        let sealed = region(0, 0x10000, true);
        let table = Arc::new(GuestMemoryMmap::from_arc_regions(vec![sealed.clone()]).unwrap());
        guard.table(table);
        assert!(registered(&guard, &sealed).is_none());
    }

    #[test]
    fn a_sealed_region_past_the_end_of_its_file_is_registered() {
        let guard = MemoryGuard::new("test");
        let file = crate::sys::memfd("guard-test", 0x10000).unwrap();
        sigbus::add_seals(&file, libc::F_SEAL_SHRINK).unwrap();
        // Declared twice as long as the file (mapping past the end is allowed; touching
        // the second half would raise SIGBUS).
        let short = Arc::new(
            GuestRegionMmap::from_range(GuestAddress(0), 0x20000, Some(FileOffset::new(file, 0)))
                .unwrap(),
        );
        let table = Arc::new(GuestMemoryMmap::from_arc_regions(vec![short.clone()]).unwrap());
        guard.table(table);
        let range = registered(&guard, &short).expect("the short sealed region is guarded");
        assert_eq!(
            range.upgrade().unwrap().why,
            "declared past the end of its file"
        );
    }

    #[test]
    fn a_table_still_in_use_at_the_end_stays_registered_until_let_go() {
        let guard = MemoryGuard::new("test");
        let r = region(0, 0x10000, false);
        let table = Arc::new(GuestMemoryMmap::from_arc_regions(vec![r.clone()]).unwrap());
        guard.table(table.clone());
        let range = registered(&guard, &r).unwrap();
        // A request still holds the table when the connection ends.
        guard.end();
        drop(guard);
        assert!(range.upgrade().is_some(), "unregistered while still in use");
        drop(table);
        prune_lingering();
        assert!(range.upgrade().is_none());
    }
}
