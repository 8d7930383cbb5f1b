//! The calibration plot: score distributions and FAR/FRR against threshold.

use std::path::Path;

use plotters::prelude::*;
use vision::calibrate::{RocPoint, Scores};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 600;
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

pub fn roc_png(
    path: &Path,
    scores: &Scores,
    points: &[RocPoint],
    threshold: Option<f64>,
) -> anyhow::Result<()> {
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow::anyhow!("cannot load the plot font"))?;
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw(&mut pixels, scores, points, threshold)
        .map_err(|e| anyhow::anyhow!("cannot draw the plot: {e}"))?;
    let image =
        image::RgbImage::from_raw(WIDTH, HEIGHT, pixels).expect("buffer has the plot's size");
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| anyhow::anyhow!("cannot encode the plot: {e}"))?;
    Ok(vision::files::write_atomic(path, |out| {
        out.write_all(png.get_ref())
    })?)
}

fn draw(
    pixels: &mut [u8],
    scores: &Scores,
    points: &[RocPoint],
    threshold: Option<f64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(pixels, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_t = points.last().map_or(1.0, |p| p.threshold);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "KubeVision calibration: error rates against threshold",
            ("sans-serif", 24),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_t, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("chi-square distance threshold")
        .y_desc("rate / share of scores")
        .draw()?;

    // Score distributions as normalised histograms, behind the curves.
    for (values, colour, name) in [
        (&scores.genuine, GREEN.mix(0.35), "genuine scores"),
        (&scores.impostor, RED.mix(0.25), "impostor scores"),
    ] {
        let hist = histogram(values, max_t, 60);
        chart
            .draw_series(
                hist.iter()
                    .map(|&(x0, x1, h)| Rectangle::new([(x0, 0.0), (x1, h)], colour.filled())),
            )?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], colour.filled()));
    }
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.threshold, p.far)),
            RED.stroke_width(3),
        ))?
        .label("false-accept rate")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], RED.stroke_width(3)));
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.threshold, p.frr)),
            BLUE.stroke_width(3),
        ))?
        .label("false-reject rate")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLUE.stroke_width(3)));
    if let Some(t) = threshold {
        chart
            .draw_series(LineSeries::new([(t, 0.0), (t, 1.0)], BLACK.stroke_width(2)))?
            .label(format!("recommended threshold {t:.1}"))
            .legend(|(x, y)| PathElement::new([(x, y), (x + 15, y)], BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Bins of `values` over [0, max): (start, end, share of values, scaled so the tallest bin is 0.9).
fn histogram(values: &[f64], max: f64, bins: usize) -> Vec<(f64, f64, f64)> {
    let width = max / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values {
        counts[((v / width) as usize).min(bins - 1)] += 1;
    }
    let tallest = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    counts
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            (
                i as f64 * width,
                (i + 1) as f64 * width,
                0.9 * c as f64 / tallest,
            )
        })
        .collect()
}
