//! Parked requests: FUSE requests that may wait on the DAX ledger (a truncate waiting out
//! a pin, a REMOVEMAPPING waiting for a chunk to drain) are served on worker threads, so
//! the queue they came from keeps serving the requests behind them — including, through
//! the control socket or the queue itself, the ones that end the wait.
//!
//! Which requests park is the file system's call, made on the decoded request
//! (`Filesystem::may_wait`, asked through `Server::may_wait`).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Most worker threads; past that a parked request waits for a free worker (the queue
/// itself still never waits).
pub const MAX_WORKERS: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// A pool of worker threads that grows on demand up to [`MAX_WORKERS`].
///
/// Below that bound a parked job never waits behind another one: the pool keeps at least
/// as many idle workers (started or starting, and not running a job) as there are jobs
/// waiting, counting both under one lock.
pub struct Parking {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a job is queued or the pool closes.
    ready: Condvar,
}

#[derive(Default)]
struct State {
    /// Jobs parked and not yet taken by a worker.
    queued: VecDeque<Job>,
    /// Workers not running a job, including those started and not yet waiting.
    idle: usize,
    /// Workers started and not exited.
    workers: usize,
    /// Set when the pool is dropped: workers exit once the queue is empty.
    closed: bool,
}

impl Default for Parking {
    fn default() -> Self {
        Parking {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                ready: Condvar::new(),
            }),
        }
    }
}

impl Drop for Parking {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A worker's life: take a job, run it outside the lock, come back idle; exit when the
    /// pool is closed and nothing is left.
    fn serve(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queued.pop_front() {
                state.idle -= 1;
                drop(state);
                if catch_unwind(AssertUnwindSafe(job)).is_err() {
                    log::error!("fs: a parked request panicked; its worker goes on serving");
                }
                state = self.lock();
                state.idle += 1;
            } else if state.closed {
                state.idle -= 1;
                state.workers -= 1;
                return;
            } else {
                state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

impl Parking {
    /// Runs `job` on a worker. If no worker can be started, runs it here.
    pub fn park(&self, job: impl FnOnce() + Send + 'static) {
        let mut state = self.shared.lock();
        state.queued.push_back(Box::new(job));
        if state.queued.len() > state.idle {
            if state.workers >= MAX_WORKERS {
                log::debug!("fs: all {MAX_WORKERS} workers busy; a parked request waits");
            } else if !self.spawn_worker(&mut state) && state.workers == 0 {
                // No worker will ever take it: it is the job we just queued.
                let job = state.queued.pop_back();
                drop(state);
                log::warn!("fs: no worker for a parked request; serving it on the queue thread");
                if let Some(job) = job {
                    job();
                }
                return;
            }
        }
        drop(state);
        self.shared.ready.notify_one();
    }

    /// (idle, started) workers.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.idle, state.workers)
    }

    /// Starts one more worker, counted idle at once (under the caller's lock) so that the
    /// next `park` sees it; false if the thread could not be started.
    fn spawn_worker(&self, state: &mut State) -> bool {
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fs-parked-{}", state.workers))
            .spawn(move || shared.serve());
        match spawned {
            Ok(_) => {
                state.workers += 1;
                state.idle += 1;
                true
            }
            Err(e) => {
                log::error!("fs: cannot start a worker thread: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn parked_jobs_run_while_the_caller_goes_on() {
        let parking = Parking::default();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        let first = done_tx.clone();
        parking.park(move || {
            release_rx.recv().unwrap();
            first.send(1).unwrap();
        });
        // The first job is blocked; a second one still runs.
        parking.park(move || done_tx.send(2).unwrap());
        assert_eq!(done_rx.recv().unwrap(), 2);
        release_tx.send(()).unwrap();
        assert_eq!(done_rx.recv().unwrap(), 1);
    }

    /// Bound on every wait: far past anything a free worker needs, so reaching it means a
    /// job sat behind the blocked one.
    const BOUND: Duration = Duration::from_secs(10);

    #[test]
    fn jobs_parked_in_a_burst_never_queue_behind_a_blocked_one() {
        const FOLLOWERS: usize = 8;
        for round in 0..200 {
            let parking = Parking::default();
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let (done_tx, done_rx) = mpsc::channel::<usize>();
            let blocked = done_tx.clone();
            parking.park(move || {
                // Released at the end of the round (or when the test gives up).
                let _ = release_rx.recv_timeout(BOUND * 2);
                let _ = blocked.send(usize::MAX);
            });
            // At once, before the first job's worker has even taken it.
            for i in 0..FOLLOWERS {
                let done = done_tx.clone();
                parking.park(move || done.send(i).unwrap());
            }
            let mut seen = [false; FOLLOWERS];
            for _ in 0..FOLLOWERS {
                match done_rx.recv_timeout(BOUND) {
                    Ok(i) if i < FOLLOWERS => seen[i] = true,
                    Ok(_) => panic!("round {round}: the blocked job finished first"),
                    Err(e) => panic!(
                        "round {round}: a job queued behind the blocked one ({e}); \
                         done: {seen:?}"
                    ),
                }
            }
            release_tx.send(()).unwrap();
            assert_eq!(done_rx.recv_timeout(BOUND), Ok(usize::MAX));
        }
    }

    #[test]
    fn a_panicking_job_leaves_its_worker_serving() {
        let parking = Parking::default();
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        parking.park(|| panic!("a parked job panics (expected in this test)"));
        for i in 0..4 {
            let done = done_tx.clone();
            parking.park(move || done.send(i).unwrap());
        }
        let mut got: Vec<u32> = (0..4)
            .map(|_| done_rx.recv_timeout(BOUND).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, [0, 1, 2, 3]);
        // Every worker is back and idle: a panic did not take one away or skew the counts.
        let deadline = std::time::Instant::now() + BOUND;
        loop {
            let (idle, workers) = parking.counts();
            if idle == workers {
                assert!(workers >= 1);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "idle {idle} of {workers}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
