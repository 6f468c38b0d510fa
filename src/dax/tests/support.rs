//! Test backings, a ledger factory and a log capture shared by the ledger's tests.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use crate::dax::{Backing, BackingId, FileIdentity, Ledger, LedgerConfig, MemoryMapper};

/// The chunk size the tests use: small, and not equal to the page size, so chunk and page
/// boundaries differ.
pub const CHUNK: u64 = 16 * 1024;

/// A test's u64 chunk number, count or backing id as an index (they are all small).
pub fn idx(n: u64) -> usize {
    usize::try_from(n).expect("test indices fit usize")
}

/// The chunks the window byte range `offset..offset + len` touches.
pub fn chunks_of(offset: u64, len: u64) -> std::ops::Range<usize> {
    idx(offset / CHUNK)..idx((offset + len).div_ceil(CHUNK))
}

/// A fresh, already unlinked file: a distinct inode for the mapper to identify.
pub fn temp_file() -> File {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("vhost-dax-ledger-{}-{n}", std::process::id()));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .expect("create a temporary file");
    std::fs::remove_file(&path).expect("unlink the temporary file");
    file
}

/// A backing whose end of file is a number the test sets (the file behind it stays
/// empty): truncating or growing it is a store, so tests can change it at will.
#[derive(Debug)]
pub struct TestBacking {
    id: BackingId,
    file: File,
    size: AtomicU64,
    writable: bool,
    fail_size: AtomicBool,
}

impl TestBacking {
    pub fn new(id: u64, size: u64, writable: bool) -> Arc<TestBacking> {
        Arc::new(TestBacking {
            id: BackingId(id),
            file: temp_file(),
            size: AtomicU64::new(size),
            writable,
            fail_size: AtomicBool::new(false),
        })
    }

    pub fn set_size(&self, size: u64) {
        self.size.store(size, Ordering::SeqCst);
    }

    pub fn current_size(&self) -> u64 {
        self.size.load(Ordering::SeqCst)
    }

    pub fn fail_size(&self, fail: bool) {
        self.fail_size.store(fail, Ordering::SeqCst);
    }

    /// The backing's id, without going through the trait object.
    pub fn id_value(&self) -> BackingId {
        self.id
    }

    pub fn identity(&self) -> FileIdentity {
        FileIdentity::of(self.file.as_fd()).expect("fstat")
    }
}

impl Backing for TestBacking {
    fn id(&self) -> BackingId {
        self.id
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn size(&self) -> io::Result<u64> {
        if self.fail_size.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        Ok(self.size.load(Ordering::SeqCst))
    }

    fn writable(&self) -> bool {
        self.writable
    }
}

/// `b` as the trait object the ledger takes (a new reference).
pub fn dynb(b: &Arc<TestBacking>) -> Arc<dyn Backing> {
    Arc::clone(b) as Arc<dyn Backing>
}

/// A ledger of `chunks` chunks of [`CHUNK`] bytes over a fresh in-memory frontend.
pub fn ledger(chunks: u64, budget: Duration) -> (Ledger, Arc<MemoryMapper>) {
    let mapper = Arc::new(MemoryMapper::with_window(chunks * CHUNK));
    let config = LedgerConfig::new(chunks * CHUNK)
        .with_chunk_size(CHUNK)
        .with_wait_budget(budget);
    let ledger = Ledger::new(config, Arc::clone(&mapper) as _).expect("valid config");
    (ledger, mapper)
}

/// Log records captured for the tests that check what a timeout logs.
static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}", record.level(), record.args());
        CAPTURED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }

    fn flush(&self) {}
}

/// Installs the capturing logger (once per test binary).
pub fn capture_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in the test binary");
        log::set_max_level(log::LevelFilter::Info);
    });
}

/// Captured log lines that contain `needle`.
pub fn logs_containing(needle: &str) -> Vec<String> {
    CAPTURED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}
