//! Extended attributes.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;

use super::{ROOT, is_root, setup, setup_with};
use crate::fuse::abi::{GetxattrOut, Wire};
use crate::sys::fs::{self as sys, XattrTarget};

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
    // Reached by path (a symlink cannot be opened), the link's own names are listed.
    assert_eq!(f.c.listxattr(l, 100).unwrap(), b"");
    f.c.setxattr(t_node(&f), b"user.t", b"v", 0).unwrap();
    assert_eq!(f.c.listxattr(l, 100).unwrap(), b"");
    assert_eq!(f.c.getxattr(l, b"user.t", 10).unwrap_err(), libc::ENODATA);
}

fn t_node(f: &super::Fixture) -> u64 {
    f.c.lookup(ROOT, b"target").unwrap().nodeid
}

/// `name` in the shared directory, as a path for the host's xattr calls.
fn host_path(f: &super::Fixture, name: &str) -> CString {
    CString::new(f.shared().join(name).as_os_str().as_bytes()).unwrap()
}

/// The host's own list of names of `path` (the operator's view).
fn host_names(path: &CStr) -> Vec<u8> {
    let mut buf = vec![0u8; 64 << 10];
    let n = sys::listxattr(XattrTarget::Path(path), &mut buf).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn only_the_user_namespace_is_the_guests() {
    let f = setup();
    std::fs::write(f.shared().join("f"), b"").unwrap();
    let id = f.c.lookup(ROOT, b"f").unwrap().nodeid;
    // trusted.* and security.* need privileges on the host: not the guest's to change,
    // and invisible to it.
    for name in [
        &b"trusted.a"[..],
        b"security.capability",
        b"security.selinux",
    ] {
        assert_eq!(f.c.setxattr(id, name, b"v", 0).unwrap_err(), libc::EPERM);
        assert_eq!(f.c.removexattr(id, name).unwrap_err(), libc::EPERM);
        assert_eq!(f.c.getxattr(id, name, 100).unwrap_err(), libc::ENODATA);
        assert_eq!(f.c.getxattr(id, name, 0).unwrap_err(), libc::ENODATA);
    }
    // POSIX ACLs are not supported; nor is any other namespace.
    for name in [
        &b"system.posix_acl_access"[..],
        b"system.posix_acl_default",
        b"system.nfs4_acl",
        b"system.",
        b"osx.a",
        b"user",
        b"a",
    ] {
        assert_eq!(
            f.c.setxattr(id, name, b"v", 0).unwrap_err(),
            libc::EOPNOTSUPP
        );
        assert_eq!(f.c.getxattr(id, name, 100).unwrap_err(), libc::EOPNOTSUPP);
        assert_eq!(f.c.removexattr(id, name).unwrap_err(), libc::EOPNOTSUPP);
    }
    // Nothing reached the host.
    let host = host_names(&host_path(&f, "f"));
    assert!(host.is_empty(), "{host:?}");
    // A read-only export refuses a user.* change, and still a privileged one with EPERM.
    let ro = setup_with(|c| c.readonly = true);
    assert_eq!(
        ro.c.setxattr(ROOT, b"user.a", b"v", 0).unwrap_err(),
        libc::EROFS
    );
    assert_eq!(
        ro.c.setxattr(ROOT, b"trusted.a", b"v", 0).unwrap_err(),
        libc::EPERM
    );
}

#[test]
fn listxattr_shows_user_names_only_and_sizes_what_it_shows() {
    if !is_root() {
        eprintln!("skipping: setting trusted.* names on the host needs root");
        return;
    }
    let f = setup();
    std::fs::write(f.shared().join("f"), b"").unwrap();
    let id = f.c.lookup(ROOT, b"f").unwrap().nodeid;
    let path = host_path(&f, "f");
    // Long hidden names, so the unfiltered list is far larger than the filtered one.
    let long = format!("trusted.{}", "x".repeat(200));
    let host = XattrTarget::Path(&path);
    sys::setxattr(host, &CString::new(long).unwrap(), b"h", 0).unwrap();
    sys::setxattr(host, c"trusted.b", b"h", 0).unwrap();
    f.c.setxattr(id, b"user.a", b"v", 0).unwrap();
    assert_eq!(f.c.listxattr(id, 1000).unwrap(), b"user.a\0");
    // The size probe answers the size of that list, and a buffer of exactly that size
    // holds it (the host's list would not fit).
    let size = GetxattrOut::read(&f.c.listxattr(id, 0).unwrap())
        .unwrap()
        .size;
    assert_eq!(size, 7);
    assert_eq!(f.c.listxattr(id, 7).unwrap(), b"user.a\0");
    assert_eq!(f.c.listxattr(id, 6).unwrap_err(), libc::ERANGE);
    // Only hidden names: an empty list, of size 0.
    f.c.removexattr(id, b"user.a").unwrap();
    assert_eq!(f.c.listxattr(id, 100).unwrap(), b"");
    let size = GetxattrOut::read(&f.c.listxattr(id, 0).unwrap())
        .unwrap()
        .size;
    assert_eq!(size, 0);
    // The host's names are still there, untouched.
    let host = host_names(&path);
    assert!(host.windows(10).any(|w| w == b"trusted.b\0"), "{host:?}");
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
