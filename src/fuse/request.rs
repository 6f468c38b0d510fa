//! Encoding FUSE requests as the Linux kernel lays them out: the in-header and the
//! argument bytes of the requests a driver sends. One encoder for every driver of ours —
//! the test client (`fuse::testing`), the bench's lean driver and anyone embedding our
//! frontend.

use super::abi::{self, InHeader, Wire};

/// Who sends a request (the header's credentials).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caller {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id.
    pub pid: u32,
}

/// The in-header of a request whose arguments (after the header) take `args_len` bytes;
/// `None` if the whole request would not fit the header's u32 length.
pub fn header(
    opcode: u32,
    unique: u64,
    nodeid: u64,
    caller: Caller,
    args_len: usize,
) -> Option<InHeader> {
    let len = u32::try_from(InHeader::SIZE.checked_add(args_len)?).ok()?;
    Some(InHeader {
        len,
        opcode,
        unique,
        nodeid,
        uid: caller.uid,
        gid: caller.gid,
        pid: caller.pid,
        total_extlen: 0,
        padding: 0,
    })
}

/// A whole request: the header followed by `args`, concatenated; `None` if too long.
pub fn encode(
    opcode: u32,
    unique: u64,
    nodeid: u64,
    caller: Caller,
    args: &[&[u8]],
) -> Option<Vec<u8>> {
    let args_len = args.iter().map(|a| a.len()).sum();
    let mut out = header(opcode, unique, nodeid, caller, args_len)?.to_bytes();
    for a in args {
        out.extend_from_slice(a);
    }
    Some(out)
}

/// INIT's arguments: `fuse_init_in` with the high half of `flags` in `flags2` (the
/// 64-byte layout of protocol 7.36 and later, which older servers read a prefix of).
pub fn init_args(major: u32, minor: u32, max_readahead: u32, flags: u64) -> Vec<u8> {
    let mut body = abi::InitIn {
        major,
        minor,
        max_readahead,
        flags: (flags & 0xffff_ffff) as u32,
    }
    .to_bytes();
    ((flags >> 32) as u32).put(&mut body);
    body.resize(64, 0);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_its_header_and_its_arguments() {
        let caller = Caller {
            uid: 1,
            gid: 2,
            pid: 3,
        };
        let r = encode(abi::opcode::LOOKUP, 9, 1, caller, &[b"name", b"\0"]).unwrap();
        let h = InHeader::read(&r).unwrap();
        assert_eq!(h.len as usize, r.len());
        assert_eq!((h.opcode, h.unique, h.nodeid), (abi::opcode::LOOKUP, 9, 1));
        assert_eq!((h.uid, h.gid, h.pid), (1, 2, 3));
        assert_eq!(&r[InHeader::SIZE..], b"name\0");
        assert!(header(abi::opcode::WRITE, 1, 1, caller, usize::MAX).is_none());
    }

    #[test]
    fn init_carries_both_halves_of_the_flags() {
        let b = init_args(7, 41, 4096, 0x0000_0002_0000_0001);
        assert_eq!(b.len(), 64);
        let i = abi::InitIn::read(&b).unwrap();
        assert_eq!(
            (i.major, i.minor, i.max_readahead, i.flags),
            (7, 41, 4096, 1)
        );
        assert_eq!(u32::from_le_bytes([b[16], b[17], b[18], b[19]]), 2);
    }
}
