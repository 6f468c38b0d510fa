//! The DAX ledger: the one owner of the life of every mapping of host memory into a
//! guest window.
//!
//! The virtio-fs DAX window and the virtio-pmem region both map host files straight into
//! guest-physical space. Whatever the device, every such mapping is made, pinned, drained
//! and torn down here, so that no device can get its lifetime wrong. The ledger knows
//! nothing of FUSE or vhost: it maps and unmaps through a [`Mapper`] (the vhost-user backend
//! channel in production, [`MemoryMapper`] in tests), and it holds the objects it maps as
//! [`Backing`]s (an open file plus an identity for its inode).
//!
//! # Vocabulary
//!
//! * **Window, chunk.** The window is `window_size` bytes split into fixed chunks
//!   (2 MiB by default, any power of two from 4 KiB). The chunk is the unit of every rule.
//! * **Mapping.** The extent made by one successful [`Ledger::map`]: whole chunks at a
//!   chunk-aligned window offset, mapping a page-aligned file range of one backing.
//! * **Map-time reference.** Each live mapping holds one clone of its `Arc<dyn Backing>`
//!   from the moment it is mapped until the frontend acknowledged its unmap. Its owner may
//!   forget the inode (FORGET, RELEASE, unlink); the file stays open as long as the guest
//!   can reach it.
//! * **"Has mappings" reference.** One more clone per backing, taken when its first mapping
//!   appears (0 -> 1) and dropped when its last one goes (1 -> 0): one get, one put, at the
//!   transitions, never inferred from a count.
//! * **Pin.** An in-flight access to a mapped window range that does not go through the
//!   guest CPU's page tables: a request whose buffers lie in the window, our own I/O on it
//!   (a pmem flush), the VMM's DMA. Pins are counted per chunk and are **not** references:
//!   nothing is ever decided from a reference count.
//! * **Draining.** A chunk owned by an operation that will change it. While it drains, no
//!   new pin is granted on it (the caller says whether to fail or wait) and no other
//!   operation starts on it; other chunks are unaffected.
//! * **Quiescence.** A draining chunk with no pins left. Only a quiescent chunk is unmapped,
//!   and only the file bytes under quiescent chunks are changed.
//!
//! # The rules
//!
//! 1. **Take the reference at map time** (see above). [`Ledger::map`] takes the `Arc` it
//!    is given as the mapping's reference.
//! 2. **One get, one put, at the transitions** (the "has mappings" reference).
//! 3. **Pins are not references.** [`Ledger::pin`] returns a [`PinGuard`]; dropping it
//!    unpins. A pin needs every chunk it touches mapped, and is refused if any pinned byte
//!    maps a file byte at or beyond the backing's current end of file.
//! 4. **Release is deferred until quiescence**, with one discipline: mark draining, wait
//!    (bounded) for the pins to drain, act, reopen. There are two kinds:
//!    * *Releasing a mapping* — [`Ledger::unmap`] (the guest's REMOVEMAPPING, eviction of a
//!      range), a [`Ledger::map`] over it (remap), [`Ledger::release_backing`] (inode
//!      eviction), [`Ledger::reset`] (device reset, FUSE_DESTROY, disconnect, shutdown):
//!      drain, wait for the pins, unmap through the mapper and wait for its
//!      acknowledgement, then drop the references. Only then may the file close.
//!    * *Releasing file pages under a mapping* — [`Ledger::release_file_range`] (truncate,
//!      punch-hole, zero-range): drain the chunks that map the affected file range, wait
//!      for their pins, and hand the caller a [`FileRangeGuard`]; the caller changes the
//!      file while holding it, and dropping it reopens the chunks. **The mappings stay**:
//!      the guest keeps them across a truncate and reuses them when the file grows again.
//!      What keeps the host safe is rule 3: no pin beyond the end of file.
//!
//!    A FORGET or an unlink alone releases nothing.
//! 5. **Invariants** (checked by the tests after every step): a pinned chunk is never
//!    unmapped; no file is shrunk or punched under a live pin; no pin covers bytes beyond
//!    EOF; every live mapping holds exactly one reference on its backing and every count
//!    returns to zero after a reset; the "has mappings" reference exists exactly while the
//!    backing has a mapped chunk; a window offset is mapped at most once; nothing is mapped
//!    outside the window or with more access than the backing allows
//!    ([`Backing::writable`]).
//!
//! # Decisions beyond the rules
//!
//! * **Whole mappings.** `unmap(range)` releases the mappings inside the range and skips
//!   unmapped chunks; a mapping that sticks out of the range is an error
//!   ([`LedgerError::PartialMapping`]) and nothing changes. [`Mapper::unmap`] is called
//!   once per mapping, with that mapping's exact range.
//! * **Map over a mapping.** If the same file range of the same backing is already mapped
//!   at exactly that range with at least the access asked for, `map` does nothing
//!   ([`MapOutcome::AlreadyMapped`]): the guest's read -> write upgrade needs no unmap when
//!   the device maps writable up front. Otherwise every intersecting mapping is released
//!   whole (first kind) before the new map; if the frontend refuses the new map, its
//!   chunks are left free, never half-mapped.
//! * **Frontend failures.** A mapping whose unmap the frontend fails (refused, I/O error,
//!   no acknowledgement) stays, with its references, because it may still be live; the
//!   others in the same operation are still released and the first error is returned. An
//!   unmap that fails with [`MapperError::Disconnected`] counts as done: the frontend, and
//!   every mapping in its address space, is gone.
//! * **File ranges are fenced, not just chunks.** While a [`FileRangeGuard`] lives, maps of
//!   an overlapping file range of the same backing wait, even on chunks that were not
//!   mapped when it was taken, and it waits for such maps already in progress; otherwise a
//!   pin could slip onto bytes about to be cut. Draining is per chunk: a chunk that maps
//!   any affected byte drains whole. Two guards that share a chunk are serialised; guards
//!   that share none are not (serialising file changes is the file system's business).
//! * **Drains are all or nothing.** An operation owns all the chunks it needs at once or
//!   none (so two operations never each hold half of what the other needs), and a wait
//!   that times out changes nothing: a `reset` with one pinned chunk releases no mapping.
//! * **Bounded waits.** Each operation has one budget ([`LedgerConfig::wait_budget`],
//!   default 10 s; zero means "never wait") for all its waits. When it runs out, the ledger
//!   logs (at `warn`) the stuck chunks, their pin counts and who holds the pins, and the
//!   operation fails with [`LedgerError::Timeout`] (EBUSY). A thread that holds a pin or a
//!   guard and then asks for an operation on the same chunks waits for itself until its
//!   budget runs out: a timeout, not a hang.
//! * **Locks.** One mutex over the chunk table and one condition variable. The lock is never
//!   held across a [`Mapper`] call, a [`Backing::size`] call, a wait, or the drop of a
//!   backing reference (which may close a file), so one slow chunk never stalls another.
//!   A pin is registered before the backing's size is read, so a truncate that starts after
//!   the check waits for the pin, and one that finished before it is seen by the check.
//! * **Dropping the ledger** with live mappings logs a warning and drops their references
//!   without telling the frontend: call [`Ledger::reset`] first.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use vhost_dax::dax::{
//!     FileBacking, FileOffset, Ledger, LedgerConfig, MemoryMapper, PinWait, WindowOffset,
//! };
//!
//! let path = std::env::temp_dir().join(format!("dax-doc-{}", std::process::id()));
//! std::fs::write(&path, vec![0u8; 3 << 20]).unwrap();
//! let file = Arc::new(FileBacking::open(&path, true).unwrap());
//! std::fs::remove_file(&path).unwrap();
//!
//! let mapper = Arc::new(MemoryMapper::new());
//! let ledger = Ledger::new(LedgerConfig::new(8 << 20), mapper.clone()).unwrap();
//! ledger
//!     .map(WindowOffset(0), 2 << 20, file.clone(), FileOffset(0), true)
//!     .unwrap(); // SETUPMAPPING
//! let pin = ledger.pin(4096, 4096, "fuse-read", PinWait::Fail).unwrap();
//! // A pin blocks the release of its chunk; dropping it lets the unmap through.
//! drop(pin);
//! ledger.unmap(0, 2 << 20).unwrap(); // REMOVEMAPPING
//! assert!(mapper.live().is_empty());
//! assert_eq!(Arc::strong_count(&file), 1);
//! ```
//!
//! # How it is proven
//!
//! `cargo test --lib dax` runs unit tests of each operation and error path, a property
//! test of random sequences of map, remap, unmap, pin, unpin, truncate, punch-hole, forget,
//! eviction and reset against a plain model (after every step: the invariants above,
//! reference counts as the rules say, and the in-memory frontend holding exactly the
//! ledger's mappings), and bounded concurrency tests. The pin / drain / unmap handshake is
//! model-checked by loom on the ledger's own code (its lock and condition variable come
//! from `sync.rs`, loom's under `cfg(loom)`):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test --release --lib dax
//! ```
//!
//! # Layout
//!
//! `ledger.rs` holds the operations (drains, waits, mapper calls), `table.rs` the chunk
//! table (pure bookkeeping under the lock), `wait.rs` the bounded waits, `guard.rs` the two
//! guards, `info.rs` the introspection ([`Ledger::stats`], [`Ledger::mappings`],
//! [`Ledger::dump`]), `mapper.rs` the [`Mapper`] seam and [`MemoryMapper`], `offset.rs`
//! the two offset types ([`WindowOffset`], [`FileOffset`]) that keep a window offset and
//! a file offset apart, `backing.rs` the [`Backing`] seam and [`FileBacking`], `error.rs`
//! the errors and their errnos.

pub mod backing;
mod config;
mod error;
pub mod extent;
mod guard;
mod info;
mod ledger;
pub mod mapper;
mod offset;
pub mod session;
mod state;
mod sync;
mod table;
mod wait;

pub use backing::{Backing, BackingId, FileBacking, FileIdentity};
pub use config::{
    DEFAULT_CHUNK_SIZE, DEFAULT_WAIT_BUDGET, LedgerConfig, MAX_CHUNKS, MIN_CHUNK_SIZE, PAGE_SIZE,
};
pub use error::{Field, LedgerError, MapperCall, Op, PinHolder, Stuck};
pub use extent::{ExtentMapper, MapExtent};
pub use guard::{FileRangeGuard, PinGuard};
pub use info::{LedgerStats, MappingInfo, PinInfo};
pub use ledger::{Ledger, MapOutcome, PinWait, UnmapOutcome};
pub use mapper::{Failure, LiveMapping, Mapper, MapperError, MemoryMapper};
pub use offset::{FileOffset, WindowOffset};
pub use session::{FrontendLink, HeldOff, PendingRelease, ReplyEpoch, WindowSession};
pub use table::PinId;

#[cfg(test)]
mod tests;
