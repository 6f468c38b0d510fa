//! Directories: opendir, readdir, readdirplus, fsyncdir, releasedir.

use vhost_dax::fuse::testing::ParsedDirent;

use super::support::*;

fn names(v: &[ParsedDirent]) -> Vec<Vec<u8>> {
    let mut n: Vec<_> = v.iter().map(|d| d.name.clone()).collect();
    n.sort();
    n
}

over_both_transports!(directories_readdir_readdirplus_releasedir);
fn directories_readdir_readdirplus_releasedir(f: &impl Guest) {
    for i in 0..50 {
        std::fs::write(f.host(&format!("file-{i:02}")), vec![0u8; i]).unwrap();
    }
    std::fs::create_dir(f.host("sub")).unwrap();
    let mut want: Vec<Vec<u8>> = host_names(&f.share())
        .into_iter()
        .map(String::into_bytes)
        .chain([b".".to_vec(), b"..".to_vec()])
        .collect();
    want.sort();

    let d = f.c().opendir(ROOT).unwrap();
    assert_eq!(d.open_flags, 0);
    let all = f.c().readdir(ROOT, d.fh, 0, 1 << 16, false).unwrap();
    assert_eq!(names(&all), want);
    for e in &all {
        if e.name == b"sub" {
            assert_eq!(e.typ, u32::from(libc::DT_DIR));
        } else if e.name.starts_with(b"file-") {
            assert_eq!(e.typ, u32::from(libc::DT_REG));
            let host = std::fs::metadata(f.share().join(std::str::from_utf8(&e.name).unwrap()));
            assert_eq!(e.ino, host.unwrap().ino());
        }
    }
    // A 100-byte buffer holds at most three records; the cookies resume exactly.
    let mut got = Vec::new();
    let mut off = 0;
    loop {
        let part = f.c().readdir(ROOT, d.fh, off, 100, false).unwrap();
        if part.is_empty() {
            break;
        }
        assert!(part.len() <= 3);
        off = part.last().unwrap().off;
        got.extend(part);
    }
    assert_eq!(names(&got), want);

    // READDIRPLUS: every entry but `.`/`..` comes with one lookup of its node.
    let mut plus = Vec::new();
    let mut off = 0;
    loop {
        let part = f.c().readdir(ROOT, d.fh, off, 1000, true).unwrap();
        if part.is_empty() {
            break;
        }
        off = part.last().unwrap().off;
        plus.extend(part);
    }
    assert_eq!(names(&plus), want);
    for e in &plus {
        let entry = e.entry.unwrap();
        if e.name == b"." || e.name == b".." {
            assert_eq!(entry.nodeid, 0);
            continue;
        }
        assert_eq!(entry.attr.ino, e.ino);
        let name = std::str::from_utf8(&e.name).unwrap();
        assert_eq!(
            entry.attr.size,
            std::fs::metadata(f.host(name)).unwrap().len()
        );
        f.c().getattr(entry.nodeid, None).unwrap();
        f.forget_on_hiprio(entry.nodeid, 1);
        assert_eq!(
            f.c().getattr(entry.nodeid, None).unwrap_err(),
            libc::EBADF,
            "{name}"
        );
    }
    // Too small for any record: an empty reply.
    assert!(f.c().readdir(ROOT, d.fh, 0, 50, true).unwrap().is_empty());

    f.c().fsync(ROOT, d.fh, false, true).unwrap();
    f.c().releasedir(ROOT, d.fh).unwrap();
    assert_eq!(
        f.c().readdir(ROOT, d.fh, 0, 4096, false).unwrap_err(),
        libc::EBADF
    );
    assert_eq!(f.c().releasedir(ROOT, d.fh).unwrap_err(), libc::EBADF);
    let file = f.c().lookup(ROOT, b"file-00").unwrap().nodeid;
    assert_eq!(f.c().opendir(file).unwrap_err(), libc::ENOTDIR);
    assert_eq!(f.c().opendir(424242).unwrap_err(), libc::EBADF);
    // A sub-directory lists its own entries.
    let sub = f.c().lookup(ROOT, b"sub").unwrap().nodeid;
    std::fs::write(f.host("sub/inner"), b"").unwrap();
    let sd = f.c().opendir(sub).unwrap().fh;
    let inner = f.c().readdir(sub, sd, 0, 4096, false).unwrap();
    assert_eq!(names(&inner), [&b"."[..], b"..", b"inner"]);
}
