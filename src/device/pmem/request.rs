//! Parsing a virtio-pmem request (virtio 1.2 §5.19.6) from the descriptors of its chain,
//! before anything is executed: a FLUSH with the address of its status, or an invalid
//! request with the status address (if the chain has one) and why it was refused.

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use super::VIRTIO_PMEM_REQ_TYPE_FLUSH;

/// One parsed request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// A FLUSH; its status goes to `status`.
    Flush {
        /// Where the 4-byte status is written.
        status: GuestAddress,
    },
    /// Anything else: answered EIO at `status` if the chain has room for one.
    Invalid {
        /// Where the 4-byte status is written, if anywhere.
        status: Option<GuestAddress>,
        /// Why the request was refused, for the log.
        reason: String,
    },
}

/// Parses one chain (virtio 1.2 §5.19.6): a device-readable `le32 type`, then a
/// device-writable `le32 ret`. The status goes into the first writable descriptor, which
/// must hold 4 bytes.
pub(crate) fn parse_request<M>(chain: DescriptorChain<M>) -> Request
where
    M: std::ops::Deref<Target = GuestMemoryMmap> + Clone,
{
    let mem = chain.memory().clone();
    let descs: Vec<Desc> = chain
        .map(|d| Desc {
            addr: d.addr(),
            len: d.len(),
            writable: d.is_write_only(),
        })
        .collect();
    parse_descs(&mem, &descs)
}

/// One descriptor of a chain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Desc {
    /// Guest-physical address.
    pub(crate) addr: GuestAddress,
    /// Length in bytes.
    pub(crate) len: u32,
    /// Device-writable.
    pub(crate) writable: bool,
}

/// [`parse_request`] on the descriptors of a chain, in order.
pub(crate) fn parse_descs(mem: &GuestMemoryMmap, descs: &[Desc]) -> Request {
    let mut request_type: Option<u32> = None;
    let mut readable = Vec::new();
    let mut status = None;
    let mut misordered = false;
    let mut unreadable = false;
    for desc in descs {
        if desc.writable {
            if status.is_none() {
                status = Some((desc.addr, desc.len));
            }
        } else if status.is_some() {
            misordered = true;
        } else if readable.len() < 4 && !unreadable {
            let want = (4 - readable.len()).min(desc.len as usize);
            let mut buf = vec![0u8; want];
            // Bytes after one that cannot be read are not the request's next bytes.
            match mem.read_slice(&mut buf, desc.addr) {
                Ok(()) => readable.extend_from_slice(&buf),
                Err(_) => unreadable = true,
            }
        }
    }
    if readable.len() == 4 {
        request_type = Some(u32::from_le_bytes([
            readable[0],
            readable[1],
            readable[2],
            readable[3],
        ]));
    }
    let status = match status {
        Some((addr, len)) if len >= 4 && mem.check_range(addr, 4) => Some(addr),
        _ => None,
    };
    let reason = if misordered {
        "a device-readable descriptor follows a writable one".to_string()
    } else {
        match request_type {
            Some(VIRTIO_PMEM_REQ_TYPE_FLUSH) => match status {
                Some(status) => return Request::Flush { status },
                None => "no writable descriptor of at least 4 bytes".to_string(),
            },
            Some(other) => format!("unknown request type {other}"),
            None if unreadable => "request outside guest memory".to_string(),
            None => "request shorter than 4 readable bytes".to_string(),
        }
    };
    Request::Invalid { status, reason }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    use super::*;

    const MEM: u64 = 0x1000;

    fn memory(type_word: u32) -> GuestMemoryMmap {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), usize::try_from(MEM).unwrap())])
            .unwrap();
        mem.write_obj(type_word.to_le(), GuestAddress(0x100))
            .unwrap();
        mem
    }

    fn r(addr: u64, len: u32) -> Desc {
        Desc {
            addr: GuestAddress(addr),
            len,
            writable: false,
        }
    }

    fn w(addr: u64, len: u32) -> Desc {
        Desc {
            addr: GuestAddress(addr),
            len,
            writable: true,
        }
    }

    fn reason(req: Request) -> String {
        match req {
            Request::Invalid { reason, .. } => reason,
            Request::Flush { .. } => "flush".into(),
        }
    }

    #[test]
    fn each_chain_shape_gets_its_answer() {
        let flush = memory(VIRTIO_PMEM_REQ_TYPE_FLUSH);
        let status = GuestAddress(0x200);
        let cases: Vec<(&str, &GuestMemoryMmap, Vec<Desc>, Request)> = vec![
            (
                "a flush",
                &flush,
                vec![r(0x100, 4), w(0x200, 4)],
                Request::Flush { status },
            ),
            (
                "the type split over two descriptors",
                &flush,
                vec![r(0x100, 2), r(0x102, 2), w(0x200, 4)],
                Request::Flush { status },
            ),
            (
                "a larger status buffer",
                &flush,
                vec![r(0x100, 8), w(0x200, 64)],
                Request::Flush { status },
            ),
        ];
        for (what, mem, descs, want) in cases {
            assert_eq!(parse_descs(mem, &descs), want, "{what}");
        }
        let invalid: Vec<(&str, Vec<Desc>, Option<GuestAddress>, &str)> = vec![
            ("no descriptors", vec![], None, "shorter than 4"),
            (
                "short type",
                vec![r(0x100, 3), w(0x200, 4)],
                Some(status),
                "shorter than 4",
            ),
            (
                "no status",
                vec![r(0x100, 4)],
                None,
                "no writable descriptor",
            ),
            (
                "status too small",
                vec![r(0x100, 4), w(0x200, 3)],
                None,
                "no writable",
            ),
            (
                "status outside memory",
                vec![r(0x100, 4), w(MEM - 2, 4)],
                None,
                "no writable",
            ),
            (
                "readable after writable",
                vec![w(0x200, 4), r(0x100, 4)],
                Some(status),
                "follows a writable",
            ),
            (
                "type outside memory",
                vec![r(MEM + 0x10, 4), w(0x200, 4)],
                Some(status),
                "outside guest memory",
            ),
            (
                "unreadable then readable bytes are not a type",
                vec![r(MEM, 2), r(0x100, 4), w(0x200, 4)],
                Some(status),
                "outside guest memory",
            ),
        ];
        for (what, descs, want_status, want_reason) in invalid {
            match parse_descs(&flush, &descs) {
                Request::Invalid { status, reason } => {
                    assert_eq!(status, want_status, "{what}");
                    assert!(reason.contains(want_reason), "{what}: {reason}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
        assert!(reason(parse_descs(&memory(7), &[r(0x100, 4), w(0x200, 4)])).contains("type 7"));
    }

    fn desc() -> impl Strategy<Value = Desc> {
        (0..MEM + 0x40, 0u32..12, any::<bool>()).prop_map(|(addr, len, writable)| Desc {
            addr: GuestAddress(addr),
            len,
            writable,
        })
    }

    proptest! {
        /// Whatever the chain: a status is only ever written where the chain's first
        /// writable descriptor has 4 bytes inside guest memory, and a FLUSH is only
        /// answered as one when the request's first 4 bytes say FLUSH.
        #[test]
        fn any_chain_is_parsed_safely(
            type_word in prop_oneof![Just(0u32), any::<u32>()],
            descs in prop::collection::vec(desc(), 0..6),
        ) {
            let mem = memory(type_word);
            let req = parse_descs(&mem, &descs);
            let first_writable = descs.iter().find(|d| d.writable);
            let status = match &req {
                Request::Flush { status } => Some(*status),
                Request::Invalid { status, .. } => *status,
            };
            if let Some(status) = status {
                let d = first_writable.expect("a status needs a writable descriptor");
                prop_assert_eq!(status, d.addr);
                prop_assert!(d.len >= 4);
                prop_assert!(d.addr.0 + 4 <= MEM);
            }
            if let Request::Flush { .. } = req {
                let mut bytes = Vec::new();
                for d in descs.iter().take_while(|d| !d.writable) {
                    let want = (4 - bytes.len()).min(d.len as usize);
                    let mut buf = vec![0u8; want];
                    mem.read_slice(&mut buf, d.addr).unwrap();
                    bytes.extend_from_slice(&buf);
                    if bytes.len() == 4 {
                        break;
                    }
                }
                prop_assert_eq!(bytes, VIRTIO_PMEM_REQ_TYPE_FLUSH.to_le_bytes().to_vec());
                prop_assert!(!descs.iter().skip_while(|d| !d.writable).any(|d| !d.writable));
            }
        }
    }
}
