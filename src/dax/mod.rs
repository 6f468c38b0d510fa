//! The DAX ledger (docs to come).

mod backing;
mod config;
mod error;
mod guard;
mod info;
mod ledger;
mod mapper;
mod sync;
mod table;
mod wait;

pub use backing::{Backing, BackingId, FileBacking, FileIdentity};
pub use config::{
    DEFAULT_CHUNK_SIZE, DEFAULT_WAIT_BUDGET, LedgerConfig, MAX_CHUNKS, MIN_CHUNK_SIZE, PAGE_SIZE,
};
pub use error::{Field, LedgerError, MapperCall, Op, PinHolder, Stuck};
pub use guard::{FileRangeGuard, PinGuard, PinId};
pub use info::{LedgerStats, MappingInfo, PinInfo};
pub use ledger::{Ledger, MapOutcome, PinWait, UnmapOutcome};
pub use mapper::{Failure, LiveMapping, Mapper, MapperError, MemoryMapper};

#[cfg(test)]
mod tests;
