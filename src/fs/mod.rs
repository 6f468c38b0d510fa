//! The passthrough filesystem: serves a host directory to the guest.
//!
//! Every inode the guest knows is held by an O_PATH descriptor, or, with
//! `--inode-file-handles prefer|mandatory`, by file handle ([`inode::InodeStore`],
//! [`file_handle`]); every name is resolved one component at a time
//! relative to its parent's descriptor with `O_NOFOLLOW`, so no guest request
//! makes the daemon walk a path or follow a symlink. Files are (re)opened
//! through a `/proc/self/fd` directory descriptor taken at start, so the
//! filesystem keeps working after the daemon chroots into the shared
//! directory (pass that descriptor with [`PassthroughFs::with_proc_fd`]).
//!
//! Layout: [`config`] (options), [`sys`] (all unsafe syscalls), [`inode`] and
//! [`handle`] (tables), [`creds`] (fsuid/fsgid switching), and the
//! operations split by kind: `entry` (names), `attr` (attributes), `file`
//! (open files), `dir` (directories), `xattr`.

pub mod config;
pub mod creds;
pub mod file_handle;
pub mod handle;
pub mod inode;

pub mod dax;

mod attr;
mod dir;
mod entry;
mod file;
mod xattr;

#[cfg(test)]
mod tests;

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use config::{CachePolicy, InodeFileHandles, PassthroughConfig};
pub use dax::{DaxPolicy, DaxWindow};

use crate::fuse::abi::{Attr, Kstatfs, init_flags as fl};
use crate::fuse::decode::Request;
use crate::fuse::filesystem::{
    CopyRange, Filesystem, InitReply, InitRequest, RemoveMapping, SetAttr, SetupMapping, WriteArgs,
    XattrReply,
};
use crate::fuse::{
    Context, DirentBuf, Entry, Errno, FsResult, Handle, NodeId, Opened, ZeroCopyReader,
    ZeroCopyWriter,
};
/// The file-system system calls, as `sys` for this module and its children.
use crate::sys::fs as sys;
use handle::HandleStore;
use inode::{InodeData, InodeStore};
use sys::Stat;

/// INIT's `map_alignment`: log2 of the page size DAX mappings are aligned to.
const PAGE_SHIFT: u16 = 12;
const _: () = assert!(1u64 << PAGE_SHIFT == crate::dax::PAGE_SIZE);

/// Why the passthrough could not start.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The shared directory could not be opened.
    #[error("cannot open shared directory {path:?}: {errno}")]
    OpenRoot {
        /// The configured root.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
    /// The shared directory path contains a NUL byte.
    #[error("shared directory path {0:?} contains a NUL byte")]
    NulInPath(PathBuf),
    /// `/proc/self/fd` could not be opened.
    #[error("cannot open /proc/self/fd (is /proc mounted?): {0}")]
    OpenProc(Errno),
    /// `--inode-file-handles mandatory`, and handles cannot be used.
    #[error("inode_file_handles = mandatory: {0}")]
    FileHandles(file_handle::HandlesUnusable),
    /// The shared directory could not be examined.
    #[error("cannot stat shared directory {path:?}: {errno}")]
    StatRoot {
        /// The configured root.
        path: PathBuf,
        /// Why.
        errno: Errno,
    },
}

/// The passthrough filesystem.
#[derive(Debug)]
pub struct PassthroughFs {
    cfg: PassthroughConfig,
    inodes: InodeStore,
    handles: HandleStore,
    proc_self_fd: OwnedFd,
    /// Switch fsuid/fsgid for creating requests (the daemon runs as root).
    pub(crate) switch_creds: bool,
    /// FUSE_WRITEBACK_CACHE granted in this session.
    writeback: AtomicBool,
    /// The DAX window, when the device has one.
    dax: Option<DaxWindow>,
    /// Inodes are held by file handle (`prefer` or `mandatory`, and handles work).
    file_handles: Option<file_handle::Handles>,
}

impl PassthroughFs {
    /// Opens `cfg.root` and `/proc/self/fd`. Sets the process umask to 0 (the
    /// guest's modes arrive already masked), as virtiofsd does.
    pub fn new(cfg: PassthroughConfig) -> Result<Self, FsError> {
        let proc = sys::open_path(c"/proc/self/fd", libc::O_PATH | libc::O_DIRECTORY)
            .map_err(FsError::OpenProc)?;
        Self::with_proc_fd(cfg, proc)
    }

    /// As [`PassthroughFs::new`] with a `/proc/self/fd` descriptor opened by the
    /// caller (e.g. before a chroot that hides /proc).
    pub fn with_proc_fd(cfg: PassthroughConfig, proc_self_fd: OwnedFd) -> Result<Self, FsError> {
        let path = CString::new(cfg.root.as_os_str().as_bytes())
            .map_err(|_| FsError::NulInPath(cfg.root.clone()))?;
        let root = sys::open_path(&path, libc::O_PATH | libc::O_DIRECTORY).map_err(|errno| {
            FsError::OpenRoot {
                path: cfg.root.clone(),
                errno,
            }
        })?;
        let st = stat_fd(&root).map_err(|errno| FsError::StatRoot {
            path: cfg.root.clone(),
            errno,
        })?;
        let file_handles = match cfg.inode_file_handles {
            InodeFileHandles::Never => None,
            mode => {
                match file_handle::Handles::probe(mode, root.as_fd(), proc_self_fd.as_fd(), &st) {
                    Ok(handles) => {
                        log::info!("inodes are held by file handle (inode_file_handles = {mode})");
                        Some(handles)
                    }
                    Err(e) if mode == InodeFileHandles::Mandatory => {
                        return Err(FsError::FileHandles(e));
                    }
                    Err(e) => {
                        log::warn!(
                            "inode_file_handles = prefer: {e}; every inode is held by O_PATH descriptor"
                        );
                        None
                    }
                }
            }
        };
        sys::umask(0);
        Ok(Self {
            inodes: InodeStore::new(root, &st, cfg.max_inodes),
            handles: HandleStore::new(cfg.max_open_handles),
            file_handles,
            proc_self_fd,
            switch_creds: sys::geteuid() == 0,
            writeback: AtomicBool::new(false),
            dax: None,
            cfg,
        })
    }

    /// Serves SETUPMAPPING / REMOVEMAPPING through `window`, and fences every change that
    /// cuts file bytes with its ledger.
    pub fn with_dax(mut self, window: DaxWindow) -> Self {
        self.dax = Some(window);
        self
    }

    /// The DAX window, if any.
    pub fn dax(&self) -> Option<&DaxWindow> {
        self.dax.as_ref()
    }

    /// Holds the ledger's fence over `from..from+len` (`None`: to the end) of the file
    /// `key` while the caller cuts those bytes: a mapped chunk's pins are waited out first.
    fn fence_cut(
        &self,
        key: &inode::InodeKey,
        from: u64,
        len: Option<u64>,
    ) -> FsResult<Option<dax::CutFence<'_>>> {
        match &self.dax {
            Some(window) => window.fence(key, from, len).map(Some),
            None => Ok(None),
        }
    }

    /// EIO, before anything changes, if the DAX window could not follow the file `key`
    /// to `new_size` bytes (see [`DaxWindow::check_resize`]).
    fn check_resize(&self, key: &inode::InodeKey, new_size: u64) -> FsResult<()> {
        self.dax
            .as_ref()
            .map_or(Ok(()), |w| w.check_resize(key, new_size))
    }

    /// As [`PassthroughFs::check_resize`] for a write or allocation reaching `end`.
    fn check_extend(&self, key: &inode::InodeKey, end: u64) -> FsResult<()> {
        self.dax
            .as_ref()
            .map_or(Ok(()), |w| w.check_extend(key, end))
    }

    /// The file `key` may have grown: live window mappings take in its new pages.
    fn file_grew(&self, key: &inode::InodeKey) {
        if let Some(window) = &self.dax {
            window.file_grew(key);
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PassthroughConfig {
        &self.cfg
    }

    /// The inode table (for diagnostics and tests).
    pub fn inodes(&self) -> &InodeStore {
        &self.inodes
    }

    /// The handle table (for diagnostics and tests).
    pub fn handles(&self) -> &HandleStore {
        &self.handles
    }

    /// How inodes are held in fact: `never` when `prefer` found handles unusable.
    pub fn inode_file_handles(&self) -> InodeFileHandles {
        self.file_handles
            .as_ref()
            .map_or(InodeFileHandles::Never, file_handle::Handles::mode)
    }

    /// Mount descriptors open for inodes held by handle (for tests and diagnostics).
    pub fn mount_fds_open(&self) -> usize {
        self.file_handles
            .as_ref()
            .map_or(0, file_handle::Handles::mounts_open)
    }

    /// Opens the regular file behind `node` with open(2) `flags`, for
    /// callers that resolve by node id rather than by handle (DAX
    /// SETUPMAPPING with `fh = -1`). Refuses writable opens on a read-only
    /// export (`EROFS`) and anything but regular files (`EINVAL`). Hold the
    /// `Arc` from [`InodeStore::get`] to keep the inode's descriptor alive
    /// past FORGET.
    pub fn open_node(&self, node: NodeId, flags: i32) -> FsResult<File> {
        let inode = self.inodes.get(node)?;
        if !inode.is_reg() {
            return Err(Errno::EINVAL);
        }
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            self.check_writable()?;
        }
        self.reopen(
            &inode,
            flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC),
        )
    }

    fn timeout(&self) -> Duration {
        self.cfg.cache.timeout()
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.cfg.readonly {
            Err(Errno::EROFS)
        } else {
            Ok(())
        }
    }

    /// Host attributes as `fuse_attr`, with `FUSE_ATTR_DAX` where the DAX policy says.
    fn attr_of(&self, st: &Stat) -> Attr {
        let mut attr = attr_of(st);
        if let Some(window) = &self.dax {
            attr.flags |=
                window.attr_flags(st.mode & libc::S_IFMT == libc::S_IFREG, st.dax, st.size);
        }
        attr
    }

    fn entry_for(&self, inode: &InodeData, st: &Stat) -> Entry {
        Entry {
            nodeid: inode.nodeid,
            generation: 0,
            attr: self.attr_of(st),
            entry_timeout: self.timeout(),
            attr_timeout: self.timeout(),
        }
    }

    /// Looks `name` up in `parent` (one component, no symlink followed) and
    /// takes one lookup count on the result.
    fn do_lookup(&self, parent: &InodeData, name: &CStr) -> FsResult<Entry> {
        let fd = sys::openat(
            parent.path_fd()?.as_fd(),
            name,
            libc::O_PATH | libc::O_NOFOLLOW,
            0,
        )?;
        let st = stat_fd(&fd)?;
        let inode = self.add_lookup(fd, &st)?;
        Ok(self.entry_for(&inode, &st))
    }

    /// One lookup count on the inode `fd` (O_PATH) / `st`, held as the configuration says.
    fn add_lookup(&self, fd: OwnedFd, st: &Stat) -> FsResult<std::sync::Arc<InodeData>> {
        self.inodes
            .add_lookup(fd, st, |fd| match &self.file_handles {
                None => Ok(inode::InodeHold::Fd(fd)),
                Some(handles) => handles.hold(fd, st, self.proc_fd()),
            })
    }

    /// Opens `inode` for I/O (only regular files and directories reach here).
    fn reopen(&self, inode: &InodeData, flags: i32) -> FsResult<File> {
        Ok(File::from(inode.open(flags, self.proc_fd())?))
    }

    fn proc_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.proc_self_fd.as_fd()
    }

    fn creds(&self, ctx: Context) -> FsResult<creds::CredsGuard> {
        creds::CredsGuard::new(ctx, self.switch_creds)
    }
}

/// `statx` of an fd itself, not following a symlink it may be.
fn stat_fd(fd: &impl std::os::fd::AsFd) -> FsResult<Stat> {
    sys::statx(
        fd.as_fd(),
        c"",
        libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
    )
}

/// Converts host attributes to `fuse_attr`.
fn attr_of(st: &Stat) -> Attr {
    Attr {
        ino: st.ino,
        size: st.size,
        blocks: st.blocks,
        // fuse_attr carries a time64_t in a u64 field (the kernel reads it back as
        // signed): reinterpret the bits, so a time before 1970 survives the trip.
        atime: st.atime.sec.cast_unsigned(),
        mtime: st.mtime.sec.cast_unsigned(),
        ctime: st.ctime.sec.cast_unsigned(),
        atimensec: st.atime.nsec,
        mtimensec: st.mtime.nsec,
        ctimensec: st.ctime.nsec,
        mode: st.mode,
        nlink: st.nlink,
        uid: st.uid,
        gid: st.gid,
        rdev: u32::try_from(st.rdev).unwrap_or(u32::MAX),
        blksize: st.blksize,
        flags: 0,
    }
}

/// Rejects names that are not a single path component.
fn check_name(name: &CStr) -> FsResult<()> {
    let b = name.to_bytes();
    if b.is_empty() || b.contains(&b'/') {
        Err(Errno::EINVAL)
    } else if b.len() > 255 {
        Err(Errno::ENAMETOOLONG)
    } else {
        Ok(())
    }
}

fn is_dot_or_dotdot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

/// A name for something to be created: one component, not `.` or `..` (`EEXIST`).
fn check_new_name(name: &CStr) -> FsResult<()> {
    check_name(name)?;
    if is_dot_or_dotdot(name) {
        Err(Errno::EEXIST)
    } else {
        Ok(())
    }
}

/// A name of something to be removed or moved: one component, not `.` or `..` (`EINVAL`).
fn check_old_name(name: &CStr) -> FsResult<()> {
    check_name(name)?;
    if is_dot_or_dotdot(name) {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

impl Filesystem for PassthroughFs {
    /// With a DAX window: the requests that go through the ledger in a way that can wait —
    /// INIT and DESTROY (release every mapping), SETUPMAPPING (a remap drains the old
    /// mapping), REMOVEMAPPING, and the ones that cut or replace file bytes under the
    /// fence: SETATTR of the size, OPEN and CREATE with O_TRUNC, FALLOCATE that punches,
    /// zeroes, collapses or inserts, COPY_FILE_RANGE.
    fn may_wait(&self, req: &Request<'_>) -> bool {
        if self.dax.is_none() {
            return false;
        }
        let truncates = |flags: u32| flags & libc::O_TRUNC as u32 != 0;
        match req {
            Request::Init { .. }
            | Request::Destroy
            | Request::Setupmapping(_)
            | Request::Removemapping(_)
            | Request::CopyFileRange(_) => true,
            Request::Setattr(a) => a.size.is_some(),
            Request::Open { flags, .. } | Request::Create { flags, .. } => truncates(*flags),
            Request::Fallocate { mode, .. } => file::fallocate_cuts(*mode),
            _ => false,
        }
    }

    /// A SETUPMAPPING or REMOVEMAPPING is tried on the queue's thread first: most find
    /// their chunks free and nothing pinned, and the ledger can tell at once when they do
    /// not (`Ledger::try_map` / `try_unmap`).
    fn try_first(&self, req: &Request<'_>) -> bool {
        self.dax.is_some() && matches!(req, Request::Setupmapping(_) | Request::Removemapping(_))
    }

    fn init(&self, req: InitRequest) -> FsResult<InitReply> {
        let mut want = fl::ATOMIC_O_TRUNC;
        if self.cfg.readdirplus {
            want |= fl::DO_READDIRPLUS | fl::READDIRPLUS_AUTO;
        }
        if self.cfg.writeback {
            want |= fl::WRITEBACK_CACHE;
        }
        if self.cfg.killpriv_v2 {
            want |= fl::HANDLE_KILLPRIV_V2;
        }
        if self.cfg.cache != CachePolicy::Never {
            want |= fl::AUTO_INVAL_DATA;
        }
        // A new session (a guest reboot, the next frontend's guest) sees only what it
        // opens itself: nothing of an earlier session's nodes and handles.
        self.handles.clear();
        self.inodes.clear();
        let mut map_alignment = 0;
        if let Some(window) = &self.dax {
            window.release_all("FUSE_INIT");
            want |= fl::MAP_ALIGNMENT | fl::HAS_INODE_DAX;
            map_alignment = PAGE_SHIFT;
        }
        self.writeback.store(
            req.offered & want & fl::WRITEBACK_CACHE != 0,
            Ordering::Release,
        );
        Ok(InitReply {
            flags: want,
            map_alignment,
        })
    }
    fn destroy(&self) {
        if let Some(window) = &self.dax {
            window.release_all("FUSE_DESTROY");
        }
        self.handles.clear();
        self.inodes.clear();
    }
    fn lookup(&self, _ctx: Context, parent: NodeId, name: &CStr) -> FsResult<Entry> {
        entry::lookup(self, parent, name)
    }
    fn forget(&self, node: NodeId, nlookup: u64) {
        self.inodes.forget(node, nlookup);
    }
    fn getattr(
        &self,
        _ctx: Context,
        node: NodeId,
        fh: Option<Handle>,
    ) -> FsResult<(Attr, Duration)> {
        attr::getattr(self, node, fh)
    }
    fn setattr(&self, _ctx: Context, node: NodeId, a: SetAttr) -> FsResult<(Attr, Duration)> {
        attr::setattr(self, node, a)
    }
    fn readlink(&self, _ctx: Context, node: NodeId) -> FsResult<Vec<u8>> {
        attr::readlink(self, node)
    }
    fn symlink(&self, ctx: Context, target: &CStr, parent: NodeId, name: &CStr) -> FsResult<Entry> {
        entry::symlink(self, ctx, target, parent, name)
    }
    fn mknod(
        &self,
        ctx: Context,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        rdev: u32,
        _umask: u32,
    ) -> FsResult<Entry> {
        entry::mknod(self, ctx, parent, name, mode, rdev)
    }
    fn mkdir(
        &self,
        ctx: Context,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        _umask: u32,
    ) -> FsResult<Entry> {
        entry::mkdir(self, ctx, parent, name, mode)
    }
    fn unlink(&self, _ctx: Context, parent: NodeId, name: &CStr) -> FsResult<()> {
        entry::remove(self, parent, name, 0)
    }
    fn rmdir(&self, _ctx: Context, parent: NodeId, name: &CStr) -> FsResult<()> {
        entry::remove(self, parent, name, libc::AT_REMOVEDIR)
    }
    fn rename(
        &self,
        _ctx: Context,
        olddir: NodeId,
        oldname: &CStr,
        newdir: NodeId,
        newname: &CStr,
        flags: u32,
    ) -> FsResult<()> {
        entry::rename(self, olddir, oldname, newdir, newname, flags)
    }
    fn link(
        &self,
        _ctx: Context,
        node: NodeId,
        newparent: NodeId,
        newname: &CStr,
    ) -> FsResult<Entry> {
        entry::link(self, node, newparent, newname)
    }
    fn open(
        &self,
        _ctx: Context,
        node: NodeId,
        flags: u32,
        kill_suidgid: bool,
    ) -> FsResult<Opened> {
        file::open(self, node, flags, kill_suidgid)
    }
    fn read(
        &self,
        _ctx: Context,
        node: NodeId,
        fh: Handle,
        offset: u64,
        size: u32,
        data: &mut dyn ZeroCopyWriter,
    ) -> FsResult<usize> {
        file::read(self, node, fh, offset, size, data)
    }
    fn write(
        &self,
        _ctx: Context,
        node: NodeId,
        fh: Handle,
        offset: u64,
        data: &mut dyn ZeroCopyReader,
        args: WriteArgs,
    ) -> FsResult<u32> {
        file::write(self, node, fh, offset, data, args)
    }
    fn statfs(&self, _ctx: Context, node: NodeId) -> FsResult<Kstatfs> {
        attr::statfs(self, node)
    }
    fn release(
        &self,
        _ctx: Context,
        node: NodeId,
        fh: Handle,
        _flags: u32,
        _flush: bool,
        _lock_owner: u64,
    ) -> FsResult<()> {
        self.handles.remove(fh, node)
    }
    fn fsync(&self, _ctx: Context, node: NodeId, datasync: bool, fh: Handle) -> FsResult<()> {
        file::fsync(self, node, datasync, fh)
    }
    fn setxattr(
        &self,
        _ctx: Context,
        node: NodeId,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        xattr::setxattr(self, node, name, value, flags)
    }
    fn getxattr(
        &self,
        _ctx: Context,
        node: NodeId,
        name: &CStr,
        size: u32,
    ) -> FsResult<XattrReply> {
        xattr::getxattr(self, node, name, size)
    }
    fn listxattr(&self, _ctx: Context, node: NodeId, size: u32) -> FsResult<XattrReply> {
        xattr::listxattr(self, node, size)
    }
    fn removexattr(&self, _ctx: Context, node: NodeId, name: &CStr) -> FsResult<()> {
        xattr::removexattr(self, node, name)
    }
    fn flush(&self, _ctx: Context, node: NodeId, fh: Handle, _lock_owner: u64) -> FsResult<()> {
        file::flush(self, node, fh)
    }
    fn opendir(&self, _ctx: Context, node: NodeId, _flags: u32) -> FsResult<Opened> {
        dir::opendir(self, node)
    }
    fn readdir(
        &self,
        _ctx: Context,
        node: NodeId,
        fh: Handle,
        offset: u64,
        buf: &mut DirentBuf,
    ) -> FsResult<()> {
        dir::readdir(self, node, fh, offset, buf, false)
    }
    fn readdirplus(
        &self,
        _ctx: Context,
        node: NodeId,
        fh: Handle,
        offset: u64,
        buf: &mut DirentBuf,
    ) -> FsResult<()> {
        dir::readdir(self, node, fh, offset, buf, true)
    }
    fn releasedir(&self, _ctx: Context, node: NodeId, fh: Handle, _flags: u32) -> FsResult<()> {
        self.handles.remove(fh, node)
    }
    fn fsyncdir(&self, _ctx: Context, node: NodeId, datasync: bool, fh: Handle) -> FsResult<()> {
        file::fsync(self, node, datasync, fh)
    }
    fn access(&self, ctx: Context, node: NodeId, mask: u32) -> FsResult<()> {
        attr::access(self, ctx, node, mask)
    }
    fn create(
        &self,
        ctx: Context,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        flags: u32,
        _umask: u32,
        kill_suidgid: bool,
    ) -> FsResult<(Entry, Opened)> {
        file::create(self, ctx, parent, name, mode, flags, kill_suidgid)
    }
    fn fallocate(
        &self,
        _ctx: Context,
        node: NodeId,
        fh: Handle,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> FsResult<()> {
        file::fallocate(self, node, fh, mode, offset, length)
    }
    fn lseek(
        &self,
        _ctx: Context,
        node: NodeId,
        fh: Handle,
        offset: u64,
        whence: u32,
    ) -> FsResult<u64> {
        file::lseek(self, node, fh, offset, whence)
    }
    fn copy_file_range(&self, _ctx: Context, node_in: NodeId, args: CopyRange) -> FsResult<u64> {
        file::copy_file_range(self, node_in, args)
    }
    fn setupmapping(&self, ctx: Context, node: NodeId, args: SetupMapping) -> FsResult<()> {
        match &self.dax {
            Some(window) => window.setup(self, node, args, ctx.no_wait),
            None => Err(Errno::ENOSYS),
        }
    }
    fn removemapping(&self, ctx: Context, ranges: &[RemoveMapping]) -> FsResult<()> {
        match &self.dax {
            Some(window) => window.remove(ranges, ctx.no_wait),
            None => Err(Errno::ENOSYS),
        }
    }
    fn syncfs(&self, _ctx: Context, node: NodeId) -> FsResult<()> {
        file::syncfs(self, node)
    }
    fn tmpfile(
        &self,
        ctx: Context,
        parent: NodeId,
        mode: u32,
        flags: u32,
        _umask: u32,
    ) -> FsResult<(Entry, Opened)> {
        file::tmpfile(self, ctx, parent, mode, flags)
    }
}
