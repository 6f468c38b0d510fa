//! Property tests: arbitrary, mostly well-framed requests never panic the
//! server, always get a well-formed reply (or none for the no-reply ops), and
//! never touch anything outside the shared directory.

use proptest::prelude::*;

use super::{ROOT, setup, setup_dax};
use crate::fs::dax::LEDGER_WAITS;
use crate::fuse::abi::{InHeader, OutHeader, Wire, opcode as op};
use crate::fuse::testing::encode_request;

/// Every opcode, less FALLOCATE (a random length could really allocate gigabytes).
const OPCODES: &[u32] = &[
    op::LOOKUP,
    op::FORGET,
    op::GETATTR,
    op::SETATTR,
    op::READLINK,
    op::SYMLINK,
    op::MKNOD,
    op::MKDIR,
    op::UNLINK,
    op::RMDIR,
    op::RENAME,
    op::LINK,
    op::OPEN,
    op::READ,
    op::WRITE,
    op::STATFS,
    op::RELEASE,
    op::FSYNC,
    op::SETXATTR,
    op::GETXATTR,
    op::LISTXATTR,
    op::REMOVEXATTR,
    op::FLUSH,
    op::OPENDIR,
    op::READDIR,
    op::RELEASEDIR,
    op::FSYNCDIR,
    op::GETLK,
    op::SETLK,
    op::SETLKW,
    op::ACCESS,
    op::CREATE,
    op::INTERRUPT,
    op::BMAP,
    op::IOCTL,
    op::POLL,
    op::BATCH_FORGET,
    op::READDIRPLUS,
    op::RENAME2,
    op::LSEEK,
    op::COPY_FILE_RANGE,
    op::SETUPMAPPING,
    op::REMOVEMAPPING,
    op::SYNCFS,
    op::TMPFILE,
    op::STATX,
    0,
    7,
    53,
    4096,
    u32::MAX,
];

fn body_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Raw bytes.
        proptest::collection::vec(any::<u8>(), 0..160),
        // A fixed part of small numbers followed by short names, like real requests.
        (
            proptest::collection::vec(0u8..4, 0..64),
            proptest::collection::vec(
                prop_oneof![
                    Just(b"a".to_vec()),
                    Just(b"..".to_vec()),
                    Just(b".".to_vec()),
                    Just(b"a/b".to_vec()),
                    Just(b"".to_vec()),
                    Just(b"../outside".to_vec())
                ],
                0..3
            )
        )
            .prop_map(|(mut fixed, names)| {
                for n in names {
                    fixed.extend_from_slice(&n);
                    fixed.push(0);
                }
                fixed
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_requests_are_answered_safely(
        dax in any::<bool>(),
        reqs in proptest::collection::vec((proptest::sample::select(OPCODES), 0u64..6, body_strategy(), 0u8..8, 0u16..3), 1..12)
    ) {
        // With a DAX window, fuzzed bytes reach the ledger too.
        let f = if dax { setup_dax() } else { setup() };
        for (i, (opcode, nodeid, body, lie, extlen)) in reqs.into_iter().enumerate() {
            let unique = 1000 + i as u64;
            let mut req = encode_request(opcode, unique, nodeid, 0, 0, &body);
            match lie {
                0 => req[0] = req[0].wrapping_add(1),
                1 => req.truncate(req.len().min(InHeader::SIZE - 1)),
                2 => req[36..38].copy_from_slice(&extlen.to_ne_bytes()),
                _ => {}
            }
            let waits = LEDGER_WAITS.with(|c| c.get());
            let reply = f.c.raw(&req);
            // A request that went into the ledger where it can wait must be one the
            // device parks: otherwise it would stall its queue.
            if LEDGER_WAITS.with(|c| c.get()) != waits {
                prop_assert!(f.c.server().may_wait(&req, 0), "opcode {} waited unparked", opcode);
            }
            if reply.is_empty() {
                prop_assert!(matches!(opcode, op::FORGET | op::BATCH_FORGET | op::INTERRUPT));
                continue;
            }
            let h = OutHeader::read(&reply).expect("reply has a header");
            prop_assert_eq!(h.len as usize, reply.len());
            prop_assert!(h.error <= 0 && h.error > -4096);
            if req.len() >= InHeader::SIZE {
                prop_assert_eq!(h.unique, unique);
            }
        }
        // The server still works and nothing outside the share changed.
        prop_assert!(f.c.getattr(ROOT, None).is_ok());
        prop_assert_eq!(std::fs::read(f.dir.path().join("outside")).unwrap(), b"secret");
        let mut names: Vec<_> = std::fs::read_dir(f.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        prop_assert_eq!(names, vec![std::ffi::OsString::from("outside"), "shared".into()]);
    }
}
