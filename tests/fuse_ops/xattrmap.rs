//! `--xattrmap`: the guest's names stored under their mapped host names, and the host's
//! list shown as the map says.

use super::attrs::{host_xattr, set_host_xattr};
use super::support::*;

/// The brief's overlayfs map: `trusted.*` kept under `user.virtiofs.`, everything else
/// passed through.
const OVERLAY: &str = ":prefix:all:trusted.:user.virtiofs.: :ok:all:::";

/// The guest's listing of `node`, sorted.
fn listed(f: &impl Guest, node: u64) -> Vec<String> {
    let list = f.c().listxattr(node, 4096).unwrap();
    let mut names: Vec<String> = list
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .map(|n| String::from_utf8(n.to_vec()).unwrap())
        .collect();
    names.sort();
    names
}

over_both_transports!(overlay_xattrs_land_under_user_virtiofs, flags: ["--xattr", "--xattrmap", super::OVERLAY], config: |c| {
    c.xattrmap = Some(vhost_dax::fs::xattrmap::XattrMap::parse(super::OVERLAY).unwrap());
});
fn overlay_xattrs_land_under_user_virtiofs(f: &impl Guest) {
    std::fs::write(f.host("f"), b"").unwrap();
    std::fs::create_dir(f.host("d")).unwrap();
    let id = f.c().lookup(ROOT, b"f").unwrap().nodeid;
    let dir = f.c().lookup(ROOT, b"d").unwrap().nodeid;

    // SETXATTR: stored under the mapped name, not the guest's.
    f.c()
        .setxattr(id, b"trusted.overlay.opaque", b"y", 0)
        .unwrap();
    assert_eq!(
        host_xattr(&f.host("f"), "user.virtiofs.trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(host_xattr(&f.host("f"), "trusted.overlay.opaque"), None);
    f.c()
        .setxattr(dir, b"trusted.overlay.opaque", b"x", 0)
        .unwrap();
    assert_eq!(
        host_xattr(&f.host("d"), "user.virtiofs.trusted.overlay.opaque").as_deref(),
        Some(&b"x"[..])
    );
    // The flags reach the host under the mapped name.
    assert_eq!(
        f.c()
            .setxattr(
                id,
                b"trusted.overlay.opaque",
                b"n",
                libc::XATTR_CREATE as u32
            )
            .unwrap_err(),
        libc::EEXIST
    );
    // GETXATTR, size probe and value.
    let size = GetxattrOut::read(&f.c().getxattr(id, b"trusted.overlay.opaque", 0).unwrap());
    assert_eq!(size.unwrap().size, 1);
    assert_eq!(
        f.c().getxattr(id, b"trusted.overlay.opaque", 10).unwrap(),
        b"y"
    );
    // A name the host set under the prefix is the guest's without it; others pass.
    set_host_xattr(
        &f.host("f"),
        "user.virtiofs.trusted.overlay.redirect",
        b"/a",
    );
    set_host_xattr(&f.host("f"), "user.plain", b"p");
    assert_eq!(
        f.c().getxattr(id, b"trusted.overlay.redirect", 10).unwrap(),
        b"/a"
    );
    f.c().setxattr(id, b"user.guest", b"g", 0).unwrap();
    assert_eq!(
        host_xattr(&f.host("f"), "user.guest").as_deref(),
        Some(&b"g"[..])
    );
    // LISTXATTR: host names stripped of the prefix; its size probe is the mapped size.
    assert_eq!(
        listed(f, id),
        [
            "trusted.overlay.opaque",
            "trusted.overlay.redirect",
            "user.guest",
            "user.plain"
        ]
    );
    let list = f.c().listxattr(id, 4096).unwrap();
    let probe = GetxattrOut::read(&f.c().listxattr(id, 0).unwrap())
        .unwrap()
        .size;
    assert_eq!(probe as usize, list.len());
    assert_eq!(f.c().listxattr(id, probe - 1).unwrap_err(), libc::ERANGE);
    assert_eq!(listed(f, dir), ["trusted.overlay.opaque"]);
    // REMOVEXATTR of the guest's name removes the mapped one.
    f.c().removexattr(id, b"trusted.overlay.opaque").unwrap();
    assert_eq!(
        host_xattr(&f.host("f"), "user.virtiofs.trusted.overlay.opaque"),
        None
    );
    assert_eq!(
        f.c()
            .removexattr(id, b"trusted.overlay.opaque")
            .unwrap_err(),
        libc::ENODATA
    );
    assert_eq!(
        f.c()
            .getxattr(id, b"trusted.overlay.opaque", 10)
            .unwrap_err(),
        libc::ENODATA
    );
}

/// virtiofsd's `map` shorthand (`trusted.` only, the target space closed to the guest)
/// after an `unsupported` rule.
const CLOSED: &str = ":unsupported:all:system.:system.: :map:trusted.:user.virtiofs.:";

over_both_transports!(bad_and_unsupported_names_are_refused_and_hidden, flags: ["--xattr", "--xattrmap", super::CLOSED], config: |c| {
    c.xattrmap = Some(vhost_dax::fs::xattrmap::XattrMap::parse(super::CLOSED).unwrap());
});
fn bad_and_unsupported_names_are_refused_and_hidden(f: &impl Guest) {
    std::fs::write(f.host("f"), b"").unwrap();
    let id = f.c().lookup(ROOT, b"f").unwrap().nodeid;
    set_host_xattr(&f.host("f"), "user.virtiofs.trusted.a", b"1");
    // The prefixed names are not the guest's to reach directly: EPERM, and ENODATA for
    // a read, as virtiofsd.
    let direct = b"user.virtiofs.trusted.a";
    assert_eq!(
        f.c().setxattr(id, direct, b"2", 0).unwrap_err(),
        libc::EPERM
    );
    assert_eq!(f.c().getxattr(id, direct, 10).unwrap_err(), libc::ENODATA);
    assert_eq!(f.c().removexattr(id, direct).unwrap_err(), libc::EPERM);
    assert_eq!(
        host_xattr(&f.host("f"), "user.virtiofs.trusted.a").as_deref(),
        Some(&b"1"[..])
    );
    // unsupported: EOPNOTSUPP, before the host is asked.
    assert_eq!(
        f.c()
            .setxattr(id, b"system.posix_acl_access", b"", 0)
            .unwrap_err(),
        libc::EOPNOTSUPP
    );
    assert_eq!(
        f.c()
            .getxattr(id, b"system.posix_acl_access", 10)
            .unwrap_err(),
        libc::EOPNOTSUPP
    );
    if is_root() {
        // The host's own trusted.* is hidden, and the guest's trusted.b is another name.
        set_host_xattr(&f.host("f"), "trusted.b", b"host");
        assert_eq!(
            f.c().getxattr(id, b"trusted.b", 10).unwrap_err(),
            libc::ENODATA
        );
    }
    assert_eq!(listed(f, id), ["trusted.a"]);
}

/// Everything under `user.virtiofs.`, `security.capability` included.
const ALL: &str = ":map::user.virtiofs.:";

over_both_transports!(a_renamed_file_capability_is_dropped_as_the_kernel_drops_it, flags: ["--xattr", "--xattrmap", super::ALL], config: |c| {
    c.xattrmap = Some(vhost_dax::fs::xattrmap::XattrMap::parse(super::ALL).unwrap());
});
fn a_renamed_file_capability_is_dropped_as_the_kernel_drops_it(f: &impl Guest) {
    const HOST: &str = "user.virtiofs.security.capability";
    std::fs::write(f.host("f"), b"0123").unwrap();
    let id = f.c().lookup(ROOT, b"f").unwrap().nodeid;
    let give_caps = || {
        f.c()
            .setxattr(id, b"security.capability", b"caps", 0)
            .unwrap();
        assert_eq!(
            host_xattr(&f.host("f"), HOST).as_deref(),
            Some(&b"caps"[..])
        );
    };
    // Setting another name leaves it (Linux does not drop capabilities there).
    give_caps();
    f.c().setxattr(id, b"user.other", b"o", 0).unwrap();
    assert!(host_xattr(&f.host("f"), HOST).is_some());
    // A write drops it, and nothing else.
    let fh = f.c().open(id, RDWR).unwrap().fh;
    f.c().write(id, fh, 0, b"x").unwrap();
    assert_eq!(host_xattr(&f.host("f"), HOST), None, "write");
    assert_eq!(
        host_xattr(&f.host("f"), "user.virtiofs.user.other").as_deref(),
        Some(&b"o"[..])
    );
    // Truncates: SETATTR with and without a handle, OPEN with O_TRUNC.
    give_caps();
    let size = |fh: Option<u64>| abi::SetattrIn {
        size: 1,
        fh: fh.unwrap_or(0),
        ..sa(fattr::SIZE | fh.map_or(0, |_| fattr::FH))
    };
    f.c().setattr(id, size(Some(fh))).unwrap();
    assert_eq!(host_xattr(&f.host("f"), HOST), None, "ftruncate");
    give_caps();
    f.c().setattr(id, size(None)).unwrap();
    assert_eq!(host_xattr(&f.host("f"), HOST), None, "truncate");
    f.c().release(id, fh).unwrap();
    give_caps();
    let fh = f.c().open(id, RDWR | libc::O_TRUNC as u32).unwrap().fh;
    assert_eq!(host_xattr(&f.host("f"), HOST), None, "O_TRUNC");
    f.c().release(id, fh).unwrap();
    give_caps();
    let (_, open) = f
        .c()
        .create(ROOT, b"f", 0o644, RDWR | libc::O_TRUNC as u32)
        .unwrap();
    assert_eq!(host_xattr(&f.host("f"), HOST), None, "CREATE with O_TRUNC");
    f.c().release(id, open.fh).unwrap();
    // A read-only open keeps it.
    give_caps();
    let fh = f.c().open(id, RDONLY).unwrap().fh;
    f.c().release(id, fh).unwrap();
    assert!(host_xattr(&f.host("f"), HOST).is_some());
    // A change of owner drops it.
    let md = std::fs::metadata(f.host("f")).unwrap();
    f.c()
        .setattr(
            id,
            abi::SetattrIn {
                uid: md.uid(),
                ..sa(fattr::UID)
            },
        )
        .unwrap();
    assert_eq!(host_xattr(&f.host("f"), HOST), None, "chown");
}
