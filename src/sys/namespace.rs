//! The namespace sandbox's system calls, as virtiofsd's `--sandbox namespace` does it:
//! new pid, mount and network namespaces, a supervising parent outside the new pid
//! namespace, and `pivot_root` into the shared directory with the old root detached.
//!
//! A new pid namespace only applies to children, so the daemon forks: the child (pid 1 of
//! the new namespace) is the daemon, the parent only forwards termination signals to it,
//! reaps it, removes the socket files the child can no longer reach, and exits with its
//! status. Forking is only sound while the process has a single thread, which
//! [`fork_into_namespaces`] checks.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use super::check;

/// Which side of the fork this process is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The parent, outside the new pid namespace: it supervises `child`.
    Supervisor {
        /// The daemon's pid as this (the outer) namespace sees it.
        child: libc::pid_t,
    },
    /// The child: pid 1 of the new pid namespace, in the new mount and network
    /// namespaces. It goes on to serve.
    Sandboxed,
}

/// How the sandboxed daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    /// It exited with this status.
    Exited(i32),
    /// A signal ended it.
    Signalled(i32),
}

/// Enters new pid, mount and network namespaces (mounts made private, so nothing done
/// inside reaches the host) and forks. The calling process must have exactly one thread.
///
/// # Errors
///
/// `EBUSY` if the process has more than one thread; the errno of `unshare` (`EPERM`
/// without `CAP_SYS_ADMIN`), `mount` or `fork`.
pub fn fork_into_namespaces() -> io::Result<Forked> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("cannot fork into a pid namespace with {threads} threads running"),
        ));
    }
    // SAFETY: unshare takes only flags.
    check(unsafe { libc::unshare(libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWNET) })?;
    // SAFETY: null source/fstype/data are allowed for a propagation change; "/" is a valid
    // NUL-terminated string.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })?;
    // SAFETY: the process has one thread (checked above), so the child gets a consistent
    // copy of every lock and allocator state; it goes on running ordinary Rust code.
    let pid = check(unsafe { libc::fork() })?;
    if pid != 0 {
        return Ok(Forked::Supervisor { child: pid });
    }
    // The daemon must not outlive its supervisor (a service manager tracks the
    // supervisor): SIGKILL when it goes.
    // SAFETY: PR_SET_PDEATHSIG takes a signal number; the other arguments are unused.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })?;
    Ok(Forked::Sandboxed)
}

/// Runs the supervisor: forwards SIGTERM, SIGINT and SIGHUP (blocked in this thread, see
/// [`super::block_termination_signals`]) to `child` and returns once it has ended.
///
/// # Errors
///
/// The errno of `waitpid` (`ECHILD`: not our child).
pub fn supervise(child: libc::pid_t) -> io::Result<ChildEnd> {
    let set = super::termination_set();
    let poll = libc::timespec {
        tv_sec: 0,
        tv_nsec: libc::c_long::try_from(Duration::from_millis(100).as_nanos())
            .unwrap_or(100_000_000),
    };
    loop {
        // SAFETY: `set` is an initialised sigset_t, `poll` a valid timespec; a null
        // siginfo pointer is allowed.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &poll) };
        if sig > 0 {
            log::info!("sandbox supervisor: passing signal {sig} on to the daemon");
            // SAFETY: kill takes a pid and a signal number; `child` is our own child,
            // not yet reaped (so its pid cannot have been reused).
            check(unsafe { libc::kill(child, sig) })?;
        }
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a live c_int; WNOHANG makes the call return at once.
        let reaped = check(unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) })?;
        if reaped == child {
            return Ok(if libc::WIFEXITED(status) {
                ChildEnd::Exited(libc::WEXITSTATUS(status))
            } else {
                ChildEnd::Signalled(libc::WTERMSIG(status))
            });
        }
    }
}

/// Makes `dir` the root of the mount namespace (bind-mounted on itself, `pivot_root`, the
/// old root lazily unmounted) and moves into it. Descriptors opened before stay valid;
/// no path outside `dir` resolves afterwards.
///
/// # Errors
///
/// The errno of the first call that failed.
pub fn pivot_root_into(dir: &Path) -> io::Result<()> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `path` is a valid NUL-terminated string; null fstype and data are allowed for
    // a bind mount.
    check(unsafe {
        libc::mount(
            path.as_ptr(),
            path.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    })?;
    std::env::set_current_dir(dir)?;
    // pivot_root(".", ".") stacks the old root on top of the new one; unmounting "."
    // then takes the old root away (the trick runc and virtiofsd use), with no directory
    // for it needed inside the share.
    // SAFETY: both arguments are valid NUL-terminated strings.
    let pivoted = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
    check(if pivoted == 0 { 0 } else { -1 })?;
    // SAFETY: "." is a valid NUL-terminated string.
    check(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })?;
    std::env::set_current_dir("/")
}
