//! Open files: create/open/read/write/release, setattr, suid killing,
//! fallocate, lseek, fsync, flush, statfs, tmpfile, syncfs (copy_file_range runs over
//! both transports in `tests/fuse_ops/files.rs`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::{ROOT, is_root, setup, setup_with};
use crate::fuse::abi::{self, fattr, misc};

const RDWR: u32 = libc::O_RDWR as u32;
const RDONLY: u32 = libc::O_RDONLY as u32;
const WRONLY: u32 = libc::O_WRONLY as u32;

#[test]
fn create_write_read_release() {
    let f = setup();
    let (e, o) = f.c.create(ROOT, b"f", 0o640, RDWR).unwrap();
    assert_eq!(e.attr.mode, libc::S_IFREG | 0o640);
    assert_eq!(f.c.write(e.nodeid, o.fh, 0, b"hello world").unwrap(), 11);
    assert_eq!(f.c.read(e.nodeid, o.fh, 6, 100).unwrap(), b"world");
    assert_eq!(f.c.read(e.nodeid, o.fh, 100, 10).unwrap(), b"");
    f.c.flush(e.nodeid, o.fh).unwrap();
    f.c.fsync(e.nodeid, o.fh, false, false).unwrap();
    f.c.fsync(e.nodeid, o.fh, true, false).unwrap();
    f.c.release(e.nodeid, o.fh).unwrap();
    assert_eq!(f.c.read(e.nodeid, o.fh, 0, 1).unwrap_err(), libc::EBADF);
    assert_eq!(f.c.release(e.nodeid, o.fh).unwrap_err(), libc::EBADF);
    assert_eq!(std::fs::read(f.shared().join("f")).unwrap(), b"hello world");
    // O_EXCL on an existing name.
    let excl = RDWR | libc::O_EXCL as u32;
    assert_eq!(
        f.c.create(ROOT, b"f", 0o644, excl).unwrap_err(),
        libc::EEXIST
    );
    // Each open gets its own handle; a handle is tied to its node.
    let h1 = f.c.open(e.nodeid, RDONLY).unwrap().fh;
    let h2 = f.c.open(e.nodeid, RDONLY).unwrap().fh;
    assert_ne!(h1, h2);
    assert_eq!(f.c.read(ROOT, h1, 0, 1).unwrap_err(), libc::EBADF);
    assert_eq!(f.fs().handles().len(), 2);
    // Writing through a read-only handle fails as on the host.
    assert_eq!(f.c.write(e.nodeid, h1, 0, b"x").unwrap_err(), libc::EBADF);
    // Opening a directory with OPEN.
    assert_eq!(f.c.open(ROOT, RDONLY).unwrap_err(), libc::EISDIR);
    // DESTROY drops every handle and node but the root.
    f.c.destroy().unwrap();
    assert_eq!(f.fs().handles().len(), 0);
    assert_eq!(f.fs().inodes().len(), 1);
}

#[test]
fn open_trunc_and_append() {
    let f = setup();
    std::fs::write(f.shared().join("f"), b"0123456789").unwrap();
    let e = f.c.lookup(ROOT, b"f").unwrap();
    let fh =
        f.c.open(e.nodeid, WRONLY | libc::O_APPEND as u32)
            .unwrap()
            .fh;
    f.c.write(e.nodeid, fh, 0, b"ab").unwrap();
    assert_eq!(
        std::fs::read(f.shared().join("f")).unwrap(),
        b"0123456789ab"
    );
    // Without writeback, an O_WRONLY handle cannot read.
    assert_eq!(f.c.read(e.nodeid, fh, 0, 1).unwrap_err(), libc::EBADF);
    f.c.open(e.nodeid, WRONLY | libc::O_TRUNC as u32).unwrap();
    assert_eq!(std::fs::metadata(f.shared().join("f")).unwrap().len(), 0);
}

#[test]
fn writeback_widens_wronly_and_drops_append() {
    let f = setup_with(|c| c.writeback = true);
    assert_ne!(
        f.c.server().granted_flags() & abi::init_flags::WRITEBACK_CACHE,
        0
    );
    std::fs::write(f.shared().join("f"), b"0123456789").unwrap();
    let e = f.c.lookup(ROOT, b"f").unwrap();
    let fh =
        f.c.open(e.nodeid, WRONLY | libc::O_APPEND as u32)
            .unwrap()
            .fh;
    assert_eq!(f.c.read(e.nodeid, fh, 0, 3).unwrap(), b"012");
    // The guest orders appends itself: the offset is honoured.
    f.c.write(e.nodeid, fh, 2, b"ab").unwrap();
    assert_eq!(std::fs::read(f.shared().join("f")).unwrap(), b"01ab456789");
    // Writeback not offered by the kernel: not granted, plain behaviour.
    let out = f.c.init_with(7, 38, abi::init_flags::ASYNC_READ).unwrap();
    assert_eq!(u64::from(out.flags) & abi::init_flags::WRITEBACK_CACHE, 0);
    // A new INIT is a new session: the node is looked up again.
    let e = f.c.lookup(ROOT, b"f").unwrap();
    let fh = f.c.open(e.nodeid, WRONLY).unwrap().fh;
    assert_eq!(f.c.read(e.nodeid, fh, 0, 1).unwrap_err(), libc::EBADF);
}

fn sa(valid: u32) -> abi::SetattrIn {
    abi::SetattrIn {
        valid,
        ..Default::default()
    }
}

#[test]
fn setattr_mode_owner_size_times() {
    let f = setup();
    std::fs::write(f.shared().join("f"), b"0123456789").unwrap();
    let id = f.c.lookup(ROOT, b"f").unwrap().nodeid;
    let a =
        f.c.setattr(
            id,
            abi::SetattrIn {
                mode: libc::S_IFREG | 0o600,
                ..sa(fattr::MODE)
            },
        )
        .unwrap();
    assert_eq!(a.attr.mode, libc::S_IFREG | 0o600);
    let a =
        f.c.setattr(
            id,
            abi::SetattrIn {
                size: 3,
                ..sa(fattr::SIZE)
            },
        )
        .unwrap();
    assert_eq!(a.attr.size, 3);
    let a =
        f.c.setattr(
            id,
            abi::SetattrIn {
                size: 4096,
                ..sa(fattr::SIZE)
            },
        )
        .unwrap();
    assert_eq!(a.attr.size, 4096);
    // Explicit times.
    let t = abi::SetattrIn {
        atime: 1000,
        atimensec: 5,
        mtime: 2000,
        mtimensec: 7,
        ..sa(fattr::ATIME | fattr::MTIME)
    };
    let a = f.c.setattr(id, t).unwrap();
    assert_eq!(
        (
            a.attr.atime,
            a.attr.atimensec,
            a.attr.mtime,
            a.attr.mtimensec
        ),
        (1000, 5, 2000, 7)
    );
    // NOW.
    let a =
        f.c.setattr(
            id,
            sa(fattr::ATIME | fattr::ATIME_NOW | fattr::MTIME | fattr::MTIME_NOW),
        )
        .unwrap();
    assert!(a.attr.mtime > 2000 && a.attr.atime > 1000);
    // Only mtime, leaving atime.
    let before = a.attr.atime;
    let a =
        f.c.setattr(
            id,
            abi::SetattrIn {
                mtime: 3000,
                ..sa(fattr::MTIME)
            },
        )
        .unwrap();
    assert_eq!((a.attr.atime, a.attr.mtime), (before, 3000));
    // Through a handle.
    let fh = f.c.open(id, RDWR).unwrap().fh;
    let a =
        f.c.setattr(
            id,
            abi::SetattrIn {
                fh,
                size: 1,
                mode: libc::S_IFREG | 0o640,
                mtime: 5,
                ..sa(fattr::FH | fattr::SIZE | fattr::MODE | fattr::MTIME)
            },
        )
        .unwrap();
    assert_eq!(
        (a.attr.size, a.attr.mode & 0o777, a.attr.mtime),
        (1, 0o640, 5)
    );
    assert_eq!(f.c.getattr(id, Some(fh)).unwrap().attr.size, 1);
    assert_eq!(
        f.c.setattr(
            id,
            abi::SetattrIn {
                fh: 999,
                ..sa(fattr::FH | fattr::SIZE)
            }
        )
        .unwrap_err(),
        libc::EBADF
    );
    // Size of a directory.
    assert_eq!(
        f.c.setattr(
            ROOT,
            abi::SetattrIn {
                size: 0,
                ..sa(fattr::SIZE)
            }
        )
        .unwrap_err(),
        libc::EISDIR
    );
    // Owner.
    if is_root() {
        let a =
            f.c.setattr(
                id,
                abi::SetattrIn {
                    uid: 1234,
                    gid: 99,
                    ..sa(fattr::UID | fattr::GID)
                },
            )
            .unwrap();
        assert_eq!((a.attr.uid, a.attr.gid), (1234, 99));
        let a =
            f.c.setattr(
                id,
                abi::SetattrIn {
                    gid: 5,
                    ..sa(fattr::GID)
                },
            )
            .unwrap();
        assert_eq!((a.attr.uid, a.attr.gid), (1234, 5));
        // Times of a symlink itself.
        let l = f.c.symlink(ROOT, b"l", b"f").unwrap().nodeid;
        let a =
            f.c.setattr(
                l,
                abi::SetattrIn {
                    mtime: 77,
                    ..sa(fattr::MTIME)
                },
            )
            .unwrap();
        assert_eq!(a.attr.mtime, 77);
        assert_ne!(std::fs::metadata(f.shared().join("f")).unwrap().mtime(), 77);
    } else {
        assert_eq!(
            f.c.setattr(
                id,
                abi::SetattrIn {
                    uid: 1234,
                    ..sa(fattr::UID)
                }
            )
            .unwrap_err(),
            libc::EPERM
        );
    }
}

#[test]
fn kill_suidgid_on_write_truncate_and_open() {
    let f = setup_with(|c| c.killpriv_v2 = true);
    assert_ne!(
        f.c.server().granted_flags() & abi::init_flags::HANDLE_KILLPRIV_V2,
        0
    );
    let path = f.shared().join("f");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let reset =
        |m: u32| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
    std::fs::write(&path, b"x").unwrap();
    let id = f.c.lookup(ROOT, b"f").unwrap().nodeid;
    let fh = f.c.open(id, RDWR).unwrap().fh;
    reset(0o6755);
    // A plain write keeps the bits when the daemon is root...
    f.c.write(id, fh, 0, b"a").unwrap();
    if is_root() {
        assert_eq!(mode(&path), 0o6755);
    }
    // ...the kill flag drops suid, and sgid as the file is group-executable.
    f.c.write_flags(id, fh, 0, b"b", misc::WRITE_KILL_SUIDGID)
        .unwrap();
    assert_eq!(mode(&path), 0o755);
    // sgid without group-exec is a mandatory-lock marker: kept.
    reset(0o6745);
    f.c.write_flags(id, fh, 0, b"c", misc::WRITE_KILL_SUIDGID)
        .unwrap();
    assert_eq!(mode(&path), 0o2745);
    // Truncate with FATTR_KILL_SUIDGID.
    reset(0o6755);
    f.c.setattr(
        id,
        abi::SetattrIn {
            size: 0,
            ..sa(fattr::SIZE | fattr::KILL_SUIDGID)
        },
    )
    .unwrap();
    assert_eq!(mode(&path), 0o755);
    // Open with O_TRUNC and FUSE_OPEN_KILL_SUIDGID.
    reset(0o4755);
    f.c.open_kill(id, WRONLY | libc::O_TRUNC as u32).unwrap();
    assert_eq!(mode(&path), 0o755);
}

#[test]
fn fallocate_keep_size_and_punch_hole_then_lseek() {
    let f = setup();
    let (e, o) = f.c.create(ROOT, b"f", 0o644, RDWR).unwrap();
    let (id, fh) = (e.nodeid, o.fh);
    f.c.fallocate(id, fh, 0, 0, 1 << 20).unwrap();
    assert_eq!(f.c.getattr(id, None).unwrap().attr.size, 1 << 20);
    f.c.fallocate(id, fh, libc::FALLOC_FL_KEEP_SIZE as u32, 0, 2 << 20)
        .unwrap();
    let a = f.c.getattr(id, None).unwrap().attr;
    assert_eq!(a.size, 1 << 20);
    assert!(a.blocks * 512 >= 2 << 20);
    // Write data, punch a hole in the middle; it reads as zeros.
    f.c.write(id, fh, 0, &vec![1u8; 1 << 20]).unwrap();
    let punch = (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32;
    f.c.fallocate(id, fh, punch, 256 << 10, 256 << 10).unwrap();
    assert_eq!(f.c.read(id, fh, 256 << 10, 16).unwrap(), vec![0u8; 16]);
    assert_eq!(f.c.getattr(id, None).unwrap().attr.size, 1 << 20);
    // PUNCH_HOLE without KEEP_SIZE is invalid.
    assert_eq!(
        f.c.fallocate(id, fh, libc::FALLOC_FL_PUNCH_HOLE as u32, 0, 4096)
            .unwrap_err(),
        libc::EOPNOTSUPP
    );
    assert_eq!(f.c.fallocate(id, 999, 0, 0, 1).unwrap_err(), libc::EBADF);
    // SEEK_HOLE / SEEK_DATA.
    assert_eq!(
        f.c.lseek(id, fh, 0, libc::SEEK_HOLE as u32).unwrap(),
        256 << 10
    );
    assert_eq!(
        f.c.lseek(id, fh, 256 << 10, libc::SEEK_DATA as u32)
            .unwrap(),
        512 << 10
    );
    assert_eq!(
        f.c.lseek(id, fh, 2 << 20, libc::SEEK_DATA as u32)
            .unwrap_err(),
        libc::ENXIO
    );
    assert_eq!(f.c.lseek(id, fh, 0, 77).unwrap_err(), libc::EINVAL);
}

#[test]
fn statfs_syncfs_and_tmpfile() {
    let f = setup();
    let s = f.c.statfs(ROOT).unwrap();
    assert!(s.blocks > 0 && s.bsize > 0);
    assert_eq!(s.namelen, 255);
    f.c.syncfs(ROOT).unwrap();
    match f.c.tmpfile(ROOT, 0o600, RDWR) {
        Ok((e, o)) => {
            assert_eq!(e.attr.nlink, 0);
            f.c.write(e.nodeid, o.fh, 0, b"tmp").unwrap();
            assert_eq!(f.c.read(e.nodeid, o.fh, 0, 10).unwrap(), b"tmp");
            // It can be given a name with LINK.
            let l = f.c.link(e.nodeid, ROOT, b"named").unwrap();
            assert_eq!(l.nodeid, e.nodeid);
            assert_eq!(std::fs::read(f.shared().join("named")).unwrap(), b"tmp");
        }
        Err(e) => assert_eq!(e, libc::EOPNOTSUPP, "tmpfile failed unexpectedly"),
    }
    let e =
        f.c.lookup(ROOT, b"named")
            .unwrap_or_else(|_| f.c.create(ROOT, b"x", 0o644, RDWR).unwrap().0);
    assert_eq!(
        f.c.tmpfile(e.nodeid, 0o600, RDWR).unwrap_err(),
        libc::ENOTDIR
    );
}

#[test]
fn access_checks_mode_bits() {
    let f = setup();
    std::fs::write(f.shared().join("f"), b"").unwrap();
    std::fs::set_permissions(f.shared().join("f"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let id = f.c.lookup(ROOT, b"f").unwrap().nodeid;
    let (r, w, x) = (libc::R_OK as u32, libc::W_OK as u32, libc::X_OK as u32);
    f.c.access(id, r | w).unwrap();
    assert_eq!(f.c.access(id, x).unwrap_err(), libc::EACCES);
    let owner = std::fs::metadata(f.shared().join("f")).unwrap();
    f.c.set_caller(owner.uid() + 1, owner.gid());
    f.c.access(id, r).unwrap();
    assert_eq!(f.c.access(id, w).unwrap_err(), libc::EACCES);
    f.c.set_caller(owner.uid() + 1, owner.gid() + 1);
    assert_eq!(f.c.access(id, r).unwrap_err(), libc::EACCES);
    f.c.access(id, 0).unwrap();
}

#[test]
fn open_node_for_dax() {
    let f = setup();
    std::fs::write(f.shared().join("f"), b"data").unwrap();
    let id = crate::fuse::NodeId(f.c.lookup(ROOT, b"f").unwrap().nodeid);
    let file = f.fs().open_node(id, libc::O_RDWR).unwrap();
    let mut buf = [0u8; 4];
    std::os::unix::fs::FileExt::read_at(&file, &mut buf, 0).unwrap();
    assert_eq!(&buf, b"data");
    assert_eq!(
        f.fs()
            .open_node(crate::fuse::NodeId(ROOT), libc::O_RDONLY)
            .unwrap_err(),
        crate::fuse::Errno::EINVAL
    );
    // The inode record outlives FORGET while someone holds it.
    let held = f.fs().inodes().get(id).unwrap();
    f.c.forget(id.0, 1);
    assert!(f.fs().inodes().get(id).is_err());
    assert!(super::super::stat_fd(&held.path_fd().unwrap()).is_ok());
    let ro = setup_with(|c| c.readonly = true);
    std::fs::write(ro.shared().join("f"), b"data").unwrap();
    let id = crate::fuse::NodeId(ro.c.lookup(ROOT, b"f").unwrap().nodeid);
    assert_eq!(
        ro.fs().open_node(id, libc::O_RDWR).unwrap_err(),
        crate::fuse::Errno::EROFS
    );
    ro.fs().open_node(id, libc::O_RDONLY).unwrap();
}

#[test]
fn concurrent_io_on_one_handle_and_many_files() {
    let f = setup();
    let (e, o) = f.c.create(ROOT, b"shared", 0o644, RDWR).unwrap();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let c = &f.c;
            s.spawn(move || {
                // Disjoint 4 KiB stripes of one file through one handle.
                for i in 0..32u64 {
                    let off = (i * 4 + u64::from(t)) * 4096;
                    assert_eq!(c.write(e.nodeid, o.fh, off, &[t + 1; 4096]).unwrap(), 4096);
                }
                // Private files created, written, read and released.
                let name = format!("own-{t}");
                let (pe, po) = c.create(ROOT, name.as_bytes(), 0o644, RDWR).unwrap();
                c.write(pe.nodeid, po.fh, 0, name.as_bytes()).unwrap();
                assert_eq!(c.read(pe.nodeid, po.fh, 0, 64).unwrap(), name.as_bytes());
                c.release(pe.nodeid, po.fh).unwrap();
            });
        }
    });
    let data = std::fs::read(f.shared().join("shared")).unwrap();
    assert_eq!(data.len(), 128 * 4096);
    for (i, chunk) in data.chunks(4096).enumerate() {
        assert!(
            chunk.iter().all(|&b| b == u8::try_from(i % 4).unwrap() + 1),
            "stripe {i}"
        );
    }
    assert_eq!(f.fs().handles().len(), 1);
}
