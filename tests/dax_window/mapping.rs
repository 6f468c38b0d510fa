//! SETUPMAPPING and REMOVEMAPPING: what the window shows, access, malformed requests.

use crate::support::*;

#[test]
fn init_grants_dax_and_the_window_is_region_0() {
    let d = start("dax-init", &[]);
    let out = init(&d);
    assert_ne!(u64::from(out.flags) & init_flags::MAP_ALIGNMENT, 0);
    assert_eq!(out.map_alignment, 12, "host page size, as log2");
    assert_eq!(d.windows.region_len(0), Some(WINDOW));
    assert_eq!(window_page_perms(&d, 0), "---p");
    // Every regular file is DAX under the default policy.
    let node = d.file("f", b"x");
    let attr = d.c.getattr(node, None).unwrap();
    assert_ne!(attr.attr.flags & 2, 0, "FUSE_ATTR_DAX on a regular file");
    let root = d.c.getattr(ROOT, None).unwrap();
    assert_eq!(root.attr.flags & 2, 0, "not on a directory");
}

#[test]
fn a_mapping_shows_the_file_and_writes_reach_it() {
    let d = start("dax-map", &[]);
    init(&d);
    let data = pattern(3 << 20, 7);
    let node = d.file("big", &data);
    d.c.setupmapping(node, None, MIB2, MIB2, READ, 2 * MIB2)
        .unwrap();
    assert_eq!(
        d.live(),
        vec![LiveMapping {
            shmid: 0,
            offset: 2 * MIB2,
            len: MIB2,
            fd_offset: MIB2,
            writable: true,
        }],
        "mapped writable up front, so a later write needs no remap"
    );
    assert_eq!(window_page_perms(&d, 2 * MIB2), "rw-s");
    // The first MiB of the mapped range is the file's third MiB (bytes past EOF are not read).
    assert_eq!(d.read_window(2 * MIB2, 1 << 20), &data[2 << 20..3 << 20]);

    d.windows
        .write(0, 2 * MIB2 + 100, b"through the window")
        .unwrap();
    let host = std::fs::read(d.share("big")).unwrap();
    assert_eq!(
        &host[(2 << 20) + 100..(2 << 20) + 118],
        b"through the window"
    );

    d.c.removemapping(node, &[(2 * MIB2, MIB2)]).unwrap();
    assert!(d.live().is_empty());
    assert_eq!(window_page_perms(&d, 2 * MIB2), "---p", "PROT_NONE again");
    let mut buf = [0u8; 4];
    assert!(matches!(
        d.windows.read(0, 2 * MIB2, &mut buf),
        Err(WindowError::NotMapped { .. })
    ));
}

/// The daemon maps 2 MiB of a 4 KiB file, as for a Linux guest. Reading or writing the
/// window past the file's end through the frontend is an error naming where it stopped;
/// before the checked copies it killed the test process with SIGBUS.
#[test]
fn window_access_beyond_the_files_end_is_an_error_not_a_crash() {
    let d = start("dax-eof", &[]);
    init(&d);
    let node = d.file("small", &pattern(4096, 2));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    assert_eq!(d.read_window(0, 4096), pattern(4096, 2));
    let mut buf = [0u8; 16];
    assert!(matches!(
        d.windows.read(0, 4096, &mut buf),
        Err(WindowError::Fault { offset: 4096, .. })
    ));
    assert!(matches!(
        d.windows.write(0, MIB2 - 16, &buf),
        Err(WindowError::Fault { offset, .. }) if offset == MIB2 - 16
    ));

    // A host process truncates the file under the live mapping.
    std::fs::OpenOptions::new()
        .write(true)
        .open(d.share("small"))
        .unwrap()
        .set_len(0)
        .unwrap();
    assert!(matches!(
        d.windows.read(0, 0, &mut buf),
        Err(WindowError::Fault { offset: 0, .. })
    ));
    assert_eq!(d.live().len(), 1, "the mapping itself stays");
}

#[test]
fn the_read_to_write_upgrade_needs_no_unmap() {
    let d = start("dax-upgrade", &[]);
    init(&d);
    let node = d.file("f", &pattern(8192, 1));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let stats = d.windows.stats();
    assert_eq!((stats.maps, stats.unmaps), (1, 0));
    d.windows.write(0, 0, b"upgraded").unwrap();
    assert_eq!(&std::fs::read(d.share("f")).unwrap()[..8], b"upgraded");
}

#[test]
fn window_copies_at_any_offset_and_length_match_the_file() {
    let d = start("dax-unaligned", &[]);
    init(&d);
    let data = pattern(usize::try_from(MIB2).unwrap(), 3);
    let node = d.file("u", &data);
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut expected = data.clone();
    for (i, len) in [1usize, 7, 15, 16, 17, 63, 64, 65, 4095, 4097, 65537]
        .into_iter()
        .enumerate()
    {
        let offset = 4096 * 16 * i + [0, 1, 3, 8, 15, 17][i % 6];
        assert_eq!(
            d.read_window(offset as u64, len),
            &data[offset..offset + len],
            "read of {len} at {offset:#x}"
        );
        let fresh = pattern(len, 100 + u8::try_from(i).unwrap());
        let at = offset + 5;
        d.windows.write(0, at as u64, &fresh).unwrap();
        expected[at..at + len].copy_from_slice(&fresh);
    }
    assert!(
        std::fs::read(d.share("u")).unwrap() == expected,
        "the host file holds exactly the bytes written through the window"
    );
}

#[test]
fn a_mapping_of_other_data_on_a_mapped_offset_replaces_it() {
    let d = start("dax-remap", &[]);
    init(&d);
    let a = d.file("a", &pattern(4096, 1));
    let b = d.file("b", &pattern(4096, 2));
    d.c.setupmapping(a, None, 0, MIB2, READ, 0).unwrap();
    d.c.setupmapping(b, None, 0, MIB2, READ, 0).unwrap();
    assert_eq!(d.read_window(0, 4096), pattern(4096, 2));
    let stats = d.windows.stats();
    assert_eq!(
        (stats.maps, stats.unmaps),
        (2, 1),
        "the old mapping was released first"
    );
}

#[test]
fn a_read_only_export_maps_read_only_and_refuses_write_mappings() {
    let d = start("dax-ro", &["--readonly"]);
    init(&d);
    let node = d.file("f", &pattern(4096, 3));
    assert_eq!(
        d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
            .unwrap_err(),
        libc::EROFS
    );
    assert!(d.live().is_empty(), "a refused request maps nothing");
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    assert!(!d.live()[0].writable);
    assert_eq!(window_page_perms(&d, 0), "r--s");
    assert_eq!(d.read_window(0, 4096), pattern(4096, 3));
}

/// A bad SETUPMAPPING: what it is, node, fh, foffset, len, flags, moffset, expected errno.
type SetupCase = (&'static str, u64, Option<u64>, u64, u64, u64, u64, i32);

#[test]
fn malformed_setupmapping_is_refused_and_changes_nothing() {
    let d = start("dax-bad-setup", &[]);
    init(&d);
    let node = d.file("f", &pattern(4096, 1));
    let dir = d.c.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    let cases: &[SetupCase] = &[
        // what, node, fh, foffset, len, flags, moffset, errno
        (
            "past the window",
            node,
            None,
            0,
            MIB2,
            READ,
            WINDOW,
            libc::EINVAL,
        ),
        (
            "straddles the end",
            node,
            None,
            0,
            2 * MIB2,
            READ,
            WINDOW - MIB2,
            libc::EINVAL,
        ),
        (
            "misaligned window offset",
            node,
            None,
            0,
            MIB2,
            READ,
            4096,
            libc::EINVAL,
        ),
        (
            "misaligned file offset",
            node,
            None,
            100,
            MIB2,
            READ,
            0,
            libc::EINVAL,
        ),
        ("partial chunk", node, None, 0, 4096, READ, 0, libc::EINVAL),
        (
            "moffset overflow",
            node,
            None,
            0,
            MIB2,
            READ,
            u64::MAX - 4095,
            libc::EINVAL,
        ),
        (
            "foffset overflow",
            node,
            None,
            u64::MAX - 4095,
            MIB2,
            READ,
            0,
            libc::EINVAL,
        ),
        ("empty", node, None, 0, 0, READ, 0, libc::EINVAL),
        ("no access", node, None, 0, MIB2, 0, 0, libc::EINVAL),
        (
            "unknown flag",
            node,
            None,
            0,
            MIB2,
            READ | 4,
            0,
            libc::EINVAL,
        ),
        ("unknown node", 999, None, 0, MIB2, READ, 0, libc::EBADF),
        (
            "bogus handle",
            node,
            Some(77),
            0,
            MIB2,
            READ,
            0,
            libc::EBADF,
        ),
        ("a directory", dir, None, 0, MIB2, READ, 0, libc::EINVAL),
    ];
    for &(what, n, fh, foffset, len, flags, moffset, errno) in cases {
        assert_eq!(
            d.c.setupmapping(n, fh, foffset, len, flags, moffset),
            Err(errno),
            "{what}"
        );
        assert!(d.live().is_empty(), "{what}: nothing mapped");
    }
    // The queue still serves a good one.
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    assert_eq!(d.live().len(), 1);
}

#[test]
fn malformed_removemapping_is_refused_and_changes_nothing() {
    let d = start("dax-bad-remove", &[]);
    init(&d);
    let node = d.file("f", &pattern(4096, 1));
    d.c.setupmapping(node, None, 0, 2 * MIB2, READ, 0).unwrap();
    assert_eq!(
        d.c.removemapping(ROOT, &[(0, MIB2)]),
        Err(libc::EINVAL),
        "half a mapping"
    );
    assert_eq!(
        d.c.removemapping(ROOT, &[(WINDOW, MIB2)]),
        Err(libc::EINVAL),
        "past the window"
    );
    assert_eq!(
        d.c.removemapping(ROOT, &[(4096, MIB2)]),
        Err(libc::EINVAL),
        "misaligned"
    );
    assert_eq!(
        d.c.removemapping(ROOT, &[(u64::MAX - 4095, 4096)]),
        Err(libc::EINVAL),
        "overflow"
    );
    let too_many: Vec<(u64, u64)> = (0..257).map(|i| (i * MIB2, MIB2)).collect();
    assert_eq!(
        d.c.removemapping(ROOT, &too_many),
        Err(libc::EINVAL),
        "over the maximum"
    );
    // A count that promises more entries than the request carries.
    let mut lying = abi::RemovemappingIn { count: 3 }.to_bytes();
    lying.extend_from_slice(
        &abi::RemovemappingOne {
            moffset: 0,
            len: 2 * MIB2,
        }
        .to_bytes(),
    );
    assert_eq!(
        d.c.call(abi::opcode::REMOVEMAPPING, ROOT, &lying)
            .unwrap_err(),
        libc::EINVAL
    );
    assert_eq!(d.live().len(), 1, "the mapping survived every bad request");
    // Ranges with nothing mapped are skipped; the real one goes.
    d.c.removemapping(ROOT, &[(3 * MIB2, MIB2), (0, 2 * MIB2)])
        .unwrap();
    assert!(d.live().is_empty());
}

#[test]
fn a_binary_being_executed_is_mapped_read_only() {
    let d = start("dax-txtbsy", &[]);
    init(&d);
    let binary = d.share("sleeper");
    std::fs::copy("/bin/sleep", &binary).unwrap();
    // Another test thread's fork may briefly hold the copy's writable descriptor.
    let mut running = loop {
        match std::process::Command::new(&binary).arg("30").spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => break other.unwrap(),
        }
    };
    let node = d.c.lookup(ROOT, b"sleeper").unwrap().nodeid;
    let mapped = d.c.setupmapping(node, None, 0, MIB2, READ, 0);
    let write = d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, MIB2);
    running.kill().unwrap();
    running.wait().unwrap();
    mapped.unwrap();
    assert!(
        !d.live()[0].writable,
        "the daemon could only open it read-only"
    );
    assert_eq!(write, Err(libc::EACCES));
    let host = std::fs::read(&binary).unwrap();
    assert_eq!(d.read_window(0, 4096), &host[..4096]);
}
