//! The `Filesystem` trait: what the server asks of a filesystem, one method
//! per FUSE operation, with arguments already decoded and validated.
//!
//! Every method has a default that answers `ENOSYS`, so an implementation
//! only writes what it supports; Linux disables most optional operations for
//! the connection after a first `ENOSYS`.
//!
//! # Lookup counts
//!
//! Every successful reply that carries a [`Entry`] with a non-zero node id
//! (LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, CREATE, TMPFILE, and each non-`.`/`..`
//! entry of READDIRPLUS) gives the kernel one more reference on that node.
//! The kernel gives them back with FORGET / BATCH_FORGET (`nlookup` at a
//! time). A node id must stay valid, and must keep meaning the same inode,
//! until its count drops to zero; it may then be reused. The root
//! ([`crate::fuse::abi::ROOT_ID`]) is never forgotten. An operation that
//! fails must not change any count.
//!
//! # Handles
//!
//! OPEN, CREATE, TMPFILE and OPENDIR return a handle that the kernel passes
//! back on I/O and finally on RELEASE / RELEASEDIR; each open gets its own.

use std::ffi::CStr;
use std::time::Duration;

use super::abi::{Attr, Kstatfs};
use super::decode::Request;
use super::error::{Errno, FsResult};
use super::payload::{ZeroCopyReader, ZeroCopyWriter};
use super::reply::DirentBuf;

/// Who sent a request (from `fuse_in_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// Caller's fsuid in the guest.
    pub uid: u32,
    /// Caller's fsgid in the guest.
    pub gid: u32,
    /// Caller's thread group id in the guest.
    pub pid: u32,
    /// A supplementary group of the caller the kernel sent with a creation
    /// (`FUSE_EXT_GROUPS`, once `FUSE_CREATE_SUPP_GROUP` is granted): the parent
    /// directory's group, which the caller is in through its supplementary groups only.
    pub supp_gid: Option<u32>,
    /// The request is served where it must not wait (its queue's own thread, after
    /// [`Filesystem::try_first`] said so): a method that would wait answers
    /// [`Errno::WOULD_WAIT`] at once instead, having changed nothing the guest can see, and
    /// the request is served again where it may wait.
    pub no_wait: bool,
}

/// A FUSE node id (the kernel's name for one of our inodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

/// A file or directory handle returned by an open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u64);

/// Reply to an operation that names a node (`fuse_entry_out`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Node id; 0 means a negative entry (cached absence, no lookup count).
    pub nodeid: NodeId,
    /// Generation number (node id, generation) must be unique over the fs's lifetime.
    pub generation: u64,
    /// Attributes of the node.
    pub attr: Attr,
    /// How long the kernel may cache the name.
    pub entry_timeout: Duration,
    /// How long the kernel may cache the attributes.
    pub attr_timeout: Duration,
}

/// Reply to OPEN / OPENDIR / CREATE / TMPFILE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    /// The new handle.
    pub fh: Handle,
    /// `FOPEN_*` bits.
    pub open_flags: u32,
}

/// A time to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// The host's current time (`FATTR_*TIME_NOW`).
    Now,
    /// An explicit time.
    At {
        /// Seconds since the epoch.
        sec: i64,
        /// Nanoseconds (< 1e9).
        nsec: u32,
    },
}

/// Decoded SETATTR: each field is `Some` only if its `FATTR_*` bit was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetAttr {
    /// Handle the change is made through (`FATTR_FH`).
    pub fh: Option<Handle>,
    /// New permission bits (file type bits are ignored).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// Clear suid, and sgid if group-executable (`FATTR_KILL_SUIDGID`).
    pub kill_suidgid: bool,
}

/// Extra arguments of WRITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteArgs {
    /// Write comes from the page cache (`FUSE_WRITE_CACHE`).
    pub from_cache: bool,
    /// Clear suid, and sgid if group-executable (`FUSE_WRITE_KILL_SUIDGID`).
    pub kill_suidgid: bool,
    /// Open flags of the file (`fuse_write_in.flags`).
    pub flags: u32,
}

/// Reply to GETXATTR / LISTXATTR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrReply {
    /// The caller asked for the size only (size 0 in the request).
    Size(u32),
    /// The value (or NUL-separated name list).
    Data(Vec<u8>),
}

/// Access requested by SETUPMAPPING.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingFlags {
    /// `FUSE_SETUPMAPPING_FLAG_READ`.
    pub read: bool,
    /// `FUSE_SETUPMAPPING_FLAG_WRITE`.
    pub write: bool,
}

/// Decoded, validated SETUPMAPPING: `foffset + len` and `moffset + len` do
/// not overflow, `len > 0`, no unknown flag bits. Window bounds are the
/// implementation's to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupMapping {
    /// Handle, or `None` when the kernel sent `fh = -1` (resolve by node id).
    pub fh: Option<Handle>,
    /// Offset in the file.
    pub foffset: u64,
    /// Length of the range.
    pub len: u64,
    /// Offset in the DAX window.
    pub moffset: u64,
    /// Access wanted.
    pub flags: MappingFlags,
}

/// One range of REMOVEMAPPING (`moffset + len` does not overflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoveMapping {
    /// Offset in the DAX window.
    pub moffset: u64,
    /// Length of the range.
    pub len: u64,
}

/// What the kernel offered in INIT, and what the filesystem wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRequest {
    /// Protocol minor that will be used (min of kernel's and ours).
    pub minor: u32,
    /// Flags the kernel offered that the server knows how to carry (`flags | flags2 << 32`).
    pub offered: u64,
}

/// What the filesystem grants in INIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InitReply {
    /// Flags wanted, a subset of [`InitRequest::offered`].
    pub flags: u64,
    /// log2 of the DAX mapping alignment, sent only with `FUSE_MAP_ALIGNMENT`.
    pub map_alignment: u16,
}

/// A POSIX lock (`fuse_file_lock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLock {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive), `u64::MAX` for EOF.
    pub end: u64,
    /// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub typ: u32,
    /// Owner's pid.
    pub pid: u32,
}

/// Decoded GETLK / SETLK / SETLKW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockArgs {
    /// Handle of the open file.
    pub fh: Handle,
    /// Lock owner cookie.
    pub owner: u64,
    /// The lock.
    pub lock: FileLock,
    /// `FUSE_LK_FLOCK`: a BSD flock rather than a POSIX lock.
    pub flock: bool,
}

/// Decoded COPY_FILE_RANGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyRange {
    /// Source handle.
    pub fh_in: Handle,
    /// Source offset.
    pub off_in: u64,
    /// Destination node.
    pub node_out: NodeId,
    /// Destination handle.
    pub fh_out: Handle,
    /// Destination offset.
    pub off_out: u64,
    /// Bytes to copy.
    pub len: u64,
    /// Flags (must be 0 for copy_file_range(2)).
    pub flags: u64,
}

/// A filesystem served over FUSE. All methods take `&self`: the server calls
/// them concurrently from several queue threads.
#[allow(unused_variables)]
pub trait Filesystem: Send + Sync {
    /// Whether serving `req` may wait (for pins to drain, for a release): such requests
    /// are served off the queue's thread so the queue keeps going. Must be true for every
    /// request whose handling can wait; the default, for a filesystem that never waits,
    /// is false.
    fn may_wait(&self, req: &Request<'_>) -> bool {
        let _ = req;
        false
    }
    /// Whether `req`, one that may wait, is worth trying first where it must not (with
    /// [`Context::no_wait`]): true when its method can tell at once that it would wait, and
    /// then changes nothing, and often does not have to (a SETUPMAPPING of a free range).
    /// It is then spared the hand-off to a worker. The default is false.
    fn try_first(&self, req: &Request<'_>) -> bool {
        let _ = req;
        false
    }
    /// INIT: return the subset of `req.offered` the filesystem implements
    /// (anything else is masked off). The server adds the flags it handles itself.
    fn init(&self, req: InitRequest) -> FsResult<InitReply> {
        Ok(InitReply::default())
    }
    /// DESTROY: the session ends; drop all nodes (but the root) and handles.
    fn destroy(&self) {}
    /// LOOKUP `name` in `parent`; success adds one lookup count.
    fn lookup(&self, ctx: Context, parent: NodeId, name: &CStr) -> FsResult<Entry> {
        Err(Errno::ENOSYS)
    }
    /// FORGET: drop `nlookup` lookup counts of `node`. No reply.
    fn forget(&self, node: NodeId, nlookup: u64) {}
    /// BATCH_FORGET: as [`Filesystem::forget`] for each pair.
    fn batch_forget(&self, nodes: &[(NodeId, u64)]) {
        for &(n, c) in nodes {
            self.forget(n, c);
        }
    }
    /// GETATTR, through `fh` if given. Returns attributes and their timeout.
    fn getattr(
        &self,
        ctx: Context,
        node: NodeId,
        fh: Option<Handle>,
    ) -> FsResult<(Attr, Duration)> {
        Err(Errno::ENOSYS)
    }
    /// SETATTR. Returns the new attributes and their timeout.
    fn setattr(&self, ctx: Context, node: NodeId, attr: SetAttr) -> FsResult<(Attr, Duration)> {
        Err(Errno::ENOSYS)
    }
    /// READLINK: the link's target bytes.
    fn readlink(&self, ctx: Context, node: NodeId) -> FsResult<Vec<u8>> {
        Err(Errno::ENOSYS)
    }
    /// SYMLINK `name` -> `target` in `parent`.
    fn symlink(&self, ctx: Context, target: &CStr, parent: NodeId, name: &CStr) -> FsResult<Entry> {
        Err(Errno::ENOSYS)
    }
    /// MKNOD `name` in `parent`.
    fn mknod(
        &self,
        ctx: Context,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    ) -> FsResult<Entry> {
        Err(Errno::ENOSYS)
    }
    /// MKDIR `name` in `parent`.
    fn mkdir(
        &self,
        ctx: Context,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        umask: u32,
    ) -> FsResult<Entry> {
        Err(Errno::ENOSYS)
    }
    /// UNLINK `name` in `parent`.
    fn unlink(&self, ctx: Context, parent: NodeId, name: &CStr) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// RMDIR `name` in `parent`.
    fn rmdir(&self, ctx: Context, parent: NodeId, name: &CStr) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// RENAME / RENAME2 (`flags`: `RENAME_NOREPLACE`, `RENAME_EXCHANGE`, ...).
    fn rename(
        &self,
        ctx: Context,
        olddir: NodeId,
        oldname: &CStr,
        newdir: NodeId,
        newname: &CStr,
        flags: u32,
    ) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// LINK `node` as `newname` in `newparent`.
    fn link(
        &self,
        ctx: Context,
        node: NodeId,
        newparent: NodeId,
        newname: &CStr,
    ) -> FsResult<Entry> {
        Err(Errno::ENOSYS)
    }
    /// OPEN with open(2) `flags`; `kill_suidgid` from `FUSE_OPEN_KILL_SUIDGID`.
    fn open(&self, ctx: Context, node: NodeId, flags: u32, kill_suidgid: bool) -> FsResult<Opened> {
        Err(Errno::ENOSYS)
    }
    /// READ at most `size` bytes at `offset` into `data` (never more than its room; the
    /// server has already bounded `size` by it); returns the bytes read, fewer than `size`
    /// only at end of file.
    fn read(
        &self,
        ctx: Context,
        node: NodeId,
        fh: Handle,
        offset: u64,
        size: u32,
        data: &mut dyn ZeroCopyWriter,
    ) -> FsResult<usize> {
        Err(Errno::ENOSYS)
    }
    /// WRITE the bytes of `data` (all that remain in it, at most `MAX_WRITE`) at `offset`;
    /// returns bytes written.
    fn write(
        &self,
        ctx: Context,
        node: NodeId,
        fh: Handle,
        offset: u64,
        data: &mut dyn ZeroCopyReader,
        args: WriteArgs,
    ) -> FsResult<u32> {
        Err(Errno::ENOSYS)
    }
    /// STATFS of the filesystem holding `node`.
    fn statfs(&self, ctx: Context, node: NodeId) -> FsResult<Kstatfs> {
        Err(Errno::ENOSYS)
    }
    /// RELEASE: the last reference to an open file is gone.
    fn release(
        &self,
        ctx: Context,
        node: NodeId,
        fh: Handle,
        flags: u32,
        flush: bool,
        lock_owner: u64,
    ) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// FSYNC (`datasync`: fdatasync only).
    fn fsync(&self, ctx: Context, node: NodeId, datasync: bool, fh: Handle) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// SETXATTR.
    fn setxattr(
        &self,
        ctx: Context,
        node: NodeId,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// GETXATTR; `size == 0` asks for the size only.
    fn getxattr(&self, ctx: Context, node: NodeId, name: &CStr, size: u32) -> FsResult<XattrReply> {
        Err(Errno::ENOSYS)
    }
    /// LISTXATTR; `size == 0` asks for the size only.
    fn listxattr(&self, ctx: Context, node: NodeId, size: u32) -> FsResult<XattrReply> {
        Err(Errno::ENOSYS)
    }
    /// REMOVEXATTR.
    fn removexattr(&self, ctx: Context, node: NodeId, name: &CStr) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// FLUSH: a close(2) of one file descriptor of the open file.
    fn flush(&self, ctx: Context, node: NodeId, fh: Handle, lock_owner: u64) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// OPENDIR.
    fn opendir(&self, ctx: Context, node: NodeId, flags: u32) -> FsResult<Opened> {
        Err(Errno::ENOSYS)
    }
    /// READDIR from `offset` (a cookie from a previous entry, 0 = start) into `buf`.
    fn readdir(
        &self,
        ctx: Context,
        node: NodeId,
        fh: Handle,
        offset: u64,
        buf: &mut DirentBuf,
    ) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// READDIRPLUS: as READDIR, each entry other than `.`/`..` also looked up
    /// (adding a lookup count) — only once it is known to fit ([`DirentBuf::fits_plus`]).
    fn readdirplus(
        &self,
        ctx: Context,
        node: NodeId,
        fh: Handle,
        offset: u64,
        buf: &mut DirentBuf,
    ) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// RELEASEDIR.
    fn releasedir(&self, ctx: Context, node: NodeId, fh: Handle, flags: u32) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// FSYNCDIR.
    fn fsyncdir(&self, ctx: Context, node: NodeId, datasync: bool, fh: Handle) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// GETLK.
    fn getlk(&self, ctx: Context, node: NodeId, args: LockArgs) -> FsResult<FileLock> {
        Err(Errno::ENOSYS)
    }
    /// SETLK / SETLKW (`sleep`: wait for the lock).
    fn setlk(&self, ctx: Context, node: NodeId, args: LockArgs, sleep: bool) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// ACCESS with access(2) `mask`.
    fn access(&self, ctx: Context, node: NodeId, mask: u32) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// CREATE and open `name` in `parent`.
    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        ctx: Context,
        parent: NodeId,
        name: &CStr,
        mode: u32,
        flags: u32,
        umask: u32,
        kill_suidgid: bool,
    ) -> FsResult<(Entry, Opened)> {
        Err(Errno::ENOSYS)
    }
    /// INTERRUPT of request `unique` (best effort; no reply is sent).
    fn interrupt(&self, unique: u64) {}
    /// FALLOCATE with fallocate(2) `mode`.
    fn fallocate(
        &self,
        ctx: Context,
        node: NodeId,
        fh: Handle,
        mode: u32,
        offset: u64,
        length: u64,
    ) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// LSEEK (`whence`: SEEK_SET/CUR/END/DATA/HOLE); returns the new offset.
    fn lseek(
        &self,
        ctx: Context,
        node: NodeId,
        fh: Handle,
        offset: u64,
        whence: u32,
    ) -> FsResult<u64> {
        Err(Errno::ENOSYS)
    }
    /// COPY_FILE_RANGE from `node_in`; returns bytes copied.
    fn copy_file_range(&self, ctx: Context, node_in: NodeId, args: CopyRange) -> FsResult<u64> {
        Err(Errno::ENOSYS)
    }
    /// SYNCFS of the filesystem holding `node`.
    fn syncfs(&self, ctx: Context, node: NodeId) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// TMPFILE: an unnamed file in directory `parent`, opened.
    fn tmpfile(
        &self,
        ctx: Context,
        parent: NodeId,
        mode: u32,
        flags: u32,
        umask: u32,
    ) -> FsResult<(Entry, Opened)> {
        Err(Errno::ENOSYS)
    }
    /// SETUPMAPPING: map a file range of `node` into the DAX window.
    /// `ENOSYS` until the DAX ledger implements it.
    fn setupmapping(&self, ctx: Context, node: NodeId, args: SetupMapping) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
    /// REMOVEMAPPING: unmap window ranges (at most `REMOVEMAPPING_MAX_ENTRY`).
    /// `ENOSYS` until the DAX ledger implements it.
    fn removemapping(&self, ctx: Context, ranges: &[RemoveMapping]) -> FsResult<()> {
        Err(Errno::ENOSYS)
    }
}
