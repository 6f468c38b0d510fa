//! Attribute operations: GETATTR, SETATTR, READLINK, STATFS, ACCESS, and
//! clearing suid/sgid for HANDLE_KILLPRIV_V2.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use super::inode::InodeData;
use super::sys::{self, SetTimespec, Time};
use super::{PassthroughFs, stat_fd};
use crate::fuse::abi::{Attr, Kstatfs};
use crate::fuse::filesystem::{SetAttr, SetTime};
use crate::fuse::{Context, Errno, FsResult, Handle, NodeId};

/// GETATTR, through the handle when one is given.
pub(super) fn getattr(
    fs: &PassthroughFs,
    node: NodeId,
    fh: Option<Handle>,
) -> FsResult<(Attr, Duration)> {
    let st = match fh {
        Some(fh) => stat_fd(&fs.handles.get(fh, node)?.file)?,
        None => stat_fd(&fs.inodes.get(node)?.path_fd()?)?,
    };
    Ok((fs.attr_of(&st), fs.timeout()))
}

fn set_time(t: Option<SetTime>) -> SetTimespec {
    t.map(|t| match t {
        SetTime::Now => None,
        SetTime::At { sec, nsec } => Some(Time { sec, nsec }),
    })
}

/// Clears suid, and sgid when group-executable, as the kernel does for an
/// unprivileged writer (the daemon, as root, would otherwise keep them).
pub(super) fn kill_suidgid(fs: &PassthroughFs, inode: &InodeData) -> FsResult<()> {
    let held = inode.path_fd()?;
    let mode = stat_fd(&held)?.mode & 0o7777;
    let mut new = mode & !libc::S_ISUID;
    if mode & libc::S_IXGRP != 0 {
        new &= !libc::S_ISGID;
    }
    if new != mode {
        sys::fchmodat(fs.proc_fd(), &sys::fd_name(held.as_raw_fd()), new)?;
    }
    Ok(())
}

/// SETATTR: mode, owner, size, times — in that order, each through the
/// handle when one is given, else through the inode's O_PATH descriptor.
pub(super) fn setattr(fs: &PassthroughFs, node: NodeId, a: SetAttr) -> FsResult<(Attr, Duration)> {
    fs.check_writable()?;
    let inode = fs.inodes.get(node)?;
    let handle = a.fh.map(|fh| fs.handles.get(fh, node)).transpose()?;
    let held = inode.path_fd()?;
    let procname = sys::fd_name(held.as_raw_fd());
    // A change of size may have to wait for pins (EBUSY) or be refused by the window
    // (EIO): both are decided before anything changes, so a failed SETATTR changed nothing.
    let _fence = match a.size {
        Some(size) => {
            if inode.is_dir() {
                return Err(Errno::EISDIR);
            }
            if handle.is_none() && !inode.is_reg() {
                return Err(Errno::EINVAL);
            }
            let fence = fs.fence_cut(&inode.key, size, None)?;
            fs.check_resize(&inode.key, size)?;
            fence
        }
        None => None,
    };

    if let Some(mode) = a.mode {
        match &handle {
            Some(h) => sys::fchmod(h.file.as_fd(), mode & 0o7777)?,
            None => sys::fchmodat(fs.proc_fd(), &procname, mode & 0o7777)?,
        }
    }
    if a.uid.is_some() || a.gid.is_some() {
        sys::fchownat(
            held.as_fd(),
            c"",
            a.uid,
            a.gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )?;
    }
    if let Some(size) = a.size {
        // Pins on mapped chunks past the new end were waited out above (the fence); the
        // guest's mappings stay.
        match &handle {
            Some(h) => sys::ftruncate(h.file.as_fd(), size)?,
            None => sys::ftruncate(
                fs.reopen(&inode, libc::O_WRONLY | libc::O_NONBLOCK)?
                    .as_fd(),
                size,
            )?,
        }
        fs.file_grew(&inode.key);
        if a.kill_suidgid {
            kill_suidgid(fs, &inode)?;
        }
    }
    if a.atime.is_some() || a.mtime.is_some() {
        let (at, mt) = (set_time(a.atime), set_time(a.mtime));
        match &handle {
            Some(h) => sys::futimens(h.file.as_fd(), at, mt)?,
            None => sys::utimensat(
                held.as_fd(),
                c"",
                at,
                mt,
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            )?,
        }
    }
    Ok((fs.attr_of(&stat_fd(&held)?), fs.timeout()))
}

/// READLINK of a symlink node.
pub(super) fn readlink(fs: &PassthroughFs, node: NodeId) -> FsResult<Vec<u8>> {
    let inode = fs.inodes.get(node)?;
    if inode.file_type != libc::S_IFLNK {
        return Err(Errno::EINVAL);
    }
    sys::readlinkat(inode.path_fd()?.as_fd(), c"")
}

/// STATFS of the host filesystem holding `node`.
pub(super) fn statfs(fs: &PassthroughFs, node: NodeId) -> FsResult<Kstatfs> {
    let s = sys::fstatvfs(fs.inodes.get(node)?.path_fd()?.as_fd())?;
    Ok(Kstatfs {
        blocks: s.blocks,
        bfree: s.bfree,
        bavail: s.bavail,
        files: s.files,
        ffree: s.ffree,
        bsize: u32::try_from(s.bsize).unwrap_or(u32::MAX),
        namelen: u32::try_from(s.namemax).unwrap_or(255),
        frsize: u32::try_from(s.frsize).unwrap_or(u32::MAX),
        padding: 0,
        spare: [0; 24],
    })
}

/// ACCESS, checked against the mode bits for the caller's uid/gid (Linux
/// sends it only without `default_permissions`; supplementary groups are not
/// known and not considered).
pub(super) fn access(fs: &PassthroughFs, ctx: Context, node: NodeId, mask: u32) -> FsResult<()> {
    let inode = fs.inodes.get(node)?;
    let st = stat_fd(&inode.path_fd()?)?;
    let mask = mask & 0o7;
    if mask == 0 {
        return Ok(());
    }
    if mask & libc::W_OK as u32 != 0 && fs.cfg.readonly {
        return Err(Errno::EROFS);
    }
    if ctx.uid == 0 {
        let exec_denied = mask & libc::X_OK as u32 != 0 && st.mode & 0o111 == 0 && !inode.is_dir();
        return if exec_denied {
            Err(Errno::EACCES)
        } else {
            Ok(())
        };
    }
    let bits = if st.uid == ctx.uid {
        (st.mode >> 6) & 7
    } else if st.gid == ctx.gid {
        (st.mode >> 3) & 7
    } else {
        st.mode & 7
    };
    if mask & !bits != 0 {
        Err(Errno::EACCES)
    } else {
        Ok(())
    }
}
