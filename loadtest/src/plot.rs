//! The latency-by-percentile chart (SVG, drawn with plotters): the x axis is
//! 1/(1-p) on a log scale, so the tail gets as much room as the median.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// One line on the chart.
pub struct Series<'a> {
    pub label: String,
    pub hist: &'a Histogram<u64>,
}

fn points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut v = Vec::new();
    for it in h.iter_quantiles(5) {
        let q = it.quantile_iterated_to();
        if q >= 0.999999 {
            break;
        }
        v.push((1.0 / (1.0 - q), it.value_iterated_to() as f64 / 1e6));
    }
    if !h.is_empty() {
        v.push((1e6, h.max() as f64 / 1e6));
    }
    v
}

fn percentile_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    match p {
        p if p < 1e-9 => "0%".into(),
        p if p >= 99.9999 => "max".into(),
        p if (p - p.round()).abs() < 1e-6 => format!("{p:.0}%"),
        p => format!("{}%", format!("{p:.4}").trim_end_matches('0')),
    }
}

/// Draws the chart to `path` (.svg).
pub fn draw(path: &Path, title: &str, series: &[Series<'_>]) -> anyhow::Result<()> {
    let data: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| (s.label.clone(), points(s.hist)))
        .collect();
    let ymax = data
        .iter()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .fold(0.001f64, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0f64..1e6f64).log_scale(), 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("end-to-end latency (ms)")
        .x_label_formatter(&percentile_label)
        .x_labels(7)
        .draw()?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (label, pts)) in data.into_iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_as_percentiles() {
        assert_eq!(percentile_label(&1.0), "0%");
        assert_eq!(percentile_label(&2.0), "50%");
        assert_eq!(percentile_label(&100.0), "99%");
        assert_eq!(percentile_label(&1000.0), "99.9%");
    }
}
