//! Output of a run: the one-screen summary, the JSON file and the SVG convergence curve.

use std::fmt::Write;

/// Draws `points` (seconds, fraction 0..1) as a line chart.
pub fn svg(points: &[(f64, f64)], title: &str, label: &str) -> String {
    let (w, h, m) = (720.0, 400.0, 50.0);
    let max_x = points.iter().map(|p| p.0).fold(0.0f64, f64::max).max(1e-3);
    let x = |v: f64| m + v / max_x * (w - 2.0 * m);
    let y = |v: f64| h - m - v * (h - 2.0 * m);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{m}" y="24" font-size="14">{}</text>
<line x1="{m}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{m}" y1="{}" x2="{m}" y2="{m}" stroke="black"/>
"##,
        escape(title),
        h - m,
        w - m,
        h - m,
        h - m
    );
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="end">{:.0}%</text><line x1="{m}" y1="{}" x2="{}" y2="{}" stroke="#ddd"/>"##,
            m - 6.0,
            y(f) + 4.0,
            f * 100.0,
            y(f),
            w - m,
            y(f)
        );
        let t = max_x * f;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">{t:.2}s</text>"##,
            x(t),
            h - m + 16.0
        );
    }
    let pts: Vec<String> = points
        .iter()
        .map(|(a, b)| format!("{:.1},{:.1}", x(*a), y(*b)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{}"/>"##,
        pts.join(" ")
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle">{}</text></svg>"##,
        w / 2.0,
        h - 10.0,
        escape(label)
    );
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn svg_has_one_point_per_sample() {
        let s = super::svg(&[(0.0, 0.0), (1.0, 0.5), (2.0, 1.0)], "t<1>", "x");
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert!(s.contains("t&lt;1&gt;"));
        let poly = s
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(poly.split(' ').count(), 3);
    }
}
