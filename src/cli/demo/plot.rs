//! A PNG of the pump-probe curve: what a scientist looks at first.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;

use super::pipeline::DelayPoint;

/// The font the labels use; Debian's `fonts-dejavu-core` (installed by `./run`). Without it
/// the plot is drawn without text.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// A curve: its name, colour and the value it takes of each point.
type Series = (&'static str, RGBColor, Box<dyn Fn(&DelayPoint) -> f64>);

/// Whether the label font is registered. plotters keeps registered fonts for the life of the
/// process and wants them `'static`, so the file is read and registered once, not per plot.
fn labels() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        std::fs::read(FONT)
            .ok()
            .map(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
            .unwrap_or(false)
    })
}

/// Draws laser-on and laser-off means and their difference against the delay into `path`.
pub fn pump_probe(points: &[DelayPoint], path: &Path) -> Result<(), String> {
    let labels = labels();
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let finite = |v: f64| if v.is_finite() { Some(v) } else { None };
    let ys: Vec<f64> = points
        .iter()
        .flat_map(|p| [p.mean_on(), p.mean_off(), p.mean_on() - p.mean_off()])
        .filter_map(finite)
        .collect();
    let (x0, x1) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.delay), b.max(p.delay))
        });
    let (y0, y1) = ys.iter().fold((0.0f64, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(*y), b.max(*y))
    });
    if !(x0.is_finite() && x1.is_finite() && y1.is_finite()) {
        return Err(format!("{}: nothing to plot", path.display()));
    }
    let pad = (x1 - x0).max(1e-9) * 0.05;
    let mut builder = ChartBuilder::on(&root);
    builder
        .margin(20)
        .x_label_area_size(if labels { 45 } else { 10 })
        .y_label_area_size(if labels { 70 } else { 10 });
    if labels {
        builder.caption(
            "pump-probe: photons per mJ against delay",
            ("sans-serif", 24),
        );
    }
    let mut chart = builder
        .build_cartesian_2d((x0 - pad)..(x1 + pad), y0..(y1 * 1.1))
        .map_err(|e| err(&e))?;
    let mut mesh = chart.configure_mesh();
    if labels {
        mesh.x_desc("delay / ps").y_desc("photons / mJ");
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw().map_err(|e| err(&e))?;
    let series: [Series; 3] = [
        (
            "laser on",
            RGBColor(200, 40, 40),
            Box::new(|p: &DelayPoint| p.mean_on()),
        ),
        (
            "laser off",
            RGBColor(40, 80, 200),
            Box::new(|p: &DelayPoint| p.mean_off()),
        ),
        (
            "on − off",
            RGBColor(30, 140, 60),
            Box::new(|p: &DelayPoint| p.mean_on() - p.mean_off()),
        ),
    ];
    for (name, color, f) in series.iter() {
        let data: Vec<(f64, f64)> = points
            .iter()
            .filter_map(|p| finite(f(p)).map(|y| (p.delay, y)))
            .collect();
        let drawn = chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?;
        if labels {
            let c = *color;
            drawn.label(*name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
            });
        }
        chart
            .draw_series(
                data.iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, color.filled())),
            )
            .map_err(|e| err(&e))?;
    }
    if labels {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_pngs_one_after_another() {
        let points = vec![
            DelayPoint {
                delay: -1.0,
                n_on: 2,
                sum_on: 800.0,
                n_off: 2,
                sum_off: 800.0,
            },
            DelayPoint {
                delay: 1.0,
                n_on: 2,
                sum_on: 1100.0,
                n_off: 2,
                sum_off: 790.0,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 {
            let path = dir.path().join(format!("curve{i}.png"));
            pump_probe(&points, &path).unwrap();
            assert!(std::fs::metadata(&path).unwrap().len() > 1000);
        }
    }
}
