//! Extended attributes: SETXATTR, GETXATTR, LISTXATTR, REMOVEXATTR.
//!
//! Regular files and directories are opened and use the f*xattr calls.
//! Other inodes (symlinks, fifos, sockets, devices) cannot be opened safely,
//! so their calls go by path through the inode's /proc/self/fd magic link,
//! from a helper thread whose private cwd is /proc/self/fd.
//!
//! **Namespaces.** The guest reads and writes the `user.*` namespace only, as virtiofsd
//! does by default (its dropped `CAP_SYS_ADMIN` hides `trusted.*`, and it blocks POSIX
//! ACLs). A name is checked before the host is asked anything:
//! - `trusted.*`, `security.*`: SETXATTR and REMOVEXATTR answer `EPERM`, GETXATTR
//!   `ENODATA` (what the host kernel answers an unprivileged caller for `trusted.*`: the
//!   name is invisible, and a guest kernel asking for `security.capability` before a
//!   write learns there is none);
//! - `system.posix_acl_access`, `system.posix_acl_default`: `EOPNOTSUPP` (POSIX ACLs are
//!   not supported; virtiofsd without `--posix-acl` answers the same);
//! - anything else (`system.*`, no namespace, an unknown prefix): `EOPNOTSUPP`, as the
//!   host kernel answers a namespace it does not know.
//!
//! LISTXATTR shows only `user.*` names; its size probe (size 0) answers the size of that
//! filtered list, so a buffer of that size always holds the names the guest then asks for.
//!
//! With `--xattrmap` ([`super::xattrmap`]) every name the guest sends is mapped to its
//! host name first, and the namespace rule above applies to that host name (so a map
//! may show the guest a `trusted.*` name that the host keeps under `user.*`). LISTXATTR
//! filters the host's list to `user.*` and then maps it (its size probe too: the whole
//! host list is read, filtered and mapped).

use std::borrow::Cow;
use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::PassthroughFs;
use super::inode::InodeData;
use super::sys::{self, XattrTarget};
use crate::fuse::filesystem::XattrReply;
use crate::fuse::{Errno, FsResult, NodeId};

/// The one namespace the guest may use.
const USER: &[u8] = b"user.";
/// Namespaces that need privileges on the host: hidden from the guest.
const PRIVILEGED: [&[u8]; 2] = [b"trusted.", b"security."];
/// How often LISTXATTR retries when the host's list grew between its size probe and its read.
const LIST_RETRIES: usize = 4;

/// What the guest may do with an xattr name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Namespace {
    /// `user.*`: passed to the host.
    User,
    /// `trusted.*`, `security.*`: not the guest's to see or change.
    Privileged,
    /// POSIX ACLs, other `system.*` names, unknown namespaces.
    Unsupported,
}

impl Namespace {
    fn of(name: &[u8]) -> Self {
        if name.starts_with(USER) {
            Namespace::User
        } else if PRIVILEGED.iter().any(|p| name.starts_with(p)) {
            Namespace::Privileged
        } else {
            Namespace::Unsupported
        }
    }

    /// The answer to a SETXATTR or REMOVEXATTR of a name outside `user.*`.
    fn check_write(name: &CStr) -> FsResult<()> {
        match Namespace::of(name.to_bytes()) {
            Namespace::User => Ok(()),
            Namespace::Privileged => Err(Errno::EPERM),
            Namespace::Unsupported => Err(Errno::EOPNOTSUPP),
        }
    }

    /// The answer to a GETXATTR of a name outside `user.*`.
    fn check_read(name: &CStr) -> FsResult<()> {
        match Namespace::of(name.to_bytes()) {
            Namespace::User => Ok(()),
            Namespace::Privileged => Err(Errno::ENODATA),
            Namespace::Unsupported => Err(Errno::EOPNOTSUPP),
        }
    }
}

/// The names of a host list (NUL-terminated, concatenated) the guest may see, in the same
/// form.
fn visible_names(list: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(list.len());
    for name in list.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if Namespace::of(name) == Namespace::User {
            out.extend_from_slice(name);
            out.push(0);
        }
    }
    out
}

/// `--xattrmap`: the host name of a name the guest sent (itself without a map); a `bad`
/// rule's EPERM, an `unsupported` one's EOPNOTSUPP.
fn host_name<'a>(fs: &PassthroughFs, name: &'a CStr) -> FsResult<Cow<'a, CStr>> {
    match &fs.cfg.xattrmap {
        Some(map) => map.map_client_name(name),
        None => Ok(Cow::Borrowed(name)),
    }
}

/// The host's whole list of names for `t`.
fn host_list(t: XattrTarget<'_>) -> FsResult<Vec<u8>> {
    for _ in 0..LIST_RETRIES {
        let size = sys::listxattr(t, &mut [])?;
        if size == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; size];
        match sys::listxattr(t, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            // Names were added between the probe and the read: probe again.
            Err(e) if e == Errno::ERANGE => {}
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EIO)
}

/// `--xattrmap` renaming `security.capability`: drops the renamed name from the regular
/// file `inode` (through `file` when one is open), as the host kernel drops the real one
/// on a write, a truncate or a change of owner. Absent already, or no xattrs on this
/// host file system: nothing to do.
pub(super) fn drop_mapped_capability(
    fs: &PassthroughFs,
    inode: &InodeData,
    file: Option<BorrowedFd<'_>>,
) -> FsResult<()> {
    let Some(name) = fs
        .cfg
        .xattrmap
        .as_ref()
        .and_then(|m| m.security_capability())
    else {
        return Ok(());
    };
    if !inode.is_reg() {
        return Ok(());
    }
    let result = match file {
        Some(fd) => sys::removexattr(XattrTarget::Fd(fd), name),
        None => {
            let file = fs.reopen(inode, libc::O_RDONLY | libc::O_NONBLOCK)?;
            sys::removexattr(XattrTarget::Fd(file.as_fd()), name)
        }
    };
    match result {
        Err(e) if e == Errno::ENODATA || e == Errno::EOPNOTSUPP => Ok(()),
        other => other,
    }
}

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
    let name = &*host_name(fs, name)?;
    Namespace::check_write(name)?;
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
    // As virtiofsd: a `bad` name reads as absent.
    let name =
        &*host_name(fs, name).map_err(|e| if e == Errno::EPERM { Errno::ENODATA } else { e })?;
    Namespace::check_read(name)?;
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

/// LISTXATTR (`size` 0: size only), of the names the guest may see, as the map shows them.
pub(super) fn listxattr(fs: &PassthroughFs, node: NodeId, size: u32) -> FsResult<XattrReply> {
    enabled(fs)?;
    let inode = fs.inodes.get(node)?;
    let names = on_inode(fs, &inode, |t| {
        host_list(t).map(|list| {
            let visible = visible_names(&list);
            match &fs.cfg.xattrmap {
                Some(map) => map.map_server_list(&visible),
                None => visible,
            }
        })
    })?;
    let len = u32::try_from(names.len()).unwrap_or(u32::MAX);
    if size == 0 {
        Ok(XattrReply::Size(len))
    } else if len > size {
        Err(Errno::ERANGE)
    } else {
        Ok(XattrReply::Data(names))
    }
}

/// REMOVEXATTR.
pub(super) fn removexattr(fs: &PassthroughFs, node: NodeId, name: &CStr) -> FsResult<()> {
    enabled(fs)?;
    let name = &*host_name(fs, name)?;
    Namespace::check_write(name)?;
    fs.check_writable()?;
    let inode = fs.inodes.get(node)?;
    on_inode(fs, &inode, |t| sys::removexattr(t, name))
}
