//! Pictures of runs: curves (one run, or several runs side by side with a legend) drawn as SVG by
//! plotters.

use plotters::prelude::*;

/// One curve of a chart: its legend and its (x, fraction) points.
pub struct Series {
    /// Shown in the legend.
    pub name: String,
    /// x in seconds, y a fraction 0..=1.
    pub points: Vec<(f64, f64)>,
}

/// Colours that stay apart on white and for the common colour blindnesses (Okabe and Ito's palette).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

/// The curves on one chart, y as a percentage, as an SVG document.
pub fn chart(title: &str, x_label: &str, series: &[Series]) -> Result<String, String> {
    let max_x = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 420)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| format!("drawing the chart: {e}");
        root.fill(&WHITE).map_err(err)?;
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..max_x * 1.02, 0.0..100.0)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc(x_label)
            .y_desc("%")
            .x_label_formatter(&|v| format!("{v:.1}s"))
            .y_label_formatter(&|v| format!("{v:.0}%"))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            c.draw_series(LineSeries::new(
                s.points.iter().map(|&(x, y)| (x, y * 100.0)),
                colour.stroke_width(2),
            ))
            .map_err(err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        }
        if series.len() > 1 || series.first().is_some_and(|s| !s.name.is_empty()) {
            c.configure_series_labels()
                // Curves are cumulative: they rise to the left of their end, so the lower right is
                // where they have all left the axis.
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_drawn_and_named_in_the_legend() {
        let s = chart(
            "crash <1000>",
            "s since the crash",
            &[
                Series {
                    name: "Lifeguard".into(),
                    points: vec![(0.0, 0.0), (1.0, 0.5), (2.0, 1.0)],
                },
                Series {
                    name: "plain SWIM".into(),
                    points: vec![(0.0, 0.0), (3.0, 1.0)],
                },
            ],
        )
        .unwrap();
        assert!(
            s.starts_with("<svg") && s.trim_end().ends_with("</svg>"),
            "{s}"
        );
        assert!(s.contains("crash &lt;1000&gt;"), "the title, escaped");
        assert!(
            s.contains("\nLifeguard\n") && s.contains("\nplain SWIM\n"),
            "{s}"
        );
        for colour in ["#0072B2", "#D55E00"] {
            let marks = s.matches(&format!("stroke=\"{colour}\"")).count();
            assert_eq!(marks, 2, "{colour}: its curve and its legend mark");
        }
    }
}
