//! `bench --chart FILE`: the ratios of a run as an SVG bar chart: vhost-dax against the
//! peer for each FUSE rate, and the DAX window against FUSE READ.

use std::fmt::Write as _;

use super::{BenchReport, FigureKind, dax_read_ratio, peer_run, ratios, short_commit};

const WIDTH: f64 = 720.0;
const LABEL: f64 = 200.0;
const BAR: f64 = 22.0;
const GAP: f64 = 8.0;
const TOP: f64 = 64.0;

/// Text safe inside SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart as a standalone SVG document.
pub fn chart_svg(report: &BenchReport) -> String {
    let mut bars: Vec<(String, f64)> = Vec::new();
    let peer = peer_run(report);
    if let Some((name, run)) = peer {
        for (key, ratio) in ratios(&report.results, &run.results) {
            let kind = FigureKind::of(key);
            bars.push((format!("{} / {name}", kind.label.replace('_', " ")), ratio));
        }
    }
    if let Some(ratio) = dax_read_ratio(&report.results) {
        bars.push(("DAX window / FUSE READ".into(), ratio));
    }
    let scale_max = bars.iter().map(|(_, r)| *r).fold(2.0_f64, f64::max).ceil();
    let plot = WIDTH - LABEL - 70.0;
    let x_of = |ratio: f64| LABEL + plot * ratio / scale_max;
    let rows = bars.len().max(1) as f64;
    let height = TOP + rows * (BAR + GAP) + 40.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="16" font-weight="bold">vhost-dax bench: ratios (above 1: vhost-dax faster)</text>
<text x="10" y="42" fill="#555">{}</text>
"##,
        escape(&format!(
            "vhost-dax {} (commit {}), {}, {}",
            env!("CARGO_PKG_VERSION"),
            short_commit(),
            report.timestamp,
            peer.map_or("no peer ran".to_string(), |(_, run)| run.version.clone())
        ))
    );
    if bars.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="10" y="{}">no ratio in this run (no peer ran, no DAX figures)</text>"#,
            TOP + 16.0
        );
    }
    for (i, (label, ratio)) in bars.iter().enumerate() {
        let y = TOP + i as f64 * (BAR + GAP);
        let colour = if *ratio >= 1.0 { "#2e7d32" } else { "#c62828" };
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{LABEL}" y="{y}" width="{:.1}" height="{BAR}" fill="{colour}"/><text x="{:.1}" y="{}">{ratio:.2}</text>"#,
            LABEL - 8.0,
            y + BAR * 0.7,
            escape(label),
            (x_of(*ratio) - LABEL).max(1.0),
            x_of(*ratio) + 6.0,
            y + BAR * 0.7
        );
    }
    let axis_bottom = TOP + rows * (BAR + GAP);
    let one = x_of(1.0);
    let _ = writeln!(
        svg,
        r##"<line x1="{one:.1}" y1="{}" x2="{one:.1}" y2="{axis_bottom}" stroke="#000" stroke-dasharray="4 3"/><text x="{one:.1}" y="{}" text-anchor="middle">1.0</text>"##,
        TOP - 6.0,
        axis_bottom + 16.0
    );
    svg.push_str("</svg>\n");
    svg
}
