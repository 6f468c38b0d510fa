//! The daemon binary serving a fresh shared directory, our frontend on its socket, and
//! a [`Client`] playing the guest kernel on the first request queue; and the same
//! directory layout served in this process, for scenarios that run over both.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use vhost_dax::frontend::{Buffer, DaemonProcess, FuseQueue, SharedFrontend};
use vhost_dax::fs::{PassthroughConfig, PassthroughFs};
use vhost_dax::fuse::Server;
use vhost_dax::fuse::testing::{Client, Transport};

use crate::common::{TempDir, WAIT, connect, spawn_daemon};

pub use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
pub use vhost_dax::fuse::abi::{self, GetxattrOut, Wire, fattr, fopen};

/// `S_IFMT`.
pub const S_IFMT: u32 = libc::S_IFMT;
/// The root node id.
pub const ROOT: u64 = 1;
/// `O_RDWR` as FUSE carries it.
pub const RDWR: u32 = libc::O_RDWR as u32;
/// `O_RDONLY` as FUSE carries it.
pub const RDONLY: u32 = libc::O_RDONLY as u32;
/// `O_WRONLY` as FUSE carries it.
pub const WRONLY: u32 = libc::O_WRONLY as u32;

/// A running `vhost-dax fs` and a guest talking to it.
pub struct Fs {
    /// Holds `share/` (the exported directory) and `outside` (a file beyond it).
    pub dir: TempDir,
    /// Killed on drop.
    pub _daemon: DaemonProcess,
    pub frontend: SharedFrontend,
    /// The guest kernel on request queue 1.
    pub c: Client<FuseQueue>,
    /// The guest kernel on the high-priority queue, once a scenario asks for it.
    hiprio: OnceLock<Client<FuseQueue>>,
}

impl Fs {
    /// The shared directory on the host.
    pub fn share(&self) -> PathBuf {
        self.dir.join("share")
    }

    /// `name` inside the shared directory, on the host.
    pub fn host(&self, name: &str) -> PathBuf {
        self.share().join(name)
    }

    /// Another client on virtqueue `queue` of the same device (0 is hiprio).
    pub fn client_on(&self, queue: usize) -> Client<FuseQueue> {
        Client::over(FuseQueue::new(self.frontend.clone(), queue, WAIT))
    }

    /// Offers one hand-made chain on `queue` and waits for the device to return it;
    /// gives the number of bytes the device says it wrote.
    pub fn chain(&self, queue: usize, buffers: &[Buffer]) -> u32 {
        let mut fe = self.frontend.lock().unwrap();
        let head = fe.submit(queue, buffers).expect("chain offered");
        let used = fe.wait_used(queue, 1, WAIT).expect("chain returned");
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].head, head);
        used[0].len
    }
}

/// Starts `vhost-dax fs` with `extra` arguments (`--sandbox none` unless they say
/// otherwise) on a fresh share and connects, without sending INIT.
pub fn start_uninit(name: &str, extra: &[&str]) -> Fs {
    let dir = TempDir::new(name);
    std::fs::create_dir(dir.join("share")).unwrap();
    std::fs::write(dir.join("outside"), b"secret").unwrap();
    let socket = dir.join("fs.sock");
    let share = dir.join("share");
    let mut args = vec![
        "fs",
        "--socket",
        socket.to_str().unwrap(),
        "--shared-dir",
        share.to_str().unwrap(),
    ];
    if !extra.contains(&"--sandbox") {
        args.extend(["--sandbox", "none"]);
    }
    args.extend_from_slice(extra);
    let daemon = spawn_daemon(&args, &socket);
    let frontend = Arc::new(Mutex::new(connect(&socket)));
    let c = Client::over(FuseQueue::new(frontend.clone(), 1, WAIT));
    Fs {
        dir,
        _daemon: daemon,
        frontend,
        c,
        hiprio: OnceLock::new(),
    }
}

/// Same, and INIT as a Linux 6.12 guest.
pub fn start(name: &str, extra: &[&str]) -> Fs {
    let f = start_uninit(name, extra);
    f.c.init();
    f
}

/// Whether the tests run as root (the daemon then switches fsuid/fsgid per request).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A SETATTR with only `valid` set.
pub fn sa(valid: u32) -> abi::SetattrIn {
    abi::SetattrIn {
        valid,
        ..Default::default()
    }
}

/// Permission bits (with suid/sgid/sticky) of `p` on the host, not following a symlink.
pub fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Sorted names of the entries of `dir` on the host.
pub fn host_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A guest and its share, whichever way its requests reach the file system: scenarios
/// written against this run both in process ([`InProcess`], `Server::handle` on a
/// `PassthroughFs`) and over the socket ([`Fs`], the daemon binary), so a difference
/// between the library and the device around it shows as one of the two failing.
pub trait Guest {
    /// How requests travel.
    type Queue: Transport;
    /// The guest kernel.
    fn c(&self) -> &Client<Self::Queue>;
    /// Holds `share/` and `outside`.
    fn dir(&self) -> &Path;
    /// Drops `n` lookups of `node` the way Linux does: on the high-priority queue
    /// where there is one.
    fn forget_on_hiprio(&self, node: u64, n: u64);

    /// The shared directory on the host.
    fn share(&self) -> PathBuf {
        self.dir().join("share")
    }

    /// `name` inside the shared directory, on the host.
    fn host(&self, name: &str) -> PathBuf {
        self.share().join(name)
    }

    /// A file beyond the share that the guest must never reach.
    fn outside(&self) -> PathBuf {
        self.dir().join("outside")
    }
}

impl Guest for Fs {
    type Queue = FuseQueue;

    fn c(&self) -> &Client<FuseQueue> {
        &self.c
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn forget_on_hiprio(&self, node: u64, n: u64) {
        self.hiprio
            .get_or_init(|| self.client_on(0))
            .forget(node, n);
    }
}

/// The file system in this process: the same layout as [`start`] makes, no daemon.
pub struct InProcess {
    dir: TempDir,
    c: Client<Server<PassthroughFs>>,
}

impl InProcess {
    /// A fresh share served by a `PassthroughFs` set up by `configure`, after INIT.
    pub fn start(name: &str, configure: impl FnOnce(&mut PassthroughConfig)) -> Self {
        let dir = TempDir::new(name);
        std::fs::create_dir(dir.join("share")).unwrap();
        std::fs::write(dir.join("outside"), b"secret").unwrap();
        let mut config = PassthroughConfig::new(dir.join("share"));
        configure(&mut config);
        let c = Client::new(PassthroughFs::new(config).unwrap());
        c.init();
        Self { dir, c }
    }
}

impl Guest for InProcess {
    type Queue = Server<PassthroughFs>;

    fn c(&self) -> &Client<Server<PassthroughFs>> {
        &self.c
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn forget_on_hiprio(&self, node: u64, n: u64) {
        self.c.forget(node, n);
    }
}

/// Runs the scenario `fn NAME(f: &impl Guest)` as two tests, `NAME::in_process` and
/// `NAME::over_the_socket`: the daemon gets `flags`, the in-process file system the
/// same settings through `config`.
macro_rules! over_both_transports {
    ($scenario:ident, flags: [$($flag:expr),*], config: $configure:expr) => {
        mod $scenario {
            #[test]
            fn in_process() {
                let f = crate::support::InProcess::start(stringify!($scenario), $configure);
                super::$scenario(&f);
            }

            #[test]
            fn over_the_socket() {
                let f = crate::support::start(stringify!($scenario), &[$($flag),*]);
                super::$scenario(&f);
            }
        }
    };
    ($scenario:ident) => {
        over_both_transports!($scenario, flags: [], config: |_| {});
    };
}
