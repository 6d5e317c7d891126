//! Result plots a pipeline publishes while it runs: a series, a histogram or an image, by name.
//! The dashboard draws the latest of each.
//!
//! A sink calls [`publish`] on its worker whenever it has something new (typically after each
//! batch it completes). The plot waits on that worker until its next metrics snapshot, which
//! carries it to process 0, so a plot published on any worker of any process reaches the
//! dashboard; only the latest plot of each name travels. Outside a monitored run (no
//! dashboard), publishing costs one clone into a thread-local slot.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The longest side of a published image: larger images are binned down when published, so a
/// megapixel detector costs the metrics channel at most 64 k pixels.
pub const IMAGE_SIDE: usize = 256;

/// A result plot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Plot {
    /// Lines over a common x axis.
    Series {
        /// Label of the x axis.
        x_label: String,
        /// Label of the y axis.
        y_label: String,
        /// The x values.
        x: Vec<f64>,
        /// Named lines, each one y per x.
        lines: Vec<(String, Vec<f64>)>,
    },
    /// Counts in bins.
    Histogram {
        /// Label of the x axis.
        x_label: String,
        /// Bin edges: one more than counts.
        edges: Vec<f64>,
        /// Counts per bin.
        counts: Vec<u64>,
    },
    /// A 2-D image, row-major.
    Image {
        /// Columns.
        width: usize,
        /// Rows.
        height: usize,
        /// `width × height` values.
        pixels: Vec<f32>,
    },
}

impl Plot {
    /// What kind of plot it is: "series", "histogram" or "image".
    pub fn kind(&self) -> &'static str {
        match self {
            Plot::Series { .. } => "series",
            Plot::Histogram { .. } => "histogram",
            Plot::Image { .. } => "image",
        }
    }

    /// An image of `rows × columns` values, binned down by the mean of blocks so that neither
    /// side exceeds [`IMAGE_SIDE`].
    ///
    /// ```
    /// use shotflow::monitor::Plot;
    ///
    /// let plot = Plot::image(1024, 512, &vec![2.0f32; 1024 * 512]);
    /// let Plot::Image { width, height, pixels } = plot else { unreachable!() };
    /// assert_eq!((width, height), (128, 256));
    /// assert!(pixels.iter().all(|p| *p == 2.0));
    /// ```
    pub fn image(rows: usize, columns: usize, values: &[f32]) -> Plot {
        assert_eq!(values.len(), rows * columns, "an image of {rows}×{columns}");
        let factor = rows.max(columns).div_ceil(IMAGE_SIDE).max(1);
        let (height, width) = (rows.div_ceil(factor), columns.div_ceil(factor));
        let mut sums = vec![0f64; width * height];
        let mut counts = vec![0u32; width * height];
        for (r, row) in values.chunks_exact(columns.max(1)).enumerate() {
            let base = (r / factor) * width;
            for (c, v) in row.iter().enumerate() {
                sums[base + c / factor] += *v as f64;
                counts[base + c / factor] += 1;
            }
        }
        let pixels = sums
            .iter()
            .zip(&counts)
            .map(|(s, n)| (s / (*n).max(1) as f64) as f32)
            .collect();
        Plot::Image {
            width,
            height,
            pixels,
        }
    }
}

thread_local! {
    /// Plots published on this worker since its last snapshot, the latest of each name.
    static PENDING: RefCell<BTreeMap<String, Plot>> = const { RefCell::new(BTreeMap::new()) };
}

/// Publishes `plot` under `name` to the run's dashboard, replacing the previous plot of that
/// name. Call it from a sink or operator on a worker thread.
///
/// # Examples
///
/// ```
/// use shotflow::monitor::{publish, Plot};
///
/// publish("photons per shot", Plot::Histogram {
///     x_label: "photons".into(),
///     edges: vec![0.0, 10.0, 20.0],
///     counts: vec![5, 7],
/// });
/// ```
pub fn publish(name: &str, plot: Plot) {
    PENDING.with(|p| p.borrow_mut().insert(name.to_string(), plot));
}

/// Takes the plots published on this worker since the last call.
pub(crate) fn take_published() -> Vec<(String, Plot)> {
    PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()).into_iter().collect())
}
