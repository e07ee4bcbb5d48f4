//! A small SVG line chart, enough for the benchmark figures in
//! `docs/benchmarks.md`: panels side by side, one line per series, numeric
//! x and y axes starting at zero. Written by hand (a page of code) rather
//! than pulling a plotting crate and its font stack into the workspace.

use std::fmt::Write as _;

/// One line of a panel.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// `(x, y)` points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// One chart of a figure.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#7f7f7f", "#9467bd", "#ff7f0e",
];
const W: f64 = 420.0;
const H: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;

/// A "nice" step (1, 2 or 5 times a power of ten) giving about 5 ticks.
fn step(max: f64) -> f64 {
    let raw = (max / 5.0).max(f64::MIN_POSITIVE);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG text of `panels` side by side under `title`, with a legend of
/// the first panel's series names (every panel uses the same colours in
/// the same order).
pub fn svg(title: &str, panels: &[Panel]) -> String {
    let width = W * panels.len().max(1) as f64;
    let height = H + 30.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="20" text-anchor="middle" font-size="15">{}</text>"#,
        width / 2.0,
        escape(title)
    );
    for (p, panel) in panels.iter().enumerate() {
        let x0 = W * p as f64;
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let all = panel.series.iter().flat_map(|s| s.points.iter());
        let (xmax, ymax) = all.fold((0f64, 0f64), |(a, b), &(x, y)| (a.max(x), b.max(y)));
        let (xs, ys) = (step(xmax), step(ymax));
        let (xtop, ytop) = ((xmax / xs).ceil() * xs, (ymax / ys).ceil() * ys);
        let px = |x: f64| x0 + LEFT + x / xtop.max(f64::MIN_POSITIVE) * pw;
        let py = |y: f64| TOP + 10.0 + ph - y / ytop.max(f64::MIN_POSITIVE) * ph;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="13">{}</text>"#,
            x0 + LEFT + pw / 2.0,
            TOP,
            escape(&panel.title)
        );
        // Grid and ticks.
        let mut y = 0.0;
        while y <= ytop + ys / 2.0 {
            let _ = writeln!(
                out,
                r##"<line x1="{}" x2="{}" y1="{y1}" y2="{y1}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                px(0.0),
                px(xtop),
                px(0.0) - 5.0,
                py(y) + 4.0,
                y,
                y1 = py(y)
            );
            y += ys;
        }
        let mut x = 0.0;
        while x <= xtop + xs / 2.0 {
            let _ = writeln!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                px(x),
                py(0.0) + 16.0,
                x
            );
            x += xs;
        }
        let _ = writeln!(
            out,
            r#"<line x1="{a}" x2="{a}" y1="{b}" y2="{c}" stroke="black"/><line x1="{a}" x2="{d}" y1="{b}" y2="{b}" stroke="black"/>"#,
            a = px(0.0),
            b = py(0.0),
            c = py(ytop),
            d = px(xtop)
        );
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            x0 + LEFT + pw / 2.0,
            py(0.0) + 34.0,
            escape(&panel.x_label),
            x0 + 16.0,
            py(ytop / 2.0),
            escape(&panel.y_label)
        );
        for (s, series) in panel.series.iter().enumerate() {
            let color = COLORS[s % COLORS.len()];
            let points: Vec<String> = series
                .points
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
                points.join(" ")
            );
            for &(x, y) in &series.points {
                let _ = writeln!(
                    out,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                    px(x),
                    py(y)
                );
            }
        }
    }
    if let Some(first) = panels.first() {
        for (s, series) in first.series.iter().enumerate() {
            let x = 20.0 + 110.0 * s as f64;
            let _ = writeln!(
                out,
                r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
                height - 22.0,
                COLORS[s % COLORS.len()],
                x + 16.0,
                height - 12.0,
                escape(&series.name)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round_and_cover_the_range() {
        assert_eq!(step(10.0), 2.0);
        assert_eq!(step(37.0), 10.0);
        assert_eq!(step(0.9), 0.2);
    }

    #[test]
    fn a_chart_has_a_line_and_a_point_per_value_and_escapes_text() {
        let panel = Panel {
            title: "a <b>".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![Series {
                name: "s&t".into(),
                points: vec![(0.0, 1.0), (5.0, 3.0), (20.0, 2.0)],
            }],
        };
        let text = svg("t", &[panel]);
        assert!(text.starts_with("<svg") && text.ends_with("</svg>\n"));
        assert_eq!(text.matches("<polyline").count(), 1);
        assert_eq!(text.matches("<circle").count(), 3);
        assert!(text.contains("a &lt;b&gt;") && text.contains("s&amp;t"));
    }
}
