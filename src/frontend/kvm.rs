//! KVM memory slots over the frontend's memory: guest RAM and the shared-memory regions
//! (the DAX window, the pmem region), as a KVM-based VMM registers them.
//!
//! Why this lives in the library and not in a test: a VMM that embeds this frontend and
//! runs its guest under KVM must hand KVM the host addresses of guest RAM and of every
//! shared-memory region (`KVM_SET_USER_MEMORY_REGION`). That is sound only while the memory
//! stays mapped for as long as the slot exists: were a region's reservation unmapped first,
//! its address range could be reused by the allocator and the guest would write into the
//! VMM's heap. The frontend owns that memory and its lifetime, and keeps the reservations
//! to itself; [`KvmSlot`] holds the memory (an `Arc` of the windows, a clone of guest RAM's
//! regions) and removes the slot before letting go of it. A VMM author gets the
//! registration without writing `unsafe`, and the guest-tests (`tests/kvm_guest/`) use it
//! exactly as such a VMM would.
//!
//! What the guest sees through a slot over a region: where the backend has mapped a file,
//! its loads and stores reach the file's pages through the hardware (KVM's page tables,
//! which the kernel's MMU notifiers refresh when SHMEM_MAP/UNMAP replace the pages under
//! the slot with MAP_FIXED). Where KVM cannot fault a page in — nothing mapped there
//! (`PROT_NONE`), or a mapped file page beyond the file's end — the access leaves the
//! guest as an exit to the VMM, never as a signal to it. Measured on this project's host
//! (Linux 6.18, x86_64): the exit is `KVM_EXIT_MMIO` at the guest-physical address, so the
//! VMM answers it like any unbacked MMIO (reads as all-ones, writes dropped). Other
//! kernels may report `-EFAULT` from `KVM_RUN` (with `KVM_EXIT_MEMORY_FAULT` where
//! `KVM_CAP_MEMORY_FAULT_INFO` is enabled) instead.

use std::sync::Arc;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, MemoryRegionAddress};

use super::{GuestRam, ShmemWindows};

/// Why a memory slot could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum KvmSlotError {
    /// The device has no shared-memory region with that id.
    #[error("no shared-memory region {shmid}")]
    NoSuchRegion {
        /// Region id asked for.
        shmid: u8,
    },
    /// A guest RAM region has no host mapping (vm-memory could not resolve it).
    #[error("guest RAM at {guest_phys_addr:#x} has no host address")]
    NoHostAddress {
        /// Guest-physical start of the region.
        guest_phys_addr: u64,
    },
    /// KVM refused the slot (slot id in use, overlapping guest-physical range, too many
    /// slots, misaligned address).
    #[error(
        "KVM_SET_USER_MEMORY_REGION of slot {slot} at {guest_phys_addr:#x}+{size:#x}: {source}"
    )]
    Register {
        /// Slot id.
        slot: u32,
        /// Guest-physical start.
        guest_phys_addr: u64,
        /// Size in bytes.
        size: u64,
        /// What KVM said.
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// The memory a slot covers, held so that it stays mapped while the slot exists.
enum Backing {
    /// Guest RAM: a clone of the region list keeps every region's mapping alive.
    Ram { _regions: GuestMemoryMmap },
    /// A shared-memory region: the windows own the reservation.
    Shmem { _windows: Arc<ShmemWindows> },
}

/// One KVM memory slot over frontend memory; the slot is removed when this is dropped.
///
/// Drop order: [`Drop::drop`] deletes the slot from the VM first; only then do the fields
/// go, the memory (`backing`) possibly with its last reference. Should KVM refuse to delete
/// the slot, the memory is leaked rather than unmapped under a guest.
pub struct KvmSlot {
    region: kvm_userspace_memory_region,
    vm: Arc<VmFd>,
    backing: Option<Backing>,
}

impl std::fmt::Debug for KvmSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmSlot")
            .field("slot", &self.region.slot)
            .field("guest_phys_addr", &self.region.guest_phys_addr)
            .field("size", &self.region.memory_size)
            .finish_non_exhaustive()
    }
}

impl KvmSlot {
    /// Registers shared-memory region `shmid` of `windows` (all of it, mapped or not) as
    /// memory slot `slot` at `guest_phys_addr`, which must be page-aligned and free in the
    /// VM's guest-physical space.
    pub fn shmem(
        vm: &Arc<VmFd>,
        slot: u32,
        guest_phys_addr: u64,
        windows: &Arc<ShmemWindows>,
        shmid: u8,
    ) -> Result<Self, KvmSlotError> {
        let (Some(address), Some(size)) = (windows.host_address(shmid), windows.region_len(shmid))
        else {
            return Err(KvmSlotError::NoSuchRegion { shmid });
        };
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr,
            memory_size: size,
            userspace_addr: address as u64,
        };
        // SAFETY: `userspace_addr..+memory_size` is exactly the reservation of region
        // `shmid`, which the windows keep mapped (reserved `PROT_NONE`, or replaced by the
        // backend's file mappings with MAP_FIXED, never unmapped) until they drop; the slot
        // holds an `Arc` of them and deletes itself before releasing it. The guest's stores
        // into the range alias no Rust reference: the windows never hand out a reference
        // into a reservation, and their own copies are volatile or done by the kernel.
        // Overlapping guest-physical ranges or a slot id already in use are refused by KVM,
        // which is no memory-safety matter.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|source| register_error(region, source))?;
        log::debug!(
            "kvm: slot {slot} = shared-memory region {shmid} at {guest_phys_addr:#x}+{size:#x}"
        );
        Ok(KvmSlot {
            region,
            vm: vm.clone(),
            backing: Some(Backing::Shmem {
                _windows: windows.clone(),
            }),
        })
    }

    /// Registers every region of guest RAM at its own guest-physical address, as slots
    /// `first_slot`, `first_slot + 1`, …
    pub fn guest_ram(
        vm: &Arc<VmFd>,
        first_slot: u32,
        ram: &GuestRam,
    ) -> Result<Vec<Self>, KvmSlotError> {
        let memory = ram.memory();
        let mut slots = Vec::new();
        for (slot, r) in (first_slot..).zip(memory.iter()) {
            let guest_phys_addr = r.start_addr().0;
            let address = r
                .get_host_address(MemoryRegionAddress(0))
                .map_err(|_| KvmSlotError::NoHostAddress { guest_phys_addr })?;
            let region = kvm_userspace_memory_region {
                slot,
                flags: 0,
                guest_phys_addr,
                memory_size: r.len(),
                userspace_addr: address as u64,
            };
            // SAFETY: the range is exactly this region's mapping, which the clone of the
            // region list (`Backing::Ram`, one `Arc` per region) keeps mapped until the slot
            // has deleted itself. vm-memory hands out no references into guest memory, only
            // volatile accessors, so the guest's stores alias nothing Rust relies on.
            unsafe { vm.set_user_memory_region(region) }
                .map_err(|source| register_error(region, source))?;
            slots.push(KvmSlot {
                region,
                vm: vm.clone(),
                backing: Some(Backing::Ram {
                    _regions: memory.clone(),
                }),
            });
        }
        Ok(slots)
    }

    /// Slot id.
    pub fn slot(&self) -> u32 {
        self.region.slot
    }

    /// Guest-physical address of the slot's first byte.
    pub fn guest_phys_addr(&self) -> u64 {
        self.region.guest_phys_addr
    }

    /// Size of the slot in bytes.
    pub fn size(&self) -> u64 {
        self.region.memory_size
    }
}

fn register_error(region: kvm_userspace_memory_region, source: kvm_ioctls::Error) -> KvmSlotError {
    KvmSlotError::Register {
        slot: region.slot,
        guest_phys_addr: region.guest_phys_addr,
        size: region.memory_size,
        source,
    }
}

impl Drop for KvmSlot {
    fn drop(&mut self) {
        let delete = kvm_userspace_memory_region {
            memory_size: 0,
            ..self.region
        };
        // SAFETY: a zero-sized region deletes the slot; afterwards KVM holds no address of
        // this memory, and nothing is handed to it.
        if let Err(e) = unsafe { self.vm.set_user_memory_region(delete) } {
            log::error!(
                "kvm: cannot delete slot {} ({e}); leaking its memory so the guest never \
                 reaches freed pages",
                self.region.slot
            );
            std::mem::forget(self.backing.take());
        }
    }
}
