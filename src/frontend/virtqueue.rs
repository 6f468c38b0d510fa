//! The driver side of a split virtqueue (virtio 1.2 §2.7): what a guest driver does to
//! offer buffers to the device and collect them back.

use std::collections::HashMap;
use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use vm_memory::{Address, Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::FrontendError;
use super::memory::GuestRam;
use crate::sys;

const VIRTQ_DESC_F_NEXT: u16 = 1;
const VIRTQ_DESC_F_WRITE: u16 = 2;
const DESC_SIZE: usize = 16;

/// One buffer of a chain: a guest-physical range the device reads (`write == false`) or
/// writes. Addresses are not checked, so tests can offer bad ones on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

impl Buffer {
    /// A device-readable buffer.
    pub fn readable(addr: GuestAddress, len: u32) -> Self {
        Buffer {
            addr: addr.0,
            len,
            write: false,
        }
    }

    /// A device-writable buffer.
    pub fn writable(addr: GuestAddress, len: u32) -> Self {
        Buffer {
            addr: addr.0,
            len,
            write: true,
        }
    }
}

/// A chain the device returned through the used ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsedChain {
    /// Head descriptor index, as returned by [`DriverQueue::add_chain`].
    pub head: u16,
    /// Bytes the device wrote.
    pub len: u32,
}

/// Guest-physical layout of one queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLayout {
    /// Number of descriptors.
    pub size: u16,
    /// Descriptor table.
    pub desc: GuestAddress,
    /// Available ring.
    pub avail: GuestAddress,
    /// Used ring.
    pub used: GuestAddress,
}

/// Driver side of one split virtqueue.
pub struct DriverQueue {
    layout: QueueLayout,
    free: Vec<u16>,
    chain_len: HashMap<u16, usize>,
    avail_idx: u16,
    last_used: u16,
    kick: EventFd,
    call: EventFd,
}

impl DriverQueue {
    /// Lays out a queue of `size` descriptors in guest RAM.
    pub fn new(ram: &GuestRam, size: u16) -> Result<Self, FrontendError> {
        if size == 0 || !size.is_power_of_two() {
            return Err(FrontendError::Setup(format!(
                "queue size {size} is not a power of two"
            )));
        }
        // Ring sizes in bytes (virtio 1.x split queue).
        let n = usize::from(size);
        let (desc_len, avail_len, used_len) = (DESC_SIZE * n, 6 + 2 * n, 6 + 8 * n);
        let layout = QueueLayout {
            size,
            desc: ram.alloc(desc_len as u64, 16)?,
            avail: ram.alloc(avail_len as u64, 2)?,
            used: ram.alloc(used_len as u64, 4)?,
        };
        ram.write(layout.desc, &vec![0u8; desc_len])?;
        ram.write(layout.avail, &vec![0u8; avail_len])?;
        ram.write(layout.used, &vec![0u8; used_len])?;
        Ok(DriverQueue {
            layout,
            free: (0..size).rev().collect(),
            chain_len: HashMap::new(),
            avail_idx: 0,
            last_used: 0,
            kick: EventFd::new(EFD_NONBLOCK)?,
            call: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// Where the rings are.
    pub fn layout(&self) -> QueueLayout {
        self.layout
    }

    /// The eventfd the driver writes to notify the device.
    pub fn kick_fd(&self) -> &EventFd {
        &self.kick
    }

    /// The eventfd the device writes to interrupt the driver.
    pub fn call_fd(&self) -> &EventFd {
        &self.call
    }

    /// Descriptors not currently offered to the device.
    pub fn free_descriptors(&self) -> usize {
        self.free.len()
    }

    /// Chains offered and not yet returned.
    pub fn in_flight(&self) -> usize {
        self.chain_len.len()
    }

    /// Offers a chain to the device (without notifying it); returns its head index.
    pub fn add_chain(&mut self, ram: &GuestRam, buffers: &[Buffer]) -> Result<u16, FrontendError> {
        if buffers.is_empty() || buffers.len() > self.free.len() {
            return Err(FrontendError::Setup(format!(
                "cannot add a chain of {} buffers with {} free descriptors",
                buffers.len(),
                self.free.len()
            )));
        }
        let ids: Vec<u16> = (0..buffers.len())
            .map(|_| self.free.pop().unwrap_or(0))
            .collect();

        for (i, (buffer, &id)) in buffers.iter().zip(&ids).enumerate() {
            let mut flags = if buffer.write { VIRTQ_DESC_F_WRITE } else { 0 };
            let next = match ids.get(i + 1) {
                Some(&next) => {
                    flags |= VIRTQ_DESC_F_NEXT;
                    next
                }
                None => 0,
            };
            let mut desc = [0u8; 16];
            desc[0..8].copy_from_slice(&buffer.addr.to_le_bytes());
            desc[8..12].copy_from_slice(&buffer.len.to_le_bytes());
            desc[12..14].copy_from_slice(&flags.to_le_bytes());
            desc[14..16].copy_from_slice(&next.to_le_bytes());
            ram.write(
                self.layout
                    .desc
                    .unchecked_add(u64::from(id) * DESC_SIZE as u64),
                &desc,
            )?;
        }
        let head = ids[0];
        self.chain_len.insert(head, ids.len());
        self.publish(ram, head)?;
        Ok(head)
    }

    /// Offers `head` in the avail ring as it is, with no descriptor behind it: what a
    /// buggy or hostile driver does (an index past the table, a chain it never built).
    /// For testing a device; the device's answer, if any, is not collected.
    pub fn add_raw_head(&mut self, ram: &GuestRam, head: u16) -> Result<(), FrontendError> {
        self.publish(ram, head)
    }

    /// Puts `head` in the next avail slot and publishes it.
    fn publish(&mut self, ram: &GuestRam, head: u16) -> Result<(), FrontendError> {
        let mem = ram.memory();
        let slot = u64::from(self.avail_idx % self.layout.size);
        mem.write_obj(head.to_le(), self.layout.avail.unchecked_add(4 + 2 * slot))
            .map_err(|e| FrontendError::Setup(format!("avail ring write: {e}")))?;
        // The device must see the ring entry before the index that publishes it.
        fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.store(
            self.avail_idx.to_le(),
            self.layout.avail.unchecked_add(2),
            Ordering::Release,
        )
        .map_err(|e| FrontendError::Setup(format!("avail idx write: {e}")))?;
        Ok(())
    }

    /// Notifies the device that chains are available.
    pub fn kick(&self) -> Result<(), FrontendError> {
        self.kick.write(1)?;
        Ok(())
    }

    /// Collects every chain the device has returned so far, without waiting.
    pub fn collect_used(&mut self, ram: &GuestRam) -> Result<Vec<UsedChain>, FrontendError> {
        let mem = ram.memory();
        let used_idx: u16 = u16::from_le(
            mem.load(self.layout.used.unchecked_add(2), Ordering::Acquire)
                .map_err(|e| FrontendError::Setup(format!("used idx read: {e}")))?,
        );
        let mut out = Vec::new();
        while self.last_used != used_idx {
            let slot = u64::from(self.last_used % self.layout.size);
            let elem = ram.read(self.layout.used.unchecked_add(4 + 8 * slot), 8)?;
            let id = u32::from_le_bytes([elem[0], elem[1], elem[2], elem[3]]);
            let len = u32::from_le_bytes([elem[4], elem[5], elem[6], elem[7]]);
            let head = u16::try_from(id)
                .ok()
                .filter(|h| self.chain_len.contains_key(h))
                .ok_or_else(|| {
                    FrontendError::Protocol(format!("device returned unknown head {id}"))
                })?;
            self.release_chain(ram, head)?;
            out.push(UsedChain { head, len });
            self.last_used = self.last_used.wrapping_add(1);
        }
        Ok(out)
    }

    fn release_chain(&mut self, ram: &GuestRam, head: u16) -> Result<(), FrontendError> {
        let count = self.chain_len.remove(&head).unwrap_or(0);
        let mut id = head;
        for _ in 0..count {
            self.free.push(id);
            let desc = ram.read(
                self.layout
                    .desc
                    .unchecked_add(u64::from(id) * DESC_SIZE as u64),
                16,
            )?;
            id = u16::from_le_bytes([desc[14], desc[15]]);
        }
        Ok(())
    }

    /// Waits until at least `count` more chains have been returned, or the timeout passes
    /// (an error naming what was still outstanding).
    pub fn wait_used(
        &mut self,
        ram: &GuestRam,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<UsedChain>, FrontendError> {
        let deadline = Instant::now() + timeout;
        let mut done = self.collect_used(ram)?;
        while done.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(FrontendError::Timeout(format!(
                    "{} of {count} chains returned after {timeout:?}",
                    done.len()
                )));
            }
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            if sys::poll_readable(&self.call, ms)? {
                // Draining the counter; the used ring is the source of truth.
                let _ = self.call.read();
            }
            done.extend(self.collect_used(ram)?);
        }
        Ok(done)
    }
}
