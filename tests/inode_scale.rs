//! Many inodes over the socket: with `--inode-file-handles prefer` a guest may know more
//! inodes than the daemon may hold descriptors, and `--max-inodes` /
//! `--max-open-handles` answer the guest with ENFILE past their cap, never ending the
//! daemon.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use vhost_dax::frontend::FuseQueue;
use vhost_dax::fuse::testing::Client;

const ROOT: u64 = 1;

fn is_root() -> bool {
    vhost_dax::sys::fs::geteuid() == 0
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn handles_let_a_guest_know_more_inodes_than_the_daemon_has_descriptors() {
    if !is_root() {
        eprintln!("skipping: open_by_handle_at needs root (CAP_DAC_READ_SEARCH)");
        return;
    }
    let dir = TempDir::new("inode-scale-handles");
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    for i in 0..300 {
        std::fs::write(share.join(format!("f{i}")), b"x").unwrap();
    }
    let socket = dir.join("fs.sock");
    // A hard limit the daemon cannot raise: in `never` mode 300 lookups end in EMFILE.
    let mut command = Command::new("prlimit");
    command.arg("--nofile=64:64").arg("--").arg(binary());
    let daemon = spawn_fs_daemon_with(
        command,
        &share,
        &socket,
        &["--inode-file-handles", "prefer"],
    );
    let fs = Arc::new(Mutex::new(connect(&socket)));
    let guest = Client::over(FuseQueue::new(fs.clone(), 1, WAIT));
    guest.init();
    let before = open_fds(daemon.pid());
    let mut nodes = std::collections::HashSet::new();
    for i in 0..300 {
        let e = guest
            .lookup(ROOT, format!("f{i}").as_bytes())
            .unwrap_or_else(|e| panic!("lookup {i}: errno {e}\n{}", daemon.log()));
        nodes.insert(e.nodeid);
    }
    assert_eq!(nodes.len(), 300);
    // Known inodes hold no descriptor: at most the one mount descriptor was added.
    let after = open_fds(daemon.pid());
    assert!(after <= before + 1, "{before} -> {after} descriptors");
    // And they are usable: each is opened from its handle when needed.
    let e = guest.lookup(ROOT, b"f299").unwrap();
    let fh = guest.open(e.nodeid, libc::O_RDONLY as u32).unwrap().fh;
    assert_eq!(guest.read(e.nodeid, fh, 0, 8).unwrap(), b"x");
}

#[test]
fn the_caps_answer_enfile_over_the_socket_and_the_daemon_serves_on() {
    let dir = TempDir::new("inode-scale-caps");
    let share = dir.join("share");
    std::fs::create_dir(&share).unwrap();
    for i in 0..20 {
        std::fs::write(share.join(format!("f{i}")), b"x").unwrap();
    }
    let socket = dir.join("fs.sock");
    let daemon = spawn_fs_daemon(
        &share,
        &socket,
        &["--max-inodes", "10", "--max-open-handles", "3"],
    );
    let fs = Arc::new(Mutex::new(connect(&socket)));
    let guest = Client::over(FuseQueue::new(fs.clone(), 1, WAIT));
    guest.init();
    let mut known = Vec::new();
    for i in 0..9 {
        known.push((
            guest
                .lookup(ROOT, format!("f{i}").as_bytes())
                .unwrap()
                .nodeid,
            1,
        ));
    }
    // The root and 9 nodes: the 10 the cap allows.
    assert_eq!(guest.lookup(ROOT, b"f9").unwrap_err(), libc::ENFILE);
    assert_eq!(guest.mkdir(ROOT, b"d", 0o755).unwrap_err(), libc::ENFILE);
    assert!(!share.join("d").exists());
    let node = known[0].0;
    let fhs: Vec<u64> = (0..3)
        .map(|_| guest.open(node, libc::O_RDONLY as u32).unwrap().fh)
        .collect();
    assert_eq!(
        guest.open(node, libc::O_RDONLY as u32).unwrap_err(),
        libc::ENFILE
    );
    assert!(daemon.log().contains("--max-inodes"), "{}", daemon.log());
    // Freed, both serve again.
    guest.release(node, fhs[0]).unwrap();
    assert!(guest.open(node, libc::O_RDONLY as u32).is_ok());
    guest.batch_forget(&known[1..]);
    assert!(guest.lookup(ROOT, b"f9").is_ok());
}

/// A daemon in a private mount namespace whose share has procfs (no file handles) on
/// `p` and a tmpfs (handles, another mount) on `t`.
fn daemon_with_submounts(
    share: &std::path::Path,
    socket: &std::path::Path,
    mode: &str,
) -> vhost_dax::frontend::DaemonProcess {
    let mut command = Command::new("unshare");
    command.args([
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        "share=$1; shift; mount -t proc proc \"$share/p\" && mount -t tmpfs tmpfs \"$share/t\" && exec \"$@\"",
        "sh",
    ]);
    command.arg(share).arg(binary());
    spawn_fs_daemon_with(command, share, socket, &["--inode-file-handles", mode])
}

#[test]
fn prefer_falls_back_per_mount_and_mandatory_refuses_what_has_no_handle() {
    if !is_root() {
        eprintln!("skipping: mounting needs root");
        return;
    }
    let dir = TempDir::new("inode-scale-mounts");
    let share = dir.join("share");
    for sub in ["p", "t"] {
        std::fs::create_dir_all(share.join(sub)).unwrap();
    }
    let socket = dir.join("fs.sock");
    let daemon = daemon_with_submounts(&share, &socket, "prefer");
    let fs = Arc::new(Mutex::new(connect(&socket)));
    let guest = Client::over(FuseQueue::new(fs.clone(), 1, WAIT));
    guest.init();
    let p = guest.lookup(ROOT, b"p").unwrap();
    let version = guest.lookup(p.nodeid, b"version").unwrap();
    let fh = guest
        .open(version.nodeid, libc::O_RDONLY as u32)
        .unwrap()
        .fh;
    assert!(
        guest
            .read(version.nodeid, fh, 0, 5)
            .unwrap()
            .starts_with(b"Linux")
    );
    guest.release(version.nodeid, fh).unwrap();
    let log = daemon.log();
    assert_eq!(
        log.matches("holding them by O_PATH descriptor").count(),
        1,
        "logged once for the procfs mount: {log}"
    );
    // The tmpfs: by handle, on a mount descriptor of its own; files there work.
    let t = guest.lookup(ROOT, b"t").unwrap();
    let (e, o) = guest
        .create(t.nodeid, b"f", 0o644, libc::O_RDWR as u32)
        .unwrap();
    assert_eq!(guest.write(e.nodeid, o.fh, 0, b"tmpfs").unwrap(), 5);
    guest.release(e.nodeid, o.fh).unwrap();
    guest.rename(t.nodeid, b"f", t.nodeid, b"g", 0).unwrap();
    assert_eq!(guest.lookup(t.nodeid, b"g").unwrap().nodeid, e.nodeid);
    let fh = guest.open(e.nodeid, libc::O_RDONLY as u32).unwrap().fh;
    assert_eq!(guest.read(e.nodeid, fh, 0, 8).unwrap(), b"tmpfs");
    assert_eq!(
        daemon
            .log()
            .matches("holding them by O_PATH descriptor")
            .count(),
        1,
        "tmpfs has handles"
    );

    // mandatory: the procfs directory cannot be known; the tmpfs can.
    let socket = dir.join("fs2.sock");
    let _daemon = daemon_with_submounts(&share, &socket, "mandatory");
    let fs = Arc::new(Mutex::new(connect(&socket)));
    let guest = Client::over(FuseQueue::new(fs.clone(), 1, WAIT));
    guest.init();
    assert_eq!(guest.lookup(ROOT, b"p").unwrap_err(), libc::EOPNOTSUPP);
    assert!(guest.lookup(ROOT, b"t").is_ok());
}
