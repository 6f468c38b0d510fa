//! Shared-memory regions of our frontend: address space reserved `PROT_NONE`, into which
//! the backend's SHMEM_MAP requests map files (MAP_FIXED) and from which SHMEM_UNMAP
//! removes them again.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Mutex;

use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{HandlerResult, VhostUserFrontendReqHandler};

use crate::sys::Reservation;

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
    /// Requests refused (bad region, out of bounds, overlap, no such mapping).
    pub refused: u64,
}

/// All shared-memory regions of one device, indexed by shmid.
pub struct ShmemWindows {
    regions: Vec<Option<Reservation>>,
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
            state: Mutex::new(WindowState::default()),
        })
    }

    /// The reservation of region `shmid`, if the device has that region.
    pub fn region(&self, shmid: u8) -> Option<&Reservation> {
        self.regions
            .get(usize::from(shmid))
            .and_then(Option::as_ref)
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
        let state = self.lock();
        let mut cursor = offset;
        let end = offset.saturating_add(len);
        for m in state.live.values().filter(|m| m.shmid == shmid) {
            if m.offset <= cursor && cursor < m.offset + m.len {
                cursor = m.offset + m.len;
            }
            if cursor >= end {
                return true;
            }
        }
        cursor >= end
    }

    /// Copies bytes out of region `shmid` at `offset`, as a guest load through the window
    /// would. Every byte must lie in a live mapping (else `EFAULT`). Like the guest, the
    /// caller must stay below the mapped file's end: a page past it raises SIGBUS.
    pub fn read(&self, shmid: u8, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let state = self.lock();
        let region = self.covered(&state, shmid, offset, buf.len(), false)?;
        let at = usize::try_from(offset).map_err(|_| einval())?;
        // SAFETY: `covered` checked that `offset..offset+len` lies inside the reservation
        // and inside live file mappings, which cannot be replaced while we hold the state
        // lock (map and unmap take it); `buf` is a distinct, writable allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(region.base().add(at), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    /// Copies `data` into region `shmid` at `offset`, as a guest store through the window
    /// would. Every byte must lie in a live writable mapping (else `EFAULT` / `EACCES`);
    /// the same end-of-file caveat as [`ShmemWindows::read`] applies.
    pub fn write(&self, shmid: u8, offset: u64, data: &[u8]) -> io::Result<()> {
        let state = self.lock();
        let region = self.covered(&state, shmid, offset, data.len(), true)?;
        let at = usize::try_from(offset).map_err(|_| einval())?;
        // SAFETY: as in `read`: the range is inside the reservation and inside live
        // mappings, here read-write ones, held in place by the state lock.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), region.base().add(at), data.len()) };
        Ok(())
    }

    /// The region, if `offset..offset+len` of it is covered by live mappings (writable
    /// ones when `write`).
    fn covered(
        &self,
        state: &WindowState,
        shmid: u8,
        offset: u64,
        len: usize,
        write: bool,
    ) -> io::Result<&Reservation> {
        let region = self.region(shmid).ok_or_else(einval)?;
        let end = offset
            .checked_add(len as u64)
            .filter(|&end| end <= region.len() as u64)
            .ok_or_else(einval)?;
        let mut cursor = offset;
        for m in state.live.values().filter(|m| m.shmid == shmid) {
            if cursor >= end {
                break;
            }
            if m.offset <= cursor && cursor < m.offset + m.len {
                if write && !m.writable {
                    return Err(io::Error::from_raw_os_error(libc::EACCES));
                }
                cursor = m.offset + m.len;
            }
        }
        if cursor < end {
            return Err(io::Error::from_raw_os_error(libc::EFAULT));
        }
        Ok(region)
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
