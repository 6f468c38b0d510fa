//! READ and WRITE payloads, which move between the host file and guest memory directly
//! (preadv into the chain's writable buffers, pwritev from its readable ones): descriptors
//! of odd sizes with the headers cut anywhere, a read short at end of file, less reply
//! room than asked, payload lengths that disagree with the headers, and descriptors outside
//! guest memory — which leave the file and guest memory as they were.

use vhost_dax::frontend::Buffer;
use vhost_dax::fuse::abi::opcode as op;
use vhost_dax::fuse::testing::{Reply, cat, encode_request};
use vm_memory::GuestAddress;

use super::support::*;

/// A test length as the u32 a descriptor or FUSE field carries.
fn len32(n: usize) -> u32 {
    u32::try_from(n).expect("test lengths fit u32")
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..=250u8).cycle().take(n).map(|b| b ^ seed).collect()
}

/// A guest buffer holding `bytes`.
fn ram(f: &Fs, bytes: &[u8]) -> GuestAddress {
    f.frontend.lock().unwrap().ram().alloc_bytes(bytes).unwrap()
}

fn read_ram(f: &Fs, at: GuestAddress, len: usize) -> Vec<u8> {
    f.frontend.lock().unwrap().ram().read(at, len).unwrap()
}

fn write_request(unique: u64, node: u64, fh: u64, offset: u64, data: &[u8]) -> Vec<u8> {
    let w = abi::WriteIn {
        fh,
        offset,
        size: len32(data.len()),
        ..Default::default()
    };
    encode_request(op::WRITE, unique, node, 0, 0, &cat(&[&w.to_bytes(), data]))
}

fn read_request(unique: u64, node: u64, fh: u64, offset: u64, size: u32) -> Vec<u8> {
    let r = abi::ReadIn {
        fh,
        offset,
        size,
        ..Default::default()
    };
    encode_request(op::READ, unique, node, 0, 0, &r.to_bytes())
}

/// `bytes` cut into readable buffers of the sizes in `cuts` (the rest in a last one).
fn readable_pieces(f: &Fs, bytes: &[u8], cuts: &[usize]) -> Vec<Buffer> {
    let mut out = Vec::new();
    let mut rest = bytes;
    for &cut in cuts {
        let (piece, tail) = rest.split_at(cut);
        out.push(Buffer::readable(ram(f, piece), len32(cut)));
        rest = tail;
    }
    out.push(Buffer::readable(ram(f, rest), len32(rest.len())));
    out
}

/// (unique, positive errno) of an error reply.
fn err_of(reply: &[u8]) -> (u64, i32) {
    let r = Reply::parse(reply);
    (r.header.unique, -r.header.error)
}

#[test]
fn a_write_and_a_read_over_odd_descriptors_end_short_at_end_of_file() {
    let f = start("fuse-payload-odd", &[]);
    let (e, o) = f.c.create(ROOT, b"f", 0o644, RDWR).unwrap();
    let data = pattern(70_000, 0x5a);
    // The 80 header bytes end exactly at a descriptor boundary, then odd pieces.
    let write = write_request(60, e.nodeid, o.fh, 0, &data);
    let mut chain = readable_pieces(&f, &write, &[1, 79, 3, 65_536, 7]);
    let out = ram(&f, &[0; 24]);
    chain.push(Buffer::writable(out, 24));
    assert_eq!(f.chain(1, &chain), 24);
    let r = Reply::parse(&read_ram(&f, out, 24));
    assert_eq!((r.header.unique, r.header.error), (60, 0));
    assert_eq!(abi::WriteOut::get(&r.body).size, 70_000);
    assert_eq!(std::fs::read(f.host("f")).unwrap(), data);
    // A READ of more than is left: the header split 5 + 11, the data over odd pieces.
    let read = read_request(61, e.nodeid, o.fh, 1000, 100_000);
    let sizes = [5usize, 11, 4096 * 3 + 1, 2, 99_999];
    let outs: Vec<_> = sizes.iter().map(|&n| ram(&f, &vec![0xaa; n])).collect();
    let mut chain = vec![Buffer::readable(ram(&f, &read), len32(read.len()))];
    chain.extend(
        outs.iter()
            .zip(sizes)
            .map(|(&a, n)| Buffer::writable(a, len32(n))),
    );
    assert_eq!(f.chain(1, &chain), len32(16 + 69_000));
    let reply: Vec<u8> = outs
        .iter()
        .zip(sizes)
        .flat_map(|(&a, n)| read_ram(&f, a, n))
        .collect();
    let (written, untouched) = reply.split_at(16 + 69_000);
    let r = Reply::parse(written);
    assert_eq!((r.header.unique, r.header.error), (61, 0));
    assert_eq!(r.body, data[1000..]);
    assert!(
        untouched.iter().all(|&b| b == 0xaa),
        "nothing past the data"
    );
    // At end of file: a header and no data.
    let read = read_request(62, e.nodeid, o.fh, 70_000, 4096);
    let out = ram(&f, &[0xaa; 4096 + 16]);
    let chain = [
        Buffer::readable(ram(&f, &read), len32(read.len())),
        Buffer::writable(out, 4096 + 16),
    ];
    assert_eq!(f.chain(1, &chain), 16);
}

#[test]
fn a_read_with_less_room_than_asked_is_cut_to_the_room() {
    let f = start("fuse-payload-room", &[]);
    let data = pattern(8192, 1);
    std::fs::write(f.host("r"), &data).unwrap();
    let e = f.c.lookup(ROOT, b"r").unwrap();
    let o = f.c.open(e.nodeid, RDONLY).unwrap();
    let read = read_request(63, e.nodeid, o.fh, 0, 8192);
    let out = ram(&f, &[0xaa; 116]);
    let chain = [
        Buffer::readable(ram(&f, &read), len32(read.len())),
        Buffer::writable(out, 116),
    ];
    assert_eq!(f.chain(1, &chain), 116);
    let r = Reply::parse(&read_ram(&f, out, 116));
    assert_eq!((r.header.unique, r.header.error), (63, 0));
    assert_eq!(r.body, data[..100]);
}

#[test]
fn a_payload_that_disagrees_with_its_headers_is_refused_and_writes_nothing() {
    let f = start("fuse-payload-size", &[]);
    let (e, o) = f.c.create(ROOT, b"w", 0o644, RDWR).unwrap();
    std::fs::write(f.host("w"), b"kept").unwrap();
    let data = pattern(100, 2);
    // fuse_write_in.size says 100, 50 bytes follow (the in header agrees with them).
    let mut short = write_request(64, e.nodeid, o.fh, 0, &data);
    short.truncate(short.len() - 50);
    let len = len32(short.len());
    short[..4].copy_from_slice(&len.to_le_bytes());
    // The in header claims 100 bytes more than the chain carries.
    let mut long = write_request(65, e.nodeid, o.fh, 0, &data);
    let claimed = len32(long.len() + 100);
    long[..4].copy_from_slice(&claimed.to_le_bytes());
    for (unique, request) in [(64, short), (65, long)] {
        let mut chain = readable_pieces(&f, &request, &[80]);
        let out = ram(&f, &[0; 16]);
        chain.push(Buffer::writable(out, 16));
        assert_eq!(f.chain(1, &chain), 16);
        assert_eq!(err_of(&read_ram(&f, out, 16)), (unique, libc::EINVAL));
    }
    assert_eq!(std::fs::read(f.host("w")).unwrap(), b"kept");
    f.c.getattr(ROOT, None).expect("the queue still works");
}

#[test]
fn a_payload_descriptor_outside_guest_memory_changes_nothing() {
    let f = start("fuse-payload-nowhere", &[]);
    let (e, o) = f.c.create(ROOT, b"n", 0o644, RDWR).unwrap();
    std::fs::write(f.host("n"), b"before").unwrap();
    let nowhere = GuestAddress(1 << 40);
    // A WRITE whose headers are fine and whose payload is nowhere: returned unserved.
    let write = write_request(66, e.nodeid, o.fh, 0, &[7; 4096]);
    let out = ram(&f, &[0xaa; 24]);
    let chain = [
        Buffer::readable(ram(&f, &write[..80]), 80),
        Buffer::readable(nowhere, 4096),
        Buffer::writable(out, 24),
    ];
    assert_eq!(f.chain(1, &chain), 0);
    assert_eq!(read_ram(&f, out, 24), [0xaa; 24]);
    assert_eq!(std::fs::read(f.host("n")).unwrap(), b"before");
    // A READ whose reply header fits but whose data room is nowhere: returned unserved,
    // the header's room untouched.
    let read = read_request(67, e.nodeid, o.fh, 0, 4096);
    let head = ram(&f, &[0xaa; 16]);
    let chain = [
        Buffer::readable(ram(&f, &read), len32(read.len())),
        Buffer::writable(head, 16),
        Buffer::writable(nowhere, 4096),
    ];
    assert_eq!(f.chain(1, &chain), 0);
    assert_eq!(read_ram(&f, head, 16), [0xaa; 16]);
    f.c.getattr(ROOT, None).expect("the queue still works");
}
