//! `/v0.3/traces` as JSON: an array of traces, each an array of span objects with the same
//! fields as the msgpack span maps (see `v04`). Ids are JSON integers up to 2^64-1.
//!
//! The decoder nests a fixed four levels (payload, trace, span, meta); serde_json skips
//! unknown fields without recursing (keeping its stack of brackets in its scratch buffer),
//! and its recursion limit (128) bounds anything else. Visitors never put payload text
//! into an error message, so an error's size does not grow with the body.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess};
use serde::de::{Unexpected, Visitor};
use sts_proto::daemon::v1::{Span, Trace};

use super::budget::Budget;
use super::error::{index, DecodeError, Fail, Location, Reason};

struct Ctx<'b> {
    budget: &'b mut Budget,
    /// Where the decoder is, for errors.
    loc: Location,
    /// Our own failure (budget, range), when that is what stopped serde_json.
    fail: Option<Fail>,
}

impl Ctx<'_> {
    #[cold]
    fn fail<E: de::Error>(&mut self, reason: Reason) -> E {
        self.fail = Some(Fail::new(reason, 0));
        E::custom("see the recorded failure")
    }

    fn charged<T, E: de::Error>(&mut self, result: Result<T, Fail>) -> Result<T, E> {
        result.map_err(|f| self.fail(f.reason))
    }
}

pub(crate) fn decode(body: &[u8], budget: &mut Budget) -> Result<Vec<Trace>, DecodeError> {
    // serde_json keeps a scratch buffer for strings with escapes; when it grows, the old
    // and new buffers can reach three times the longest such string.
    budget
        .charge(body.len().saturating_mul(3), 0)
        .map_err(|f| f.at(Location::payload()))?;
    let mut ctx = Ctx {
        budget,
        loc: Location::payload(),
        fail: None,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = Traces(&mut ctx)
        .deserialize(&mut de)
        .and_then(|traces| de.end().map(|()| traces));
    result.map_err(|e| {
        let offset = byte_offset(body, e.line(), e.column());
        let reason = match ctx.fail.take() {
            Some(fail) => fail.reason,
            None => Reason::Json(without_position(&e)),
        };
        DecodeError {
            location: ctx.loc,
            reason,
            offset,
        }
    })
}

/// serde_json's message without its " at line L column C" suffix (the offset says where).
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// The byte offset of serde_json's 1-based line and column (a column counts bytes).
fn byte_offset(body: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        body.iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .nth(line - 2)
            .map_or(body.len(), |(i, _)| i + 1)
    };
    (line_start + column.saturating_sub(1)).min(body.len())
}

/// Implements `visit_str` as a type error that does not quote the string.
macro_rules! reject_str {
    () => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err(E::invalid_type(Unexpected::Other("string"), &self))
        }
    };
}

struct Traces<'c, 'b>(&'c mut Ctx<'b>);

impl<'de> DeserializeSeed<'de> for Traces<'_, '_> {
    type Value = Vec<Trace>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Traces<'_, '_> {
    type Value = Vec<Trace>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of traces")
    }

    reject_str!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let ctx = self.0;
        let mut traces = Vec::new();
        for t in 0.. {
            ctx.loc = Location::trace(t);
            match seq.next_element_seed(TraceSeed(ctx))? {
                Some(Some(trace)) => {
                    let pushed = ctx.budget.push(&mut traces, trace, 0);
                    ctx.charged(pushed)?;
                }
                Some(None) => {}
                None => break,
            }
        }
        ctx.loc = Location::payload();
        Ok(traces)
    }
}

/// A trace, or `None` for null.
struct TraceSeed<'c, 'b>(&'c mut Ctx<'b>);

impl<'de> DeserializeSeed<'de> for TraceSeed<'_, '_> {
    type Value = Option<Trace>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TraceSeed<'_, '_> {
    type Value = Option<Trace>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of spans")
    }

    reject_str!();

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let ctx = self.0;
        let mut spans = Vec::new();
        for s in 0.. {
            ctx.loc.span = Some(index(s));
            match seq.next_element_seed(SpanSeed(ctx))? {
                Some(Some(span)) => {
                    let pushed = ctx.budget.push(&mut spans, span, 0);
                    ctx.charged(pushed)?;
                }
                Some(None) => {}
                None => break,
            }
        }
        ctx.loc.span = None;
        Ok(Some(Trace {
            common: None,
            spans,
        }))
    }
}

/// A span object, or `None` for null.
struct SpanSeed<'c, 'b>(&'c mut Ctx<'b>);

impl<'de> DeserializeSeed<'de> for SpanSeed<'_, '_> {
    type Value = Option<Span>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SpanSeed<'_, '_> {
    type Value = Option<Span>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a span object")
    }

    reject_str!();

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ctx = self.0;
        let mut span = Span::default();
        while let Some(field) = map.next_key_seed(FieldSeed)? {
            ctx.loc.field = field;
            match field.unwrap_or("") {
                "service" => span.service = map.next_value_seed(Text(ctx))?,
                "name" => span.name = map.next_value_seed(Text(ctx))?,
                "resource" => span.resource = map.next_value_seed(Text(ctx))?,
                "type" => span.r#type = map.next_value_seed(Text(ctx))?,
                "trace_id" => span.trace_id = map.next_value_seed(Id)?,
                "span_id" => span.span_id = map.next_value_seed(Id)?,
                "parent_id" => span.parent_id = map.next_value_seed(Id)?,
                "start" => span.start = map.next_value_seed(Int64(ctx))?,
                "duration" => span.duration = map.next_value_seed(Int64(ctx))?,
                "error" => span.error = map.next_value_seed(Int32(ctx))?,
                "meta" => span.meta = map.next_value_seed(Meta(ctx))?,
                "metrics" => span.metrics = map.next_value_seed(Metrics(ctx))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            ctx.loc.field = None;
            ctx.loc.entry = None;
        }
        Ok(Some(span))
    }
}

/// A span field name, as its static name, or `None` for a field we skip.
struct FieldSeed;

const FIELDS: [&str; 12] = [
    "service",
    "name",
    "resource",
    "type",
    "trace_id",
    "span_id",
    "parent_id",
    "start",
    "duration",
    "error",
    "meta",
    "metrics",
];

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Option<&'static str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for FieldSeed {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        Ok(FIELDS.iter().find(|&&field| field == name).copied())
    }
}

/// A string (null reads as empty), charged to the budget.
struct Text<'c, 'b>(&'c mut Ctx<'b>);

impl<'de> DeserializeSeed<'de> for Text<'_, '_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for Text<'_, '_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        let charged = self.0.budget.charge(text.len(), 0);
        self.0.charged(charged)?;
        Ok(text.to_owned())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(String::new())
    }
}

/// An id: any JSON integer up to 2^64-1; a negative one is taken as two's complement; null
/// reads as 0.
struct Id;

impl<'de> DeserializeSeed<'de> for Id {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for Id {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    reject_str!();

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        Ok(v as u64)
    }

    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Ok(0)
    }
}

/// `start` and `duration`: an int64 (null reads as 0).
struct Int64<'c, 'b>(&'c mut Ctx<'b>);

impl<'de> DeserializeSeed<'de> for Int64<'_, '_> {
    type Value = i64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for Int64<'_, '_> {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer")
    }

    reject_str!();

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| out_of_range(self.0, v, "int64"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
        Ok(0)
    }
}

/// `error`: an int32 or a boolean (null reads as 0).
struct Int32<'c, 'b>(&'c mut Ctx<'b>);

impl<'de> DeserializeSeed<'de> for Int32<'_, '_> {
    type Value = i32;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for Int32<'_, '_> {
    type Value = i32;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer or a boolean")
    }

    reject_str!();

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
        i32::try_from(v).map_err(|_| out_of_range(self.0, v, "int32"))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
        i32::try_from(v).map_err(|_| out_of_range(self.0, v, "int32"))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<i32, E> {
        Ok(i32::from(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<i32, E> {
        Ok(0)
    }
}

#[cold]
fn out_of_range<E: de::Error>(
    ctx: &mut Ctx<'_>,
    value: impl Into<i128>,
    target: &'static str,
) -> E {
    ctx.fail(Reason::Range {
        value: value.into(),
        target,
    })
}

/// `meta`: an object of strings (null reads as empty, and so does a null value).
struct Meta<'c, 'b>(&'c mut Ctx<'b>);

impl<'de> DeserializeSeed<'de> for Meta<'_, '_> {
    type Value = HashMap<String, String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Meta<'_, '_> {
    type Value = HashMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of strings")
    }

    reject_str!();

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(HashMap::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ctx = self.0;
        let mut meta = HashMap::new();
        for e in 0.. {
            ctx.loc.entry = Some(index(e));
            let Some(key) = map.next_key_seed(Text(ctx))? else {
                break;
            };
            let value = map.next_value_seed(Text(ctx))?;
            let inserted = ctx.budget.insert(&mut meta, key, value, 0);
            ctx.charged(inserted)?;
        }
        ctx.loc.entry = None;
        Ok(meta)
    }
}

/// `metrics`: an object of numbers (null reads as empty; a null value drops the metric).
struct Metrics<'c, 'b>(&'c mut Ctx<'b>);

impl<'de> DeserializeSeed<'de> for Metrics<'_, '_> {
    type Value = HashMap<String, f64>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Metrics<'_, '_> {
    type Value = HashMap<String, f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of numbers")
    }

    reject_str!();

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(HashMap::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let ctx = self.0;
        let mut metrics = HashMap::new();
        for e in 0.. {
            ctx.loc.entry = Some(index(e));
            let Some(key) = map.next_key_seed(Text(ctx))? else {
                break;
            };
            if let Some(value) = map.next_value_seed(Number)? {
                let inserted = ctx.budget.insert(&mut metrics, key, value, 0);
                ctx.charged(inserted)?;
            }
        }
        ctx.loc.entry = None;
        Ok(metrics)
    }
}

/// A metric value: any JSON number, or null.
struct Number;

impl<'de> DeserializeSeed<'de> for Number {
    type Value = Option<f64>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for Number {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }

    reject_str!();

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}
