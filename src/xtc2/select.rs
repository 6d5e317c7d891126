//! What to read of an XTC2 run: `DET[:ALG[:FIELD]]`, with globs in each part. XTC2 detector
//! and algorithm names hold no `:`, so the first two `:` split the parts and the field keeps
//! any further ones (EPICS names such as `HX2:DVD:GCC:01:PMON`).

use glob::Pattern;

use super::Xtc2Error;

/// One selector.
///
/// ```
/// use shotflow::xtc2::Xtc2Selector;
///
/// let s = Xtc2Selector::parse("xpp*:raw").unwrap();
/// assert!(s.matches("xppcspad", "raw", "arrayRaw"));
/// assert!(!s.matches("xppcspad", "fex", "arrayRaw"));
/// let pv = Xtc2Selector::parse("epics:raw:HX2:DVD:GCC:01:PMON").unwrap();
/// assert!(pv.matches("epics", "raw", "HX2:DVD:GCC:01:PMON"));
/// ```
#[derive(Clone, Debug)]
pub struct Xtc2Selector {
    text: String,
    det: Pattern,
    alg: Option<Pattern>,
    field: Option<Pattern>,
}

impl Xtc2Selector {
    /// Parses `DET[:ALG[:FIELD]]`.
    pub fn parse(text: &str) -> Result<Xtc2Selector, Xtc2Error> {
        let bad = |e: glob::PatternError| Xtc2Error::Run {
            path: text.to_string(),
            message: format!("not a selector DET[:ALG[:FIELD]]: {e}"),
        };
        let mut parts = text.splitn(3, ':');
        let det = parts
            .next()
            .filter(|d| !d.is_empty())
            .ok_or(Xtc2Error::Run {
                path: text.to_string(),
                message: "not a selector DET[:ALG[:FIELD]]: no detector".into(),
            })?;
        Ok(Xtc2Selector {
            text: text.to_string(),
            det: Pattern::new(det).map_err(bad)?,
            alg: parts.next().map(Pattern::new).transpose().map_err(bad)?,
            field: parts.next().map(Pattern::new).transpose().map_err(bad)?,
        })
    }

    /// Everything.
    pub fn all() -> Xtc2Selector {
        Xtc2Selector::parse("*").expect("a valid pattern")
    }

    /// Whether it selects this field.
    pub fn matches(&self, det: &str, alg: &str, field: &str) -> bool {
        self.det.matches(det)
            && self.alg.as_ref().is_none_or(|p| p.matches(alg))
            && self.field.as_ref().is_none_or(|p| p.matches(field))
    }

    /// Whether it can select anything of this detector's algorithm.
    pub fn matches_block(&self, det: &str, alg: &str) -> bool {
        self.det.matches(det) && self.alg.as_ref().is_none_or(|p| p.matches(alg))
    }

    /// The text it was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }
}
