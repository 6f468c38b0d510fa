//! Rendering a [`BenchReport`]: a table grouped by section, one JSON object with stable
//! keys, the change against an earlier run's JSON, and an SVG chart of the ratios.

mod baseline;
mod chart;
mod figure_kind;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::fuse::RATIO_KEYS;
use super::{BenchReport, Figure, PeerOutcome, PeerRun};

pub use baseline::{Baseline, BaselineError, compare};
pub use chart::chart_svg;
pub use figure_kind::{Better, FigureKind, Section};

/// The JSON layout's version: 2 added `schema_version`, `timestamp`, `commit`,
/// `version` at the top, and typed `machine` and `parameters` (numbers, not strings).
pub const SCHEMA_VERSION: u64 = 2;

/// The commit the binary was built from (`-dirty` with local changes), if known.
pub fn commit() -> &'static str {
    option_env!("VHOST_DAX_COMMIT").unwrap_or("unknown")
}

/// The commit as people quote it: 12 hex digits, and `-dirty` if it is.
fn short_commit() -> String {
    let full = commit();
    match full.split_once('-') {
        Some((hash, rest)) => format!("{}-{rest}", &hash[..hash.len().min(12)]),
        None => full[..full.len().min(12)].to_string(),
    }
}

/// ours / theirs for every rate both sides measured.
pub(super) fn ratios(
    ours: &BTreeMap<&'static str, Figure>,
    theirs: &BTreeMap<&'static str, Figure>,
) -> BTreeMap<&'static str, f64> {
    RATIO_KEYS
        .iter()
        .filter_map(|&key| {
            let (a, b) = (ours.get(key)?.median, theirs.get(key)?.median);
            (b > 0.0).then_some((key, a / b))
        })
        .collect()
}

/// The peer that ran, if one did.
fn peer_run(report: &BenchReport) -> Option<(&'static str, &PeerRun)> {
    report
        .peers
        .iter()
        .find_map(|(name, outcome)| match outcome {
            PeerOutcome::Ran(run) => Some((*name, run)),
            _ => None,
        })
}

/// The window's sequential read over FUSE READ of the same file, when both ran.
pub fn dax_read_ratio(results: &BTreeMap<&'static str, Figure>) -> Option<f64> {
    median_ratio(results, "dax_seq_read_gbps", "dax_fuse_seq_read_gbps")
}

/// The window's random 4 KiB reads per second over FUSE READ's of the same file, when
/// both ran.
pub fn dax_read4k_ratio(results: &BTreeMap<&'static str, Figure>) -> Option<f64> {
    median_ratio(results, "dax_read4k_ops_per_s", "dax_fuse_read4k_ops_per_s")
}

/// A 1 MiB FUSE READ's p50 latency over a 1 MiB window read's: [`dax_read_ratio`] from
/// the medians.
pub fn dax_seq_read_p50_ratio(results: &BTreeMap<&'static str, Figure>) -> Option<f64> {
    median_ratio(results, "dax_fuse_seq_read_p50_us", "dax_seq_read_p50_us")
}

/// A random 4 KiB FUSE READ's p50 latency over a window read's: the same comparison as
/// [`dax_read4k_ratio`] from the latencies, which a burst of other load on the machine
/// moves far less than a loop's wall time.
pub fn dax_read4k_p50_ratio(results: &BTreeMap<&'static str, Figure>) -> Option<f64> {
    median_ratio(results, "dax_fuse_read4k_p50_us", "dax_read4k_p50_us")
}

/// A SETUPMAPPING + REMOVEMAPPING pair's p50 over its floor's (a socket round trip and a
/// map/unmap of the same 2 MiB, measured in the same run), when both ran.
pub fn dax_map_floor_ratio(results: &BTreeMap<&'static str, Figure>) -> Option<f64> {
    median_ratio(results, "dax_map_unmap_p50_us", "dax_map_floor_p50_us")
}

/// `over`'s median / `under`'s, when both ran and `under`'s is positive.
fn median_ratio(results: &BTreeMap<&'static str, Figure>, over: &str, under: &str) -> Option<f64> {
    let a = results.get(over)?.median;
    let b = results.get(under)?.median;
    (b > 0.0).then_some(a / b)
}

/// A depth-1 FLUSH's p50 over a bare `fdatasync`'s of the same file, when both ran: what
/// the daemon and the round trip add to the sync itself.
pub fn pmem_flush_overhead(results: &BTreeMap<&'static str, Figure>) -> Option<f64> {
    let flush = results.get("pmem_flush_qd1_p50_us")?.median;
    let sync = results.get("pmem_fdatasync_p50_us")?.median;
    (sync > 0.0).then_some(flush / sync)
}

fn medians(results: &BTreeMap<&'static str, Figure>, object: &mut Map<String, Value>) {
    for (key, figure) in results {
        object.insert((*key).to_string(), json!(figure.median));
    }
    object.insert("detail".into(), json!(results));
}

/// The report as one JSON object: `schema_version`, `timestamp`, `version`, `commit`;
/// every key's median at the top level, `detail` with median/min/max, `machine`,
/// `parameters`, and `peer.NAME` with the peer's FUSE keys, its `detail` and `ratio` (or
/// `absent` / `failed` and why).
pub fn json(report: &BenchReport) -> Value {
    let mut object = Map::new();
    object.insert("schema_version".into(), json!(SCHEMA_VERSION));
    object.insert("timestamp".into(), json!(report.timestamp));
    object.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    object.insert("commit".into(), json!(commit()));
    medians(&report.results, &mut object);
    if let Some(ratio) = dax_map_floor_ratio(&report.results) {
        object.insert("dax_map_floor_ratio".into(), json!(ratio));
    }
    if let Some(ratio) = dax_read_ratio(&report.results) {
        object.insert("dax_read_ratio".into(), json!(ratio));
    }
    if let Some(ratio) = dax_seq_read_p50_ratio(&report.results) {
        object.insert("dax_seq_read_p50_ratio".into(), json!(ratio));
    }
    if let Some(ratio) = dax_read4k_ratio(&report.results) {
        object.insert("dax_read4k_ratio".into(), json!(ratio));
    }
    if let Some(ratio) = dax_read4k_p50_ratio(&report.results) {
        object.insert("dax_read4k_p50_ratio".into(), json!(ratio));
    }
    if let Some(ratio) = pmem_flush_overhead(&report.results) {
        object.insert("pmem_flush_overhead_ratio".into(), json!(ratio));
    }
    object.insert("machine".into(), json!(report.machine));
    object.insert("parameters".into(), json!(report.parameters));
    let mut peers = Map::new();
    for (name, outcome) in &report.peers {
        let value = match outcome {
            PeerOutcome::Ran(run) => {
                let mut peer = Map::new();
                medians(&run.results, &mut peer);
                peer.insert("path".into(), json!(run.path.display().to_string()));
                peer.insert("version".into(), json!(run.version));
                peer.insert("ratio".into(), json!(ratios(&report.results, &run.results)));
                Value::Object(peer)
            }
            PeerOutcome::Absent(reason) => json!({ "absent": reason }),
            PeerOutcome::Failed(reason) => json!({ "failed": reason }),
        };
        peers.insert((*name).to_string(), value);
    }
    object.insert("peer".into(), Value::Object(peers));
    Value::Object(object)
}

/// A number with three significant digits, thousands grouped: 90,700 / 10.2 / 0.153.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let digits = format!("{a:.0}");
        let first = digits.len() % 3;
        let mut grouped = String::from(if v < 0.0 { "-" } else { "" });
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (i + 3 - first) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        grouped
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The report as a table: one block per section, each figure with its unit, median and
/// range; in the FUSE block the peer's median and, for rates, the ratio ours / theirs.
pub fn table(report: &BenchReport) -> String {
    let peer = peer_run(report);
    let ratios = peer.map(|(_, run)| ratios(&report.results, &run.results));
    let mut out = String::new();
    for section in Section::ALL {
        let mut rows: Vec<_> = report
            .results
            .iter()
            .filter(|(key, _)| FigureKind::of(key).section == Some(section))
            .collect();
        if rows.is_empty() {
            continue;
        }
        rows.sort_by_key(|(key, _)| FigureKind::of(key).row_order());
        let _ = write!(
            out,
            "{}\n  {:<24} {:<9} {:>10}  {:<21}",
            section.title(),
            "",
            "unit",
            "vhost-dax",
            "(min … max)"
        );
        let with_peer = matches!(section, Section::Fuse | Section::Scale) && peer.is_some();
        if let (true, Some((name, _))) = (with_peer, peer) {
            let _ = write!(out, " {name:>10} {:>6}", "ratio");
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        for (key, figure) in rows {
            let kind = FigureKind::of(key);
            let range = format!("({} … {})", num(figure.min), num(figure.max));
            let _ = write!(
                out,
                "  {:<24} {:<9} {:>10}  {range:<21}",
                kind.label.replace('_', " "),
                kind.unit,
                num(figure.median)
            );
            if let (true, Some((_, run))) = (with_peer, peer) {
                let theirs = run
                    .results
                    .get(key)
                    .map_or(String::new(), |f| num(f.median));
                let _ = write!(out, " {theirs:>10}");
                if let Some(ratio) = ratios.as_ref().and_then(|r| r.get(key)) {
                    let _ = write!(out, " {ratio:>6.2}");
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
        }
        if section == Section::Dax {
            if let Some(ratio) = dax_map_floor_ratio(&report.results) {
                let _ = writeln!(
                    out,
                    "  SETUPMAPPING+REMOVEMAPPING p50 / floor p50 (socket round trip + map/unmap): {ratio:.2}×"
                );
            }
            if let Some(ratio) = dax_read_ratio(&report.results) {
                let _ = writeln!(
                    out,
                    "  window / FUSE READ of the same file, 1 MiB in order: {ratio:.2}×"
                );
            }
            if let Some(ratio) = dax_seq_read_p50_ratio(&report.results) {
                let _ = writeln!(
                    out,
                    "  FUSE READ p50 / window read p50, 1 MiB in order: {ratio:.2}×"
                );
            }
            if let Some(ratio) = dax_read4k_ratio(&report.results) {
                let _ = writeln!(
                    out,
                    "  window / FUSE READ of the same file, 4 KiB at random: {ratio:.1}×"
                );
            }
            if let Some(ratio) = dax_read4k_p50_ratio(&report.results) {
                let _ = writeln!(
                    out,
                    "  FUSE READ p50 / window read p50, 4 KiB at random: {ratio:.1}×"
                );
            }
        }
        if section == Section::Pmem
            && let Some(ratio) = pmem_flush_overhead(&report.results)
        {
            let _ = writeln!(
                out,
                "  FLUSH p50 / bare fdatasync p50 of the same file: {ratio:.2}×"
            );
        }
        out.push('\n');
    }
    for (name, outcome) in &report.peers {
        let _ = match outcome {
            PeerOutcome::Ran(run) => writeln!(
                out,
                "{name}: {} ({}); ratio = vhost-dax / {name}, above 1 vhost-dax is faster",
                run.version,
                run.path.display()
            ),
            PeerOutcome::Absent(reason) => writeln!(out, "{name}: absent, {reason}"),
            PeerOutcome::Failed(reason) => writeln!(out, "{name}: failed, {reason}"),
        };
    }
    let join = |map: &BTreeMap<&'static str, Value>| {
        map.iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k} {s}"),
                other => format!("{k} {other}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "vhost-dax {} (commit {}), {}",
        env!("CARGO_PKG_VERSION"),
        short_commit(),
        report.timestamp
    );
    let _ = writeln!(out, "machine: {}", join(&report.machine));
    let _ = writeln!(out, "parameters: {}", join(&report.parameters));
    out
}

/// `time` as RFC 3339 in UTC, to the second (2026-12-04T18:05:10Z).
pub fn rfc3339_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests;
