//! pmem: FLUSH round trips at queue depth 1 and 64 against the `pmem` daemon.

use std::path::Path;
use std::time::Instant;

use super::{BenchError, Samples, Scratch, WAIT, path_str, percentiles};
use crate::frontend::{Buffer, DaemonProcess, Frontend, FrontendOptions};

/// The device size, as `pmem --size` takes it; `parameters` reports it in MiB.
const PMEM_SIZE: &str = "64M";

/// Requests per repeat.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    qd1_requests: usize,
    qd64_batches: usize,
}

impl Sizes {
    pub(super) fn new(quick: bool) -> Sizes {
        Sizes {
            qd1_requests: if quick { 100 } else { 400 },
            qd64_batches: if quick { 10 } else { 40 },
        }
    }

    pub(super) fn parameters(&self) -> [(&'static str, serde_json::Value); 3] {
        [
            ("pmem_size_mib", 64.into()),
            ("pmem_qd1_requests", self.qd1_requests.into()),
            ("pmem_qd64_requests", (self.qd64_batches * 64).into()),
        ]
    }
}

/// One flush at a time: rate and latency.
pub(super) fn flush_qd1(
    daemon: &Path,
    scratch: &Scratch,
    sizes: &Sizes,
    samples: &mut Samples,
) -> Result<(), BenchError> {
    let run = pmem_flush(daemon, scratch, 1, sizes.qd1_requests)?;
    samples.push("pmem_flush_qd1_per_s", run.rate);
    samples.push("pmem_flush_qd1_p50_us", run.p50_us);
    samples.push("pmem_flush_qd1_p99_us", run.p99_us);
    Ok(())
}

/// The floor under a FLUSH: `fdatasync` of the same backing file, called directly, as many
/// times as the depth-1 run sends flushes (the file is as the daemon left it: clean).
pub(super) fn fdatasync_baseline(
    scratch: &Scratch,
    sizes: &Sizes,
    samples: &mut Samples,
) -> Result<(), BenchError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(scratch.path("pmem.img"))?;
    let mut latencies = Vec::with_capacity(sizes.qd1_requests);
    for _ in 0..sizes.qd1_requests {
        let t = Instant::now();
        file.sync_data()?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.push_latencies(
        ["pmem_fdatasync_p50_us", "pmem_fdatasync_p99_us"],
        latencies,
    );
    Ok(())
}

/// 64 flushes in flight: rate, and the host syncs the daemon needed for them.
pub(super) fn flush_qd64(
    daemon: &Path,
    scratch: &Scratch,
    sizes: &Sizes,
    samples: &mut Samples,
) -> Result<(), BenchError> {
    let run = pmem_flush(daemon, scratch, 64, sizes.qd64_batches)?;
    samples.push("pmem_flush_qd64_per_s", run.rate);
    samples.push("pmem_syncs_qd64", run.syncs as f64);
    samples.push("pmem_requests_qd64", run.requests as f64);
    Ok(())
}

struct FlushRun {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    requests: u64,
    syncs: u64,
}

/// `depth` flushes in flight at a time, `rounds` times; the daemon's own counters give the
/// number of host syncs.
fn pmem_flush(
    daemon: &Path,
    scratch: &Scratch,
    depth: usize,
    rounds: usize,
) -> Result<FlushRun, BenchError> {
    let socket = scratch.path("pmem.sock");
    let file = scratch.path("pmem.img");
    let _ = std::fs::remove_file(&file);
    let args = [
        "pmem",
        "--socket",
        path_str(&socket)?,
        "--file",
        path_str(&file)?,
        "--size",
        PMEM_SIZE,
        "--create",
    ];
    let mut child = DaemonProcess::spawn(daemon, args, &socket, WAIT)?;
    let mut frontend = Frontend::connect(&socket, &FrontendOptions::default())?;
    let ram = frontend.ram();
    let request = ram.alloc_bytes(&0u32.to_le_bytes())?;
    let statuses: Vec<_> = (0..depth)
        .map(|_| ram.alloc(4, 4))
        .collect::<Result<_, _>>()?;
    let mut latencies = Vec::with_capacity(rounds);
    let started = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        for status in &statuses {
            frontend.add_chain(
                0,
                &[Buffer::readable(request, 4), Buffer::writable(*status, 4)],
            )?;
        }
        frontend.kick(0)?;
        frontend.wait_used(0, depth, WAIT)?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let elapsed = started.elapsed().as_secs_f64();
    child.signal(libc::SIGTERM)?;
    child.wait(WAIT)?;
    let (requests, syncs) = flush_counters(&child.log())?;
    let expected = (depth * rounds) as u64;
    if requests != expected {
        return Err(BenchError::Unexpected(format!(
            "daemon counted {requests} flushes, {expected} were sent"
        )));
    }
    let (p50_us, p99_us) = percentiles(&mut latencies);
    Ok(FlushRun {
        rate: expected as f64 / elapsed,
        p50_us,
        p99_us,
        requests,
        syncs,
    })
}

/// Reads "N flush requests served with M syncs" from the daemon's shutdown log.
fn flush_counters(log: &str) -> Result<(u64, u64), BenchError> {
    let line = log
        .lines()
        .find(|l| l.contains("flush requests served with"))
        .ok_or_else(|| BenchError::Unexpected("daemon logged no flush counters".into()))?;
    let numbers: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.trim_start_matches('(').parse().ok())
        .collect();
    match numbers.as_slice() {
        [requests, syncs, ..] => Ok((*requests, *syncs)),
        _ => Err(BenchError::Unexpected(format!("cannot parse `{line}`"))),
    }
}
