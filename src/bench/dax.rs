//! DAX window workloads, on our daemon only (the peer has no window):
//!
//! - SETUPMAPPING + REMOVEMAPPING pairs of 2 MiB: the round trip through the ledger and the
//!   frontend's SHMEM_MAP / SHMEM_UNMAP, each acknowledged (rate and latency per pair),
//!   and the floor under a pair measured in the same repeat: a Unix-socket round trip to
//!   another process and a MAP_FIXED map of the same 2 MiB of the file and its unmap;
//! - reads of one file through the window (the frontend process's own loads from its
//!   mapping) against the same file through FUSE READ, both on a warm page cache: in order
//!   in 1 MiB pieces, and 4 KiB at random page-aligned offsets — what DAX is for;
//! - a REMOVEMAPPING of N adjacent mappings (N acknowledged SHMEM_UNMAPs: QEMU 11.1
//!   unmaps only exactly what one SHMEM_MAP mapped);
//! - a truncate of a file with N live mappings: once with no pin, and once while a pin
//!   on each mapping makes it wait — timed from the moment the last pin drops to its
//!   reply, which is what the deferred release costs.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::fuse::XorShift;
use super::wire::{DATA_AREA, FuseWire};
use super::{BenchError, Samples, Scratch, WAIT, path_str, percentiles};
use crate::control::ControlClient;
use crate::frontend::DaemonProcess;

/// The keys this section reports (README, "Benchmarks").
pub const DAX_KEYS: &[&str] = &[
    "dax_map_unmap_per_s",
    "dax_map_unmap_p50_us",
    "dax_map_unmap_p99_us",
    "dax_map_floor_p50_us",
    "dax_map_floor_p99_us",
    "dax_seq_read_gbps",
    "dax_seq_read_p50_us",
    "dax_fuse_seq_read_gbps",
    "dax_fuse_seq_read_p50_us",
    "dax_read4k_ops_per_s",
    "dax_read4k_p50_us",
    "dax_fuse_read4k_ops_per_s",
    "dax_fuse_read4k_p50_us",
    "dax_unmap_adjacent_p50_us",
    "dax_truncate_unpinned_us",
    "dax_truncate_after_unpin_us",
];

const CHUNK: u64 = 2 << 20;
const ROOT: u64 = 1;
/// The size of a random read.
const SMALL: u32 = 4096;
/// Untimed FUSE READs before the timed random ones.
const WARMUP: usize = 20;

/// Sizes of the DAX section.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    map_pairs: usize,
    /// File read through the window; the window is this large too.
    read_file: u64,
    /// Random 4 KiB reads through the window.
    random_reads: usize,
    /// Random 4 KiB FUSE READs of the same file (the first of the same offsets).
    random_fuse_reads: usize,
    /// Adjacent 2 MiB mappings one REMOVEMAPPING releases.
    adjacent_mappings: u64,
    /// REMOVEMAPPINGs of them timed.
    adjacent_rounds: usize,
    /// Live mappings (and pins) under the truncate.
    pinned_mappings: u64,
    truncates: usize,
}

impl Sizes {
    pub(super) fn new(quick: bool) -> Sizes {
        Sizes {
            map_pairs: if quick { 500 } else { 4_000 },
            read_file: if quick { 32 << 20 } else { 128 << 20 },
            random_reads: if quick { 20_000 } else { 100_000 },
            random_fuse_reads: if quick { 3_000 } else { 10_000 },
            adjacent_mappings: 16,
            adjacent_rounds: if quick { 20 } else { 100 },
            pinned_mappings: 8,
            truncates: if quick { 5 } else { 20 },
        }
    }

    pub(super) fn parameters(&self) -> [(&'static str, serde_json::Value); 8] {
        [
            ("dax_map_pairs", self.map_pairs.into()),
            ("dax_read_file_bytes", self.read_file.into()),
            ("dax_random_reads", self.random_reads.into()),
            ("dax_random_fuse_reads", self.random_fuse_reads.into()),
            ("dax_adjacent_mappings", self.adjacent_mappings.into()),
            ("dax_adjacent_rounds", self.adjacent_rounds.into()),
            ("dax_pinned_mappings", self.pinned_mappings.into()),
            ("dax_truncates", self.truncates.into()),
        ]
    }
}

/// Our daemon with a DAX window and a control socket, on a share of its own.
struct DaxSession {
    wire: FuseWire,
    control: ControlClient,
    share: PathBuf,
    _daemon: DaemonProcess,
}

impl DaxSession {
    fn start(program: &Path, scratch: &Scratch, sizes: &Sizes) -> Result<Self, BenchError> {
        let share = scratch.path("dax-share");
        std::fs::create_dir_all(&share)?;
        let socket = scratch.path("dax.sock");
        let control = scratch.path("dax.control");
        let _ = std::fs::remove_file(&socket);
        let _ = std::fs::remove_file(&control);
        let window = sizes
            .read_file
            .max(sizes.pinned_mappings * CHUNK)
            .max(sizes.adjacent_mappings * CHUNK);
        let args = [
            "fs".to_string(),
            "--socket".into(),
            path_str(&socket)?.into(),
            "--shared-dir".into(),
            path_str(&share)?.into(),
            "--sandbox".into(),
            "none".into(),
            "--dax-window".into(),
            window.to_string(),
            "--control-socket".into(),
            path_str(&control)?.into(),
        ];
        let daemon = DaemonProcess::spawn(program, &args, &socket, WAIT)?;
        let mut wire = FuseWire::connect(&socket, "vhost-dax")?;
        wire.init()?;
        if wire.windows().region_len(0).is_none() {
            return Err(BenchError::Unexpected(
                "vhost-dax offered no DAX window".into(),
            ));
        }
        Ok(DaxSession {
            wire,
            control: ControlClient::connect(&control, WAIT)?,
            share,
            _daemon: daemon,
        })
    }

    /// Writes `len` bytes as `name` on the host and looks it up.
    fn file(&mut self, name: &str, len: u64) -> Result<u64, BenchError> {
        let path = self.share.join(name);
        let block: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut f = std::fs::File::create(&path)?;
        let mut left = len;
        while left > 0 {
            // Whatever `left` is, at most one block.
            let n = usize::try_from(left).map_or(block.len(), |left| left.min(block.len()));
            f.write_all(&block[..n])?;
            left -= n as u64;
        }
        self.wire.lookup(ROOT, name.as_bytes())
    }
}

/// One repeat of the DAX section into `samples`.
pub(super) fn repeat(
    program: &Path,
    scratch: &Scratch,
    sizes: &Sizes,
    samples: &mut Samples,
    progress: &mut dyn FnMut(&str),
) -> Result<(), BenchError> {
    let mut s = DaxSession::start(program, scratch, sizes)?;
    progress("dax setupmapping+removemapping");
    map_unmap(&mut s, sizes, samples)?;
    progress("dax reads, window vs FUSE READ: sequential 1 MiB, random 4 KiB");
    reads(&mut s, sizes, samples)?;
    progress("dax removemapping of adjacent ranges");
    unmap_adjacent(&mut s, sizes, samples)?;
    progress("dax truncate under pinned mappings");
    truncate(&mut s, sizes, samples)?;
    Ok(())
}

fn map_unmap(s: &mut DaxSession, sizes: &Sizes, samples: &mut Samples) -> Result<(), BenchError> {
    let node = s.file("map", CHUNK)?;
    let mut latencies = Vec::with_capacity(sizes.map_pairs);
    let started = Instant::now();
    for i in 0..sizes.map_pairs {
        let moffset = (i as u64 % 4) * CHUNK;
        let t = Instant::now();
        s.wire.setupmapping(node, 0, CHUNK, moffset)?;
        s.wire.removemapping(moffset, CHUNK)?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let rate = sizes.map_pairs as f64 / started.elapsed().as_secs_f64();
    samples.push("dax_map_unmap_per_s", rate);
    samples.push_latencies(["dax_map_unmap_p50_us", "dax_map_unmap_p99_us"], latencies);
    map_floor(&s.share.join("map"), sizes.map_pairs, samples)
}

/// What a map/unmap pair cannot go below on this machine: one round trip over a Unix
/// socket to another process that answers at once (`cat` with the socket as its stdin and
/// stdout; the pair's own messages are two FUSE round trips and two acknowledged
/// backend-channel ones, each between processes), and the frontend's work for the
/// SHMEM_MAP and SHMEM_UNMAP, a MAP_FIXED shared map of the same 2 MiB of the file into a
/// reservation and its return to `PROT_NONE`. `pairs` of those, timed each.
fn map_floor(file: &Path, pairs: usize, samples: &mut Samples) -> Result<(), BenchError> {
    let file = std::fs::File::open(file)?;
    let len = usize::try_from(CHUNK)
        .map_err(|_| BenchError::Unexpected("a 2 MiB chunk does not fit in usize".into()))?;
    let window = crate::sys::Reservation::new(len)?;
    let (mut ours, theirs) = UnixStream::pair()?;
    let theirs_out = theirs.try_clone()?;
    let mut echo = Command::new("cat")
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::from(OwnedFd::from(theirs_out)))
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BenchError::Unexpected(format!("cannot start cat for the map floor: {e}")))?;
    let mut message = [0u8; 16];
    let mut latencies = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let t = Instant::now();
        ours.write_all(&message)?;
        ours.read_exact(&mut message)?;
        window.map_file(0, CHUNK, file.as_fd(), 0, false)?;
        window.clear(0, CHUNK)?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    // cat reads the end of file and exits.
    drop(ours);
    let _ = echo.wait();
    samples.push_latencies(["dax_map_floor_p50_us", "dax_map_floor_p99_us"], latencies);
    Ok(())
}

/// Reads of one file, mapped whole, through the window and by FUSE READ: in order, in
/// 1 MiB pieces, then 4 KiB at random page-aligned offsets (the same offsets both ways).
fn reads(s: &mut DaxSession, sizes: &Sizes, samples: &mut Samples) -> Result<(), BenchError> {
    let len = sizes.read_file;
    let node = s.file("big", len)?;
    for chunk in 0..len / CHUNK {
        s.wire
            .setupmapping(node, chunk * CHUNK, CHUNK, chunk * CHUNK)?;
    }
    let windows = s.wire.windows();
    let mut buf = vec![0u8; DATA_AREA as usize];
    let pieces: Vec<u64> = (0..len).step_by(buf.len()).collect();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let pages = len / u64::from(SMALL);
    let offsets: Vec<u64> = (0..sizes.random_reads)
        .map(|_| rng.next() % pages * u64::from(SMALL))
        .collect();

    // The window, as the frontend process's own loads. The first pass faults the
    // frontend's mapping in; the figure is the steady state.
    let mut window_read = |offsets: &[u64], size: u32| -> Result<Timed, BenchError> {
        timed(offsets, size, |offset| {
            // SAFETY: the bench created the file `len` bytes long and nothing truncates it
            // while this section runs (its own truncates come later, in `truncate`), so
            // every page read is backed by the file.
            unsafe { windows.read_volatile(0, offset, &mut buf[..size as usize]) }?;
            Ok(())
        })
    };
    window_read(&pieces, DATA_AREA)?;
    let seq = window_read(&pieces, DATA_AREA)?;
    seq.push(samples, "dax_seq_read_gbps", "dax_seq_read_p50_us");
    let random = window_read(&offsets, SMALL)?;
    random.push(samples, "dax_read4k_ops_per_s", "dax_read4k_p50_us");

    let fh = s.wire.open(node, libc::O_RDONLY as u32)?;
    let wire = &mut s.wire;
    let mut fuse_read = |offsets: &[u64], size: u32| -> Result<Timed, BenchError> {
        timed(offsets, size, |offset| {
            let n = wire.read(node, fh, offset, size)?;
            if n == size as usize {
                Ok(())
            } else {
                Err(BenchError::Unexpected(format!(
                    "READ of {size} bytes at {offset} moved {n}"
                )))
            }
        })
    };
    fuse_read(&pieces, DATA_AREA)?;
    let seq = fuse_read(&pieces, DATA_AREA)?;
    seq.push(
        samples,
        "dax_fuse_seq_read_gbps",
        "dax_fuse_seq_read_p50_us",
    );
    // Fewer: a READ costs a round trip to the daemon. The first WARMUP are untimed.
    let random = &offsets[..WARMUP + sizes.random_fuse_reads];
    fuse_read(&random[..WARMUP], SMALL)?;
    let random = fuse_read(&random[WARMUP..], SMALL)?;
    random.push(
        samples,
        "dax_fuse_read4k_ops_per_s",
        "dax_fuse_read4k_p50_us",
    );
    s.wire.release(node, fh, false)?;
    for chunk in 0..len / CHUNK {
        s.wire.removemapping(chunk * CHUNK, CHUNK)?;
    }
    Ok(())
}

/// One timed loop of reads: its wall time, bytes and each read's latency.
struct Timed {
    seconds: f64,
    bytes: f64,
    latencies_us: Vec<f64>,
}

impl Timed {
    /// Pushes the rate under `rate` (GB/s for a `_gbps` key, reads per second otherwise)
    /// and the p50 latency under `p50`.
    fn push(mut self, samples: &mut Samples, rate: &'static str, p50: &'static str) {
        let value = if rate.ends_with("_gbps") {
            self.bytes / self.seconds / 1e9
        } else {
            self.latencies_us.len() as f64 / self.seconds
        };
        samples.push(rate, value);
        samples.push(p50, percentiles(&mut self.latencies_us).0);
    }
}

/// Runs `read` at each of `offsets` twice: once timing only the whole loop (the rate,
/// with no clock read between reads), then timing each call (the latencies, which include
/// two clock reads, some tens of ns).
fn timed(
    offsets: &[u64],
    size: u32,
    mut read: impl FnMut(u64) -> Result<(), BenchError>,
) -> Result<Timed, BenchError> {
    let started = Instant::now();
    for &offset in offsets {
        read(offset)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies_us = Vec::with_capacity(offsets.len());
    for &offset in offsets {
        let t = Instant::now();
        read(offset)?;
        latencies_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Timed {
        seconds,
        bytes: offsets.len() as f64 * f64::from(size),
        latencies_us,
    })
}

/// One REMOVEMAPPING whose range covers N adjacent 2 MiB mappings of one file (contiguous
/// in the file too): the daemon sends one SHMEM_UNMAP per mapping, as QEMU 11.1 requires
/// (README, "The DAX window"). Only the REMOVEMAPPING is timed.
fn unmap_adjacent(
    s: &mut DaxSession,
    sizes: &Sizes,
    samples: &mut Samples,
) -> Result<(), BenchError> {
    let n = sizes.adjacent_mappings;
    let node = s.file("adjacent", n * CHUNK)?;
    let mut latencies = Vec::with_capacity(sizes.adjacent_rounds);
    for _ in 0..sizes.adjacent_rounds {
        for chunk in 0..n {
            s.wire
                .setupmapping(node, chunk * CHUNK, CHUNK, chunk * CHUNK)?;
        }
        let t = Instant::now();
        s.wire.removemapping(0, n * CHUNK)?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.push("dax_unmap_adjacent_p50_us", percentiles(&mut latencies).0);
    Ok(())
}

fn truncate(s: &mut DaxSession, sizes: &Sizes, samples: &mut Samples) -> Result<(), BenchError> {
    let n = sizes.pinned_mappings;
    let len = n * CHUNK;
    let node = s.file("pinned", len)?;
    let path = s.share.join("pinned");
    for chunk in 0..n {
        s.wire
            .setupmapping(node, chunk * CHUNK, CHUNK, chunk * CHUNK)?;
    }
    let regrow = || -> Result<(), BenchError> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)?
            .set_len(len)?;
        Ok(())
    };

    let mut unpinned = Vec::with_capacity(sizes.truncates);
    for _ in 0..sizes.truncates {
        regrow()?;
        let t = Instant::now();
        s.wire.truncate(node, 0)?;
        unpinned.push(t.elapsed().as_secs_f64() * 1e6);
    }
    samples.push("dax_truncate_unpinned_us", percentiles(&mut unpinned).0);

    let mut after_unpin = Vec::with_capacity(sizes.truncates);
    for _ in 0..sizes.truncates {
        regrow()?;
        let pins = (0..n)
            .map(|chunk| s.control.pin(chunk * CHUNK, 4096, "bench"))
            .collect::<Result<Vec<u64>, _>>()?;
        // The truncate parks on the pinned chunks; this thread frees them once it waits.
        let control = &mut s.control;
        let released = std::thread::scope(|scope| -> Result<Instant, BenchError> {
            let releaser = scope.spawn(move || -> Result<Instant, BenchError> {
                wait_draining(control, n)?;
                let (last, rest) = pins.split_last().expect("at least one pin");
                for &id in rest {
                    control.unpin(id)?;
                }
                // The truncate still waits on the last pin; it may go the moment it drops.
                let t = Instant::now();
                control.unpin(*last)?;
                Ok(t)
            });
            s.wire.truncate(node, 0)?;
            releaser
                .join()
                .map_err(|_| BenchError::Unexpected("pin releaser panicked".into()))?
        })?;
        after_unpin.push(released.elapsed().as_secs_f64() * 1e6);
    }
    samples.push(
        "dax_truncate_after_unpin_us",
        percentiles(&mut after_unpin).0,
    );
    for chunk in 0..n {
        s.wire.removemapping(chunk * CHUNK, CHUNK)?;
    }
    Ok(())
}

/// Waits (bounded) until `n` chunks are draining: the truncate is waiting on its pins.
fn wait_draining(control: &mut ControlClient, n: u64) -> Result<(), BenchError> {
    let deadline = Instant::now() + WAIT;
    while control.stats()?["draining_chunks"].as_u64() != Some(n) {
        if Instant::now() > deadline {
            return Err(BenchError::Unexpected(
                "the truncate never waited on its pins".into(),
            ));
        }
        std::thread::yield_now();
    }
    Ok(())
}
