//! `preadv(2)` / `pwritev(2)` between a host file and guest memory, given as the
//! [`VolatileSlice`]s vm-memory resolved (and bounds-checked) from descriptor addresses.
//!
//! Guest memory is shared with a guest that may change it at any time: no Rust reference
//! to it is ever formed here, the kernel reads or writes it through the raw addresses of
//! the slices, which is as volatile as vm-memory's own copies.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use vm_memory::VolatileSlice;
use vm_memory::volatile_memory::{PtrGuard, PtrGuardMut};

/// Most buffers one call takes (Linux's `IOV_MAX`). A longer list is served in part, as a
/// short count, and the caller goes on from where it stopped.
pub const IOV_MAX: usize = 1024;

/// `preadv(2)`: reads at most `max` bytes of `fd` at `offset` into `bufs`, starting `skip`
/// bytes into the first; returns the bytes read (0 at end of file).
///
/// # Errors
///
/// `EINVAL` if `skip` is past the end of the first buffer or `offset` exceeds `i64`; else
/// the errno of the call (`EFAULT` if the memory went away under it).
pub fn preadv(
    fd: BorrowedFd<'_>,
    bufs: &[VolatileSlice<'_>],
    skip: usize,
    max: usize,
    offset: u64,
) -> io::Result<usize> {
    let off = i64::try_from(offset).map_err(|_| einval())?;
    let mut guards: Vec<PtrGuardMut> = Vec::with_capacity(bufs.len().min(IOV_MAX));
    let iov = vectors(bufs, skip, max, |b| {
        let g = b.ptr_guard_mut();
        let ptr = g.as_ptr();
        guards.push(g);
        ptr
    })?;
    if iov.is_empty() {
        return Ok(0);
    }
    let count = libc::c_int::try_from(iov.len()).map_err(|_| einval())?;
    // SAFETY: each iovec lies inside one of `bufs` (`vectors` takes at most the slice's
    // length from its start, after `skip` was range-checked by `VolatileSlice::offset`),
    // and vm-memory checked each slice against the guest memory region it came from. That
    // memory stays mapped while `bufs` is borrowed, so for the whole call, and its guards
    // are alive in `guards`. The kernel writes the bytes through raw pointers: no Rust
    // reference aliases them.
    let n = unsafe { libc::preadv64(fd.as_raw_fd(), iov.as_ptr(), count, off) };
    drop(guards);
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `pwritev(2)`: writes at most `max` bytes of `bufs`, starting `skip` bytes into the
/// first, to `fd` at `offset`; returns the bytes written.
///
/// # Errors
///
/// As [`preadv`].
pub fn pwritev(
    fd: BorrowedFd<'_>,
    bufs: &[VolatileSlice<'_>],
    skip: usize,
    max: usize,
    offset: u64,
) -> io::Result<usize> {
    let off = i64::try_from(offset).map_err(|_| einval())?;
    let mut guards: Vec<PtrGuard> = Vec::with_capacity(bufs.len().min(IOV_MAX));
    let iov = vectors(bufs, skip, max, |b| {
        let g = b.ptr_guard();
        let ptr = g.as_ptr().cast_mut();
        guards.push(g);
        ptr
    })?;
    if iov.is_empty() {
        return Ok(0);
    }
    let count = libc::c_int::try_from(iov.len()).map_err(|_| einval())?;
    // SAFETY: as in `preadv`: every iovec lies inside a bounds-checked slice of guest
    // memory that stays mapped for the call; the kernel only reads it.
    let n = unsafe { libc::pwritev64(fd.as_raw_fd(), iov.as_ptr(), count, off) };
    drop(guards);
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

/// The iovecs for at most `max` bytes of `bufs` from `skip` into the first (at most
/// [`IOV_MAX`] of them, none empty); `ptr` gives a slice's address (and keeps its guard).
fn vectors(
    bufs: &[VolatileSlice<'_>],
    skip: usize,
    max: usize,
    mut ptr: impl FnMut(&VolatileSlice<'_>) -> *mut u8,
) -> io::Result<Vec<libc::iovec>> {
    let mut iov = Vec::with_capacity(bufs.len().min(IOV_MAX));
    let mut left = max;
    for (i, b) in bufs.iter().enumerate() {
        if left == 0 || iov.len() == IOV_MAX {
            break;
        }
        let b = if i == 0 {
            b.offset(skip).map_err(|_| einval())?
        } else {
            *b
        };
        let len = b.len().min(left);
        if len == 0 {
            continue;
        }
        iov.push(libc::iovec {
            iov_base: ptr(&b).cast(),
            iov_len: len,
        });
        left -= len;
    }
    Ok(iov)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    use super::*;

    fn slices(mem: &mut [u8], cuts: &[usize]) -> Vec<VolatileSlice<'static>> {
        let mut out = Vec::new();
        let mut at = 0;
        for &n in cuts {
            // SAFETY: test memory, leaked below so it outlives every slice.
            out.push(unsafe { VolatileSlice::new(mem[at..].as_mut_ptr(), n) });
            at += n;
        }
        out
    }

    #[test]
    fn reads_and_writes_across_odd_buffers_from_an_offset_within_a_limit() {
        let mut file = crate::sys::memfd("vectored-test", 0).unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        file.write_all(&data).unwrap();
        let mem: &'static mut [u8] = Box::leak(vec![0xaau8; 6000].into_boxed_slice());
        let bufs = slices(mem, &[3, 1000, 1, 4000]);
        // 2 bytes into the first buffer, at most 1500 bytes, from file offset 7.
        assert_eq!(preadv(file.as_fd(), &bufs, 2, 1500, 7).unwrap(), 1500);
        let mut back = vec![0u8; 6000];
        bufs.iter()
            .fold(0, |at, b| at + b.copy_to(&mut back[at..at + b.len()]));
        assert_eq!(back[..2], [0xaa; 2]);
        assert_eq!(back[2..1502], data[7..1507]);
        assert!(back[1502..5004].iter().all(|&b| b == 0xaa));
        // And back out, from the same place, into a fresh file.
        let mut out = crate::sys::memfd("vectored-test-out", 0).unwrap();
        assert_eq!(pwritev(out.as_fd(), &bufs, 2, 1500, 3).unwrap(), 1500);
        out.rewind().unwrap();
        let mut written = Vec::new();
        out.read_to_end(&mut written).unwrap();
        assert_eq!(written[..3], [0; 3]);
        assert_eq!(written[3..], data[7..1507]);
        // At end of file: a short count, then 0.
        assert_eq!(preadv(file.as_fd(), &bufs, 0, 5004, 4990).unwrap(), 10);
        assert_eq!(preadv(file.as_fd(), &bufs, 0, 5004, 5000).unwrap(), 0);
        assert_eq!(
            preadv(file.as_fd(), &bufs, 4, 10, 0)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EINVAL),
            "skip past the first buffer"
        );
    }
}
