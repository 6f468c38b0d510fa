//! Test helpers playing the guest kernel: encode real FUSE requests, run them
//! through a [`Server`], decode the replies. Public (but hidden) so the
//! integration tests and our frontend can reuse it.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::abi::{self, OutHeader, Wire, opcode as op};
use super::filesystem::Filesystem;
use super::request;
use super::server::Server;

/// Encodes a request: header (length filled in) + `body`, from pid 42.
pub fn encode_request(
    opcode: u32,
    unique: u64,
    nodeid: u64,
    uid: u32,
    gid: u32,
    body: &[u8],
) -> Vec<u8> {
    let caller = request::Caller { uid, gid, pid: 42 };
    request::encode(opcode, unique, nodeid, caller, &[body])
        .expect("a test request shorter than 4 GiB")
}

/// `len` as a u32 length field. The requests built here are small; a test asking for one
/// of 4 GiB or more is a broken test.
fn wire_len(len: usize) -> u32 {
    u32::try_from(len).expect("FUSE length fields are u32")
}

/// `s` followed by a NUL byte.
pub fn cstr(s: &[u8]) -> Vec<u8> {
    let mut v = s.to_vec();
    v.push(0);
    v
}

/// Concatenates byte slices.
pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The out header.
    pub header: OutHeader,
    /// Bytes after the header.
    pub body: Vec<u8>,
}

impl Reply {
    /// Parses reply bytes; panics (test code) if they are not a valid reply.
    pub fn parse(bytes: &[u8]) -> Self {
        let header = OutHeader::read(bytes).expect("reply shorter than fuse_out_header");
        assert_eq!(
            header.len as usize,
            bytes.len(),
            "out header length disagrees with reply"
        );
        Self {
            header,
            body: bytes[OutHeader::SIZE..].to_vec(),
        }
    }

    /// `Ok(body)` or `Err(positive errno)`.
    pub fn result(self) -> Result<Vec<u8>, i32> {
        if self.header.error == 0 {
            Ok(self.body)
        } else {
            Err(-self.header.error)
        }
    }
}

/// One directory entry as decoded from a READDIR / READDIRPLUS reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDirent {
    /// The entry (READDIRPLUS only).
    pub entry: Option<abi::EntryOut>,
    /// `d_ino`.
    pub ino: u64,
    /// Cookie for the next READDIR.
    pub off: u64,
    /// `DT_*`.
    pub typ: u32,
    /// Name.
    pub name: Vec<u8>,
}

/// Decodes READDIR (`plus` false) or READDIRPLUS records.
pub fn parse_dirents(mut b: &[u8], plus: bool) -> Vec<ParsedDirent> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let entry = if plus {
            let e = abi::EntryOut::read(b).expect("short direntplus");
            b = &b[abi::EntryOut::SIZE..];
            Some(e)
        } else {
            None
        };
        let d = abi::Dirent::read(b).expect("short dirent");
        let name = b[abi::Dirent::SIZE..abi::Dirent::SIZE + d.namelen as usize].to_vec();
        b = &b[abi::dirent_size(d.namelen as usize)..];
        out.push(ParsedDirent {
            entry,
            ino: d.ino,
            off: d.off,
            typ: d.typ,
            name,
        });
    }
    out
}

/// How a [`Client`] reaches a FUSE server: one request in, its reply out.
///
/// In process it is the [`Server`] itself; over a socket it is a virtqueue of our
/// frontend ([`crate::frontend::FuseQueue`]), so the same client drives both.
pub trait Transport {
    /// Sends one request with `reply_capacity` bytes of writable buffer; returns the
    /// bytes the server wrote (empty when it sent no reply).
    fn exchange(&self, request: &[u8], reply_capacity: usize) -> Vec<u8>;
}

impl<F: Filesystem> Transport for Server<F> {
    fn exchange(&self, request: &[u8], reply_capacity: usize) -> Vec<u8> {
        self.handle(request, reply_capacity)
    }
}

/// A guest-kernel stand-in driving a FUSE server through a [`Transport`].
#[derive(Debug)]
pub struct Client<T: Transport> {
    /// The way to the server.
    pub transport: T,
    unique: AtomicU64,
    /// uid put in request headers.
    pub uid: AtomicU32,
    /// gid put in request headers.
    pub gid: AtomicU32,
    /// The supplementary group sent with creations (`FUSE_EXT_GROUPS`); `u64::MAX`: none.
    supp_group: AtomicU64,
    /// Writable-descriptor capacity offered with each request.
    pub reply_capacity: usize,
}

/// Result type of client calls: `Err` holds a positive errno.
pub type R<T> = Result<T, i32>;

impl<F: Filesystem> Client<Server<F>> {
    /// A client for `fs`, in process (not yet initialised).
    pub fn new(fs: F) -> Self {
        Self::over(Server::new(fs))
    }

    /// The server under test.
    pub fn server(&self) -> &Server<F> {
        &self.transport
    }
}

impl<X: Transport> Client<X> {
    /// A client sending through `transport` (not yet initialised).
    pub fn over(transport: X) -> Self {
        Self {
            transport,
            unique: AtomicU64::new(1),
            uid: AtomicU32::new(0),
            gid: AtomicU32::new(0),
            supp_group: AtomicU64::new(u64::MAX),
            reply_capacity: abi::MAX_BUFFER_SIZE + 4096,
        }
    }

    /// Sends `gid` as the caller's supplementary group (a `FUSE_EXT_GROUPS` extension)
    /// with later CREATE, MKNOD, MKDIR, SYMLINK and TMPFILE requests, as Linux does once
    /// `FUSE_CREATE_SUPP_GROUP` is granted and the caller is in the parent's group through
    /// a supplementary group; `None`: no extension.
    pub fn set_supp_group(&self, gid: Option<u32>) {
        self.supp_group
            .store(gid.map_or(u64::MAX, u64::from), Ordering::Relaxed);
    }

    /// Sets the caller uid/gid of later requests.
    pub fn set_caller(&self, uid: u32, gid: u32) {
        self.uid.store(uid, Ordering::Relaxed);
        self.gid.store(gid, Ordering::Relaxed);
    }

    /// Sends raw request bytes; returns the raw reply.
    pub fn raw(&self, request: &[u8]) -> Vec<u8> {
        self.transport.exchange(request, self.reply_capacity)
    }

    /// Sends `opcode` on `nodeid` with `body`; returns the parsed reply, or
    /// `None` when the server sent none.
    pub fn send(&self, opcode: u32, nodeid: u64, body: &[u8]) -> Option<Reply> {
        let unique = self.unique.fetch_add(1, Ordering::Relaxed);
        let group = u32::try_from(self.supp_group.load(Ordering::Relaxed)).ok();
        let creates = matches!(
            opcode,
            op::CREATE | op::MKNOD | op::MKDIR | op::SYMLINK | op::TMPFILE
        );
        let mut body = body.to_vec();
        let mut extlen = 0u16;
        if let Some(gid) = group.filter(|_| creates) {
            // After the arguments (unpadded; `total_extlen` counts from the end):
            // fuse_ext_header { size 16, type }, nr_groups 1, gid.
            for word in [16, abi::ext_type::GROUPS, 1, gid] {
                body.extend_from_slice(&u32::to_le_bytes(word));
            }
            extlen = 2;
        }
        let mut req = encode_request(
            opcode,
            unique,
            nodeid,
            self.uid.load(Ordering::Relaxed),
            self.gid.load(Ordering::Relaxed),
            &body,
        );
        // fuse_in_header.total_extlen, in 8-byte units.
        req[36..38].copy_from_slice(&extlen.to_le_bytes());
        let bytes = self.raw(&req);
        if bytes.is_empty() {
            return None;
        }
        let r = Reply::parse(&bytes);
        assert_eq!(r.header.unique, unique, "unique not echoed");
        Some(r)
    }

    /// Sends and expects a reply.
    pub fn call(&self, opcode: u32, nodeid: u64, body: &[u8]) -> R<Vec<u8>> {
        self.send(opcode, nodeid, body).expect("no reply").result()
    }

    fn typed<T: Wire>(&self, opcode: u32, nodeid: u64, body: &[u8]) -> R<T> {
        let b = self.call(opcode, nodeid, body)?;
        assert_eq!(b.len(), T::SIZE, "reply body size for opcode {opcode}");
        Ok(T::get(&b))
    }

    fn empty(&self, opcode: u32, nodeid: u64, body: &[u8]) -> R<()> {
        let b = self.call(opcode, nodeid, body)?;
        assert!(b.is_empty(), "unexpected reply body for opcode {opcode}");
        Ok(())
    }

    /// INIT offering `flags` at protocol 7.`minor`.
    pub fn init_with(&self, major: u32, minor: u32, flags: u64) -> R<abi::InitOut> {
        let body = request::init_args(major, minor, 131072, flags);
        self.typed(op::INIT, 0, &body)
    }

    /// INIT as a Linux 6.12 guest (7.41, every flag offered).
    pub fn init(&self) -> abi::InitOut {
        self.init_with(7, 41, u64::MAX >> 1).expect("INIT failed")
    }

    /// LOOKUP.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> R<abi::EntryOut> {
        self.typed(op::LOOKUP, parent, &cstr(name))
    }

    /// FORGET (no reply expected).
    pub fn forget(&self, node: u64, nlookup: u64) {
        assert!(
            self.send(op::FORGET, node, &abi::ForgetIn { nlookup }.to_bytes())
                .is_none()
        );
    }

    /// BATCH_FORGET (no reply expected).
    pub fn batch_forget(&self, list: &[(u64, u64)]) {
        let mut b = abi::BatchForgetIn {
            count: wire_len(list.len()),
            dummy: 0,
        }
        .to_bytes();
        for &(nodeid, nlookup) in list {
            abi::ForgetOne { nodeid, nlookup }.put(&mut b);
        }
        assert!(self.send(op::BATCH_FORGET, 0, &b).is_none());
    }

    /// GETATTR (by node, or through `fh`).
    pub fn getattr(&self, node: u64, fh: Option<u64>) -> R<abi::AttrOut> {
        let a = abi::GetattrIn {
            getattr_flags: u32::from(fh.is_some()),
            dummy: 0,
            fh: fh.unwrap_or(0),
        };
        self.typed(op::GETATTR, node, &a.to_bytes())
    }

    /// SETATTR.
    pub fn setattr(&self, node: u64, a: abi::SetattrIn) -> R<abi::AttrOut> {
        self.typed(op::SETATTR, node, &a.to_bytes())
    }

    /// MKDIR.
    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32) -> R<abi::EntryOut> {
        self.typed(
            op::MKDIR,
            parent,
            &cat(&[&abi::MkdirIn { mode, umask: 0o022 }.to_bytes(), &cstr(name)]),
        )
    }

    /// MKNOD.
    pub fn mknod(&self, parent: u64, name: &[u8], mode: u32, rdev: u32) -> R<abi::EntryOut> {
        let a = abi::MknodIn {
            mode,
            rdev,
            umask: 0o022,
            padding: 0,
        };
        self.typed(op::MKNOD, parent, &cat(&[&a.to_bytes(), &cstr(name)]))
    }

    /// SYMLINK `name` -> `target`.
    pub fn symlink(&self, parent: u64, name: &[u8], target: &[u8]) -> R<abi::EntryOut> {
        self.typed(op::SYMLINK, parent, &cat(&[&cstr(name), &cstr(target)]))
    }

    /// READLINK.
    pub fn readlink(&self, node: u64) -> R<Vec<u8>> {
        self.call(op::READLINK, node, &[])
    }

    /// LINK `node` as `name` in `parent`.
    pub fn link(&self, node: u64, parent: u64, name: &[u8]) -> R<abi::EntryOut> {
        self.typed(
            op::LINK,
            parent,
            &cat(&[&abi::LinkIn { oldnodeid: node }.to_bytes(), &cstr(name)]),
        )
    }

    /// UNLINK.
    pub fn unlink(&self, parent: u64, name: &[u8]) -> R<()> {
        self.empty(op::UNLINK, parent, &cstr(name))
    }

    /// RMDIR.
    pub fn rmdir(&self, parent: u64, name: &[u8]) -> R<()> {
        self.empty(op::RMDIR, parent, &cstr(name))
    }

    /// RENAME (flags 0) or RENAME2.
    pub fn rename(&self, olddir: u64, old: &[u8], newdir: u64, new: &[u8], flags: u32) -> R<()> {
        if flags == 0 {
            self.empty(
                op::RENAME,
                olddir,
                &cat(&[&abi::RenameIn { newdir }.to_bytes(), &cstr(old), &cstr(new)]),
            )
        } else {
            let a = abi::Rename2In {
                newdir,
                flags,
                padding: 0,
            };
            self.empty(
                op::RENAME2,
                olddir,
                &cat(&[&a.to_bytes(), &cstr(old), &cstr(new)]),
            )
        }
    }

    /// CREATE.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: u32,
    ) -> R<(abi::EntryOut, abi::OpenOut)> {
        let a = abi::CreateIn {
            flags,
            mode,
            umask: 0o022,
            open_flags: 0,
        };
        let b = self.call(op::CREATE, parent, &cat(&[&a.to_bytes(), &cstr(name)]))?;
        assert_eq!(b.len(), abi::EntryOut::SIZE + abi::OpenOut::SIZE);
        Ok((
            abi::EntryOut::get(&b),
            abi::OpenOut::get(&b[abi::EntryOut::SIZE..]),
        ))
    }

    /// TMPFILE in `parent`.
    pub fn tmpfile(&self, parent: u64, mode: u32, flags: u32) -> R<(abi::EntryOut, abi::OpenOut)> {
        let a = abi::CreateIn {
            flags,
            mode,
            umask: 0,
            open_flags: 0,
        };
        let b = self.call(op::TMPFILE, parent, &cat(&[&a.to_bytes(), &cstr(b"/")]))?;
        Ok((
            abi::EntryOut::get(&b),
            abi::OpenOut::get(&b[abi::EntryOut::SIZE..]),
        ))
    }

    /// OPEN.
    pub fn open(&self, node: u64, flags: u32) -> R<abi::OpenOut> {
        self.typed(
            op::OPEN,
            node,
            &abi::OpenIn {
                flags,
                open_flags: 0,
            }
            .to_bytes(),
        )
    }

    /// OPEN with `FUSE_OPEN_KILL_SUIDGID`.
    pub fn open_kill(&self, node: u64, flags: u32) -> R<abi::OpenOut> {
        self.typed(
            op::OPEN,
            node,
            &abi::OpenIn {
                flags,
                open_flags: abi::misc::OPEN_KILL_SUIDGID,
            }
            .to_bytes(),
        )
    }

    /// READ.
    pub fn read(&self, node: u64, fh: u64, offset: u64, size: u32) -> R<Vec<u8>> {
        let a = abi::ReadIn {
            fh,
            offset,
            size,
            ..Default::default()
        };
        self.call(op::READ, node, &a.to_bytes())
    }

    /// WRITE with `write_flags`.
    pub fn write_flags(
        &self,
        node: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        write_flags: u32,
    ) -> R<u32> {
        let a = abi::WriteIn {
            fh,
            offset,
            size: wire_len(data.len()),
            write_flags,
            ..Default::default()
        };
        Ok(self
            .typed::<abi::WriteOut>(op::WRITE, node, &cat(&[&a.to_bytes(), data]))?
            .size)
    }

    /// WRITE.
    pub fn write(&self, node: u64, fh: u64, offset: u64, data: &[u8]) -> R<u32> {
        self.write_flags(node, fh, offset, data, 0)
    }

    /// RELEASE.
    pub fn release(&self, node: u64, fh: u64) -> R<()> {
        self.empty(
            op::RELEASE,
            node,
            &abi::ReleaseIn {
                fh,
                ..Default::default()
            }
            .to_bytes(),
        )
    }

    /// FLUSH.
    pub fn flush(&self, node: u64, fh: u64) -> R<()> {
        self.empty(
            op::FLUSH,
            node,
            &abi::FlushIn {
                fh,
                ..Default::default()
            }
            .to_bytes(),
        )
    }

    /// FSYNC (or FSYNCDIR with `dir`).
    pub fn fsync(&self, node: u64, fh: u64, datasync: bool, dir: bool) -> R<()> {
        let a = abi::FsyncIn {
            fh,
            fsync_flags: u32::from(datasync),
            padding: 0,
        };
        self.empty(
            if dir { op::FSYNCDIR } else { op::FSYNC },
            node,
            &a.to_bytes(),
        )
    }

    /// STATFS.
    pub fn statfs(&self, node: u64) -> R<abi::Kstatfs> {
        self.typed(op::STATFS, node, &[])
    }

    /// OPENDIR.
    pub fn opendir(&self, node: u64) -> R<abi::OpenOut> {
        self.typed(op::OPENDIR, node, &abi::OpenIn::default().to_bytes())
    }

    /// READDIR or READDIRPLUS.
    pub fn readdir(
        &self,
        node: u64,
        fh: u64,
        offset: u64,
        size: u32,
        plus: bool,
    ) -> R<Vec<ParsedDirent>> {
        let a = abi::ReadIn {
            fh,
            offset,
            size,
            ..Default::default()
        };
        let b = self.call(
            if plus { op::READDIRPLUS } else { op::READDIR },
            node,
            &a.to_bytes(),
        )?;
        Ok(parse_dirents(&b, plus))
    }

    /// RELEASEDIR.
    pub fn releasedir(&self, node: u64, fh: u64) -> R<()> {
        self.empty(
            op::RELEASEDIR,
            node,
            &abi::ReleaseIn {
                fh,
                ..Default::default()
            }
            .to_bytes(),
        )
    }

    /// SETXATTR (compat layout).
    pub fn setxattr(&self, node: u64, name: &[u8], value: &[u8], flags: u32) -> R<()> {
        let a = abi::SetxattrInCompat {
            size: wire_len(value.len()),
            flags,
        };
        self.empty(
            op::SETXATTR,
            node,
            &cat(&[&a.to_bytes(), &cstr(name), value]),
        )
    }

    /// GETXATTR; `size` 0 returns the needed size encoded as 4 LE... bytes of fuse_getxattr_out.
    pub fn getxattr(&self, node: u64, name: &[u8], size: u32) -> R<Vec<u8>> {
        self.call(
            op::GETXATTR,
            node,
            &cat(&[
                &abi::GetxattrIn { size, padding: 0 }.to_bytes(),
                &cstr(name),
            ]),
        )
    }

    /// LISTXATTR.
    pub fn listxattr(&self, node: u64, size: u32) -> R<Vec<u8>> {
        self.call(
            op::LISTXATTR,
            node,
            &abi::GetxattrIn { size, padding: 0 }.to_bytes(),
        )
    }

    /// REMOVEXATTR.
    pub fn removexattr(&self, node: u64, name: &[u8]) -> R<()> {
        self.empty(op::REMOVEXATTR, node, &cstr(name))
    }

    /// ACCESS.
    pub fn access(&self, node: u64, mask: u32) -> R<()> {
        self.empty(
            op::ACCESS,
            node,
            &abi::AccessIn { mask, padding: 0 }.to_bytes(),
        )
    }

    /// FALLOCATE.
    pub fn fallocate(&self, node: u64, fh: u64, mode: u32, offset: u64, length: u64) -> R<()> {
        let a = abi::FallocateIn {
            fh,
            offset,
            length,
            mode,
            padding: 0,
        };
        self.empty(op::FALLOCATE, node, &a.to_bytes())
    }

    /// LSEEK.
    pub fn lseek(&self, node: u64, fh: u64, offset: u64, whence: u32) -> R<u64> {
        let a = abi::LseekIn {
            fh,
            offset,
            whence,
            padding: 0,
        };
        Ok(self
            .typed::<abi::LseekOut>(op::LSEEK, node, &a.to_bytes())?
            .offset)
    }

    /// COPY_FILE_RANGE.
    pub fn copy_file_range(&self, node_in: u64, a: abi::CopyFileRangeIn) -> R<u32> {
        Ok(self
            .typed::<abi::WriteOut>(op::COPY_FILE_RANGE, node_in, &a.to_bytes())?
            .size)
    }

    /// SETUPMAPPING of `len` bytes of `node` at `foffset` to window offset `moffset`
    /// (`fh` `None`: -1, as Linux sends); `flags` are `FUSE_SETUPMAPPING_FLAG_*`.
    pub fn setupmapping(
        &self,
        node: u64,
        fh: Option<u64>,
        foffset: u64,
        len: u64,
        flags: u64,
        moffset: u64,
    ) -> R<()> {
        let a = abi::SetupmappingIn {
            fh: fh.unwrap_or(u64::MAX),
            foffset,
            len,
            flags,
            moffset,
        };
        self.empty(op::SETUPMAPPING, node, &a.to_bytes())
    }

    /// REMOVEMAPPING of `(moffset, len)` ranges.
    pub fn removemapping(&self, node: u64, ranges: &[(u64, u64)]) -> R<()> {
        let count = u32::try_from(ranges.len()).expect("too many ranges");
        let mut body = abi::RemovemappingIn { count }.to_bytes();
        for &(moffset, len) in ranges {
            body.extend_from_slice(&abi::RemovemappingOne { moffset, len }.to_bytes());
        }
        self.empty(op::REMOVEMAPPING, node, &body)
    }

    /// SYNCFS.
    pub fn syncfs(&self, node: u64) -> R<()> {
        self.empty(op::SYNCFS, node, &abi::SyncfsIn::default().to_bytes())
    }

    /// DESTROY.
    pub fn destroy(&self) -> R<()> {
        self.empty(op::DESTROY, 0, &[])
    }
}
