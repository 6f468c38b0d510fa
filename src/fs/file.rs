//! Operations on open files: OPEN, CREATE, TMPFILE, READ, WRITE, FLUSH,
//! FSYNC, FALLOCATE, LSEEK, COPY_FILE_RANGE, SYNCFS.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::attr::kill_suidgid;
use super::inode::InodeKey;
use super::{PassthroughFs, check_new_name, stat_fd, sys};
use crate::fuse::filesystem::{CopyRange, WriteArgs};
use crate::fuse::{
    Context, Entry, Errno, FsResult, Handle, NodeId, Opened, ZeroCopyReader, ZeroCopyWriter,
};

/// Host open flags for guest `flags`: no O_CREAT/O_EXCL/O_NOCTTY (the
/// kernel resolved those), no O_DIRECT (our buffers are not aligned); with
/// writeback caching O_WRONLY becomes O_RDWR (the guest page cache reads to
/// fill partial pages) and O_APPEND is dropped (the guest orders appends).
fn host_flags(fs: &PassthroughFs, flags: u32) -> i32 {
    // The guest's `int` open flags travel as a u32: reinterpret the bits.
    let mut f =
        flags.cast_signed() & !(libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_DIRECT);
    if fs.writeback.load(Ordering::Acquire) {
        if f & libc::O_ACCMODE == libc::O_WRONLY {
            f = (f & !libc::O_ACCMODE) | libc::O_RDWR;
        }
        f &= !libc::O_APPEND;
    }
    f
}

fn modifies(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

/// OPEN of a regular file (other types are opened by the guest itself).
pub(super) fn open(fs: &PassthroughFs, node: NodeId, flags: u32, kill: bool) -> FsResult<Opened> {
    let inode = fs.inodes.get(node)?;
    if inode.is_dir() {
        return Err(Errno::EISDIR);
    }
    if !inode.is_reg() {
        return Err(Errno::ENXIO);
    }
    let f = host_flags(fs, flags);
    if modifies(f) {
        fs.check_writable()?;
    }
    // Before the open: an O_TRUNC open the cap refuses must not have truncated.
    fs.handles.check_room()?;
    let file = {
        let _fence = if f & libc::O_TRUNC != 0 {
            fs.fence_cut(&inode.key, 0, None)?
        } else {
            None
        };
        fs.reopen(&inode, f)?
    };
    if kill && f & libc::O_TRUNC != 0 {
        kill_suidgid(fs, &inode)?;
    }
    let fh = fs.handles.insert(node, file)?;
    Ok(Opened {
        fh,
        open_flags: fs.cfg.cache.file_open_flags(),
    })
}

/// Registers a file just created and opened: its node (via an O_PATH
/// re-open of the same file, so no name is resolved twice) and its handle.
fn register_new(
    fs: &PassthroughFs,
    file: File,
    kill: bool,
    truncated: bool,
) -> FsResult<(Entry, Opened)> {
    let st = stat_fd(&file)?;
    if st.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Errno::ENXIO);
    }
    sys::clear_nonblock(file.as_fd())?;
    let path_fd: OwnedFd = sys::openat(
        fs.proc_fd(),
        &sys::fd_name(file.as_raw_fd()),
        libc::O_PATH,
        0,
    )?;
    let inode = fs.add_lookup(path_fd, &st)?;
    if kill && truncated {
        kill_suidgid(fs, &inode)?;
    }
    let entry = fs.entry_for(&inode, &stat_fd(&file)?);
    let fh = fs.handles.insert(inode.nodeid, file)?;
    Ok((
        entry,
        Opened {
            fh,
            open_flags: fs.cfg.cache.file_open_flags(),
        },
    ))
}

/// CREATE, as the caller; a symlink at `name` is not followed.
pub(super) fn create(
    fs: &PassthroughFs,
    ctx: Context,
    parent: NodeId,
    name: &CStr,
    mode: u32,
    flags: u32,
    kill: bool,
) -> FsResult<(Entry, Opened)> {
    fs.check_writable()?;
    check_new_name(name)?;
    let p = fs.inodes.get(parent)?;
    // The caps are checked before anything is created: a CREATE they refuse leaves no file.
    fs.inodes.check_room()?;
    fs.handles.check_room()?;
    let excl = flags.cast_signed() & libc::O_EXCL;
    // O_NONBLOCK keeps an existing fifo at `name` from hanging the open.
    let f = host_flags(fs, flags) | excl | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_NONBLOCK;
    // Opened before the credentials switch: a switched fsuid has no
    // CAP_DAC_READ_SEARCH, which opening by handle needs.
    let dir = p.path_fd()?;
    let file = if fs.dax().is_some() && f & libc::O_TRUNC != 0 && excl == 0 {
        create_fenced(fs, ctx, dir.as_fd(), name, f, mode)?
    } else {
        let _creds = fs.creds(ctx)?;
        File::from(sys::openat(dir.as_fd(), name, f, mode & 0o7777)?)
    };
    register_new(fs, file, kill, f & libc::O_TRUNC != 0)
}

/// CREATE with O_TRUNC (and no O_EXCL) under a DAX window: an existing file is truncated
/// only once the ledger has fenced it, and its identity is known only once it is open.
/// A file the open creates is new (nothing to cut, nothing mapped); an existing one is
/// opened without truncating, fenced, then truncated by the truncating open the guest asked
/// for, with its credentials, so Linux's permission checks apply (`O_RDONLY|O_TRUNC` of a
/// file the caller may not write is EACCES; a new file of mode 0444 is fine).
fn create_fenced(
    fs: &PassthroughFs,
    ctx: Context,
    parent: BorrowedFd<'_>,
    name: &CStr,
    flags: i32,
    mode: u32,
) -> FsResult<File> {
    let untruncated = flags & !libc::O_TRUNC;
    for _ in 0..CREATE_RACE_RETRIES {
        let created = {
            let _creds = fs.creds(ctx)?;
            sys::openat(parent, name, untruncated | libc::O_EXCL, mode & 0o7777)
        };
        match created {
            Ok(fd) => return Ok(File::from(fd)),
            Err(e) if e == Errno::EEXIST => {}
            Err(e) => return Err(e),
        }
        let existing = {
            let _creds = fs.creds(ctx)?;
            sys::openat(parent, name, untruncated & !libc::O_CREAT, 0)
        };
        let file = match existing {
            Ok(fd) => File::from(fd),
            // Removed between the two opens: try creating it again.
            Err(e) if e == Errno::ENOENT => continue,
            Err(e) => return Err(e),
        };
        let st = stat_fd(&file)?;
        if st.mode & libc::S_IFMT == libc::S_IFREG {
            let _fence = fs.fence_cut(&InodeKey::from(&st), 0, None)?;
            let _creds = fs.creds(ctx)?;
            sys::openat(
                fs.proc_fd(),
                &sys::fd_name(file.as_raw_fd()),
                libc::O_WRONLY | libc::O_TRUNC | libc::O_NONBLOCK,
                0,
            )?;
        }
        return Ok(file);
    }
    Err(Errno::new(libc::EAGAIN))
}

/// How often CREATE retries when the name keeps appearing and vanishing under it.
const CREATE_RACE_RETRIES: usize = 8;

/// TMPFILE: an unnamed file in `parent` (O_TMPFILE), where the host allows it.
pub(super) fn tmpfile(
    fs: &PassthroughFs,
    ctx: Context,
    parent: NodeId,
    mode: u32,
    flags: u32,
) -> FsResult<(Entry, Opened)> {
    fs.check_writable()?;
    let p = fs.inodes.get(parent)?;
    if !p.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    let excl = flags.cast_signed() & libc::O_EXCL;
    let mut f = host_flags(fs, flags) | excl | libc::O_TMPFILE;
    if f & libc::O_ACCMODE == libc::O_RDONLY {
        f |= libc::O_RDWR;
    }
    fs.inodes.check_room()?;
    fs.handles.check_room()?;
    let dir = p.path_fd()?;
    let file = {
        let _creds = fs.creds(ctx)?;
        File::from(sys::openat(dir.as_fd(), c".", f, mode & 0o7777)?)
    };
    register_new(fs, file, false, false)
}

/// READ up to `size` bytes into `data` (straight from the host file into the
/// transport's buffers); short only at end of file.
pub(super) fn read(
    fs: &PassthroughFs,
    node: NodeId,
    fh: Handle,
    offset: u64,
    size: u32,
    data: &mut dyn ZeroCopyWriter,
) -> FsResult<usize> {
    let h = fs.handles.get(fh, node)?;
    offset.checked_add(u64::from(size)).ok_or(Errno::EINVAL)?;
    let want = (size as usize).min(data.room());
    let mut done = 0;
    while done < want {
        // `done <= want <= u32::MAX`: the sum does not overflow (checked above).
        let pos = offset + done as u64;
        match data.write_from(h.file.as_fd(), pos, want - done) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e == Errno::new(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// WRITE all of `data` (straight from the transport's buffers to the host file); with
/// `kill_suidgid` the file then loses suid (and sgid if group-executable). A failure after
/// some bytes were written reports those bytes, as write(2) would.
pub(super) fn write(
    fs: &PassthroughFs,
    node: NodeId,
    fh: Handle,
    offset: u64,
    data: &mut dyn ZeroCopyReader,
    args: WriteArgs,
) -> FsResult<u32> {
    fs.check_writable()?;
    let h = fs.handles.get(fh, node)?;
    let inode = fs.inodes.get(node)?;
    let len = data.remaining();
    let end = offset.saturating_add(len as u64);
    fs.check_extend(&inode.key, end)?;
    let mut done = 0;
    while done < len {
        let pos = offset.checked_add(done as u64).ok_or(Errno::EINVAL)?;
        match data.read_to(h.file.as_fd(), pos, len - done) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e == Errno::new(libc::EINTR) => {}
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        }
    }
    fs.file_grew(&inode.key);
    if args.kill_suidgid {
        kill_suidgid(fs, &inode)?;
    }
    Ok(u32::try_from(done).unwrap_or(u32::MAX))
}

/// FLUSH: close a duplicate of the descriptor, which drops the POSIX locks a
/// close(2) in the guest would drop.
pub(super) fn flush(fs: &PassthroughFs, node: NodeId, fh: Handle) -> FsResult<()> {
    let h = fs.handles.get(fh, node)?;
    drop(h.file.try_clone()?);
    Ok(())
}

/// FSYNC / FSYNCDIR.
pub(super) fn fsync(fs: &PassthroughFs, node: NodeId, datasync: bool, fh: Handle) -> FsResult<()> {
    let h = fs.handles.get(fh, node)?;
    Ok(if datasync {
        h.file.sync_data()
    } else {
        h.file.sync_all()
    }?)
}

/// Whether a FALLOCATE of `mode` cuts or moves file bytes (and so waits out pins).
pub(super) fn fallocate_cuts(mode: u32) -> bool {
    let cutting = libc::FALLOC_FL_PUNCH_HOLE
        | libc::FALLOC_FL_ZERO_RANGE
        | libc::FALLOC_FL_COLLAPSE_RANGE
        | libc::FALLOC_FL_INSERT_RANGE;
    // The guest's `int` mode travels as a u32: compare bits.
    mode & cutting.cast_unsigned() != 0
}

/// FALLOCATE (any fallocate(2) mode the host accepts: KEEP_SIZE, PUNCH_HOLE, ...).
pub(super) fn fallocate(
    fs: &PassthroughFs,
    node: NodeId,
    fh: Handle,
    mode: u32,
    offset: u64,
    length: u64,
) -> FsResult<()> {
    fs.check_writable()?;
    let h = fs.handles.get(fh, node)?;
    let mode = i32::try_from(mode).map_err(|_| Errno::EINVAL)?;
    // Modes that cut or move file bytes wait out pins on the chunks mapping them (the
    // same modes `fallocate_cuts` names for parking).
    let cut = if mode & (libc::FALLOC_FL_COLLAPSE_RANGE | libc::FALLOC_FL_INSERT_RANGE) != 0 {
        Some((offset, None))
    } else if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0 {
        Some((offset, Some(length)))
    } else {
        None
    };
    let key = fs.inodes.get(node)?.key;
    let _fence = match cut {
        Some((from, len)) => fs.fence_cut(&key, from, len)?,
        None => None,
    };
    let grows = mode & (libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE) == 0;
    if grows {
        fs.check_extend(&key, offset.saturating_add(length))?;
    }
    sys::fallocate(h.file.as_fd(), mode, offset, length)?;
    if grows {
        fs.file_grew(&key);
    }
    Ok(())
}

/// LSEEK (SEEK_DATA / SEEK_HOLE are what the guest sends).
pub(super) fn lseek(
    fs: &PassthroughFs,
    node: NodeId,
    fh: Handle,
    offset: u64,
    whence: u32,
) -> FsResult<u64> {
    let h = fs.handles.get(fh, node)?;
    let whence = i32::try_from(whence).map_err(|_| Errno::EINVAL)?;
    sys::lseek(h.file.as_fd(), offset, whence)
}

/// COPY_FILE_RANGE between two handles.
pub(super) fn copy_file_range(fs: &PassthroughFs, node_in: NodeId, a: CopyRange) -> FsResult<u64> {
    fs.check_writable()?;
    let hin = fs.handles.get(a.fh_in, node_in)?;
    let hout = fs.handles.get(a.fh_out, a.node_out)?;
    let flags = u32::try_from(a.flags).map_err(|_| Errno::EINVAL)?;
    // A reflinking host file system replaces the destination's blocks under its page
    // cache: as a punch-hole would, it waits out pins on the chunks mapping them.
    let key = fs.inodes.get(a.node_out)?.key;
    let _fence = fs.fence_cut(&key, a.off_out, Some(a.len))?;
    fs.check_extend(&key, a.off_out.saturating_add(a.len))?;
    let copied = sys::copy_file_range(
        hin.file.as_fd(),
        a.off_in,
        hout.file.as_fd(),
        a.off_out,
        a.len,
        flags,
    )?;
    fs.file_grew(&key);
    Ok(copied)
}

/// SYNCFS of the host filesystem holding `node` (the root's for nodes that
/// cannot be opened).
pub(super) fn syncfs(fs: &PassthroughFs, node: NodeId) -> FsResult<()> {
    let inode = fs.inodes.get(node)?;
    let target = if inode.is_dir() || inode.is_reg() {
        inode
    } else {
        fs.inodes.get(NodeId(crate::fuse::abi::ROOT_ID))?
    };
    let flags = if target.is_dir() {
        libc::O_RDONLY | libc::O_DIRECTORY
    } else {
        libc::O_RDONLY | libc::O_NONBLOCK
    };
    sys::syncfs(fs.reopen(&target, flags)?.as_fd())
}
