//! Per-opcode counters of one request queue: requests served, errors answered, and a
//! latency histogram from which percentiles are read. Lock-free (one queue thread and the
//! parking workers record; a stats reader takes a snapshot at any time).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use super::abi::opcode;

/// Opcodes counted one by one (FUSE's are below 64); anything above is counted as 0.
const OPCODES: usize = 64;
/// Latency buckets: bucket `i` holds latencies below 2^i µs; the last one the rest.
const BUCKETS: usize = 24;

/// FUSE opcode names, for counters people read.
pub fn opcode_name(op: u32) -> &'static str {
    use opcode::*;
    match op {
        LOOKUP => "lookup",
        FORGET => "forget",
        GETATTR => "getattr",
        SETATTR => "setattr",
        READLINK => "readlink",
        SYMLINK => "symlink",
        MKNOD => "mknod",
        MKDIR => "mkdir",
        UNLINK => "unlink",
        RMDIR => "rmdir",
        RENAME => "rename",
        LINK => "link",
        OPEN => "open",
        READ => "read",
        WRITE => "write",
        STATFS => "statfs",
        RELEASE => "release",
        FSYNC => "fsync",
        SETXATTR => "setxattr",
        GETXATTR => "getxattr",
        LISTXATTR => "listxattr",
        REMOVEXATTR => "removexattr",
        FLUSH => "flush",
        INIT => "init",
        OPENDIR => "opendir",
        READDIR => "readdir",
        RELEASEDIR => "releasedir",
        FSYNCDIR => "fsyncdir",
        GETLK => "getlk",
        SETLK => "setlk",
        SETLKW => "setlkw",
        ACCESS => "access",
        CREATE => "create",
        INTERRUPT => "interrupt",
        BMAP => "bmap",
        DESTROY => "destroy",
        IOCTL => "ioctl",
        POLL => "poll",
        NOTIFY_REPLY => "notify_reply",
        BATCH_FORGET => "batch_forget",
        FALLOCATE => "fallocate",
        READDIRPLUS => "readdirplus",
        RENAME2 => "rename2",
        LSEEK => "lseek",
        COPY_FILE_RANGE => "copy_file_range",
        SETUPMAPPING => "setupmapping",
        REMOVEMAPPING => "removemapping",
        SYNCFS => "syncfs",
        TMPFILE => "tmpfile",
        STATX => "statx",
        _ => "other",
    }
}

#[derive(Debug)]
struct OpCounters {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl OpCounters {
    fn new() -> Self {
        OpCounters {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The counters of one queue.
#[derive(Debug)]
pub struct QueueStats {
    ops: Vec<OpCounters>,
}

impl Default for QueueStats {
    fn default() -> Self {
        QueueStats {
            ops: (0..OPCODES).map(|_| OpCounters::new()).collect(),
        }
    }
}

/// One opcode's figures in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpSnapshot {
    /// The opcode's name (`lookup`, `read`, ...).
    pub op: &'static str,
    /// Requests answered (or, for FORGET, taken).
    pub requests: u64,
    /// Of those, answered with an error.
    pub errors: u64,
    /// Median service time, µs: the upper bound of the histogram bucket it falls in.
    pub p50_us: u64,
    /// 99th percentile, likewise.
    pub p99_us: u64,
}

impl QueueStats {
    /// Counts one request of `op` that took `elapsed` and failed if `error`.
    pub fn record(&self, op: u32, error: bool, elapsed: Duration) {
        let slot = usize::try_from(op)
            .ok()
            .filter(|&i| i < OPCODES && opcode_name(op) != "other")
            .unwrap_or(0);
        let c = &self.ops[slot];
        c.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Bucket i: below 2^i µs (bucket 0: under 1 µs).
        let bucket = usize::try_from(u64::BITS - us.leading_zeros()).unwrap_or(BUCKETS);
        c.latency[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Every opcode seen so far, in opcode order.
    pub fn snapshot(&self) -> Vec<OpSnapshot> {
        self.ops
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let requests = c.requests.load(Ordering::Relaxed);
                if requests == 0 {
                    return None;
                }
                let hist: Vec<u64> = c
                    .latency
                    .iter()
                    .map(|b| b.load(Ordering::Relaxed))
                    .collect();
                Some(OpSnapshot {
                    op: opcode_name(u32::try_from(i).unwrap_or(0)),
                    requests,
                    errors: c.errors.load(Ordering::Relaxed),
                    p50_us: percentile(&hist, 50),
                    p99_us: percentile(&hist, 99),
                })
            })
            .collect()
    }
}

/// The upper bound, in µs, of the bucket holding the `pct`th percentile of `hist`.
fn percentile(hist: &[u64], pct: u64) -> u64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0;
    }
    // The rank of the percentile, 1-based and rounded up.
    let rank = (total * pct).div_ceil(100).max(1);
    let mut seen = 0;
    for (i, &n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return 1u64 << i;
        }
    }
    1u64 << (hist.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_errors_and_percentiles_per_opcode() {
        let q = QueueStats::default();
        for _ in 0..98 {
            q.record(opcode::LOOKUP, false, Duration::from_micros(5));
        }
        q.record(opcode::LOOKUP, true, Duration::from_micros(900));
        q.record(opcode::LOOKUP, true, Duration::from_millis(3));
        q.record(opcode::READ, false, Duration::from_nanos(300));
        let s = q.snapshot();
        assert_eq!(s.len(), 2, "{s:?}");
        let lookup = &s[0];
        assert_eq!(
            (lookup.op, lookup.requests, lookup.errors),
            ("lookup", 100, 2)
        );
        assert_eq!(lookup.p50_us, 8, "5 µs lies in [4, 8)");
        assert_eq!(lookup.p99_us, 1024, "the 99th of 100 is the 900 µs one");
        assert_eq!((s[1].op, s[1].p50_us), ("read", 1));
    }

    #[test]
    fn unknown_opcodes_are_counted_as_other() {
        let q = QueueStats::default();
        q.record(4096, true, Duration::ZERO);
        q.record(53, true, Duration::ZERO);
        let s = q.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].op, s[0].requests, s[0].errors), ("other", 2, 2));
    }

    #[test]
    fn every_named_opcode_has_its_own_slot() {
        for op in 1..64u32 {
            let name = opcode_name(op);
            if name != "other" {
                let q = QueueStats::default();
                q.record(op, false, Duration::ZERO);
                assert_eq!(q.snapshot()[0].op, name);
            }
        }
    }
}
