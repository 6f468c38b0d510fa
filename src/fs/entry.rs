//! Operations on names: LOOKUP, MKNOD, MKDIR, SYMLINK, LINK, UNLINK, RMDIR, RENAME.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd};

use super::{PassthroughFs, check_name, check_new_name, check_old_name, stat_fd, sys};
use crate::fuse::abi::ROOT_ID;
use crate::fuse::{Context, Entry, Errno, FsResult, NodeId};

/// LOOKUP. `.` is the parent itself; `..` of the root is the root, so the
/// guest cannot climb out of the shared directory.
pub(super) fn lookup(fs: &PassthroughFs, parent: NodeId, name: &CStr) -> FsResult<Entry> {
    check_name(name)?;
    let p = fs.inodes.get(parent)?;
    if !p.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let same = match name.to_bytes() {
        b"." => Some(parent),
        b".." if parent.0 == ROOT_ID => Some(parent),
        _ => None,
    };
    match same {
        Some(id) => {
            let st = stat_fd(&p.path_fd()?)?;
            let inode = fs.inodes.add_lookup_existing(id)?;
            Ok(fs.entry_for(&inode, &st))
        }
        None => fs.do_lookup(&p, name),
    }
}

/// MKDIR, as the caller.
pub(super) fn mkdir(
    fs: &PassthroughFs,
    ctx: Context,
    parent: NodeId,
    name: &CStr,
    mode: u32,
) -> FsResult<Entry> {
    fs.check_writable()?;
    check_new_name(name)?;
    let p = fs.inodes.get(parent)?;
    fs.inodes.check_room()?;
    {
        // Opened before the switch: a switched fsuid has no CAP_DAC_READ_SEARCH, which
        // opening by handle needs.
        let dir = p.path_fd()?;
        let _creds = fs.creds(ctx)?;
        sys::mkdirat(dir.as_fd(), name, mode & 0o7777)?;
    }
    fs.do_lookup(&p, name)
}

/// MKNOD of regular files, fifos and sockets; device nodes only when allowed.
pub(super) fn mknod(
    fs: &PassthroughFs,
    ctx: Context,
    parent: NodeId,
    name: &CStr,
    mode: u32,
    rdev: u32,
) -> FsResult<Entry> {
    fs.check_writable()?;
    check_new_name(name)?;
    match mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK => {}
        libc::S_IFCHR | libc::S_IFBLK if fs.cfg.allow_device_nodes => {}
        libc::S_IFCHR | libc::S_IFBLK => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    }
    let p = fs.inodes.get(parent)?;
    fs.inodes.check_room()?;
    {
        // Opened before the switch: a switched fsuid has no CAP_DAC_READ_SEARCH, which
        // opening by handle needs.
        let dir = p.path_fd()?;
        let _creds = fs.creds(ctx)?;
        // FUSE carries the kernel's 32-bit dev encoding, which matches the
        // low bits of glibc's dev_t for every real major/minor.
        sys::mknodat(dir.as_fd(), name, mode, u64::from(rdev))?;
    }
    fs.do_lookup(&p, name)
}

/// SYMLINK: the target is stored as given and never resolved by the daemon.
pub(super) fn symlink(
    fs: &PassthroughFs,
    ctx: Context,
    target: &CStr,
    parent: NodeId,
    name: &CStr,
) -> FsResult<Entry> {
    fs.check_writable()?;
    check_new_name(name)?;
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    let p = fs.inodes.get(parent)?;
    fs.inodes.check_room()?;
    {
        // Opened before the switch: a switched fsuid has no CAP_DAC_READ_SEARCH, which
        // opening by handle needs.
        let dir = p.path_fd()?;
        let _creds = fs.creds(ctx)?;
        sys::symlinkat(target, dir.as_fd(), name)?;
    }
    fs.do_lookup(&p, name)
}

/// LINK: a new name for `node`; the reply names the same node id.
pub(super) fn link(
    fs: &PassthroughFs,
    node: NodeId,
    newparent: NodeId,
    newname: &CStr,
) -> FsResult<Entry> {
    fs.check_writable()?;
    check_new_name(newname)?;
    let inode = fs.inodes.get(node)?;
    let p = fs.inodes.get(newparent)?;
    // linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; following the
    // /proc/self/fd magic link reaches the inode itself (even a symlink).
    let held = inode.path_fd()?;
    let procname = sys::fd_name(held.as_raw_fd());
    sys::linkat(
        fs.proc_fd(),
        &procname,
        p.path_fd()?.as_fd(),
        newname,
        libc::AT_SYMLINK_FOLLOW,
    )?;
    fs.do_lookup(&p, newname)
}

/// UNLINK (`flags` 0) or RMDIR (`AT_REMOVEDIR`).
pub(super) fn remove(fs: &PassthroughFs, parent: NodeId, name: &CStr, flags: i32) -> FsResult<()> {
    fs.check_writable()?;
    check_old_name(name)?;
    let p = fs.inodes.get(parent)?;
    sys::unlinkat(p.path_fd()?.as_fd(), name, flags)
}

/// RENAME / RENAME2.
pub(super) fn rename(
    fs: &PassthroughFs,
    olddir: NodeId,
    oldname: &CStr,
    newdir: NodeId,
    newname: &CStr,
    flags: u32,
) -> FsResult<()> {
    fs.check_writable()?;
    check_old_name(oldname)?;
    check_old_name(newname)?;
    let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE | libc::RENAME_WHITEOUT;
    if flags & !known != 0 {
        return Err(Errno::EINVAL);
    }
    let od = fs.inodes.get(olddir)?;
    let nd = fs.inodes.get(newdir)?;
    sys::renameat2(
        od.path_fd()?.as_fd(),
        oldname,
        nd.path_fd()?.as_fd(),
        newname,
        flags,
    )
}
