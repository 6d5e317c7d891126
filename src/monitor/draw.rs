//! Pictures of a run, drawn on the server: the dataflow graph as SVG (layout-rs lays out the
//! same DOT text `--graph x.dot` writes), plots as SVG (plotters) and images as PNG.
//!
//! Drawing on the server keeps the dashboard page free of any JavaScript library: it only
//! swaps pictures and numbers, and the pictures are the ones a file output would hold.

use std::sync::OnceLock;

use plotters::prelude::*;

use super::publish::Plot;

/// The font plots label with: Debian's `fonts-dejavu-core` (installed by `./run`). Without it
/// plots are drawn without text.
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers the label font with plotters, once per process; whether plots can have text.
/// plotters keeps registered fonts for the life of the process and wants them `'static`.
pub fn register_font() -> bool {
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

/// The DOT text of a dataflow graph ([`super::WorkerLog::dot`]) laid out and drawn as SVG.
///
/// ```
/// let svg = shotflow::monitor::draw::graph("digraph { a -> b [style=dashed]; }").unwrap();
/// assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"));
/// ```
pub fn graph(dot: &str) -> Result<String, String> {
    use layout::backends::svg::SVGWriter;
    use layout::gv::{DotParser, GraphBuilder};
    // DOT's escaped line break; layout-rs breaks labels at real ones.
    let dot = dot.replace("\\n", "\n");
    let mut parser = DotParser::new(&dot);
    let ast = parser.process()?;
    // The layout code asserts on inputs it does not handle; a picture is not worth a panic.
    std::panic::catch_unwind(move || {
        let mut builder = GraphBuilder::new();
        builder.visit_graph(&ast);
        let mut graph = builder.get();
        let mut svg = SVGWriter::new();
        graph.do_it(false, false, false, &mut svg);
        svg.finalize()
    })
    .map_err(|_| "the graph could not be laid out".to_string())
}

/// Colours of successive lines.
const COLOURS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Finite bounds of `values`, widened when flat.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    let pad = ((hi - lo) * 0.05).max(hi.abs().max(1.0) * 1e-6);
    Some((lo - pad, hi + pad))
}

/// Lines over a common x axis as SVG.
///
/// ```
/// let svg = shotflow::monitor::draw::lines("t", "rate", &[0.0, 1.0], &[("w0".into(), vec![1.0, 2.0])]);
/// assert!(svg.contains("<svg"));
/// ```
pub fn lines(x_label: &str, y_label: &str, x: &[f64], lines: &[(String, Vec<f64>)]) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (640, 320)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let xs = bounds(x.iter().copied());
        let ys = bounds(lines.iter().flat_map(|(_, y)| y.iter().copied()));
        let (Some((x0, x1)), Some((y0, y1))) = (xs, ys) else {
            return EMPTY.to_string();
        };
        let labels = register_font();
        let mut builder = ChartBuilder::on(&root);
        builder
            .margin(12)
            .x_label_area_size(if labels { 36 } else { 4 })
            .y_label_area_size(if labels { 64 } else { 4 });
        let Ok(mut chart) = builder.build_cartesian_2d(x0..x1, y0.min(0.0)..y1) else {
            return String::new();
        };
        let mut mesh = chart.configure_mesh();
        if labels {
            mesh.x_desc(x_label).y_desc(y_label);
        } else {
            mesh.disable_x_axis().disable_y_axis();
        }
        let _ = mesh.light_line_style(RGBColor(235, 235, 235)).draw();
        for (i, (name, y)) in lines.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points = x
                .iter()
                .zip(y)
                .filter(|(a, b)| a.is_finite() && b.is_finite())
                .map(|(a, b)| (*a, *b));
            if let Ok(series) = chart.draw_series(LineSeries::new(points, colour.stroke_width(2))) {
                if labels {
                    series.label(name.as_str()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                    });
                }
            }
        }
        if labels && !lines.is_empty() {
            let _ = chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .draw();
        }
        let _ = root.present();
    }
    out
}

/// The picture of a plot with nothing to draw yet.
const EMPTY: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"320\"><text x=\"20\" y=\"40\">no data yet</text></svg>";

/// A histogram as SVG.
///
/// ```
/// let svg = shotflow::monitor::draw::histogram("photons", &[0.0, 1.0, 2.0], &[3, 4]);
/// assert!(svg.contains("<rect"));
/// ```
pub fn histogram(x_label: &str, edges: &[f64], counts: &[u64]) -> String {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (640, 320)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let (Some((x0, x1)), Some(top)) = (
            bounds(edges.iter().copied()),
            counts.iter().max().map(|m| (*m).max(1) as f64 * 1.05),
        ) else {
            return EMPTY.to_string();
        };
        let labels = register_font();
        let mut builder = ChartBuilder::on(&root);
        builder
            .margin(12)
            .x_label_area_size(if labels { 36 } else { 4 })
            .y_label_area_size(if labels { 64 } else { 4 });
        let Ok(mut chart) = builder.build_cartesian_2d(x0..x1, 0.0..top) else {
            return String::new();
        };
        let mut mesh = chart.configure_mesh();
        if labels {
            mesh.x_desc(x_label).y_desc("count");
        } else {
            mesh.disable_x_axis().disable_y_axis();
        }
        let _ = mesh.light_line_style(RGBColor(235, 235, 235)).draw();
        let bars = edges
            .windows(2)
            .zip(counts)
            .map(|(e, n)| Rectangle::new([(e[0], 0.0), (e[1], *n as f64)], COLOURS[0].filled()));
        let _ = chart.draw_series(bars);
        let _ = root.present();
    }
    out
}

/// A published series or histogram as SVG (`None` for an image).
pub fn plot_svg(plot: &Plot) -> Option<String> {
    match plot {
        Plot::Series {
            x_label,
            y_label,
            x,
            lines: l,
        } => Some(lines(x_label, y_label, x, l)),
        Plot::Histogram {
            x_label,
            edges,
            counts,
        } => Some(histogram(x_label, edges, counts)),
        Plot::Image { .. } => None,
    }
}

/// A published image as PNG, its values mapped from their 1st to 99th percentile onto a
/// dark-to-light colour scale (`None` for other plots).
///
/// ```
/// use shotflow::monitor::{draw, Plot};
///
/// let png = draw::image_png(&Plot::image(2, 3, &[0., 1., 2., 3., 4., 5.])).unwrap();
/// assert_eq!(&png[1..4], b"PNG");
/// ```
pub fn image_png(plot: &Plot) -> Option<Vec<u8>> {
    let Plot::Image {
        width,
        height,
        pixels,
    } = plot
    else {
        return None;
    };
    let mut finite: Vec<f32> = pixels.iter().copied().filter(|v| v.is_finite()).collect();
    finite.sort_by(f32::total_cmp);
    let at = |q: f64| {
        finite
            .get(((finite.len().saturating_sub(1)) as f64 * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let (lo, hi) = (at(0.01), at(0.99));
    let span = (hi - lo).max(f32::EPSILON);
    let mut rgb = Vec::with_capacity(pixels.len() * 3);
    for v in pixels {
        let t = if v.is_finite() {
            ((v - lo) / span).clamp(0.0, 1.0)
        } else {
            0.0
        };
        // A dark blue → teal → yellow ramp, readable in print and for most colour vision.
        let (r, g, b) = (
            (255.0 * t.powf(1.5)) as u8,
            (40.0 + 200.0 * t) as u8,
            (90.0 + 80.0 * (1.0 - t) * t * 4.0 - 60.0 * t) as u8,
        );
        rgb.extend_from_slice(&[r, g, b]);
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, *width as u32, *height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().ok()?;
        writer.write_image_data(&rgb).ok()?;
    }
    Some(out)
}
