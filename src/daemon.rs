//! The daemon: one listener and serving thread per device, one frontend at a time per
//! device, and an orderly shutdown on SIGINT/SIGTERM.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use vhost::vhost_user::Listener;
use vhost_user_backend::{VhostUserBackend, VhostUserDaemon, VringRwLock};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use crate::config::{DaemonConfig, FsConfig, Sandbox, SocketSpec};
use crate::control::{BoundControl, ControlSources};
use crate::device::ConnectionBackend;
use crate::device::flush::SyncObserver;
use crate::device::fs::{FsBackend, FsDax, FsDevice};
use crate::device::pmem::{PmemBackend, PmemBacking, PmemDevice};
use crate::device::sync_gate::{SYNC_GATE_ENV, SocketSyncGate};
use crate::fs::PassthroughFs;
use crate::sys;

mod setup;

use setup::{
    SocketFile, bind_control, dax_window, drop_capabilities, enter_sandbox, listen, listen_fs,
    passthrough_config, serve_control,
};

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
    /// Dropping capabilities failed.
    #[error("capabilities: {0}")]
    Capabilities(std::io::Error),
    /// Signal handling could not be set up.
    #[error("signals: {0}")]
    Signals(std::io::Error),
    /// The seccomp filter could not be built or installed.
    #[error("seccomp: {0}")]
    Seccomp(#[source] sys::seccomp::SeccompError),
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

/// A device whose files and sockets are open and none of whose threads has started.
enum Opened {
    Pmem {
        config: crate::config::PmemConfig,
        backing: PmemBacking,
        control: Option<(BoundControl, Arc<SocketFile>)>,
        listener: Listener,
        socket: Arc<SocketFile>,
    },
    Fs {
        config: Box<FsConfig>,
        filesystem: Box<PassthroughFs>,
        dax: Option<FsDax>,
        stats: Arc<Vec<crate::fuse::stats::QueueStats>>,
        control: Option<(BoundControl, Arc<SocketFile>)>,
        listener: Listener,
        socket: Option<Arc<SocketFile>>,
    },
}

/// Serves every device of `config` until each frontend is gone (or for ever with
/// `reconnect`), or until SIGINT/SIGTERM.
///
/// In three steps: open every file and bind every socket (on this thread, no other thread
/// started); confine the process (`--sandbox`) and drop the capabilities its devices do
/// not need, which reaches every thread because none has started yet (capabilities and a
/// mount namespace belong to threads); then start the devices' threads.
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
                // The supervisor only passes signals on (same uid) and removes the socket
                // files (in directories root owns) at the end: it keeps no capability.
                sys::caps::restrict_to(0).map_err(DaemonError::Capabilities)?;
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
    // One filter for the process: the union of what its devices need.
    let needs = sys::seccomp::Needs {
        fs: !config.fs.is_empty(),
        pmem: !config.pmem.is_empty(),
        syslog: crate::logging::to_syslog(),
        file_handles: config
            .fs
            .iter()
            .any(|fs| fs.inode_file_handles != crate::fs::InodeFileHandles::Never),
    };
    let keep = config.capabilities();
    let sandbox: Option<(Sandbox, PathBuf)> = config
        .fs
        .iter()
        .find(|fs| fs.sandbox != Sandbox::None)
        .map(|fs| (fs.sandbox, fs.shared_dir.clone()));
    let confined = sandbox.as_ref().map(|(kind, _)| *kind);

    // The passthrough file system sets the umask to 0 (the guest's modes arrive masked);
    // sockets are created with the operator's.
    let umask = crate::sys::fs::umask(0o022);
    crate::sys::fs::umask(umask);
    let mut opened = Vec::new();
    for pmem in config.pmem {
        let backing = PmemBacking::open(&pmem).map_err(|e| device_error(&pmem.file, e))?;
        // The control socket before the vhost-user socket, as for fs: a VMM may pin the
        // region before it connects.
        let control = match &pmem.control_socket {
            Some(path) => Some(bind_control(path, umask, confined)?),
            None => None,
        };
        let (listener, socket) = listen(&pmem.socket, pmem.socket_group.as_ref(), umask, confined)?;
        opened.push(Opened::Pmem {
            config: pmem,
            backing,
            control,
            listener,
            socket,
        });
    }
    for fs in config.fs {
        // The ledger and its control socket first: the control socket answers as soon as
        // the vhost-user socket exists (a VMM may pin before it connects).
        let mut dax = None;
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
        let control = match &fs.control_socket {
            Some(path) => Some(bind_control(path, umask, confined)?),
            None => None,
        };
        let (listener, socket) = listen_fs(&fs.socket, fs.socket_group.as_ref(), umask, confined)?;
        let filesystem = PassthroughFs::new(passthrough_config(&fs)).map_err(|source| {
            DaemonError::Filesystem {
                device: fs.shared_dir.display().to_string(),
                source,
            }
        })?;
        let (filesystem, dax) = match dax {
            Some((window, parts)) => (filesystem.with_dax(window), Some(parts)),
            None => (filesystem, None),
        };
        opened.push(Opened::Fs {
            config: Box::new(fs),
            filesystem: Box::new(filesystem),
            dax,
            stats,
            control,
            listener,
            socket,
        });
    }
    if let Some((kind, dir)) = sandbox {
        enter_sandbox(kind, &dir)?;
    }
    drop_capabilities(keep)?;
    let mut devices = Vec::new();
    for device in opened {
        devices.push(match device {
            Opened::Pmem {
                config,
                backing,
                control,
                listener,
                socket,
            } => start_pmem(config, backing, control, listener, socket, observer.clone())?,
            Opened::Fs {
                config,
                filesystem,
                dax,
                stats,
                control,
                listener,
                socket,
            } => start_fs(*config, *filesystem, dax, stats, control, listener, socket)?,
        });
    }

    // Setup is over (sockets bound, the sandbox entered, capabilities dropped; the caller
    // raised the open-files limit): from here on only the allow-list, on every thread,
    // before any frontend.
    install_seccomp(config.seccomp, needs)?;

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

/// Starts a pmem device's threads and its control socket.
fn start_pmem(
    pmem: crate::config::PmemConfig,
    backing: PmemBacking,
    control: Option<(BoundControl, Arc<SocketFile>)>,
    listener: Listener,
    socket: Arc<SocketFile>,
    observer: Option<Arc<dyn SyncObserver>>,
) -> Result<Prepared, DaemonError> {
    let device = PmemDevice::with_backing(pmem.clone(), backing, ACK_TIMEOUT, observer)
        .map_err(|e| device_error(&pmem.file, e))?;
    let mut extra_sockets = Vec::new();
    if let Some((bound, file)) = control {
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
        device.attach_control(serve_control(bound, sources)?);
        log::info!("pmem: control socket on {}", file.path.display());
        extra_sockets.push(file);
    }
    log::info!(
        "pmem: serving {} ({} bytes{}) on {}",
        pmem.file.display(),
        pmem.size,
        if pmem.readonly { ", read-only" } else { "" },
        pmem.socket.display()
    );
    let dev = device.clone();
    Ok(Prepared {
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
    })
}

/// Installs the process's seccomp filter (on every thread: the control socket's and the
/// devices' workers already run).
fn install_seccomp(
    action: sys::seccomp::Seccomp,
    needs: sys::seccomp::Needs,
) -> Result<(), DaemonError> {
    let allowed = sys::seccomp::install(action, needs).map_err(DaemonError::Seccomp)?;
    if action == sys::seccomp::Seccomp::None {
        log::info!("seccomp: no filter (--seccomp none)");
    } else {
        log::info!(
            "seccomp: filter installed on every thread ({allowed} system calls allowed; \
             anything else: {action})"
        );
    }
    Ok(())
}

/// Starts an fs device's threads (its request pool) and its control socket.
fn start_fs(
    fs: FsConfig,
    filesystem: PassthroughFs,
    dax: Option<FsDax>,
    stats: Arc<Vec<crate::fuse::stats::QueueStats>>,
    control: Option<(BoundControl, Arc<SocketFile>)>,
    listener: Listener,
    socket: Option<Arc<SocketFile>>,
) -> Result<Prepared, DaemonError> {
    let mut extra_sockets = Vec::new();
    let mut server = None;
    if let Some((bound, file)) = control {
        let sources = ControlSources {
            ledger: dax.as_ref().map(|parts| parts.session.ledger().clone()),
            fuse: Some(stats.clone()),
            pmem: None,
        };
        server = Some(serve_control(bound, sources)?);
        log::info!("fs: control socket on {}", file.path.display());
        extra_sockets.push(file);
    }
    let device = FsDevice::with_stats(fs.clone(), filesystem, dax, stats);
    if device.pool_workers() > 0 {
        log::info!(
            "fs: {} pool worker(s) serve the request queues (--thread-pool-size)",
            device.pool_workers()
        );
    }
    if let Some(server) = server {
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
    let dev = device.clone();
    Ok(Prepared {
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
    })
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
