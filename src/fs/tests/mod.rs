//! Tests driving `Server::handle` with encoded FUSE requests against a
//! `PassthroughFs` on a temporary directory.

mod dir;
mod entry;
mod file;
mod fuzz;
mod handles;
mod parking;
mod protocol;
mod xattr;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{PassthroughConfig, PassthroughFs};
use crate::fuse::testing::Client;

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "vhost-dax-fs-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The shared directory is `dir/shared`, so `dir` itself is "outside".
pub struct Fixture {
    pub dir: TempDir,
    pub c: Client<crate::fuse::Server<PassthroughFs>>,
}

impl Fixture {
    pub fn shared(&self) -> PathBuf {
        self.dir.path().join("shared")
    }

    pub fn fs(&self) -> &PassthroughFs {
        self.c.server().filesystem()
    }
}

pub fn setup_with(f: impl FnOnce(&mut PassthroughConfig)) -> Fixture {
    let dir = TempDir::new();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(dir.path().join("outside"), b"secret").unwrap();
    let mut cfg = PassthroughConfig::new(&shared);
    if std::env::var_os(HANDLES_MARK).is_some() {
        cfg.inode_file_handles = super::InodeFileHandles::Prefer;
    }
    f(&mut cfg);
    let c = Client::new(PassthroughFs::new(cfg).unwrap());
    c.init();
    Fixture { dir, c }
}

pub fn setup() -> Fixture {
    setup_with(|_| {})
}

/// A frontend link for tests: nothing to tell.
struct NoLink;

impl crate::dax::FrontendLink for NoLink {
    fn device_started(&self) {}
    fn frontend_dropped_all(&self) {}
    fn detach(&self) {}
}

/// As [`setup`], with an 8 MiB DAX window over the in-memory frontend (pins waited out
/// for at most 50 ms), so requests reach the ledger.
pub fn setup_dax() -> Fixture {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::dax::{Ledger, LedgerConfig, MemoryMapper, WindowSession};
    let dir = TempDir::new();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::write(dir.path().join("outside"), b"secret").unwrap();
    let window = 8 << 20;
    let mapper = Arc::new(MemoryMapper::with_window(window));
    let config = LedgerConfig::new(window).with_wait_budget(Duration::from_millis(50));
    let ledger = Arc::new(Ledger::new(config, mapper).unwrap());
    let session = WindowSession::new(ledger, Arc::new(NoLink));
    let dax = super::dax::DaxWindow::new(session, super::dax::DaxPolicy::Always);
    let fs = PassthroughFs::new(PassthroughConfig::new(&shared))
        .unwrap()
        .with_dax(dax);
    let c = Client::new(fs);
    c.init();
    Fixture { dir, c }
}

pub fn is_root() -> bool {
    super::sys::geteuid() == 0
}

pub const ROOT: u64 = 1;

/// Set in the environment of [`suite_passes_with_inode_file_handles`]'s run.
const HANDLES_MARK: &str = "VHOST_DAX_FS_TESTS_HANDLES";

/// Runs the whole suite again with inodes held by file handle (`prefer`): every
/// operation must work the same whichever way inodes are held.
#[test]
fn suite_passes_with_inode_file_handles() {
    if std::env::var_os(HANDLES_MARK).is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "--test-threads=2",
            "fs::tests::",
            "--skip",
            "suite_passes_unprivileged",
            "--skip",
            "suite_passes_with_inode_file_handles",
        ])
        .env(HANDLES_MARK, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "run with inode file handles failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("test result: ok"), "{text}");
}

/// Runs the whole suite again as an unprivileged user (when root and
/// `setpriv` exists), so both credential branches are exercised.
#[test]
fn suite_passes_unprivileged() {
    const MARK: &str = "VHOST_DAX_FS_TESTS_UNPRIVILEGED";
    if !is_root() || std::env::var_os(MARK).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(&exe)
        .args([
            "--test-threads=2",
            "fs::tests::",
            "--skip",
            "suite_passes_unprivileged",
        ])
        .env(MARK, "1")
        .output();
    let Ok(out) = out else {
        eprintln!("skipping: setpriv not available");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "unprivileged run failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("test result: ok"), "{text}");
}
