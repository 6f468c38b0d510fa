//! Directory handles: OPENDIR, READDIR, READDIRPLUS.

use std::ffi::CStr;
use std::os::fd::AsFd;

use super::{PassthroughFs, sys};
use crate::fuse::abi::Wire;
use crate::fuse::{DirEntry, DirentBuf, Errno, FsResult, Handle, NodeId, Opened};

/// OPENDIR.
pub(super) fn opendir(fs: &PassthroughFs, node: NodeId) -> FsResult<Opened> {
    let inode = fs.inodes.get(node)?;
    if !inode.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let file = fs.reopen(&inode, libc::O_RDONLY | libc::O_DIRECTORY)?;
    let fh = fs.handles.insert(node, file)?;
    Ok(Opened {
        fh,
        open_flags: fs.cfg.cache.dir_open_flags(),
    })
}

/// One record of getdents64 output.
struct RawDirent<'a> {
    ino: u64,
    off: u64,
    typ: u32,
    name: &'a CStr,
}

/// Splits the first `linux_dirent64` off `buf`: (record, its length).
fn parse_dirent(buf: &[u8]) -> Option<(RawDirent<'_>, usize)> {
    const NAME_OFF: usize = 19;
    let reclen = usize::from(u16::get(buf.get(16..)?));
    if reclen <= NAME_OFF || reclen > buf.len() {
        return None;
    }
    let name = CStr::from_bytes_until_nul(buf.get(NAME_OFF..reclen)?).ok()?;
    let d = RawDirent {
        ino: u64::get(buf),
        off: u64::get(buf.get(8..)?),
        typ: u32::from(*buf.get(18)?),
        name,
    };
    Some((d, reclen))
}

/// READDIR / READDIRPLUS from cookie `offset`. For READDIRPLUS an entry is
/// looked up (taking a lookup count) only once it is known to fit; `.` and
/// `..` go out with node id 0 and take none. Entries that vanish between
/// getdents and lookup are skipped.
pub(super) fn readdir(
    fs: &PassthroughFs,
    node: NodeId,
    fh: Handle,
    offset: u64,
    buf: &mut DirentBuf,
    plus: bool,
) -> FsResult<()> {
    let h = fs.handles.get(fh, node)?;
    let dir = fs.inodes.get(node)?;
    let _serial = h.dir_lock.lock().unwrap_or_else(|p| p.into_inner());
    sys::lseek(h.file.as_fd(), offset, libc::SEEK_SET)?;
    let mut raw = vec![0u8; 32 * 1024];
    loop {
        let n = match sys::getdents64(h.file.as_fd(), &mut raw) {
            Ok(n) => n,
            Err(e) if buf.is_empty() => return Err(e),
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let mut rest = raw.get(..n).unwrap_or(&[]);
        while let Some((d, len)) = parse_dirent(rest) {
            rest = rest.get(len..).unwrap_or(&[]);
            let name = d.name.to_bytes();
            let mut e = DirEntry {
                ino: d.ino,
                offset: d.off,
                typ: d.typ,
                name,
            };
            let added = if !plus {
                buf.push(&e)
            } else if matches!(name, b"." | b"..") {
                buf.push_plus(&e, None)
            } else if !buf.fits_plus(name.len()) {
                false
            } else {
                match fs.do_lookup(&dir, d.name) {
                    Ok(entry) => {
                        e.ino = entry.attr.ino;
                        buf.push_plus(&e, Some(&entry))
                    }
                    Err(Errno::ENOENT) => true,
                    Err(err) if buf.is_empty() => return Err(err),
                    Err(_) => false,
                }
            };
            if !added {
                return Ok(());
            }
        }
    }
}
