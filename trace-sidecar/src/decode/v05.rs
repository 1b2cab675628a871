//! `/v0.5/traces`: `[string_table, traces]`. Each span is a 12-element array (service,
//! name, resource, trace_id, span_id, parent_id, start, duration, error, meta, metrics,
//! type) whose strings are indexes into the string table; `meta` maps index to index and
//! `metrics` index to number.
//!
//! Each span copies its strings out of the table, so the decoded traces can be many times
//! larger than the body (15x for realistic spans): the budget (see `Limits`) bounds them.

use std::borrow::Cow;
use std::collections::HashMap;

use sts_proto::daemon::v1::{Span, Trace};

use super::budget::Budget;
use super::error::{DecodeError, Fail, Location, Reason};
use super::reader::{Int, Reader};

/// Span fields on the wire.
const SPAN_FIELDS: usize = 12;
/// The smallest span: an array header and 12 one-byte values.
const MIN_SPAN_BYTES: usize = 1 + SPAN_FIELDS;

pub(crate) fn decode(body: &[u8], budget: &mut Budget) -> Result<Vec<Trace>, DecodeError> {
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
    let table = string_table(&mut r, budget)?;

    let at = r.pos();
    let n = r
        .array_len("an array of traces", 1)
        .and_then(|n| budget.charge_vec::<Trace>(n, at).map(|()| n))
        .map_err(payload)?;
    let mut traces = Vec::with_capacity(n);
    for t in 0..n {
        if r.nil() {
            continue;
        }
        let at = r.pos();
        let n = r
            .array_len("an array of spans", MIN_SPAN_BYTES)
            .and_then(|n| budget.charge_vec::<Span>(n, at).map(|()| n))
            .map_err(|f| f.at(Location::trace(t)))?;
        let mut spans = Vec::with_capacity(n);
        for s in 0..n {
            if r.nil() {
                continue;
            }
            let span = span(&mut r, &table, budget).map_err(|f| f.at(Location::span(t, s)))?;
            spans.push(span);
        }
        traces.push(Trace { spans });
    }
    r.finish().map_err(payload)?;
    Ok(traces)
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

fn span(r: &mut Reader<'_>, table: &[Cow<'_, str>], budget: &mut Budget) -> Result<Span, Fail> {
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
    let mut text = |r: &mut Reader<'_>, field| lookup(r, table, budget).map_err(|f| f.field(field));
    let service = text(r, "service")?;
    let name = text(r, "name")?;
    let resource = text(r, "resource")?;
    let trace_id = r.id().map_err(|f| f.field("trace_id"))?;
    let span_id = r.id().map_err(|f| f.field("span_id"))?;
    let parent_id = r.id().map_err(|f| f.field("parent_id"))?;
    let start = r.i64().map_err(|f| f.field("start"))?;
    let duration = r.i64().map_err(|f| f.field("duration"))?;
    let error = r.i32().map_err(|f| f.field("error"))?;
    let meta = meta(r, table, budget).map_err(|f| f.field("meta"))?;
    let metrics = metrics(r, table, budget).map_err(|f| f.field("metrics"))?;
    let r#type = lookup(r, table, budget).map_err(|f| f.field("type"))?;
    Ok(Span {
        service,
        name,
        resource,
        trace_id,
        span_id,
        parent_id,
        start,
        duration,
        error,
        meta,
        metrics,
        r#type,
    })
}

/// A string given as its index in the table (nil reads as the empty string).
#[inline]
fn lookup(r: &mut Reader<'_>, table: &[Cow<'_, str>], budget: &mut Budget) -> Result<String, Fail> {
    if r.nil() {
        return Ok(String::new());
    }
    let at = r.pos();
    let index = match r.int("an integer (string table index)")? {
        Int::U(u) => i128::from(u),
        Int::I(i) => i128::from(i),
    };
    match usize::try_from(index).ok().and_then(|i| table.get(i)) {
        Some(text) => {
            budget.charge(text.len(), at)?;
            Ok(String::from(&**text))
        }
        None => Err(Fail::new(
            Reason::StringIndex {
                index,
                len: table.len(),
            },
            at,
        )),
    }
}

fn meta(
    r: &mut Reader<'_>,
    table: &[Cow<'_, str>],
    budget: &mut Budget,
) -> Result<HashMap<String, String>, Fail> {
    if r.nil() {
        return Ok(HashMap::new());
    }
    let at = r.pos();
    let n = r.map_len("a map")?;
    budget.charge_map::<String, String>(n, at)?;
    let mut meta = HashMap::with_capacity(n);
    for e in 0..n {
        let key = lookup(r, table, budget).map_err(|f| f.entry(e))?;
        let value = lookup(r, table, budget).map_err(|f| f.entry(e))?;
        meta.insert(key, value);
    }
    Ok(meta)
}

fn metrics(
    r: &mut Reader<'_>,
    table: &[Cow<'_, str>],
    budget: &mut Budget,
) -> Result<HashMap<String, f64>, Fail> {
    if r.nil() {
        return Ok(HashMap::new());
    }
    let at = r.pos();
    let n = r.map_len("a map")?;
    budget.charge_map::<String, f64>(n, at)?;
    let mut metrics = HashMap::with_capacity(n);
    for e in 0..n {
        let key = lookup(r, table, budget).map_err(|f| f.entry(e))?;
        if r.nil() {
            continue;
        }
        let value = r.f64().map_err(|f| f.entry(e))?;
        metrics.insert(key, value);
    }
    Ok(metrics)
}
