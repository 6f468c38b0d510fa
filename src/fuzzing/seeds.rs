//! The seed inputs of each target's corpus, built with the real encoders (FUSE requests
//! from [`crate::fuse::abi`]'s structs, vhost-user messages as a frontend sends them), so a
//! fuzzer starts from requests a guest or a VMM really sends. `tests/fuzz_corpus.rs`
//! checks that `fuzz/corpus/` holds every one of them, and writes them there when asked.

use super::fuse::record as fuse;
use crate::fuse::abi::{
    self, CreateIn, FallocateIn, MkdirIn, OpenIn, ReadIn, RemovemappingIn, RemovemappingOne,
    SetattrIn, SetupmappingIn, Wire, WriteIn, opcode as op,
};

/// One seed: the target, the file name in its corpus, the bytes.
pub struct Seed {
    /// The target (and corpus directory) name.
    pub target: &'static str,
    /// The file name.
    pub name: &'static str,
    /// The input.
    pub bytes: Vec<u8>,
}

/// Every seed of every target.
pub fn seeds() -> Vec<Seed> {
    let mut out = fuse_seeds();
    out.extend(pmem_seeds());
    out.extend(chain_seeds());
    out.extend(vhost_user_seeds());
    out
}

const MIB2: u64 = 2 << 20;
const RW: u64 = abi::misc::SETUPMAPPING_FLAG_READ | abi::misc::SETUPMAPPING_FLAG_WRITE;

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn map(foffset: u64, len: u64, moffset: u64, flags: u64) -> Vec<u8> {
    SetupmappingIn {
        fh: u64::MAX,
        foffset,
        len,
        flags,
        moffset,
    }
    .to_bytes()
}

fn unmap(ranges: &[(u64, u64)]) -> Vec<u8> {
    let count = u32::try_from(ranges.len()).unwrap_or(u32::MAX);
    let mut body = RemovemappingIn { count }.to_bytes();
    for &(moffset, len) in ranges {
        body.extend(RemovemappingOne { moffset, len }.to_bytes());
    }
    body
}

fn truncate(size: u64) -> Vec<u8> {
    SetattrIn {
        valid: abi::fattr::SIZE,
        size,
        ..SetattrIn::default()
    }
    .to_bytes()
}

fn fuse_seeds() -> Vec<Seed> {
    let seed = |name, setup: u8, records: Vec<Vec<u8>>| Seed {
        target: "fuse_dax",
        name,
        bytes: std::iter::once(vec![setup])
            .chain(records)
            .flatten()
            .collect(),
    };
    let lookup_f = fuse(op::LOOKUP, 1, &cstr("f"));
    vec![
        seed(
            "seed-map-unmap",
            0,
            vec![
                lookup_f.clone(),
                fuse(op::SETUPMAPPING, 2, &map(0, MIB2, 0, RW)),
                fuse(op::SETUPMAPPING, 2, &map(MIB2, MIB2, MIB2, RW)),
                fuse(op::SETUPMAPPING, 2, &map(0, MIB2, 0, RW)),
                fuse(op::REMOVEMAPPING, 2, &unmap(&[(0, MIB2), (MIB2, MIB2)])),
                fuse(
                    op::SETUPMAPPING,
                    2,
                    &map(0, MIB2, 6 << 20, abi::misc::SETUPMAPPING_FLAG_READ),
                ),
                fuse(op::FORGET, 2, &1u64.to_le_bytes()),
                fuse(op::DESTROY, 0, &[]),
            ],
        ),
        seed(
            "seed-truncate-under-mapping",
            0,
            vec![
                lookup_f.clone(),
                fuse(op::SETUPMAPPING, 2, &map(0, MIB2, 0, RW)),
                fuse(op::SETATTR, 2, &truncate(4096)),
                fuse(op::SETATTR, 2, &truncate(3 << 20)),
                fuse(
                    op::OPEN,
                    2,
                    &OpenIn {
                        flags: 2,
                        open_flags: 0,
                    }
                    .to_bytes(),
                ),
                fuse(
                    op::FALLOCATE,
                    2,
                    &FallocateIn {
                        fh: 1,
                        offset: 0,
                        length: 8192,
                        mode: 0x2 | 0x1,
                        padding: 0,
                    }
                    .to_bytes(),
                ),
                fuse(op::GETATTR, 2, &[0; 16]),
                fuse(
                    op::INIT,
                    0,
                    &crate::fuse::request::init_args(7, 38, 4096, 0),
                ),
            ],
        ),
        seed(
            "seed-failed-map",
            2,
            vec![
                fuse(op::LOOKUP, 1, &cstr("d")),
                lookup_f.clone(),
                fuse(op::SETUPMAPPING, 3, &map(0, MIB2, 0, RW)),
                fuse(op::SETUPMAPPING, 3, &map(0, MIB2, 0, RW)),
                fuse(op::REMOVEMAPPING, 3, &unmap(&[(0, 4096)])),
            ],
        ),
        seed(
            "seed-create-write-read",
            1,
            vec![
                {
                    let mut body = CreateIn {
                        flags: 2,
                        mode: 0o100_644,
                        umask: 0,
                        open_flags: 0,
                    }
                    .to_bytes();
                    body.extend(cstr("n"));
                    fuse(op::CREATE, 1, &body)
                },
                {
                    let mut body = WriteIn {
                        fh: 1,
                        offset: 10,
                        size: 5,
                        ..WriteIn::default()
                    }
                    .to_bytes();
                    body.extend(b"hello");
                    fuse(op::WRITE, 2, &body)
                },
                fuse(
                    op::READ,
                    2,
                    &ReadIn {
                        fh: 1,
                        size: 64,
                        ..ReadIn::default()
                    }
                    .to_bytes(),
                ),
                fuse(op::SETUPMAPPING, 2, &map(0, MIB2, MIB2, RW)),
                fuse(
                    op::LSEEK,
                    2,
                    &[
                        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0,
                    ],
                ),
                fuse(
                    op::FLUSH,
                    2,
                    &[
                        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ],
                ),
                fuse(
                    op::RELEASE,
                    2,
                    &[
                        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                    ],
                ),
            ],
        ),
        seed(
            "seed-directories",
            0,
            vec![
                fuse(
                    op::MKDIR,
                    1,
                    &[
                        MkdirIn {
                            mode: 0o755,
                            umask: 0,
                        }
                        .to_bytes(),
                        cstr("e"),
                    ]
                    .concat(),
                ),
                fuse(op::SYMLINK, 1, &[cstr("l"), cstr("../outside")].concat()),
                fuse(op::READLINK, 3, &[]),
                fuse(op::OPENDIR, 1, &OpenIn::default().to_bytes()),
                fuse(
                    op::READDIRPLUS,
                    1,
                    &ReadIn {
                        fh: 1,
                        size: 4096,
                        ..ReadIn::default()
                    }
                    .to_bytes(),
                ),
                fuse(
                    op::RENAME,
                    1,
                    &[2u64.to_le_bytes().to_vec(), cstr("f"), cstr("g")].concat(),
                ),
                fuse(op::UNLINK, 1, &cstr("l")),
                fuse(op::RMDIR, 1, &cstr("e")),
                fuse(op::STATFS, 1, &[]),
            ],
        ),
    ]
}

/// A pmem descriptor: address, length, writable.
fn pmem_desc(addr: u16, len: u8, writable: bool) -> [u8; 4] {
    let [a, b] = addr.to_le_bytes();
    [a, b, len, u8::from(writable)]
}

fn pmem_seeds() -> Vec<Seed> {
    let seed = |name, descs: &[[u8; 4]], memory: &[u8]| Seed {
        target: "pmem_request",
        name,
        bytes: std::iter::once(u8::try_from(descs.len()).unwrap_or(0))
            .chain(descs.iter().flatten().copied())
            .chain(memory.iter().copied())
            .collect(),
    };
    // Memory from 0: the FLUSH type word at 0x0.
    vec![
        seed(
            "seed-flush",
            &[pmem_desc(0, 4, false), pmem_desc(0x100, 4, true)],
            &[0; 8],
        ),
        seed(
            "seed-flush-split",
            &[
                pmem_desc(0, 2, false),
                pmem_desc(2, 2, false),
                pmem_desc(0x8100, 8, true),
            ],
            &[0; 8],
        ),
        seed(
            "seed-unknown-type",
            &[pmem_desc(0, 4, false), pmem_desc(0x100, 4, true)],
            &[7, 0, 0, 0],
        ),
        seed(
            "seed-misordered",
            &[pmem_desc(0x100, 4, true), pmem_desc(0, 4, false)],
            &[0; 4],
        ),
        seed(
            "seed-in-the-hole",
            &[pmem_desc(0x1ffe, 4, false), pmem_desc(0xfff, 4, true)],
            &[],
        ),
    ]
}

/// A chain-target descriptor: address, length, flags, next.
fn chain_desc(addr: u32, len: u32, flags: u16, next: u16) -> Vec<u8> {
    [
        addr.to_le_bytes().as_slice(),
        &len.to_le_bytes(),
        &flags.to_le_bytes(),
        &next.to_le_bytes(),
    ]
    .concat()
}

const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;

fn chain_seeds() -> Vec<Seed> {
    // Queue size byte (2^n), avail idx, `size` descriptors, `size` ring entries, data.
    let seed = |name, log2: u8, avail: u16, descs: Vec<Vec<u8>>, ring: &[u16], data: Vec<u8>| {
        let size = 1usize << log2;
        let mut bytes = vec![log2];
        bytes.extend(avail.to_le_bytes());
        for i in 0..size {
            bytes.extend(descs.get(i).cloned().unwrap_or_else(|| vec![0; 12]));
        }
        for i in 0..size {
            bytes.extend(ring.get(i).copied().unwrap_or(0).to_le_bytes());
        }
        bytes.extend(data);
        Seed {
            target: "descriptor_chain",
            name,
            bytes,
        }
    };
    // An indirect table at 0x3000: two descriptors of 16 bytes each.
    let mut table = Vec::new();
    for (addr, len, flags, next) in [(0x3100u64, 40u32, NEXT, 1u16), (0x2_0000, 4096, WRITE, 0)] {
        table.extend(addr.to_le_bytes());
        table.extend(len.to_le_bytes());
        table.extend(flags.to_le_bytes());
        table.extend(next.to_le_bytes());
    }
    vec![
        seed(
            "seed-fuse-like",
            2,
            1,
            vec![
                chain_desc(0x3000, 40, NEXT, 1),
                chain_desc(0x3040, 24, NEXT, 2),
                chain_desc(0xfff0, 0x20, WRITE | NEXT, 3),
                chain_desc(0x2_0000, 0x1000, WRITE, 0),
            ],
            &[0],
            (0..=255u8).cycle().take(128).collect(),
        ),
        seed(
            "seed-across-regions",
            1,
            2,
            vec![
                chain_desc(0xff00, 0x200, 0, 0),
                chain_desc(0x2_fff0, 0x10, WRITE, 0),
            ],
            &[0, 1],
            vec![],
        ),
        seed(
            "seed-indirect",
            0,
            1,
            vec![chain_desc(0x3000, 32, INDIRECT, 0)],
            &[0],
            table,
        ),
        seed(
            "seed-loop",
            1,
            1,
            vec![
                chain_desc(0x3000, 8, NEXT, 1),
                chain_desc(0x3000, 8, NEXT, 0),
            ],
            &[0],
            vec![1; 16],
        ),
    ]
}

/// A vhost-user record: request, flags, size lie, fd kind, payload.
fn vu(request: u8, flags: u8, fd: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    [&[request, flags, 0, fd][..], &len.to_le_bytes(), payload].concat()
}

fn vhost_user_seeds() -> Vec<Seed> {
    const V1: u8 = 1;
    const NEED_REPLY: u8 = 1 | 8;
    let seed = |name, device: u8, records: Vec<Vec<u8>>| Seed {
        target: "vhost_user",
        name,
        bytes: std::iter::once(vec![device])
            .chain(records)
            .flatten()
            .collect(),
    };
    let u64le = |v: u64| v.to_le_bytes().to_vec();
    // Request codes (vhost-user spec): GET_FEATURES 1, SET_FEATURES 2, SET_OWNER 3,
    // SET_MEM_TABLE 5, SET_VRING_NUM 8, SET_VRING_ADDR 9, SET_VRING_BASE 10,
    // GET_VRING_BASE 11, SET_VRING_KICK 12, SET_VRING_CALL 13, GET_PROTOCOL_FEATURES 15,
    // SET_PROTOCOL_FEATURES 16, GET_QUEUE_NUM 17, SET_VRING_ENABLE 18, SET_BACKEND_REQ_FD
    // 21, GET_CONFIG 24, SET_CONFIG 25, RESET_DEVICE 34, GET_SHMEM_CONFIG 44.
    let handshake = |device| {
        let mut mem_table = [1u32.to_le_bytes(), 0u32.to_le_bytes()].concat();
        mem_table.extend(u64le(0)); // guest address
        mem_table.extend(u64le(64 << 10)); // size
        mem_table.extend(u64le(0x7f00_0000_0000)); // user address
        mem_table.extend(u64le(0)); // mmap offset
        let vring_addr = [
            0u32.to_le_bytes().as_slice(),
            &0u32.to_le_bytes(),
            &u64le(0x7f00_0000_0000),
            &u64le(0x7f00_0000_1000),
            &u64le(0x7f00_0000_2000),
            &u64le(0),
        ]
        .concat();
        seed(
            if device == 0 {
                "seed-fs-handshake"
            } else {
                "seed-pmem-handshake"
            },
            device,
            vec![
                vu(3, V1, 0, &[]),
                vu(1, V1, 0, &[]),
                vu(15, V1, 0, &[]),
                vu(
                    16,
                    NEED_REPLY,
                    0,
                    &u64le(0x0040_0000 | 0x8 | 0x1 | 0x20 | 0x200 | 0x400),
                ),
                vu(17, V1, 0, &[]),
                vu(
                    24,
                    V1,
                    0,
                    &[
                        0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                        0, 0, 0,
                    ],
                ),
                vu(44, V1, 0, &[]),
                vu(21, NEED_REPLY, 3, &[]),
                vu(5, NEED_REPLY, 2, &mem_table),
                vu(8, V1, 0, &[0, 0, 0, 0, 0, 1, 0, 0]),
                vu(9, V1, 0, &vring_addr),
                vu(10, V1, 0, &[0; 8]),
                vu(13, V1, 1, &u64le(0)),
                vu(12, V1, 1, &u64le(0)),
                vu(2, V1, 0, &u64le(1 << 32 | 1 << 30)),
                vu(18, V1, 0, &[0, 0, 0, 0, 1, 0, 0, 0]),
                vu(11, V1, 0, &[0; 8]),
                vu(34, V1, 0, &[]),
            ],
        )
    };
    vec![
        handshake(0),
        handshake(1),
        seed(
            "seed-lies",
            0,
            vec![
                [&[1u8, 1, 0xff, 0][..], &[0, 0]].concat(),
                vu(25, NEED_REPLY, 0, &[0; 20]),
                vu(0xfe, 0xff, 2, &[1; 40]),
            ],
        ),
    ]
}
