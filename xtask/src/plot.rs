//! The benchmark plot: native IPC beside the guest exit path and the other
//! kernel paths, as an SVG file next to the JSON (`cargo xtask bench ipc`
//! writes `target/bench/ipc.svg`). Two panels share the rows: exact
//! instruction counts (median, with seL4's figure and the target as marks)
//! and wall-clock nanoseconds under TCG (median, with a whisker to the
//! 99th percentile). Written by hand: a few rectangles, lines and labels
//! need no plotting library.

use std::fmt::Write;

/// One metric's figures as the plot needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figure {
    /// The median.
    pub median: u64,
    /// The 99th percentile.
    pub p99: u64,
}

/// The rows, top to bottom: case, metric, label.
const ROWS: [(&str, &str, &str); 10] = [
    ("ipc/same/0", "roundtrip", "IPC round trip, same space"),
    ("ipc/cross/0", "roundtrip", "IPC round trip, across spaces"),
    ("ipc/same/10", "roundtrip", "IPC round trip, 10 words"),
    (
        "ipc-slow/same/0",
        "roundtrip",
        "IPC round trip, general path",
    ),
    ("guest/vmm", "roundtrip", "guest hvc -> VMM -> guest"),
    ("fault", "roundtrip", "fault -> handler -> resume"),
    ("syscall/null", "roundtrip", "null syscall"),
    ("yield/switch", "oneway", "thread switch (Yield)"),
    ("notification/wake", "oneway", "notification wake-up"),
    ("irq/latency", "oneway", "device IRQ -> user handler"),
];

/// Geometry, in SVG user units.
const LABEL_WIDTH: f64 = 230.0;
const PANEL_WIDTH: f64 = 330.0;
const GAP: f64 = 40.0;
const ROW_HEIGHT: f64 = 26.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 64.0;

/// One row's figures.
struct Row {
    label: &'static str,
    instructions: Option<u64>,
    sel4: Option<u64>,
    target: Option<u64>,
    ns_median: Option<u64>,
    ns_p99: Option<u64>,
}

/// A scale's upper end: `max` rounded up to 1, 2 or 5 times a power of
/// ten, so that the axis ticks are round numbers.
fn nice_ceiling(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&v| v >= max)
        .unwrap_or(10.0 * magnitude)
}

/// Text safe inside SVG.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The plot for one `bench ipc` run: `instructions` and `nanoseconds`
/// give a case's figures by case and metric, `sel4` and `target` its
/// reference and target instruction counts, if any.
pub fn latency_svg(
    instructions: impl Fn(&str, &str) -> Option<Figure>,
    nanoseconds: impl Fn(&str, &str) -> Option<Figure>,
    title: &str,
    sel4: impl Fn(&str, &str) -> Option<u64>,
    target: impl Fn(&str, &str) -> Option<u64>,
) -> String {
    let rows: Vec<Row> = ROWS
        .iter()
        .filter_map(|&(name, metric, label)| {
            let (i, n) = (instructions(name, metric), nanoseconds(name, metric));
            (i.is_some() || n.is_some()).then(|| Row {
                label,
                instructions: i.map(|f| f.median),
                sel4: sel4(name, metric),
                target: target(name, metric),
                ns_median: n.map(|f| f.median),
                ns_p99: n.map(|f| f.p99),
            })
        })
        .collect();
    let instruction_scale = nice_ceiling(
        rows.iter()
            .flat_map(|r| [r.instructions, r.sel4, r.target])
            .flatten()
            .max()
            .unwrap_or(1) as f64,
    );
    let ns_scale = nice_ceiling(
        rows.iter()
            .flat_map(|r| [r.ns_median, r.ns_p99])
            .flatten()
            .max()
            .unwrap_or(1) as f64,
    );
    let left = LABEL_WIDTH;
    let right = LABEL_WIDTH + PANEL_WIDTH + GAP;
    let width = right + PANEL_WIDTH + 20.0;
    let height = TOP + ROW_HEIGHT * rows.len() as f64 + BOTTOM;
    let x_instr = |v: u64| left + PANEL_WIDTH * v as f64 / instruction_scale;
    let x_ns = |v: u64| right + PANEL_WIDTH * v as f64 / ns_scale;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="44">instructions, median (exact under -icount shift=0)</text>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{right}" y="44">nanoseconds under TCG, median and p99</text>"#
    );
    let bottom = TOP + ROW_HEIGHT * rows.len() as f64;
    let _ = writeln!(
        svg,
        r##"<line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="black" stroke-width="2"/><text x="{}" y="{}">seL4 on the same emulator</text><line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="#c03030" stroke-width="2" stroke-dasharray="3,2"/><text x="{}" y="{}">Skyscope's target</text>"##,
        left + 16.0,
        left + 22.0,
        bottom + 48.0,
        left + 200.0,
        left + 216.0,
        left + 222.0,
        bottom + 48.0,
        y = bottom + 44.0
    );
    for (panel, scale) in [(left, instruction_scale), (right, ns_scale)] {
        for step in 0..=5 {
            let value = scale * f64::from(step) / 5.0;
            let x = panel + PANEL_WIDTH * f64::from(step) / 5.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{bottom}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{value}</text>"##,
                bottom + 16.0
            );
        }
    }
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + ROW_HEIGHT * i as f64;
        let bar_y = y + 5.0;
        let bar_height = ROW_HEIGHT - 10.0;
        let middle = y + ROW_HEIGHT / 2.0;
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 8.0,
            middle + 4.0,
            escape(row.label)
        );
        if let Some(v) = row.instructions {
            // The figure right of the bar and of the row's marks.
            let label_at = [Some(v), row.sel4, row.target]
                .into_iter()
                .flatten()
                .max()
                .unwrap_or(v);
            let _ = writeln!(
                svg,
                r##"<rect x="{left}" y="{bar_y}" width="{}" height="{bar_height}" fill="#4878a8"/><text x="{}" y="{}">{v}</text>"##,
                x_instr(v) - left,
                x_instr(label_at) + 4.0,
                middle + 4.0
            );
        }
        if let Some(s) = row.sel4 {
            let _ = writeln!(
                svg,
                r##"<line x1="{x}" y1="{y}" x2="{x}" y2="{}" stroke="black" stroke-width="2"/>"##,
                y + ROW_HEIGHT,
                x = x_instr(s)
            );
        }
        if let Some(t) = row.target {
            let _ = writeln!(
                svg,
                r##"<line x1="{x}" y1="{y}" x2="{x}" y2="{}" stroke="#c03030" stroke-width="2" stroke-dasharray="3,2"/>"##,
                y + ROW_HEIGHT,
                x = x_instr(t)
            );
        }
        if let Some(m) = row.ns_median {
            let _ = writeln!(
                svg,
                r##"<rect x="{right}" y="{bar_y}" width="{}" height="{bar_height}" fill="#78a848"/>"##,
                x_ns(m) - right
            );
            let end = row.ns_p99.map_or(m, |p| p.max(m));
            let _ = writeln!(
                svg,
                r#"<line x1="{}" y1="{middle}" x2="{}" y2="{middle}" stroke="black"/><text x="{}" y="{}">{m}</text>"#,
                x_ns(m),
                x_ns(end),
                x_ns(end) + 4.0,
                middle + 4.0
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lookup over (case, metric, median, p99) rows.
    fn figures(
        rows: &[(&'static str, &'static str, u64, u64)],
    ) -> impl Fn(&str, &str) -> Option<Figure> {
        let rows = rows.to_vec();
        move |name, metric| {
            rows.iter()
                .find(|r| r.0 == name && r.1 == metric)
                .map(|r| Figure {
                    median: r.2,
                    p99: r.3,
                })
        }
    }

    #[test]
    fn scales_round_up_to_round_numbers() {
        assert_eq!(nice_ceiling(408.0), 500.0);
        assert_eq!(nice_ceiling(532.0), 1000.0);
        assert_eq!(nice_ceiling(1502.0), 2000.0);
        assert_eq!(nice_ceiling(17_767.0), 20_000.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }

    #[test]
    fn every_measured_row_gets_its_bars_and_marks_within_its_panel() {
        let instructions = figures(&[
            ("ipc/same/0", "roundtrip", 408, 408),
            ("guest/vmm", "roundtrip", 699, 747),
            ("ipc/same/0", "call", 199, 199),
        ]);
        let nanoseconds = figures(&[
            ("ipc/same/0", "roundtrip", 2594, 4165),
            ("guest/vmm", "roundtrip", 17_767, 33_660),
        ]);
        let svg = latency_svg(
            instructions,
            nanoseconds,
            "a < b & c",
            |n, _| (n == "ipc/same/0").then_some(532),
            |n, _| (n == "guest/vmm").then_some(800),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("a &lt; b &amp; c"));
        // Two rows, each a bar per panel; the call row is not plotted.
        assert_eq!(svg.matches("fill=\"#4878a8\"").count(), 2);
        assert_eq!(svg.matches("fill=\"#78a848\"").count(), 2);
        assert!(svg.contains("IPC round trip, same space"));
        assert!(svg.contains("guest hvc -&gt; VMM -&gt; guest"));
        assert!(svg.contains(">408<") && svg.contains(">699<"));
        // One mark of each kind, and each again in the legend.
        assert_eq!(
            svg.matches("stroke=\"black\" stroke-width=\"2\"").count(),
            2
        );
        assert_eq!(svg.matches("stroke-dasharray").count(), 2);
        // Every x coordinate stays inside the picture.
        let width = LABEL_WIDTH + 2.0 * PANEL_WIDTH + GAP + 20.0;
        for part in svg
            .split(" x=\"")
            .skip(1)
            .chain(svg.split(" x1=\"").skip(1))
        {
            let x: f64 = part.split('"').next().unwrap().parse().unwrap();
            assert!((0.0..=width).contains(&x), "x = {x}");
        }
    }

    #[test]
    fn rows_without_figures_are_left_out() {
        let svg = latency_svg(|_, _| None, |_, _| None, "empty", |_, _| None, |_, _| None);
        assert!(!svg.contains("<rect x="));
        assert!(svg.ends_with("</svg>\n"));
    }
}
