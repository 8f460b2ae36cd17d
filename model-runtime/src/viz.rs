//! Pictures of a model and of its training, as SVG made in Rust (no system Graphviz): the graph from its
//! compile-time `DOT` (laid out by the `layout-rs` crate), the per-epoch curves of a [`History`], and
//! grids of heatmaps (attention scores, images).

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::train::History;

/// Lays out a Graphviz DOT graph (a model's `DOT` constant) and renders it as SVG.
pub fn dot_to_svg(dot: &str) -> Result<String> {
    let mut parser = layout::gv::DotParser::new(dot);
    let graph = parser.process().map_err(|e| Error::config("dot", "graph", format!("not a DOT graph this renderer can read: {e}")))?;
    let mut builder = layout::gv::GraphBuilder::new();
    builder.visit_graph(&graph);
    let mut visual = builder.get();
    let mut svg = layout::backends::svg::SVGWriter::new();
    visual.do_it(false, false, false, &mut svg);
    Ok(svg.finalize())
}

/// Writes [`dot_to_svg`] of `dot` to `path` (through a temporary file and a rename).
pub fn write_graph_svg(dot: &str, path: impl AsRef<Path>) -> Result<()> {
    crate::io::write_atomic(path.as_ref(), dot_to_svg(dot)?.as_bytes())
}

const PALETTE: [&str; 8] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// One chart per metric family of `history` (`loss` with `val_loss`, `accuracy` with
/// `val_accuracy`, ...), stacked vertically, epochs on the x axis, as one SVG document.
pub fn history_svg(history: &History) -> String {
    let families: Vec<&str> = history.keys().filter(|k| !k.starts_with("val_")).collect();
    let (w, h, pad) = (640.0f64, 220.0f64, 48.0f64);
    let total_h = h * families.len().max(1) as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{total_h}" viewBox="0 0 {w} {total_h}" font-family="Helvetica, Arial, sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{total_h}" fill="white"/>"#);
    for (f, key) in families.iter().enumerate() {
        let top = f as f64 * h;
        let val_key = format!("val_{key}");
        let series: Vec<(&str, &[f64])> =
            [Some((*key, history.get(key).unwrap_or(&[]))), history.get(&val_key).map(|v| (val_key.as_str(), v))]
                .into_iter()
                .flatten()
                .collect();
        let finite = series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = if lo.is_finite() {
            if hi > lo {
                (lo, hi)
            } else {
                (lo - 0.5, hi + 0.5)
            }
        } else {
            (0.0, 1.0)
        };
        let epochs = history.epochs().max(2);
        let x = |e: usize| pad + (w - 2.0 * pad) * e as f64 / (epochs - 1) as f64;
        let y = |v: f64| top + h - pad + (v - lo) / (hi - lo) * -(h - 2.0 * pad);
        let _ = writeln!(svg, r#"<text x="{pad}" y="{}" font-size="13" font-weight="bold">{}</text>"#, top + 20.0, escape(key));
        let _ = writeln!(
            svg,
            r##"<rect x="{pad}" y="{}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
            top + pad,
            w - 2.0 * pad,
            h - 2.0 * pad
        );
        for (v, anchor) in [(hi, top + pad), (lo, top + h - pad)] {
            let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, pad - 4.0, anchor + 4.0, short(v));
        }
        let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">epoch</text>"#, w / 2.0, top + h - pad + 28.0);
        for e in [0, history.epochs().saturating_sub(1)] {
            let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, x(e), top + h - pad + 14.0, e + 1);
        }
        for (s, (name, values)) in series.iter().enumerate() {
            let color = PALETTE[s % PALETTE.len()];
            let points: Vec<String> =
                values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(e, &v)| format!("{:.1},{:.1}", x(e), y(v))).collect();
            let _ = writeln!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, points.join(" "));
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" fill="{color}" text-anchor="end">{}</text>"#,
                w - pad,
                top + 20.0 + 14.0 * s as f64,
                escape(name)
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// Writes [`history_svg`] to `path` (through a temporary file and a rename).
pub fn write_history_svg(history: &History, path: impl AsRef<Path>) -> Result<()> {
    crate::io::write_atomic(path.as_ref(), history_svg(history).as_bytes())
}

/// One matrix drawn as a heatmap: `rows × cols` values, row-major, under a caption.
#[derive(Clone, Debug)]
pub struct Heatmap<'a> {
    /// The caption above the panel.
    pub caption: String,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// `rows · cols` values, row-major.
    pub values: &'a [f32],
}

/// Side of one heatmap cell, in pixels.
const CELL: f64 = 14.0;

/// A grid of heatmaps as one SVG document: one line of panels per entry of `grid` (a sample: its
/// image, then what each attention head looks at), each panel shaded from white (its smallest value) to
/// dark blue (its largest), under `title`. A panel whose values do not fill `rows · cols` is drawn with
/// the missing cells empty; non-finite values are drawn red.
pub fn heatmaps_svg(title: &str, grid: &[Vec<Heatmap<'_>>]) -> String {
    let (pad, gap, caption) = (16.0f64, 18.0f64, 16.0f64);
    let panel_w = |m: &Heatmap<'_>| m.cols as f64 * CELL;
    let line_h = |line: &[Heatmap<'_>]| line.iter().map(|m| m.rows as f64 * CELL).fold(0.0, f64::max) + caption + gap;
    let width = grid.iter().map(|line| line.iter().map(|m| panel_w(m) + gap).sum::<f64>()).fold(0.0, f64::max) + 2.0 * pad;
    let height = grid.iter().map(|line| line_h(line)).sum::<f64>() + 2.0 * pad + 20.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="{width}" height="{height}" fill="white"/>"#);
    let _ = writeln!(svg, r#"<text x="{pad}" y="{}" font-size="13" font-weight="bold">{}</text>"#, pad + 4.0, escape(title));
    let mut top = pad + 20.0;
    for line in grid {
        let mut left = pad;
        for m in line {
            let _ = writeln!(svg, r#"<text x="{left}" y="{}">{}</text>"#, top + 11.0, escape(&m.caption));
            heatmap_cells(&mut svg, m, left, top + caption);
            left += panel_w(m) + gap;
        }
        top += line_h(line);
    }
    svg.push_str("</svg>\n");
    svg
}

/// The cells of one panel, its top-left corner at (`left`, `top`), and a frame around them.
fn heatmap_cells(svg: &mut String, m: &Heatmap<'_>, left: f64, top: f64) {
    let finite = m.values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    for (i, &v) in m.values.iter().take(m.rows * m.cols).enumerate() {
        let (r, c) = (i / m.cols.max(1), i % m.cols.max(1));
        let fill = if v.is_finite() { shade(if hi > lo { (v - lo) / (hi - lo) } else { 0.0 }) } else { String::from("#d62728") };
        let _ = writeln!(
            svg,
            r#"<rect x="{}" y="{}" width="{CELL}" height="{CELL}" fill="{fill}"><title>{v}</title></rect>"#,
            left + c as f64 * CELL,
            top + r as f64 * CELL
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        m.cols as f64 * CELL,
        m.rows as f64 * CELL
    );
}

/// White at 0, dark blue (#08306b) at 1.
fn shade(t: f32) -> String {
    let t = t.clamp(0.0, 1.0);
    let mix = |a: f32, b: f32| (a + (b - a) * t).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(255.0, 8.0), mix(255.0, 48.0), mix(255.0, 107.0))
}

/// Writes [`heatmaps_svg`] to `path` (through a temporary file and a rename).
pub fn write_heatmaps_svg(title: &str, grid: &[Vec<Heatmap<'_>>], path: impl AsRef<Path>) -> Result<()> {
    crate::io::write_atomic(path.as_ref(), heatmaps_svg(title, grid).as_bytes())
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::Logs;

    #[test]
    fn a_model_graph_renders_as_svg_with_every_layer() {
        let dot = r#"digraph "M" {
  node [shape=record];
  in0 [label="{x|InputLayer|(None, 8)}"];
  l0 [label="{dense|Dense|(None, 4)|params: 36}"];
  in0 -> l0 [label="(None, 8)"];
}"#;
        let svg = dot_to_svg(dot).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"), "{svg}");
        for text in ["dense", "Dense", "(None, 4)", "InputLayer"] {
            assert!(svg.contains(text), "`{text}` missing from the SVG");
        }
    }

    #[test]
    fn malformed_dot_is_an_error_not_a_panic() {
        assert!(dot_to_svg("digraph { a -> ; }").is_err());
    }

    #[test]
    fn heatmaps_shade_each_panel_from_its_minimum_to_its_maximum() {
        let a = [0.0, 0.5, 1.0, 0.25];
        let b = [3.0, 3.0, f32::NAN];
        let grid = vec![
            vec![Heatmap { caption: "image <0>".into(), rows: 2, cols: 2, values: &a }],
            vec![Heatmap { caption: "flat".into(), rows: 1, cols: 3, values: &b }],
        ];
        let svg = heatmaps_svg("scores & more", &grid);
        assert!(svg.contains(">scores &amp; more<") && svg.contains(">image &lt;0&gt;<"));
        // Seven cells and two frames (and the background).
        assert_eq!(svg.matches("<title>").count(), 7);
        assert_eq!(svg.matches(r##"stroke="#999""##).count(), 2);
        // The smallest value of a panel is white, its largest dark blue, a constant panel white, NaN red.
        assert!(svg.contains(r##"fill="#ffffff"><title>0</title>"##));
        assert!(svg.contains(r##"fill="#08306b"><title>1</title>"##));
        assert_eq!(svg.matches(r##"fill="#ffffff"><title>3</title>"##).count(), 2);
        assert!(svg.contains(r##"fill="#d62728"><title>NaN</title>"##));
        assert_eq!(shade(0.5), "#8498b5");
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn history_plots_one_chart_per_metric_with_validation() {
        let mut h = History::default();
        for e in 0..4 {
            let mut logs = Logs::new();
            logs.insert("loss".into(), 1.0 / (e as f64 + 1.0));
            logs.insert("val_loss".into(), 1.2 / (e as f64 + 1.0));
            logs.insert("accuracy".into(), 0.5 + 0.1 * e as f64);
            h.push(&logs);
        }
        let svg = history_svg(&h);
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains(">val_loss<") && svg.contains(">accuracy<"));
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
