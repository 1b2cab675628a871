//! Correlated spans into the receiver's trace payload: grouped by trace id, protobuf,
//! gzip. Spans are batched by count, size and age.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use prost::Message;
use sts_proto::daemon::v1::Span;
use sts_proto::receiver::v1::{ApiTrace, Span as WireSpan, TracePayload};

pub const MAX_SPANS: usize = 5_000;
pub const MAX_BYTES: usize = 3 << 20;
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// Spans waiting to become one batch.
#[derive(Debug, Default)]
pub struct SpanBatcher {
    spans: Vec<Span>,
    bytes: usize,
    since: Option<Instant>,
}

impl SpanBatcher {
    /// Adds spans; returns the spans of every batch that became full.
    pub fn add(&mut self, spans: Vec<Span>) -> Vec<Vec<Span>> {
        let mut full = Vec::new();
        for span in spans {
            self.since.get_or_insert_with(Instant::now);
            self.bytes += span.encoded_len();
            self.spans.push(span);
            if self.spans.len() >= MAX_SPANS || self.bytes >= MAX_BYTES {
                full.push(self.take());
            }
        }
        full
    }

    /// The pending spans if the oldest has waited `MAX_DELAY` (or `force`).
    pub fn due(&mut self, force: bool) -> Option<Vec<Span>> {
        let waited = self.since.is_some_and(|t| t.elapsed() >= MAX_DELAY);
        (!self.spans.is_empty() && (force || waited)).then(|| self.take())
    }

    fn take(&mut self) -> Vec<Span> {
        self.bytes = 0;
        self.since = None;
        std::mem::take(&mut self.spans)
    }
}

/// The gzip'd protobuf body of `<STS_APM_URL>/api/v0.2/traces`.
pub fn encode(hostname: &str, spans: Vec<Span>) -> Vec<u8> {
    let mut by_trace: BTreeMap<u64, Vec<WireSpan>> = BTreeMap::new();
    for s in spans {
        by_trace.entry(s.trace_id).or_default().push(WireSpan {
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
        });
    }
    let traces = by_trace
        .into_iter()
        .map(|(trace_id, spans)| ApiTrace {
            trace_id,
            start_time: spans.iter().map(|s| s.start).min().unwrap_or(0),
            end_time: spans
                .iter()
                .map(|s| s.start.saturating_add(s.duration))
                .max()
                .unwrap_or(0),
            spans,
        })
        .collect();
    let payload = TracePayload {
        host_name: hostname.to_string(),
        env: String::new(),
        traces,
        transactions: Vec::new(),
    };
    let raw = payload.encode_to_vec();
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(raw.len() / 4),
        flate2::Compression::fast(),
    );
    gz.write_all(&raw).expect("writing to memory cannot fail");
    gz.finish().expect("writing to memory cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn span(trace: u64, id: u64) -> Span {
        Span {
            trace_id: trace,
            span_id: id,
            start: 100 * id as i64,
            duration: 10,
            service: "s".into(),
            ..Span::default()
        }
    }

    #[test]
    fn grouped_by_trace_and_gzipped() {
        let body = encode("h1", vec![span(1, 1), span(2, 2), span(1, 3)]);
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
    }

    #[test]
    fn batches_by_count_and_age() {
        let mut b = SpanBatcher::default();
        let full = b.add((0..MAX_SPANS as u64 + 10).map(|i| span(1, i)).collect());
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].len(), MAX_SPANS);
        assert!(b.due(false).is_none());
        assert_eq!(b.due(true).unwrap().len(), 10);
        assert!(b.due(true).is_none());
    }
}
