//! The ledger alone, in process: its own ceiling, without a daemon or a socket.

use std::sync::Arc;
use std::time::Instant;

use super::{BenchError, Scratch};
use crate::dax::{
    FileBacking, FileOffset, Ledger, LedgerConfig, LedgerError, MemoryMapper, PinWait, WindowOffset,
};

/// Map, pin, unpin, unmap of 2 MiB chunks against the in-memory mapper; four operations
/// per round.
pub(super) fn ops_per_s(scratch: &Scratch, rounds: usize) -> Result<f64, BenchError> {
    const CHUNK: u64 = 2 << 20;
    const CHUNKS: u64 = 64;
    let path = scratch.path("ledger.img");
    let file = std::fs::File::create(&path)?;
    file.set_len(CHUNK * CHUNKS)?;
    let backing = Arc::new(FileBacking::open(&path, true)?);
    let mapper = Arc::new(MemoryMapper::with_window(CHUNK * CHUNKS));
    let ledger = Ledger::new(LedgerConfig::new(CHUNK * CHUNKS), mapper)
        .map_err(|e| BenchError::Unexpected(e.to_string()))?;
    let fail = |e: LedgerError| BenchError::Unexpected(e.to_string());
    let started = Instant::now();
    for round in 0..rounds as u64 {
        let offset = (round % CHUNKS) * CHUNK;
        ledger
            .map(
                WindowOffset(offset),
                CHUNK,
                backing.clone(),
                FileOffset(offset),
                true,
            )
            .map_err(fail)?;
        let pin = ledger
            .pin(offset, 4096, "bench", PinWait::Fail)
            .map_err(fail)?;
        drop(pin);
        ledger.unmap(offset, CHUNK).map_err(fail)?;
    }
    Ok(rounds as f64 * 4.0 / started.elapsed().as_secs_f64())
}
