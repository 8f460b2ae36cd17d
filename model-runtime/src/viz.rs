//! Pictures of a model and of its training, as SVG made in Rust (no system Graphviz): the graph from its
//! compile-time `DOT` (laid out by the `layout-rs` crate) and the per-epoch curves of a [`History`].

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
