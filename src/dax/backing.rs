//! Backing objects: what a window mapping maps, and the identity the ledger counts by.
//!
//! The ledger holds backings as `Arc<dyn Backing>`. Holding a clone *is* holding a
//! reference: one clone per live mapping (the map-time reference) and one per backing while
//! it has at least one mapping (the "has mappings" reference). Its owner — the file system's
//! inode record, the pmem device — keeps its own clone for as long as it likes; when the
//! owner forgets the inode, the ledger's clones keep the file open until the guest's
//! mappings of it are released.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

/// Identity of a backing object (an inode, a block device): mappings and the "has
/// mappings" reference are counted per `BackingId`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct BackingId(pub u64);

impl fmt::Display for BackingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Something a window range can map: an open file plus the identity of what it opens.
///
/// Implementations must keep `id()` and `fd()` constant for the life of the object.
pub trait Backing: Send + Sync + fmt::Debug {
    /// The identity mappings are counted by.
    fn id(&self) -> BackingId;

    /// The descriptor handed to the [`Mapper`](super::Mapper).
    fn fd(&self) -> BorrowedFd<'_>;

    /// The current end of file, in bytes. For a regular file, `fstat`; a block device
    /// must answer with its size (its `fstat` size is zero). Called without any ledger lock
    /// held, each time a pin is granted.
    fn size(&self) -> io::Result<u64>;

    /// Whether a writable mapping of this backing is allowed. A read-only export, or a file
    /// opened read-only, answers `false`; the ledger then refuses writable maps.
    fn writable(&self) -> bool {
        true
    }
}

/// The `(st_dev, st_ino)` pair of an open file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FileIdentity {
    /// Device of the file system holding the inode.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

impl FileIdentity {
    /// `fstat`s `fd` (through a duplicate of it, so no unsafe code is needed).
    pub fn of(fd: BorrowedFd<'_>) -> io::Result<Self> {
        let file = File::from(fd.try_clone_to_owned()?);
        let meta = file.metadata()?;
        Ok(FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }

    /// A [`BackingId`] derived from the pair: the inode number, scrambled by a function of
    /// the device alone. Distinct inodes of one file system always get distinct ids;
    /// across file systems a collision is possible in principle, so an owner with its own
    /// identity space (the file system's inode ids) should use that instead.
    pub fn backing_id(self) -> BackingId {
        BackingId(self.ino ^ mix(self.dev))
    }
}

/// splitmix64's finaliser: spreads the device number over all 64 bits.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A regular file as a backing: for tests, pmem on a file, and the benchmark.
#[derive(Debug)]
pub struct FileBacking {
    id: BackingId,
    writable: bool,
    file: File,
}

impl FileBacking {
    /// Wraps an open file; its id comes from `(st_dev, st_ino)`. `writable` states whether
    /// `file` was opened for writing (and may be mapped writable).
    pub fn new(file: File, writable: bool) -> io::Result<Self> {
        let id = FileIdentity::of(file.as_fd())?.backing_id();
        Ok(FileBacking { id, writable, file })
    }

    /// Wraps an open file under an identity the caller chose.
    pub fn with_id(file: File, id: BackingId, writable: bool) -> Self {
        FileBacking { id, writable, file }
    }

    /// Opens `path` read-only, or read-write when `writable`.
    pub fn open(path: &Path, writable: bool) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(writable).open(path)?;
        Self::new(file, writable)
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }
}

impl Backing for FileBacking {
    fn id(&self) -> BackingId {
        self.id
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn writable(&self) -> bool {
        self.writable
    }
}
