//! The fs daemon's DAX window under a guest CPU: FUSE_SETUPMAPPING through our FUSE client,
//! then loads and stores by the vCPU through the window's memory slot.

use crate::dax::*;
use crate::guest::{Access, Guest, Mmio, WINDOW_GPA, skip_without_kvm};

/// A guest over the window (region 0) of `d`'s frontend.
fn guest(d: &Dax) -> Guest {
    Guest::new(&d.frontend.lock().unwrap(), 0).unwrap()
}

fn le32(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().unwrap())
}

#[test]
fn the_guest_reads_the_file_through_the_window_and_its_writes_reach_the_host_file() {
    if skip_without_kvm(
        "the_guest_reads_the_file_through_the_window_and_its_writes_reach_the_host_file",
    ) {
        return;
    }
    let d = start("kvm-dax-rw", &[]);
    init(&d);
    let data = pattern(3 << 20, 7);
    let node = d.file("big", &data);
    let mut g = guest(&d);
    // The slot covers the whole window; where nothing is mapped the guest gets no bytes.
    assert_eq!(
        g.load(WINDOW_GPA + MIB2).unwrap(),
        Access::Mmio(Mmio::Read {
            gpa: WINDOW_GPA + MIB2,
            len: 4
        }),
        "nothing mapped yet at window offset 2 MiB"
    );

    // The file's third MiB at window offset 2 MiB.
    d.c.setupmapping(node, None, MIB2, MIB2, READ | WRITE, MIB2)
        .unwrap();
    let third = &data[2 << 20..3 << 20];
    assert_eq!(
        g.read(WINDOW_GPA + MIB2, 1 << 20).unwrap(),
        Access::Done(third.to_vec()),
        "the guest CPU sees the host file's bytes"
    );
    assert_eq!(
        g.load(WINDOW_GPA + MIB2 + 4).unwrap(),
        Access::Done(le32(&third[4..]))
    );

    let message = b"written by a guest CPU through the DAX window";
    assert_eq!(
        g.write(WINDOW_GPA + MIB2 + 100, message).unwrap(),
        Access::Done(())
    );
    assert_eq!(
        g.store(WINDOW_GPA + MIB2 + 200, 0x1234_5678).unwrap(),
        Access::Done(())
    );
    let host = std::fs::read(d.share("big")).unwrap();
    assert_eq!(&host[(2 << 20) + 100..][..message.len()], message);
    assert_eq!(le32(&host[(2 << 20) + 200..]), 0x1234_5678);
    assert_eq!(
        host.len(),
        data.len(),
        "the guest's writes did not resize the file"
    );

    // And the other way: a host write shows to the guest at once, same mapping.
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::OpenOptions::new()
            .write(true)
            .open(d.share("big"))
            .unwrap(),
        b"from the host",
        (2 << 20) + 8192,
    )
    .unwrap();
    assert_eq!(
        g.read(WINDOW_GPA + MIB2 + 8192, 13).unwrap(),
        Access::Done(b"from the host".to_vec())
    );
    assert_eq!(d.windows.stats().maps, 1);
}

#[test]
fn after_removemapping_the_guests_access_ends_in_an_mmio_exit() {
    if skip_without_kvm("after_removemapping_the_guests_access_ends_in_an_mmio_exit") {
        return;
    }
    let d = start("kvm-dax-unmap", &[]);
    init(&d);
    let data = pattern(8192, 3);
    let node = d.file("f", &data);
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut g = guest(&d);
    assert_eq!(
        g.load(WINDOW_GPA + 4096).unwrap(),
        Access::Done(le32(&data[4096..])),
        "mapped: the guest reads the file (and KVM now maps the page)"
    );

    d.c.removemapping(node, &[(0, MIB2)]).unwrap();
    assert!(d.live().is_empty(), "the frontend unmapped the range");
    // Observed on this host: KVM cannot fault the page in (PROT_NONE again) and exits to
    // the VMM as MMIO at the guest-physical address. Another kernel might fail KVM_RUN
    // with EFAULT instead; `Access::RunFailed` would show it here, and the docs of
    // `frontend::KvmSlot` and of this test binary would need to say so.
    assert_eq!(
        g.load(WINDOW_GPA + 4096).unwrap(),
        Access::Mmio(Mmio::Read {
            gpa: WINDOW_GPA + 4096,
            len: 4
        })
    );
    assert_eq!(
        g.store(WINDOW_GPA + 16, 0xdead_beef).unwrap(),
        Access::Mmio(Mmio::Write {
            gpa: WINDOW_GPA + 16,
            data: 0xdead_beef_u32.to_le_bytes().to_vec()
        })
    );
    assert_eq!(
        std::fs::read(d.share("f")).unwrap(),
        data,
        "nothing the guest did after the unmap reached the file"
    );
}

#[test]
fn after_a_guest_truncate_the_same_mapping_serves_the_file_and_its_regrowth() {
    if skip_without_kvm("after_a_guest_truncate_the_same_mapping_serves_the_file_and_its_regrowth")
    {
        return;
    }
    let d = start("kvm-dax-truncate", &[]);
    init(&d);
    let data = pattern(65536, 4);
    let node = d.file("t", &data);
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mapped = d.live();
    let mut g = guest(&d);
    assert_eq!(
        g.read(WINDOW_GPA, 65536).unwrap(),
        Access::Done(data.clone())
    );

    // The guest truncates the file (FUSE SETATTR size), as Linux does for ftruncate.
    let resize = |size| abi::SetattrIn {
        valid: abi::fattr::SIZE,
        size,
        ..Default::default()
    };
    assert_eq!(d.c.setattr(node, resize(8192)).unwrap().attr.size, 8192);
    assert_eq!(d.live(), mapped, "the mapping stays across the truncate");
    assert_eq!(
        g.read(WINDOW_GPA, 8192).unwrap(),
        Access::Done(data[..8192].to_vec()),
        "below the new size: the file's bytes, through the same mapping"
    );
    assert_eq!(
        g.load(WINDOW_GPA + 8192).unwrap(),
        Access::Mmio(Mmio::Read {
            gpa: WINDOW_GPA + 8192,
            len: 4
        }),
        "the first page past the new size is not backed: a clean exit"
    );

    // It grows again (SETATTR size up): the same window range serves all of it.
    assert_eq!(d.c.setattr(node, resize(65536)).unwrap().attr.size, 65536);
    let mut regrown = data[..8192].to_vec();
    regrown.resize(65536, 0);
    assert_eq!(g.read(WINDOW_GPA, 65536).unwrap(), Access::Done(regrown));
    assert_eq!(
        g.write(WINDOW_GPA + 40000, b"after regrowth").unwrap(),
        Access::Done(())
    );
    assert_eq!(
        &std::fs::read(d.share("t")).unwrap()[40000..40014],
        b"after regrowth"
    );
    assert_eq!(d.live(), mapped);
    assert_eq!(d.windows.stats().maps, 1, "no new SETUPMAPPING was needed");
}

#[test]
fn after_a_host_truncate_the_guests_access_beyond_eof_ends_in_an_mmio_exit() {
    if skip_without_kvm("after_a_host_truncate_the_guests_access_beyond_eof_ends_in_an_mmio_exit") {
        return;
    }
    let d = start("kvm-dax-host-truncate", &[]);
    init(&d);
    let data = pattern(65536, 5);
    let node = d.file("h", &data);
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut g = guest(&d);
    assert_eq!(
        g.load(WINDOW_GPA + 32768).unwrap(),
        Access::Done(le32(&data[32768..]))
    );

    // A host process, not the daemon, shrinks the file under the live mapping.
    std::fs::OpenOptions::new()
        .write(true)
        .open(d.share("h"))
        .unwrap()
        .set_len(4096)
        .unwrap();
    assert_eq!(
        g.load(WINDOW_GPA + 32768).unwrap(),
        Access::Mmio(Mmio::Read {
            gpa: WINDOW_GPA + 32768,
            len: 4
        }),
        "a page the guest had read, now beyond EOF: a clean exit, no SIGBUS here"
    );
    assert_eq!(
        g.store(WINDOW_GPA + 4096, 7).unwrap(),
        Access::Mmio(Mmio::Write {
            gpa: WINDOW_GPA + 4096,
            data: 7u32.to_le_bytes().to_vec()
        })
    );
    assert_eq!(
        g.read(WINDOW_GPA, 4096).unwrap(),
        Access::Done(data[..4096].to_vec()),
        "below the new end the mapping still serves the file"
    );
    assert_eq!(
        d.host_size("h"),
        4096,
        "the store beyond EOF did not grow the file"
    );
    assert_eq!(d.live().len(), 1, "the daemon's mapping is untouched");
}
