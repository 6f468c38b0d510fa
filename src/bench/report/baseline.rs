//! `bench --baseline FILE`: the figures of an earlier run's JSON, and the change of each
//! against this run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{BenchReport, Better, FigureKind, num, peer_run, ratios};

/// How large a change must be before the comparison calls it better or worse: these
/// machines move a figure by a few per cent from run to run.
const NOISE: f64 = 0.05;

/// Why a baseline file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file cannot be read.
    #[error("--baseline {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("--baseline {path}: not JSON ({source})")]
    NotJson {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The file is JSON without a single figure of `bench --json`.
    #[error("--baseline {path}: no bench figures in it (expected the output of bench --json)")]
    NoFigures {
        /// The file.
        path: PathBuf,
    },
}

/// An earlier run: its medians and ratios, and where it came from.
#[derive(Debug, Clone)]
pub struct Baseline {
    path: PathBuf,
    commit: Option<String>,
    timestamp: Option<String>,
    medians: BTreeMap<String, f64>,
    ratios: BTreeMap<String, f64>,
}

impl Baseline {
    /// Reads the output of an earlier `bench --json` (any schema version: the medians
    /// have been top-level keys from the start).
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Baseline::parse(&text, path)
    }

    /// As [`Baseline::load`], from the file's text.
    pub fn parse(text: &str, path: &Path) -> Result<Baseline, BaselineError> {
        let value: Value = serde_json::from_str(text).map_err(|source| BaselineError::NotJson {
            path: path.to_path_buf(),
            source,
        })?;
        let numbers = |v: Option<&Value>| -> BTreeMap<String, f64> {
            v.and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let medians: BTreeMap<String, f64> = numbers(Some(&value))
            .into_iter()
            .filter(|(k, _)| k != "schema_version")
            .collect();
        if medians.is_empty() {
            return Err(BaselineError::NoFigures {
                path: path.to_path_buf(),
            });
        }
        let text_of = |key: &str| value.get(key).and_then(Value::as_str).map(String::from);
        Ok(Baseline {
            path: path.to_path_buf(),
            commit: text_of("commit"),
            timestamp: text_of("timestamp"),
            ratios: numbers(value.pointer("/peer/virtiofsd/ratio")),
            medians,
        })
    }
}

/// One line of the comparison: the change and, beyond the noise, its sense.
fn change(then: f64, now: f64, better: Better) -> String {
    if then <= 0.0 {
        return String::new();
    }
    let delta = now / then - 1.0;
    let sense = match better {
        _ if delta.abs() < NOISE => "",
        Better::Higher if delta > 0.0 => "better",
        Better::Lower if delta < 0.0 => "better",
        Better::Neither => "",
        _ => "worse",
    };
    format!("{:>+7.1}%  {sense}", delta * 100.0)
}

/// Every figure this run shares with `baseline`: then, now, the change; then the
/// ratios against the peer likewise.
pub fn compare(report: &BenchReport, baseline: &Baseline) -> String {
    let mut out = format!(
        "against {} (commit {}, {}); change = now / then - 1, called better or worse beyond {:.0}%\n",
        baseline.path.display(),
        baseline.commit.as_deref().unwrap_or("unknown"),
        baseline.timestamp.as_deref().unwrap_or("no timestamp"),
        NOISE * 100.0
    );
    let mut shared = 0;
    for (key, figure) in &report.results {
        let Some(&then) = baseline.medians.get(*key) else {
            continue;
        };
        shared += 1;
        let kind = FigureKind::of(key);
        let _ = writeln!(
            out,
            "  {:<38} {:<12} {:>10} -> {:>10} {}",
            key,
            kind.unit,
            num(then),
            num(figure.median),
            change(then, figure.median, kind.better)
        );
    }
    if let Some((name, run)) = peer_run(report) {
        for (key, now) in ratios(&report.results, &run.results) {
            let Some(&then) = baseline.ratios.get(key) else {
                continue;
            };
            shared += 1;
            let _ = writeln!(
                out,
                "  {:<38} {:<12} {:>10.2} -> {:>10.2} {}",
                format!("ratio {key}"),
                format!("/{name}"),
                then,
                now,
                change(then, now, Better::Higher)
            );
        }
    }
    if shared == 0 {
        out.push_str("  no figure in common\n");
    }
    out
}
