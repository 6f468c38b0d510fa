//! The request pool (`--thread-pool-size N`): N worker threads serve the requests the
//! request queues pop, so a slow request (an FSYNC, a READ of a FIFO or of a slow file)
//! holds up only its own worker, not every request behind it on its queue.
//!
//! The pool is bounded: at most `capacity` requests wait for a worker (the queue size).
//! A queue thread that finds it full waits for room, which holds the driver off the way a
//! full ring would. Unlike [`super::parking`], whose workers grow on demand so that a
//! request waiting on the ledger never waits behind another, this pool is fixed: it is
//! the operator's bound on the daemon's concurrency, as virtiofsd's is.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of worker threads and a bounded queue of requests for them.
pub struct Pool {
    shared: Arc<Shared>,
    workers: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when a job is queued or the pool closes.
    ready: Condvar,
    /// Signalled when a job leaves the queue.
    room: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct State {
    /// Jobs handed over and not yet taken by a worker.
    queued: VecDeque<Job>,
    /// Set when the pool is dropped: workers exit once the queue is empty.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A worker's life: take a job, run it outside the lock; exit when the pool is closed
    /// and nothing is left.
    fn serve(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.queued.pop_front() {
                drop(state);
                self.room.notify_one();
                if catch_unwind(AssertUnwindSafe(job)).is_err() {
                    log::error!("fs: a request panicked; its pool worker goes on serving");
                }
                state = self.lock();
            } else if state.closed {
                return;
            } else {
                state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}

impl Pool {
    /// Starts `workers` threads named `{name}-pool-{i}`, with room for `capacity` queued
    /// jobs (at least 1). `None` if no thread could be started (the caller serves
    /// requests itself); fewer threads than asked are logged and used.
    pub fn start(name: &str, workers: usize, capacity: usize) -> Option<Pool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            room: Condvar::new(),
            capacity: capacity.max(1),
        });
        let mut started = 0;
        for i in 0..workers {
            let worker = shared.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-pool-{i}"))
                .spawn(move || worker.serve());
            match spawned {
                Ok(_) => started += 1,
                Err(e) => {
                    log::error!("{name}: cannot start pool worker {i} of {workers}: {e}");
                    break;
                }
            }
        }
        let pool = Pool {
            shared,
            workers: started,
        };
        if started == 0 {
            return None;
        }
        if started < workers {
            log::warn!("{name}: serving with {started} pool worker(s) instead of {workers}");
        }
        Some(pool)
    }

    /// Worker threads running.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Hands `job` to a worker, first waiting for room if `capacity` jobs are queued.
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) {
        let mut state = self.shared.lock();
        while state.queued.len() >= self.shared.capacity {
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        state.queued.push_back(Box::new(job));
        drop(state);
        self.shared.ready.notify_one();
    }

    /// Jobs waiting for a worker.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.shared.lock().queued.len()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Bound on every wait: far past anything a free worker needs.
    const BOUND: Duration = Duration::from_secs(10);

    #[test]
    fn a_blocked_job_does_not_hold_up_the_next() {
        let pool = Pool::start("test", 2, 8).unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        let first = done_tx.clone();
        pool.submit(move || {
            release_rx.recv_timeout(BOUND * 2).unwrap();
            first.send(1).unwrap();
        });
        pool.submit(move || done_tx.send(2).unwrap());
        assert_eq!(done_rx.recv_timeout(BOUND), Ok(2));
        release_tx.send(()).unwrap();
        assert_eq!(done_rx.recv_timeout(BOUND), Ok(1));
    }

    #[test]
    fn a_full_queue_makes_the_submitter_wait_for_room() {
        let pool = Arc::new(Pool::start("test", 1, 2).unwrap());
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        pool.submit(move || {
            started_tx.send(()).unwrap();
            release_rx.recv_timeout(BOUND * 2).unwrap();
        });
        started_rx.recv_timeout(BOUND).unwrap();
        // The worker is busy: two jobs fill the queue.
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        for i in 0..2 {
            let done = done_tx.clone();
            pool.submit(move || done.send(i).unwrap());
        }
        assert_eq!(pool.queued(), 2);
        // A third submission waits until the worker takes one.
        let (submitted_tx, submitted_rx) = mpsc::channel::<()>();
        let submitter = {
            let pool = pool.clone();
            let done = done_tx.clone();
            std::thread::spawn(move || {
                pool.submit(move || done.send(2).unwrap());
                submitted_tx.send(()).unwrap();
            })
        };
        assert_eq!(
            submitted_rx.recv_timeout(Duration::from_millis(50)),
            Err(mpsc::RecvTimeoutError::Timeout),
            "a submission went past a full queue"
        );
        assert!(pool.queued() <= 2);
        release_tx.send(()).unwrap();
        submitted_rx.recv_timeout(BOUND).unwrap();
        submitter.join().unwrap();
        let mut got: Vec<u32> = (0..3)
            .map(|_| done_rx.recv_timeout(BOUND).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, [0, 1, 2]);
    }

    #[test]
    fn a_panicking_job_leaves_its_worker_serving() {
        let pool = Pool::start("test", 1, 4).unwrap();
        let (done_tx, done_rx) = mpsc::channel::<u32>();
        pool.submit(|| panic!("a pooled job panics (expected in this test)"));
        pool.submit(move || done_tx.send(7).unwrap());
        assert_eq!(done_rx.recv_timeout(BOUND), Ok(7));
        assert_eq!(pool.workers(), 1);
    }
}
