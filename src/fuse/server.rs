//! The request server: header checks, INIT negotiation, one dispatch match
//! from decoded request to [`Filesystem`] method, and reply encoding.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::abi::{self, InHeader, OutHeader, Wire, init_flags as fl};
use super::decode::{DecodeOptions, Request, decode};
use super::error::{Errno, RequestError};
use super::ext::{self, Extensions};
use super::filesystem::{Context, Filesystem, InitRequest, NodeId, XattrReply};
use super::payload::{SliceReader, VecWriter, ZeroCopyReader, ZeroCopyWriter};
use super::reply::{self, DirentBuf};

/// Flags the server itself implements, granted whenever the kernel offers them.
pub const SERVER_FLAGS: u64 = fl::ASYNC_READ
    | fl::BIG_WRITES
    | fl::MAX_PAGES
    | fl::PARALLEL_DIROPS
    | fl::ASYNC_DIO
    | fl::INIT_EXT;

/// Flags the server can carry but only the filesystem can decide on.
pub const FS_NEGOTIABLE_FLAGS: u64 = fl::ATOMIC_O_TRUNC
    | fl::DO_READDIRPLUS
    | fl::READDIRPLUS_AUTO
    | fl::WRITEBACK_CACHE
    | fl::HANDLE_KILLPRIV_V2
    | fl::AUTO_INVAL_DATA
    | fl::POSIX_LOCKS
    | fl::FLOCK_LOCKS
    | fl::SETXATTR_EXT
    | fl::DONT_MASK
    | fl::CACHE_SYMLINKS
    | fl::EXPORT_SUPPORT
    | fl::MAP_ALIGNMENT
    | fl::HAS_INODE_DAX
    | fl::CREATE_SUPP_GROUP;

/// Who sent the request of `h`, with what its extensions said; `no_wait`: see
/// [`Context::no_wait`].
fn context(h: &InHeader, ext: Extensions, no_wait: bool) -> Context {
    Context {
        uid: h.uid,
        gid: h.gid,
        pid: h.pid,
        supp_gid: ext.supp_gid,
        no_wait,
    }
}

/// What handling produced.
enum Outcome {
    /// Success with this reply body.
    Reply(Vec<u8>),
    /// Success with a body of this many bytes, already written through the
    /// [`ZeroCopyWriter`] (a READ).
    Placed(usize),
    /// Failure with this errno.
    Error(Errno),
    /// No reply at all (FORGET, BATCH_FORGET, INTERRUPT).
    None,
}

impl From<Result<Vec<u8>, Errno>> for Outcome {
    fn from(r: Result<Vec<u8>, Errno>) -> Self {
        match r {
            Ok(v) => Self::Reply(v),
            Err(e) => Self::Error(e),
        }
    }
}

/// Serves FUSE requests against a [`Filesystem`]. Safe to share between
/// queue threads: `handle` takes `&self`.
#[derive(Debug)]
pub struct Server<F: Filesystem> {
    fs: F,
    initialized: AtomicBool,
    minor: AtomicU32,
    granted: AtomicU64,
}

impl<F: Filesystem> Server<F> {
    /// A server for `fs`, waiting for INIT.
    pub fn new(fs: F) -> Self {
        Self {
            fs,
            initialized: AtomicBool::new(false),
            minor: AtomicU32::new(0),
            granted: AtomicU64::new(0),
        }
    }

    /// The filesystem served.
    pub fn filesystem(&self) -> &F {
        &self.fs
    }

    /// INIT flags granted in the current session (0 before INIT).
    pub fn granted_flags(&self) -> u64 {
        self.granted.load(Ordering::Acquire)
    }

    /// Protocol minor agreed in the current session (0 before INIT).
    pub fn minor(&self) -> u32 {
        self.minor.load(Ordering::Acquire)
    }

    /// Serves one request.
    ///
    /// `request` holds every byte of the chain's device-readable descriptors
    /// (`fuse_in_header` + body, WRITE payload included); `reply_capacity` is
    /// the total size of its device-writable descriptors. Returns the bytes
    /// to copy into them: empty for requests that get no reply (FORGET,
    /// BATCH_FORGET, INTERRUPT) and when even an out header would not fit.
    /// Malformed requests get an error reply (the unique echoed when the
    /// header could be read); nothing here panics on guest input.
    pub fn handle(&self, request: &[u8], reply_capacity: usize) -> Vec<u8> {
        let ReplyParts {
            mut header, body, ..
        } = self.handle_parts(request, reply_capacity);
        header.extend_from_slice(&body);
        header
    }

    /// Whether the request in `request` (followed by `payload` bytes the transport kept
    /// apart, see [`Server::handle_zero_copy`]) may wait if served (see
    /// [`Filesystem::may_wait`]), decided from its decoded form. A request that does not
    /// decode is answered at once, so it never waits.
    pub fn may_wait(&self, request: &[u8], payload: usize) -> bool {
        let Some(h) = InHeader::read(request) else {
            return false;
        };
        self.check_and_decode(&h, request, payload)
            .is_ok_and(|(req, _)| self.fs.may_wait(&req))
    }

    /// Serves `request` (whole: no payload kept apart) where it must not wait, if the
    /// filesystem says it is worth trying ([`Filesystem::try_first`]): the reply, or `None`
    /// when it would have to wait (nothing the guest can see has changed), does not decode,
    /// or is not worth trying. A `None` request is then served as usual, where it may wait.
    pub fn try_without_waiting(&self, request: &[u8], reply_capacity: usize) -> Option<ReplyParts> {
        let h = InHeader::read(request)?;
        let (req, ext) = self.check_and_decode(&h, request, 0).ok()?;
        if !self.fs.try_first(&req) {
            return None;
        }
        let mut data = VecWriter::new(
            reply_capacity
                .saturating_sub(OutHeader::SIZE)
                .min(abi::MAX_BUFFER_SIZE),
        );
        let out = self.dispatch(
            &h,
            req,
            context(&h, ext, true),
            reply_capacity,
            &mut SliceReader::default(),
            &mut data,
        );
        if matches!(out, Outcome::Error(e) if e == Errno::WOULD_WAIT) {
            return None;
        }
        let mut reply = Self::reply(&h, out, reply_capacity);
        if reply.placed > 0 {
            reply.body = data.into_inner();
            reply.placed = 0;
        }
        Some(reply)
    }

    /// As [`Server::handle`], with the reply in two parts that go into the chain one after
    /// the other: the out header (empty when there is no reply) and the body
    /// ([`ReplyParts::placed`] is 0).
    pub fn handle_parts(&self, request: &[u8], reply_capacity: usize) -> ReplyParts {
        let mut data = VecWriter::new(
            reply_capacity
                .saturating_sub(OutHeader::SIZE)
                .min(abi::MAX_BUFFER_SIZE),
        );
        let mut reply = self.handle_zero_copy(
            request,
            &mut SliceReader::default(),
            &mut data,
            reply_capacity,
        );
        if reply.placed > 0 {
            reply.body = data.into_inner();
            reply.placed = 0;
        }
        reply
    }

    /// Serves one request whose READ or WRITE payload stays in the transport's buffers.
    ///
    /// `request` holds the chain's device-readable bytes up to the payload: the whole
    /// request, or for a WRITE its headers only, the payload left in `payload` (every
    /// remaining byte of it; it must be empty for any other request). `data` is the
    /// device-writable room after the reply's out header: a READ's file bytes go straight
    /// there, and the reply says so in [`ReplyParts::placed`] (its header then goes in the
    /// room before `data`). `reply_capacity` is the size of all the device-writable
    /// descriptors, header room included. Checks and errors as [`Server::handle`].
    pub fn handle_zero_copy(
        &self,
        request: &[u8],
        payload: &mut dyn ZeroCopyReader,
        data: &mut dyn ZeroCopyWriter,
        reply_capacity: usize,
    ) -> ReplyParts {
        let Some(h) = InHeader::read(request) else {
            let e = RequestError::ShortHeader { got: request.len() };
            log::warn!("{e}");
            let reply = reply::error(0, e.errno());
            return ReplyParts::whole(fit(reply, OutHeader::SIZE, 0, reply_capacity));
        };
        let out = match self.check_and_decode(&h, request, payload.remaining()) {
            Ok((req, ext)) => {
                let ctx = context(&h, ext, false);
                self.dispatch(&h, req, ctx, reply_capacity, payload, data)
            }
            Err(e) => {
                log::debug!("request {} rejected: {e}", h.unique);
                if matches!(h.opcode, abi::opcode::FORGET | abi::opcode::BATCH_FORGET) {
                    Outcome::None
                } else {
                    Outcome::Error(e.errno())
                }
            }
        };
        Self::reply(&h, out, reply_capacity)
    }

    /// The reply to the request of `h` for `out`, fitted to `reply_capacity`.
    fn reply(h: &InHeader, out: Outcome, reply_capacity: usize) -> ReplyParts {
        match out {
            Outcome::Reply(body) if OutHeader::SIZE + body.len() <= reply_capacity => ReplyParts {
                header: reply::header(h.unique, body.len()),
                body,
                placed: 0,
            },
            // The file system read at most the room of `data`, which follows a header's room.
            Outcome::Placed(n) if OutHeader::SIZE + n <= reply_capacity => ReplyParts {
                header: reply::header(h.unique, n),
                body: Vec::new(),
                placed: n,
            },
            Outcome::Placed(n) => ReplyParts::whole(fit(
                reply::header(h.unique, n),
                OutHeader::SIZE + n,
                h.unique,
                reply_capacity,
            )),
            Outcome::Reply(body) => ReplyParts::whole(fit(
                reply::header(h.unique, body.len()),
                OutHeader::SIZE + body.len(),
                h.unique,
                reply_capacity,
            )),
            Outcome::Error(errno) => ReplyParts::whole(fit(
                reply::error(h.unique, errno),
                OutHeader::SIZE,
                h.unique,
                reply_capacity,
            )),
            Outcome::None => ReplyParts::whole(Vec::new()),
        }
    }

    fn check_and_decode<'a>(
        &self,
        h: &InHeader,
        request: &'a [u8],
        payload: usize,
    ) -> Result<(Request<'a>, Extensions), RequestError> {
        let actual = request.len().saturating_add(payload);
        // Only a WRITE's payload may be kept apart, and not with extensions (they would
        // sit at its end).
        let apart_ok = payload == 0 || (h.opcode == abi::opcode::WRITE && h.total_extlen == 0);
        if h.len as usize != actual || !apart_ok {
            return Err(RequestError::LengthMismatch {
                header: h.len,
                actual,
            });
        }
        let body = request.get(InHeader::SIZE..).unwrap_or(&[]);
        // Extensions sit at the end of the body: cut off, and only the supplementary
        // group of a creation is read (when FUSE_CREATE_SUPP_GROUP was granted).
        let extlen = usize::from(h.total_extlen) * 8;
        let Some((body, extensions)) = body.len().checked_sub(extlen).map(|at| body.split_at(at))
        else {
            return Err(RequestError::BadExtensionLength {
                opcode: h.opcode,
                extlen,
                body: body.len(),
            });
        };
        if h.opcode != abi::opcode::INIT && !self.initialized.load(Ordering::Acquire) {
            return Err(RequestError::NotInitialized(h.opcode));
        }
        let granted = self.granted_flags();
        let ext = ext::parse(h.opcode, extensions, granted & fl::CREATE_SUPP_GROUP != 0)?;
        let opts = DecodeOptions {
            setxattr_ext: granted & fl::SETXATTR_EXT != 0,
            payload,
        };
        decode(h.opcode, body, opts).map(|req| (req, ext))
    }

    fn init(&self, major: u32, minor: u32, max_readahead: u32, offered: u64) -> Outcome {
        if major > abi::KERNEL_VERSION {
            // The kernel retries with our major when it can.
            let out = abi::InitOut {
                major: abi::KERNEL_VERSION,
                minor: abi::KERNEL_MINOR_VERSION,
                ..Default::default()
            };
            return Outcome::Reply(out.to_bytes());
        }
        if major < abi::KERNEL_VERSION || minor < abi::MIN_KERNEL_MINOR_VERSION {
            log::warn!("{}", RequestError::UnsupportedVersion { major, minor });
            return Outcome::Error(RequestError::UnsupportedVersion { major, minor }.errno());
        }
        let minor = minor.min(abi::KERNEL_MINOR_VERSION);
        // flags2 is only meaningful when the kernel set INIT_EXT.
        let offered = if offered & fl::INIT_EXT != 0 {
            offered
        } else {
            offered & 0xffff_ffff
        };
        let req = InitRequest {
            minor,
            offered: offered & FS_NEGOTIABLE_FLAGS,
        };
        let fs_reply = match self.fs.init(req) {
            Ok(r) => r,
            Err(e) => return Outcome::Error(e),
        };
        let granted = (offered & SERVER_FLAGS) | (fs_reply.flags & req.offered);
        let out = abi::InitOut {
            major: abi::KERNEL_VERSION,
            minor,
            max_readahead,
            // The low word; the high one goes in `flags2`.
            flags: (granted & 0xffff_ffff) as u32,
            max_background: 0,
            congestion_threshold: 0,
            max_write: abi::MAX_WRITE,
            time_gran: 1,
            max_pages: if granted & fl::MAX_PAGES != 0 {
                abi::MAX_PAGES
            } else {
                0
            },
            map_alignment: if granted & fl::MAP_ALIGNMENT != 0 {
                fs_reply.map_alignment
            } else {
                0
            },
            flags2: (granted >> 32) as u32,
            unused: [0; 28],
        };
        self.minor.store(minor, Ordering::Release);
        self.granted.store(granted, Ordering::Release);
        self.initialized.store(true, Ordering::Release);
        log::info!("FUSE session 7.{minor}, flags granted {granted:#x}");
        Outcome::Reply(out.to_bytes())
    }

    fn dispatch(
        &self,
        h: &InHeader,
        req: Request<'_>,
        ctx: Context,
        cap: usize,
        payload: &mut dyn ZeroCopyReader,
        data: &mut dyn ZeroCopyWriter,
    ) -> Outcome {
        let node = NodeId(h.nodeid);
        let fs = &self.fs;
        // Room for a reply body, bounded by the writable descriptors and max_write. Never
        // more than `asked`, so it stays a u32 whatever the descriptors offer.
        let room = |asked: u32| -> u32 {
            let bound = cap
                .saturating_sub(OutHeader::SIZE)
                .min(abi::MAX_BUFFER_SIZE);
            u32::try_from(bound).map_or(asked, |bound| asked.min(bound))
        };
        let entry = |r: Result<_, Errno>| r.map(|e| reply::entry_out(&e).to_bytes()).into();
        let empty = |r: Result<(), Errno>| r.map(|()| Vec::new()).into();
        let attr = |r: Result<_, Errno>| r.map(|(a, t)| reply::attr_out(a, t).to_bytes()).into();
        let opened = |r: Result<super::filesystem::Opened, Errno>| {
            r.map(|o| {
                abi::OpenOut {
                    fh: o.fh.0,
                    open_flags: o.open_flags,
                    padding: 0,
                }
                .to_bytes()
            })
            .into()
        };
        let created = |r: Result<(super::filesystem::Entry, super::filesystem::Opened), Errno>| {
            r.map(|(e, o)| {
                let mut v = reply::entry_out(&e).to_bytes();
                abi::OpenOut {
                    fh: o.fh.0,
                    open_flags: o.open_flags,
                    padding: 0,
                }
                .put(&mut v);
                v
            })
            .into()
        };
        let xattr = |r: Result<XattrReply, Errno>| {
            r.map(|x| match x {
                XattrReply::Size(size) => abi::GetxattrOut { size, padding: 0 }.to_bytes(),
                XattrReply::Data(v) => v,
            })
            .into()
        };
        match req {
            Request::Init {
                major,
                minor,
                max_readahead,
                flags,
            } => self.init(major, minor, max_readahead, flags),
            Request::Destroy => {
                fs.destroy();
                self.initialized.store(false, Ordering::Release);
                self.granted.store(0, Ordering::Release);
                Outcome::Reply(Vec::new())
            }
            Request::Lookup { name } => entry(fs.lookup(ctx, node, name)),
            Request::Forget { nlookup } => {
                fs.forget(node, nlookup);
                Outcome::None
            }
            Request::BatchForget(list) => {
                fs.batch_forget(&list);
                Outcome::None
            }
            Request::Getattr { fh } => attr(fs.getattr(ctx, node, fh)),
            Request::Setattr(a) => attr(fs.setattr(ctx, node, a)),
            Request::Readlink => fs.readlink(ctx, node).into(),
            Request::Symlink { name, target } => entry(fs.symlink(ctx, target, node, name)),
            Request::Mknod {
                name,
                mode,
                rdev,
                umask,
            } => entry(fs.mknod(ctx, node, name, mode, rdev, umask)),
            Request::Mkdir { name, mode, umask } => entry(fs.mkdir(ctx, node, name, mode, umask)),
            Request::Unlink { name } => empty(fs.unlink(ctx, node, name)),
            Request::Rmdir { name } => empty(fs.rmdir(ctx, node, name)),
            Request::Rename {
                newdir,
                oldname,
                newname,
                flags,
            } => empty(fs.rename(ctx, node, oldname, newdir, newname, flags)),
            Request::Link { oldnode, newname } => entry(fs.link(ctx, oldnode, node, newname)),
            Request::Open {
                flags,
                kill_suidgid,
            } => opened(fs.open(ctx, node, flags, kill_suidgid)),
            Request::Read { fh, offset, size } => {
                // Never more than `data` takes: the header goes before it.
                let size = room(size).min(u32::try_from(data.room()).unwrap_or(u32::MAX));
                match fs.read(ctx, node, fh, offset, size, data) {
                    Ok(n) => Outcome::Placed(n),
                    Err(e) => Outcome::Error(e),
                }
            }
            Request::Write {
                fh,
                offset,
                size,
                data: inline,
                args,
            } => {
                // Decoding left the payload whole in one place: the body, or `payload`.
                let mut body = SliceReader::new(inline);
                let source: &mut dyn ZeroCopyReader = if inline.len() == size as usize {
                    &mut body
                } else {
                    payload
                };
                fs.write(ctx, node, fh, offset, source, args)
                    .map(|n| {
                        abi::WriteOut {
                            size: n,
                            padding: 0,
                        }
                        .to_bytes()
                    })
                    .into()
            }
            Request::Statfs => fs.statfs(ctx, node).map(|s| s.to_bytes()).into(),
            Request::Release {
                fh,
                flags,
                flush,
                lock_owner,
            } => empty(fs.release(ctx, node, fh, flags, flush, lock_owner)),
            Request::Fsync { fh, datasync } => empty(fs.fsync(ctx, node, datasync, fh)),
            Request::Setxattr { name, value, flags } => {
                empty(fs.setxattr(ctx, node, name, value, flags))
            }
            Request::Getxattr { name, size } => xattr(fs.getxattr(ctx, node, name, room(size))),
            Request::Listxattr { size } => xattr(fs.listxattr(ctx, node, room(size))),
            Request::Removexattr { name } => empty(fs.removexattr(ctx, node, name)),
            Request::Flush { fh, lock_owner } => empty(fs.flush(ctx, node, fh, lock_owner)),
            Request::Opendir { flags } => opened(fs.opendir(ctx, node, flags)),
            Request::Readdir {
                fh,
                offset,
                size,
                plus,
            } => {
                let mut buf = DirentBuf::new(room(size) as usize);
                let r = if plus {
                    fs.readdirplus(ctx, node, fh, offset, &mut buf)
                } else {
                    fs.readdir(ctx, node, fh, offset, &mut buf)
                };
                r.map(|()| buf.into_bytes()).into()
            }
            Request::Releasedir { fh, flags } => empty(fs.releasedir(ctx, node, fh, flags)),
            Request::Fsyncdir { fh, datasync } => empty(fs.fsyncdir(ctx, node, datasync, fh)),
            Request::Getlk(args) => fs
                .getlk(ctx, node, args)
                .map(|l| {
                    abi::FileLock {
                        start: l.start,
                        end: l.end,
                        typ: l.typ,
                        pid: l.pid,
                    }
                    .to_bytes()
                })
                .into(),
            Request::Setlk { args, sleep } => empty(fs.setlk(ctx, node, args, sleep)),
            Request::Access { mask } => empty(fs.access(ctx, node, mask)),
            Request::Create {
                name,
                mode,
                flags,
                umask,
                kill_suidgid,
            } => created(fs.create(ctx, node, name, mode, flags, umask, kill_suidgid)),
            Request::Interrupt { unique } => {
                fs.interrupt(unique);
                Outcome::None
            }
            Request::Fallocate {
                fh,
                offset,
                length,
                mode,
            } => empty(fs.fallocate(ctx, node, fh, mode, offset, length)),
            Request::Lseek { fh, offset, whence } => fs
                .lseek(ctx, node, fh, offset, whence)
                .map(|offset| abi::LseekOut { offset }.to_bytes())
                .into(),
            Request::CopyFileRange(mut args) => {
                // The reply carries a u32 count; the kernel clamps the same way.
                args.len = args.len.min(u64::from(u32::MAX) & !0xfff);
                fs.copy_file_range(ctx, node, args)
                    .map(|n| {
                        abi::WriteOut {
                            size: u32::try_from(n).unwrap_or(u32::MAX),
                            padding: 0,
                        }
                        .to_bytes()
                    })
                    .into()
            }
            Request::Syncfs => empty(fs.syncfs(ctx, node)),
            Request::Tmpfile { mode, flags, umask } => {
                created(fs.tmpfile(ctx, node, mode, flags, umask))
            }
            Request::Setupmapping(args) => empty(fs.setupmapping(ctx, node, args)),
            Request::Removemapping(ranges) => empty(fs.removemapping(ctx, &ranges)),
            Request::Unsupported(_) => Outcome::Error(Errno::ENOSYS),
        }
    }
}

/// A reply as header and body (see [`Server::handle_parts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyParts {
    /// The out header, or the whole reply; empty when there is none.
    pub header: Vec<u8>,
    /// What follows the header (empty for header-only replies).
    pub body: Vec<u8>,
    /// Bytes of body already in the transport's buffers, right after the header's room
    /// (written through the [`ZeroCopyWriter`] of [`Server::handle_zero_copy`]); 0 when
    /// `body` holds it, or there is none.
    pub placed: usize,
}

impl ReplyParts {
    fn whole(reply: Vec<u8>) -> Self {
        ReplyParts {
            header: reply,
            body: Vec::new(),
            placed: 0,
        }
    }

    /// Bytes in all.
    pub fn len(&self) -> usize {
        self.header.len() + self.body.len() + self.placed
    }

    /// True when there is no reply at all.
    pub fn is_empty(&self) -> bool {
        self.header.is_empty()
    }
}

/// `reply` (whose full length is `len`) if it fits in `cap` bytes; else ERANGE, or
/// nothing when not even a header fits.
fn fit(reply: Vec<u8>, len: usize, unique: u64, cap: usize) -> Vec<u8> {
    if len <= cap {
        reply
    } else if cap >= OutHeader::SIZE {
        log::warn!("reply of {len} bytes to {unique} exceeds the {cap}-byte buffer");
        reply::error(unique, Errno::ERANGE)
    } else {
        log::warn!("request {unique}: {cap}-byte reply buffer cannot hold a header");
        Vec::new()
    }
}
