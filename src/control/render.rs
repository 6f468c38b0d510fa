//! A `stats` answer rendered for people (`vhost-dax stats`) and for Prometheus (`vhost-dax
//! stats --prometheus`, the text exposition format, e.g. for node_exporter's textfile
//! collector).

use std::fmt::Write as _;

use serde_json::Value;

/// Ledger fields that describe the present (gauges); the others only grow (counters).
const GAUGES: &[&str] = &[
    "window_size",
    "chunk_size",
    "chunks",
    "mapped_bytes",
    "live_mappings",
    "mapped_chunks",
    "live_pins",
    "pinned_chunks",
    "draining_chunks",
    "backings_with_mappings",
    "control_connections",
    "control_pins",
];

/// One `fuse.queues[].ops[]` entry.
struct FuseRow {
    queue: u64,
    op: String,
    requests: u64,
    errors: u64,
    p50_us: u64,
    p99_us: u64,
}

/// A Prometheus metric family of the FUSE rows: name, type, help, the value of a row.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&FuseRow) -> u64,
);

/// The FUSE rows of a `stats` answer.
fn fuse_rows(answer: &Value) -> Vec<FuseRow> {
    let mut rows = Vec::new();
    let queues = answer.pointer("/fuse/queues").and_then(Value::as_array);
    for queue in queues.into_iter().flatten() {
        let q = queue["queue"].as_u64().unwrap_or(0);
        for op in queue["ops"].as_array().into_iter().flatten() {
            let n = |k: &str| op[k].as_u64().unwrap_or(0);
            rows.push(FuseRow {
                queue: q,
                op: op["op"].as_str().unwrap_or("other").to_string(),
                requests: n("requests"),
                errors: n("errors"),
                p50_us: n("p50_us"),
                p99_us: n("p99_us"),
            });
        }
    }
    rows
}

/// The answer as a table: FUSE by queue and opcode, then the window's counters.
pub fn human(answer: &Value) -> String {
    let mut out = String::new();
    let rows = fuse_rows(answer);
    if answer.get("fuse").is_some_and(|f| !f.is_null()) {
        let _ = writeln!(
            out,
            "FUSE requests\n  {:>5}  {:<16} {:>12} {:>10} {:>9} {:>9}",
            "queue", "op", "requests", "errors", "p50 µs", "p99 µs"
        );
        if rows.is_empty() {
            out.push_str("  (none yet)\n");
        }
        for r in &rows {
            let _ = writeln!(
                out,
                "  {:>5}  {:<16} {:>12} {:>10} {:>9} {:>9}",
                r.queue,
                r.op,
                r.requests,
                r.errors,
                format!("<{}", r.p50_us),
                format!("<{}", r.p99_us)
            );
        }
    }
    if let Some(pmem) = answer.get("pmem").and_then(Value::as_object) {
        out.push_str("pmem FLUSH\n");
        for (key, value) in pmem {
            let _ = writeln!(out, "  {key:<24} {value}");
        }
    }
    match answer.get("stats").and_then(Value::as_object) {
        Some(stats) if answer.get("pmem").is_some_and(|p| !p.is_null()) => {
            out.push_str("region ledger\n");
            for (key, value) in stats {
                let _ = writeln!(out, "  {key:<24} {value}");
            }
        }
        Some(stats) => {
            out.push_str("DAX window\n");
            for (key, value) in stats {
                let _ = writeln!(out, "  {key:<24} {value}");
            }
        }
        None => out.push_str("DAX window: none on this device\n"),
    }
    out
}

/// The answer in Prometheus's text format, every sample labelled `control="PATH"`.
pub fn prometheus(answer: &Value, control: &str) -> String {
    let label = control.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    let rows = fuse_rows(answer);
    let families: [Family; 4] = [
        (
            "fuse_requests_total",
            "counter",
            "FUSE requests answered, by queue and opcode.",
            |r| r.requests,
        ),
        (
            "fuse_errors_total",
            "counter",
            "FUSE requests answered with an error.",
            |r| r.errors,
        ),
        (
            "fuse_latency_p50_microseconds",
            "gauge",
            "Median service time (upper bound of its log2 bucket).",
            |r| r.p50_us,
        ),
        (
            "fuse_latency_p99_microseconds",
            "gauge",
            "99th percentile service time (upper bound of its log2 bucket).",
            |r| r.p99_us,
        ),
    ];
    if !rows.is_empty() {
        for (name, kind, help, value) in families {
            let _ = writeln!(
                out,
                "# HELP vhost_dax_{name} {help}\n# TYPE vhost_dax_{name} {kind}"
            );
            for row in &rows {
                let _ = writeln!(
                    out,
                    "vhost_dax_{name}{{control=\"{label}\",queue=\"{}\",op=\"{}\"}} {}",
                    row.queue,
                    row.op,
                    value(row)
                );
            }
        }
    }
    if let Some(pmem) = answer.get("pmem").and_then(Value::as_object) {
        for (key, value) in pmem {
            let Some(v) = value.as_u64() else { continue };
            let _ = writeln!(
                out,
                "# TYPE vhost_dax_pmem_flush_{key}_total counter\n\
                 vhost_dax_pmem_flush_{key}_total{{control=\"{label}\"}} {v}"
            );
        }
    }
    if let Some(stats) = answer.get("stats").and_then(Value::as_object) {
        for (key, value) in stats {
            let Some(v) = value.as_u64() else { continue };
            let (name, kind) = if GAUGES.contains(&key.as_str()) {
                (format!("dax_{key}"), "gauge")
            } else {
                (format!("dax_{key}_total"), "counter")
            };
            let _ = writeln!(
                out,
                "# TYPE vhost_dax_{name} {kind}\nvhost_dax_{name}{{control=\"{label}\"}} {v}"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn answer() -> Value {
        json!({
            "fuse": {"queues": [
                {"queue": 0, "ops": []},
                {"queue": 1, "ops": [
                    {"op": "lookup", "requests": 10, "errors": 2, "p50_us": 8, "p99_us": 64}
                ]}
            ]},
            "stats": {"maps": 3, "live_mappings": 1}
        })
    }

    #[test]
    fn prometheus_text_has_typed_families_and_labels() {
        let text = prometheus(&answer(), "/run/x.ctl");
        assert!(
            text.contains("# TYPE vhost_dax_fuse_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "vhost_dax_fuse_requests_total{control=\"/run/x.ctl\",queue=\"1\",op=\"lookup\"} 10\n"
            ),
            "{text}"
        );
        assert!(text.contains("op=\"lookup\"} 2\n"), "errors: {text}");
        assert!(
            text.contains("vhost_dax_dax_maps_total{control=\"/run/x.ctl\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE vhost_dax_dax_live_mappings gauge\n"),
            "{text}"
        );
    }

    #[test]
    fn the_table_names_queues_and_ops_and_a_missing_window() {
        let text = human(&answer());
        assert!(text.contains("lookup"), "{text}");
        assert!(text.contains("maps"), "{text}");
        let no_window = human(&json!({"fuse": {"queues": []}, "stats": null}));
        assert!(no_window.contains("(none yet)") && no_window.contains("none on this device"));
    }
}
