//! Names: the schema a Configure declares for each detector, segment and algorithm, and the
//! per-stream table that ShapesData look their schema up in.

use std::collections::HashMap;
use std::sync::Arc;

use super::format::{u32_at, DataType, Xtc};

/// Bytes of a Names block before its fields.
const NAMES_HEAD: usize = 1048;
/// Bytes of one field's record.
const NAME_RECORD: usize = 524;
/// Highest rank + 1.
const MAX_RANK: u32 = 5;

/// One field of a Names block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The name as the file gives it (`enumFex1:MyEnumName` for an enum).
    pub raw_name: String,
    /// The name psana shows: an enum's `:Type` suffix removed.
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// 0 for a scalar; 1 to 4 for arrays.
    pub rank: u32,
}

impl Field {
    /// A field as a file declares it: `raw_name` (`enumFex1:MyEnumName` for an enum), its
    /// type and rank.
    pub fn new(raw_name: &str, dtype: DataType, rank: u32) -> Field {
        let name = match dtype {
            DataType::EnumVal | DataType::EnumDict => raw_name.split(':').next().unwrap_or(""),
            _ => raw_name,
        };
        Field {
            raw_name: raw_name.to_string(),
            name: name.to_string(),
            dtype,
            rank,
        }
    }
}

/// One Names block: the schema of one detector segment's algorithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// Detector type (`jungfrau`, `hsd`, …).
    pub det_type: String,
    /// Detector name (`xppcspad`).
    pub det_name: String,
    /// Serial number.
    pub det_id: String,
    /// Algorithm (`raw`, `fex`, `runinfo`, …).
    pub alg: String,
    /// Algorithm version, `major << 16 | minor << 8 | micro`.
    pub version: u32,
    /// Which segment of the detector.
    pub segment: u32,
    /// The fields, in data order.
    pub fields: Vec<Field>,
}

impl Names {
    /// Reads the Names block whose `Xtc` header is at `at` in `buf`; an error says what is
    /// wrong (the caller adds the file and offset).
    pub fn parse(buf: &[u8], at: usize, xtc: &Xtc) -> Result<Names, String> {
        let extent = xtc.extent as usize;
        let block = buf
            .get(at..at + extent)
            .ok_or_else(|| format!("Names block of {extent} bytes beyond its datagram"))?;
        if extent < NAMES_HEAD || !(extent - NAMES_HEAD).is_multiple_of(NAME_RECORD) {
            return Err(format!(
                "Names block of {extent} bytes: not {NAMES_HEAD} + a whole number of {NAME_RECORD}-byte fields"
            ));
        }
        let text = |from: usize| c_string(&block[from..from + 256]);
        let mut fields = Vec::new();
        for k in 0..(extent - NAMES_HEAD) / NAME_RECORD {
            let r = NAMES_HEAD + k * NAME_RECORD;
            let raw_name = text(r + 260)?;
            let code = u32_at(block, r + 516).expect("within the checked extent");
            let rank = u32_at(block, r + 520).expect("within the checked extent");
            let dtype = DataType::from_code(code)
                .ok_or_else(|| format!("field {raw_name:?}: unknown data type {code}"))?;
            if rank >= MAX_RANK {
                return Err(format!("field {raw_name:?}: rank {rank}, at most 4"));
            }
            fields.push(Field::new(&raw_name, dtype, rank));
        }
        Ok(Names {
            det_type: text(16)?,
            det_name: text(272)?,
            det_id: text(528)?,
            alg: text(784)?,
            version: u32_at(block, 1040).expect("within the checked extent"),
            segment: u32_at(block, 1044).expect("within the checked extent"),
            fields,
        })
    }

    /// Fields that have an array shape (rank > 0), in order: the i-th uses Shape i.
    pub fn arrays(&self) -> usize {
        self.fields.iter().filter(|f| f.rank > 0).count()
    }

    /// `(code, label)` of each enum type's labels (the ENUMDICT entries), by enum type name.
    pub fn enum_labels(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter(|f| f.dtype == DataType::EnumDict)
            .filter_map(|f| {
                let (label, kind) = f.raw_name.split_once(':')?;
                Some((kind.to_string(), label.to_string()))
            })
            .collect()
    }
}

/// A `char[256]` up to its first NUL (the bytes after it may be anything).
fn c_string(bytes: &[u8]) -> Result<String, String> {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8(bytes[..end].to_vec())
        .map_err(|_| format!("a name that is not UTF-8: {:?}", &bytes[..end]))
}

/// The Names of one stream's current Configure, keyed by NamesId.
#[derive(Clone, Debug, Default)]
pub struct NamesTable {
    by_id: HashMap<u32, Arc<Names>>,
}

impl NamesTable {
    /// Adds a block; a NamesId declared twice in one Configure is an error, as in psana.
    pub fn insert(&mut self, id: u32, names: Names) -> Result<(), String> {
        if self.by_id.insert(id, Arc::new(names)).is_some() {
            return Err(format!("NamesId {id:#x} declared twice in one Configure"));
        }
        Ok(())
    }

    /// The block of a NamesId.
    pub fn get(&self, id: u32) -> Option<&Arc<Names>> {
        self.by_id.get(&id)
    }

    /// Every block, by NamesId.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Arc<Names>)> {
        self.by_id.iter().map(|(k, v)| (*k, v))
    }

    /// No block.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}
