//! `vhost-dax bench --quick --json` runs and reports every documented key sanely.

mod common;

use std::process::Command;

/// The keys the README documents for this build.
const KEYS: &[&str] = &[
    "pmem_flush_qd1_per_s",
    "pmem_flush_qd1_p50_us",
    "pmem_flush_qd1_p99_us",
    "pmem_flush_qd64_per_s",
    "pmem_syncs_qd64",
    "pmem_requests_qd64",
    "ledger_ops_per_s",
];

#[test]
fn quick_json_bench_reports_every_key_with_a_sane_value() {
    let out = Command::new(common::binary())
        .args(["bench", "--quick", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    assert!(
        stderr.contains("bench: pmem flush"),
        "no progress lines: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in KEYS {
        let value = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} missing: {report}"));
        assert!(value.is_finite() && value > 0.0, "{key} = {value}");
        let detail = &report["detail"][key];
        assert!(
            detail["min"].as_f64().unwrap() <= value && value <= detail["max"].as_f64().unwrap()
        );
    }
    // Group commit: 64 flushes in flight never need 64 syncs.
    assert!(
        report["pmem_syncs_qd64"].as_f64().unwrap()
            < report["pmem_requests_qd64"].as_f64().unwrap()
    );
    assert!(report["machine"]["cores"].as_str().is_some());
}
