//! Correlated spans into the receiver's trace payload: grouped by trace id, protobuf,
//! gzip. The spans of one relay batch make one batch (more when past the count or size
//! limit); they are not held back to wait for more, since the relay acknowledges the
//! sidecar's batch once they are queued and a span waiting in memory would be lost to a
//! crash after the sidecar let it go.
//!
//! The payload is written by hand: each span goes in as the bytes the sidecar relayed and
//! the entries correlation added (the receiver's `Span` has the relay `Span`'s field
//! numbers), never decoded; the rest is as prost writes `TracePayload`.

use std::collections::HashMap;
use std::ops::Range;

use prost::encoding::{encode_varint, encoded_len_varint};

use super::gzip::Gzip;
use crate::span::CorrelatedSpan;

/// How much protobuf is deflated at a time: igzip copies the first 32 KiB of each piece
/// (its history), so pieces of 64 KiB cost 5-10% more than this.
const CHUNK: usize = 512 << 10;

/// Where the payload goes, below `STS_APM_URL`.
pub const TRACES_PATH: &str = "/api/v0.2/traces";

pub(crate) const MAX_SPANS: usize = 5_000;
pub(crate) const MAX_BYTES: usize = 3 << 20;
/// The spans in batches of at most `MAX_SPANS` spans and about `MAX_BYTES` (a batch ends
/// with the span that reaches it), in order.
pub fn split(spans: Vec<CorrelatedSpan>) -> Vec<Vec<CorrelatedSpan>> {
    // Most relay batches make one batch: kept as they are, not moved span by span.
    let before_last: usize = spans.iter().rev().skip(1).map(|s| s.encoded_len()).sum();
    if !spans.is_empty() && spans.len() <= MAX_SPANS && before_last < MAX_BYTES {
        return vec![spans];
    }
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for span in spans {
        bytes += span.encoded_len();
        batch.push(span);
        if batch.len() >= MAX_SPANS || bytes >= MAX_BYTES {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    batches
}

// Field numbers of receiver/v1/trace.proto: TracePayload, APITrace.
const HOST_NAME: u32 = 1;
const TRACES: u32 = 3;
const TRACE_ID: u32 = 1;
const SPANS: u32 = 2;
const START_TIME: u32 = 6;
const END_TIME: u32 = 7;

fn key(buf: &mut Vec<u8>, field: u32, wire_type: u32) {
    encode_varint(u64::from(field << 3 | wire_type), buf);
}

/// A varint field as prost writes it: left out at 0.
fn varint_field(buf: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(buf, field, 0);
        encode_varint(value, buf);
    }
}

fn varint_field_len(field: u32, value: u64) -> usize {
    if value == 0 {
        0
    } else {
        encoded_len_varint(u64::from(field << 3)) + encoded_len_varint(value)
    }
}

/// Encodes batches of spans, keeping its working memory (igzip's state, the protobuf
/// piece being written, the grouping by trace) from one batch to the next: fresh memory
/// each time is a page fault per 4 KiB touched (14% of a profile of batch after batch).
/// It keeps about 1.6 MB.
pub struct Encoder {
    gzip: Gzip,
    /// Protobuf not yet deflated.
    raw: Vec<u8>,
    /// Runs of consecutive spans of one trace, as (trace ordinal, span indices), in the
    /// order the payload lists them.
    runs: Vec<(usize, Range<usize>)>,
    /// Trace id to its ordinal in this batch.
    ordinals: HashMap<u64, usize>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self {
            gzip: Gzip::new(),
            raw: Vec::with_capacity(2 * CHUNK),
            runs: Vec::new(),
            ordinals: HashMap::new(),
        }
    }
}

impl Encoder {
    /// The gzip'd protobuf body of `<STS_APM_URL>/api/v0.2/traces`.
    pub fn encode(&mut self, hostname: &str, spans: &[CorrelatedSpan]) -> Vec<u8> {
        self.group(spans);
        let span_bytes: usize = spans.iter().map(|s| s.encoded_len() + 6).sum();
        self.gzip.begin(span_bytes);
        self.raw.clear();
        let raw = &mut self.raw;
        if !hostname.is_empty() {
            key(raw, HOST_NAME, 2);
            encode_varint(hostname.len() as u64, raw);
            raw.extend_from_slice(hostname.as_bytes());
        }
        for trace in self.runs.chunk_by(|a, b| a.0 == b.0) {
            // The trace's runs of spans, as slices (loops over them compile tight).
            let runs = || trace.iter().map(|(_, run)| &spans[run.clone()]);
            let trace_id = spans[trace[0].1.start].trace_id;
            let (mut start_time, mut end_time, mut spans_len) = (i64::MAX, i64::MIN, 0);
            for span in runs().flatten() {
                start_time = start_time.min(span.start);
                end_time = end_time.max(span.start.saturating_add(span.duration));
                let len = span.encoded_len();
                spans_len += 1 + encoded_len_varint(len as u64) + len;
            }
            let len = varint_field_len(TRACE_ID, trace_id)
                + spans_len
                + varint_field_len(START_TIME, start_time as u64)
                + varint_field_len(END_TIME, end_time as u64);
            key(raw, TRACES, 2);
            encode_varint(len as u64, raw);
            varint_field(raw, TRACE_ID, trace_id);
            for run in runs() {
                for span in run {
                    key(raw, SPANS, 2);
                    encode_varint(span.encoded_len() as u64, raw);
                    span.write_to(raw);
                    if raw.len() >= CHUNK {
                        self.gzip.write(raw);
                        raw.clear();
                    }
                }
            }
            varint_field(raw, START_TIME, start_time as u64);
            varint_field(raw, END_TIME, end_time as u64);
        }
        self.gzip.write(raw);
        // A span far larger than a piece grew the buffer: not kept at that size.
        raw.clear();
        raw.shrink_to(2 * CHUNK);
        self.runs.clear();
        self.runs.shrink_to(MAX_SPANS);
        self.ordinals.clear();
        self.ordinals.shrink_to(MAX_SPANS);
        self.gzip.finish()
    }

    /// `runs`: the spans grouped by trace, traces in the order their first span arrived,
    /// spans in arrival order within a trace. Clients send a trace's spans together, so
    /// the order is nearly always the arrival order and the spans are read front to back;
    /// a trace whose spans come apart is still made one.
    fn group(&mut self, spans: &[CorrelatedSpan]) {
        self.runs.clear();
        self.ordinals.clear();
        let mut first = 0;
        for run in spans.chunk_by(|a, b| a.trace_id == b.trace_id) {
            let next = self.ordinals.len();
            let ordinal = *self.ordinals.entry(run[0].trace_id).or_insert(next);
            self.runs.push((ordinal, first..first + run.len()));
            first += run.len();
        }
        if !self.runs.windows(2).all(|w| w[0].0 <= w[1].0) {
            // Stable: a trace's runs stay in arrival order.
            self.runs.sort_by_key(|(ordinal, _)| *ordinal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::io::Read;
    use sts_proto::daemon::v1::Span;
    use sts_proto::receiver::v1::{ApiTrace, Span as WireSpan, TracePayload};

    fn relay_span(trace: u64, id: u64) -> Span {
        Span {
            trace_id: trace,
            span_id: id,
            start: 100 * id as i64,
            duration: 10,
            service: "s".into(),
            meta: [("k".to_string(), format!("v{id}"))].into(),
            metrics: [("m".to_string(), 0.5)].into(),
            ..Span::default()
        }
    }

    fn span(trace: u64, id: u64) -> CorrelatedSpan {
        CorrelatedSpan::from_span(&relay_span(trace, id))
    }

    #[test]
    fn grouped_by_trace_and_gzipped() {
        let body = Encoder::default().encode("h1", &[span(1, 1), span(2, 2), span(1, 3)]);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut raw)
            .unwrap();
        let payload = TracePayload::decode(&raw[..]).unwrap();
        assert_eq!(payload.host_name, "h1");
        assert_eq!(payload.traces.len(), 2);
        let t1 = &payload.traces[0];
        assert_eq!(
            (t1.trace_id, t1.spans.len(), t1.start_time, t1.end_time),
            (1, 2, 100, 310)
        );
        // What prost would write for the same payload, the spans decoded.
        let wire = |s: Span| WireSpan {
            service: s.service,
            name: s.name,
            resource: s.resource,
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_id: s.parent_id,
            start: s.start,
            duration: s.duration,
            error: s.error,
            meta: s.meta,
            metrics: s.metrics,
            r#type: s.r#type,
        };
        let want = TracePayload {
            host_name: "h1".into(),
            env: String::new(),
            traces: vec![
                ApiTrace {
                    trace_id: 1,
                    spans: vec![wire(relay_span(1, 1)), wire(relay_span(1, 3))],
                    start_time: 100,
                    end_time: 310,
                },
                ApiTrace {
                    trace_id: 2,
                    spans: vec![wire(relay_span(2, 2))],
                    start_time: 200,
                    end_time: 210,
                },
            ],
            transactions: Vec::new(),
        };
        assert_eq!(payload, want);
    }

    #[test]
    fn an_encoder_used_again_writes_what_a_fresh_one_does() {
        let big: Vec<CorrelatedSpan> = (0..3_000).map(|i| span(i / 7, i)).collect();
        let small = [span(4, 1), span(3, 2), span(4, 3)];
        let mut encoder = Encoder::default();
        for spans in [&big[..], &small, &big, &[]] {
            let again = encoder.encode("h1", spans);
            assert_eq!(again, Encoder::default().encode("h1", spans));
        }
    }

    #[test]
    fn traces_in_order_of_first_arrival_and_split_traces_made_one() {
        let spans = [span(9, 1), span(9, 2), span(2, 3), span(9, 4), span(5, 5)];
        let mut encoder = Encoder::default();
        encoder.group(&spans);
        let order: Vec<(u64, u64)> = encoder
            .runs
            .iter()
            .flat_map(|(_, run)| run.clone())
            .map(|i| (spans[i].trace_id, i as u64 + 1))
            .collect();
        assert_eq!(order, [(9, 1), (9, 2), (9, 4), (2, 3), (5, 5)]);
        encoder.group(&[]);
        assert!(encoder.runs.is_empty());
    }

    #[test]
    fn added_entries_reach_the_receiver() {
        let mut correlated = span(7, 1);
        let mut entries = Vec::new();
        put(&mut entries, "span.serviceURN", "urn:service:/s");
        put(&mut entries, "k", "overridden");
        correlated.extra = entries.into();
        let body = Encoder::default().encode("", &[correlated]);
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut raw)
            .unwrap();
        let payload = TracePayload::decode(&raw[..]).unwrap();
        assert_eq!(payload.host_name, "");
        let meta = &payload.traces[0].spans[0].meta;
        assert_eq!(meta["span.serviceURN"], "urn:service:/s");
        assert_eq!(meta["k"], "overridden");
    }

    /// A meta entry, written independently of the daemon's writer.
    fn put(buf: &mut Vec<u8>, key: &str, value: &str) {
        let entry = WireSpan {
            meta: [(key.to_string(), value.to_string())].into(),
            ..WireSpan::default()
        };
        entry.encode(buf).unwrap();
    }

    #[test]
    fn split_by_count_and_size() {
        let batches = split((0..MAX_SPANS as u64 + 10).map(|i| span(1, i)).collect());
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_SPANS, 10]);
        assert_eq!(batches[1][0], span(1, MAX_SPANS as u64));
        assert!(split(Vec::new()).is_empty());
        // A batch ends with the span that reaches a limit: exactly at it is one batch.
        let exact: Vec<_> = (0..MAX_SPANS as u64).map(|i| span(1, i)).collect();
        assert_eq!(split(exact.clone()), [exact]);

        let big = CorrelatedSpan::from_span(&Span {
            resource: "x".repeat(MAX_BYTES / 2),
            ..relay_span(1, 1)
        });
        let sizes = |spans: Vec<CorrelatedSpan>| -> Vec<usize> {
            split(spans).iter().map(Vec::len).collect()
        };
        assert_eq!(sizes(vec![big.clone(), big.clone()]), [2]);
        assert_eq!(sizes(vec![big.clone(), big.clone(), big]), [2, 1]);
    }
}
