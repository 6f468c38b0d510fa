//! The seccomp allow-list: every system call the daemon makes once it serves, grouped by
//! why it is needed, and the filter built from it (rust-vmm's `seccompiler`).
//!
//! The filter is installed after all setup — sockets bound, control sockets listening,
//! the sandbox entered, the open-files limit raised — on every thread at once (TSYNC),
//! before the first frontend is served. Setup-only calls (`bind`, `listen`, `chroot`,
//! `unshare` of a namespace, `mount`, `setrlimit`, `memfd_create`, `ioctl(BLKGETSIZE64)`, ...) are
//! therefore not on the list. The actions keep virtiofsd's names and meanings
//! (`--seccomp kill|log|trap|none`): kill the process, log and allow, raise SIGSYS, or
//! install no filter.
//!
//! The list names the system calls glibc's wrappers really make on x86_64 (`openat`
//! for `open`, `statx` for std's metadata with `newfstatat` as glibc's `fstat`, `clone3`
//! for `pthread_create`, `rseq` and `set_robust_list` in every new thread,
//! `clock_nanosleep` for a sleep, `renameat` for `renameat2` without flags, `sendto` for
//! `send`). It was found by running the daemon under `--seccomp log` (audit records in
//! the kernel log) and under strace over the test suite, and is proven by the suite and
//! the Linux-guest stages running every daemon under `kill`. `unshare` is allowed only
//! with `CLONE_FS` (the xattr thread's own working directory); a namespace is not.
//! Other architectures get no filter (their system calls differ, and the list has not
//! been measured there): asking for one is a configuration error.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// What happens to a system call that is not on the list (virtiofsd's `--seccomp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Seccomp {
    /// Kill the whole process (as if by SIGSYS, with a core dump where enabled).
    Kill,
    /// Allow the call and log it to the kernel's audit log (`dmesg`, `type=1326`).
    Log,
    /// Raise SIGSYS in the calling thread (the process dies of it: no handler is set).
    Trap,
    /// Install no filter.
    None,
}

impl Seccomp {
    /// The default: `kill`, as virtiofsd's, where the list is measured (x86_64); no
    /// filter elsewhere.
    pub const DEFAULT: Seccomp = if cfg!(target_arch = "x86_64") {
        Seccomp::Kill
    } else {
        Seccomp::None
    };

    /// Reads `kill`, `log`, `trap` or `none`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "kill" => Some(Seccomp::Kill),
            "log" => Some(Seccomp::Log),
            "trap" => Some(Seccomp::Trap),
            "none" => Some(Seccomp::None),
            _ => None,
        }
    }

    /// Whether this architecture can have it: every action but `none` needs the
    /// list, which exists for x86_64 only.
    pub fn check_architecture(self) -> Result<(), String> {
        if self == Seccomp::None || cfg!(target_arch = "x86_64") {
            Ok(())
        } else {
            Err(format!(
                "`{self}` needs the seccomp allow-list, which exists for x86_64 only (use none)"
            ))
        }
    }

    /// The kernel action for a call that is not allowed; none without a filter.
    fn mismatch_action(self) -> Option<SeccompAction> {
        match self {
            Seccomp::Kill => Some(SeccompAction::KillProcess),
            Seccomp::Log => Some(SeccompAction::Log),
            Seccomp::Trap => Some(SeccompAction::Trap),
            Seccomp::None => None,
        }
    }
}

impl Default for Seccomp {
    fn default() -> Self {
        Seccomp::DEFAULT
    }
}

impl std::fmt::Display for Seccomp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Seccomp::Kill => "kill",
            Seccomp::Log => "log",
            Seccomp::Trap => "trap",
            Seccomp::None => "none",
        })
    }
}

/// What the process serves, which decides the groups of the list it needs. One process
/// installs one filter: the union of what its devices need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Needs {
    /// At least one virtio-fs device (the passthrough file system's calls).
    pub fs: bool,
    /// At least one virtio-pmem device (the FLUSH syncs).
    pub pmem: bool,
    /// Logging goes to the system log (`--syslog`): reconnecting to `/dev/log`.
    pub syslog: bool,
    /// A virtio-fs device holds inodes by file handle (`--inode-file-handles prefer` or
    /// `mandatory`).
    pub file_handles: bool,
}

/// Who needs a group of system calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needed {
    /// Every daemon, whatever it serves.
    Always,
    /// A daemon with a virtio-fs device.
    Fs,
    /// A daemon with a virtio-pmem device.
    Pmem,
    /// A daemon with a virtio-fs or a virtio-pmem device that syncs files.
    Sync,
    /// A daemon logging to the system log.
    Syslog,
    /// A daemon whose fs device holds inodes by file handle.
    FileHandles,
}

impl Needed {
    fn applies(self, needs: Needs) -> bool {
        match self {
            Needed::Always => true,
            Needed::Fs => needs.fs,
            Needed::Pmem => needs.pmem,
            Needed::Sync => needs.fs || needs.pmem,
            Needed::Syslog => needs.syslog,
            Needed::FileHandles => needs.file_handles,
        }
    }
}

/// A restriction on one argument of a system call: allowed only when argument `arg`
/// (from 0) equals one of `values`.
#[derive(Debug, Clone, Copy)]
struct ArgIn {
    arg: u8,
    values: &'static [u64],
}

/// One allowed system call: its name (for messages and tests), its number, and an
/// optional restriction of one argument.
#[derive(Debug, Clone, Copy)]
struct Call {
    name: &'static str,
    nr: i64,
    only: Option<ArgIn>,
}

/// A group of allowed system calls and why the daemon makes them.
struct Group {
    why: &'static str,
    needed: Needed,
    calls: &'static [Call],
}

/// An allowed system call, unrestricted: `call!(SYS_openat)`; restricted to some values of
/// one argument: `call!(SYS_prctl, arg 0 in PRCTL_OPTIONS)`. The name is kept without its
/// `SYS_` prefix.
macro_rules! call {
    ($name:ident) => {
        Call {
            name: strip_sys(stringify!($name)),
            nr: libc::$name,
            only: None,
        }
    };
    ($name:ident, arg $arg:literal in $values:expr) => {
        Call {
            name: strip_sys(stringify!($name)),
            nr: libc::$name,
            only: Some(ArgIn {
                arg: $arg,
                values: $values,
            }),
        }
    };
}

/// `SYS_openat` -> `openat`, at compile time.
const fn strip_sys(name: &'static str) -> &'static str {
    match name.as_bytes() {
        [b'S', b'Y', b'S', b'_', rest @ ..] => match std::str::from_utf8(rest) {
            Ok(rest) => rest,
            Err(_) => name,
        },
        _ => name,
    }
}

/// `prctl` options: naming a thread (std names every thread it spawns: `PR_SET_NAME`).
const PRCTL_OPTIONS: &[u64] = &[PR_SET_NAME, PR_GET_NAME];
/// `socket` domains: the system log is a Unix datagram socket.
const SOCKET_DOMAINS: &[u64] = &[AF_UNIX];
/// `ioctl` requests: std's `set_nonblocking` on a control-socket connection.
const IOCTL_REQUESTS: &[u64] = &[FIONBIO];
/// `openat` flags without a file system device: glibc's read-only opens.
const OPENAT_FLAGS_READ_ONLY: &[u64] = &[O_RDONLY_CLOEXEC];
/// `getsockopt` levels: the vhost crate checks the backend channel's descriptor
/// (SET_BACKEND_REQ_FD) with `SO_DOMAIN` and `SO_TYPE`.
const SOCKOPT_LEVELS: &[u64] = &[SOL_SOCKET];
/// `unshare` flags: only a thread's own working directory (never a namespace).
const UNSHARE_FLAGS: &[u64] = &[CLONE_FS];

// The constants above as the filter compares them (libc has them as C ints).
const PR_SET_NAME: u64 = 15;
const PR_GET_NAME: u64 = 16;
const AF_UNIX: u64 = 1;
const FIONBIO: u64 = 0x5421;
const SOL_SOCKET: u64 = 1;
const O_RDONLY_CLOEXEC: u64 = 0x80000;
const CLONE_FS: u64 = 0x200;
const _: () = assert!(
    libc::PR_SET_NAME == 15
        && libc::PR_GET_NAME == 16
        && libc::AF_UNIX == 1
        && libc::FIONBIO == 0x5421
        && libc::CLONE_FS == 0x200
        && libc::SOL_SOCKET == 1
        && (libc::O_RDONLY | libc::O_CLOEXEC) == 0x80000
);

/// The allow-list, as data.
const GROUPS: &[Group] = &[
    Group {
        why: "memory: the allocator, thread stacks, and the guest memory regions the \
              frontend sends (SET_MEM_TABLE: mmap of its memfds, munmap when replaced)",
        needed: Needed::Always,
        calls: &[
            call!(SYS_brk),
            call!(SYS_mmap),
            call!(SYS_munmap),
            call!(SYS_mprotect),
            call!(SYS_mremap),
            call!(SYS_madvise),
        ],
    },
    Group {
        why: "threads: a device's listener, queue, pool, parking, syncer, mapper and \
              reconnect workers are spawned while serving (glibc's pthread_create is \
              clone3, each new thread registers rseq and its robust futex list, std \
              names it with prctl(PR_SET_NAME) and gives it a signal stack)",
        needed: Needed::Always,
        calls: &[
            call!(SYS_clone3),
            call!(SYS_clone),
            call!(SYS_rseq),
            call!(SYS_set_robust_list),
            call!(SYS_sigaltstack),
            call!(SYS_prctl, arg 0 in PRCTL_OPTIONS),
            call!(SYS_sched_getaffinity),
            call!(SYS_sched_yield),
            call!(SYS_exit),
            call!(SYS_exit_group),
            call!(SYS_gettid),
            call!(SYS_getpid),
        ],
    },
    Group {
        why: "synchronisation and time: locks and condition variables (futex), bounded \
              waits and retry back-off (clock_gettime outside the vDSO; std's sleep is \
              clock_nanosleep)",
        needed: Needed::Always,
        calls: &[
            call!(SYS_futex),
            call!(SYS_clock_gettime),
            call!(SYS_clock_nanosleep),
        ],
    },
    Group {
        why: "signals: the signal thread waits for SIGINT/SIGTERM/SIGHUP (sigwait is \
              rt_sigtimedwait), threads inherit the blocked mask, a panic aborts (tgkill); \
              after SIGSTOP/SIGCONT (a debugger, job control, a frozen cgroup) the kernel \
              resumes a timed poll, sleep or futex wait with restart_syscall",
        needed: Needed::Always,
        calls: &[
            call!(SYS_rt_sigtimedwait),
            call!(SYS_restart_syscall),
            call!(SYS_rt_sigprocmask),
            call!(SYS_rt_sigaction),
            call!(SYS_rt_sigreturn),
            call!(SYS_tgkill),
        ],
    },
    Group {
        why: "vhost-user: accepting the next frontend (and control-socket clients), its \
              messages with their descriptors (recvmsg/sendmsg), the backend channel \
              (whose socket the vhost crate checks with getsockopt), the event loop's \
              epoll and the queues' kick/call eventfds",
        needed: Needed::Always,
        calls: &[
            call!(SYS_accept4),
            call!(SYS_recvmsg),
            call!(SYS_sendmsg),
            call!(SYS_recvfrom),
            call!(SYS_sendto),
            call!(SYS_shutdown),
            call!(SYS_epoll_create1),
            call!(SYS_epoll_ctl),
            call!(SYS_epoll_wait),
            call!(SYS_eventfd2),
            call!(SYS_poll),
            call!(SYS_read),
            call!(SYS_write),
            call!(SYS_close),
            call!(SYS_fcntl),
            call!(SYS_ioctl, arg 1 in IOCTL_REQUESTS),
            call!(SYS_getsockopt, arg 1 in SOCKOPT_LEVELS),
        ],
    },
    Group {
        why: "socket files: the vhost-user and control sockets are removed when the \
              daemon exits (unlinkat relative to their directory; the vhost crate's \
              listener and the control server by path)",
        needed: Needed::Always,
        calls: &[call!(SYS_unlinkat), call!(SYS_unlink)],
    },
    Group {
        why: "glibc's own reads: malloc, creating its ninth arena in whatever thread, \
              counts the CPUs in /sys/devices/system/cpu/online (O_RDONLY|O_CLOEXEC; a \
              file system device opens anything, below)",
        needed: Needed::Always,
        calls: &[call!(SYS_openat, arg 2 in OPENAT_FLAGS_READ_ONLY)],
    },
    Group {
        why: "randomness: std's HashMap seeds",
        needed: Needed::Always,
        calls: &[call!(SYS_getrandom)],
    },
    Group {
        why: "syncing files: a pmem FLUSH (fdatasync of a file, fsync of a block device); \
              FUSE FSYNC, FSYNCDIR and FLUSH",
        needed: Needed::Sync,
        calls: &[call!(SYS_fdatasync), call!(SYS_fsync)],
    },
    Group {
        why: "pmem: the backing file's size when a frontend starts the device \
              (File::metadata is statx; fstat and newfstatat are glibc's fallbacks)",
        needed: Needed::Pmem,
        calls: &[call!(SYS_fstat), call!(SYS_newfstatat), call!(SYS_statx)],
    },
    Group {
        why: "FUSE passthrough: names resolved with openat relative to O_PATH \
              descriptors, attributes (statx, newfstatat, fstatfs), directories, \
              creation, links, renames (glibc's renameat2 without flags is renameat), \
              data (positioned and vectored I/O, \
              copy_file_range, fallocate, ftruncate), syncfs, the umask a creation \
              applies",
        needed: Needed::Fs,
        calls: &[
            call!(SYS_openat),
            call!(SYS_statx),
            call!(SYS_newfstatat),
            call!(SYS_fstat),
            call!(SYS_fstatfs),
            call!(SYS_getdents64),
            call!(SYS_lseek),
            call!(SYS_readlinkat),
            call!(SYS_mkdirat),
            call!(SYS_mknodat),
            call!(SYS_symlinkat),
            call!(SYS_linkat),
            call!(SYS_unlinkat),
            call!(SYS_renameat2),
            call!(SYS_renameat),
            call!(SYS_fchmod),
            call!(SYS_fchmodat),
            call!(SYS_fchownat),
            call!(SYS_utimensat),
            call!(SYS_ftruncate),
            call!(SYS_fallocate),
            call!(SYS_pread64),
            call!(SYS_pwrite64),
            call!(SYS_preadv),
            call!(SYS_pwritev),
            call!(SYS_copy_file_range),
            call!(SYS_syncfs),
            call!(SYS_umask),
        ],
    },
    Group {
        why: "FUSE extended attributes (--xattr): on the node's descriptor, or, for a \
              node that cannot be opened (symlink, device, fifo, socket), by name from a \
              short-lived thread whose own working directory (unshare(CLONE_FS), \
              fchdir) is the node's parent",
        needed: Needed::Fs,
        calls: &[
            call!(SYS_unshare, arg 0 in UNSHARE_FLAGS),
            call!(SYS_fchdir),
            call!(SYS_fgetxattr),
            call!(SYS_fsetxattr),
            call!(SYS_flistxattr),
            call!(SYS_fremovexattr),
            call!(SYS_getxattr),
            call!(SYS_setxattr),
            call!(SYS_listxattr),
            call!(SYS_removexattr),
        ],
    },
    Group {
        why: "inodes held by file handle (--inode-file-handles prefer|mandatory): the \
              handle of each inode the guest looks up, and the inode opened by it for \
              each request that needs it (open_by_handle_at needs CAP_DAC_READ_SEARCH, \
              which the daemon then keeps)",
        needed: Needed::FileHandles,
        calls: &[call!(SYS_name_to_handle_at), call!(SYS_open_by_handle_at)],
    },
    Group {
        why: "per-thread credentials: a root daemon creates files as the requesting \
              guest user (setfsuid/setfsgid on the serving thread, then back), with the \
              supplementary group a newer guest sends (FUSE_CREATE_SUPP_GROUP: \
              getgroups/setgroups on that thread only)",
        needed: Needed::Fs,
        calls: &[
            call!(SYS_setfsuid),
            call!(SYS_setfsgid),
            call!(SYS_getgroups),
            call!(SYS_setgroups),
        ],
    },
    Group {
        why: "syslog (--syslog): a line is one send; when the log daemon restarted, a new \
              Unix datagram socket connects to /dev/log",
        needed: Needed::Syslog,
        calls: &[
            call!(SYS_socket, arg 0 in SOCKET_DOMAINS),
            call!(SYS_connect),
            call!(SYS_sendto),
        ],
    },
];

/// Failures building or installing the filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// seccompiler refused the list (a bug of the list itself).
    #[error("cannot build the seccomp filter: {0}")]
    Build(#[from] seccompiler::BackendError),
    /// The kernel refused the filter.
    #[error("cannot install the seccomp filter: {0}")]
    Install(#[from] seccompiler::Error),
    /// No list exists for this architecture.
    #[error("no seccomp allow-list for this architecture (x86_64 only); use --seccomp none")]
    Architecture,
}

/// One allowed call: its name, and the (argument, value) pairs of which one must hold
/// (`None`: any arguments).
type Allowed = (&'static str, Option<Vec<(u8, u64)>>);

/// The allowed system calls for `needs`, by number, each with the argument values it is
/// restricted to (several groups may list one call: unrestricted wins, restrictions join).
fn allowed(needs: Needs) -> BTreeMap<i64, Allowed> {
    let mut calls: BTreeMap<i64, Allowed> = BTreeMap::new();
    for group in GROUPS.iter().filter(|g| g.needed.applies(needs)) {
        for call in group.calls {
            let only: Option<Vec<(u8, u64)>> = call
                .only
                .map(|a| a.values.iter().map(|&v| (a.arg, v)).collect());
            match calls.entry(call.nr) {
                Entry::Vacant(slot) => {
                    slot.insert((call.name, only));
                }
                Entry::Occupied(mut slot) => match (&mut slot.get_mut().1, only) {
                    (Some(mine), Some(more)) => {
                        mine.extend(more);
                        mine.sort_unstable();
                        mine.dedup();
                    }
                    (restricted, None) => *restricted = None,
                    (None, Some(_)) => {}
                },
            }
        }
    }
    calls
}

/// Names of the system calls allowed for `needs`, sorted.
pub fn allowed_names(needs: Needs) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = allowed(needs).values().map(|(name, _)| *name).collect();
    names.sort_unstable();
    names
}

/// Builds the filter for `needs` whose action for anything else is `action`; `None`
/// for `Seccomp::None`.
pub fn compile(action: Seccomp, needs: Needs) -> Result<Option<BpfProgram>, SeccompError> {
    let Some(mismatch) = action.mismatch_action() else {
        return Ok(None);
    };
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::Architecture);
    }
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, (_, only)) in allowed(needs) {
        let list = match only {
            // An empty rule list allows the call whatever its arguments.
            None => Vec::new(),
            Some(values) => values
                .into_iter()
                .map(|(arg, value)| {
                    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
                        .and_then(|c| SeccompRule::new(vec![c]))
                })
                .collect::<Result<_, _>>()?,
        };
        rules.insert(nr, list);
    }
    let filter = SeccompFilter::new(
        rules,
        mismatch,
        SeccompAction::Allow,
        seccompiler::TargetArch::x86_64,
    )?;
    Ok(Some(BpfProgram::try_from(filter)?))
}

/// Installs `program` on every thread of the process (TSYNC); it also sets
/// no_new_privs, which a filter installed without CAP_SYS_ADMIN requires.
pub fn apply(program: &BpfProgram) -> Result<(), SeccompError> {
    seccompiler::apply_filter_all_threads(program)?;
    Ok(())
}

/// Builds and installs the filter for `needs` with `action`; returns how many system
/// calls it allows (0 and nothing installed for `Seccomp::None`).
pub fn install(action: Seccomp, needs: Needs) -> Result<usize, SeccompError> {
    let Some(program) = compile(action, needs)? else {
        return Ok(0);
    };
    apply(&program)?;
    for group in GROUPS.iter().filter(|g| g.needed.applies(needs)) {
        let names: Vec<&str> = group.calls.iter().map(|c| c.name).collect();
        log::debug!("seccomp: allowed for {}: {}", group.why, names.join(" "));
    }
    Ok(allowed(needs).len())
}

#[cfg(test)]
mod tests;
