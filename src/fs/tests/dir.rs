//! Directories: opendir, readdir, readdirplus, releasedir, fsyncdir.

use std::collections::BTreeSet;

use super::{ROOT, setup};
use crate::fuse::NodeId;

fn names(v: &[crate::fuse::testing::ParsedDirent]) -> BTreeSet<Vec<u8>> {
    v.iter().map(|d| d.name.clone()).collect()
}

#[test]
fn readdir_lists_and_resumes() {
    let f = setup();
    for i in 0..50 {
        std::fs::write(f.shared().join(format!("file-{i:02}")), b"").unwrap();
    }
    std::fs::create_dir(f.shared().join("sub")).unwrap();
    let fh = f.c.opendir(ROOT).unwrap().fh;
    let all = f.c.readdir(ROOT, fh, 0, 1 << 16, false).unwrap();
    assert_eq!(all.len(), 53);
    let n = names(&all);
    assert!(
        n.contains(b".".as_slice())
            && n.contains(b"..".as_slice())
            && n.contains(b"sub".as_slice())
    );
    let sub = all.iter().find(|d| d.name == b"sub").unwrap();
    assert_eq!(sub.typ, u32::from(libc::DT_DIR));
    // Small buffers: resume from the last cookie until empty.
    let mut got = Vec::new();
    let mut off = 0;
    loop {
        let part = f.c.readdir(ROOT, fh, off, 100, false).unwrap();
        if part.is_empty() {
            break;
        }
        assert!(part.len() <= 3);
        off = part.last().unwrap().off;
        got.extend(part);
    }
    assert_eq!(names(&got), n);
    assert_eq!(got.len(), 53);
    f.c.fsync(ROOT, fh, false, true).unwrap();
    f.c.releasedir(ROOT, fh).unwrap();
    assert_eq!(
        f.c.readdir(ROOT, fh, 0, 4096, false).unwrap_err(),
        libc::EBADF
    );
    // Not a directory.
    let e = f.c.lookup(ROOT, b"file-00").unwrap();
    assert_eq!(f.c.opendir(e.nodeid).unwrap_err(), libc::ENOTDIR);
}

#[test]
fn readdirplus_looks_up_exactly_what_it_returns() {
    let f = setup();
    for i in 0..20 {
        std::fs::write(f.shared().join(format!("f{i:02}")), vec![0u8; i]).unwrap();
    }
    std::fs::hard_link(f.shared().join("f05"), f.shared().join("link")).unwrap();
    let fh = f.c.opendir(ROOT).unwrap().fh;
    // A buffer for about three records.
    let part = f.c.readdir(ROOT, fh, 0, 500, true).unwrap();
    assert!(!part.is_empty() && part.len() <= 3);
    let mut all = part.clone();
    let mut off = part.last().unwrap().off;
    loop {
        let p = f.c.readdir(ROOT, fh, off, 4096, true).unwrap();
        if p.is_empty() {
            break;
        }
        off = p.last().unwrap().off;
        all.extend(p);
    }
    assert_eq!(all.len(), 23);
    for d in &all {
        let e = d.entry.unwrap();
        if d.name == b"." || d.name == b".." {
            assert_eq!(e.nodeid, 0);
            continue;
        }
        assert_ne!(e.nodeid, 0);
        assert_eq!(d.ino, e.attr.ino);
        let want = if d.name == b"link" { 2 } else { 1 };
        let shared = all
            .iter()
            .filter(|o| o.entry.unwrap().nodeid == e.nodeid)
            .count() as u64;
        assert_eq!(
            f.fs().inodes().lookups(NodeId(e.nodeid)),
            Some(shared),
            "{:?}",
            d.name
        );
        if d.name == b"link" {
            assert_eq!(shared, want);
        }
    }
    // 20 files (one shared by a hard link) + the root.
    assert_eq!(f.fs().inodes().len(), 21);
    // A buffer too small for any record: empty, no lookups taken.
    let before = f.fs().inodes().len();
    let fh2 = f.c.opendir(ROOT).unwrap().fh;
    assert!(f.c.readdir(ROOT, fh2, 0, 50, true).unwrap().is_empty());
    assert_eq!(f.fs().inodes().len(), before);
}
