//! A span's `meta` (string to string) and `metrics` (string to number) maps, read the same
//! way by v0.4 and v0.5, which differ only in how a string is written (inline, or as an
//! index into the string table): each caller passes its string reader.
//!
//! A nil map adds nothing; a nil `metrics` value leaves that metric out. Both functions
//! are inlined into each format's span reader (as calls they cost the v0.4
//! transcoder 5-10%), where `which` is a constant.

use super::error::Fail;
use super::reader::Reader;
use super::sink::Sink;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Map {
    Meta,
    Metrics,
}

/// Reads one map into `sink`, its strings with `text`.
#[inline(always)]
pub(super) fn read<'a, 't, S: Sink>(
    r: &mut Reader<'a>,
    sink: &mut S,
    which: Map,
    mut text: impl FnMut(&mut Reader<'a>) -> Result<&'t [u8], Fail>,
) -> Result<(), Fail> {
    if r.nil() {
        return Ok(());
    }
    let at = r.pos();
    let n = r.map_len("a map")?;
    match which {
        Map::Meta => sink.meta(n, at)?,
        Map::Metrics => sink.metrics(n, at)?,
    }
    for e in 0..n {
        entry(r, sink, which, &mut text).map_err(|f| f.entry(e))?;
    }
    Ok(())
}

#[inline(always)]
fn entry<'a, 't, S: Sink>(
    r: &mut Reader<'a>,
    sink: &mut S,
    which: Map,
    text: &mut impl FnMut(&mut Reader<'a>) -> Result<&'t [u8], Fail>,
) -> Result<(), Fail> {
    let at = r.pos();
    let key = text(r)?;
    match which {
        Map::Meta => {
            sink.meta_key(key, at)?;
            let at = r.pos();
            let value = text(r)?;
            sink.meta_entry(key, value, at)
        }
        Map::Metrics => {
            sink.metric_key(key, at)?;
            if r.nil() {
                return Ok(());
            }
            let at = r.pos();
            let value = r.f64()?;
            sink.metric_entry(key, value, at)
        }
    }
}
