//! What no well-behaved guest sends, through the socket: requests before INIT, lying
//! headers and bodies, huge counts, unknown opcodes, chains with no room (or no valid
//! memory) for a reply; and the transport itself: requests and replies scattered over
//! descriptors, many requests in flight, a second request queue. Each bad request is
//! answered with an error, or dropped with nothing written where no reply fits, and the
//! next valid request on the same queue still works.

use vhost_dax::frontend::Buffer;
use vhost_dax::fuse::abi::{init_flags as fl, opcode as op};
use vhost_dax::fuse::testing::{Reply, cat, cstr, encode_request};

use super::support::*;

/// A test length as the u32 a descriptor or FUSE field carries.
fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("test lengths fit u32")
}

/// (unique, positive errno) of an error reply.
fn err_of(reply: &[u8]) -> (u64, i32) {
    let r = Reply::parse(reply);
    assert!(r.body.is_empty(), "error reply with a body");
    (r.header.unique, -r.header.error)
}

/// A GETATTR of the root goes through: the queue still works.
fn still_works(c: &vhost_dax::fuse::testing::Client<vhost_dax::frontend::FuseQueue>) {
    let a = c.getattr(ROOT, None).expect("the next request works");
    assert_eq!(a.attr.mode & S_IFMT, libc::S_IFDIR);
}

#[test]
fn requests_before_init_fail_and_init_negotiates() {
    let f = start_uninit("fuse-preinit", &[]);
    std::fs::write(f.host("x"), b"").unwrap();
    assert_eq!(f.c.lookup(ROOT, b"x").unwrap_err(), libc::EIO);
    assert_eq!(f.c.getattr(ROOT, None).unwrap_err(), libc::EIO);
    assert_eq!(f.c.mkdir(ROOT, b"early", 0o755).unwrap_err(), libc::EIO);
    assert!(!f.host("early").exists());
    // Versions we do not speak: EPROTO, and still no session.
    assert_eq!(f.c.init_with(7, 26, 0).unwrap_err(), libc::EPROTO);
    assert_eq!(f.c.init_with(6, 40, 0).unwrap_err(), libc::EPROTO);
    assert_eq!(f.c.lookup(ROOT, b"x").unwrap_err(), libc::EIO);
    // A newer major gets our version back, for the kernel to retry with.
    let out = f.c.init_with(8, 0, 0).unwrap();
    assert_eq!((out.major, out.minor), (7, 38));
    assert_eq!(f.c.lookup(ROOT, b"x").unwrap_err(), libc::EIO);
    // Linux 6.12 (7.41) gets 7.38 and only flags it offered.
    let offered = u64::MAX >> 1;
    let out = f.c.init_with(7, 41, offered).unwrap();
    assert_eq!((out.major, out.minor), (7, 38));
    assert_eq!(out.max_write as usize, abi::MAX_BUFFER_SIZE);
    assert_eq!(out.max_pages, abi::MAX_PAGES);
    let granted = u64::from(out.flags) | (u64::from(out.flags2) << 32);
    for flag in [
        fl::ASYNC_READ,
        fl::ATOMIC_O_TRUNC,
        fl::DO_READDIRPLUS,
        fl::PARALLEL_DIROPS,
        fl::MAX_PAGES,
    ] {
        assert_ne!(granted & flag, 0, "{flag:#x} not granted");
    }
    // Not asked for on the command line, or not implemented (locks).
    for flag in [fl::WRITEBACK_CACHE, fl::POSIX_LOCKS, fl::FLOCK_LOCKS] {
        assert_eq!(granted & flag, 0, "{flag:#x} granted");
    }
    f.c.lookup(ROOT, b"x").unwrap();
    // Linux 6.1 (7.37) offering only ASYNC_READ gets exactly that.
    let out = f.c.init_with(7, 37, fl::ASYNC_READ).unwrap();
    assert_eq!(
        (out.minor, u64::from(out.flags), out.flags2),
        (37, fl::ASYNC_READ, 0)
    );
    // DESTROY ends the session; INIT starts the next one, without the old nodes and
    // handles.
    let x = f.c.lookup(ROOT, b"x").unwrap().nodeid;
    let fh = f.c.open(x, RDONLY).unwrap().fh;
    f.c.destroy().unwrap();
    assert_eq!(f.c.lookup(ROOT, b"x").unwrap_err(), libc::EIO);
    f.c.init();
    assert_eq!(f.c.getattr(x, None).unwrap_err(), libc::EBADF);
    assert_eq!(f.c.read(x, fh, 0, 1).unwrap_err(), libc::EBADF);
    let x2 = f.c.lookup(ROOT, b"x").unwrap().nodeid;
    assert_ne!(x2, x);
    f.c.getattr(x2, None).unwrap();
}

#[test]
fn malformed_requests_get_errors_and_the_queue_keeps_working() {
    let f = start("fuse-malformed", &[]);
    let c = &f.c;
    std::fs::write(f.host("a"), b"data").unwrap();
    // Shorter than fuse_in_header: the unique is unknown, so 0.
    assert_eq!(err_of(&c.raw(&[1, 2, 3])), (0, libc::EINVAL));
    assert_eq!(err_of(&c.raw(&[0; 39])), (0, libc::EINVAL));
    still_works(c);
    // A header length longer or shorter than the chain's readable bytes.
    let mut req = encode_request(op::LOOKUP, 7, ROOT, 0, 0, &cstr(b"a"));
    for len in [200u32, 41, 0, u32::MAX] {
        req[..4].copy_from_slice(&len.to_le_bytes());
        assert_eq!(err_of(&c.raw(&req)), (7, libc::EINVAL), "len {len}");
    }
    still_works(c);
    // Names without their NUL, or missing.
    let no_nul = [
        (op::LOOKUP, b"abc".to_vec()),
        (
            op::MKDIR,
            cat(&[
                &abi::MkdirIn {
                    mode: 0o755,
                    umask: 0,
                }
                .to_bytes(),
                b"new",
            ]),
        ),
        (op::MKDIR, vec![0; 8]),
        (op::SYMLINK, cstr(b"link")),
        (op::RENAME, cat(&[&ROOT.to_le_bytes(), &cstr(b"a"), b"b"])),
        (op::UNLINK, b"a".to_vec()),
    ];
    for (i, (opcode, body)) in no_nul.iter().enumerate() {
        let unique = 100 + i as u64;
        let req = encode_request(*opcode, unique, ROOT, 0, 0, body);
        assert_eq!(
            err_of(&c.raw(&req)),
            (unique, libc::EINVAL),
            "opcode {opcode}"
        );
    }
    assert_eq!(host_names(&f.share()), ["a"]);
    still_works(c);
    // Fixed bodies too short; an extension length beyond the body.
    for (opcode, len) in [
        (op::READ, 12),
        (op::WRITE, 20),
        (op::SETATTR, 40),
        (op::GETXATTR, 3),
    ] {
        let req = encode_request(opcode, 20, ROOT, 0, 0, &vec![0; len]);
        assert_eq!(err_of(&c.raw(&req)), (20, libc::EINVAL), "opcode {opcode}");
    }
    let mut req = encode_request(op::LOOKUP, 21, ROOT, 0, 0, &cstr(b"a"));
    req[36] = 10;
    assert_eq!(err_of(&c.raw(&req)), (21, libc::EINVAL));
    // A WRITE whose size disagrees with its payload writes nothing.
    let id = c.lookup(ROOT, b"a").unwrap().nodeid;
    let fh = c.open(id, RDWR).unwrap().fh;
    for size in [100, 1] {
        let w = abi::WriteIn {
            fh,
            size,
            ..Default::default()
        };
        let req = encode_request(op::WRITE, 22, id, 0, 0, &cat(&[&w.to_bytes(), b"XYZ"]));
        assert_eq!(err_of(&c.raw(&req)), (22, libc::EINVAL), "size {size}");
    }
    assert_eq!(std::fs::read(f.host("a")).unwrap(), b"data");
    still_works(c);
    // Unknown and unimplemented opcodes: ENOSYS (POSIX locks stay local to the guest).
    for opcode in [
        9999,
        7,
        u32::MAX,
        op::GETLK,
        op::SETLK,
        op::SETLKW,
        op::BMAP,
        op::IOCTL,
        op::POLL,
        op::STATX,
    ] {
        let req = encode_request(opcode, 30, ROOT, 0, 0, &[0; 64]);
        assert_eq!(err_of(&c.raw(&req)), (30, libc::ENOSYS), "opcode {opcode}");
    }
    // INTERRUPT is never answered.
    let req = encode_request(
        op::INTERRUPT,
        31,
        0,
        0,
        0,
        &abi::InterruptIn { unique: 30 }.to_bytes(),
    );
    assert!(c.raw(&req).is_empty());
    // Unknown node ids, whatever the operation.
    assert_eq!(c.getattr(424242, None).unwrap_err(), libc::EBADF);
    assert_eq!(c.lookup(0, b"a").unwrap_err(), libc::EBADF);
    assert_eq!(c.read(424242, fh, 0, 4).unwrap_err(), libc::EBADF);
    assert_eq!(c.read(id, fh, 0, 4).unwrap(), b"data");
    still_works(c);
}

#[test]
fn huge_counts_are_bounded() {
    let f = start("fuse-huge", &[]);
    let data: Vec<u8> = (0..(3 << 19)).map(|i: u32| (i % 253) as u8).collect();
    std::fs::write(f.host("big"), &data).unwrap();
    let id = f.c.lookup(ROOT, b"big").unwrap().nodeid;
    let fh = f.c.open(id, RDWR).unwrap().fh;
    // READ of 4 GiB: max_write (1 MiB) at most.
    let got = f.c.read(id, fh, 0, u32::MAX).unwrap();
    assert_eq!(got.len(), abi::MAX_BUFFER_SIZE);
    assert_eq!(got, data[..abi::MAX_BUFFER_SIZE]);
    // ...and never more than the chain's writable buffers hold.
    let read = abi::ReadIn {
        fh,
        offset: 10,
        size: 10000,
        ..Default::default()
    };
    let reply =
        f.c.transport
            .call(
                &encode_request(op::READ, 3, id, 0, 0, &read.to_bytes()),
                16 + 4096,
            )
            .unwrap();
    let r = Reply::parse(&reply);
    assert_eq!((r.header.error, &r.body[..]), (0, &data[10..10 + 4096]));
    // A WRITE larger than the device takes in one request is refused whole.
    let w = abi::WriteIn {
        fh,
        size: len32(abi::MAX_BUFFER_SIZE + 4096),
        ..Default::default()
    };
    let payload = vec![0xeeu8; w.size as usize];
    let req = encode_request(op::WRITE, 4, id, 0, 0, &cat(&[&w.to_bytes(), &payload]));
    assert_eq!(err_of(&f.c.raw(&req)), (4, libc::EINVAL));
    // Even when its header claims only the part the device reads (1 MiB + 4 KiB):
    // the chain is longer than the header says.
    let size = (1 << 20) + 4096 - 80;
    let w = abi::WriteIn {
        fh,
        size: len32(size),
        ..Default::default()
    };
    let mut req = encode_request(
        op::WRITE,
        5,
        id,
        0,
        0,
        &cat(&[&w.to_bytes(), &payload[..size]]),
    );
    assert_eq!(req.len(), (1 << 20) + 4096);
    req.extend_from_slice(&[0xff; 100]);
    assert_eq!(err_of(&f.c.raw(&req)), (5, libc::EINVAL));
    assert_eq!(std::fs::read(f.host("big")).unwrap(), data);

    // BATCH_FORGET whose count lies about its entries is dropped whole: the node
    // keeps its lookup, nothing is answered.
    let hiprio = f.client_on(0);
    let batch = |count: u32| {
        let mut b = abi::BatchForgetIn { count, dummy: 0 }.to_bytes();
        abi::ForgetOne {
            nodeid: id,
            nlookup: 1,
        }
        .put(&mut b);
        encode_request(op::BATCH_FORGET, 5, 0, 0, 0, &b)
    };
    for count in [u32::MAX, 2, len32(abi::MAX_BATCH_FORGET + 1)] {
        assert!(hiprio.raw(&batch(count)).is_empty(), "count {count}");
        f.c.getattr(id, None).unwrap();
    }
    // A FORGET too short to hold its count is dropped too.
    let req = encode_request(op::FORGET, 6, id, 0, 0, &[1, 0, 0]);
    assert!(hiprio.raw(&req).is_empty());
    f.c.getattr(id, None).unwrap();
    // The honest batch forgets.
    assert!(hiprio.raw(&batch(1)).is_empty());
    assert_eq!(f.c.getattr(id, None).unwrap_err(), libc::EBADF);
    still_works(&f.c);
}

#[test]
fn chains_with_little_or_no_room_for_the_reply() {
    let f = start("fuse-room", &[]);
    std::fs::write(f.host("a"), b"").unwrap();
    let ram = |bytes: &[u8]| f.frontend.lock().unwrap().ram().alloc_bytes(bytes).unwrap();
    let lookup = encode_request(op::LOOKUP, 40, ROOT, 0, 0, &cstr(b"a"));
    let req = ram(&lookup);
    let readable = Buffer::readable(req, len32(lookup.len()));
    // No writable buffer at all: nothing can be written, the chain comes back empty.
    assert_eq!(f.chain(1, &[readable]), 0);
    still_works(&f.c);
    // Room for a header but not the entry: an ERANGE header.
    let small = ram(&[0xaa; 64]);
    assert_eq!(f.chain(1, &[readable, Buffer::writable(small, 64)]), 16);
    let reply = f.frontend.lock().unwrap().ram().read(small, 64).unwrap();
    assert_eq!(err_of(&reply[..16]), (40, libc::ERANGE));
    assert!(reply[16..].iter().all(|&b| b == 0xaa));
    // Not even room for a header: dropped, the buffer untouched.
    let tiny = ram(&[0xaa; 8]);
    assert_eq!(f.chain(1, &[readable, Buffer::writable(tiny, 8)]), 0);
    let reply = f.frontend.lock().unwrap().ram().read(tiny, 8).unwrap();
    assert_eq!(reply, [0xaa; 8]);
    still_works(&f.c);
    // Descriptors outside guest memory: the chain is returned unserved.
    let nowhere = vm_memory::GuestAddress(1 << 40);
    let mkdir = encode_request(
        op::MKDIR,
        41,
        ROOT,
        0,
        0,
        &cat(&[
            &abi::MkdirIn {
                mode: 0o755,
                umask: 0,
            }
            .to_bytes(),
            &cstr(b"never"),
        ]),
    );
    let mkdir_req = ram(&mkdir);
    let out = ram(&[0; 256]);
    let mkdir_readable = Buffer::readable(mkdir_req, len32(mkdir.len()));
    assert_eq!(
        f.chain(1, &[mkdir_readable, Buffer::writable(nowhere, 256)]),
        0
    );
    assert_eq!(
        f.chain(
            1,
            &[Buffer::readable(nowhere, 64), Buffer::writable(out, 256)]
        ),
        0
    );
    assert!(!f.host("never").exists());
    still_works(&f.c);
}

#[test]
fn requests_and_replies_scattered_over_descriptors() {
    let f = start("fuse-scatter", &[]);
    let (e, o) = f.c.create(ROOT, b"f", 0o644, RDWR).unwrap();
    let ram = |bytes: &[u8]| f.frontend.lock().unwrap().ram().alloc_bytes(bytes).unwrap();
    // A WRITE cut into pieces, mid-header and mid-payload.
    let payload: Vec<u8> = (0..10000u32).map(|i| (i % 241) as u8).collect();
    let w = abi::WriteIn {
        fh: o.fh,
        offset: 0,
        size: len32(payload.len()),
        ..Default::default()
    };
    let write = encode_request(
        op::WRITE,
        50,
        e.nodeid,
        0,
        0,
        &cat(&[&w.to_bytes(), &payload]),
    );
    let mut buffers = Vec::new();
    let mut rest = &write[..];
    for cut in [5, 30, 17, 4096, 1] {
        let (piece, tail) = rest.split_at(cut);
        buffers.push(Buffer::readable(ram(piece), len32(cut)));
        rest = tail;
    }
    buffers.push(Buffer::readable(ram(rest), len32(rest.len())));
    let out = ram(&[0; 64]);
    buffers.push(Buffer::writable(out, 64));
    assert_eq!(f.chain(1, &buffers), 24);
    let reply = f.frontend.lock().unwrap().ram().read(out, 24).unwrap();
    let r = Reply::parse(&reply);
    assert_eq!((r.header.unique, r.header.error), (50, 0));
    assert_eq!(abi::WriteOut::get(&r.body).size, 10000);
    assert_eq!(std::fs::read(f.host("f")).unwrap(), payload);
    // A READ reply spread over writable buffers of odd sizes, header split too.
    let read = encode_request(
        op::READ,
        51,
        e.nodeid,
        0,
        0,
        &abi::ReadIn {
            fh: o.fh,
            offset: 0,
            size: 10000,
            ..Default::default()
        }
        .to_bytes(),
    );
    let sizes = [7u32, 4096, 3, 5000, 2000];
    let outs: Vec<_> = sizes
        .iter()
        .map(|&n| ram(&vec![0xaa; n as usize]))
        .collect();
    let mut buffers = vec![Buffer::readable(ram(&read), len32(read.len()))];
    buffers.extend(outs.iter().zip(sizes).map(|(&a, n)| Buffer::writable(a, n)));
    assert_eq!(f.chain(1, &buffers), 16 + 10000);
    let mut reply = Vec::new();
    for (&a, n) in outs.iter().zip(sizes) {
        reply.extend(
            f.frontend
                .lock()
                .unwrap()
                .ram()
                .read(a, n as usize)
                .unwrap(),
        );
    }
    let (written, untouched) = reply.split_at(16 + 10000);
    let r = Reply::parse(written);
    assert_eq!((r.header.unique, r.header.error), (51, 0));
    assert_eq!(r.body, payload);
    assert!(untouched.iter().all(|&b| b == 0xaa));
    still_works(&f.c);
}

#[test]
fn a_second_request_queue_serves_the_same_session() {
    let f = start("fuse-queues", &["--queues", "2"]);
    let q2 = f.client_on(2);
    // No INIT of its own: the session is the device's.
    let (e, o) = q2.create(ROOT, b"from-q2", 0o644, RDWR).unwrap();
    q2.write(e.nodeid, o.fh, 0, b"two").unwrap();
    assert_eq!(f.c.lookup(ROOT, b"from-q2").unwrap().nodeid, e.nodeid);
    assert_eq!(f.c.read(e.nodeid, o.fh, 0, 10).unwrap(), b"two");
    assert_eq!(std::fs::read(f.host("from-q2")).unwrap(), b"two");
    // Errors there, and the queue goes on.
    assert_eq!(err_of(&q2.raw(&[1, 2, 3])), (0, libc::EINVAL));
    assert_eq!(q2.lookup(ROOT, b"missing").unwrap_err(), libc::ENOENT);
    still_works(&q2);
    // Both queues busy at once, each on its own files.
    std::thread::scope(|s| {
        for (q, c) in [(1, &f.c), (2, &q2)] {
            s.spawn(move || {
                for i in 0..50 {
                    let name = format!("q{q}-{i}");
                    let (e, o) = c.create(ROOT, name.as_bytes(), 0o644, RDWR).unwrap();
                    c.write(e.nodeid, o.fh, 0, name.as_bytes()).unwrap();
                    c.release(e.nodeid, o.fh).unwrap();
                }
            });
        }
    });
    for q in [1, 2] {
        for i in 0..50 {
            let name = format!("q{q}-{i}");
            assert_eq!(std::fs::read(f.host(&name)).unwrap(), name.as_bytes());
        }
    }
}

#[test]
fn many_requests_in_flight_on_one_queue() {
    let f = start("fuse-inflight", &[]);
    let (e, o) = f.c.create(ROOT, b"f", 0o644, RDWR).unwrap();
    // Eight WRITEs offered before any reply is collected; each reply names its request.
    let tickets: Vec<_> = (0..8u8)
        .map(|i| {
            let w = abi::WriteIn {
                fh: o.fh,
                offset: u64::from(i) * 4096,
                size: 4096,
                ..Default::default()
            };
            let body = cat(&[&w.to_bytes(), &[i + 1; 4096]]);
            let req = encode_request(op::WRITE, 1000 + u64::from(i), e.nodeid, 0, 0, &body);
            (i, f.c.transport.submit(&req, 64).unwrap())
        })
        .collect();
    for (i, ticket) in tickets.into_iter().rev() {
        let r = Reply::parse(&f.c.transport.wait(ticket).unwrap());
        assert_eq!((r.header.unique, r.header.error), (1000 + u64::from(i), 0));
        assert_eq!(abi::WriteOut::get(&r.body).size, 4096);
    }
    let host = std::fs::read(f.host("f")).unwrap();
    assert_eq!(host.len(), 8 * 4096);
    for (i, chunk) in host.chunks(4096).enumerate() {
        assert!(chunk.iter().all(|&b| usize::from(b) == i + 1), "chunk {i}");
    }
    still_works(&f.c);
}

#[test]
fn a_reply_left_uncollected_keeps_its_ticket() {
    let f = start("fuse-uncollected", &[]);
    let getattr = |unique: u64| {
        let body = abi::GetattrIn::default().to_bytes();
        encode_request(op::GETATTR, unique, ROOT, 0, 0, &body)
    };
    let wait = |ticket| Reply::parse(&f.c.transport.wait(ticket).unwrap()).header;
    // A comes back while a later call is waited on, and is left uncollected: its chain's
    // descriptors are free again, its reply is not.
    let a = f.c.transport.submit(&getattr(2000), 4096).unwrap();
    still_works(&f.c);
    let x = f.c.transport.submit(&getattr(2001), 4096).unwrap();
    let y = f.c.transport.submit(&getattr(2002), 4096).unwrap();
    assert_eq!((wait(x).unique, wait(y).unique), (2001, 2002));
    // The next request gets A's descriptors back; its wait must not take A's reply.
    let z = f.c.transport.submit(&getattr(2003), 4096).unwrap();
    let z = wait(z);
    assert_eq!((z.unique, z.error), (2003, 0));
    let a = wait(a);
    assert_eq!((a.unique, a.error), (2000, 0));
    still_works(&f.c);
}

#[test]
fn a_head_past_the_descriptor_table_does_not_end_the_queue() {
    let f = start("fuse-bad-head", &[]);
    // Queue size 256 (our frontend's default): heads 256 and up name no descriptor.
    for head in [256u16, 1000, u16::MAX] {
        f.frontend.lock().unwrap().submit_raw_head(1, head).unwrap();
    }
    // The queue goes on serving the requests behind them.
    still_works(&f.c);
    assert_eq!(f.c.lookup(ROOT, b"missing").unwrap_err(), libc::ENOENT);
}

#[test]
fn a_name_with_bytes_after_its_nul_is_not_the_shorter_name() {
    let f = start("fuse-name-junk", &[]);
    std::fs::write(f.host("ro.txt"), b"x").unwrap();
    let c = &f.c;
    // `ro.txt\0junk` used to be looked up (and unlinked) as `ro.txt`.
    for (opcode, body) in [
        (op::LOOKUP, cat(&[b"ro.txt\0junk"])),
        (op::UNLINK, cat(&[b"ro.txt\0junk"])),
        (
            op::MKDIR,
            cat(&[
                &abi::MkdirIn {
                    mode: 0o755,
                    umask: 0,
                }
                .to_bytes(),
                b"d\0junk",
            ]),
        ),
    ] {
        let reply = c.raw(&encode_request(opcode, 61, ROOT, 0, 0, &body));
        assert_eq!(err_of(&reply), (61, libc::EINVAL), "opcode {opcode}");
    }
    assert!(f.host("ro.txt").exists(), "nothing was unlinked");
    assert!(!f.host("d").exists(), "nothing was created");
    still_works(c);
}

#[test]
fn a_write_larger_than_max_write_is_refused() {
    let f = start("fuse-write-max", &[]);
    let c = &f.c;
    let (e, o) = c.create(ROOT, b"w", 0o644, RDWR).unwrap();
    let max = vhost_dax::fuse::abi::MAX_WRITE as usize;
    assert!(c.write(e.nodeid, o.fh, 0, &vec![1u8; max]).is_ok());
    assert_eq!(
        c.write(e.nodeid, o.fh, 0, &vec![2u8; max + 1]).unwrap_err(),
        libc::EINVAL
    );
    assert_eq!(std::fs::read(f.host("w")).unwrap(), vec![1u8; max]);
    still_works(c);
}
