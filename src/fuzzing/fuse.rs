//! FUSE decode and dispatch with a DAX window: a session of requests, each served as the
//! fs device serves it (a request that may wait on the ledger is first tried without
//! waiting), on a fresh `PassthroughFs` per input.

use std::sync::Arc;
use std::time::Duration;

use super::{Input, ScratchDir};
use crate::dax::{Failure, FrontendLink, Ledger, LedgerConfig, MemoryMapper, WindowSession};
use crate::fs::{DaxPolicy, DaxWindow, PassthroughConfig, PassthroughFs};
use crate::fuse::abi::{self, InHeader, OutHeader, Wire, opcode as op};
use crate::fuse::request::{Caller, encode, init_args};
use crate::fuse::{ReplyParts, Server};

/// The opcodes a record's first byte picks from (by index); the last entries are not
/// FUSE opcodes at all. A byte past the table takes the opcode from the next 4 bytes.
const OPCODES: &[u32] = &[
    op::LOOKUP,
    op::FORGET,
    op::GETATTR,
    op::SETATTR,
    op::READLINK,
    op::SYMLINK,
    op::MKNOD,
    op::MKDIR,
    op::UNLINK,
    op::RMDIR,
    op::RENAME,
    op::LINK,
    op::OPEN,
    op::READ,
    op::WRITE,
    op::STATFS,
    op::RELEASE,
    op::FSYNC,
    op::SETXATTR,
    op::GETXATTR,
    op::LISTXATTR,
    op::REMOVEXATTR,
    op::FLUSH,
    op::INIT,
    op::OPENDIR,
    op::READDIR,
    op::RELEASEDIR,
    op::FSYNCDIR,
    op::GETLK,
    op::SETLK,
    op::SETLKW,
    op::ACCESS,
    op::CREATE,
    op::INTERRUPT,
    op::BMAP,
    op::DESTROY,
    op::IOCTL,
    op::POLL,
    op::NOTIFY_REPLY,
    op::BATCH_FORGET,
    op::FALLOCATE,
    op::READDIRPLUS,
    op::RENAME2,
    op::LSEEK,
    op::COPY_FILE_RANGE,
    op::SETUPMAPPING,
    op::REMOVEMAPPING,
    op::SYNCFS,
    op::TMPFILE,
    op::STATX,
    0,
    7,
    53,
];

/// The window: four 2 MiB chunks.
const WINDOW: u64 = 8 << 20;

/// The most bytes a FALLOCATE or COPY_FILE_RANGE may ask for: the fuzzer must not fill
/// the disk (the protocol allows any length, and both really allocate).
const MAX_ALLOCATION: u64 = 1 << 20;

/// A frontend link with nothing to tell.
struct NoLink;

impl FrontendLink for NoLink {
    fn device_started(&self) {}
    fn frontend_dropped_all(&self) {}
    fn detach(&self) {}
}

/// Serves the requests `data` describes, one record each, after an INIT as Linux 6.12
/// sends it. A record: opcode byte (an index into the opcode table, or past it: a u32
/// opcode follows), node id byte, a lie byte (low 2 bits: 1 a header length one too large,
/// 2 a header cut short, 3 a made-up extension length; high 4 bits: a small reply
/// capacity), a u16 body length, the body. The first byte of all chooses the setup: bit 0
/// DAX policy inode, bit 1 a map failure injected at each SETUPMAPPING whose node id byte
/// is odd.
///
/// Checks: every reply's header length is its size, its error is 0 or a negative errno,
/// its unique echoed; no reply only for the requests that have none (or no room for a
/// header); the ledger consistent and the in-memory frontend never misused after each
/// request; nothing outside the shared directory touched; the server still answers.
///
/// # Panics
///
/// When an invariant breaks: that is the crash the fuzzer looks for.
pub fn fuse_dax(data: &[u8]) {
    let mut input = Input::new(data);
    let setup = input.u8();
    let dir = ScratchDir::new("fuse");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("fuzz: mkdir shared");
    std::fs::write(dir.path().join("outside"), b"secret").expect("fuzz: write outside");
    // A (sparse) file of a chunk and a half and a directory, so short sessions find something.
    std::fs::File::create(shared.join("f"))
        .and_then(|f| f.set_len(3 << 20))
        .expect("fuzz: create f");
    std::fs::create_dir(shared.join("d")).expect("fuzz: mkdir d");

    let mapper = Arc::new(MemoryMapper::with_window(WINDOW));
    let config = LedgerConfig::new(WINDOW).with_wait_budget(Duration::from_millis(5));
    let ledger = Arc::new(Ledger::new(config, mapper.clone()).expect("fuzz: ledger"));
    let session = WindowSession::new(ledger.clone(), Arc::new(NoLink));
    let policy = if setup & 1 == 1 {
        DaxPolicy::Inode
    } else {
        DaxPolicy::Always
    };
    let fs = PassthroughFs::new(PassthroughConfig::new(&shared))
        .expect("fuzz: PassthroughFs")
        .with_dax(DaxWindow::new(session, policy));
    let server = Server::new(fs);
    let init = encode(
        op::INIT,
        1,
        0,
        Caller::default(),
        &[&init_args(7, 41, 131_072, u64::MAX >> 1)],
    )
    .expect("fuzz: INIT fits");
    let reply = server.handle(&init, abi::MAX_BUFFER_SIZE + 4096);
    assert_eq!(
        OutHeader::read(&reply).map(|h| h.error),
        Some(0),
        "INIT failed"
    );

    let mut unique = 2u64;
    while !input.is_empty() {
        let pick = usize::from(input.u8());
        let opcode = OPCODES.get(pick).copied().unwrap_or_else(|| input.u32());
        let nodeid = u64::from(input.u8());
        let lie = input.u8();
        let len = usize::from(input.u16());
        let mut body = input.take(len).to_vec();
        clamp_allocation(opcode, &mut body);
        if opcode == op::SETUPMAPPING && setup & 2 == 2 && nodeid % 2 == 1 {
            mapper.fail_next_map(Failure::Refused);
        }
        let mut req = encode(opcode, unique, nodeid, Caller::default(), &[&body])
            .expect("a fuzz request is shorter than 4 GiB");
        match lie & 3 {
            1 => req[0] = req[0].wrapping_add(1),
            2 => req.truncate(usize::from(lie >> 2) % InHeader::SIZE),
            3 => req[36..38].copy_from_slice(&u16::from(lie >> 2).to_ne_bytes()),
            _ => {}
        }
        let capacity = match lie >> 4 {
            0 => abi::MAX_BUFFER_SIZE + 4096,
            n => usize::from(n) * 13,
        };
        check_reply(
            &serve(&server, &req, capacity),
            opcode,
            unique,
            &req,
            capacity,
        );
        if let Err(e) = ledger.check_invariants() {
            panic!("the ledger is inconsistent after opcode {opcode}: {e}");
        }
        let violations = mapper.violations();
        assert!(violations.is_empty(), "mapper misused: {violations:?}");
        unique += 1;
    }

    // Still serving, and nothing outside the share touched.
    let getattr = encode(op::GETATTR, unique, 1, Caller::default(), &[&[0u8; 16]])
        .expect("fuzz: GETATTR fits");
    let reply = server.handle(&getattr, abi::MAX_BUFFER_SIZE);
    let h = OutHeader::read(&reply).expect("GETATTR of the root got no reply");
    // A DESTROY ends the session: the root is then unknown until the next INIT.
    assert!(h.error == 0 || h.error == -libc::ENOENT || h.error == -libc::EIO);
    assert_eq!(
        std::fs::read(dir.path().join("outside")).ok().as_deref(),
        Some(&b"secret"[..]),
        "a file outside the share changed"
    );
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("fuzz: read_dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["outside", "shared"],
        "something appeared outside the share"
    );
    drop(server);
    if let Err(e) = ledger.check_invariants() {
        panic!("the ledger is inconsistent after the server went: {e}");
    }
}

/// One record of a [`fuse_dax`] input: `opcode` on `nodeid` with `body`, told honestly.
pub(super) fn record(opcode: u32, nodeid: u8, body: &[u8]) -> Vec<u8> {
    let mut out = match OPCODES.iter().position(|&o| o == opcode) {
        Some(i) => vec![u8::try_from(i).unwrap_or(u8::MAX)],
        None => [&[u8::MAX][..], &opcode.to_le_bytes()].concat(),
    };
    out.extend([nodeid, 0]);
    out.extend(u16::try_from(body.len()).unwrap_or(u16::MAX).to_le_bytes());
    out.extend(body);
    out
}

/// Serves `req` as the fs device does: a request that may wait on the ledger is first
/// tried without waiting, then served where it may wait.
fn serve(server: &Server<PassthroughFs>, req: &[u8], capacity: usize) -> Vec<u8> {
    if server.may_wait(req, 0)
        && let Some(ReplyParts {
            mut header, body, ..
        }) = server.try_without_waiting(req, capacity)
    {
        header.extend_from_slice(&body);
        return header;
    }
    server.handle(req, capacity)
}

/// Caps the length a FALLOCATE or COPY_FILE_RANGE asks for at [`MAX_ALLOCATION`].
fn clamp_allocation(opcode: u32, body: &mut [u8]) {
    let field = match opcode {
        op::FALLOCATE => 16..24,
        op::COPY_FILE_RANGE => 40..48,
        _ => return,
    };
    if let Some(bytes) = body.get_mut(field) {
        let mut len = [0u8; 8];
        len.copy_from_slice(bytes);
        let len = u64::from_le_bytes(len).min(MAX_ALLOCATION);
        bytes.copy_from_slice(&len.to_le_bytes());
    }
}

/// The invariants of one reply.
fn check_reply(reply: &[u8], opcode: u32, unique: u64, req: &[u8], capacity: usize) {
    assert!(
        reply.len() <= capacity,
        "opcode {opcode}: a reply of {} bytes for {capacity} bytes of room",
        reply.len()
    );
    if reply.is_empty() {
        let no_reply = matches!(
            opcode,
            op::FORGET | op::BATCH_FORGET | op::INTERRUPT | op::NOTIFY_REPLY
        );
        assert!(
            no_reply || capacity < OutHeader::SIZE,
            "opcode {opcode} got no reply"
        );
        return;
    }
    let h = OutHeader::read(reply).expect("a reply shorter than its header");
    assert_eq!(
        usize::try_from(h.len).ok(),
        Some(reply.len()),
        "opcode {opcode}: header length"
    );
    assert!(
        h.error <= 0 && h.error > -4096,
        "opcode {opcode}: error {} is not a negative errno",
        h.error
    );
    if h.error != 0 {
        assert_eq!(
            reply.len(),
            OutHeader::SIZE,
            "opcode {opcode}: an error with a body"
        );
    }
    if InHeader::read(req).is_some() {
        assert_eq!(h.unique, unique, "opcode {opcode}: unique not echoed");
    }
}
