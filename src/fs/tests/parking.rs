//! The parking rule (`Filesystem::may_wait`, decided on the decoded request) and the
//! file system's calls into the ledger agree: every well-formed request that goes into
//! the ledger where it can wait is one the device parks, and the everyday requests that
//! do not are served on the queue's own thread.

use super::{ROOT, setup, setup_dax};
use crate::fs::dax::LEDGER_WAITS;
use crate::fuse::abi::{self, Wire, fattr, opcode as op};
use crate::fuse::testing::encode_request;

const CUTTING_FALLOCATE: [i32; 4] = [
    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
    libc::FALLOC_FL_ZERO_RANGE,
    libc::FALLOC_FL_COLLAPSE_RANGE,
    libc::FALLOC_FL_INSERT_RANGE,
];

#[test]
fn every_request_that_waits_on_the_ledger_is_parked_and_no_other() {
    let f = setup_dax();
    std::fs::write(f.shared().join("f"), vec![7u8; 1 << 20]).unwrap();
    let node = f.c.lookup(ROOT, b"f").unwrap().nodeid;
    let fh = f.c.open(node, libc::O_RDWR as u32).unwrap().fh;
    let req = |opcode, nodeid, body: Vec<u8>| encode_request(opcode, 77, nodeid, 0, 0, &body);
    let setattr = |valid, size| {
        abi::SetattrIn {
            valid,
            size,
            mode: 0o644,
            ..Default::default()
        }
        .to_bytes()
    };
    let falloc = |mode: i32| {
        abi::FallocateIn {
            fh,
            offset: 0,
            length: 4096,
            mode: mode.cast_unsigned(),
            padding: 0,
        }
        .to_bytes()
    };
    let trunc = (libc::O_RDWR | libc::O_TRUNC) as u32;
    let mut waiting = vec![
        (
            "SETATTR size",
            req(op::SETATTR, node, setattr(fattr::SIZE, 1 << 20)),
        ),
        (
            "OPEN O_TRUNC",
            req(
                op::OPEN,
                node,
                abi::OpenIn {
                    flags: trunc,
                    open_flags: 0,
                }
                .to_bytes(),
            ),
        ),
        (
            "CREATE O_TRUNC",
            req(
                op::CREATE,
                ROOT,
                [
                    abi::CreateIn {
                        flags: trunc,
                        mode: 0o644,
                        umask: 0,
                        open_flags: 0,
                    }
                    .to_bytes(),
                    b"f\0".to_vec(),
                ]
                .concat(),
            ),
        ),
        (
            "COPY_FILE_RANGE",
            req(
                op::COPY_FILE_RANGE,
                node,
                abi::CopyFileRangeIn {
                    fh_in: fh,
                    off_in: 0,
                    nodeid_out: node,
                    fh_out: fh,
                    off_out: 8192,
                    len: 4096,
                    flags: 0,
                }
                .to_bytes(),
            ),
        ),
        (
            "SETUPMAPPING",
            req(
                op::SETUPMAPPING,
                node,
                abi::SetupmappingIn {
                    fh: u64::MAX,
                    foffset: 0,
                    len: 2 << 20,
                    flags: abi::misc::SETUPMAPPING_FLAG_READ,
                    moffset: 0,
                }
                .to_bytes(),
            ),
        ),
        (
            "REMOVEMAPPING",
            req(
                op::REMOVEMAPPING,
                node,
                [
                    abi::RemovemappingIn { count: 1 }.to_bytes(),
                    abi::RemovemappingOne {
                        moffset: 0,
                        len: 2 << 20,
                    }
                    .to_bytes(),
                ]
                .concat(),
            ),
        ),
    ];
    for mode in CUTTING_FALLOCATE {
        waiting.push((
            "FALLOCATE that cuts",
            req(op::FALLOCATE, node, falloc(mode)),
        ));
    }
    let everyday = vec![
        (
            "GETATTR",
            req(op::GETATTR, node, abi::GetattrIn::default().to_bytes()),
        ),
        (
            "SETATTR mode",
            req(op::SETATTR, node, setattr(fattr::MODE, 0)),
        ),
        (
            "OPEN",
            req(
                op::OPEN,
                node,
                abi::OpenIn {
                    flags: libc::O_RDWR as u32,
                    open_flags: 0,
                }
                .to_bytes(),
            ),
        ),
        (
            "FALLOCATE that allocates",
            req(op::FALLOCATE, node, falloc(0)),
        ),
        ("STATFS", req(op::STATFS, node, Vec::new())),
    ];
    for (what, bytes) in &waiting {
        assert!(f.c.server().may_wait(bytes, 0), "{what} is not parked");
        let before = LEDGER_WAITS.with(|c| c.get());
        f.c.raw(bytes);
        assert_ne!(
            LEDGER_WAITS.with(|c| c.get()),
            before,
            "{what} did not go into the ledger: the rule parks more than it must"
        );
    }
    for (what, bytes) in &everyday {
        assert!(!f.c.server().may_wait(bytes, 0), "{what} is parked");
        let before = LEDGER_WAITS.with(|c| c.get());
        f.c.raw(bytes);
        assert_eq!(
            LEDGER_WAITS.with(|c| c.get()),
            before,
            "{what} went into the ledger"
        );
    }
    // DESTROY (and the next INIT) release every mapping: parked too.
    for opcode in [op::DESTROY, op::INIT] {
        let body = if opcode == op::INIT {
            abi::InitIn {
                major: 7,
                minor: 38,
                ..Default::default()
            }
            .to_bytes()
        } else {
            Vec::new()
        };
        let bytes = req(opcode, ROOT, body);
        assert!(
            f.c.server().may_wait(&bytes, 0),
            "opcode {opcode} is not parked"
        );
    }
}

#[test]
fn without_a_window_nothing_is_parked() {
    let f = setup();
    let body = abi::SetattrIn {
        valid: fattr::SIZE,
        ..Default::default()
    }
    .to_bytes();
    assert!(
        !f.c.server()
            .may_wait(&encode_request(op::SETATTR, 1, ROOT, 0, 0, &body), 0)
    );
    assert!(
        !f.c.server()
            .may_wait(&encode_request(op::DESTROY, 2, ROOT, 0, 0, &[]), 0)
    );
    assert!(
        !f.c.server().may_wait(&[0u8; 10], 0),
        "a short header never parks"
    );
}
