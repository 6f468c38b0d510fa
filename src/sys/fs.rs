//! Thin safe wrappers over the syscalls the passthrough needs. This is the
//! only module of `fs` with `unsafe`; each block says why it is sound.
//!
//! Every wrapper returns the errno of a failure unchanged ([`Errno`]).
//! File descriptors are passed as `BorrowedFd` (they outlive the call) and
//! returned as `OwnedFd` (closed on drop).

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::fuse::{Errno, FsResult};

fn check(ret: libc::c_int) -> FsResult<libc::c_int> {
    if ret < 0 { Err(Errno::last()) } else { Ok(ret) }
}

/// A byte count, or the errno of a failure (a negative return).
fn check_size(ret: isize) -> FsResult<usize> {
    usize::try_from(ret).map_err(|_| Errno::last())
}

fn check_fd(ret: libc::c_int) -> FsResult<OwnedFd> {
    let fd = check(ret)?;
    // SAFETY: `fd` was just returned by the kernel as a new descriptor that
    // nothing else owns; OwnedFd takes sole ownership and closes it once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(2)`; `O_CLOEXEC` is always added.
pub fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: i32, mode: u32) -> FsResult<OwnedFd> {
    // SAFETY: `name` is NUL-terminated and lives across the call; `dir` is an
    // open descriptor borrowed for the call.
    check_fd(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })
}

/// Opens an absolute or cwd-relative path (used once, for the root and /proc).
pub fn open_path(path: &CStr, flags: i32) -> FsResult<OwnedFd> {
    // SAFETY: `path` is NUL-terminated and outlives the call.
    check_fd(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// A timestamp (seconds, nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    /// Seconds since the epoch.
    pub sec: i64,
    /// Nanoseconds.
    pub nsec: u32,
}

/// What `statx(2)` told us about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stat {
    /// Device the file lives on (`makedev` of `stx_dev_major`/`stx_dev_minor`).
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Mount id, or 0 when the kernel did not report one.
    pub mnt_id: u64,
    /// File type and permission bits.
    pub mode: u32,
    /// Number of hard links.
    pub nlink: u32,
    /// Owner's uid.
    pub uid: u32,
    /// Owner's gid.
    pub gid: u32,
    /// Device a device node stands for (`makedev` of `stx_rdev_major`/`stx_rdev_minor`).
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    /// Preferred I/O block size.
    pub blksize: u32,
    /// Last access.
    pub atime: Time,
    /// Last modification of the contents.
    pub mtime: Time,
    /// Last status change.
    pub ctime: Time,
    /// The host file is in the DAX state (`STATX_ATTR_DAX`).
    pub dax: bool,
}

/// `STATX_ATTR_DAX` (linux/stat.h), not in every libc release.
const STATX_ATTR_DAX: u64 = 0x0020_0000;

/// `statx(2)` of `name` in `dir` (use `c""` with `AT_EMPTY_PATH` for `dir` itself).
pub fn statx(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> FsResult<Stat> {
    let mut sx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    let mask = libc::STATX_BASIC_STATS | libc::STATX_MNT_ID;
    // SAFETY: `sx` is a writable statx-sized buffer; `name` is NUL-terminated;
    // `dir` is open for the duration of the call.
    check(unsafe { libc::statx(dir.as_raw_fd(), name.as_ptr(), flags, mask, sx.as_mut_ptr()) })?;
    // SAFETY: statx succeeded and filled the buffer (it was zeroed anyway).
    let s = unsafe { sx.assume_init() };
    let t = |t: libc::statx_timestamp| Time {
        sec: t.tv_sec,
        nsec: t.tv_nsec,
    };
    Ok(Stat {
        dev: libc::makedev(s.stx_dev_major, s.stx_dev_minor),
        ino: s.stx_ino,
        mnt_id: if s.stx_mask & libc::STATX_MNT_ID != 0 {
            s.stx_mnt_id
        } else {
            0
        },
        mode: u32::from(s.stx_mode),
        nlink: s.stx_nlink,
        uid: s.stx_uid,
        gid: s.stx_gid,
        rdev: libc::makedev(s.stx_rdev_major, s.stx_rdev_minor),
        size: s.stx_size,
        blocks: s.stx_blocks,
        blksize: s.stx_blksize,
        atime: t(s.stx_atime),
        mtime: t(s.stx_mtime),
        ctime: t(s.stx_ctime),
        dax: s.stx_attributes_mask & STATX_ATTR_DAX != 0 && s.stx_attributes & STATX_ATTR_DAX != 0,
    })
}

/// `mkdirat(2)`.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> FsResult<()> {
    // SAFETY: NUL-terminated name, borrowed open dir fd.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
}

/// `mknodat(2)`.
pub fn mknodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32, rdev: u64) -> FsResult<()> {
    // SAFETY: NUL-terminated name, borrowed open dir fd.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), mode, rdev) }).map(drop)
}

/// `symlinkat(2)`.
pub fn symlinkat(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> FsResult<()> {
    // SAFETY: both strings NUL-terminated, borrowed open dir fd.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) }).map(drop)
}

/// `linkat(2)`.
pub fn linkat(
    olddir: BorrowedFd<'_>,
    oldname: &CStr,
    newdir: BorrowedFd<'_>,
    newname: &CStr,
    flags: i32,
) -> FsResult<()> {
    // SAFETY: NUL-terminated names, borrowed open dir fds.
    check(unsafe {
        libc::linkat(
            olddir.as_raw_fd(),
            oldname.as_ptr(),
            newdir.as_raw_fd(),
            newname.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

/// `unlinkat(2)`.
pub fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> FsResult<()> {
    // SAFETY: NUL-terminated name, borrowed open dir fd.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) }).map(drop)
}

/// `renameat2(2)`.
pub fn renameat2(
    olddir: BorrowedFd<'_>,
    oldname: &CStr,
    newdir: BorrowedFd<'_>,
    newname: &CStr,
    flags: u32,
) -> FsResult<()> {
    // SAFETY: NUL-terminated names, borrowed open dir fds.
    check(unsafe {
        libc::renameat2(
            olddir.as_raw_fd(),
            oldname.as_ptr(),
            newdir.as_raw_fd(),
            newname.as_ptr(),
            flags,
        )
    })
    .map(drop)
}

/// `readlinkat(2)` of `dir` itself (an O_PATH fd of a symlink) with `c""`, or of `name`.
pub fn readlinkat(dir: BorrowedFd<'_>, name: &CStr) -> FsResult<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `buf` is writable for `buf.len()` bytes; NUL-terminated name.
    let n = check_size(unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })?;
    buf.truncate(n);
    Ok(buf)
}

/// `fchownat(2)`; `None` leaves an id unchanged.
pub fn fchownat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    uid: Option<u32>,
    gid: Option<u32>,
    flags: i32,
) -> FsResult<()> {
    let uid = uid.unwrap_or(u32::MAX);
    let gid = gid.unwrap_or(u32::MAX);
    // SAFETY: NUL-terminated name, borrowed open fd; -1 ids mean "unchanged".
    check(unsafe { libc::fchownat(dir.as_raw_fd(), name.as_ptr(), uid, gid, flags) }).map(drop)
}

/// `fchmodat(2)` (flags 0: the last component is followed, as for a /proc/self/fd magic link).
pub fn fchmodat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> FsResult<()> {
    // SAFETY: NUL-terminated name, borrowed open fd.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode, 0) }).map(drop)
}

/// `fchmod(2)` on an open (non-O_PATH) fd.
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> FsResult<()> {
    // SAFETY: borrowed open fd.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

/// A time to set with `utimensat`: `None` = leave, `Some(None)` = now.
pub type SetTimespec = Option<Option<Time>>;

fn timespec(t: SetTimespec) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(None) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(Some(t)) => libc::timespec {
            tv_sec: t.sec,
            tv_nsec: i64::from(t.nsec),
        },
    }
}

/// `utimensat(2)` (`c""` + `AT_EMPTY_PATH` works on O_PATH fds on current kernels).
pub fn utimensat(
    dir: BorrowedFd<'_>,
    name: &CStr,
    atime: SetTimespec,
    mtime: SetTimespec,
    flags: i32,
) -> FsResult<()> {
    let ts = [timespec(atime), timespec(mtime)];
    // SAFETY: `ts` is a valid two-element array; NUL-terminated name; open fd.
    check(unsafe { libc::utimensat(dir.as_raw_fd(), name.as_ptr(), ts.as_ptr(), flags) }).map(drop)
}

/// `futimens(3)` on an open fd.
pub fn futimens(fd: BorrowedFd<'_>, atime: SetTimespec, mtime: SetTimespec) -> FsResult<()> {
    let ts = [timespec(atime), timespec(mtime)];
    // SAFETY: `ts` is a valid two-element array; open fd.
    check(unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) }).map(drop)
}

fn off(v: u64) -> FsResult<i64> {
    i64::try_from(v).map_err(|_| Errno::EINVAL)
}

/// `ftruncate(2)`.
pub fn ftruncate(fd: BorrowedFd<'_>, size: u64) -> FsResult<()> {
    let size = off(size)?;
    // SAFETY: open fd, in-range length.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), size) }).map(drop)
}

/// `fallocate(2)`.
pub fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: u64, len: u64) -> FsResult<()> {
    let (offset, len) = (off(offset)?, off(len)?);
    // SAFETY: open fd, in-range offsets; the kernel validates the mode.
    check(unsafe { libc::fallocate(fd.as_raw_fd(), mode, offset, len) }).map(drop)
}

/// `lseek(2)`; returns the new offset.
pub fn lseek(fd: BorrowedFd<'_>, offset: u64, whence: i32) -> FsResult<u64> {
    let offset = off(offset)?;
    // SAFETY: open fd; the kernel validates whence.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    // Negative only on failure.
    u64::try_from(r).map_err(|_| Errno::last())
}

/// `copy_file_range(2)` with explicit offsets; returns bytes copied.
pub fn copy_file_range(
    fd_in: BorrowedFd<'_>,
    off_in: u64,
    fd_out: BorrowedFd<'_>,
    off_out: u64,
    len: u64,
    flags: u32,
) -> FsResult<u64> {
    let mut oi = off(off_in)?;
    let mut oo = off(off_out)?;
    let len = usize::try_from(len).map_err(|_| Errno::EINVAL)?;
    // SAFETY: open fds; the offset pointers are valid locals updated by the kernel.
    let r = unsafe {
        libc::copy_file_range(
            fd_in.as_raw_fd(),
            &mut oi,
            fd_out.as_raw_fd(),
            &mut oo,
            len,
            flags,
        )
    };
    check_size(r).map(|n| n as u64)
}

/// `syncfs(2)`.
pub fn syncfs(fd: BorrowedFd<'_>) -> FsResult<()> {
    // SAFETY: open fd.
    check(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
}

/// What `fstatvfs(3)` reports, in FUSE's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatVfs {
    /// Size of the file system in `frsize` units.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks available to unprivileged users.
    pub bavail: u64,
    /// Number of inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// File system block size (`f_bsize`).
    pub bsize: u64,
    /// Fragment size, the unit of `blocks`.
    pub frsize: u64,
    /// Longest file name.
    pub namemax: u64,
}

/// `fstatvfs(3)` (works on O_PATH fds).
pub fn fstatvfs(fd: BorrowedFd<'_>) -> FsResult<StatVfs> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs64>::zeroed();
    // SAFETY: `st` is a writable statvfs64-sized buffer; open fd.
    check(unsafe { libc::fstatvfs64(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: success filled the (zeroed) buffer.
    let s = unsafe { st.assume_init() };
    Ok(StatVfs {
        blocks: s.f_blocks,
        bfree: s.f_bfree,
        bavail: s.f_bavail,
        files: s.f_files,
        ffree: s.f_ffree,
        bsize: s.f_bsize,
        frsize: s.f_frsize,
        namemax: s.f_namemax,
    })
}

/// `pread(2)` of up to `limit - buf.len()` bytes at `offset`, appended to `buf` without
/// initialising its spare capacity first; returns the bytes read (0 at end of file).
pub fn pread_append(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    limit: usize,
    offset: u64,
) -> FsResult<usize> {
    let want = limit.saturating_sub(buf.len());
    buf.reserve(want);
    let off = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
    // SAFETY: the destination is the vector's spare capacity, at least `want` bytes after
    // its initialised length (reserved above); the kernel writes at most `want` bytes there.
    let n = unsafe {
        libc::pread64(
            fd.as_raw_fd(),
            buf.as_mut_ptr().add(buf.len()).cast(),
            want,
            off,
        )
    };
    let n = usize::try_from(n).map_err(|_| Errno::last())?;
    // SAFETY: pread succeeded and initialised exactly `n <= want` bytes past the old length.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// `pwrite(2)` of `buf` at `offset`; returns the bytes written.
pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> FsResult<usize> {
    let off = i64::try_from(offset).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `buf` is readable for `buf.len()` bytes for the whole call; the kernel only
    // reads it.
    let n = unsafe { libc::pwrite64(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), off) };
    check_size(n)
}

/// `getdents64(2)` into `buf`; returns bytes filled (0 at end of directory).
pub fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> FsResult<usize> {
    // SAFETY: `buf` is writable for `buf.len()` bytes; open directory fd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    // Negative only on failure; otherwise at most `buf.len()`.
    usize::try_from(r).map_err(|_| Errno::last())
}

/// Which object an xattr call addresses.
#[derive(Debug, Clone, Copy)]
pub enum XattrTarget<'a> {
    /// An open (non-O_PATH) fd.
    Fd(BorrowedFd<'a>),
    /// A path relative to the calling thread's cwd, followed (a /proc/self/fd magic link).
    Path(&'a CStr),
}

/// `fgetxattr`/`getxattr`; with an empty `buf` returns the size needed.
pub fn getxattr(t: XattrTarget<'_>, name: &CStr, buf: &mut [u8]) -> FsResult<usize> {
    let (p, n) = (buf.as_mut_ptr().cast(), buf.len());
    // SAFETY: `buf` is writable for `n` bytes (n may be 0); names NUL-terminated.
    check_size(unsafe {
        match t {
            XattrTarget::Fd(fd) => libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), p, n),
            XattrTarget::Path(path) => libc::getxattr(path.as_ptr(), name.as_ptr(), p, n),
        }
    })
}

/// `flistxattr`/`listxattr`; with an empty `buf` returns the size needed.
pub fn listxattr(t: XattrTarget<'_>, buf: &mut [u8]) -> FsResult<usize> {
    let (p, n) = (buf.as_mut_ptr().cast(), buf.len());
    // SAFETY: `buf` is writable for `n` bytes; path NUL-terminated.
    check_size(unsafe {
        match t {
            XattrTarget::Fd(fd) => libc::flistxattr(fd.as_raw_fd(), p, n),
            XattrTarget::Path(path) => libc::listxattr(path.as_ptr(), p, n),
        }
    })
}

/// `fsetxattr`/`setxattr`.
pub fn setxattr(t: XattrTarget<'_>, name: &CStr, value: &[u8], flags: i32) -> FsResult<()> {
    let (p, n) = (value.as_ptr().cast(), value.len());
    // SAFETY: `value` is readable for `n` bytes; names NUL-terminated.
    check(unsafe {
        match t {
            XattrTarget::Fd(fd) => libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), p, n, flags),
            XattrTarget::Path(path) => libc::setxattr(path.as_ptr(), name.as_ptr(), p, n, flags),
        }
    })
    .map(drop)
}

/// `fremovexattr`/`removexattr`.
pub fn removexattr(t: XattrTarget<'_>, name: &CStr) -> FsResult<()> {
    // SAFETY: names NUL-terminated; open fd.
    check(unsafe {
        match t {
            XattrTarget::Fd(fd) => libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()),
            XattrTarget::Path(path) => libc::removexattr(path.as_ptr(), name.as_ptr()),
        }
    })
    .map(drop)
}

/// Runs `f` on a short-lived thread whose cwd (and only its cwd: it first
/// unshares `CLONE_FS`) is `dir`. Used for the path-only xattr calls on
/// inodes that cannot be opened (symlinks, device nodes, fifos, sockets).
pub fn with_cwd<R: Send>(
    dir: BorrowedFd<'_>,
    f: impl FnOnce() -> FsResult<R> + Send,
) -> FsResult<R> {
    std::thread::scope(|s| {
        // Builder::spawn_scoped reports a failure to create the thread
        // instead of panicking, so resource exhaustion is an errno.
        let worker = std::thread::Builder::new()
            .name("xattr-cwd".into())
            .spawn_scoped(s, || {
                // SAFETY: unshare(CLONE_FS) only detaches this new thread's fs
                // attributes (cwd, root, umask) from the rest of the process.
                check(unsafe { libc::unshare(libc::CLONE_FS) })?;
                // SAFETY: borrowed open directory fd; affects this thread only now.
                check(unsafe { libc::fchdir(dir.as_raw_fd()) })?;
                f()
            });
        match worker {
            Ok(w) => w.join().unwrap_or(Err(Errno::EIO)),
            Err(e) => Err(e.into()),
        }
    })
}

/// The effective uid of the process.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Sets the process umask, returning the old one.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask has no preconditions and cannot fail.
    unsafe { libc::umask(mask) }
}

/// `setfsuid(2)` for the calling thread only (raw syscall, no glibc
/// broadcast); returns the previous fsuid. `u32::MAX` only queries.
pub fn setfsuid(uid: u32) -> u32 {
    // SAFETY: setfsuid takes a plain integer and affects only this thread.
    id_result(unsafe { libc::syscall(libc::SYS_setfsuid, uid) })
}

/// `setfsgid(2)` for the calling thread only; returns the previous fsgid.
pub fn setfsgid(gid: u32) -> u32 {
    // SAFETY: setfsgid takes a plain integer and affects only this thread.
    id_result(unsafe { libc::syscall(libc::SYS_setfsgid, gid) })
}

/// The previous id setfsuid/setfsgid return: a `uid_t`, zero-extended, so it always fits.
/// These calls report no errors; were one to return -1, it reads as `u32::MAX` (the
/// invalid id), as the truncating cast this replaces did.
fn id_result(ret: libc::c_long) -> u32 {
    u32::try_from(ret).unwrap_or(u32::MAX)
}

/// The decimal name of `fd` in /proc/self/fd, NUL-terminated.
pub fn fd_name(fd: RawFd) -> std::ffi::CString {
    // A decimal number never contains NUL.
    std::ffi::CString::new(fd.to_string()).unwrap_or_default()
}

/// Clears `O_NONBLOCK` on an open fd (used after a non-blocking open that
/// could otherwise have hung on a fifo).
pub fn clear_nonblock(fd: BorrowedFd<'_>) -> FsResult<()> {
    // SAFETY: F_GETFL/F_SETFL on a borrowed open fd with integer arguments.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) })
        .map(drop)
}

/// Largest file handle the kernel hands out (`MAX_HANDLE_SZ`, linux/exportfs.h).
const MAX_HANDLE_SZ: usize = 128;
/// The same, as `struct file_handle` counts it.
const MAX_HANDLE_BYTES: libc::c_uint = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct RawFileHandle {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// A file handle (`name_to_handle_at(2)`): the filesystem's own name for an inode, valid
/// for as long as the inode exists, whatever its names. Only its used bytes are kept
/// (8 to 24 on ext4, xfs, btrfs and tmpfs), so a million of them stay small.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileHandle {
    handle_type: i32,
    bytes: Box<[u8]>,
}

/// `name_to_handle_at(fd, "", AT_EMPTY_PATH)`: the handle of the file `fd` itself (an
/// `O_PATH` descriptor will do) and the id of the mount it was reached through.
/// `EOPNOTSUPP`: the filesystem cannot export handles; `EOVERFLOW`: a handle larger than
/// `MAX_HANDLE_SZ` (neither changes for the life of the file).
pub fn name_to_handle(fd: BorrowedFd<'_>) -> FsResult<(FileHandle, u64)> {
    let mut raw = RawFileHandle {
        handle_bytes: MAX_HANDLE_BYTES,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `raw` is a `struct file_handle` whose `handle_bytes` says how much room
    // follows it (MAX_HANDLE_SZ bytes, which it has); `mount_id` is a writable int; the
    // empty name is NUL-terminated; `fd` is open for the call.
    check(unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            std::ptr::from_mut(&mut raw).cast::<libc::file_handle>(),
            &raw mut mount_id,
            libc::AT_EMPTY_PATH,
        )
    })?;
    let len = usize::try_from(raw.handle_bytes)
        .unwrap_or(MAX_HANDLE_SZ)
        .min(MAX_HANDLE_SZ);
    let handle = FileHandle {
        handle_type: raw.handle_type,
        bytes: raw.f_handle[..len].into(),
    };
    // A mount id is a non-negative int.
    Ok((handle, u64::try_from(mount_id).unwrap_or(0)))
}

/// `open_by_handle_at(2)`: opens the inode `handle` names on the filesystem `mount` is
/// on (`mount` must not be an `O_PATH` descriptor). Needs `CAP_DAC_READ_SEARCH`
/// (`EPERM` without); `ESTALE` when the inode is gone. `O_CLOEXEC` is always added.
pub fn open_by_handle(mount: BorrowedFd<'_>, handle: &FileHandle, flags: i32) -> FsResult<OwnedFd> {
    let mut raw = RawFileHandle {
        // At most MAX_HANDLE_SZ (128): fits.
        handle_bytes: libc::c_uint::try_from(handle.bytes.len()).unwrap_or(0),
        handle_type: handle.handle_type,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    raw.f_handle[..handle.bytes.len()].copy_from_slice(&handle.bytes);
    // SAFETY: `raw` is a complete `struct file_handle` (`handle_bytes` of its bytes
    // follow it), which the kernel only reads; `mount` is open for the call.
    check_fd(unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            std::ptr::from_mut(&mut raw).cast::<libc::file_handle>(),
            flags | libc::O_CLOEXEC,
        )
    })
}
