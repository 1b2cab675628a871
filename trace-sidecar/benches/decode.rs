//! Decode throughput: `cargo bench -p trace-sidecar --bench decode`.
//!
//! Decodes batches of 1000 realistic spans (10 meta entries, 3 metrics, as a Python web
//! app sends them) on one thread, for v0.4, v0.5 and v0.3 JSON, and prints spans/s (the
//! median of `BENCH_REPS` runs of ~0.2 s each, default 15) and the ratio to the decoder's
//! target of 2,000,000 spans/s/core (the whole sidecar pipeline aims at 500,000):
//!
//! - `decode`: decoding only; the decoded traces are freed outside the timed part;
//! - `decode+drop`: decoding and freeing, which the pipeline pays for each span too;
//! - `floor: clone+drop`: cloning and freeing the same traces, i.e. the heap allocations
//!   (about 29 per span) that any decoder building `sts_proto` `Span`s must make, without
//!   parsing, UTF-8 checks or hashing;
//! - `transcode`: what the sidecar runs, msgpack (or JSON) to the relay's protobuf bytes,
//!   freeing them included.

use std::hint::black_box;
use std::time::{Duration, Instant};

use trace_sidecar::decode::{decode, transcode, Format};

#[path = "../tests/decode_common/encode.rs"]
mod encode;

const SPANS: u64 = 1000;
const TARGET: f64 = 2_000_000.0;

fn main() {
    let reps: usize = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let traces = encode::realistic_traces(SPANS);
    let ddtrace_style = encode::Style {
        skip_defaults: true,
        ..encode::Style::default()
    };
    let payloads = [
        ("v0.4", Format::V04, encode::v04(&traces, ddtrace_style)),
        ("v0.5", Format::V05, encode::v05(&traces, ddtrace_style)),
        ("v0.3 json", Format::V03Json, encode::v03_json(&traces)),
    ];
    println!(
        "{:<24} {:>8} {:>12} {:>8} {:>7} {:>8}",
        "1000-span batches", "bytes", "spans/s", "ns/span", "MB/s", "vs 2M/s"
    );
    for (name, format, body) in &payloads {
        let decoded = decode(*format, body).expect("the benchmark payload decodes");
        assert_eq!(decoded, traces, "{name}: decodes to what was encoded");
        let decode_only = median(reps, || decode_rate(*format, body, false));
        let with_drop = median(reps, || decode_rate(*format, body, true));
        row(&format!("{name} decode"), body.len(), decode_only);
        row(&format!("{name} decode+drop"), body.len(), with_drop);
        let transcoded = transcode(*format, body).expect("the benchmark payload transcodes");
        assert_eq!(
            transcoded.decode().unwrap(),
            traces,
            "{name}: transcodes to the same"
        );
        let rate = median(reps, || transcode_rate(*format, body));
        row(&format!("{name} transcode"), body.len(), rate);
    }
    // The same allocations without parsing or hashing: what building `Span`s costs.
    let floor = median(reps, || {
        let start = Instant::now();
        let mut batches = 0u64;
        while start.elapsed() < RUN {
            drop(black_box(black_box(&traces).clone()));
            batches += 1;
        }
        batches as f64 / start.elapsed().as_secs_f64()
    });
    row("floor: clone+drop", 0, floor);
}

const RUN: Duration = Duration::from_millis(200);

fn median(reps: usize, mut f: impl FnMut() -> f64) -> f64 {
    f();
    let mut rates: Vec<f64> = (0..reps).map(|_| f()).collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn row(name: &str, bytes: usize, batches_per_s: f64) {
    let spans_per_s = batches_per_s * SPANS as f64;
    println!(
        "{:<24} {:>8} {:>12.0} {:>8.0} {:>7.0} {:>7.2}x",
        name,
        bytes,
        spans_per_s,
        1e9 / spans_per_s,
        batches_per_s * bytes as f64 / 1e6,
        spans_per_s / TARGET
    );
}

/// Decodes `body` repeatedly for about `RUN`; returns batches per second. Without
/// `with_drop`, the decoded traces are dropped outside the timed part.
fn decode_rate(format: Format, body: &[u8], with_drop: bool) -> f64 {
    let mut timed = Duration::ZERO;
    let mut batches = 0u64;
    let mut kept = Vec::with_capacity(8);
    while timed < RUN {
        let start = Instant::now();
        for _ in 0..8 {
            let traces = decode(format, black_box(body)).unwrap();
            if with_drop {
                drop(black_box(traces));
            } else {
                kept.push(traces);
            }
        }
        timed += start.elapsed();
        kept.clear();
        batches += 8;
    }
    batches as f64 / timed.as_secs_f64()
}

/// Transcodes `body` repeatedly for about `RUN`; returns batches per second.
fn transcode_rate(format: Format, body: &[u8]) -> f64 {
    let start = Instant::now();
    let mut batches = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..8 {
            drop(black_box(transcode(format, black_box(body)).unwrap()));
        }
        batches += 8;
    }
    batches as f64 / start.elapsed().as_secs_f64()
}
