//! Helpers shared by the decode tests (and the benchmark): a test encoder and a counting
//! allocator (installed by the test binaries that measure allocations).
#![allow(dead_code)]

pub mod alloc;
pub mod encode;

use sts_proto::daemon::v1::Trace;

/// Spans of all traces, for comparisons that ignore how spans are grouped.
pub fn span_count(traces: &[Trace]) -> usize {
    traces.iter().map(|t| t.spans.len()).sum()
}
