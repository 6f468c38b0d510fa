//! FUSE operations against the daemon binary, through our frontend and a real socket:
//! every request is a descriptor chain in guest memory, served by the device's queue
//! thread, answered into guest memory. Each test covers an area with its normal results
//! and its errors, and checks the host side of the shared directory where that is what a
//! user would see. Malformed requests and transport edge cases are in `fuse_errors.rs`.

mod common;
mod fuse_support;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use fuse_support::*;
use vhost_dax::fuse::abi::{self, GetxattrOut, Wire, fattr, fopen};
use vhost_dax::fuse::testing::ParsedDirent;

const S_IFMT: u32 = libc::S_IFMT;

fn sa(valid: u32) -> abi::SetattrIn {
    abi::SetattrIn {
        valid,
        ..Default::default()
    }
}

fn mode_of(p: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn file_io_create_open_read_write_release() {
    let f = start("fuse-rw", &[]);
    let (e, o) = f.c.create(ROOT, b"hello", 0o640, RDWR).unwrap();
    assert_eq!(e.attr.mode, libc::S_IFREG | 0o640);
    assert_eq!(mode_of(&f.host("hello")), 0o640);
    assert_eq!(
        f.c.write(e.nodeid, o.fh, 0, b"over the socket").unwrap(),
        15
    );
    assert_eq!(f.c.read(e.nodeid, o.fh, 5, 100).unwrap(), b"the socket");
    assert_eq!(f.c.read(e.nodeid, o.fh, 100, 10).unwrap(), b"");
    assert_eq!(std::fs::read(f.host("hello")).unwrap(), b"over the socket");
    // A full max_write (1 MiB) request and a 1 MiB reply, each in one chain.
    let big: Vec<u8> = (0..abi::MAX_BUFFER_SIZE).map(|i| (i % 251) as u8).collect();
    assert_eq!(
        f.c.write(e.nodeid, o.fh, 4096, &big).unwrap() as usize,
        big.len()
    );
    assert_eq!(
        f.c.read(e.nodeid, o.fh, 4096, big.len() as u32).unwrap(),
        big
    );
    assert_eq!(&std::fs::read(f.host("hello")).unwrap()[4096..], &big[..]);
    f.c.flush(e.nodeid, o.fh).unwrap();
    f.c.fsync(e.nodeid, o.fh, false, false).unwrap();
    f.c.fsync(e.nodeid, o.fh, true, false).unwrap();
    f.c.release(e.nodeid, o.fh).unwrap();
    // The handle is gone.
    assert_eq!(f.c.read(e.nodeid, o.fh, 0, 1).unwrap_err(), libc::EBADF);
    assert_eq!(f.c.write(e.nodeid, o.fh, 0, b"x").unwrap_err(), libc::EBADF);
    assert_eq!(f.c.release(e.nodeid, o.fh).unwrap_err(), libc::EBADF);
    assert_eq!(
        f.c.fsync(e.nodeid, o.fh, false, false).unwrap_err(),
        libc::EBADF
    );
    // O_EXCL on an existing name; plain CREATE of an existing name opens it.
    let excl = RDWR | libc::O_EXCL as u32;
    assert_eq!(
        f.c.create(ROOT, b"hello", 0o644, excl).unwrap_err(),
        libc::EEXIST
    );
    let (again, o2) = f.c.create(ROOT, b"hello", 0o644, RDWR).unwrap();
    assert_eq!(again.nodeid, e.nodeid);
    assert_eq!(f.c.read(e.nodeid, o2.fh, 0, 4).unwrap(), b"over");
    // Each open has its own handle, tied to its node.
    let h1 = f.c.open(e.nodeid, RDONLY).unwrap().fh;
    let h2 = f.c.open(e.nodeid, RDONLY).unwrap().fh;
    assert_ne!(h1, h2);
    assert_eq!(f.c.read(ROOT, h1, 0, 1).unwrap_err(), libc::EBADF);
    // A read-only handle cannot write; a write-only one cannot read (no writeback).
    assert_eq!(f.c.write(e.nodeid, h1, 0, b"x").unwrap_err(), libc::EBADF);
    let wo = f.c.open(e.nodeid, WRONLY).unwrap().fh;
    assert_eq!(f.c.read(e.nodeid, wo, 0, 1).unwrap_err(), libc::EBADF);
    // Not a regular file, not a node.
    assert_eq!(f.c.open(ROOT, RDONLY).unwrap_err(), libc::EISDIR);
    assert_eq!(f.c.open(424242, RDONLY).unwrap_err(), libc::EBADF);
    assert_eq!(
        f.c.create(424242, b"x", 0o644, RDWR).unwrap_err(),
        libc::EBADF
    );
    // O_APPEND writes at the end whatever the offset; O_TRUNC empties the file.
    std::fs::write(f.host("log"), b"0123456789").unwrap();
    let log = f.c.lookup(ROOT, b"log").unwrap().nodeid;
    let ap = f.c.open(log, WRONLY | libc::O_APPEND as u32).unwrap().fh;
    f.c.write(log, ap, 0, b"ab").unwrap();
    assert_eq!(std::fs::read(f.host("log")).unwrap(), b"0123456789ab");
    f.c.open(log, WRONLY | libc::O_TRUNC as u32).unwrap();
    assert_eq!(std::fs::metadata(f.host("log")).unwrap().len(), 0);
}

#[test]
fn writeback_cache_widens_write_only_opens() {
    let f = start("fuse-writeback", &["--writeback"]);
    // Granted only because the daemon was asked to and the guest offered it.
    let out = f.c.init_with(7, 41, u64::MAX >> 1).unwrap();
    assert_ne!(u64::from(out.flags) & abi::init_flags::WRITEBACK_CACHE, 0);
    std::fs::write(f.host("f"), b"0123456789").unwrap();
    let id = f.c.lookup(ROOT, b"f").unwrap().nodeid;
    let fh = f.c.open(id, WRONLY | libc::O_APPEND as u32).unwrap().fh;
    // The guest's page cache reads through write-only handles and orders appends
    // itself: the offset is honoured.
    assert_eq!(f.c.read(id, fh, 0, 3).unwrap(), b"012");
    f.c.write(id, fh, 2, b"ab").unwrap();
    assert_eq!(std::fs::read(f.host("f")).unwrap(), b"01ab456789");
    // Without it, INIT grants no writeback cache.
    let plain = start("fuse-no-writeback", &[]);
    let out = plain.c.init_with(7, 41, u64::MAX >> 1).unwrap();
    assert_eq!(u64::from(out.flags) & abi::init_flags::WRITEBACK_CACHE, 0);
}

#[test]
fn entries_lookup_mkdir_mknod_unlink_rmdir_forget() {
    let f = start("fuse-entries", &[]);
    std::fs::write(f.host("file"), b"hello").unwrap();
    let e = f.c.lookup(ROOT, b"file").unwrap();
    assert!(e.nodeid > ROOT);
    assert_eq!(e.attr.size, 5);
    assert_eq!(e.attr.mode & S_IFMT, libc::S_IFREG);
    assert_eq!(e.attr.ino, std::fs::metadata(f.host("file")).unwrap().ino());
    assert_eq!(f.c.lookup(ROOT, b"file").unwrap().nodeid, e.nodeid);
    assert_eq!(f.c.lookup(ROOT, b"missing").unwrap_err(), libc::ENOENT);
    assert_eq!(f.c.lookup(e.nodeid, b"x").unwrap_err(), libc::ENOTDIR);
    assert_eq!(f.c.lookup(ROOT, &[b'a'; 255]).unwrap_err(), libc::ENOENT);
    assert_eq!(
        f.c.lookup(ROOT, &[b'a'; 256]).unwrap_err(),
        libc::ENAMETOOLONG
    );
    assert_eq!(f.c.lookup(424242, b"file").unwrap_err(), libc::EBADF);

    // FORGET on the hiprio queue, as Linux sends it: the node lives until the last
    // of its two lookups is forgotten; a new lookup gets a new id.
    let hiprio = f.client_on(0);
    hiprio.forget(e.nodeid, 1);
    f.c.getattr(e.nodeid, None).unwrap();
    hiprio.forget(e.nodeid, 1);
    assert_eq!(f.c.getattr(e.nodeid, None).unwrap_err(), libc::EBADF);
    let file = f.c.lookup(ROOT, b"file").unwrap().nodeid;
    assert_ne!(file, e.nodeid);

    let d = f.c.mkdir(ROOT, b"d", 0o750).unwrap();
    assert_eq!(d.attr.mode, libc::S_IFDIR | 0o750);
    assert!(f.host("d").is_dir());
    assert_eq!(mode_of(&f.host("d")), 0o750);
    assert_eq!(f.c.mkdir(ROOT, b"d", 0o750).unwrap_err(), libc::EEXIST);
    assert_eq!(f.c.mkdir(ROOT, b"file", 0o750).unwrap_err(), libc::EEXIST);
    assert_eq!(f.c.mkdir(file, b"x", 0o750).unwrap_err(), libc::ENOTDIR);
    assert_eq!(f.c.mkdir(424242, b"x", 0o750).unwrap_err(), libc::EBADF);
    assert_eq!(
        f.c.mkdir(ROOT, &[b'd'; 256], 0o750).unwrap_err(),
        libc::ENAMETOOLONG
    );

    let reg =
        f.c.mknod(d.nodeid, b"reg", libc::S_IFREG | 0o644, 0)
            .unwrap();
    assert_eq!(reg.attr.mode & S_IFMT, libc::S_IFREG);
    assert!(f.host("d/reg").is_file());
    let fifo =
        f.c.mknod(d.nodeid, b"fifo", libc::S_IFIFO | 0o600, 0)
            .unwrap();
    assert_eq!(fifo.attr.mode & S_IFMT, libc::S_IFIFO);
    let ft = std::fs::symlink_metadata(f.host("d/fifo"))
        .unwrap()
        .file_type();
    assert!(ft.is_fifo());
    // Opening a fifo is refused rather than blocking a queue thread.
    assert_eq!(f.c.open(fifo.nodeid, RDONLY).unwrap_err(), libc::ENXIO);
    let sock =
        f.c.mknod(d.nodeid, b"sock", libc::S_IFSOCK | 0o600, 0)
            .unwrap();
    assert_eq!(sock.attr.mode & S_IFMT, libc::S_IFSOCK);
    let ft = std::fs::symlink_metadata(f.host("d/sock"))
        .unwrap()
        .file_type();
    assert!(ft.is_socket());
    // Device nodes need --allow-devices (/dev/null, 1:3, FUSE-encoded).
    let null = (1 << 8) | 3;
    assert_eq!(
        f.c.mknod(d.nodeid, b"null", libc::S_IFCHR | 0o600, null)
            .unwrap_err(),
        libc::EPERM
    );
    assert!(!f.host("d/null").exists());
    assert_eq!(
        f.c.mknod(d.nodeid, b"reg", libc::S_IFREG | 0o644, 0)
            .unwrap_err(),
        libc::EEXIST
    );

    assert_eq!(f.c.rmdir(ROOT, b"d").unwrap_err(), libc::ENOTEMPTY);
    assert_eq!(f.c.rmdir(d.nodeid, b"reg").unwrap_err(), libc::ENOTDIR);
    assert_eq!(f.c.unlink(ROOT, b"d").unwrap_err(), libc::EISDIR);
    assert_eq!(f.c.unlink(file, b"x").unwrap_err(), libc::ENOTDIR);
    for name in [&b"reg"[..], b"fifo", b"sock"] {
        f.c.unlink(d.nodeid, name).unwrap();
    }
    assert_eq!(f.c.unlink(d.nodeid, b"reg").unwrap_err(), libc::ENOENT);
    // An unlinked file's node still answers (the guest may hold it open).
    assert_eq!(f.c.getattr(reg.nodeid, None).unwrap().attr.nlink, 0);
    f.c.rmdir(ROOT, b"d").unwrap();
    assert!(!f.host("d").exists());
    assert_eq!(f.c.rmdir(ROOT, b"d").unwrap_err(), libc::ENOENT);

    // BATCH_FORGET on hiprio; unknown ids and the root are ignored.
    hiprio.batch_forget(&[(file, 1), (d.nodeid, 1), (999, 5), (ROOT, 100)]);
    assert_eq!(f.c.getattr(file, None).unwrap_err(), libc::EBADF);
    assert_eq!(f.c.getattr(d.nodeid, None).unwrap_err(), libc::EBADF);
    f.c.getattr(ROOT, None).unwrap();
    f.c.lookup(ROOT, b"file").unwrap();
}

#[test]
fn device_nodes_with_allow_devices() {
    let f = start("fuse-devices", &["--allow-devices"]);
    let null = (1 << 8) | 3;
    let r = f.c.mknod(ROOT, b"null", libc::S_IFCHR | 0o600, null);
    if is_root() {
        let n = r.unwrap();
        assert_eq!((n.attr.mode & S_IFMT, n.attr.rdev), (libc::S_IFCHR, null));
        let md = std::fs::symlink_metadata(f.host("null")).unwrap();
        assert!(md.file_type().is_char_device());
        assert_eq!(md.rdev(), libc::makedev(1, 3));
    } else {
        assert_eq!(r.unwrap_err(), libc::EPERM);
    }
    // Still no unknown file types.
    assert_eq!(
        f.c.mknod(ROOT, b"weird", 0o170000 | 0o600, 0).unwrap_err(),
        libc::EINVAL
    );
}

#[test]
fn attributes_getattr_setattr_statfs_access() {
    let f = start("fuse-attr", &[]);
    std::fs::write(f.host("f"), b"0123456789").unwrap();
    let id = f.c.lookup(ROOT, b"f").unwrap().nodeid;
    let a = f.c.getattr(id, None).unwrap().attr;
    let md = std::fs::metadata(f.host("f")).unwrap();
    assert_eq!(
        (a.ino, a.size, a.mode, a.nlink, a.uid, a.gid),
        (md.ino(), 10, md.mode(), 1, md.uid(), md.gid())
    );
    assert_eq!(
        f.c.getattr(ROOT, None).unwrap().attr.mode & S_IFMT,
        libc::S_IFDIR
    );

    let a = f.c.setattr(
        id,
        abi::SetattrIn {
            mode: libc::S_IFREG | 0o600,
            ..sa(fattr::MODE)
        },
    );
    assert_eq!(a.unwrap().attr.mode, libc::S_IFREG | 0o600);
    assert_eq!(mode_of(&f.host("f")), 0o600);
    // Truncate down and up; the hole reads as zeros on the host.
    let size = |n| abi::SetattrIn {
        size: n,
        ..sa(fattr::SIZE)
    };
    assert_eq!(f.c.setattr(id, size(3)).unwrap().attr.size, 3);
    assert_eq!(std::fs::read(f.host("f")).unwrap(), b"012");
    assert_eq!(f.c.setattr(id, size(4096)).unwrap().attr.size, 4096);
    let host = std::fs::read(f.host("f")).unwrap();
    assert_eq!(
        (host.len(), &host[..3], host[3..].iter().all(|&b| b == 0)),
        (4096, &b"012"[..], true)
    );
    // Explicit times, then mtime alone.
    let t = abi::SetattrIn {
        atime: 1000,
        atimensec: 5,
        mtime: 2000,
        mtimensec: 7,
        ..sa(fattr::ATIME | fattr::MTIME)
    };
    let a = f.c.setattr(id, t).unwrap().attr;
    assert_eq!(
        (a.atime, a.atimensec, a.mtime, a.mtimensec),
        (1000, 5, 2000, 7)
    );
    let md = std::fs::metadata(f.host("f")).unwrap();
    assert_eq!((md.atime(), md.mtime(), md.mtime_nsec()), (1000, 2000, 7));
    let a = f.c.setattr(
        id,
        abi::SetattrIn {
            mtime: 3000,
            ..sa(fattr::MTIME)
        },
    );
    assert_eq!(
        (
            a.unwrap().attr.atime,
            std::fs::metadata(f.host("f")).unwrap().mtime()
        ),
        (1000, 3000)
    );
    let now =
        f.c.setattr(id, sa(fattr::MTIME | fattr::MTIME_NOW))
            .unwrap()
            .attr;
    assert!(now.mtime > 3000);
    // Through a handle; an unknown handle is refused.
    let fh = f.c.open(id, RDWR).unwrap().fh;
    let a = f.c.setattr(
        id,
        abi::SetattrIn {
            fh,
            size: 1,
            ..sa(fattr::FH | fattr::SIZE)
        },
    );
    assert_eq!(a.unwrap().attr.size, 1);
    assert_eq!(std::fs::metadata(f.host("f")).unwrap().len(), 1);
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
    assert_eq!(f.c.setattr(ROOT, size(0)).unwrap_err(), libc::EISDIR);
    assert_eq!(f.c.getattr(424242, None).unwrap_err(), libc::EBADF);
    assert_eq!(f.c.setattr(424242, size(0)).unwrap_err(), libc::EBADF);
    if is_root() {
        let a = f.c.setattr(
            id,
            abi::SetattrIn {
                uid: 1234,
                gid: 99,
                ..sa(fattr::UID | fattr::GID)
            },
        );
        let a = a.unwrap().attr;
        assert_eq!((a.uid, a.gid), (1234, 99));
        let md = std::fs::metadata(f.host("f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (1234, 99));
    }

    let s = f.c.statfs(ROOT).unwrap();
    let path = std::ffi::CString::new(f.share().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path and a zeroed out-parameter.
    let host = unsafe {
        let mut v: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(path.as_ptr(), &mut v), 0);
        v
    };
    assert_eq!(
        (s.blocks, s.bsize as u64, s.namelen),
        (host.f_blocks, host.f_bsize, 255)
    );
    assert_eq!(f.c.statfs(424242).unwrap_err(), libc::EBADF);

    // ACCESS checks the caller in the request header against the host's mode bits.
    std::fs::set_permissions(f.host("f"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let md = std::fs::metadata(f.host("f")).unwrap();
    let (r, w, x) = (libc::R_OK as u32, libc::W_OK as u32, libc::X_OK as u32);
    f.c.set_caller(md.uid(), md.gid());
    f.c.access(id, r | w).unwrap();
    assert_eq!(f.c.access(id, x).unwrap_err(), libc::EACCES);
    f.c.set_caller(md.uid() + 1, md.gid());
    f.c.access(id, r).unwrap();
    assert_eq!(f.c.access(id, w).unwrap_err(), libc::EACCES);
    f.c.set_caller(md.uid() + 1, md.gid() + 1);
    assert_eq!(f.c.access(id, r).unwrap_err(), libc::EACCES);
    f.c.access(id, 0).unwrap();
    assert_eq!(f.c.access(424242, 0).unwrap_err(), libc::EBADF);
}

#[test]
fn creations_belong_to_the_calling_guest_user() {
    let f = start("fuse-creds", &[]);
    std::fs::set_permissions(f.share(), std::fs::Permissions::from_mode(0o777)).unwrap();
    f.c.set_caller(1234, 5678);
    let d = f.c.mkdir(ROOT, b"d", 0o755).unwrap();
    let (e, _) = f.c.create(ROOT, b"f", 0o644, RDWR).unwrap();
    let l = f.c.symlink(ROOT, b"l", b"f").unwrap();
    let n = f.c.mknod(ROOT, b"p", libc::S_IFIFO | 0o644, 0).unwrap();
    if !is_root() {
        // An unprivileged daemon cannot switch: everything is its own.
        let me = std::fs::metadata(f.share()).unwrap().uid();
        assert_eq!(std::fs::metadata(f.host("f")).unwrap().uid(), me);
        return;
    }
    for (a, name) in [(d.attr, "d"), (e.attr, "f"), (l.attr, "l"), (n.attr, "p")] {
        let md = std::fs::symlink_metadata(f.host(name)).unwrap();
        assert_eq!((a.uid, a.gid), (1234, 5678), "{name}");
        assert_eq!((md.uid(), md.gid()), (1234, 5678), "{name}");
    }
    // The host checks permission as the caller: not in root's 0755 directory...
    std::fs::set_permissions(f.share(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(f.c.mkdir(ROOT, b"no", 0o755).unwrap_err(), libc::EACCES);
    assert_eq!(
        f.c.create(ROOT, b"no", 0o644, RDWR).unwrap_err(),
        libc::EACCES
    );
    assert!(!f.host("no").exists());
    // ...but in its own; and root callers are root again on the next request.
    f.c.mkdir(d.nodeid, b"yes", 0o755).unwrap();
    f.c.set_caller(0, 0);
    f.c.mkdir(ROOT, b"root-owned", 0o755).unwrap();
    assert_eq!(std::fs::metadata(f.host("root-owned")).unwrap().uid(), 0);
}

fn names(v: &[ParsedDirent]) -> Vec<Vec<u8>> {
    let mut n: Vec<_> = v.iter().map(|d| d.name.clone()).collect();
    n.sort();
    n
}

#[test]
fn directories_readdir_readdirplus_releasedir() {
    let f = start("fuse-dirs", &[]);
    for i in 0..50 {
        std::fs::write(f.host(&format!("file-{i:02}")), vec![0u8; i]).unwrap();
    }
    std::fs::create_dir(f.host("sub")).unwrap();
    let mut want: Vec<Vec<u8>> = Vec::new();
    for e in std::fs::read_dir(f.share()).unwrap() {
        want.push(e.unwrap().file_name().into_encoded_bytes());
    }
    want.push(b".".to_vec());
    want.push(b"..".to_vec());
    want.sort();

    let d = f.c.opendir(ROOT).unwrap();
    assert_eq!(d.open_flags, 0);
    let all = f.c.readdir(ROOT, d.fh, 0, 1 << 16, false).unwrap();
    assert_eq!(names(&all), want);
    for e in &all {
        if e.name == b"sub" {
            assert_eq!(e.typ, u32::from(libc::DT_DIR));
        } else if e.name.starts_with(b"file-") {
            assert_eq!(e.typ, u32::from(libc::DT_REG));
            let host = std::fs::metadata(f.share().join(std::str::from_utf8(&e.name).unwrap()));
            assert_eq!(e.ino, host.unwrap().ino());
        }
    }
    // A 100-byte buffer holds at most three records; the cookies resume exactly.
    let mut got = Vec::new();
    let mut off = 0;
    loop {
        let part = f.c.readdir(ROOT, d.fh, off, 100, false).unwrap();
        if part.is_empty() {
            break;
        }
        assert!(part.len() <= 3);
        off = part.last().unwrap().off;
        got.extend(part);
    }
    assert_eq!(names(&got), want);

    // READDIRPLUS: every entry but `.`/`..` comes with one lookup of its node.
    let hiprio = f.client_on(0);
    let mut plus = Vec::new();
    let mut off = 0;
    loop {
        let part = f.c.readdir(ROOT, d.fh, off, 1000, true).unwrap();
        if part.is_empty() {
            break;
        }
        off = part.last().unwrap().off;
        plus.extend(part);
    }
    assert_eq!(names(&plus), want);
    for e in &plus {
        let entry = e.entry.unwrap();
        if e.name == b"." || e.name == b".." {
            assert_eq!(entry.nodeid, 0);
            continue;
        }
        assert_eq!(entry.attr.ino, e.ino);
        let name = std::str::from_utf8(&e.name).unwrap();
        assert_eq!(
            entry.attr.size,
            std::fs::metadata(f.host(name)).unwrap().len()
        );
        f.c.getattr(entry.nodeid, None).unwrap();
        hiprio.forget(entry.nodeid, 1);
        assert_eq!(
            f.c.getattr(entry.nodeid, None).unwrap_err(),
            libc::EBADF,
            "{name}"
        );
    }
    // Too small for any record: an empty reply.
    assert!(f.c.readdir(ROOT, d.fh, 0, 50, true).unwrap().is_empty());

    f.c.fsync(ROOT, d.fh, false, true).unwrap();
    f.c.releasedir(ROOT, d.fh).unwrap();
    assert_eq!(
        f.c.readdir(ROOT, d.fh, 0, 4096, false).unwrap_err(),
        libc::EBADF
    );
    assert_eq!(f.c.releasedir(ROOT, d.fh).unwrap_err(), libc::EBADF);
    let file = f.c.lookup(ROOT, b"file-00").unwrap().nodeid;
    assert_eq!(f.c.opendir(file).unwrap_err(), libc::ENOTDIR);
    assert_eq!(f.c.opendir(424242).unwrap_err(), libc::EBADF);
    // A sub-directory lists its own entries.
    let sub = f.c.lookup(ROOT, b"sub").unwrap().nodeid;
    std::fs::write(f.host("sub/inner"), b"").unwrap();
    let sd = f.c.opendir(sub).unwrap().fh;
    let inner = f.c.readdir(sub, sd, 0, 4096, false).unwrap();
    assert_eq!(names(&inner), [&b"."[..], b"..", b"inner"]);
}

#[test]
fn symlinks_and_hard_links() {
    let f = start("fuse-links", &[]);
    let l = f.c.symlink(ROOT, b"l", b"target/../x").unwrap();
    assert_eq!(l.attr.mode & S_IFMT, libc::S_IFLNK);
    assert_eq!(f.c.readlink(l.nodeid).unwrap(), b"target/../x");
    assert_eq!(
        std::fs::read_link(f.host("l"))
            .unwrap()
            .as_os_str()
            .as_encoded_bytes(),
        b"target/../x"
    );
    assert_eq!(f.c.symlink(ROOT, b"l", b"y").unwrap_err(), libc::EEXIST);
    assert_eq!(f.c.readlink(ROOT).unwrap_err(), libc::EINVAL);
    assert_eq!(f.c.readlink(424242).unwrap_err(), libc::EBADF);

    let (a, o) = f.c.create(ROOT, b"a", 0o644, RDWR).unwrap();
    assert_eq!(f.c.readlink(a.nodeid).unwrap_err(), libc::EINVAL);
    f.c.write(a.nodeid, o.fh, 0, b"shared").unwrap();
    let b = f.c.link(a.nodeid, ROOT, b"b").unwrap();
    assert_eq!((b.nodeid, b.attr.nlink), (a.nodeid, 2));
    assert_eq!(std::fs::read(f.host("b")).unwrap(), b"shared");
    assert_eq!(
        std::fs::metadata(f.host("b")).unwrap().ino(),
        std::fs::metadata(f.host("a")).unwrap().ino()
    );
    assert_eq!(f.c.lookup(ROOT, b"b").unwrap().nodeid, a.nodeid);
    // Links made on the host are the same node too.
    std::fs::hard_link(f.host("a"), f.host("c")).unwrap();
    assert_eq!(f.c.lookup(ROOT, b"c").unwrap().nodeid, a.nodeid);
    assert_eq!(f.c.getattr(a.nodeid, None).unwrap().attr.nlink, 3);
    assert_eq!(f.c.link(a.nodeid, ROOT, b"c").unwrap_err(), libc::EEXIST);
    assert_eq!(f.c.link(424242, ROOT, b"z").unwrap_err(), libc::EBADF);
    assert_eq!(
        f.c.link(a.nodeid, a.nodeid, b"z").unwrap_err(),
        libc::ENOTDIR
    );
    let d = f.c.mkdir(ROOT, b"d", 0o755).unwrap();
    assert_eq!(f.c.link(d.nodeid, ROOT, b"d2").unwrap_err(), libc::EPERM);
    // Linking a symlink links the symlink, not its target.
    let l2 = f.c.link(l.nodeid, d.nodeid, b"l2").unwrap();
    assert_eq!(l2.nodeid, l.nodeid);
    assert!(
        std::fs::symlink_metadata(f.host("d/l2"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    f.c.unlink(ROOT, b"b").unwrap();
    f.c.unlink(ROOT, b"c").unwrap();
    assert_eq!(f.c.getattr(a.nodeid, None).unwrap().attr.nlink, 1);
    assert_eq!(std::fs::read(f.host("a")).unwrap(), b"shared");
}

#[test]
fn the_guest_cannot_escape_the_share() {
    let f = start("fuse-escape", &[]);
    let outside = f.dir.join("outside");
    assert_eq!(f.c.lookup(ROOT, b"..").unwrap().nodeid, ROOT);
    assert_eq!(f.c.lookup(ROOT, b".").unwrap().nodeid, ROOT);
    let d = f.c.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    assert_eq!(f.c.lookup(d, b"..").unwrap().nodeid, ROOT);
    assert_eq!(f.c.lookup(d, b".").unwrap().nodeid, d);
    // Names are single components.
    for name in [&b"../outside"[..], b"d/..", b"/etc", b"", b"a/b"] {
        assert_eq!(
            f.c.lookup(ROOT, name).unwrap_err(),
            libc::EINVAL,
            "{name:?}"
        );
        assert!(f.c.mkdir(ROOT, name, 0o755).is_err(), "{name:?}");
        assert!(f.c.create(ROOT, name, 0o644, RDWR).is_err(), "{name:?}");
    }
    assert_eq!(f.c.mkdir(ROOT, b"..", 0o755).unwrap_err(), libc::EEXIST);
    assert_eq!(f.c.rmdir(ROOT, b"..").unwrap_err(), libc::EINVAL);
    assert_eq!(f.c.unlink(d, b".").unwrap_err(), libc::EINVAL);
    assert_eq!(
        f.c.rename(ROOT, b"..", ROOT, b"x", 0).unwrap_err(),
        libc::EINVAL
    );
    assert!(outside.exists() && f.dir.join("share").exists());

    // Symlinks pointing out: the daemon shows them, never follows them.
    std::os::unix::fs::symlink(&outside, f.host("evil")).unwrap();
    std::os::unix::fs::symlink(f.dir.path(), f.host("evildir")).unwrap();
    let e = f.c.lookup(ROOT, b"evil").unwrap();
    assert_eq!(e.attr.mode & S_IFMT, libc::S_IFLNK);
    assert_eq!(e.attr.size, outside.as_os_str().len() as u64);
    assert_eq!(
        f.c.readlink(e.nodeid).unwrap(),
        outside.as_os_str().as_encoded_bytes()
    );
    assert_eq!(f.c.open(e.nodeid, RDONLY).unwrap_err(), libc::ENXIO);
    assert_eq!(
        f.c.open(e.nodeid, RDWR | libc::O_TRUNC as u32).unwrap_err(),
        libc::ENXIO
    );
    // Creating over the symlink's name does not open its target.
    assert_eq!(
        f.c.create(ROOT, b"evil", 0o644, WRONLY | libc::O_TRUNC as u32)
            .unwrap_err(),
        libc::ELOOP
    );
    // Truncating the symlink node does not reach its target.
    let trunc = abi::SetattrIn {
        size: 0,
        ..sa(fattr::SIZE)
    };
    assert_eq!(f.c.setattr(e.nodeid, trunc).unwrap_err(), libc::EINVAL);
    let ed = f.c.lookup(ROOT, b"evildir").unwrap().nodeid;
    assert_eq!(f.c.lookup(ed, b"outside").unwrap_err(), libc::ENOTDIR);
    assert_eq!(f.c.opendir(ed).unwrap_err(), libc::ENOTDIR);
    assert_eq!(f.c.mkdir(ed, b"x", 0o755).unwrap_err(), libc::ENOTDIR);
    assert_eq!(
        f.c.create(ed, b"x", 0o644, RDWR).unwrap_err(),
        libc::ENOTDIR
    );
    assert_eq!(f.c.unlink(ed, b"outside").unwrap_err(), libc::ENOTDIR);
    // A relative one made by the guest is stored as given and is not followed either.
    let rel = f.c.symlink(ROOT, b"rel", b"../outside").unwrap().nodeid;
    assert_eq!(f.c.open(rel, RDWR).unwrap_err(), libc::ENXIO);
    assert_eq!(std::fs::read(&outside).unwrap(), b"secret");
    let mut outer = std::fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    outer.sort();
    assert_eq!(outer, ["fs.sock", "outside", "share"]);
}

#[test]
fn rename_and_rename2_noreplace_exchange() {
    let f = start("fuse-rename", &[]);
    std::fs::write(f.host("a"), b"A").unwrap();
    std::fs::write(f.host("b"), b"B").unwrap();
    let d = f.c.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    let a = f.c.lookup(ROOT, b"a").unwrap().nodeid;
    f.c.rename(ROOT, b"a", d, b"a2", 0).unwrap();
    assert_eq!(std::fs::read(f.host("d/a2")).unwrap(), b"A");
    assert!(!f.host("a").exists());
    // The node follows its file.
    assert_eq!(f.c.lookup(d, b"a2").unwrap().nodeid, a);
    assert_eq!(
        f.c.rename(ROOT, b"a", d, b"a3", 0).unwrap_err(),
        libc::ENOENT
    );
    assert_eq!(
        f.c.rename(424242, b"a", d, b"a3", 0).unwrap_err(),
        libc::EBADF
    );
    assert_eq!(
        f.c.rename(d, b"a2", 424242, b"a3", 0).unwrap_err(),
        libc::EBADF
    );
    assert_eq!(
        f.c.rename(d, b"a2", ROOT, &[b'n'; 256], 0).unwrap_err(),
        libc::ENAMETOOLONG
    );
    // Plain rename replaces.
    f.c.rename(d, b"a2", ROOT, b"b", 0).unwrap();
    assert_eq!(std::fs::read(f.host("b")).unwrap(), b"A");
    std::fs::write(f.host("a"), b"A2").unwrap();
    // NOREPLACE.
    let noreplace = libc::RENAME_NOREPLACE;
    assert_eq!(
        f.c.rename(ROOT, b"a", ROOT, b"b", noreplace).unwrap_err(),
        libc::EEXIST
    );
    assert_eq!(std::fs::read(f.host("b")).unwrap(), b"A");
    f.c.rename(ROOT, b"a", ROOT, b"c", noreplace).unwrap();
    assert_eq!(std::fs::read(f.host("c")).unwrap(), b"A2");
    // EXCHANGE: both names stay, contents (and nodes) swap.
    let b_node = f.c.lookup(ROOT, b"b").unwrap().nodeid;
    f.c.rename(ROOT, b"b", ROOT, b"c", libc::RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(std::fs::read(f.host("b")).unwrap(), b"A2");
    assert_eq!(std::fs::read(f.host("c")).unwrap(), b"A");
    assert_eq!(f.c.lookup(ROOT, b"c").unwrap().nodeid, b_node);
    assert_eq!(
        f.c.rename(ROOT, b"b", ROOT, b"zz", libc::RENAME_EXCHANGE)
            .unwrap_err(),
        libc::ENOENT
    );
    assert_eq!(
        f.c.rename(ROOT, b"b", ROOT, b"c", libc::RENAME_EXCHANGE | noreplace)
            .unwrap_err(),
        libc::EINVAL
    );
    assert_eq!(
        f.c.rename(ROOT, b"b", ROOT, b"zz", 1 << 20).unwrap_err(),
        libc::EINVAL
    );
    assert!(!f.host("zz").exists());
    // Directories.
    std::fs::create_dir(f.host("e")).unwrap();
    std::fs::write(f.host("d/inside"), b"").unwrap();
    assert_eq!(
        f.c.rename(ROOT, b"e", ROOT, b"d", 0).unwrap_err(),
        libc::ENOTEMPTY
    );
    assert_eq!(
        f.c.rename(ROOT, b"e", ROOT, b"b", 0).unwrap_err(),
        libc::ENOTDIR
    );
    assert_eq!(
        f.c.rename(ROOT, b"b", ROOT, b"d", 0).unwrap_err(),
        libc::EISDIR
    );
    assert_eq!(
        f.c.rename(ROOT, b"d", d, b"self", 0).unwrap_err(),
        libc::EINVAL
    );
    f.c.rename(ROOT, b"e", d, b"e", 0).unwrap();
    assert!(f.host("d/e").is_dir());
    // A directory and a file can be exchanged.
    f.c.rename(ROOT, b"b", d, b"e", libc::RENAME_EXCHANGE)
        .unwrap();
    assert!(f.host("b").is_dir() && f.host("d/e").is_file());
}

#[test]
fn fallocate_keep_size_punch_hole_and_lseek_data_hole() {
    let f = start("fuse-falloc", &[]);
    let (e, o) = f.c.create(ROOT, b"f", 0o644, RDWR).unwrap();
    let (id, fh) = (e.nodeid, o.fh);
    f.c.fallocate(id, fh, 0, 0, 1 << 20).unwrap();
    assert_eq!(f.c.getattr(id, None).unwrap().attr.size, 1 << 20);
    assert_eq!(std::fs::metadata(f.host("f")).unwrap().len(), 1 << 20);
    f.c.fallocate(id, fh, libc::FALLOC_FL_KEEP_SIZE as u32, 0, 2 << 20)
        .unwrap();
    let a = f.c.getattr(id, None).unwrap().attr;
    assert_eq!(a.size, 1 << 20);
    let md = std::fs::metadata(f.host("f")).unwrap();
    assert_eq!(md.len(), 1 << 20);
    assert!(md.blocks() * 512 >= 2 << 20, "{} blocks", md.blocks());
    // Data, then a hole punched in its middle: zeros there, size unchanged.
    f.c.write(id, fh, 0, &vec![1u8; 1 << 20]).unwrap();
    let punch = (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32;
    f.c.fallocate(id, fh, punch, 256 << 10, 256 << 10).unwrap();
    assert_eq!(f.c.read(id, fh, 256 << 10, 16).unwrap(), vec![0u8; 16]);
    let host = std::fs::read(f.host("f")).unwrap();
    assert_eq!(host.len(), 1 << 20);
    assert!(host[256 << 10..512 << 10].iter().all(|&b| b == 0));
    assert!(host[..256 << 10].iter().all(|&b| b == 1));
    assert!(host[512 << 10..].iter().all(|&b| b == 1));
    assert_eq!(
        f.c.fallocate(id, fh, libc::FALLOC_FL_PUNCH_HOLE as u32, 0, 4096)
            .unwrap_err(),
        libc::EOPNOTSUPP
    );
    assert_eq!(f.c.fallocate(id, 999, 0, 0, 1).unwrap_err(), libc::EBADF);
    assert_eq!(f.c.fallocate(id, fh, 0, 0, 0).unwrap_err(), libc::EINVAL);
    let ro = f.c.open(id, RDONLY).unwrap().fh;
    assert_eq!(f.c.fallocate(id, ro, 0, 0, 4096).unwrap_err(), libc::EBADF);
    // SEEK_HOLE / SEEK_DATA see the punched hole.
    let (data, hole) = (libc::SEEK_DATA as u32, libc::SEEK_HOLE as u32);
    assert_eq!(f.c.lseek(id, fh, 0, hole).unwrap(), 256 << 10);
    assert_eq!(f.c.lseek(id, fh, 256 << 10, data).unwrap(), 512 << 10);
    assert_eq!(f.c.lseek(id, fh, 600 << 10, hole).unwrap(), 1 << 20);
    assert_eq!(f.c.lseek(id, fh, 2 << 20, data).unwrap_err(), libc::ENXIO);
    assert_eq!(f.c.lseek(id, fh, 0, 77).unwrap_err(), libc::EINVAL);
    assert_eq!(f.c.lseek(id, 999, 0, data).unwrap_err(), libc::EBADF);
    // SEEK_SET/SEEK_END are the guest's own business but answered.
    assert_eq!(
        f.c.lseek(id, fh, 0, libc::SEEK_END as u32).unwrap(),
        1 << 20
    );
}

#[test]
fn copy_file_range_between_handles() {
    let f = start("fuse-copy", &[]);
    let (a, ao) = f.c.create(ROOT, b"a", 0o644, RDWR).unwrap();
    let (b, bo) = f.c.create(ROOT, b"b", 0o644, RDWR).unwrap();
    f.c.write(a.nodeid, ao.fh, 0, b"0123456789").unwrap();
    let args = abi::CopyFileRangeIn {
        fh_in: ao.fh,
        off_in: 2,
        nodeid_out: b.nodeid,
        fh_out: bo.fh,
        off_out: 1,
        len: 5,
        flags: 0,
    };
    assert_eq!(f.c.copy_file_range(a.nodeid, args).unwrap(), 5);
    assert_eq!(std::fs::read(f.host("b")).unwrap(), b"\x0023456");
    // Past the end of the source: nothing copied.
    let past = abi::CopyFileRangeIn {
        off_in: 100,
        ..args
    };
    assert_eq!(f.c.copy_file_range(a.nodeid, past).unwrap(), 0);
    // Within one file.
    let same = abi::CopyFileRangeIn {
        fh_out: ao.fh,
        nodeid_out: a.nodeid,
        off_in: 0,
        off_out: 10,
        len: 3,
        ..args
    };
    assert_eq!(f.c.copy_file_range(a.nodeid, same).unwrap(), 3);
    assert_eq!(std::fs::read(f.host("a")).unwrap(), b"0123456789012");
    assert_eq!(
        f.c.copy_file_range(a.nodeid, abi::CopyFileRangeIn { flags: 1, ..args })
            .unwrap_err(),
        libc::EINVAL
    );
    for bad in [
        abi::CopyFileRangeIn {
            fh_out: 999,
            ..args
        },
        abi::CopyFileRangeIn { fh_in: 999, ..args },
    ] {
        assert_eq!(f.c.copy_file_range(a.nodeid, bad).unwrap_err(), libc::EBADF);
    }
    // Into a read-only handle.
    let ro = f.c.open(b.nodeid, RDONLY).unwrap().fh;
    let to_ro = abi::CopyFileRangeIn { fh_out: ro, ..args };
    assert_eq!(
        f.c.copy_file_range(a.nodeid, to_ro).unwrap_err(),
        libc::EBADF
    );
    assert_eq!(std::fs::read(f.host("b")).unwrap(), b"\x0023456");
}

#[test]
fn tmpfile_is_nameless_until_linked() {
    let f = start("fuse-tmpfile", &[]);
    f.c.syncfs(ROOT).unwrap();
    let (e, o) = f.c.tmpfile(ROOT, 0o600, RDWR).unwrap();
    assert_eq!((e.attr.nlink, e.attr.mode), (0, libc::S_IFREG | 0o600));
    f.c.write(e.nodeid, o.fh, 0, b"tmp").unwrap();
    assert_eq!(f.c.read(e.nodeid, o.fh, 0, 10).unwrap(), b"tmp");
    assert_eq!(std::fs::read_dir(f.share()).unwrap().count(), 0);
    let l = f.c.link(e.nodeid, ROOT, b"named").unwrap();
    assert_eq!((l.nodeid, l.attr.nlink), (e.nodeid, 1));
    assert_eq!(std::fs::read(f.host("named")).unwrap(), b"tmp");
    assert_eq!(
        f.c.tmpfile(e.nodeid, 0o600, RDWR).unwrap_err(),
        libc::ENOTDIR
    );
    assert_eq!(f.c.tmpfile(424242, 0o600, RDWR).unwrap_err(), libc::EBADF);
}

#[test]
fn xattrs_with_and_without_the_option() {
    let f = start("fuse-xattr", &["--xattr"]);
    std::fs::write(f.host("f"), b"").unwrap();
    let id = f.c.lookup(ROOT, b"f").unwrap().nodeid;
    f.c.setxattr(id, b"user.a", b"value", 0).unwrap();
    assert_eq!(
        host_xattr(&f.host("f"), "user.a").as_deref(),
        Some(&b"value"[..])
    );
    let size = GetxattrOut::read(&f.c.getxattr(id, b"user.a", 0).unwrap()).unwrap();
    assert_eq!(size.size, 5);
    assert_eq!(f.c.getxattr(id, b"user.a", 100).unwrap(), b"value");
    assert_eq!(f.c.getxattr(id, b"user.a", 2).unwrap_err(), libc::ERANGE);
    assert_eq!(
        f.c.getxattr(id, b"user.none", 100).unwrap_err(),
        libc::ENODATA
    );
    let create = libc::XATTR_CREATE as u32;
    let replace = libc::XATTR_REPLACE as u32;
    assert_eq!(
        f.c.setxattr(id, b"user.a", b"v", create).unwrap_err(),
        libc::EEXIST
    );
    assert_eq!(
        f.c.setxattr(id, b"user.b", b"v", replace).unwrap_err(),
        libc::ENODATA
    );
    f.c.setxattr(id, b"user.a", b"v2", replace).unwrap();
    assert_eq!(
        host_xattr(&f.host("f"), "user.a").as_deref(),
        Some(&b"v2"[..])
    );
    // Set on the host, seen by the guest; directories too.
    set_host_xattr(&f.host("f"), "user.host", b"h");
    assert_eq!(f.c.getxattr(id, b"user.host", 10).unwrap(), b"h");
    f.c.setxattr(ROOT, b"user.dir", b"d", 0).unwrap();
    assert_eq!(f.c.getxattr(ROOT, b"user.dir", 10).unwrap(), b"d");
    let list = f.c.listxattr(id, 1000).unwrap();
    let mut listed: Vec<&[u8]> = list.split(|&b| b == 0).filter(|n| !n.is_empty()).collect();
    listed.sort();
    assert_eq!(listed, [&b"user.a"[..], b"user.host"]);
    let size = GetxattrOut::read(&f.c.listxattr(id, 0).unwrap())
        .unwrap()
        .size;
    assert_eq!(size as usize, list.len());
    assert_eq!(f.c.listxattr(id, 3).unwrap_err(), libc::ERANGE);
    f.c.removexattr(id, b"user.a").unwrap();
    assert_eq!(host_xattr(&f.host("f"), "user.a"), None);
    assert_eq!(f.c.removexattr(id, b"user.a").unwrap_err(), libc::ENODATA);
    assert_eq!(
        f.c.getxattr(424242, b"user.a", 10).unwrap_err(),
        libc::EBADF
    );
    // On a symlink, the link itself is addressed (user.* is not allowed on links).
    let l = f.c.symlink(ROOT, b"l", b"f").unwrap().nodeid;
    assert_eq!(
        f.c.setxattr(l, b"user.a", b"v", 0).unwrap_err(),
        libc::EPERM
    );
    assert_eq!(host_xattr(&f.host("f"), "user.a"), None);

    // Without --xattr every xattr request is ENOSYS, so the guest stops asking.
    let plain = start("fuse-no-xattr", &[]);
    assert_eq!(
        plain.c.setxattr(ROOT, b"user.a", b"v", 0).unwrap_err(),
        libc::ENOSYS
    );
    assert_eq!(
        plain.c.getxattr(ROOT, b"user.a", 10).unwrap_err(),
        libc::ENOSYS
    );
    assert_eq!(plain.c.listxattr(ROOT, 10).unwrap_err(), libc::ENOSYS);
    assert_eq!(
        plain.c.removexattr(ROOT, b"user.a").unwrap_err(),
        libc::ENOSYS
    );
    assert_eq!(host_xattr(&plain.share(), "user.a"), None);
}

fn cpath(p: &std::path::Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// The value of xattr `name` of `path` on the host (not following a symlink).
fn host_xattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let (p, n) = (cpath(path), std::ffi::CString::new(name).unwrap());
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the length given.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    usize::try_from(len).ok().map(|len| buf[..len].to_vec())
}

fn set_host_xattr(path: &std::path::Path, name: &str, value: &[u8]) {
    let (p, n) = (cpath(path), std::ffi::CString::new(name).unwrap());
    // SAFETY: valid C strings and a value of the length given.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0);
}

#[test]
fn readonly_export_refuses_every_modification() {
    let f = start("fuse-readonly", &["--readonly", "--xattr"]);
    std::fs::write(f.host("a"), b"A").unwrap();
    std::fs::create_dir(f.host("d")).unwrap();
    let a = f.c.lookup(ROOT, b"a").unwrap().nodeid;
    let rofs = Err(libc::EROFS);
    assert_eq!(f.c.mkdir(ROOT, b"x", 0o755).map(drop), rofs);
    assert_eq!(
        f.c.mknod(ROOT, b"x", libc::S_IFIFO | 0o644, 0).map(drop),
        rofs
    );
    assert_eq!(f.c.symlink(ROOT, b"x", b"a").map(drop), rofs);
    assert_eq!(f.c.link(a, ROOT, b"x").map(drop), rofs);
    assert_eq!(f.c.create(ROOT, b"x", 0o644, WRONLY).map(drop), rofs);
    assert_eq!(f.c.tmpfile(ROOT, 0o644, RDWR).map(drop), rofs);
    assert_eq!(f.c.unlink(ROOT, b"a"), rofs);
    assert_eq!(f.c.rmdir(ROOT, b"d"), rofs);
    assert_eq!(f.c.rename(ROOT, b"a", ROOT, b"b", 0), rofs);
    assert_eq!(
        f.c.rename(ROOT, b"a", ROOT, b"d", libc::RENAME_EXCHANGE),
        rofs
    );
    let chmod = abi::SetattrIn {
        mode: 0o600,
        ..sa(fattr::MODE)
    };
    assert_eq!(f.c.setattr(a, chmod).map(drop), rofs);
    let trunc = abi::SetattrIn {
        size: 0,
        ..sa(fattr::SIZE)
    };
    assert_eq!(f.c.setattr(a, trunc).map(drop), rofs);
    assert_eq!(f.c.open(a, WRONLY).map(drop), rofs);
    assert_eq!(f.c.open(a, RDWR).map(drop), rofs);
    assert_eq!(f.c.open(a, RDONLY | libc::O_TRUNC as u32).map(drop), rofs);
    assert_eq!(f.c.setxattr(a, b"user.x", b"1", 0), rofs);
    assert_eq!(f.c.removexattr(a, b"user.x"), rofs);
    assert_eq!(f.c.access(a, libc::W_OK as u32), rofs);
    // Reading still works, and what reads is unchanged.
    f.c.access(a, libc::R_OK as u32).unwrap();
    let fh = f.c.open(a, RDONLY).unwrap().fh;
    assert_eq!(f.c.read(a, fh, 0, 10).unwrap(), b"A");
    assert_eq!(f.c.fallocate(a, fh, 0, 0, 10), rofs);
    assert_eq!(f.c.write(a, fh, 0, b"x").map(drop), rofs);
    let d = f.c.opendir(ROOT).unwrap().fh;
    assert_eq!(f.c.readdir(ROOT, d, 0, 4096, false).unwrap().len(), 4);
    assert_eq!(f.c.listxattr(a, 100).unwrap(), b"");
    assert_eq!(std::fs::read(f.host("a")).unwrap(), b"A");
    assert_eq!(mode_of(&f.host("a")), 0o644);
    let mut names = std::fs::read_dir(f.share())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    names.sort();
    assert_eq!(names, ["a", "d"]);
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
        let (_, created) = f.c.create(ROOT, b"new", 0o644, RDWR).unwrap();
        assert_eq!(created.open_flags, file_flags, "{cache}");
        assert_eq!(f.c.opendir(ROOT).unwrap().open_flags, dir_flags, "{cache}");
    }
}
