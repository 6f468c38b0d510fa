//! The daemon: one listener and serving thread per device, one frontend at a time per
//! device, and an orderly shutdown on SIGINT/SIGTERM.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringRwLock};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::config::{DaemonConfig, DaxConfig, FsConfig, Sandbox, SocketGroup, SocketSpec};
use crate::control::{ControlServer, ControlSources};
use crate::dax::{ExtentMapper, Ledger, LedgerConfig, WindowSession};
use crate::device::ConnectionBackend;
use crate::device::backend_mapper::BackendMapper;
use crate::device::flush::SyncObserver;
use crate::device::fs::{FsBackend, FsDax, FsDevice, SHMCAP_ID_CACHE};
use crate::device::pmem::{PmemBackend, PmemDevice};
use crate::device::sync_gate::{SYNC_GATE_ENV, SocketSyncGate};
use crate::fs::{DaxWindow, PassthroughConfig, PassthroughFs};
use crate::sys;

/// How long a frontend may take to acknowledge a SHMEM_MAP/UNMAP.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Failures after configuration was accepted.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Setting up a device failed.
    #[error("{device}: {source}")]
    Device {
        /// Which device (its socket or file).
        device: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The shared directory could not be opened.
    #[error("{device}: {source}")]
    Filesystem {
        /// The shared directory.
        device: String,
        /// Why.
        #[source]
        source: crate::fs::FsError,
    },
    /// The DAX window's ledger could not be built.
    #[error("{device}: DAX ledger: {source}")]
    Ledger {
        /// Which device.
        device: String,
        /// Why.
        #[source]
        source: crate::dax::LedgerError,
    },
    /// The control socket could not be bound.
    #[error("{device}: {source}")]
    Control {
        /// The control socket.
        device: String,
        /// Why.
        #[source]
        source: crate::control::ControlError,
    },
    /// Confining the process failed.
    #[error("sandbox: {0}")]
    Sandbox(std::io::Error),
    /// Signal handling could not be set up.
    #[error("signals: {0}")]
    Signals(std::io::Error),
    /// The daemon in the namespace sandbox ended badly (its own error was logged by it).
    #[error("the sandboxed daemon {0}")]
    Sandboxed(SandboxedEnd),
}

/// How a daemon in the namespace sandbox ended, as its supervisor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxedEnd(sys::namespace::ChildEnd);

impl std::fmt::Display for SandboxedEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            sys::namespace::ChildEnd::Exited(code) => write!(f, "exited with status {code}"),
            sys::namespace::ChildEnd::Signalled(sig) => write!(f, "was killed by signal {sig}"),
        }
    }
}

fn device_error(device: &Path, source: std::io::Error) -> DaemonError {
    DaemonError::Device {
        device: device.display().to_string(),
        source,
    }
}

/// A socket file the daemon must remove on exit, reachable even after a chroot.
struct SocketFile {
    dir: OwnedFd,
    name: CString,
    path: PathBuf,
}

impl SocketFile {
    fn new(path: &Path) -> std::io::Result<Self> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = std::fs::File::open(parent)?.into();
        let name = CString::new(path.file_name().unwrap_or_default().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(SocketFile {
            dir,
            name,
            path: path.to_path_buf(),
        })
    }

    fn remove(&self) {
        match sys::fs::unlinkat(self.dir.as_fd(), &self.name, 0).map_err(std::io::Error::from) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove {}: {e}", self.path.display()),
        }
    }
}

/// A device the shutdown path must quiesce.
trait Service: Send + Sync {
    fn shutdown(&self);
    /// The daemon is exiting after its frontends left: close what outlives a connection.
    fn close(&self) {}
}

impl Service for PmemDevice {
    fn shutdown(&self) {
        PmemDevice::shutdown(self);
    }
    fn close(&self) {
        self.close_control();
    }
}

impl Service for FsDevice {
    fn shutdown(&self) {
        FsDevice::shutdown(self);
    }
    fn close(&self) {
        self.close_control();
    }
}

/// What the exit path quiesces, and the socket files it removes afterwards.
type Closing = (Arc<dyn Service>, Vec<Arc<SocketFile>>);

/// What the main thread waits for: a termination signal, or the end of a device's loop.
enum Event {
    /// SIGINT or SIGTERM (the number) arrived.
    Signal(i32),
    /// One device's serving thread ended (returned or panicked).
    DeviceEnded,
}

/// Held by a serving thread: tells the main thread when that thread ends, however it
/// ends (dropped on return and while unwinding from a panic alike).
struct EndNotice(mpsc::Sender<Event>);

impl Drop for EndNotice {
    fn drop(&mut self) {
        // The main thread may have stopped listening (it is shutting down): nothing to tell.
        let _ = self.0.send(Event::DeviceEnded);
    }
}

/// One device's socket, served one frontend at a time.
struct ServeLoop {
    name: String,
    reconnect: bool,
    listener: Listener,
    /// The socket file to remove at the end; none for a socket inherited from the parent.
    socket: Option<Arc<SocketFile>>,
}

type Starter =
    Box<dyn FnOnce(ServeLoop, EndNotice) -> std::io::Result<JoinHandle<Result<(), DaemonError>>>>;

/// A device ready to be served: its loop, its shutdown face, and how to start it.
struct Prepared {
    serve: ServeLoop,
    service: Arc<dyn Service>,
    /// Other socket files the device listens on (the DAX control socket).
    extra_sockets: Vec<Arc<SocketFile>>,
    start: Starter,
}

/// Serves every device of `config` until each frontend is gone (or for ever with
/// `reconnect`), or until SIGINT/SIGTERM.
pub fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    // Before any thread exists, so every thread inherits the mask and only the signal
    // thread takes the signals.
    sys::block_termination_signals().map_err(DaemonError::Signals)?;
    // The pid namespace needs a fork, which is only sound while this is the one thread.
    if config.fs.iter().any(|fs| fs.sandbox == Sandbox::Namespace) {
        use sys::namespace::{ChildEnd, Forked};
        match sys::namespace::fork_into_namespaces().map_err(DaemonError::Sandbox)? {
            Forked::Supervisor { child } => {
                log::info!(
                    "sandbox: the daemon runs as pid {child} in new pid, mount and network namespaces"
                );
                let end = sys::namespace::supervise(child).map_err(DaemonError::Sandbox)?;
                remove_socket_files(&config);
                return match end {
                    ChildEnd::Exited(0) => Ok(()),
                    end => Err(DaemonError::Sandboxed(SandboxedEnd(end))),
                };
            }
            Forked::Sandboxed => {}
        }
    }
    // A frontend that shrinks its memory under a request must not end the process: faults
    // in guest memory are repaired and end only that connection (device::guest_memory).
    if let Err(e) = sys::sigbus::install() {
        log::warn!(
            "{e}: a frontend that shrinks unsealed guest memory under a request ends the process"
        );
    }
    let observer = sync_observer()?;
    let mut devices: Vec<Prepared> = Vec::new();
    let mut sandbox: Option<(Sandbox, PathBuf)> = None;

    // The passthrough file system sets the umask to 0 (the guest's modes arrive masked);
    // sockets are created with the operator's.
    let umask = crate::sys::fs::umask(0o022);
    crate::sys::fs::umask(umask);
    for pmem in config.pmem {
        let device = PmemDevice::new(pmem.clone(), ACK_TIMEOUT, observer.clone())
            .map_err(|e| device_error(&pmem.file, e))?;
        // The control socket before the vhost-user socket, as for fs: a VMM may pin the
        // region before it connects.
        let mut extra_sockets = Vec::new();
        if let Some(path) = &pmem.control_socket {
            let counters = Arc::downgrade(&device);
            let sources = ControlSources {
                ledger: Some(device.ledger().clone()),
                pmem: Some(Arc::new(move || {
                    counters
                        .upgrade()
                        .map(|d| serde_json::json!(d.flush_stats()))
                        .unwrap_or_default()
                })),
                ..ControlSources::default()
            };
            device.attach_control(bind_control(path, sources, umask)?);
            extra_sockets.push(Arc::new(
                SocketFile::new(path).map_err(|e| device_error(path, e))?,
            ));
            log::info!("pmem: control socket on {}", path.display());
        }
        let (listener, socket) = listen(&pmem.socket, pmem.socket_group.as_ref(), umask)?;
        log::info!(
            "pmem: serving {} ({} bytes{}) on {}",
            pmem.file.display(),
            pmem.size,
            if pmem.readonly { ", read-only" } else { "" },
            pmem.socket.display()
        );
        let dev = device.clone();
        devices.push(Prepared {
            serve: ServeLoop {
                name: format!("pmem {}", pmem.socket.display()),
                reconnect: pmem.reconnect,
                listener,
                socket: Some(socket),
            },
            service: device,
            extra_sockets,
            start: Box::new(move |serve, notice| {
                let on_disconnect = dev.clone();
                spawn_server(
                    serve,
                    notice,
                    move || PmemBackend::new(dev.clone()),
                    move || on_disconnect.disconnected(),
                )
            }),
        });
    }
    for fs in config.fs {
        // The ledger and its control socket first: the control socket answers as soon as
        // the vhost-user socket exists (a VMM may pin before it connects).
        let mut dax = None;
        let mut control = None;
        let mut extra_sockets = Vec::new();
        let stats = FsDevice::new_stats(fs.queues);
        if let Some(config) = &fs.dax {
            let (window, parts) = dax_window(config).map_err(|source| DaemonError::Ledger {
                device: fs.socket.to_string(),
                source,
            })?;
            log::info!(
                "fs: DAX window of {} (policy {}, pins waited out for at most {:?})",
                crate::config::format_size(config.window_size),
                config.policy,
                config.pin_wait_budget
            );
            dax = Some((window, parts));
        }
        if let Some(path) = &fs.control_socket {
            let sources = ControlSources {
                ledger: dax
                    .as_ref()
                    .map(|(_, parts)| parts.session.ledger().clone()),
                fuse: Some(stats.clone()),
                pmem: None,
            };
            control = Some(bind_control(path, sources, umask)?);
            extra_sockets.push(Arc::new(
                SocketFile::new(path).map_err(|e| device_error(path, e))?,
            ));
            log::info!("fs: control socket on {}", path.display());
        }
        let (listener, socket) = listen_fs(&fs.socket, fs.socket_group.as_ref(), umask)?;
        let filesystem = PassthroughFs::new(passthrough_config(&fs)).map_err(|source| {
            DaemonError::Filesystem {
                device: fs.shared_dir.display().to_string(),
                source,
            }
        })?;
        let (filesystem, parts) = match dax {
            Some((window, parts)) => (filesystem.with_dax(window), Some(parts)),
            None => (filesystem, None),
        };
        let device = FsDevice::with_stats(fs.clone(), filesystem, parts, stats);
        if device.pool_workers() > 0 {
            log::info!(
                "fs: {} pool worker(s) serve the request queues (--thread-pool-size)",
                device.pool_workers()
            );
        }
        if let Some(server) = control {
            device.attach_control(server);
        }
        log::info!(
            "fs: sharing {} as {} ({} request queue(s), cache {}{}) on {}",
            fs.shared_dir.display(),
            match &fs.tag {
                Some(tag) => format!("tag \"{tag}\""),
                None => "the tag the VMM sets".into(),
            },
            fs.queues,
            fs.cache,
            if fs.readonly { ", read-only" } else { "" },
            fs.socket
        );
        if fs.sandbox != Sandbox::None {
            sandbox = Some((fs.sandbox, fs.shared_dir.clone()));
        }
        let dev = device.clone();
        devices.push(Prepared {
            serve: ServeLoop {
                name: format!("fs {}", fs.socket),
                reconnect: fs.reconnect,
                listener,
                socket,
            },
            service: device,
            extra_sockets,
            start: Box::new(move |serve, notice| {
                let on_disconnect = dev.clone();
                spawn_server(
                    serve,
                    notice,
                    move || FsBackend::new(dev.clone()),
                    move || on_disconnect.disconnected(),
                )
            }),
        });
    }
    if let Some((kind, dir)) = sandbox {
        enter_sandbox(kind, &dir)?;
    }

    let shutdown: Vec<Closing> = devices
        .iter()
        .map(|d| {
            let mut sockets: Vec<Arc<SocketFile>> = d.serve.socket.iter().cloned().collect();
            sockets.extend(d.extra_sockets.iter().cloned());
            (d.service.clone(), sockets)
        })
        .collect();
    let (events, wait) = mpsc::channel();
    let mut handles = Vec::new();
    for Prepared { serve, start, .. } in devices {
        let name = serve.name.clone();
        let notice = EndNotice(events.clone());
        handles.push(start(serve, notice).map_err(|source| DaemonError::Device {
            device: name,
            source,
        })?);
    }
    spawn_signal_thread(events)?;

    // Wait for every device's loop to end, unless a signal comes first: then quiesce the
    // devices and return, and the process exits with the serving threads still parked.
    let mut running = handles.len();
    while running > 0 {
        match wait.recv() {
            Ok(Event::DeviceEnded) => running -= 1,
            Ok(Event::Signal(signal)) => {
                shut_down(signal, &shutdown);
                return Ok(());
            }
            // Every sender is gone, so every serving thread has ended.
            Err(mpsc::RecvError) => break,
        }
    }
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                log::error!("{e}");
                first_error.get_or_insert(e);
            }
            Err(_) => log::error!("a device thread panicked"),
        }
    }
    for (service, sockets) in &shutdown {
        service.close();
        sockets.iter().for_each(|s| s.remove());
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs `f` with the process umask set to `umask`.
fn with_umask<T>(umask: u32, f: impl FnOnce() -> T) -> T {
    let previous = crate::sys::fs::umask(umask);
    let result = f();
    crate::sys::fs::umask(previous);
    result
}

/// Creates the socket file `socket` and listens on it. With a group, the file is
/// created owner-only, then given to the group with mode 0660 (virtiofsd's
/// `--socket-group`), so it is never reachable by more than that.
fn listen(
    socket: &Path,
    group: Option<&SocketGroup>,
    umask: u32,
) -> Result<(Listener, Arc<SocketFile>), DaemonError> {
    let mask = if group.is_some() {
        umask | 0o177
    } else {
        umask
    };
    let listener = with_umask(mask, || Listener::new(socket, true))
        .map_err(|e| device_error(socket, std::io::Error::other(e)))?;
    if let Some(group) = group {
        sys::socket::share_socket_with_group(socket, group.gid).map_err(|e| {
            device_error(
                socket,
                std::io::Error::new(e.kind(), format!("socket group {}: {e}", group.name)),
            )
        })?;
    }
    let file = SocketFile::new(socket).map_err(|e| device_error(socket, e))?;
    Ok((listener, Arc::new(file)))
}

/// The fs device's listener: a socket file it creates, or the listening socket the
/// parent passed down (never unlinked: the daemon did not create it).
fn listen_fs(
    socket: &SocketSpec,
    group: Option<&SocketGroup>,
    umask: u32,
) -> Result<(Listener, Option<Arc<SocketFile>>), DaemonError> {
    match socket {
        SocketSpec::Path(path) => {
            listen(path, group, umask).map(|(listener, file)| (listener, Some(file)))
        }
        SocketSpec::InheritedFd(fd) => {
            // SAFETY: validation found `fd` open and listening; it came from the parent
            // and is taken here once, for the one device configured with it (a config
            // file cannot name a descriptor).
            let listener = unsafe { sys::socket::take_inherited_listener(*fd) }.map_err(|e| {
                DaemonError::Device {
                    device: socket.to_string(),
                    source: e,
                }
            })?;
            Ok((Listener::from(listener), None))
        }
    }
}

/// The ledger of a DAX window, mapping through the frontend's SHMEM_MAP / SHMEM_UNMAP.
fn dax_window(dax: &DaxConfig) -> Result<(DaxWindow, FsDax), crate::dax::LedgerError> {
    let mapper = BackendMapper::new(SHMCAP_ID_CACHE, ACK_TIMEOUT);
    let extent = Arc::new(ExtentMapper::new(mapper.clone(), dax.map_extent));
    let config = LedgerConfig::new(dax.window_size).with_wait_budget(dax.pin_wait_budget);
    let ledger = Arc::new(Ledger::new(config, extent.clone())?);
    let session = WindowSession::new(ledger, mapper.clone());
    let window = DaxWindow::new(session.clone(), dax.policy);
    Ok((window, FsDax { session, mapper }))
}

/// Binds the DAX control socket, replacing a stale one (validation refused a live one).
fn bind_control(
    path: &Path,
    sources: ControlSources,
    umask: u32,
) -> Result<ControlServer, DaemonError> {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
        && std::os::unix::net::UnixStream::connect(path).is_err()
    {
        std::fs::remove_file(path).map_err(|e| device_error(path, e))?;
    }
    with_umask(umask, || ControlServer::bind_for(path, sources)).map_err(|source| {
        DaemonError::Control {
            device: path.display().to_string(),
            source,
        }
    })
}

fn passthrough_config(fs: &FsConfig) -> PassthroughConfig {
    let mut config = PassthroughConfig::new(&fs.shared_dir);
    config.cache = fs.cache;
    config.readonly = fs.readonly;
    config.xattr = fs.xattr;
    config.writeback = fs.writeback;
    config.allow_device_nodes = fs.allow_devices;
    config.killpriv_v2 = fs.killpriv_v2;
    config.readdirplus = fs.readdirplus;
    config.inode_file_handles = fs.inode_file_handles;
    config.max_inodes = fs.max_inodes;
    config.max_open_handles = fs.max_open_handles;
    config
}

/// Confines the whole process to `dir`. Everything the daemon needs outside it (the
/// shared directory's fd, /proc/self/fd, the socket directories) is already open.
fn enter_sandbox(kind: Sandbox, dir: &Path) -> Result<(), DaemonError> {
    match kind {
        // Already in its own namespaces (see `run`): the share becomes the root.
        Sandbox::Namespace => sys::namespace::pivot_root_into(dir),
        _ => sys::chroot_into(dir),
    }
    .map_err(DaemonError::Sandbox)?;
    log::info!("sandbox: confined to {} ({kind})", dir.display());
    Ok(())
}

/// The supervisor's clean-up after a daemon in the namespace sandbox ended: the socket
/// files it created are outside its root, so it could not remove them itself.
fn remove_socket_files(config: &DaemonConfig) {
    let paths = config.fs.iter().flat_map(|fs| {
        let socket = match &fs.socket {
            SocketSpec::Path(path) => Some(path.clone()),
            SocketSpec::InheritedFd(_) => None,
        };
        socket.into_iter().chain(fs.control_socket.clone())
    });
    for path in paths {
        match std::fs::symlink_metadata(&path) {
            Ok(md) if md.file_type().is_socket() => {
                if let Err(e) = std::fs::remove_file(&path) {
                    log::warn!("cannot remove {}: {e}", path.display());
                }
            }
            _ => {}
        }
    }
}

fn sync_observer() -> Result<Option<Arc<dyn SyncObserver>>, DaemonError> {
    let Some(path) = std::env::var_os(SYNC_GATE_ENV) else {
        return Ok(None);
    };
    log::warn!("test hook {SYNC_GATE_ENV} is set: every pmem sync waits for the test");
    let gate =
        SocketSyncGate::connect(path.as_ref()).map_err(|e| device_error(Path::new(&path), e))?;
    Ok(Some(Arc::new(gate)))
}

fn spawn_server<B, F, D>(
    serve: ServeLoop,
    notice: EndNotice,
    make_backend: F,
    on_disconnect: D,
) -> std::io::Result<JoinHandle<Result<(), DaemonError>>>
where
    B: VhostUserBackend<Bitmap = (), Vring = VringRwLock>
        + ConnectionBackend
        + Clone
        + Send
        + Sync
        + 'static,
    F: Fn() -> B + Send + 'static,
    D: Fn() + Send + 'static,
{
    std::thread::Builder::new()
        .name("listener".into())
        .spawn(move || {
            let _notice = notice;
            serve_loop(serve, make_backend, on_disconnect)
        })
}

/// The first wait after a connection could not be set up; it doubles while they fail.
const SETUP_RETRY_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between attempts.
const SETUP_RETRY_MAX: Duration = Duration::from_secs(2);

fn serve_loop<B, F, D>(
    mut serve: ServeLoop,
    make_backend: F,
    on_disconnect: D,
) -> Result<(), DaemonError>
where
    B: VhostUserBackend<Bitmap = (), Vring = VringRwLock>
        + ConnectionBackend
        + Clone
        + Send
        + Sync
        + 'static,
    F: Fn() -> B,
    D: Fn(),
{
    let name = serve.name.clone();
    let mut failed_setups = 0u32;
    loop {
        let memory = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let backend = make_backend();
        let exit_events = backend.exit_events().clone();
        let guard = backend.memory_guard().clone();
        let setup = VhostUserDaemon::new("vhost-dax".into(), backend, memory)
            .and_then(|mut daemon| daemon.start(&mut serve.listener).map(|()| daemon));
        // A connection that cannot be set up (no descriptor left for accept, an eventfd
        // or an epoll: another device of this process may hold them all) must not end
        // the device: it keeps its socket and tries again, less often while it fails.
        let mut daemon = match setup {
            Ok(daemon) => daemon,
            Err(e) => {
                exit_events.close_after_connection();
                failed_setups = failed_setups.saturating_add(1);
                let delay = SETUP_RETRY_FIRST
                    .saturating_mul(1 << failed_setups.min(6))
                    .min(SETUP_RETRY_MAX);
                if failed_setups == 1 {
                    log::warn!(
                        "{name}: cannot take a frontend ({e}); still listening, retrying \
                         every {}ms up to {}s",
                        SETUP_RETRY_FIRST.as_millis(),
                        SETUP_RETRY_MAX.as_secs()
                    );
                } else {
                    log::debug!("{name}: cannot take a frontend ({e}), attempt {failed_setups}");
                }
                std::thread::sleep(delay);
                continue;
            }
        };
        if failed_setups > 0 {
            log::info!("{name}: took a frontend after {failed_setups} failed attempt(s)");
            failed_setups = 0;
        }
        guard.set_shutdown(daemon.shutdown_handle());
        log::info!("{name}: frontend connected");
        match daemon.wait() {
            // A VMM that powers off closes the socket between messages: the normal end.
            Ok(())
            | Err(vhost_user_backend::Error::HandleRequest(
                vhost::vhost_user::Error::Disconnected,
            )) => log::info!("{name}: frontend disconnected"),
            Err(e) => log::warn!("{name}: connection ended: {e}"),
        }
        on_disconnect();
        drop(daemon);
        guard.end();
        exit_events.close_after_connection();
        if !serve.reconnect {
            if let Some(socket) = &serve.socket {
                socket.remove();
            }
            return Ok(());
        }
        log::info!("{name}: device reset; waiting for the next frontend");
    }
}

/// Waits for SIGINT/SIGTERM on a thread of its own and reports it to the main thread.
fn spawn_signal_thread(events: mpsc::Sender<Event>) -> Result<(), DaemonError> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || match sys::wait_for_termination() {
            // The main thread stops listening only once every device has ended.
            Ok(signal) => drop(events.send(Event::Signal(signal))),
            Err(e) => log::error!("waiting for signals failed: {e}"),
        })
        .map_err(DaemonError::Signals)?;
    Ok(())
}

/// The orderly shutdown on a termination signal: every device stops taking requests and
/// finishes what is in flight, and the socket files go.
fn shut_down(signal: i32, devices: &[Closing]) {
    log::info!("signal {signal}: shutting down");
    for (service, sockets) in devices {
        service.shutdown();
        sockets.iter().for_each(|s| s.remove());
    }
    log::info!("shutdown complete");
}
