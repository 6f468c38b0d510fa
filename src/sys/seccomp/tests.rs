//! The list's shape, and the filter's action observed in a forked child.

use super::*;

const EVERYTHING: Needs = Needs {
    fs: true,
    pmem: true,
    syslog: true,
    file_handles: true,
};

#[test]
fn every_group_says_why_and_lists_each_call_once() {
    for group in GROUPS {
        assert!(!group.why.trim().is_empty());
        assert!(!group.calls.is_empty(), "{}", group.why);
        let mut names: Vec<&str> = group.calls.iter().map(|c| c.name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a call listed twice in: {}", group.why);
        for call in group.calls {
            assert!(!call.name.starts_with("SYS_"), "{}", call.name);
        }
    }
}

#[test]
fn setup_and_escape_calls_are_never_allowed() {
    // Setup is over when the filter goes in; these would only serve an attacker.
    let never = [
        "execve",
        "execveat",
        "ptrace",
        "personality",
        "mount",
        "umount2",
        "chroot",
        "pivot_root",
        "setns",
        "bind",
        "listen",
        "setrlimit",
        "prlimit64",
        "setuid",
        "setgid",
        "setresuid",
        "setresgid",
        "capset",
        "kexec_load",
        "reboot",
        "init_module",
        "bpf",
        "seccomp",
        "process_vm_writev",
    ];
    let allowed = allowed_names(EVERYTHING);
    for name in never {
        assert!(!allowed.contains(&name), "{name} is on the list");
    }
}

#[test]
fn the_union_follows_what_the_process_serves() {
    let pmem = allowed_names(Needs {
        pmem: true,
        ..Needs::default()
    });
    let fs = allowed_names(Needs {
        fs: true,
        ..Needs::default()
    });
    let both = allowed_names(Needs {
        fs: true,
        pmem: true,
        syslog: false,
        file_handles: false,
    });
    // Opening any inode by handle (the "shocker" escape) only where inodes are held so.
    for name in ["open_by_handle_at", "name_to_handle_at"] {
        assert!(!both.contains(&name), "{name} without file handles");
        assert!(allowed_names(EVERYTHING).contains(&name), "{name}");
    }
    // A pmem daemon creates and renames nothing, and switches no credentials.
    // (setgroups is a thread's own, as setfsgid is: with CAP_SETGID kept it reaches no
    // group that setfsgid could not.)
    for name in [
        "fchdir",
        "renameat2",
        "setfsuid",
        "setgroups",
        "fsetxattr",
        "mknodat",
    ] {
        assert!(!pmem.contains(&name), "pmem allows {name}");
        assert!(fs.contains(&name), "fs lacks {name}");
    }
    for name in ["fdatasync", "fsync", "accept4", "epoll_wait", "clone3"] {
        assert!(pmem.contains(&name) && fs.contains(&name), "{name}");
    }
    for name in pmem.iter().chain(&fs) {
        assert!(both.contains(name), "the union lacks {name}");
    }
    assert!(!both.contains(&"socket") && !both.contains(&"connect"));
    let syslog = allowed_names(Needs {
        syslog: true,
        ..Needs::default()
    });
    assert!(syslog.contains(&"socket") && syslog.contains(&"connect"));
}

#[test]
fn none_builds_no_filter_and_the_others_do() {
    assert!(compile(Seccomp::None, EVERYTHING).unwrap().is_none());
    for action in [Seccomp::Kill, Seccomp::Log, Seccomp::Trap] {
        let program = compile(action, EVERYTHING).unwrap().unwrap();
        assert!(!program.is_empty());
    }
    assert_eq!(install(Seccomp::None, EVERYTHING).unwrap(), 0);
}

#[test]
fn values_read_as_virtiofsd_names_them() {
    for action in [Seccomp::Kill, Seccomp::Log, Seccomp::Trap, Seccomp::None] {
        assert_eq!(Seccomp::parse(&action.to_string()), Some(action));
    }
    assert_eq!(Seccomp::parse("strict"), None);
    assert_eq!(Seccomp::DEFAULT, Seccomp::Kill);
}

/// How a forked child ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    Exited(i32),
    Signalled(i32),
}

/// Exit status of a child whose SIGSYS handler ran (a `trap` filter).
const TRAPPED: i32 = 42;
/// Exit status of a child that could not install the filter.
const NOT_INSTALLED: i32 = 99;

extern "C" fn exit_trapped(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe and ends the child at once.
    unsafe { libc::_exit(TRAPPED) }
}

/// Forks a child that catches SIGSYS (exiting [`TRAPPED`]), installs `action`'s filter
/// for every device kind, makes system call `nr` with `args`, and exits 0.
fn child_calls(action: Seccomp, nr: i64, args: [u64; 2]) -> Ending {
    let program = compile(action, EVERYTHING).unwrap().unwrap();
    // SAFETY: the child only calls async-signal-safe functions (signal, setrlimit, the
    // prctl and seccomp system calls, the call under test, _exit) and allocates nothing:
    // the program was built before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: the handler only calls _exit; setrlimit reads the struct we pass (no
        // core file from the killed child).
        unsafe {
            libc::signal(
                libc::SIGSYS,
                exit_trapped as *const () as libc::sighandler_t,
            );
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        }
        if apply(&program).is_err() {
            // SAFETY: ends the child.
            unsafe { libc::_exit(NOT_INSTALLED) }
        }
        // SAFETY: the calls under test take integer arguments only (or a pointer to a
        // static NUL-terminated name), and the child exits right after.
        unsafe {
            libc::syscall(nr, args[0], args[1]);
            libc::_exit(0)
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child, writing its status into a local.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    if libc::WIFEXITED(status) {
        Ending::Exited(libc::WEXITSTATUS(status))
    } else {
        Ending::Signalled(libc::WTERMSIG(status))
    }
}

/// `personality(0xffffffff)` only reads the persona: harmless, and on no list.
const PERSONALITY_QUERY: [u64; 2] = [0xffff_ffff, 0];

#[test]
fn kill_ends_the_process_on_a_call_off_the_list() {
    assert_eq!(
        child_calls(Seccomp::Kill, libc::SYS_personality, PERSONALITY_QUERY),
        Ending::Signalled(libc::SIGSYS),
        "the handler must not run: kill cannot be caught"
    );
}

#[test]
fn trap_raises_sigsys_on_a_call_off_the_list() {
    assert_eq!(
        child_calls(Seccomp::Trap, libc::SYS_personality, PERSONALITY_QUERY),
        Ending::Exited(TRAPPED)
    );
}

#[test]
fn log_lets_a_call_off_the_list_through() {
    assert_eq!(
        child_calls(Seccomp::Log, libc::SYS_personality, PERSONALITY_QUERY),
        Ending::Exited(0)
    );
}

#[test]
fn calls_on_the_list_pass_under_kill() {
    assert_eq!(
        child_calls(Seccomp::Kill, libc::SYS_getpid, [0, 0]),
        Ending::Exited(0)
    );
}

#[test]
fn prctl_is_allowed_only_to_name_threads() {
    let name = c"seccomp-test";
    let set_name = [PR_SET_NAME, name.as_ptr() as u64];
    assert_eq!(
        child_calls(Seccomp::Kill, libc::SYS_prctl, set_name),
        Ending::Exited(0)
    );
    // PR_SET_DUMPABLE 1: harmless, but not naming a thread.
    let dumpable = [u64::from(libc::PR_SET_DUMPABLE.unsigned_abs()), 1];
    assert_eq!(
        child_calls(Seccomp::Kill, libc::SYS_prctl, dumpable),
        Ending::Signalled(libc::SIGSYS)
    );
}

#[test]
fn unshare_is_allowed_only_for_a_threads_working_directory() {
    let fs_only = [u64::from(libc::CLONE_FS.unsigned_abs()), 0];
    assert_eq!(
        child_calls(Seccomp::Kill, libc::SYS_unshare, fs_only),
        Ending::Exited(0)
    );
    let mount_namespace = [u64::from(libc::CLONE_NEWNS.unsigned_abs()), 0];
    assert_eq!(
        child_calls(Seccomp::Kill, libc::SYS_unshare, mount_namespace),
        Ending::Signalled(libc::SIGSYS)
    );
}

#[test]
fn ioctl_is_allowed_only_to_make_a_descriptor_non_blocking() {
    // On descriptor -1: the call fails with EBADF when allowed, and changes nothing.
    let bad_fd = u64::MAX;
    assert_eq!(
        child_calls(Seccomp::Kill, libc::SYS_ioctl, [bad_fd, FIONBIO]),
        Ending::Exited(0)
    );
    assert_eq!(
        child_calls(Seccomp::Kill, libc::SYS_ioctl, [bad_fd, libc::TCGETS]),
        Ending::Signalled(libc::SIGSYS)
    );
}

#[test]
fn without_a_file_system_device_openat_is_read_only() {
    let pmem = Needs {
        pmem: true,
        ..Needs::default()
    };
    let openat = allowed(pmem)[&libc::SYS_openat].1.clone();
    assert_eq!(openat, Some(vec![(2, O_RDONLY_CLOEXEC)]));
    let fs = Needs { fs: true, ..pmem };
    assert_eq!(
        allowed(fs)[&libc::SYS_openat].1,
        None,
        "the union is unrestricted"
    );
}
