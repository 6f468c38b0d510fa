//! vhost-user devices: descriptor chains, config space, the backend channel.
//!
//! Each device is split in two: a long-lived device (backing, ledger, threads) that
//! outlives connections, and a per-connection `VhostUserBackend` face that the
//! `vhost-user-backend` crate drives.

pub mod backend_mapper;
pub mod flush;
pub mod fs;
mod parking;
pub mod pmem;
pub mod sync_gate;

/// `VIRTIO_F_VERSION_1`.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// `VIRTIO_RING_F_EVENT_IDX`.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_RING_F_INDIRECT_DESC`.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// Protocol bit 21, which alioth before its 2026 renumbering uses for SHMEM (the spec now
/// calls it GPA_ADDRESSES). Only offered with the explicit compatibility switch.
pub const SHMEM_BIT21_COMPAT: u64 = 1 << 21;

/// Checks that every region of a frontend's memory table lies inside its file: a region
/// that reaches past the end of its file (a frontend's mistake, or a lie) would turn the
/// device's first access there into a SIGBUS that ends the whole daemon.
pub(crate) fn check_memory_backed(
    memory: &vm_memory::GuestMemoryMmap,
) -> Result<(), std::io::Error> {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    for region in memory.iter() {
        let Some(backing) = region.file_offset() else {
            continue;
        };
        let size = backing.file().metadata()?.len();
        let end = backing.start().saturating_add(region.len());
        if size < end {
            return Err(std::io::Error::other(format!(
                "memory table refused: the region at guest address {:#x} maps {:#x} bytes \
                 from offset {:#x} of a file of {size:#x} bytes",
                region.start_addr().0,
                region.len(),
                backing.start()
            )));
        }
    }
    Ok(())
}
