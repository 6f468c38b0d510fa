//! The lock and condition variable of the chunk table: std's, or loom's under `cfg(loom)`
//! so that the loom model runs the ledger's real code.

#[cfg(loom)]
pub(super) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(super) use std::sync::{Condvar, Mutex, MutexGuard};
