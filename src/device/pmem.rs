//! virtio-pmem (virtio 1.2 §5.19): a host file or block device as guest persistent memory.
//!
//! The region is shared-memory region 0. With SHMEM negotiated the device maps the whole
//! backing there through the ledger as soon as the backend channel exists, from its own
//! region thread; it stays mapped across queue stops and is released (after in-flight
//! flushes, which pin the whole region) on reset, disconnect and shutdown. The single
//! queue carries FLUSH requests, completed only once the data is durable (group commit,
//! see the `flush` module).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vhost::vhost_user::Backend;
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserShMemConfig};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{
    Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryLoadGuard,
    GuestMemoryMmap,
};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};

use super::backend_mapper::BackendMapper;
use super::exit_events::ExitEvents;
use super::flush::{FlushStats, GroupCommit, SyncObserver};
use super::guest_memory::MemoryGuard;
use super::{VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use crate::config::{BackingKind, PmemConfig, format_size, open_backing};
use crate::control::{ControlServer, ControlSlot};
use crate::dax::{
    Backing, BackingId, FileOffset, HeldOff, Ledger, LedgerConfig, LedgerError, PendingRelease,
    PinWait, WindowOffset, WindowSession,
};
use crate::sys;

pub(crate) mod request;

use request::{Request, parse_request};

/// virtio device id of pmem.
pub const VIRTIO_ID_PMEM: u32 = 27;
/// The device takes its placement from shared-memory region 0.
pub const VIRTIO_PMEM_F_SHMEM_REGION: u64 = 1 << 0;
/// The only request type.
pub const VIRTIO_PMEM_REQ_TYPE_FLUSH: u32 = 0;
/// Response: success.
pub const VIRTIO_PMEM_RESP_OK: u32 = 0;
/// Response: failure (any non-zero value is -EIO to the guest).
pub const VIRTIO_PMEM_RESP_EIO: u32 = 1;
/// Config space: `le64 start | le64 size`.
pub const CONFIG_SIZE: usize = 16;
const QUEUE_SIZE: usize = 256;
const REGION_CHUNK: u64 = 2 << 20;

/// The file or block device behind the region.
#[derive(Debug)]
pub struct PmemBacking {
    file: File,
    kind: BackingKind,
    id: BackingId,
    readonly: bool,
}

impl PmemBacking {
    /// Opens (or creates, when the config says so) the backing.
    pub fn open(config: &PmemConfig) -> io::Result<Self> {
        let file = if config.create_file {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&config.file)?;
            file.set_len(config.size)?;
            file
        } else {
            open_backing(&config.file, config.readonly)?
        };
        let meta = file.metadata()?;
        Ok(PmemBacking {
            id: BackingId(meta.ino() ^ meta.dev().rotate_left(32)),
            file,
            kind: config.kind,
            readonly: config.readonly,
        })
    }

    /// Fails (naming both sizes) if the backing is now shorter than the device.
    pub fn check_size(&self, device_size: u64) -> io::Result<()> {
        let now = self.size()?;
        if now < device_size {
            return Err(io::Error::other(format!(
                "the backing is now {now} bytes, shorter than the device's {device_size}: \
                 something else truncated it"
            )));
        }
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> io::Result<()> {
        sys::sync_file(self.file.as_fd(), self.kind == BackingKind::Block)
    }
}

fn log_release(why: &str, result: Result<usize, LedgerError>) {
    match result {
        Ok(0) => {}
        Ok(n) => log::info!("pmem: {why}: region released ({n} mapping)"),
        Err(e) => log::error!("pmem: {why}: releasing the region failed: {e}"),
    }
}

impl Backing for PmemBacking {
    fn id(&self) -> BackingId {
        self.id
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn size(&self) -> io::Result<u64> {
        match self.kind {
            BackingKind::Regular => Ok(self.file.metadata()?.len()),
            BackingKind::Block => sys::block_device_size(self.file.as_fd()),
        }
    }

    fn writable(&self) -> bool {
        !self.readonly
    }
}

enum RegionCommand {
    Map,
    /// A reset's release (the frontend dropped the mapping itself).
    Reset(PendingRelease),
    /// The frontend is gone; signal when done.
    Disconnect(mpsc::Sender<()>),
    /// Shutdown: unmap for good; signal when done.
    Shutdown(mpsc::Sender<()>),
}

/// One pmem device for the daemon's whole life; each connection gets a [`PmemBackend`].
pub struct PmemDevice {
    config: PmemConfig,
    backing: Arc<PmemBacking>,
    ledger: Arc<Ledger>,
    mapper: Arc<BackendMapper>,
    flusher: Option<GroupCommit>,
    region: Mutex<mpsc::Sender<RegionCommand>>,
    stopping: AtomicBool,
    /// The region's life: whether the frontend has started the device (QEMU 11.1 handles
    /// SHMEM_MAP through state it sets up only then: a map sent earlier crashed it), resets,
    /// the gone frontend's pinned mapping.
    session: Arc<WindowSession>,
    control: ControlSlot,
}

impl PmemDevice {
    /// Keeps the device's control socket until [`PmemDevice::close_control`].
    pub fn attach_control(&self, server: ControlServer) {
        self.control.attach(server);
    }

    /// Closes the control socket: its clients' pins go with their connections.
    pub fn close_control(&self) {
        self.control.close();
    }

    /// Opens the backing and starts the device's threads.
    pub fn new(
        config: PmemConfig,
        ack_timeout: Duration,
        observer: Option<Arc<dyn SyncObserver>>,
    ) -> io::Result<Arc<Self>> {
        let backing = PmemBacking::open(&config)?;
        PmemDevice::with_backing(config, backing, ack_timeout, observer)
    }

    /// Starts the device's threads on a backing opened earlier (the daemon opens every
    /// file before it drops its capabilities, and starts threads only after).
    pub fn with_backing(
        config: PmemConfig,
        backing: PmemBacking,
        ack_timeout: Duration,
        observer: Option<Arc<dyn SyncObserver>>,
    ) -> io::Result<Arc<Self>> {
        let backing = Arc::new(backing);
        let mapper = BackendMapper::new(0, ack_timeout);
        let ledger = Ledger::new(
            LedgerConfig::new(config.size).with_chunk_size(REGION_CHUNK),
            mapper.clone(),
        )
        .map(Arc::new)
        .map_err(|e| io::Error::other(format!("pmem ledger: {e}")))?;
        let flusher = if config.readonly {
            None
        } else {
            let backing = backing.clone();
            let ledger = ledger.clone();
            let size = config.size;
            Some(GroupCommit::new(
                "pmem-sync",
                Box::new(move || {
                    // A flush pins the whole region so a release waits for it. The sync
                    // runs in any case: durability does not depend on the mapping.
                    let _pin = match ledger.pin(0, size, "pmem flush", PinWait::Fail) {
                        Ok(pin) => Some(pin),
                        Err(LedgerError::NotMapped { .. }) => None, // no SHMEM, or not yet
                        Err(e) => {
                            // A reset is releasing the region: nothing to hold it for.
                            log::debug!("pmem: flush runs without a pin: {e}");
                            None
                        }
                    };
                    backing.sync()?;
                    // A backing cut short by someone else loses what the guest wrote
                    // past its new end: the guest must hear of it, not get "durable".
                    backing.check_size(size)
                }),
                observer,
            )?)
        };
        let (tx, rx) = mpsc::channel();
        let session = WindowSession::new(ledger.clone(), mapper.clone());
        let device = Arc::new(PmemDevice {
            config,
            backing,
            ledger,
            mapper,
            flusher,
            region: Mutex::new(tx),
            stopping: AtomicBool::new(false),
            session,
            control: ControlSlot::default(),
        });
        let worker = device.clone();
        std::thread::Builder::new()
            .name("pmem-region".into())
            .spawn(move || worker.run_region_thread(rx))?;
        Ok(device)
    }

    /// The validated configuration.
    pub fn config(&self) -> &PmemConfig {
        &self.config
    }

    /// The ledger that owns the region mapping.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Flush counters (all zero for a read-only device).
    pub fn flush_stats(&self) -> FlushStats {
        self.flusher
            .as_ref()
            .map(GroupCommit::stats)
            .unwrap_or_default()
    }

    fn command(&self, command: RegionCommand) {
        let tx = self.region.lock().unwrap_or_else(|p| p.into_inner());
        if tx.send(command).is_err() {
            log::error!("pmem region thread is gone");
        }
    }

    /// Maps the region once the frontend has started the device and given us a channel,
    /// whichever comes last.
    fn map_when_started(&self) {
        if self.session.is_running() && self.mapper.is_attached() {
            self.command(RegionCommand::Map);
        }
    }

    /// Sends `command` to the region thread and waits until it is done.
    fn command_and_wait(&self, command: impl FnOnce(mpsc::Sender<()>) -> RegionCommand) {
        let (tx, rx) = mpsc::channel();
        self.command(command(tx));
        let _ = rx.recv();
    }

    fn run_region_thread(&self, commands: mpsc::Receiver<RegionCommand>) {
        let mut told_no_shmem = false;
        for command in commands {
            match command {
                RegionCommand::Map => self.map_region(&mut told_no_shmem),
                RegionCommand::Reset(release) => log_release("reset", release.run()),
                RegionCommand::Disconnect(done) => {
                    if !self.session.disconnect() {
                        log::warn!("pmem: the region stays held until its pins drop");
                    }
                    let _ = done.send(());
                }
                RegionCommand::Shutdown(done) => {
                    log_release("shutdown", self.session.shutdown());
                    let _ = done.send(());
                }
            }
        }
    }

    fn map_region(&self, told_no_shmem: &mut bool) {
        match self.session.check_map() {
            Ok(()) => {}
            // A gone frontend's mapping was still pinned by a flush: try again now.
            Err(HeldOff::Disconnected) if self.session.retry_release() => {}
            Err(why) => {
                log::warn!("pmem: region not mapped: {why}");
                return;
            }
        }
        if self.ledger.has_mappings(self.backing.id()) {
            // A mapping from before the device restarted: the frontend may have dropped
            // it with the reset (QEMU 11.1 does). Release it (an unmap the frontend
            // refuses counts as done) and map afresh, so the region is surely there.
            match self.ledger.reset() {
                Ok(n) => log::debug!("pmem: {n} mapping(s) of the previous start released"),
                Err(e) => {
                    log::error!("pmem: the previous start's mapping could not be released: {e}");
                    return;
                }
            }
        }
        if let Err(e) = self.backing.check_size(self.config.size) {
            // Mapping it would hand the guest pages past the end of the file.
            log::error!(
                "pmem: {}: {e}; the region is not mapped",
                self.config.file.display()
            );
            return;
        }
        let writable = !self.config.readonly;
        match self.ledger.map(
            WindowOffset(0),
            self.config.size,
            self.backing.clone(),
            FileOffset(0),
            writable,
        ) {
            Ok(_) => log::info!(
                "pmem: {} mapped into shared-memory region 0 ({}, {})",
                self.config.file.display(),
                format_size(self.config.size),
                if writable { "read-write" } else { "read-only" }
            ),
            Err(e) if !*told_no_shmem => {
                *told_no_shmem = true;
                log::warn!(
                    "pmem: could not map the region through the frontend ({e}); {}",
                    self.frontend_maps_itself_hint()
                );
            }
            Err(e) => log::debug!("pmem: region map failed again: {e}"),
        }
    }

    fn frontend_maps_itself_hint(&self) -> String {
        format!(
            "the frontend must map the region itself: {} from offset 0, {} bytes, {}",
            self.config.file.display(),
            self.config.size,
            if self.config.readonly {
                "read-only"
            } else {
                "read-write"
            }
        )
    }

    /// The frontend went away: end its mappings, finish flushes, make data durable.
    pub fn disconnected(&self) {
        self.sync_and_count();
        self.command_and_wait(RegionCommand::Disconnect);
    }

    /// SIGTERM/SIGINT: stop taking requests, finish in-flight ones, make the data durable,
    /// ask the frontend to unmap the region.
    pub fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.sync_and_count();
        self.command_and_wait(RegionCommand::Shutdown);
    }

    fn sync_and_count(&self) {
        if let Some(flusher) = &self.flusher
            && let Err(e) = flusher.sync_now()
        {
            log::error!(
                "pmem: final sync of {} failed: {e}",
                self.config.file.display()
            );
        }
        let stats = self.flush_stats();
        log::info!(
            "pmem: {} flush requests served with {} syncs ({} failed)",
            stats.requests,
            stats.syncs,
            stats.failures
        );
    }
}

type Memory = GuestMemoryAtomic<GuestMemoryMmap>;

/// The per-connection vhost-user face of a [`PmemDevice`].
#[derive(Clone)]
pub struct PmemBackend {
    device: Arc<PmemDevice>,
    conn: Arc<Connection>,
    exit_events: ExitEvents,
    guard: MemoryGuard,
}

impl super::ConnectionBackend for PmemBackend {
    fn exit_events(&self) -> &ExitEvents {
        &self.exit_events
    }

    fn memory_guard(&self) -> &MemoryGuard {
        &self.guard
    }
}

struct Connection {
    memory: Mutex<Option<Memory>>,
    start: AtomicU64,
    event_idx: AtomicBool,
    told_no_channel: AtomicBool,
}

impl PmemBackend {
    /// State for one new connection.
    pub fn new(device: Arc<PmemDevice>) -> Self {
        PmemBackend {
            device,
            conn: Arc::new(Connection {
                memory: Mutex::new(None),
                start: AtomicU64::new(0),
                event_idx: AtomicBool::new(false),
                told_no_channel: AtomicBool::new(false),
            }),
            exit_events: ExitEvents::default(),
            guard: MemoryGuard::new("pmem"),
        }
    }

    fn config_bytes(&self) -> [u8; CONFIG_SIZE] {
        let mut bytes = [0u8; CONFIG_SIZE];
        bytes[..8].copy_from_slice(&self.conn.start.load(Ordering::SeqCst).to_le_bytes());
        bytes[8..].copy_from_slice(&self.device.config.size.to_le_bytes());
        bytes
    }

    fn memory(&self) -> Option<Memory> {
        self.conn
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn process_queue(&self, vring: &VringRwLock) -> io::Result<()> {
        let Some(memory) = self.memory() else {
            log::warn!("pmem: queue kicked before the memory table was set");
            return Ok(());
        };
        let event_idx = self.conn.event_idx.load(Ordering::SeqCst);
        loop {
            if event_idx {
                vring.disable_notification().map_err(io::Error::other)?;
            }
            self.drain_queue(vring, &memory)?;
            if !event_idx || !vring.enable_notification().map_err(io::Error::other)? {
                return Ok(());
            }
        }
    }

    fn drain_queue(&self, vring: &VringRwLock, memory: &Memory) -> io::Result<()> {
        while !self.device.stopping.load(Ordering::SeqCst) && !self.guard.check() {
            let mem = memory.memory();
            let chain = {
                let mut state = vring.get_mut();
                let q = state.get_queue_mut();
                if !self.guard.ring_inside(0, q, &mem) {
                    return Ok(());
                }
                q.pop_descriptor_chain(mem.clone())
            };
            let Some(chain) = chain else {
                return Ok(());
            };
            if self.guard.check() {
                // The pop itself read memory the frontend cut: nothing more is served.
                return Ok(());
            }
            self.serve(chain, vring, memory);
        }
        Ok(())
    }

    fn serve(
        &self,
        chain: DescriptorChain<GuestMemoryLoadGuard<GuestMemoryMmap>>,
        vring: &VringRwLock,
        memory: &Memory,
    ) {
        let head = chain.head_index();
        let request = parse_request(chain);
        let completion = Completion {
            vring: vring.clone(),
            memory: memory.clone(),
            guard: self.guard.clone(),
            head,
            event_idx: self.conn.event_idx.load(Ordering::SeqCst),
        };
        match request {
            Request::Flush { status } => match &self.device.flusher {
                Some(flusher) => flusher.submit(Box::new(move |result| {
                    let code = if result.is_ok() {
                        VIRTIO_PMEM_RESP_OK
                    } else {
                        VIRTIO_PMEM_RESP_EIO
                    };
                    completion.respond(Some((status, code)));
                })),
                // Read-only: nothing can have been written, so there is nothing to sync.
                None => completion.respond(Some((status, VIRTIO_PMEM_RESP_OK))),
            },
            Request::Invalid { status, reason } => {
                match status {
                    Some(_) => log::warn!("pmem: request {head} rejected: {reason}"),
                    None => log::warn!(
                        "pmem: request {head} dropped (no 4-byte response buffer): {reason}"
                    ),
                }
                completion.respond(status.map(|s| (s, VIRTIO_PMEM_RESP_EIO)));
            }
        }
    }
}

/// What the device needs to complete one chain, from any thread.
struct Completion {
    vring: VringRwLock,
    memory: Memory,
    guard: MemoryGuard,
    head: u16,
    event_idx: bool,
}

impl Completion {
    /// Writes the status (if the chain has room for one) and returns the chain.
    fn respond(self, status: Option<(GuestAddress, u32)>) {
        let mut used_len = 0;
        if let Some((addr, code)) = status {
            match self.memory.memory().write_obj(code.to_le(), addr) {
                Ok(()) => used_len = 4,
                Err(e) => log::warn!("pmem: cannot write status of request {}: {e}", self.head),
            }
        }
        if self.guard.check() {
            // The connection's memory faulted (perhaps writing this very status): the
            // connection is being dropped, and its ring is no longer the guest's.
            log::debug!(
                "pmem: request {} not returned: guest memory faulted",
                self.head
            );
            return;
        }
        if let Err(e) = self.vring.add_used(self.head, used_len) {
            log::error!("pmem: cannot return request {}: {e}", self.head);
            return;
        }
        let notify = !self.event_idx || self.vring.needs_notification().unwrap_or(true);
        if notify && let Err(e) = self.vring.signal_used_queue() {
            log::warn!("pmem: cannot signal the guest: {e}");
        }
    }
}

impl VhostUserBackend for PmemBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        1
    }

    fn max_queue_size(&self) -> usize {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | VIRTIO_RING_F_EVENT_IDX
            | VIRTIO_RING_F_INDIRECT_DESC
            | VIRTIO_PMEM_F_SHMEM_REGION
            | vhost::vhost_user::message::VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn acked_features(&self, _features: u64) {
        // SET_FEATURES is the first message of the frontend's device start (QEMU sends it
        // from vhost_dev_start, after the state SHMEM_MAP needs exists), at the first
        // start and after every stop or reset. A SET_FEATURES while running (QEMU's dirty
        // log switch) changes nothing here.
        if self.device.session.start() {
            self.device.map_when_started();
        }
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        let mut features = VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::BACKEND_REQ
            | VhostUserProtocolFeatures::BACKEND_SEND_FD
            | VhostUserProtocolFeatures::RESET_DEVICE
            | VhostUserProtocolFeatures::CONFIGURE_MEM_SLOTS
            | VhostUserProtocolFeatures::SHMEM;
        if self.device.config.shmem_bit21 {
            features |= VhostUserProtocolFeatures::from_bits_retain(super::SHMEM_BIT21_COMPAT);
        }
        features
    }

    fn reset_device(&self) {
        log::info!("pmem: device reset");
        if let Some(flusher) = &self.device.flusher {
            flusher.drain();
        }
        // A frontend drops every shared-memory mapping of a device it resets (the spec
        // says so, and QEMU 11.1 does): the session sends no unmap the frontend would
        // refuse; the release of our references goes to the region thread (the frontend
        // is busy waiting for our reply to this message).
        let release = self.device.session.reset();
        self.device.command(RegionCommand::Reset(release));
    }

    fn set_event_idx(&self, enabled: bool) {
        self.conn.event_idx.store(enabled, Ordering::SeqCst);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let bytes = self.config_bytes();
        let start = offset as usize;
        match start.checked_add(size as usize) {
            Some(end) if end <= bytes.len() && size > 0 => bytes[start..end].to_vec(),
            _ => {
                log::warn!(
                    "pmem: GET_CONFIG outside the 16-byte config (offset {offset}, size {size})"
                );
                Vec::new()
            }
        }
    }

    fn set_config(&self, offset: u32, buf: &[u8]) -> io::Result<()> {
        // Only `start` is the frontend's to write: guest-physical placement is its choice.
        // Writes elsewhere are ignored, as a device ignores writes to read-only config
        // fields; an error here would make vhost-user-backend drop the connection.
        if offset != 0 || buf.len() != 8 {
            log::warn!(
                "pmem: SET_CONFIG ignored: only `start` (offset 0, 8 bytes) is writable, got offset {offset}, {} bytes",
                buf.len()
            );
            return Ok(());
        }
        let mut start = [0u8; 8];
        start.copy_from_slice(buf);
        self.conn
            .start
            .store(u64::from_le_bytes(start), Ordering::SeqCst);
        Ok(())
    }

    fn update_memory(&self, memory: Memory) -> io::Result<()> {
        self.guard.table(memory.memory().into_inner());
        *self.conn.memory.lock().unwrap_or_else(|p| p.into_inner()) = Some(memory);
        if !self.device.mapper.is_attached()
            && !self.conn.told_no_channel.swap(true, Ordering::SeqCst)
        {
            log::warn!(
                "pmem: the frontend set up no backend channel, so the device cannot map its region; {}",
                self.device.frontend_maps_itself_hint()
            );
        }
        Ok(())
    }

    fn set_backend_req_fd(&self, backend: Backend) {
        if self.device.config.shmem_bit21 {
            // vhost-user-backend enables SHMEM requests only for bit 22; a frontend speaking
            // bit 21 (the operator said so) needs them enabled by hand.
            backend.set_shmem_flag(true);
        }
        if let Err(e) = self.device.mapper.attach(backend) {
            log::error!("pmem: cannot start the backend channel thread: {e}");
            return;
        }
        self.device.session.attach();
        self.device.map_when_started();
    }

    fn get_shmem_config(&self) -> io::Result<VhostUserShMemConfig> {
        Ok(VhostUserShMemConfig::new(1, &[self.device.config.size]))
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        vec![1]
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        self.exit_events.create("pmem")
    }

    fn stop_vring(&self, _queue_index: u32) -> io::Result<()> {
        // GET_VRING_BASE: every accepted flush must be answered before the ring stops.
        if let Some(flusher) = &self.device.flusher {
            flusher.drain();
        }
        // The device stopped; the next SET_FEATURES starts it again.
        self.device.session.stop_rings();
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            return Err(io::Error::other(format!(
                "pmem: unexpected event set {evset:?}"
            )));
        }
        match (device_event, vrings.first()) {
            (0, Some(vring)) => self.process_queue(vring),
            _ => Err(io::Error::other(format!(
                "pmem: unknown event {device_event}"
            ))),
        }
    }
}
