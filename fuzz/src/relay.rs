//! The daemon's relay batch reader (`node_daemon::traces::wire`) against prost's decoding
//! of the same `SpanBatch`.
//!
//! Where prost accepts a batch, the reader accepts it too and reads the same header,
//! payloads, traces and spans, and for each span what prost's `Span` says of its service,
//! trace id, times, pids and service kind; where the reader accepts, prost does too (each
//! span the daemon keeps decodes as a relay `Span`). The reader is stricter than prost in
//! two ways relay.proto allows, and only there may it refuse what prost accepts:
//! - groups (wire types 3 and 4, never written by proto3), which prost skips;
//! - a `meta` or `metrics` field of another wire type than length-delimited: prost does not
//!   check the wire type of map fields and reads any as length-delimited.

use bytes::Bytes;
use node_daemon::traces::wire::{BatchView, ServiceKind, SpanView, WireError};
use prost::Message;
use sts_proto::daemon::v1::{Span, SpanBatch, Trace};

use crate::checks::comparable;

const START_GROUP: u8 = 3;
const END_GROUP: u8 = 4;
const LEN: u8 = 2;
/// `Span.meta`, `Span.metrics`.
const MAP_FIELDS: [u64; 2] = [10, 11];

pub fn reader_agrees_with_prost(data: &[u8]) {
    let prost = SpanBatch::decode(data);
    let ours = BatchView::parse(Bytes::copy_from_slice(data));
    match (prost, ours) {
        (Ok(batch), Ok(view)) => same_batch(&batch, &view, data),
        (Err(_), Err(_)) => {}
        (Ok(_), Err(e)) => assert!(
            stricter_than_prost(data, &e),
            "the reader refuses what prost accepts: {e}"
        ),
        (Err(e), Ok(view)) => panic!(
            "the reader accepts what prost refuses ({e}): {} spans",
            view.span_count()
        ),
    }
}

/// Whether `e` is one of the refusals relay.proto allows and prost does not make: a group,
/// or a map field of another wire type, whose key is at `e.at`.
fn stricter_than_prost(data: &[u8], e: &WireError) -> bool {
    let Some((field, wire_type)) = key_at(data, e.at) else {
        return false;
    };
    match e.what {
        "a group or an invalid wire type" => matches!(wire_type, START_GROUP | END_GROUP),
        "a Span field of the wrong wire type" => MAP_FIELDS.contains(&field) && wire_type != LEN,
        _ => false,
    }
}

/// The field number and wire type of the key at `at`.
fn key_at(data: &[u8], at: usize) -> Option<(u64, u8)> {
    let mut key = 0u64;
    for (i, &b) in data.get(at..)?.iter().take(10).enumerate() {
        key |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((key >> 3, (key & 7) as u8));
        }
    }
    None
}

fn same_batch(batch: &SpanBatch, view: &BatchView, data: &[u8]) {
    let h = &view.header;
    assert_eq!(h.sidecar_id, batch.sidecar_id);
    assert_eq!(h.batch_id, batch.batch_id);
    assert_eq!(h.sidecar_addr, batch.sidecar_addr);
    assert_eq!(h.task_arn, batch.task_arn);
    assert_eq!(h.dropped_spans, batch.dropped_spans);
    assert_eq!(h.token, batch.token);
    assert_eq!(view.payloads.len(), batch.payloads.len(), "payloads");
    let mut next_trace = 0;
    for (payload, read) in batch.payloads.iter().zip(&view.payloads) {
        let client = payload.client.clone().unwrap_or_default();
        assert_eq!(read.client, client);
        assert_eq!(read.traces, next_trace..next_trace + payload.traces.len());
        next_trace = read.traces.end;
    }
    assert_eq!(view.traces.len(), next_trace, "traces");
    let traces = batch.payloads.iter().flat_map(|p| &p.traces);
    let mut next_span = 0;
    for (trace, read) in traces.zip(&view.traces) {
        assert_eq!(read.spans, next_span..next_span + trace.spans.len());
        next_span = read.spans.end;
    }
    assert_eq!(view.span_count(), next_span, "spans");
    // Each span as the daemon reads it: its trace's `common` fields, then its own.
    let spans = batch
        .payloads
        .iter()
        .flat_map(|p| &p.traces)
        .flat_map(|t| t.spans.iter().map(move |s| (s, t.common.as_ref())));
    for ((span, common), read) in spans.zip(&view.spans) {
        let mut merged = common.cloned().unwrap_or_default();
        merged
            .merge(span.encode_to_vec().as_slice())
            .expect("a span merges into its trace's common span");
        same_span(span, &merged, read, data);
    }
}

/// What the reader read of a span is what prost's `Span` says: its bytes are the span
/// `own`, the rest is of `span`, `own` merged into its trace's common span.
fn same_span(own: &Span, span: &Span, read: &SpanView, data: &[u8]) {
    let bytes = &data[read.bytes.clone()];
    let alone = Span::decode(bytes).expect("a span's bytes decode as a Span");
    let one = |s: &Span| {
        comparable(&[Trace {
            common: None,
            spans: vec![s.clone()],
        }])
    };
    assert_eq!(one(&alone), one(own), "the span's bytes are the span");
    assert_eq!(&data[read.service.clone()], span.service.as_bytes());
    assert_eq!(read.trace_id, span.trace_id);
    assert_eq!(read.start, span.start);
    assert_eq!(read.duration, span.duration);
    let meta = |key: &str| span.meta.get(key).map(String::as_str);
    let meta_pid = meta("span.pid").and_then(|v| v.trim().parse::<u32>().ok());
    assert_eq!(read.meta_pid, meta_pid, "span.pid {:?}", meta("span.pid"));
    let metric_pid = span
        .metrics
        .get("process_id")
        .filter(|v| **v >= 1.0 && **v <= f64::from(u32::MAX) && v.fract() == 0.0)
        .map(|v| *v as u32);
    assert_eq!(read.metric_pid, metric_pid);
    let db_type = meta("db.type").filter(|_| span.r#type == "sql");
    match &read.kind {
        ServiceKind::Named => assert!(meta("span.serviceURN").is_some()),
        ServiceKind::Database(range) => {
            assert!(meta("span.serviceURN").is_none());
            assert_eq!(Some(&data[range.clone()]), db_type.map(str::as_bytes));
        }
        ServiceKind::Kind { jvm } => {
            assert!(meta("span.serviceURN").is_none() && db_type.is_none());
            assert!(meta("span.kind").is_some());
            assert_eq!(*jvm, meta("language") == Some("jvm"));
        }
        ServiceKind::Untyped => {
            assert!(meta("span.serviceURN").is_none() && db_type.is_none());
            assert!(meta("span.kind").is_none());
        }
    }
}
