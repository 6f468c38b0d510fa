//! Parsing a request body into a fully validated [`Request`], before any
//! filesystem work is done.

use std::ffi::CStr;

use super::abi::{self, Wire, fattr, misc, opcode};
use super::error::RequestError;
use super::filesystem::{
    CopyRange, FileLock, Handle, LockArgs, MappingFlags, NodeId, RemoveMapping, SetAttr, SetTime,
    SetupMapping, WriteArgs,
};

/// A decoded request body. Borrowed strings and payloads point into the request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Request<'a> {
    Init {
        major: u32,
        minor: u32,
        max_readahead: u32,
        flags: u64,
    },
    Destroy,
    Lookup {
        name: &'a CStr,
    },
    Forget {
        nlookup: u64,
    },
    BatchForget(Vec<(NodeId, u64)>),
    Getattr {
        fh: Option<Handle>,
    },
    Setattr(SetAttr),
    Readlink,
    Symlink {
        name: &'a CStr,
        target: &'a CStr,
    },
    Mknod {
        name: &'a CStr,
        mode: u32,
        rdev: u32,
        umask: u32,
    },
    Mkdir {
        name: &'a CStr,
        mode: u32,
        umask: u32,
    },
    Unlink {
        name: &'a CStr,
    },
    Rmdir {
        name: &'a CStr,
    },
    Rename {
        newdir: NodeId,
        oldname: &'a CStr,
        newname: &'a CStr,
        flags: u32,
    },
    Link {
        oldnode: NodeId,
        newname: &'a CStr,
    },
    Open {
        flags: u32,
        kill_suidgid: bool,
    },
    Read {
        fh: Handle,
        offset: u64,
        size: u32,
    },
    Write {
        fh: Handle,
        offset: u64,
        /// `fuse_write_in.size`: the payload's length.
        size: u32,
        /// The payload when it came with the body; empty when the transport kept it apart
        /// ([`DecodeOptions::payload`]).
        data: &'a [u8],
        args: WriteArgs,
    },
    Statfs,
    Release {
        fh: Handle,
        flags: u32,
        flush: bool,
        lock_owner: u64,
    },
    Fsync {
        fh: Handle,
        datasync: bool,
    },
    Setxattr {
        name: &'a CStr,
        value: &'a [u8],
        flags: u32,
    },
    Getxattr {
        name: &'a CStr,
        size: u32,
    },
    Listxattr {
        size: u32,
    },
    Removexattr {
        name: &'a CStr,
    },
    Flush {
        fh: Handle,
        lock_owner: u64,
    },
    Opendir {
        flags: u32,
    },
    Readdir {
        fh: Handle,
        offset: u64,
        size: u32,
        plus: bool,
    },
    Releasedir {
        fh: Handle,
        flags: u32,
    },
    Fsyncdir {
        fh: Handle,
        datasync: bool,
    },
    Getlk(LockArgs),
    Setlk {
        args: LockArgs,
        sleep: bool,
    },
    Access {
        mask: u32,
    },
    Create {
        name: &'a CStr,
        mode: u32,
        flags: u32,
        umask: u32,
        kill_suidgid: bool,
    },
    Interrupt {
        unique: u64,
    },
    Fallocate {
        fh: Handle,
        offset: u64,
        length: u64,
        mode: u32,
    },
    Lseek {
        fh: Handle,
        offset: u64,
        whence: u32,
    },
    CopyFileRange(CopyRange),
    Syncfs,
    Tmpfile {
        mode: u32,
        flags: u32,
        umask: u32,
    },
    Setupmapping(SetupMapping),
    Removemapping(Vec<RemoveMapping>),
    /// A known opcode this server does not implement (BMAP, IOCTL, POLL, ...).
    Unsupported(u32),
}

/// Connection state that changes how bodies are laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// `FUSE_SETXATTR_EXT` was granted: SETXATTR carries the 16-byte struct.
    pub setxattr_ext: bool,
    /// Bytes of the request that follow `body` but were kept apart by the transport: a
    /// WRITE's payload, left in the queue's buffers to be written to the file from there.
    /// Only a WRITE may have them (and then its body ends with `fuse_write_in`).
    pub payload: usize,
}

/// A cursor over a request body.
struct Body<'a> {
    opcode: u32,
    buf: &'a [u8],
}

impl<'a> Body<'a> {
    fn take<T: Wire>(&mut self) -> Result<T, RequestError> {
        let v = T::read(self.buf).ok_or(RequestError::ShortBody {
            opcode: self.opcode,
            want: T::SIZE,
            got: self.buf.len(),
        })?;
        self.buf = self.buf.get(T::SIZE..).unwrap_or(&[]);
        Ok(v)
    }

    fn cstr(&mut self) -> Result<&'a CStr, RequestError> {
        let s = CStr::from_bytes_until_nul(self.buf).map_err(|_| RequestError::MissingNul {
            opcode: self.opcode,
        })?;
        self.buf = self.buf.get(s.to_bytes_with_nul().len()..).unwrap_or(&[]);
        Ok(s)
    }

    /// A name that must be the body's last bytes: anything after its NUL is refused
    /// (`a\0junk` is not the name `a`).
    fn last_cstr(&mut self) -> Result<&'a CStr, RequestError> {
        let s = self.cstr()?;
        if !self.buf.is_empty() {
            return Err(RequestError::BytesAfterName {
                opcode: self.opcode,
                extra: self.buf.len(),
            });
        }
        Ok(s)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], RequestError> {
        let v = self.buf.get(..n).ok_or(RequestError::ShortBody {
            opcode: self.opcode,
            want: n,
            got: self.buf.len(),
        })?;
        self.buf = self.buf.get(n..).unwrap_or(&[]);
        Ok(v)
    }
}

fn fh_if(flag: bool, fh: u64) -> Option<Handle> {
    flag.then_some(Handle(fh))
}

fn set_time(valid: u32, now: u32, set: u32, sec: u64, nsec: u32) -> Option<SetTime> {
    if valid & now != 0 {
        Some(SetTime::Now)
    } else if valid & set != 0 {
        // The kernel sends a time64_t in the u64 field; reinterpret its bits (a time
        // before 1970 arrives as a huge u64 and must come out negative, not clamped).
        Some(SetTime::At {
            sec: sec.cast_signed(),
            nsec,
        })
    } else {
        None
    }
}

fn lock_args(b: &mut Body<'_>) -> Result<LockArgs, RequestError> {
    let a: abi::LkIn = b.take()?;
    Ok(LockArgs {
        fh: Handle(a.fh),
        owner: a.owner,
        lock: FileLock {
            start: a.lk.start,
            end: a.lk.end,
            typ: a.lk.typ,
            pid: a.lk.pid,
        },
        flock: a.lk_flags & misc::LK_FLOCK != 0,
    })
}

fn setupmapping(a: abi::SetupmappingIn) -> Result<SetupMapping, RequestError> {
    let known = misc::SETUPMAPPING_FLAG_READ | misc::SETUPMAPPING_FLAG_WRITE;
    let bad = a.len == 0
        || a.flags & !known != 0
        || a.foffset.checked_add(a.len).is_none()
        || a.moffset.checked_add(a.len).is_none();
    if bad {
        return Err(RequestError::BadMapping {
            moffset: a.moffset,
            foffset: a.foffset,
            len: a.len,
            flags: a.flags,
        });
    }
    Ok(SetupMapping {
        fh: (a.fh != u64::MAX).then_some(Handle(a.fh)),
        foffset: a.foffset,
        len: a.len,
        moffset: a.moffset,
        flags: MappingFlags {
            read: a.flags & misc::SETUPMAPPING_FLAG_READ != 0,
            write: a.flags & misc::SETUPMAPPING_FLAG_WRITE != 0,
        },
    })
}

fn removemapping(b: &mut Body<'_>) -> Result<Vec<RemoveMapping>, RequestError> {
    let a: abi::RemovemappingIn = b.take()?;
    let count = a.count as usize;
    if count > abi::REMOVEMAPPING_MAX_ENTRY {
        return Err(RequestError::TooManyEntries {
            opcode: b.opcode,
            count: u64::from(a.count),
            max: abi::REMOVEMAPPING_MAX_ENTRY as u64,
        });
    }
    let want = count * abi::RemovemappingOne::SIZE;
    if b.buf.len() < want {
        return Err(RequestError::ShortBody {
            opcode: b.opcode,
            want,
            got: b.buf.len(),
        });
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let one: abi::RemovemappingOne = b.take()?;
        if one.len == 0 || one.moffset.checked_add(one.len).is_none() {
            return Err(RequestError::BadMapping {
                moffset: one.moffset,
                foffset: 0,
                len: one.len,
                flags: 0,
            });
        }
        out.push(RemoveMapping {
            moffset: one.moffset,
            len: one.len,
        });
    }
    Ok(out)
}

fn batch_forget(b: &mut Body<'_>) -> Result<Vec<(NodeId, u64)>, RequestError> {
    let a: abi::BatchForgetIn = b.take()?;
    let count = a.count as usize;
    let max = b.buf.len() / abi::ForgetOne::SIZE;
    if count > abi::MAX_BATCH_FORGET || count > max {
        return Err(RequestError::TooManyEntries {
            opcode: b.opcode,
            count: u64::from(a.count),
            max: max.min(abi::MAX_BATCH_FORGET) as u64,
        });
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let one: abi::ForgetOne = b.take()?;
        out.push((NodeId(one.nodeid), one.nlookup));
    }
    Ok(out)
}

/// Decodes the body of a request with opcode `op` (extensions already cut off).
pub fn decode(op: u32, body: &[u8], opts: DecodeOptions) -> Result<Request<'_>, RequestError> {
    let mut b = Body {
        opcode: op,
        buf: body,
    };
    let req = match op {
        opcode::INIT => {
            let a: abi::InitIn = b.take()?;
            // flags2 exists from 7.36 on; older kernels send only 16 bytes.
            let flags2 = if a.minor >= 36 {
                b.take::<u32>().unwrap_or(0)
            } else {
                0
            };
            Request::Init {
                major: a.major,
                minor: a.minor,
                max_readahead: a.max_readahead,
                flags: u64::from(a.flags) | (u64::from(flags2) << 32),
            }
        }
        opcode::DESTROY => Request::Destroy,
        opcode::LOOKUP => Request::Lookup {
            name: b.last_cstr()?,
        },
        opcode::FORGET => Request::Forget {
            nlookup: b.take::<abi::ForgetIn>()?.nlookup,
        },
        opcode::BATCH_FORGET => Request::BatchForget(batch_forget(&mut b)?),
        opcode::GETATTR => {
            let a: abi::GetattrIn = b.take()?;
            Request::Getattr {
                fh: fh_if(a.getattr_flags & misc::GETATTR_FH != 0, a.fh),
            }
        }
        opcode::SETATTR => {
            let a: abi::SetattrIn = b.take()?;
            let v = a.valid;
            let has = |bit: u32| v & bit != 0;
            Request::Setattr(SetAttr {
                fh: fh_if(has(fattr::FH), a.fh),
                mode: has(fattr::MODE).then_some(a.mode),
                uid: has(fattr::UID).then_some(a.uid),
                gid: has(fattr::GID).then_some(a.gid),
                size: has(fattr::SIZE).then_some(a.size),
                atime: set_time(v, fattr::ATIME_NOW, fattr::ATIME, a.atime, a.atimensec),
                mtime: set_time(v, fattr::MTIME_NOW, fattr::MTIME, a.mtime, a.mtimensec),
                kill_suidgid: has(fattr::KILL_SUIDGID),
            })
        }
        opcode::READLINK => Request::Readlink,
        opcode::SYMLINK => {
            let name = b.cstr()?;
            Request::Symlink {
                name,
                target: b.last_cstr()?,
            }
        }
        opcode::MKNOD => {
            let a: abi::MknodIn = b.take()?;
            Request::Mknod {
                name: b.last_cstr()?,
                mode: a.mode,
                rdev: a.rdev,
                umask: a.umask,
            }
        }
        opcode::MKDIR => {
            let a: abi::MkdirIn = b.take()?;
            Request::Mkdir {
                name: b.last_cstr()?,
                mode: a.mode,
                umask: a.umask,
            }
        }
        opcode::UNLINK => Request::Unlink {
            name: b.last_cstr()?,
        },
        opcode::RMDIR => Request::Rmdir {
            name: b.last_cstr()?,
        },
        opcode::RENAME => {
            let a: abi::RenameIn = b.take()?;
            let oldname = b.cstr()?;
            Request::Rename {
                newdir: NodeId(a.newdir),
                oldname,
                newname: b.last_cstr()?,
                flags: 0,
            }
        }
        opcode::RENAME2 => {
            let a: abi::Rename2In = b.take()?;
            let oldname = b.cstr()?;
            Request::Rename {
                newdir: NodeId(a.newdir),
                oldname,
                newname: b.last_cstr()?,
                flags: a.flags,
            }
        }
        opcode::LINK => {
            let a: abi::LinkIn = b.take()?;
            Request::Link {
                oldnode: NodeId(a.oldnodeid),
                newname: b.last_cstr()?,
            }
        }
        opcode::OPEN => {
            let a: abi::OpenIn = b.take()?;
            Request::Open {
                flags: a.flags,
                kill_suidgid: a.open_flags & misc::OPEN_KILL_SUIDGID != 0,
            }
        }
        opcode::READ => {
            let a: abi::ReadIn = b.take()?;
            Request::Read {
                fh: Handle(a.fh),
                offset: a.offset,
                size: a.size,
            }
        }
        opcode::WRITE => {
            let a: abi::WriteIn = b.take()?;
            if a.size > abi::MAX_WRITE {
                return Err(RequestError::WriteTooLarge {
                    size: a.size,
                    max: abi::MAX_WRITE,
                });
            }
            // The payload is in the body or, whole, kept apart; never split between them.
            let got = b.buf.len().saturating_add(opts.payload);
            if got != a.size as usize || (opts.payload > 0 && !b.buf.is_empty()) {
                return Err(RequestError::WriteSizeMismatch { size: a.size, got });
            }
            Request::Write {
                fh: Handle(a.fh),
                offset: a.offset,
                size: a.size,
                data: b.bytes(b.buf.len())?,
                args: WriteArgs {
                    from_cache: a.write_flags & misc::WRITE_CACHE != 0,
                    kill_suidgid: a.write_flags & misc::WRITE_KILL_SUIDGID != 0,
                    flags: a.flags,
                },
            }
        }
        opcode::STATFS => Request::Statfs,
        opcode::RELEASE | opcode::RELEASEDIR => {
            let a: abi::ReleaseIn = b.take()?;
            if op == opcode::RELEASEDIR {
                Request::Releasedir {
                    fh: Handle(a.fh),
                    flags: a.flags,
                }
            } else {
                Request::Release {
                    fh: Handle(a.fh),
                    flags: a.flags,
                    flush: a.release_flags & misc::RELEASE_FLUSH != 0,
                    lock_owner: a.lock_owner,
                }
            }
        }
        opcode::FSYNC | opcode::FSYNCDIR => {
            let a: abi::FsyncIn = b.take()?;
            let (fh, datasync) = (Handle(a.fh), a.fsync_flags & misc::FSYNC_FDATASYNC != 0);
            if op == opcode::FSYNC {
                Request::Fsync { fh, datasync }
            } else {
                Request::Fsyncdir { fh, datasync }
            }
        }
        opcode::SETXATTR => {
            let (size, flags) = if opts.setxattr_ext {
                let a: abi::SetxattrIn = b.take()?;
                (a.size, a.flags)
            } else {
                let a: abi::SetxattrInCompat = b.take()?;
                (a.size, a.flags)
            };
            let name = b.cstr()?;
            Request::Setxattr {
                name,
                value: b.bytes(size as usize)?,
                flags,
            }
        }
        opcode::GETXATTR => {
            let a: abi::GetxattrIn = b.take()?;
            Request::Getxattr {
                name: b.last_cstr()?,
                size: a.size,
            }
        }
        opcode::LISTXATTR => Request::Listxattr {
            size: b.take::<abi::GetxattrIn>()?.size,
        },
        opcode::REMOVEXATTR => Request::Removexattr {
            name: b.last_cstr()?,
        },
        opcode::FLUSH => {
            let a: abi::FlushIn = b.take()?;
            Request::Flush {
                fh: Handle(a.fh),
                lock_owner: a.lock_owner,
            }
        }
        opcode::OPENDIR => Request::Opendir {
            flags: b.take::<abi::OpenIn>()?.flags,
        },
        opcode::READDIR | opcode::READDIRPLUS => {
            let a: abi::ReadIn = b.take()?;
            Request::Readdir {
                fh: Handle(a.fh),
                offset: a.offset,
                size: a.size,
                plus: op == opcode::READDIRPLUS,
            }
        }
        opcode::GETLK => Request::Getlk(lock_args(&mut b)?),
        opcode::SETLK | opcode::SETLKW => Request::Setlk {
            args: lock_args(&mut b)?,
            sleep: op == opcode::SETLKW,
        },
        opcode::ACCESS => Request::Access {
            mask: b.take::<abi::AccessIn>()?.mask,
        },
        opcode::CREATE => {
            let a: abi::CreateIn = b.take()?;
            Request::Create {
                name: b.last_cstr()?,
                mode: a.mode,
                flags: a.flags,
                umask: a.umask,
                kill_suidgid: a.open_flags & misc::OPEN_KILL_SUIDGID != 0,
            }
        }
        opcode::INTERRUPT => Request::Interrupt {
            unique: b.take::<abi::InterruptIn>()?.unique,
        },
        opcode::FALLOCATE => {
            let a: abi::FallocateIn = b.take()?;
            Request::Fallocate {
                fh: Handle(a.fh),
                offset: a.offset,
                length: a.length,
                mode: a.mode,
            }
        }
        opcode::LSEEK => {
            let a: abi::LseekIn = b.take()?;
            Request::Lseek {
                fh: Handle(a.fh),
                offset: a.offset,
                whence: a.whence,
            }
        }
        opcode::COPY_FILE_RANGE => {
            let a: abi::CopyFileRangeIn = b.take()?;
            Request::CopyFileRange(CopyRange {
                fh_in: Handle(a.fh_in),
                off_in: a.off_in,
                node_out: NodeId(a.nodeid_out),
                fh_out: Handle(a.fh_out),
                off_out: a.off_out,
                len: a.len,
                flags: a.flags,
            })
        }
        opcode::SYNCFS => {
            b.take::<abi::SyncfsIn>()?;
            Request::Syncfs
        }
        opcode::TMPFILE => {
            let a: abi::CreateIn = b.take()?;
            // The kernel names the new dentry "/"; the name carries nothing.
            let _ = b.last_cstr()?;
            Request::Tmpfile {
                mode: a.mode,
                flags: a.flags,
                umask: a.umask,
            }
        }
        opcode::SETUPMAPPING => Request::Setupmapping(setupmapping(b.take()?)?),
        opcode::REMOVEMAPPING => Request::Removemapping(removemapping(&mut b)?),
        opcode::BMAP | opcode::IOCTL | opcode::POLL | opcode::NOTIFY_REPLY | opcode::STATX => {
            Request::Unsupported(op)
        }
        other => return Err(RequestError::UnknownOpcode(other)),
    };
    Ok(req)
}
