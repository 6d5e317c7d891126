//! How EuXFEL's detector receivers lay out a module in a run: which key holds its frames,
//! which its memory cells and gain bits, and how its source names the module. `extract
//! --calibrate` and `--geometry` both read these here, so the two cannot disagree.
//!
//! ```
//! use shotflow::exdf::modules::ModuleLayout;
//!
//! let jungfrau = ModuleLayout::of_frames("data.adc").unwrap();
//! assert_eq!((jungfrau.cells, jungfrau.gain), ("data.memoryCell", Some("data.gain")));
//! assert_eq!(jungfrau.module("SPB_IRDA_JF4M/DET/JNGFR03:daqOutput"), Some(2));
//!
//! let agipd = ModuleLayout::of_frames("image.data").unwrap();
//! assert_eq!((agipd.cells, agipd.gain), ("image.cellId", None));
//! assert_eq!(agipd.module("SPB_DET_AGIPD1M-1/DET/15CH0:xtdf"), Some(15));
//! assert_eq!(agipd.module("SPB_IRDA_JF4M/DET/JNGFR03:daqOutput"), None);
//! assert!(ModuleLayout::of_frames("image.cellId").is_none());
//! ```

/// One kind of module source: its keys, and how its name numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleLayout {
    /// The key of the frames (one train's row holds its frames).
    pub frames: &'static str,
    /// The key of each frame's memory (storage) cell.
    pub cells: &'static str,
    /// The key of the gain bits, when the detector stores them apart from the frames.
    pub gain: Option<&'static str>,
    /// What stands between `/DET/` and the module's number in the source name.
    prefix: &'static str,
    /// The number of the first module (extra-data counts from 0 either way).
    first: usize,
}

/// AGIPD, LPD and DSSC (XTDF): `…/DET/<m>CH0:xtdf`, frames and cells under `image.`.
pub const XTDF: ModuleLayout = ModuleLayout {
    frames: "image.data",
    cells: "image.cellId",
    gain: None,
    prefix: "",
    first: 0,
};

/// JUNGFRAU: `…/DET/JNGFR<n>:daqOutput`, numbered from 1; 14-bit ADC values in `data.adc`,
/// the gain bits beside them in `data.gain`, storage cells in `data.memoryCell`.
pub const JUNGFRAU: ModuleLayout = ModuleLayout {
    frames: "data.adc",
    cells: "data.memoryCell",
    gain: Some("data.gain"),
    prefix: "JNGFR",
    first: 1,
};

impl ModuleLayout {
    /// Every layout shotflow knows.
    pub const ALL: [ModuleLayout; 2] = [XTDF, JUNGFRAU];

    /// The layout whose frames are the key `name`.
    pub fn of_frames(name: &str) -> Option<ModuleLayout> {
        Self::ALL.into_iter().find(|l| l.frames == name)
    }

    /// The module (from 0, as extra-data and the geometries count) that `source` is, if it
    /// is a module source of this layout.
    pub fn module(&self, source: &str) -> Option<usize> {
        let (_, rest) = source.split_once("/DET/")?;
        let rest = rest.strip_prefix(self.prefix)?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<usize>().ok()?.checked_sub(self.first)
    }
}
