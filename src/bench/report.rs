//! Rendering a [`BenchReport`]: a readable table, or one JSON object with stable keys.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::fuse::RATIO_KEYS;
use super::{BenchReport, Figure, PeerOutcome};

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

fn medians(results: &BTreeMap<&'static str, Figure>, object: &mut Map<String, Value>) {
    for (key, figure) in results {
        object.insert((*key).to_string(), json!(figure.median));
    }
    object.insert("detail".into(), json!(results));
}

/// The report as one JSON object: every key's median at the top level, `detail` with
/// median/min/max, `machine`, `parameters`, and `peer.NAME` with the peer's FUSE keys,
/// its `detail` and `ratio` (or `absent` / `failed` and why).
pub fn json(report: &BenchReport) -> Value {
    let mut object = Map::new();
    medians(&report.results, &mut object);
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

/// A number with as many decimals as its size deserves.
fn num(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The report as a table: ours (median, min, max) and, when a peer ran, its median and
/// the ratio ours / theirs for the rates.
pub fn table(report: &BenchReport) -> String {
    let ran = report
        .peers
        .iter()
        .find_map(|(name, outcome)| match outcome {
            PeerOutcome::Ran(run) => Some((*name, run)),
            _ => None,
        });
    let ratios = ran.map(|(_, run)| ratios(&report.results, &run.results));
    let mut out = format!(
        "{:<32} {:>10} {:>10} {:>10}",
        "figure", "median", "min", "max"
    );
    if let Some((name, _)) = ran {
        out.push_str(&format!(" {name:>10} {:>7}", "ratio"));
    }
    out.push('\n');
    for (key, f) in &report.results {
        out.push_str(&format!(
            "{key:<32} {:>10} {:>10} {:>10}",
            num(f.median),
            num(f.min),
            num(f.max)
        ));
        if let (Some((_, run)), Some(ratios)) = (ran, &ratios) {
            if let Some(theirs) = run.results.get(key) {
                out.push_str(&format!(" {:>10}", num(theirs.median)));
            }
            if let Some(ratio) = ratios.get(key) {
                out.push_str(&format!(" {ratio:>7.2}"));
            }
        }
        out.push('\n');
    }
    for (name, outcome) in &report.peers {
        match outcome {
            PeerOutcome::Ran(run) => out.push_str(&format!(
                "{name}: {} ({}); ratio = vhost-dax / {name}, above 1 vhost-dax is faster\n",
                run.version,
                run.path.display()
            )),
            PeerOutcome::Absent(reason) => out.push_str(&format!("{name}: absent, {reason}\n")),
            PeerOutcome::Failed(reason) => out.push_str(&format!("{name}: failed, {reason}\n")),
        }
    }
    let join = |map: &BTreeMap<&'static str, String>| {
        map.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    out.push_str(&format!("machine: {}\n", join(&report.machine)));
    out.push_str(&format!("parameters: {}\n", join(&report.parameters)));
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::PeerRun;
    use super::*;

    fn figure(median: f64) -> Figure {
        Figure {
            median,
            min: median / 2.0,
            max: median * 2.0,
        }
    }

    fn report(peer: PeerOutcome) -> BenchReport {
        BenchReport {
            results: BTreeMap::from([
                ("fuse_getattr_ops_per_s", figure(300.0)),
                ("fuse_getattr_p50_us", figure(5.0)),
                ("ledger_ops_per_s", figure(7.0)),
            ]),
            machine: BTreeMap::from([("cores", "2".to_string())]),
            parameters: BTreeMap::from([("quick", "true".to_string())]),
            peers: BTreeMap::from([("virtiofsd", peer)]),
        }
    }

    #[test]
    fn json_has_medians_details_and_the_peer_with_ratios() {
        let run = PeerRun {
            path: PathBuf::from("/usr/bin/virtiofsd"),
            version: "virtiofsd 1.14.0".into(),
            results: BTreeMap::from([
                ("fuse_getattr_ops_per_s", figure(100.0)),
                ("fuse_getattr_p50_us", figure(10.0)),
            ]),
        };
        let v = json(&report(PeerOutcome::Ran(run)));
        assert_eq!(v["fuse_getattr_ops_per_s"], 300.0);
        assert_eq!(v["detail"]["ledger_ops_per_s"]["max"], 14.0);
        assert_eq!(v["machine"]["cores"], "2");
        let peer = &v["peer"]["virtiofsd"];
        assert_eq!(peer["fuse_getattr_ops_per_s"], 100.0);
        assert_eq!(peer["detail"]["fuse_getattr_p50_us"]["min"], 5.0);
        assert_eq!(peer["ratio"]["fuse_getattr_ops_per_s"], 3.0);
        // Latencies are not ratios.
        assert!(peer["ratio"].get("fuse_getattr_p50_us").is_none());
        let t = table(&report(PeerOutcome::Absent("not found on PATH".into())));
        assert!(t.contains("virtiofsd: absent, not found on PATH\n"), "{t}");
    }

    #[test]
    fn an_absent_peer_says_why() {
        let v = json(&report(PeerOutcome::Absent("not found on PATH".into())));
        assert_eq!(v["peer"]["virtiofsd"]["absent"], "not found on PATH");
        let v = json(&report(PeerOutcome::Failed("INIT refused".into())));
        assert_eq!(v["peer"]["virtiofsd"]["failed"], "INIT refused");
    }
}
