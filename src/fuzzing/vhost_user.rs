//! vhost-user frontend messages, sent over a real Unix socket to an in-process
//! `vhost-user-backend` daemon serving our fs device (with a DAX window) or our pmem
//! device: the decoding `vhost` does and every backend method it calls on ours.
//!
//! The devices live for the whole process, as in a daemon run with `--reconnect`; each
//! input is one connection, torn down as the daemon tears one down.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringRwLock};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use super::{Input, ScratchDir};
use crate::config::{FsRequest, Origin, PmemRequest};
use crate::dax::{ExtentMapper, Ledger, LedgerConfig, WindowSession};
use crate::device::ConnectionBackend;
use crate::device::backend_mapper::BackendMapper;
use crate::device::fs::{FsBackend, FsDax, FsDevice, SHMCAP_ID_CACHE};
use crate::device::pmem::{PmemBackend, PmemDevice};
use crate::fs::{DaxWindow, PassthroughFs};

/// How long the devices wait for a SHMEM_MAP/UNMAP acknowledgement (a fuzzed frontend
/// never gives one).
const ACK_TIMEOUT: Duration = Duration::from_millis(20);
/// The size of the memfd a message may carry (sparse).
const MEMFD_SIZE: u64 = 1 << 20;
/// `SET_MEM_TABLE` and `ADD_MEM_REG`: their regions start 8 bytes into the payload.
const MEMORY_REGION_REQUESTS: [u32; 2] = [5, 37];
/// `VHOST_USER_REPLY_MASK`.
const REPLY: u32 = 0x4;
/// The version bits of a message's flags.
const VERSION_MASK: u32 = 0x3;

/// The devices, made on first use, with their directories.
struct Devices {
    _dir: ScratchDir,
    fs: Arc<FsDevice>,
    pmem: Arc<PmemDevice>,
}

fn devices() -> &'static Devices {
    static DEVICES: OnceLock<Devices> = OnceLock::new();
    DEVICES.get_or_init(|| {
        // As the daemon: guest memory that faults is repaired, not the process's end.
        crate::sys::sigbus::install().expect("fuzz: SIGBUS handler");
        let dir = ScratchDir::new("vhost-user");
        let share = dir.path().join("share");
        std::fs::create_dir(&share).expect("fuzz: mkdir share");
        std::fs::write(share.join("f"), b"some bytes").expect("fuzz: write f");
        let request = FsRequest {
            socket: Some(dir.path().join("unused-fs.sock")),
            shared_dir: Some(share.clone()),
            tag: Some("fuzz".into()),
            queues: Some(2),
            sandbox: Some("none".into()),
            dax_window: Some("8M".into()),
            ..FsRequest::default()
        };
        let config = request.validate(Origin::Cli).expect("fuzz: fs config");
        let dax = config.dax.clone().expect("fuzz: a window");
        let mapper = BackendMapper::new(SHMCAP_ID_CACHE, ACK_TIMEOUT);
        let extent = Arc::new(ExtentMapper::new(mapper.clone(), dax.map_extent));
        let ledger = Ledger::new(
            LedgerConfig::new(dax.window_size).with_wait_budget(ACK_TIMEOUT),
            extent,
        )
        .expect("fuzz: ledger");
        let session = WindowSession::new(Arc::new(ledger), mapper.clone());
        let fs = PassthroughFs::new(crate::fs::PassthroughConfig::new(&share))
            .expect("fuzz: PassthroughFs")
            .with_dax(DaxWindow::new(session.clone(), dax.policy));
        let fs = FsDevice::new(config, fs, Some(FsDax { session, mapper }));
        let pmem = PmemRequest {
            socket: Some(dir.path().join("unused-pmem.sock")),
            file: Some(dir.path().join("pmem.img")),
            size: Some("2M".into()),
            create: true,
            ..PmemRequest::default()
        }
        .validate(Origin::Cli)
        .expect("fuzz: pmem config");
        let pmem = PmemDevice::new(pmem, ACK_TIMEOUT, None).expect("fuzz: pmem device");
        Devices {
            _dir: dir,
            fs,
            pmem,
        }
    })
}

/// Sends the messages `data` describes on one connection: a first byte choosing the
/// device (bit 0: pmem), then per message a request byte (the vhost-user request code;
/// 0xff: a u32 code follows), a flags byte (bits 0-1 the version, bit 3 NEED_REPLY, the
/// rest as sent), a byte choosing the header's size (0: the payload's length, else a
/// lie), a byte choosing a descriptor to pass (1 an eventfd, 2 a 1 MiB memfd, whose memory
/// regions are then kept near it, past its end too, 3 a socket
/// whose peer never answers), a u16 payload length and the payload.
///
/// Checks: the connection ends once the frontend hangs up; the backend's bytes are whole
/// replies, each with the REPLY flag and version 1, its size the bytes that follow, and a
/// request code the frontend sent; the device then takes the next connection and tears
/// it down (the next input does).
///
/// # Panics
///
/// When an invariant breaks.
pub fn vhost_user(data: &[u8]) {
    let mut input = Input::new(data);
    let devices = devices();
    if input.u8() & 1 == 1 {
        let device = devices.pmem.clone();
        serve(PmemBackend::new(device.clone()), &mut input, || {
            device.disconnected();
        });
    } else {
        let device = devices.fs.clone();
        serve(FsBackend::new(device.clone()), &mut input, || {
            device.disconnected();
        });
    }
}

/// One connection to `backend`, as the daemon's listener serves it.
fn serve<B>(backend: B, input: &mut Input<'_>, on_disconnect: impl FnOnce())
where
    B: VhostUserBackend<Bitmap = (), Vring = VringRwLock>
        + ConnectionBackend
        + Clone
        + Send
        + Sync
        + 'static,
{
    let dir = ScratchDir::new("vu-conn");
    let path = dir.path().join("sock");
    let mut listener = Listener::new(&path, true).expect("fuzz: listener");
    let exit_events = backend.exit_events().clone();
    let memory = GuestMemoryAtomic::new(GuestMemoryMmap::new());
    let mut daemon =
        VhostUserDaemon::new("fuzz".into(), backend, memory).expect("fuzz: VhostUserDaemon");
    let stream = UnixStream::connect(&path).expect("fuzz: connect");
    daemon.start(&mut listener).expect("fuzz: accept");

    let mut sent = Vec::new();
    let mut held = Vec::new();
    while !input.is_empty() {
        let request = match input.u8() {
            0xff => input.u32(),
            code => u32::from(code),
        };
        let flags = u32::from(input.u8());
        let lie = input.u8();
        let fd_kind = input.u8();
        let len = usize::from(input.u16());
        let mut payload = input.take(len).to_vec();
        if fd_kind == 2 && MEMORY_REGION_REQUESTS.contains(&request) {
            near_memfd(&mut payload);
        }
        let size = match lie {
            0 => u32::try_from(payload.len()).unwrap_or(u32::MAX),
            0xff => u32::MAX,
            n => u32::from(n),
        };
        let mut message = Vec::with_capacity(12 + payload.len());
        message.extend_from_slice(&request.to_le_bytes());
        message.extend_from_slice(&flags.to_le_bytes());
        message.extend_from_slice(&size.to_le_bytes());
        message.extend_from_slice(&payload);
        sent.push(request);
        let fd: Option<Box<dyn AsRawFd>> = match fd_kind {
            1 => EventFd::new(0)
                .ok()
                .map(|e| Box::new(e) as Box<dyn AsRawFd>),
            2 => crate::sys::memfd("fuzz-vu", 0)
                .and_then(|f| f.set_len(MEMFD_SIZE).map(|()| f))
                .ok()
                .map(|f| Box::new(f) as Box<dyn AsRawFd>),
            3 => UnixStream::pair().ok().map(|(ours, theirs)| {
                held.push(ours);
                Box::new(theirs) as Box<dyn AsRawFd>
            }),
            _ => None,
        };
        let result = match &fd {
            Some(fd) => stream
                .send_with_fd(&message[..], fd.as_raw_fd())
                .map(|_| ())
                .map_err(std::io::Error::from),
            None => (&stream).write_all(&message),
        };
        if result.is_err() {
            break; // the backend ended the connection: its right
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    let mut replies = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("fuzz: read timeout");
    if let Err(e) = (&stream).read_to_end(&mut replies) {
        // ECONNRESET: the backend closed with our bytes unread. A timeout is a hang.
        assert!(
            e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut,
            "the backend did not end the connection after the frontend hung up"
        );
    }
    // The daemon's connection thread ends with the connection; its result is whatever
    // the hostile frontend caused.
    let _ = daemon.wait();
    on_disconnect();
    drop(daemon);
    exit_events.close_after_connection();
    check_replies(&replies, &sent);
}

/// Keeps the memory regions of a SET_MEM_TABLE or ADD_MEM_REG payload near the memfd sent
/// with it: within twice its size (`memory_size` and `mmap_offset` clamped; the other
/// fields as the fuzzer chose), so a region may reach up to 1 MiB past the file's end, as
/// a lying frontend's would, but is never so large that mmap just refuses it. An access
/// past the end faults; the SIGBUS guard the daemon installs (and [`devices`] too) must
/// turn that into the end of the connection, not of the process.
fn near_memfd(payload: &mut [u8]) {
    let mut at = 8;
    while let Some(region) = payload.get_mut(at..at + 32) {
        let field = |r: &[u8], i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&r[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let size = field(region, 8).min(2 * MEMFD_SIZE);
        let offset = field(region, 24).min(2 * MEMFD_SIZE - size);
        region[8..16].copy_from_slice(&size.to_le_bytes());
        region[24..32].copy_from_slice(&offset.to_le_bytes());
        at += 32;
    }
}

/// The backend's bytes are whole replies to requests that were sent.
fn check_replies(mut bytes: &[u8], sent: &[u32]) {
    while !bytes.is_empty() {
        assert!(bytes.len() >= 12, "a reply cut inside its header");
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let (request, flags, size) = (word(0), word(4), word(8));
        assert!(
            flags & REPLY != 0,
            "a reply without the REPLY flag: {flags:#x}"
        );
        assert_eq!(flags & VERSION_MASK, 1, "a reply of another version");
        assert!(
            sent.contains(&request),
            "a reply to request {request}, never sent"
        );
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        assert!(bytes.len() - 12 >= size, "a reply shorter than its size");
        bytes = &bytes[12 + size..];
    }
}
