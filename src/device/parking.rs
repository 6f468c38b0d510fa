//! Parked requests: FUSE requests that may wait on the DAX ledger (a truncate waiting out
//! a pin, a REMOVEMAPPING waiting for a chunk to drain) are served on worker threads, so
//! the queue they came from keeps serving the requests behind them — including, through
//! the control socket or the queue itself, the ones that end the wait.
//!
//! Which requests park is decided by peeking at the request bytes: the opcode, and for
//! SETATTR, OPEN, CREATE and FALLOCATE whether they would cut file bytes at all.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use crate::fuse::abi::{InHeader, Wire, fattr, opcode as op};

/// Most worker threads; past that a parked request waits for a free worker (the queue
/// itself still never waits).
pub const MAX_WORKERS: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// A pool of worker threads that grows on demand up to [`MAX_WORKERS`].
pub struct Parking {
    tx: Mutex<mpsc::Sender<Job>>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    idle: Arc<AtomicUsize>,
    workers: AtomicUsize,
}

impl Default for Parking {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Parking {
            tx: Mutex::new(tx),
            rx: Arc::new(Mutex::new(rx)),
            idle: Arc::new(AtomicUsize::new(0)),
            workers: AtomicUsize::new(0),
        }
    }
}

impl Parking {
    /// Runs `job` on a worker. If no worker can be started, runs it here.
    pub fn park(&self, job: impl FnOnce() + Send + 'static) {
        if self.idle.load(Ordering::SeqCst) == 0 && !self.spawn_worker() {
            log::warn!("fs: no worker for a parked request; serving it on the queue thread");
            job();
            return;
        }
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Box::new(job));
        if let Err(mpsc::SendError(job)) = sent {
            job();
        }
    }

    /// Starts one more worker unless the pool is full; false if none could be started and
    /// none exists.
    fn spawn_worker(&self) -> bool {
        let n = self.workers.fetch_add(1, Ordering::SeqCst);
        if n >= MAX_WORKERS {
            self.workers.fetch_sub(1, Ordering::SeqCst);
            return true;
        }
        let rx = self.rx.clone();
        let idle = self.idle.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("fs-parked-{n}"))
            .spawn(move || {
                loop {
                    idle.fetch_add(1, Ordering::SeqCst);
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    idle.fetch_sub(1, Ordering::SeqCst);
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                }
            });
        match spawned {
            Ok(_) => true,
            Err(e) => {
                log::error!("fs: cannot start a worker thread: {e}");
                self.workers.fetch_sub(1, Ordering::SeqCst) > 1
            }
        }
    }
}

/// Whether the request in `bytes` may wait on the ledger: DESTROY, SETUPMAPPING (a remap
/// drains the old mapping), REMOVEMAPPING, and the requests that cut or replace file bytes
/// — SETATTR of the size, OPEN and CREATE with O_TRUNC, FALLOCATE that punches, zeroes,
/// collapses or inserts, COPY_FILE_RANGE. Requests too short to say never park (they are
/// refused at once).
pub fn may_wait(bytes: &[u8]) -> bool {
    let Some(header) = InHeader::read(bytes) else {
        return false;
    };
    let body = &bytes[InHeader::SIZE..];
    let word = |at: usize| -> Option<u32> {
        body.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match header.opcode {
        op::DESTROY | op::SETUPMAPPING | op::REMOVEMAPPING | op::COPY_FILE_RANGE => true,
        op::SETATTR => word(0).is_some_and(|valid| valid & fattr::SIZE != 0),
        op::OPEN | op::CREATE => word(0).is_some_and(|flags| flags & libc::O_TRUNC as u32 != 0),
        op::FALLOCATE => word(24).is_some_and(|mode| {
            let cutting = libc::FALLOC_FL_PUNCH_HOLE
                | libc::FALLOC_FL_ZERO_RANGE
                | libc::FALLOC_FL_COLLAPSE_RANGE
                | libc::FALLOC_FL_INSERT_RANGE;
            mode & cutting as u32 != 0
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuse::testing::encode_request;

    #[test]
    fn only_requests_that_may_wait_on_the_ledger_park() {
        let req = |opcode, body: &[u8]| encode_request(opcode, 1, 2, 0, 0, body);
        let mut setattr = vec![0u8; 88];
        assert!(!may_wait(&req(op::SETATTR, &setattr)));
        setattr[0] = fattr::SIZE as u8;
        assert!(may_wait(&req(op::SETATTR, &setattr)));
        let trunc = (libc::O_RDWR | libc::O_TRUNC) as u32;
        assert!(may_wait(&req(
            op::OPEN,
            &[&trunc.to_le_bytes()[..], &[0; 4]].concat()
        )));
        assert!(!may_wait(&req(op::OPEN, &[0u8; 8])));
        let mut falloc = vec![0u8; 32];
        assert!(!may_wait(&req(op::FALLOCATE, &falloc)));
        falloc[24] = libc::FALLOC_FL_PUNCH_HOLE as u8;
        assert!(may_wait(&req(op::FALLOCATE, &falloc)));
        assert!(may_wait(&req(op::REMOVEMAPPING, &[0u8; 4])));
        assert!(!may_wait(&req(op::GETATTR, &[0u8; 16])));
        assert!(!may_wait(&[0u8; 10]), "a short header never parks");
    }

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
}
