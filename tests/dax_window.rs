//! The virtio-fs DAX window end to end: the daemon binary on a real socket, our frontend
//! honouring SHMEM_MAP/UNMAP in a PROT_NONE window, FUSE requests on a real queue.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use common::*;
use vhost_dax::frontend::{
    DaemonProcess, Frontend, FrontendOptions, FuseQueue, LiveMapping, ShmemWindows,
};
use vhost_dax::fuse::abi::{self, Wire, init_flags};
use vhost_dax::fuse::testing::{Client, Reply, encode_request};

const ROOT: u64 = 1;
const RDWR: u32 = libc::O_RDWR as u32;
const RDONLY: u32 = libc::O_RDONLY as u32;
const MIB2: u64 = 2 << 20;
const WINDOW: u64 = 8 << 20;
const READ: u64 = abi::misc::SETUPMAPPING_FLAG_READ;
const WRITE: u64 = abi::misc::SETUPMAPPING_FLAG_WRITE;

struct Dax {
    dir: TempDir,
    daemon: DaemonProcess,
    frontend: Arc<Mutex<Frontend>>,
    windows: Arc<ShmemWindows>,
    c: Client<FuseQueue>,
}

impl Dax {
    fn share(&self, name: &str) -> std::path::PathBuf {
        self.dir.join("share").join(name)
    }

    /// Writes `data` as `name` on the host and looks it up.
    fn file(&self, name: &str, data: &[u8]) -> u64 {
        std::fs::write(self.share(name), data).unwrap();
        self.c.lookup(ROOT, name.as_bytes()).unwrap().nodeid
    }

    fn read_window(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.windows.read(0, offset, &mut buf).unwrap();
        buf
    }

    fn control(&self) -> Control {
        Control::connect(&self.dir.join("control.sock"))
    }

    fn host_size(&self, name: &str) -> u64 {
        std::fs::metadata(self.share(name)).unwrap().len()
    }

    fn live(&self) -> Vec<LiveMapping> {
        self.windows.live()
    }

    /// Descriptors the daemon holds on `path` (deleted or not).
    fn daemon_fds_on(&self, path: &Path) -> usize {
        daemon_fds_on(self.daemon.pid(), path)
    }
}

/// A client of the daemon's control socket (one JSON object per line each way).
struct Control {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Control {
    fn connect(path: &Path) -> Self {
        let writer = UnixStream::connect(path).unwrap();
        let reader = BufReader::new(writer.try_clone().unwrap());
        Control { reader, writer }
    }

    fn call(&mut self, request: &str) -> Value {
        writeln!(self.writer, "{request}").unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// Pins `offset..+len`; `Err(errno)` when refused.
    fn pin(&mut self, offset: u64, len: u64) -> Result<u64, i64> {
        let v = self.call(&format!(
            r#"{{"op":"pin","offset":{offset},"len":{len},"holder":"test-dma"}}"#
        ));
        match v.get("pin") {
            Some(id) => Ok(id.as_u64().unwrap()),
            None => Err(v["errno"].as_i64().unwrap()),
        }
    }

    fn unpin(&mut self, id: u64) {
        let v = self.call(&format!(r#"{{"op":"unpin","pin":{id}}}"#));
        assert_eq!(v["ok"], Value::Bool(true), "{v}");
    }

    fn stats(&mut self) -> Value {
        self.call(r#"{"op":"stats"}"#)["stats"].clone()
    }
}

fn daemon_fds_on(pid: u32, path: &Path) -> usize {
    let want = path.to_string_lossy().into_owned();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| {
            let t = target.to_string_lossy();
            t == want || t == format!("{want} (deleted)")
        })
        .count()
}

fn start(name: &str, extra: &[&str]) -> Dax {
    start_with(name, extra, &FrontendOptions::default())
}

fn start_with(name: &str, extra: &[&str], options: &FrontendOptions) -> Dax {
    let dir = TempDir::new(name);
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
    let control = dir.join("control.sock");
    let mut args = vec![
        "--dax-window",
        "8M",
        "--control-socket",
        control.to_str().unwrap(),
    ];
    // A budget long enough that a test's unpin always comes in time; the tests of a
    // budget running out pass a short one.
    if !extra.contains(&"--pin-wait-budget") {
        args.extend(["--pin-wait-budget", "20s"]);
    }
    args.extend_from_slice(extra);
    let daemon = spawn_fs_daemon(&dir.join("share"), &socket, &args);
    let frontend = Frontend::connect(&socket, options).unwrap();
    let windows = frontend.windows().clone();
    let frontend = Arc::new(Mutex::new(frontend));
    let c = Client::over(FuseQueue::new(frontend.clone(), 1, WAIT));
    Dax {
        dir,
        daemon,
        frontend,
        windows,
        c,
    }
}

/// A Linux 6.12 guest's INIT with a DAX window.
fn init(d: &Dax) -> abi::InitOut {
    d.c.init()
}

/// The permissions `/proc/self/maps` shows for the page at `addr`.
fn page_perms(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for line in maps.lines() {
        let (range, rest) = line.split_once(' ').unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).unwrap(),
            usize::from_str_radix(hi, 16).unwrap(),
        );
        if lo <= addr && addr < hi {
            return rest[..4].to_string();
        }
    }
    panic!("{addr:#x} not mapped at all");
}

fn window_page_perms(d: &Dax, offset: u64) -> String {
    let base = d.windows.region(0).unwrap().base() as usize;
    page_perms(base + offset as usize)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn init_grants_dax_and_the_window_is_region_0() {
    let d = start("dax-init", &[]);
    let out = init(&d);
    assert_ne!(u64::from(out.flags) & init_flags::MAP_ALIGNMENT, 0);
    assert_eq!(out.map_alignment, 12, "host page size, as log2");
    assert_eq!(d.windows.region(0).unwrap().len() as u64, WINDOW);
    assert_eq!(window_page_perms(&d, 0), "---p");
    // Every regular file is DAX under the default policy.
    let node = d.file("f", b"x");
    let attr = d.c.getattr(node, None).unwrap();
    assert_ne!(attr.attr.flags & 2, 0, "FUSE_ATTR_DAX on a regular file");
    let root = d.c.getattr(ROOT, None).unwrap();
    assert_eq!(root.attr.flags & 2, 0, "not on a directory");
}

#[test]
fn a_mapping_shows_the_file_and_writes_reach_it() {
    let d = start("dax-map", &[]);
    init(&d);
    let data = pattern(3 << 20, 7);
    let node = d.file("big", &data);
    d.c.setupmapping(node, None, MIB2, MIB2, READ, 2 * MIB2)
        .unwrap();
    assert_eq!(
        d.live(),
        vec![LiveMapping {
            shmid: 0,
            offset: 2 * MIB2,
            len: MIB2,
            fd_offset: MIB2,
            writable: true,
        }],
        "mapped writable up front, so a later write needs no remap"
    );
    assert_eq!(window_page_perms(&d, 2 * MIB2), "rw-s");
    // The first MiB of the mapped range is the file's third MiB (bytes past EOF are not read).
    assert_eq!(d.read_window(2 * MIB2, 1 << 20), &data[2 << 20..3 << 20]);

    d.windows
        .write(0, 2 * MIB2 + 100, b"through the window")
        .unwrap();
    let host = std::fs::read(d.share("big")).unwrap();
    assert_eq!(
        &host[(2 << 20) + 100..(2 << 20) + 118],
        b"through the window"
    );

    d.c.removemapping(node, &[(2 * MIB2, MIB2)]).unwrap();
    assert!(d.live().is_empty());
    assert_eq!(window_page_perms(&d, 2 * MIB2), "---p", "PROT_NONE again");
    let mut buf = [0u8; 4];
    assert!(d.windows.read(0, 2 * MIB2, &mut buf).is_err());
}

#[test]
fn the_read_to_write_upgrade_needs_no_unmap() {
    let d = start("dax-upgrade", &[]);
    init(&d);
    let node = d.file("f", &pattern(8192, 1));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let stats = d.windows.stats();
    assert_eq!((stats.maps, stats.unmaps), (1, 0));
    d.windows.write(0, 0, b"upgraded").unwrap();
    assert_eq!(&std::fs::read(d.share("f")).unwrap()[..8], b"upgraded");
}

#[test]
fn window_copies_at_any_offset_and_length_match_the_file() {
    let d = start("dax-unaligned", &[]);
    init(&d);
    let data = pattern(MIB2 as usize, 3);
    let node = d.file("u", &data);
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut expected = data.clone();
    for (i, len) in [1usize, 7, 15, 16, 17, 63, 64, 65, 4095, 4097, 65537]
        .into_iter()
        .enumerate()
    {
        let offset = 4096 * 16 * i + [0, 1, 3, 8, 15, 17][i % 6];
        assert_eq!(
            d.read_window(offset as u64, len),
            &data[offset..offset + len],
            "read of {len} at {offset:#x}"
        );
        let fresh = pattern(len, 100 + i as u8);
        let at = offset + 5;
        d.windows.write(0, at as u64, &fresh).unwrap();
        expected[at..at + len].copy_from_slice(&fresh);
    }
    assert!(
        std::fs::read(d.share("u")).unwrap() == expected,
        "the host file holds exactly the bytes written through the window"
    );
}

#[test]
fn a_mapping_of_other_data_on_a_mapped_offset_replaces_it() {
    let d = start("dax-remap", &[]);
    init(&d);
    let a = d.file("a", &pattern(4096, 1));
    let b = d.file("b", &pattern(4096, 2));
    d.c.setupmapping(a, None, 0, MIB2, READ, 0).unwrap();
    d.c.setupmapping(b, None, 0, MIB2, READ, 0).unwrap();
    assert_eq!(d.read_window(0, 4096), pattern(4096, 2));
    let stats = d.windows.stats();
    assert_eq!(
        (stats.maps, stats.unmaps),
        (2, 1),
        "the old mapping was released first"
    );
}

#[test]
fn a_read_only_export_maps_read_only_and_refuses_write_mappings() {
    let d = start("dax-ro", &["--readonly"]);
    init(&d);
    let node = d.file("f", &pattern(4096, 3));
    assert_eq!(
        d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
            .unwrap_err(),
        libc::EROFS
    );
    assert!(d.live().is_empty(), "a refused request maps nothing");
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    assert!(!d.live()[0].writable);
    assert_eq!(window_page_perms(&d, 0), "r--s");
    assert_eq!(d.read_window(0, 4096), pattern(4096, 3));
}

#[test]
fn truncate_keeps_the_mapping_and_growth_shows_through_it() {
    let d = start("dax-truncate", &[]);
    init(&d);
    let data = pattern(MIB2 as usize, 4);
    let node = d.file("t", &data);
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let before = d.live();

    let shrink = abi::SetattrIn {
        valid: abi::fattr::SIZE,
        size: 8192,
        ..Default::default()
    };
    assert_eq!(d.c.setattr(node, shrink).unwrap().attr.size, 8192);
    assert_eq!(
        d.live(),
        before,
        "the guest keeps its mapping across a truncate"
    );
    assert_eq!(d.read_window(0, 8192), &data[..8192]);

    // The file grows again (another host writer); the same window range shows it.
    let grown = pattern(65536, 9);
    std::fs::write(d.share("t"), &grown).unwrap();
    assert_eq!(d.read_window(0, 65536), grown);
    assert_eq!(d.windows.stats().maps, 1, "no new SETUPMAPPING was needed");
}

#[test]
fn punch_hole_under_a_mapping_zeroes_the_bytes_in_place() {
    let d = start("dax-punch", &[]);
    init(&d);
    let node = d.file("p", &pattern(1 << 20, 5));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let fh = d.c.open(node, libc::O_RDWR as u32).unwrap().fh;
    let mode = (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32;
    d.c.fallocate(node, fh, mode, 4096, 8192).unwrap();
    assert_eq!(d.live().len(), 1);
    let seen = d.read_window(0, 16384);
    assert!(seen[4096..12288].iter().all(|&b| b == 0));
    assert_eq!(&seen[..4096], &pattern(1 << 20, 5)[..4096]);
}

#[test]
fn forget_releases_nothing_the_last_unmap_closes_the_file() {
    let d = start("dax-forget", &[]);
    init(&d);
    let path = d.share("f");
    let node = d.file("f", &pattern(4096, 6));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    d.c.forget(node, 1);
    // FORGET has no reply: a round trip after it shows it was processed.
    assert_eq!(d.c.getattr(node, None).unwrap_err(), libc::EBADF);
    assert!(
        d.daemon_fds_on(&path) > 0,
        "the mapping keeps the file open"
    );
    assert_eq!(d.read_window(0, 4096), pattern(4096, 6));
    d.c.removemapping(ROOT, &[(0, MIB2)]).unwrap();
    assert_eq!(d.daemon_fds_on(&path), 0, "the last unmap closed it");
}

#[test]
fn unlink_keeps_live_mappings_valid() {
    let d = start("dax-unlink", &[]);
    init(&d);
    let path = d.share("gone");
    let node = d.file("gone", &pattern(4096, 8));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    d.c.unlink(ROOT, b"gone").unwrap();
    assert!(!path.exists());
    assert_eq!(d.read_window(0, 4096), pattern(4096, 8));
    d.windows.write(0, 0, b"still here").unwrap();
    assert_eq!(&d.read_window(0, 10), b"still here");
    d.c.forget(node, 1);
    d.c.removemapping(ROOT, &[(0, MIB2)]).unwrap();
    assert_eq!(d.daemon_fds_on(&path), 0);
}

#[test]
fn destroy_releases_every_mapping() {
    let d = start("dax-destroy", &[]);
    init(&d);
    let a = d.file("a", &pattern(4096, 1));
    let b = d.file("b", &pattern(4096, 2));
    d.c.setupmapping(a, None, 0, MIB2, READ, 0).unwrap();
    d.c.setupmapping(b, None, 0, MIB2, READ, 2 * MIB2).unwrap();
    d.c.setupmapping(b, None, 0, MIB2, READ, 3 * MIB2).unwrap();
    d.c.destroy().unwrap();
    assert!(d.live().is_empty());
    assert_eq!(d.windows.stats().unmaps, 3);
    assert_eq!(d.daemon_fds_on(&d.share("b")), 0);
}

#[test]
fn device_reset_releases_every_mapping() {
    let d = start("dax-reset", &[]);
    init(&d);
    let a = d.file("a", &pattern(4096, 1));
    d.c.setupmapping(a, None, 0, MIB2, READ, MIB2).unwrap();
    d.c.forget(a, 1);
    d.frontend.lock().unwrap().reset_device().unwrap();
    wait_until("the reset to unmap the window", || d.live().is_empty());
    assert_eq!(d.windows.stats().unmaps, 1);
    // Every count back to zero, and the file the mapping kept open is closed.
    let mut c = d.control();
    wait_until("the ledger to hold nothing", || {
        let stats = c.stats();
        stats["live_mappings"] == 0 && stats["backings_with_mappings"] == 0
    });
    wait_until("the daemon to close the file", || {
        d.daemon_fds_on(&d.share("a")) == 0
    });
}

#[test]
fn sigterm_unmaps_before_exiting() {
    let mut d = start("dax-sigterm", &[]);
    init(&d);
    let a = d.file("a", &pattern(4096, 1));
    d.c.setupmapping(a, None, 0, MIB2, READ, 0).unwrap();
    d.daemon.signal(libc::SIGTERM).unwrap();
    assert!(d.daemon.wait(WAIT).unwrap().success());
    assert!(d.live().is_empty(), "the frontend was asked to unmap");
    wait_until("the log to count the release", || {
        d.daemon.log().contains("released 1 DAX mapping")
    });
}

/// A bad SETUPMAPPING: what it is, node, fh, foffset, len, flags, moffset, expected errno.
type SetupCase = (&'static str, u64, Option<u64>, u64, u64, u64, u64, i32);

#[test]
fn malformed_setupmapping_is_refused_and_changes_nothing() {
    let d = start("dax-bad-setup", &[]);
    init(&d);
    let node = d.file("f", &pattern(4096, 1));
    let dir = d.c.mkdir(ROOT, b"d", 0o755).unwrap().nodeid;
    let cases: &[SetupCase] = &[
        // what, node, fh, foffset, len, flags, moffset, errno
        (
            "past the window",
            node,
            None,
            0,
            MIB2,
            READ,
            WINDOW,
            libc::EINVAL,
        ),
        (
            "straddles the end",
            node,
            None,
            0,
            2 * MIB2,
            READ,
            WINDOW - MIB2,
            libc::EINVAL,
        ),
        (
            "misaligned window offset",
            node,
            None,
            0,
            MIB2,
            READ,
            4096,
            libc::EINVAL,
        ),
        (
            "misaligned file offset",
            node,
            None,
            100,
            MIB2,
            READ,
            0,
            libc::EINVAL,
        ),
        ("partial chunk", node, None, 0, 4096, READ, 0, libc::EINVAL),
        (
            "moffset overflow",
            node,
            None,
            0,
            MIB2,
            READ,
            u64::MAX - 4095,
            libc::EINVAL,
        ),
        (
            "foffset overflow",
            node,
            None,
            u64::MAX - 4095,
            MIB2,
            READ,
            0,
            libc::EINVAL,
        ),
        ("empty", node, None, 0, 0, READ, 0, libc::EINVAL),
        ("no access", node, None, 0, MIB2, 0, 0, libc::EINVAL),
        (
            "unknown flag",
            node,
            None,
            0,
            MIB2,
            READ | 4,
            0,
            libc::EINVAL,
        ),
        ("unknown node", 999, None, 0, MIB2, READ, 0, libc::EBADF),
        (
            "bogus handle",
            node,
            Some(77),
            0,
            MIB2,
            READ,
            0,
            libc::EBADF,
        ),
        ("a directory", dir, None, 0, MIB2, READ, 0, libc::EINVAL),
    ];
    for &(what, n, fh, foffset, len, flags, moffset, errno) in cases {
        assert_eq!(
            d.c.setupmapping(n, fh, foffset, len, flags, moffset),
            Err(errno),
            "{what}"
        );
        assert!(d.live().is_empty(), "{what}: nothing mapped");
    }
    // The queue still serves a good one.
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    assert_eq!(d.live().len(), 1);
}

#[test]
fn malformed_removemapping_is_refused_and_changes_nothing() {
    let d = start("dax-bad-remove", &[]);
    init(&d);
    let node = d.file("f", &pattern(4096, 1));
    d.c.setupmapping(node, None, 0, 2 * MIB2, READ, 0).unwrap();
    assert_eq!(
        d.c.removemapping(ROOT, &[(0, MIB2)]),
        Err(libc::EINVAL),
        "half a mapping"
    );
    assert_eq!(
        d.c.removemapping(ROOT, &[(WINDOW, MIB2)]),
        Err(libc::EINVAL),
        "past the window"
    );
    assert_eq!(
        d.c.removemapping(ROOT, &[(4096, MIB2)]),
        Err(libc::EINVAL),
        "misaligned"
    );
    assert_eq!(
        d.c.removemapping(ROOT, &[(u64::MAX - 4095, 4096)]),
        Err(libc::EINVAL),
        "overflow"
    );
    let too_many: Vec<(u64, u64)> = (0..257).map(|i| (i * MIB2, MIB2)).collect();
    assert_eq!(
        d.c.removemapping(ROOT, &too_many),
        Err(libc::EINVAL),
        "over the maximum"
    );
    // A count that promises more entries than the request carries.
    let mut lying = abi::RemovemappingIn { count: 3 }.to_bytes();
    lying.extend_from_slice(
        &abi::RemovemappingOne {
            moffset: 0,
            len: 2 * MIB2,
        }
        .to_bytes(),
    );
    assert_eq!(
        d.c.call(abi::opcode::REMOVEMAPPING, ROOT, &lying)
            .unwrap_err(),
        libc::EINVAL
    );
    assert_eq!(d.live().len(), 1, "the mapping survived every bad request");
    // Ranges with nothing mapped are skipped; the real one goes.
    d.c.removemapping(ROOT, &[(3 * MIB2, MIB2), (0, 2 * MIB2)])
        .unwrap();
    assert!(d.live().is_empty());
}

#[test]
fn without_shmem_the_device_says_dax_is_off() {
    let options = FrontendOptions {
        protocol_features: FrontendOptions::default().protocol_features
            - vhost::vhost_user::message::VhostUserProtocolFeatures::SHMEM,
        ..FrontendOptions::default()
    };
    let d = start_with("dax-noshmem", &[], &options);
    init(&d);
    let node = d.file("f", &pattern(4096, 1));
    assert_eq!(
        d.c.setupmapping(node, None, 0, MIB2, READ, 0),
        Err(libc::ENOMEM),
        "the frontend refuses"
    );
    wait_until("the log to say DAX is off", || {
        d.daemon.log().contains("DAX is off for this frontend")
    });
    // Plain FUSE still works.
    assert_eq!(d.c.getattr(node, None).unwrap().attr.size, 4096);
}

/// SETATTR(size) as raw request bytes, to send without waiting for the reply.
fn truncate_request(node: u64, size: u64) -> Vec<u8> {
    let a = abi::SetattrIn {
        valid: abi::fattr::SIZE,
        size,
        ..Default::default()
    };
    encode_request(abi::opcode::SETATTR, 9000 + size, node, 0, 0, &a.to_bytes())
}

#[test]
fn the_control_socket_answers_before_any_frontend() {
    let dir = TempDir::new("dax-control-early");
    std::fs::create_dir(dir.join("share")).unwrap();
    let socket = dir.join("fs.sock");
    let control = dir.join("control.sock");
    let share = dir.join("share");
    let mut daemon = spawn_daemon(
        &[
            "fs",
            "--socket",
            socket.to_str().unwrap(),
            "--shared-dir",
            share.to_str().unwrap(),
            "--sandbox",
            "none",
            "--dax-window",
            "8M",
            "--control-socket",
            control.to_str().unwrap(),
        ],
        &socket,
    );
    let mut c = Control::connect(&control);
    let stats = c.stats();
    assert_eq!(stats["window_size"], WINDOW);
    assert_eq!(stats["mapped_bytes"], 0);
    assert_eq!(
        c.pin(0, 4096),
        Err(i64::from(libc::EFAULT)),
        "nothing mapped yet"
    );
    daemon.signal(libc::SIGTERM).unwrap();
    assert!(daemon.wait(WAIT).unwrap().success());
    assert!(!control.exists(), "the control socket is removed at exit");
}

#[test]
fn control_stats_and_mappings_follow_the_guest() {
    let d = start("dax-control-stats", &[]);
    init(&d);
    let node = d.file("f", &pattern(4096, 1));
    d.c.setupmapping(node, None, 0, MIB2, READ, 3 * MIB2)
        .unwrap();
    let mut c = d.control();
    let stats = c.stats();
    assert_eq!(stats["mapped_bytes"], MIB2);
    assert_eq!(stats["maps"], 1);
    let mappings = c.call(r#"{"op":"mappings"}"#)["mappings"].clone();
    assert_eq!(mappings[0]["window_offset"], 3 * MIB2);
    assert_eq!(mappings[0]["writable"], Value::Bool(true));
    let bad = c.call("not json");
    assert_eq!(bad["errno"], libc::EINVAL);
    assert_eq!(c.stats()["maps"], 1, "the connection still works");
}

#[test]
fn a_pin_is_refused_past_the_end_of_file() {
    let d = start("dax-pin-eof", &[]);
    init(&d);
    let node = d.file("f", &pattern(1 << 20, 2));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut c = d.control();
    let id = c.pin(4096, 4096).unwrap();
    c.unpin(id);
    assert_eq!(
        c.pin(1 << 20, 4096),
        Err(i64::from(libc::EFAULT)),
        "past EOF"
    );
    d.c.setattr(
        node,
        abi::SetattrIn {
            valid: abi::fattr::SIZE,
            size: 8192,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        c.pin(4096, 8192),
        Err(i64::from(libc::EFAULT)),
        "past the new EOF"
    );
    assert!(c.pin(0, 8192).is_ok(), "below it is fine");
}

#[test]
fn a_pin_makes_truncate_wait_and_unpin_lets_it_through() {
    let d = start("dax-pin-truncate", &[]);
    init(&d);
    let node = d.file("t", &pattern(1 << 20, 3));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut c = d.control();
    let id = c.pin(0, 4096).unwrap();

    let ticket =
        d.c.transport
            .submit(&truncate_request(node, 0), 4096)
            .unwrap();
    wait_until("the truncate to wait on the pinned chunk", || {
        c.stats()["draining_chunks"] == 1
    });
    assert_eq!(d.host_size("t"), 1 << 20, "no byte is cut under a live pin");
    // The queue keeps serving while the truncate is parked.
    assert_eq!(d.c.getattr(node, None).unwrap().attr.size, 1 << 20);
    assert!(!d.c.transport.is_done(&ticket).unwrap());

    c.unpin(id);
    let reply = Reply::parse(&d.c.transport.wait(ticket).unwrap());
    assert_eq!(reply.header.error, 0);
    assert_eq!(d.host_size("t"), 0);
    assert_eq!(d.live().len(), 1, "the mapping stays");
}

#[test]
fn a_pin_makes_punch_hole_wait() {
    let d = start("dax-pin-punch", &[]);
    init(&d);
    let node = d.file("p", &pattern(1 << 20, 4));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let fh = d.c.open(node, libc::O_RDWR as u32).unwrap().fh;
    let mut c = d.control();
    let id = c.pin(8192, 4096).unwrap();
    let falloc = abi::FallocateIn {
        fh,
        offset: 0,
        length: 65536,
        mode: (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32,
        padding: 0,
    };
    let request = encode_request(abi::opcode::FALLOCATE, 7777, node, 0, 0, &falloc.to_bytes());
    let ticket = d.c.transport.submit(&request, 4096).unwrap();
    wait_until("the punch to wait on the pinned chunk", || {
        c.stats()["draining_chunks"] == 1
    });
    assert_eq!(
        d.read_window(0, 16),
        &pattern(1 << 20, 4)[..16],
        "not punched yet"
    );
    c.unpin(id);
    let reply = Reply::parse(&d.c.transport.wait(ticket).unwrap());
    assert_eq!(reply.header.error, 0);
    assert!(d.read_window(0, 65536).iter().all(|&b| b == 0));
}

#[test]
fn a_pin_that_never_drops_fails_the_truncate_with_ebusy_and_changes_nothing() {
    let d = start("dax-pin-stuck", &["--pin-wait-budget", "1s"]);
    init(&d);
    let node = d.file("s", &pattern(1 << 20, 5));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut c = d.control();
    let _id = c.pin(0, 4096).unwrap();
    let shrink = abi::SetattrIn {
        valid: abi::fattr::SIZE,
        size: 0,
        ..Default::default()
    };
    assert_eq!(d.c.setattr(node, shrink).unwrap_err(), libc::EBUSY);
    assert_eq!(d.host_size("s"), 1 << 20);
    assert_eq!(d.live().len(), 1);
    assert_eq!(c.stats()["timeouts"], 1);
    wait_until("the log to name the pin holder", || {
        d.daemon.log().contains("test-dma")
    });
    // A REMOVEMAPPING of the pinned chunk fails the same way and leaves it mapped.
    assert_eq!(d.c.removemapping(ROOT, &[(0, MIB2)]), Err(libc::EBUSY));
    assert_eq!(d.live().len(), 1, "a pinned chunk is never unmapped");
    // So does a mapping of other data over it.
    let other = d.file("other", &pattern(4096, 9));
    assert_eq!(
        d.c.setupmapping(other, None, 0, MIB2, READ, 0),
        Err(libc::EBUSY)
    );
    assert_eq!(
        d.read_window(0, 16),
        &pattern(1 << 20, 5)[..16],
        "the old mapping"
    );

    // Every other way of cutting the file's bytes waits for the pin the same way.
    let fh = d.c.open(node, RDWR).unwrap().fh;
    let through_handle = abi::SetattrIn {
        valid: abi::fattr::SIZE | abi::fattr::FH,
        fh,
        size: 0,
        ..Default::default()
    };
    assert_eq!(
        d.c.setattr(node, through_handle).unwrap_err(),
        libc::EBUSY,
        "handle"
    );
    let trunc = libc::O_TRUNC as u32;
    assert_eq!(
        d.c.open(node, RDWR | trunc).unwrap_err(),
        libc::EBUSY,
        "O_TRUNC open"
    );
    assert_eq!(
        d.c.create(ROOT, b"s", 0o644, RDONLY | libc::O_CREAT as u32 | trunc)
            .unwrap_err(),
        libc::EBUSY,
        "O_RDONLY|O_TRUNC create"
    );
    let zero = (libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE) as u32;
    assert_eq!(
        d.c.fallocate(node, fh, zero, 0, 8192),
        Err(libc::EBUSY),
        "zero range"
    );
    let src = d.c.open(other, RDONLY).unwrap().fh;
    let copy = abi::CopyFileRangeIn {
        fh_in: src,
        off_in: 0,
        nodeid_out: node,
        fh_out: fh,
        off_out: 0,
        len: 4096,
        flags: 0,
    };
    assert_eq!(
        d.c.copy_file_range(other, copy),
        Err(libc::EBUSY),
        "copy_file_range"
    );
    assert_eq!(
        std::fs::read(d.share("s")).unwrap(),
        pattern(1 << 20, 5),
        "nothing was cut under the pin"
    );
}

#[test]
fn reset_and_destroy_wait_for_pins_then_release() {
    let d = start("dax-pin-reset", &[]);
    init(&d);
    let node = d.file("r", &pattern(4096, 6));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    d.c.setupmapping(node, None, 0, MIB2, READ, MIB2).unwrap();
    let mut c = d.control();
    let id = c.pin(0, 4096).unwrap();

    // DESTROY waits for the pin (parked: the queue stays usable), then releases all.
    let ticket =
        d.c.transport
            .submit(
                &encode_request(abi::opcode::DESTROY, 4242, 0, 0, 0, &[]),
                4096,
            )
            .unwrap();
    wait_until("DESTROY to wait on the pin", || {
        c.stats()["draining_chunks"] == 2
    });
    assert_eq!(d.live().len(), 2, "nothing is unmapped while a pin is held");
    c.unpin(id);
    assert_eq!(
        Reply::parse(&d.c.transport.wait(ticket).unwrap())
            .header
            .error,
        0
    );
    assert!(d.live().is_empty());

    // A device reset waits the same way.
    init(&d);
    let node = d.c.lookup(ROOT, b"r").unwrap().nodeid;
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    let id = c.pin(0, 4096).unwrap();
    d.frontend.lock().unwrap().reset_device().unwrap();
    wait_until("the reset to wait on the pin", || {
        c.stats()["draining_chunks"] == 1
    });
    assert_eq!(d.live().len(), 1);
    c.unpin(id);
    wait_until("the reset to release the window", || d.live().is_empty());
}

#[test]
fn closing_the_control_connection_drops_its_pins() {
    let d = start("dax-pin-close", &[]);
    init(&d);
    let node = d.file("f", &pattern(4096, 7));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    let mut c = d.control();
    c.pin(0, 4096).unwrap();
    drop(c);
    let mut other = d.control();
    wait_until("the closed connection's pin to go", || {
        other.stats()["live_pins"] == 0
    });
    d.c.removemapping(ROOT, &[(0, MIB2)]).unwrap();
}

#[test]
fn inode_policy_marks_only_files_the_host_marks_dax() {
    let d = start("dax-inode", &["--dax", "inode"]);
    let out = init(&d);
    assert_ne!(u64::from(out.flags2) << 32 & init_flags::HAS_INODE_DAX, 0);
    // This host's temp directory is not on a DAX device: no file is DAX.
    let node = d.file("f", b"x");
    assert_eq!(d.c.getattr(node, None).unwrap().attr.flags & 2, 0);
}

#[test]
fn without_a_window_dax_requests_are_unsupported() {
    let dir = TempDir::new("dax-none");
    std::fs::create_dir(dir.join("share")).unwrap();
    std::fs::write(dir.join("share/f"), b"x").unwrap();
    let socket = dir.join("fs.sock");
    let share = dir.join("share");
    let _daemon = spawn_daemon(
        &[
            "fs",
            "--socket",
            socket.to_str().unwrap(),
            "--shared-dir",
            share.to_str().unwrap(),
            "--sandbox",
            "none",
        ],
        &socket,
    );
    let frontend = Frontend::connect(&socket, &FrontendOptions::default()).unwrap();
    assert!(
        frontend.windows().region(0).is_none(),
        "no shared memory offered"
    );
    let c = Client::over(FuseQueue::new(Arc::new(Mutex::new(frontend)), 1, WAIT));
    let out = c.init();
    assert_eq!(u64::from(out.flags) & init_flags::MAP_ALIGNMENT, 0);
    let node = c.lookup(ROOT, b"f").unwrap().nodeid;
    assert_eq!(c.getattr(node, None).unwrap().attr.flags & 2, 0);
    assert_eq!(
        c.setupmapping(node, None, 0, MIB2, READ, 0),
        Err(libc::ENOSYS)
    );
    assert_eq!(c.removemapping(ROOT, &[(0, MIB2)]), Err(libc::ENOSYS));
}

#[test]
fn rename_over_a_mapped_file_keeps_its_mapping_valid() {
    let d = start("dax-rename-over", &[]);
    init(&d);
    let old = d.file("victim", &pattern(4096, 10));
    d.file("newcomer", &pattern(4096, 11));
    d.c.setupmapping(old, None, 0, MIB2, READ, 0).unwrap();
    d.c.rename(ROOT, b"newcomer", ROOT, b"victim", 0).unwrap();
    assert_eq!(std::fs::read(d.share("victim")).unwrap(), pattern(4096, 11));
    assert_eq!(
        d.read_window(0, 4096),
        pattern(4096, 10),
        "the old file, still mapped"
    );
}

#[test]
fn with_shmem_bit21_an_alioth_style_frontend_gets_a_dax_window() {
    let options = FrontendOptions {
        protocol_features: (FrontendOptions::default().protocol_features
            - vhost::vhost_user::message::VhostUserProtocolFeatures::SHMEM)
            | vhost::vhost_user::message::VhostUserProtocolFeatures::from_bits_retain(1 << 21),
        shmem_sizes: Some(vec![WINDOW]),
        ..FrontendOptions::default()
    };
    let d = start_with("dax-bit21", &["--shmem-bit21"], &options);
    init(&d);
    let node = d.file("f", &pattern(4096, 12));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    assert_eq!(d.read_window(0, 4096), pattern(4096, 12));
}

#[test]
fn a_map_the_frontend_refuses_is_enomem_and_leaves_the_chunk_free() {
    // A frontend whose window is smaller than the device's refuses maps past its end.
    let options = FrontendOptions {
        protocol_features: (FrontendOptions::default().protocol_features
            - vhost::vhost_user::message::VhostUserProtocolFeatures::SHMEM)
            | vhost::vhost_user::message::VhostUserProtocolFeatures::from_bits_retain(1 << 21),
        shmem_sizes: Some(vec![WINDOW / 2]),
        ..FrontendOptions::default()
    };
    let d = start_with("dax-refused", &["--shmem-bit21"], &options);
    init(&d);
    let node = d.file("f", &pattern(4096, 13));
    assert_eq!(
        d.c.setupmapping(node, None, 0, MIB2, READ, 3 * MIB2),
        Err(libc::ENOMEM)
    );
    let mut c = d.control();
    assert_eq!(c.stats()["mapped_bytes"], 0, "the chunk was left free");
    wait_until("the log to name the refusal", || {
        d.daemon.log().contains("the frontend refused a SHMEM_MAP")
    });
    // Inside the frontend's window it works.
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    assert_eq!(c.stats()["mapped_bytes"], MIB2);
}

#[test]
fn a_parked_request_does_not_hold_up_another() {
    let d = start("dax-two-parked", &[]);
    init(&d);
    let a = d.file("a", &pattern(1 << 20, 1));
    let b = d.file("b", &pattern(1 << 20, 2));
    d.c.setupmapping(a, None, 0, MIB2, READ | WRITE, 0).unwrap();
    d.c.setupmapping(b, None, 0, MIB2, READ | WRITE, MIB2)
        .unwrap();
    let mut c = d.control();
    let pin_a = c.pin(0, 4096).unwrap();
    let pin_b = c.pin(MIB2, 4096).unwrap();
    let first = d.c.transport.submit(&truncate_request(a, 0), 4096).unwrap();
    let second = d.c.transport.submit(&truncate_request(b, 0), 4096).unwrap();
    wait_until("both truncates to wait", || {
        c.stats()["draining_chunks"] == 2
    });
    // The second one goes as soon as its own pin drops, the first still waiting.
    c.unpin(pin_b);
    assert_eq!(
        Reply::parse(&d.c.transport.wait(second).unwrap())
            .header
            .error,
        0
    );
    assert_eq!(d.host_size("b"), 0);
    assert_eq!(d.host_size("a"), 1 << 20);
    assert!(!d.c.transport.is_done(&first).unwrap());
    c.unpin(pin_a);
    assert_eq!(
        Reply::parse(&d.c.transport.wait(first).unwrap())
            .header
            .error,
        0
    );
    assert_eq!(d.host_size("a"), 0);
}

#[test]
fn a_gone_frontends_pinned_mappings_hold_off_the_next_one_until_released() {
    let d = start(
        "dax-reconnect-pinned",
        &["--reconnect", "--pin-wait-budget", "1s"],
    );
    init(&d);
    let node = d.file("f", &pattern(4096, 3));
    d.c.setupmapping(node, None, 0, MIB2, READ, 0).unwrap();
    let mut c = d.control();
    let pin = c.pin(0, 4096).unwrap();
    // The frontend goes; its mapping's release waits for the pin and runs out of budget.
    let socket = d.dir.join("fs.sock");
    let Dax {
        dir: _dir,
        daemon,
        frontend,
        windows,
        c: first,
    } = d;
    drop((first, windows, frontend));
    wait_until("the release to run out of budget", || {
        daemon
            .log()
            .contains("disconnect: DAX window not fully released")
    });
    let second = Arc::new(Mutex::new(
        Frontend::connect(&socket, &FrontendOptions::default()).unwrap(),
    ));
    let windows = second.lock().unwrap().windows().clone();
    let c2 = Client::over(FuseQueue::new(second.clone(), 1, WAIT));
    c2.init();
    let node = c2.lookup(ROOT, b"f").unwrap().nodeid;
    // The ledger still holds the old mapping: a map of the same range must not pass for
    // "already mapped" in a window this frontend never mapped.
    assert_eq!(
        c2.setupmapping(node, None, 0, MIB2, READ, 0),
        Err(libc::EBUSY)
    );
    c.unpin(pin);
    wait_until("the old mapping to be released", || {
        c.stats()["live_mappings"] == 0
    });
    wait_until("maps to be served again", || {
        c2.setupmapping(node, None, 0, MIB2, READ, 0).is_ok()
    });
    let mut buf = vec![0u8; 4096];
    windows.read(0, 0, &mut buf).unwrap();
    assert_eq!(
        buf,
        pattern(4096, 3),
        "really mapped in the new frontend's window"
    );
}

#[test]
fn a_binary_being_executed_is_mapped_read_only() {
    let d = start("dax-txtbsy", &[]);
    init(&d);
    let binary = d.share("sleeper");
    std::fs::copy("/bin/sleep", &binary).unwrap();
    // Another test thread's fork may briefly hold the copy's writable descriptor.
    let mut running = loop {
        match std::process::Command::new(&binary).arg("30").spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            other => break other.unwrap(),
        }
    };
    let node = d.c.lookup(ROOT, b"sleeper").unwrap().nodeid;
    let mapped = d.c.setupmapping(node, None, 0, MIB2, READ, 0);
    let write = d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, MIB2);
    running.kill().unwrap();
    running.wait().unwrap();
    mapped.unwrap();
    assert!(
        !d.live()[0].writable,
        "the daemon could only open it read-only"
    );
    assert_eq!(write, Err(libc::EACCES));
    let host = std::fs::read(&binary).unwrap();
    assert_eq!(d.read_window(0, 4096), &host[..4096]);
}

#[test]
fn the_control_socket_takes_the_operators_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("dax-control-mode");
    std::fs::create_dir(dir.join("share")).unwrap();
    let (socket, control) = (dir.join("fs.sock"), dir.join("control.sock"));
    let mut command = std::process::Command::new(binary());
    // SAFETY: umask is async-signal-safe and touches nothing but the child's mask.
    unsafe {
        command.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let share = dir.join("share");
    let _daemon = spawn_daemon_with(
        command,
        &[
            "fs",
            "--socket",
            socket.to_str().unwrap(),
            "--shared-dir",
            share.to_str().unwrap(),
            "--sandbox",
            "none",
            "--dax-window",
            "8M",
            "--control-socket",
            control.to_str().unwrap(),
        ],
        &socket,
    );
    for path in [&socket, &control] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{}: mode {mode:o}", path.display());
    }
}

#[test]
fn truncating_creates_keep_linux_permission_rules_under_dax() {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root (the daemon switches to the caller's uid)");
        return;
    }
    let d = start("dax-create-trunc", &[]);
    init(&d);
    std::fs::set_permissions(d.dir.join("share"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let (w, creat, trunc, excl) = (
        libc::O_WRONLY as u32,
        libc::O_CREAT as u32,
        libc::O_TRUNC as u32,
        libc::O_EXCL as u32,
    );
    std::fs::write(d.share("roots"), b"hello").unwrap();
    std::fs::write(d.share("mine"), b"data").unwrap();
    std::os::unix::fs::chown(d.share("mine"), Some(1000), Some(1000)).unwrap();
    d.c.set_caller(1000, 1000);
    // A file the create makes is new: mode 0444 does not stop it (shell `>` under umask
    // 0222, a copy of a read-only file).
    d.c.create(ROOT, b"new444", 0o444, w | creat | trunc)
        .unwrap();
    d.c.create(ROOT, b"excl444", 0o444, w | creat | excl | trunc)
        .unwrap();
    // An existing file the caller may not write is not truncated, whatever the access mode.
    assert_eq!(
        d.c.create(ROOT, b"roots", 0o644, RDONLY | creat | trunc)
            .unwrap_err(),
        libc::EACCES
    );
    assert_eq!(d.host_size("roots"), 5);
    // Its own file is, even opened O_RDONLY.
    d.c.create(ROOT, b"mine", 0o644, RDONLY | creat | trunc)
        .unwrap();
    assert_eq!(d.host_size("mine"), 0);
}

#[test]
fn a_parked_reply_never_lands_in_a_stopped_ring() {
    let d = start("dax-stop-ring", &[]);
    init(&d);
    let node = d.file("a", &pattern(1 << 20, 1));
    d.c.setupmapping(node, None, 0, MIB2, READ | WRITE, 0)
        .unwrap();
    let mut c = d.control();
    let pin = c.pin(0, 4096).unwrap();
    let ticket =
        d.c.transport
            .submit(&truncate_request(node, 0), 4096)
            .unwrap();
    wait_until("the truncate to park", || c.stats()["draining_chunks"] == 1);
    d.frontend.lock().unwrap().stop_queues().unwrap();
    c.unpin(pin);
    // The truncate itself goes through; only its reply is held back from the ring.
    wait_until("the parked truncate to finish", || d.host_size("a") == 0);
    wait_until("its reply to be dropped", || {
        d.daemon.log().contains("parked reply dropped")
    });
    assert!(!d.c.transport.is_done(&ticket).unwrap());
}
