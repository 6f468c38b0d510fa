//! Export options seen by the guest: --readonly, --cache, and the sandboxes.

use super::support::*;

over_both_transports!(readonly_export_refuses_every_modification, flags: ["--readonly", "--xattr"], config: |c| {
    c.readonly = true;
    c.xattr = true;
});
fn readonly_export_refuses_every_modification(f: &impl Guest) {
    std::fs::write(f.host("a"), b"A").unwrap();
    std::fs::create_dir(f.host("d")).unwrap();
    let a = f.c().lookup(ROOT, b"a").unwrap().nodeid;
    let before = std::fs::metadata(f.host("a")).unwrap();
    let rofs = Err(libc::EROFS);
    assert_eq!(f.c().mkdir(ROOT, b"x", 0o755).map(drop), rofs);
    assert_eq!(
        f.c().mknod(ROOT, b"x", libc::S_IFIFO | 0o644, 0).map(drop),
        rofs
    );
    assert_eq!(f.c().symlink(ROOT, b"x", b"a").map(drop), rofs);
    assert_eq!(f.c().link(a, ROOT, b"x").map(drop), rofs);
    assert_eq!(f.c().create(ROOT, b"x", 0o644, WRONLY).map(drop), rofs);
    assert_eq!(f.c().tmpfile(ROOT, 0o644, RDWR).map(drop), rofs);
    assert_eq!(f.c().unlink(ROOT, b"a"), rofs);
    assert_eq!(f.c().rmdir(ROOT, b"d"), rofs);
    assert_eq!(f.c().rename(ROOT, b"a", ROOT, b"b", 0), rofs);
    assert_eq!(
        f.c().rename(ROOT, b"a", ROOT, b"d", libc::RENAME_EXCHANGE),
        rofs
    );
    let chmod = abi::SetattrIn {
        mode: 0o600,
        ..sa(fattr::MODE)
    };
    assert_eq!(f.c().setattr(a, chmod).map(drop), rofs);
    let trunc = abi::SetattrIn {
        size: 0,
        ..sa(fattr::SIZE)
    };
    assert_eq!(f.c().setattr(a, trunc).map(drop), rofs);
    let touch = abi::SetattrIn {
        atime: 5,
        ..sa(fattr::ATIME)
    };
    assert_eq!(f.c().setattr(a, touch).map(drop), rofs);
    assert_eq!(
        f.c()
            .setattr(a, sa(fattr::MTIME | fattr::MTIME_NOW))
            .map(drop),
        rofs
    );
    let chown = abi::SetattrIn {
        uid: 1234,
        ..sa(fattr::UID)
    };
    assert_eq!(f.c().setattr(a, chown).map(drop), rofs);
    assert_eq!(
        f.c().rename(ROOT, b"a", ROOT, b"w", libc::RENAME_WHITEOUT),
        rofs
    );
    assert_eq!(f.c().open(a, WRONLY).map(drop), rofs);
    assert_eq!(f.c().open(a, RDWR).map(drop), rofs);
    assert_eq!(f.c().open(a, RDONLY | libc::O_TRUNC as u32).map(drop), rofs);
    assert_eq!(f.c().setxattr(a, b"user.x", b"1", 0), rofs);
    assert_eq!(f.c().removexattr(a, b"user.x"), rofs);
    assert_eq!(f.c().access(a, libc::W_OK as u32), rofs);
    // Reading still works, and what reads is unchanged.
    f.c().access(a, libc::R_OK as u32).unwrap();
    let fh = f.c().open(a, RDONLY).unwrap().fh;
    assert_eq!(f.c().read(a, fh, 0, 10).unwrap(), b"A");
    assert_eq!(f.c().fallocate(a, fh, 0, 0, 10), rofs);
    assert_eq!(f.c().write(a, fh, 0, b"x").map(drop), rofs);
    let d = f.c().opendir(ROOT).unwrap().fh;
    assert_eq!(f.c().readdir(ROOT, d, 0, 4096, false).unwrap().len(), 4);
    assert_eq!(f.c().listxattr(a, 100).unwrap(), b"");
    assert_eq!(f.c().getxattr(a, b"user.x", 10).unwrap_err(), libc::ENODATA);
    f.c().fsync(a, fh, false, false).unwrap();
    f.c().syncfs(ROOT).unwrap();
    assert!(f.c().statfs(ROOT).unwrap().blocks > 0);
    assert_eq!(std::fs::read(f.host("a")).unwrap(), b"A");
    assert_eq!(mode_of(&f.host("a")), before.mode() & 0o7777);
    let after = std::fs::metadata(f.host("a")).unwrap();
    assert_eq!((after.mtime(), after.uid()), (before.mtime(), before.uid()));
    assert_eq!(host_names(&f.share()), ["a", "d"]);
}

#[test]
fn cache_policy_sets_timeouts_and_open_flags() {
    for (cache, secs, file_flags, dir_flags) in [
        ("never", 0, fopen::DIRECT_IO, fopen::DIRECT_IO),
        ("auto", 1, 0, 0),
        ("always", 86400, fopen::KEEP_CACHE, fopen::CACHE_DIR),
    ] {
        let f = start("fuse-cache", &["--cache", cache]);
        std::fs::write(f.host("file"), b"").unwrap();
        let e = f.c.lookup(ROOT, b"file").unwrap();
        assert_eq!((e.entry_valid, e.attr_valid), (secs, secs), "{cache}");
        assert_eq!(
            f.c.getattr(e.nodeid, None).unwrap().attr_valid,
            secs,
            "{cache}"
        );
        assert_eq!(
            f.c.open(e.nodeid, RDONLY).unwrap().open_flags,
            file_flags,
            "{cache}"
        );
        let (ce, created) = f.c.create(ROOT, b"new", 0o644, RDWR).unwrap();
        assert_eq!(created.open_flags, file_flags, "{cache}");
        assert_eq!((ce.entry_valid, ce.attr_valid), (secs, secs), "{cache}");
        let sa = abi::SetattrIn {
            size: 1,
            ..sa(fattr::SIZE)
        };
        assert_eq!(f.c.setattr(e.nodeid, sa).unwrap().attr_valid, secs);
        let m = f.c.mkdir(ROOT, b"dir", 0o755).unwrap();
        assert_eq!((m.entry_valid, m.attr_valid), (secs, secs), "{cache}");
        let d = f.c.opendir(ROOT).unwrap();
        assert_eq!(d.open_flags, dir_flags, "{cache}");
        for listed in f.c.readdir(ROOT, d.fh, 0, 1 << 16, true).unwrap() {
            let entry = listed.entry.unwrap();
            if entry.nodeid != 0 {
                assert_eq!(
                    (entry.entry_valid, entry.attr_valid),
                    (secs, secs),
                    "{cache}"
                );
            }
        }
    }
}

#[test]
fn sandboxed_daemons_serve_the_same_share() {
    if !is_root() {
        eprintln!("skipping: chroot and mount namespaces need root");
        return;
    }
    for sandbox in ["chroot", "namespace"] {
        let f = start("fuse-sandbox", &["--sandbox", sandbox, "--xattr"]);
        std::fs::write(f.host("a"), b"A").unwrap();
        let a = f.c.lookup(ROOT, b"a").unwrap().nodeid;
        let fh = f.c.open(a, RDWR).unwrap().fh;
        assert_eq!(f.c.read(a, fh, 0, 10).unwrap(), b"A", "{sandbox}");
        f.c.write(a, fh, 1, b"B").unwrap();
        assert_eq!(std::fs::read(f.host("a")).unwrap(), b"AB", "{sandbox}");
        // Credentials are still switched for creations.
        std::fs::set_permissions(f.share(), std::fs::Permissions::from_mode(0o777)).unwrap();
        f.c.set_caller(1234, 5678);
        f.c.mkdir(ROOT, b"u", 0o755).unwrap();
        f.c.set_caller(0, 0);
        let md = std::fs::metadata(f.host("u")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 5678), "{sandbox}");
        // Nodes reached through /proc/self/fd, opened before the sandbox closed.
        let (t, to) = f.c.tmpfile(ROOT, 0o600, RDWR).unwrap();
        f.c.write(t.nodeid, to.fh, 0, b"tmp").unwrap();
        f.c.link(t.nodeid, ROOT, b"named").unwrap();
        assert_eq!(std::fs::read(f.host("named")).unwrap(), b"tmp", "{sandbox}");
        let p = f.c.mknod(ROOT, b"p", libc::S_IFIFO | 0o600, 0).unwrap();
        f.c.setxattr(p.nodeid, b"trusted.t", b"v", 0).unwrap();
        assert_eq!(f.c.getxattr(p.nodeid, b"trusted.t", 10).unwrap(), b"v");
        // Still confined: `..` of the root, and a symlink out, are not followed.
        assert_eq!(f.c.lookup(ROOT, b"..").unwrap().nodeid, ROOT);
        std::os::unix::fs::symlink(f.dir.join("outside"), f.host("evil")).unwrap();
        let evil = f.c.lookup(ROOT, b"evil").unwrap().nodeid;
        assert_eq!(f.c.open(evil, RDWR).unwrap_err(), libc::ENXIO, "{sandbox}");
        assert_eq!(
            f.c.create(ROOT, b"evil", 0o644, WRONLY | libc::O_TRUNC as u32)
                .unwrap_err(),
            libc::ELOOP
        );
        assert_eq!(std::fs::read(f.dir.join("outside")).unwrap(), b"secret");
        // What the host sees of the confined daemon: its root is the share; in the
        // namespace sandbox it is a child of the supervisor we started, in pid, network
        // and mount namespaces of its own.
        let supervisor = f._daemon.pid();
        let daemon = match sandbox {
            "namespace" => {
                let children = std::fs::read_to_string(format!(
                    "/proc/{supervisor}/task/{supervisor}/children"
                ))
                .unwrap();
                let pids: Vec<&str> = children.split_whitespace().collect();
                assert_eq!(pids.len(), 1, "the supervisor's children: {children:?}");
                pids[0].parse::<u32>().unwrap()
            }
            _ => supervisor,
        };
        let root = std::fs::metadata(format!("/proc/{daemon}/root/")).unwrap();
        let share = std::fs::metadata(f.share()).unwrap();
        assert_eq!(
            (root.dev(), root.ino()),
            (share.dev(), share.ino()),
            "{sandbox}: the daemon's root"
        );
        for ns in ["pid", "net", "mnt"] {
            let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
            let theirs = std::fs::read_link(format!("/proc/{daemon}/ns/{ns}")).unwrap();
            match (sandbox, ns) {
                ("namespace", _) => assert_ne!(ours, theirs, "{sandbox}: {ns} namespace"),
                _ => assert_eq!(ours, theirs, "{sandbox}: {ns} namespace"),
            }
        }
        // A clean stop leaves no socket file behind, though the daemon cannot reach it
        // from inside (the supervisor removes it in the namespace sandbox).
        let mut daemon_process = f._daemon;
        daemon_process.signal(libc::SIGTERM).unwrap();
        let status = daemon_process.wait(crate::common::WAIT).unwrap();
        assert!(status.success(), "{sandbox}: {status}");
        assert!(
            !f.dir.join("fs.sock").exists(),
            "{sandbox}: socket left behind"
        );
    }
}

#[test]
fn a_low_open_files_limit_is_raised_so_thousands_of_lookups_work() {
    // The usual soft limit is 1024; every inode the guest knows holds a descriptor.
    let Ok(prlimit) = which("prlimit") else {
        eprintln!("SKIPPED: no prlimit(1) here to start the daemon under a low soft limit");
        return;
    };
    let dir = crate::common::TempDir::new("fuse-nofile");
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    for i in 0..1500 {
        std::fs::write(share.join(format!("f{i}")), b"").unwrap();
    }
    let socket = dir.join("fs.sock");
    let mut command = std::process::Command::new(prlimit);
    command.arg("--nofile=256:").arg(crate::common::binary());
    let daemon = crate::common::spawn_fs_daemon_with(command, &share, &socket, &[]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (soft, hard) = (fields[3], fields[4]);
    let want = match hard {
        "unlimited" => 1_000_000,
        hard => hard.parse::<u64>().unwrap().min(1_000_000),
    };
    assert_eq!(soft.parse::<u64>().unwrap(), want, "{line}");
    assert!(
        want > 1500,
        "the hard limit here is too low for this test: {line}"
    );
    let frontend = std::sync::Arc::new(std::sync::Mutex::new(crate::common::connect(&socket)));
    let c = vhost_dax::fuse::testing::Client::over(vhost_dax::frontend::FuseQueue::new(
        frontend,
        1,
        crate::common::WAIT,
    ));
    c.init();
    for i in 0..1500 {
        let name = format!("f{i}");
        assert!(c.lookup(ROOT, name.as_bytes()).is_ok(), "LOOKUP {name}");
    }
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}
