//! The virtio-pmem request parser (virtio 1.2 §5.19.6) on descriptors and guest memory
//! the fuzzer chooses.

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::Input;
use crate::device::pmem::VIRTIO_PMEM_REQ_TYPE_FLUSH;
use crate::device::pmem::request::{Desc, Request, parse_descs};

/// Guest memory: two 4 KiB regions with a hole between them.
const REGIONS: [(u64, usize); 2] = [(0, 0x1000), (0x3000, 0x1000)];

/// Parses the chain `data` describes: a descriptor count byte, per descriptor a u16
/// address (the top bit moves it to the second region), a u8 length and a flags byte (bit
/// 0: device-writable), then the bytes of guest memory from address 0 on.
///
/// Checks: a status is written only into the first device-writable descriptor, and only
/// when it has 4 bytes inside guest memory; a FLUSH only when the first 4 device-readable
/// bytes say FLUSH and no device-readable descriptor follows a writable one.
///
/// # Panics
///
/// When an invariant breaks.
pub fn pmem_request(data: &[u8]) {
    let mut input = Input::new(data);
    let count = usize::from(input.u8() % 16);
    let descs: Vec<Desc> = (0..count)
        .map(|_| {
            let addr = input.u16();
            let len = input.u8();
            let flags = input.u8();
            let addr = if addr & 0x8000 != 0 {
                REGIONS[1].0 + u64::from(addr & 0x7fff)
            } else {
                u64::from(addr)
            };
            Desc {
                addr: GuestAddress(addr),
                len: u32::from(len),
                writable: flags & 1 == 1,
            }
        })
        .collect();
    let ranges: Vec<(GuestAddress, usize)> =
        REGIONS.iter().map(|&(a, l)| (GuestAddress(a), l)).collect();
    let mem = GuestMemoryMmap::from_ranges(&ranges).expect("fuzz: guest memory");
    let bytes = input.rest();
    let fill = bytes.len().min(REGIONS[0].1);
    mem.write_slice(&bytes[..fill], GuestAddress(0))
        .expect("fuzz: fill guest memory");

    let request = parse_descs(&mem, &descs);
    let status = match &request {
        Request::Flush { status } => Some(*status),
        Request::Invalid { status, .. } => *status,
    };
    if let Some(status) = status {
        let first = descs
            .iter()
            .find(|d| d.writable)
            .expect("a status without a writable descriptor");
        assert_eq!(status, first.addr, "the status is not the first writable");
        assert!(
            first.len >= 4,
            "a status in a descriptor of {} bytes",
            first.len
        );
        assert!(mem.check_range(status, 4), "a status outside guest memory");
    }
    if let Request::Flush { .. } = request {
        let mut word = Vec::new();
        for d in descs.iter().take_while(|d| !d.writable) {
            let want = (4 - word.len()).min(usize::try_from(d.len).unwrap_or(usize::MAX));
            let mut buf = vec![0u8; want];
            mem.read_slice(&mut buf, d.addr)
                .expect("a FLUSH read from outside guest memory");
            word.extend_from_slice(&buf);
            if word.len() == 4 {
                break;
            }
        }
        assert_eq!(
            word,
            VIRTIO_PMEM_REQ_TYPE_FLUSH.to_le_bytes(),
            "a FLUSH whose type is not FLUSH"
        );
        assert!(
            !descs
                .iter()
                .skip_while(|d| !d.writable)
                .any(|d| !d.writable),
            "a FLUSH with a readable descriptor after a writable one"
        );
    }
}
