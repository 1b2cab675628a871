//! `/v0.4/traces` and msgpack `/v0.3/traces`: an array of traces, each an array of spans,
//! each span a map from field name to value.
//!
//! Unknown fields (`meta_struct`, `span_links`, `span_events`, ...) are skipped. A nil
//! field value leaves the field at its default; a nil trace or span is skipped; a nil
//! `meta` value reads as an empty string and a nil `metrics` value drops that metric.

use std::collections::HashMap;

use sts_proto::daemon::v1::{Span, Trace};

use super::budget::Budget;
use super::error::{DecodeError, Fail, Location};
use super::reader::Reader;

pub(crate) fn decode(body: &[u8], budget: &mut Budget) -> Result<Vec<Trace>, DecodeError> {
    let mut r = Reader::new(body);
    let n = r
        .array_len("an array of traces", 1)
        .and_then(|n| budget.charge_vec::<Trace>(n, 0).map(|()| n))
        .map_err(|f| f.at(Location::payload()))?;
    let mut traces = Vec::with_capacity(n);
    for t in 0..n {
        if r.nil() {
            continue;
        }
        let at = r.pos();
        let n = r
            .array_len("an array of spans", 1)
            .and_then(|n| budget.charge_vec::<Span>(n, at).map(|()| n))
            .map_err(|f| f.at(Location::trace(t)))?;
        let mut spans = Vec::with_capacity(n);
        for s in 0..n {
            if r.nil() {
                continue;
            }
            spans.push(span(&mut r, budget).map_err(|f| f.at(Location::span(t, s)))?);
        }
        traces.push(Trace { spans });
    }
    r.finish().map_err(|f| f.at(Location::payload()))?;
    Ok(traces)
}

/// One span map; its `Span` was charged with the trace's array.
fn span(r: &mut Reader<'_>, budget: &mut Budget) -> Result<Span, Fail> {
    let n = r.map_len("a map (span)")?;
    let mut span = Span::default();
    for _ in 0..n {
        let key = r.str_bytes("a string (span field name)")?;
        match key {
            b"service" => span.service = text(r, budget).map_err(|f| f.field("service"))?,
            b"name" => span.name = text(r, budget).map_err(|f| f.field("name"))?,
            b"resource" => span.resource = text(r, budget).map_err(|f| f.field("resource"))?,
            b"type" => span.r#type = text(r, budget).map_err(|f| f.field("type"))?,
            b"trace_id" => span.trace_id = r.id().map_err(|f| f.field("trace_id"))?,
            b"span_id" => span.span_id = r.id().map_err(|f| f.field("span_id"))?,
            b"parent_id" => span.parent_id = r.id().map_err(|f| f.field("parent_id"))?,
            b"start" => span.start = r.i64().map_err(|f| f.field("start"))?,
            b"duration" => span.duration = r.i64().map_err(|f| f.field("duration"))?,
            b"error" => span.error = r.i32().map_err(|f| f.field("error"))?,
            b"meta" => span.meta = meta(r, budget).map_err(|f| f.field("meta"))?,
            b"metrics" => span.metrics = metrics(r, budget).map_err(|f| f.field("metrics"))?,
            _ => r.skip()?,
        }
    }
    Ok(span)
}

#[inline]
fn text(r: &mut Reader<'_>, budget: &mut Budget) -> Result<String, Fail> {
    let at = r.pos();
    let bytes = r.str_or_nil("a string")?;
    budget.string(bytes, at)
}

fn meta(r: &mut Reader<'_>, budget: &mut Budget) -> Result<HashMap<String, String>, Fail> {
    if r.nil() {
        return Ok(HashMap::new());
    }
    let at = r.pos();
    let n = r.map_len("a map")?;
    budget.charge_map::<String, String>(n, at)?;
    let mut meta = HashMap::with_capacity(n);
    for e in 0..n {
        let key = text(r, budget).map_err(|f| f.entry(e))?;
        let value = text(r, budget).map_err(|f| f.entry(e))?;
        meta.insert(key, value);
    }
    Ok(meta)
}

fn metrics(r: &mut Reader<'_>, budget: &mut Budget) -> Result<HashMap<String, f64>, Fail> {
    if r.nil() {
        return Ok(HashMap::new());
    }
    let at = r.pos();
    let n = r.map_len("a map")?;
    budget.charge_map::<String, f64>(n, at)?;
    let mut metrics = HashMap::with_capacity(n);
    for e in 0..n {
        let key = text(r, budget).map_err(|f| f.entry(e))?;
        if r.nil() {
            continue;
        }
        let value = r.f64().map_err(|f| f.entry(e))?;
        metrics.insert(key, value);
    }
    Ok(metrics)
}
