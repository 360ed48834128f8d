//! The SVG chart (`--chart FILE.svg`): latency by percentile on a
//! "nines" scale above, responses and errors per second below. Drawn with
//! plotters' SVG backend.

use anyhow::{Result, anyhow};
use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::report::SecondReport;

const SIZE: (u32, u32) = (960, 720);

/// Points of the percentile curve: (x, latency ms), where x = 1 / (1 - q)
/// so that 90%, 99%, 99.9% ... are evenly spaced on a log axis. Returns the
/// points and the axis end (a power of ten).
pub fn curve(h: &Histogram<u64>) -> (Vec<(f64, f64)>, f64) {
    let n = h.len().max(1) as f64;
    let end = 10f64.powf(n.log10().ceil()).clamp(100.0, 1e6);
    if h.is_empty() {
        return (Vec::new(), end);
    }
    let mut points: Vec<(f64, f64)> = h
        .iter_quantiles(4)
        .map(|v| {
            let q = v.quantile_iterated_to();
            let x = if q >= 1.0 {
                end
            } else {
                (1.0 / (1.0 - q)).min(end)
            };
            (x, v.value_iterated_to() as f64 / 1000.0)
        })
        .collect();
    points.push((end, h.max() as f64 / 1000.0));
    (points, end)
}

/// The percentile shown at axis position `x` (= 1 / (1 - q)).
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x.max(1.0));
    let digits = (x.log10().round() as usize).saturating_sub(2);
    format!("{p:.digits$}%")
}

/// Draws the chart as an SVG document.
///
/// `elapsed` (seconds) is the length of the run, where the time axis ends.
pub fn render(
    title: &str,
    latency: &Histogram<u64>,
    seconds: &[SecondReport],
    elapsed: f64,
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let root = root.titled(title, ("sans-serif", 18)).map_err(draw_error)?;
        let (top, bottom) = root.split_vertically(SIZE.1 * 11 / 20);
        draw_latency(&top, latency)?;
        draw_throughput(&bottom, seconds, elapsed)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Writes the chart to `path`.
pub fn write(
    path: &std::path::Path,
    title: &str,
    latency: &Histogram<u64>,
    seconds: &[SecondReport],
    elapsed: f64,
) -> Result<()> {
    let svg = render(title, latency, seconds, elapsed)?;
    std::fs::write(path, svg).map_err(|e| anyhow!("writing {}: {e}", path.display()))
}

fn draw_latency<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    h: &Histogram<u64>,
) -> Result<()> {
    let (points, end) = curve(h);
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("Latency by percentile", ("sans-serif", 15))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d((1f64..end).log_scale(), 0f64..top)
        .map_err(draw_error)?;
    let label = |x: &f64| percentile_label(*x);
    let decimals = if top < 10.0 {
        2
    } else if top < 100.0 {
        1
    } else {
        0
    };
    let ms = |y: &f64| format!("{y:.decimals$}");
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_label_formatter(&label)
        .y_label_formatter(&ms)
        .draw()
        .map_err(draw_error)?;
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))
        .map_err(draw_error)?;
    Ok(())
}

fn draw_throughput<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    seconds: &[SecondReport],
    elapsed: f64,
) -> Result<()> {
    // The axis ends with the run; a last, partial second is drawn as wide
    // as the part of it that the run lasted.
    let len = if elapsed > 0.0 {
        elapsed
    } else {
        seconds.len().max(1) as f64
    };
    let top = seconds
        .iter()
        .map(|s| s.responses.max(s.errors))
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("Throughput per second", ("sans-serif", 15))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..len, 0f64..top)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc("second of the run")
        .y_desc("finished in the second")
        .y_label_formatter(&|y: &f64| format!("{y:.0}"))
        .draw()
        .map_err(draw_error)?;
    // Each bucket is drawn across its second, as a step.
    let steps = |value: fn(&SecondReport) -> u64| {
        seconds
            .iter()
            .flat_map(move |s| {
                let x = (s.second as f64).min(len);
                let y = value(s) as f64;
                [(x, y), ((x + 1.0).min(len), y)]
            })
            .collect::<Vec<_>>()
    };
    chart
        .draw_series(
            AreaSeries::new(steps(|s| s.responses), 0.0, BLUE.mix(0.25))
                .border_style(BLUE.stroke_width(2)),
        )
        .map_err(draw_error)?
        .label("responses")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(steps(|s| s.errors), RED.stroke_width(2)))
        .map_err(draw_error)?
        .label("errors")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)?;
    Ok(())
}

fn draw_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_show_the_nines() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(100.0), "99%");
        assert_eq!(percentile_label(1000.0), "99.9%");
        assert_eq!(percentile_label(10000.0), "99.99%");
    }

    #[test]
    fn curve_rises_to_the_max() -> Result<()> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
        for v in 1..=5000u64 {
            h.record(v * 10)?;
        }
        let (points, end) = curve(&h);
        assert_eq!(end, 10_000.0);
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
        );
        assert_eq!(points.last().map(|p| p.1), Some(h.max() as f64 / 1000.0));
        Ok(())
    }

    #[test]
    fn svg_has_both_panels() -> Result<()> {
        let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
        for v in [100u64, 200, 300, 5000] {
            h.record(v)?;
        }
        let seconds = [
            SecondReport {
                second: 0,
                responses: 10,
                errors: 0,
            },
            SecondReport {
                second: 1,
                responses: 12,
                errors: 1,
            },
        ];
        let svg = render("test run", &h, &seconds, 1.5)?;
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("Latency by percentile"));
        assert!(svg.contains("Throughput per second"));
        assert!(svg.contains("99%"));
        // Empty runs still draw.
        let empty = Histogram::<u64>::new(3)?;
        assert!(render("empty", &empty, &[], 0.0)?.contains("</svg>"));
        Ok(())
    }
}
