//! Open files: create/open/read/write/release, writeback, fallocate, lseek,
//! copy_file_range, tmpfile.

use super::support::*;

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
    let big: Vec<u8> = (0..abi::MAX_BUFFER_SIZE)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    assert_eq!(
        f.c.write(e.nodeid, o.fh, 4096, &big).unwrap() as usize,
        big.len()
    );
    assert_eq!(
        f.c.read(e.nodeid, o.fh, 4096, u32::try_from(big.len()).unwrap())
            .unwrap(),
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
    // CREATE over names that are not regular files: refused, never blocking on a fifo.
    std::fs::create_dir(f.host("dir")).unwrap();
    assert_eq!(
        f.c.create(ROOT, b"dir", 0o644, RDWR).unwrap_err(),
        libc::EISDIR
    );
    f.c.mknod(ROOT, b"fifo", libc::S_IFIFO | 0o666, 0).unwrap();
    for flags in [RDONLY, WRONLY, RDWR] {
        assert_eq!(
            f.c.create(ROOT, b"fifo", 0o644, flags).unwrap_err(),
            libc::ENXIO,
            "flags {flags}"
        );
    }
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
    // A guest open(O_NOFOLLOW) of a regular file is an ordinary open (the daemon
    // reopens through /proc/self/fd, which O_NOFOLLOW would refuse); creation bits
    // that reach OPEN are the kernel's business, not an error.
    let nf = f.c.open(log, RDWR | libc::O_NOFOLLOW as u32).unwrap().fh;
    f.c.write(log, nf, 0, b"nofollow").unwrap();
    assert_eq!(std::fs::read(f.host("log")).unwrap(), b"nofollow");
    let excl = (libc::O_CREAT | libc::O_EXCL) as u32;
    let ce = f.c.open(log, RDONLY | excl).unwrap().fh;
    assert_eq!(f.c.read(log, ce, 0, 2).unwrap(), b"no");
    // An open file outlives its name, as on any POSIX filesystem.
    f.c.unlink(ROOT, b"log").unwrap();
    assert!(!f.host("log").exists());
    f.c.write(log, nf, 8, b"!").unwrap();
    assert_eq!(f.c.read(log, ce, 0, 100).unwrap(), b"nofollow!");
    let a = f.c.getattr(log, Some(nf)).unwrap().attr;
    assert_eq!((a.size, a.nlink), (9, 0));
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

over_both_transports!(copy_file_range_between_handles);
fn copy_file_range_between_handles(f: &impl Guest) {
    let (a, ao) = f.c().create(ROOT, b"a", 0o644, RDWR).unwrap();
    let (b, bo) = f.c().create(ROOT, b"b", 0o644, RDWR).unwrap();
    f.c().write(a.nodeid, ao.fh, 0, b"0123456789").unwrap();
    let args = abi::CopyFileRangeIn {
        fh_in: ao.fh,
        off_in: 2,
        nodeid_out: b.nodeid,
        fh_out: bo.fh,
        off_out: 1,
        len: 5,
        flags: 0,
    };
    assert_eq!(f.c().copy_file_range(a.nodeid, args).unwrap(), 5);
    assert_eq!(std::fs::read(f.host("b")).unwrap(), b"\x0023456");
    // Past the end of the source: nothing copied.
    let past = abi::CopyFileRangeIn {
        off_in: 100,
        ..args
    };
    assert_eq!(f.c().copy_file_range(a.nodeid, past).unwrap(), 0);
    // Within one file.
    let same = abi::CopyFileRangeIn {
        fh_out: ao.fh,
        nodeid_out: a.nodeid,
        off_in: 0,
        off_out: 10,
        len: 3,
        ..args
    };
    assert_eq!(f.c().copy_file_range(a.nodeid, same).unwrap(), 3);
    assert_eq!(std::fs::read(f.host("a")).unwrap(), b"0123456789012");
    assert_eq!(
        f.c()
            .copy_file_range(a.nodeid, abi::CopyFileRangeIn { flags: 1, ..args })
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
        assert_eq!(
            f.c().copy_file_range(a.nodeid, bad).unwrap_err(),
            libc::EBADF
        );
    }
    // Into a read-only handle.
    let ro = f.c().open(b.nodeid, RDONLY).unwrap().fh;
    let to_ro = abi::CopyFileRangeIn { fh_out: ro, ..args };
    assert_eq!(
        f.c().copy_file_range(a.nodeid, to_ro).unwrap_err(),
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
