//! A lean FUSE driver for the bench: one request at a time on the first request queue of
//! our frontend, laid out as the Linux virtiofs driver lays it out (and, for READs,
//! several in flight: [`FuseWire::reads_in_flight`]).
//!
//! Its buffers live in guest RAM once per session: a request area for the in-header and
//! arguments, a reply area for the out-header and small replies, and a 1 MiB data area
//! that WRITE payloads are read from and READ payloads land in, as separate descriptors.
//! Per request the driver writes only the headers and arguments and reads back only the
//! out-header and the reply fields it needs, so a 1 MiB READ or WRITE is not copied on
//! our side and the time measured is the daemon's (plus the ring and eventfd round
//! trip every virtio-fs request pays).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::GuestAddress;

use super::{BenchError, WAIT};
use crate::frontend::{Buffer, Frontend, FrontendOptions, ShmemWindows};
use crate::fuse::abi::{
    self, EntryOut, InHeader, InitOut, OpenOut, OutHeader, Wire as _, init_flags as f, opcode as op,
};
use crate::fuse::request;

/// The first request queue (0 is hiprio).
const QUEUE: usize = 1;
const REQUEST_AREA: u32 = 64 << 10;
const REPLY_AREA: u32 = 64 << 10;
/// Largest READ / WRITE payload, and the data area's size.
pub(super) const DATA_AREA: u32 = 1 << 20;

/// INIT flags offered: what a Linux guest mounting virtiofs without DAX offers, minus the
/// ones that only change guest-side caching (no writeback cache, no ACLs).
const INIT_FLAGS: u64 = f::ASYNC_READ
    | f::POSIX_LOCKS
    | f::ATOMIC_O_TRUNC
    | f::EXPORT_SUPPORT
    | f::BIG_WRITES
    | f::DONT_MASK
    | f::FLOCK_LOCKS
    | f::AUTO_INVAL_DATA
    | f::DO_READDIRPLUS
    | f::READDIRPLUS_AUTO
    | f::ASYNC_DIO
    | f::PARALLEL_DIROPS
    | f::MAX_PAGES
    | f::CACHE_SYMLINKS
    | f::INIT_EXT;

/// One request's shape.
struct Request<'a> {
    name: &'static str,
    opcode: u32,
    nodeid: u64,
    /// Follow the in-header in the request area.
    args: &'a [&'a [u8]],
    /// Bytes of the data area sent after them as a second readable descriptor (WRITE).
    payload: u32,
    /// Reply body bytes offered in the reply area after the out-header; `None`: no reply
    /// (FORGET).
    reply: Option<usize>,
    /// Bytes of the data area offered for the reply after the reply area (READ).
    data: u32,
}

impl<'a> Request<'a> {
    fn new(
        name: &'static str,
        opcode: u32,
        nodeid: u64,
        args: &'a [&'a [u8]],
        reply_body: usize,
    ) -> Self {
        Request {
            name,
            opcode,
            nodeid,
            args,
            payload: 0,
            reply: Some(reply_body),
            data: 0,
        }
    }
}

/// One session's FUSE driver.
pub(super) struct FuseWire {
    frontend: Frontend,
    daemon: String,
    unique: u64,
    request: GuestAddress,
    reply: GuestAddress,
    data: GuestAddress,
    encoded: Vec<u8>,
}

impl FuseWire {
    /// Connects to the daemon at `socket` (named `daemon` in errors); not yet initialised.
    pub(super) fn connect(socket: &Path, daemon: &str) -> Result<Self, BenchError> {
        let frontend = Frontend::connect(socket, &FrontendOptions::default())?;
        if frontend.num_queues() <= QUEUE {
            return Err(BenchError::Unexpected(format!(
                "{daemon} set up {} queue(s), no request queue",
                frontend.num_queues()
            )));
        }
        let ram = frontend.ram();
        let request = ram.alloc(u64::from(REQUEST_AREA), 4096)?;
        let reply = ram.alloc(u64::from(REPLY_AREA), 4096)?;
        let data = ram.alloc(u64::from(DATA_AREA), 4096)?;
        ram.write(data, &vec![0xa5; DATA_AREA as usize])?;
        Ok(FuseWire {
            frontend,
            daemon: daemon.to_string(),
            unique: 0,
            request,
            reply,
            data,
            encoded: Vec::with_capacity(REQUEST_AREA as usize),
        })
    }

    /// Sends one request and waits for it. Returns the reply's length after the
    /// out-header (0 when no reply was offered: FORGET).
    fn exchange(&mut self, r: Request<'_>) -> Result<usize, BenchError> {
        let Request {
            name,
            opcode,
            nodeid,
            args,
            payload,
            reply,
            data: data_len,
        } = r;
        let too_large = || BenchError::Unexpected(format!("{name} request too large"));
        let reply_len = reply.map_or(0, |body| OutHeader::SIZE + body);
        self.unique += 1;
        let unique = self.unique;
        let args_len: usize = args.iter().map(|a| a.len()).sum();
        let header_len = InHeader::SIZE + args_len;
        // Lengths checked against the areas in usize, before any becomes a u32.
        if header_len > REQUEST_AREA as usize
            || reply_len > REPLY_AREA as usize
            || payload.max(data_len) > DATA_AREA
        {
            return Err(too_large());
        }
        let reply_len = u32::try_from(reply_len).map_err(|_| too_large())?;
        let header_len = u32::try_from(header_len).map_err(|_| too_large())?;
        self.encoded.clear();
        let caller = request::Caller {
            uid: 0,
            gid: 0,
            pid: 1,
        };
        // The header's length counts the WRITE payload sent as a second descriptor.
        request::header(opcode, unique, nodeid, caller, args_len + payload as usize)
            .ok_or_else(too_large)?
            .put(&mut self.encoded);
        for a in args {
            self.encoded.extend_from_slice(a);
        }
        self.frontend.ram().write(self.request, &self.encoded)?;
        let mut chain = Vec::with_capacity(4);
        chain.push(Buffer::readable(self.request, header_len));
        if payload > 0 {
            chain.push(Buffer::readable(self.data, payload));
        }
        if reply_len > 0 {
            chain.push(Buffer::writable(self.reply, reply_len));
        }
        if data_len > 0 {
            chain.push(Buffer::writable(self.data, data_len));
        }
        self.frontend.submit(QUEUE, &chain)?;
        // One request in flight: the chain that comes back is this one.
        self.frontend.wait_used(QUEUE, 1, WAIT)?;
        if reply_len == 0 {
            return Ok(0);
        }
        let header = OutHeader::get(&self.frontend.ram().read(self.reply, OutHeader::SIZE)?);
        if header.unique != unique {
            return Err(BenchError::Unexpected(format!(
                "{}: {name} reply carries unique {}, sent {unique}",
                self.daemon, header.unique
            )));
        }
        if header.error != 0 {
            return Err(BenchError::Fuse {
                daemon: self.daemon.clone(),
                op: name,
                errno: -header.error,
            });
        }
        let len = (header.len as usize)
            .checked_sub(OutHeader::SIZE)
            .ok_or_else(|| {
                BenchError::Unexpected(format!("{}: {name} reply too short", self.daemon))
            })?;
        Ok(len)
    }

    /// `len` bytes of the reply after the out-header.
    fn body(&self, len: usize) -> Result<Vec<u8>, BenchError> {
        Ok(self
            .frontend
            .ram()
            .read(GuestAddress(self.reply.0 + OutHeader::SIZE as u64), len)?)
    }

    /// A reply body of exactly `T::SIZE` bytes.
    fn typed<T: abi::Wire>(&self, name: &'static str, len: usize) -> Result<T, BenchError> {
        if len != T::SIZE {
            return Err(BenchError::Unexpected(format!(
                "{}: {name} reply body of {len} bytes, expected {}",
                self.daemon,
                T::SIZE
            )));
        }
        Ok(T::get(&self.body(len)?))
    }

    /// INIT at protocol 7.38; checks that 1 MiB requests are allowed.
    pub(super) fn init(&mut self) -> Result<InitOut, BenchError> {
        let body = request::init_args(
            abi::KERNEL_VERSION,
            abi::KERNEL_MINOR_VERSION,
            128 << 10,
            INIT_FLAGS,
        );
        let len = self.exchange(Request::new("INIT", op::INIT, 0, &[&body], InitOut::SIZE))?;
        let out: InitOut = self.typed("INIT", len)?;
        if out.max_write < DATA_AREA {
            return Err(BenchError::Unexpected(format!(
                "{} allows WRITEs of {} bytes only",
                self.daemon, out.max_write
            )));
        }
        Ok(out)
    }

    /// LOOKUP; returns the node id.
    pub(super) fn lookup(&mut self, parent: u64, name: &[u8]) -> Result<u64, BenchError> {
        let size = EntryOut::SIZE;
        let len = self.exchange(Request::new(
            "LOOKUP",
            op::LOOKUP,
            parent,
            &[name, b"\0"],
            size,
        ))?;
        Ok(self.typed::<EntryOut>("LOOKUP", len)?.nodeid)
    }

    /// GETATTR (the reply is checked for size, not decoded).
    pub(super) fn getattr(&mut self, node: u64) -> Result<(), BenchError> {
        let args = abi::GetattrIn::default().to_bytes();
        let size = abi::AttrOut::SIZE;
        let len = self.exchange(Request::new("GETATTR", op::GETATTR, node, &[&args], size))?;
        expect_len(&self.daemon, "GETATTR", len, abi::AttrOut::SIZE)
    }

    /// CREATE; returns node id and file handle.
    pub(super) fn create(
        &mut self,
        parent: u64,
        name: &[u8],
        flags: u32,
    ) -> Result<(u64, u64), BenchError> {
        let args = abi::CreateIn {
            flags,
            mode: libc::S_IFREG | 0o644,
            umask: 0o022,
            open_flags: 0,
        }
        .to_bytes();
        let size = EntryOut::SIZE + OpenOut::SIZE;
        let len = self.exchange(Request::new(
            "CREATE",
            op::CREATE,
            parent,
            &[&args, name, b"\0"],
            size,
        ))?;
        expect_len(&self.daemon, "CREATE", len, EntryOut::SIZE + OpenOut::SIZE)?;
        let body = self.body(len)?;
        Ok((
            EntryOut::get(&body).nodeid,
            OpenOut::get(&body[EntryOut::SIZE..]).fh,
        ))
    }

    /// OPEN; returns the file handle.
    pub(super) fn open(&mut self, node: u64, flags: u32) -> Result<u64, BenchError> {
        let args = abi::OpenIn {
            flags,
            open_flags: 0,
        }
        .to_bytes();
        let len = self.exchange(Request::new(
            "OPEN",
            op::OPEN,
            node,
            &[&args],
            OpenOut::SIZE,
        ))?;
        Ok(self.typed::<OpenOut>("OPEN", len)?.fh)
    }

    /// OPENDIR; returns the directory handle.
    pub(super) fn opendir(&mut self, node: u64) -> Result<u64, BenchError> {
        let args = abi::OpenIn::default().to_bytes();
        let size = OpenOut::SIZE;
        let len = self.exchange(Request::new("OPENDIR", op::OPENDIR, node, &[&args], size))?;
        Ok(self.typed::<OpenOut>("OPENDIR", len)?.fh)
    }

    /// RELEASE or RELEASEDIR.
    pub(super) fn release(&mut self, node: u64, fh: u64, dir: bool) -> Result<(), BenchError> {
        let args = abi::ReleaseIn {
            fh,
            ..Default::default()
        }
        .to_bytes();
        let (name, opcode) = if dir {
            ("RELEASEDIR", op::RELEASEDIR)
        } else {
            ("RELEASE", op::RELEASE)
        };
        let len = self.exchange(Request::new(name, opcode, node, &[&args], 0))?;
        expect_len(&self.daemon, name, len, 0)
    }

    /// UNLINK.
    pub(super) fn unlink(&mut self, parent: u64, name: &[u8]) -> Result<(), BenchError> {
        let len = self.exchange(Request::new(
            "UNLINK",
            op::UNLINK,
            parent,
            &[name, b"\0"],
            0,
        ))?;
        expect_len(&self.daemon, "UNLINK", len, 0)
    }

    /// BATCH_FORGET of one lookup each of `nodes` (no reply).
    pub(super) fn forget(&mut self, nodes: &[u64]) -> Result<(), BenchError> {
        let per_request = (REQUEST_AREA as usize - InHeader::SIZE - 8) / abi::ForgetOne::SIZE;
        for batch in nodes.chunks(per_request) {
            let mut args = abi::BatchForgetIn {
                // At most `per_request`, a few thousand.
                count: u32::try_from(batch.len()).unwrap_or(u32::MAX),
                dummy: 0,
            }
            .to_bytes();
            for &nodeid in batch {
                abi::ForgetOne { nodeid, nlookup: 1 }.put(&mut args);
            }
            self.exchange(Request {
                reply: None,
                ..Request::new("BATCH_FORGET", op::BATCH_FORGET, 0, &[&args], 0)
            })?;
        }
        Ok(())
    }

    /// READDIRPLUS of up to `size` bytes from `offset`: returns the number of entries
    /// and the offset to continue from (`None` at the end of the directory).
    pub(super) fn readdirplus(
        &mut self,
        node: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<(usize, Option<u64>), BenchError> {
        let args = abi::ReadIn {
            fh,
            offset,
            size,
            ..Default::default()
        }
        .to_bytes();
        let len = self.exchange(Request::new(
            "READDIRPLUS",
            op::READDIRPLUS,
            node,
            &[&args],
            size as usize,
        ))?;
        if len == 0 {
            return Ok((0, None));
        }
        let body = self.body(len)?;
        let (mut count, mut next, mut rest) = (0, offset, &body[..]);
        while !rest.is_empty() {
            let dirent = rest
                .get(EntryOut::SIZE..)
                .and_then(abi::Dirent::read)
                .ok_or_else(|| {
                    BenchError::Unexpected(format!("{}: short READDIRPLUS record", self.daemon))
                })?;
            let record = EntryOut::SIZE + abi::dirent_size(dirent.namelen as usize);
            rest = rest.get(record..).unwrap_or_default();
            next = dirent.off;
            count += 1;
        }
        Ok((count, Some(next)))
    }

    /// READ of `size` bytes at `offset` into the data area; returns the bytes read.
    pub(super) fn read(
        &mut self,
        node: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<usize, BenchError> {
        let args = abi::ReadIn {
            fh,
            offset,
            size,
            ..Default::default()
        }
        .to_bytes();
        self.exchange(Request {
            data: size,
            ..Request::new("READ", op::READ, node, &[&args], 0)
        })
    }

    /// READs of `size` bytes at each of `offsets`, `depth` of them in flight at once (each
    /// slot with its own request, reply and data buffers; a returned slot is refilled at
    /// once, chains added since the last kick share one). Returns the time for all of
    /// them and each one's latency in µs, from its chain being offered to it being seen
    /// returned.
    pub(super) fn reads_in_flight(
        &mut self,
        node: u64,
        fh: u64,
        offsets: &[u64],
        size: u32,
        depth: usize,
    ) -> Result<(Duration, Vec<f64>), BenchError> {
        const SLOT_REQUEST: u32 = 256;
        // 16 bytes, well within a u32.
        let reply_len = u32::try_from(OutHeader::SIZE).unwrap_or(u32::MAX);
        let fits = |slot: u32, area: u32| {
            u32::try_from(depth)
                .ok()
                .and_then(|d| d.checked_mul(slot))
                .is_some_and(|total| total <= area)
        };
        if depth == 0
            || !fits(SLOT_REQUEST, REQUEST_AREA)
            || !fits(reply_len, REPLY_AREA)
            || !fits(size, DATA_AREA)
        {
            return Err(BenchError::Unexpected(format!(
                "{depth} READs of {size} bytes do not fit the bench's buffers"
            )));
        }
        let at = |base: GuestAddress, slot: usize, len: u32| {
            GuestAddress(base.0 + slot as u64 * u64::from(len))
        };
        let caller = request::Caller {
            uid: 0,
            gid: 0,
            pid: 1,
        };
        let mut free: Vec<usize> = (0..depth).rev().collect();
        // Chain head -> (slot, offered at, unique).
        let mut offered: HashMap<u16, (usize, Instant, u64)> = HashMap::with_capacity(depth);
        let mut latencies = Vec::with_capacity(offsets.len());
        let mut next = offsets.iter();
        let started = Instant::now();
        while latencies.len() < offsets.len() {
            let mut added = false;
            while !free.is_empty() {
                let Some(&offset) = next.next() else { break };
                let Some(slot) = free.pop() else { break };
                self.unique += 1;
                let args = abi::ReadIn {
                    fh,
                    offset,
                    size,
                    ..Default::default()
                }
                .to_bytes();
                self.encoded.clear();
                request::header(op::READ, self.unique, node, caller, args.len())
                    .ok_or_else(|| BenchError::Unexpected("READ request too large".into()))?
                    .put(&mut self.encoded);
                self.encoded.extend_from_slice(&args);
                let request = at(self.request, slot, SLOT_REQUEST);
                // An in-header and `fuse_read_in`: 80 bytes, well within a slot.
                let request_len = u32::try_from(self.encoded.len()).unwrap_or(SLOT_REQUEST);
                self.frontend.ram().write(request, &self.encoded)?;
                let chain = [
                    Buffer::readable(request, request_len),
                    Buffer::writable(at(self.reply, slot, reply_len), reply_len),
                    Buffer::writable(at(self.data, slot, size), size),
                ];
                let head = self.frontend.add_chain(QUEUE, &chain)?;
                offered.insert(head, (slot, Instant::now(), self.unique));
                added = true;
            }
            if added {
                self.frontend.kick(QUEUE)?;
            }
            for used in self.frontend.wait_used(QUEUE, 1, WAIT)? {
                let (slot, offered_at, unique) = offered.remove(&used.head).ok_or_else(|| {
                    BenchError::Unexpected(format!(
                        "{}: chain {} returned, not in flight",
                        self.daemon, used.head
                    ))
                })?;
                latencies.push(offered_at.elapsed().as_secs_f64() * 1e6);
                let header = OutHeader::get(
                    &self
                        .frontend
                        .ram()
                        .read(at(self.reply, slot, reply_len), OutHeader::SIZE)?,
                );
                if header.unique != unique || header.error != 0 {
                    return Err(BenchError::Unexpected(format!(
                        "{}: READ {unique} answered unique {} error {}",
                        self.daemon, header.unique, header.error
                    )));
                }
                expect_len(
                    &self.daemon,
                    "READ",
                    header.len as usize,
                    OutHeader::SIZE + size as usize,
                )?;
                free.push(slot);
            }
        }
        Ok((started.elapsed(), latencies))
    }

    /// WRITE of `size` bytes of the data area at `offset`; returns the bytes written.
    pub(super) fn write(
        &mut self,
        node: u64,
        fh: u64,
        offset: u64,
        size: u32,
    ) -> Result<usize, BenchError> {
        let args = abi::WriteIn {
            fh,
            offset,
            size,
            ..Default::default()
        }
        .to_bytes();
        let len = self.exchange(Request {
            payload: size,
            ..Request::new("WRITE", op::WRITE, node, &[&args], abi::WriteOut::SIZE)
        })?;
        Ok(self.typed::<abi::WriteOut>("WRITE", len)?.size as usize)
    }
}

/// DAX requests (our daemon only: the peer has no window).
impl FuseWire {
    /// The frontend's shared-memory regions (region 0 is the DAX window).
    pub(super) fn windows(&self) -> Arc<ShmemWindows> {
        self.frontend.windows().clone()
    }

    /// SETUPMAPPING of `len` bytes of `node` at `foffset` to window offset `moffset`, read
    /// and write, with `fh = -1` as Linux sends it.
    pub(super) fn setupmapping(
        &mut self,
        node: u64,
        foffset: u64,
        len: u64,
        moffset: u64,
    ) -> Result<(), BenchError> {
        let args = abi::SetupmappingIn {
            fh: u64::MAX,
            foffset,
            len,
            flags: abi::misc::SETUPMAPPING_FLAG_READ | abi::misc::SETUPMAPPING_FLAG_WRITE,
            moffset,
        }
        .to_bytes();
        let name = "SETUPMAPPING";
        let len = self.exchange(Request::new(name, op::SETUPMAPPING, node, &[&args], 0))?;
        expect_len(&self.daemon, name, len, 0)
    }

    /// REMOVEMAPPING of one range.
    pub(super) fn removemapping(&mut self, moffset: u64, len: u64) -> Result<(), BenchError> {
        let count = abi::RemovemappingIn { count: 1 }.to_bytes();
        let one = abi::RemovemappingOne { moffset, len }.to_bytes();
        let name = "REMOVEMAPPING";
        let len = self.exchange(Request::new(name, op::REMOVEMAPPING, 1, &[&count, &one], 0))?;
        expect_len(&self.daemon, name, len, 0)
    }

    /// SETATTR of the size (a truncate, without a handle).
    pub(super) fn truncate(&mut self, node: u64, size: u64) -> Result<(), BenchError> {
        let args = abi::SetattrIn {
            valid: abi::fattr::SIZE,
            size,
            ..Default::default()
        }
        .to_bytes();
        let size = abi::AttrOut::SIZE;
        let len = self.exchange(Request::new("SETATTR", op::SETATTR, node, &[&args], size))?;
        expect_len(&self.daemon, "SETATTR", len, size)
    }
}

fn expect_len(daemon: &str, name: &str, len: usize, expected: usize) -> Result<(), BenchError> {
    if len == expected {
        Ok(())
    } else {
        Err(BenchError::Unexpected(format!(
            "{daemon}: {name} reply body of {len} bytes, expected {expected}"
        )))
    }
}
