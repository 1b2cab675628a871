//! What the daemon spends per relayed span: reading (and checking) a batch of 1,000
//! realistic spans as the sidecar sends it, then correlating it (per-batch process and
//! service entries, one shared suffix per span). Run with
//! `cargo bench -p node-daemon --bench relay_cost`; prints the median of 15 runs, in CPU
//! time of the thread.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use bench_support::thread_cpu;
use bench_support::web_spans::web_span;
use bytes::Bytes;
use node_daemon::traces::wire::BatchView;
use node_daemon::traces::Correlator;
use prost::Message;
use sts_proto::daemon::v1::{ClientInfo, Span, SpanBatch, Trace, TracePayload};

/// 100 traces of 10 spans as a Python web app sends them: 10 meta entries, 3 metrics,
/// the root carrying this process's pid as `process_id`.
fn batch() -> Bytes {
    let pid = std::process::id();
    let traces = (0..100u64)
        .map(|t| Trace {
            common: None,
            spans: (0..10u64)
                .map(|s| {
                    let span = web_span(t, s, pid);
                    let root = 0x1234_5678_9abc_0000 | t << 4;
                    Span {
                        service: span.service.into(),
                        name: span.name.into(),
                        resource: span.resource,
                        trace_id: 0x4000_0000_0000_0000 | t,
                        span_id: root | s,
                        parent_id: if s == 0 { 0 } else { root },
                        start: span.start,
                        duration: span.duration,
                        error: i32::from(span.error),
                        meta: owned(span.meta),
                        metrics: owned(span.metrics),
                        r#type: span.r#type.into(),
                    }
                })
                .collect(),
        })
        .collect();
    let batch = SpanBatch {
        sidecar_id: "bench".into(),
        batch_id: 1,
        payloads: vec![TracePayload {
            client: Some(ClientInfo {
                lang: "python".into(),
                endpoint: "/v0.4/traces".into(),
                ..ClientInfo::default()
            }),
            traces,
        }],
        ..SpanBatch::default()
    };
    Bytes::from(batch.encode_to_vec())
}

fn owned<V>(entries: Vec<(&str, V)>) -> HashMap<String, V> {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU ns per span of `f` run on 1,000-span batches for about 0.2 s of CPU.
fn per_span(mut f: impl FnMut()) -> f64 {
    let start = thread_cpu();
    let mut runs = 0u32;
    while thread_cpu() - start < Duration::from_millis(200) {
        for _ in 0..10 {
            f();
        }
        runs += 10;
    }
    (thread_cpu() - start).as_nanos() as f64 / f64::from(runs) / 1000.0
}

fn main() {
    let bytes = batch();
    let mut correlator = Correlator::new("bench-host", None);
    let read = median(
        (0..15)
            .map(|_| {
                per_span(|| {
                    black_box(BatchView::parse(black_box(bytes.clone())).unwrap());
                })
            })
            .collect(),
    );
    let mut out = Vec::with_capacity(1000);
    let both = median(
        (0..15)
            .map(|_| {
                per_span(|| {
                    let view = BatchView::parse(black_box(bytes.clone())).unwrap();
                    correlator.correlate(&view, &mut out);
                    black_box(&out);
                    out.clear();
                })
            })
            .collect(),
    );
    println!(
        "1,000-span batch of {} bytes: read {read:.0} ns/span, read + correlate {both:.0} ns/span",
        bytes.len()
    );
}
