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
        let pid = f._daemon.pid();
        // main, signals, listener, the pool's 2, the control socket's, 3 queues.
        assert_every_thread_keeps(pid, caps, 9, &|| f._daemon.log());
        // Every thread is confined too (a mount namespace, and so its chroot, belongs to
        // the thread that entered it and the threads it starts afterwards).
        if sandbox != "none" {
            for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
                let task = task.unwrap().path();
                let root = std::fs::read_link(task.join("root")).unwrap();
                assert_eq!(root, f.share(), "{sandbox}: {} root", task.display());
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

/// The directories `pid` holds descriptors of, as the host sees them.
fn open_directories(pid: u32) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let fd = fd.unwrap().path();
        let (Ok(target), Ok(md)) = (std::fs::read_link(&fd), std::fs::metadata(&fd)) else {
            continue; // closed meanwhile
        };
        if md.is_dir() {
            dirs.push(target);
        }
    }
    dirs
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
        let pid = f._daemon.pid();
        let share = f.share();
        // The descriptor of the daemon's own /proc/PID/fd, opened before the chroot, is
        // how it reopens the inodes it holds (as virtiofsd's): procfs, not the host tree.
        let proc_fd = PathBuf::from(format!("/proc/{pid}/fd"));
        let dirs = open_directories(pid);
        assert!(dirs.iter().any(|d| d == &share), "{dirs:?}");
        for d in &dirs {
            assert!(
                d.starts_with(&share) || d == &proc_fd,
                "{sandbox}: a descriptor of {} outside {}\n{}",
                d.display(),
                share.display(),
                f._daemon.log()
            );
        }
        // Nor is its working directory outside it.
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
        assert!(cwd.starts_with(&share), "{sandbox}: cwd {}", cwd.display());
        // At exit it cannot remove its socket files: they stay, and the log says so once
        // for each.
        f._daemon.signal(libc::SIGTERM).unwrap();
        let status = f._daemon.wait(crate::common::WAIT).unwrap();
        assert!(status.success(), "{}", f._daemon.log());
        let socket = f.dir.join("fs.sock");
        for path in [&socket, &ctl] {
            assert!(Path::new(path).exists(), "{}", path.display());
            let line = format!("leaving {} in place", path.display());
            assert_eq!(
                f._daemon.log().matches(&line).count(),
                1,
                "{line}\n{}",
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
    let dir = TempDir::new(name);
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
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
    let daemon = crate::common::spawn_fs_daemon_with(command, &dir.join("share"), &socket, &[]);
    let frontend = std::sync::Arc::new(std::sync::Mutex::new(crate::common::connect(&socket)));
    let c = vhost_dax::fuse::testing::Client::over(vhost_dax::frontend::FuseQueue::new(
        frontend.clone(),
        1,
        crate::common::WAIT,
    ));
    let f = Fs {
        dir,
        _daemon: daemon,
        frontend,
        c,
    };
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
