//! Inodes held by file handle (`--inode-file-handles prefer|mandatory`).
//!
//! An inode held by handle keeps its [`FileHandle`] and a reference to a descriptor on
//! its mount ([`MountFd`]), and no descriptor of its own: one is opened with
//! `open_by_handle_at(2)` for each operation that needs it and closed after. So the
//! daemon's open files grow with the mounts the guest reaches and the files it holds
//! open, not with the inodes it knows.
//!
//! No cache of opened descriptors is kept. One would save an `open_by_handle_at` + `close`
//! pair per request on a hot inode, at the price of the bound this mode exists for: each
//! cached descriptor pins its inode and counts against the open-files limit, and an LRU's
//! lock would sit on every request of every queue. The pair is cheap: the inode is in the
//! host's caches (the guest just used it), so decoding the handle is a hash lookup. Measured
//! with `bench --quick` (release build, ext4, two runs each): warm GETATTR 197,000-198,000/s
//! with handles against 199,000-232,000/s with descriptors, warm LOOKUP 170,000/s against
//! 139,000-175,000/s; and a first pass of 10,000 LOOKUPs ran faster with handles
//! (125,000-144,000/s against 51,000-82,000/s), a descriptor per inode costing more there.
//!
//! Mount descriptors are shared by every inode of a mount (keyed on mount id *and*
//! device, so a reused mount id never decodes a handle on the wrong filesystem) and
//! closed with the last inode that holds one.

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, Weak};

use super::config::InodeFileHandles;
use super::inode::InodeHold;
use super::sys::{self, FileHandle, Stat};
use crate::fuse::{Errno, FsResult};

/// A descriptor (opened for reading, as `open_by_handle_at` wants) on one mount.
#[derive(Debug)]
pub struct MountFd {
    fd: OwnedFd,
}

impl MountFd {
    /// The descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What holding inodes by handle needs: the mount descriptors and the mode.
#[derive(Debug)]
pub struct Handles {
    mode: InodeFileHandles,
    mounts: Mutex<HashMap<(u64, u64), Weak<MountFd>>>,
    /// Mounts whose lack of handles has been logged.
    logged: Mutex<HashSet<u64>>,
}

/// Why handles cannot be used at all (checked on the shared directory at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandlesUnusable {
    /// The filesystem exports no handles (`name_to_handle_at` failed).
    #[error("the shared directory's filesystem gives no file handles ({0})")]
    NoExport(Errno),
    /// A handle could not be opened again (`EPERM`: no `CAP_DAC_READ_SEARCH`).
    #[error(
        "a file handle of the shared directory cannot be opened ({0}); open_by_handle_at needs root with CAP_DAC_READ_SEARCH"
    )]
    NoOpen(Errno),
}

impl Handles {
    /// Checks that handles work on the shared directory `root` (an `O_PATH` descriptor):
    /// its handle is made, a mount descriptor opened, and the handle opened again.
    /// `proc` is `/proc/self/fd`, to reopen `root` for reading.
    pub fn probe(
        mode: InodeFileHandles,
        root: BorrowedFd<'_>,
        proc: BorrowedFd<'_>,
        st: &Stat,
    ) -> Result<Self, HandlesUnusable> {
        let handles = Self {
            mode,
            mounts: Mutex::new(HashMap::new()),
            logged: Mutex::new(HashSet::new()),
        };
        let (handle, mnt_id) = sys::name_to_handle(root).map_err(HandlesUnusable::NoExport)?;
        let mount = handles
            .mount_fd(mnt_id, st, root, proc)
            .map_err(HandlesUnusable::NoOpen)?;
        let reopened = sys::open_by_handle(mount.fd(), &handle, libc::O_PATH)
            .map_err(HandlesUnusable::NoOpen)?;
        let again = super::stat_fd(&reopened).map_err(HandlesUnusable::NoOpen)?;
        if (again.dev, again.ino) != (st.dev, st.ino) {
            return Err(HandlesUnusable::NoOpen(Errno::ESTALE));
        }
        Ok(handles)
    }

    /// The mode (prefer or mandatory).
    pub fn mode(&self) -> InodeFileHandles {
        self.mode
    }

    /// How to hold the inode `fd` (`O_PATH`) with attributes `st`: by handle, or (in
    /// `prefer` mode, on a filesystem without handles, or for a special file first seen
    /// on its mount) by the descriptor itself.
    pub fn hold(&self, fd: OwnedFd, st: &Stat, proc: BorrowedFd<'_>) -> FsResult<InodeHold> {
        let (handle, mnt_id) = match sys::name_to_handle(fd.as_fd()) {
            Ok(h) => h,
            Err(e) if e == Errno::EOPNOTSUPP || e == Errno::EOVERFLOW => {
                return self.fall_back(fd, st, e);
            }
            Err(e) => return Err(e),
        };
        match self.mount_fd(mnt_id, st, fd.as_fd(), proc) {
            Ok(mount) => Ok(InodeHold::Handle { handle, mount }),
            Err(e) => self.fall_back(fd, st, e),
        }
    }

    fn fall_back(&self, fd: OwnedFd, st: &Stat, why: Errno) -> FsResult<InodeHold> {
        let first = self
            .logged
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(st.mnt_id);
        match self.mode {
            InodeFileHandles::Mandatory => {
                if first {
                    log::error!(
                        "inode-file-handles=mandatory: no file handle for inodes of mount {} ({why}); their LOOKUPs fail",
                        st.mnt_id
                    );
                }
                Err(why)
            }
            InodeFileHandles::Prefer | InodeFileHandles::Never => {
                if first {
                    log::warn!(
                        "inode-file-handles=prefer: no file handle for inodes of mount {} ({why}); holding them by O_PATH descriptor",
                        st.mnt_id
                    );
                }
                Ok(InodeHold::Fd(fd))
            }
        }
    }

    /// The mount descriptor of `(mnt_id, st.dev)`, opened from `fd` (an `O_PATH`
    /// descriptor of a file on that mount) if there is none yet. Only a directory or a
    /// regular file is opened for that (`EOPNOTSUPP` otherwise: opening a device or a
    /// fifo could have effects).
    fn mount_fd(
        &self,
        mnt_id: u64,
        st: &Stat,
        fd: BorrowedFd<'_>,
        proc: BorrowedFd<'_>,
    ) -> FsResult<Arc<MountFd>> {
        let key = (mnt_id, st.dev);
        let mut mounts = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = mounts.get(&key).and_then(Weak::upgrade) {
            return Ok(m);
        }
        let flags = match st.mode & libc::S_IFMT {
            libc::S_IFDIR => libc::O_RDONLY | libc::O_DIRECTORY,
            libc::S_IFREG => libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
            _ => return Err(Errno::EOPNOTSUPP),
        };
        let opened = sys::openat(proc, &sys::fd_name(fd.as_raw_fd()), flags, 0)?;
        log::debug!("mount descriptor for mount {mnt_id} (device {:#x})", st.dev);
        let mount = Arc::new(MountFd { fd: opened });
        mounts.retain(|_, w| w.strong_count() > 0);
        mounts.insert(key, Arc::downgrade(&mount));
        Ok(mount)
    }

    /// Mount descriptors open now (for tests and diagnostics).
    pub fn mounts_open(&self) -> usize {
        self.mounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

/// Opens `handle` on `mount` with `flags` (`O_NOFOLLOW` dropped: the handle names the
/// inode itself).
pub fn open(mount: &MountFd, handle: &FileHandle, flags: i32) -> FsResult<OwnedFd> {
    sys::open_by_handle(mount.fd(), handle, flags & !libc::O_NOFOLLOW)
}

/// Checks, before anything is set up, that inodes under the directory `dir` can be held
/// by handle (what `mandatory` requires at start): the same check a [`Handles`] makes.
pub fn probe_dir(dir: &std::path::Path) -> Result<(), HandlesUnusable> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| HandlesUnusable::NoExport(Errno::EINVAL))?;
    let root = sys::open_path(&path, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(HandlesUnusable::NoExport)?;
    let proc = sys::open_path(c"/proc/self/fd", libc::O_PATH | libc::O_DIRECTORY)
        .map_err(HandlesUnusable::NoOpen)?;
    let st = super::stat_fd(&root).map_err(HandlesUnusable::NoExport)?;
    Handles::probe(InodeFileHandles::Mandatory, root.as_fd(), proc.as_fd(), &st).map(drop)
}
