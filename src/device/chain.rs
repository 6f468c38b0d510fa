//! A descriptor chain resolved against guest memory: its device-readable and
//! device-writable buffers as vm-memory [`VolatileSlice`]s, each checked to lie inside
//! guest memory before anything is read or written, and cursors over them that copy small
//! headers and move READ / WRITE payloads between guest memory and a host file directly
//! (`preadv` / `pwritev`, see [`crate::sys::vectored`]).

use std::os::fd::BorrowedFd;

use virtio_queue::desc::split::Descriptor;
use vm_memory::{GuestAddress, GuestMemory, GuestMemoryMmap, Permissions, VolatileSlice};

use crate::fuse::{Errno, FsResult, ZeroCopyReader, ZeroCopyWriter};
use crate::sys::vectored;

/// Why a chain cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A descriptor is not inside guest memory (or lacks the access its direction needs).
    #[error("descriptor at {addr:#x} of {len} bytes is outside guest memory: {source}")]
    Memory {
        /// Guest-physical address of the descriptor.
        addr: u64,
        /// Its length.
        len: u32,
        /// What vm-memory said.
        source: vm_memory::GuestMemoryError,
    },
    /// The lengths of the chain's descriptors add up past `usize`.
    #[error("descriptor lengths overflow")]
    TooLong,
}

/// The buffers of one chain, in order: the device-readable ones (the request) and the
/// device-writable ones (room for the reply).
pub struct ChainBuffers<'m> {
    /// The request.
    pub readable: Buffers<'m>,
    /// Room for the reply.
    pub writable: Buffers<'m>,
}

impl<'m> ChainBuffers<'m> {
    /// Resolves every descriptor of `descriptors` (a chain, in order) in `mem`. Nothing is
    /// read or written; a descriptor outside guest memory fails the whole chain.
    ///
    /// # Errors
    ///
    /// [`ChainError`] for the first descriptor that cannot be used.
    pub fn resolve(
        descriptors: impl IntoIterator<Item = Descriptor>,
        mem: &'m GuestMemoryMmap,
    ) -> Result<Self, ChainError> {
        let mut readable = Buffers::default();
        let mut writable = Buffers::default();
        for d in descriptors {
            let (side, access) = if d.is_write_only() {
                (&mut writable, Permissions::Write)
            } else {
                (&mut readable, Permissions::Read)
            };
            side.push(mem, d.addr(), d.len(), access)?;
        }
        Ok(ChainBuffers { readable, writable })
    }
}

/// One direction of a chain: guest memory slices, in order.
#[derive(Default)]
pub struct Buffers<'m> {
    slices: Vec<VolatileSlice<'m>>,
    len: usize,
}

impl<'m> Buffers<'m> {
    fn push(
        &mut self,
        mem: &'m GuestMemoryMmap,
        addr: GuestAddress,
        len: u32,
        access: Permissions,
    ) -> Result<(), ChainError> {
        let fail = |source| ChainError::Memory {
            addr: addr.0,
            len,
            source,
        };
        let count = usize::try_from(len).map_err(|_| ChainError::TooLong)?;
        self.len = self.len.checked_add(count).ok_or(ChainError::TooLong)?;
        // A range that spans two regions comes back as two slices.
        for slice in GuestMemory::get_slices(mem, addr, count, access).map_err(fail)? {
            let slice = slice.map_err(fail)?;
            if !slice.is_empty() {
                self.slices.push(slice);
            }
        }
        Ok(())
    }

    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.len
    }

    /// A cursor at the first byte.
    pub fn cursor(&self) -> Cursor<'_, 'm> {
        Cursor {
            slices: &self.slices,
            skip: 0,
            remaining: self.len,
        }
    }
}

/// A position in [`Buffers`], moving forward as bytes are consumed.
#[derive(Clone, Copy)]
pub struct Cursor<'b, 'm> {
    /// The slices from the one holding the next byte on.
    slices: &'b [VolatileSlice<'m>],
    /// Bytes of `slices[0]` already consumed.
    skip: usize,
    remaining: usize,
}

impl Cursor<'_, '_> {
    /// A cursor with nothing left.
    pub fn empty() -> Self {
        Cursor {
            slices: &[],
            skip: 0,
            remaining: 0,
        }
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Moves `n` bytes forward (at most to the end).
    pub fn advance(&mut self, n: usize) {
        let mut n = n.min(self.remaining);
        self.remaining -= n;
        while let Some(first) = self.slices.first() {
            let left = first.len() - self.skip;
            if n < left {
                self.skip += n;
                return;
            }
            n -= left;
            self.slices = &self.slices[1..];
            self.skip = 0;
        }
    }

    /// Copies the next bytes of guest memory into `buf` (as many as both have); returns
    /// how many.
    pub fn copy_out(&mut self, buf: &mut [u8]) -> usize {
        let end = buf.len().min(self.remaining);
        let mut done = 0;
        for (i, slice) in self.slices.iter().enumerate() {
            if done == end {
                break;
            }
            let from = if i == 0 { self.skip } else { 0 };
            // `from` is within the slice (the cursor's invariant), so `offset` succeeds.
            let Ok(s) = slice.offset(from) else { break };
            done += s.copy_to(&mut buf[done..end]);
        }
        self.advance(done);
        done
    }

    /// Copies `buf` into the next bytes of guest memory (as many as fit); returns how many.
    pub fn copy_in(&mut self, buf: &[u8]) -> usize {
        let end = buf.len().min(self.remaining);
        let mut done = 0;
        for (i, slice) in self.slices.iter().enumerate() {
            if done == end {
                break;
            }
            let from = if i == 0 { self.skip } else { 0 };
            let Ok(s) = slice.offset(from) else { break };
            let n = s.len().min(end - done);
            s.copy_from(&buf[done..done + n]);
            done += n;
        }
        self.advance(done);
        done
    }
}

impl ZeroCopyWriter for Cursor<'_, '_> {
    fn room(&self) -> usize {
        self.remaining
    }

    fn write_from(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> FsResult<usize> {
        let max = len.min(self.remaining);
        if max == 0 {
            return Ok(0);
        }
        let n = vectored::preadv(fd, self.slices, self.skip, max, offset).map_err(Errno::from)?;
        self.advance(n);
        Ok(n)
    }
}

impl ZeroCopyReader for Cursor<'_, '_> {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn read_to(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> FsResult<usize> {
        let max = len.min(self.remaining);
        if max == 0 {
            return Ok(0);
        }
        let n = vectored::pwritev(fd, self.slices, self.skip, max, offset).map_err(Errno::from)?;
        self.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek};
    use std::os::fd::AsFd;

    use vm_memory::{Bytes, GuestMemoryMmap};

    use super::*;

    const WRITE: u16 = 2;

    fn memory() -> GuestMemoryMmap {
        // Two regions with a hole between them, so ranges can cross or miss them.
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x1_0000),
            (GuestAddress(0x1_0000), 0x1_0000),
            (GuestAddress(0x4_0000), 0x1_0000),
        ])
        .unwrap()
    }

    fn desc(addr: u64, len: u32, flags: u16) -> Descriptor {
        Descriptor::new(addr, len, flags, 0)
    }

    #[test]
    fn odd_buffers_across_regions_copy_and_move_file_bytes() {
        let mem = memory();
        let pattern: Vec<u8> = (0..=255u8).cycle().take(0x3000).collect();
        // Readable: 5 bytes, then 0x2000 bytes across the region boundary at 0x1_0000,
        // then 1 byte. Writable: 3 bytes, an empty one, 0x1000 bytes.
        mem.write_slice(&pattern[..5], GuestAddress(0x100)).unwrap();
        mem.write_slice(&pattern[5..0x2005], GuestAddress(0xf000))
            .unwrap();
        mem.write_slice(&pattern[0x2005..0x2006], GuestAddress(0x4_0000))
            .unwrap();
        let chain = [
            desc(0x100, 5, 0),
            desc(0xf000, 0x2000, 0),
            desc(0x4_0000, 1, 0),
            desc(0x200, 3, WRITE),
            desc(0x300, 0, WRITE),
            desc(0x1_8000, 0x1000, WRITE),
        ];
        let b = ChainBuffers::resolve(chain, &mem).unwrap();
        assert_eq!((b.readable.len(), b.writable.len()), (0x2006, 0x1003));
        // A header copied out in pieces, then the rest written to a file.
        let mut cur = b.readable.cursor();
        let mut head = [0u8; 7];
        assert_eq!(cur.copy_out(&mut head[..3]), 3);
        assert_eq!(cur.copy_out(&mut head[3..]), 4);
        assert_eq!(head, pattern[..7]);
        let mut file = crate::sys::memfd("chain-test", 0).unwrap();
        let mut written = 0;
        while cur.remaining() > 0 {
            written += cur
                .read_to(file.as_fd(), written as u64, usize::MAX)
                .unwrap();
        }
        assert_eq!(written, 0x2006 - 7);
        let mut back = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut back).unwrap();
        assert_eq!(back, pattern[7..0x2006]);
        // The file read back into the writable side, 1 byte in.
        let mut out = b.writable.cursor();
        assert_eq!(out.copy_in(&[0xee]), 1);
        assert_eq!(out.write_from(file.as_fd(), 0, 10).unwrap(), 10);
        assert_eq!(
            out.write_from(file.as_fd(), 10, usize::MAX).unwrap(),
            0x1003 - 11
        );
        assert_eq!(
            out.write_from(file.as_fd(), 0, 1).unwrap(),
            0,
            "no room left"
        );
        let mut got = vec![0u8; 0x1000];
        mem.read_slice(&mut got, GuestAddress(0x1_8000)).unwrap();
        assert_eq!(got, pattern[7 + 2..7 + 2 + 0x1000]);
        let mut first = [0u8; 3];
        mem.read_slice(&mut first, GuestAddress(0x200)).unwrap();
        assert_eq!(first, [0xee, pattern[7], pattern[8]]);
        // Short at end of file.
        let mut out = b.writable.cursor();
        assert_eq!(
            out.write_from(file.as_fd(), (0x2006 - 7 - 4) as u64, 100)
                .unwrap(),
            4
        );
    }

    #[test]
    fn a_descriptor_outside_guest_memory_fails_the_chain() {
        let mem = memory();
        for bad in [
            desc(0x2_0000, 16, WRITE),   // in the hole
            desc(0x1_fff0, 0x20, WRITE), // runs off the end of a region into the hole
            desc(1 << 40, 1, 0),
            desc(u64::MAX, 2, 0),
        ] {
            let chain = [desc(0, 64, 0), bad, desc(0x1000, 64, WRITE)];
            assert!(
                matches!(
                    ChainBuffers::resolve(chain, &mem),
                    Err(ChainError::Memory { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn advance_and_copies_stop_at_the_end() {
        let mem = memory();
        let b = ChainBuffers::resolve([desc(0, 4, WRITE), desc(0x10, 4, WRITE)], &mem).unwrap();
        let mut cur = b.writable.cursor();
        cur.advance(3);
        assert_eq!(cur.copy_in(&[1, 2, 3]), 3);
        assert_eq!(cur.remaining(), 2);
        assert_eq!(cur.copy_in(&[4, 5, 6, 7]), 2);
        assert_eq!(cur.copy_in(&[8]), 0);
        cur.advance(10);
        assert_eq!(cur.remaining(), 0);
        let mut got = [0u8; 4];
        mem.read_slice(&mut got, GuestAddress(0x10)).unwrap();
        assert_eq!(got, [2, 3, 4, 5]);
        let mut back = b.writable.cursor();
        let mut all = [0u8; 9];
        assert_eq!(back.copy_out(&mut all), 8);
        assert_eq!(all[3..8], [1, 2, 3, 4, 5]);
    }
}
