//! A relay `SpanBatch` read from its protobuf encoding without decoding its spans: each
//! span stays the bytes the sidecar sent (relay.proto's `repeated Span spans = 1` has the
//! wire form of `repeated bytes`), read once for what correlation and forwarding need (its
//! service, trace id, start and duration, the `span.pid` meta and the `process_id` metric,
//! and what the StackState interpreter looks at: the `span.serviceURN`, `span.kind`,
//! `language` and `db.type` meta and the span type)
//! and checked on the way: every field well formed, of the wire type relay.proto gives it,
//! strings valid UTF-8, as prost would check them when decoding. So a span the daemon
//! keeps or forwards decodes as a relay (and receiver) `Span`.
//!
//! Fields are read as protobuf reads them: in any order, unknown ones skipped, a scalar
//! given twice keeps the last value, map entries later in the span win. Groups (wire types
//! 3 and 4, deprecated and never written by proto3) are refused.

use std::ops::Range;

use bytes::Bytes;
use prost::Message;
use sts_proto::daemon::v1::ClientInfo;

use crate::span;

/// What is wrong with a batch, and where (a byte offset in the batch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} (at byte {at})")]
pub struct WireError {
    pub what: &'static str,
    pub at: usize,
}

#[cold]
fn error(what: &'static str, at: usize) -> WireError {
    WireError { what, at }
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// The meta key and metric name that name the client process.
const META_PID: &[u8] = span::META_PID.as_bytes();
/// The meta keys the interpreter reads.
const META_SERVICE_URN: &[u8] = span::META_SERVICE_URN.as_bytes();
const META_KIND: &[u8] = span::META_KIND.as_bytes();
const META_LANGUAGE: &[u8] = span::META_LANGUAGE.as_bytes();
const META_DB_TYPE: &[u8] = span::META_DB_TYPE.as_bytes();
const METRIC_PROCESS_ID: &[u8] = span::METRIC_PROCESS_ID.as_bytes();

/// Reads the fields of one message, `msg`, which starts at byte `base` of the batch
/// (errors give batch offsets); ranges it returns are the batch's too.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn new(buf: &'a [u8], range: Range<usize>) -> Self {
        Reader {
            base: range.start,
            msg: &buf[range],
            pos: 0,
        }
    }

    #[inline(always)]
    fn more(&self) -> bool {
        self.pos < self.msg.len()
    }

    /// The batch offset of the next byte.
    #[inline(always)]
    fn at(&self) -> usize {
        self.base + self.pos
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        // On an error the position stays at the varint's start.
        sts_proto::varint::read(self.msg, &mut self.pos).map_err(|e| error(e.what(), self.at()))
    }

    /// A field's number and wire type.
    #[inline(always)]
    fn key(&mut self) -> Result<(u64, u8), WireError> {
        let at = self.at();
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(error("a field number out of range", at));
        }
        Ok((field, (key & 7) as u8))
    }

    /// A length-delimited value: where its bytes are in the batch.
    #[inline(always)]
    fn len(&mut self) -> Result<Range<usize>, WireError> {
        let at = self.at();
        let len = self.varint()?;
        match usize::try_from(len) {
            Ok(len) if len <= self.msg.len() - self.pos => {
                let start = self.at();
                self.pos += len;
                Ok(start..start + len)
            }
            _ => Err(error("a length past the end of its message", at)),
        }
    }

    /// A string: where its bytes are in the batch, checked to be UTF-8.
    #[inline(always)]
    fn text(&mut self) -> Result<Range<usize>, WireError> {
        let at = self.at();
        let range = self.len()?;
        let text = &self.msg[range.start - self.base..range.end - self.base];
        if utf8(text) {
            Ok(range)
        } else {
            Err(error("a string that is not UTF-8", at))
        }
    }

    #[inline(always)]
    fn fixed64(&mut self) -> Result<u64, WireError> {
        match self.msg.get(self.pos..self.pos + 8) {
            Some(bytes) => {
                self.pos += 8;
                let mut le = [0; 8];
                le.copy_from_slice(bytes);
                Ok(u64::from_le_bytes(le))
            }
            None => Err(error("the message ends inside a fixed64", self.at())),
        }
    }

    /// Skips a value of an unknown field. Groups (deprecated, never in proto3) are refused.
    fn skip(&mut self, wire_type: u8, at: usize) -> Result<(), WireError> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.len().map(drop),
            FIXED32 if self.msg.len() - self.pos >= 4 => {
                self.pos += 4;
                Ok(())
            }
            FIXED32 => Err(error("the message ends inside a fixed32", self.at())),
            _ => Err(error("a group or an invalid wire type", at)),
        }
    }
}

#[inline]
fn utf8(bytes: &[u8]) -> bool {
    bytes.is_ascii() || std::str::from_utf8(bytes).is_ok()
}

/// A batch, its payloads, their traces and their spans, in relay order.
#[derive(Debug, Clone, Default)]
pub struct BatchView {
    /// The encoded batch; spans are ranges of it.
    pub bytes: Bytes,
    pub header: BatchHeader,
    pub payloads: Vec<PayloadView>,
    pub traces: Vec<TraceView>,
    pub spans: Vec<SpanView>,
}

/// The `SpanBatch` fields other than its payloads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchHeader {
    pub sidecar_id: String,
    pub batch_id: u64,
    pub sidecar_addr: String,
    pub task_arn: String,
    pub dropped_spans: u64,
    pub token: String,
}

#[derive(Debug, Clone, Default)]
pub struct PayloadView {
    pub client: ClientInfo,
    /// Its traces in [`BatchView::traces`].
    pub traces: Range<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct TraceView {
    /// Its `common` span's bytes in the batch (empty when it has none): every span of the
    /// trace is these and its own.
    pub common: Range<usize>,
    /// Its spans in [`BatchView::spans`].
    pub spans: Range<usize>,
}

/// One span: where it is, and what was read of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanView {
    /// The span's bytes in the batch.
    pub bytes: Range<usize>,
    /// Its `service` in the batch.
    pub service: Range<usize>,
    pub trace_id: u64,
    pub start: i64,
    pub duration: i64,
    /// The `span.pid` meta (the Java client's), when it is a pid.
    pub meta_pid: Option<u32>,
    /// The `process_id` metric (Python and Node root spans), when it is a pid.
    pub metric_pid: Option<u32>,
    /// How the StackState interpreter types the span's service.
    pub kind: ServiceKind,
}

/// What the StackState trace agent's interpreter makes of a span (docs/FORWARDING.md): which service fields the daemon adds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ServiceKind {
    /// The client set `span.serviceURN`: the span passes as it is.
    Named,
    /// No `span.kind`: service name and URN, no service type.
    #[default]
    Untyped,
    /// `span.kind` set: service type `java` (meta `language` = `jvm`) or `service`.
    Kind { jvm: bool },
    /// A span of type `sql` with `db.type`: the service type is the `db.type` (its range
    /// in the batch).
    Database(Range<usize>),
}

// SpanBatch fields.
const SIDECAR_ID: u64 = 1;
const BATCH_ID: u64 = 2;
const PAYLOADS: u64 = 3;
const SIDECAR_ADDR: u64 = 4;
const TASK_ARN: u64 = 5;
const DROPPED_SPANS: u64 = 6;
const TOKEN: u64 = 7;
// TracePayload, Trace.
const CLIENT: u64 = 1;
const TRACES: u64 = 2;
const SPANS: u64 = 1;
const COMMON: u64 = 2;

impl BatchHeader {
    /// Reads the header of an encoded `SpanBatch`; also returns where its payloads are.
    pub fn read(bytes: &[u8]) -> Result<(BatchHeader, Vec<Range<usize>>), WireError> {
        let mut header = BatchHeader::default();
        let mut payloads = Vec::new();
        let mut r = Reader::new(bytes, 0..bytes.len());
        while r.more() {
            let at = r.at();
            let (field, wire_type) = r.key()?;
            let string = |r: &mut Reader<'_>| -> Result<String, WireError> {
                let range = r.text()?;
                Ok(String::from_utf8_lossy(&bytes[range]).into_owned())
            };
            match (field, wire_type) {
                (SIDECAR_ID, LEN) => header.sidecar_id = string(&mut r)?,
                (BATCH_ID, VARINT) => header.batch_id = r.varint()?,
                (PAYLOADS, LEN) => payloads.push(r.len()?),
                (SIDECAR_ADDR, LEN) => header.sidecar_addr = string(&mut r)?,
                (TASK_ARN, LEN) => header.task_arn = string(&mut r)?,
                (DROPPED_SPANS, VARINT) => header.dropped_spans = r.varint()?,
                (TOKEN, LEN) => header.token = string(&mut r)?,
                (1..=7, _) => return Err(error("a SpanBatch field of the wrong wire type", at)),
                _ => r.skip(wire_type, at)?,
            }
        }
        Ok((header, payloads))
    }
}

impl BatchView {
    /// Reads the payloads of a batch whose header [`BatchHeader::read`] read.
    pub fn read(
        bytes: Bytes,
        header: BatchHeader,
        payloads: &[Range<usize>],
    ) -> Result<BatchView, WireError> {
        // About 600 bytes a span, 10 spans a trace, in realistic batches.
        let mut batch = BatchView {
            header,
            payloads: Vec::with_capacity(payloads.len()),
            traces: Vec::with_capacity(bytes.len() / 4096),
            spans: Vec::with_capacity(bytes.len() / 512),
            bytes: Bytes::new(),
        };
        for range in payloads {
            batch.payload(&bytes, range.clone())?;
        }
        batch.bytes = bytes;
        Ok(batch)
    }

    /// Reads a whole encoded `SpanBatch`.
    pub fn parse(bytes: Bytes) -> Result<BatchView, WireError> {
        let (header, payloads) = BatchHeader::read(&bytes)?;
        BatchView::read(bytes, header, &payloads)
    }

    pub fn span_count(&self) -> usize {
        self.spans.len()
    }

    fn payload(&mut self, buf: &[u8], range: Range<usize>) -> Result<(), WireError> {
        let mut client = ClientInfo::default();
        let first_trace = self.traces.len();
        let mut r = Reader::new(buf, range);
        while r.more() {
            let at = r.at();
            let (field, wire_type) = r.key()?;
            match (field, wire_type) {
                (CLIENT, LEN) => {
                    let range = r.len()?;
                    // Merged, as protobuf merges a message field given twice.
                    client
                        .merge(&buf[range])
                        .map_err(|_| error("a malformed ClientInfo", at))?;
                }
                (TRACES, LEN) => {
                    let range = r.len()?;
                    self.trace(buf, range)?;
                }
                (CLIENT | TRACES, _) => {
                    return Err(error("a TracePayload field of the wrong wire type", at))
                }
                _ => r.skip(wire_type, at)?,
            }
        }
        self.payloads.push(PayloadView {
            client,
            traces: first_trace..self.traces.len(),
        });
        Ok(())
    }

    fn trace(&mut self, buf: &[u8], range: Range<usize>) -> Result<(), WireError> {
        let first_span = self.spans.len();
        // `common` first, wherever it stands: every span is read on from it.
        let mut common: Option<Range<usize>> = None;
        let mut r = Reader::new(buf, range.clone());
        while r.more() {
            let at = r.at();
            let (field, wire_type) = r.key()?;
            match (field, wire_type) {
                (COMMON, LEN) if common.is_some() => {
                    return Err(error("a Trace with two common fields", at))
                }
                (COMMON, LEN) => common = Some(r.len()?),
                (SPANS, LEN) => {
                    r.len()?;
                }
                (SPANS | COMMON, _) => {
                    return Err(error("a Trace field of the wrong wire type", at))
                }
                _ => r.skip(wire_type, at)?,
            }
        }
        let common = common.unwrap_or(range.start..range.start);
        let shared = read_span(buf, common.clone(), SpanRead::default())?;
        let mut r = Reader::new(buf, range);
        while r.more() {
            let at = r.at();
            match r.key()? {
                (SPANS, LEN) => {
                    let range = r.len()?;
                    let read = read_span(buf, range.clone(), shared.clone())?;
                    self.spans.push(read.view(buf, range));
                }
                (_, wire_type) => r.skip(wire_type, at)?,
            }
        }
        self.traces.push(TraceView {
            common,
            spans: first_span..self.spans.len(),
        });
        Ok(())
    }
}

/// What reading a span's fields has found so far: a span's own fields are read on from
/// what its trace's `common` gave (relay.proto), as protobuf reads the two as one message.
#[derive(Debug, Clone, Default)]
struct SpanRead {
    service: Range<usize>,
    trace_id: u64,
    start: i64,
    duration: i64,
    /// The last `span.pid` value and `process_id` metric: later entries win.
    meta_pid: Option<Range<usize>>,
    metric_pid: Option<f64>,
    span_type: Range<usize>,
    named: bool,
    has_kind: bool,
    jvm: bool,
    db_type: Option<Range<usize>>,
}

/// Reads the span (or trace `common`) at `range` on from `read` (see the module doc).
fn read_span(buf: &[u8], range: Range<usize>, mut read: SpanRead) -> Result<SpanRead, WireError> {
    let mut r = Reader::new(buf, range);
    while r.more() {
        let at = r.at();
        let (field, wire_type) = r.key()?;
        match (field, wire_type) {
            (1, LEN) => read.service = r.text()?,
            (12, LEN) => read.span_type = r.text()?,
            (2 | 3, LEN) => {
                r.text()?;
            }
            (4, VARINT) => read.trace_id = r.varint()?,
            (5 | 6 | 9, VARINT) => {
                r.varint()?;
            }
            (7, VARINT) => read.start = r.varint()? as i64,
            (8, VARINT) => read.duration = r.varint()? as i64,
            (10, LEN) => {
                let entry = r.len()?;
                let (key, value) = meta_entry(buf, entry)?;
                match &buf[key] {
                    META_PID => read.meta_pid = Some(value),
                    META_SERVICE_URN => read.named = true,
                    META_KIND => read.has_kind = true,
                    META_LANGUAGE => read.jvm = &buf[value] == b"jvm",
                    META_DB_TYPE => read.db_type = Some(value),
                    _ => {}
                }
            }
            (11, LEN) => {
                let entry = r.len()?;
                if let Some(value) = metric_entry(buf, entry)? {
                    read.metric_pid = Some(value);
                }
            }
            (1..=12, _) => return Err(error("a Span field of the wrong wire type", at)),
            _ => r.skip(wire_type, at)?,
        }
    }
    Ok(read)
}

impl SpanRead {
    /// The view of the span at `bytes` whose fields (with its trace's common ones) these are.
    fn view(self, buf: &[u8], bytes: Range<usize>) -> SpanView {
        let db_type = self.db_type.filter(|_| &buf[self.span_type] == b"sql");
        SpanView {
            bytes,
            service: self.service,
            trace_id: self.trace_id,
            start: self.start,
            duration: self.duration,
            meta_pid: self.meta_pid.and_then(|value| {
                let text = std::str::from_utf8(&buf[value]).ok()?;
                text.trim().parse().ok()
            }),
            metric_pid: self
                .metric_pid
                .filter(|v| *v >= 1.0 && *v <= f64::from(u32::MAX) && v.fract() == 0.0)
                .map(|v| v as u32),
            kind: match (self.named, db_type) {
                (true, _) => ServiceKind::Named,
                (false, Some(db)) => ServiceKind::Database(db),
                (false, None) if self.has_kind => ServiceKind::Kind { jvm: self.jvm },
                (false, None) => ServiceKind::Untyped,
            },
        }
    }
}

/// Reads one span of a trace with no `common` (see the module doc).
#[cfg(test)]
fn span(buf: &[u8], range: Range<usize>) -> Result<SpanView, WireError> {
    Ok(read_span(buf, range.clone(), SpanRead::default())?.view(buf, range))
}

/// Checks a `meta` entry; the ranges of its key and value.
#[inline(always)]
fn meta_entry(buf: &[u8], range: Range<usize>) -> Result<(Range<usize>, Range<usize>), WireError> {
    // Fast path: key and value each under 128 bytes, in that order, as prost and the
    // sidecar write them.
    let entry = &buf[range.clone()];
    if let [0x0a, key_len, rest @ ..] = entry {
        let key_len = usize::from(*key_len);
        if key_len < 0x80 && rest.len() >= key_len + 2 {
            let (key, rest) = rest.split_at(key_len);
            if let [0x12, value_len, value @ ..] = rest {
                // A length byte of 0x80 or more is the first of a longer varint.
                if *value_len < 0x80
                    && usize::from(*value_len) == value.len()
                    && utf8(key)
                    && utf8(value)
                {
                    let key_start = range.start + 2;
                    let start = range.end - value.len();
                    return Ok((key_start..key_start + key_len, start..range.end));
                }
            }
        }
    }
    any_meta_entry(buf, range)
}

fn any_meta_entry(
    buf: &[u8],
    range: Range<usize>,
) -> Result<(Range<usize>, Range<usize>), WireError> {
    let mut key = range.start..range.start;
    let mut value = range.start..range.start;
    let mut r = Reader::new(buf, range);
    while r.more() {
        let at = r.at();
        let (field, wire_type) = r.key()?;
        match (field, wire_type) {
            (1, LEN) => key = r.text()?,
            (2, LEN) => value = r.text()?,
            (1 | 2, _) => return Err(error("a meta entry field of the wrong wire type", at)),
            _ => r.skip(wire_type, at)?,
        }
    }
    Ok((key, value))
}

/// Checks a `metrics` entry; its value when its key is `process_id`.
#[inline(always)]
fn metric_entry(buf: &[u8], range: Range<usize>) -> Result<Option<f64>, WireError> {
    // Fast path: a key under 128 bytes and then the value, as prost writes them.
    let entry = &buf[range.clone()];
    if let [0x0a, key_len, rest @ ..] = entry {
        let key_len = usize::from(*key_len);
        if key_len < 0x80 && rest.len() == key_len + 9 {
            let (key, rest) = rest.split_at(key_len);
            if let [0x11, value @ ..] = rest {
                if utf8(key) {
                    if key != METRIC_PROCESS_ID {
                        return Ok(None);
                    }
                    let mut le = [0; 8];
                    le.copy_from_slice(value);
                    return Ok(Some(f64::from_le_bytes(le)));
                }
            }
        }
    }
    any_metric_entry(buf, range)
}

fn any_metric_entry(buf: &[u8], range: Range<usize>) -> Result<Option<f64>, WireError> {
    let mut key = range.start..range.start;
    let mut value = 0.0;
    let mut r = Reader::new(buf, range);
    while r.more() {
        let at = r.at();
        let (field, wire_type) = r.key()?;
        match (field, wire_type) {
            (1, LEN) => key = r.text()?,
            (2, FIXED64) => value = f64::from_bits(r.fixed64()?),
            (1 | 2, _) => return Err(error("a metrics entry field of the wrong wire type", at)),
            _ => r.skip(wire_type, at)?,
        }
    }
    Ok((&buf[key] == METRIC_PROCESS_ID).then_some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use sts_proto::daemon::v1::{Span, SpanBatch, Trace, TracePayload};

    fn span(service: &str, trace_id: u64) -> Span {
        Span {
            service: service.into(),
            name: "op".into(),
            trace_id,
            span_id: 3,
            start: -7,
            duration: 1_000,
            error: -1,
            meta: HashMap::from([("_dd.p.tid".into(), "6b06dd4a00000000".into())]),
            metrics: HashMap::from([("_sampling_priority_v1".into(), 1.0)]),
            ..Span::default()
        }
    }

    fn batch(payloads: Vec<TracePayload>) -> SpanBatch {
        SpanBatch {
            sidecar_id: "s1".into(),
            batch_id: 9,
            payloads,
            sidecar_addr: "10.0.0.5:8126".into(),
            task_arn: "arn:t".into(),
            dropped_spans: 4,
            token: "t0ken".into(),
        }
    }

    #[test]
    fn reads_what_prost_writes() {
        let mut java = span("java-app", 2);
        java.meta.insert("span.pid".into(), " 4242 ".into());
        let mut python = span("web", 1);
        python.metrics.insert("process_id".into(), 77.0);
        let payloads = vec![
            TracePayload {
                client: Some(ClientInfo {
                    lang: "python".into(),
                    peer_pid: 5,
                    ..ClientInfo::default()
                }),
                traces: vec![
                    Trace {
                        common: None,
                        spans: vec![python.clone(), span("db", 1)],
                    },
                    Trace {
                        common: None,
                        spans: vec![],
                    },
                ],
            },
            TracePayload {
                client: None,
                traces: vec![Trace {
                    common: None,
                    spans: vec![java.clone()],
                }],
            },
        ];
        let encoded = Bytes::from(batch(payloads).encode_to_vec());
        let view = BatchView::parse(encoded.clone()).unwrap();
        assert_eq!(
            view.header,
            BatchHeader {
                sidecar_id: "s1".into(),
                batch_id: 9,
                sidecar_addr: "10.0.0.5:8126".into(),
                task_arn: "arn:t".into(),
                dropped_spans: 4,
                token: "t0ken".into(),
            }
        );
        assert_eq!(view.payloads.len(), 2);
        assert_eq!(view.payloads[0].client.peer_pid, 5);
        assert_eq!(view.payloads[0].traces, 0..2);
        assert_eq!(view.payloads[1].traces, 2..3);
        assert_eq!(view.traces[0].spans, 0..2);
        assert!(view.traces[1].spans.is_empty());
        assert_eq!(view.span_count(), 3);
        let [p, d, j] = &view.spans[..] else {
            panic!("3 spans")
        };
        assert_eq!(&encoded[p.service.clone()], b"web");
        assert_eq!(&encoded[d.service.clone()], b"db");
        assert_eq!((p.trace_id, p.start, p.duration), (1, -7, 1_000));
        assert_eq!((p.metric_pid, p.meta_pid), (Some(77), None));
        assert_eq!((d.metric_pid, d.meta_pid), (None, None));
        assert_eq!((j.metric_pid, j.meta_pid), (None, Some(4242)));
        // Each span's bytes are the span.
        assert_eq!(Span::decode(&encoded[p.bytes.clone()]).unwrap(), python);
        assert_eq!(Span::decode(&encoded[j.bytes.clone()]).unwrap(), java);
    }

    #[test]
    fn later_values_win_and_pids_must_be_pids() {
        let mut buf = span("first", 1).encode_to_vec();
        // Appended: service again, a span.pid entry, a process_id metric that is no pid.
        buf.extend_from_slice(&[0x0a, 3, b'w', b'e', b'b']);
        let entry = |key: &str, value: &str| {
            let mut e = vec![0x0a, key.len() as u8];
            e.extend_from_slice(key.as_bytes());
            e.extend_from_slice(&[0x12, value.len() as u8]);
            e.extend_from_slice(value.as_bytes());
            let mut field = vec![0x52, e.len() as u8];
            field.extend(e);
            field
        };
        buf.extend(entry("span.pid", "12"));
        buf.extend(entry("span.pid", "13"));
        buf.extend_from_slice(&[0x5a, 21, 0x0a, 10]);
        buf.extend_from_slice(b"process_id");
        buf.push(0x11);
        buf.extend_from_slice(&1.5f64.to_le_bytes());
        let view = super::span(&buf, 0..buf.len()).unwrap();
        assert_eq!(&buf[view.service], b"web");
        assert_eq!(view.meta_pid, Some(13));
        assert_eq!(view.metric_pid, None, "1.5 is no pid");
        let decoded = Span::decode(buf.as_slice()).unwrap();
        assert_eq!(decoded.service, "web");
        assert_eq!(decoded.meta["span.pid"], "13");

        // Entries as prost would not write them (value first, an unknown field, a long
        // key) are read all the same.
        let mut buf = span("web", 1).encode_to_vec();
        buf.extend_from_slice(&[0x52, 16, 0x12, 2, b'1', b'4', 0x18, 0x01, 0x0a, 8]);
        buf.extend_from_slice(b"span.pid");
        let long = "k".repeat(200);
        let mut entry = vec![0x0a, 0xc8, 0x01];
        entry.extend_from_slice(long.as_bytes());
        entry.extend_from_slice(&[0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]);
        buf.extend_from_slice(&[0x5a, entry.len() as u8, 0x01]);
        buf.extend(entry);
        let view = super::span(&buf, 0..buf.len()).unwrap();
        assert_eq!(view.meta_pid, Some(14));
        let decoded = Span::decode(buf.as_slice()).unwrap();
        assert_eq!(decoded.metrics[&long], 1.0);
        // A process_id metric with the value before the key, and one with no value (0).
        let mut buf = span("web", 1).encode_to_vec();
        buf.extend_from_slice(&[0x5a, 21, 0x11, 0, 0, 0, 0, 0, 0, 0x45, 0x40, 0x0a, 10]);
        buf.extend_from_slice(b"process_id");
        let view = super::span(&buf, 0..buf.len()).unwrap();
        assert_eq!(view.metric_pid, Some(42));
        buf.extend_from_slice(&[0x5a, 12, 0x0a, 10]);
        buf.extend_from_slice(b"process_id");
        let view = super::span(&buf, 0..buf.len()).unwrap();
        assert_eq!(view.metric_pid, None, "the later entry, 0.0, wins");
    }

    #[test]
    fn spans_are_read_on_from_their_trace_s_common_span() {
        let common = Span {
            service: "shop".into(),
            trace_id: 77,
            meta: HashMap::from([
                ("span.pid".into(), "41".into()),
                ("language".into(), "jvm".into()),
            ]),
            ..Span::default()
        };
        let own = Span {
            name: "a".into(),
            span_id: 1,
            start: 5,
            meta: HashMap::from([("span.kind".into(), "server".into())]),
            ..Span::default()
        };
        let other = Span {
            service: "db".into(),
            span_id: 2,
            meta: HashMap::from([("span.pid".into(), "42".into())]),
            ..Span::default()
        };
        let trace = Trace {
            common: Some(common.clone()),
            spans: vec![own.clone(), other.clone()],
        };
        let payload = TracePayload {
            client: None,
            traces: vec![trace.clone()],
        };
        let encoded = Bytes::from(batch(vec![payload]).encode_to_vec());
        let view = BatchView::parse(encoded.clone()).unwrap();
        let common_bytes = &encoded[view.traces[0].common.clone()];
        assert_eq!(Span::decode(common_bytes).unwrap(), common);
        let [a, b] = &view.spans[..] else {
            panic!("two spans: {:?}", view.spans)
        };
        assert_eq!(&encoded[a.service.clone()], b"shop", "the common service");
        assert_eq!((a.trace_id, a.start, a.meta_pid), (77, 5, Some(41)));
        assert_eq!(a.kind, ServiceKind::Kind { jvm: true });
        assert_eq!(&encoded[b.service.clone()], b"db", "its own service wins");
        assert_eq!((b.trace_id, b.meta_pid), (77, Some(42)));
        assert_eq!(b.kind, ServiceKind::Untyped);
        // Each span is the common bytes followed by its own, as prost merges them.
        let mut joined = common_bytes.to_vec();
        joined.extend_from_slice(&encoded[a.bytes.clone()]);
        let merged = Span::decode(joined.as_slice()).unwrap();
        assert_eq!((merged.service.as_str(), merged.span_id), ("shop", 1));
        assert_eq!(merged.meta.len(), 3);

        // The common field after the spans is read first all the same.
        let mut late = Vec::new();
        for s in &trace.spans {
            prost::encoding::message::encode(1, s, &mut late);
        }
        prost::encoding::message::encode(2, &common, &mut late);
        let view_late = trace_view(&late).unwrap();
        assert_eq!(view_late.spans[0].meta_pid, Some(41));
        // Given twice, it is refused.
        let mut twice = late.clone();
        prost::encoding::message::encode(2, &common, &mut twice);
        let e = trace_view(&twice).unwrap_err();
        assert_eq!(e.what, "a Trace with two common fields");
    }

    /// A batch of one payload whose one trace is the `Trace` encoding `trace`.
    fn trace_view(trace: &[u8]) -> Result<BatchView, WireError> {
        let mut payload = Vec::new();
        prost::encoding::bytes::encode(2, &trace.to_vec(), &mut payload);
        let mut encoded = Vec::new();
        prost::encoding::bytes::encode(3, &payload, &mut encoded);
        BatchView::parse(Bytes::from(encoded))
    }

    #[test]
    fn malformed_spans_are_refused_as_prost_refuses_them() {
        let good = span("web", 1).encode_to_vec();
        let mut cases: Vec<Vec<u8>> = vec![
            vec![0x0a, 0x02, 0xff, 0xfe], // service not UTF-8
            vec![0x0a, 0x05, b'a'],       // string past the end
            vec![0x20],                   // varint cut short
            vec![
                0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ], // 65 bits
            vec![0x21, 0, 0, 0, 0, 0, 0, 0, 0], // trace_id as fixed64
            vec![0x0d, 0, 0, 0, 0],       // service as fixed32
            vec![0x52, 0x03, 0x08, 0x01, 0x00], // meta entry key as varint
            vec![0x52, 0x04, 0x12, 0x02, 0xc3, 0x28], // meta value not UTF-8
            vec![0x5a, 0x03, 0x15, 0x00, 0x00], // metric value as fixed32
            vec![0x5a, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00], // fixed64 cut short
            vec![0x00, 0x01],             // field 0
            vec![0x7f],                   // wire type 7
        ];
        // A valid span with a bad field after it.
        let mut tail = good.clone();
        tail.extend_from_slice(&[0x1a, 0x01, 0x80]);
        cases.push(tail);
        for bytes in cases {
            assert!(
                Span::decode(bytes.as_slice()).is_err(),
                "prost refuses {bytes:x?} too"
            );
            let e = super::span(&bytes, 0..bytes.len()).unwrap_err();
            assert!(e.at <= bytes.len(), "{e}");
        }
        // A group (field 13), which proto3 never writes: prost skips it, the daemon refuses.
        assert!(super::span(&[0x6b, 0x6c], 0..2).is_err());
        // Unknown fields of every other wire type are skipped, as prost skips them.
        let mut unknown = good.clone();
        unknown.extend_from_slice(&[0x68, 0x01, 0x71, 0, 0, 0, 0, 0, 0, 0, 0]);
        unknown.extend_from_slice(&[0x7a, 0x01, 0xff, 0x7d, 0, 0, 0, 0]);
        assert!(Span::decode(unknown.as_slice()).is_ok());
        assert!(super::span(&unknown, 0..unknown.len()).is_ok());
    }

    #[test]
    fn a_meta_value_length_of_two_bytes_is_read_as_a_varint() {
        // The value's length byte 0x81 starts a varint (0x81 0x01 = 129), not a length of
        // 129 that the fast path would take: the 129 bytes after 0x81 hold 128 of value.
        let mut value = vec![0x01];
        value.extend_from_slice(&[b'7'; 128]);
        let mut entry = vec![0x0a, 8];
        entry.extend_from_slice(b"span.pid");
        entry.extend_from_slice(&[0x12, value.len() as u8]);
        entry.extend_from_slice(&value);
        let mut buf = vec![0x52, 0x8d, 0x01];
        buf.extend_from_slice(&entry);
        assert!(Span::decode(buf.as_slice()).is_err(), "prost refuses it");
        assert!(super::span(&buf, 0..buf.len()).is_err());
        // With 0x81 0x00 (a length of 1, as prost reads it), fields follow the value.
        let mut entry = vec![0x0a, 8];
        entry.extend_from_slice(b"span.pid");
        entry.extend_from_slice(&[0x12, 0x81, 0x00, b'5']);
        entry.extend(std::iter::repeat_n([0x18, 0x01], 62).flatten());
        entry.extend_from_slice(&[0x1a, 0x01, b'x']);
        assert_eq!(entry.len() - 12, 129, "the fast path's value");
        let mut buf = vec![0x52, 0x8d, 0x01];
        buf.extend_from_slice(&entry);
        assert_eq!(Span::decode(buf.as_slice()).unwrap().meta["span.pid"], "5");
        let view = super::span(&buf, 0..buf.len()).unwrap();
        assert_eq!(view.meta_pid, Some(5));
    }

    #[test]
    fn every_cut_of_a_batch_fails_cleanly() {
        let payloads = vec![TracePayload {
            client: Some(ClientInfo {
                lang: "go".into(),
                ..ClientInfo::default()
            }),
            traces: vec![Trace {
                common: None,
                spans: vec![span("web", 1), span("db", 1)],
            }],
        }];
        let encoded = batch(payloads).encode_to_vec();
        for len in 0..encoded.len() {
            let cut = Bytes::copy_from_slice(&encoded[..len]);
            let prost_ok = SpanBatch::decode(cut.clone()).is_ok();
            let ours = BatchView::parse(cut);
            assert_eq!(ours.is_ok(), prost_ok, "cut at {len}: {:?}", ours.err());
        }
        // Random bytes never panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = BatchView::parse(Bytes::from(bytes));
        }
    }
}
