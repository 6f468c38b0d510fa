//! Descriptor chains: a split virtqueue (virtio 1.2 §2.7) laid out in guest memory by the
//! fuzzer, its chains popped as the queue threads pop them, resolved into buffers
//! ([`ChainBuffers::resolve`]) and moved through their cursors, to and from a host file
//! too (`preadv` / `pwritev` on guest memory).

use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::Input;
use crate::device::chain::ChainBuffers;

/// Guest memory: two 64 KiB regions with a hole between them.
const REGIONS: [(u64, usize); 2] = [(0, 0x1_0000), (0x2_0000, 0x1_0000)];
/// Where the queue's parts go.
const DESC_TABLE: u64 = 0;
const AVAIL_RING: u64 = 0x1000;
const USED_RING: u64 = 0x2000;
/// Where the rest of the input goes (indirect tables, request bytes).
const DATA: u64 = 0x3000;

/// Lays out the queue `data` describes and serves its chains: a queue size byte (a power
/// of two, 1 to 32), a u16 avail index, per descriptor a u32 address, a u32 length, u16
/// flags and u16 next, then one u16 avail ring entry per descriptor, then bytes copied
/// into guest memory at 0x3000 (for indirect tables and contents).
///
/// Checks, for every chain popped: it resolves exactly when every non-empty descriptor
/// lies in guest memory; the buffers' lengths are the sums of their descriptors'; the
/// readable cursor gives the descriptors' bytes in order, whole or in pieces; a file
/// written from the readable side holds those bytes; bytes copied or read from a file into
/// the writable side land in its descriptors (when they do not overlap); used entries go
/// back for every head within the ring.
///
/// # Panics
///
/// When an invariant breaks.
pub fn descriptor_chain(data: &[u8]) {
    let mut input = Input::new(data);
    let size = 1u16 << (input.u8() % 6);
    let avail_idx = input.u16();
    let ranges: Vec<(GuestAddress, usize)> =
        REGIONS.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
    let mem = GuestMemoryMmap::from_ranges(&ranges).expect("fuzz: guest memory");
    for i in 0..u64::from(size) {
        let addr = u64::from(input.u32());
        let len = input.u32();
        let flags = input.u16();
        let next = input.u16();
        let mut raw = Vec::with_capacity(16);
        raw.extend_from_slice(&addr.to_le_bytes());
        raw.extend_from_slice(&len.to_le_bytes());
        raw.extend_from_slice(&flags.to_le_bytes());
        raw.extend_from_slice(&next.to_le_bytes());
        mem.write_slice(&raw, GuestAddress(DESC_TABLE + 16 * i))
            .expect("fuzz: descriptor table");
    }
    // avail: flags, idx, ring[size]
    mem.write_obj(0u16, GuestAddress(AVAIL_RING))
        .expect("fuzz: avail flags");
    mem.write_obj(avail_idx.to_le(), GuestAddress(AVAIL_RING + 2))
        .expect("fuzz: avail idx");
    for i in 0..u64::from(size) {
        mem.write_obj(input.u16().to_le(), GuestAddress(AVAIL_RING + 4 + 2 * i))
            .expect("fuzz: avail ring");
    }
    let rest = input.rest();
    let fill = rest.len().min(REGIONS[0].1 - 0x3000);
    mem.write_slice(&rest[..fill], GuestAddress(DATA))
        .expect("fuzz: data");

    let mut queue = Queue::new(32).expect("fuzz: queue");
    queue.set_size(size);
    let low = |addr: u64| u32::try_from(addr).ok();
    queue.set_desc_table_address(low(DESC_TABLE), Some(0));
    queue.set_avail_ring_address(low(AVAIL_RING), Some(0));
    queue.set_used_ring_address(low(USED_RING), Some(0));
    queue.set_ready(true);
    assert!(queue.is_valid(&mem), "fuzz: the queue layout is invalid");

    let mut served = 0u16;
    let mut returned = 0u16;
    while let Some(chain) = queue.pop_descriptor_chain(&mem) {
        let head = chain.head_index();
        let descs: Vec<Descriptor> = chain.clone().collect();
        let used = check_chain(&mem, &descs, ChainBuffers::resolve(chain, &mem));
        // A head the driver made up (past the ring) cannot be returned: the device logs
        // it and goes on. Any other head must go back.
        match queue.add_used(&mem, head, used) {
            Ok(()) => returned = returned.wrapping_add(1),
            Err(e) => assert!(head >= size, "head {head} of {size} not returned: {e}"),
        }
        served = served.wrapping_add(1);
        // The ring holds at most `size` new entries per pass; a made-up avail index
        // cannot make the queue hand out more than that before it wraps.
        if served > 4 * size {
            break;
        }
    }
    let used_idx = queue
        .used_idx(&mem, std::sync::atomic::Ordering::Acquire)
        .expect("fuzz: used idx");
    assert_eq!(
        used_idx.0, returned,
        "used entries and chains returned differ"
    );
}

/// Checks one resolved chain against its descriptors; returns the bytes written.
fn check_chain(
    mem: &GuestMemoryMmap,
    descs: &[Descriptor],
    resolved: Result<ChainBuffers<'_>, crate::device::chain::ChainError>,
) -> u32 {
    let in_memory = |d: &Descriptor| {
        d.len() == 0 || usize::try_from(d.len()).is_ok_and(|len| mem.check_range(d.addr(), len))
    };
    let all_in = descs.iter().all(in_memory);
    let Ok(buffers) = resolved else {
        assert!(!all_in, "a chain inside guest memory did not resolve");
        return 0;
    };
    assert!(
        descs.iter().filter(|d| d.len() > 0).all(in_memory),
        "a chain reaching outside guest memory resolved"
    );
    let (readable, writable): (Vec<&Descriptor>, Vec<&Descriptor>) =
        descs.iter().partition(|d| !d.is_write_only());
    let total = |ds: &[&Descriptor]| -> usize {
        ds.iter()
            .map(|d| usize::try_from(d.len()).unwrap_or(usize::MAX))
            .sum()
    };
    assert_eq!(buffers.readable.len(), total(&readable), "readable length");
    assert_eq!(buffers.writable.len(), total(&writable), "writable length");

    // The request bytes, read descriptor by descriptor.
    let mut want = Vec::with_capacity(buffers.readable.len());
    for d in &readable {
        let mut buf = vec![0u8; usize::try_from(d.len()).unwrap_or(0)];
        mem.read_slice(&mut buf, d.addr())
            .expect("fuzz: a resolved descriptor is readable");
        want.extend_from_slice(&buf);
    }
    let mut whole = vec![0u8; want.len()];
    assert_eq!(buffers.readable.cursor().copy_out(&mut whole), want.len());
    assert_eq!(
        whole, want,
        "the cursor's bytes differ from the descriptors'"
    );
    // In pieces of 1 to 7 bytes, skipping every fourth piece.
    let mut cursor = buffers.readable.cursor();
    let mut at = 0;
    let mut piece = 0;
    while cursor.remaining() > 0 {
        let n = (piece % 7 + 1).min(cursor.remaining());
        if piece % 4 == 3 {
            cursor.advance(n);
        } else {
            let mut buf = vec![0u8; n];
            assert_eq!(cursor.copy_out(&mut buf), n);
            assert_eq!(buf, want[at..at + n], "a piece at {at} differs");
        }
        at += n;
        piece += 1;
    }
    assert_eq!(at, want.len());

    // The readable side into a file, and that file back into the writable side.
    let mut file = crate::sys::memfd("fuzz-chain", 0).expect("fuzz: memfd");
    let mut cursor = buffers.readable.cursor();
    let mut written = 0usize;
    while cursor.remaining() > 0 {
        let n = crate::fuse::ZeroCopyReader::read_to(
            &mut cursor,
            file.as_fd(),
            u64::try_from(written).unwrap_or(u64::MAX),
            usize::MAX,
        )
        .expect("pwritev from guest memory failed");
        assert!(n > 0, "pwritev made no progress");
        written += n;
    }
    let mut back = Vec::new();
    file.rewind().expect("fuzz: rewind");
    file.read_to_end(&mut back).expect("fuzz: read back");
    assert_eq!(back, want, "the file holds other bytes than the chain's");

    let pattern: Vec<u8> = (0..buffers.writable.len())
        .map(|i| u8::try_from(i % 251).unwrap_or(0))
        .collect();
    file.set_len(0).expect("fuzz: truncate");
    file.rewind().expect("fuzz: rewind");
    file.write_all(&pattern).expect("fuzz: pattern");
    let mut cursor = buffers.writable.cursor();
    let mut placed = 0usize;
    // A header copied in first, then file bytes behind it, as a READ reply goes.
    let header = pattern.len().min(16);
    assert_eq!(cursor.copy_in(&pattern[..header]), header);
    placed += header;
    while cursor.remaining() > 0 {
        let n = crate::fuse::ZeroCopyWriter::write_from(
            &mut cursor,
            file.as_fd(),
            u64::try_from(placed).unwrap_or(u64::MAX),
            usize::MAX,
        )
        .expect("preadv into guest memory failed");
        assert!(n > 0, "preadv made no progress");
        placed += n;
    }
    if !overlap(&writable) {
        let mut at = 0;
        for d in &writable {
            let len = usize::try_from(d.len()).unwrap_or(0);
            let mut got = vec![0u8; len];
            mem.read_slice(&mut got, d.addr())
                .expect("fuzz: a resolved descriptor is readable");
            assert_eq!(got, pattern[at..at + len], "writable bytes at {at} differ");
            at += len;
        }
    }
    u32::try_from(placed).unwrap_or(0)
}

/// Whether two of `descs` share a byte.
fn overlap(descs: &[&Descriptor]) -> bool {
    descs.iter().enumerate().any(|(i, a)| {
        descs[i + 1..].iter().any(|b| {
            let (a0, a1) = (a.addr().0, a.addr().0 + u64::from(a.len()));
            let (b0, b1) = (b.addr().0, b.addr().0 + u64::from(b.len()));
            a0 < b1 && b0 < a1
        })
    })
}
