//! Decoders for the trace payloads Datadog-protocol clients send to the agent:
//! `/v0.3/traces` (JSON or msgpack), `/v0.4/traces` and `/v0.5/traces` (msgpack).
//!
//! ```
//! use trace_sidecar::decode::{decode, format_for, transcode, Format};
//!
//! let format = format_for("/v0.4/traces", Some("application/msgpack")).unwrap();
//! assert_eq!(format, Format::V04);
//! assert!(decode(format, &[0x90]).unwrap().is_empty()); // the client's probe: `[]`
//! assert_eq!(transcode(format, &[0x90]).unwrap().spans, 0);
//! ```
//!
//! [`transcode`] is what the sidecar runs: it writes the spans straight as the relay's
//! protobuf. [`decode`] makes `sts_proto` `Trace`s of the same payloads, read by the same
//! parser (for msgpack; see `sink.rs`).
//!
//! Whatever the body, decoding does not panic, does not recurse with the payload's
//! nesting, checks every length against the bytes left before allocating for it, and
//! charges every allocation for its output to a budget (see [`Limits`]).

mod budget;
mod error;
mod json;
mod maps;
mod proto;
mod reader;
mod sink;
mod v04;
mod v05;

use prost::Message;
use sts_proto::daemon::v1::Trace;

pub use error::{DecodeError, Location, Reason};
// The OTLP transcoder (`otlp::transcode`) writes the relay's protobuf with the same sink.
pub(crate) use budget::Budget;
pub(crate) use error::Fail;
pub(crate) use proto::ProtoSink;
pub(crate) use sink::{Id, Sink, Text, Time};

/// A payload format, as chosen by the endpoint and content type (see [`format_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `/v0.3/traces` with a JSON body (also a JSON body on `/v0.4/traces`): an array of
    /// traces, each an array of span objects.
    V03Json,
    /// `/v0.3/traces` with `Content-Type: application/msgpack`; the same shape as v0.4.
    V03Msgpack,
    /// `/v0.4/traces`: a msgpack array of traces, each an array of span maps.
    V04,
    /// `/v0.5/traces`: msgpack `[string_table, traces]`, each span a 12-element array
    /// whose strings are indexes into the string table.
    V05,
}

/// The format of a request to `path` (`/v0.3/traces`, `/v0.4/traces` or `/v0.5/traces`;
/// a trailing `/` is allowed) with the given `Content-Type`, or `None` for another path.
///
/// As in the Datadog agent: v0.3 is msgpack when the content type is
/// `application/msgpack` and JSON otherwise (`application/json`, `text/json`, none); v0.4
/// is msgpack unless the content type is JSON; v0.5 is always msgpack. Media type
/// parameters (`; charset=utf-8`) and case are ignored.
pub fn format_for(path: &str, content_type: Option<&str>) -> Option<Format> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let media = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    let is = |name: &str| media.eq_ignore_ascii_case(name);
    let json = is("application/json") || is("text/json");
    match path {
        "/v0.3/traces" if is("application/msgpack") => Some(Format::V03Msgpack),
        "/v0.3/traces" => Some(Format::V03Json),
        "/v0.4/traces" if json => Some(Format::V03Json),
        "/v0.4/traces" => Some(Format::V04),
        "/v0.5/traces" => Some(Format::V05),
        _ => None,
    }
}

/// How much memory the decoded (or transcoded) traces of one body may take.
///
/// A decoded span takes more memory than its encoding: a `Span` is 240 bytes before its
/// strings, and each `meta`/`metrics` map is a hash table. Measured on batches of 1000
/// realistic spans (10 meta entries, 3 metrics; `tests/decode_fuzz.rs`), the peak heap is
/// 3.1x the body for v0.4, 2.8x for JSON and 15x for v0.5, whose strings are 1-2 byte
/// indexes into a shared table; a hostile v0.5 body could ask for thousands of times its
/// size. Transcoded, a v0.4 body takes about its own size in protobuf (0.94x) and v0.5 4.5x
/// (the transcoder's buffer, charged in full at each growth, and v0.5's string table count).
/// The budget of a body of `n` bytes is `min(expansion * n + slack, max_bytes)`
/// (counted in requested bytes, before the allocator's own overhead); a payload that would
/// decode to more fails with [`Reason::TooLarge`], having allocated at most the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub expansion: usize,
    pub slack: usize,
    pub max_bytes: usize,
}

impl Limits {
    /// 64 × the body + 64 KiB, at most 256 MiB.
    pub const DEFAULT: Limits = Limits {
        expansion: 64,
        slack: 64 << 10,
        max_bytes: 256 << 20,
    };

    /// The budget of a body of `body_len` bytes.
    pub fn budget(&self, body_len: usize) -> usize {
        body_len
            .saturating_mul(self.expansion)
            .saturating_add(self.slack)
            .min(self.max_bytes)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Decodes a trace payload with the default [`Limits`].
pub fn decode(format: Format, body: &[u8]) -> Result<Vec<Trace>, DecodeError> {
    decode_with(format, body, &Limits::DEFAULT)
}

/// Decodes a trace payload; the decoded traces take at most `limits.budget(body.len())`
/// bytes of heap.
pub fn decode_with(
    format: Format,
    body: &[u8],
    limits: &Limits,
) -> Result<Vec<Trace>, DecodeError> {
    let mut budget = budget::Budget::new(limits.budget(body.len()), body.len());
    match format {
        Format::V03Json => json::decode(body, &mut budget),
        Format::V03Msgpack | Format::V04 => {
            let mut sink = sink::Structs::new(&mut budget);
            v04::decode(body, &mut sink)?;
            Ok(sink.traces)
        }
        Format::V05 => {
            let mut sink = sink::Structs::new(&mut budget);
            v05::decode(body, &mut sink)?;
            Ok(sink.traces)
        }
    }
}

/// A payload transcoded to the relay's protobuf (see [`transcode`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcoded {
    /// `TracePayload.traces` fields (2), one per trace: a `TracePayload` encoding without
    /// its `client`.
    pub bytes: Vec<u8>,
    /// Traces and spans in it.
    pub traces: usize,
    pub spans: usize,
}

/// Transcodes a trace payload to the relay's protobuf with the default [`Limits`].
pub fn transcode(format: Format, body: &[u8]) -> Result<Transcoded, DecodeError> {
    transcode_with(format, body, &Limits::DEFAULT)
}

/// Transcodes a trace payload to the relay's protobuf: the spans [`decode_with`] would
/// make, as relay.proto `Trace`s in `TracePayload.traces` fields, without building them.
/// Read as a `TracePayload`, the bytes are those traces (a field given twice in a span, or
/// an invalid UTF-8 sequence, is read as `decode` reads it). The output takes at most
/// `limits.budget(body.len())` bytes of heap, the v0.5 string table included.
pub fn transcode_with(
    format: Format,
    body: &[u8],
    limits: &Limits,
) -> Result<Transcoded, DecodeError> {
    let mut budget = budget::Budget::new(limits.budget(body.len()), body.len());
    let at_payload = |f: error::Fail| f.at(Location::default());
    // A v0.4 span's protobuf is about the size of its msgpack; room for the `client`
    // field the relay appends.
    let capacity = body
        .len()
        .saturating_add(body.len() / 8)
        .saturating_add(256);
    let v05 = match format {
        Format::V03Json => return json_transcode(body, &mut budget),
        Format::V03Msgpack | Format::V04 => false,
        Format::V05 => true,
    };
    let mut sink = proto::ProtoSink::new(&mut budget, capacity).map_err(at_payload)?;
    if v05 {
        v05::decode(body, &mut sink)?;
    } else {
        v04::decode(body, &mut sink)?;
    }
    Ok(Transcoded {
        bytes: sink.out,
        traces: sink.traces,
        spans: sink.spans,
    })
}

/// JSON is decoded to `Trace`s and those encoded (the output charged too).
fn json_transcode(body: &[u8], budget: &mut budget::Budget) -> Result<Transcoded, DecodeError> {
    let traces = json::decode(body, budget)?;
    let len: usize = traces
        .iter()
        .map(|t| prost::encoding::message::encoded_len(2, t))
        .sum();
    budget
        .charge(len, body.len())
        .map_err(|f| f.at(Location::default()))?;
    let mut bytes = Vec::with_capacity(len);
    for trace in &traces {
        prost::encoding::message::encode(2, trace, &mut bytes);
    }
    Ok(Transcoded {
        bytes,
        traces: traces.len(),
        spans: traces.iter().map(|t| t.spans.len()).sum(),
    })
}

impl Transcoded {
    /// The traces, decoded (for tests and tools; the relay sends the bytes).
    pub fn decode(&self) -> Result<Vec<Trace>, prost::DecodeError> {
        sts_proto::daemon::v1::TracePayload::decode(self.bytes.as_slice()).map(|p| p.traces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_path_and_content_type() {
        let cases = [
            ("/v0.3/traces", None, Some(Format::V03Json)),
            (
                "/v0.3/traces",
                Some("application/json"),
                Some(Format::V03Json),
            ),
            (
                "/v0.3/traces",
                Some("Application/MsgPack; charset=x"),
                Some(Format::V03Msgpack),
            ),
            (
                "/v0.4/traces",
                Some("application/msgpack"),
                Some(Format::V04),
            ),
            ("/v0.4/traces", None, Some(Format::V04)),
            (
                "/v0.4/traces/",
                Some("application/json"),
                Some(Format::V03Json),
            ),
            (
                "/v0.5/traces",
                Some("application/msgpack"),
                Some(Format::V05),
            ),
            ("/v0.5/traces", Some("application/json"), Some(Format::V05)),
            ("/v0.4/services", None, None),
            ("/v0.7/traces", None, None),
            ("/info", None, None),
        ];
        for (path, content_type, want) in cases {
            assert_eq!(
                format_for(path, content_type),
                want,
                "{path} {content_type:?}"
            );
        }
    }

    #[test]
    fn budget_is_linear_and_capped() {
        let limits = Limits {
            expansion: 10,
            slack: 5,
            max_bytes: 1000,
        };
        assert_eq!(limits.budget(0), 5);
        assert_eq!(limits.budget(20), 205);
        assert_eq!(limits.budget(usize::MAX), 1000);
    }
}
