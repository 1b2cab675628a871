//! `/v0.5/traces`: `[string_table, traces]`. Each span is a 12-element array (service,
//! name, resource, trace_id, span_id, parent_id, start, duration, error, meta, metrics,
//! type) whose strings are indexes into the string table; `meta` maps index to index and
//! `metrics` index to number.
//!
//! Each span copies its strings out of the table, so the decoded traces can be many times
//! larger than the body (15x for realistic spans): the budget (see `Limits`) bounds them.

use std::borrow::Cow;

use super::budget::Budget;
use super::error::{DecodeError, Fail, Location, Reason};
use super::maps::{self, Map};
use super::reader::{Int, Reader};
use super::sink::{Id, Sink, Text, Time};

/// Span fields on the wire.
const SPAN_FIELDS: usize = 12;
/// The smallest span: an array header and 12 one-byte values.
const MIN_SPAN_BYTES: usize = 1 + SPAN_FIELDS;

pub(crate) fn decode<S: Sink>(body: &[u8], sink: &mut S) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    let payload = |f: Fail| f.at(Location::payload());
    let n = r
        .array_len("an array [string table, traces]", 1)
        .map_err(payload)?;
    if n != 2 {
        return Err(payload(Fail::new(
            Reason::Arity {
                expected: 2,
                got: n as u32,
            },
            0,
        )));
    }
    let table = string_table(&mut r, sink.budget())?;

    let at = r.pos();
    let n = r
        .array_len("an array of traces", 1)
        .and_then(|n| sink.traces(n, at).map(|()| n))
        .map_err(payload)?;
    for t in 0..n {
        if r.nil() {
            continue;
        }
        let at = r.pos();
        let n = r
            .array_len("an array of spans", MIN_SPAN_BYTES)
            .and_then(|n| sink.trace(n, at).map(|()| n))
            .map_err(|f| f.at(Location::trace(t)))?;
        for s in 0..n {
            if r.nil() {
                continue;
            }
            span(&mut r, &table, sink).map_err(|f| f.at(Location::span(t, s)))?;
        }
        sink.trace_end(r.pos())
            .map_err(|f| f.at(Location::trace(t)))?;
    }
    r.finish().map_err(payload)?;
    Ok(())
}

/// The string table, borrowing from the body (only invalid UTF-8 is copied, repaired).
fn string_table<'a>(
    r: &mut Reader<'a>,
    budget: &mut Budget,
) -> Result<Vec<Cow<'a, str>>, DecodeError> {
    let at = r.pos();
    let n = r
        .array_len("an array of strings (string table)", 1)
        .and_then(|n| budget.charge_vec::<Cow<'_, str>>(n, at).map(|()| n))
        .map_err(|f| f.at(Location::payload()))?;
    let mut table = Vec::with_capacity(n);
    for i in 0..n {
        let at = r.pos();
        let entry = r
            .str_or_nil("a string")
            .and_then(|bytes| match std::str::from_utf8(bytes) {
                Ok(text) => Ok(Cow::Borrowed(text)),
                Err(_) => budget.repair(bytes, at).map(Cow::Owned),
            })
            .map_err(|f| f.at(Location::string(i)))?;
        table.push(entry);
    }
    Ok(table)
}

fn span<S: Sink>(r: &mut Reader<'_>, table: &[Cow<'_, str>], sink: &mut S) -> Result<(), Fail> {
    let at = r.pos();
    let n = r.array_len("an array (span)", 1)?;
    if n != SPAN_FIELDS {
        return Err(Fail::new(
            Reason::Arity {
                expected: SPAN_FIELDS as u32,
                got: n as u32,
            },
            at,
        ));
    }
    sink.span(at)?;
    let text = |r: &mut Reader<'_>, sink: &mut S, field, name| {
        let at = r.pos();
        lookup(r, table)
            .and_then(|text| sink.text(field, text, at))
            .map_err(|f| f.field(name))
    };
    text(r, sink, Text::Service, "service")?;
    text(r, sink, Text::Name, "name")?;
    text(r, sink, Text::Resource, "resource")?;
    for (field, name) in [
        (Id::Trace, "trace_id"),
        (Id::Span, "span_id"),
        (Id::Parent, "parent_id"),
    ] {
        let at = r.pos();
        let id = r.id().map_err(|f| f.field(name))?;
        sink.id(field, id, at).map_err(|f| f.field(name))?;
    }
    for (field, name) in [(Time::Start, "start"), (Time::Duration, "duration")] {
        let at = r.pos();
        let value = r.i64().map_err(|f| f.field(name))?;
        sink.time(field, value, at).map_err(|f| f.field(name))?;
    }
    let at = r.pos();
    let error = r.i32().map_err(|f| f.field("error"))?;
    sink.error(error, at).map_err(|f| f.field("error"))?;
    maps::read(r, sink, Map::Meta, |r| lookup(r, table)).map_err(|f| f.field("meta"))?;
    maps::read(r, sink, Map::Metrics, |r| lookup(r, table)).map_err(|f| f.field("metrics"))?;
    text(r, sink, Text::Type, "type")?;
    sink.span_end(r.pos())
}

/// A string given as its index in the table (nil reads as the empty string).
#[inline]
fn lookup<'t>(r: &mut Reader<'_>, table: &'t [Cow<'_, str>]) -> Result<&'t [u8], Fail> {
    if r.nil() {
        return Ok(&[]);
    }
    let at = r.pos();
    let index = match r.int("an integer (string table index)")? {
        Int::U(u) => i128::from(u),
        Int::I(i) => i128::from(i),
    };
    match usize::try_from(index).ok().and_then(|i| table.get(i)) {
        Some(text) => Ok(text.as_bytes()),
        None => Err(Fail::new(
            Reason::StringIndex {
                index,
                len: table.len(),
            },
            at,
        )),
    }
}
