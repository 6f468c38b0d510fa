use std::path::{Path, PathBuf};

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
            ("dax_seq_read_gbps", figure(24.0)),
            ("dax_fuse_seq_read_gbps", figure(8.0)),
            ("ledger_ops_per_s", figure(7.0)),
        ]),
        machine: BTreeMap::from([("cores", json!(2))]),
        parameters: BTreeMap::from([("quick", json!(true)), ("repeats", json!(3))]),
        peers: BTreeMap::from([("virtiofsd", peer)]),
        timestamp: "2026-12-04T18:00:00Z".into(),
    }
}

fn peer() -> PeerOutcome {
    PeerOutcome::Ran(PeerRun {
        path: PathBuf::from("/usr/bin/virtiofsd"),
        version: "virtiofsd 1.14.0".into(),
        results: BTreeMap::from([
            ("fuse_getattr_ops_per_s", figure(100.0)),
            ("fuse_getattr_p50_us", figure(10.0)),
        ]),
    })
}

#[test]
fn json_has_medians_details_and_the_peer_with_ratios() {
    let v = json(&report(peer()));
    assert_eq!(v["fuse_getattr_ops_per_s"], 300.0);
    assert_eq!(v["detail"]["ledger_ops_per_s"]["max"], 14.0);
    let peer = &v["peer"]["virtiofsd"];
    assert_eq!(peer["fuse_getattr_ops_per_s"], 100.0);
    assert_eq!(peer["detail"]["fuse_getattr_p50_us"]["min"], 5.0);
    assert_eq!(peer["ratio"]["fuse_getattr_ops_per_s"], 3.0);
    // Latencies are not ratios.
    assert!(peer["ratio"].get("fuse_getattr_p50_us").is_none());
    assert_eq!(v["dax_read_ratio"], 3.0);
}

#[test]
fn json_is_typed_and_says_when_and_what_built_it() {
    let v = json(&report(peer()));
    assert_eq!(v["schema_version"], SCHEMA_VERSION);
    assert_eq!(v["timestamp"], "2026-12-04T18:00:00Z");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(v["machine"]["cores"], 2, "a number, not a string");
    assert_eq!(v["parameters"]["quick"], true);
    assert_eq!(v["parameters"]["repeats"], 3);
}

#[test]
fn an_absent_peer_says_why() {
    let v = json(&report(PeerOutcome::Absent("not found on PATH".into())));
    assert_eq!(v["peer"]["virtiofsd"]["absent"], "not found on PATH");
    let v = json(&report(PeerOutcome::Failed("INIT refused".into())));
    assert_eq!(v["peer"]["virtiofsd"]["failed"], "INIT refused");
    let t = table(&report(PeerOutcome::Absent("not found on PATH".into())));
    assert!(t.contains("virtiofsd: absent, not found on PATH\n"), "{t}");
}

#[test]
fn the_table_groups_sections_with_units_and_ratios() {
    let t = table(&report(peer()));
    let fuse = t.find("FUSE over").unwrap();
    let dax = t.find("DAX window").unwrap();
    let ledger = t.find("DAX ledger").unwrap();
    assert!(fuse < dax && dax < ledger, "{t}");
    let getattr = t
        .lines()
        .find(|l| l.trim_start().starts_with("getattr "))
        .unwrap();
    assert!(
        getattr.contains("ops/s") && getattr.ends_with("3.00"),
        "{getattr}"
    );
    let p50 = t.lines().find(|l| l.contains("getattr p50")).unwrap();
    assert!(
        p50.contains("µs") && p50.trim_end().ends_with("10.0"),
        "{p50}"
    );
    assert!(
        t.contains("window / FUSE READ of the same file, 1 MiB in order: 3.00×"),
        "{t}"
    );
    // No p50s and no random reads in this report: no lines for them.
    assert!(!t.contains("p50, 1 MiB"), "{t}");
    assert!(!t.contains("4 KiB at random"), "{t}");
    assert!(t.contains("machine: cores 2\n"), "{t}");
}

#[test]
fn the_flush_overhead_is_flush_over_fdatasync() {
    let mut r = report(peer());
    r.results.insert("pmem_flush_qd1_p50_us", figure(60.0));
    r.results.insert("pmem_fdatasync_p50_us", figure(40.0));
    assert_eq!(json(&r)["pmem_flush_overhead_ratio"], 1.5);
    assert!(table(&r).contains("FLUSH p50 / bare fdatasync p50 of the same file: 1.50×"));
    r.results.remove("pmem_fdatasync_p50_us");
    assert!(json(&r).get("pmem_flush_overhead_ratio").is_none());
}

#[test]
fn the_map_floor_ratio_is_a_pair_over_its_floor() {
    let mut r = report(peer());
    r.results.insert("dax_map_unmap_p50_us", figure(90.0));
    r.results.insert("dax_map_floor_p50_us", figure(60.0));
    assert_eq!(json(&r)["dax_map_floor_ratio"], 1.5);
    assert!(
        table(&r).contains(
            "SETUPMAPPING+REMOVEMAPPING p50 / floor p50 (socket round trip + map/unmap): 1.50×"
        ),
        "{}",
        table(&r)
    );
    r.results.remove("dax_map_floor_p50_us");
    assert!(json(&r).get("dax_map_floor_ratio").is_none());
}

#[test]
fn the_random_read_ratio_is_window_over_fuse_read_per_second() {
    let mut r = report(peer());
    r.results
        .insert("dax_read4k_ops_per_s", figure(2_500_000.0));
    r.results
        .insert("dax_fuse_read4k_ops_per_s", figure(100_000.0));
    assert_eq!(json(&r)["dax_read4k_ratio"], 25.0);
    assert!(
        table(&r).contains("window / FUSE READ of the same file, 4 KiB at random: 25.0×"),
        "{}",
        table(&r)
    );
    r.results.insert("dax_seq_read_p50_us", figure(50.0));
    r.results.insert("dax_fuse_seq_read_p50_us", figure(75.0));
    assert_eq!(json(&r)["dax_seq_read_p50_ratio"], 1.5);
    assert!(table(&r).contains("FUSE READ p50 / window read p50, 1 MiB in order: 1.50×"));
    r.results.insert("dax_read4k_p50_us", figure(0.25));
    r.results.insert("dax_fuse_read4k_p50_us", figure(5.0));
    assert_eq!(json(&r)["dax_read4k_p50_ratio"], 20.0);
    assert!(table(&r).contains("FUSE READ p50 / window read p50, 4 KiB at random: 20.0×"));
    r.results.remove("dax_fuse_read4k_ops_per_s");
    assert!(json(&r).get("dax_read4k_ratio").is_none());
}

#[test]
fn numbers_have_three_significant_digits_and_grouped_thousands() {
    assert_eq!(num(90_712.4), "90,712");
    assert_eq!(num(1_234_567.0), "1,234,567");
    assert_eq!(num(1000.0), "1,000");
    assert_eq!(num(153.4), "153");
    assert_eq!(num(10.24), "10.2");
    assert_eq!(num(2.345), "2.35");
    assert_eq!(num(0.1534), "0.153");
}

#[test]
fn timestamps_are_rfc3339_utc() {
    let at = |secs| rfc3339_utc(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(1_796_407_510), "2026-12-04T18:05:10Z");
}

#[test]
fn a_baseline_gives_the_change_and_its_sense() {
    let earlier = r#"{"schema_version":2,"commit":"abc123","timestamp":"2026-12-01T00:00:00Z",
        "fuse_getattr_ops_per_s":200.0,"fuse_getattr_p50_us":5.0,"ledger_ops_per_s":7.0,
        "peer":{"virtiofsd":{"ratio":{"fuse_getattr_ops_per_s":2.0}}}}"#;
    let baseline = Baseline::parse(earlier, Path::new("old.json")).unwrap();
    let c = baseline::compare(&report(peer()), &baseline);
    assert!(
        c.starts_with("against old.json (commit abc123, 2026-12-01T00:00:00Z)"),
        "{c}"
    );
    let line = |key: &str| c.lines().find(|l| l.trim_start().starts_with(key)).unwrap();
    assert!(
        line("fuse_getattr_ops_per_s").contains("+50.0%  better"),
        "{c}"
    );
    assert!(
        line("fuse_getattr_p50_us").trim_end().ends_with("+0.0%"),
        "{c}"
    );
    assert!(
        line("ratio fuse_getattr_ops_per_s").contains("+50.0%  better"),
        "{c}"
    );
    assert!(!c.contains("dax_seq_read_gbps"), "not in the baseline: {c}");
}

#[test]
fn a_slower_latency_is_worse_and_noise_is_neither() {
    let earlier = r#"{"fuse_getattr_p50_us":2.5,"ledger_ops_per_s":6.9}"#;
    let baseline = Baseline::parse(earlier, Path::new("b.json")).unwrap();
    let c = baseline::compare(&report(PeerOutcome::Absent("x".into())), &baseline);
    let line = |key: &str| c.lines().find(|l| l.trim_start().starts_with(key)).unwrap();
    assert!(
        line("fuse_getattr_p50_us").contains("+100.0%  worse"),
        "{c}"
    );
    assert!(!line("ledger_ops_per_s").contains("better"), "{c}");
}

#[test]
fn a_baseline_that_is_not_bench_json_is_refused_naming_the_flag() {
    let e = Baseline::parse("not json", Path::new("x.json")).unwrap_err();
    assert!(
        e.to_string().starts_with("--baseline x.json: not JSON"),
        "{e}"
    );
    let e = Baseline::parse(r#"{"a":"b"}"#, Path::new("x.json")).unwrap_err();
    assert!(e.to_string().contains("no bench figures"), "{e}");
    let e = Baseline::load(Path::new("/nonexistent/x.json")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("--baseline /nonexistent/x.json: "),
        "{e}"
    );
}

#[test]
fn the_chart_has_a_bar_per_ratio_and_the_line_at_one() {
    let svg = chart_svg(&report(peer()));
    assert!(
        svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
        "{svg}"
    );
    assert!(svg.contains(">getattr / virtiofsd</text>"), "{svg}");
    assert!(svg.contains(">3.00</text>"), "{svg}");
    assert!(svg.contains(">DAX window / FUSE READ</text>"), "{svg}");
    assert!(svg.contains(">1.0</text>"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    let none = chart_svg(&BenchReport {
        results: BTreeMap::new(),
        ..report(PeerOutcome::Absent("x".into()))
    });
    assert!(none.contains("no ratio in this run"), "{none}");
}
