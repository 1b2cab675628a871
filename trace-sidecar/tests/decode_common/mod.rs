//! Helpers shared by the decode tests (and the benchmark): a test encoder, proptest
//! strategies, a counting allocator (installed by the test binaries that measure
//! allocations) and the budget and agreement checks (also run by the fuzz targets).
#![allow(dead_code)]

pub mod alloc;
pub mod checks;
pub mod encode;
pub mod strategies;

use std::fmt::Debug;

use sts_proto::daemon::v1::Trace;
use trace_sidecar::decode::{DecodeError, Limits, Reason};

/// Spans of all traces, for comparisons that ignore how spans are grouped.
pub fn span_count(traces: &[Trace]) -> usize {
    traces.iter().map(|t| t.spans.len()).sum()
}

/// `result` refused `body` as too large, having allocated at most the default budget
/// (`peak` bytes) on the way.
pub fn assert_too_large_within_budget<T: Debug>(
    result: Result<T, DecodeError>,
    peak: usize,
    body: &[u8],
) {
    let e = result.expect_err("refused");
    assert!(matches!(e.reason, Reason::TooLarge { .. }), "{e}");
    let budget = Limits::DEFAULT.budget(body.len());
    assert!(peak <= budget, "{peak} > {budget}");
}
