//! Serving a virtio-fs queue: pop a chain, resolve it against guest memory, serve it here
//! or hand it to the request pool (`--thread-pool-size`), park it if it may wait on the
//! DAX ledger, write the reply and return the chain.
//!
//! A chain served off the queue's thread (by the pool or a parked worker) is returned
//! under the reply epoch it was popped in (see [`FsDevice::complete_if_current`]): after
//! a ring stop or a device reset its reply is dropped, never written into a ring the
//! frontend may have set up anew.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vhost_user_backend::{VringRwLock, VringT};
use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::GuestAddressSpace;
use vm_memory::atomic::GuestMemoryLoadGuard;

use super::{
    Epoch, FsBackend, FsDevice, InFlight, MAX_PARKED, MAX_PARKED_REQUEST, MAX_REQUEST, Memory,
};
use crate::device::chain::{Buffers, ChainBuffers, Cursor};
use crate::device::guest_memory::MemoryGuard;
use crate::fuse::abi::{InHeader, OutHeader, Wire, WriteIn, opcode};
use crate::fuse::{Errno, SliceReader, ZeroCopyReader};

type Guard = GuestMemoryLoadGuard<vm_memory::GuestMemoryMmap>;
type Chain = DescriptorChain<Guard>;

impl FsBackend {
    pub(super) fn process_queue(&self, queue: usize, vring: &VringRwLock) -> io::Result<()> {
        let Some(memory) = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            log::warn!("fs: queue {queue} kicked before the memory table was set");
            return Ok(());
        };
        let event_idx = self.event_idx.load(Ordering::SeqCst);
        // This queue thread's request buffer, kept across kicks so a large WRITE is
        // neither allocated nor zeroed per request.
        let mut scratch = REQUEST_BUFFER.take();
        let result = self.drain_queue(queue, vring, &memory, event_idx, &mut scratch);
        REQUEST_BUFFER.set(scratch);
        result
    }

    fn drain_queue(
        &self,
        queue: usize,
        vring: &VringRwLock,
        memory: &Memory,
        event_idx: bool,
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        // The hiprio queue (FORGET and friends: quick, never waiting) stays on its thread.
        let pool = self.device.pool.as_ref().filter(|_| queue > 0);
        loop {
            if event_idx {
                vring.disable_notification().map_err(io::Error::other)?;
            }
            loop {
                // Counted before the stopping check, so shutdown either sees this request
                // or this thread sees shutdown.
                let in_flight = self.device.begin_request();
                if self.device.stopping.load(Ordering::SeqCst) || self.guard.check() {
                    return Ok(());
                }
                // A reply served off this thread lands only in the epoch its chain was
                // popped in: taken before the pop, so no ring stop comes between.
                let taken = pool.map(|_| self.device.reply_epoch());
                let mem = memory.memory();
                let chain = {
                    let mut state = vring.get_mut();
                    let q = state.get_queue_mut();
                    if !self.guard.ring_inside(queue, q, &mem) {
                        return Ok(());
                    }
                    q.pop_descriptor_chain(mem.clone())
                };
                let Some(chain) = chain else { break };
                if self.guard.check() {
                    // The pop itself read memory the frontend cut: nothing more is served.
                    return Ok(());
                }
                let request = Request {
                    queue,
                    vring: vring.clone(),
                    guard: self.guard.clone(),
                    event_idx,
                    mem,
                    chain,
                    _in_flight: in_flight,
                };
                let (Some(pool), Some(taken)) = (pool, taken) else {
                    self.device.serve_chain(request, scratch, Landing::Here);
                    continue;
                };
                // Checked here, so a worker is handed only chains it can serve.
                if let Err(e) = ChainBuffers::resolve(request.chain.clone(), &request.mem) {
                    let head = request.chain.head_index();
                    log::warn!("fs: queue {queue} request {head} has bad descriptors: {e}");
                    request.complete(&self.device, 0, Landing::Here);
                    continue;
                }
                let device = self.device.clone();
                pool.submit(move || {
                    let mut scratch = REQUEST_BUFFER.take();
                    device.serve_chain(request, &mut scratch, Landing::Pool(taken));
                    REQUEST_BUFFER.set(scratch);
                });
            }
            if !event_idx || !vring.enable_notification().map_err(io::Error::other)? {
                return Ok(());
            }
        }
    }
}

/// A chain popped from a queue, its descriptors checked to lie in guest memory.
struct Request {
    queue: usize,
    vring: VringRwLock,
    /// The connection's memory guard: no reply once its memory faulted.
    guard: MemoryGuard,
    event_idx: bool,
    mem: Guard,
    chain: Chain,
    /// Counts the request until it is answered (shutdown waits for it).
    _in_flight: InFlight,
}

/// Where a served request's reply goes.
#[derive(Clone, Copy)]
enum Landing {
    /// Served on its queue's thread: straight into the ring.
    Here,
    /// Served by a pool worker, popped in this epoch.
    Pool(Epoch),
    /// Served by a parked worker, popped in this epoch.
    Parked(Epoch),
}

impl Request {
    /// Returns the chain with `used` bytes written: at once on the queue's thread, else
    /// only if the epoch the chain was popped in is still current.
    fn complete(&self, device: &FsDevice, used: u32, landing: Landing) {
        let head = self.chain.head_index();
        if self.guard.check() {
            // The connection's memory faulted (perhaps serving this very request): it is
            // being dropped, and its ring is no longer the guest's.
            log::debug!(
                "fs: queue {}: chain {head} not returned: guest memory faulted",
                self.queue
            );
            return;
        }
        let (taken, who) = match landing {
            Landing::Here => {
                complete_or_log(self.queue, &self.vring, head, used, self.event_idx);
                return;
            }
            Landing::Pool(taken) => (taken, "pooled"),
            Landing::Parked(taken) => (taken, "parked"),
        };
        let landed = device.complete_if_current(taken, || {
            complete_or_log(self.queue, &self.vring, head, used, self.event_idx);
        });
        if !landed {
            log::debug!(
                "fs: queue {}: {who} reply dropped: the ring was taken back (chain {head})",
                self.queue
            );
        }
    }
}

impl FsDevice {
    /// Serves one popped chain, on the queue's thread ([`Landing::Here`]) or a pool
    /// worker ([`Landing::Pool`]), using `scratch` for its request bytes.
    fn serve_chain(self: &Arc<Self>, request: Request, scratch: &mut Vec<u8>, landing: Landing) {
        let queue = request.queue;
        let head = request.chain.head_index();
        let buffers = match ChainBuffers::resolve(request.chain.clone(), &request.mem) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("fs: queue {queue} request {head} has bad descriptors: {e}");
                request.complete(self, 0, landing);
                return;
            }
        };
        let (len, mut payload) = read_request(&buffers.readable, scratch);
        let bytes = &scratch[..len];
        if self.dax.is_some() && self.server.may_wait(bytes, payload.remaining()) {
            // Most maps and unmaps do not have to wait, and the ledger tells at once
            // when one would: those are served here, spared a worker's hand-off.
            let started = Instant::now();
            if let Some(reply) = self
                .server
                .try_without_waiting(bytes, buffers.writable.len())
            {
                let errno = reply_errno(&reply.header);
                self.record(queue, bytes, errno, started.elapsed());
                let used = write_reply(
                    queue,
                    head,
                    &buffers.writable,
                    &[&reply.header, &reply.body],
                );
                request.complete(self, used, landing);
                return;
            }
            let refusal = if bytes.len() > MAX_PARKED_REQUEST {
                Some(Errno::EINVAL)
            } else if self.parked.fetch_add(1, Ordering::SeqCst) >= MAX_PARKED {
                self.parked.fetch_sub(1, Ordering::SeqCst);
                Some(Errno::new(libc::EBUSY))
            } else {
                None
            };
            if let Some(errno) = refusal {
                log::warn!(
                    "fs: queue {queue}: a request that would wait answered {errno:?} \
                     ({} bytes, {} parked)",
                    bytes.len(),
                    self.parked.load(Ordering::SeqCst)
                );
                self.record(queue, bytes, errno.get(), Duration::ZERO);
                let used = refuse(queue, head, bytes, errno, &buffers.writable);
                request.complete(self, used, landing);
                return;
            }
            let parked = ParkedSlot(self.parked.clone());
            // A request that may wait has no payload kept apart (only a WRITE has one,
            // and it never waits): its bytes are the whole request.
            let bytes = bytes.to_vec();
            drop(buffers);
            // Served on a worker so this queue keeps going while it waits; its reply
            // lands only in the epoch it was popped in.
            let taken = match landing {
                Landing::Pool(taken) | Landing::Parked(taken) => taken,
                Landing::Here => self.reply_epoch(),
            };
            let device = self.clone();
            self.parking.park(move || {
                let used = match ChainBuffers::resolve(request.chain.clone(), &request.mem) {
                    Ok(b) => device.serve(
                        queue,
                        head,
                        &bytes,
                        &mut SliceReader::default(),
                        &b.writable,
                    ),
                    Err(e) => {
                        log::warn!("fs: queue {queue} request {head}: no reply: {e}");
                        0
                    }
                };
                request.complete(&device, used, Landing::Parked(taken));
                drop(request);
                drop(parked);
            });
            return;
        }
        let used = self.serve(queue, head, bytes, &mut payload, &buffers.writable);
        drop(buffers);
        request.complete(self, used, landing);
    }
}

thread_local! {
    static REQUEST_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Bytes of a WRITE before its payload: the in header and `fuse_write_in`.
const WRITE_HEAD: usize = InHeader::SIZE + WriteIn::SIZE;

/// Copies the request in `readable` into the start of `bytes` (grown if needed, never
/// shrunk): all of it, or for a WRITE without extensions its headers only, its payload
/// left in guest memory to be written to the file from there. Returns the bytes copied
/// and a cursor at what was left (empty unless a WRITE's payload).
fn read_request<'b, 'm>(readable: &'b Buffers<'m>, bytes: &mut Vec<u8>) -> (usize, Cursor<'b, 'm>) {
    let mut cursor = readable.cursor();
    // One byte past the limit, so a chain longer than any request we take fails the
    // server's length check instead of being cut to a plausible request.
    let len = readable.len().min(MAX_REQUEST + 1);
    // Only growth is zeroed: the buffer keeps its largest size between requests.
    if bytes.len() < len.max(WRITE_HEAD) {
        bytes.resize(len.max(WRITE_HEAD), 0);
    }
    let head = cursor.copy_out(&mut bytes[..WRITE_HEAD.min(len)]);
    let payload_apart = head == WRITE_HEAD
        && InHeader::read(bytes).is_some_and(|h| h.opcode == opcode::WRITE && h.total_extlen == 0);
    if payload_apart {
        return (head, cursor);
    }
    let rest = cursor.copy_out(&mut bytes[head..len]);
    (head + rest, Cursor::empty())
}

/// One parked request, counted until it is answered.
struct ParkedSlot(Arc<AtomicUsize>);

impl Drop for ParkedSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Answers `request` with `errno` without serving it; returns the bytes written.
fn refuse(queue: usize, head: u16, request: &[u8], errno: Errno, writable: &Buffers<'_>) -> u32 {
    let unique = InHeader::read(request).map_or(0, |h| h.unique);
    write_reply(
        queue,
        head,
        writable,
        &[&crate::fuse::reply::error(unique, errno)],
    )
}

/// Writes a reply, in `parts`, into the device-writable buffers of chain `head`; returns
/// the bytes written (0, logged, if they have no room for it).
fn write_reply(queue: usize, head: u16, writable: &Buffers<'_>, parts: &[&[u8]]) -> u32 {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > writable.len() {
        log::warn!(
            "fs: queue {queue} request {head}: reply of {len} bytes not written: {} bytes of room",
            writable.len()
        );
        return 0;
    }
    let mut out = writable.cursor();
    for p in parts {
        out.copy_in(p);
    }
    u32::try_from(len).unwrap_or(0)
}

/// As [`complete`]; a chain that cannot be returned (a head the driver made up) is logged
/// and the queue goes on: no guest input ends a queue.
fn complete_or_log(queue: usize, vring: &VringRwLock, head: u16, used: u32, event_idx: bool) {
    if let Err(e) = complete(vring, head, used, event_idx) {
        log::warn!("fs: queue {queue}: chain {head} not returned: {e}");
    }
}

/// Returns chain `head` to the driver with `used` bytes written, notifying if needed.
fn complete(vring: &VringRwLock, head: u16, used: u32, event_idx: bool) -> io::Result<()> {
    vring.add_used(head, used).map_err(io::Error::other)?;
    if !event_idx || vring.needs_notification().map_err(io::Error::other)? {
        vring.signal_used_queue()?;
    }
    Ok(())
}

/// The error of a reply's out header (0: success, or no reply at all).
fn reply_errno(header: &[u8]) -> i32 {
    header
        .get(4..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, i32::from_le_bytes)
}

impl FsDevice {
    /// Counts one request of `request`'s opcode on `queue`.
    fn record(&self, queue: usize, request: &[u8], errno: i32, elapsed: Duration) {
        let op = InHeader::read(request).map_or(0, |h| h.opcode);
        if let Some(stats) = self.stats.get(queue) {
            stats.record(op, errno != 0, elapsed);
        }
    }

    /// Serves one request, `request` followed by what is left in `payload` (a WRITE's
    /// data, see [`read_request`]), replying into `writable`: a READ's data goes straight
    /// into it after the header's room. Returns the number of bytes written.
    fn serve(
        &self,
        queue: usize,
        head: u16,
        request: &[u8],
        payload: &mut dyn ZeroCopyReader,
        writable: &Buffers<'_>,
    ) -> u32 {
        let mut data = writable.cursor();
        data.advance(OutHeader::SIZE);
        let started = Instant::now();
        let reply = self
            .server
            .handle_zero_copy(request, payload, &mut data, writable.len());
        self.record(
            queue,
            request,
            reply_errno(&reply.header),
            started.elapsed(),
        );
        if reply.is_empty() {
            return 0;
        }
        if reply.placed == 0 {
            return write_reply(queue, head, writable, &[&reply.header, &reply.body]);
        }
        // The data is in place; the header goes in the room left before it.
        let header = writable.cursor().copy_in(&reply.header);
        u32::try_from(header + reply.placed).unwrap_or(0)
    }
}
