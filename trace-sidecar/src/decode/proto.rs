//! Transcoding: msgpack spans written straight as the relay's protobuf (relay.proto), with
//! no `Span` structs, owned strings or hash maps in between.
//!
//! The output is a run of `TracePayload.traces` fields (field 2, each a `Trace` of `Span`s),
//! to which the relay appends the `client` field: together a `TracePayload` encoding.
//! Fields are written in payload order; a field at its default value (empty, 0) is left out
//! as prost leaves it out, unless the span gave the field before (so the later value wins
//! when read). Map entries are written as prost writes them, an empty key or value (or a
//! metric of +0.0) left out of the entry.
//!
//! Message lengths come before their bodies in protobuf: a trace's and a span's length get
//! two bytes (up to 16,383, which most spans and traces of tens of spans fit) and the body
//! is moved when the length needs fewer or more.
//!
//! Memory: the output buffer is charged to the budget each time it grows (in full, the old
//! buffer living on while it is copied), so a payload whose protobuf would pass the budget
//! fails with `TooLarge` having allocated at most the budget.

use super::budget::Budget;
use super::error::Fail;
use super::sink::{Id, Sink, Text, Time};

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;

const fn key(field: u8, wire_type: u8) -> u8 {
    field << 3 | wire_type
}

/// `TracePayload.traces`, `Trace.spans`, `Span.meta`, `Span.metrics`.
const TRACE_KEY: u8 = key(2, LEN);
const SPAN_KEY: u8 = key(1, LEN);
/// `Trace.common`.
const COMMON_KEY: u8 = key(2, LEN);
const META_KEY: u8 = key(10, LEN);
const METRICS_KEY: u8 = key(11, LEN);
/// `error` (int32).
const ERROR_FIELD: u8 = 9;
/// Map entries: key, value.
const ENTRY_KEY: u8 = key(1, LEN);
const ENTRY_TEXT: u8 = key(2, LEN);
const ENTRY_DOUBLE: u8 = key(2, FIXED64);

/// Bytes kept for the length of a trace or span before its body is known.
const LEN_RESERVED: usize = 2;

/// The bytes a varint of `v` takes.
#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    if v < 0x80 {
        return 1;
    }
    // 1 byte per started group of 7 bits.
    (64 - v.leading_zeros() as usize).div_ceil(7)
}

/// Appends a varint; the caller made room for it.
#[inline(always)]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The length of `bytes` as UTF-8 text, after repairing invalid sequences, and whether
/// they were valid.
#[inline(always)]
fn text_len(bytes: &[u8]) -> (usize, bool) {
    // ASCII first: what nearly all span text is, and quicker to check for short strings.
    if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
        (bytes.len(), true)
    } else {
        (repaired_len(bytes), false)
    }
}

#[cold]
fn repaired_len(bytes: &[u8]) -> usize {
    bytes
        .utf8_chunks()
        .map(|c| c.valid().len() + if c.invalid().is_empty() { 0 } else { 3 })
        .sum()
}

/// Appends text of the length [`text_len`] gave.
#[inline(always)]
fn put_text(out: &mut Vec<u8>, bytes: &[u8], valid: bool) {
    if valid {
        out.extend_from_slice(bytes);
    } else {
        put_repaired(out, bytes);
    }
}

#[cold]
fn put_repaired(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        out.extend_from_slice(chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

/// A string field of a map entry (`field` is its key byte) of the length [`text_len`]
/// gave; left out when empty, as prost leaves out a default.
#[inline(always)]
fn put_entry_text(out: &mut Vec<u8>, field: u8, bytes: &[u8], (len, valid): (usize, bool)) {
    if len > 0 {
        out.push(field);
        put_varint(out, len as u64);
        put_text(out, bytes, valid);
    }
}

/// The bytes of a map entry's string field (key or value) of `len` bytes; none when empty.
#[inline]
fn entry_text_len(len: usize) -> usize {
    if len == 0 {
        0
    } else {
        1 + varint_len(len as u64) + len
    }
}

/// Writes relay protobuf (see the module doc).
pub(crate) struct ProtoSink<'b> {
    budget: &'b mut Budget,
    pub out: Vec<u8>,
    /// Where the current trace's and span's reserved length bytes are.
    trace_len_at: usize,
    span_len_at: usize,
    /// Fields of the current span written so far (bit n for field n).
    written: u16,
    pub traces: usize,
    pub spans: usize,
}

impl<'b> ProtoSink<'b> {
    /// A sink whose buffer starts with `capacity` bytes (charged; less if the budget is
    /// smaller).
    pub fn new(budget: &'b mut Budget, capacity: usize) -> Result<Self, Fail> {
        let capacity = capacity.min(budget.left());
        budget.charge(capacity, 0)?;
        Ok(ProtoSink {
            budget,
            out: Vec::with_capacity(capacity),
            trace_len_at: 0,
            span_len_at: 0,
            written: 0,
            traces: 0,
            spans: 0,
        })
    }

    /// The budget the sink charges, for what its writer allocates besides.
    pub(crate) fn budget(&mut self) -> &mut Budget {
        self.budget
    }

    /// Makes room for `n` more bytes.
    #[inline(always)]
    fn room(&mut self, n: usize, at: usize) -> Result<(), Fail> {
        if self.out.capacity() - self.out.len() >= n {
            Ok(())
        } else {
            self.grow(n, at)
        }
    }

    #[cold]
    fn grow(&mut self, n: usize, at: usize) -> Result<(), Fail> {
        let needed = self.out.len().saturating_add(n);
        let doubled = self.out.capacity().saturating_mul(2).max(needed).max(256);
        // Doubling while the budget allows, else exactly what is needed.
        let capacity = if doubled <= self.budget.left() {
            doubled
        } else {
            needed
        };
        self.budget.charge(capacity, at)?;
        self.out.reserve_exact(capacity - self.out.len());
        Ok(())
    }

    /// Starts a message whose length is not known yet; returns where its length goes.
    #[inline]
    fn open(&mut self, key: u8, at: usize) -> Result<usize, Fail> {
        self.room(1 + LEN_RESERVED, at)?;
        self.out.push(key);
        let len_at = self.out.len();
        self.out.extend_from_slice(&[0; LEN_RESERVED]);
        Ok(len_at)
    }

    /// Writes the length of the message opened at `len_at`, moving its body if the length
    /// takes other than the bytes kept for it.
    #[inline]
    fn close(&mut self, len_at: usize, at: usize) -> Result<(), Fail> {
        let body_at = len_at + LEN_RESERVED;
        let body = self.out.len() - body_at;
        let needed = varint_len(body as u64);
        if needed != LEN_RESERVED {
            self.move_body(body_at, len_at + needed, at)?;
        }
        let mut v = body as u64;
        for i in 0..needed {
            let last = i + 1 == needed;
            self.out[len_at + i] = if last { v as u8 } else { v as u8 | 0x80 };
            v >>= 7;
        }
        Ok(())
    }

    #[cold]
    fn move_body(&mut self, from: usize, to: usize, at: usize) -> Result<(), Fail> {
        let end = self.out.len();
        if to > from {
            self.room(to - from, at)?;
            self.out.resize(end + (to - from), 0);
        }
        self.out.copy_within(from..end, to);
        self.out.truncate(end + to - from);
        Ok(())
    }

    /// Whether a field at its default value must still be written: only to override an
    /// earlier value of the same field.
    #[inline(always)]
    fn mark(&mut self, field: u8, is_default: bool) -> bool {
        let bit = 1u16 << field;
        if is_default && self.written & bit == 0 {
            return false;
        }
        self.written |= bit;
        true
    }

    #[inline(always)]
    fn varint_field(&mut self, field: u8, value: u64, at: usize) -> Result<(), Fail> {
        if self.mark(field, value == 0) {
            self.room(1 + 10, at)?;
            self.out.push(key(field, VARINT));
            put_varint(&mut self.out, value);
        }
        Ok(())
    }

    /// Starts the current trace's `common` span (relay.proto), written with the span's
    /// methods and ended with [`ProtoSink::common_end`]; before the trace's spans.
    pub(crate) fn common(&mut self, at: usize) -> Result<(), Fail> {
        self.open_span(COMMON_KEY, at)
    }

    /// Starts a `Span` message, field `key` of the current trace, with no field written.
    #[inline(always)]
    fn open_span(&mut self, key: u8, at: usize) -> Result<(), Fail> {
        self.span_len_at = self.open(key, at)?;
        self.written = 0;
        Ok(())
    }

    pub(crate) fn common_end(&mut self, at: usize) -> Result<(), Fail> {
        self.close(self.span_len_at, at)
    }

    /// Appends bytes another `ProtoSink` wrote (map entries a span shares with others), in
    /// the current span.
    #[inline]
    pub(crate) fn encoded(&mut self, bytes: &[u8], at: usize) -> Result<(), Fail> {
        self.room(bytes.len(), at)?;
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// A map entry `{key, value}` whose value is text.
    #[inline(always)]
    fn text_entry(&mut self, key: &[u8], value: &[u8], at: usize) -> Result<(), Fail> {
        let (key_len, key_ok) = text_len(key);
        let (value_len, value_ok) = text_len(value);
        // Fast path, most entries: valid text, neither empty, the whole under 128 bytes.
        let short = 4 + key_len + value_len;
        if key_ok && value_ok && key_len > 0 && value_len > 0 && short < 0x80 {
            self.room(2 + short, at)?;
            let out = &mut self.out;
            out.extend_from_slice(&[META_KEY, short as u8, ENTRY_KEY, key_len as u8]);
            out.extend_from_slice(key);
            out.extend_from_slice(&[ENTRY_TEXT, value_len as u8]);
            out.extend_from_slice(value);
            return Ok(());
        }
        let entry = entry_text_len(key_len) + entry_text_len(value_len);
        self.room(1 + varint_len(entry as u64) + entry, at)?;
        let out = &mut self.out;
        out.push(META_KEY);
        put_varint(out, entry as u64);
        put_entry_text(out, ENTRY_KEY, key, (key_len, key_ok));
        put_entry_text(out, ENTRY_TEXT, value, (value_len, value_ok));
        Ok(())
    }
}

impl Sink for ProtoSink<'_> {
    fn budget(&mut self) -> &mut Budget {
        self.budget
    }

    fn traces(&mut self, _n: usize, _at: usize) -> Result<(), Fail> {
        Ok(())
    }

    #[inline]
    fn trace(&mut self, _n: usize, at: usize) -> Result<(), Fail> {
        self.trace_len_at = self.open(TRACE_KEY, at)?;
        Ok(())
    }

    #[inline]
    fn trace_end(&mut self, at: usize) -> Result<(), Fail> {
        self.close(self.trace_len_at, at)?;
        self.traces += 1;
        Ok(())
    }

    #[inline(always)]
    fn span(&mut self, at: usize) -> Result<(), Fail> {
        self.open_span(SPAN_KEY, at)
    }

    #[inline(always)]
    fn span_end(&mut self, at: usize) -> Result<(), Fail> {
        self.close(self.span_len_at, at)?;
        self.spans += 1;
        Ok(())
    }

    #[inline(always)]
    fn text(&mut self, field: Text, text: &[u8], at: usize) -> Result<(), Fail> {
        let field = field as u8;
        if !self.mark(field, text.is_empty()) {
            return Ok(());
        }
        let (len, ok) = text_len(text);
        self.room(1 + varint_len(len as u64) + len, at)?;
        self.out.push(key(field, LEN));
        put_varint(&mut self.out, len as u64);
        put_text(&mut self.out, text, ok);
        Ok(())
    }

    #[inline(always)]
    fn id(&mut self, field: Id, value: u64, at: usize) -> Result<(), Fail> {
        self.varint_field(field as u8, value, at)
    }

    #[inline(always)]
    fn time(&mut self, field: Time, value: i64, at: usize) -> Result<(), Fail> {
        // int64: the two's complement as a varint.
        self.varint_field(field as u8, value as u64, at)
    }

    #[inline(always)]
    fn error(&mut self, value: i32, at: usize) -> Result<(), Fail> {
        // int32: sign-extended to 64 bits, as protobuf writes negative int32s.
        self.varint_field(ERROR_FIELD, i64::from(value) as u64, at)
    }

    #[inline]
    fn meta(&mut self, _n: usize, _at: usize) -> Result<(), Fail> {
        Ok(())
    }

    #[inline]
    fn meta_key(&mut self, _key: &[u8], _at: usize) -> Result<(), Fail> {
        Ok(())
    }

    #[inline(always)]
    fn meta_entry(&mut self, key: &[u8], value: &[u8], at: usize) -> Result<(), Fail> {
        self.text_entry(key, value, at)
    }

    #[inline]
    fn metrics(&mut self, _n: usize, _at: usize) -> Result<(), Fail> {
        Ok(())
    }

    #[inline]
    fn metric_key(&mut self, _key: &[u8], _at: usize) -> Result<(), Fail> {
        Ok(())
    }

    #[inline(always)]
    fn metric_entry(&mut self, key: &[u8], value: f64, at: usize) -> Result<(), Fail> {
        let (key_len, key_ok) = text_len(key);
        // prost leaves out a value equal to the default; -0.0 is kept as written.
        let value_len = if value.to_bits() == 0 { 0 } else { 9 };
        let entry = entry_text_len(key_len) + value_len;
        self.room(1 + varint_len(entry as u64) + entry, at)?;
        let out = &mut self.out;
        out.push(METRICS_KEY);
        put_varint(out, entry as u64);
        put_entry_text(out, ENTRY_KEY, key, (key_len, key_ok));
        if value_len > 0 {
            out.push(ENTRY_DOUBLE);
            out.extend_from_slice(&value.to_le_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths() {
        for (v, n) in [
            (0u64, 1),
            (1, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::from(u32::MAX), 5),
            (u64::MAX, 10),
        ] {
            assert_eq!(varint_len(v), n, "{v}");
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), n, "{v}");
            let mut want = Vec::new();
            prost::encoding::encode_varint(v, &mut want);
            assert_eq!(buf, want, "{v}");
        }
    }

    #[test]
    fn bodies_move_when_the_length_takes_other_than_two_bytes() {
        for body in [0usize, 5, 127, 128, 16_383, 16_384, 100_000] {
            let mut budget = Budget::new(1 << 20, 0);
            let mut sink = ProtoSink::new(&mut budget, 16).unwrap();
            let len_at = sink.open(TRACE_KEY, 0).unwrap();
            sink.room(body, 0).unwrap();
            sink.out.extend((0..body).map(|i| i as u8));
            sink.close(len_at, 0).unwrap();
            let mut want = vec![TRACE_KEY];
            put_varint(&mut want, body as u64);
            want.extend((0..body).map(|i| i as u8));
            assert_eq!(sink.out, want, "a body of {body} bytes");
        }
    }

    #[test]
    fn growth_is_charged_and_bounded() {
        let mut budget = Budget::new(1000, 10);
        let mut sink = ProtoSink::new(&mut budget, 100).unwrap();
        sink.room(200, 0).unwrap();
        assert_eq!(sink.out.capacity(), 256, "doubled, at least 256");
        // 100 + 256 charged; 644 left: doubling to 512 fits, then only what is needed.
        sink.room(300, 0).unwrap();
        assert_eq!(sink.out.capacity(), 512);
        assert!(sink.room(700, 7).is_err(), "past the budget");
    }
}
