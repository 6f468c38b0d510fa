//! virtio-fs (virtio 1.2 §5.11): FUSE requests carried on virtqueues.
//!
//! Queue 0 is the high-priority queue (FORGET and friends), the others are request
//! queues. Every queue is served on its own thread, so slow file I/O on a request queue
//! never holds up the hiprio queue. A chain's device-readable part is the FUSE request,
//! its device-writable part receives the reply.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vhost::vhost_user::Backend;
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserShMemConfig};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};

use super::backend_mapper::BackendMapper;
use super::chain::{Buffers, ChainBuffers, Cursor};
use super::exit_events::ExitEvents;
use super::parking::Parking;
use super::{VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use crate::config::{FsConfig, MAX_TAG_LEN};
use crate::control::ControlServer;
use crate::dax::{ReplyEpoch, WindowSession};
use crate::fs::PassthroughFs;
use crate::fuse::abi::{InHeader, OutHeader, Wire, WriteIn, opcode};
use crate::fuse::stats::QueueStats;
use crate::fuse::{Errno, Server, SliceReader, ZeroCopyReader};

/// virtio device id of virtio-fs.
pub const VIRTIO_ID_FS: u32 = 26;
/// Config space: `u8 tag[36] | le32 num_request_queues`.
pub const CONFIG_SIZE: usize = MAX_TAG_LEN + 4;
const QUEUE_SIZE: usize = 1024;
/// Pause between attempts to release a gone frontend's pinned mappings.
const RELEASE_RETRY: Duration = Duration::from_millis(100);
/// How long shutdown waits for requests being served.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// Most requests parked at once per device: past it a request that would wait is
/// answered EBUSY at once (a driver re-posting the same chain could otherwise grow the
/// pool's queue, and the copies it holds, without end).
pub const MAX_PARKED: usize = 256;
/// Largest request that is parked; the ones that may wait are small (REMOVEMAPPING, the
/// largest, is 4 KiB of ranges), so a bigger one is malformed and answered EINVAL.
const MAX_PARKED_REQUEST: usize = 16 << 10;
/// Largest request we copy out of guest memory: a 1 MiB WRITE plus its headers (one with
/// extensions is copied whole; any other WRITE leaves its payload where it is).
const MAX_REQUEST: usize = (1 << 20) + 4096;

type Memory = GuestMemoryAtomic<GuestMemoryMmap>;

/// Region id of the DAX window (`VIRTIO_FS_SHMCAP_ID_CACHE`).
pub const SHMCAP_ID_CACHE: u8 = 0;

/// The DAX window of a device: the session that owns its life (and the ledger, shared
/// with the file system and the control socket) and the backend channel it maps through.
pub struct FsDax {
    /// The window's one owner.
    pub session: Arc<WindowSession>,
    /// SHMEM_MAP / SHMEM_UNMAP over the backend channel, region [`SHMCAP_ID_CACHE`].
    pub mapper: Arc<BackendMapper>,
}

/// One fs device for the daemon's whole life.
pub struct FsDevice {
    config: FsConfig,
    server: Server<PassthroughFs>,
    dax: Option<FsDax>,
    /// A gone frontend's pinned mappings are being released in the background.
    retrying: AtomicBool,
    control: Mutex<Option<ControlServer>>,
    parking: Parking,
    /// Requests parked now.
    parked: Arc<AtomicUsize>,
    stopping: AtomicBool,
    /// Requests being served right now, so shutdown can let them finish.
    in_flight: Mutex<usize>,
    idle: Condvar,
    /// Per queue (0 is hiprio): requests, errors and latency by opcode.
    stats: Arc<Vec<QueueStats>>,
}

impl FsDevice {
    /// Wraps an opened filesystem; `dax` is its window, if it has one (the file system
    /// must have been given the same ledger).
    pub fn new(config: FsConfig, fs: PassthroughFs, dax: Option<FsDax>) -> Arc<Self> {
        let stats = FsDevice::new_stats(config.queues);
        FsDevice::with_stats(config, fs, dax, stats)
    }

    /// Counters for a device of `queues` request queues (and the hiprio queue), made
    /// before the device so its control socket can serve them from the start.
    pub fn new_stats(queues: usize) -> Arc<Vec<QueueStats>> {
        Arc::new((0..=queues).map(|_| QueueStats::default()).collect())
    }

    /// As [`FsDevice::new`], counting into `stats` (from [`FsDevice::new_stats`]).
    pub fn with_stats(
        config: FsConfig,
        fs: PassthroughFs,
        dax: Option<FsDax>,
        stats: Arc<Vec<QueueStats>>,
    ) -> Arc<Self> {
        Arc::new(FsDevice {
            stats,
            config,
            server: Server::new(fs),
            dax,
            retrying: AtomicBool::new(false),
            control: Mutex::new(None),
            parking: Parking::default(),
            parked: Arc::new(AtomicUsize::new(0)),
            stopping: AtomicBool::new(false),
            in_flight: Mutex::new(0),
            idle: Condvar::new(),
        })
    }

    /// The per-queue FUSE counters (index 0 is the hiprio queue).
    pub fn stats(&self) -> Arc<Vec<QueueStats>> {
        self.stats.clone()
    }

    /// The validated configuration.
    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// The DAX window, if the device has one.
    pub fn dax(&self) -> Option<&FsDax> {
        self.dax.as_ref()
    }

    /// Serves `server` (the window's control socket) until shutdown.
    pub fn attach_control(&self, server: ControlServer) {
        *self.control.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
    }

    /// Closes the control socket: its clients' pins are dropped with their connections.
    pub fn close_control(&self) {
        let server = self
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(mut server) = server {
            server.shutdown();
        }
    }

    /// Stops taking requests, ends the waits of the ones parked on the window, waits
    /// (bounded) for the ones being served to finish, releases every window mapping (the
    /// frontend is asked to unmap each; pins are waited for), then closes the control
    /// socket.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Requests waiting on the window (a truncate parked on a VMM's pin) end now,
        // unchanged, instead of going ahead once the pins are dropped below.
        if let Some(dax) = &self.dax {
            dax.session.ledger().stop_waiting();
        }
        self.wait_idle("shutdown");
        // The window is released while the VMM's pins still hold (its DMA may be in
        // flight); only then does the control socket close and drop them.
        self.release_window("shutdown");
        self.close_control();
    }

    /// The frontend went away: its address space, and every mapping in it, went with it.
    /// Their references are dropped once their pins drain; until then (in the background)
    /// the session holds the next frontend's maps off.
    pub fn disconnected(self: &Arc<Self>) {
        let Some(dax) = &self.dax else { return };
        if dax.session.disconnect() {
            self.log_counters("disconnect");
            return;
        }
        if self.retrying.swap(true, Ordering::SeqCst) {
            return; // an earlier disconnect's retry is still at it
        }
        let device = self.clone();
        let spawned = std::thread::Builder::new()
            .name("fs-release".into())
            .spawn(move || {
                while !device.stopping.load(Ordering::SeqCst) {
                    std::thread::sleep(RELEASE_RETRY);
                    if device
                        .dax
                        .as_ref()
                        .is_none_or(|dax| dax.session.retry_release())
                    {
                        break;
                    }
                }
                device.retrying.store(false, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            log::error!("fs: cannot start the release thread; DAX stays off: {e}");
        }
    }

    /// Releases every mapping of the window for shutdown and logs its counters; false if
    /// some could not be (pins that did not drain within the budget).
    fn release_window(&self, why: &str) -> bool {
        let Some(dax) = &self.dax else { return true };
        let released = match dax.session.shutdown() {
            Ok(n) => {
                log::info!("fs: {why}: released {n} DAX mapping(s)");
                true
            }
            Err(e) => {
                log::error!("fs: {why}: DAX window not fully released: {e}");
                false
            }
        };
        self.log_counters(why);
        released
    }

    fn log_counters(&self, why: &str) {
        if let Some(dax) = &self.dax {
            let s = dax.session.ledger().stats();
            log::info!(
                "fs: {why}: DAX ledger: {} maps ({} refused), {} unmaps, {} pins ({} refused), \
                 {} waits ({} timed out), {} mapper errors, {} live mappings",
                s.maps,
                s.map_refusals,
                s.unmaps,
                s.pins,
                s.pin_refusals,
                s.waits,
                s.timeouts,
                s.mapper_errors,
                s.live_mappings
            );
        }
    }

    /// Waits (bounded) until no request is being served, parked ones included.
    fn wait_idle(&self, why: &str) {
        let guard = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, timeout) = self
            .idle
            .wait_timeout_while(guard, SHUTDOWN_WAIT, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        if timeout.timed_out() {
            log::warn!("fs: {why}: {} request(s) still running", *guard);
        }
    }

    /// Counts a request as being served until the returned guard drops.
    fn begin_request(self: &Arc<Self>) -> InFlight {
        *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        InFlight(self.clone())
    }
}

/// One request being served; see [`FsDevice::begin_request`].
struct InFlight(Arc<FsDevice>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut n = self.0.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        *n -= 1;
        if *n == 0 {
            self.0.idle.notify_all();
        }
    }
}

/// The per-connection vhost-user face of an [`FsDevice`].
#[derive(Clone)]
pub struct FsBackend {
    device: Arc<FsDevice>,
    memory: Arc<Mutex<Option<Memory>>>,
    event_idx: Arc<AtomicBool>,
    told_no_channel: Arc<AtomicBool>,
    exit_events: ExitEvents,
}

impl super::ConnectionBackend for FsBackend {
    fn exit_events(&self) -> &ExitEvents {
        &self.exit_events
    }
}

impl FsBackend {
    /// State for one new connection.
    pub fn new(device: Arc<FsDevice>) -> Self {
        FsBackend {
            device,
            memory: Arc::new(Mutex::new(None)),
            event_idx: Arc::new(AtomicBool::new(false)),
            told_no_channel: Arc::new(AtomicBool::new(false)),
            exit_events: ExitEvents::default(),
        }
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut bytes = [0u8; CONFIG_SIZE];
        let tag = self
            .device
            .config
            .tag
            .as_deref()
            .unwrap_or_default()
            .as_bytes();
        bytes[..tag.len()].copy_from_slice(tag);
        let queues = u32::try_from(self.device.config.queues).unwrap_or(u32::MAX);
        bytes[MAX_TAG_LEN..].copy_from_slice(&queues.to_le_bytes());
        bytes
    }

    fn process_queue(&self, queue: usize, vring: &VringRwLock) -> io::Result<()> {
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
        loop {
            if event_idx {
                vring.disable_notification().map_err(io::Error::other)?;
            }
            loop {
                // Counted before the stopping check, so shutdown either sees this request
                // or this thread sees shutdown.
                let in_flight = self.device.begin_request();
                if self.device.stopping.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let mem = memory.memory();
                let chain = vring
                    .get_mut()
                    .get_queue_mut()
                    .pop_descriptor_chain(mem.clone());
                let Some(chain) = chain else { break };
                let head = chain.head_index();
                let buffers = match ChainBuffers::resolve(chain.clone(), &mem) {
                    Ok(b) => b,
                    Err(e) => {
                        log::warn!("fs: queue {queue} request {head} has bad descriptors: {e}");
                        complete_or_log(queue, vring, head, 0, event_idx);
                        continue;
                    }
                };
                let (len, mut payload) = read_request(&buffers.readable, scratch);
                let bytes = &scratch[..len];
                if let Some(dax) = &self.device.dax
                    && self.device.server.may_wait(bytes, payload.remaining())
                {
                    // Most maps and unmaps do not have to wait, and the ledger tells at once
                    // when one would: those are served here, spared a worker's hand-off.
                    let started = Instant::now();
                    if let Some(reply) = self
                        .device
                        .server
                        .try_without_waiting(bytes, buffers.writable.len())
                    {
                        let errno = reply_errno(&reply.header);
                        self.device.record(queue, bytes, errno, started.elapsed());
                        let used = write_reply(
                            queue,
                            head,
                            &buffers.writable,
                            &[&reply.header, &reply.body],
                        );
                        complete_or_log(queue, vring, head, used, event_idx);
                        continue;
                    }
                    let refusal = if bytes.len() > MAX_PARKED_REQUEST {
                        Some(Errno::EINVAL)
                    } else if self.device.parked.fetch_add(1, Ordering::SeqCst) >= MAX_PARKED {
                        self.device.parked.fetch_sub(1, Ordering::SeqCst);
                        Some(Errno::new(libc::EBUSY))
                    } else {
                        None
                    };
                    if let Some(errno) = refusal {
                        log::warn!(
                            "fs: queue {queue}: a request that would wait answered {errno:?} \
                             ({} bytes, {} parked)",
                            bytes.len(),
                            self.device.parked.load(Ordering::SeqCst)
                        );
                        self.device
                            .record(queue, bytes, errno.get(), Duration::ZERO);
                        let used = refuse(queue, head, bytes, errno, &buffers.writable);
                        complete_or_log(queue, vring, head, used, event_idx);
                        continue;
                    }
                    let parked = ParkedSlot(self.device.parked.clone());
                    // A request that may wait has no payload kept apart (only a WRITE
                    // has one, and it never waits): its bytes are the whole request.
                    let request = bytes.to_vec();
                    drop(buffers);
                    // Served on a worker so this queue keeps going while it waits.
                    let device = self.device.clone();
                    let vring = vring.clone();
                    let session = dax.session.clone();
                    let taken: ReplyEpoch = session.reply_epoch();
                    self.device.parking.park(move || {
                        let used = match ChainBuffers::resolve(chain, &mem) {
                            Ok(b) => device.serve(
                                queue,
                                head,
                                &request,
                                &mut SliceReader::default(),
                                &b.writable,
                            ),
                            Err(e) => {
                                log::warn!("fs: queue {queue} request {head}: no reply: {e}");
                                0
                            }
                        };
                        let landed = session.complete_if_current(taken, || {
                            if let Err(e) = complete(&vring, head, used, event_idx) {
                                log::warn!("fs: queue {queue}: parked reply not returned: {e}");
                            }
                        });
                        if !landed {
                            log::debug!(
                                "fs: queue {queue}: parked reply dropped: the ring was taken back"
                            );
                        }
                        drop(in_flight);
                        drop(parked);
                    });
                    continue;
                }
                let used = self
                    .device
                    .serve(queue, head, bytes, &mut payload, &buffers.writable);
                complete_or_log(queue, vring, head, used, event_idx);
            }
            if !event_idx || !vring.enable_notification().map_err(io::Error::other)? {
                return Ok(());
            }
        }
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

impl VhostUserBackend for FsBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        1 + self.device.config.queues
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC
            | vhost::vhost_user::message::VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, _features: u64) {
        // The device (re)starts; a SET_FEATURES while running changes nothing here.
        if let Some(dax) = &self.device.dax {
            dax.session.start();
        }
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        // Only what the device uses: a frontend that supplies the tag itself (QEMU's
        // vhost-user-fs-pci) warns about a config space it cannot use, and reports a
        // backend channel we would close unused as an unexpected end of file.
        let mut features = VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::RESET_DEVICE
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS;
        if self.device.config.tag.is_some() {
            features |= VhostUserProtocolFeatures::CONFIG;
        }
        if self.device.dax.is_some() {
            features |= VhostUserProtocolFeatures::BACKEND_REQ
                | VhostUserProtocolFeatures::BACKEND_SEND_FD
                | VhostUserProtocolFeatures::SHMEM;
            if self.device.config.shmem_bit21 {
                features |= VhostUserProtocolFeatures::from_bits_retain(super::SHMEM_BIT21_COMPAT);
            }
        }
        features
    }

    fn reset_device(&self) {
        log::info!("fs: device reset");
        let Some(dax) = &self.device.dax else { return };
        // The frontend drops every mapping of a device it resets (the spec says so, and
        // QEMU 11.1 does): the session sends no unmap for them, holds the next session's
        // maps off, and hands the release of the references to a thread of our own (the
        // frontend is waiting for our reply to this message).
        let release = dax.session.reset();
        let spawned = std::thread::Builder::new()
            .name("fs-reset".into())
            .spawn(move || match release.run() {
                Ok(n) => log::info!("fs: device reset: released {n} DAX mapping(s)"),
                Err(e) => log::error!("fs: device reset: DAX window not fully released: {e}"),
            });
        if let Err(e) = spawned {
            log::error!("fs: cannot start the reset thread; window kept: {e}");
        }
    }

    fn set_backend_req_fd(&self, backend: Backend) {
        let Some(dax) = &self.device.dax else { return };
        if self.device.config.shmem_bit21 {
            // vhost-user-backend enables SHMEM requests only for bit 22; a frontend speaking
            // bit 21 (the operator said so) needs them enabled by hand.
            backend.set_shmem_flag(true);
        }
        dax.session.attach();
        match dax.mapper.attach(backend) {
            Ok(()) => log::info!(
                "fs: DAX window of {} bytes served through the frontend's SHMEM_MAP",
                dax.session.ledger().window_size()
            ),
            Err(e) => log::error!("fs: cannot start the backend channel thread: {e}"),
        }
    }

    fn get_shmem_config(&self) -> io::Result<VhostUserShMemConfig> {
        match &self.device.dax {
            Some(dax) => Ok(VhostUserShMemConfig::new(
                1,
                &[dax.session.ledger().window_size()],
            )),
            None => Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
        }
    }

    fn set_event_idx(&self, enabled: bool) {
        self.event_idx.store(enabled, Ordering::SeqCst);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        if self.device.config.tag.is_none() {
            log::warn!("fs: GET_CONFIG refused: no --tag, so the device has no config space");
            return Vec::new();
        }
        let bytes = self.config_bytes();
        let start = offset as usize;
        match start.checked_add(size as usize) {
            Some(end) if end <= bytes.len() && size > 0 => bytes[start..end].to_vec(),
            _ => {
                log::warn!(
                    "fs: GET_CONFIG outside the {CONFIG_SIZE}-byte config (offset {offset}, size {size})"
                );
                Vec::new()
            }
        }
    }

    fn set_config(&self, offset: u32, buf: &[u8]) -> io::Result<()> {
        // The whole virtio-fs config space is read-only for the driver; an error here
        // would make vhost-user-backend drop the connection, so the write is ignored.
        log::warn!(
            "fs: SET_CONFIG ignored (offset {offset}, {} bytes): the config is read-only",
            buf.len()
        );
        Ok(())
    }

    fn update_memory(&self, memory: Memory) -> io::Result<()> {
        *self.memory.lock().unwrap_or_else(|p| p.into_inner()) = Some(memory);
        if let Some(dax) = &self.device.dax
            && !dax.mapper.is_attached()
            && !self.told_no_channel.swap(true, Ordering::SeqCst)
        {
            log::warn!(
                "fs: DAX is off for this frontend: it did not negotiate the SHMEM and \
                 BACKEND_REQ protocol features, so the device cannot map its window \
                 (SETUPMAPPING will fail)"
            );
        }
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        (0..self.num_queues()).map(|q| 1u64 << q).collect()
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        // GET_VRING_BASE: the ring is the frontend's again. A request still parked on the
        // ledger finishes, but its reply must not land in a ring that may be set up anew;
        // blocking here instead could deadlock a frontend that serves SHMEM_MAP from the
        // loop now waiting for our answer.
        log::debug!("fs: queue {queue_index} stopped");
        if let Some(dax) = &self.device.dax {
            dax.session.stop_rings();
        }
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        self.exit_events.create("fs")
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            return Err(io::Error::other(format!(
                "fs: unexpected event set {evset:?}"
            )));
        }
        // One queue per thread: the thread index is the queue index.
        match vrings.get(usize::from(device_event)) {
            Some(vring) if device_event == 0 => self.process_queue(thread_id, vring),
            _ => Err(io::Error::other(format!(
                "fs: unknown event {device_event} on thread {thread_id}"
            ))),
        }
    }
}
