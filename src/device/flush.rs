//! Group commit for pmem FLUSH requests.
//!
//! Requests are queued from the queue thread, which never blocks on a sync. One syncer
//! thread takes *every* request queued so far, runs one sync, and completes them all: a
//! sync that started after a request arrived completes that request and every other request
//! that arrived before the sync started. A request that arrives while a sync is running
//! waits for the next one, because the running sync may have started before its data was
//! written.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// Completes one request with the sync's outcome (`Err(errno)` on failure).
pub type Completion = Box<dyn FnOnce(Result<(), i32>) + Send>;

/// The durable sync the syncer runs.
pub type SyncFn = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

/// Watches syncs begin and end; used by tests to prove ordering without timing.
pub trait SyncObserver: Send + Sync {
    /// Called on the syncer thread right before sync number `seq` (1-based) starts, with
    /// the number of requests it will complete. May block to hold the sync back.
    fn before_sync(&self, seq: u64, requests: usize);
    /// Called after sync `seq` finished and before any of its requests is completed.
    fn after_sync(&self, seq: u64, result: &Result<(), i32>);
}

/// Request and sync counts of a [`GroupCommit`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlushStats {
    /// Flush requests submitted.
    pub requests: u64,
    /// Syncs run for them.
    pub syncs: u64,
    /// Syncs that failed.
    pub failures: u64,
}

#[derive(Default)]
struct State {
    pending: VecDeque<Completion>,
    syncing: bool,
    stop: bool,
    stats: FlushStats,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    sync: SyncFn,
    observer: Option<Arc<dyn SyncObserver>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock would be a bug in this module; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A syncer thread that coalesces concurrent flushes.
pub struct GroupCommit {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the syncer thread.
    pub fn new(
        name: &str,
        sync: SyncFn,
        observer: Option<Arc<dyn SyncObserver>>,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            sync,
            observer,
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run_syncer(&worker))?;
        Ok(GroupCommit {
            shared,
            thread: Some(thread),
        })
    }

    /// Queues one request; `done` runs on the syncer thread after the covering sync.
    pub fn submit(&self, done: Completion) {
        let mut state = self.shared.lock();
        state.stats.requests += 1;
        state.pending.push_back(done);
        self.shared.cond.notify_all();
    }

    /// Waits until every request submitted so far has been completed.
    pub fn drain(&self) {
        let mut state = self.shared.lock();
        while !state.pending.is_empty() || state.syncing {
            state = self
                .shared
                .cond
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Runs one sync now on the caller's thread, after in-flight requests are done.
    pub fn sync_now(&self) -> io::Result<()> {
        self.drain();
        (self.shared.sync)()
    }

    /// Counters so far.
    pub fn stats(&self) -> FlushStats {
        self.shared.lock().stats
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.cond.notify_all();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            log::error!("pmem syncer thread panicked");
        }
    }
}

fn run_syncer(shared: &Shared) {
    let mut seq = 0u64;
    loop {
        let batch: Vec<Completion> = {
            let mut state = shared.lock();
            while state.pending.is_empty() && !state.stop {
                state = shared.cond.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.pending.is_empty() {
                return;
            }
            state.syncing = true;
            state.pending.drain(..).collect()
        };
        seq += 1;
        if let Some(observer) = &shared.observer {
            observer.before_sync(seq, batch.len());
        }
        let result = (shared.sync)().map_err(|e| {
            log::error!("pmem sync failed: {e}");
            e.raw_os_error().unwrap_or(libc::EIO)
        });
        if let Some(observer) = &shared.observer {
            observer.after_sync(seq, &result);
        }
        for done in batch {
            done(result);
        }
        let mut state = shared.lock();
        state.syncing = false;
        state.stats.syncs += 1;
        if result.is_err() {
            state.stats.failures += 1;
        }
        shared.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;

    /// Holds each sync until the test lets it go, and reports what it saw.
    struct Gate {
        started: Mutex<mpsc::Sender<(u64, usize)>>,
        release: Mutex<mpsc::Receiver<()>>,
    }

    impl SyncObserver for Gate {
        fn before_sync(&self, seq: u64, requests: usize) {
            self.started.lock().unwrap().send((seq, requests)).unwrap();
            self.release.lock().unwrap().recv().unwrap();
        }
        fn after_sync(&self, _seq: u64, _result: &Result<(), i32>) {}
    }

    #[test]
    fn requests_arriving_during_a_sync_wait_for_the_next_one() {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel();
        let gate = Arc::new(Gate {
            started: Mutex::new(started_tx),
            release: Mutex::new(release_rx),
        });
        let synced = Arc::new(AtomicU64::new(0));
        let counter = synced.clone();
        let commit = GroupCommit::new(
            "test-sync",
            Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
            Some(gate),
        )
        .unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let submit = |id: u32| {
            let tx = done_tx.clone();
            commit.submit(Box::new(move |r| tx.send((id, r)).unwrap()));
        };
        submit(0);
        assert_eq!(started_rx.recv().unwrap(), (1, 1));
        for id in 1..64 {
            submit(id);
        }
        // Sync 1 is held at the gate: nothing may have completed.
        assert!(done_rx.try_recv().is_err());
        release_tx.send(()).unwrap();
        assert_eq!(done_rx.recv().unwrap(), (0, Ok(())));
        assert_eq!(started_rx.recv().unwrap(), (2, 63));
        assert!(done_rx.try_recv().is_err());
        release_tx.send(()).unwrap();
        let mut rest: Vec<u32> = (0..63).map(|_| done_rx.recv().unwrap().0).collect();
        rest.sort_unstable();
        assert_eq!(rest, (1..64).collect::<Vec<_>>());
        commit.drain();
        assert_eq!(synced.load(Ordering::SeqCst), 2);
        assert_eq!(
            commit.stats(),
            FlushStats {
                requests: 64,
                syncs: 2,
                failures: 0
            }
        );
    }

    #[test]
    fn a_failed_sync_fails_every_request_it_covers() {
        let commit = GroupCommit::new(
            "test-sync",
            Box::new(|| Err(io::Error::from_raw_os_error(libc::EIO))),
            None,
        )
        .unwrap();
        let (tx, rx) = mpsc::channel();
        commit.submit(Box::new(move |r| tx.send(r).unwrap()));
        assert_eq!(rx.recv().unwrap(), Err(libc::EIO));
        commit.drain();
        assert_eq!(commit.stats().failures, 1);
    }
}
