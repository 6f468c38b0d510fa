//! Least privilege of a daemon run as root: every thread of a serving daemon keeps only
//! the capabilities its device needs (read from `/proc/PID/task/*/status`), and a
//! confined daemon holds no descriptor of a directory outside its share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::support::*;
use crate::common::{TempDir, spawn_daemon, wait_until};

/// virtiofsd's default set for a file server: chown, dac_override, fowner, fsetid,
/// setgid, setuid, mknod, setfcap.
const FS_CAPS: u64 = 0x8800_00db;
const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_CHOWN: u64 = 1;
const CAP_DAC_READ_SEARCH: u64 = 1 << 2;

/// The process serving: the one started, or with `--sandbox namespace` its one child
/// (the started process stays outside as a supervisor, which must keep nothing).
fn serving_pid(started: u32, sandbox: &str) -> u32 {
    if sandbox != "namespace" {
        return started;
    }
    let children =
        std::fs::read_to_string(format!("/proc/{started}/task/{started}/children")).unwrap();
    let pids: Vec<u32> = children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 1, "the supervisor's children: {children:?}");
    pids[0]
}

/// Per thread (by name and id): the capability lines and NoNewPrivs of its status.
fn thread_privileges(pid: u32) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut threads = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let Ok(status) = std::fs::read_to_string(task.join("status")) else {
            continue; // the thread ended meanwhile
        };
        let mut fields = BTreeMap::new();
        let mut name = String::new();
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "Name" => name = value.to_owned(),
                "CapInh" | "CapPrm" | "CapEff" | "CapBnd" | "CapAmb" => {
                    fields.insert(key.to_owned(), u64::from_str_radix(value, 16).unwrap());
                }
                "NoNewPrivs" => {
                    fields.insert(key.to_owned(), value.parse().unwrap());
                }
                _ => {}
            }
        }
        let id = task.file_name().unwrap().to_string_lossy().into_owned();
        threads.insert(format!("{name}/{id}"), fields);
    }
    threads
}

/// Every thread of `pid` has exactly `caps` effective, permitted and bounding, nothing
/// inheritable or ambient, and no new privileges; there are at least `min_threads`.
fn assert_every_thread_keeps(pid: u32, caps: u64, min_threads: usize, log: &dyn Fn() -> String) {
    let threads = thread_privileges(pid);
    assert!(
        threads.len() >= min_threads,
        "only {} threads: {threads:?}",
        threads.len()
    );
    for (thread, f) in &threads {
        let want = [
            ("CapEff", caps),
            ("CapPrm", caps),
            ("CapBnd", caps),
            ("CapInh", 0),
            ("CapAmb", 0),
            ("NoNewPrivs", 1),
        ];
        for (key, value) in want {
            assert_eq!(
                f.get(key).copied(),
                Some(value),
                "{thread} {key}: {f:x?}\n{}",
                log()
            );
        }
    }
}

#[test]
fn every_thread_of_a_root_fs_daemon_keeps_only_the_file_servers_capabilities() {
    if !is_root() {
        eprintln!("skipping: capabilities are dropped only by a daemon run as root");
        return;
    }
    for (sandbox, modcaps, caps) in [
        ("chroot", None, FS_CAPS),
        ("namespace", None, FS_CAPS),
        ("none", None, FS_CAPS),
        (
            "chroot",
            Some("--modcaps=+sys_admin:-chown"),
            (FS_CAPS | CAP_SYS_ADMIN) & !CAP_CHOWN,
        ),
        // Inodes by file handle: open_by_handle_at needs dac_read_search (virtiofsd's
        // 0x880000df).
        (
            "namespace",
            Some("--inode-file-handles=prefer"),
            FS_CAPS | CAP_DAC_READ_SEARCH,
        ),
    ] {
        let dir = TempDir::new("fuse-privs");
        let ctl = dir.join("ctl.sock");
        let mut extra = vec![
            "--sandbox",
            sandbox,
            "--thread-pool-size",
            "2",
            "--queues",
            "2",
            "--control-socket",
            ctl.to_str().unwrap(),
        ];
        extra.extend(modcaps);
        let f = start("fuse-privs", &extra);
        // Requests on both request queues and the pool, so their threads all run.
        std::fs::write(f.host("a"), b"A").unwrap();
        let a = f.c.lookup(ROOT, b"a").unwrap().nodeid;
        f.client_on(2).getattr(a, None).unwrap();
        f.c.mkdir(ROOT, b"d", 0o755).unwrap();
        let pid = serving_pid(f._daemon.pid(), sandbox);
        // main, signals, listener, the pool's 2, the control socket's, 3 queues.
        assert_every_thread_keeps(pid, caps, 9, &|| f._daemon.log());
        if pid != f._daemon.pid() {
            assert_every_thread_keeps(f._daemon.pid(), 0, 1, &|| f._daemon.log());
        }
        // Every thread is confined too (a mount namespace, and so its chroot, belongs to
        // the thread that entered it and the threads it starts afterwards).
        if sandbox != "none" {
            // (In the namespace sandbox the old root is detached: the share is `/` there.)
            let want = if sandbox == "namespace" {
                PathBuf::from("/")
            } else {
                f.share()
            };
            for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
                let task = task.unwrap().path();
                let root = std::fs::read_link(task.join("root")).unwrap();
                assert_eq!(root, want, "{sandbox}: {} root", task.display());
            }
        }
        // A root guest's chown works with CAP_CHOWN kept, and fails without it.
        let sa = abi::SetattrIn {
            uid: 1234,
            gid: 5678,
            ..sa(fattr::UID | fattr::GID)
        };
        let md = std::fs::metadata(f.host("a")).unwrap();
        if caps & CAP_CHOWN != 0 {
            f.c.setattr(a, sa).unwrap();
            let md = std::fs::metadata(f.host("a")).unwrap();
            assert_eq!((md.uid(), md.gid()), (1234, 5678), "{sandbox}");
        } else {
            assert_eq!(f.c.setattr(a, sa).unwrap_err(), libc::EPERM);
            let now = std::fs::metadata(f.host("a")).unwrap();
            assert_eq!((now.uid(), now.gid()), (md.uid(), md.gid()));
        }
    }
}

/// The directories `pid` holds descriptors of: (what readlink says, device, inode).
fn open_directories(pid: u32) -> Vec<(PathBuf, u64, u64)> {
    let mut dirs = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let fd = fd.unwrap().path();
        let (Ok(target), Ok(md)) = (std::fs::read_link(&fd), std::fs::metadata(&fd)) else {
            continue; // closed meanwhile
        };
        if md.is_dir() {
            dirs.push((target, md.dev(), md.ino()));
        }
    }
    dirs
}

/// (device, inode) of `dir` and of every directory below it.
fn directories_below(dir: &Path) -> Vec<(u64, u64)> {
    let md = std::fs::metadata(dir).unwrap();
    let mut out = vec![(md.dev(), md.ino())];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(directories_below(&path));
        }
    }
    out
}

#[test]
fn a_confined_daemon_holds_no_directory_outside_its_share() {
    if !is_root() {
        eprintln!("skipping: chroot and mount namespaces need root");
        return;
    }
    for sandbox in ["chroot", "namespace"] {
        let dir = TempDir::new("fuse-fds");
        let ctl = dir.join("ctl.sock");
        let mut f = start(
            "fuse-fds",
            &[
                "--sandbox",
                sandbox,
                "--control-socket",
                ctl.to_str().unwrap(),
            ],
        );
        std::fs::create_dir(f.host("sub")).unwrap();
        let sub = f.c.lookup(ROOT, b"sub").unwrap().nodeid;
        let h = f.c.opendir(sub).unwrap().fh;
        f.c.readdir(sub, h, 0, 4096, false).unwrap();
        let pid = serving_pid(f._daemon.pid(), sandbox);
        // Compared by identity: paths in another mount namespace read differently.
        let inside = directories_below(&f.share());
        // The descriptor of the daemon's own /proc/PID/fd, opened before confinement, is
        // how it reopens the inodes it holds (as virtiofsd's): procfs, not the host tree.
        let procfs = std::fs::metadata("/proc/self").unwrap().dev();
        let dirs = open_directories(pid);
        assert!(dirs.iter().any(|d| (d.1, d.2) == inside[0]), "{dirs:?}");
        for (target, dev, ino) in &dirs {
            assert!(
                inside.contains(&(*dev, *ino)) || *dev == procfs,
                "{sandbox}: a descriptor of {} outside {}\n{}",
                target.display(),
                f.share().display(),
                f._daemon.log()
            );
        }
        // Nor is its working directory outside it.
        let cwd = std::fs::metadata(format!("/proc/{pid}/cwd")).unwrap();
        assert_eq!((cwd.dev(), cwd.ino()), inside[0], "{sandbox}: cwd");
        // At exit the confined daemon cannot remove its socket files: in a chroot they
        // stay, and the log says so once for each; in the namespace sandbox the
        // supervisor outside removes them.
        f._daemon.signal(libc::SIGTERM).unwrap();
        let status = f._daemon.wait(crate::common::WAIT).unwrap();
        assert!(status.success(), "{}", f._daemon.log());
        let socket = f.dir.join("fs.sock");
        for path in [&socket, &ctl] {
            let line = format!("leaving {} in place", path.display());
            let (exists, said) = if sandbox == "chroot" {
                (true, 1)
            } else {
                (false, 0)
            };
            assert_eq!(
                Path::new(path).exists(),
                exists,
                "{sandbox}: {}\n{}",
                path.display(),
                f._daemon.log()
            );
            assert_eq!(
                f._daemon.log().matches(&line).count(),
                said,
                "{sandbox}: {line}\n{}",
                f._daemon.log()
            );
        }
    }
}

#[test]
fn a_pmem_daemon_keeps_nothing_and_one_serving_both_keeps_the_union() {
    if !is_root() {
        eprintln!("skipping: capabilities are dropped only by a daemon run as root");
        return;
    }
    let dir = TempDir::new("privs-pmem");
    let pmem_socket = dir.join("pmem.sock");
    let image = dir.join("pmem.img");
    let pmem = spawn_daemon(
        &[
            "pmem",
            "--socket",
            pmem_socket.to_str().unwrap(),
            "--file",
            image.to_str().unwrap(),
            "--size",
            "2M",
            "--create",
        ],
        &pmem_socket,
    );
    // main, signals, listener, pmem-sync, pmem-region.
    let pid = pmem.pid();
    wait_until("the pmem daemon's threads", || {
        thread_privileges(pid).len() >= 5
    });
    assert_every_thread_keeps(pid, 0, 5, &|| pmem.log());
    drop(pmem);

    // One process serving pmem and two fs devices: the union of the fs devices' sets.
    std::fs::create_dir(dir.join("a")).unwrap();
    std::fs::create_dir(dir.join("b")).unwrap();
    let config = dir.join("all.toml");
    let last = dir.join("fs-b.sock");
    std::fs::write(
        &config,
        format!(
            "[[pmem]]\nsocket = \"{pmem}\"\nfile = \"{image}\"\n\n\
             [[fs]]\nsocket = \"{a_sock}\"\nshared_dir = \"{a}\"\nsandbox = \"none\"\n\
             modcaps = \"-mknod:+sys_admin\"\n\n\
             [[fs]]\nsocket = \"{b_sock}\"\nshared_dir = \"{b}\"\nsandbox = \"none\"\n\
             modcaps = \"-chown\"\n",
            pmem = pmem_socket.display(),
            image = image.display(),
            a_sock = dir.join("fs-a.sock").display(),
            a = dir.join("a").display(),
            b_sock = last.display(),
            b = dir.join("b").display(),
        ),
    )
    .unwrap();
    let all = spawn_daemon(&["run", "--config", config.to_str().unwrap()], &last);
    let pid = all.pid();
    // main, signals, 3 listeners, pmem-sync, pmem-region.
    wait_until("the daemon's threads", || thread_privileges(pid).len() >= 7);
    // a: default - mknod + sys_admin; b: default - chown; together: default + sys_admin.
    assert_every_thread_keeps(pid, FS_CAPS | CAP_SYS_ADMIN, 7, &|| all.log());
}

#[test]
fn a_bad_modcaps_names_the_field_and_exits_2() {
    let dir = TempDir::new("privs-bad");
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
    let config = dir.join("bad.toml");
    std::fs::write(
        &config,
        format!(
            "[[fs]]\nsocket = \"{}\"\nshared_dir = \"{}\"\nmodcaps = \"+sys_admin:mknod\"\n",
            socket.display(),
            dir.join("share").display()
        ),
    )
    .unwrap();
    let share = dir.join("share");
    for (args, field) in [
        (
            vec![
                "fs",
                "--socket",
                socket.to_str().unwrap(),
                "--shared-dir",
                share.to_str().unwrap(),
                "--modcaps=+no_such_cap",
            ],
            "--modcaps",
        ),
        (
            vec!["run", "--config", config.to_str().unwrap()],
            "fs[0].modcaps",
        ),
        (
            vec![
                "fs",
                "--socket",
                socket.to_str().unwrap(),
                "--shared-dir",
                share.to_str().unwrap(),
                "--inode-file-handles=prefer",
                "--modcaps=-dac_read_search",
            ],
            "--modcaps",
        ),
    ] {
        let out = std::process::Command::new(crate::common::binary())
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("error: {field}: ")), "{stderr}");
        assert!(!socket.exists());
    }
}

/// `vhost-dax fs` on a fresh share, started with supplementary group `gid` as root
/// might have, the guest connected and initialised.
fn start_in_group(name: &str, gid: u32) -> Fs {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(crate::common::binary());
    // SAFETY: setgroups is async-signal-safe and touches only the child; `groups` lives
    // in the closure, which the child runs before exec.
    unsafe {
        command.pre_exec(move || {
            let groups = [gid];
            if libc::setgroups(1, groups.as_ptr()) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let f = start_uninit_with(name, &[], command);
    let init = f.c.init();
    // FUSE_CREATE_SUPP_GROUP (flags2 bit 2): a root daemon takes the caller's group.
    assert_ne!(init.flags2 & 1 << 2, 0, "{init:?}");
    f
}

#[test]
fn creations_run_with_the_callers_supplementary_group_and_never_the_daemons() {
    if !is_root() {
        eprintln!("skipping: credentials are switched only by a daemon run as root");
        return;
    }
    const GROUP: u32 = 4242;
    // The daemon itself starts in GROUP, as a root shell might be.
    let f = start_in_group("privs-groups", GROUP);
    // A directory only GROUP may write into.
    let g = f.host("g");
    std::fs::create_dir(&g).unwrap();
    std::os::unix::fs::chown(&g, Some(0), Some(GROUP)).unwrap();
    std::fs::set_permissions(&g, std::fs::Permissions::from_mode(0o770)).unwrap();
    let gid = f.c.lookup(ROOT, b"g").unwrap().nodeid;
    f.c.set_caller(1234, 5678);
    // Not in GROUP: the daemon's own group does not count for the guest user.
    assert_eq!(f.c.mkdir(gid, b"no", 0o755).unwrap_err(), libc::EACCES);
    assert!(!g.join("no").exists());
    // The guest kernel says the caller is in GROUP: every kind of creation succeeds,
    // owned by the caller.
    f.c.set_supp_group(Some(GROUP));
    f.c.mkdir(gid, b"d", 0o755).unwrap();
    f.c.create(gid, b"f", 0o644, RDWR).unwrap();
    f.c.mknod(gid, b"p", libc::S_IFIFO | 0o600, 0).unwrap();
    f.c.symlink(gid, b"l", b"f").unwrap();
    for name in ["d", "f", "p", "l"] {
        let md = std::fs::symlink_metadata(g.join(name)).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 5678), "{name}");
    }
    // The group is the request's only: the next creation without it is refused again.
    f.c.set_supp_group(None);
    assert_eq!(f.c.mkdir(gid, b"no", 0o755).unwrap_err(), libc::EACCES);
    // A group the caller is not in (the host's check fails as the guest's would).
    f.c.set_supp_group(Some(GROUP + 1));
    assert_eq!(f.c.mkdir(gid, b"no", 0o755).unwrap_err(), libc::EACCES);
    assert!(!g.join("no").exists());
    // The daemon's threads carry no supplementary group.
    for task in std::fs::read_dir(format!("/proc/{}/task", f._daemon.pid())).unwrap() {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
        assert_eq!(groups["Groups:".len()..].trim(), "", "{status}");
    }
}
