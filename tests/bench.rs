//! `vhost-dax bench --quick --json` runs and reports every documented key sanely, for our
//! daemon and, when virtiofsd is installed, for it too.

mod common;

use std::process::Command;

use serde_json::Value;

/// The keys the README documents for this build, besides the FUSE ones.
const KEYS: &[&str] = &[
    "pmem_flush_qd1_per_s",
    "pmem_flush_qd1_p50_us",
    "pmem_flush_qd1_p99_us",
    "pmem_flush_qd64_per_s",
    "pmem_fdatasync_p50_us",
    "pmem_fdatasync_p99_us",
    "pmem_syncs_qd64",
    "pmem_requests_qd64",
    "ledger_ops_per_s",
    "dax_map_unmap_per_s",
    "dax_map_unmap_p50_us",
    "dax_map_unmap_p99_us",
    "dax_seq_read_gbps",
    "dax_seq_read_p50_us",
    "dax_fuse_seq_read_gbps",
    "dax_fuse_seq_read_p50_us",
    "dax_read4k_ops_per_s",
    "dax_read4k_p50_us",
    "dax_fuse_read4k_ops_per_s",
    "dax_fuse_read4k_p50_us",
    "dax_truncate_unpinned_us",
    "dax_truncate_after_unpin_us",
];

/// The FUSE keys, ours and the peer's (README, "Benchmarks").
const FUSE_KEYS: &[&str] = &[
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

/// The scale keys a `--quick` run reports, ours and the peer's (10 000 files).
const SCALE_KEYS: &[&str] = &[
    "scale_10k_never_lookups_per_s",
    "scale_10k_never_fds",
    "scale_10k_never_rss_mib",
    "scale_10k_never_known",
    "scale_10k_prefer_lookups_per_s",
    "scale_10k_prefer_fds",
    "scale_10k_prefer_rss_mib",
    "scale_10k_prefer_known",
];

/// The scale figures of one daemon: every key sane; `prefer` learnt every file; held by
/// handle, its descriptors do not grow with the files known, and as root it is.
fn check_scale(object: &Value, by_handle: Option<bool>) {
    check_figures(object, SCALE_KEYS);
    assert!(sane(object, "scale_10k_never_known") <= 10_000.0);
    assert_eq!(sane(object, "scale_10k_prefer_known"), 10_000.0, "{object}");
    if let Some(by_handle) = by_handle {
        if vhost_dax::sys::fs::geteuid() == 0 {
            assert!(by_handle, "root holds inodes by handle with prefer");
        }
        if by_handle {
            assert!(sane(object, "scale_10k_prefer_fds") < 1_000.0, "{object}");
        }
    }
}

/// The rates compared with the peer (`peer.virtiofsd.ratio`).
const RATIO_KEYS: &[&str] = &[
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

fn sane(object: &Value, key: &str) -> f64 {
    let value = object[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing: {object}"));
    assert!(value.is_finite() && value > 0.0, "{key} = {value}");
    value
}

/// Every key present, positive and finite, its median between the recorded extremes.
fn check_figures(object: &Value, keys: &[&str]) {
    for key in keys {
        let value = sane(object, key);
        let detail = &object["detail"][key];
        assert!(
            detail["min"].as_f64().unwrap() <= value && value <= detail["max"].as_f64().unwrap(),
            "{key}: {detail}"
        );
    }
}

#[test]
fn quick_json_bench_reports_every_key_with_a_sane_value() {
    let dir = common::TempDir::new("bench-outputs");
    let (saved, chart) = (dir.join("run.json"), dir.join("ratios.svg"));
    let out = Command::new(common::binary())
        .args(["bench", "--quick", "--json", "--output"])
        .arg(&saved)
        .arg("--chart")
        .arg(&chart)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    assert!(
        stderr.contains("bench: pmem flush") && stderr.contains("bench: fuse lookup+getattr: "),
        "no progress lines: {stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let written: Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    assert_eq!(written, report, "--output holds what --json printed");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("DAX window / FUSE READ"),
        "{svg}"
    );
    assert_eq!(report["schema_version"], 2);
    // The ratios, each the quotient of its two medians.
    for (ratio, over, under) in [
        (
            "dax_read_ratio",
            "dax_seq_read_gbps",
            "dax_fuse_seq_read_gbps",
        ),
        (
            "dax_read4k_ratio",
            "dax_read4k_ops_per_s",
            "dax_fuse_read4k_ops_per_s",
        ),
        (
            "dax_seq_read_p50_ratio",
            "dax_fuse_seq_read_p50_us",
            "dax_seq_read_p50_us",
        ),
        (
            "dax_read4k_p50_ratio",
            "dax_fuse_read4k_p50_us",
            "dax_read4k_p50_us",
        ),
    ] {
        let expected = sane(&report, over) / sane(&report, under);
        let got = sane(&report, ratio);
        assert!((got - expected).abs() <= 1e-9 * expected, "{ratio}: {got}");
    }
    assert!(
        report["pmem_flush_overhead_ratio"]
            .as_f64()
            .is_some_and(|r| r > 0.0)
    );
    assert!(
        report["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    check_figures(&report, KEYS);
    check_figures(&report, FUSE_KEYS);
    let by_handle = report["parameters"]["scale_prefer_by_handle"].as_bool();
    check_scale(
        &report,
        Some(by_handle.expect("parameters.scale_prefer_by_handle")),
    );
    assert_eq!(report["parameters"]["scale_largest"], 10_000);
    // Group commit: 64 flushes in flight never need 64 syncs.
    assert!(
        report["pmem_syncs_qd64"].as_f64().unwrap()
            < report["pmem_requests_qd64"].as_f64().unwrap()
    );
    assert!(report["machine"]["cores"].as_u64().is_some_and(|n| n >= 1));
    assert!(report["machine"]["kernel"].as_str().is_some());
    assert_eq!(report["parameters"]["quick"], true);

    // The peer: absent (not installed here) or measured in full; a found virtiofsd that
    // fails is a failure.
    let peer = &report["peer"]["virtiofsd"];
    if let Some(reason) = peer["absent"].as_str() {
        assert!(!reason.is_empty());
        assert!(peer.get("fuse_getattr_ops_per_s").is_none());
        return;
    }
    assert!(peer.get("failed").is_none(), "virtiofsd failed: {peer}");
    check_figures(peer, FUSE_KEYS);
    check_scale(peer, None);
    assert!(peer["version"].as_str().unwrap().contains("virtiofsd"));
    for key in RATIO_KEYS {
        let ratio = sane(&peer["ratio"], key);
        let expected = sane(&report, key) / sane(peer, key);
        assert!(
            (ratio - expected).abs() <= 1e-9 * expected,
            "{key}: {ratio}"
        );
    }
}

#[test]
fn a_baseline_that_cannot_be_read_fails_before_measuring() {
    let dir = common::TempDir::new("bench-baseline");
    std::fs::write(dir.join("bad.json"), "{\"a\": \"b\"}").unwrap();
    for (file, says) in [
        ("missing.json", "No such file"),
        ("bad.json", "no bench figures"),
    ] {
        let out = Command::new(common::binary())
            .args(["bench", "--quick", "--baseline"])
            .arg(dir.join(file))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("--baseline") && stderr.contains(says),
            "{stderr}"
        );
        assert!(!stderr.contains("bench: "), "measured first: {stderr}");
    }
}

#[test]
fn a_named_peer_that_does_not_exist_fails_the_run_at_once() {
    let out = Command::new(common::binary())
        .args([
            "bench",
            "--quick",
            "--peer",
            "virtiofsd=/nonexistent/virtiofsd",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/nonexistent/virtiofsd"), "{stderr}");
    assert!(!stderr.contains("bench: fuse"), "ran workloads: {stderr}");
}

#[test]
fn a_malformed_peer_is_a_usage_error() {
    let out = Command::new(common::binary())
        .args(["bench", "--peer", "qemu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("virtiofsd=PATH"));
}
