//! Protocol-level behaviour: INIT negotiation, malformed requests, ENOSYS
//! ops, DAX argument decoding, reply sizing.

use std::ffi::CStr;
use std::sync::Mutex;

use super::{ROOT, setup};
use crate::fuse::abi::{self, Wire, init_flags as fl, opcode as op};
use crate::fuse::filesystem::{Context, Filesystem, NodeId, RemoveMapping, SetupMapping};
use crate::fuse::testing::{Client, Reply, cat, cstr, encode_request};
use crate::fuse::{Entry, Errno, FsResult, Server, SliceReader, VecWriter, ZeroCopyReader};

/// Records the DAX calls it gets.
#[derive(Default)]
struct DaxRecorder {
    setups: Mutex<Vec<(u64, SetupMapping)>>,
    removes: Mutex<Vec<Vec<RemoveMapping>>>,
}

impl Filesystem for DaxRecorder {
    fn setupmapping(&self, _ctx: Context, node: NodeId, args: SetupMapping) -> FsResult<()> {
        self.setups.lock().unwrap().push((node.0, args));
        Ok(())
    }
    fn removemapping(&self, _ctx: Context, ranges: &[RemoveMapping]) -> FsResult<()> {
        self.removes.lock().unwrap().push(ranges.to_vec());
        Ok(())
    }
    fn lookup(&self, _ctx: Context, _parent: NodeId, _name: &CStr) -> FsResult<Entry> {
        Err(Errno::ENOENT)
    }
}

/// A filesystem with every method defaulted.
struct NullFs;
impl Filesystem for NullFs {}

#[test]
fn init_negotiates_minor_and_flags() {
    let c = Client::new(NullFs);
    // Linux 6.12 (7.41) and 6.1 (7.38 / 7.37).
    for (minor, want) in [(41, 38), (38, 38), (37, 37), (27, 27)] {
        let out = c
            .init_with(
                7,
                minor,
                fl::ASYNC_READ | fl::INIT_EXT | fl::POSIX_LOCKS | fl::MAX_PAGES,
            )
            .unwrap();
        assert_eq!((out.major, out.minor), (7, want));
        // Only what the server implements; POSIX_LOCKS is not granted by NullFs.
        assert_eq!(
            u64::from(out.flags),
            fl::ASYNC_READ | fl::INIT_EXT | fl::MAX_PAGES
        );
        assert_eq!(out.max_pages, abi::MAX_PAGES);
        assert_eq!(out.max_write as usize, abi::MAX_BUFFER_SIZE);
    }
    // Too old, wrong major.
    assert_eq!(c.init_with(7, 26, 0).unwrap_err(), libc::EPROTO);
    assert_eq!(c.init_with(6, 40, 0).unwrap_err(), libc::EPROTO);
    // A newer major gets our version back so the kernel can retry.
    let out = c.init_with(8, 0, 0).unwrap();
    assert_eq!((out.major, out.minor), (7, abi::KERNEL_MINOR_VERSION));
}

#[test]
fn init_grants_passthrough_flags_only_if_offered() {
    let f = setup();
    let g = f.c.server().granted_flags();
    for flag in [
        fl::ATOMIC_O_TRUNC,
        fl::DO_READDIRPLUS,
        fl::READDIRPLUS_AUTO,
        fl::PARALLEL_DIROPS,
        fl::INIT_EXT,
    ] {
        assert_ne!(g & flag, 0, "{flag:#x} not granted");
    }
    for flag in [
        fl::WRITEBACK_CACHE,
        fl::POSIX_LOCKS,
        fl::FLOCK_LOCKS,
        fl::HANDLE_KILLPRIV_V2,
        fl::MAP_ALIGNMENT,
        fl::SECURITY_CTX,
    ] {
        assert_eq!(g & flag, 0, "{flag:#x} granted");
    }
    // Flags the kernel did not offer are never granted.
    let out = f.c.init_with(7, 38, fl::ASYNC_READ).unwrap();
    assert_eq!(u64::from(out.flags), fl::ASYNC_READ);
    assert_eq!(out.flags2, 0);
}

#[test]
fn requests_before_init_fail_and_destroy_resets() {
    let c = Client::new(NullFs);
    assert_eq!(c.lookup(ROOT, b"x").unwrap_err(), libc::EIO);
    c.init();
    assert_eq!(c.lookup(ROOT, b"x").unwrap_err(), libc::ENOSYS);
    c.destroy().unwrap();
    assert_eq!(c.lookup(ROOT, b"x").unwrap_err(), libc::EIO);
    c.init();
    assert_eq!(c.getattr(ROOT, None).unwrap_err(), libc::ENOSYS);
}

fn err_of(reply: &[u8]) -> (u64, i32) {
    let r = Reply::parse(reply);
    (r.header.unique, -r.header.error)
}

#[test]
fn malformed_requests_get_errors_and_the_next_request_works() {
    let f = setup();
    let cap = 1 << 20;
    let s = f.c.server();
    let ok = |s: &Server<_>| {
        let r = s.handle(
            &encode_request(
                op::GETATTR,
                99,
                ROOT,
                0,
                0,
                &abi::GetattrIn::default().to_bytes(),
            ),
            cap,
        );
        assert_eq!(Reply::parse(&r).header.error, 0);
    };
    // Short header: unique unknown (0).
    assert_eq!(err_of(&s.handle(&[1, 2, 3], cap)), (0, libc::EINVAL));
    assert_eq!(err_of(&s.handle(&[], cap)), (0, libc::EINVAL));
    ok(s);
    // Header length lying in both directions.
    let mut req = encode_request(op::LOOKUP, 7, ROOT, 0, 0, &cstr(b"a"));
    req[0] = 200;
    assert_eq!(err_of(&s.handle(&req, cap)), (7, libc::EINVAL));
    req[0] = 41;
    assert_eq!(err_of(&s.handle(&req, cap)), (7, libc::EINVAL));
    ok(s);
    // Name without NUL.
    assert_eq!(
        err_of(&s.handle(&encode_request(op::LOOKUP, 8, ROOT, 0, 0, b"abc"), cap)),
        (8, libc::EINVAL)
    );
    assert_eq!(
        err_of(&s.handle(&encode_request(op::MKDIR, 9, ROOT, 0, 0, &[0; 8]), cap)),
        (9, libc::EINVAL)
    );
    // Short fixed body.
    assert_eq!(
        err_of(&s.handle(&encode_request(op::READ, 10, ROOT, 0, 0, &[0; 12]), cap)),
        (10, libc::EINVAL)
    );
    ok(s);
    // Huge counts.
    let bf = abi::BatchForgetIn {
        count: u32::MAX,
        dummy: 0,
    }
    .to_bytes();
    assert!(
        s.handle(&encode_request(op::BATCH_FORGET, 11, 0, 0, 0, &bf), cap)
            .is_empty()
    );
    let rm = cat(&[
        &abi::RemovemappingIn { count: 257 }.to_bytes(),
        &vec![0u8; 257 * 16],
    ]);
    assert_eq!(
        err_of(&s.handle(&encode_request(op::REMOVEMAPPING, 12, ROOT, 0, 0, &rm), cap)),
        (12, libc::EINVAL)
    );
    let rm = cat(&[&abi::RemovemappingIn { count: 3 }.to_bytes(), &[0u8; 16]]);
    assert_eq!(
        err_of(&s.handle(&encode_request(op::REMOVEMAPPING, 13, ROOT, 0, 0, &rm), cap)),
        (13, libc::EINVAL)
    );
    ok(s);
    // Unknown and unimplemented opcodes.
    assert_eq!(
        err_of(&s.handle(&encode_request(9999, 14, ROOT, 0, 0, &[]), cap)),
        (14, libc::ENOSYS)
    );
    assert_eq!(
        err_of(&s.handle(&encode_request(7, 15, ROOT, 0, 0, &[]), cap)),
        (15, libc::ENOSYS)
    );
    for opc in [op::BMAP, op::IOCTL, op::POLL, op::STATX] {
        assert_eq!(
            err_of(&s.handle(&encode_request(opc, 16, ROOT, 0, 0, &[0; 64]), cap)),
            (16, libc::ENOSYS)
        );
    }
    // Extension length beyond the body.
    let mut req = encode_request(op::LOOKUP, 17, ROOT, 0, 0, &cstr(b"a"));
    req[36] = 10;
    assert_eq!(err_of(&s.handle(&req, cap)), (17, libc::EINVAL));
    // WRITE whose size disagrees with its payload.
    let w = cat(&[
        &abi::WriteIn {
            size: 100,
            ..Default::default()
        }
        .to_bytes(),
        b"abc",
    ]);
    assert_eq!(
        err_of(&s.handle(&encode_request(op::WRITE, 18, ROOT, 0, 0, &w), cap)),
        (18, libc::EINVAL)
    );
    // Unknown node ids.
    assert_eq!(f.c.getattr(12345, None).unwrap_err(), libc::EBADF);
    ok(s);
}

#[test]
fn extensions_are_cut_off() {
    let f = setup();
    std::fs::write(f.shared().join("a"), b"").unwrap();
    // An 8-byte extension after the name is ignored.
    let mut req = encode_request(op::LOOKUP, 5, ROOT, 0, 0, &cat(&[&cstr(b"a"), &[0xff; 8]]));
    req[36] = 1;
    let r = Reply::parse(&f.c.raw(&req));
    assert_eq!(r.header.error, 0);
    // A creation's FUSE_EXT_GROUPS is read (when granted, as to a root daemon): a
    // malformed one is EINVAL and nothing is created.
    if super::is_root() {
        let mkdir_in = abi::MkdirIn {
            mode: 0o755,
            umask: 0,
        }
        .to_bytes();
        for (ext, unique) in [
            [24u32, abi::ext_type::GROUPS, 1, 0], // claims more than there is
            [16, abi::ext_type::GROUPS, 2, 0],    // two groups in one slot
            [16, abi::ext_type::GROUPS, 0, 0],    // none
        ]
        .into_iter()
        .zip(10u64..)
        {
            let words: Vec<u8> = ext.iter().flat_map(|w| w.to_le_bytes()).collect();
            let body = cat(&[&mkdir_in, &cstr(b"d"), &words]);
            let mut req = encode_request(op::MKDIR, unique, ROOT, 1234, 5678, &body);
            req[36] = 2;
            let r = Reply::parse(&f.c.raw(&req));
            assert_eq!(r.header.error, -libc::EINVAL, "{ext:?}");
            assert!(!f.shared().join("d").exists());
        }
    }
}

/// A WRITE's payload kept apart by the transport is written from there; a payload kept
/// apart for any other request, or with extensions, is refused; a READ's data lands in the
/// writer and the reply says how much.
#[test]
fn payloads_kept_apart_by_the_transport() {
    let f = setup();
    let s = f.c.server();
    let (e, o) = f.c.create(ROOT, b"z", 0o644, libc::O_RDWR as u32).unwrap();
    let write_in = |size: usize| {
        abi::WriteIn {
            fh: o.fh,
            offset: 0,
            size: u32::try_from(size).unwrap(),
            ..Default::default()
        }
        .to_bytes()
    };
    let data = b"zero-copy";
    let with_len = |mut req: Vec<u8>, extra: usize| {
        let len = u32::try_from(req.len() + extra).unwrap();
        req[..4].copy_from_slice(&len.to_le_bytes());
        req
    };
    let head = with_len(
        encode_request(op::WRITE, 1, e.nodeid, 0, 0, &write_in(data.len())),
        data.len(),
    );
    let mut payload = SliceReader::new(data);
    let r = s.handle_zero_copy(&head, &mut payload, &mut VecWriter::new(0), 64);
    assert_eq!((r.placed, r.body.len()), (0, abi::WriteOut::SIZE));
    assert_eq!(payload.remaining(), 0);
    assert_eq!(std::fs::read(f.shared().join("z")).unwrap(), data);
    // Apart for a request other than WRITE: its bytes are not where it expects them.
    let getattr = with_len(
        encode_request(
            op::GETATTR,
            2,
            ROOT,
            0,
            0,
            &abi::GetattrIn::default().to_bytes(),
        ),
        3,
    );
    let r = s.handle_zero_copy(
        &getattr,
        &mut SliceReader::new(b"abc"),
        &mut VecWriter::new(0),
        64,
    );
    assert_eq!(err_of(&r.header), (2, libc::EINVAL));
    // Apart for a WRITE with extensions (they would sit at the payload's end).
    let mut ext = with_len(
        encode_request(op::WRITE, 3, e.nodeid, 0, 0, &write_in(1)),
        1,
    );
    ext[36..38].copy_from_slice(&1u16.to_le_bytes()); // total_extlen
    let r = s.handle_zero_copy(
        &ext,
        &mut SliceReader::new(b"X"),
        &mut VecWriter::new(0),
        64,
    );
    assert_eq!(err_of(&r.header), (3, libc::EINVAL));
    assert_eq!(std::fs::read(f.shared().join("z")).unwrap(), data);
    // READ: the data goes to the writer, the reply header counts it.
    let read = abi::ReadIn {
        fh: o.fh,
        offset: 5,
        size: 100,
        ..Default::default()
    };
    let mut out = VecWriter::new(100);
    let r = s.handle_zero_copy(
        &encode_request(op::READ, 4, e.nodeid, 0, 0, &read.to_bytes()),
        &mut SliceReader::default(),
        &mut out,
        16 + 100,
    );
    assert_eq!((r.placed, r.len()), (4, 16 + 4));
    assert_eq!(abi::OutHeader::read(&r.header).unwrap().len, 16 + 4);
    assert_eq!(out.into_inner(), b"copy");
}

#[test]
fn reply_capacity_is_respected() {
    let f = setup();
    std::fs::write(f.shared().join("big"), vec![7u8; 10000]).unwrap();
    let e = f.c.lookup(ROOT, b"big").unwrap();
    let fh = f.c.open(e.nodeid, libc::O_RDONLY as u32).unwrap().fh;
    let read = abi::ReadIn {
        fh,
        offset: 0,
        size: 10000,
        ..Default::default()
    }
    .to_bytes();
    // READ is clamped to what the writable descriptors can hold.
    let r = f.c.server().handle(
        &encode_request(op::READ, 3, e.nodeid, 0, 0, &read),
        16 + 4096,
    );
    assert_eq!(Reply::parse(&r).body.len(), 4096);
    // A reply that cannot fit becomes ERANGE; not even a header: nothing.
    let r = f.c.server().handle(
        &encode_request(op::LOOKUP, 4, ROOT, 0, 0, &cstr(b"big")),
        64,
    );
    assert_eq!(err_of(&r), (4, libc::ERANGE));
    assert!(
        f.c.server()
            .handle(&encode_request(op::LOOKUP, 5, ROOT, 0, 0, &cstr(b"big")), 8)
            .is_empty()
    );
}

#[test]
fn no_reply_ops_and_enosys_ops() {
    let f = setup();
    // INTERRUPT gets no reply.
    assert!(
        f.c.send(op::INTERRUPT, 0, &abi::InterruptIn { unique: 1 }.to_bytes())
            .is_none()
    );
    // Locks are not implemented (POSIX_LOCKS not granted): ENOSYS.
    let lk = abi::LkIn::default().to_bytes();
    for opc in [op::GETLK, op::SETLK, op::SETLKW] {
        assert_eq!(f.c.call(opc, ROOT, &lk).unwrap_err(), libc::ENOSYS);
    }
    // DAX ops default to ENOSYS in the passthrough.
    let sm = abi::SetupmappingIn {
        fh: u64::MAX,
        foffset: 0,
        len: 2 << 20,
        flags: 3,
        moffset: 0,
    };
    assert_eq!(
        f.c.call(op::SETUPMAPPING, ROOT, &sm.to_bytes())
            .unwrap_err(),
        libc::ENOSYS
    );
    let rm = cat(&[
        &abi::RemovemappingIn { count: 1 }.to_bytes(),
        &abi::RemovemappingOne {
            moffset: 0,
            len: 4096,
        }
        .to_bytes(),
    ]);
    assert_eq!(
        f.c.call(op::REMOVEMAPPING, ROOT, &rm).unwrap_err(),
        libc::ENOSYS
    );
}

#[test]
fn dax_arguments_are_decoded_and_validated() {
    let c = Client::new(DaxRecorder::default());
    c.init();
    let sm = abi::SetupmappingIn {
        fh: u64::MAX,
        foffset: 2 << 20,
        len: 2 << 20,
        flags: 3,
        moffset: 4 << 20,
    };
    c.call(op::SETUPMAPPING, 5, &sm.to_bytes()).unwrap();
    let sm2 = abi::SetupmappingIn {
        fh: 9,
        flags: 2,
        ..sm
    };
    c.call(op::SETUPMAPPING, 5, &sm2.to_bytes()).unwrap();
    // Invalid: zero length, overflow, unknown flag bits.
    for bad in [
        abi::SetupmappingIn { len: 0, ..sm },
        abi::SetupmappingIn {
            foffset: u64::MAX,
            ..sm
        },
        abi::SetupmappingIn {
            moffset: u64::MAX - 5,
            ..sm
        },
        abi::SetupmappingIn { flags: 4, ..sm },
    ] {
        assert_eq!(
            c.call(op::SETUPMAPPING, 5, &bad.to_bytes()).unwrap_err(),
            libc::EINVAL
        );
    }
    {
        let setups = c.server().filesystem().setups.lock().unwrap();
        assert_eq!(setups.len(), 2);
        let (node, a) = setups[0];
        assert_eq!(node, 5);
        assert_eq!(
            (a.fh, a.foffset, a.len, a.moffset),
            (None, 2 << 20, 2 << 20, 4 << 20)
        );
        assert!(a.flags.read && a.flags.write);
        let (_, b) = setups[1];
        assert_eq!(b.fh, Some(crate::fuse::Handle(9)));
        assert!(b.flags.read && !b.flags.write);
    }
    // REMOVEMAPPING: the full 256 entries are accepted, entries need not be aligned.
    let mut body = abi::RemovemappingIn { count: 256 }.to_bytes();
    for i in 0..256u64 {
        abi::RemovemappingOne {
            moffset: i << 21,
            len: 2 << 20,
        }
        .put(&mut body);
    }
    c.call(op::REMOVEMAPPING, 0, &body).unwrap();
    let mut bad = abi::RemovemappingIn { count: 1 }.to_bytes();
    abi::RemovemappingOne {
        moffset: u64::MAX,
        len: 2,
    }
    .put(&mut bad);
    assert_eq!(
        c.call(op::REMOVEMAPPING, 0, &bad).unwrap_err(),
        libc::EINVAL
    );
    let removes = c.server().filesystem().removes.lock().unwrap();
    assert_eq!(removes.len(), 1);
    assert_eq!(removes[0].len(), 256);
    assert_eq!(
        removes[0][255],
        RemoveMapping {
            moffset: 255 << 21,
            len: 2 << 20
        }
    );
}

#[test]
fn concurrent_lookups_and_forgets_keep_counts_exact() {
    let f = setup();
    std::fs::write(f.shared().join("a"), b"x").unwrap();
    let id = f.c.lookup(ROOT, b"a").unwrap().nodeid;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..200 {
                    assert_eq!(f.c.lookup(ROOT, b"a").unwrap().nodeid, id);
                    f.c.forget(id, 1);
                }
            });
        }
    });
    assert_eq!(f.fs().inodes().lookups(NodeId(id)), Some(1));
    f.c.forget(id, 1);
    assert_eq!(f.fs().inodes().lookups(NodeId(id)), None);
}

#[test]
fn init_from_a_pre_7_36_kernel_has_no_flags2() {
    let c = Client::new(NullFs);
    // 16-byte fuse_init_in, as kernels before 7.36 send.
    let body = abi::InitIn {
        major: 7,
        minor: 31,
        max_readahead: 4096,
        flags: u32::try_from(fl::ASYNC_READ | fl::MAX_PAGES).unwrap(),
    }
    .to_bytes();
    let out = abi::InitOut::read(&c.call(op::INIT, 0, &body).unwrap()).unwrap();
    assert_eq!((out.minor, out.max_readahead), (31, 4096));
    assert_eq!(u64::from(out.flags), fl::ASYNC_READ | fl::MAX_PAGES);
    assert_eq!(out.flags2, 0);
    // A body too short for fuse_init_in.
    assert_eq!(c.call(op::INIT, 0, &[0; 8]).unwrap_err(), libc::EINVAL);
}

#[test]
fn a_second_init_starts_a_new_session_that_sees_nothing_of_the_old_one() {
    let f = setup();
    std::fs::write(f.shared().join("old"), b"previous session").unwrap();
    let node = f.c.lookup(ROOT, b"old").unwrap().nodeid;
    let fh = f.c.open(node, libc::O_RDONLY as u32).unwrap().fh;
    std::fs::remove_file(f.shared().join("old")).unwrap();
    assert_eq!(f.c.read(node, fh, 0, 64).unwrap(), b"previous session");
    // The guest reboots: a new INIT without DESTROY.
    f.c.init();
    assert_eq!(
        f.c.read(node, fh, 0, 64).unwrap_err(),
        libc::EBADF,
        "the new session read a node and handle it never opened"
    );
    assert_eq!(f.fs().inodes.len(), 1, "only the root is left");
    assert_eq!(f.fs().handles.len(), 0);
    // And it works as a fresh one.
    std::fs::write(f.shared().join("new"), b"x").unwrap();
    assert!(f.c.lookup(ROOT, b"new").is_ok());
}
