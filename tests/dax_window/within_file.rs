//! A frontend that maps only within the file, as QEMU 11.1 does: whole pages inside the
//! file are mapped, nothing ever reaches past the end of a file, no file changes on the
//! host, and the guest gets EIO (never ENOMEM, never wrong bytes) where the rule makes a
//! range impossible to show.

use crate::support::*;

const DAX: u32 = 2; // FUSE_ATTR_DAX

fn qemu_like() -> FrontendOptions {
    FrontendOptions {
        map_rule: MapRule::WithinFile,
        ..FrontendOptions::default()
    }
}

fn is_dax(d: &Dax, node: u64) -> bool {
    d.c.getattr(node, None).unwrap().attr.flags & DAX != 0
}

#[test]
fn whole_page_files_are_mapped_within_the_file_and_others_get_eio() {
    let d = start_with("dax-within", &["--dax-maps-within-file"], &qemu_like());
    init(&d);
    let whole = d.file("whole", &pattern(8192, 1));
    let small = d.file("small", &pattern(10, 2));
    let empty = d.file("empty", b"");
    let tail = d.file("tail", &pattern(4097, 3));
    // FUSE_ATTR_DAX only where the whole file can be shown: a dax=inode guest reads the
    // others over FUSE.
    assert!(is_dax(&d, whole));
    assert!(!is_dax(&d, small));
    assert!(!is_dax(&d, empty));
    assert!(!is_dax(&d, tail));

    d.c.setupmapping(whole, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    assert_eq!(d.read_window(0, 8192), pattern(8192, 1));
    assert!(
        !d.windows.is_mapped(0, 8192, 4096),
        "nothing past the end of the file is mapped"
    );
    // A dax=always guest asking for the others gets EIO: a failed read, not a hang.
    for node in [small, empty, tail] {
        assert_eq!(
            d.c.setupmapping(node, None, 0, MIB2, READ, MIB2),
            Err(libc::EIO)
        );
    }
    assert_eq!(
        d.windows.stats().refused,
        0,
        "no map the frontend would refuse"
    );
    // No host file changed size (QEMU grows an empty file it is asked to map).
    assert_eq!(d.host_size("empty"), 0);
    assert_eq!(d.host_size("small"), 10);
    let mut c = d.control();
    assert_eq!(c.stats()["map_refusals"], 3);
    assert_eq!(c.stats()["live_mappings"], 1);
}

#[test]
fn a_mapped_file_grows_by_whole_pages_and_refuses_a_partial_one() {
    let d = start_with("dax-within-grow", &["--dax-maps-within-file"], &qemu_like());
    init(&d);
    let node = d.file("f", &pattern(8192, 4));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let fh = d.c.open(node, RDWR).unwrap().fh;

    // Appending a partial page would leave the guest a last page it reads through a
    // hole: refused before anything changes.
    assert_eq!(d.c.write(node, fh, 8192, b"tail"), Err(libc::EIO));
    assert_eq!(d.host_size("f"), 8192);
    assert_eq!(d.control().stats()["resize_refusals"], 1);

    // A whole page: written, and the live mapping takes it in at once.
    d.c.write(node, fh, 8192, &pattern(4096, 5)).unwrap();
    assert!(d.windows.is_mapped(0, 0, 12288));
    assert_eq!(d.read_window(8192, 4096), pattern(4096, 5));

    // Truncate down keeps the mapping (the guest reuses it); regrowing inside what the
    // frontend still holds is fine even to a partial page.
    let shrink = abi::SetattrIn {
        valid: abi::fattr::SIZE,
        size: 100,
        ..Default::default()
    };
    d.c.setattr(node, shrink).unwrap();
    let regrow = abi::SetattrIn {
        valid: abi::fattr::SIZE,
        size: 5000,
        ..Default::default()
    };
    d.c.setattr(node, regrow).unwrap();
    assert_eq!(d.host_size("f"), 5000);
    assert_eq!(d.read_window(0, 100), pattern(100, 4));
    assert!(d.read_window(100, 4900).iter().all(|&b| b == 0));

    // ftruncate and fallocate grow it by whole pages too, and the mapping follows.
    let grow = abi::SetattrIn {
        valid: abi::fattr::SIZE,
        size: 16384,
        ..Default::default()
    };
    d.c.setattr(node, grow).unwrap();
    d.c.fallocate(node, fh, 0, 16384, 4096).unwrap();
    assert!(d.windows.is_mapped(0, 0, 20480));
    assert_eq!(d.windows.stats().refused, 0);
}

#[test]
fn without_the_flag_the_first_refusal_teaches_the_rule() {
    let d = start_with("dax-within-learn", &[], &qemu_like());
    init(&d);
    let node = d.file("f", &pattern(8192, 6));
    // Every regular file is DAX until the daemon knows better.
    assert!(is_dax(&d, d.file("small", b"abc")));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    assert_eq!(d.read_window(0, 8192), pattern(8192, 6));
    assert_eq!(
        d.windows.stats().refused,
        1,
        "the whole-chunk try, refused once"
    );
    wait_until("the log to say what it learnt", || {
        d.daemon.log().contains("--dax-maps-within-file")
    });
    let small = d.c.lookup(ROOT, b"small").unwrap().nodeid;
    assert!(
        !is_dax(&d, small),
        "learnt: partial pages are served over FUSE"
    );
    assert_eq!(d.control().stats()["map_refusals"], 0);
}

#[test]
fn an_empty_file_is_never_sent_to_any_frontend() {
    // Even a frontend that maps past the end of a file is not asked for an empty file:
    // one that maps from the descriptor (QEMU) would grow it.
    let d = start("dax-empty", &[]);
    init(&d);
    let node = d.file("empty", b"");
    assert_eq!(
        d.c.setupmapping(node, None, 0, MIB2, READ, 0),
        Err(libc::EIO)
    );
    assert_eq!(d.windows.stats().maps, 0);
    assert_eq!(d.host_size("empty"), 0);
}
