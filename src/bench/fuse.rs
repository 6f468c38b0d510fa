//! FUSE workloads over a virtio-fs request queue, the same for our daemon and for a peer.
//!
//! The shared directory is built once per run on the host side ([`Share`]). Each repeat
//! ([`repeat`]) starts a fresh daemon of each side on it ([`Session`]), initialises FUSE
//! and runs every workload once on each, alternating, one request in flight at a time
//! (but see below):
//!
//! - metadata: LOOKUP and GETATTR over a warm tree (every name looked up once before
//!   timing); CREATE+RELEASE+UNLINK cycles; READDIRPLUS of a 10 000-entry directory;
//! - data: 4 KiB READ and WRITE at random aligned offsets of a data file, and 1 MiB
//!   sequential READ and WRITE through it (no fsync: the host page cache absorbs them).
//!
//! Then both daemons are started again with a request pool (`--thread-pool-size`
//! [`POOL_THREADS`]) for 4 KiB random READs with 16 and with 64 in flight on the queue.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::wire::{DATA_AREA, FuseWire};
use super::{BenchError, Samples, Scratch, WAIT, path_str};
use crate::frontend::DaemonProcess;
use crate::fuse::abi::ROOT_ID;
use crate::sys;

/// Keys every FUSE session reports, ours and the peer's (see README).
pub const FUSE_KEYS: &[&str] = &[
    "fuse_lookup_ops_per_s",
    "fuse_lookup_p50_us",
    "fuse_lookup_p99_us",
    "fuse_getattr_ops_per_s",
    "fuse_getattr_p50_us",
    "fuse_getattr_p99_us",
    "fuse_create_ops_per_s",
    "fuse_create_p50_us",
    "fuse_create_p99_us",
    "fuse_readdirplus_entries_per_s",
    "fuse_readdirplus_pass_ms",
    "fuse_read4k_ops_per_s",
    "fuse_read4k_p50_us",
    "fuse_read4k_p99_us",
    "fuse_write4k_ops_per_s",
    "fuse_write4k_p50_us",
    "fuse_write4k_p99_us",
    "fuse_seq_read_gbps",
    "fuse_seq_read_p50_us",
    "fuse_seq_read_p99_us",
    "fuse_seq_write_gbps",
    "fuse_seq_write_p50_us",
    "fuse_seq_write_p99_us",
    "fuse_read4k_qd16_ops_per_s",
    "fuse_read4k_qd16_p50_us",
    "fuse_read4k_qd16_p99_us",
    "fuse_read4k_qd64_ops_per_s",
    "fuse_read4k_qd64_p50_us",
    "fuse_read4k_qd64_p99_us",
];

/// Keys compared with the peer as ours / theirs: the rates (above 1: we are faster).
pub const RATIO_KEYS: &[&str] = &[
    "fuse_lookup_ops_per_s",
    "fuse_getattr_ops_per_s",
    "fuse_create_ops_per_s",
    "fuse_readdirplus_entries_per_s",
    "fuse_read4k_ops_per_s",
    "fuse_write4k_ops_per_s",
    "fuse_seq_read_gbps",
    "fuse_seq_write_gbps",
    "fuse_read4k_qd16_ops_per_s",
    "fuse_read4k_qd64_ops_per_s",
];

const SMALL: u32 = 4096;
const BIG: u32 = DATA_AREA;
/// READDIRPLUS buffer: what Linux 6.x asks for under a 32 KiB getdents (glibc's size).
const READDIR_BUFFER: u32 = 32 << 10;
/// Untimed requests before each timed loop.
const WARMUP: usize = 20;
/// `--thread-pool-size` of both daemons for the workloads with requests in flight (the
/// table's FUSE heading names it: `report::Section::title`).
pub(super) const POOL_THREADS: usize = 4;

/// Sizes of the FUSE workloads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    tree_dirs: usize,
    tree_files: usize,
    meta_ops: usize,
    create_cycles: usize,
    pub(super) dir_entries: usize,
    pub(super) data_file: u64,
    random_ops: usize,
    seq_requests: usize,
}

impl Sizes {
    pub(super) fn new(quick: bool) -> Sizes {
        Sizes {
            tree_dirs: 10,
            tree_files: 100,
            meta_ops: if quick { 2_000 } else { 20_000 },
            create_cycles: if quick { 500 } else { 4_000 },
            dir_entries: 10_000,
            data_file: 64 << 20,
            random_ops: if quick { 2_000 } else { 20_000 },
            seq_requests: if quick { 128 } else { 1_024 },
        }
    }

    pub(super) fn parameters(&self) -> [(&'static str, Value); 9] {
        [
            ("fuse_tree_dirs", json!(self.tree_dirs)),
            ("fuse_tree_files_per_dir", json!(self.tree_files)),
            ("fuse_meta_ops", json!(self.meta_ops)),
            ("fuse_create_cycles", json!(self.create_cycles)),
            ("fuse_dir_entries", json!(self.dir_entries)),
            ("fuse_data_file_mib", json!(self.data_file >> 20)),
            ("fuse_random_ops", json!(self.random_ops)),
            ("fuse_seq_mib", json!(self.seq_requests)),
            ("fuse_pool_threads", json!(POOL_THREADS)),
        ]
    }
}

/// The shared directory, laid out on the host before any daemon starts:
/// `tree/dNN/fNNN`, `big/` with the 10 000 entries, `create/` (empty), `data.bin`.
pub(super) struct Share {
    root: PathBuf,
}

impl Share {
    pub(super) fn build(root: &Path, sizes: &Sizes) -> Result<Share, BenchError> {
        std::fs::create_dir_all(root.join("create"))?;
        for d in 0..sizes.tree_dirs {
            let dir = root.join("tree").join(dir_name(d));
            std::fs::create_dir_all(&dir)?;
            for f in 0..sizes.tree_files {
                std::fs::File::create(dir.join(file_name(f)))?;
            }
        }
        let big = root.join("big");
        std::fs::create_dir_all(&big)?;
        for e in 0..sizes.dir_entries {
            std::fs::File::create(big.join(format!("entry-{e:05}")))?;
        }
        let data = std::fs::File::create(root.join("data.bin"))?;
        let chunk: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
        for offset in (0..sizes.data_file).step_by(BIG as usize) {
            data.write_all_at(&chunk, offset)?;
        }
        Ok(Share {
            root: root.to_path_buf(),
        })
    }
}

fn dir_name(d: usize) -> String {
    format!("d{d:02}")
}

fn file_name(f: usize) -> String {
    format!("f{f:03}")
}

/// A daemon that serves the share: ours or a peer.
pub(super) struct Target {
    /// Name in progress lines and errors.
    pub(super) name: String,
    program: PathBuf,
    kind: Kind,
}

enum Kind {
    Ours,
    /// virtiofsd (Rust, 1.x command line).
    Virtiofsd,
}

impl Target {
    pub(super) fn ours(program: &Path) -> Target {
        Target {
            name: "vhost-dax".into(),
            program: program.to_path_buf(),
            kind: Kind::Ours,
        }
    }

    pub(super) fn virtiofsd(program: &Path) -> Target {
        Target {
            name: "virtiofsd".into(),
            program: program.to_path_buf(),
            kind: Kind::Virtiofsd,
        }
    }

    /// True for our daemon (flags of its own may be passed).
    pub(super) fn is_ours(&self) -> bool {
        matches!(self.kind, Kind::Ours)
    }

    /// Both confined the same way (not at all: the bench measures serving, not sandboxes)
    /// and with the same cache policy and `--thread-pool-size`; everything else at its
    /// default.
    fn args(
        &self,
        socket: &Path,
        share: &Path,
        pool: usize,
        extra: &[String],
    ) -> Result<Vec<String>, BenchError> {
        let socket = path_str(socket)?.to_string();
        let share = path_str(share)?.to_string();
        let mut args: Vec<String> = match self.kind {
            Kind::Ours => vec!["fs".into(), "--socket".into(), socket],
            Kind::Virtiofsd => vec!["--socket-path".into(), socket],
        };
        args.extend(
            [
                "--shared-dir",
                &share,
                "--sandbox",
                "none",
                "--cache",
                "auto",
            ]
            .map(String::from),
        );
        if pool > 0 {
            args.extend(["--thread-pool-size".into(), pool.to_string()]);
        }
        args.extend_from_slice(extra);
        Ok(args)
    }
}

/// A daemon serving the share and our FUSE driver connected to it.
pub(super) struct Session {
    pub(super) wire: FuseWire,
    daemon: DaemonProcess,
}

impl Session {
    /// Starts `target` on the share, with a request pool of `pool` workers (0: none), and
    /// initialises FUSE.
    pub(super) fn start(
        target: &Target,
        scratch: &Scratch,
        share: &Share,
        pool: usize,
    ) -> Result<Session, BenchError> {
        Self::start_with(target, scratch, share, pool, &[])
    }

    /// As [`Session::start`], with `extra` arguments for the daemon (the same flag
    /// spelling must suit both daemons, e.g. `--inode-file-handles=prefer`).
    pub(super) fn start_with(
        target: &Target,
        scratch: &Scratch,
        share: &Share,
        pool: usize,
        extra: &[String],
    ) -> Result<Session, BenchError> {
        let socket = scratch.path(&format!("fs-{}.sock", target.name));
        // A stale socket would pass for the new daemon listening.
        let _ = std::fs::remove_file(&socket);
        let args = target.args(&socket, &share.root, pool, extra)?;
        let daemon = DaemonProcess::spawn(&target.program, &args, &socket, WAIT)?;
        let mut wire = FuseWire::connect(&socket, &target.name)?;
        wire.init()?;
        Ok(Session { wire, daemon })
    }

    /// The daemon's process id.
    pub(super) fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// Disconnects; the daemon exits on its own (or is stopped).
    pub(super) fn stop(self) -> Result<(), BenchError> {
        let Session { wire, mut daemon } = self;
        drop(wire);
        if daemon.wait(Duration::from_secs(5)).is_err() {
            daemon.signal(libc::SIGTERM)?;
            daemon.wait(WAIT)?;
        }
        Ok(())
    }
}

/// A FUSE workload: one repeat of it on one session, into `samples`.
type Workload = fn(&mut FuseWire, &Sizes, &mut Samples) -> Result<(), BenchError>;

/// The workloads, in order, with their progress labels.
const WORKLOADS: &[(&str, Workload)] = &[
    ("lookup+getattr", lookup_getattr),
    ("create+release+unlink", create_cycles),
    ("readdirplus", readdirplus),
    ("4 KiB random read", read4k),
    ("4 KiB random write", write4k),
    ("1 MiB sequential read", seq_read),
    ("1 MiB sequential write", seq_write),
];

/// The workloads run on daemons with a request pool of [`POOL_THREADS`].
const POOL_WORKLOADS: &[(&str, Workload)] =
    &[("4 KiB random read, 16 and 64 in flight", read4k_in_flight)];

/// A daemon measured in a repeat: its target and where its samples go.
pub(super) struct Side<'a> {
    pub(super) target: &'a Target,
    pub(super) samples: &'a mut Samples,
}

/// One repeat of every FUSE workload on our daemon and, when given, on the peer, both
/// started on the share for the repeat and used in turn, workload by workload, so that
/// both meet the machine in the same state; who goes first alternates with `peer_first`.
/// A failure of ours fails the repeat; a failure of the peer ends the peer's part of it
/// and is returned.
pub(super) fn repeat(
    ours: Side<'_>,
    peer: Option<Side<'_>>,
    peer_first: bool,
    scratch: &Scratch,
    share: &Share,
    sizes: &Sizes,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<BenchError>, BenchError> {
    let _pinned = Pinned::to_one_cpu()?;
    let mut peer = peer;
    let mut peer_error = None;
    for (pool, workloads) in [(0, WORKLOADS), (POOL_THREADS, POOL_WORKLOADS)] {
        let mut our_session = Session::start(ours.target, scratch, share, pool)?;
        // A peer that failed once sits out the rest of the repeat.
        let mut peer_session = match peer.as_mut().filter(|_| peer_error.is_none()) {
            None => None,
            Some(side) => match Session::start(side.target, scratch, share, pool) {
                Ok(session) => Some((session, side)),
                Err(e) => {
                    peer_error = Some(e);
                    None
                }
            },
        };
        for (label, workload) in workloads {
            let names = match &peer_session {
                Some((_, side)) if peer_first => {
                    format!("{}, {}", side.target.name, ours.target.name)
                }
                Some((_, side)) => format!("{}, {}", ours.target.name, side.target.name),
                None => ours.target.name.clone(),
            };
            progress(&format!("fuse {label}: {names}"));
            let mut run_peer = |peer: &mut Option<(Session, &mut Side<'_>)>| {
                if let Some((session, side)) = peer
                    && let Err(e) = workload(&mut session.wire, sizes, side.samples)
                {
                    peer_error = Some(e);
                    *peer = None;
                }
            };
            if peer_first {
                run_peer(&mut peer_session);
            }
            workload(&mut our_session.wire, sizes, ours.samples)?;
            if !peer_first {
                run_peer(&mut peer_session);
            }
        }
        our_session.stop()?;
        if let Some((session, _)) = peer_session
            && let Err(e) = session.stop()
        {
            peer_error = Some(e);
        }
    }
    Ok(peer_error)
}

/// The bench thread, and through inheritance the daemons and their threads, on one CPU
/// for the length of a repeat: each request then costs the daemon's work and two context
/// switches, not a cross-CPU wake-up, whose latency varies several-fold from run to run on
/// shared virtual machines and would decide a side-by-side ratio by itself.
struct Pinned {
    previous: Vec<usize>,
}

impl Pinned {
    fn to_one_cpu() -> Result<Pinned, BenchError> {
        let previous = sys::thread_cpus()?;
        let cpu = *previous
            .first()
            .ok_or_else(|| BenchError::Unexpected("this thread may run on no CPU".into()))?;
        sys::set_thread_cpus(&[cpu])?;
        Ok(Pinned { previous })
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Err(e) = sys::set_thread_cpus(&self.previous) {
            log::warn!("bench: cannot restore the CPU affinity: {e}");
        }
    }
}

/// Times `n` calls of `op`; returns (calls per second, latencies in µs).
fn timed(
    n: usize,
    mut op: impl FnMut(usize) -> Result<(), BenchError>,
) -> Result<(f64, Vec<f64>), BenchError> {
    let mut latencies = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        op(i)?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok((n as f64 / started.elapsed().as_secs_f64(), latencies))
}

fn lookup_getattr(w: &mut FuseWire, s: &Sizes, samples: &mut Samples) -> Result<(), BenchError> {
    let tree = w.lookup(ROOT_ID, b"tree")?;
    let names: Vec<Vec<u8>> = (0..s.tree_files)
        .map(|f| file_name(f).into_bytes())
        .collect();
    let mut files = Vec::with_capacity(s.tree_dirs * s.tree_files);
    for d in 0..s.tree_dirs {
        let dir = w.lookup(tree, dir_name(d).as_bytes())?;
        for (f, name) in names.iter().enumerate() {
            let node = w.lookup(dir, name)?;
            w.getattr(node)?;
            files.push((dir, f, node));
        }
    }
    let n = files.len();
    let (rate, latencies) = timed(s.meta_ops, |i| {
        let (dir, f, _) = files[i % n];
        w.lookup(dir, &names[f]).map(drop)
    })?;
    samples.push("fuse_lookup_ops_per_s", rate);
    samples.push_latencies(["fuse_lookup_p50_us", "fuse_lookup_p99_us"], latencies);
    let (rate, latencies) = timed(s.meta_ops, |i| w.getattr(files[i % n].2))?;
    samples.push("fuse_getattr_ops_per_s", rate);
    samples.push_latencies(["fuse_getattr_p50_us", "fuse_getattr_p99_us"], latencies);
    Ok(())
}

fn create_cycles(w: &mut FuseWire, s: &Sizes, samples: &mut Samples) -> Result<(), BenchError> {
    let dir = w.lookup(ROOT_ID, b"create")?;
    let names: Vec<Vec<u8>> = (0..WARMUP + s.create_cycles)
        .map(|i| format!("c{i:05}").into_bytes())
        .collect();
    let flags = (libc::O_CREAT | libc::O_EXCL | libc::O_RDWR) as u32;
    // Returns the cycle's latency in µs. The guest forgets an unlinked inode as soon as it
    // is evicted; so does this loop, untimed. Without it the daemons keep every unlinked
    // inode open, and the host filesystem's orphan list (ext4) grows into the figure.
    let cycle = |w: &mut FuseWire, name: &[u8]| -> Result<f64, BenchError> {
        let t = Instant::now();
        let (node, fh) = w.create(dir, name, flags)?;
        w.release(node, fh, false)?;
        w.unlink(dir, name)?;
        let latency = t.elapsed().as_secs_f64() * 1e6;
        w.forget(&[node])?;
        Ok(latency)
    };
    for name in &names[..WARMUP] {
        cycle(w, name)?;
    }
    let latencies = names[WARMUP..]
        .iter()
        .map(|name| cycle(w, name))
        .collect::<Result<Vec<f64>, _>>()?;
    let busy_s = latencies.iter().sum::<f64>() / 1e6;
    samples.push("fuse_create_ops_per_s", latencies.len() as f64 / busy_s);
    samples.push_latencies(["fuse_create_p50_us", "fuse_create_p99_us"], latencies);
    Ok(())
}

fn readdirplus(w: &mut FuseWire, s: &Sizes, samples: &mut Samples) -> Result<(), BenchError> {
    let dir = w.lookup(ROOT_ID, b"big")?;
    let started = Instant::now();
    let fh = w.opendir(dir)?;
    let (mut entries, mut offset) = (0, Some(0));
    while let Some(at) = offset {
        let (count, next) = w.readdirplus(dir, fh, at, READDIR_BUFFER)?;
        entries += count;
        offset = next;
    }
    w.release(dir, fh, true)?;
    let pass = started.elapsed().as_secs_f64();
    // "." and ".." may or may not be listed.
    if entries < s.dir_entries || entries > s.dir_entries + 2 {
        return Err(BenchError::Unexpected(format!(
            "READDIRPLUS listed {entries} entries of {}",
            s.dir_entries
        )));
    }
    samples.push(
        "fuse_readdirplus_entries_per_s",
        s.dir_entries as f64 / pass,
    );
    samples.push("fuse_readdirplus_pass_ms", pass * 1e3);
    Ok(())
}

/// Runs `op` on the data file opened read-write (OPEN and RELEASE untimed).
fn with_data_file(
    w: &mut FuseWire,
    op: impl FnOnce(&mut FuseWire, u64, u64) -> Result<(), BenchError>,
) -> Result<(), BenchError> {
    let node = w.lookup(ROOT_ID, b"data.bin")?;
    let fh = w.open(node, libc::O_RDWR as u32)?;
    op(w, node, fh)?;
    w.release(node, fh, false)
}

/// The same random 4 KiB-aligned offsets for every daemon, every repeat and every run.
fn random_offsets(s: &Sizes) -> Vec<u64> {
    let pages = s.data_file / u64::from(SMALL);
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    (0..WARMUP + s.random_ops)
        .map(|_| rng.next() % pages * u64::from(SMALL))
        .collect()
}

/// `n` bytes moved by a READ or WRITE of `size`: anything short is an error here.
fn full(what: &str, n: usize, size: u32) -> Result<(), BenchError> {
    if n == size as usize {
        Ok(())
    } else {
        Err(BenchError::Unexpected(format!(
            "{what} of {size} bytes moved {n}"
        )))
    }
}

fn read4k(w: &mut FuseWire, s: &Sizes, samples: &mut Samples) -> Result<(), BenchError> {
    let offsets = random_offsets(s);
    with_data_file(w, |w, node, fh| {
        for &offset in &offsets[..WARMUP] {
            full("READ", w.read(node, fh, offset, SMALL)?, SMALL)?;
        }
        let (rate, latencies) = timed(s.random_ops, |i| {
            full("READ", w.read(node, fh, offsets[WARMUP + i], SMALL)?, SMALL)
        })?;
        samples.push("fuse_read4k_ops_per_s", rate);
        samples.push_latencies(["fuse_read4k_p50_us", "fuse_read4k_p99_us"], latencies);
        Ok(())
    })
}

/// 4 KiB READs at the same random offsets as [`read4k`], 16 then 64 in flight.
fn read4k_in_flight(w: &mut FuseWire, s: &Sizes, samples: &mut Samples) -> Result<(), BenchError> {
    let offsets = random_offsets(s);
    with_data_file(w, |w, node, fh| {
        w.reads_in_flight(node, fh, &offsets[..WARMUP], SMALL, 16)?;
        let runs = [
            (
                16,
                "fuse_read4k_qd16_ops_per_s",
                "fuse_read4k_qd16_p50_us",
                "fuse_read4k_qd16_p99_us",
            ),
            (
                64,
                "fuse_read4k_qd64_ops_per_s",
                "fuse_read4k_qd64_p50_us",
                "fuse_read4k_qd64_p99_us",
            ),
        ];
        for (depth, rate, p50, p99) in runs {
            let (elapsed, latencies) =
                w.reads_in_flight(node, fh, &offsets[WARMUP..], SMALL, depth)?;
            samples.push(rate, latencies.len() as f64 / elapsed.as_secs_f64());
            samples.push_latencies([p50, p99], latencies);
        }
        Ok(())
    })
}

fn write4k(w: &mut FuseWire, s: &Sizes, samples: &mut Samples) -> Result<(), BenchError> {
    let offsets = random_offsets(s);
    with_data_file(w, |w, node, fh| {
        for &offset in &offsets[..WARMUP] {
            full("WRITE", w.write(node, fh, offset, SMALL)?, SMALL)?;
        }
        let (rate, latencies) = timed(s.random_ops, |i| {
            full(
                "WRITE",
                w.write(node, fh, offsets[WARMUP + i], SMALL)?,
                SMALL,
            )
        })?;
        samples.push("fuse_write4k_ops_per_s", rate);
        samples.push_latencies(["fuse_write4k_p50_us", "fuse_write4k_p99_us"], latencies);
        Ok(())
    })
}

/// Offset of the `i`th 1 MiB request: through the file, wrapping at its end.
fn seq_offset(s: &Sizes, i: usize) -> u64 {
    i as u64 % (s.data_file / u64::from(BIG)) * u64::from(BIG)
}

fn seq_read(w: &mut FuseWire, s: &Sizes, samples: &mut Samples) -> Result<(), BenchError> {
    with_data_file(w, |w, node, fh| {
        full("READ", w.read(node, fh, 0, BIG)?, BIG)?;
        let (rate, latencies) = timed(s.seq_requests, |i| {
            full("READ", w.read(node, fh, seq_offset(s, i), BIG)?, BIG)
        })?;
        samples.push("fuse_seq_read_gbps", rate * f64::from(BIG) / 1e9);
        samples.push_latencies(["fuse_seq_read_p50_us", "fuse_seq_read_p99_us"], latencies);
        Ok(())
    })
}

fn seq_write(w: &mut FuseWire, s: &Sizes, samples: &mut Samples) -> Result<(), BenchError> {
    with_data_file(w, |w, node, fh| {
        full("WRITE", w.write(node, fh, 0, BIG)?, BIG)?;
        let (rate, latencies) = timed(s.seq_requests, |i| {
            full("WRITE", w.write(node, fh, seq_offset(s, i), BIG)?, BIG)
        })?;
        samples.push("fuse_seq_write_gbps", rate * f64::from(BIG) / 1e9);
        let keys = ["fuse_seq_write_p50_us", "fuse_seq_write_p99_us"];
        samples.push_latencies(keys, latencies);
        Ok(())
    })
}

/// A fixed-seed xorshift64: the same offsets for every daemon and every run.
pub(super) struct XorShift(pub(super) u64);

impl XorShift {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
