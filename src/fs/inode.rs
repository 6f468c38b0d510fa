//! The inode table: one O_PATH descriptor per host inode, keyed on
//! (device, inode number, mount id) so hard links share a node id, with the
//! kernel's lookup count per node.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use super::sys::Stat;
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

/// One inode known to the guest.
#[derive(Debug)]
pub struct InodeData {
    /// Its node id.
    pub nodeid: NodeId,
    /// O_PATH | O_NOFOLLOW descriptor: the only handle we have on it.
    pub fd: OwnedFd,
    /// Identity.
    pub key: InodeKey,
    /// File type bits (`S_IFMT` part of the mode), fixed for an inode's life.
    pub file_type: u32,
}

impl InodeData {
    /// The O_PATH descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
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
}

impl InodeStore {
    /// A table holding only the root.
    pub fn new(root_fd: OwnedFd, root: &Stat) -> Self {
        let key = InodeKey::from(root);
        let data = Arc::new(InodeData {
            nodeid: NodeId(ROOT_ID),
            fd: root_fd,
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
        }
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
    /// creating the node if needed (`fd` is dropped if the node exists).
    pub fn add_lookup(&self, fd: OwnedFd, st: &Stat) -> Arc<InodeData> {
        let key = InodeKey::from(st);
        let mut t = self.lock();
        if let Some(n) = t
            .by_key
            .get(&key)
            .copied()
            .and_then(|id| t.by_id.get_mut(&id))
        {
            n.lookups = n.lookups.saturating_add(1);
            return n.data.clone();
        }
        let id = t.next_id;
        t.next_id += 1;
        let data = Arc::new(InodeData {
            nodeid: NodeId(id),
            fd,
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
        data
    }

    /// Adds one lookup count to an inode already known (e.g. `.` or `..` of the root).
    pub fn add_lookup_existing(&self, id: NodeId) -> FsResult<Arc<InodeData>> {
        let mut t = self.lock();
        let n = t.by_id.get_mut(&id.0).ok_or(Errno::EBADF)?;
        n.lookups = n.lookups.saturating_add(1);
        Ok(n.data.clone())
    }

    /// Drops `count` lookups of `id`; the node goes when none remain. The
    /// root is never forgotten. The O_PATH fd closes once in-flight users drop
    /// their `Arc` as well.
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
