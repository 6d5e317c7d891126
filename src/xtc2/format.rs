//! The fixed headers of XTC2: the 24-byte datagram header and the 12-byte `Xtc` header, read
//! with unaligned little-endian loads (nothing in a file is padded or aligned).

/// Bytes of a datagram header: time (8), env (4) and the root `Xtc` header (12).
pub const DGRAM_HEADER: usize = 24;
/// Bytes of an `Xtc` header.
pub const XTC_HEADER: usize = 12;

/// What an `Xtc` holds (its type id's low 12 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XtcKind {
    /// Child `Xtc`s end to end.
    Parent,
    /// A `Shapes` and a `Data` child, values of one Names block.
    ShapesData,
    /// Array shapes.
    Shapes,
    /// Packed values.
    Data,
    /// The schema of a detector/algorithm block.
    Names,
    /// Anything else: skipped.
    Other(u16),
}

/// Damage bit 3: a Parent whose payload the readers skip.
pub const CORRUPTED: u16 = 1 << 3;

/// An `Xtc` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Xtc {
    /// Source: a NamesId (low 28 bits) for Names and ShapesData.
    pub src: u32,
    /// Damage bits (low 12) and user bits.
    pub damage: u16,
    /// Type id and version.
    pub contains: u16,
    /// Bytes including this header.
    pub extent: u32,
}

/// A little-endian `u32` at `at`, if the bytes are there.
pub fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// A little-endian `u16` at `at`, if the bytes are there.
pub fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes(b.try_into().ok()?))
}

/// A little-endian `u64` at `at`, if the bytes are there.
pub fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    let b = buf.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

impl Xtc {
    /// The header at `at`, if 12 bytes are there.
    pub fn at(buf: &[u8], at: usize) -> Option<Xtc> {
        Some(Xtc {
            src: u32_at(buf, at)?,
            damage: u16_at(buf, at + 4)?,
            contains: u16_at(buf, at + 6)?,
            extent: u32_at(buf, at + 8)?,
        })
    }

    /// What it holds.
    pub fn kind(&self) -> XtcKind {
        match self.contains & 0x0FFF {
            0 => XtcKind::Parent,
            1 => XtcKind::ShapesData,
            2 => XtcKind::Shapes,
            3 => XtcKind::Data,
            4 => XtcKind::Names,
            other => XtcKind::Other(other),
        }
    }

    /// The 20 bits that key a Names block (node and id).
    pub fn names_id(&self) -> u32 {
        self.src & 0x0FFF_FFFF
    }
}

/// A datagram header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dgram {
    /// `sec << 32 | nsec`: the event's identity across streams.
    pub timestamp: u64,
    /// Control bits (transition id in bits 24..28) and readout groups.
    pub env: u32,
    /// The root `Xtc`.
    pub xtc: Xtc,
}

impl Dgram {
    /// The header at the start of `buf`, if 24 bytes are there.
    pub fn parse(buf: &[u8]) -> Option<Dgram> {
        Some(Dgram {
            timestamp: u64_at(buf, 0)?,
            env: u32_at(buf, 8)?,
            xtc: Xtc::at(buf, 12)?,
        })
    }

    /// Bytes of the whole datagram: `12 + extent`.
    pub fn size(&self) -> u64 {
        12 + self.xtc.extent as u64
    }

    /// The transition.
    pub fn transition(&self) -> Transition {
        Transition::from_id(((self.env >> 24) & 0xF) as u8)
    }
}

/// Transition ids (`TransitionId.hh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Transition {
    ClearReadout,
    Reset,
    Configure,
    Unconfigure,
    BeginRun,
    EndRun,
    BeginStep,
    EndStep,
    Enable,
    Disable,
    SlowUpdate,
    EndOfBatch,
    L1Accept,
    Unknown(u8),
}

impl Transition {
    /// Its id.
    pub fn id(self) -> u8 {
        use Transition::*;
        match self {
            ClearReadout => 0,
            Reset => 1,
            Configure => 2,
            Unconfigure => 3,
            BeginRun => 4,
            EndRun => 5,
            BeginStep => 6,
            EndStep => 7,
            Enable => 8,
            Disable => 9,
            SlowUpdate => 10,
            EndOfBatch => 11,
            L1Accept => 12,
            Unknown(id) => id,
        }
    }

    /// The transition of an id.
    pub fn from_id(id: u8) -> Transition {
        use Transition::*;
        match id {
            0 => ClearReadout,
            1 => Reset,
            2 => Configure,
            3 => Unconfigure,
            4 => BeginRun,
            5 => EndRun,
            6 => BeginStep,
            7 => EndStep,
            8 => Enable,
            9 => Disable,
            10 => SlowUpdate,
            11 => EndOfBatch,
            12 => L1Accept,
            other => Unknown(other),
        }
    }
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transition::Unknown(id) => write!(f, "transition {id}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Element types of Names fields (`Name::DataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
#[repr(u32)]
pub enum DataType {
    U8 = 0,
    U16 = 1,
    U32 = 2,
    U64 = 3,
    I8 = 4,
    I16 = 5,
    I32 = 6,
    I64 = 7,
    F32 = 8,
    F64 = 9,
    /// A NUL-terminated string: a rank-1 char array.
    CharStr = 10,
    /// An enum value (int32), named `field:EnumType`.
    EnumVal = 11,
    /// An enum label's code (int32), named `Label:EnumType`: part of the schema, not a field.
    EnumDict = 12,
}

impl DataType {
    /// The type of a file's code.
    pub fn from_code(code: u32) -> Option<DataType> {
        use DataType::*;
        Some(match code {
            0 => U8,
            1 => U16,
            2 => U32,
            3 => U64,
            4 => I8,
            5 => I16,
            6 => I32,
            7 => I64,
            8 => F32,
            9 => F64,
            10 => CharStr,
            11 => EnumVal,
            12 => EnumDict,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        use DataType::*;
        match self {
            U8 | I8 | CharStr => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 | EnumVal | EnumDict => 4,
            U64 | I64 | F64 => 8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smd L1Accept of the format notes' worked example.
    #[test]
    fn the_worked_example_reads_as_the_notes_say() {
        let bytes: Vec<u8> = [
            "04000000",
            "01000000",
            "0000000c",
            "00000000",
            "0000",
            "0000",
            "40000000",
            "00000200",
            "0000",
            "0100",
            "34000000",
            "00000000",
            "0000",
            "0200",
            "0c000000",
            "00000000",
            "0000",
            "0300",
            "1c000000",
            "10a0000000000000",
            "5003000000000000",
        ]
        .concat()
        .as_bytes()
        .chunks(2)
        .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
        .collect();
        let d = Dgram::parse(&bytes).unwrap();
        assert_eq!(d.timestamp, (1 << 32) | 4);
        assert_eq!(d.transition(), Transition::L1Accept);
        assert_eq!(d.size(), 76);
        let sd = Xtc::at(&bytes, 24).unwrap();
        assert_eq!(
            (sd.kind(), sd.names_id(), sd.extent),
            (XtcKind::ShapesData, 0x20000, 52)
        );
        assert_eq!(u64_at(&bytes, 24 + 12 + 12 + 12), Some(40976));
        assert_eq!(u64_at(&bytes, 24 + 12 + 12 + 12 + 8), Some(848));
        assert_eq!(u32_at(&bytes, 74), None, "no load past the end");
    }
}
