//! Extended attributes.

use super::{ROOT, is_root, setup, setup_with};
use crate::fuse::abi::{GetxattrOut, Wire};

#[test]
fn set_get_list_remove() {
    let f = setup();
    std::fs::write(f.shared().join("f"), b"").unwrap();
    let id = f.c.lookup(ROOT, b"f").unwrap().nodeid;
    f.c.setxattr(id, b"user.a", b"value", 0).unwrap();
    // Size query.
    let out = GetxattrOut::read(&f.c.getxattr(id, b"user.a", 0).unwrap()).unwrap();
    assert_eq!(out.size, 5);
    assert_eq!(f.c.getxattr(id, b"user.a", 100).unwrap(), b"value");
    assert_eq!(f.c.getxattr(id, b"user.a", 2).unwrap_err(), libc::ERANGE);
    assert_eq!(
        f.c.getxattr(id, b"user.none", 100).unwrap_err(),
        libc::ENODATA
    );
    // XATTR_CREATE on an existing name.
    assert_eq!(
        f.c.setxattr(id, b"user.a", b"v", libc::XATTR_CREATE as u32)
            .unwrap_err(),
        libc::EEXIST
    );
    f.c.setxattr(ROOT, b"user.dir", b"d", 0).unwrap();
    assert_eq!(f.c.getxattr(ROOT, b"user.dir", 10).unwrap(), b"d");
    let list = f.c.listxattr(id, 1000).unwrap();
    assert!(list.split(|&b| b == 0).any(|n| n == b"user.a"));
    let size = GetxattrOut::read(&f.c.listxattr(id, 0).unwrap())
        .unwrap()
        .size;
    assert_eq!(size as usize, list.len());
    f.c.removexattr(id, b"user.a").unwrap();
    assert_eq!(f.c.removexattr(id, b"user.a").unwrap_err(), libc::ENODATA);
}

#[test]
fn symlink_xattrs_address_the_link_itself() {
    let f = setup();
    std::fs::write(f.shared().join("target"), b"").unwrap();
    let l = f.c.symlink(ROOT, b"l", b"target").unwrap().nodeid;
    // user.* is not allowed on symlinks (the host says so: the link itself was addressed).
    assert_eq!(
        f.c.setxattr(l, b"user.a", b"v", 0).unwrap_err(),
        libc::EPERM
    );
    if is_root() {
        f.c.setxattr(l, b"trusted.a", b"v", 0).unwrap();
        assert_eq!(f.c.getxattr(l, b"trusted.a", 10).unwrap(), b"v");
        let t = f.c.lookup(ROOT, b"target").unwrap().nodeid;
        assert_eq!(
            f.c.getxattr(t, b"trusted.a", 10).unwrap_err(),
            libc::ENODATA
        );
        assert!(f.c.listxattr(l, 100).unwrap().starts_with(b"trusted.a\0"));
        f.c.removexattr(l, b"trusted.a").unwrap();
    }
}

#[test]
fn disabled_xattrs_answer_enosys() {
    let f = setup_with(|c| c.xattr = false);
    assert_eq!(
        f.c.setxattr(ROOT, b"user.a", b"v", 0).unwrap_err(),
        libc::ENOSYS
    );
    assert_eq!(f.c.getxattr(ROOT, b"user.a", 10).unwrap_err(), libc::ENOSYS);
    assert_eq!(f.c.listxattr(ROOT, 10).unwrap_err(), libc::ENOSYS);
    assert_eq!(f.c.removexattr(ROOT, b"user.a").unwrap_err(), libc::ENOSYS);
}
