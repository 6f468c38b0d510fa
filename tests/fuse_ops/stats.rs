//! Every fs device can have a control socket: `vhost-dax stats` reads its FUSE counters
//! by queue and opcode, for people and for Prometheus.

use std::process::Command;

use super::support::*;

fn stats(control: &std::path::Path, format: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vhost-dax"))
        .arg("stats")
        .arg(control)
        .args(format)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn stats_count_requests_and_errors_by_queue_and_opcode() {
    let dir = crate::common::TempDir::new("fuse-stats-ctl");
    let control = dir.join("fs.control");
    let f = start(
        "fuse-stats",
        &["--control-socket", control.to_str().unwrap()],
    );
    std::fs::write(f.host("a"), b"A").unwrap();
    for _ in 0..5 {
        f.c.lookup(ROOT, b"a").unwrap();
    }
    assert_eq!(f.c.lookup(ROOT, b"missing").map(drop), Err(libc::ENOENT));

    let answer: serde_json::Value = serde_json::from_str(&stats(&control, &["--json"])).unwrap();
    let queue1 = &answer["fuse"]["queues"][1];
    assert_eq!(queue1["queue"], 1);
    let lookup = queue1["ops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["op"] == "lookup")
        .unwrap_or_else(|| panic!("no lookup row: {answer}"));
    assert_eq!(
        (lookup["requests"].as_u64(), lookup["errors"].as_u64()),
        (Some(6), Some(1))
    );
    assert!(lookup["p99_us"].as_u64().unwrap() >= lookup["p50_us"].as_u64().unwrap());
    assert!(
        answer["stats"].is_null(),
        "no window, no ledger counters: {answer}"
    );

    let text = stats(&control, &["--prometheus"]);
    let needle = format!(
        "vhost_dax_fuse_requests_total{{control=\"{}\",queue=\"1\",op=\"lookup\"}} 6",
        control.display()
    );
    assert!(text.contains(&needle), "{text}");
    let table = stats(&control, &[]);
    assert!(
        table.contains("lookup") && table.contains("DAX window: none"),
        "{table}"
    );

    // Pins need a window: refused, not pretended.
    let mut client = vhost_dax::control::client::ControlClient::connect(
        &control,
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let refused = client.pin(0, 4096, "test").unwrap_err();
    assert_eq!(refused.errno(), Some(libc::ENODEV), "{refused}");
}
