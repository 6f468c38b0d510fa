//! The two guards a caller holds: a pin, and the draining of a file range.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use super::backing::BackingId;
use super::state::Inner;
use super::table::{DrainId, PinId};

/// An in-flight access to a mapped window range. While it lives, none of the chunks it
/// covers is unmapped, remapped or has its file bytes released; dropping it unpins.
///
/// It owns a handle on the ledger, so it can be sent to another thread or stored for as
/// long as the access lasts (for example by the control socket, keyed by [`PinGuard::id`]).
#[must_use = "dropping the guard unpins at once"]
pub struct PinGuard {
    pub(super) inner: Arc<Inner>,
    pub(super) id: PinId,
    pub(super) window: Range<u64>,
}

impl PinGuard {
    /// The pin's identity.
    pub fn id(&self) -> PinId {
        self.id
    }

    /// The window bytes it pins.
    pub fn window_range(&self) -> Range<u64> {
        self.window.clone()
    }

    /// Unpins now (the same as dropping the guard).
    pub fn unpin(self) {}
}

impl fmt::Debug for PinGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinGuard")
            .field("id", &self.id)
            .field("window", &self.window)
            .finish()
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        self.inner.unpin(self.id);
    }
}

/// The file bytes of a backing being changed under its mappings (truncate, punch-hole,
/// zero-range). While it lives, every chunk mapping an overlapping file range is draining:
/// it has no pins, new pins on it fail or wait, and new maps of an overlapping file range
/// of the backing wait. The mappings stay. Dropping the guard reopens the chunks.
#[must_use = "dropping the guard reopens the chunks at once"]
pub struct FileRangeGuard {
    pub(super) inner: Arc<Inner>,
    pub(super) drain: Option<DrainId>,
    pub(super) backing: BackingId,
    pub(super) from: u64,
    pub(super) end: Option<u64>,
    pub(super) drained: Vec<u64>,
}

impl FileRangeGuard {
    /// The backing whose bytes are being changed.
    pub fn backing(&self) -> BackingId {
        self.backing
    }

    /// The file range: `from..end`, `end` `None` meaning "to the end of the file".
    pub fn file_range(&self) -> (u64, Option<u64>) {
        (self.from, self.end)
    }

    /// Window offsets of the chunks held draining.
    pub fn drained_chunks(&self) -> &[u64] {
        &self.drained
    }

    /// Reopens the chunks now (the same as dropping the guard).
    pub fn reopen(self) {}
}

impl fmt::Debug for FileRangeGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRangeGuard")
            .field("backing", &self.backing)
            .field("from", &self.from)
            .field("end", &self.end)
            .field("drained", &self.drained)
            .finish()
    }
}

impl Drop for FileRangeGuard {
    fn drop(&mut self) {
        if let Some(drain) = self.drain.take() {
            self.inner.reopen(drain);
        }
    }
}
