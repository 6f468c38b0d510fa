//! `--thread-pool-size`: a slow request does not hold up the requests behind it on its
//! queue when a pool serves them, and does (the documented behaviour) without one.
//!
//! The slow request is an OPEN for writing of a file on which the test holds a read lease
//! (`F_SETLEASE`): the daemon's `open` waits in the kernel until the lease is given up. The
//! test sees the daemon inside that open (the lease turns to breaking), so every claim is
//! an ordering one: nothing here times anything.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use vhost_dax::frontend::{FuseQueue, Ticket};
use vhost_dax::fuse::abi::opcode;
use vhost_dax::fuse::testing::{Reply, encode_request};

use crate::common::WAIT;
use crate::support::*;

/// A read lease held by this process: a writer's open of the file waits until it goes.
struct Lease(File);

impl Lease {
    fn take(path: &Path) -> Lease {
        static IGNORE_SIGIO: Once = Once::new();
        IGNORE_SIGIO.call_once(|| {
            // The kernel tells a lease holder of a waiting opener with SIGIO, whose default
            // action ends the process; the test watches the lease instead.
            // SAFETY: sets the disposition of one signal to SIG_IGN; no handler runs.
            unsafe { libc::signal(libc::SIGIO, libc::SIG_IGN) };
        });
        let file = File::open(path).unwrap();
        // SAFETY: fcntl on a descriptor this function owns; no pointers are passed.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLEASE, libc::F_RDLCK) };
        assert_eq!(rc, 0, "F_SETLEASE: {}", std::io::Error::last_os_error());
        Lease(file)
    }

    /// Waits (bounded) until someone's open is waiting for the lease to go.
    fn wait_breaking(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            // SAFETY: fcntl on a descriptor `self` owns; no pointers are passed.
            let lease = unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_GETLEASE) };
            if lease == libc::F_UNLCK {
                return;
            }
            assert_eq!(lease, libc::F_RDLCK, "F_GETLEASE");
            assert!(
                Instant::now() < deadline,
                "the daemon never opened the file"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // SAFETY: fcntl on a descriptor `self` owns; no pointers are passed.
        unsafe { libc::fcntl(self.0.as_raw_fd(), libc::F_SETLEASE, libc::F_UNLCK) };
    }
}

/// Offers `opcode` on `node` with `body` on `queue`, not waiting for the reply.
fn submit(queue: &FuseQueue, unique: u64, opcode: u32, node: u64, body: &[u8]) -> Ticket {
    let request = encode_request(opcode, unique, node, 0, 0, body);
    queue.submit(&request, 4096).unwrap()
}

/// The reply to `ticket`, checked to answer `unique` without an error.
fn succeeded(queue: &FuseQueue, ticket: Ticket, unique: u64) -> Reply {
    let reply = Reply::parse(&queue.wait(ticket).unwrap());
    assert_eq!(reply.header.unique, unique);
    assert_eq!(reply.header.error, 0, "request {unique} failed");
    reply
}

/// A file with a read lease on it, an OPEN for writing of it waiting in the daemon on
/// request queue 1, and a GETATTR offered behind it on the same queue.
fn open_held_by_a_lease(f: &Fs) -> (Lease, Ticket, Ticket) {
    std::fs::write(f.host("leased"), b"data").unwrap();
    let node = f.c.lookup(ROOT, b"leased").unwrap().nodeid;
    let lease = Lease::take(&f.host("leased"));
    let queue = &f.c.transport;
    let open_in = abi::OpenIn {
        flags: WRONLY,
        open_flags: 0,
    };
    let open = submit(queue, 1 << 40, opcode::OPEN, node, &open_in.to_bytes());
    lease.wait_breaking();
    let getattr_in = abi::GetattrIn {
        getattr_flags: 0,
        dummy: 0,
        fh: 0,
    };
    let getattr = submit(
        queue,
        (1 << 40) + 1,
        opcode::GETATTR,
        ROOT,
        &getattr_in.to_bytes(),
    );
    (lease, open, getattr)
}

#[test]
fn with_a_pool_a_slow_request_does_not_hold_up_its_queue() {
    let f = start("pool-slow-open", &["--thread-pool-size", "4"]);
    let (lease, open, getattr) = open_held_by_a_lease(&f);
    let queue = &f.c.transport;
    // Answered while the OPEN is still held in the daemon by the lease.
    let attr = succeeded(queue, getattr, (1 << 40) + 1);
    assert_eq!(
        abi::AttrOut::get(&attr.body).attr.mode & S_IFMT,
        libc::S_IFDIR
    );
    assert!(
        !queue.is_done(&open).unwrap(),
        "OPEN answered under the lease"
    );
    drop(lease);
    let opened = succeeded(queue, open, 1 << 40);
    let fh = abi::OpenOut::get(&opened.body).fh;
    f.c.release(f.c.lookup(ROOT, b"leased").unwrap().nodeid, fh)
        .unwrap();
    // The queue goes on serving as before.
    assert!(f.c.getattr(ROOT, None).is_ok());
}

#[test]
fn without_a_pool_a_slow_request_holds_up_its_queue() {
    let f = start("pool-none-slow-open", &[]);
    let (lease, open, getattr) = open_held_by_a_lease(&f);
    let queue = &f.c.transport;
    // The queue's one thread is in the OPEN: nothing behind it is answered until the
    // lease goes (virtiofsd behaves the same with --thread-pool-size 0).
    assert!(!queue.is_done(&getattr).unwrap());
    assert!(!queue.is_done(&open).unwrap());
    drop(lease);
    succeeded(queue, open, 1 << 40);
    succeeded(queue, getattr, (1 << 40) + 1);
}

#[test]
fn a_pooled_reply_never_lands_in_a_stopped_ring() {
    let f = start("pool-stop-ring", &["--thread-pool-size", "2"]);
    let (lease, open, getattr) = open_held_by_a_lease(&f);
    let queue = &f.c.transport;
    succeeded(queue, getattr, (1 << 40) + 1);
    // The frontend takes the rings back (GET_VRING_BASE) while the OPEN is in a worker.
    f.frontend.lock().unwrap().stop_queues().unwrap();
    drop(lease);
    let deadline = Instant::now() + WAIT;
    while !f._daemon.log().contains("pooled reply dropped") {
        assert!(
            Instant::now() < deadline,
            "the OPEN's reply was not dropped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!queue.is_done(&open).unwrap());
}
