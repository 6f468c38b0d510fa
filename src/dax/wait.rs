//! Bounded waits on the chunk table's condition variable.
//!
//! An operation that finds its chunks pinned or owned by another operation parks here:
//! the lock is released while it sleeps, and every change that could let it proceed (an
//! unpin, the end of a drain) wakes all parked operations to look again. Each operation
//! has one budget for all its waits. When it runs out, the operation logs what it was stuck
//! on — chunks, their pin counts, who holds the pins — and fails with a timeout.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::error::{LedgerError, Op, Stuck};
use super::state::Inner;
use super::sync::MutexGuard;
use super::table::{Blocked, Table};

/// The longest single sleep when the budget is too large to add to `Instant::now()`.
const LONGEST_SLEEP: Duration = Duration::from_secs(24 * 3600);

pub(super) struct Waiter<'a> {
    inner: &'a Inner,
    op: Op,
    start: Instant,
    deadline: Option<Instant>,
    parked: bool,
    /// Fail with [`LedgerError::WouldWait`] instead of waiting at all.
    never: bool,
}

impl<'a> Waiter<'a> {
    pub(super) fn new(inner: &'a Inner, op: Op) -> Self {
        let start = Instant::now();
        Waiter {
            inner,
            op,
            start,
            deadline: start.checked_add(inner.config.wait_budget),
            parked: false,
            never: false,
        }
    }

    /// A waiter for an operation that must not wait: its first `park` fails with
    /// [`LedgerError::WouldWait`] (not counted, not logged: it is no timeout).
    pub(super) fn never(inner: &'a Inner, op: Op) -> Self {
        Waiter {
            never: true,
            ..Waiter::new(inner, op)
        }
    }

    /// Sleeps until something changes or the budget runs out. On `Ok` the caller looks at
    /// the table again; on `Err` the lock has been released and the caller must undo any
    /// drain it made.
    pub(super) fn park<'g>(
        &mut self,
        table: MutexGuard<'g, Table>,
        blocked: &Blocked,
    ) -> Result<MutexGuard<'g, Table>, LedgerError> {
        if self.never {
            drop(table);
            return Err(LedgerError::WouldWait { op: self.op });
        }
        let ends_at_shutdown = matches!(
            self.op,
            Op::Map | Op::Unmap | Op::Pin | Op::ReleaseFileRange
        );
        if ends_at_shutdown && self.inner.stopping.load(Ordering::SeqCst) {
            drop(table);
            return Err(LedgerError::Stopping { op: self.op });
        }
        let now = Instant::now();
        let remaining = match self.deadline {
            Some(deadline) => deadline.saturating_duration_since(now),
            None => LONGEST_SLEEP,
        };
        if remaining.is_zero() {
            let stuck = table.stuck(blocked, now);
            drop(table);
            return Err(self.time_out(stuck, now));
        }
        let stats = &self.inner.stats;
        if !self.parked {
            self.parked = true;
            stats.waits.fetch_add(1, Ordering::Relaxed);
        }
        let (table, _) = self
            .inner
            .cond
            .wait_timeout(table, remaining)
            .unwrap_or_else(PoisonError::into_inner);
        let slept = u64::try_from(now.elapsed().as_nanos()).unwrap_or(u64::MAX);
        stats.wait_nanos.fetch_add(slept, Ordering::Relaxed);
        Ok(table)
    }

    /// Counts and logs a wait that ran out (the lock is no longer held).
    fn time_out(&self, stuck: Vec<Stuck>, now: Instant) -> LedgerError {
        let waited = now.saturating_duration_since(self.start);
        self.inner.stats.timeouts.fetch_add(1, Ordering::Relaxed);
        log::warn!(
            "dax ledger: {} gave up after {waited:?} (budget {:?})",
            self.op,
            self.inner.config.wait_budget
        );
        for s in &stuck {
            log::warn!("dax ledger: {} still blocked by {s}", self.op);
        }
        LedgerError::Timeout {
            op: self.op,
            waited,
            stuck,
        }
    }
}
