//! Checks of one payload shared by the property tests and the fuzz targets (`fuzz/`, which
//! include this file and `alloc.rs` by path): decoding and transcoding stay within their
//! memory budget, and the transcoder reads every payload as the decoder does.
#![allow(dead_code)]

use std::collections::HashMap;

use sts_proto::daemon::v1::{Span, Trace};
use trace_sidecar::decode::{
    decode_with, transcode_with, DecodeError, Format, Limits, Reason, Transcoded,
};

use super::alloc::peak_during;

/// What a decode or transcode allocates besides its budget: the error value of a failed one
/// (a few hundred bytes at most, serde_json's message included).
pub const ERROR_BYTES: usize = 1024;

/// Tight limits, which random payloads reach: at most 2x the body + 3 KiB.
pub fn tight() -> Limits {
    Limits {
        expansion: 2,
        slack: 3 << 10,
        max_bytes: usize::MAX,
    }
}

/// Runs `f`, a decode of `body` under `limits`, asserting that its peak heap use stays
/// within the budget and [`ERROR_BYTES`]. `count` says what the output holds, for the
/// message.
fn within_budget<T>(
    format: Format,
    body: &[u8],
    limits: &Limits,
    f: impl FnOnce() -> Result<T, DecodeError>,
    count: impl Fn(&T) -> usize,
) -> Result<T, DecodeError> {
    let (result, peak) = peak_during(f);
    let bound = limits.budget(body.len()) + ERROR_BYTES;
    assert!(
        peak <= bound,
        "{format:?}: {peak} bytes at peak for a {}-byte body, over the bound of {bound} ({:?})",
        body.len(),
        result.as_ref().map(&count)
    );
    result
}

/// [`decode_with`], checked to stay within its budget.
pub fn decode_checked(
    format: Format,
    body: &[u8],
    limits: &Limits,
) -> Result<Vec<Trace>, DecodeError> {
    within_budget(
        format,
        body,
        limits,
        || decode_with(format, body, limits),
        Vec::len,
    )
}

/// [`transcode_with`], checked to stay within its budget.
pub fn transcode_checked(
    format: Format,
    body: &[u8],
    limits: &Limits,
) -> Result<Transcoded, DecodeError> {
    within_budget(
        format,
        body,
        limits,
        || transcode_with(format, body, limits),
        |t| t.spans,
    )
}

/// A span without its metrics, and its metrics as sorted (name, bits).
pub type Comparable = (Span, Vec<(String, u64)>);

/// Spans with their metrics as bit patterns, so that NaN compares equal to itself (and -0.0
/// to 0.0, as `==` has it: prost leaves out both, and a compact encoder writes -0.0 as 0).
pub fn comparable(traces: &[Trace]) -> Vec<Vec<Comparable>> {
    traces
        .iter()
        .map(|t| {
            t.spans
                .iter()
                .map(|s| {
                    let mut metrics: Vec<_> = s
                        .metrics
                        .iter()
                        .map(|(k, v)| (k.clone(), bits(*v)))
                        .collect();
                    metrics.sort();
                    let span = Span {
                        metrics: HashMap::new(),
                        ..s.clone()
                    };
                    (span, metrics)
                })
                .collect()
        })
        .collect()
}

fn bits(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

/// The transcoder and the decoder agree on `body`: the transcoded bytes, read as protobuf,
/// are the decoded traces, or both fail with the same error (unless one of them ran out of
/// its budget first); both stay within their budgets.
pub fn agree(format: Format, body: &[u8], limits: &Limits) {
    let transcoded = transcode_checked(format, body, limits);
    let decoded = decode_checked(format, body, limits);
    let too_large = |e: Option<&DecodeError>| matches!(e, Some(e) if matches!(e.reason, Reason::TooLarge { .. }));
    if too_large(transcoded.as_ref().err()) || too_large(decoded.as_ref().err()) {
        return;
    }
    match (transcoded, decoded) {
        (Ok(t), Ok(d)) => {
            let read = t.decode().expect("the transcoder writes valid protobuf");
            assert_eq!(comparable(&read), comparable(&d), "{format:?} {body:x?}");
            assert_eq!(t.traces, d.len());
            assert_eq!(t.spans, d.iter().map(|t| t.spans.len()).sum::<usize>());
        }
        (Err(t), Err(d)) => assert_eq!(t, d, "{format:?}: the same error"),
        (t, d) => panic!(
            "{format:?} {body:x?}: transcode {:?}, decode {:?}",
            t.map(|t| t.spans),
            d.map(|d| d.len())
        ),
    }
}
