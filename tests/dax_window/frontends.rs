//! Frontends that differ: no SHMEM, bit 21, a smaller window, no window at all.

use crate::support::*;

#[test]
fn without_shmem_the_device_says_dax_is_off() {
    let options = FrontendOptions {
        protocol_features: FrontendOptions::default().protocol_features
            - vhost::vhost_user::message::VhostUserProtocolFeatures::SHMEM,
        ..FrontendOptions::default()
    };
    let d = start_with("dax-noshmem", &[], &options);
    init(&d);
    let node = d.file("f", &pattern(4096, 1));
    assert_eq!(
        d.c.setupmapping(node, None, 0, MIB2, READ, 0),
        Err(libc::EIO),
        "the frontend refuses (EIO: Linux retries ENOMEM from a DAX fault for ever)"
    );
    wait_until("the log to say DAX is off", || {
        d.daemon.log().contains("DAX is off for this frontend")
    });
    // Plain FUSE still works.
    assert_eq!(d.c.getattr(node, None).unwrap().attr.size, 4096);
}

#[test]
fn inode_policy_marks_only_files_the_host_marks_dax() {
    let d = start("dax-inode", &["--dax", "inode"]);
    let out = init(&d);
    assert_ne!(u64::from(out.flags2) << 32 & init_flags::HAS_INODE_DAX, 0);
    // This host's temp directory is not on a DAX device: no file is DAX.
    let node = d.file("f", b"x");
    assert_eq!(d.c.getattr(node, None).unwrap().attr.flags & 2, 0);
}

#[test]
fn without_a_window_dax_requests_are_unsupported() {
    let dir = TempDir::new("dax-none");
    std::fs::create_dir(dir.join("share")).unwrap();
    std::fs::write(dir.join("share/f"), b"x").unwrap();
    let socket = dir.join("fs.sock");
    let _daemon = spawn_fs_daemon(&dir.join("share"), &socket, &[]);
    let frontend = Frontend::connect(&socket, &FrontendOptions::default()).unwrap();
    assert!(
        frontend.windows().region_len(0).is_none(),
        "no shared memory offered"
    );
    let c = Client::over(FuseQueue::new(Arc::new(Mutex::new(frontend)), 1, WAIT));
    let out = c.init();
    assert_eq!(u64::from(out.flags) & init_flags::MAP_ALIGNMENT, 0);
    let node = c.lookup(ROOT, b"f").unwrap().nodeid;
    assert_eq!(c.getattr(node, None).unwrap().attr.flags & 2, 0);
    assert_eq!(
        c.setupmapping(node, None, 0, MIB2, READ, 0),
        Err(libc::ENOSYS)
    );
    assert_eq!(c.removemapping(ROOT, &[(0, MIB2)]), Err(libc::ENOSYS));
}

#[test]
fn with_shmem_bit21_an_alioth_style_frontend_gets_a_dax_window() {
    let options = FrontendOptions {
        protocol_features: (FrontendOptions::default().protocol_features
            - vhost::vhost_user::message::VhostUserProtocolFeatures::SHMEM)
            | vhost::vhost_user::message::VhostUserProtocolFeatures::from_bits_retain(1 << 21),
        shmem_sizes: Some(vec![WINDOW]),
        ..FrontendOptions::default()
    };
    let d = start_with("dax-bit21", &["--shmem-bit21"], &options);
    init(&d);
    let node = d.file("f", &pattern(4096, 12));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    assert_eq!(d.read_window(0, 4096), pattern(4096, 12));
}

#[test]
fn a_map_the_frontend_refuses_is_eio_and_leaves_the_chunk_free() {
    // A frontend whose window is smaller than the device's refuses maps past its end.
    let options = FrontendOptions {
        protocol_features: (FrontendOptions::default().protocol_features
            - vhost::vhost_user::message::VhostUserProtocolFeatures::SHMEM)
            | vhost::vhost_user::message::VhostUserProtocolFeatures::from_bits_retain(1 << 21),
        shmem_sizes: Some(vec![WINDOW / 2]),
        ..FrontendOptions::default()
    };
    let d = start_with("dax-refused", &["--shmem-bit21"], &options);
    init(&d);
    let node = d.file("f", &pattern(4096, 13));
    assert_eq!(
        d.c.setupmapping(node, None, 0, MIB2, READ, 3 * MIB2),
        Err(libc::EIO)
    );
    let mut c = d.control();
    assert_eq!(c.stats()["mapped_bytes"], 0, "the chunk was left free");
    assert_eq!(c.stats()["map_refusals"], 1);
    wait_until("the log to name the refusal", || {
        d.daemon
            .log()
            .contains("answered EIO: the frontend refused")
    });
    // Inside the frontend's window it works.
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    assert_eq!(c.stats()["mapped_bytes"], MIB2);
}
