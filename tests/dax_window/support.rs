//! The daemon with a DAX window, our frontend, a FUSE client on its first request queue,
//! and a client of the control socket.

pub use std::path::Path;
pub use std::sync::{Arc, Mutex};

pub use serde_json::Value;
pub use vhost_dax::control::ControlClient;

pub use crate::common::*;
pub use vhost_dax::frontend::{
    DaemonProcess, Frontend, FrontendOptions, FuseQueue, LiveMapping, MapRule, ShmemWindows,
    WindowError,
};
pub use vhost_dax::fuse::abi::{self, Wire, init_flags};
pub use vhost_dax::fuse::testing::{Client, Reply, encode_request};

pub const ROOT: u64 = 1;
pub const RDWR: u32 = libc::O_RDWR as u32;
pub const RDONLY: u32 = libc::O_RDONLY as u32;
pub const MIB2: u64 = 2 << 20;
pub const WINDOW: u64 = 8 << 20;
pub const READ: u64 = abi::misc::SETUPMAPPING_FLAG_READ;
pub const WRITE: u64 = abi::misc::SETUPMAPPING_FLAG_WRITE;

pub struct Dax {
    pub dir: TempDir,
    pub daemon: DaemonProcess,
    pub frontend: Arc<Mutex<Frontend>>,
    pub windows: Arc<ShmemWindows>,
    pub c: Client<FuseQueue>,
}

impl Dax {
    pub fn share(&self, name: &str) -> std::path::PathBuf {
        self.dir.join("share").join(name)
    }

    /// Writes `data` as `name` on the host and looks it up.
    pub fn file(&self, name: &str, data: &[u8]) -> u64 {
        std::fs::write(self.share(name), data).unwrap();
        self.c.lookup(ROOT, name.as_bytes()).unwrap().nodeid
    }

    pub fn read_window(&self, offset: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.windows.read(0, offset, &mut buf).unwrap();
        buf
    }

    pub fn control(&self) -> Control {
        Control::connect(&self.dir.join("control.sock"))
    }

    pub fn host_size(&self, name: &str) -> u64 {
        std::fs::metadata(self.share(name)).unwrap().len()
    }

    pub fn live(&self) -> Vec<LiveMapping> {
        self.windows.live()
    }

    /// Descriptors the daemon holds on `path` (deleted or not).
    pub fn daemon_fds_on(&self, path: &Path) -> usize {
        daemon_fds_on(self.daemon.pid(), path)
    }
}

/// The daemon's control socket, as the tests use it: failures of the socket panic,
/// refusals come back as their errno.
pub struct Control(ControlClient);

impl Control {
    pub fn connect(path: &Path) -> Self {
        Control(ControlClient::connect(path, WAIT).unwrap())
    }

    /// The answer to `request` as it came, refusals included.
    pub fn call(&mut self, request: &str) -> Value {
        self.0.request(request).unwrap()
    }

    /// Pins `offset..+len`; `Err(errno)` when refused.
    pub fn pin(&mut self, offset: u64, len: u64) -> Result<u64, i64> {
        self.0
            .pin(offset, len, "test-dma")
            .map_err(|e| i64::from(e.errno().unwrap_or_else(|| panic!("{e}"))))
    }

    pub fn unpin(&mut self, id: u64) {
        self.0.unpin(id).unwrap();
    }

    pub fn stats(&mut self) -> Value {
        self.0.stats().unwrap()
    }
}

pub fn daemon_fds_on(pid: u32, path: &Path) -> usize {
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

pub fn start(name: &str, extra: &[&str]) -> Dax {
    start_with(name, extra, &FrontendOptions::default())
}

pub fn start_with(name: &str, extra: &[&str], options: &FrontendOptions) -> Dax {
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
pub fn init(d: &Dax) -> abi::InitOut {
    d.c.init()
}

/// The permissions `/proc/self/maps` shows for the page at `addr`.
pub fn page_perms(addr: usize) -> String {
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

pub fn window_page_perms(d: &Dax, offset: u64) -> String {
    let base = d.windows.host_address(0).unwrap();
    page_perms(base + usize::try_from(offset).unwrap())
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..=u8::MAX)
        .cycle()
        .take(len)
        .map(|i| i.wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// SETATTR(size) as raw request bytes, to send without waiting for the reply.
pub fn truncate_request(node: u64, size: u64) -> Vec<u8> {
    let a = abi::SetattrIn {
        valid: abi::fattr::SIZE,
        size,
        ..Default::default()
    };
    encode_request(abi::opcode::SETATTR, 9000 + size, node, 0, 0, &a.to_bytes())
}
