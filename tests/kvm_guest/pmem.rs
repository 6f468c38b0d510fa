//! The pmem daemon's region under a guest CPU.

use std::os::unix::fs::FileExt;

use crate::common::*;
use crate::guest::{Access, Guest, WINDOW_GPA, skip_without_kvm};
use vhost_dax::device::pmem::VIRTIO_PMEM_RESP_OK;

const SIZE: u64 = 4 << 20;

#[test]
fn the_guest_reads_a_host_marker_in_the_pmem_region_and_its_flushed_write_reaches_the_file() {
    if skip_without_kvm(
        "the_guest_reads_a_host_marker_in_the_pmem_region_and_its_flushed_write_reaches_the_file",
    ) {
        return;
    }
    let dir = TempDir::new("kvm-pmem");
    let (socket, image) = (dir.join("pmem.sock"), dir.join("pmem.img"));
    let _daemon = spawn_daemon(
        &[
            "pmem",
            "--socket",
            socket.to_str().unwrap(),
            "--file",
            image.to_str().unwrap(),
            "--size",
            "4M",
            "--create",
        ],
        &socket,
    );
    let mut frontend = connect(&socket);
    // The daemon creates the image after it starts listening, but before it serves a
    // frontend: once connected, the file is there.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .unwrap();
    file.write_all_at(b"marker written by the host", 0x1000)
        .unwrap();

    // The slot is registered over the whole region before or after the daemon maps it;
    // when the map lands depends on the daemon (at the backend channel, or once the device
    // has started), so wait for it rather than assume.
    let mut g = Guest::new(&frontend, 0).unwrap();
    wait_until("the pmem region to be mapped", || {
        frontend.windows().is_mapped(0, 0, SIZE)
    });
    assert_eq!(
        g.read(WINDOW_GPA + 0x1000, 26).unwrap(),
        Access::Done(b"marker written by the host".to_vec())
    );

    let message = b"written by a guest CPU into pmem";
    let at = SIZE - 64;
    assert_eq!(g.write(WINDOW_GPA + at, message).unwrap(), Access::Done(()));
    let (request, status) = flush_request(&frontend);
    frontend.submit(0, &request).unwrap();
    frontend.wait_used(0, 1, WAIT).unwrap();
    assert_eq!(read_u32(&frontend, status), VIRTIO_PMEM_RESP_OK);
    let mut seen = vec![0u8; message.len()];
    file.read_exact_at(&mut seen, at).unwrap();
    assert_eq!(seen, message);
}
