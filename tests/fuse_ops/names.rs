//! Names: lookup, FORGET, creations and removals, device nodes, caller credentials,
//! links, escapes from the share, rename and RENAME2.

use vhost_dax::fuse::abi::opcode as op;
use vhost_dax::fuse::testing::{cat, cstr};

use super::support::*;

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

    // The mode arrives with the guest's umask applied: with umask 0 it is kept whole,
    // whatever the daemon's own umask.
    let loose = abi::MkdirIn {
        mode: 0o777,
        umask: 0,
    };
    let body = cat(&[&loose.to_bytes(), &cstr(b"open-dir")]);
    let e0 = abi::EntryOut::get(&f.c.call(op::MKDIR, ROOT, &body).unwrap());
    assert_eq!(e0.attr.mode, libc::S_IFDIR | 0o777);
    assert_eq!(mode_of(&f.host("open-dir")), 0o777);
    let loose = abi::CreateIn {
        flags: RDWR,
        mode: 0o666,
        umask: 0,
        open_flags: 0,
    };
    let body = cat(&[&loose.to_bytes(), &cstr(b"open-file")]);
    f.c.call(op::CREATE, ROOT, &body).unwrap();
    assert_eq!(mode_of(&f.host("open-file")), 0o666);

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
    // The removed directory's node remains, but nothing can be made in it.
    assert_eq!(f.c.mkdir(d.nodeid, b"x", 0o755).unwrap_err(), libc::ENOENT);
    assert_eq!(
        f.c.create(d.nodeid, b"x", 0o644, RDWR).unwrap_err(),
        libc::ENOENT
    );

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
    // Targets are the host's to judge: empty, or longer than PATH_MAX.
    assert_eq!(f.c.symlink(ROOT, b"l2", b"").unwrap_err(), libc::ENOENT);
    assert_eq!(
        f.c.symlink(ROOT, b"l2", &[b'x'; 4096]).unwrap_err(),
        libc::ENAMETOOLONG
    );
    assert!(!f.host("l2").exists());

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

over_both_transports!(the_guest_cannot_escape_the_share);
fn the_guest_cannot_escape_the_share(f: &impl Guest) {
    let outside = f.outside();
    assert_eq!(f.c().lookup(ROOT, b"..").unwrap().nodeid, ROOT);
    assert_eq!(f.c().lookup(ROOT, b".").unwrap().nodeid, ROOT);
    let d = f.c().mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    assert_eq!(f.c().lookup(d, b"..").unwrap().nodeid, ROOT);
    assert_eq!(f.c().lookup(d, b".").unwrap().nodeid, d);
    // Names are single components.
    for name in [&b"../outside"[..], b"d/..", b"/etc", b"", b"a/b"] {
        assert_eq!(
            f.c().lookup(ROOT, name).unwrap_err(),
            libc::EINVAL,
            "{name:?}"
        );
        assert!(f.c().mkdir(ROOT, name, 0o755).is_err(), "{name:?}");
        assert!(f.c().create(ROOT, name, 0o644, RDWR).is_err(), "{name:?}");
    }
    assert_eq!(f.c().mkdir(ROOT, b"..", 0o755).unwrap_err(), libc::EEXIST);
    assert_eq!(f.c().rmdir(ROOT, b"..").unwrap_err(), libc::EINVAL);
    assert_eq!(f.c().unlink(d, b".").unwrap_err(), libc::EINVAL);
    assert_eq!(
        f.c().rename(ROOT, b"..", ROOT, b"x", 0).unwrap_err(),
        libc::EINVAL
    );
    assert_eq!(f.c().symlink(ROOT, b"..", b"x").unwrap_err(), libc::EEXIST);
    assert!(outside.exists() && f.share().exists());

    // Symlinks pointing out: the daemon shows them, never follows them.
    std::os::unix::fs::symlink(&outside, f.host("evil")).unwrap();
    std::os::unix::fs::symlink(f.dir(), f.host("evildir")).unwrap();
    let e = f.c().lookup(ROOT, b"evil").unwrap();
    assert_eq!(e.attr.mode & S_IFMT, libc::S_IFLNK);
    assert_eq!(e.attr.size, outside.as_os_str().len() as u64);
    assert_eq!(
        f.c().readlink(e.nodeid).unwrap(),
        outside.as_os_str().as_encoded_bytes()
    );
    assert_eq!(f.c().open(e.nodeid, RDONLY).unwrap_err(), libc::ENXIO);
    assert_eq!(
        f.c()
            .open(e.nodeid, RDWR | libc::O_TRUNC as u32)
            .unwrap_err(),
        libc::ENXIO
    );
    // Creating over the symlink's name does not open its target.
    assert_eq!(
        f.c()
            .create(ROOT, b"evil", 0o644, WRONLY | libc::O_TRUNC as u32)
            .unwrap_err(),
        libc::ELOOP
    );
    // Truncating the symlink node does not reach its target.
    let trunc = abi::SetattrIn {
        size: 0,
        ..sa(fattr::SIZE)
    };
    assert_eq!(f.c().setattr(e.nodeid, trunc).unwrap_err(), libc::EINVAL);
    let ed = f.c().lookup(ROOT, b"evildir").unwrap().nodeid;
    assert_eq!(f.c().lookup(ed, b"outside").unwrap_err(), libc::ENOTDIR);
    assert_eq!(f.c().opendir(ed).unwrap_err(), libc::ENOTDIR);
    assert_eq!(f.c().mkdir(ed, b"x", 0o755).unwrap_err(), libc::ENOTDIR);
    assert_eq!(
        f.c().create(ed, b"x", 0o644, RDWR).unwrap_err(),
        libc::ENOTDIR
    );
    assert_eq!(f.c().unlink(ed, b"outside").unwrap_err(), libc::ENOTDIR);
    // A relative one made by the guest is stored as given and is not followed either.
    let rel = f.c().symlink(ROOT, b"rel", b"../outside").unwrap().nodeid;
    assert_eq!(f.c().open(rel, RDWR).unwrap_err(), libc::ENXIO);
    assert_eq!(std::fs::read(&outside).unwrap(), b"secret");
    let beside: Vec<String> = host_names(f.dir())
        .into_iter()
        .filter(|name| name != "fs.sock")
        .collect();
    assert_eq!(beside, ["outside", "share"]);
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

/// Unmounts (lazily) on drop, so a failed assertion leaves no mount behind.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn cross_mount_operations_fail_with_exdev() {
    if !is_root() {
        eprintln!("skipping: mounting a tmpfs needs root");
        return;
    }
    let f = start("fuse-exdev", &[]);
    std::fs::create_dir(f.host("mnt")).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "vhost-dax-test"])
        .arg(f.host("mnt"))
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping: cannot mount a tmpfs here");
        return;
    }
    let _mount = Mount(f.host("mnt"));
    std::fs::write(f.host("mnt/inner"), b"inner").unwrap();
    std::fs::write(f.host("outer"), b"outer").unwrap();
    let m = f.c.lookup(ROOT, b"mnt").unwrap();
    let inner = f.c.lookup(m.nodeid, b"inner").unwrap();
    let outer = f.c.lookup(ROOT, b"outer").unwrap();
    // The submount's `..` is the share, not the mount's host parent.
    assert_eq!(f.c.lookup(m.nodeid, b"..").unwrap().nodeid, ROOT);
    for flags in [0, libc::RENAME_NOREPLACE, libc::RENAME_EXCHANGE] {
        assert_eq!(
            f.c.rename(m.nodeid, b"inner", ROOT, b"outer", flags)
                .unwrap_err(),
            libc::EXDEV,
            "flags {flags}"
        );
    }
    assert_eq!(f.c.link(inner.nodeid, ROOT, b"l").unwrap_err(), libc::EXDEV);
    let ih = f.c.open(inner.nodeid, RDWR).unwrap().fh;
    let oh = f.c.open(outer.nodeid, RDWR).unwrap().fh;
    let copy = abi::CopyFileRangeIn {
        fh_in: ih,
        off_in: 0,
        nodeid_out: outer.nodeid,
        fh_out: oh,
        off_out: 0,
        len: 5,
        flags: 0,
    };
    assert_eq!(
        f.c.copy_file_range(inner.nodeid, copy).unwrap_err(),
        libc::EXDEV
    );
    assert_eq!(std::fs::read(f.host("mnt/inner")).unwrap(), b"inner");
    assert_eq!(std::fs::read(f.host("outer")).unwrap(), b"outer");
    assert_eq!(host_names(&f.share()), ["mnt", "outer"]);
}

#[test]
fn every_entry_reply_counts_one_lookup() {
    let f = start("fuse-nlookup", &[]);
    let hiprio = f.client_on(0);
    // Forgetting one lookup ends the node exactly when it had exactly one.
    let forget_once = |node: u64, what: &str| {
        f.c.getattr(node, None).unwrap();
        hiprio.forget(node, 1);
        assert_eq!(f.c.getattr(node, None).unwrap_err(), libc::EBADF, "{what}");
    };
    let d = f.c.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    let p = f.c.mknod(ROOT, b"p", libc::S_IFIFO | 0o600, 0).unwrap();
    let l = f.c.symlink(ROOT, b"l", b"p").unwrap();
    let (c, co) = f.c.create(ROOT, b"c", 0o644, RDWR).unwrap();
    f.c.release(c.nodeid, co.fh).unwrap();
    let (t, to) = f.c.tmpfile(ROOT, 0o600, RDWR).unwrap();
    f.c.release(t.nodeid, to.fh).unwrap();
    for (node, what) in [
        (d, "mkdir"),
        (p.nodeid, "mknod"),
        (l.nodeid, "symlink"),
        (c.nodeid, "create"),
        (t.nodeid, "tmpfile"),
    ] {
        forget_once(node, what);
    }
    // LINK and LOOKUP add one each to what the node has.
    let c = f.c.lookup(ROOT, b"c").unwrap().nodeid;
    assert_eq!(f.c.link(c, ROOT, b"c2").unwrap().nodeid, c);
    hiprio.forget(c, 1);
    forget_once(c, "link");
    // READDIRPLUS: one per entry returned, two for a file listed under two names.
    let dh = f.c.opendir(ROOT).unwrap().fh;
    let listed = f.c.readdir(ROOT, dh, 0, 1 << 16, true).unwrap();
    let of = |name: &[u8]| {
        listed
            .iter()
            .find(|e| e.name == name)
            .and_then(|e| e.entry)
            .unwrap()
            .nodeid
    };
    let (c1, c2, dd) = (of(b"c"), of(b"c2"), of(b"d"));
    assert_eq!(c1, c2);
    forget_once(dd, "readdirplus");
    hiprio.forget(c1, 1);
    forget_once(c1, "readdirplus of a hard link");
}
