//! FUSE over a virtio-fs queue of our frontend: the driver half of virtio-fs.
//!
//! A [`FuseQueue`] puts each request in a device-readable buffer and offers a
//! device-writable one for the reply, as the Linux virtiofs driver does. Requests may be
//! left outstanding ([`FuseQueue::submit`]) while others are sent, so tests can show that
//! a parked request (a truncate waiting out a pin) does not stall its queue. With the
//! `testing` feature it is a `fuse::testing::Transport`, so it carries the same `Client`
//! the in-process tests use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use vm_memory::GuestAddress;

use super::{Buffer, Frontend, FrontendError};
use crate::fuse::abi::MAX_WRITE;
#[cfg(any(test, feature = "testing"))]
use crate::fuse::testing::Transport;

/// Largest request a slot holds: a 1 MiB WRITE and its headers.
const REQUEST_CAPACITY: u32 = MAX_WRITE + 8192;
/// Largest reply a slot receives: a 1 MiB READ and its header.
const REPLY_CAPACITY: u32 = MAX_WRITE + 4096;

/// A frontend shared by the queues that drive it.
pub type SharedFrontend = Arc<Mutex<Frontend>>;

/// A pair of guest buffers for one request and its reply.
#[derive(Clone, Copy, Debug)]
struct Slot {
    request: GuestAddress,
    reply: GuestAddress,
}

/// A request sent and not yet collected.
///
/// Its reply is found by the ticket's sequence number, not by the head of its chain: the
/// device returning a chain frees its descriptors, so a later request may get the same
/// head while this reply still waits to be collected.
///
/// A ticket dropped without [`FuseQueue::wait`] leaks its guest buffers and, once the
/// device returns its chain, the record of the reply: this is the test and bench driver,
/// where every request is waited on or the run ends.
#[derive(Debug)]
#[must_use = "collect the reply with FuseQueue::wait"]
pub struct Ticket {
    seq: u64,
    head: u16,
    slot: Slot,
}

/// One queue of a virtio-fs device, driven as the guest's FUSE transport.
pub struct FuseQueue {
    frontend: SharedFrontend,
    queue: usize,
    timeout: Duration,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    free: Vec<Slot>,
    /// Sequence number of the next ticket.
    next_seq: u64,
    /// Chains offered and not yet returned by the device: head -> ticket sequence number.
    in_flight: HashMap<u16, u64>,
    /// Replies the device returned that nobody has collected yet: sequence number ->
    /// bytes written.
    returned: HashMap<u64, u32>,
}

impl FuseQueue {
    /// Drives queue `queue` of `frontend` (1 is the first request queue, 0 hiprio);
    /// every wait for a reply is bounded by `timeout`.
    pub fn new(frontend: SharedFrontend, queue: usize, timeout: Duration) -> Self {
        FuseQueue {
            frontend,
            queue,
            timeout,
            state: Mutex::new(QueueState::default()),
        }
    }

    /// The frontend this queue belongs to.
    pub fn frontend(&self) -> MutexGuard<'_, Frontend> {
        self.frontend.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `request` and offers `reply_capacity` bytes (at most 1 MiB + 4 KiB) for the
    /// reply, without waiting for it.
    pub fn submit(&self, request: &[u8], reply_capacity: usize) -> Result<Ticket, FrontendError> {
        let request_len = u32::try_from(request.len())
            .ok()
            .filter(|&len| len <= REQUEST_CAPACITY)
            .ok_or_else(|| {
                FrontendError::Setup(format!("request of {} bytes too long", request.len()))
            })?;
        let reply_len = u32::try_from(reply_capacity)
            .ok()
            .filter(|&len| len <= REPLY_CAPACITY)
            .ok_or_else(|| {
                FrontendError::Setup(format!("reply capacity {reply_capacity} too large"))
            })?;
        let mut frontend = self.frontend();
        let slot = match self.state().free.pop() {
            Some(slot) => slot,
            None => Slot {
                request: frontend.ram().alloc(u64::from(REQUEST_CAPACITY), 4096)?,
                reply: frontend.ram().alloc(u64::from(REPLY_CAPACITY), 4096)?,
            },
        };
        frontend.ram().write(slot.request, request)?;
        let mut buffers = vec![Buffer::readable(slot.request, request_len.max(1))];
        if reply_len > 0 {
            buffers.push(Buffer::writable(slot.reply, reply_len));
        }
        // Under the frontend lock, which every collection of used chains also holds while it
        // records them: the chain cannot be seen returned before it is in flight.
        match frontend.submit(self.queue, &buffers) {
            Ok(head) => {
                let mut state = self.state();
                let seq = state.next_seq;
                state.next_seq += 1;
                state.in_flight.insert(head, seq);
                Ok(Ticket { seq, head, slot })
            }
            Err(e) => {
                self.state().free.push(slot);
                Err(e)
            }
        }
    }

    /// Whether the device has returned the chain of `ticket` (without waiting).
    pub fn is_done(&self, ticket: &Ticket) -> Result<bool, FrontendError> {
        self.collect()?;
        Ok(self.state().returned.contains_key(&ticket.seq))
    }

    /// Waits (bounded) for the reply to `ticket`; returns the bytes the device wrote.
    pub fn wait(&self, ticket: Ticket) -> Result<Vec<u8>, FrontendError> {
        let deadline = std::time::Instant::now() + self.timeout;
        loop {
            let written = self.state().returned.remove(&ticket.seq);
            if let Some(len) = written {
                let bytes = self.frontend().ram().read(ticket.slot.reply, len as usize);
                self.state().free.push(ticket.slot);
                return bytes;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(FrontendError::Timeout(format!(
                    "no reply on queue {} for request {} (chain {}) after {:?}",
                    self.queue, ticket.seq, ticket.head, self.timeout
                )));
            }
            let mut frontend = self.frontend();
            match frontend.wait_used(self.queue, 1, left.min(Duration::from_millis(50))) {
                Ok(chains) => self.record(&frontend, chains),
                Err(FrontendError::Timeout(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `request` and waits for its reply.
    pub fn call(&self, request: &[u8], reply_capacity: usize) -> Result<Vec<u8>, FrontendError> {
        let ticket = self.submit(request, reply_capacity)?;
        self.wait(ticket)
    }

    fn collect(&self) -> Result<(), FrontendError> {
        let mut frontend = self.frontend();
        let chains = frontend.collect_used(self.queue)?;
        self.record(&frontend, chains);
        Ok(())
    }

    /// Files returned chains under the tickets they were offered for. Takes the frontend
    /// guard the chains were collected under: until they are recorded, their heads must not
    /// be offered again.
    fn record(&self, _frontend: &MutexGuard<'_, Frontend>, chains: Vec<super::UsedChain>) {
        let mut state = self.state();
        for chain in chains {
            match state.in_flight.remove(&chain.head) {
                Some(seq) => {
                    state.returned.insert(seq, chain.len);
                }
                None => log::warn!(
                    "frontend: queue {}: chain {} returned, offered by no ticket",
                    self.queue,
                    chain.head
                ),
            }
        }
    }
}

#[cfg(any(test, feature = "testing"))]
impl Transport for FuseQueue {
    /// Panics if the device does not answer in time: this is the test and bench
    /// driver, where a lost reply is a failure to report, not to recover from.
    fn exchange(&self, request: &[u8], reply_capacity: usize) -> Vec<u8> {
        let capacity = reply_capacity.min(REPLY_CAPACITY as usize);
        match self.call(request, capacity) {
            Ok(reply) => reply,
            Err(e) => panic!("FUSE request over queue {}: {e}", self.queue),
        }
    }
}
