//! Our side of the vhost-user socket: a real frontend, as a VMM would run it.
//!
//! It negotiates features, shares guest RAM from a memfd (SET_MEM_TABLE), drives split
//! virtqueues from the driver side, and serves the backend channel: SHMEM_MAP/UNMAP map
//! and unmap files in `PROT_NONE` reservations (one per shared-memory region) and are
//! acknowledged with REPLY_ACK. [`KvmSlot`] registers guest RAM and those regions with a
//! KVM virtual machine, as a KVM-based VMM would. The tests, the KVM guest-tests and
//! `vhost-dax bench` all use it; it can drive any vhost-user backend, not only ours.

mod fuse;
mod kvm;
mod memory;
mod process;
mod virtqueue;
mod window;

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserHeaderFlag, VhostUserProtocolFeatures,
};
use vhost::vhost_user::{Frontend as VhostFrontend, FrontendReqHandler, VhostUserFrontend};
use vhost::{VhostBackend, VringConfigData};

pub use fuse::{FuseQueue, SharedFrontend, Ticket};
pub use kvm::{KvmSlot, KvmSlotError};
pub use memory::GuestRam;
pub use process::DaemonProcess;
pub use virtqueue::{Buffer, DriverQueue, QueueLayout, UsedChain};
pub use window::{LiveMapping, MapRule, ShmemWindows, WindowError, WindowStats};

/// `VIRTIO_F_VERSION_1`.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// `VHOST_USER_F_PROTOCOL_FEATURES`.
pub const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// `VIRTIO_RING_F_EVENT_IDX`.
pub const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;

/// Errors of the frontend.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// A vhost-user request failed.
    #[error("vhost-user: {0}")]
    Vhost(#[from] vhost::Error),
    /// A system call failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Local set-up failed (memory, rings).
    #[error("setup: {0}")]
    Setup(String),
    /// The backend broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A bounded wait ran out.
    #[error("timeout: {0}")]
    Timeout(String),
}

/// What the frontend asks for.
#[derive(Debug, Clone)]
pub struct FrontendOptions {
    /// Guest RAM size.
    pub memory_size: u64,
    /// Descriptors per queue.
    pub queue_size: u16,
    /// Queues to set up when the backend does not negotiate MQ.
    pub num_queues: usize,
    /// Virtio feature bits the frontend accepts (masked with what the backend offers).
    pub features: u64,
    /// Protocol features the frontend accepts.
    pub protocol_features: VhostUserProtocolFeatures,
    /// Shared-memory region sizes (index = shmid) the frontend sets up on its own, as
    /// alioth does with its `dax_window`, instead of asking GET_SHMEM_CONFIG.
    pub shmem_sizes: Option<Vec<u64>>,
    /// What the frontend will map (QEMU 11.1: only within the file).
    pub map_rule: MapRule,
    /// Seal guest RAM against shrinking and growing before sharing it, as QEMU's
    /// `memory-backend-memfd` does by default (`seal=on`).
    pub seal_memory: bool,
}

impl Default for FrontendOptions {
    fn default() -> Self {
        FrontendOptions {
            memory_size: 64 << 20,
            queue_size: 256,
            num_queues: 1,
            // Our driver does not publish used_event, so it must not accept EVENT_IDX.
            features: !VIRTIO_RING_F_EVENT_IDX,
            protocol_features: VhostUserProtocolFeatures::MQ
                | VhostUserProtocolFeatures::REPLY_ACK
                | VhostUserProtocolFeatures::CONFIG
                | VhostUserProtocolFeatures::BACKEND_REQ
                | VhostUserProtocolFeatures::BACKEND_SEND_FD
                | VhostUserProtocolFeatures::RESET_DEVICE
                | VhostUserProtocolFeatures::SHMEM,
            shmem_sizes: None,
            map_rule: MapRule::PastEof,
            seal_memory: false,
        }
    }
}

/// A connected, activated vhost-user frontend.
pub struct Frontend {
    vhost: VhostFrontend,
    ram: GuestRam,
    queues: Vec<DriverQueue>,
    windows: Arc<ShmemWindows>,
    backend_channel: Option<BackendChannel>,
    acked_features: u64,
    acked_protocol: VhostUserProtocolFeatures,
}

/// The thread serving backend requests, and a handle to stop it.
struct BackendChannel {
    socket: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl Drop for BackendChannel {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Frontend {
    /// Connects to the backend at `socket` and activates every queue.
    pub fn connect(socket: &Path, options: &FrontendOptions) -> Result<Self, FrontendError> {
        let vhost = VhostFrontend::connect(socket, 64)?;
        Self::activate(vhost, options)
    }

    fn activate(
        mut vhost: VhostFrontend,
        options: &FrontendOptions,
    ) -> Result<Self, FrontendError> {
        let offered = vhost.get_features()?;
        if offered & VIRTIO_F_VERSION_1 == 0 {
            return Err(FrontendError::Protocol(format!(
                "backend does not offer VIRTIO_F_VERSION_1 (features {offered:#x})"
            )));
        }
        vhost.set_owner()?;
        let mut acked_protocol = VhostUserProtocolFeatures::empty();
        if offered & VHOST_USER_F_PROTOCOL_FEATURES != 0 {
            let protocol = vhost.get_protocol_features()?;
            acked_protocol = protocol & options.protocol_features;
            vhost.set_protocol_features(acked_protocol)?;
            if acked_protocol.contains(VhostUserProtocolFeatures::REPLY_ACK) {
                // Every request then waits for the backend's verdict, as alioth does.
                vhost.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
            }
        }
        let num_queues = if acked_protocol.contains(VhostUserProtocolFeatures::MQ) {
            usize::try_from(vhost.get_queue_num()?)
                .map_err(|_| FrontendError::Protocol("queue count too large".into()))?
        } else {
            options.num_queues
        };
        let shmem_sizes = if let Some(sizes) = &options.shmem_sizes {
            sizes.clone()
        } else if acked_protocol.contains(VhostUserProtocolFeatures::SHMEM) {
            let config = vhost.get_shmem_config()?;
            let sizes = config.memory_sizes;
            sizes.to_vec()
        } else {
            Vec::new()
        };
        let windows = Arc::new(ShmemWindows::new(&shmem_sizes)?.with_rule(options.map_rule));
        let backend_channel = if acked_protocol.contains(VhostUserProtocolFeatures::BACKEND_REQ) {
            Some(start_backend_channel(
                &mut vhost,
                windows.clone(),
                acked_protocol.contains(VhostUserProtocolFeatures::REPLY_ACK),
            )?)
        } else {
            None
        };

        let acked_features = offered & (options.features | VHOST_USER_F_PROTOCOL_FEATURES);
        vhost.set_features(acked_features)?;
        let ram = GuestRam::new(options.memory_size)?;
        if options.seal_memory {
            ram.seal_size()?;
        }
        vhost.set_mem_table(&ram.region_infos()?)?;

        let mut queues = Vec::with_capacity(num_queues);
        for index in 0..num_queues {
            let queue = DriverQueue::new(&ram, options.queue_size)?;
            let layout = queue.layout();
            vhost.set_vring_num(index, layout.size)?;
            vhost.set_vring_addr(
                index,
                &VringConfigData {
                    queue_max_size: layout.size,
                    queue_size: layout.size,
                    flags: 0,
                    desc_table_addr: ram.host_address(layout.desc.0)?,
                    used_ring_addr: ram.host_address(layout.used.0)?,
                    avail_ring_addr: ram.host_address(layout.avail.0)?,
                    log_addr: None,
                },
            )?;
            vhost.set_vring_base(index, 0)?;
            vhost.set_vring_call(index, queue.call_fd())?;
            vhost.set_vring_kick(index, queue.kick_fd())?;
            if acked_features & VHOST_USER_F_PROTOCOL_FEATURES != 0 {
                vhost.set_vring_enable(index, true)?;
            }
            queues.push(queue);
        }
        Ok(Frontend {
            vhost,
            ram,
            queues,
            windows,
            backend_channel,
            acked_features,
            acked_protocol,
        })
    }

    /// Where the rings of queue `queue` lie in guest RAM (for crafted SET_VRING_ADDR).
    pub fn queue_layout(&self, queue: usize) -> Result<QueueLayout, FrontendError> {
        Ok(self.queues[self.queue_index(queue)?].layout())
    }

    /// The underlying vhost crate frontend, for raw requests.
    pub fn vhost(&mut self) -> &mut VhostFrontend {
        &mut self.vhost
    }

    /// Guest RAM.
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Number of queues set up.
    pub fn num_queues(&self) -> usize {
        self.queues.len()
    }

    /// Shared-memory regions (empty when SHMEM was not negotiated).
    pub fn windows(&self) -> &Arc<ShmemWindows> {
        &self.windows
    }

    /// Virtio features acked.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// Protocol features acked.
    pub fn acked_protocol_features(&self) -> VhostUserProtocolFeatures {
        self.acked_protocol
    }

    /// Whether the backend channel is being served.
    pub fn has_backend_channel(&self) -> bool {
        self.backend_channel.is_some()
    }

    /// Reads `len` bytes of the device config space at `offset`.
    pub fn get_config(&mut self, offset: u32, len: u32) -> Result<Vec<u8>, FrontendError> {
        let buf = vec![0u8; len as usize];
        let (_, payload) =
            self.vhost
                .get_config(offset, len, VhostUserConfigFlags::WRITABLE, &buf)?;
        Ok(payload)
    }

    /// Writes `data` into the device config space at `offset`.
    pub fn set_config(&mut self, offset: u32, data: &[u8]) -> Result<(), FrontendError> {
        self.vhost
            .set_config(offset, VhostUserConfigFlags::WRITABLE, data)?;
        Ok(())
    }

    /// Offers a chain on queue `queue` and kicks the device; returns the head index.
    pub fn submit(&mut self, queue: usize, buffers: &[Buffer]) -> Result<u16, FrontendError> {
        let q = self.queue_index(queue)?;
        let head = self.queues[q].add_chain(&self.ram, buffers)?;
        self.queues[q].kick()?;
        Ok(head)
    }

    /// Offers a chain without kicking (to batch several before one kick).
    pub fn add_chain(&mut self, queue: usize, buffers: &[Buffer]) -> Result<u16, FrontendError> {
        let q = self.queue_index(queue)?;
        self.queues[q].add_chain(&self.ram, buffers)
    }

    /// Offers a raw `head` on queue `queue` and kicks (see [`DriverQueue::add_raw_head`]).
    pub fn submit_raw_head(&mut self, queue: usize, head: u16) -> Result<(), FrontendError> {
        let q = self.queue_index(queue)?;
        self.queues[q].add_raw_head(&self.ram, head)?;
        self.queues[q].kick()
    }

    /// Notifies the device of queue `queue`.
    pub fn kick(&self, queue: usize) -> Result<(), FrontendError> {
        let q = self.queue_index(queue)?;
        self.queues[q].kick()
    }

    /// Waits for `count` chains of queue `queue` to come back.
    pub fn wait_used(
        &mut self,
        queue: usize,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<UsedChain>, FrontendError> {
        let q = self.queue_index(queue)?;
        self.queues[q].wait_used(&self.ram, count, timeout)
    }

    /// Chains of queue `queue` returned so far, without waiting.
    pub fn collect_used(&mut self, queue: usize) -> Result<Vec<UsedChain>, FrontendError> {
        let q = self.queue_index(queue)?;
        self.queues[q].collect_used(&self.ram)
    }

    fn queue_index(&self, queue: usize) -> Result<usize, FrontendError> {
        if queue < self.queues.len() {
            Ok(queue)
        } else {
            Err(FrontendError::Setup(format!(
                "queue {queue} does not exist ({} queues)",
                self.queues.len()
            )))
        }
    }

    /// Sends RESET_DEVICE (when negotiated), then drops every shared-memory mapping of
    /// the device, as the spec has a frontend do (and QEMU 11.1 does).
    pub fn reset_device(&mut self) -> Result<(), FrontendError> {
        self.vhost.reset_device()?;
        self.windows.drop_all()?;
        Ok(())
    }

    /// Stops every queue the way a VMM does before a reset or migration (GET_VRING_BASE).
    pub fn stop_queues(&mut self) -> Result<(), FrontendError> {
        for index in 0..self.queues.len() {
            self.vhost.get_vring_base(index)?;
        }
        Ok(())
    }
}

fn start_backend_channel(
    vhost: &mut VhostFrontend,
    windows: Arc<ShmemWindows>,
    reply_ack: bool,
) -> Result<BackendChannel, FrontendError> {
    let mut handler = FrontendReqHandler::new(windows).map_err(vhost::Error::VhostUserProtocol)?;
    handler.set_reply_ack_flag(reply_ack);
    // SAFETY: the handler owns this descriptor and is alive for the duration of the borrow;
    // we only duplicate it to be able to shut the channel down from another thread.
    let ours: OwnedFd =
        unsafe { BorrowedFd::borrow_raw(handler.as_raw_fd()) }.try_clone_to_owned()?;
    let tx = handler.get_tx_raw_fd();
    // SAFETY: the handler keeps the peer socket open while we send it to the backend.
    vhost.set_backend_request_fd(&unsafe { BorrowedFd::borrow_raw(tx) })?;
    let thread = std::thread::Builder::new()
        .name("frontend-backend-channel".into())
        .spawn(move || {
            loop {
                match handler.handle_request() {
                    Ok(_) => {}
                    Err(vhost::vhost_user::Error::ReqHandlerError(e)) => {
                        log::debug!("frontend: backend request refused: {e}");
                    }
                    Err(e) => {
                        log::debug!("frontend: backend channel closed: {e}");
                        break;
                    }
                }
            }
        })?;
    Ok(BackendChannel {
        socket: UnixStream::from(ours),
        thread: Some(thread),
    })
}
