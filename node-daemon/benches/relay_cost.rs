//! What the daemon spends per relayed span: reading (and checking) a batch of 1,000
//! realistic spans as the sidecar sends it, then correlating it (per-batch process and
//! service entries, one shared suffix per span). Run with
//! `cargo bench -p node-daemon --bench relay_cost`; prints the median of 15 runs, in CPU
//! time of the thread.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use node_daemon::thread_cpu::thread_cpu;
use node_daemon::traces::wire::BatchView;
use node_daemon::traces::Correlator;
use prost::Message;
use sts_proto::daemon::v1::{ClientInfo, Span, SpanBatch, Trace, TracePayload};

/// 100 traces of 10 spans as a Python web app sends them: 10 meta entries, 3 metrics,
/// the root carrying this process's pid as `process_id`.
fn batch() -> Bytes {
    let pid = f64::from(std::process::id());
    let traces = (0..100u64)
        .map(|t| Trace {
            spans: (0..10u64)
                .map(|s| {
                    let root = s == 0;
                    let meta: HashMap<String, String> = [
                        ("env", "production".to_string()),
                        ("version", "2.14.1".to_string()),
                        ("language", "python".to_string()),
                        (
                            "component",
                            if root { "flask" } else { "psycopg" }.to_string(),
                        ),
                        (
                            "span.kind",
                            if root { "server" } else { "client" }.to_string(),
                        ),
                        ("http.method", "GET".to_string()),
                        ("http.status_code", "200".to_string()),
                        (
                            "http.url",
                            format!("http://shop.internal:8080/api/v1/items/{t}"),
                        ),
                        ("runtime-id", "3d440d753efa4b4b9cb9ed1695f9d9e0".to_string()),
                        (
                            "_dd.p.tid",
                            format!("{:016x}", 0x6920_0000_0000_0000u64 | t),
                        ),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect();
                    let mut metrics: HashMap<String, f64> =
                        [("_sampling_priority_v1".to_string(), 1.0)].into();
                    if root {
                        metrics.insert("_dd.top_level".into(), 1.0);
                        metrics.insert("process_id".into(), pid);
                    } else {
                        metrics.insert("_dd.measured".into(), 1.0);
                        metrics.insert("db.row_count".into(), (s % 5) as f64);
                    }
                    Span {
                        service: "shop-web".into(),
                        name: if root {
                            "flask.request"
                        } else {
                            "postgres.query"
                        }
                        .into(),
                        resource: format!("SELECT id, name, price FROM items WHERE id = {s}"),
                        trace_id: 0x4000_0000_0000_0000 | t,
                        span_id: 0x1234_5678_9abc_0000 | t << 4 | s,
                        parent_id: if root {
                            0
                        } else {
                            0x1234_5678_9abc_0000 | t << 4
                        },
                        start: 1_764_000_000_000_000_000 + (t * 1_000_000 + s * 20_000) as i64,
                        duration: 349_151 + s as i64 * 1_717,
                        error: 0,
                        meta,
                        metrics,
                        r#type: if root { "web" } else { "sql" }.into(),
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
