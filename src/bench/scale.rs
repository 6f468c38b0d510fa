//! Many inodes: LOOKUP of 10 000, 100 000 (and, with `--scale 1000000`, 1 000 000)
//! files without FORGET, on a fresh daemon each time, with inodes held by `O_PATH`
//! descriptor (`never`) and by file handle (`prefer`), ours and virtiofsd's; after the
//! lookups, the daemon's open descriptors and resident memory are read from `/proc`.
//!
//! Keys (`scale_SIZE_MODE_METRIC`): `lookups_per_s`, the rate of the one pass of LOOKUPs;
//! `fds`, the daemon's open descriptors after it; `rss_mib`, its resident set then;
//! `known`, how many of the lookups succeeded (SIZE unless the daemon ran out of
//! descriptors: the pass stops at the first EMFILE or ENFILE). The peer reports the same
//! keys, run with `--inode-file-handles=never` and `=prefer` (its default).

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use super::fuse::{Session, Share as FuseShare, Target};
use super::{BenchError, Samples, Scratch};
use crate::fuse::abi::ROOT_ID;

/// Every key the section may report, ours and the peer's (see README).
pub const SCALE_KEYS: &[&str] = &[
    "scale_10k_never_lookups_per_s",
    "scale_10k_never_fds",
    "scale_10k_never_rss_mib",
    "scale_10k_never_known",
    "scale_10k_prefer_lookups_per_s",
    "scale_10k_prefer_fds",
    "scale_10k_prefer_rss_mib",
    "scale_10k_prefer_known",
    "scale_100k_never_lookups_per_s",
    "scale_100k_never_fds",
    "scale_100k_never_rss_mib",
    "scale_100k_never_known",
    "scale_100k_prefer_lookups_per_s",
    "scale_100k_prefer_fds",
    "scale_100k_prefer_rss_mib",
    "scale_100k_prefer_known",
    "scale_1m_never_lookups_per_s",
    "scale_1m_never_fds",
    "scale_1m_never_rss_mib",
    "scale_1m_never_known",
    "scale_1m_prefer_lookups_per_s",
    "scale_1m_prefer_fds",
    "scale_1m_prefer_rss_mib",
    "scale_1m_prefer_known",
];

/// Files per directory of the scale tree.
const PER_DIR: usize = 10_000;

/// The sizes measured, as (key part, files).
const SIZES: [(&str, usize); 3] = [("10k", 10_000), ("100k", 100_000), ("1m", 1_000_000)];

/// The inode modes measured, by `--inode-file-handles` name.
pub(super) const MODES: [&str; 2] = ["never", "prefer"];

const METRICS: [&str; 4] = ["lookups_per_s", "fds", "rss_mib", "known"];

/// The key of (size index, mode index, metric index), from [`SCALE_KEYS`].
fn key(size: usize, mode: usize, metric: usize) -> &'static str {
    SCALE_KEYS[(size * MODES.len() + mode) * METRICS.len() + metric]
}

/// Largest size a run measures: 10 000 with `--quick`, 100 000 by default, or what
/// `--scale` asks for (one of 10 000, 100 000, 1 000 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleSizes {
    largest: usize,
}

/// A `--scale` value that is not a measured size.
#[derive(Debug, thiserror::Error)]
#[error("--scale takes 10000, 100000 or 1000000, not `{0}`")]
pub struct ScaleError(String);

impl ScaleSizes {
    /// The default for a run: 10 000 files with `quick`, else 100 000.
    pub fn default_for(quick: bool) -> Self {
        Self {
            largest: if quick { 10_000 } else { 100_000 },
        }
    }

    /// `--scale N`: measure every size up to N.
    pub fn parse(text: &str) -> Result<Self, ScaleError> {
        let n: usize = text
            .replace('_', "")
            .parse()
            .map_err(|_| ScaleError(text.into()))?;
        if SIZES.iter().any(|&(_, s)| s == n) {
            Ok(Self { largest: n })
        } else {
            Err(ScaleError(text.into()))
        }
    }

    /// The largest size.
    pub fn largest(self) -> usize {
        self.largest
    }

    fn measured(self) -> impl Iterator<Item = (usize, usize)> {
        SIZES
            .iter()
            .enumerate()
            .filter(move |(_, (_, n))| *n <= self.largest)
            .map(|(i, &(_, n))| (i, n))
    }

    pub(super) fn parameters(self) -> [(&'static str, Value); 2] {
        [
            ("scale_largest", json!(self.largest)),
            ("scale_files_per_dir", json!(PER_DIR)),
        ]
    }
}

/// Builds the scale tree, `share/scale/dNNN/fNNNNN` ([`PER_DIR`] files a directory):
/// `n` empty files.
pub(super) fn build_tree(share: &Path, n: usize) -> Result<(), BenchError> {
    {
        let root = share.join("scale");
        for d in 0..n.div_ceil(PER_DIR) {
            let dir = root.join(dir_name(d));
            std::fs::create_dir_all(&dir)?;
            for f in 0..PER_DIR.min(n - d * PER_DIR) {
                std::fs::File::create(dir.join(file_name(f)))?;
            }
        }
    }
    Ok(())
}

fn dir_name(d: usize) -> String {
    format!("d{d:03}")
}

fn file_name(f: usize) -> String {
    format!("f{f:05}")
}

/// What one pass found.
struct Pass {
    known: usize,
    per_s: f64,
}

/// LOOKUPs of the first `n` files of the tree, stopping at the first EMFILE or ENFILE.
fn lookup_pass(session: &mut Session, n: usize) -> Result<Pass, BenchError> {
    let scale = session.wire.lookup(ROOT_ID, b"scale")?;
    let started = Instant::now();
    let mut known = 0;
    'dirs: for d in 0..n.div_ceil(PER_DIR) {
        let dir = match session.wire.lookup(scale, dir_name(d).as_bytes()) {
            Ok(dir) => dir,
            Err(e) if out_of_files(&e) => break,
            Err(e) => return Err(e),
        };
        for f in 0..PER_DIR.min(n - d * PER_DIR) {
            match session.wire.lookup(dir, file_name(f).as_bytes()) {
                Ok(_) => known += 1,
                Err(e) if out_of_files(&e) => break 'dirs,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Pass {
        known,
        per_s: known as f64 / started.elapsed().as_secs_f64(),
    })
}

fn out_of_files(e: &BenchError) -> bool {
    matches!(e, BenchError::Fuse { errno, .. } if *errno == libc::EMFILE || *errno == libc::ENFILE)
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> Result<usize, BenchError> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// Resident set of process `pid`, MiB.
fn rss_mib(pid: u32) -> Result<f64, BenchError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u32>().ok())
        .ok_or_else(|| BenchError::Unexpected(format!("no VmRSS for process {pid}")))?;
    Ok(f64::from(kib) / 1024.0)
}

/// Every size on `target` in both modes, into `samples`; the progress line of each.
/// Returns, for each mode, whether the daemon held the inodes by handle at the largest
/// size (its descriptors stayed under half the files known).
pub(super) fn measure(
    target: &Target,
    scratch: &Scratch,
    share: &FuseShare,
    sizes: ScaleSizes,
    samples: &mut Samples,
    progress: &mut dyn FnMut(&str),
) -> Result<[bool; 2], BenchError> {
    let mut by_handle = [false; 2];
    for (size, n) in sizes.measured() {
        for (mode, name) in MODES.iter().enumerate() {
            progress(&format!(
                "scale: {} LOOKUPs without FORGET, {}, inode-file-handles={name}",
                n, target.name
            ));
            let mut extra = vec![format!("--inode-file-handles={name}")];
            if target.is_ours() {
                // The default cap (1,000,000 nodes) would stop the 1m pass just short:
                // the directories are nodes too.
                extra.push(format!("--max-inodes={}", n + n / PER_DIR + 16));
            }
            let mut session = Session::start_with(target, scratch, share, 0, &extra)?;
            let pass = lookup_pass(&mut session, n)?;
            let pid = session.pid();
            let fds = open_fds(pid)?;
            samples.push(key(size, mode, 0), pass.per_s);
            samples.push(key(size, mode, 1), fds as f64);
            samples.push(key(size, mode, 2), rss_mib(pid)?);
            samples.push(key(size, mode, 3), pass.known as f64);
            by_handle[mode] = pass.known > 0 && fds < pass.known / 2;
            session.stop()?;
        }
    }
    Ok(by_handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_size_mode_metric() {
        assert_eq!(SCALE_KEYS.len(), SIZES.len() * MODES.len() * METRICS.len());
        assert_eq!(key(0, 0, 0), "scale_10k_never_lookups_per_s");
        assert_eq!(key(1, 1, 2), "scale_100k_prefer_rss_mib");
        assert_eq!(key(2, 1, 3), "scale_1m_prefer_known");
    }

    #[test]
    fn scale_takes_the_measured_sizes_only() {
        assert_eq!(ScaleSizes::parse("1000000").unwrap().largest(), 1_000_000);
        assert_eq!(ScaleSizes::parse("100_000").unwrap().largest(), 100_000);
        assert!(ScaleSizes::parse("5000").is_err());
        assert!(ScaleSizes::parse("lots").is_err());
        let quick: Vec<_> = ScaleSizes::default_for(true).measured().collect();
        assert_eq!(quick, [(0, 10_000)]);
        assert_eq!(ScaleSizes::default_for(false).measured().count(), 2);
    }
}
