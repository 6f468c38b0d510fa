//! The file system's side of the DAX window: SETUPMAPPING and REMOVEMAPPING through the
//! ledger, and the ledger's fence around every change that cuts file bytes (truncate,
//! punch-hole, zero-range).
//!
//! Each mapped host file gets one daemon-owned descriptor ([`InodeBacking`]), opened by
//! node id (the Linux guest sends `fh = -1`) and keyed on the file's identity, so every
//! node id and handle of the file shares it. The ledger holds it from map to unmap: the
//! table here keeps only a weak reference, so the file closes when the guest's last
//! mapping of it is released — not on FORGET, RELEASE or unlink.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::PassthroughFs;
use super::inode::{InodeData, InodeKey};
use crate::dax::{
    Backing, BackingId, FileOffset, FileRangeGuard, Ledger, LedgerError, MapperError, PAGE_SIZE,
    WindowOffset, WindowSession,
};
use crate::fuse::filesystem::{RemoveMapping, SetupMapping};
use crate::fuse::{Errno, FsResult, Handle, NodeId};

/// Which files the guest is told to access through the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaxPolicy {
    /// Every regular file: `FUSE_ATTR_DAX` on all of them (when the guest mounts in
    /// per-inode mode, the default) and any file the guest asks for with `-o dax`.
    #[default]
    Always,
    /// Only files the host marks DAX (`STATX_ATTR_DAX`); the guest mounts without `-o dax`.
    Inode,
}

impl std::fmt::Display for DaxPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Always => "always",
            Self::Inode => "inode",
        })
    }
}

/// Why a read-write open may fail where a read-only one works.
const READ_ONLY_OPEN_ERRORS: [Errno; 4] = [
    Errno::EACCES,
    Errno::EPERM,
    Errno::EROFS,
    Errno::new(libc::ETXTBSY),
];

#[cfg(test)]
thread_local! {
    /// Calls into the ledger that can wait, made on this thread: the tests hold the
    /// parking rule (`Filesystem::may_wait`) to it.
    pub(crate) static LEDGER_WAITS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Counts a call into the ledger that can wait (tests only).
fn may_wait_here() {
    #[cfg(test)]
    LEDGER_WAITS.with(|c| c.set(c.get() + 1));
}

/// `FUSE_ATTR_DAX` in `fuse_attr.flags`.
pub const FUSE_ATTR_DAX: u32 = 1 << 1;

/// The DAX window of one file system: the ledger and the descriptors it maps.
#[derive(Debug)]
pub struct DaxWindow {
    session: Arc<WindowSession>,
    policy: DaxPolicy,
    backings: Mutex<Backings>,
    /// The frontend's first refusal to map was logged plainly.
    told_refused: AtomicBool,
}

/// The file data a backing maps: the inode, whichever mount it was reached through (the
/// inode table's key also has the mount id; two bind mounts of one file share its pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
}

impl From<&InodeKey> for FileKey {
    fn from(k: &InodeKey) -> Self {
        FileKey {
            dev: k.dev,
            ino: k.ino,
        }
    }
}

#[derive(Debug, Default)]
struct Backings {
    /// A file keeps its id while it has a live backing or a fence, so a fence taken while
    /// the file has no live backing still holds off a map through one opened meanwhile.
    /// Ids are never reused.
    ids: HashMap<FileKey, FileId>,
    live: HashMap<FileKey, Weak<InodeBacking>>,
    next_id: u64,
}

#[derive(Debug, Clone, Copy)]
struct FileId {
    id: BackingId,
    fences: usize,
}

impl Backings {
    fn id_of(&mut self, key: FileKey) -> BackingId {
        let next = &mut self.next_id;
        self.ids
            .entry(key)
            .or_insert_with(|| {
                *next += 1;
                FileId {
                    id: BackingId(*next),
                    fences: 0,
                }
            })
            .id
    }

    /// Drops the ids of files with neither a live backing nor a fence.
    fn prune(&mut self) {
        self.live.retain(|_, w| w.strong_count() > 0);
        let live = &self.live;
        self.ids.retain(|k, f| f.fences > 0 || live.contains_key(k));
    }
}

/// A fence over bytes of a file (see [`DaxWindow::fence`]): the ledger's guard, and the
/// count that keeps the file's id while it lives. Dropping it reopens the chunks.
#[derive(Debug)]
pub struct CutFence<'a> {
    guard: Option<FileRangeGuard>,
    window: &'a DaxWindow,
    key: FileKey,
}

impl Drop for CutFence<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.window.unfence(self.key);
    }
}

/// A daemon-owned descriptor of one mapped file, and what keeps its inode record alive.
#[derive(Debug)]
pub struct InodeBacking {
    id: BackingId,
    file: File,
    writable: bool,
    /// The inode record (its O_PATH descriptor or file handle) stays as long as a mapping does.
    inode: Arc<InodeData>,
}

impl InodeBacking {
    /// The node id the backing was first opened for.
    pub fn nodeid(&self) -> NodeId {
        self.inode.nodeid
    }
}

impl Backing for InodeBacking {
    fn id(&self) -> BackingId {
        self.id
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn writable(&self) -> bool {
        self.writable
    }
}

impl DaxWindow {
    /// The file system's side of the window `session` owns.
    pub fn new(session: Arc<WindowSession>, policy: DaxPolicy) -> Self {
        DaxWindow {
            session,
            policy,
            backings: Mutex::new(Backings::default()),
            told_refused: AtomicBool::new(false),
        }
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        self.session.ledger()
    }

    /// Which files are DAX.
    pub fn policy(&self) -> DaxPolicy {
        self.policy
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backings> {
        self.backings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live backing of the file `key`, if the ledger still holds one.
    fn live(&self, key: FileKey) -> Option<Arc<InodeBacking>> {
        self.lock().live.get(&key).and_then(Weak::upgrade)
    }

    /// The backing of `inode`, opened (read-write unless `readonly` or the host refuses
    /// it) if no mapping holds one.
    fn backing_for(
        &self,
        fs: &PassthroughFs,
        inode: &Arc<InodeData>,
    ) -> FsResult<Arc<InodeBacking>> {
        let key = FileKey::from(&inode.key);
        if let Some(b) = self.live(key) {
            return Ok(b);
        }
        let (file, writable) = if fs.cfg.readonly {
            (fs.open_node(inode.nodeid, libc::O_RDONLY)?, false)
        } else {
            match fs.open_node(inode.nodeid, libc::O_RDWR) {
                Ok(f) => (f, true),
                // A file the daemon may only read (no permission, a read-only host mount,
                // a binary being executed) is still mapped, read-only.
                Err(e) if READ_ONLY_OPEN_ERRORS.contains(&e) => {
                    (fs.open_node(inode.nodeid, libc::O_RDONLY)?, false)
                }
                Err(e) => return Err(e),
            }
        };
        let mut table = self.lock();
        // Another request may have opened it while we did.
        if let Some(b) = table.live.get(&key).and_then(Weak::upgrade) {
            return Ok(b);
        }
        let backing = Arc::new(InodeBacking {
            id: table.id_of(key),
            file,
            writable,
            inode: inode.clone(),
        });
        table.live.insert(key, Arc::downgrade(&backing));
        table.prune();
        Ok(backing)
    }

    /// SETUPMAPPING: maps `args.len` bytes of the node's file at `args.foffset` into the
    /// window at `args.moffset`. Writable whenever the guest may write the file, so the
    /// guest's read -> write upgrade finds the range already mapped.
    ///
    /// With `no_wait` the ledger is not waited on: where the map would wait, the answer is
    /// [`Errno::WOULD_WAIT`] and nothing has changed.
    pub fn setup(
        &self,
        fs: &PassthroughFs,
        node: NodeId,
        args: SetupMapping,
        no_wait: bool,
    ) -> FsResult<()> {
        if !args.flags.read && !args.flags.write {
            return Err(Errno::EINVAL);
        }
        if let Err(why) = self.session.check_map() {
            // A map now could be undone behind the guest's back by the release under way,
            // or find a range "already mapped" in a window this frontend never mapped.
            log::debug!("dax: SETUPMAPPING refused with EBUSY: {why}");
            return Err(Errno::new(libc::EBUSY));
        }
        let inode = fs.inodes.get(node)?;
        if let Some(fh) = args.fh {
            check_handle(fs, fh, node)?;
        }
        if !inode.is_reg() {
            return Err(Errno::EINVAL);
        }
        if args.flags.write && fs.cfg.readonly {
            return Err(Errno::EROFS);
        }
        let backing = self.backing_for(fs, &inode)?;
        if args.flags.write && !backing.writable {
            return Err(Errno::EACCES);
        }
        let writable = backing.writable;
        // The wire format's raw offsets become typed here, and only here.
        let (window_offset, file_offset) = (WindowOffset(args.moffset), FileOffset(args.foffset));
        let ledger = self.session.ledger();
        let mapped = if no_wait {
            ledger.try_map(window_offset, args.len, backing, file_offset, writable)
        } else {
            may_wait_here();
            ledger.map(window_offset, args.len, backing, file_offset, writable)
        };
        if let Err(LedgerError::Mapper { source, .. }) = &mapped {
            self.log_refusal(node, &args, source);
        }
        mapped
            .map(|_| ())
            .map_err(|e| ledger_errno("SETUPMAPPING", &e))
    }

    /// Says why a SETUPMAPPING got EIO: plainly the first time, then at debug (the guest
    /// may ask again and again).
    fn log_refusal(&self, node: NodeId, args: &SetupMapping, source: &MapperError) {
        if !matches!(
            source,
            MapperError::Refused { .. }
                | MapperError::Unsupported { .. }
                | MapperError::Unmappable { .. }
        ) {
            return; // a broken channel: the ledger logged it as an error
        }
        let level = if self.told_refused.swap(true, Ordering::Relaxed) {
            log::Level::Debug
        } else {
            log::Level::Warn
        };
        if let MapperError::Unsupported { reason } = source {
            log::log!(level, "dax: DAX is off for this frontend: {reason}");
            return;
        }
        log::log!(
            level,
            "dax: SETUPMAPPING of node {} ({:#x}+{:#x} of the file at window offset {:#x}) \
             answered EIO: {source}",
            node.0,
            args.foffset,
            args.len,
            args.moffset
        );
    }

    /// REMOVEMAPPING: releases every range (the first kind of release). All ranges are
    /// tried; the first failure is returned.
    ///
    /// With `no_wait` the ledger is not waited on: at the first range that would wait the
    /// answer is [`Errno::WOULD_WAIT`]; the ranges before it are released, which serving
    /// the request again does not undo (a range with nothing mapped is skipped).
    pub fn remove(&self, ranges: &[RemoveMapping], no_wait: bool) -> FsResult<()> {
        let ledger = self.session.ledger();
        if !no_wait {
            may_wait_here();
        }
        let mut first = Ok(());
        for r in ranges {
            let unmapped = if no_wait {
                ledger.try_unmap(r.moffset, r.len)
            } else {
                ledger.unmap(r.moffset, r.len)
            };
            if let Err(e) = unmapped {
                if matches!(e, LedgerError::WouldWait { .. }) {
                    return Err(Errno::WOULD_WAIT);
                }
                let errno = ledger_errno("REMOVEMAPPING", &e);
                if first.is_ok() {
                    first = Err(errno);
                }
            }
        }
        first
    }

    /// Holds still the bytes `from..from+len` (`None`: to the end and beyond) of the file
    /// `key` while the caller cuts them: pins on the chunks mapping them are waited out
    /// first, and maps of them wait until the guard drops.
    pub fn fence(&self, key: &InodeKey, from: u64, len: Option<u64>) -> FsResult<CutFence<'_>> {
        // By the file's id, live backing or not, so a SETUPMAPPING racing with this cut
        // (it takes the same id) waits for it.
        let key = FileKey::from(key);
        let id = {
            let mut table = self.lock();
            let id = table.id_of(key);
            if let Some(f) = table.ids.get_mut(&key) {
                f.fences += 1;
            }
            id
        };
        may_wait_here();
        let mut fence = CutFence {
            guard: None,
            window: self,
            key,
        };
        fence.guard = Some(
            self.session
                .ledger()
                .release_file_range(id, from, len)
                .map_err(|e| ledger_errno("file range release", &e))?,
        );
        Ok(fence)
    }

    fn unfence(&self, key: FileKey) {
        let mut table = self.lock();
        if let Some(f) = table.ids.get_mut(&key) {
            f.fences = f.fences.saturating_sub(1);
        }
        table.prune();
    }

    /// Releases every mapping: at FUSE_DESTROY (unmount sends no REMOVEMAPPING), and at
    /// FUSE_INIT, where mappings left over belong to a guest driver that is gone (a guest
    /// reset or reboot; the frontend may have dropped them already).
    pub fn release_all(&self, why: &str) {
        may_wait_here();
        match self.session.ledger().reset() {
            Ok(0) => {}
            Ok(n) => log::info!("dax: released {n} mapping(s) at {why}"),
            Err(e) => log::error!("dax: {why} could not release every mapping: {e}"),
        }
    }

    /// Whether files like `st` are DAX under the policy. When the frontend maps only
    /// whole pages inside a file, a file whose size is not a non-zero multiple of the page
    /// size cannot be shown whole through the window: a guest that lets us choose
    /// (`-o dax=inode`) reads it over FUSE instead.
    pub fn attr_flags(&self, is_reg: bool, host_dax: bool, size: u64) -> u32 {
        let dax = is_reg
            && match self.policy {
                DaxPolicy::Always => true,
                DaxPolicy::Inode => host_dax,
            }
            && (!self.session.ledger().maps_within_file()
                || (size > 0 && size.is_multiple_of(PAGE_SIZE)));
        if dax { FUSE_ATTR_DAX } else { 0 }
    }

    /// Before the file `key` is resized to `new_size` through this daemon: EIO (nothing
    /// changed) if a live mapping of it could not show the file's bytes afterwards.
    pub fn check_resize(&self, key: &InodeKey, new_size: u64) -> FsResult<()> {
        match self.live_following_size(key) {
            Some(backing) => self.check_backing_resize(&backing, new_size),
            None => Ok(()),
        }
    }

    /// Before a write or allocation through this daemon that reaches `end`: as
    /// [`DaxWindow::check_resize`] when it would grow the file.
    pub fn check_extend(&self, key: &InodeKey, end: u64) -> FsResult<()> {
        let Some(backing) = self.live_following_size(key) else {
            return Ok(());
        };
        if end <= backing.size()? {
            return Ok(());
        }
        self.check_backing_resize(&backing, end)
    }

    fn check_backing_resize(&self, backing: &InodeBacking, new_size: u64) -> FsResult<()> {
        self.session
            .ledger()
            .check_resize(backing.id, new_size)
            .map_err(|e| {
                log::warn!("dax: {e}; the size change is refused with EIO");
                Errno::new(e.errno())
            })
    }

    /// After the file `key` may have grown through this daemon: its live mappings take in
    /// the pages now inside it.
    pub fn file_grew(&self, key: &InodeKey) {
        if let Some(backing) = self.live_following_size(key) {
            self.session.ledger().file_grew(backing.id);
        }
    }

    /// The live backing of `key` when its mappings must follow its size: only a frontend
    /// that maps within the file has anything to follow, so a WRITE elsewhere costs no
    /// fstat.
    fn live_following_size(&self, key: &InodeKey) -> Option<Arc<InodeBacking>> {
        if !self.session.ledger().maps_within_file() {
            return None;
        }
        self.live(FileKey::from(key))
    }
}

fn check_handle(fs: &PassthroughFs, fh: Handle, node: NodeId) -> FsResult<()> {
    fs.handles.get(fh, node).map(|_| ())
}

/// The errno the guest gets for a ledger failure (logged at the level it deserves).
fn ledger_errno(what: &str, e: &LedgerError) -> Errno {
    match e {
        LedgerError::Timeout { .. } => log::warn!("dax: {what}: {e}"),
        LedgerError::Mapper { source, .. } if !matches!(source, MapperError::Refused { .. }) => {
            log::warn!("dax: {what}: {e}")
        }
        _ => log::debug!("dax: {what}: {e}"),
    }
    Errno::new(e.errno())
}
