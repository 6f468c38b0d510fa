//! Directories: what only the library shows (READDIRPLUS's lookups counted in the inode
//! table). Listing and resuming run over both transports in `tests/fuse_ops/dirs.rs`.

use super::{ROOT, setup};
use crate::fuse::NodeId;

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
