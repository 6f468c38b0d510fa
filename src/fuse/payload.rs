//! The payload of READ and WRITE: file bytes moved between a host descriptor and the
//! transport's buffers in one system call, with no staging copy in between.
//!
//! The transport (the virtio-fs device) hands the server its buffers behind these two
//! traits: the device-writable part of a chain past the reply header for a READ, the
//! device-readable part past the WRITE header for a WRITE. The file system calls
//! [`ZeroCopyWriter::write_from`] / [`ZeroCopyReader::read_to`] with its host descriptor,
//! and the implementation does the `preadv` / `pwritev` straight into / out of those
//! buffers. The server itself knows nothing of guest memory; [`VecWriter`] and
//! [`SliceReader`] are the in-memory implementations for a transport that carries
//! requests and replies as bytes ([`super::Server::handle`]).

use std::os::fd::BorrowedFd;

use super::error::{Errno, FsResult};
use crate::sys::fs as sys;

/// Where a READ reply's data goes: the next bytes after the reply header.
pub trait ZeroCopyWriter {
    /// Bytes that can still be written.
    fn room(&self) -> usize;

    /// Reads at most `len` bytes (and at most [`ZeroCopyWriter::room`]) of `fd` at file
    /// offset `offset` into the next bytes of the buffer, with one system call; returns
    /// how many (0 at end of file, or when there is no room). Does not retry `EINTR`.
    ///
    /// # Errors
    ///
    /// The errno of the read.
    fn write_from(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> FsResult<usize>;
}

/// Where a WRITE request's data comes from: the bytes after the WRITE header.
pub trait ZeroCopyReader {
    /// Bytes not yet consumed.
    fn remaining(&self) -> usize;

    /// Writes at most `len` of the next bytes (and at most
    /// [`ZeroCopyReader::remaining`]) to `fd` at file offset `offset`, with one system call;
    /// returns how many were written (and consumed). Does not retry `EINTR`.
    ///
    /// # Errors
    ///
    /// The errno of the write.
    fn read_to(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> FsResult<usize>;
}

/// A [`ZeroCopyWriter`] into a vector that grows up to a limit.
#[derive(Debug, Default)]
pub struct VecWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl VecWriter {
    /// An empty writer that takes at most `limit` bytes (no memory is reserved up front).
    pub fn new(limit: usize) -> Self {
        VecWriter {
            buf: Vec::new(),
            limit,
        }
    }

    /// The bytes written.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

impl ZeroCopyWriter for VecWriter {
    fn room(&self) -> usize {
        self.limit.saturating_sub(self.buf.len())
    }

    fn write_from(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> FsResult<usize> {
        let want = len.min(self.room());
        if want == 0 {
            return Ok(0);
        }
        let limit = self.buf.len() + want;
        sys::pread_append(fd, &mut self.buf, limit, offset)
    }
}

/// A [`ZeroCopyReader`] over bytes in memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct SliceReader<'a>(&'a [u8]);

impl<'a> SliceReader<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        SliceReader(data)
    }
}

impl ZeroCopyReader for SliceReader<'_> {
    fn remaining(&self) -> usize {
        self.0.len()
    }

    fn read_to(&mut self, fd: BorrowedFd<'_>, offset: u64, len: usize) -> FsResult<usize> {
        let want = len.min(self.0.len());
        if want == 0 {
            return Ok(0);
        }
        let n = sys::pwrite(fd, &self.0[..want], offset)?;
        self.0 = self.0.get(n..).ok_or(Errno::EIO)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsFd;

    use super::*;

    fn temp_file(bytes: &[u8]) -> std::fs::File {
        let mut f = crate::sys::memfd("payload-test", 0).unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn vec_writer_reads_up_to_its_limit_and_stops_at_end_of_file() {
        let f = temp_file(b"0123456789");
        let mut w = VecWriter::new(4);
        assert_eq!(w.write_from(f.as_fd(), 2, 100).unwrap(), 4);
        assert_eq!(w.room(), 0);
        assert_eq!(w.write_from(f.as_fd(), 6, 100).unwrap(), 0);
        assert_eq!(w.into_inner(), b"2345");
        let mut w = VecWriter::new(100);
        assert_eq!(w.write_from(f.as_fd(), 8, 100).unwrap(), 2);
        assert_eq!(w.write_from(f.as_fd(), 10, 100).unwrap(), 0);
        assert_eq!(w.into_inner(), b"89");
    }

    #[test]
    fn slice_reader_writes_and_consumes_what_was_written() {
        let f = temp_file(b"");
        let mut r = SliceReader::new(b"abcdef");
        assert_eq!(r.read_to(f.as_fd(), 3, 2).unwrap(), 2);
        assert_eq!(r.remaining(), 4);
        assert_eq!(r.read_to(f.as_fd(), 5, 100).unwrap(), 4);
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.read_to(f.as_fd(), 9, 100).unwrap(), 0);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut &f, &mut back).unwrap();
        assert_eq!(back, b"\0\0\0abcdef");
    }

    #[test]
    fn errors_keep_their_errno() {
        let f = temp_file(b"x");
        let read_only = std::fs::File::open(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            f.as_raw_fd()
        }))
        .unwrap();
        let mut r = SliceReader::new(b"y");
        assert_eq!(
            r.read_to(read_only.as_fd(), 0, 1).unwrap_err(),
            Errno::EBADF
        );
        assert_eq!(r.remaining(), 1);
    }
}
