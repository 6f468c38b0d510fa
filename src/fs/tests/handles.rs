//! Inodes held by file handle (`inode_file_handles`), and the caps on nodes and open
//! handles of a session.

use super::super::{FsError, InodeFileHandles, PassthroughConfig, PassthroughFs};
use super::{ROOT, is_root, setup_with};
use crate::fuse::NodeId;

/// Handles work here: root (CAP_DAC_READ_SEARCH) on a filesystem that exports them
/// (the temporary directory's ext4 or tmpfs).
fn handles_work() -> bool {
    is_root() && std::env::var_os("VHOST_DAX_FS_TESTS_UNPRIVILEGED").is_none()
}

#[test]
fn prefer_holds_every_looked_up_inode_by_handle_and_keeps_identity() {
    let f = setup_with(|c| c.inode_file_handles = InodeFileHandles::Prefer);
    std::fs::create_dir(f.shared().join("dir")).unwrap();
    std::fs::write(f.shared().join("dir/file"), b"hello").unwrap();
    std::os::unix::fs::symlink("file", f.shared().join("dir/link")).unwrap();
    let dir = f.c.lookup(ROOT, b"dir").unwrap();
    let file = f.c.lookup(dir.nodeid, b"file").unwrap();
    let link = f.c.lookup(dir.nodeid, b"link").unwrap();
    if !handles_work() {
        // Unprivileged, `prefer` falls back to descriptors for the whole share.
        assert_eq!(f.fs().inode_file_handles(), InodeFileHandles::Never);
        assert_eq!(f.fs().inodes().by_handle(), 0);
        return;
    }
    assert_eq!(f.fs().inode_file_handles(), InodeFileHandles::Prefer);
    // dir, file, link: all by handle (the root keeps its descriptor), on one mount fd.
    assert_eq!(f.fs().inodes().by_handle(), 3);
    assert_eq!(f.fs().mount_fds_open(), 1);
    // The same file twice, and through a hard link: one node.
    assert_eq!(f.c.lookup(dir.nodeid, b"file").unwrap().nodeid, file.nodeid);
    let linked = f.c.link(file.nodeid, ROOT, b"hard").unwrap();
    assert_eq!(linked.nodeid, file.nodeid);
    assert_eq!(linked.attr.nlink, 2);
    // Renamed: still the same node, still readable.
    f.c.rename(dir.nodeid, b"file", ROOT, b"moved", 0).unwrap();
    assert_eq!(f.c.lookup(ROOT, b"moved").unwrap().nodeid, file.nodeid);
    let fh = f.c.open(file.nodeid, libc::O_RDONLY as u32).unwrap().fh;
    assert_eq!(f.c.read(file.nodeid, fh, 0, 16).unwrap(), b"hello");
    assert_eq!(f.c.readlink(link.nodeid).unwrap(), b"file");
    assert_eq!(
        f.c.getattr(dir.nodeid, None).unwrap().attr.mode & libc::S_IFMT,
        libc::S_IFDIR
    );
    // Forgotten: the node goes, and with the last node of the mount its descriptor.
    f.c.release(file.nodeid, fh).unwrap();
    for (node, n) in [(file.nodeid, 4), (dir.nodeid, 1), (link.nodeid, 1)] {
        f.c.forget(node, n);
    }
    assert_eq!(f.fs().inodes().len(), 1);
    assert_eq!(f.fs().mount_fds_open(), 0);
}

#[test]
fn an_open_file_unlinked_stays_usable_through_its_handle() {
    let f = setup_with(|c| c.inode_file_handles = InodeFileHandles::Prefer);
    let (e, o) =
        f.c.create(ROOT, b"gone", 0o644, libc::O_RDWR as u32)
            .unwrap();
    assert_eq!(f.c.write(e.nodeid, o.fh, 0, b"still here").unwrap(), 10);
    f.c.unlink(ROOT, b"gone").unwrap();
    assert_eq!(f.c.read(e.nodeid, o.fh, 0, 64).unwrap(), b"still here");
    let attr = f.c.getattr(e.nodeid, Some(o.fh)).unwrap().attr;
    assert_eq!((attr.size, attr.nlink), (10, 0));
    let truncate = crate::fuse::abi::SetattrIn {
        valid: crate::fuse::abi::fattr::SIZE | crate::fuse::abi::fattr::FH,
        fh: o.fh,
        size: 5,
        ..Default::default()
    };
    assert_eq!(f.c.setattr(e.nodeid, truncate).unwrap().attr.size, 5);
    assert_eq!(f.c.lookup(ROOT, b"gone").unwrap_err(), libc::ENOENT);
    f.c.release(e.nodeid, o.fh).unwrap();
}

#[test]
fn mandatory_refuses_to_start_without_working_handles() {
    // procfs exports no file handles.
    let err = PassthroughFs::new(PassthroughConfig {
        inode_file_handles: InodeFileHandles::Mandatory,
        ..PassthroughConfig::new("/proc/self")
    })
    .unwrap_err();
    assert!(matches!(err, FsError::FileHandles(_)), "{err}");
    // `prefer` on the same directory starts, holding inodes by descriptor.
    let fs = PassthroughFs::new(PassthroughConfig {
        inode_file_handles: InodeFileHandles::Prefer,
        ..PassthroughConfig::new("/proc/self")
    })
    .unwrap();
    assert_eq!(fs.inode_file_handles(), InodeFileHandles::Never);
    // A directory whose filesystem has handles: mandatory starts as root with
    // CAP_DAC_READ_SEARCH, and fails without it.
    let dir = super::TempDir::new();
    let fs = PassthroughFs::new(PassthroughConfig {
        inode_file_handles: InodeFileHandles::Mandatory,
        ..PassthroughConfig::new(dir.path())
    });
    if handles_work() {
        assert_eq!(
            fs.unwrap().inode_file_handles(),
            InodeFileHandles::Mandatory
        );
    } else {
        assert!(matches!(fs.unwrap_err(), FsError::FileHandles(_)));
    }
}

#[test]
fn needs_dac_read_search_exactly_when_handles_may_be_opened() {
    assert!(!InodeFileHandles::Never.needs_dac_read_search());
    assert!(InodeFileHandles::Prefer.needs_dac_read_search());
    assert!(InodeFileHandles::Mandatory.needs_dac_read_search());
    assert_eq!(
        InodeFileHandles::parse("fallback"),
        Some(InodeFileHandles::Prefer)
    );
    assert_eq!(InodeFileHandles::parse("always"), None);
}

#[test]
fn the_node_cap_answers_enfile_and_frees_with_forget() {
    // Root + 2 nodes.
    let f = setup_with(|c| c.max_inodes = 3);
    for name in ["a", "b", "c"] {
        std::fs::write(f.shared().join(name), b"").unwrap();
    }
    let a = f.c.lookup(ROOT, b"a").unwrap();
    let b = f.c.lookup(ROOT, b"b").unwrap();
    assert_eq!(f.c.lookup(ROOT, b"c").unwrap_err(), libc::ENFILE);
    // A node already known is no new node.
    assert_eq!(f.c.lookup(ROOT, b"a").unwrap().nodeid, a.nodeid);
    // A creation the cap refuses leaves nothing on the host.
    assert_eq!(f.c.mkdir(ROOT, b"d", 0o755).unwrap_err(), libc::ENFILE);
    assert_eq!(
        f.c.create(ROOT, b"e", 0o644, libc::O_RDWR as u32)
            .unwrap_err(),
        libc::ENFILE
    );
    assert_eq!(f.c.symlink(ROOT, b"s", b"a").unwrap_err(), libc::ENFILE);
    for name in ["d", "e", "s"] {
        assert!(
            std::fs::symlink_metadata(f.shared().join(name)).is_err(),
            "{name}"
        );
    }
    // A LINK names a node already known: allowed at the cap.
    assert_eq!(f.c.link(a.nodeid, ROOT, b"a2").unwrap().nodeid, a.nodeid);
    f.c.forget(b.nodeid, 1);
    assert!(f.c.lookup(ROOT, b"c").is_ok());
    assert_eq!(f.fs().inodes().lookups(NodeId(a.nodeid)), Some(3));
}

#[test]
fn the_open_handle_cap_answers_enfile_and_frees_with_release() {
    let f = setup_with(|c| c.max_open_handles = 2);
    std::fs::write(f.shared().join("f"), b"data").unwrap();
    let e = f.c.lookup(ROOT, b"f").unwrap();
    let one = f.c.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
    let two = f.c.opendir(ROOT).unwrap();
    assert_eq!(
        f.c.open(e.nodeid, libc::O_RDONLY as u32).unwrap_err(),
        libc::ENFILE
    );
    assert_eq!(f.c.opendir(ROOT).unwrap_err(), libc::ENFILE);
    // Neither a refused CREATE nor a refused O_TRUNC open changes the host.
    assert_eq!(
        f.c.create(ROOT, b"new", 0o644, libc::O_RDWR as u32)
            .unwrap_err(),
        libc::ENFILE
    );
    assert!(!f.shared().join("new").exists());
    assert_eq!(
        f.c.open(e.nodeid, (libc::O_WRONLY | libc::O_TRUNC) as u32)
            .unwrap_err(),
        libc::ENFILE
    );
    assert_eq!(std::fs::read(f.shared().join("f")).unwrap(), b"data");
    f.c.release(e.nodeid, one.fh).unwrap();
    let three = f.c.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(f.c.read(e.nodeid, three.fh, 0, 4).unwrap(), b"data");
    f.c.releasedir(ROOT, two.fh).unwrap();
}
