//! Shared helpers for the integration tests: a daemon child and our frontend.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vhost_dax::frontend::{Buffer, DaemonProcess, Frontend, FrontendOptions};

/// Generous bound for anything the daemon does in the background.
pub const WAIT: Duration = Duration::from_secs(20);

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vhost-dax"))
}

/// A fresh directory under the target dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let base = std::env::temp_dir().join(format!(
            "vhost-dax-test-{}-{name}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        TempDir(base)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Names of the entries in the directory, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `vhost-dax ARGS` and waits for `socket`.
pub fn spawn_daemon(args: &[&str], socket: &Path) -> DaemonProcess {
    spawn_daemon_with(Command::new(binary()), args, socket)
}

/// Same, with a prepared command (environment).
pub fn spawn_daemon_with(mut command: Command, args: &[&str], socket: &Path) -> DaemonProcess {
    command.args(args).env("RUST_LOG", "debug");
    DaemonProcess::spawn_command(command, socket, WAIT).expect("daemon starts")
}

/// Starts `vhost-dax fs` unsandboxed, sharing `share` on `socket`, with `extra` arguments.
pub fn spawn_fs_daemon(share: &Path, socket: &Path, extra: &[&str]) -> DaemonProcess {
    spawn_fs_daemon_with(Command::new(binary()), share, socket, extra)
}

/// Same, with a prepared command (environment, umask).
pub fn spawn_fs_daemon_with(
    command: Command,
    share: &Path,
    socket: &Path,
    extra: &[&str],
) -> DaemonProcess {
    let mut args = vec![
        "fs",
        "--socket",
        socket.to_str().unwrap(),
        "--shared-dir",
        share.to_str().unwrap(),
        "--sandbox",
        "none",
    ];
    args.extend_from_slice(extra);
    spawn_daemon_with(command, &args, socket)
}

/// Connects our frontend with default options.
pub fn connect(socket: &Path) -> Frontend {
    Frontend::connect(socket, &FrontendOptions::default()).expect("frontend connects")
}

/// Waits (bounded) until the condition holds; panics with `what` otherwise.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A pmem FLUSH request laid out in guest RAM: (request buffers, status address).
pub fn flush_request(frontend: &Frontend) -> (Vec<Buffer>, vm_memory::GuestAddress) {
    let ram = frontend.ram();
    let req = ram.alloc_bytes(&0u32.to_le_bytes()).unwrap();
    let status = ram.alloc_bytes(&0xffff_ffffu32.to_le_bytes()).unwrap();
    (
        vec![Buffer::readable(req, 4), Buffer::writable(status, 4)],
        status,
    )
}

/// Reads a little-endian u32 from guest RAM.
pub fn read_u32(frontend: &Frontend, addr: vm_memory::GuestAddress) -> u32 {
    let bytes = frontend.ram().read(addr, 4).unwrap();
    u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}
