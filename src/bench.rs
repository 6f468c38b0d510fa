//! `vhost-dax bench`: host-side measurements on an embedded default.
//!
//! Each workload runs the daemon binary as a child on a temporary socket and drives it
//! through our frontend, exactly as the tests do. Every figure is the median of several
//! repeats; min and max are kept. This build measures pmem flushes and the ledger alone;
//! the FUSE and DAX workloads join when those devices are complete.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::dax::{FileBacking, Ledger, LedgerConfig, MemoryMapper, PinWait};
use crate::frontend::{Buffer, DaemonProcess, Frontend, FrontendError, FrontendOptions};

const WAIT: Duration = Duration::from_secs(30);
const PMEM_SIZE: &str = "64M";

/// Bench options.
#[derive(Debug, Clone, Copy)]
pub struct BenchOptions {
    /// Fewer repeats and shorter runs (under 15 s).
    pub quick: bool,
}

/// One measured figure: median of the repeats, with the extremes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Figure {
    /// Median of the repeats.
    pub median: f64,
    /// Smallest repeat.
    pub min: f64,
    /// Largest repeat.
    pub max: f64,
}

impl Figure {
    fn of(mut samples: Vec<f64>) -> Figure {
        samples.sort_by(f64::total_cmp);
        Figure {
            median: samples[samples.len() / 2],
            min: samples[0],
            max: samples[samples.len() - 1],
        }
    }
}

/// Everything `bench` reports.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Figures by stable key (see README).
    pub results: BTreeMap<&'static str, Figure>,
    /// The machine the run was on.
    pub machine: BTreeMap<&'static str, String>,
    /// Run parameters.
    pub parameters: BTreeMap<&'static str, String>,
}

/// Errors of a bench run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The frontend or daemon failed.
    #[error("{0}")]
    Frontend(#[from] FrontendError),
    /// Local I/O failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A result did not look right.
    #[error("{0}")]
    Unexpected(String),
}

/// Runs every workload; `progress` receives one line per step.
pub fn run(
    options: BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport, BenchError> {
    let repeats = if options.quick { 3 } else { 5 };
    let qd1_requests = if options.quick { 100 } else { 400 };
    let qd64_batches = if options.quick { 10 } else { 40 };
    let ledger_rounds = if options.quick { 2_000 } else { 20_000 };
    let daemon = std::env::current_exe()?;
    let scratch = Scratch::new()?;
    let mut samples: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();

    for repeat in 1..=repeats {
        progress(&format!("pmem flush, queue depth 1 ({repeat}/{repeats})"));
        let qd1 = pmem_flush(&daemon, &scratch, 1, qd1_requests)?;
        samples
            .entry("pmem_flush_qd1_per_s")
            .or_default()
            .push(qd1.rate);
        samples
            .entry("pmem_flush_qd1_p50_us")
            .or_default()
            .push(qd1.p50_us);
        samples
            .entry("pmem_flush_qd1_p99_us")
            .or_default()
            .push(qd1.p99_us);
        progress(&format!("pmem flush, queue depth 64 ({repeat}/{repeats})"));
        let qd64 = pmem_flush(&daemon, &scratch, 64, qd64_batches)?;
        samples
            .entry("pmem_flush_qd64_per_s")
            .or_default()
            .push(qd64.rate);
        samples
            .entry("pmem_syncs_qd64")
            .or_default()
            .push(qd64.syncs as f64);
        samples
            .entry("pmem_requests_qd64")
            .or_default()
            .push(qd64.requests as f64);
        progress(&format!("ledger map/pin/unpin/unmap ({repeat}/{repeats})"));
        samples
            .entry("ledger_ops_per_s")
            .or_default()
            .push(ledger_ops(&scratch, ledger_rounds)?);
    }
    let results = samples
        .into_iter()
        .map(|(k, v)| (k, Figure::of(v)))
        .collect();
    Ok(BenchReport {
        results,
        machine: machine(),
        parameters: BTreeMap::from([
            ("quick", options.quick.to_string()),
            ("repeats", repeats.to_string()),
            ("pmem_size", PMEM_SIZE.to_string()),
            ("pmem_qd1_requests", qd1_requests.to_string()),
            ("pmem_qd64_requests", (qd64_batches * 64).to_string()),
            ("ledger_rounds", ledger_rounds.to_string()),
        ]),
    })
}

/// A temporary directory for sockets and files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Self> {
        let dir = std::env::temp_dir().join(format!("vhost-dax-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
    latencies.sort_by(f64::total_cmp);
    Ok(FlushRun {
        rate: expected as f64 / elapsed,
        p50_us: latencies[latencies.len() / 2],
        p99_us: latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)],
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

/// The ledger's own ceiling: map, pin, unpin, unmap of 2 MiB chunks against the
/// in-memory mapper; four operations per round.
fn ledger_ops(scratch: &Scratch, rounds: usize) -> Result<f64, BenchError> {
    const CHUNK: u64 = 2 << 20;
    const CHUNKS: u64 = 64;
    let path = scratch.path("ledger.img");
    let file = std::fs::File::create(&path)?;
    file.set_len(CHUNK * CHUNKS)?;
    let backing = Arc::new(FileBacking::open(&path, true)?);
    let mapper = Arc::new(MemoryMapper::with_window(CHUNK * CHUNKS));
    let ledger = Ledger::new(LedgerConfig::new(CHUNK * CHUNKS), mapper)
        .map_err(|e| BenchError::Unexpected(e.to_string()))?;
    let fail = |e: crate::dax::LedgerError| BenchError::Unexpected(e.to_string());
    let started = Instant::now();
    for round in 0..rounds as u64 {
        let offset = (round % CHUNKS) * CHUNK;
        ledger
            .map(offset, CHUNK, backing.clone(), offset, true)
            .map_err(fail)?;
        let pin = ledger
            .pin(offset, 4096, "bench", PinWait::Fail)
            .map_err(fail)?;
        drop(pin);
        ledger.unmap(offset, CHUNK).map_err(fail)?;
    }
    Ok(rounds as f64 * 4.0 / started.elapsed().as_secs_f64())
}

fn path_str(path: &Path) -> Result<&str, BenchError> {
    path.to_str()
        .ok_or_else(|| BenchError::Unexpected(format!("{} is not UTF-8", path.display())))
}

fn machine() -> BTreeMap<&'static str, String> {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    BTreeMap::from([
        ("cores", cores.to_string()),
        ("kernel", kernel.trim().to_string()),
        ("version", env!("CARGO_PKG_VERSION").to_string()),
    ])
}

/// Renders the report as a table.
pub fn table(report: &BenchReport) -> String {
    let mut out = String::from("figure                        median          min          max\n");
    for (key, f) in &report.results {
        out.push_str(&format!(
            "{key:<28} {:>12.1} {:>12.1} {:>12.1}\n",
            f.median, f.min, f.max
        ));
    }
    let machine: Vec<String> = report
        .machine
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    out.push_str(&format!("machine: {}\n", machine.join(", ")));
    out
}
