//! The bodies of the fuzz targets (feature `fuzzing`): one function per target, taking the
//! fuzzer's bytes. The libFuzzer entry points (`fuzz/fuzz_targets/`) and the corpus replay
//! test (`tests/fuzz_corpus.rs`) both call these, so a corpus file means the same thing to
//! both. Each body asserts the invariants of what it drives and panics when one breaks: a
//! panic is what the fuzzer reports as a crash.
//!
//! - [`fuse_dax`]: FUSE requests decoded and dispatched by a [`crate::fuse::Server`] on a
//!   [`crate::fs::PassthroughFs`] in a temporary directory, with a DAX window over the
//!   in-memory [`crate::dax::MemoryMapper`].
//! - [`pmem_request`]: the virtio-pmem request parser on descriptors and guest memory.
//! - [`descriptor_chain`]: a split virtqueue laid out in guest memory, its chains popped
//!   and resolved into buffers as the fs device does, and copied through their cursors.
//! - [`vhost_user`]: vhost-user frontend messages sent over a socket to an in-process
//!   `vhost-user-backend` daemon serving our fs device with a window, or our pmem device.
//!
//! Not API: the module exists for the fuzzers and their replay test.

mod chain;
mod fuse;
mod pmem;
mod seeds;
mod vhost_user;

pub use chain::descriptor_chain;
pub use fuse::fuse_dax;
pub use pmem::pmem_request;
pub use seeds::{Seed, seeds};
pub use vhost_user::vhost_user;

/// The fuzzer's bytes, read from the front; reads past the end give zeros.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Up to `n` bytes (fewer at the end).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    /// Everything left.
    fn rest(&mut self) -> &'a [u8] {
        self.take(self.data.len())
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let got = self.take(N);
        out[..got.len()].copy_from_slice(got);
        out
    }

    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }
}

/// A directory under the system's temporary directory, removed on drop.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new(what: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "vhost-dax-fuzz-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        // A leftover of a crashed run of the same pid and count is stale.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("cannot create the fuzz scratch directory");
        ScratchDir(path)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
