//! Encoding replies: the out header, entry and attr replies, and directory
//! entry buffers for READDIR / READDIRPLUS.

use std::time::Duration;

use super::abi::{self, Attr, Dirent, EntryOut, OutHeader, Wire};
use super::error::Errno;
use super::filesystem::Entry;

/// `fuse_out_header.len` for a `len`-byte reply. Replies are bounded by max_write and the
/// descriptors offered, far below 4 GiB; a longer one would claim `u32::MAX`, not a wrapped
/// short length.
fn wire_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The out header of a successful reply with a `body_len`-byte body.
pub fn header(unique: u64, body_len: usize) -> Vec<u8> {
    let len = OutHeader::SIZE + body_len;
    OutHeader {
        len: wire_len(len),
        error: 0,
        unique,
    }
    .to_bytes()
}

/// Builds a successful reply: out header then `body`.
pub fn ok(unique: u64, body: &[u8]) -> Vec<u8> {
    let len = OutHeader::SIZE + body.len();
    let mut out = Vec::with_capacity(len);
    OutHeader {
        len: wire_len(len),
        error: 0,
        unique,
    }
    .put(&mut out);
    out.extend_from_slice(body);
    out
}

/// Builds an error reply carrying `-errno`.
pub fn error(unique: u64, errno: Errno) -> Vec<u8> {
    OutHeader {
        len: wire_len(OutHeader::SIZE),
        error: -errno.get(),
        unique,
    }
    .to_bytes()
}

fn split(d: Duration) -> (u64, u32) {
    (d.as_secs(), d.subsec_nanos())
}

/// `fuse_entry_out` for `e`.
pub fn entry_out(e: &Entry) -> EntryOut {
    let (entry_valid, entry_valid_nsec) = split(e.entry_timeout);
    let (attr_valid, attr_valid_nsec) = split(e.attr_timeout);
    EntryOut {
        nodeid: e.nodeid.0,
        generation: e.generation,
        entry_valid,
        attr_valid,
        entry_valid_nsec,
        attr_valid_nsec,
        attr: e.attr,
    }
}

/// `fuse_attr_out` for `attr` valid for `timeout`.
pub fn attr_out(attr: Attr, timeout: Duration) -> abi::AttrOut {
    let (attr_valid, attr_valid_nsec) = split(timeout);
    abi::AttrOut {
        attr_valid,
        attr_valid_nsec,
        dummy: 0,
        attr,
    }
}

/// One directory entry to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// Inode number (`d_ino`).
    pub ino: u64,
    /// Cookie of the *next* entry: where a later READDIR resumes.
    pub offset: u64,
    /// `DT_*` type.
    pub typ: u32,
    /// Name bytes (no NUL).
    pub name: &'a [u8],
}

/// A bounded buffer of `fuse_dirent` or `fuse_direntplus` records.
#[derive(Debug)]
pub struct DirentBuf {
    buf: Vec<u8>,
    max: usize,
}

impl DirentBuf {
    /// An empty buffer holding at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::with_capacity(max.min(abi::MAX_BUFFER_SIZE)),
            max,
        }
    }

    /// True if nothing has been added.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded records.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Whether a READDIRPLUS record with an `namelen`-byte name still fits.
    /// Check this *before* looking the entry up, so no lookup count is taken
    /// for an entry that is then not sent.
    pub fn fits_plus(&self, namelen: usize) -> bool {
        self.buf.len() + abi::direntplus_size(namelen) <= self.max
    }

    /// A record's `namelen`, or `None` for a name too long for the field (which would not
    /// fit any buffer either: host names are at most `NAME_MAX` bytes).
    fn namelen(d: &DirEntry<'_>) -> Option<u32> {
        u32::try_from(d.name.len()).ok()
    }

    fn put_dirent(&mut self, d: &DirEntry<'_>, namelen: u32) {
        let start = self.buf.len();
        Dirent {
            ino: d.ino,
            off: d.offset,
            namelen,
            typ: d.typ,
        }
        .put(&mut self.buf);
        self.buf.extend_from_slice(d.name);
        let padded = start + abi::dirent_size(d.name.len());
        self.buf.resize(padded, 0);
    }

    /// Adds a READDIR record; false (and nothing added) if it does not fit.
    pub fn push(&mut self, d: &DirEntry<'_>) -> bool {
        let Some(namelen) = Self::namelen(d) else {
            return false;
        };
        if self.buf.len() + abi::dirent_size(d.name.len()) > self.max {
            return false;
        }
        self.put_dirent(d, namelen);
        true
    }

    /// Adds a READDIRPLUS record; `entry` is `None` for `.`/`..` (node id 0,
    /// no lookup count). False (and nothing added) if it does not fit.
    pub fn push_plus(&mut self, d: &DirEntry<'_>, entry: Option<&Entry>) -> bool {
        let Some(namelen) = Self::namelen(d) else {
            return false;
        };
        if !self.fits_plus(d.name.len()) {
            return false;
        }
        match entry {
            Some(e) => entry_out(e).put(&mut self.buf),
            None => EntryOut::default().put(&mut self.buf),
        }
        self.put_dirent(d, namelen);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirent_buffer_is_bounded_and_padded() {
        let mut b = DirentBuf::new(64);
        assert!(b.push(&DirEntry {
            ino: 5,
            offset: 1,
            typ: 8,
            name: b"abc"
        }));
        assert!(b.push(&DirEntry {
            ino: 6,
            offset: 2,
            typ: 8,
            name: b"defgh"
        }));
        assert!(!b.push(&DirEntry {
            ino: 7,
            offset: 3,
            typ: 8,
            name: b"x"
        }));
        assert_eq!(b.into_bytes().len(), 64);
        let b = DirentBuf::new(100);
        assert!(!b.fits_plus(1));
    }

    #[test]
    fn error_reply_layout() {
        let r = error(9, Errno::ENOENT);
        let h = OutHeader::read(&r).unwrap();
        assert_eq!(
            h,
            OutHeader {
                len: 16,
                error: -libc::ENOENT,
                unique: 9
            }
        );
    }
}
