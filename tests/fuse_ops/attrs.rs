//! Attributes (getattr, setattr, statfs, access) and extended attributes.

use super::support::*;

over_both_transports!(attributes_getattr_setattr_statfs_access);
fn attributes_getattr_setattr_statfs_access(f: &impl Guest) {
    std::fs::write(f.host("f"), b"0123456789").unwrap();
    let id = f.c().lookup(ROOT, b"f").unwrap().nodeid;
    let a = f.c().getattr(id, None).unwrap().attr;
    let md = std::fs::metadata(f.host("f")).unwrap();
    assert_eq!(
        (a.ino, a.size, a.mode, a.nlink, a.uid, a.gid),
        (md.ino(), 10, md.mode(), 1, md.uid(), md.gid())
    );
    assert_eq!(
        f.c().getattr(ROOT, None).unwrap().attr.mode & S_IFMT,
        libc::S_IFDIR
    );

    let a = f.c().setattr(
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
    assert_eq!(f.c().setattr(id, size(3)).unwrap().attr.size, 3);
    assert_eq!(std::fs::read(f.host("f")).unwrap(), b"012");
    assert_eq!(f.c().setattr(id, size(4096)).unwrap().attr.size, 4096);
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
    let a = f.c().setattr(id, t).unwrap().attr;
    assert_eq!(
        (a.atime, a.atimensec, a.mtime, a.mtimensec),
        (1000, 5, 2000, 7)
    );
    let md = std::fs::metadata(f.host("f")).unwrap();
    assert_eq!((md.atime(), md.mtime(), md.mtime_nsec()), (1000, 2000, 7));
    let a = f.c().setattr(
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
    let now = f
        .c()
        .setattr(id, sa(fattr::MTIME | fattr::MTIME_NOW))
        .unwrap()
        .attr;
    assert!(now.mtime > 3000);
    // Through a handle; an unknown handle is refused.
    let fh = f.c().open(id, RDWR).unwrap().fh;
    let a = f.c().setattr(
        id,
        abi::SetattrIn {
            fh,
            size: 1,
            ..sa(fattr::FH | fattr::SIZE)
        },
    );
    assert_eq!(a.unwrap().attr.size, 1);
    assert_eq!(std::fs::metadata(f.host("f")).unwrap().len(), 1);
    assert_eq!(f.c().getattr(id, Some(fh)).unwrap().attr.size, 1);
    assert_eq!(
        f.c()
            .setattr(
                id,
                abi::SetattrIn {
                    fh: 999,
                    ..sa(fattr::FH | fattr::SIZE)
                }
            )
            .unwrap_err(),
        libc::EBADF
    );
    assert_eq!(f.c().setattr(ROOT, size(0)).unwrap_err(), libc::EISDIR);
    assert_eq!(f.c().getattr(424242, None).unwrap_err(), libc::EBADF);
    assert_eq!(f.c().setattr(424242, size(0)).unwrap_err(), libc::EBADF);
    if is_root() {
        let a = f.c().setattr(
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

    let s = f.c().statfs(ROOT).unwrap();
    let path = std::ffi::CString::new(f.share().as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path and a zeroed out-parameter.
    let host = unsafe {
        let mut v: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(path.as_ptr(), &mut v), 0);
        v
    };
    assert_eq!(
        (s.blocks, u64::from(s.bsize), s.namelen),
        (host.f_blocks, host.f_bsize, 255)
    );
    assert_eq!(f.c().statfs(424242).unwrap_err(), libc::EBADF);

    // ACCESS checks the caller in the request header against the host's mode bits.
    std::fs::set_permissions(f.host("f"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let md = std::fs::metadata(f.host("f")).unwrap();
    let (r, w, x) = (libc::R_OK as u32, libc::W_OK as u32, libc::X_OK as u32);
    f.c().set_caller(md.uid(), md.gid());
    f.c().access(id, r | w).unwrap();
    assert_eq!(f.c().access(id, x).unwrap_err(), libc::EACCES);
    f.c().set_caller(md.uid() + 1, md.gid());
    f.c().access(id, r).unwrap();
    assert_eq!(f.c().access(id, w).unwrap_err(), libc::EACCES);
    f.c().set_caller(md.uid() + 1, md.gid() + 1);
    assert_eq!(f.c().access(id, r).unwrap_err(), libc::EACCES);
    f.c().access(id, 0).unwrap();
    assert_eq!(f.c().access(424242, 0).unwrap_err(), libc::EBADF);
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
    if is_root() {
        // Nodes the daemon cannot open (a symlink, a fifo) are reached by path, still
        // the node itself.
        let p =
            f.c.mknod(ROOT, b"p", libc::S_IFIFO | 0o600, 0)
                .unwrap()
                .nodeid;
        for (node, name) in [(l, "l"), (p, "p")] {
            f.c.setxattr(node, b"trusted.t", name.as_bytes(), 0)
                .unwrap();
            assert_eq!(
                f.c.getxattr(node, b"trusted.t", 10).unwrap(),
                name.as_bytes()
            );
            assert_eq!(
                host_xattr(&f.host(name), "trusted.t").as_deref(),
                Some(name.as_bytes())
            );
            assert!(
                f.c.listxattr(node, 100)
                    .unwrap()
                    .starts_with(b"trusted.t\0")
            );
            f.c.removexattr(node, b"trusted.t").unwrap();
            assert_eq!(host_xattr(&f.host(name), "trusted.t"), None);
        }
        assert_eq!(host_xattr(&f.host("f"), "trusted.t"), None);
    }

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
