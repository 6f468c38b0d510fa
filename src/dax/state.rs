//! The shared state behind a [`Ledger`](super::Ledger) and its guards: the chunk table
//! under its lock, the condition variable every wait parks on, the mapper and the
//! counters. Its own module so that the ledger and the guards both use it and neither
//! imports the other.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use super::config::LedgerConfig;
use super::info::Counters;
use super::mapper::Mapper;
use super::sync::{Condvar, Mutex, MutexGuard};
use super::table::{DrainId, PinId, Table};

/// The shared state behind a [`Ledger`] and its guards.
pub(super) struct Inner {
    pub(super) config: LedgerConfig,
    pub(super) mapper: Arc<dyn Mapper>,
    pub(super) table: Mutex<Table>,
    pub(super) cond: Condvar,
    pub(super) stats: Counters,
    /// Set by [`Ledger::stop_waiting`](super::Ledger::stop_waiting): the waits of the
    /// guest's and the VMM's operations end (the device is shutting down).
    pub(super) stopping: std::sync::atomic::AtomicBool,
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops a pin and wakes whoever waits for its chunks.
    pub(super) fn unpin(&self, id: PinId) {
        self.lock().unregister_pin(id);
        self.cond.notify_all();
    }

    /// Ends a drain and wakes whoever waits for its chunks.
    pub(super) fn reopen(&self, drain: DrainId) {
        self.lock().reopen(drain);
        self.cond.notify_all();
    }

    pub(super) fn bump(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let table = self.table.get_mut().unwrap_or_else(PoisonError::into_inner);
        if !table.mappings.is_empty() {
            log::warn!(
                "dax ledger dropped with {} live mapping(s) never released; \
                 their references are dropped, the frontend was not told",
                table.mappings.len()
            );
        }
    }
}
