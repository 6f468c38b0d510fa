//! The ledger's [`Mapper`] over the vhost-user backend channel: SHMEM_MAP and SHMEM_UNMAP
//! requests to the frontend, acknowledged with REPLY_ACK.
//!
//! Requests are sent from a thread of our own, never from inside the handling of a
//! frontend message (a frontend that serves the backend channel from the loop waiting for
//! that message's reply would deadlock), and every wait for an acknowledgement is bounded:
//! the `vhost` crate blocks without a timeout, so the blocking call runs on the channel
//! thread and the caller waits on it with a deadline. A frontend that does not answer in
//! time wedges the channel; later requests fail at once instead of piling up.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vhost::vhost_user::message::{VhostUserMMap, VhostUserMMapFlags};
use vhost::vhost_user::{Backend, VhostUserFrontendReqHandler};

use crate::dax::{FileOffset, FrontendLink, Mapper, MapperError, WindowOffset};

enum Request {
    Map {
        fd: OwnedFd,
        window_offset: WindowOffset,
        len: u64,
        file_offset: FileOffset,
        writable: bool,
    },
    Unmap {
        window_offset: u64,
        len: u64,
    },
}

struct Job {
    request: Request,
    reply: mpsc::SyncSender<io::Result<u64>>,
}

enum Channel {
    /// No frontend has given us a backend channel yet.
    Absent,
    /// Requests go to this thread.
    Attached(mpsc::Sender<Job>),
    /// The frontend did not acknowledge in time; the thread may be stuck for good.
    Wedged,
    /// The frontend disconnected: its address space, and every mapping in it, went away
    /// with the connection, so there is nothing left to unmap.
    Detached,
}

/// Sends SHMEM_MAP / SHMEM_UNMAP for one shared-memory region of one device.
pub struct BackendMapper {
    shmid: u8,
    ack_timeout: Duration,
    channel: Mutex<Channel>,
    /// What the current connection's frontend has mapped. A mapping made on an earlier
    /// connection went away with that frontend's address space: its unmap is done, and
    /// must not reach the new frontend (which would refuse it, or worse, unmap its own).
    live: Mutex<ConnectionMaps>,
}

#[derive(Default)]
struct ConnectionMaps {
    generation: u64,
    /// Device starts (SET_FEATURES) on this connection so far.
    starts: u64,
    /// What the frontend holds, with the start it was mapped in.
    ranges: HashMap<(u64, u64), u64>,
}

impl ConnectionMaps {
    /// Nothing is held any more, and a map in flight from before does not count.
    fn forget(&mut self) {
        self.generation += 1;
        self.ranges.clear();
    }
}

impl BackendMapper {
    /// A mapper for region `shmid` that waits at most `ack_timeout` for each acknowledgement.
    pub fn new(shmid: u8, ack_timeout: Duration) -> Arc<Self> {
        Arc::new(BackendMapper {
            shmid,
            ack_timeout,
            channel: Mutex::new(Channel::Absent),
            live: Mutex::new(ConnectionMaps::default()),
        })
    }

    /// Starts serving requests over a new connection's backend channel.
    pub fn attach(&self, backend: Backend) -> io::Result<()> {
        let (tx, rx) = mpsc::channel::<Job>();
        let shmid = self.shmid;
        std::thread::Builder::new()
            .name("backend-channel".into())
            .spawn(move || {
                for job in rx {
                    let result = send(&backend, shmid, job.request);
                    // The caller may have given up waiting; that is its business.
                    let _ = job.reply.send(result);
                }
            })?;
        // A second channel of the same connection keeps what its frontend has mapped; a
        // new connection follows a detach, which forgot it.
        *self.lock() = Channel::Attached(tx);
        Ok(())
    }

    /// The connection is gone: later unmaps succeed trivially, maps fail, and what the
    /// frontend had mapped is forgotten (it went with its address space).
    pub fn detach(&self) {
        let mut channel = self.lock();
        self.maps().forget();
        *channel = Channel::Detached;
    }

    /// The frontend (re)started the device. A frontend may drop every mapping of a device
    /// it resets (QEMU 11.1 does, without telling us): an unmap of a range mapped before
    /// this start that the frontend refuses is taken as already done.
    pub fn device_started(&self) {
        self.maps().starts += 1;
    }

    /// The frontend dropped every mapping of the region itself (QEMU does on device
    /// reset): they are forgotten, so no unmap of them is sent, and the channel stays.
    pub fn frontend_dropped_all(&self) {
        let mut live = self.maps();
        if !live.ranges.is_empty() {
            log::debug!(
                "region {}: {} mapping(s) dropped by the frontend",
                self.shmid,
                live.ranges.len()
            );
        }
        live.forget();
    }

    fn maps(&self) -> std::sync::MutexGuard<'_, ConnectionMaps> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a backend channel is attached and usable.
    pub fn is_attached(&self) -> bool {
        matches!(*self.lock(), Channel::Attached(_))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Channel> {
        self.channel.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `request` and waits for its acknowledgement; returns the connection
    /// generation it was sent on.
    fn call(&self, request: Request) -> Result<u64, MapperError> {
        let (sender, generation) = {
            let channel = self.lock();
            let sender = match &*channel {
                Channel::Attached(tx) => tx.clone(),
                Channel::Absent => return Err(MapperError::Disconnected),
                Channel::Detached => return Err(MapperError::Disconnected),
                Channel::Wedged => return Err(MapperError::Timeout),
            };
            (sender, self.maps().generation)
        };
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        sender
            .send(Job {
                request,
                reply: reply_tx,
            })
            .map_err(|_| MapperError::Disconnected)?;
        match reply_rx.recv_timeout(self.ack_timeout) {
            Ok(Ok(_)) => Ok(generation),
            Ok(Err(e)) => Err(classify(e)),
            Err(RecvTimeoutError::Timeout) => {
                log::error!(
                    "frontend did not acknowledge a shared-memory request within {:?}; \
                     backend channel considered wedged",
                    self.ack_timeout
                );
                *self.lock() = Channel::Wedged;
                Err(MapperError::Timeout)
            }
            Err(RecvTimeoutError::Disconnected) => Err(MapperError::Disconnected),
        }
    }
}

fn send(backend: &Backend, shmid: u8, request: Request) -> io::Result<u64> {
    match request {
        Request::Map {
            fd,
            window_offset,
            len,
            file_offset,
            writable,
        } => {
            let flags = if writable {
                VhostUserMMapFlags::WRITABLE
            } else {
                VhostUserMMapFlags::empty()
            };
            let msg = VhostUserMMap {
                shmid,
                padding: [0; 7],
                // The wire format's raw offsets: converted here and nowhere else.
                fd_offset: file_offset.raw(),
                shm_offset: window_offset.raw(),
                len,
                flags: flags.bits(),
            };
            backend.shmem_map(&msg, &fd.as_raw_fd())
        }
        Request::Unmap { window_offset, len } => {
            let msg = VhostUserMMap {
                shmid,
                shm_offset: window_offset,
                len,
                ..Default::default()
            };
            backend.shmem_unmap(&msg)
        }
    }
}

/// Sorts a failed request into what the ledger needs to know.
fn classify(error: io::Error) -> MapperError {
    let inner = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<vhost::vhost_user::Error>());
    match inner {
        Some(vhost::vhost_user::Error::FrontendInternalError) => MapperError::Refused {
            reason: "the frontend answered with an error".into(),
        },
        Some(
            vhost::vhost_user::Error::SocketBroken(_)
            | vhost::vhost_user::Error::Disconnected
            | vhost::vhost_user::Error::PartialMessage
            | vhost::vhost_user::Error::SocketError(_),
        ) => MapperError::Disconnected,
        // vhost refuses before sending when SHMEM was not negotiated; it says so in text only.
        _ if error.to_string().contains("not negotiated") => MapperError::Unsupported {
            reason: "the frontend did not negotiate the SHMEM protocol feature".into(),
        },
        _ => MapperError::Io(error),
    }
}

impl Mapper for BackendMapper {
    fn map(
        &self,
        window_offset: WindowOffset,
        len: u64,
        file: BorrowedFd<'_>,
        file_offset: FileOffset,
        writable: bool,
    ) -> Result<(), MapperError> {
        let fd = file.try_clone_to_owned().map_err(MapperError::Io)?;
        let generation = self.call(Request::Map {
            fd,
            window_offset,
            len,
            file_offset,
            writable,
        })?;
        let mut live = self.maps();
        if live.generation == generation {
            let start = live.starts;
            live.ranges.insert((window_offset.raw(), len), start);
        }
        Ok(())
    }

    fn unmap(&self, window_offset: u64, len: u64) -> Result<(), MapperError> {
        if matches!(*self.lock(), Channel::Detached) {
            log::debug!(
                "region {}: [{window_offset:#x}+{len:#x}] ended with the frontend's connection",
                self.shmid
            );
            return Ok(());
        }
        let mapped_in = self.maps().ranges.get(&(window_offset, len)).copied();
        let Some(mapped_in) = mapped_in else {
            log::debug!(
                "region {}: [{window_offset:#x}+{len:#x}] was mapped by an earlier frontend; \
                 it ended with that connection",
                self.shmid
            );
            return Ok(());
        };
        match self.call(Request::Unmap { window_offset, len }) {
            Ok(_) => {}
            Err(MapperError::Refused { reason }) if mapped_in < self.maps().starts => {
                log::debug!(
                    "region {}: [{window_offset:#x}+{len:#x}] was mapped before the device \
                     restarted and the frontend no longer has it ({reason})",
                    self.shmid
                );
            }
            Err(e) => return Err(e),
        }
        self.maps().ranges.remove(&(window_offset, len));
        Ok(())
    }
}

impl FrontendLink for BackendMapper {
    fn device_started(&self) {
        BackendMapper::device_started(self);
    }

    fn frontend_dropped_all(&self) {
        BackendMapper::frontend_dropped_all(self);
    }

    fn detach(&self) {
        BackendMapper::detach(self);
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;
    use std::os::fd::{AsFd, BorrowedFd};
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use vhost::vhost_user::{Backend, FrontendReqHandler};

    use super::*;
    use crate::frontend::ShmemWindows;

    const MIB2: u64 = 2 << 20;

    /// Our frontend's windows behind a real backend channel, served on a thread.
    fn channel(sizes: &[u64]) -> (Arc<ShmemWindows>, Backend) {
        let windows = Arc::new(ShmemWindows::new(sizes).unwrap());
        let mut handler = FrontendReqHandler::new(windows.clone()).unwrap();
        handler.set_reply_ack_flag(true);
        // SAFETY: the handler keeps the peer socket open for as long as this borrow
        // lasts; we only duplicate it.
        let tx = unsafe { BorrowedFd::borrow_raw(handler.get_tx_raw_fd()) }
            .try_clone_to_owned()
            .unwrap();
        // A refused request was answered; the channel goes on until it closes.
        std::thread::spawn(move || {
            while let Ok(_) | Err(vhost::vhost_user::Error::ReqHandlerError(_)) =
                handler.handle_request()
            {}
        });
        let backend = Backend::from_stream(UnixStream::from(tx));
        backend.set_reply_ack_flag(true);
        backend.set_shmem_flag(true);
        (windows, backend)
    }

    fn file(len: usize) -> File {
        let path = std::env::temp_dir().join(format!(
            "vhost-dax-backend-mapper-{}-{len}",
            std::process::id()
        ));
        let mut f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f.write_all(&vec![0x5a; len]).unwrap();
        f
    }

    #[test]
    fn maps_and_unmaps_carry_the_region_id() {
        let (windows, backend) = channel(&[MIB2, 2 * MIB2]);
        let mapper = BackendMapper::new(1, Duration::from_secs(5));
        mapper.attach(backend).unwrap();
        let f = file(4096);
        mapper
            .map(WindowOffset(MIB2), 4096, f.as_fd(), FileOffset(0), true)
            .unwrap();
        let live = windows.live();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].shmid, 1, "the region asked for, not region 0");
        assert_eq!(live[0].offset, MIB2);
        mapper.unmap(MIB2, 4096).unwrap();
        assert!(windows.live().is_empty());
    }

    #[test]
    fn a_mapping_the_frontend_dropped_is_never_unmapped_again() {
        let (windows, backend) = channel(&[MIB2]);
        let mapper = BackendMapper::new(0, Duration::from_secs(5));
        mapper.attach(backend).unwrap();
        let f = file(4096);

        // Dropped at a reset the device was told of: no unmap is sent at all.
        mapper
            .map(WindowOffset(0), 4096, f.as_fd(), FileOffset(0), false)
            .unwrap();
        windows.drop_all().unwrap();
        mapper.frontend_dropped_all();
        mapper.unmap(0, 4096).unwrap();
        assert_eq!(windows.stats().refused, 0);

        // Dropped without a word, then the device restarted: the frontend's refusal of
        // the unmap counts as done.
        mapper
            .map(WindowOffset(0), 4096, f.as_fd(), FileOffset(0), false)
            .unwrap();
        windows.drop_all().unwrap();
        mapper.device_started();
        mapper.unmap(0, 4096).unwrap();
        assert_eq!(windows.stats().refused, 1);

        // With no restart in between, a refused unmap is an error: the mapping may live.
        mapper
            .map(WindowOffset(0), 4096, f.as_fd(), FileOffset(0), false)
            .unwrap();
        windows.drop_all().unwrap();
        assert!(matches!(
            mapper.unmap(0, 4096),
            Err(MapperError::Refused { .. })
        ));
    }

    #[test]
    fn a_frontend_that_never_answers_wedges_the_channel_within_the_timeout() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let backend = Backend::from_stream(ours);
        backend.set_reply_ack_flag(true);
        backend.set_shmem_flag(true);
        let mapper = BackendMapper::new(0, Duration::from_millis(100));
        mapper.attach(backend).unwrap();
        let f = file(4096);
        let start = Instant::now();
        assert!(matches!(
            mapper.map(WindowOffset(0), 4096, f.as_fd(), FileOffset(0), false),
            Err(MapperError::Timeout)
        ));
        assert!(start.elapsed() < Duration::from_secs(5));
        // Later requests fail at once instead of piling up behind the stuck one.
        assert!(matches!(
            mapper.map(WindowOffset(MIB2), 4096, f.as_fd(), FileOffset(0), false),
            Err(MapperError::Timeout)
        ));
        assert!(!mapper.is_attached());
        drop(theirs);
    }

    #[test]
    fn without_a_channel_or_after_a_disconnect_maps_fail_and_unmaps_are_done() {
        let mapper = BackendMapper::new(0, Duration::from_secs(1));
        let f = file(4096);
        assert!(matches!(
            mapper.map(WindowOffset(0), 4096, f.as_fd(), FileOffset(0), false),
            Err(MapperError::Disconnected)
        ));
        let (windows, backend) = channel(&[MIB2]);
        mapper.attach(backend).unwrap();
        mapper
            .map(WindowOffset(0), 4096, f.as_fd(), FileOffset(0), false)
            .unwrap();
        mapper.detach();
        mapper.unmap(0, 4096).unwrap();
        assert_eq!(
            windows.stats().unmaps,
            0,
            "nothing sent after the disconnect"
        );
    }
}
