//! The inode table: one entry per host inode the guest knows, held by an O_PATH
//! descriptor or by file handle ([`InodeHold`]), keyed on (device, inode number, mount
//! id) so hard links share a node id, with the kernel's lookup count per node and a cap
//! on how many nodes a session may hold.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::file_handle::{self, MountFd};
use super::sys::{FileHandle, Stat};
use crate::fuse::abi::ROOT_ID;
use crate::fuse::{Errno, FsResult, NodeId};

/// Identity of a host inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InodeKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Mount id (statx `STATX_MNT_ID`), 0 if unknown.
    pub mnt_id: u64,
}

impl From<&Stat> for InodeKey {
    fn from(s: &Stat) -> Self {
        Self {
            dev: s.dev,
            ino: s.ino,
            mnt_id: s.mnt_id,
        }
    }
}

/// How the daemon holds on to an inode.
#[derive(Debug)]
pub enum InodeHold {
    /// An O_PATH | O_NOFOLLOW descriptor, open for as long as the node lives.
    Fd(OwnedFd),
    /// A file handle, opened on the mount's descriptor when needed.
    Handle {
        /// The handle.
        handle: FileHandle,
        /// A descriptor on the mount the handle belongs to (shared).
        mount: Arc<MountFd>,
    },
}

/// A descriptor of an inode for one operation: the node's own O_PATH descriptor, or one
/// just opened from its handle (closed on drop).
#[derive(Debug)]
pub enum InodeFd<'a> {
    /// The node's descriptor.
    Held(BorrowedFd<'a>),
    /// Opened for this operation.
    Opened(OwnedFd),
}

impl AsFd for InodeFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Held(fd) => fd.as_fd(),
            Self::Opened(fd) => fd.as_fd(),
        }
    }
}

impl AsRawFd for InodeFd<'_> {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

/// One inode known to the guest.
#[derive(Debug)]
pub struct InodeData {
    /// Its node id.
    pub nodeid: NodeId,
    /// How it is held.
    pub hold: InodeHold,
    /// Identity.
    pub key: InodeKey,
    /// File type bits (`S_IFMT` part of the mode), fixed for an inode's life.
    pub file_type: u32,
}

impl InodeData {
    /// An O_PATH descriptor of the inode: its own, or one opened from its handle
    /// (`ESTALE` if the inode no longer exists on the host).
    pub fn path_fd(&self) -> FsResult<InodeFd<'_>> {
        match &self.hold {
            InodeHold::Fd(fd) => Ok(InodeFd::Held(fd.as_fd())),
            InodeHold::Handle { handle, mount } => {
                file_handle::open(mount, handle, libc::O_PATH).map(InodeFd::Opened)
            }
        }
    }

    /// Opens the inode for I/O with open(2) `flags` (only regular files and directories
    /// reach here): through `proc` (`/proc/self/fd`) from its descriptor, or from its handle.
    pub fn open(&self, flags: i32, proc: BorrowedFd<'_>) -> FsResult<OwnedFd> {
        let flags = flags & !libc::O_NOFOLLOW;
        match &self.hold {
            InodeHold::Fd(fd) => {
                super::sys::openat(proc, &super::sys::fd_name(fd.as_raw_fd()), flags, 0)
            }
            InodeHold::Handle { handle, mount } => file_handle::open(mount, handle, flags),
        }
    }

    /// True when the inode is held by file handle (no descriptor of its own).
    pub fn by_handle(&self) -> bool {
        matches!(self.hold, InodeHold::Handle { .. })
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        self.file_type == libc::S_IFDIR
    }

    /// True for regular files.
    pub fn is_reg(&self) -> bool {
        self.file_type == libc::S_IFREG
    }
}

#[derive(Debug)]
struct Node {
    data: Arc<InodeData>,
    lookups: u64,
}

#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<u64, Node>,
    by_key: HashMap<InodeKey, u64>,
    next_id: u64,
}

/// The inode table. One short-held mutex; no I/O is done under it.
#[derive(Debug)]
pub struct InodeStore {
    table: Mutex<Table>,
    /// Most nodes, root included.
    max: usize,
    /// The cap was reached (logged once per time it is reached).
    full: AtomicBool,
}

impl InodeStore {
    /// A table holding only the root, for at most `max` nodes (root included; at least 1).
    pub fn new(root_fd: OwnedFd, root: &Stat, max: u64) -> Self {
        let key = InodeKey::from(root);
        let data = Arc::new(InodeData {
            nodeid: NodeId(ROOT_ID),
            hold: InodeHold::Fd(root_fd),
            key,
            file_type: root.mode & libc::S_IFMT,
        });
        let mut t = Table {
            next_id: ROOT_ID + 1,
            ..Table::default()
        };
        t.by_key.insert(key, ROOT_ID);
        t.by_id.insert(ROOT_ID, Node { data, lookups: 1 });
        Self {
            table: Mutex::new(t),
            // More nodes than memory can hold is no cap at all.
            max: usize::try_from(max).unwrap_or(usize::MAX).max(1),
            full: AtomicBool::new(false),
        }
    }

    /// `ENFILE` when the table holds its maximum of nodes (logged once until it has
    /// room again): the check made before creating a file, so that a creation the cap
    /// would refuse leaves nothing behind on the host.
    pub fn check_room(&self) -> FsResult<()> {
        let len = self.lock().by_id.len();
        self.room(len)
    }

    fn room(&self, len: usize) -> FsResult<()> {
        if len < self.max {
            self.full.store(false, Ordering::Relaxed);
            return Ok(());
        }
        if !self.full.swap(true, Ordering::Relaxed) {
            log::warn!(
                "the guest knows {len} inodes, the most --max-inodes allows: new ones get ENFILE until it forgets some"
            );
        }
        Err(Errno::ENFILE)
    }

    /// Nodes held by file handle (for tests and diagnostics).
    pub fn by_handle(&self) -> usize {
        self.lock()
            .by_id
            .values()
            .filter(|n| n.data.by_handle())
            .count()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere cannot leave the maps inconsistent (every update
        // is a few infallible map operations), so a poisoned lock is usable.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The inode behind `id`, or `EBADF` if the kernel should not know it.
    pub fn get(&self, id: NodeId) -> FsResult<Arc<InodeData>> {
        self.lock()
            .by_id
            .get(&id.0)
            .map(|n| n.data.clone())
            .ok_or(Errno::EBADF)
    }

    /// Lookup count of `id` (None if unknown). For tests and diagnostics.
    pub fn lookups(&self, id: NodeId) -> Option<u64> {
        self.lock().by_id.get(&id.0).map(|n| n.lookups)
    }

    /// Number of nodes in the table, root included.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Never true: the root is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Adds one lookup count to the node of the inode `fd`/`st` describes,
    /// creating the node if needed with the hold `hold` makes of `fd` (`fd` is dropped
    /// if the node exists). `ENFILE` when a new node would pass the cap; `hold`'s error
    /// as it is.
    pub fn add_lookup(
        &self,
        fd: OwnedFd,
        st: &Stat,
        hold: impl FnOnce(OwnedFd) -> FsResult<InodeHold>,
    ) -> FsResult<Arc<InodeData>> {
        let key = InodeKey::from(st);
        if let Some(data) = self.bump(&key) {
            return Ok(data);
        }
        self.check_room()?;
        // Making a handle is a system call or two: not under the lock.
        let hold = hold(fd)?;
        let mut t = self.lock();
        if let Some(n) = t
            .by_key
            .get(&key)
            .copied()
            .and_then(|id| t.by_id.get_mut(&id))
        {
            // Another request made the node meanwhile: ours goes.
            n.lookups = n.lookups.saturating_add(1);
            return Ok(n.data.clone());
        }
        self.room(t.by_id.len())?;
        let id = t.next_id;
        t.next_id += 1;
        let data = Arc::new(InodeData {
            nodeid: NodeId(id),
            hold,
            key,
            file_type: st.mode & libc::S_IFMT,
        });
        t.by_key.insert(key, id);
        t.by_id.insert(
            id,
            Node {
                data: data.clone(),
                lookups: 1,
            },
        );
        Ok(data)
    }

    /// One more lookup of the node with identity `key`, if there is one.
    fn bump(&self, key: &InodeKey) -> Option<Arc<InodeData>> {
        let mut t = self.lock();
        let id = t.by_key.get(key).copied()?;
        let n = t.by_id.get_mut(&id)?;
        n.lookups = n.lookups.saturating_add(1);
        Some(n.data.clone())
    }

    /// Adds one lookup count to an inode already known (e.g. `.` or `..` of the root).
    pub fn add_lookup_existing(&self, id: NodeId) -> FsResult<Arc<InodeData>> {
        let mut t = self.lock();
        let n = t.by_id.get_mut(&id.0).ok_or(Errno::EBADF)?;
        n.lookups = n.lookups.saturating_add(1);
        Ok(n.data.clone())
    }

    /// Drops `count` lookups of `id`; the node goes when none remain. The
    /// root is never forgotten. The O_PATH fd (or the handle's share of its mount
    /// descriptor) goes once in-flight users drop their `Arc` as well.
    pub fn forget(&self, id: NodeId, count: u64) {
        if id.0 == ROOT_ID {
            return;
        }
        let mut t = self.lock();
        let Some(n) = t.by_id.get_mut(&id.0) else {
            log::debug!("FORGET of unknown node {}", id.0);
            return;
        };
        n.lookups = n.lookups.saturating_sub(count);
        if n.lookups == 0 {
            let key = n.data.key;
            t.by_id.remove(&id.0);
            if t.by_key.get(&key) == Some(&id.0) {
                t.by_key.remove(&key);
            }
        }
    }

    /// Drops every node but the root (FUSE_DESTROY).
    pub fn clear(&self) {
        let mut t = self.lock();
        t.by_id.retain(|&id, _| id == ROOT_ID);
        t.by_key.retain(|_, id| *id == ROOT_ID);
    }
}
