//! `vhost-dax bench`: host-side measurements on an embedded default.
//!
//! Each workload runs a daemon binary as a child on a temporary socket and drives it
//! through our frontend, exactly as the tests do. Every figure is the median of several
//! repeats; min and max are kept. Sections:
//!
//! - `fuse`: FUSE metadata and data workloads over a virtio-fs request queue, against
//!   our `fs` daemon and, side by side in the same run, against virtiofsd (`peer`);
//! - `pmem`: FLUSH at queue depth 1 and 64;
//! - `dax`: the DAX window on our daemon (the peer has none): SETUPMAPPING +
//!   REMOVEMAPPING pairs, sequential and random 4 KiB reads through the window against
//!   FUSE READ of the same file, a REMOVEMAPPING of adjacent mappings, a truncate that
//!   waits out pins on live mappings;
//! - `ledger`: the DAX ledger alone, in process;
//! - `scale`: LOOKUPs of 10 000 and 100 000 files (1 000 000 with `--scale`) without
//!   FORGET, and the daemon's descriptors and memory after them, with inodes held by
//!   descriptor and by file handle, ours and the peer's (once a run, not per repeat).
//!
//! Library code never prints: progress goes through the caller's callback, the report is
//! returned, and `report` renders it as a table or a JSON value for the binary to print.

mod dax;
mod fuse;
mod ledger;
mod peer;
mod pmem;
mod report;
mod scale;
mod wire;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::frontend::FrontendError;

pub use dax::DAX_KEYS;
pub use fuse::{FUSE_KEYS, RATIO_KEYS};
pub use peer::{PeerChoice, PeerChoiceError};
pub use report::{Baseline, BaselineError, SCHEMA_VERSION, chart_svg, compare, json, table};
pub use scale::{SCALE_KEYS, ScaleError, ScaleSizes};

/// Bound for anything one request or one daemon start may take.
const WAIT: Duration = Duration::from_secs(30);

/// Bench options.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Fewer repeats and shorter runs (under 15 s).
    pub quick: bool,
    /// Which peer daemon to measure side by side.
    pub peer: PeerChoice,
    /// The largest size of the scale section (`--scale`); None: the default for `quick`.
    pub scale: Option<ScaleSizes>,
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
#[derive(Debug)]
pub struct BenchReport {
    /// Our figures by stable key (see README).
    pub results: BTreeMap<&'static str, Figure>,
    /// The machine the run was on.
    pub machine: BTreeMap<&'static str, serde_json::Value>,
    /// Run parameters.
    pub parameters: BTreeMap<&'static str, serde_json::Value>,
    /// When the run ended (RFC 3339, UTC).
    pub timestamp: String,
    /// Peer daemons by name (`virtiofsd`): their FUSE figures, or why there are none.
    pub peers: BTreeMap<&'static str, PeerOutcome>,
}

/// What became of a peer daemon.
#[derive(Debug)]
pub enum PeerOutcome {
    /// It ran every repeat.
    Ran(PeerRun),
    /// Not measured: not found, or disabled.
    Absent(String),
    /// Found (auto-detected) but a session failed; our figures stand.
    Failed(String),
}

/// A peer's figures.
#[derive(Debug)]
pub struct PeerRun {
    /// The binary.
    pub path: PathBuf,
    /// Its `--version` line.
    pub version: String,
    /// The same FUSE keys as ours.
    pub results: BTreeMap<&'static str, Figure>,
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
    /// An access through the frontend's DAX window was refused.
    #[error("window: {0}")]
    Window(#[from] crate::frontend::WindowError),
    /// A FUSE request was refused.
    #[error("{daemon}: FUSE {op} failed with errno {errno}")]
    Fuse {
        /// Which daemon.
        daemon: String,
        /// The request.
        op: &'static str,
        /// Positive errno.
        errno: i32,
    },
    /// The DAX control socket failed or refused.
    #[error("{0}")]
    Control(#[from] crate::control::ClientError),
    /// The requested peer cannot be used.
    #[error("peer: {0}")]
    Peer(String),
    /// A result did not look right.
    #[error("{0}")]
    Unexpected(String),
}

/// Repeats and sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    repeats: usize,
    pmem: pmem::Sizes,
    ledger_rounds: usize,
    fuse: fuse::Sizes,
    dax: dax::Sizes,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        Plan {
            repeats: if quick { 3 } else { 5 },
            pmem: pmem::Sizes::new(quick),
            ledger_rounds: if quick { 2_000 } else { 20_000 },
            fuse: fuse::Sizes::new(quick),
            dax: dax::Sizes::new(quick),
        }
    }
}

/// Samples of every repeat, by key.
#[derive(Debug, Default)]
struct Samples(BTreeMap<&'static str, Vec<f64>>);

impl Samples {
    fn push(&mut self, key: &'static str, value: f64) {
        self.0.entry(key).or_default().push(value);
    }

    /// The p50 and p99 of one repeat's latencies, under `keys`.
    fn push_latencies(&mut self, keys: [&'static str; 2], mut latencies_us: Vec<f64>) {
        let (p50, p99) = percentiles(&mut latencies_us);
        self.push(keys[0], p50);
        self.push(keys[1], p99);
    }

    fn figures(self) -> BTreeMap<&'static str, Figure> {
        self.0
            .into_iter()
            .map(|(k, v)| (k, Figure::of(v)))
            .collect()
    }
}

/// p50 and p99 of `samples` (sorted in place); zeros when empty.
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    (samples[n / 2], samples[(n * 99 / 100).min(n - 1)])
}

/// Runs every workload; `progress` receives one line per step.
pub fn run(
    options: BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport, BenchError> {
    let plan = Plan::new(options.quick);
    let repeats = plan.repeats;
    let daemon = std::env::current_exe()?;
    let scratch = Scratch::new()?;
    let mut peer = peer::Peer::resolve(&options.peer)?;
    if let Some(reason) = peer.absent() {
        progress(&format!("virtiofsd: absent, {reason}"));
    }

    progress(&format!(
        "preparing the shared directory ({} entries, {} MiB data file)",
        plan.fuse.dir_entries,
        plan.fuse.data_file >> 20
    ));
    let share = fuse::Share::build(&scratch.path("share"), &plan.fuse)?;
    let ours = fuse::Target::ours(&daemon);
    let mut samples = Samples::default();
    let mut peer_samples = Samples::default();

    for repeat in 1..=repeats {
        let step = format!("({repeat}/{repeats})");
        let peer_target = peer.target();
        let peer_side = peer_target.as_ref().map(|target| fuse::Side {
            target,
            samples: &mut peer_samples,
        });
        let ours_side = fuse::Side {
            target: &ours,
            samples: &mut samples,
        };
        let failed = fuse::repeat(
            ours_side,
            peer_side,
            repeat % 2 == 0,
            &scratch,
            &share,
            &plan.fuse,
            &mut |s| progress(&format!("{s} {step}")),
        )?;
        if let Some(e) = failed {
            let reason = e.to_string();
            peer.failed(e)?;
            progress(&format!(
                "virtiofsd failed, measuring vhost-dax alone {step}: {}",
                reason.trim_end()
            ));
        }
        dax::repeat(&daemon, &scratch, &plan.dax, &mut samples, &mut |s| {
            progress(&format!("{s} {step}"))
        })?;
        progress(&format!("pmem flush, queue depth 1 {step}"));
        pmem::flush_qd1(&daemon, &scratch, &plan.pmem, &mut samples)?;
        pmem::fdatasync_baseline(&scratch, &plan.pmem, &mut samples)?;
        progress(&format!("pmem flush, queue depth 64 {step}"));
        pmem::flush_qd64(&daemon, &scratch, &plan.pmem, &mut samples)?;
        progress(&format!("ledger map/pin/unpin/unmap {step}"));
        samples.push(
            "ledger_ops_per_s",
            ledger::ops_per_s(&scratch, plan.ledger_rounds)?,
        );
    }

    let scale = options
        .scale
        .unwrap_or_else(|| ScaleSizes::default_for(options.quick));
    progress(&format!(
        "preparing the scale tree ({} empty files)",
        scale.largest()
    ));
    scale::build_tree(&scratch.path("share"), scale.largest())?;
    let ours_by_handle = scale::measure(&ours, &scratch, &share, scale, &mut samples, progress)?;
    let mut peer_by_handle = None;
    if let Some(target) = peer.target() {
        match scale::measure(
            &target,
            &scratch,
            &share,
            scale,
            &mut peer_samples,
            progress,
        ) {
            Ok(by_handle) => peer_by_handle = Some(by_handle),
            Err(e) => {
                let reason = e.to_string();
                peer.failed(e)?;
                progress(&format!(
                    "virtiofsd failed in the scale section: {}",
                    reason.trim_end()
                ));
            }
        }
    }
    if !ours_by_handle[1] {
        progress(
            "scale: vhost-dax --inode-file-handles=prefer fell back to O_PATH descriptors (handles need root with CAP_DAC_READ_SEARCH)",
        );
    }

    let mut parameters = BTreeMap::from([
        ("quick", options.quick.into()),
        ("repeats", repeats.into()),
        ("ledger_rounds", plan.ledger_rounds.into()),
        (
            "scratch_dir",
            std::env::temp_dir().display().to_string().into(),
        ),
    ]);
    parameters.extend(plan.pmem.parameters());
    parameters.extend(plan.fuse.parameters());
    parameters.extend(plan.dax.parameters());
    parameters.extend(scale.parameters());
    parameters.insert("scale_prefer_by_handle", ours_by_handle[1].into());
    if let Some(by_handle) = peer_by_handle {
        parameters.insert("scale_peer_prefer_by_handle", by_handle[1].into());
    }
    Ok(BenchReport {
        results: samples.figures(),
        machine: machine(),
        parameters,
        timestamp: report::rfc3339_utc(std::time::SystemTime::now()),
        peers: BTreeMap::from([("virtiofsd", peer.outcome(peer_samples))]),
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

fn path_str(path: &Path) -> Result<&str, BenchError> {
    path.to_str()
        .ok_or_else(|| BenchError::Unexpected(format!("{} is not UTF-8", path.display())))
}

fn machine() -> BTreeMap<&'static str, serde_json::Value> {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    BTreeMap::from([
        ("cores", cores.into()),
        ("cpu", cpu.into()),
        ("kernel", kernel.trim().into()),
    ])
}
