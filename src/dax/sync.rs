//! The lock and condition variable of the chunk table: std's, or loom's when the tests are
//! built with `--cfg loom`, so that the loom model runs the ledger's real code. (loom is a
//! dev-dependency: a non-test build under `--cfg loom` keeps std's.)

#[cfg(all(loom, test))]
pub(super) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(all(loom, test)))]
pub(super) use std::sync::{Condvar, Mutex, MutexGuard};
