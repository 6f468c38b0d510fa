//! What can go wrong in the ledger, with the numbers involved.

use std::fmt;
use std::io;
use std::time::Duration;

use serde::Serialize;

use super::backing::BackingId;
use super::mapper::MapperError;
use super::table::PinId;

/// A ledger operation, as named in errors, logs and the chunk table dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Op {
    /// [`Ledger::map`](super::Ledger::map) (a first map or a remap).
    Map,
    /// [`Ledger::unmap`](super::Ledger::unmap).
    Unmap,
    /// [`Ledger::pin`](super::Ledger::pin).
    Pin,
    /// [`Ledger::release_file_range`](super::Ledger::release_file_range).
    ReleaseFileRange,
    /// [`Ledger::release_backing`](super::Ledger::release_backing).
    ReleaseBacking,
    /// [`Ledger::reset`](super::Ledger::reset).
    Reset,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Map => "map",
            Op::Unmap => "unmap",
            Op::Pin => "pin",
            Op::ReleaseFileRange => "release_file_range",
            Op::ReleaseBacking => "release_backing",
            Op::Reset => "reset",
        })
    }
}

/// Which number of a request broke a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Field {
    /// The offset in the window.
    WindowOffset,
    /// The length.
    Length,
    /// The offset in the backing file.
    FileOffset,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::WindowOffset => "window offset",
            Field::Length => "length",
            Field::FileOffset => "file offset",
        })
    }
}

/// Which [`Mapper`](super::Mapper) call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MapperCall {
    /// `Mapper::map`.
    Map,
    /// `Mapper::unmap`.
    Unmap,
}

impl fmt::Display for MapperCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MapperCall::Map => "map",
            MapperCall::Unmap => "unmap",
        })
    }
}

/// Who holds a pin, for the log of a wait that ran out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PinHolder {
    /// The pin.
    pub pin: PinId,
    /// Who took it (the `holder` given to [`Ledger::pin`](super::Ledger::pin)).
    pub holder: String,
    /// How long it had been held when the wait ran out.
    pub held_for: Duration,
}

/// What a wait that ran out was still waiting for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Stuck {
    /// A chunk still pinned, or still owned by another operation.
    Chunk {
        /// Window offset of the chunk.
        window_offset: u64,
        /// Pins on it.
        pins: u32,
        /// Who holds them.
        holders: Vec<PinHolder>,
        /// The operation that has it draining or in transition, if any.
        draining_for: Option<Op>,
    },
    /// A file range of a backing held by a [`FileRangeGuard`](super::FileRangeGuard).
    FileRange {
        /// The backing.
        backing: BackingId,
        /// First byte of the range.
        from: u64,
        /// End of the range (exclusive), or `None` for "to the end of the file and beyond".
        end: Option<u64>,
    },
}

impl fmt::Display for Stuck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stuck::Chunk {
                window_offset,
                pins,
                holders,
                draining_for,
            } => {
                write!(f, "chunk {window_offset:#x}: {pins} pin(s)")?;
                for h in holders {
                    write!(f, " [{} by {:?} for {:?}]", h.pin, h.holder, h.held_for)?;
                }
                if let Some(op) = draining_for {
                    write!(f, ", draining for {op}")?;
                }
                Ok(())
            }
            Stuck::FileRange { backing, from, end } => match end {
                Some(end) => write!(f, "file range {from:#x}..{end:#x} of backing {backing}"),
                None => write!(f, "file range {from:#x}.. of backing {backing}"),
            },
        }
    }
}

fn list(stuck: &[Stuck]) -> String {
    let items: Vec<String> = stuck.iter().map(Stuck::to_string).collect();
    items.join("; ")
}

/// Why a ledger operation failed. Nothing changed unless the variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The configured chunk size is not a power of two of at least `min`.
    #[error("chunk size {chunk_size:#x} is not a power of two of at least {min:#x}")]
    BadChunkSize {
        /// The chunk size asked for.
        chunk_size: u64,
        /// The smallest allowed.
        min: u64,
    },
    /// The configured window is empty or not a whole number of chunks.
    #[error(
        "window size {window_size:#x} is not a non-zero multiple of the chunk size {chunk_size:#x}"
    )]
    BadWindowSize {
        /// The window size asked for.
        window_size: u64,
        /// The chunk size.
        chunk_size: u64,
    },
    /// The window has more chunks than the table allows.
    #[error("a window of {chunks} chunks exceeds the limit of {max}")]
    TooManyChunks {
        /// Chunks the configuration asks for.
        chunks: u64,
        /// The limit.
        max: u64,
    },
    /// A number is not aligned as it must be.
    #[error("{what} {value:#x} is not a multiple of {align:#x}")]
    Misaligned {
        /// Which number.
        what: Field,
        /// Its value.
        value: u64,
        /// The alignment it must have.
        align: u64,
    },
    /// A range of length zero.
    #[error("empty range at window offset {offset:#x}")]
    EmptyRange {
        /// Where it starts.
        offset: u64,
    },
    /// `offset + len` does not fit in 64 bits.
    #[error("{what} {offset:#x} + length {len:#x} overflows")]
    Overflow {
        /// Which offset.
        what: Field,
        /// The offset.
        offset: u64,
        /// The length.
        len: u64,
    },
    /// The range does not lie inside the window.
    #[error("range {offset:#x}+{len:#x} lies outside the window of {window:#x} bytes")]
    OutOfWindow {
        /// Start of the range.
        offset: u64,
        /// Its length.
        len: u64,
        /// Size of the window.
        window: u64,
    },
    /// A writable mapping of a backing that does not allow writes.
    #[error("backing {backing} is read-only; a writable mapping was asked for")]
    ReadOnlyBacking {
        /// The backing.
        backing: BackingId,
    },
    /// An unmap range that cuts through a mapping (mappings are released whole).
    #[error("range {offset:#x}+{len:#x} cuts the mapping at {mapping_offset:#x}+{mapping_len:#x}")]
    PartialMapping {
        /// Start of the unmap range.
        offset: u64,
        /// Its length.
        len: u64,
        /// Start of the mapping it cuts.
        mapping_offset: u64,
        /// Length of that mapping.
        mapping_len: u64,
    },
    /// A resize of a mapped file that its mapping in the frontend could not follow.
    #[error(
        "backing {backing} cannot become {new_size} bytes long: its mapping at \
         {window_offset:#x} would leave the guest a partial last page the frontend \
         cannot map"
    )]
    Unfollowable {
        /// The file's backing.
        backing: BackingId,
        /// The size asked for.
        new_size: u64,
        /// The live mapping that could not follow.
        window_offset: u64,
    },
    /// A pin on a chunk that is not mapped.
    #[error("window offset {offset:#x} is not mapped")]
    NotMapped {
        /// Window offset of the chunk.
        offset: u64,
    },
    /// A pin refused (with [`PinWait::Fail`](super::PinWait::Fail)) on a chunk that is
    /// draining or in transition.
    #[error("window offset {offset:#x} is draining for {op}")]
    Draining {
        /// Window offset of the chunk.
        offset: u64,
        /// The operation it drains for.
        op: Op,
    },
    /// A pin whose file bytes would lie beyond the backing's end of file.
    #[error(
        "pin would reach byte {file_end:#x} of backing {backing}, beyond its end of file at {eof:#x}"
    )]
    BeyondEof {
        /// The backing.
        backing: BackingId,
        /// End (exclusive) of the pinned file bytes.
        file_end: u64,
        /// The backing's size.
        eof: u64,
    },
    /// The backing could not tell its size, so no pin was granted.
    #[error("could not read the size of backing {backing}")]
    BackingSize {
        /// The backing.
        backing: BackingId,
        /// What `Backing::size` said.
        #[source]
        source: io::Error,
    },
    /// A bounded wait ran out: nothing was unmapped, nothing released.
    #[error("{op} gave up after {waited:?}; stuck: {}", list(.stuck))]
    Timeout {
        /// The operation that waited.
        op: Op,
        /// How long it waited in all.
        waited: Duration,
        /// What it was still waiting for.
        stuck: Vec<Stuck>,
    },
    /// The operation was asked not to wait ([`Ledger::try_map`](super::Ledger::try_map),
    /// [`Ledger::try_unmap`](super::Ledger::try_unmap)) and would have had to: nothing
    /// changed. The caller does it again where it may wait.
    #[error("{op} would have to wait")]
    WouldWait {
        /// The operation.
        op: Op,
    },
    /// The device is shutting down ([`Ledger::stop_waiting`](super::Ledger::stop_waiting))
    /// and the operation would have had to wait: nothing changed.
    #[error("{op} refused: the device is shutting down")]
    Stopping {
        /// The operation.
        op: Op,
    },
    /// The frontend failed a map or an unmap. A failed map leaves its chunks free; a failed
    /// unmap leaves that mapping (and its references) in place.
    #[error("the frontend failed to {call} {window_offset:#x}+{len:#x}")]
    Mapper {
        /// Which call.
        call: MapperCall,
        /// Its window offset.
        window_offset: u64,
        /// Its length.
        len: u64,
        /// Why.
        #[source]
        source: MapperError,
    },
}

impl LedgerError {
    /// The errno a device reports for this error.
    pub fn errno(&self) -> i32 {
        match self {
            LedgerError::BadChunkSize { .. }
            | LedgerError::BadWindowSize { .. }
            | LedgerError::TooManyChunks { .. }
            | LedgerError::Misaligned { .. }
            | LedgerError::EmptyRange { .. }
            | LedgerError::Overflow { .. }
            | LedgerError::OutOfWindow { .. }
            | LedgerError::PartialMapping { .. } => libc::EINVAL,
            LedgerError::ReadOnlyBacking { .. } => libc::EACCES,
            LedgerError::Unfollowable { .. } => libc::EIO,
            LedgerError::NotMapped { .. } | LedgerError::BeyondEof { .. } => libc::EFAULT,
            LedgerError::Draining { .. } | LedgerError::Timeout { .. } => libc::EBUSY,
            LedgerError::WouldWait { .. } => libc::EAGAIN,
            LedgerError::Stopping { .. } => libc::EBUSY,
            LedgerError::BackingSize { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            LedgerError::Mapper { source, .. } => source.errno(),
        }
    }
}
