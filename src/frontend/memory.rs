//! Guest RAM of our frontend: one memfd shared with the backend through SET_MEM_TABLE, and
//! a bump allocator for rings and request buffers.

use std::fs::File;
use std::sync::Mutex;

use vhost::VhostUserMemoryRegionInfo;
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
};

use super::FrontendError;
use crate::sys;

/// Guest-physical RAM at address 0, backed by a memfd.
pub struct GuestRam {
    memory: GuestMemoryMmap,
    /// The memfd behind `memory` (the same open file).
    file: File,
    next_free: Mutex<u64>,
}

impl GuestRam {
    /// Creates `size` bytes of guest RAM.
    pub fn new(size: u64) -> Result<Self, FrontendError> {
        let file = sys::memfd("vhost-dax-guest-ram", size)?;
        let own = file.try_clone()?;
        let len = usize::try_from(size)
            .map_err(|_| FrontendError::Setup(format!("guest RAM size {size} too large")))?;
        let memory = GuestMemoryMmap::from_ranges_with_files([(
            GuestAddress(0),
            len,
            Some(FileOffset::new(file, 0)),
        )])
        .map_err(|e| FrontendError::Setup(format!("cannot map guest RAM: {e}")))?;
        Ok(GuestRam {
            memory,
            file: own,
            next_free: Mutex::new(0),
        })
    }

    /// The vm-memory view, for reading and writing guest-physical addresses.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// Seals the memfd against shrinking and growing (`F_SEAL_SHRINK | F_SEAL_GROW`), as
    /// QEMU's `memory-backend-memfd` does by default: nobody can pull it from under the
    /// backend any more.
    pub fn seal_size(&self) -> Result<(), FrontendError> {
        sys::sigbus::add_seals(&self.file, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)?;
        Ok(())
    }

    /// Sets the length of the memfd behind guest RAM: what a misbehaving frontend does to
    /// pull memory from under the backend. Guest RAM past `len` must not be touched
    /// through [`GuestRam::memory`] until the file grows again (the access would be a
    /// SIGBUS in this process).
    ///
    /// # Errors
    /// `EPERM` once [`GuestRam::seal_size`] sealed the file.
    pub fn set_backing_len(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.memory.iter().map(|r| r.len()).sum()
    }

    /// Regions in the form SET_MEM_TABLE needs.
    pub fn region_infos(&self) -> Result<Vec<VhostUserMemoryRegionInfo>, FrontendError> {
        self.memory
            .iter()
            .map(|r| VhostUserMemoryRegionInfo::from_guest_region(r).map_err(FrontendError::Vhost))
            .collect()
    }

    /// Host virtual address of a guest-physical address (for SET_VRING_ADDR).
    pub fn host_address(&self, gpa: u64) -> Result<u64, FrontendError> {
        self.memory
            .get_host_address(GuestAddress(gpa))
            .map(|p| p as u64)
            .map_err(|e| FrontendError::Setup(format!("address {gpa:#x} not in guest RAM: {e}")))
    }

    /// Reserves `len` bytes aligned to `align` (a power of two); never freed.
    pub fn alloc(&self, len: u64, align: u64) -> Result<GuestAddress, FrontendError> {
        let mut next = self.next_free.lock().unwrap_or_else(|p| p.into_inner());
        let start = next.next_multiple_of(align.max(1));
        let end = start
            .checked_add(len)
            .filter(|&end| end <= self.size())
            .ok_or_else(|| {
                FrontendError::Setup(format!("guest RAM exhausted allocating {len} bytes"))
            })?;
        *next = end;
        Ok(GuestAddress(start))
    }

    /// Allocates a buffer holding `data`.
    pub fn alloc_bytes(&self, data: &[u8]) -> Result<GuestAddress, FrontendError> {
        let addr = self.alloc(data.len().max(1) as u64, 8)?;
        self.write(addr, data)?;
        Ok(addr)
    }

    /// Writes bytes at a guest-physical address.
    pub fn write(&self, addr: GuestAddress, data: &[u8]) -> Result<(), FrontendError> {
        self.memory
            .write_slice(data, addr)
            .map_err(|e| FrontendError::Setup(format!("guest write at {:#x}: {e}", addr.0)))
    }

    /// Reads bytes from a guest-physical address.
    pub fn read(&self, addr: GuestAddress, len: usize) -> Result<Vec<u8>, FrontendError> {
        let mut buf = vec![0u8; len];
        self.memory
            .read_slice(&mut buf, addr)
            .map_err(|e| FrontendError::Setup(format!("guest read at {:#x}: {e}", addr.0)))?;
        Ok(buf)
    }
}
