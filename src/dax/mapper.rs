//! The one seam between the ledger and whoever really maps memory into the guest.
//!
//! [`Mapper`] is implemented over the vhost-user backend channel (SHMEM_MAP / SHMEM_UNMAP
//! with REPLY_ACK) by the device layer, and here by [`MemoryMapper`], an in-memory double
//! that records what is mapped and checks that its caller keeps the contract.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;

use super::backing::FileIdentity;
use super::offset::{FileOffset, WindowOffset};

/// Maps file ranges into a guest window and unmaps them again.
///
/// Both calls are synchronous and acknowledged: when `map` returns `Ok`, the guest can reach
/// the file through the window; when `unmap` returns `Ok`, it can no longer, so the file may
/// be changed or closed. The ledger calls a `Mapper` without holding any of its locks, from
/// whatever thread asked the ledger for the operation.
pub trait Mapper: Send + Sync {
    /// Map `len` bytes of `file` from `file_offset` at `window_offset`; returns once the
    /// frontend acknowledged. Never called on a range that is currently mapped.
    fn map(
        &self,
        window_offset: WindowOffset,
        len: u64,
        file: BorrowedFd<'_>,
        file_offset: FileOffset,
        writable: bool,
    ) -> Result<(), MapperError>;

    /// Unmap exactly one earlier `map` range; returns once acknowledged.
    fn unmap(&self, window_offset: u64, len: u64) -> Result<(), MapperError>;

    /// The file behind the live mapping at `window_offset` (`len` bytes of `file` from
    /// `file_offset`) may have grown: map whatever of the range the frontend could not
    /// map before. A frontend that maps past the end of a file has nothing to do.
    fn extend(
        &self,
        _window_offset: WindowOffset,
        _len: u64,
        _file: BorrowedFd<'_>,
        _file_offset: FileOffset,
    ) -> Result<(), MapperError> {
        Ok(())
    }

    /// Whether the live mapping at `window_offset` (of the file from `file_offset`) would
    /// still show every byte of the file it covers once the file is `new_size` bytes long.
    fn follows_resize(
        &self,
        _window_offset: WindowOffset,
        _file_offset: FileOffset,
        _new_size: u64,
    ) -> bool {
        true
    }

    /// Whether the frontend maps only whole pages inside a file (see [`super::extent`]).
    fn maps_within_file(&self) -> bool {
        false
    }
}

/// Why a [`Mapper`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum MapperError {
    /// The frontend answered and said no (no room, a feature not negotiated, a bad range).
    #[error("the frontend refused: {reason}")]
    Refused {
        /// What the frontend, or our side of the channel, said.
        reason: String,
    },
    /// The frontend cannot map at all (it did not negotiate the protocol feature that
    /// carries maps); nothing was sent.
    #[error("the frontend cannot map: {reason}")]
    Unsupported {
        /// Why.
        reason: String,
    },
    /// The range cannot be mapped so that the guest sees the file's bytes and nothing else
    /// (an empty file, a partial last page a frontend will not map); nothing was sent.
    #[error("the range cannot be mapped: {reason}")]
    Unmappable {
        /// Why.
        reason: String,
    },
    /// The request could not be sent or its answer not read.
    #[error("I/O error on the frontend channel")]
    Io(#[from] io::Error),
    /// The frontend did not acknowledge in time; whether the request took effect is unknown.
    #[error("the frontend did not acknowledge in time")]
    Timeout,
    /// The frontend is gone. Its address space, and every mapping in it, went with it.
    #[error("the frontend is disconnected")]
    Disconnected,
}

impl MapperError {
    /// The errno a request that failed for this reason reports to the guest.
    pub fn errno(&self) -> i32 {
        match self {
            // Not ENOMEM: Linux turns ENOMEM from a DAX fault into an endless retry of the
            // fault (a hung guest); EIO ends in SIGBUS or a failed read, a clean failure.
            MapperError::Refused { .. }
            | MapperError::Unsupported { .. }
            | MapperError::Unmappable { .. } => libc::EIO,
            MapperError::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
            MapperError::Timeout => libc::EIO,
            MapperError::Disconnected => libc::EIO,
        }
    }

    /// True when the frontend, and with it every mapping it held, no longer exists.
    ///
    /// The ledger counts an unmap that fails this way as done: there is nothing left that
    /// could reach the file through the window. Any other failure leaves the mapping (and
    /// its references) in place, because it may still be live.
    pub fn frontend_gone(&self) -> bool {
        match self {
            MapperError::Disconnected => true,
            MapperError::Refused { .. }
            | MapperError::Unsupported { .. }
            | MapperError::Unmappable { .. }
            | MapperError::Io(_)
            | MapperError::Timeout => false,
        }
    }
}

/// A failure [`MemoryMapper`] can be told to inject into its next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Answer [`MapperError::Refused`].
    Refused,
    /// Answer [`MapperError::Io`] with EIO.
    Io,
    /// Answer [`MapperError::Timeout`] (without doing anything).
    Timeout,
}

impl Failure {
    fn error(self) -> MapperError {
        match self {
            Failure::Refused => MapperError::Refused {
                reason: "injected by the test".into(),
            },
            Failure::Io => MapperError::Io(io::Error::from_raw_os_error(libc::EIO)),
            Failure::Timeout => MapperError::Timeout,
        }
    }
}

/// One mapping as the in-memory frontend sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveMapping {
    /// Where in the window it starts.
    pub window_offset: WindowOffset,
    /// How many bytes it covers.
    pub len: u64,
    /// Which file it maps (from `fstat` of the descriptor handed to `map`).
    pub file: FileIdentity,
    /// Where in the file it starts.
    pub file_offset: FileOffset,
    /// Whether the guest may write through it.
    pub writable: bool,
}

#[derive(Default)]
struct MemoryState {
    live: BTreeMap<u64, LiveMapping>,
    fail_map: Option<Failure>,
    fail_unmap: Option<Failure>,
    disconnected: bool,
    map_calls: u64,
    unmap_calls: u64,
    violations: Vec<String>,
    delay: Duration,
}

/// An in-memory frontend for tests, the benchmark and anyone who wants to watch the ledger.
///
/// It records every live mapping, refuses (and records as a *violation*) any call that
/// breaks the [`Mapper`] contract — a map over a mapped byte, an unmap that is not exactly
/// one earlier map, a range outside its window when it was given one — and can be told to
/// fail its next map or unmap, or to behave as a frontend that disconnected.
pub struct MemoryMapper {
    window_size: Option<u64>,
    state: Mutex<MemoryState>,
}

impl Default for MemoryMapper {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryMapper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryMapper")
            .field("window_size", &self.window_size)
            .field("live", &state.live.len())
            .field("disconnected", &state.disconnected)
            .finish()
    }
}

impl MemoryMapper {
    /// A frontend with an unbounded window.
    pub fn new() -> Self {
        MemoryMapper {
            window_size: None,
            state: Mutex::new(MemoryState::default()),
        }
    }

    /// A frontend whose window is `window_size` bytes; anything beyond it is a violation.
    pub fn with_window(window_size: u64) -> Self {
        MemoryMapper {
            window_size: Some(window_size),
            state: Mutex::new(MemoryState::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every live mapping, by window offset.
    pub fn live(&self) -> Vec<LiveMapping> {
        self.lock().live.values().cloned().collect()
    }

    /// The live mapping that covers window byte `offset`, if any.
    pub fn mapping_at(&self, offset: u64) -> Option<LiveMapping> {
        let state = self.lock();
        let (_, m) = state.live.range(..=offset).next_back()?;
        (offset < m.window_offset.raw().saturating_add(m.len)).then(|| m.clone())
    }

    /// Makes the next `map` call fail with `failure` (without mapping anything).
    pub fn fail_next_map(&self, failure: Failure) {
        self.lock().fail_map = Some(failure);
    }

    /// Makes the next `unmap` call fail with `failure` (without unmapping anything).
    pub fn fail_next_unmap(&self, failure: Failure) {
        self.lock().fail_unmap = Some(failure);
    }

    /// Behaves from now on as a frontend that went away: every mapping is gone and every
    /// later call answers [`MapperError::Disconnected`].
    pub fn disconnect(&self) {
        let mut state = self.lock();
        state.disconnected = true;
        state.live.clear();
    }

    /// Sleeps this long inside every call (outside its own lock), to widen race windows.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// How many times `map` was called (failed calls included).
    pub fn map_calls(&self) -> u64 {
        self.lock().map_calls
    }

    /// How many times `unmap` was called (failed calls included).
    pub fn unmap_calls(&self) -> u64 {
        self.lock().unmap_calls
    }

    /// Every contract breach seen so far, in words. Empty for a well-behaved caller.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    fn delay(&self) {
        let delay = self.lock().delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }

    fn refuse(state: &mut MemoryState, what: String) -> MapperError {
        state.violations.push(what.clone());
        MapperError::Refused { reason: what }
    }
}

impl Mapper for MemoryMapper {
    fn map(
        &self,
        window_offset: WindowOffset,
        len: u64,
        file: BorrowedFd<'_>,
        file_offset: FileOffset,
        writable: bool,
    ) -> Result<(), MapperError> {
        let (window_offset, file_offset) = (window_offset.raw(), file_offset.raw());
        self.delay();
        let identity = FileIdentity::of(file)?;
        let mut state = self.lock();
        state.map_calls += 1;
        if state.disconnected {
            return Err(MapperError::Disconnected);
        }
        if let Some(failure) = state.fail_map.take() {
            return Err(failure.error());
        }
        let Some(end) = window_offset.checked_add(len).filter(|_| len > 0) else {
            let what = format!("map of an empty or overflowing range {window_offset:#x}+{len:#x}");
            return Err(Self::refuse(&mut state, what));
        };
        if self.window_size.is_some_and(|w| end > w) {
            let what = format!("map of {window_offset:#x}+{len:#x} beyond the window");
            return Err(Self::refuse(&mut state, what));
        }
        let overlap = state
            .live
            .range(..end)
            .next_back()
            .filter(|(_, m)| m.window_offset.raw() + m.len > window_offset)
            .map(|(_, m)| (m.window_offset.raw(), m.len));
        if let Some((at, mlen)) = overlap {
            let what = format!(
                "map of {window_offset:#x}+{len:#x} over the live mapping {at:#x}+{mlen:#x}"
            );
            return Err(Self::refuse(&mut state, what));
        }
        state.live.insert(
            window_offset,
            LiveMapping {
                window_offset: WindowOffset(window_offset),
                len,
                file: identity,
                file_offset: FileOffset(file_offset),
                writable,
            },
        );
        Ok(())
    }

    fn unmap(&self, window_offset: u64, len: u64) -> Result<(), MapperError> {
        self.delay();
        let mut state = self.lock();
        state.unmap_calls += 1;
        if state.disconnected {
            return Err(MapperError::Disconnected);
        }
        if let Some(failure) = state.fail_unmap.take() {
            return Err(failure.error());
        }
        match state.live.get(&window_offset) {
            Some(m) if m.len == len => {
                state.live.remove(&window_offset);
                Ok(())
            }
            _ => {
                let what = format!("unmap of {window_offset:#x}+{len:#x}, not one earlier map");
                Err(Self::refuse(&mut state, what))
            }
        }
    }
}
