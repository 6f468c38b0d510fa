//! Setting the daemon up before it serves: socket files and listeners, the control
//! sockets, the shared file system and DAX window, confinement and the privilege drop.
//! Everything here runs on the main thread before any other thread exists.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vhost::vhost_user::Listener;

use super::{ACK_TIMEOUT, DaemonError, device_error};
use crate::config::{CapSet, DaxConfig, FsConfig, Sandbox, SocketGroup, SocketSpec};
use crate::control::{BoundControl, ControlServer, ControlSources};
use crate::dax::{ExtentMapper, Ledger, LedgerConfig, WindowSession};
use crate::device::backend_mapper::BackendMapper;
use crate::device::fs::{FsDax, SHMCAP_ID_CACHE};
use crate::fs::{DaxWindow, PassthroughConfig};
use crate::sys;

/// A socket file the daemon must remove on exit, through a descriptor of its directory
/// opened before any chroot; a confined daemon keeps no descriptor of a directory outside
/// its share, so it leaves its socket files in place (and says so).
pub(super) struct SocketFile {
    /// None when the daemon confines itself.
    dir: Option<OwnedFd>,
    name: CString,
    pub(super) path: PathBuf,
    /// The file was left in place and the log says so (once).
    left: std::sync::atomic::AtomicBool,
    /// A supervisor outside the sandbox removes the file (`--sandbox namespace`).
    supervised: bool,
}

impl SocketFile {
    pub(super) fn new(path: &Path, confined: Option<Sandbox>) -> std::io::Result<Self> {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = if confined.is_some() {
            None
        } else {
            Some(std::fs::File::open(parent)?.into())
        };
        let name = CString::new(path.file_name().unwrap_or_default().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(SocketFile {
            dir,
            name,
            path: path.to_path_buf(),
            left: std::sync::atomic::AtomicBool::new(false),
            supervised: confined == Some(Sandbox::Namespace),
        })
    }

    pub(super) fn remove(&self) {
        let Some(dir) = &self.dir else {
            if self.left.swap(true, std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            if self.supervised {
                log::debug!("{}: the supervisor removes it", self.path.display());
                return;
            }
            log::info!(
                "leaving {} in place: the confined daemon cannot reach it (the next start \
                 replaces it)",
                self.path.display()
            );
            return;
        };
        match sys::fs::unlinkat(dir.as_fd(), &self.name, 0).map_err(std::io::Error::from) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("cannot remove {}: {e}", self.path.display()),
        }
    }
}

/// Keeps only `keep` (the devices' needs) on this thread, the only one so far: every
/// thread started later inherits that, and no execve can give anything back. Running as
/// root, it also drops the process's supplementary groups (a creation switched to a
/// guest user must not carry root's); unprivileged, there is nothing to drop but the
/// no-new-privileges flag is set all the same.
pub(super) fn drop_capabilities(keep: CapSet) -> Result<(), DaemonError> {
    let before = sys::caps::current().map_err(DaemonError::Capabilities)?;
    if sys::fs::geteuid() == 0 {
        // Root's own supplementary groups would count for a guest user while a creation
        // runs as that user (fsuid/fsgid): drop them, for every thread to come.
        sys::fs::setgroups(&[])
            .map_err(|e| DaemonError::Capabilities(std::io::Error::from_raw_os_error(e.get())))?;
    }
    let done = sys::caps::restrict_to(keep.bits()).map_err(DaemonError::Capabilities)?;
    if before.permitted != 0 {
        log::info!(
            "capabilities: keeping {} (bounding set {})",
            CapSet::from_bits(done.kept),
            CapSet::from_bits(done.bounding)
        );
    }
    Ok(())
}

/// Runs `f` with the process umask set to `umask`.
pub(super) fn with_umask<T>(umask: u32, f: impl FnOnce() -> T) -> T {
    let previous = crate::sys::fs::umask(umask);
    let result = f();
    crate::sys::fs::umask(previous);
    result
}

/// Creates the socket file `socket` and listens on it. With a group, the file is
/// created owner-only, then given to the group with mode 0660 (virtiofsd's
/// `--socket-group`), so it is never reachable by more than that.
pub(super) fn listen(
    socket: &Path,
    group: Option<&SocketGroup>,
    umask: u32,
    confined: Option<Sandbox>,
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
    let file = SocketFile::new(socket, confined).map_err(|e| device_error(socket, e))?;
    Ok((listener, Arc::new(file)))
}

/// The fs device's listener: a socket file it creates, or the listening socket the
/// parent passed down (never unlinked: the daemon did not create it).
pub(super) fn listen_fs(
    socket: &SocketSpec,
    group: Option<&SocketGroup>,
    umask: u32,
    confined: Option<Sandbox>,
) -> Result<(Listener, Option<Arc<SocketFile>>), DaemonError> {
    match socket {
        SocketSpec::Path(path) => {
            listen(path, group, umask, confined).map(|(listener, file)| (listener, Some(file)))
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
pub(super) fn dax_window(dax: &DaxConfig) -> Result<(DaxWindow, FsDax), crate::dax::LedgerError> {
    let mapper = BackendMapper::new(SHMCAP_ID_CACHE, ACK_TIMEOUT);
    let extent = Arc::new(ExtentMapper::new(mapper.clone(), dax.map_extent));
    let config = LedgerConfig::new(dax.window_size).with_wait_budget(dax.pin_wait_budget);
    let ledger = Arc::new(Ledger::new(config, extent.clone())?);
    let session = WindowSession::new(ledger, mapper.clone());
    let window = DaxWindow::new(session.clone(), dax.policy);
    Ok((window, FsDax { session, mapper }))
}

/// Binds the DAX control socket, replacing a stale one (validation refused a live one);
/// it is served once the daemon has confined itself ([`serve_control`]).
pub(super) fn bind_control(
    path: &Path,
    umask: u32,
    confined: Option<Sandbox>,
) -> Result<(BoundControl, Arc<SocketFile>), DaemonError> {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
        && std::os::unix::net::UnixStream::connect(path).is_err()
    {
        std::fs::remove_file(path).map_err(|e| device_error(path, e))?;
    }
    let mut bound = with_umask(umask, || ControlServer::bind_socket(path)).map_err(|source| {
        DaemonError::Control {
            device: path.display().to_string(),
            source,
        }
    })?;
    if confined.is_some() {
        // Inside the chroot the path names another file (or one of the guest's).
        bound.leave_socket_file();
    }
    let file = SocketFile::new(path, confined).map_err(|e| device_error(path, e))?;
    Ok((bound, Arc::new(file)))
}

pub(super) fn serve_control(
    bound: BoundControl,
    sources: ControlSources,
) -> Result<ControlServer, DaemonError> {
    let path = bound.path().display().to_string();
    bound.serve(sources).map_err(|source| DaemonError::Control {
        device: path,
        source,
    })
}

pub(super) fn passthrough_config(fs: &FsConfig) -> PassthroughConfig {
    let mut config = PassthroughConfig::new(&fs.shared_dir);
    config.cache = fs.cache;
    config.readonly = fs.readonly;
    config.xattr = fs.xattr;
    if let Some(map) = &fs.xattrmap {
        log::info!("xattrmap: {}", map.describe());
    }
    config.xattrmap = fs.xattrmap.clone();
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
pub(super) fn enter_sandbox(kind: Sandbox, dir: &Path) -> Result<(), DaemonError> {
    match kind {
        // Already in its own namespaces (see `run`): the share becomes the root.
        Sandbox::Namespace => sys::namespace::pivot_root_into(dir),
        _ => sys::chroot_into(dir),
    }
    .map_err(DaemonError::Sandbox)?;
    log::info!("sandbox: confined to {} ({kind})", dir.display());
    Ok(())
}
