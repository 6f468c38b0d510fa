//! Shared-memory regions of our frontend: address space reserved `PROT_NONE`, into which
//! the backend's SHMEM_MAP requests map files (MAP_FIXED) and from which SHMEM_UNMAP
//! removes them again.
//!
//! The reservations never leave [`ShmemWindows`]: only the backend channel's handlers
//! (`shmem_map`/`shmem_unmap`), under the state lock, map into them or clear them, so the
//! record of live mappings is always what is really mapped.
//!
//! The mapped pages are shared file pages: the daemon and the host write them while we
//! read them, and the file under a mapping may shrink at any time (a guest truncate the
//! daemon carries out, or any host process). A load from a page beyond the file's end
//! raises SIGBUS. Hence two ways in:
//!
//! - [`ShmemWindows::read`] and [`ShmemWindows::write`] are safe and cannot crash the
//!   process: they check the range against the live mappings and copy through the kernel
//!   (`process_vm_readv`/`writev` on our own process), which turns a page beyond the
//!   file's end into [`WindowError::Fault`].
//! - [`ShmemWindows::read_volatile`] and [`ShmemWindows::write_volatile`] copy with the
//!   CPU's own loads and stores, as a guest would, only volatile ones (see `copy_out`),
//!   never a plain `memcpy` the compiler may assume nobody else sees. They are `unsafe`:
//!   the caller promises that the file stays long enough for the whole copy.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Mutex;

use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{HandlerResult, VhostUserFrontendReqHandler};

use crate::sys::Reservation;

/// The host page size the within-file rule rounds map lengths up to.
const PAGE: u64 = 4096;

/// Why an access to a shared-memory region was refused.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    /// The device has no region with that id.
    #[error("no shared-memory region {shmid}")]
    NoSuchRegion {
        /// Region id asked for.
        shmid: u8,
    },
    /// The range does not lie inside the region.
    #[error("[{offset:#x}+{len:#x}] lies outside region {shmid} of {size:#x} bytes")]
    OutOfBounds {
        /// Region id.
        shmid: u8,
        /// Start of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// Size of the region.
        size: u64,
    },
    /// A byte of the range lies in no live mapping.
    #[error("region {shmid} has no live mapping at {offset:#x}")]
    NotMapped {
        /// Region id.
        shmid: u8,
        /// First byte not mapped.
        offset: u64,
    },
    /// A write reaches a mapping the backend made read-only.
    #[error("region {shmid} is mapped read-only at {offset:#x}")]
    ReadOnly {
        /// Region id.
        shmid: u8,
        /// First byte mapped read-only.
        offset: u64,
    },
    /// The copy stopped at a page that faults: beyond the end of the mapped file (it
    /// shrank under the mapping), or one the file system could not read. A guest's access
    /// there would fault the same way.
    #[error("region {shmid} faults at {offset:#x} (beyond the end of the mapped file?)")]
    Fault {
        /// Region id.
        shmid: u8,
        /// Offset in the region where the copy stopped (page granular).
        offset: u64,
    },
    /// The kernel refused the copy for another reason.
    #[error("copy through region {shmid}: {source}")]
    Io {
        /// Region id.
        shmid: u8,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
}

/// A mapping the backend asked for, as the frontend recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveMapping {
    /// Region id.
    pub shmid: u8,
    /// Offset inside the region.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// Offset in the backend's file.
    pub fd_offset: u64,
    /// Mapped read-write.
    pub writable: bool,
}

/// Counts of backend requests, for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    /// SHMEM_MAP requests honoured.
    pub maps: u64,
    /// SHMEM_UNMAP requests honoured.
    pub unmaps: u64,
    /// Requests refused (bad region, out of bounds, overlap, no such mapping, past the
    /// end of the file under [`MapRule::WithinFile`]).
    pub refused: u64,
    /// Mappings dropped by the frontend itself at a device reset.
    pub dropped_at_reset: u64,
}

/// What the frontend will map, as real VMMs differ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MapRule {
    /// mmap semantics: any page-aligned range of the file, past its end too (alioth).
    #[default]
    PastEof,
    /// As QEMU 11.1, which builds each map as RAM from the descriptor: a map that ends
    /// past the end of a non-empty file (its length rounded up to the page) is refused.
    /// QEMU grows an empty file instead; here that is refused too, and counted.
    WithinFile,
}

/// All shared-memory regions of one device, indexed by shmid.
///
/// What is mapped changes only through the backend channel (`shmem_map`/`shmem_unmap`
/// of [`VhostUserFrontendReqHandler`]), so the record of live mappings that every access
/// is checked against is always the truth:
///
/// ```
/// # use vhost_dax::frontend::ShmemWindows;
/// let windows = ShmemWindows::new(&[2 << 20]).unwrap();
/// assert_eq!(windows.region_len(0), Some(2 << 20));
/// assert!(!windows.is_mapped(0, 0, 4096));
/// assert!(windows.read(0, 0, &mut [0u8; 4]).is_err());
/// ```
///
/// Nothing hands out the reservation itself, whose pages a caller could otherwise clear
/// under a live mapping (a later read then died of SIGSEGV while `is_mapped` said true):
///
/// ```compile_fail
/// # use vhost_dax::frontend::ShmemWindows;
/// let windows = ShmemWindows::new(&[2 << 20]).unwrap();
/// windows.region(0).unwrap().clear(0, 4096).unwrap();
/// ```
pub struct ShmemWindows {
    /// Never handed out: mapped and cleared only by `map`/`unmap`, under `state`'s lock.
    regions: Vec<Option<Reservation>>,
    rule: MapRule,
    state: Mutex<WindowState>,
}

#[derive(Default)]
struct WindowState {
    live: BTreeMap<(u8, u64), LiveMapping>,
    stats: WindowStats,
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// `Ok` when the kernel copied all `want` bytes, else the fault where it stopped.
fn fault_unless_complete(
    shmid: u8,
    offset: u64,
    done: usize,
    want: usize,
) -> Result<(), WindowError> {
    if done == want {
        Ok(())
    } else {
        Err(WindowError::Fault {
            shmid,
            offset: offset + done as u64,
        })
    }
}

impl ShmemWindows {
    /// Reserves one region per non-zero size (index = shmid).
    pub fn new(sizes: &[u64]) -> io::Result<Self> {
        let regions = sizes
            .iter()
            .map(|&size| {
                if size == 0 {
                    return Ok(None);
                }
                let len = usize::try_from(size).map_err(|_| einval())?;
                Reservation::new(len).map(Some)
            })
            .collect::<io::Result<_>>()?;
        Ok(ShmemWindows {
            regions,
            rule: MapRule::PastEof,
            state: Mutex::new(WindowState::default()),
        })
    }

    /// The same windows, mapping under `rule`.
    pub fn with_rule(mut self, rule: MapRule) -> Self {
        self.rule = rule;
        self
    }

    /// Drops every live mapping, as a frontend does when it resets the device.
    pub fn drop_all(&self) -> io::Result<()> {
        let mut state = self.lock();
        let live: Vec<_> = state.live.values().copied().collect();
        for m in live {
            if let Some(region) = self.region(m.shmid) {
                region.clear(m.offset, m.len)?;
            }
            state.live.remove(&(m.shmid, m.offset));
            state.stats.dropped_at_reset += 1;
        }
        Ok(())
    }

    fn region(&self, shmid: u8) -> Option<&Reservation> {
        self.regions
            .get(usize::from(shmid))
            .and_then(Option::as_ref)
    }

    /// Size in bytes of region `shmid`, if the device has that region.
    pub fn region_len(&self, shmid: u8) -> Option<u64> {
        self.region(shmid).map(|r| r.len() as u64)
    }

    /// Host virtual address of the first byte of region `shmid`, if the device has that
    /// region: for reading `/proc/self/maps`, or for handing the region to a hypervisor
    /// (see [`KvmSlot`](super::KvmSlot), which also keeps the region alive as long as
    /// the hypervisor may touch it). An address, not a pointer: using it is on the caller.
    pub fn host_address(&self, shmid: u8) -> Option<usize> {
        self.region(shmid).map(|r| r.base() as usize)
    }

    /// Mappings currently in place, in region/offset order.
    pub fn live(&self) -> Vec<LiveMapping> {
        self.lock().live.values().copied().collect()
    }

    /// Request counters.
    pub fn stats(&self) -> WindowStats {
        self.lock().stats
    }

    /// Whether `[offset, offset+len)` of region `shmid` is fully covered by live mappings.
    pub fn is_mapped(&self, shmid: u8, offset: u64, len: u64) -> bool {
        self.covered(&self.lock(), shmid, offset, len, false)
            .is_ok()
    }

    /// Copies bytes out of region `shmid` at `offset` into `buf`. Every byte must lie in a
    /// live mapping ([`WindowError::NotMapped`] otherwise); a page beyond the end of the
    /// mapped file ends the copy with [`WindowError::Fault`], where a guest's load would
    /// fault. Never raises a signal: the kernel does the copy (see the module doc).
    ///
    /// The state lock, held for the copy, keeps the backend channel from replacing or
    /// unmapping those mappings meanwhile. Bytes the daemon or the host write during the
    /// copy may show old or new, in any mix, as they would to a guest.
    pub fn read(&self, shmid: u8, offset: u64, buf: &mut [u8]) -> Result<(), WindowError> {
        let state = self.lock();
        let (region, _) = self.covered(&state, shmid, offset, buf.len() as u64, false)?;
        let done = region
            .copy_out(offset, buf)
            .map_err(|source| WindowError::Io { shmid, source })?;
        fault_unless_complete(shmid, offset, done, buf.len())
    }

    /// Copies `data` into region `shmid` at `offset`. Every byte must lie in a live,
    /// writable mapping ([`WindowError::NotMapped`] / [`WindowError::ReadOnly`]); a page
    /// beyond the end of the mapped file ends the copy with [`WindowError::Fault`] (the
    /// bytes before it are written). Never raises a signal; the same lock as
    /// [`ShmemWindows::read`] applies.
    pub fn write(&self, shmid: u8, offset: u64, data: &[u8]) -> Result<(), WindowError> {
        let state = self.lock();
        let (region, _) = self.covered(&state, shmid, offset, data.len() as u64, true)?;
        let done = region
            .copy_in(offset, data)
            .map_err(|source| WindowError::Io { shmid, source })?;
        fault_unless_complete(shmid, offset, done, data.len())
    }

    /// Copies bytes out of region `shmid` at `offset` with the CPU's own volatile loads, as
    /// a guest load through the window would: the way to measure the window. The same
    /// checks as [`ShmemWindows::read`] apply, under the same lock.
    ///
    /// # Safety
    ///
    /// Every page of `offset..offset + buf.len()` must stay readable for the whole call:
    /// the files mapped there must not shrink below the range (no truncate by the guest,
    /// the daemon or any host process) and their storage must not fail, or the load raises
    /// SIGBUS and the process dies.
    pub unsafe fn read_volatile(
        &self,
        shmid: u8,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), WindowError> {
        let state = self.lock();
        let (region, at) = self.covered(&state, shmid, offset, buf.len() as u64, false)?;
        // SAFETY: `covered` checked that `at..at+buf.len()` lies inside the reservation and
        // inside live mappings (PROT_READ at least); the state lock we hold keeps `map` and
        // `unmap`, the only code that maps or clears the reservation, from replacing them
        // before we return. `buf` cannot overlap the range: no reference into a reservation
        // is ever handed out. The file stays long enough: our caller's promise.
        unsafe { copy_out(region.base().add(at), buf) };
        Ok(())
    }

    /// Copies `data` into region `shmid` at `offset` with the CPU's own volatile stores, as a
    /// guest store through the window would. The same checks as [`ShmemWindows::write`].
    ///
    /// # Safety
    ///
    /// As for [`ShmemWindows::read_volatile`]: every page of the range must stay backed by
    /// its file for the whole call, or the store raises SIGBUS.
    pub unsafe fn write_volatile(
        &self,
        shmid: u8,
        offset: u64,
        data: &[u8],
    ) -> Result<(), WindowError> {
        let state = self.lock();
        let (region, at) = self.covered(&state, shmid, offset, data.len() as u64, true)?;
        // SAFETY: as in `read_volatile`: the range is inside the reservation and inside live
        // mappings, here PROT_READ|PROT_WRITE ones, which the state lock keeps in place;
        // `data` cannot overlap the range; the file stays long enough (caller's promise).
        unsafe { copy_in(region.base().add(at), data) };
        Ok(())
    }

    /// The region and `offset` as an index into it, if `offset..offset+len` of it is
    /// covered by live mappings (writable ones when `write`).
    fn covered(
        &self,
        state: &WindowState,
        shmid: u8,
        offset: u64,
        len: u64,
        write: bool,
    ) -> Result<(&Reservation, usize), WindowError> {
        let region = self
            .region(shmid)
            .ok_or(WindowError::NoSuchRegion { shmid })?;
        let size = region.len() as u64;
        let out_of_bounds = || WindowError::OutOfBounds {
            shmid,
            offset,
            len,
            size,
        };
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= size)
            .ok_or_else(out_of_bounds)?;
        // Cannot fail once `end <= size`, a usize; an error all the same, never a wrap.
        let at = usize::try_from(offset).map_err(|_| out_of_bounds())?;
        let mut cursor = offset;
        for m in state.live.values().filter(|m| m.shmid == shmid) {
            if cursor >= end {
                break;
            }
            if m.offset <= cursor && cursor < m.offset + m.len {
                if write && !m.writable {
                    return Err(WindowError::ReadOnly {
                        shmid,
                        offset: cursor,
                    });
                }
                cursor = m.offset + m.len;
            }
        }
        if cursor < end {
            return Err(WindowError::NotMapped {
                shmid,
                offset: cursor,
            });
        }
        Ok((region, at))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refuse(&self, why: &str, req: &VhostUserMMap) -> io::Error {
        let (shmid, offset, len) = (req.shmid, req.shm_offset, req.len);
        log::warn!(
            "frontend: refusing backend request on region {shmid} [{offset:#x}+{len:#x}]: {why}"
        );
        self.lock().stats.refused += 1;
        einval()
    }

    /// Checks the request names a region we have and lies inside it.
    fn checked_region(&self, req: &VhostUserMMap) -> io::Result<&Reservation> {
        let region = self
            .region(req.shmid)
            .ok_or_else(|| self.refuse("no such region", req))?;
        let end = req.shm_offset.checked_add(req.len);
        if req.len == 0 || end.is_none_or(|end| end > region.len() as u64) {
            return Err(self.refuse("range outside the region", req));
        }
        Ok(region)
    }

    fn map(&self, req: &VhostUserMMap, fd: BorrowedFd<'_>) -> io::Result<()> {
        let region = self.checked_region(req)?;
        let (offset, len) = (req.shm_offset, req.len);
        let writable = VhostUserMMapFlags::from_bits_truncate(req.flags)
            .contains(VhostUserMMapFlags::WRITABLE);
        let mut state = self.lock();
        let overlaps = state
            .live
            .values()
            .any(|m| m.shmid == req.shmid && m.offset < offset + len && offset < m.offset + m.len);
        if overlaps {
            drop(state);
            return Err(self.refuse("overlaps a live mapping", req));
        }
        if self.rule == MapRule::WithinFile {
            let size = File::from(fd.try_clone_to_owned()?).metadata()?.len();
            let end = req.fd_offset.checked_add(len.next_multiple_of(PAGE));
            if size == 0 || end.is_none_or(|end| end > size) {
                drop(state);
                return Err(self.refuse("ends past the end of the file", req));
            }
        }
        region.map_file(offset, len, fd, req.fd_offset, writable)?;
        state.live.insert(
            (req.shmid, offset),
            LiveMapping {
                shmid: req.shmid,
                offset,
                len,
                fd_offset: req.fd_offset,
                writable,
            },
        );
        state.stats.maps += 1;
        Ok(())
    }

    fn unmap(&self, req: &VhostUserMMap) -> io::Result<()> {
        let region = self.checked_region(req)?;
        let (offset, len) = (req.shm_offset, req.len);
        let mut state = self.lock();
        match state.live.get(&(req.shmid, offset)) {
            Some(m) if m.len == len => {}
            _ => {
                drop(state);
                return Err(self.refuse("not exactly one live mapping", req));
            }
        }
        region.clear(offset, len)?;
        state.live.remove(&(req.shmid, offset));
        state.stats.unmaps += 1;
        Ok(())
    }
}

/// The unit of the volatile copies: an SSE2 register on x86_64 (16-byte volatile loads and
/// stores copy as fast as `memcpy` there), a `u64` elsewhere.
#[cfg(target_arch = "x86_64")]
type Word = std::arch::x86_64::__m128i;
#[cfg(not(target_arch = "x86_64"))]
type Word = u64;
const WORD: usize = std::mem::size_of::<Word>();
/// Words moved per step of the main loop.
const UNROLL: usize = 4;

/// Copies `dst.len()` bytes from `src` into `dst`, reading `src` only with volatile loads:
/// bytes up to the first `WORD`-aligned address, then aligned words, then bytes. Not
/// atomic: bytes written concurrently may come out old or new, in any mix.
///
/// # Safety
///
/// `src..src + dst.len()` must be readable memory for the whole call (mapped, and for a
/// file mapping below the file's end), and must not overlap `dst`.
unsafe fn copy_out(src: *const u8, dst: &mut [u8]) {
    let len = dst.len();
    let out = dst.as_mut_ptr();
    let head = (src as usize).wrapping_neg() % WORD;
    let mut i = 0;
    while i < len && i < head {
        // SAFETY: i < len: `src + i` is in the readable range, `out + i` inside `dst`.
        unsafe { out.add(i).write(src.add(i).read_volatile()) };
        i += 1;
    }
    while i + WORD * UNROLL <= len {
        // SAFETY: `src + i` is WORD-aligned (i = head + a multiple of WORD, and
        // `src + head` is aligned), the UNROLL words end at or before `src + len`, inside
        // the readable range; any bit pattern is a valid `Word`; the store goes to
        // `out + i .. out + i + WORD * UNROLL`, inside `dst`, unaligned.
        unsafe {
            let from = src.add(i).cast::<Word>();
            let words: [Word; UNROLL] = std::array::from_fn(|k| from.add(k).read_volatile());
            out.add(i).cast::<[Word; UNROLL]>().write_unaligned(words);
        }
        i += WORD * UNROLL;
    }
    while i + WORD <= len {
        // SAFETY: as above, for one aligned word.
        unsafe {
            let word = src.add(i).cast::<Word>().read_volatile();
            out.add(i).cast::<Word>().write_unaligned(word);
        }
        i += WORD;
    }
    while i < len {
        // SAFETY: i < len, as in the first loop.
        unsafe { out.add(i).write(src.add(i).read_volatile()) };
        i += 1;
    }
}

/// Copies `src` to `dst..dst + src.len()`, writing `dst` only with volatile stores, in the
/// same pattern as [`copy_out`].
///
/// # Safety
///
/// `dst..dst + src.len()` must be writable memory for the whole call (mapped writable, and
/// for a file mapping below the file's end), and must not overlap `src`.
unsafe fn copy_in(dst: *mut u8, src: &[u8]) {
    let len = src.len();
    let from = src.as_ptr();
    let head = (dst as usize).wrapping_neg() % WORD;
    let mut i = 0;
    while i < len && i < head {
        // SAFETY: i < len: `from + i` is inside `src`, `dst + i` in the writable range.
        unsafe { dst.add(i).write_volatile(from.add(i).read()) };
        i += 1;
    }
    while i + WORD * UNROLL <= len {
        // SAFETY: the load reads `from + i .. from + i + WORD * UNROLL`, inside `src`,
        // unaligned, and any bit pattern is a valid `Word`; `dst + i` is WORD-aligned (as in
        // `copy_out`) and the UNROLL words end at or before `dst + len`, inside the
        // writable range.
        unsafe {
            let words = from.add(i).cast::<[Word; UNROLL]>().read_unaligned();
            let to = dst.add(i).cast::<Word>();
            for (k, word) in words.into_iter().enumerate() {
                to.add(k).write_volatile(word);
            }
        }
        i += WORD * UNROLL;
    }
    while i + WORD <= len {
        // SAFETY: as above, for one aligned word.
        unsafe {
            let word = from.add(i).cast::<Word>().read_unaligned();
            dst.add(i).cast::<Word>().write_volatile(word);
        }
        i += WORD;
    }
    while i < len {
        // SAFETY: i < len, as in the first loop.
        unsafe { dst.add(i).write_volatile(from.add(i).read()) };
        i += 1;
    }
}

impl VhostUserFrontendReqHandler for ShmemWindows {
    fn shmem_map(&self, req: &VhostUserMMap, fd: &dyn AsRawFd) -> HandlerResult<u64> {
        // SAFETY: the descriptor was received with this message and stays open for the
        // duration of the call, which is all the borrow covers.
        let fd = unsafe { BorrowedFd::borrow_raw(fd.as_raw_fd()) };
        self.map(req, fd).map(|()| 0)
    }

    fn shmem_unmap(&self, req: &VhostUserMMap) -> HandlerResult<u64> {
        self.unmap(req).map(|()| 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB2: u64 = 2 << 20;

    /// A window of one 2 MiB region with `file` mapped over all of it, as the daemon maps a
    /// small file: the mapping reaches past the file's end.
    fn mapped(file: &std::fs::File, writable: bool) -> ShmemWindows {
        let windows = ShmemWindows::new(&[MIB2]).unwrap();
        let req = VhostUserMMap {
            len: MIB2,
            flags: if writable {
                VhostUserMMapFlags::WRITABLE.bits()
            } else {
                0
            },
            ..Default::default()
        };
        windows.shmem_map(&req, file).unwrap();
        assert!(windows.is_mapped(0, 0, MIB2));
        windows
    }

    /// Before the checked copies, each of these accesses killed the process with SIGBUS
    /// (the page lies beyond the file's end); now each is an error naming where it stopped.
    #[test]
    fn accesses_beyond_the_end_of_the_mapped_file_are_errors_not_sigbus() {
        let file = crate::sys::memfd("window-test", 8192).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"file bytes", 4000).unwrap();
        let windows = mapped(&file, true);
        let mut buf = [0u8; 10];
        windows.read(0, 4000, &mut buf).unwrap();
        assert_eq!(&buf, b"file bytes");

        let mut page = vec![0u8; 4096];
        assert!(matches!(
            windows.read(0, 8192, &mut page),
            Err(WindowError::Fault {
                shmid: 0,
                offset: 8192
            })
        ));
        // A copy that starts below the end stops at the first page past it.
        let mut across = vec![0u8; 8192];
        assert!(matches!(
            windows.read(0, 4096, &mut across),
            Err(WindowError::Fault { offset: 8192, .. })
        ));
        assert!(matches!(
            windows.write(0, MIB2 - 4, b"tail"),
            Err(WindowError::Fault { offset, .. }) if offset == MIB2 - 4
        ));

        // The file shrinks under the live mapping (any process may do that).
        file.set_len(100).unwrap();
        assert!(windows.is_mapped(0, 4000, 10), "still mapped");
        assert!(matches!(
            windows.read(0, 4090, &mut buf),
            Err(WindowError::Fault { offset: 4096, .. })
        ));
        // Below the new end, and in the rest of its page, the mapping still works.
        windows.write(0, 50, b"short").unwrap();
        windows.read(0, 50, &mut buf[..5]).unwrap();
        assert_eq!(&buf[..5], b"short");
        // Grown again, the same mapping shows the bytes, zero past the old end.
        file.set_len(8192).unwrap();
        windows.read(0, 4000, &mut buf).unwrap();
        assert_eq!(buf, [0u8; 10]);
    }

    #[test]
    fn accesses_outside_live_mappings_are_refused_with_what_is_wrong() {
        let file = crate::sys::memfd("window-test", MIB2).unwrap();
        let windows = mapped(&file, false);
        let mut buf = [0u8; 4];
        assert!(matches!(
            windows.read(1, 0, &mut buf),
            Err(WindowError::NoSuchRegion { shmid: 1 })
        ));
        assert!(matches!(
            windows.read(0, MIB2 - 2, &mut buf),
            Err(WindowError::OutOfBounds { size, .. }) if size == MIB2
        ));
        assert!(matches!(
            windows.write(0, 16, b"no"),
            Err(WindowError::ReadOnly { offset: 16, .. })
        ));
        let unmap = VhostUserMMap {
            len: MIB2,
            ..Default::default()
        };
        windows.shmem_unmap(&unmap).unwrap();
        assert!(matches!(
            windows.read(0, 0, &mut buf),
            Err(WindowError::NotMapped { offset: 0, .. })
        ));
        // SAFETY: the range is not mapped, so the call refuses before any load.
        let refused = unsafe { windows.read_volatile(0, 0, &mut buf) };
        assert!(matches!(refused, Err(WindowError::NotMapped { .. })));
    }

    /// As QEMU 11.1 and the vhost-user spec ("the given range shall correspond to the
    /// entirety of a valid mapped region"): one unmap covering two adjacent maps, or part
    /// of one, is refused and unmaps nothing; each map's own range unmaps it.
    #[test]
    fn an_unmap_must_match_one_earlier_map_exactly() {
        let file = crate::sys::memfd("window-test", 2 * MIB2).unwrap();
        let windows = ShmemWindows::new(&[2 * MIB2]).unwrap();
        let at = |shm_offset, fd_offset, len| VhostUserMMap {
            shm_offset,
            fd_offset,
            len,
            ..Default::default()
        };
        windows.shmem_map(&at(0, 0, MIB2), &file).unwrap();
        windows.shmem_map(&at(MIB2, MIB2, MIB2), &file).unwrap();
        assert!(windows.shmem_unmap(&at(0, 0, 2 * MIB2)).is_err());
        assert!(windows.shmem_unmap(&at(0, 0, MIB2 / 2)).is_err());
        assert!(windows.is_mapped(0, 0, 2 * MIB2), "nothing was unmapped");
        windows.shmem_unmap(&at(MIB2, 0, MIB2)).unwrap();
        windows.shmem_unmap(&at(0, 0, MIB2)).unwrap();
        assert!(windows.live().is_empty());
    }

    /// Every start alignment and every length up to a few unrolled steps (and some long
    /// ones), in both directions: exactly the bytes asked for move, nothing around them.
    #[test]
    fn volatile_copies_move_exactly_the_bytes_asked_for() {
        let shared: Vec<u8> = (0..4096u32).map(|i| ((i * 7 + 3) & 0xff) as u8).collect();
        let lens = (0..=3 * WORD * UNROLL).chain([255, 256, 257, 1000, 2049]);
        for len in lens {
            for start in 0..2 * WORD {
                for at in [0, 1, 5] {
                    let mut buf = vec![0xeeu8; len + 8];
                    // SAFETY: `start + len` <= 4096: inside `shared`, which `buf` does not
                    // overlap.
                    unsafe { copy_out(shared.as_ptr().add(start), &mut buf[at..at + len]) };
                    assert_eq!(
                        &buf[at..at + len],
                        &shared[start..start + len],
                        "{len}@{start}"
                    );
                    assert!(
                        buf[..at].iter().all(|&b| b == 0xee),
                        "before, {len}@{start}"
                    );
                    assert!(
                        buf[at + len..].iter().all(|&b| b == 0xee),
                        "after, {len}@{start}"
                    );

                    let mut target = vec![0xeeu8; 4096];
                    let data = &shared[at..at + len];
                    // SAFETY: `start + len` <= 4096: inside `target`, which `data` (in
                    // `shared`) does not overlap.
                    unsafe { copy_in(target.as_mut_ptr().add(start), data) };
                    assert_eq!(&target[start..start + len], data, "{len}@{start}");
                    assert!(target[..start].iter().all(|&b| b == 0xee));
                    assert!(target[start + len..].iter().all(|&b| b == 0xee));
                }
            }
        }
    }
}
