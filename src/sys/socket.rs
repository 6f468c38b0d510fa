//! Sockets handed over by a parent (`--fd`), socket ownership (`--socket-group`) and the
//! open-files limit (`--rlimit-nofile`).

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

use super::check;

/// What a descriptor inherited from the parent turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketKind {
    /// `SO_DOMAIN` (`AF_UNIX` is what a vhost-user listener must be).
    pub domain: i32,
    /// `SO_TYPE` (`SOCK_STREAM` is what a vhost-user listener must be).
    pub kind: i32,
    /// `SO_ACCEPTCONN`: `listen(2)` was called on it.
    pub listening: bool,
}

impl SocketKind {
    /// A listening `AF_UNIX` `SOCK_STREAM` socket: what vhost-user serves on.
    pub fn is_unix_stream_listener(&self) -> bool {
        self.domain == libc::AF_UNIX && self.kind == libc::SOCK_STREAM && self.listening
    }
}

fn int_sockopt(fd: RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, a live local of that
    // size, and updates `len`; on a descriptor that is not an open socket it fails with
    // EBADF or ENOTSOCK and writes nothing.
    check(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast::<libc::c_void>(),
            &raw mut len,
        )
    })?;
    Ok(value)
}

/// What descriptor `fd` is, without taking it: EBADF if it is not open, ENOTSOCK if it is
/// not a socket.
pub fn inherited_socket_kind(fd: RawFd) -> io::Result<SocketKind> {
    // SAFETY: F_GETFD only reads the descriptor table; an unused number gives EBADF.
    check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    Ok(SocketKind {
        domain: int_sockopt(fd, libc::SO_DOMAIN)?,
        kind: int_sockopt(fd, libc::SO_TYPE)?,
        listening: int_sockopt(fd, libc::SO_ACCEPTCONN)? != 0,
    })
}

/// Takes ownership of the listening socket inherited as `fd` and marks it close-on-exec
/// (the daemon starts no programs, and none should inherit the device's socket).
///
/// # Safety
///
/// `fd` must be an open descriptor that nothing else in the process owns or will close:
/// one the parent passed down, checked with [`inherited_socket_kind`], and taken once.
pub unsafe fn take_inherited_listener(fd: RawFd) -> io::Result<UnixListener> {
    // SAFETY: the caller guarantees `fd` is open and owned by no one else, so the OwnedFd
    // is its only owner and closes it exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD on a descriptor we own changes only its close-on-exec flag.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(UnixListener::from(owned))
}

/// The group id of group `name` from the system's group database; `None` if there is
/// no such group.
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    let cname = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buffer = vec![0u8; 4096];
    loop {
        // SAFETY: an all-zero `group` is a valid value of the plain C struct.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer refers to a live local or to `buffer`, whose length is
        // passed; getgrnam_r writes the entry's strings only into `buffer`.
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &raw mut group,
                buffer.as_mut_ptr().cast::<libc::c_char>(),
                buffer.len(),
                &raw mut result,
            )
        };
        match rc {
            0 if result.is_null() => return Ok(None),
            0 => return Ok(Some(group.gr_gid)),
            libc::ERANGE if buffer.len() < (1 << 20) => buffer.resize(buffer.len() * 2, 0),
            // Some libcs report "no such entry" as ENOENT instead of a null result.
            libc::ENOENT | libc::ESRCH => return Ok(None),
            errno => return Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Gives the socket file at `path` to group `gid` (owner unchanged) and mode 0660, as
/// virtiofsd's `--socket-group` does.
pub fn share_socket_with_group(path: &Path, gid: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `cpath` is a valid NUL-terminated string for the call; uid -1 leaves the
    // owner unchanged.
    check(unsafe { libc::chown(cpath.as_ptr(), libc::uid_t::MAX, gid) })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
}

/// Sets the open-files limit, soft and hard, to `n` (virtiofsd's `--rlimit-nofile N`).
pub fn set_open_files_limit(n: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_listening_unix_socket_is_recognised_and_others_are_not() {
        let dir = std::env::temp_dir().join(format!("vhost-dax-sock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listener = UnixListener::bind(dir.join("l.sock")).unwrap();
        let kind = inherited_socket_kind(listener.as_raw_fd()).unwrap();
        assert!(kind.is_unix_stream_listener(), "{kind:?}");

        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let kind = inherited_socket_kind(a.as_raw_fd()).unwrap();
        assert!(
            !kind.listening && !kind.is_unix_stream_listener(),
            "{kind:?}"
        );

        let datagram = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let kind = inherited_socket_kind(datagram.as_raw_fd()).unwrap();
        assert_eq!(kind.kind, libc::SOCK_DGRAM);
        assert!(!kind.is_unix_stream_listener());

        let file = std::fs::File::open("/dev/null").unwrap();
        let err = inherited_socket_kind(file.as_raw_fd()).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
        drop(file);
        let err = inherited_socket_kind(987_654).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn groups_resolve_by_name() {
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("no-such-group-vhost-dax").unwrap(), None);
    }
}
