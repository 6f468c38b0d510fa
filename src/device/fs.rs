//! virtio-fs (virtio 1.2 §5.11): FUSE requests carried on virtqueues.
//!
//! Queue 0 is the high-priority queue (FORGET and friends), the others are request
//! queues. Every queue is served on its own thread, so slow file I/O on a request queue
//! never holds up the hiprio queue; with `--thread-pool-size N` the request queues hand
//! their requests to N pool workers (see `device/pool.rs`), so a slow request no
//! longer holds up the others on its queue either. A chain's device-readable part is the
//! FUSE request, its device-writable part receives the reply. Popping and serving chains
//! is in `device/fs/queue.rs`.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use vhost::vhost_user::Backend;
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserShMemConfig};
use vhost_user_backend::{VhostUserBackend, VringRwLock};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};

use super::backend_mapper::BackendMapper;
use super::exit_events::ExitEvents;
use super::guest_memory::MemoryGuard;
use super::parking::Parking;
use super::pool::Pool;
use super::{VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use crate::config::{FsConfig, MAX_TAG_LEN};
use crate::control::{ControlServer, ControlSlot};
use crate::dax::{ReplyEpoch, WindowSession};
use crate::fs::PassthroughFs;
use crate::fuse::Server;
use crate::fuse::stats::QueueStats;

/// virtio device id of virtio-fs.
pub const VIRTIO_ID_FS: u32 = 26;
/// Config space: `u8 tag[36] | le32 num_request_queues`.
pub const CONFIG_SIZE: usize = MAX_TAG_LEN + 4;
/// Largest queue size offered; also the most requests waiting for a pool worker.
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

mod queue;

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
    control: ControlSlot,
    parking: Parking,
    /// The request pool (`--thread-pool-size`), if any: None serves each request on its
    /// queue's thread.
    pool: Option<Pool>,
    /// Reply epoch of the rings when there is no window session (which keeps its own):
    /// bumped when the frontend takes the rings back, see [`FsDevice::complete_if_current`].
    ring_epoch: Mutex<u64>,
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
        let pool = match config.thread_pool_size {
            0 => None,
            n => {
                let pool = Pool::start("fs", n, QUEUE_SIZE);
                if pool.is_none() {
                    log::error!(
                        "fs: no pool worker could be started; serving on the queue threads"
                    );
                }
                pool
            }
        };
        Arc::new(FsDevice {
            pool,
            ring_epoch: Mutex::new(0),
            stats,
            config,
            server: Server::new(fs),
            dax,
            retrying: AtomicBool::new(false),
            control: ControlSlot::default(),
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

    /// Workers of the request pool (`--thread-pool-size`); 0: requests are served on
    /// their queues' threads.
    pub fn pool_workers(&self) -> usize {
        self.pool.as_ref().map_or(0, Pool::workers)
    }

    /// The DAX window, if the device has one.
    pub fn dax(&self) -> Option<&FsDax> {
        self.dax.as_ref()
    }

    /// Serves `server` (the window's control socket) until shutdown.
    pub fn attach_control(&self, server: ControlServer) {
        self.control.attach(server);
    }

    /// Closes the control socket: its clients' pins are dropped with their connections.
    pub fn close_control(&self) {
        self.control.close();
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

    /// The epoch a reply served off its queue's thread must land in.
    fn reply_epoch(&self) -> Epoch {
        match &self.dax {
            Some(dax) => Epoch::Window(dax.session.reply_epoch()),
            None => Epoch::Rings(*self.ring_epoch.lock().unwrap_or_else(|p| p.into_inner())),
        }
    }

    /// Runs `complete` (returning a reply served off its queue's thread) only if the
    /// frontend has not taken the rings back (GET_VRING_BASE, RESET_DEVICE) since `taken`;
    /// under a lock the ring stop takes too. Returns whether it ran.
    fn complete_if_current(&self, taken: Epoch, complete: impl FnOnce()) -> bool {
        match (&self.dax, taken) {
            (Some(dax), Epoch::Window(taken)) => dax.session.complete_if_current(taken, complete),
            (None, Epoch::Rings(taken)) => {
                let epoch = self.ring_epoch.lock().unwrap_or_else(|p| p.into_inner());
                if *epoch != taken {
                    return false;
                }
                complete();
                drop(epoch);
                true
            }
            _ => false,
        }
    }

    /// The frontend takes the rings back: replies still being served must not land.
    fn end_ring_epoch(&self) {
        match &self.dax {
            Some(dax) => dax.session.stop_rings(),
            None => *self.ring_epoch.lock().unwrap_or_else(|p| p.into_inner()) += 1,
        }
    }

    /// Counts a request as being served until the returned guard drops.
    fn begin_request(self: &Arc<Self>) -> InFlight {
        *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        InFlight(self.clone())
    }
}

/// When a reply served off its queue's thread was taken: see
/// [`FsDevice::complete_if_current`].
#[derive(Clone, Copy)]
enum Epoch {
    /// The window session's epoch (a device with a DAX window).
    Window(ReplyEpoch),
    /// The device's own ring epoch (no window).
    Rings(u64),
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
    guard: MemoryGuard,
}

impl super::ConnectionBackend for FsBackend {
    fn exit_events(&self) -> &ExitEvents {
        &self.exit_events
    }

    fn memory_guard(&self) -> &MemoryGuard {
        &self.guard
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
            guard: MemoryGuard::new("fs"),
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
        let Some(dax) = &self.device.dax else {
            self.device.end_ring_epoch();
            return;
        };
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
        self.guard.table(memory.memory().into_inner());
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
        self.device.end_ring_epoch();
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
