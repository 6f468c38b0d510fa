//! Releases: truncate and punch-hole keep mappings; FORGET, unlink, DESTROY, reset, SIGTERM.

use crate::support::*;

#[test]
fn truncate_keeps_the_mapping_and_growth_shows_through_it() {
    let d = start("dax-truncate", &[]);
    init(&d);
    let data = pattern(usize::try_from(MIB2).unwrap(), 4);
    let node = d.file("t", &data);
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let before = d.live();

    let shrink = abi::SetattrIn {
        valid: abi::fattr::SIZE,
        size: 8192,
        ..Default::default()
    };
    assert_eq!(d.c.setattr(node, shrink).unwrap().attr.size, 8192);
    assert_eq!(
        d.live(),
        before,
        "the guest keeps its mapping across a truncate"
    );
    assert_eq!(d.read_window(0, 8192), &data[..8192]);

    // The file grows again (another host writer); the same window range shows it.
    let grown = pattern(65536, 9);
    std::fs::write(d.share("t"), &grown).unwrap();
    assert_eq!(d.read_window(0, 65536), grown);
    assert_eq!(d.windows.stats().maps, 1, "no new SETUPMAPPING was needed");
}

#[test]
fn punch_hole_under_a_mapping_zeroes_the_bytes_in_place() {
    let d = start("dax-punch", &[]);
    init(&d);
    let node = d.file("p", &pattern(1 << 20, 5));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let fh = d.c.open(node, libc::O_RDWR as u32).unwrap().fh;
    let mode = (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32;
    d.c.fallocate(node, fh, mode, 4096, 8192).unwrap();
    assert_eq!(d.live().len(), 1);
    let seen = d.read_window(0, 16384);
    assert!(seen[4096..12288].iter().all(|&b| b == 0));
    assert_eq!(&seen[..4096], &pattern(1 << 20, 5)[..4096]);
}

#[test]
fn forget_releases_nothing_the_last_unmap_closes_the_file() {
    let d = start("dax-forget", &[]);
    init(&d);
    let path = d.share("f");
    let node = d.file("f", &pattern(4096, 6));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    d.c.forget(node, 1);
    // FORGET has no reply: a round trip after it shows it was processed.
    assert_eq!(d.c.getattr(node, None).unwrap_err(), libc::EBADF);
    assert!(
        d.daemon_fds_on(&path) > 0,
        "the mapping keeps the file open"
    );
    assert_eq!(d.read_window(0, 4096), pattern(4096, 6));
    d.c.removemapping(ROOT, &[(0, MIB2)]).unwrap();
    assert_eq!(d.daemon_fds_on(&path), 0, "the last unmap closed it");
}

#[test]
fn unlink_keeps_live_mappings_valid() {
    let d = start("dax-unlink", &[]);
    init(&d);
    let path = d.share("gone");
    let node = d.file("gone", &pattern(4096, 8));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    d.c.unlink(ROOT, b"gone").unwrap();
    assert!(!path.exists());
    assert_eq!(d.read_window(0, 4096), pattern(4096, 8));
    d.windows.write(0, 0, b"still here").unwrap();
    assert_eq!(&d.read_window(0, 10), b"still here");
    d.c.forget(node, 1);
    d.c.removemapping(ROOT, &[(0, MIB2)]).unwrap();
    assert_eq!(d.daemon_fds_on(&path), 0);
}

#[test]
fn destroy_releases_every_mapping() {
    let d = start("dax-destroy", &[]);
    init(&d);
    let a = d.file("a", &pattern(4096, 1));
    let b = d.file("b", &pattern(4096, 2));
    d.c.setupmapping(a, None, 0, MIB2, READ, 0).unwrap();
    d.c.setupmapping(b, None, 0, MIB2, READ, 2 * MIB2).unwrap();
    d.c.setupmapping(b, None, 0, MIB2, READ, 3 * MIB2).unwrap();
    d.c.destroy().unwrap();
    assert!(d.live().is_empty());
    assert_eq!(d.windows.stats().unmaps, 3);
    assert_eq!(d.daemon_fds_on(&d.share("b")), 0);
}

#[test]
fn device_reset_releases_every_mapping() {
    let d = start("dax-reset", &[]);
    init(&d);
    let a = d.file("a", &pattern(4096, 1));
    d.c.setupmapping(a, None, 0, MIB2, READ, MIB2).unwrap();
    d.c.forget(a, 1);
    d.frontend.lock().unwrap().reset_device().unwrap();
    // The frontend dropped the mapping itself; the daemon sends no unmap it would refuse.
    assert!(d.live().is_empty());
    assert_eq!(d.windows.stats().dropped_at_reset, 1);
    // Every count back to zero, and the file the mapping kept open is closed.
    let mut c = d.control();
    wait_until("the ledger to hold nothing", || {
        let stats = c.stats();
        stats["live_mappings"] == 0 && stats["backings_with_mappings"] == 0
    });
    wait_until("the daemon to close the file", || {
        d.daemon_fds_on(&d.share("a")) == 0
    });
    assert_eq!(d.windows.stats().unmaps, 0);
    assert_eq!(d.windows.stats().refused, 0);
}

#[test]
fn sigterm_unmaps_before_exiting() {
    let mut d = start("dax-sigterm", &[]);
    init(&d);
    let a = d.file("a", &pattern(4096, 1));
    d.c.setupmapping(a, None, 0, MIB2, READ, 0).unwrap();
    d.daemon.signal(libc::SIGTERM).unwrap();
    assert!(d.daemon.wait(WAIT).unwrap().success());
    assert!(d.live().is_empty(), "the frontend was asked to unmap");
    wait_until("the log to count the release", || {
        d.daemon.log().contains("released 1 DAX mapping")
    });
}

#[test]
fn rename_over_a_mapped_file_keeps_its_mapping_valid() {
    let d = start("dax-rename-over", &[]);
    init(&d);
    let old = d.file("victim", &pattern(4096, 10));
    d.file("newcomer", &pattern(4096, 11));
    d.c.setupmapping(old, None, 0, MIB2, READ, 0).unwrap();
    d.c.rename(ROOT, b"newcomer", ROOT, b"victim", 0).unwrap();
    assert_eq!(std::fs::read(d.share("victim")).unwrap(), pattern(4096, 11));
    assert_eq!(
        d.read_window(0, 4096),
        pattern(4096, 10),
        "the old file, still mapped"
    );
}

#[test]
fn truncating_creates_keep_linux_permission_rules_under_dax() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root (the daemon switches to the caller's uid)");
        return;
    }
    let d = start("dax-create-trunc", &[]);
    init(&d);
    std::fs::set_permissions(d.dir.join("share"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (w, creat, trunc, excl) = (
        libc::O_WRONLY as u32,
        libc::O_CREAT as u32,
        libc::O_TRUNC as u32,
        libc::O_EXCL as u32,
    );
    std::fs::write(d.share("roots"), b"hello").unwrap();
    std::fs::write(d.share("mine"), b"data").unwrap();
    std::os::unix::fs::chown(d.share("mine"), Some(1000), Some(1000)).unwrap();
    d.c.set_caller(1000, 1000);
    // A file the create makes is new: mode 0444 does not stop it (shell `>` under umask
    // 0222, a copy of a read-only file).
    d.c.create(ROOT, b"new444", 0o444, w | creat | trunc)
        .unwrap();
    d.c.create(ROOT, b"excl444", 0o444, w | creat | excl | trunc)
        .unwrap();
    // An existing file the caller may not write is not truncated, whatever the access mode.
    assert_eq!(
        d.c.create(ROOT, b"roots", 0o644, RDONLY | creat | trunc)
            .unwrap_err(),
        libc::EACCES
    );
    assert_eq!(d.host_size("roots"), 5);
    // Its own file is, even opened O_RDONLY.
    d.c.create(ROOT, b"mine", 0o644, RDONLY | creat | trunc)
        .unwrap();
    assert_eq!(d.host_size("mine"), 0);
}
