//! The shape of a window: its size, its chunk size, and how long the ledger may wait.

use std::time::Duration;

use serde::Serialize;

use super::error::LedgerError;

/// File offsets of mappings are multiples of this (the host page size we rely on).
pub const PAGE_SIZE: u64 = 4096;
/// The smallest chunk a window can be split into.
pub const MIN_CHUNK_SIZE: u64 = 4096;
/// The chunk size Linux guests use for their DAX ranges.
pub const DEFAULT_CHUNK_SIZE: u64 = 2 << 20;
/// How long an operation may wait for pins or for other operations before giving up.
pub const DEFAULT_WAIT_BUDGET: Duration = Duration::from_secs(10);
/// The most chunks one window may have (the chunk table costs a few dozen bytes each).
pub const MAX_CHUNKS: u64 = 1 << 22;

/// How a [`Ledger`](super::Ledger) splits its window and how long it waits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedgerConfig {
    /// Size of the window in bytes: a non-zero multiple of `chunk_size`.
    pub window_size: u64,
    /// Size of one chunk: a power of two, at least [`MIN_CHUNK_SIZE`].
    pub chunk_size: u64,
    /// Budget of every bounded wait (for pins to drain, for other operations on the same
    /// chunks to finish). Zero means "never wait": a busy chunk times out at once.
    pub wait_budget: Duration,
}

impl LedgerConfig {
    /// A window of `window_size` bytes with the default chunk size and wait budget.
    pub fn new(window_size: u64) -> Self {
        LedgerConfig {
            window_size,
            chunk_size: DEFAULT_CHUNK_SIZE,
            wait_budget: DEFAULT_WAIT_BUDGET,
        }
    }

    /// The same, with another chunk size.
    pub fn with_chunk_size(mut self, chunk_size: u64) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// The same, with another wait budget.
    pub fn with_wait_budget(mut self, wait_budget: Duration) -> Self {
        self.wait_budget = wait_budget;
        self
    }

    /// Checks the shape and returns the number of chunks.
    pub(super) fn validate(&self) -> Result<usize, LedgerError> {
        if !self.chunk_size.is_power_of_two() || self.chunk_size < MIN_CHUNK_SIZE {
            return Err(LedgerError::BadChunkSize {
                chunk_size: self.chunk_size,
                min: MIN_CHUNK_SIZE,
            });
        }
        if self.window_size == 0 || !self.window_size.is_multiple_of(self.chunk_size) {
            return Err(LedgerError::BadWindowSize {
                window_size: self.window_size,
                chunk_size: self.chunk_size,
            });
        }
        let chunks = self.window_size / self.chunk_size;
        match usize::try_from(chunks) {
            Ok(n) if chunks <= MAX_CHUNKS => Ok(n),
            _ => Err(LedgerError::TooManyChunks {
                chunks,
                max: MAX_CHUNKS,
            }),
        }
    }
}
