//! An `ExportTraceServiceRequest` read where it lies, as its protobuf fields: no message
//! structs and no copies of its text, which is borrowed from the body.
//!
//! What is read means what prost's decoding means: a scalar field given twice keeps its
//! last value, and a message field given twice is the two merged, which for protobuf is
//! the fields of both in order (so [`Fields::of`] reads every occurrence of a field as one
//! message). A oneof (`AnyValue`) keeps its last variant, the messages of a run of the same
//! message variant merged. Text is checked to be UTF-8 where the transcoder reads it;
//! fields it does not read (links, trace state, schema URLs, dropped counts) are skipped as
//! bytes, so a request prost would refuse for those alone is taken.

use std::borrow::Cow;

/// Messages nested deeper are refused (prost's own limit).
pub const MAX_DEPTH: usize = 100;

/// Why a request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("malformed protobuf at byte {0}")]
    Malformed(usize),
    #[error("field {field} has wire type {wire_type} at byte {at}")]
    WireType {
        field: u32,
        wire_type: u8,
        at: usize,
    },
    #[error("invalid UTF-8 in a string at byte {0}")]
    Utf8(usize),
    #[error("values nested more than {MAX_DEPTH} deep")]
    TooDeep,
}

/// One field's value, by wire type.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
    /// A group, skipped.
    Group,
}

/// A field: its number, its value and where the value starts in the body.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    pub at: usize,
}

impl<'a> Field<'a> {
    fn wrong(&self, wire_type: u8) -> WireError {
        WireError::WireType {
            field: self.number,
            wire_type,
            at: self.at,
        }
    }

    fn wire_type(&self) -> u8 {
        match self.value {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Len(_) => 2,
            Value::Group => 3,
            Value::Fixed32(_) => 5,
        }
    }

    /// A length-delimited field's bytes (a message, bytes or a string).
    pub fn bytes(&self) -> Result<&'a [u8], WireError> {
        match self.value {
            Value::Len(b) => Ok(b),
            _ => Err(self.wrong(self.wire_type())),
        }
    }

    /// A message field, as [`Fields`] of its own.
    pub fn message(&self) -> Result<Fields<'a>, WireError> {
        Ok(Fields::new(self.bytes()?, self.at))
    }

    pub fn text(&self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| WireError::Utf8(self.at))
    }

    pub fn varint(&self) -> Result<u64, WireError> {
        match self.value {
            Value::Varint(v) => Ok(v),
            _ => Err(self.wrong(self.wire_type())),
        }
    }

    pub fn fixed64(&self) -> Result<u64, WireError> {
        match self.value {
            Value::Fixed64(v) => Ok(v),
            _ => Err(self.wrong(self.wire_type())),
        }
    }

    /// An `int32` or enum: the varint's low 32 bits, as prost reads it.
    pub fn int32(&self) -> Result<i32, WireError> {
        Ok(self.varint()? as i32)
    }
}

/// The fields of a message, in order; `base` is where it starts in the body.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
    base: usize,
}

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Fields { buf, at: 0, base }
    }

    /// The message's length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The fields of every occurrence of message field `number` of `parent`, in order: the
    /// occurrences merged, as protobuf merges a message field given twice.
    pub fn of(parent: Fields<'a>, number: u32) -> Merged<'a> {
        Merged {
            parent,
            number,
            inner: None,
        }
    }

    #[inline(always)]
    fn varint(&mut self) -> Option<u64> {
        sts_proto::varint::read(self.buf, &mut self.at).ok()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.buf.len())?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Some(bytes)
    }

    #[inline(always)]
    fn field(&mut self) -> Result<Field<'a>, WireError> {
        let malformed = WireError::Malformed(self.base + self.at);
        let key = self.varint().ok_or(malformed.clone())?;
        let number = u32::try_from(key >> 3).map_err(|_| malformed.clone())?;
        if number == 0 {
            return Err(malformed);
        }
        let at = self.base + self.at;
        let value = match key & 7 {
            0 => Value::Varint(self.varint().ok_or(malformed)?),
            1 => {
                let b = self.take(8).ok_or(malformed)?;
                Value::Fixed64(u64::from_le_bytes(
                    b.try_into().map_err(|_| WireError::Malformed(at))?,
                ))
            }
            2 => {
                let len = self.varint().ok_or(malformed.clone())?;
                let len = usize::try_from(len).map_err(|_| malformed.clone())?;
                let at = self.base + self.at;
                let bytes = self.take(len).ok_or(malformed)?;
                return Ok(Field {
                    number,
                    value: Value::Len(bytes),
                    at,
                });
            }
            5 => {
                let b = self.take(4).ok_or(malformed)?;
                Value::Fixed32(u32::from_le_bytes(
                    b.try_into().map_err(|_| WireError::Malformed(at))?,
                ))
            }
            // A group (proto2's; OTLP has no group field): skipped whole, as prost skips
            // an unknown one. A lone end of group is malformed.
            3 => {
                self.skip_group(number, 0).ok_or(malformed)?;
                Value::Group
            }
            _ => return Err(malformed),
        };
        Ok(Field { number, value, at })
    }

    /// Skips the fields of group `number` up to its end; None when malformed or nested
    /// deeper than [`MAX_DEPTH`].
    fn skip_group(&mut self, number: u32, depth: usize) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        loop {
            let key = self.varint()?;
            let inner = u32::try_from(key >> 3).ok()?;
            match key & 7 {
                0 => {
                    self.varint()?;
                }
                1 => {
                    self.take(8)?;
                }
                2 => {
                    let len = usize::try_from(self.varint()?).ok()?;
                    self.take(len)?;
                }
                3 => self.skip_group(inner, depth + 1)?,
                4 if inner == number => return Some(()),
                5 => {
                    self.take(4)?;
                }
                _ => return None,
            }
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.buf.len() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            // Nothing after a malformed field can be read.
            self.at = self.buf.len();
        }
        Some(field)
    }
}

/// See [`Fields::of`].
pub struct Merged<'a> {
    parent: Fields<'a>,
    number: u32,
    inner: Option<Fields<'a>>,
}

impl<'a> Iterator for Merged<'a> {
    type Item = Result<Field<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(field) = self.inner.as_mut().and_then(Iterator::next) {
                return Some(field);
            }
            let next = match self.parent.next()? {
                Ok(f) if f.number != self.number => continue,
                Ok(f) => f.message(),
                Err(e) => Err(e),
            };
            match next {
                Ok(fields) => self.inner = Some(fields),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// An `AnyValue`'s variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Any<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    /// An `ArrayValue` or `KeyValueList` message (their values are field 1 of each).
    Array(Cow<'a, [u8]>, usize),
    Kvlist(Cow<'a, [u8]>, usize),
}

/// The value of an `AnyValue` given as `fields` (its occurrences merged); None when no
/// variant is set.
pub fn any<'a>(
    fields: impl Iterator<Item = Result<Field<'a>, WireError>>,
) -> Result<Option<Any<'a>>, WireError> {
    let mut value: Option<Any<'a>> = None;
    for field in fields {
        let field = field?;
        value = Some(match (field.number, value.take()) {
            (1, _) => Any::Str(field.text()?),
            (2, _) => Any::Bool(field.varint()? != 0),
            (3, _) => Any::Int(field.varint()? as i64),
            (4, _) => Any::Double(f64::from_bits(field.fixed64()?)),
            (7, _) => Any::Bytes(field.bytes()?),
            // A message variant given again after itself: the two merged.
            (5, Some(Any::Array(run, at))) => Any::Array(concat(run, field.bytes()?), at),
            (6, Some(Any::Kvlist(run, at))) => Any::Kvlist(concat(run, field.bytes()?), at),
            (5, _) => Any::Array(Cow::Borrowed(field.bytes()?), field.at),
            (6, _) => Any::Kvlist(Cow::Borrowed(field.bytes()?), field.at),
            (_, kept) => {
                value = kept;
                continue;
            }
        });
    }
    Ok(value)
}

fn concat<'a>(run: Cow<'a, [u8]>, more: &[u8]) -> Cow<'a, [u8]> {
    let mut joined = run.into_owned();
    joined.extend_from_slice(more);
    Cow::Owned(joined)
}

/// A `KeyValue` given as `message`: its key and value (its value occurrences merged).
pub fn key_value<'a>(message: Fields<'a>) -> Result<(&'a str, Option<Any<'a>>), WireError> {
    if let Some(pair) = short_key_value(message.buf) {
        return Ok(pair);
    }
    let mut key = "";
    // The value, read once; given more than once (merged), read again as a whole.
    let (mut value, mut values) = (None, 0);
    for field in message {
        let field = field?;
        match field.number {
            1 => key = field.text()?,
            2 => {
                value = Some(field);
                values += 1;
            }
            _ => {}
        }
    }
    let value = match (value, values) {
        (Some(field), 1) => any(field.message()?)?,
        (None, _) => None,
        _ => any(Fields::of(message, 2))?,
    };
    Ok((key, value))
}

/// The `KeyValue` most attributes are, read at once: a key and then a string or double
/// value, each field once, lengths under 128 bytes, text valid. None for any other form,
/// which the general reading takes (and refuses, if it is malformed).
#[inline(always)]
fn short_key_value(message: &[u8]) -> Option<(&str, Option<Any<'_>>)> {
    let [0x0a, key_len, rest @ ..] = message else {
        return None;
    };
    let key_len = usize::from(*key_len);
    if key_len >= 0x80 || rest.len() < key_len + 2 {
        return None;
    }
    let (key, rest) = rest.split_at(key_len);
    let value = match rest {
        [0x12, any_len, 0x0a, len, text @ ..]
            if *any_len < 0x80 && usize::from(*len) == text.len() && *any_len == *len + 2 =>
        {
            Any::Str(std::str::from_utf8(text).ok()?)
        }
        [0x12, 9, 0x21, bits @ ..] => {
            Any::Double(f64::from_le_bytes(<[u8; 8]>::try_from(bits).ok()?))
        }
        _ => return None,
    };
    Some((std::str::from_utf8(key).ok()?, Some(value)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue};
    use prost::Message;

    fn kv(key: &str, value: V) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
        }
    }

    fn read(kv: &KeyValue) -> (String, Option<Any<'static>>) {
        let bytes: &'static [u8] = Box::leak(kv.encode_to_vec().into_boxed_slice());
        let (key, value) = key_value(Fields::new(bytes, 0)).unwrap();
        (key.to_string(), value)
    }

    #[test]
    fn values_as_prost_reads_them() {
        let kv = |v: V| KeyValue {
            key: "k".into(),
            value: Some(AnyValue { value: Some(v) }),
        };
        assert_eq!(read(&kv(V::StringValue("s".into()))).1, Some(Any::Str("s")));
        assert_eq!(read(&kv(V::IntValue(-3))).1, Some(Any::Int(-3)));
        assert_eq!(read(&kv(V::DoubleValue(0.5))).1, Some(Any::Double(0.5)));
        assert_eq!(read(&kv(V::BoolValue(true))).1, Some(Any::Bool(true)));
        let array = kv(V::ArrayValue(ArrayValue { values: vec![] }));
        assert!(matches!(read(&array).1, Some(Any::Array(..))));
        let none = KeyValue {
            key: "k".into(),
            value: None,
        };
        assert_eq!(read(&none), ("k".to_string(), None));
    }

    #[test]
    fn the_short_reading_agrees_with_the_general_one() {
        let string = kv("k", V::StringValue("v".repeat(125)));
        assert_eq!(
            read(&string).1,
            Some(Any::Str(Box::leak("v".repeat(125).into())))
        );
        assert!(short_key_value(&string.encode_to_vec()).is_some());
        let double = kv("ratio", V::DoubleValue(0.25));
        assert!(short_key_value(&double.encode_to_vec()).is_some());
        assert_eq!(read(&double), ("ratio".into(), Some(Any::Double(0.25))));
        // Two-byte lengths are varints the short reading leaves to the general one: here
        // the value's length is 0x81 0x0a, past the end, so the message is malformed.
        let mut long = vec![0x0a, 1, b'k', 0x12, 0x81, 0x0a, 127];
        long.extend_from_slice(&[b'x'; 127]);
        assert!(short_key_value(&long).is_none());
        assert!(key_value(Fields::new(&long, 0)).is_err());
        // A string that is not UTF-8 is refused, as before.
        let bad = [0x0a, 1, b'k', 0x12, 3, 0x0a, 1, 0xff];
        assert!(key_value(Fields::new(&bad, 0)).is_err());
    }

    #[test]
    fn a_value_given_twice_is_merged_the_last_variant_winning() {
        // KeyValue { key: "k", value: {string "a"}, value: {int 7} }: prost merges the two
        // values, the oneof keeping the later variant.
        let bytes = b"\x0a\x01k\x12\x03\x0a\x01a\x12\x02\x18\x07";
        let (key, value) = key_value(Fields::new(bytes, 0)).unwrap();
        assert_eq!((key, value), ("k", Some(Any::Int(7))));
    }

    #[test]
    fn malformed_fields_and_wrong_wire_types() {
        let cut = Fields::new(b"\x0a\x05ab", 0).next().unwrap();
        assert_eq!(
            cut.unwrap_err(),
            WireError::Malformed(0),
            "where the field starts"
        );
        // An unknown group is skipped, as prost skips it; a lone end of group is malformed.
        let group: Vec<_> = Fields::new(b"\x0b\x08\x01\x0c\x10\x02", 0).collect();
        assert!(matches!(
            group[0],
            Ok(Field {
                value: Value::Group,
                ..
            })
        ));
        assert!(matches!(group[1], Ok(Field { number: 2, .. })));
        assert!(Fields::new(b"\x0c", 0).next().unwrap().is_err());
        assert!(Fields::new(b"\x0b\x08\x01", 0).next().unwrap().is_err());
        // key as a varint.
        let e = key_value(Fields::new(b"\x08\x01", 0)).unwrap_err();
        assert!(matches!(e, WireError::WireType { field: 1, .. }), "{e}");
        let bad_utf8 = key_value(Fields::new(b"\x0a\x01\xff", 0)).unwrap_err();
        assert_eq!(bad_utf8, WireError::Utf8(2));
    }
}
