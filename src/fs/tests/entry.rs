//! Names: lookup, forget, create-type ops, removal, rename, links. Escapes from the share
//! and the read-only export run over both transports in `tests/fuse_ops/`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::{ROOT, is_root, setup, setup_with};
use crate::fuse::NodeId;

const S_IFMT: u32 = libc::S_IFMT;

#[test]
fn lookup_and_enoent() {
    let f = setup();
    std::fs::write(f.shared().join("file"), b"hello").unwrap();
    let e = f.c.lookup(ROOT, b"file").unwrap();
    assert!(e.nodeid > ROOT);
    assert_eq!(e.attr.size, 5);
    assert_eq!(e.attr.mode & S_IFMT, libc::S_IFREG);
    assert_eq!(e.entry_valid, 1);
    assert_eq!(f.c.lookup(ROOT, b"missing").unwrap_err(), libc::ENOENT);
    // Lookup in a non-directory.
    assert_eq!(f.c.lookup(e.nodeid, b"x").unwrap_err(), libc::ENOTDIR);
    // The same file twice: same node id.
    assert_eq!(f.c.lookup(ROOT, b"file").unwrap().nodeid, e.nodeid);
    assert_eq!(f.fs().inodes().lookups(NodeId(e.nodeid)), Some(2));
}

#[test]
fn cache_policy_sets_timeouts() {
    use super::super::CachePolicy;
    use crate::fuse::abi::fopen;
    // (policy, timeout, file open flags, directory open flags), as virtiofsd's --cache.
    for (cache, secs, file_flags, dir_flags) in [
        (CachePolicy::Never, 0, fopen::DIRECT_IO, fopen::DIRECT_IO),
        (CachePolicy::Auto, 1, 0, 0),
        (
            CachePolicy::Always,
            86400,
            fopen::KEEP_CACHE,
            fopen::CACHE_DIR,
        ),
        (
            CachePolicy::Metadata,
            86400,
            fopen::DIRECT_IO,
            fopen::CACHE_DIR | fopen::KEEP_CACHE,
        ),
    ] {
        let f = setup_with(|c| c.cache = cache);
        std::fs::write(f.shared().join("file"), b"").unwrap();
        let e = f.c.lookup(ROOT, b"file").unwrap();
        assert_eq!((e.entry_valid, e.attr_valid), (secs, secs), "{cache:?}");
        let open = f.c.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
        assert_eq!(open.open_flags, file_flags, "{cache:?}");
        let d = f.c.opendir(ROOT).unwrap();
        assert_eq!(d.open_flags, dir_flags, "{cache:?}");
    }
}

#[test]
fn forget_invalidates_exactly_at_zero() {
    let f = setup();
    std::fs::write(f.shared().join("file"), b"").unwrap();
    let id = f.c.lookup(ROOT, b"file").unwrap().nodeid;
    f.c.lookup(ROOT, b"file").unwrap();
    f.c.lookup(ROOT, b"file").unwrap();
    f.c.forget(id, 2);
    f.c.getattr(id, None).unwrap();
    f.c.forget(id, 1);
    assert_eq!(f.c.getattr(id, None).unwrap_err(), libc::EBADF);
    // A new lookup yields a fresh node id (ids are never reused).
    let id2 = f.c.lookup(ROOT, b"file").unwrap().nodeid;
    assert_ne!(id2, id);
    // BATCH_FORGET, including unknown ids and the root (ignored).
    let d = f.c.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    f.c.batch_forget(&[(id2, 1), (d, 1), (999, 5), (ROOT, 100)]);
    assert_eq!(f.c.getattr(id2, None).unwrap_err(), libc::EBADF);
    assert_eq!(f.c.getattr(d, None).unwrap_err(), libc::EBADF);
    f.c.getattr(ROOT, None).unwrap();
    assert_eq!(f.fs().inodes().len(), 1);
}

#[test]
fn mkdir_rmdir_unlink() {
    let f = setup();
    let d = f.c.mkdir(ROOT, b"d", 0o750).unwrap();
    assert_eq!(d.attr.mode, libc::S_IFDIR | 0o750);
    assert_eq!(f.c.mkdir(ROOT, b"d", 0o750).unwrap_err(), libc::EEXIST);
    assert_eq!(f.c.mkdir(12345, b"x", 0o750).unwrap_err(), libc::EBADF);
    f.c.mknod(d.nodeid, b"f", libc::S_IFREG | 0o644, 0).unwrap();
    assert_eq!(f.c.rmdir(ROOT, b"d").unwrap_err(), libc::ENOTEMPTY);
    assert_eq!(f.c.rmdir(d.nodeid, b"f").unwrap_err(), libc::ENOTDIR);
    assert_eq!(f.c.unlink(ROOT, b"d").unwrap_err(), libc::EISDIR);
    f.c.unlink(d.nodeid, b"f").unwrap();
    assert_eq!(f.c.unlink(d.nodeid, b"f").unwrap_err(), libc::ENOENT);
    f.c.rmdir(ROOT, b"d").unwrap();
    assert!(!f.shared().join("d").exists());
    assert_eq!(f.c.rmdir(ROOT, b"d").unwrap_err(), libc::ENOENT);
}

#[test]
fn mknod_fifo_socket_and_device_policy() {
    let f = setup();
    let p = f.c.mknod(ROOT, b"fifo", libc::S_IFIFO | 0o600, 0).unwrap();
    assert_eq!(p.attr.mode & S_IFMT, libc::S_IFIFO);
    // Opening a fifo node through FUSE is refused rather than blocking.
    assert_eq!(
        f.c.open(p.nodeid, libc::O_RDONLY as u32).unwrap_err(),
        libc::ENXIO
    );
    let s = f.c.mknod(ROOT, b"sock", libc::S_IFSOCK | 0o600, 0).unwrap();
    assert_eq!(s.attr.mode & S_IFMT, libc::S_IFSOCK);
    // /dev/null is 1:3; the FUSE encoding is (major << 8) | minor.
    let null = (1 << 8) | 3;
    assert_eq!(
        f.c.mknod(ROOT, b"null", libc::S_IFCHR | 0o600, null)
            .unwrap_err(),
        libc::EPERM
    );
    assert_eq!(
        f.c.mknod(ROOT, b"weird", 0o170000 | 0o600, 0).unwrap_err(),
        libc::EINVAL
    );
    let f = setup_with(|c| c.allow_device_nodes = true);
    if is_root() {
        let n =
            f.c.mknod(ROOT, b"null", libc::S_IFCHR | 0o600, null)
                .unwrap();
        assert_eq!(n.attr.rdev, null);
    } else {
        assert_eq!(
            f.c.mknod(ROOT, b"null", libc::S_IFCHR | 0o600, null)
                .unwrap_err(),
            libc::EPERM
        );
    }
}

#[test]
fn symlink_and_readlink() {
    let f = setup();
    let l = f.c.symlink(ROOT, b"l", b"target/../x").unwrap();
    assert_eq!(l.attr.mode & S_IFMT, libc::S_IFLNK);
    assert_eq!(f.c.readlink(l.nodeid).unwrap(), b"target/../x");
    assert_eq!(f.c.symlink(ROOT, b"l", b"y").unwrap_err(), libc::EEXIST);
    assert_eq!(f.c.readlink(ROOT).unwrap_err(), libc::EINVAL);
    assert_eq!(
        std::fs::read_link(f.shared().join("l")).unwrap().to_str(),
        Some("target/../x")
    );
}

#[test]
fn hard_links_share_a_node_id() {
    let f = setup();
    let (a, o) = f.c.create(ROOT, b"a", 0o644, libc::O_RDWR as u32).unwrap();
    f.c.release(a.nodeid, o.fh).unwrap();
    let b = f.c.link(a.nodeid, ROOT, b"b").unwrap();
    assert_eq!(b.nodeid, a.nodeid);
    assert_eq!(b.attr.nlink, 2);
    assert_eq!(f.c.lookup(ROOT, b"b").unwrap().nodeid, a.nodeid);
    // Links created on the host are recognised too.
    std::fs::hard_link(f.shared().join("a"), f.shared().join("c")).unwrap();
    assert_eq!(f.c.lookup(ROOT, b"c").unwrap().nodeid, a.nodeid);
    assert_eq!(f.fs().inodes().lookups(NodeId(a.nodeid)), Some(4));
    assert_eq!(f.c.link(a.nodeid, ROOT, b"c").unwrap_err(), libc::EEXIST);
    // Directories cannot be hard-linked; symlinks can (not followed).
    let d = f.c.mkdir(ROOT, b"d", 0o755).unwrap();
    assert_eq!(f.c.link(d.nodeid, ROOT, b"d2").unwrap_err(), libc::EPERM);
    std::os::unix::fs::symlink(f.dir.path().join("outside"), f.shared().join("s")).unwrap();
    let s = f.c.lookup(ROOT, b"s").unwrap();
    let s2 = f.c.link(s.nodeid, ROOT, b"s2").unwrap();
    assert_eq!(s2.nodeid, s.nodeid);
    assert!(
        std::fs::symlink_metadata(f.shared().join("s2"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn rename_and_rename2() {
    let f = setup();
    std::fs::write(f.shared().join("a"), b"A").unwrap();
    std::fs::write(f.shared().join("b"), b"B").unwrap();
    let d = f.c.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    f.c.rename(ROOT, b"a", d, b"a2", 0).unwrap();
    assert_eq!(std::fs::read(f.shared().join("d/a2")).unwrap(), b"A");
    assert_eq!(
        f.c.rename(ROOT, b"a", d, b"a3", 0).unwrap_err(),
        libc::ENOENT
    );
    // NOREPLACE.
    std::fs::write(f.shared().join("a"), b"A").unwrap();
    assert_eq!(
        f.c.rename(ROOT, b"a", ROOT, b"b", libc::RENAME_NOREPLACE)
            .unwrap_err(),
        libc::EEXIST
    );
    f.c.rename(ROOT, b"a", ROOT, b"c", libc::RENAME_NOREPLACE)
        .unwrap();
    // EXCHANGE.
    f.c.rename(ROOT, b"b", ROOT, b"c", libc::RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(std::fs::read(f.shared().join("b")).unwrap(), b"A");
    assert_eq!(std::fs::read(f.shared().join("c")).unwrap(), b"B");
    assert_eq!(
        f.c.rename(ROOT, b"b", ROOT, b"zz", libc::RENAME_EXCHANGE)
            .unwrap_err(),
        libc::ENOENT
    );
    assert_eq!(
        f.c.rename(ROOT, b"b", ROOT, b"zz", 1 << 20).unwrap_err(),
        libc::EINVAL
    );
    // Directory over non-empty directory.
    std::fs::create_dir(f.shared().join("e")).unwrap();
    assert_eq!(
        f.c.rename(ROOT, b"e", ROOT, b"d", 0).unwrap_err(),
        libc::ENOTEMPTY
    );
}

#[test]
fn creating_ops_run_as_the_caller() {
    let f = setup();
    f.c.set_caller(1234, 5678);
    let d = f.c.mkdir(ROOT, b"d", 0o777).unwrap();
    let (e, _) = f.c.create(ROOT, b"f", 0o644, libc::O_RDWR as u32).unwrap();
    let l = f.c.symlink(ROOT, b"l", b"f").unwrap();
    let n = f.c.mknod(ROOT, b"p", libc::S_IFIFO | 0o644, 0).unwrap();
    let md = std::fs::metadata(f.shared().join("f")).unwrap();
    if is_root() {
        for a in [d.attr, e.attr, l.attr, n.attr] {
            assert_eq!((a.uid, a.gid), (1234, 5678));
        }
        assert_eq!((md.uid(), md.gid()), (1234, 5678));
        // The host checks permissions as the caller: the root of the share is
        // root's 0755 directory in which uid 1234 may not create...
        std::fs::set_permissions(f.shared(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(f.c.mkdir(ROOT, b"no", 0o755).unwrap_err(), libc::EACCES);
        // ...but it may inside its own directory.
        f.c.mkdir(d.nodeid, b"yes", 0o755).unwrap();
        // The thread's credentials are restored afterwards.
        assert_eq!(super::super::sys::setfsuid(u32::MAX), 0);
        assert_eq!(super::super::sys::setfsgid(u32::MAX), 0);
    } else {
        assert_eq!(md.uid(), super::super::sys::geteuid());
    }
}

#[test]
fn no_credential_switch_when_not_root() {
    // The non-root branch: the guard is a no-op and files belong to the daemon.
    let mut f = setup();
    let cfg = f.fs().config().clone();
    let mut pfs = super::super::PassthroughFs::new(cfg).unwrap();
    pfs.switch_creds = false;
    f.c = crate::fuse::testing::Client::new(pfs);
    f.c.init();
    f.c.set_caller(1234, 5678);
    let d = f.c.mkdir(ROOT, b"d", 0o755).unwrap();
    assert_eq!(d.attr.uid, super::super::sys::geteuid());
}

/// Runs `mount`/`umount` (root only); false if this environment cannot mount.
fn sh(args: &[&str]) -> bool {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn submounts_are_distinct_and_cross_device_ops_fail_with_exdev() {
    if !is_root() {
        return;
    }
    let f = setup();
    let sub = f.shared().join("mnt");
    std::fs::create_dir(&sub).unwrap();
    let Some(subs) = sub.to_str() else { return };
    if !sh(&[
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=1m",
        "vhost-dax-test",
        subs,
    ]) {
        eprintln!("skipping: cannot mount tmpfs here");
        return;
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        std::fs::write(sub.join("inner"), b"x").unwrap();
        std::fs::write(f.shared().join("outer"), b"y").unwrap();
        let m = f.c.lookup(ROOT, b"mnt").unwrap();
        let inner = f.c.lookup(m.nodeid, b"inner").unwrap();
        assert_eq!(
            f.c.rename(m.nodeid, b"inner", ROOT, b"moved", 0)
                .unwrap_err(),
            libc::EXDEV
        );
        assert_eq!(f.c.link(inner.nodeid, ROOT, b"l").unwrap_err(), libc::EXDEV);
        // `..` of the mount's root is the share's root, not outside.
        assert_eq!(f.c.lookup(m.nodeid, b"..").unwrap().nodeid, ROOT);
        let key_inner = f.fs().inodes().get(NodeId(inner.nodeid)).unwrap().key;
        let key_root = f.fs().inodes().get(NodeId(ROOT)).unwrap().key;
        assert_ne!(key_inner.dev, key_root.dev);
        if key_root.mnt_id != 0 {
            assert_ne!(key_inner.mnt_id, key_root.mnt_id);
        }
    }));
    sh(&["umount", "-l", subs]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn works_with_a_proc_fd_opened_by_the_caller() {
    // The daemon opens /proc/self/fd before a chroot and hands it over.
    let dir = super::TempDir::new();
    let proc =
        super::super::sys::open_path(c"/proc/self/fd", libc::O_PATH | libc::O_DIRECTORY).unwrap();
    let fs = super::super::PassthroughFs::with_proc_fd(
        super::super::PassthroughConfig::new(dir.path()),
        proc,
    )
    .unwrap();
    let c = crate::fuse::testing::Client::new(fs);
    c.init();
    let (e, o) = c.create(ROOT, b"f", 0o644, libc::O_RDWR as u32).unwrap();
    c.write(e.nodeid, o.fh, 0, b"ok").unwrap();
    assert_eq!(c.read(e.nodeid, o.fh, 0, 2).unwrap(), b"ok");
    // A missing root is a clean error.
    let missing = super::super::PassthroughFs::new(super::super::PassthroughConfig::new(
        dir.path().join("nope"),
    ));
    assert!(matches!(
        missing,
        Err(super::super::FsError::OpenRoot { .. })
    ));
}
