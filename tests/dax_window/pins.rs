//! Pins through the control socket: what they hold off, budgets, parked requests, reconnects.

use crate::support::*;

#[test]
fn the_control_socket_answers_before_any_frontend() {
    let dir = TempDir::new("dax-control-early");
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
    let control = dir.join("control.sock");
    let mut daemon = spawn_fs_daemon(
        &dir.join("share"),
        &socket,
        &[
            "--dax-window",
            "8M",
            "--control-socket",
            control.to_str().unwrap(),
        ],
    );
    let mut c = Control::connect(&control);
    let stats = c.stats();
    assert_eq!(stats["window_size"], WINDOW);
    assert_eq!(stats["mapped_bytes"], 0);
    assert_eq!(
        c.pin(0, 4096),
        Err(i64::from(libc::EFAULT)),
        "nothing mapped yet"
    );
    daemon.signal(libc::SIGTERM).unwrap();
    assert!(daemon.wait(WAIT).unwrap().success());
    assert!(!control.exists(), "the control socket is removed at exit");
}

#[test]
fn control_stats_and_mappings_follow_the_guest() {
    let d = start("dax-control-stats", &[]);
    init(&d);
    let node = d.file("f", &pattern(4096, 1));
    d.c.setupmapping(node, None, 0, MIB2, READ, 3 * MIB2)
        .unwrap();
    let mut c = d.control();
    let stats = c.stats();
    assert_eq!(stats["mapped_bytes"], MIB2);
    assert_eq!(stats["maps"], 1);
    let mappings = c.call(r#"{"op":"mappings"}"#)["mappings"].clone();
    assert_eq!(mappings[0]["window_offset"], 3 * MIB2);
    assert_eq!(mappings[0]["writable"], Value::Bool(true));
    let bad = c.call("not json");
    assert_eq!(bad["errno"], libc::EINVAL);
    assert_eq!(c.stats()["maps"], 1, "the connection still works");
}

#[test]
fn a_pin_is_refused_past_the_end_of_file() {
    let d = start("dax-pin-eof", &[]);
    init(&d);
    let node = d.file("f", &pattern(1 << 20, 2));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut c = d.control();
    let id = c.pin(4096, 4096).unwrap();
    c.unpin(id);
    assert_eq!(
        c.pin(1 << 20, 4096),
        Err(i64::from(libc::EFAULT)),
        "past EOF"
    );
    d.c.setattr(
        node,
        abi::SetattrIn {
            valid: abi::fattr::SIZE,
            size: 8192,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        c.pin(4096, 8192),
        Err(i64::from(libc::EFAULT)),
        "past the new EOF"
    );
    assert!(c.pin(0, 8192).is_ok(), "below it is fine");
}

#[test]
fn a_pin_makes_truncate_wait_and_unpin_lets_it_through() {
    let d = start("dax-pin-truncate", &[]);
    init(&d);
    let node = d.file("t", &pattern(1 << 20, 3));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut c = d.control();
    let id = c.pin(0, 4096).unwrap();

    let ticket =
        d.c.transport
            .submit(&truncate_request(node, 0), 4096)
            .unwrap();
    wait_until("the truncate to wait on the pinned chunk", || {
        c.stats()["draining_chunks"] == 1
    });
    assert_eq!(d.host_size("t"), 1 << 20, "no byte is cut under a live pin");
    // The queue keeps serving while the truncate is parked.
    assert_eq!(d.c.getattr(node, None).unwrap().attr.size, 1 << 20);
    assert!(!d.c.transport.is_done(&ticket).unwrap());

    c.unpin(id);
    let reply = Reply::parse(&d.c.transport.wait(ticket).unwrap());
    assert_eq!(reply.header.error, 0);
    assert_eq!(d.host_size("t"), 0);
    assert_eq!(d.live().len(), 1, "the mapping stays");
}

/// Maps and unmaps are served on the queue's own thread when nothing is in their way;
/// one that must wait (an unmap of a pinned chunk) is parked as before: the queue, maps
/// included, keeps going, and the unpin lets it through.
#[test]
fn an_unmap_of_a_pinned_chunk_waits_parked_while_maps_go_on() {
    let d = start("dax-pin-unmap", &[]);
    init(&d);
    let node = d.file("u", &pattern(1 << 20, 5));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut c = d.control();
    let id = c.pin(0, 4096).unwrap();
    let mut body = abi::RemovemappingIn { count: 1 }.to_bytes();
    body.extend_from_slice(
        &abi::RemovemappingOne {
            moffset: 0,
            len: MIB2,
        }
        .to_bytes(),
    );
    let request = encode_request(abi::opcode::REMOVEMAPPING, 77, ROOT, 0, 0, &body);
    let ticket = d.c.transport.submit(&request, 4096).unwrap();
    wait_until("the unmap to wait on the pinned chunk", || {
        c.stats()["draining_chunks"] == 1
    });
    // The queue keeps serving: a map and an unmap of another chunk go through.
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, MIB2)
        .unwrap();
    d.c.removemapping(ROOT, &[(MIB2, MIB2)]).unwrap();
    assert!(!d.c.transport.is_done(&ticket).unwrap());
    assert_eq!(d.live().len(), 1, "the pinned chunk stays mapped");

    c.unpin(id);
    let reply = Reply::parse(&d.c.transport.wait(ticket).unwrap());
    assert_eq!((reply.header.unique, reply.header.error), (77, 0));
    assert!(d.live().is_empty());
    assert_eq!(c.stats()["timeouts"], 0);
    // Served here or parked, each is counted once in the FUSE counters of queue 1.
    let answer = c.call(r#"{"op":"stats"}"#);
    let ops = answer["fuse"]["queues"][1]["ops"]
        .as_array()
        .unwrap()
        .clone();
    let requests = |name: &str| {
        ops.iter()
            .find(|o| o["op"] == name)
            .and_then(|o| o["requests"].as_u64())
    };
    assert_eq!(requests("setupmapping"), Some(2), "{answer}");
    assert_eq!(requests("removemapping"), Some(2), "{answer}");
}

#[test]
fn a_pin_makes_punch_hole_wait() {
    let d = start("dax-pin-punch", &[]);
    init(&d);
    let node = d.file("p", &pattern(1 << 20, 4));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let fh = d.c.open(node, libc::O_RDWR as u32).unwrap().fh;
    let mut c = d.control();
    let id = c.pin(8192, 4096).unwrap();
    let falloc = abi::FallocateIn {
        fh,
        offset: 0,
        length: 65536,
        mode: (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32,
        padding: 0,
    };
    let request = encode_request(abi::opcode::FALLOCATE, 7777, node, 0, 0, &falloc.to_bytes());
    let ticket = d.c.transport.submit(&request, 4096).unwrap();
    wait_until("the punch to wait on the pinned chunk", || {
        c.stats()["draining_chunks"] == 1
    });
    assert_eq!(
        d.read_window(0, 16),
        &pattern(1 << 20, 4)[..16],
        "not punched yet"
    );
    c.unpin(id);
    let reply = Reply::parse(&d.c.transport.wait(ticket).unwrap());
    assert_eq!(reply.header.error, 0);
    assert!(d.read_window(0, 65536).iter().all(|&b| b == 0));
}

#[test]
fn a_pin_that_never_drops_fails_the_truncate_with_ebusy_and_changes_nothing() {
    let d = start("dax-pin-stuck", &["--pin-wait-budget", "100ms"]);
    init(&d);
    let node = d.file("s", &pattern(1 << 20, 5));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut c = d.control();
    let _id = c.pin(0, 4096).unwrap();
    let shrink = abi::SetattrIn {
        valid: abi::fattr::SIZE,
        size: 0,
        ..Default::default()
    };
    assert_eq!(d.c.setattr(node, shrink).unwrap_err(), libc::EBUSY);
    assert_eq!(d.host_size("s"), 1 << 20);
    assert_eq!(d.live().len(), 1);
    assert_eq!(c.stats()["timeouts"], 1);
    // EBUSY means nothing changed: a mode asked for with the size is not applied either.
    use std::os::unix::fs::PermissionsExt;
    let mode_before = std::fs::metadata(d.share("s"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    let mode_and_size = abi::SetattrIn {
        valid: abi::fattr::SIZE | abi::fattr::MODE,
        size: 0,
        mode: 0o600,
        ..Default::default()
    };
    assert_eq!(d.c.setattr(node, mode_and_size).unwrap_err(), libc::EBUSY);
    let mode_after = std::fs::metadata(d.share("s"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode_after, mode_before, "the mode changed under an EBUSY");
    assert_ne!(mode_before, 0o600);
    wait_until("the log to name the pin holder", || {
        d.daemon.log().contains("test-dma")
    });
    // A REMOVEMAPPING of the pinned chunk fails the same way and leaves it mapped.
    assert_eq!(d.c.removemapping(ROOT, &[(0, MIB2)]), Err(libc::EBUSY));
    assert_eq!(d.live().len(), 1, "a pinned chunk is never unmapped");
    // So does a mapping of other data over it.
    let other = d.file("other", &pattern(4096, 9));
    assert_eq!(
        d.c.setupmapping(other, None, 0, MIB2, READ, 0),
        Err(libc::EBUSY)
    );
    assert_eq!(
        d.read_window(0, 16),
        &pattern(1 << 20, 5)[..16],
        "the old mapping"
    );

    // Every other way of cutting the file's bytes waits for the pin the same way.
    let fh = d.c.open(node, RDWR).unwrap().fh;
    let through_handle = abi::SetattrIn {
        valid: abi::fattr::SIZE | abi::fattr::FH,
        fh,
        size: 0,
        ..Default::default()
    };
    assert_eq!(
        d.c.setattr(node, through_handle).unwrap_err(),
        libc::EBUSY,
        "handle"
    );
    let trunc = libc::O_TRUNC as u32;
    assert_eq!(
        d.c.open(node, RDWR | trunc).unwrap_err(),
        libc::EBUSY,
        "O_TRUNC open"
    );
    assert_eq!(
        d.c.create(ROOT, b"s", 0o644, RDONLY | libc::O_CREAT as u32 | trunc)
            .unwrap_err(),
        libc::EBUSY,
        "O_RDONLY|O_TRUNC create"
    );
    let zero = (libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE) as u32;
    assert_eq!(
        d.c.fallocate(node, fh, zero, 0, 8192),
        Err(libc::EBUSY),
        "zero range"
    );
    let src = d.c.open(other, RDONLY).unwrap().fh;
    let copy = abi::CopyFileRangeIn {
        fh_in: src,
        off_in: 0,
        nodeid_out: node,
        fh_out: fh,
        off_out: 0,
        len: 4096,
        flags: 0,
    };
    assert_eq!(
        d.c.copy_file_range(other, copy),
        Err(libc::EBUSY),
        "copy_file_range"
    );
    assert_eq!(
        std::fs::read(d.share("s")).unwrap(),
        pattern(1 << 20, 5),
        "nothing was cut under the pin"
    );
}

#[test]
fn reset_and_destroy_wait_for_pins_then_release() {
    let d = start("dax-pin-reset", &[]);
    init(&d);
    let node = d.file("r", &pattern(4096, 6));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    d.c.setupmapping(node, None, 0, MIB2, READ, MIB2).unwrap();
    let mut c = d.control();
    let id = c.pin(0, 4096).unwrap();

    // DESTROY waits for the pin (parked: the queue stays usable), then releases all.
    let ticket =
        d.c.transport
            .submit(
                &encode_request(abi::opcode::DESTROY, 4242, 0, 0, 0, &[]),
                4096,
            )
            .unwrap();
    wait_until("DESTROY to wait on the pin", || {
        c.stats()["draining_chunks"] == 2
    });
    assert_eq!(d.live().len(), 2, "nothing is unmapped while a pin is held");
    c.unpin(id);
    assert_eq!(
        Reply::parse(&d.c.transport.wait(ticket).unwrap())
            .header
            .error,
        0
    );
    assert!(d.live().is_empty());

    // A device reset waits the same way.
    init(&d);
    let node = d.c.lookup(ROOT, b"r").unwrap().nodeid;
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    let id = c.pin(0, 4096).unwrap();
    d.frontend.lock().unwrap().reset_device().unwrap();
    // The frontend drops its mappings at the reset by itself (as the spec has it); the
    // daemon still keeps the references until the pin drains.
    assert!(d.live().is_empty());
    wait_until("the reset to wait on the pin", || {
        c.stats()["draining_chunks"] == 1
    });
    assert_eq!(
        c.stats()["live_mappings"],
        1,
        "references kept while pinned"
    );
    c.unpin(id);
    wait_until("the reset to release the references", || {
        c.stats()["live_mappings"] == 0
    });
    assert_eq!(
        d.windows.stats().unmaps,
        2,
        "no unmap sent for a dropped mapping"
    );
}

#[test]
fn closing_the_control_connection_drops_its_pins() {
    let d = start("dax-pin-close", &[]);
    init(&d);
    let node = d.file("f", &pattern(4096, 7));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    let mut c = d.control();
    c.pin(0, 4096).unwrap();
    drop(c);
    let mut other = d.control();
    wait_until("the closed connection's pin to go", || {
        other.stats()["live_pins"] == 0
    });
    d.c.removemapping(ROOT, &[(0, MIB2)]).unwrap();
}

#[test]
fn a_parked_request_does_not_hold_up_another() {
    let d = start("dax-two-parked", &[]);
    init(&d);
    let a = d.file("a", &pattern(1 << 20, 1));
    let b = d.file("b", &pattern(1 << 20, 2));
    d.c.setupmapping(a, None, 0, MIB2, READ | WRITE, 0).unwrap();
    d.c.setupmapping(b, None, 0, MIB2, READ | WRITE, MIB2)
        .unwrap();
    let mut c = d.control();
    let pin_a = c.pin(0, 4096).unwrap();
    let pin_b = c.pin(MIB2, 4096).unwrap();
    let first = d.c.transport.submit(&truncate_request(a, 0), 4096).unwrap();
    let second = d.c.transport.submit(&truncate_request(b, 0), 4096).unwrap();
    wait_until("both truncates to wait", || {
        c.stats()["draining_chunks"] == 2
    });
    // The second one goes as soon as its own pin drops, the first still waiting.
    c.unpin(pin_b);
    assert_eq!(
        Reply::parse(&d.c.transport.wait(second).unwrap())
            .header
            .error,
        0
    );
    assert_eq!(d.host_size("b"), 0);
    assert_eq!(d.host_size("a"), 1 << 20);
    assert!(!d.c.transport.is_done(&first).unwrap());
    c.unpin(pin_a);
    assert_eq!(
        Reply::parse(&d.c.transport.wait(first).unwrap())
            .header
            .error,
        0
    );
    assert_eq!(d.host_size("a"), 0);
}

#[test]
fn a_gone_frontends_pinned_mappings_hold_off_the_next_one_until_released() {
    let d = start(
        "dax-reconnect-pinned",
        &["--reconnect", "--pin-wait-budget", "1s"],
    );
    init(&d);
    let node = d.file("f", &pattern(4096, 3));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    let mut c = d.control();
    let pin = c.pin(0, 4096).unwrap();
    // The frontend goes; its mapping's release waits for the pin and runs out of budget.
    let socket = d.dir.join("fs.sock");
    let Dax {
        dir: _dir,
        daemon,
        frontend,
        windows,
        c: first,
    } = d;
    drop((first, windows, frontend));
    wait_until("the release to run out of budget", || {
        daemon
            .log()
            .contains("disconnected frontend's mappings are not released yet")
    });
    let second = Arc::new(Mutex::new(
        Frontend::connect(&socket, &FrontendOptions::default()).unwrap(),
    ));
    let windows = second.lock().unwrap().windows().clone();
    let c2 = Client::over(FuseQueue::new(second.clone(), 1, WAIT));
    c2.init();
    let node = c2.lookup(ROOT, b"f").unwrap().nodeid;
    // The ledger still holds the old mapping: a map of the same range must not pass for
    // "already mapped" in a window this frontend never mapped.
    assert_eq!(
        c2.setupmapping(node, None, 0, MIB2, READ, 0),
        Err(libc::EBUSY)
    );
    c.unpin(pin);
    wait_until("the old mapping to be released", || {
        c.stats()["live_mappings"] == 0
    });
    wait_until("maps to be served again", || {
        c2.setupmapping(node, None, 0, MIB2, READ, 0).is_ok()
    });
    let mut buf = vec![0u8; 4096];
    windows.read(0, 0, &mut buf).unwrap();
    assert_eq!(
        buf,
        pattern(4096, 3),
        "really mapped in the new frontend's window"
    );
}

#[test]
fn the_control_socket_takes_the_operators_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("dax-control-mode");
    std::fs::create_dir(dir.join("share")).unwrap();
    let (socket, control) = (dir.join("fs.sock"), dir.join("control.sock"));
    let mut command = std::process::Command::new(binary());
    // SAFETY: umask is async-signal-safe and touches nothing but the child's mask.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let _daemon = spawn_fs_daemon_with(
        command,
        &dir.join("share"),
        &socket,
        &[
            "--dax-window",
            "8M",
            "--control-socket",
            control.to_str().unwrap(),
        ],
    );
    for path in [&socket, &control] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{}: mode {mode:o}", path.display());
    }
}

#[test]
fn a_parked_reply_never_lands_in_a_stopped_ring() {
    let d = start("dax-stop-ring", &[]);
    init(&d);
    let node = d.file("a", &pattern(1 << 20, 1));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut c = d.control();
    let pin = c.pin(0, 4096).unwrap();
    let ticket =
        d.c.transport
            .submit(&truncate_request(node, 0), 4096)
            .unwrap();
    wait_until("the truncate to park", || c.stats()["draining_chunks"] == 1);
    d.frontend.lock().unwrap().stop_queues().unwrap();
    c.unpin(pin);
    // The truncate itself goes through; only its reply is held back from the ring.
    wait_until("the parked truncate to finish", || d.host_size("a") == 0);
    wait_until("its reply to be dropped", || {
        d.daemon.log().contains("parked reply dropped")
    });
    assert!(!d.c.transport.is_done(&ticket).unwrap());
}

#[test]
fn parked_requests_are_bounded_and_the_excess_is_answered_ebusy_at_once() {
    use std::collections::HashMap;
    use vhost_dax::device::fs::MAX_PARKED;
    use vhost_dax::frontend::Buffer;

    let d = start("dax-park-cap", &["--queues", "3"]);
    init(&d);
    let node = d.file("f", &pattern(4096, 8));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut c = d.control();
    let pin = c.pin(0, 4096).unwrap();
    // More truncates than may be parked, spread over three request queues (128 chains
    // each at most): every one waits on the pin, or is refused.
    let total = MAX_PARKED + 14;
    let mut replies: HashMap<(usize, u16), vm_memory::GuestAddress> = HashMap::new();
    {
        let mut fe = d.frontend.lock().unwrap();
        for i in 0..total {
            let queue = 1 + i % 3;
            let request = fe.ram().alloc_bytes(&truncate_request(node, 0)).unwrap();
            let len = u32::try_from(truncate_request(node, 0).len()).unwrap();
            let reply = fe.ram().alloc(256, 8).unwrap();
            let head = fe
                .submit(
                    queue,
                    &[Buffer::readable(request, len), Buffer::writable(reply, 256)],
                )
                .unwrap();
            replies.insert((queue, head), reply);
        }
    }
    let error_of = |d: &Dax, addr| {
        let bytes = d.frontend.lock().unwrap().ram().read(addr, 16).unwrap();
        i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]])
    };
    // The excess comes back at once, EBUSY, while the pin still holds.
    let mut refused = Vec::new();
    wait_until("the excess to be answered", || {
        let mut fe = d.frontend.lock().unwrap();
        for queue in 1..=3 {
            for used in fe.collect_used(queue).unwrap() {
                refused.push((queue, used.head));
            }
        }
        refused.len() >= total - MAX_PARKED
    });
    assert_eq!(refused.len(), total - MAX_PARKED);
    for key in &refused {
        assert_eq!(error_of(&d, replies[key]), -libc::EBUSY);
    }
    assert_eq!(d.host_size("f"), 4096, "nothing truncated under the pin");
    // The parked ones all complete once the pin drops.
    c.unpin(pin);
    let mut done = refused.len();
    wait_until("every parked truncate to finish", || {
        let mut fe = d.frontend.lock().unwrap();
        for queue in 1..=3 {
            for used in fe.collect_used(queue).unwrap() {
                assert_eq!(error_of_locked(&fe, replies[&(queue, used.head)]), 0);
                done += 1;
            }
        }
        done == total
    });
    assert_eq!(d.host_size("f"), 0);
}

fn error_of_locked(fe: &Frontend, addr: vm_memory::GuestAddress) -> i32 {
    let bytes = fe.ram().read(addr, 16).unwrap();
    i32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]])
}

/// SIGTERM while a truncate waits on a VMM's pin: the truncate ends unchanged (EBUSY) and
/// the file keeps its bytes. Shutdown releases the window before it drops the VMM's pins,
/// so nothing parked can go ahead under DMA that may still be in flight.
#[test]
fn sigterm_ends_a_truncate_parked_on_a_pin_without_cutting_the_file() {
    let mut d = start("dax-sigterm-parked", &["--pin-wait-budget", "300ms"]);
    init(&d);
    let node = d.file("t", &pattern(1 << 20, 3));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut c = d.control();
    let _pin = c.pin(0, 4096).unwrap();
    let ticket =
        d.c.transport
            .submit(&truncate_request(node, 0), 4096)
            .unwrap();
    wait_until("the truncate to park", || c.stats()["draining_chunks"] == 1);

    d.daemon.signal(libc::SIGTERM).unwrap();
    let reply = Reply::parse(&d.c.transport.wait(ticket).unwrap());
    assert_eq!(reply.header.error, -libc::EBUSY, "ended by the shutdown");
    assert!(d.daemon.wait(WAIT).unwrap().success());
    assert_eq!(d.host_size("t"), 1 << 20, "no byte cut");
    let log = d.daemon.log();
    assert!(
        log.contains("refused: the device is shutting down"),
        "{log}"
    );
}
