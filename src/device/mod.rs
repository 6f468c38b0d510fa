//! vhost-user devices: descriptor chains, config space, the backend channel.
//!
//! Each device is split in two: a long-lived device (backing, ledger, threads) that
//! outlives connections, and a per-connection `VhostUserBackend` face that the
//! `vhost-user-backend` crate drives.

pub mod backend_mapper;
pub(crate) mod chain;
pub mod exit_events;
pub(crate) mod flush;
pub mod fs;
pub mod guest_memory;
mod parking;
pub mod pmem;
mod pool;
pub mod sync_gate;

/// A per-connection backend face, as the daemon's listener drives it.
pub trait ConnectionBackend {
    /// The exit events of this connection's workers (closed after the connection).
    fn exit_events(&self) -> &exit_events::ExitEvents;
    /// This connection's guard over the frontend's memory (told the connection to end
    /// when its memory faults, and told when the connection has ended).
    fn memory_guard(&self) -> &guest_memory::MemoryGuard;
}

/// `VIRTIO_F_VERSION_1`.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// `VIRTIO_RING_F_EVENT_IDX`.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// `VIRTIO_RING_F_INDIRECT_DESC`.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
/// Protocol bit 21, which alioth before its 2026 renumbering uses for SHMEM (the spec now
/// calls it GPA_ADDRESSES). Only offered with the explicit compatibility switch.
pub const SHMEM_BIT21_COMPAT: u64 = 1 << 21;
