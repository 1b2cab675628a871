//! A bounded MessagePack reader over a byte slice, shared by the v0.3/v0.4 and v0.5
//! decoders.
//!
//! Every length read from the payload is checked against the bytes left before the caller
//! can allocate anything for it: an array of n elements needs at least n bytes (more when
//! the caller knows a larger minimum element size), a map of n entries at least 2n bytes, a
//! string of n bytes n bytes. Skipping a value is iterative (a count of values still to
//! skip, itself bounded by the bytes left), so no payload can make the decoder recurse.

use rmp::Marker;

use super::error::{Fail, Reason};

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// An integer as read: non-negative values as `U`, negative ones as `I`.
pub(crate) enum Int {
    U(u64),
    I(i64),
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Offset of the next byte to read.
    #[inline(always)]
    pub fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless the whole buffer was read.
    pub fn finish(&self) -> Result<(), Fail> {
        match self.left() {
            0 => Ok(()),
            n => Err(Fail::new(Reason::Trailing(n), self.pos)),
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        if n > self.left() {
            return Err(self.truncated(n));
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    #[inline]
    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], Fail> {
        match self.buf.get(self.pos..self.pos + N) {
            Some(bytes) => {
                let mut out = [0; N];
                out.copy_from_slice(bytes);
                self.pos += N;
                Ok(out)
            }
            None => Err(self.truncated(N)),
        }
    }

    #[cold]
    fn truncated(&self, n: usize) -> Fail {
        Fail::new(
            Reason::Truncated {
                needed: n - self.left(),
            },
            self.pos,
        )
    }

    #[inline]
    fn byte(&mut self) -> Result<u8, Fail> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.truncated(1)),
        }
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, Fail> {
        self.byte()
    }

    #[inline]
    fn u16(&mut self) -> Result<u16, Fail> {
        self.take_array().map(u16::from_be_bytes)
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, Fail> {
        self.take_array().map(u32::from_be_bytes)
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, Fail> {
        self.take_array().map(u64::from_be_bytes)
    }

    /// Consumes a nil if one comes next.
    #[inline(always)]
    pub fn nil(&mut self) -> bool {
        if self.buf.get(self.pos) == Some(&0xc0) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Reads an array header whose elements each take at least `min_elem` bytes.
    #[inline]
    pub fn array_len(&mut self, expected: &'static str, min_elem: usize) -> Result<usize, Fail> {
        let start = self.pos;
        let n = match Marker::from_u8(self.byte()?) {
            Marker::FixArray(n) => u64::from(n),
            Marker::Array16 => u64::from(self.u16()?),
            Marker::Array32 => u64::from(self.u32()?),
            other => return Err(type_error(expected, other, start)),
        };
        self.fits("array", n, min_elem, start)
    }

    /// Reads a map header (each entry takes at least 2 bytes).
    #[inline(always)]
    pub fn map_len(&mut self, expected: &'static str) -> Result<usize, Fail> {
        let start = self.pos;
        let n = match Marker::from_u8(self.byte()?) {
            Marker::FixMap(n) => u64::from(n),
            Marker::Map16 => u64::from(self.u16()?),
            Marker::Map32 => u64::from(self.u32()?),
            other => return Err(type_error(expected, other, start)),
        };
        self.fits("map", n, 2, start)
    }

    #[inline]
    fn fits(&self, what: &'static str, n: u64, min: usize, start: usize) -> Result<usize, Fail> {
        let left = self.left();
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(min) <= left => Ok(n),
            _ => Err(Fail::new(
                Reason::Length {
                    what,
                    claimed: n,
                    left,
                },
                start,
            )),
        }
    }

    /// A string or binary value, as its bytes.
    #[inline(always)]
    pub fn str_bytes(&mut self, expected: &'static str) -> Result<&'a [u8], Fail> {
        // Fast paths: a fixstr (up to 31 bytes) or a str8 (up to 255) that is all there.
        match self.buf.get(self.pos) {
            Some(&b) if b & 0xe0 == 0xa0 => {
                let start = self.pos + 1;
                if let Some(text) = self.buf.get(start..start + usize::from(b & 0x1f)) {
                    self.pos = start + text.len();
                    return Ok(text);
                }
            }
            Some(0xd9) => {
                if let Some(&n) = self.buf.get(self.pos + 1) {
                    let start = self.pos + 2;
                    if let Some(text) = self.buf.get(start..start + usize::from(n)) {
                        self.pos = start + text.len();
                        return Ok(text);
                    }
                }
            }
            _ => {}
        }
        self.any_str_bytes(expected)
    }

    fn any_str_bytes(&mut self, expected: &'static str) -> Result<&'a [u8], Fail> {
        let start = self.pos;
        let n = match Marker::from_u8(self.byte()?) {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 | Marker::Bin8 => usize::from(self.u8()?),
            Marker::Str16 | Marker::Bin16 => usize::from(self.u16()?),
            Marker::Str32 | Marker::Bin32 => self.u32()? as usize,
            other => return Err(type_error(expected, other, start)),
        };
        if n > self.left() {
            return Err(Fail::new(
                Reason::Length {
                    what: "string",
                    claimed: n as u64,
                    left: self.left(),
                },
                start,
            ));
        }
        self.take(n)
    }

    /// A string, binary or nil (read as empty) value.
    #[inline(always)]
    pub fn str_or_nil(&mut self, expected: &'static str) -> Result<&'a [u8], Fail> {
        if self.nil() {
            Ok(&[])
        } else {
            self.str_bytes(expected)
        }
    }

    /// Any MessagePack integer, of any width and sign.
    #[inline(always)]
    pub fn int(&mut self, expected: &'static str) -> Result<Int, Fail> {
        // Fast paths: a positive fixint, a uint64 (ids and times), a uint32.
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                return Ok(Int::U(u64::from(b)));
            }
            Some(0xcf) => {
                if let Some(bytes) = self.buf.get(self.pos + 1..self.pos + 9) {
                    self.pos += 9;
                    let mut be = [0; 8];
                    be.copy_from_slice(bytes);
                    return Ok(Int::U(u64::from_be_bytes(be)));
                }
            }
            Some(0xce) => {
                if let Some(bytes) = self.buf.get(self.pos + 1..self.pos + 5) {
                    self.pos += 5;
                    let mut be = [0; 4];
                    be.copy_from_slice(bytes);
                    return Ok(Int::U(u64::from(u32::from_be_bytes(be))));
                }
            }
            _ => {}
        }
        self.any_int(expected)
    }

    fn any_int(&mut self, expected: &'static str) -> Result<Int, Fail> {
        let start = self.pos;
        let signed = |i: i64| if i < 0 { Int::I(i) } else { Int::U(i as u64) };
        Ok(match Marker::from_u8(self.byte()?) {
            Marker::FixPos(n) => Int::U(u64::from(n)),
            Marker::FixNeg(n) => Int::I(i64::from(n)),
            Marker::U8 => Int::U(u64::from(self.u8()?)),
            Marker::U16 => Int::U(u64::from(self.u16()?)),
            Marker::U32 => Int::U(u64::from(self.u32()?)),
            Marker::U64 => Int::U(self.u64()?),
            Marker::I8 => signed(i64::from(self.u8()? as i8)),
            Marker::I16 => signed(i64::from(self.u16()? as i16)),
            Marker::I32 => signed(i64::from(self.u32()? as i32)),
            Marker::I64 => signed(self.u64()? as i64),
            other => return Err(type_error(expected, other, start)),
        })
    }

    /// A span, trace or parent id: any integer (nil reads as 0). A negative value is taken
    /// as the two's complement of an unsigned id, as clients with signed 64-bit ids send it.
    #[inline(always)]
    pub fn id(&mut self) -> Result<u64, Fail> {
        if self.nil() {
            return Ok(0);
        }
        Ok(match self.int("an integer")? {
            Int::U(u) => u,
            Int::I(i) => i as u64,
        })
    }

    /// A signed 64-bit integer (start, duration); nil reads as 0.
    #[inline(always)]
    pub fn i64(&mut self) -> Result<i64, Fail> {
        if self.nil() {
            return Ok(0);
        }
        let start = self.pos;
        match self.int("an integer")? {
            Int::I(i) => Ok(i),
            Int::U(u) => i64::try_from(u).map_err(|_| range(u, "int64", start)),
        }
    }

    /// The `error` field: an int32, or a boolean as 0/1; nil reads as 0.
    #[inline]
    pub fn i32(&mut self) -> Result<i32, Fail> {
        let start = self.pos;
        match self.buf.get(self.pos) {
            Some(0xc0) | Some(0xc2) => {
                self.pos += 1;
                return Ok(0);
            }
            Some(0xc3) => {
                self.pos += 1;
                return Ok(1);
            }
            _ => {}
        }
        match self.int("an integer")? {
            Int::I(i) => i32::try_from(i).map_err(|_| range(i, "int32", start)),
            Int::U(u) => i32::try_from(u).map_err(|_| range(u, "int32", start)),
        }
    }

    /// A metric value: a float of either width or an integer.
    #[inline(always)]
    pub fn f64(&mut self) -> Result<f64, Fail> {
        match self.buf.get(self.pos) {
            Some(0xcb) => {
                self.pos += 1;
                Ok(f64::from_bits(self.u64()?))
            }
            Some(0xca) => {
                self.pos += 1;
                Ok(f64::from(f32::from_bits(self.u32()?)))
            }
            _ => Ok(match self.int("a number")? {
                Int::U(u) => u as f64,
                Int::I(i) => i as f64,
            }),
        }
    }

    /// Skips one value of any type, nested values included, without recursion.
    pub fn skip(&mut self) -> Result<(), Fail> {
        // Values still to skip; each needs at least one byte, so this never exceeds the
        // bytes left (checked below), whatever lengths the payload claims.
        let mut pending: usize = 1;
        while pending > 0 {
            pending -= 1;
            let start = self.pos;
            let skip_bytes = match Marker::from_u8(self.byte()?) {
                Marker::FixPos(_)
                | Marker::FixNeg(_)
                | Marker::Null
                | Marker::True
                | Marker::False => 0,
                Marker::U8 | Marker::I8 => 1,
                Marker::U16 | Marker::I16 => 2,
                Marker::U32 | Marker::I32 | Marker::F32 => 4,
                Marker::U64 | Marker::I64 | Marker::F64 => 8,
                Marker::FixStr(n) => usize::from(n),
                Marker::Str8 | Marker::Bin8 => usize::from(self.u8()?),
                Marker::Str16 | Marker::Bin16 => usize::from(self.u16()?),
                Marker::Str32 | Marker::Bin32 => self.u32()? as usize,
                Marker::FixExt1 => 2,
                Marker::FixExt2 => 3,
                Marker::FixExt4 => 5,
                Marker::FixExt8 => 9,
                Marker::FixExt16 => 17,
                Marker::Ext8 => usize::from(self.u8()?) + 1,
                Marker::Ext16 => usize::from(self.u16()?) + 1,
                Marker::Ext32 => self.u32()? as usize + 1,
                Marker::FixArray(n) => {
                    pending = self.more(pending, u64::from(n), start)?;
                    0
                }
                Marker::Array16 => {
                    let n = u64::from(self.u16()?);
                    pending = self.more(pending, n, start)?;
                    0
                }
                Marker::Array32 => {
                    let n = u64::from(self.u32()?);
                    pending = self.more(pending, n, start)?;
                    0
                }
                Marker::FixMap(n) => {
                    pending = self.more(pending, 2 * u64::from(n), start)?;
                    0
                }
                Marker::Map16 => {
                    let n = 2 * u64::from(self.u16()?);
                    pending = self.more(pending, n, start)?;
                    0
                }
                Marker::Map32 => {
                    let n = 2 * u64::from(self.u32()?);
                    pending = self.more(pending, n, start)?;
                    0
                }
                Marker::Reserved => return Err(Fail::new(Reason::Reserved, start)),
            };
            self.take(skip_bytes)?;
        }
        Ok(())
    }

    /// Adds `n` values to skip, failing when the bytes left cannot hold them all.
    fn more(&self, pending: usize, n: u64, start: usize) -> Result<usize, Fail> {
        let left = self.left();
        match usize::try_from(n).ok().and_then(|n| n.checked_add(pending)) {
            Some(total) if total <= left => Ok(total),
            _ => Err(Fail::new(
                Reason::Length {
                    what: "nested value",
                    claimed: n,
                    left,
                },
                start,
            )),
        }
    }
}

#[cold]
pub(crate) fn type_error(expected: &'static str, got: Marker, offset: usize) -> Fail {
    if let Marker::Reserved = got {
        return Fail::new(Reason::Reserved, offset);
    }
    Fail::new(
        Reason::Type {
            expected,
            got: kind(got),
        },
        offset,
    )
}

#[cold]
fn range(value: impl Into<i128>, target: &'static str, offset: usize) -> Fail {
    Fail::new(
        Reason::Range {
            value: value.into(),
            target,
        },
        offset,
    )
}

/// The MessagePack type of a marker, as said in error messages.
fn kind(marker: Marker) -> &'static str {
    match marker {
        Marker::Null => "nil",
        Marker::True | Marker::False => "boolean",
        Marker::FixPos(_)
        | Marker::FixNeg(_)
        | Marker::U8
        | Marker::U16
        | Marker::U32
        | Marker::U64
        | Marker::I8
        | Marker::I16
        | Marker::I32
        | Marker::I64 => "integer",
        Marker::F32 | Marker::F64 => "float",
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => "string",
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => "binary",
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => "array",
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => "map",
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16
        | Marker::Ext8
        | Marker::Ext16
        | Marker::Ext32 => "extension",
        Marker::Reserved => "reserved byte 0xc1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_claimed_lengths_fail_before_reading() {
        let mut r = Reader::new(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        let err = r.array_len("an array", 1).unwrap_err();
        assert_eq!(
            err.reason,
            Reason::Length {
                what: "array",
                claimed: u64::from(u32::MAX),
                left: 0
            }
        );
        let mut r = Reader::new(&[0xdf, 0, 0, 0, 2, 0xa0, 0xa0, 0xa0]);
        assert!(
            r.map_len("a map").is_err(),
            "2 entries need 4 bytes, 3 left"
        );
        let mut r = Reader::new(&[0xdb, 0, 0, 1, 0, b'a']);
        assert!(matches!(
            r.str_bytes("a string").unwrap_err().reason,
            Reason::Length {
                claimed: 256,
                left: 1,
                ..
            }
        ));
    }

    #[test]
    fn skip_handles_nesting_without_recursion() {
        // 100,000 nested single-element arrays around a 0: deep, yet skipped in a loop.
        let mut deep = vec![0x91; 100_000];
        deep.push(0x00);
        let mut r = Reader::new(&deep);
        r.skip().unwrap();
        assert_eq!(r.left(), 0);
        // A map claiming 2^32-1 entries inside a 6-byte payload.
        let mut r = Reader::new(&[0x91, 0xdf, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.skip().unwrap_err().reason,
            Reason::Length {
                what: "nested value",
                ..
            }
        ));
    }

    #[test]
    fn skip_covers_every_type() {
        let mut buf = Vec::new();
        rmp::encode::write_map_len(&mut buf, 2).unwrap();
        rmp::encode::write_str(&mut buf, "a").unwrap();
        rmp::encode::write_array_len(&mut buf, 7).unwrap();
        rmp::encode::write_nil(&mut buf).unwrap();
        rmp::encode::write_bool(&mut buf, true).unwrap();
        rmp::encode::write_i64(&mut buf, -5).unwrap();
        rmp::encode::write_f32(&mut buf, 1.5).unwrap();
        rmp::encode::write_bin(&mut buf, &[1, 2, 3]).unwrap();
        rmp::encode::write_ext_meta(&mut buf, 4, 7).unwrap();
        buf.extend_from_slice(&[9, 9, 9, 9]);
        rmp::encode::write_u64(&mut buf, u64::MAX).unwrap();
        rmp::encode::write_str(&mut buf, "b").unwrap();
        rmp::encode::write_str(&mut buf, &"x".repeat(300)).unwrap();
        buf.push(0x2a);
        let mut r = Reader::new(&buf);
        r.skip().unwrap();
        assert_eq!(
            r.int("an integer").ok().map(|i| matches!(i, Int::U(42))),
            Some(true)
        );
        assert_eq!(r.left(), 0);
    }

    #[test]
    fn numbers_of_every_width() {
        let mut buf = Vec::new();
        rmp::encode::write_u64(&mut buf, u64::MAX).unwrap();
        rmp::encode::write_i64(&mut buf, -1).unwrap();
        rmp::encode::write_u8(&mut buf, 200).unwrap();
        rmp::encode::write_u64(&mut buf, u64::MAX).unwrap();
        rmp::encode::write_bool(&mut buf, true).unwrap();
        rmp::encode::write_i64(&mut buf, i64::from(i32::MAX) + 1).unwrap();
        rmp::encode::write_f32(&mut buf, 0.5).unwrap();
        rmp::encode::write_sint(&mut buf, -3).unwrap();
        let mut r = Reader::new(&buf);
        assert_eq!(r.id().unwrap(), u64::MAX);
        assert_eq!(r.id().unwrap(), u64::MAX, "int64 -1 is the id 2^64-1");
        assert_eq!(r.i64().unwrap(), 200);
        assert!(matches!(
            r.i64().unwrap_err().reason,
            Reason::Range {
                target: "int64",
                ..
            }
        ));
        assert_eq!(r.i32().unwrap(), 1);
        assert!(r.i32().is_err());
        assert_eq!(r.f64().unwrap(), 0.5);
        assert_eq!(r.f64().unwrap(), -3.0);
        assert_eq!(r.left(), 0);
    }
}
