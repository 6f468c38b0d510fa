//! The wire format: one JSON object per line each way.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::dax::{LedgerStats, PinInfo};
use crate::fuse::stats::QueueStats;

/// One request line, as parsed. Unknown fields are refused, so that a misspelt option
/// (`"wiat": true`) is an error rather than silently ignored.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum Request {
    /// `{"op":"pin","offset":O,"len":L[,"wait":B][,"holder":"name"]}`
    Pin {
        offset: u64,
        len: u64,
        #[serde(default)]
        wait: bool,
        #[serde(default)]
        holder: Option<String>,
    },
    /// `{"op":"unpin","pin":ID}`
    Unpin { pin: u64 },
    // The ops without arguments are empty struct variants: unit variants would accept
    // (and ignore) unknown fields.
    /// `{"op":"stats"}`
    Stats {},
    /// `{"op":"mappings"}`
    Mappings {},
    /// `{"op":"pins"}`
    Pins {},
}

/// The `fuse` part of a `stats` answer: per queue (0 is hiprio), the opcodes seen with
/// their requests, errors and p50/p99 service times in µs.
pub(super) fn fuse_stats(queues: &[QueueStats]) -> Value {
    let queues: Vec<Value> = queues
        .iter()
        .enumerate()
        .map(|(queue, stats)| json!({ "queue": queue, "ops": stats.snapshot() }))
        .collect();
    json!({ "queues": queues })
}

/// Parses one line (without its newline). The error is readable and goes back to the
/// client as an EINVAL error line.
pub(super) fn parse(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))
}

/// An error line: `{"error":"<reason>","errno":N}`.
pub(super) fn error(reason: &str, errno: i32) -> Value {
    json!({ "error": reason, "errno": errno })
}

/// The readable reason of an error and of everything that caused it, joined by ": ".
pub(super) fn reason(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The body of a `stats` answer: every ledger counter plus the shape of the window and
/// the control socket's own numbers.
#[derive(Debug, Serialize)]
pub(super) struct StatsReply {
    // The window.
    window_size: u64,
    chunk_size: u64,
    chunks: u64,
    mapped_bytes: u64,
    // The ledger's counters, all of them (`LedgerStats` is destructured without `..`, so a
    // new counter cannot be forgotten here).
    maps: u64,
    remaps: u64,
    already_mapped: u64,
    unmaps: u64,
    pins: u64,
    pin_refusals: u64,
    drains: u64,
    file_range_releases: u64,
    waits: u64,
    wait_time_ns: u64,
    timeouts: u64,
    mapper_errors: u64,
    map_refusals: u64,
    resize_refusals: u64,
    live_mappings: usize,
    mapped_chunks: usize,
    live_pins: usize,
    pinned_chunks: usize,
    draining_chunks: usize,
    backings_with_mappings: usize,
    // The control socket.
    control_connections: usize,
    control_pins: usize,
}

impl StatsReply {
    pub(super) fn new(
        stats: LedgerStats,
        window_size: u64,
        chunk_size: u64,
        control_connections: usize,
        control_pins: usize,
    ) -> Self {
        let LedgerStats {
            maps,
            remaps,
            already_mapped,
            unmaps,
            pins,
            pin_refusals,
            drains,
            file_range_releases,
            waits,
            wait_time,
            timeouts,
            mapper_errors,
            map_refusals,
            resize_refusals,
            live_mappings,
            mapped_chunks,
            live_pins,
            pinned_chunks,
            draining_chunks,
            backings_with_mappings,
        } = stats;
        StatsReply {
            window_size,
            chunk_size,
            chunks: window_size / chunk_size,
            mapped_bytes: (mapped_chunks as u64).saturating_mul(chunk_size),
            maps,
            remaps,
            already_mapped,
            unmaps,
            pins,
            pin_refusals,
            drains,
            file_range_releases,
            waits,
            wait_time_ns: u64::try_from(wait_time.as_nanos()).unwrap_or(u64::MAX),
            timeouts,
            mapper_errors,
            map_refusals,
            resize_refusals,
            live_mappings,
            mapped_chunks,
            live_pins,
            pinned_chunks,
            draining_chunks,
            backings_with_mappings,
            control_connections,
            control_pins,
        }
    }
}

/// One pin of a `pins` answer.
#[derive(Debug, Serialize)]
pub(super) struct PinReply {
    pin: u64,
    holder: String,
    window_offset: u64,
    len: u64,
    held_for_ms: u64,
}

impl From<PinInfo> for PinReply {
    fn from(p: PinInfo) -> Self {
        PinReply {
            pin: p.id.0,
            holder: p.holder,
            window_offset: p.window_offset,
            len: p.len,
            held_for_ms: u64::try_from(p.held_for.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_op() {
        assert_eq!(
            parse(br#"{"op":"pin","offset":4096,"len":8192}"#),
            Ok(Request::Pin {
                offset: 4096,
                len: 8192,
                wait: false,
                holder: None
            })
        );
        assert_eq!(
            parse(br#"{"len":1,"op":"pin","offset":0,"wait":true,"holder":"vfio"}"#),
            Ok(Request::Pin {
                offset: 0,
                len: 1,
                wait: true,
                holder: Some("vfio".into())
            })
        );
        assert_eq!(
            parse(br#" {"op":"unpin","pin":7} "#),
            Ok(Request::Unpin { pin: 7 })
        );
        assert_eq!(parse(br#"{"op":"stats"}"#), Ok(Request::Stats {}));
        assert_eq!(parse(br#"{"op":"mappings"}"#), Ok(Request::Mappings {}));
        assert_eq!(parse(br#"{"op":"pins"}"#), Ok(Request::Pins {}));
    }

    #[test]
    fn refuses_malformed_requests_readably() {
        for (line, needle) in [
            (&br"not json"[..], "expected"),
            (br"{}", "missing field `op`"),
            (br#"{"op":"frobnicate"}"#, "unknown variant `frobnicate`"),
            (br#"{"op":"pin","offset":0}"#, "missing field `len`"),
            (br#"{"op":"pin","offset":"0","len":1}"#, "invalid type"),
            (br#"{"op":"pin","offset":-1,"len":1}"#, "invalid value"),
            (br#"{"op":"pin","offset":0,"len":1,"wiat":true}"#, "wiat"),
            (br#"{"op":"stats","extra":1}"#, "unknown field `extra`"),
            (br#"{"op":"mappings","x":null}"#, "unknown field `x`"),
            (br#"{"op":"pins","wait":true}"#, "unknown field `wait`"),
            (br#"{"op":"unpin"}"#, "missing field `pin`"),
            (br"[1,2]", "invalid type"),
            (br#"{"op":"stats"} {"op":"stats"}"#, "trailing"),
            (b"\xff", "expected"),
        ] {
            let err = parse(line).expect_err(&String::from_utf8_lossy(line));
            assert!(
                err.starts_with("bad request: ") && err.contains(needle),
                "{:?}: {err}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
