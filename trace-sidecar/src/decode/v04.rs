//! `/v0.4/traces` and msgpack `/v0.3/traces`: an array of traces, each an array of spans,
//! each span a map from field name to value.
//!
//! Unknown fields (`meta_struct`, `span_links`, `span_events`, ...) are skipped. A nil
//! field value sets the field to its default (empty, 0); a nil trace or span is skipped; a
//! nil `meta` or `metrics` adds nothing, a nil `meta` value reads as an empty string and a
//! nil `metrics` value leaves that metric out.

use super::error::{DecodeError, Fail, Location};
use super::maps::{self, Map};
use super::reader::Reader;
use super::sink::{Id, Sink, Text, Time};

pub(crate) fn decode<S: Sink>(body: &[u8], sink: &mut S) -> Result<(), DecodeError> {
    let mut r = Reader::new(body);
    let n = r
        .array_len("an array of traces", 1)
        .and_then(|n| sink.traces(n, 0).map(|()| n))
        .map_err(|f| f.at(Location::payload()))?;
    for t in 0..n {
        if r.nil() {
            continue;
        }
        trace(&mut r, sink, t)?;
    }
    r.finish().map_err(|f| f.at(Location::payload()))?;
    Ok(())
}

fn trace<S: Sink>(r: &mut Reader<'_>, sink: &mut S, t: usize) -> Result<(), DecodeError> {
    let at = r.pos();
    let n = r
        .array_len("an array of spans", 1)
        .and_then(|n| sink.trace(n, at).map(|()| n))
        .map_err(|f| f.at(Location::trace(t)))?;
    for s in 0..n {
        if r.nil() {
            continue;
        }
        span(r, sink).map_err(|f| f.at(Location::span(t, s)))?;
    }
    sink.trace_end(r.pos())
        .map_err(|f| f.at(Location::trace(t)))
}

/// One span map.
#[inline]
fn span<S: Sink>(r: &mut Reader<'_>, sink: &mut S) -> Result<(), Fail> {
    let at = r.pos();
    let n = r.map_len("a map (span)")?;
    sink.span(at)?;
    for _ in 0..n {
        let key = r.str_bytes("a string (span field name)")?;
        match field(key) {
            Field::Text(field, name) => text(r, sink, field).map_err(|f| f.field(name))?,
            Field::Id(field, name) => id(r, sink, field).map_err(|f| f.field(name))?,
            Field::Time(field, name) => time(r, sink, field).map_err(|f| f.field(name))?,
            Field::Error => {
                let at = r.pos();
                let error = r.i32().map_err(|f| f.field("error"))?;
                sink.error(error, at).map_err(|f| f.field("error"))?;
            }
            Field::Meta => maps::read(r, sink, Map::Meta, |r| r.str_or_nil("a string"))
                .map_err(|f| f.field("meta"))?,
            Field::Metrics => maps::read(r, sink, Map::Metrics, |r| r.str_or_nil("a string"))
                .map_err(|f| f.field("metrics"))?,
            Field::Unknown => r.skip()?,
        }
    }
    sink.span_end(r.pos())
}

/// A span field by its name in the map (with the name, for errors).
enum Field {
    Text(Text, &'static str),
    Id(Id, &'static str),
    Time(Time, &'static str),
    Error,
    Meta,
    Metrics,
    Unknown,
}

/// The field a span map key names: by length first, then by its bytes.
#[inline]
fn field(key: &[u8]) -> Field {
    match key.len() {
        4 => match key {
            b"name" => Field::Text(Text::Name, "name"),
            b"meta" => Field::Meta,
            b"type" => Field::Text(Text::Type, "type"),
            _ => Field::Unknown,
        },
        5 => match key {
            b"start" => Field::Time(Time::Start, "start"),
            b"error" => Field::Error,
            _ => Field::Unknown,
        },
        7 => match key {
            b"service" => Field::Text(Text::Service, "service"),
            b"span_id" => Field::Id(Id::Span, "span_id"),
            b"metrics" => Field::Metrics,
            _ => Field::Unknown,
        },
        8 => match key {
            b"resource" => Field::Text(Text::Resource, "resource"),
            b"trace_id" => Field::Id(Id::Trace, "trace_id"),
            b"duration" => Field::Time(Time::Duration, "duration"),
            _ => Field::Unknown,
        },
        9 if key == b"parent_id" => Field::Id(Id::Parent, "parent_id"),
        _ => Field::Unknown,
    }
}

#[inline]
fn text<S: Sink>(r: &mut Reader<'_>, sink: &mut S, field: Text) -> Result<(), Fail> {
    let at = r.pos();
    let bytes = r.str_or_nil("a string")?;
    sink.text(field, bytes, at)
}

#[inline]
fn id<S: Sink>(r: &mut Reader<'_>, sink: &mut S, field: Id) -> Result<(), Fail> {
    let at = r.pos();
    let id = r.id()?;
    sink.id(field, id, at)
}

#[inline]
fn time<S: Sink>(r: &mut Reader<'_>, sink: &mut S, field: Time) -> Result<(), Fail> {
    let at = r.pos();
    let value = r.i64()?;
    sink.time(field, value, at)
}
