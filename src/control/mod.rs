//! The DAX window's control socket: how a VMM holds pins on window ranges (VFIO/P2P DMA,
//! migration, snapshot) and looks at the ledger.
//!
//! `--control-socket PATH` binds a Unix stream socket that answers from the moment the
//! daemon starts, before any frontend connects. A client sends one JSON object per line
//! and gets one JSON object per line back, in order, for every line it sends (a line is at
//! most [`MAX_LINE`] bytes, without its newline).
//!
//! # Requests and answers
//!
//! ```text
//! {"op":"pin","offset":O,"len":L}          -> {"pin":ID}
//! {"op":"pin","offset":O,"len":L,"wait":true,"holder":"vfio0"}
//!                                          -> {"pin":ID}
//! {"op":"unpin","pin":ID}                  -> {"ok":true}
//! {"op":"stats"}                           -> {"stats":{"window_size":..,"chunk_size":..,
//!                                               "mapped_bytes":..,"live_pins":..,..}}
//! {"op":"mappings"}                        -> {"mappings":[{"window_offset":..,"len":..,
//!                                               "backing":..,"file_offset":..,
//!                                               "writable":..,"pins":..,"draining":..}]}
//! {"op":"pins"}                            -> {"pins":[{"pin":ID,"holder":"control:1",
//!                                               "window_offset":..,"len":..,
//!                                               "held_for_ms":..}]}
//! anything that fails                      -> {"error":"<reason>","errno":N}
//! ```
//!
//! * **pin** pins window bytes `O..O+L` ([`Ledger::pin`]): every chunk they touch must be
//!   mapped and no pinned byte may lie beyond its file's end. `"wait"` (default `false`)
//!   says what to do if a chunk is draining: fail at once with EBUSY, or wait for it within
//!   the ledger's budget. `"holder"` names the user of the pin; the ledger records it as
//!   `control:<connection>:<holder>` (`control:<connection>` without it), which is what a
//!   stuck unmap or truncate logs as holding its chunk. `ID` is the ledger's pin identity,
//!   unique for the life of the ledger (so for the server's too), the same number the
//!   ledger's logs print as `pin#ID`. Ledger refusals carry the ledger's reason and errno
//!   (EFAULT: not mapped or beyond end of file; EBUSY: draining or the wait ran out;
//!   EINVAL: outside the window or empty).
//! * **unpin** drops a pin taken on the *same connection*; an unknown pin, or one another
//!   connection holds, is ENOENT.
//! * **stats** answers every counter of [`LedgerStats`](crate::dax::LedgerStats) (`wait_time` as `wait_time_ns`),
//!   the window's `window_size`, `chunk_size`, `chunks` and `mapped_bytes`, and the socket's
//!   own `control_connections` and `control_pins`.
//! * **mappings** answers [`Ledger::mappings`], in window order; **pins** answers
//!   [`Ledger::pins`] (every pin of the ledger, not only the control socket's).
//! * A line that is not JSON, not an object, has an unknown `op`, a missing, ill-typed or
//!   unknown field, or is too long is answered with an EINVAL error line; the connection
//!   keeps working.
//!
//! # Pins belong to their connection
//!
//! Closing a connection — or the client dying, which closes it — unpins everything it
//! holds. A pinned chunk cannot be unmapped, remapped or truncated, so a VMM that died
//! holding pins would otherwise make every later REMOVEMAPPING, truncate or reset of those
//! chunks time out with EBUSY for as long as the daemon lives: one crashed client would
//! wedge the device for ever. Tying pins to the connection makes the kernel's close of the
//! socket the release, whatever way the client ends. A VMM that must keep a pin across a
//! reconnect must take it again on the new connection before closing the old one.
//!
//! # Threads and limits
//!
//! One thread accepts (polling a non-blocking listener every [`ACCEPT_POLL`], so shutdown
//! never waits on a blocked `accept`); each connection is served by a thread of its own,
//! at most [`MAX_CONNECTIONS`] at once. When all are taken, a new one takes the place of
//! the connection that has been idle longest, at least [`IDLE_EVICTABLE`], holding no pin
//! (it loses nothing but the socket, which it can open again); with none such it is
//! answered with one EAGAIN error line and closed. So clients that connect and go quiet
//! cannot lock the VMM out, and a VMM's pins are never taken from it. [`ControlServer::shutdown`] (also run on drop) stops accepting, shuts down every
//! connection's socket, unpins every pin the clients still hold, waits for the threads and
//! removes the socket file. A connection in the middle of a `"wait":true` pin finishes when
//! that wait does (bounded by the ledger's budget); the pin it gets is dropped at once.
//!
//! The socket is created with the process's umask, like the vhost-user socket: whoever may
//! connect may pin window chunks (and so delay unmaps up to the ledger's budget).

pub mod client;
mod conn;
mod protocol;
pub mod render;

pub use client::{ClientError, ControlClient};

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::dax::Ledger;
use crate::fuse::stats::QueueStats;

use conn::Conn;

/// The longest request line, in bytes, not counting its newline.
pub const MAX_LINE: usize = 4096;
/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection must have been idle, holding no pin, before a new connection may
/// take its place when all [`MAX_CONNECTIONS`] are taken.
pub const IDLE_EVICTABLE: Duration = Duration::from_secs(1);
/// Most pins one connection may hold; one more is refused (ENOSPC). A VMM pins ranges
/// it is transferring, not one pin per page.
pub const MAX_PINS_PER_CONNECTION: usize = 1024;
/// How often the accepting thread looks for new connections and for a shutdown.
pub const ACCEPT_POLL: Duration = Duration::from_millis(50);

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket could not be bound at `path`, because something already exists there
    /// (a stale socket of an earlier run must be removed by hand) or the bind failed.
    #[error("control socket {}: {source}", path.display())]
    Bind {
        /// Where it was to be bound.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The accepting thread could not be started.
    #[error("control socket {}: cannot start its thread: {source}", path.display())]
    Spawn {
        /// The socket's path.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
}

/// A device's control socket, held from start until the device closes it.
#[derive(Debug, Default)]
pub struct ControlSlot(Mutex<Option<ControlServer>>);

impl ControlSlot {
    /// Keeps `server` until [`ControlSlot::close`].
    pub fn attach(&self, server: ControlServer) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(server);
    }

    /// Shuts the socket down: its clients' pins go with their connections.
    pub fn close(&self) {
        let server = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut server) = server {
            server.shutdown();
        }
    }
}

/// Counters the control socket passes on as they come (a pmem device's flushes).
pub type JsonCounters = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// What a control socket reports on.
#[derive(Default)]
pub struct ControlSources {
    /// The ledger of the device's window (a pmem device's region is one), if it has one.
    pub ledger: Option<Arc<Ledger>>,
    /// The device's per-queue FUSE counters.
    pub fuse: Option<Arc<Vec<QueueStats>>>,
    /// A pmem device's flush and sync counters.
    pub pmem: Option<JsonCounters>,
}

impl fmt::Debug for ControlSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlSources")
            .field("ledger", &self.ledger.is_some())
            .field("fuse", &self.fuse.is_some())
            .field("pmem", &self.pmem.is_some())
            .finish()
    }
}

/// State shared by the server handle, the accepting thread and the connection threads.
struct Shared {
    ledger: Option<Arc<Ledger>>,
    fuse: Option<Arc<Vec<QueueStats>>>,
    pmem: Option<JsonCounters>,
    stop: AtomicBool,
    /// Connections being served (their threads may have just ended: reaped on accept).
    conns: Mutex<HashMap<u64, Entry>>,
    /// Connections whose thread has not finished serving.
    active: AtomicUsize,
}

/// A connection as the server sees it: enough to shut it down and wait for it.
struct Entry {
    conn: Arc<Conn>,
    /// A clone of the connection's socket, to shut it down from outside its thread.
    stream: UnixStream,
    /// `None` only while the accepting thread starts it (the entry is registered first, so
    /// that the connection's pins are counted from its first request).
    thread: Option<JoinHandle<()>>,
}

impl Shared {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connections served now, and the pins they hold.
    fn control_counts(&self) -> (usize, usize) {
        let pins = self.conns().values().map(|e| e.conn.pin_count()).sum();
        (self.active.load(Ordering::SeqCst), pins)
    }
}

/// A control socket bound but not served yet (see [`ControlServer::bind_socket`]).
#[derive(Debug)]
pub struct BoundControl {
    path: PathBuf,
    identity: Option<(u64, u64)>,
    /// Taken by [`BoundControl::serve`].
    listener: Option<UnixListener>,
}

impl BoundControl {
    /// Serves the socket for `sources` on threads of its own, from now until
    /// [`ControlServer::shutdown`] or drop.
    pub fn serve(mut self, sources: ControlSources) -> Result<ControlServer, ControlError> {
        let path = std::mem::take(&mut self.path);
        let listener = self.listener.take();
        let identity = self.identity.take();
        let mut server = ControlServer {
            path,
            identity,
            shared: Arc::new(Shared {
                ledger: sources.ledger,
                fuse: sources.fuse,
                pmem: sources.pmem,
                stop: AtomicBool::new(false),
                conns: Mutex::new(HashMap::new()),
                active: AtomicUsize::new(0),
            }),
            accept: None,
        };
        let Some(listener) = listener else {
            return Ok(server);
        };
        // From here, an error drops `server`, which removes the socket file.
        let shared = Arc::clone(&server.shared);
        let accept = thread::Builder::new()
            .name("dax-control".into())
            .spawn(move || accept_loop(listener, shared))
            .map_err(|source| ControlError::Spawn {
                path: server.path.clone(),
                source,
            })?;
        server.accept = Some(accept);
        log::info!("dax control: serving {}", server.path.display());
        Ok(server)
    }

    /// Where the socket is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// As [`ControlServer::leave_socket_file`], before serving.
    pub fn leave_socket_file(&mut self) {
        self.identity = None;
    }
}

impl Drop for BoundControl {
    /// A socket bound and never served: its file goes (if still the one bound).
    fn drop(&mut self) {
        if self.listener.is_none() {
            return;
        }
        let ours = match (self.path.symlink_metadata(), self.identity) {
            (Ok(m), Some(id)) => (m.dev(), m.ino()) == id,
            _ => false,
        };
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            log::warn!("dax control: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// The control socket of one DAX window, served on threads of its own.
pub struct ControlServer {
    path: PathBuf,
    /// `(st_dev, st_ino)` of the socket file we bound, so that shutdown removes only ours.
    identity: Option<(u64, u64)>,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .field("running", &self.accept.is_some())
            .field("connections", &self.shared.active.load(Ordering::SeqCst))
            .finish()
    }
}

impl ControlServer {
    /// Binds `path` (a Unix stream socket) and serves it for `ledger` on threads of its
    /// own, from now until [`shutdown`](Self::shutdown) or drop.
    ///
    /// Refuses, with an I/O error naming the path, if anything already exists at `path`
    /// (a stale socket of an earlier run included: it is never removed behind the user's
    /// back), or if the bind fails.
    pub fn bind(path: &Path, ledger: Arc<Ledger>) -> Result<ControlServer, ControlError> {
        ControlServer::bind_for(
            path,
            ControlSources {
                ledger: Some(ledger),
                ..ControlSources::default()
            },
        )
    }

    /// As [`bind`](Self::bind), for what a device has: a window's ledger (the pin,
    /// mappings and pins requests answer ENODEV without one) and FUSE counters.
    pub fn bind_for(path: &Path, sources: ControlSources) -> Result<ControlServer, ControlError> {
        ControlServer::bind_socket(path)?.serve(sources)
    }

    /// Binds `path` as [`bind`](Self::bind) does, without serving it yet: connections
    /// wait in the backlog until [`BoundControl::serve`] starts the thread that accepts
    /// them (the daemon binds every socket before it confines itself and drops its
    /// capabilities, and starts threads only after).
    pub fn bind_socket(path: &Path) -> Result<BoundControl, ControlError> {
        let bind_err = |source| ControlError::Bind {
            path: path.to_path_buf(),
            source,
        };
        if path.symlink_metadata().is_ok() {
            return Err(bind_err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "something already exists at this path (remove a stale socket by hand)",
            )));
        }
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        let identity = path.symlink_metadata().ok().map(|m| (m.dev(), m.ino()));
        let bound = BoundControl {
            path: path.to_path_buf(),
            identity,
            listener: Some(listener),
        };
        // From here, an error drops `bound`, which removes the socket file.
        if let Some(listener) = &bound.listener {
            listener.set_nonblocking(true).map_err(bind_err)?;
        }
        Ok(bound)
    }

    /// Leaves the socket file in place at shutdown, silently (the daemon says so once for
    /// every socket file): it has confined itself (chroot) and the path no longer names
    /// the file it bound.
    pub fn leave_socket_file(&mut self) {
        self.identity = None;
    }

    /// Where the socket is bound.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops serving: stops accepting, shuts down every connection, unpins every pin the
    /// clients still hold, waits for the threads and removes the socket file (if it is
    /// still the one bound). Idempotent; also run on drop.
    pub fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        if accept.join().is_err() {
            log::error!("dax control: the accepting thread panicked");
        }
        // No connection is added any more.
        let entries: Vec<Entry> = self.shared.conns().drain().map(|(_, e)| e).collect();
        let mut dropped = 0;
        for e in &entries {
            // Wakes the thread out of its read (EOF) or write (EPIPE).
            let _ = e.stream.shutdown(std::net::Shutdown::Both);
            dropped += e.conn.close();
        }
        for e in entries {
            if e.thread.is_some_and(|t| t.join().is_err()) {
                log::error!("dax control: connection {} thread panicked", e.conn.no);
            }
        }
        self.remove_socket();
        log::info!(
            "dax control: stopped serving {} ({dropped} client pin(s) dropped)",
            self.path.display()
        );
    }

    fn remove_socket(&self) {
        let ours = match (self.path.symlink_metadata(), self.identity) {
            (Ok(m), Some(id)) => (m.dev(), m.ino()) == id,
            _ => false,
        };
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            log::warn!("dax control: cannot remove {}: {e}", self.path.display());
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        if self.accept.is_some() {
            self.shutdown();
        } else {
            // A `bind` that failed after binding.
            self.remove_socket();
        }
    }
}

/// Accepts connections until the server stops.
fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    let mut next_no = 1u64;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let no = next_no;
                next_no += 1;
                admit(&shared, stream, no);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                reap(&shared);
                thread::sleep(ACCEPT_POLL);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and the like: keep serving the others, try again later.
                log::warn!("dax control: accept failed: {e}");
                thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// Joins the threads of connections that have ended.
fn reap(shared: &Shared) {
    let done: Vec<Entry> = {
        let mut conns = shared.conns();
        let ids: Vec<u64> = conns
            .iter()
            .filter(|(_, e)| e.thread.as_ref().is_some_and(JoinHandle::is_finished))
            .map(|(&id, _)| id)
            .collect();
        ids.iter().filter_map(|id| conns.remove(id)).collect()
    };
    for e in done {
        if let Some(t) = e.thread {
            let _ = t.join();
        }
    }
}

/// Shuts down the connection idle longest without pins (at least [`IDLE_EVICTABLE`]) to
/// make room for connection `no`. Whether there was one. Its thread ends on its own; until
/// it has, one connection more than [`MAX_CONNECTIONS`] may be counted.
fn make_room(shared: &Shared, no: u64) -> bool {
    let conns = shared.conns();
    let mut idle: Vec<(Duration, u64)> = conns
        .iter()
        .filter_map(|(&id, e)| Some((e.conn.idle_without_pins(IDLE_EVICTABLE)?, id)))
        .collect();
    idle.sort_unstable_by(|a, b| b.cmp(a));
    for (for_how_long, id) in idle {
        let entry = &conns[&id];
        if entry.conn.close_if_idle(IDLE_EVICTABLE) {
            let _ = entry.stream.shutdown(std::net::Shutdown::Both);
            log::info!(
                "dax control: connection {id} closed to make room for connection {no} \
                 (idle for {:.1} s, holding no pin; at most {MAX_CONNECTIONS} at once)",
                for_how_long.as_secs_f64()
            );
            return true;
        }
    }
    false
}

/// Starts serving a new connection, or refuses it with one error line.
fn admit(shared: &Arc<Shared>, stream: UnixStream, no: u64) {
    let refuse = |mut stream: UnixStream, reason: &str, errno: i32| {
        log::warn!("dax control: connection {no} refused: {reason}");
        let mut line = protocol::error(reason, errno).to_string().into_bytes();
        line.push(b'\n');
        let _ = stream.set_write_timeout(Some(ACCEPT_POLL));
        let _ = stream.write_all(&line);
    };
    if shared.active.load(Ordering::SeqCst) >= MAX_CONNECTIONS && !make_room(shared, no) {
        refuse(
            stream,
            &format!("too many control connections (at most {MAX_CONNECTIONS})"),
            libc::EAGAIN,
        );
        return;
    }
    let clones = stream
        .set_nonblocking(false)
        .and_then(|()| Ok((stream.try_clone()?, stream.try_clone()?)));
    let (writer, handle) = match clones {
        Ok(c) => c,
        Err(e) => {
            refuse(
                stream,
                &format!("cannot set up the connection: {e}"),
                libc::EIO,
            );
            return;
        }
    };
    let conn = Arc::new(Conn::new(no));
    let entry = Entry {
        conn: Arc::clone(&conn),
        stream: handle,
        thread: None,
    };
    shared.conns().insert(no, entry);
    shared.active.fetch_add(1, Ordering::SeqCst);
    let spawned = {
        let shared = Arc::clone(shared);
        thread::Builder::new()
            .name(format!("dax-control-{no}"))
            .spawn(move || conn::serve(shared, conn, stream, writer))
    };
    match spawned {
        Ok(thread) => {
            if let Some(e) = shared.conns().get_mut(&no) {
                e.thread = Some(thread);
            }
        }
        Err(e) => {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            if let Some(entry) = shared.conns().remove(&no) {
                refuse(
                    entry.stream,
                    &format!("cannot start a thread: {e}"),
                    libc::EAGAIN,
                );
            }
        }
    }
}

#[cfg(test)]
mod tests;
