//! Extended attributes: SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR.
//!
//! Regular files and directories are opened and use the f*xattr calls.
//! Other inodes (symlinks, fifos, sockets, devices) cannot be opened safely,
//! so their calls go by path through the inode's /proc/self/fd magic link,
//! from a helper thread whose private cwd is /proc/self/fd.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd};

use super::PassthroughFs;
use super::inode::InodeData;
use super::sys::{self, XattrTarget};
use crate::fuse::filesystem::XattrReply;
use crate::fuse::{Errno, FsResult, NodeId};

fn enabled(fs: &PassthroughFs) -> FsResult<()> {
    if fs.cfg.xattr {
        Ok(())
    } else {
        Err(Errno::ENOSYS)
    }
}

fn on_inode<R: Send>(
    fs: &PassthroughFs,
    inode: &InodeData,
    f: impl Fn(XattrTarget<'_>) -> FsResult<R> + Send + Sync,
) -> FsResult<R> {
    if inode.is_dir() || inode.is_reg() {
        let flags = if inode.is_dir() {
            libc::O_RDONLY | libc::O_DIRECTORY
        } else {
            libc::O_RDONLY | libc::O_NONBLOCK
        };
        let file = fs.reopen(inode, flags)?;
        f(XattrTarget::Fd(file.as_fd()))
    } else {
        let held = inode.path_fd()?;
        let name = sys::fd_name(held.as_raw_fd());
        sys::with_cwd(fs.proc_fd(), || f(XattrTarget::Path(&name)))
    }
}

/// SETXATTR.
pub(super) fn setxattr(
    fs: &PassthroughFs,
    node: NodeId,
    name: &CStr,
    value: &[u8],
    flags: u32,
) -> FsResult<()> {
    enabled(fs)?;
    fs.check_writable()?;
    let flags = i32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    let inode = fs.inodes.get(node)?;
    on_inode(fs, &inode, |t| sys::setxattr(t, name, value, flags))
}

/// GETXATTR (`size` 0: size only).
pub(super) fn getxattr(
    fs: &PassthroughFs,
    node: NodeId,
    name: &CStr,
    size: u32,
) -> FsResult<XattrReply> {
    enabled(fs)?;
    let inode = fs.inodes.get(node)?;
    on_inode(fs, &inode, |t| {
        if size == 0 {
            let n = sys::getxattr(t, name, &mut [])?;
            return Ok(XattrReply::Size(u32::try_from(n).unwrap_or(u32::MAX)));
        }
        let mut buf = vec![0u8; size as usize];
        let n = sys::getxattr(t, name, &mut buf)?;
        buf.truncate(n);
        Ok(XattrReply::Data(buf))
    })
}

/// LISTXATTR (`size` 0: size only).
pub(super) fn listxattr(fs: &PassthroughFs, node: NodeId, size: u32) -> FsResult<XattrReply> {
    enabled(fs)?;
    let inode = fs.inodes.get(node)?;
    on_inode(fs, &inode, |t| {
        if size == 0 {
            let n = sys::listxattr(t, &mut [])?;
            return Ok(XattrReply::Size(u32::try_from(n).unwrap_or(u32::MAX)));
        }
        let mut buf = vec![0u8; size as usize];
        let n = sys::listxattr(t, &mut buf)?;
        buf.truncate(n);
        Ok(XattrReply::Data(buf))
    })
}

/// REMOVEXATTR.
pub(super) fn removexattr(fs: &PassthroughFs, node: NodeId, name: &CStr) -> FsResult<()> {
    enabled(fs)?;
    fs.check_writable()?;
    let inode = fs.inodes.get(node)?;
    on_inode(fs, &inode, |t| sys::removexattr(t, name))
}
